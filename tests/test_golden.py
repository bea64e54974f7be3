"""Golden datasets: every on-disk format version ever written must still read, value for value."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

import tensorhouse as th

sys.path.insert(0, str(Path(__file__).parent / "golden"))
from make_golden import SCHEMA, TABULAR, expected, tabular

GOLDEN = Path(__file__).parent / "golden"


@pytest.fixture(params=["v1", "v2"])  # v1: chunk format 1 (offset per sample); v2: chunk format 2
def v1(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    dst = tmp_path / request.param
    shutil.copytree(GOLDEN / request.param, dst)  # read a copy: tests never touch the golden files
    return str(dst)


def test_v1_reads_value_for_value(v1: str) -> None:
    ds = th.open(v1)
    assert (
        ds.version == 4
        and len(ds) == 3
        and dict(ds.schema) == {k: th.types.as_type(v) for k, v in SCHEMA.items()}
    )
    rows = expected()
    table = ds.to_table()
    for name in ("label", "score", "flag", "caption", "blob", "emb", "grid"):
        assert table.column(name).to_pylist() == rows[name], name
    got = ds.take([0, 1, 2])
    assert got["meta"] == rows["meta"]
    for name in ("ragged", "boxes", "png"):
        for a, b in zip(got[name], rows[name], strict=True):
            assert np.asarray(a).tolist() == b or (np.asarray(a).size == 0 and not b), name
    assert [h.operation for h in ds.history()] == [
        "create",
        "append",
        "append",
        "delete",
        "restore",
    ]
    assert len(th.open(v1, version=3)) == 2 and len(th.open(v1, tag="golden")) == 3


def test_v1_accepts_new_writes(v1: str) -> None:
    ds = th.open(v1)
    ds.append(
        {
            k: v[:1]
            for k, v in {
                **expected(),
                "png": [np.zeros((2, 2, 3), np.uint8)],
                "ragged": [np.ones((1, 2), np.float32)],
                "boxes": [np.ones((1, 4), np.float32)],
            }.items()
        }
    )
    assert len(th.open(v1)) == 4


@pytest.fixture(params=["v3", "v4"])
def v3(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    # v3: chunk formats 2 and 3, the v2 columns plus every tabular type;
    # v4: the same columns, the tabular ones in group files (plain Parquet), and a checkpoint.
    dst = tmp_path / request.param
    shutil.copytree(GOLDEN / request.param, dst)
    return str(dst)


def test_v3_reads_every_tabular_type_value_for_value(v3: str) -> None:
    ds = th.open(v3)
    assert ds.version == 4 and len(ds) == 3
    assert dict(ds.schema) == {**{k: th.types.as_type(v) for k, v in SCHEMA.items()}, **TABULAR}
    want = tabular()
    table = ds.to_table()
    for name in TABULAR:
        assert table.schema.field(name).type == want.schema.field(name).type, name
        assert table.column(name).to_pylist() == want.column(name).to_pylist(), name
    rows = expected()
    for name in ("label", "score", "flag", "caption", "blob", "emb", "grid"):
        assert table.column(name).to_pylist() == rows[name], name
    assert len(th.open(v3, version=3)) == 2 and len(th.open(v3, tag="golden")) == 3
    groups = list(Path(v3, "data", "_groups").glob("*.parquet"))
    if Path(v3).name == "v4":  # two appends: two group files, each with every tabular column
        assert len(groups) == 2 and list(Path(v3, "_log").glob("*.checkpoint"))
        files = ds.native_files(["label", "score", "caption", *TABULAR])
        assert files is not None and [f.rows for f in files] == [2, 1]
    else:
        assert not groups
