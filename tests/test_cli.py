"""The ``tensorhouse`` command through its real entry point.

End-to-end paths (exit codes, stderr, signals, each ingest source, each SQL
engine) run ``python -m tensorhouse`` in a subprocess. Each subprocess costs
~0.5-1 s of start-up and imports (DuckDB, DataFusion), so the many smaller
checks of the same commands call the same entry function, ``cli.main()``,
in-process with ``sys.argv`` set, which keeps this file within its time budget.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq
import pytest
from test_ingest import make_coco, make_folder, make_shards

import tensorhouse as th

ENV = {**os.environ, "COLUMNS": "120", "PYTHONUNBUFFERED": "1"}


def run(
    *args: str, cwd: Path | None = None, check: int | None = 0
) -> subprocess.CompletedProcess[str]:
    """``python -m tensorhouse ARGS``; asserts the exit code when ``check`` is not None."""
    proc = subprocess.run(
        [sys.executable, "-m", "tensorhouse", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=ENV,
        timeout=120,
    )
    if check is not None:
        assert proc.returncode == check, (
            f"exit {proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
        )
    return proc


class Result:
    def __init__(self, code: int, stdout: str, stderr: str) -> None:
        self.returncode, self.stdout, self.stderr = code, stdout, stderr


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> Any:
    """``cli(*args, check=0)``: ``tensorhouse.cli.main()`` in-process, as the console script calls it."""
    from tensorhouse.cli import main

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


def test_help_of_every_command_has_an_example() -> None:
    # One interpreter for all: click's own runner over the same command objects the entry point uses.
    import click
    from click.testing import CliRunner

    from tensorhouse.cli import cli

    ctx = click.Context(cli)
    ingest = cli.get_command(ctx, "ingest")
    assert isinstance(ingest, click.Group)
    index = cli.get_command(ctx, "index")
    assert isinstance(index, click.Group)
    commands = (
        [[c] for c in cli.list_commands(ctx) if c not in ("ingest", "index")]
        + [["ingest", c] for c in ingest.commands]
        + [["index", c] for c in index.commands]
    )
    assert (
        len(commands) == 21
    )  # 12 commands (serve, export included) + 5 ingest sources + 4 index commands
    for cmd in commands:
        out = CliRunner().invoke(cli, [*cmd, "--help"])
        assert out.exit_code == 0, (cmd, out.output)
        assert "Example" in out.output, cmd
    # and the installed script itself answers
    exe = Path(sys.executable).parent / "tensorhouse"
    proc = subprocess.run([str(exe), "--help"], capture_output=True, text=True, env=ENV, timeout=60)
    assert proc.returncode == 0 and "ingest" in proc.stdout and "sql" in proc.stdout


def test_create_info_log_tag_branch_restore_vacuum_compact(tmp_path: Path, cli: Any) -> None:
    uri = str(tmp_path / "pets")
    schema = {
        "label": "int64",
        "image": {"kind": "image", "compression": "jpeg"},
        "emb": "embedding:4",
        "name": "text",
    }
    out = run("create", uri, "--schema", json.dumps(schema)).stdout
    assert "created" in out and "image:jpeg" in out and "embedding:4" in out
    ds = th.open(uri)
    assert ds.schema["image"] == th.Image("jpeg") and ds.schema["emb"] == th.Embedding(4)
    img = np.zeros((8, 8, 3), np.uint8)
    for k in range(3):
        ds.append(
            {
                "label": [k, k],
                "image": [img, img],
                "emb": np.ones((2, 4), np.float32),
                "name": ["a", "b"],
            }
        )
    cli("tag", uri, "first", "--version", "1")
    cli("tag", uri, "doomed")
    cli("tag", uri, "--delete", "doomed")
    cli("branch", uri, "exp", "--version", "2")
    info = run("info", uri).stdout
    assert (
        "version   3 of 3" in info
        and "rows      6" in info
        and "first (v1)" in info
        and "exp" in info
    )
    assert "label" in info and "int64" in info
    tags = cli("tag", uri, "--list").stdout
    assert "first" in tags and "doomed" not in tags
    assert cli("branch", uri, "--list").stdout.split() == ["main", "exp"]
    log = cli("log", uri).stdout.splitlines()
    assert (
        log[0].split() == ["version", "time", "operation", "rows", "message"] and len(log) == 2 + 4
    )
    assert "restored version 1 as version 4 (2 rows)" in cli("restore", uri, "1").stdout
    assert "compact" in cli("compact", uri, "--target-rows", "1000").stdout
    dry = cli("vacuum", uri, "--retention-hours", "0", "--dry-run", "--force").stdout
    assert "would delete" in dry
    assert "deleted" in cli("vacuum", uri, "--retention-hours", "0", "--force").stdout
    assert len(th.open(uri)) == 2 and len(th.open(uri, tag="first")) == 2
    # usage errors exit 2; errors of ours exit 1 with one line
    assert cli("tag", uri, "x", "--list", check=2).stderr.count("Error") == 1
    assert (
        "'nonsense'"
        in cli("create", str(tmp_path / "bad"), "--schema", '{"x": "nonsense"}', check=2).stderr
    )
    assert cli("create", str(tmp_path / "bad"), "--schema", "[1, 2]", check=2).stderr
    bad = run("info", str(tmp_path / "nowhere"), check=1)
    assert bad.stderr.strip() == f"error: no tensorhouse dataset at {tmp_path / 'nowhere'}"
    assert cli("restore", uri, "99", check=1).stderr.startswith("error: ")
    assert cli("tag", uri, "bad name!", check=1).stderr.startswith("error: ")


def test_ingest_imagefolder_skip_strict_and_rerun(tmp_path: Path) -> None:
    files = make_folder(tmp_path / "src", per_class=3)
    (tmp_path / "src" / "dog" / "broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    uri = str(tmp_path / "ds")
    proc = run("ingest", "imagefolder", str(tmp_path / "src"), uri, "--batch-rows", "4")
    assert "ingested 9 rows" in proc.stdout and "skipped 1 unreadable" in proc.stdout
    assert "dog/broken.jpg" in proc.stderr and "warning:" in proc.stderr
    assert sorted(th.open(uri).take(np.arange(9), columns=["path"])["path"]) == sorted(files)
    again = run("ingest", "imagefolder", str(tmp_path / "src"), uri, "--batch-rows", "4").stdout
    assert "ingested 0 rows" in again and "3 already committed" in again
    strict = run(
        "ingest", "imagefolder", str(tmp_path / "src"), str(tmp_path / "s"), "--strict", check=1
    )
    assert strict.stderr.startswith("error: ") and "dog/broken.jpg" in strict.stderr
    assert run(
        "ingest", "imagefolder", str(tmp_path / "missing"), uri, check=2
    ).stderr  # click checks the path


def test_ingest_coco_and_malformed(tmp_path: Path) -> None:
    doc = make_coco(tmp_path, n=5)
    uri = str(tmp_path / "ds")
    assert (
        "ingested 5 rows"
        in run("ingest", "coco", str(tmp_path / "ann.json"), str(tmp_path / "images"), uri).stdout
    )
    ds = th.open(uri)
    assert ds.take(np.arange(5), columns=["image_id"])["image_id"].tolist() == [
        im["id"] for im in doc["images"]
    ]
    doc["annotations"][0]["bbox"] = [1, 2, 3]
    (tmp_path / "bad.json").write_text(json.dumps(doc))
    bad = run(
        "ingest",
        "coco",
        str(tmp_path / "bad.json"),
        str(tmp_path / "images"),
        str(tmp_path / "d2"),
        check=1,
    )
    assert "malformed COCO file" in bad.stderr and "bbox must be 4 finite numbers" in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1


def test_ingest_parquet_csv_webdataset(tmp_path: Path, cli: Any) -> None:
    import pyarrow as pa

    files = make_folder(tmp_path / "imgs", classes=("a",), per_class=3)
    rels = sorted(files)
    pq.write_table(
        pa.table({"img": [files[r] for r in rels], "emb": [[1.0, 2.0]] * 3, "n": [1, 2, 3]}),
        tmp_path / "t.parquet",
    )
    types = json.dumps({"img": "image:jpeg", "emb": "embedding:2"})
    run("ingest", "parquet", str(tmp_path / "*.parquet"), str(tmp_path / "p"), "--types", types)
    assert th.open(str(tmp_path / "p")).schema["emb"] == th.Embedding(2)
    (tmp_path / "l.csv").write_text(
        "file,label\n" + "".join(f"imgs/{r},{i}\n" for i, r in enumerate(rels))
    )
    cli(
        "ingest",
        "csv",
        str(tmp_path / "l.csv"),
        str(tmp_path / "c"),
        "--types",
        '{"file": "image"}',
    )
    assert bytes(th.open(str(tmp_path / "c")).take([2], decode=False)["file"][0]) == files[rels[2]]
    make_shards(tmp_path / "shards", shards=2, per_shard=2)
    out = run(
        "ingest",
        "webdataset",
        str(tmp_path / "shards" / "shard-{000000..000001}.tar"),
        str(tmp_path / "w"),
    )
    assert "ingested 4 rows" in out.stdout and len(th.open(str(tmp_path / "w"))) == 4
    assert (
        "not valid JSON"
        in cli(
            "ingest",
            "parquet",
            str(tmp_path / "t.parquet"),
            str(tmp_path / "x"),
            "--types",
            "{bad",
            check=2,
        ).stderr
    )


def test_sql(tmp_path: Path, cli: Any) -> None:
    pytest.importorskip(
        "tensorhouse.connector.duckdb",
        reason="the SQL connector (tensorhouse.connector) is not importable yet",
    )
    pytest.importorskip(
        "tensorhouse.connector.datafusion", reason="DataFusion connector not importable"
    )
    make_folder(tmp_path / "src", per_class=3)
    uri = str(tmp_path / "pets")
    th.ingest.imagefolder(str(tmp_path / "src"), uri, progress=False)
    query = "SELECT label, count(*) AS n FROM pets GROUP BY label ORDER BY label"
    for engine, call in (("duckdb", run), ("datafusion", cli)):
        out = call("sql", query, "--dataset", f"pets={uri}", "--engine", engine).stdout.splitlines()
        assert out[0].split() == ["label", "n"] and [r.split() for r in out[2:5]] == [
            ["0", "3"],
            ["1", "3"],
            ["2", "3"],
        ]
        assert out[-1] == "(3 rows)"
    shown = run(
        "sql",
        "SELECT path, image FROM pets ORDER BY path",
        "-d",
        f"pets={uri}",
        "--engine",
        "datafusion",
        "--limit",
        "2",
    ).stdout
    assert (
        "<jpeg " in shown
        and " KB>" in shown
        and "cat/000.jpg" in shown
        and "more not shown" in shown
    )
    cli(
        "sql",
        "SELECT path, label FROM pets WHERE label = 1",
        "-d",
        f"pets={uri}",
        "-o",
        str(tmp_path / "o.parquet"),
    )
    assert pq.read_table(tmp_path / "o.parquet").column("path").to_pylist() == [
        f"dog/{i:03d}.jpg" for i in range(3)
    ]
    cli("sql", "SELECT path, label FROM pets", "-d", f"pets={uri}", "-o", str(tmp_path / "o.csv"))
    assert (tmp_path / "o.csv").read_text().count("\n") == 10
    cli(
        "sql",
        "SELECT image, label FROM pets WHERE label = 2",
        "-d",
        f"pets={uri}",
        "--engine",
        "datafusion",
        "-o",
        str(tmp_path / "fish"),
    )
    fish = th.open(str(tmp_path / "fish"))
    assert len(fish) == 3 and fish.schema["image"] == th.Image("jpeg")
    assert run("sql", "SELECT * FROM nope", "-d", f"pets={uri}", check=1).stderr.startswith(
        "error: "
    )
    assert cli("sql", "SELECT 1", "-d", "pets", check=2).stderr


def _log_entries(uri: Path) -> int:
    return len([p for p in (uri / "_log").glob("*.json")]) if (uri / "_log").exists() else 0


# Fault injection: every put-if-absent commit (os.link of the staged file) takes 50 ms longer,
# so the 80 one-row commits take seconds however fast or loaded the machine is.
_SLOW_COMMITS = """
import os, time
_link = os.link
def _slow_link(*args, **kwargs):
    _link(*args, **kwargs)
    time.sleep(0.05)
os.link = _slow_link
from tensorhouse.cli import main
main()
"""


def _slow_ingest(tmp_path: Path, uri: Path) -> subprocess.Popen[str]:
    """An ingest of many one-row batches (one slowed commit each), so a signal lands mid-way."""
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            _SLOW_COMMITS,
            "ingest",
            "imagefolder",
            str(tmp_path / "src"),
            str(uri),
            "--batch-rows",
            "1",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=ENV,
    )


def _wait_for_commits(proc: subprocess.Popen[str], uri: Path, n: int) -> None:
    deadline = time.monotonic() + 60
    while _log_entries(uri) < n:
        assert proc.poll() is None, f"ingest ended before {n} commits: {proc.communicate()}"
        assert time.monotonic() < deadline
        time.sleep(0.005)


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_interrupted_ingest_resumes_exactly_once(tmp_path: Path) -> None:
    files = make_folder(tmp_path / "src", classes=("a", "b"), per_class=40)  # 80 one-row commits
    uri = tmp_path / "ds"
    # Ctrl-C: exit 130 with the version to resume from
    proc = _slow_ingest(tmp_path, uri)
    _wait_for_commits(proc, uri, 4)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, (out, err)
    version = th.open(str(uri)).version
    assert f"interrupted: dataset at version {version}; re-run to resume" in err
    assert 3 <= version < 80
    # SIGKILL (a crash) mid-way: nothing to clean up, the log is the truth
    proc = _slow_ingest(tmp_path, uri)
    _wait_for_commits(proc, uri, version + 4)
    proc.kill()
    proc.wait(timeout=60)
    killed_at = th.open(str(uri)).version
    assert killed_at < 80, "the ingest finished before it could be killed"
    done = run("ingest", "imagefolder", str(tmp_path / "src"), str(uri), "--batch-rows", "1").stdout
    assert f"{killed_at} already committed" in done
    ds = th.open(str(uri))
    paths = ds.take(np.arange(len(ds)), columns=["path"])["path"]
    assert paths == sorted(files)  # every file exactly once, in order
