"""Picklable handles: Dataset, the Arrow dataset, its fragments and scanners travel by
(uri, branch, version, storage options) and reopen lazily in the receiving process."""

from __future__ import annotations

import multiprocessing
import pickle
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.compute as pc
import pytest

import tensorhouse as th
from tensorhouse.connector.arrow_dataset import arrow_dataset

ROOT = Path(__file__).resolve().parents[1]


def _make(uri: str, **kw: Any) -> th.Dataset:
    ds = th.create(uri, {"x": "int64", "emb": th.Embedding(3), "img": th.Image("png")}, **kw)
    rng = np.random.default_rng(0)
    for k in range(3):
        ds.append(
            {
                "x": np.arange(10) + 10 * k,
                "emb": rng.random((10, 3)).astype("float32"),
                "img": [np.full((4, 4, 3), k, np.uint8)] * 10,
            }
        )
    return ds


def _in_child(payload: bytes, code: str) -> str:
    """Unpickle ``payload`` as ``obj`` in a fresh interpreter and print ``code``'s value."""
    prog = f"import pickle, sys; obj = pickle.loads(sys.stdin.buffer.read()); print(repr(({code})))"
    out = subprocess.run(
        [sys.executable, "-c", prog],
        input=payload,
        capture_output=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert out.returncode == 0, out.stderr.decode()
    return out.stdout.decode().strip()


def test_dataset_pickles_small_and_reopens_lazily(tmp_path: Path) -> None:
    ds = _make(str(tmp_path / "d"))
    old = ds.checkout(2)
    data = pickle.dumps(old)
    assert len(data) < 400  # no snapshot, store or lock inside
    back = pickle.loads(data)
    assert "_snapshot" not in back.__dict__  # not opened yet
    assert back.version == 2 and len(back) == 20
    assert back.take([15], columns=["x"])["x"].tolist() == [15]
    assert pickle.loads(pickle.dumps(back)).version == 2  # an unpickled one pickles again


def test_dataset_reopens_in_another_process(tmp_path: Path) -> None:
    ds = _make(str(tmp_path / "d"))
    branch = ds.branch("b")
    branch.append(
        {"x": [99], "emb": np.zeros((1, 3), "float32"), "img": [np.zeros((2, 2, 3), np.uint8)]}
    )
    assert _in_child(pickle.dumps(ds.checkout(1)), "obj.version, len(obj)") == "(1, 10)"
    assert (
        _in_child(
            pickle.dumps(branch), "obj.branch_name, obj.version, obj.take([30])['x'].tolist()"
        )
        == "('b', 4, [99])"
    )


def test_memory_dataset_reopens_in_the_same_process() -> None:
    ds = _make("memory://pickle-mem")
    back = pickle.loads(pickle.dumps(ds))
    assert back.version == 3 and back[29]["x"] == 29
    # Another process cannot see this process's memory store, and says so on first use.
    out = subprocess.run(
        [
            sys.executable,
            "-c",
            "import pickle, sys; obj = pickle.loads(sys.stdin.buffer.read()); len(obj)",
        ],
        input=pickle.dumps(ds),
        capture_output=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )
    assert out.returncode != 0 and b"DatasetNotFoundError" in out.stderr


def test_unpickled_dataset_failing_to_open_says_why_and_can_retry(tmp_path: Path) -> None:
    ds = _make(str(tmp_path / "d"))
    data = pickle.dumps(ds)
    (tmp_path / "d").rename(tmp_path / "moved")
    back = pickle.loads(data)
    with pytest.raises(th.DatasetNotFoundError):
        len(back)
    (tmp_path / "moved").rename(tmp_path / "d")
    assert len(back) == 30


def test_writes_on_an_unpickled_dataset_commit(tmp_path: Path) -> None:
    ds = _make(str(tmp_path / "d"))
    back = pickle.loads(pickle.dumps(ds))
    v = back.append(
        {"x": [100], "emb": np.zeros((1, 3), "float32"), "img": [np.zeros((2, 2, 3), np.uint8)]}
    )
    assert v == 4 and len(th.open(str(tmp_path / "d"))) == 31
    again = pickle.loads(pickle.dumps(ds))  # the same version from the cache: a separate object
    assert again.version == 3 and len(again) == 30


def test_arrow_dataset_fragments_and_scanners_pickle(tmp_path: Path) -> None:
    uri = str(tmp_path / "d")
    _make(uri)
    a = arrow_dataset(uri, version=2, rowid=True).filter(pc.field("x") >= 5)
    back = pickle.loads(pickle.dumps(a))
    assert back.version == 2
    assert back.to_table(columns=["x"]).column("x").to_pylist() == list(range(5, 20))
    frags = a.get_fragments(pc.field("x") < 12)
    assert [(f.start, f.stop) for f in frags] == [
        (0, 10),
        (10, 20),
    ]  # statistics keep two of the two
    f = pickle.loads(pickle.dumps(frags[1]))
    assert f.to_table(columns=["x"], filter=pc.field("x") < 12).column("x").to_pylist() == [10, 11]
    sc = a.scanner(columns=["_rowid", "x"], filter=pc.field("x") < 7)
    s = pickle.loads(pickle.dumps(sc))
    assert "_pinned" not in vars(s)  # lazy: the scan is planned (the dataset reopened) on first use
    assert s.to_table().to_pydict() == sc.to_table().to_pydict()
    assert s.projected_schema == sc.projected_schema and s.ranges == sc.ranges
    assert _in_child(pickle.dumps(frags[0]), "obj.to_table(columns=['x']).num_rows") == "5"


def test_refreshing_arrow_dataset_fragment_keeps_its_version(tmp_path: Path) -> None:
    uri = str(tmp_path / "d")
    ds = _make(uri)
    live = arrow_dataset(uri, refresh=True)
    frag = live.get_fragments()[-1]
    ds.append(
        {"x": [500], "emb": np.zeros((1, 3), "float32"), "img": [np.zeros((2, 2, 3), np.uint8)]}
    )
    assert pickle.loads(pickle.dumps(frag)).to_table(columns=["x"]).num_rows == 10
    assert (
        pickle.loads(pickle.dumps(live)).count_rows() == 31
    )  # a refreshing dataset stays refreshing


def test_s3_dataset_and_fragment_pickle(s3_uri: tuple[str, dict[str, Any]]) -> None:
    uri, options = s3_uri
    ds = _make(uri, storage_options=options)
    data = pickle.dumps(ds.checkout(2))
    assert (
        _in_child(data, "obj.version, len(obj), obj.take([19], columns=['x'])['x'].tolist()")
        == "(2, 20, [19])"
    )
    frag = arrow_dataset(uri, storage_options=options).get_fragments()[2]
    assert (
        _in_child(pickle.dumps(frag), "obj.to_table(columns=['x']).column('x').to_pylist()[:2]")
        == "[20, 21]"
    )


class _Rows:
    """A torch map-style dataset over a tensorhouse Dataset (pickled into spawn-started workers)."""

    def __init__(self, ds: th.Dataset) -> None:
        self.ds = ds

    def __len__(self) -> int:
        return len(self.ds)

    def __getitem__(self, i: int) -> dict[str, Any]:
        row = self.ds[i]
        return {"x": row["x"], "img": row["img"]}


def test_torch_dataloader_spawn_workers_read_the_dataset(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    ds = _make(str(tmp_path / "d"))
    loader = torch.utils.data.DataLoader(
        _Rows(ds.checkout(2)),
        batch_size=4,
        num_workers=2,
        multiprocessing_context=multiprocessing.get_context("spawn"),
    )
    xs = [int(v) for b in loader for v in b["x"]]
    assert xs == list(range(20))
