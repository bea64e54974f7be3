"""The Dataset API: create, append, open, take, scans, versions, bad input."""

from __future__ import annotations

import itertools
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pytest

import tensorhouse as th
from tensorhouse.synth import scene

SCHEMA = {
    "image": th.Image("jpeg"),
    "label": th.ClassLabel(["cat", "dog", "bird"]),
    "boxes": th.BBox(),
    "embedding": th.Embedding(16),
    "caption": th.Text(),
    "mask": th.Tensor("uint8", (None, None)),
    "meta": th.Json(),
    "score": "float32",
}


def make_rows(n: int, seed: int = 0) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    imgs = [scene(rng, int(rng.integers(16, 48)), int(rng.integers(16, 48)))[0] for _ in range(n)]
    return {
        "image": imgs,
        "label": rng.integers(0, 3, n),
        "boxes": [rng.random((int(rng.integers(0, 4)), 4)).astype(np.float32) for _ in range(n)],
        "embedding": rng.random((n, 16)).astype(np.float32),
        "caption": [f"row {i} ✓" for i in range(n)],
        "mask": [
            rng.integers(0, 2, (int(rng.integers(0, 5)), 3)).astype(np.uint8) for _ in range(n)
        ],
        "meta": [{"i": i, "tags": ["a"] * (i % 3)} for i in range(n)],
        "score": rng.random(n).astype(np.float32),
    }


@pytest.fixture(params=["local", "memory"])
def uri(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "local":
        return str(tmp_path / "ds")
    return f"memory://test-dataset-{request.node.name}"


def test_create_append_open_take(uri: str) -> None:
    ds = th.create(uri, SCHEMA, chunk_bytes=4096)  # small chunks: many per column
    rows = make_rows(50)
    assert ds.append(rows) == 1
    assert ds.append(make_rows(10, seed=1)) == 2
    ds = th.open(uri)
    assert (len(ds), ds.version, ds.columns) == (60, 2, list(SCHEMA))
    idx = [59, 3, 0, 3, 49, 50]
    got = ds.take(idx)
    assert isinstance(got["label"], np.ndarray) and isinstance(got["embedding"], np.ndarray)
    assert got["embedding"].shape == (6, 16)
    more = make_rows(10, seed=1)
    expect = {k: [(rows[k][i] if i < 50 else more[k][i - 50]) for i in idx] for k in SCHEMA}
    np.testing.assert_array_equal(got["label"], expect["label"])
    np.testing.assert_array_equal(got["embedding"], np.stack(expect["embedding"]))
    np.testing.assert_array_equal(got["score"], np.array(expect["score"], np.float32))
    assert got["caption"] == expect["caption"] and got["meta"] == expect["meta"]
    for k in ("boxes", "mask"):
        for a, b in zip(got[k], expect[k], strict=True):
            np.testing.assert_array_equal(a, b)
    for a, b in zip(got["image"], expect["image"], strict=True):
        mse = float(np.mean((a.astype(float) - b) ** 2))
        assert (
            a.shape == b.shape and 10 * np.log10(255**2 / mse) > 25
        )  # jpeg q90, 4:2:0, tiny images


def test_getitem_negative_index_and_rowids(uri: str) -> None:
    ds = th.create(uri, {"x": "int64"})
    ds.append({"x": np.arange(5)})
    ds.append({"x": np.arange(5, 8)})
    assert ds[-1]["x"] == 7 and ds[0]["x"] == 0
    rid = ds.take([0, 4, 5, 7], columns=["_rowid"])["_rowid"]
    assert rid.tolist() == [0, 4, 1 << 32, (1 << 32) + 2]
    assert ds.take_rowids(rid[::-1], columns=["x"])["x"].tolist() == [7, 5, 4, 0]
    with pytest.raises(KeyError, match="row id"):
        ds.take_rowids([3 << 32])
    with pytest.raises(IndexError):
        ds.take([8])
    with pytest.raises(IndexError):
        ds[-9]


def test_to_batches_streams_projected_columns(uri: str) -> None:
    ds = th.create(uri, SCHEMA, chunk_bytes=2048)
    rows = make_rows(40)
    ds.append(rows)
    batches = list(ds.to_batches(["label", "caption", "_rowid"], batch_size=7))
    assert [b.num_rows for b in batches] == [7, 7, 7, 7, 7, 5]
    table = pa.Table.from_batches(batches)
    assert table.column_names == ["label", "caption", "_rowid"]
    assert table.column("label").to_pylist() == list(rows["label"])
    assert table.column("_rowid").to_pylist() == list(range(40))
    full = ds.to_table()
    assert full.schema == ds.arrow_schema()
    assert full.column("image").type == pa.binary()
    assert th.Schema.from_arrow(full.schema) == ds.schema  # types travel in field metadata


def test_arrow_and_row_inputs(uri: str) -> None:
    ds = th.create(uri, {"name": th.Text(), "v": th.Embedding(2), "n": "int32"})
    table = pa.table(
        {
            "name": ["a", "b"],
            "v": pa.array([[1, 2], [3, 4]], pa.list_(pa.float32(), 2)),
            "n": [1, 2],
        }
    )
    ds.append(table)
    ds.append(table.to_batches()[0])
    ds.append([{"name": "c", "v": [5, 6], "n": 3}, {"name": None, "v": None, "n": None}])
    got = ds.to_table()
    assert got.column("name").to_pylist() == ["a", "b", "a", "b", "c", None]
    assert got.column("n").to_pylist() == [1, 2, 1, 2, 3, None]
    assert got.column("v").to_pylist()[-2:] == [[5.0, 6.0], None]


def test_time_travel_by_version(uri: str) -> None:
    ds = th.create(uri, {"x": "int64"})
    for i in range(3):
        ds.append({"x": [i] * (i + 1)})
    assert [len(th.open(uri, version=v)) for v in range(4)] == [0, 1, 3, 6]
    hist = th.open(uri).history()
    assert [h.operation for h in hist] == ["create", "append", "append", "append"]
    assert [h.num_rows for h in hist] == [0, 1, 3, 6]
    assert all(a.timestamp < b.timestamp for a, b in itertools.pairwise(hist))
    with pytest.raises(th.VersionNotFoundError, match="version 9"):
        th.open(uri, version=9)
    old = th.open(uri, version=1)
    ds.append({"x": [9]})
    assert len(old) == 1 and len(old.refresh()) == 7


def test_missing_dataset_and_existing_dataset(tmp_path: Path) -> None:
    with pytest.raises(th.DatasetNotFoundError) as err:
        th.open(str(tmp_path / "nope"))
    assert isinstance(err.value, FileNotFoundError) and "nope" in str(err.value)
    th.create(str(tmp_path / "d"), {"x": "int64"})
    with pytest.raises(th.DatasetExistsError):
        th.create(str(tmp_path / "d"), {"x": "int64"})
    assert th.create(str(tmp_path / "d"), {"x": "int64"}, exist_ok=True).version == 0
    with pytest.raises(th.DatasetExistsError, match="different schema"):
        th.create(str(tmp_path / "d"), {"y": "int64"}, exist_ok=True)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"x": [1], "y": [2]}, "unknown column"),
        ({}, "missing column"),
        ({"x": [1, 2], "t": ["a"]}, "different lengths"),
        ({"x": [1.5], "t": ["a"]}, "column 'x', row 0"),
        ({"x": [1], "t": [3]}, "column 't', row 0: expected str"),
        ("not data", "cannot append|expected a dict"),
    ],
)
def test_failed_append_leaves_dataset_at_previous_version(
    tmp_path: Path, data: Any, match: str
) -> None:
    uri = str(tmp_path / "d")
    ds = th.create(uri, {"x": "int64", "t": th.Text()})
    ds.append({"x": [1], "t": ["ok"]})
    with pytest.raises(th.SchemaError, match=match):
        ds.append(data)
    assert ds.version == 1 and len(ds) == 1
    again = th.open(uri)
    assert again.version == 1 and len(again) == 1
    assert not list((tmp_path / "d" / "data").glob("x/*"))[1:]  # validation precedes writes


def test_unknown_columns_in_reads(uri: str) -> None:
    ds = th.create(uri, {"x": "int64"})
    ds.append({"x": [1]})
    with pytest.raises(th.SchemaError, match="unknown column 'y'"):
        ds.take([0], columns=["y"])
    with pytest.raises(th.SchemaError):
        list(ds.to_batches(["y"]))
    with pytest.raises(th.SchemaError, match="list of names"):
        ds.take([0], columns="x")  # type: ignore[arg-type]


def test_concurrent_creators_exactly_one_wins(tmp_path: Path) -> None:
    uri = str(tmp_path / "race")
    results: list[str] = []

    def create() -> None:
        try:
            th.create(uri, {"x": "int64"})
            results.append("created")
        except th.DatasetExistsError:
            results.append("exists")

    threads = [threading.Thread(target=create) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(results) == ["created"] + ["exists"] * 4
    assert th.open(uri).version == 0


def test_concurrent_appenders_lose_nothing(tmp_path: Path) -> None:
    uri = str(tmp_path / "appends")
    th.create(uri, {"w": "int32", "i": "int32"})

    def writer(w: int) -> None:
        ds = th.open(uri)
        for i in range(10):
            ds.append({"w": [w], "i": [i]})

    threads = [threading.Thread(target=writer, args=(w,)) for w in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    ds = th.open(uri)
    assert ds.version == 40 and len(ds) == 40
    t = ds.to_table()
    pairs = sorted(zip(t.column("w").to_pylist(), t.column("i").to_pylist(), strict=True))
    assert pairs == [(w, i) for w in range(4) for i in range(10)]
    assert not list(Path(uri).rglob(".tmp-*"))


def test_large_samples_and_empty_append(tmp_path: Path) -> None:
    ds = th.create(str(tmp_path / "big"), {"t": th.Tensor("float32", (None,))}, chunk_bytes=1 << 16)
    big = np.arange(200_000, dtype=np.float32)  # 800 KB: over a 64 KiB chunk
    ds.append({"t": [np.ones(3, np.float32), big, np.zeros(0, np.float32)]})
    got = th.open(str(tmp_path / "big")).take([1, 2])["t"]
    np.testing.assert_array_equal(got[0], big)
    assert got[1].shape == (0,)
    v = ds.version
    ds.append({"t": []})
    assert len(ds) == 3 and ds.version == v  # an empty append commits nothing


def test_s3_round_trip(s3_uri: tuple[str, dict[str, Any]]) -> None:
    uri, opts = s3_uri
    ds = th.create(uri, SCHEMA, storage_options=opts, chunk_bytes=4096)
    rows = make_rows(12)
    ds.append(rows)
    again = th.open(uri, storage_options=opts)
    got = again.take([11, 2], columns=["label", "caption", "embedding"])
    assert got["caption"] == [rows["caption"][11], rows["caption"][2]]
    np.testing.assert_array_equal(got["embedding"], rows["embedding"][[11, 2]])
    assert sum(b.num_rows for b in again.to_batches(["image"])) == 12


def test_import_is_light() -> None:
    code = "import sys, tensorhouse; print(sorted(m for m in ('duckdb', 'datafusion', 'torch', 's3fs') if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
