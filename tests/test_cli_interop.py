"""The command line with object storage options, checked outputs, honest counts and export."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click
import numpy as np
import pyarrow.parquet as pq
import pytest

import tensorhouse as th


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """``cli(*args, check=0)``: the console script's ``tensorhouse.cli.main()``, in-process (as test_cli)."""
    from tensorhouse.cli import main

    class Result:
        def __init__(self, code: int, stdout: str, stderr: str) -> None:
            self.returncode, self.stdout, self.stderr = code, stdout, stderr

    def call(*args: str, check: int | None = 0) -> Result:
        capsys.readouterr()
        monkeypatch.setattr(sys, "argv", ["tensorhouse", *args])
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        out, err = capsys.readouterr()
        if check is not None:
            assert code == check, f"exit {code}\nstdout:\n{out}\nstderr:\n{err}"
        return Result(code, out, err)

    return call


@pytest.fixture
def pets(tmp_path: Path) -> str:
    uri = str(tmp_path / "pets")
    ds = th.create(
        uri,
        {
            "label": th.ClassLabel(["cat", "dog"]),
            "emb": th.Embedding(4),
            "image": th.Image("png"),
            "name": th.Text(),
        },
    )
    ds.append(
        {
            "label": [0, 1, 1],
            "emb": np.ones((3, 4), "float32"),
            "image": [np.zeros((4, 4, 3), np.uint8)] * 3,
            "name": ["a", "b", "c"],
        }
    )
    return uri


def _commands() -> list[click.Command]:
    from tensorhouse.cli import cli as group

    ctx = click.Context(group)
    out = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        assert cmd is not None
        out += list(cmd.commands.values()) if isinstance(cmd, click.Group) else [cmd]
    return out


def test_every_command_takes_storage_options_and_help_names_the_aws_variables() -> None:
    from click.testing import CliRunner

    from tensorhouse.cli import cli as group

    missing = [
        c.name
        for c in _commands()
        if c.name != "demo" and "--storage-option" not in [o for p in c.params for o in p.opts]
    ]
    assert not missing
    text = CliRunner().invoke(group, ["--help"]).output
    for var in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ENDPOINT_URL",
        "--storage-option",
    ):
        assert var in text
    assert "AWS_PROFILE" in CliRunner().invoke(group, ["info", "--help"]).output


def test_s3_through_storage_options(
    s3_uri: tuple[str, dict[str, Any]], tmp_path: Path, cli: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    uri, options = s3_uri
    # Only the options reach the server: no endpoint in the environment.
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    opts = [a for k, v in options.items() for a in ("--storage-option", f"{k}={v}")]
    cli("create", uri, "--schema", '{"x": "int64", "name": "text"}', *opts)
    th.write(
        uri,
        th.open(uri, storage_options=options).to_table(),
        mode="append",
        storage_options=options,
    )
    src = tmp_path / "rows.parquet"
    import pyarrow as pa

    pq.write_table(pa.table({"x": [1, 2, 3], "name": ["a", "b", "c"]}), src)
    cli("ingest", "parquet", str(src), uri, "--no-progress", *opts)
    assert "rows      3 " in cli("info", uri, *opts).stdout
    out = cli("sql", "SELECT sum(x) AS s FROM t", "-d", f"t={uri}", *opts).stdout
    assert out.splitlines()[2].strip() == "6"
    cli("export", uri, str(tmp_path / "x.parquet"), *opts)
    assert pq.read_table(tmp_path / "x.parquet").num_rows == 3
    assert cli("info", uri, "--storage-option", "novalue", check=2).stderr


def test_output_format_is_checked_before_anything_is_written(
    pets: str, tmp_path: Path, cli: Any
) -> None:
    for name, query in (("out.csv", "SELECT emb FROM t"), ("img.csv", "SELECT image FROM t")):
        r = cli("sql", query, "-d", f"t={pets}", "-o", str(tmp_path / name), check=1)
        assert "CSV cannot hold" in r.stderr
    r = cli(
        "sql", "SELECT label FROM t", "-d", f"t={pets}", "-o", str(tmp_path / "x.json"), check=2
    )
    assert ".json" in r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "pets"
    ]  # no file, no dataset directory, no temp file
    cli("sql", "SELECT label, name FROM t", "-d", f"t={pets}", "-o", str(tmp_path / "ok.csv"))
    assert (tmp_path / "ok.csv").read_text().splitlines() == [
        '"label","name"',
        '0,"a"',
        '1,"b"',
        '1,"c"',
    ]


def test_honest_counts(pets: str, tmp_path: Path, cli: Any) -> None:
    dest = str(tmp_path / "dogs")
    q = "SELECT * FROM t WHERE label = 1"
    assert "wrote 2 rows" in cli("sql", q, "-d", f"t={pets}", "-o", dest).stdout
    out = cli("sql", q, "-d", f"t={pets}", "-o", dest, "--mode", "append").stdout
    assert (
        "appended 2 rows" in out and "4 rows in all" in out
    )  # not the dataset's total as rows written
    out = cli("sql", q, "-d", f"t={pets}", "-o", dest, "--mode", "append").stdout
    assert "appended 2 rows" in out and "6 rows in all" in out
    assert len(th.open(dest)) == 6
    out = cli(
        "sql", q.replace("= 1", "= 0"), "-d", f"t={pets}", "-o", dest, "--mode", "overwrite"
    ).stdout
    assert "wrote 1 rows" in out and "replacing its 6 rows" in out
    assert (
        "wrote 0 rows"
        in cli(
            "sql", q.replace("= 1", "= 9"), "-d", f"t={pets}", "-o", dest, "--mode", "append"
        ).stdout
    )


def test_export_command(pets: str, tmp_path: Path, cli: Any) -> None:
    out = cli(
        "export", pets, str(tmp_path / "by"), "--partition-by", "label", "--columns", "label,name"
    ).stdout
    assert "wrote 3 rows" in out and sorted(p.name for p in (tmp_path / "by").iterdir()) == [
        "label=0",
        "label=1",
    ]
    assert "CSV cannot hold" in cli("export", pets, str(tmp_path / "p.csv"), check=1).stderr
    assert not (tmp_path / "p.csv").exists()
    cli("export", pets, str(tmp_path / "p.parquet"), "--version", "1")
    cli("ingest", "parquet", str(tmp_path / "p.parquet"), str(tmp_path / "back"), "--no-progress")
    assert th.open(str(tmp_path / "back")).schema == th.open(pets).schema
