"""th.export and pyarrow.dataset.write_dataset: files that other tools read, and types that come back."""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.parquet as pq
import pytest

import tensorhouse as th
from tensorhouse.connector.arrow_dataset import arrow_dataset


@pytest.fixture
def pets(tmp_path: Path) -> th.Dataset:
    ds = th.create(
        str(tmp_path / "pets"),
        {
            "image": th.Image("png"),
            "label": th.ClassLabel(["cat", "dog"]),
            "boxes": th.BBox("xywh"),
            "emb": th.Embedding(3),
            "mask": th.Tensor("uint8", (2, 2)),
            "caption": th.Text(),
            "score": "float16",
        },
    )
    rng = np.random.default_rng(0)
    n = 6
    ds.append(
        {
            "image": [rng.integers(0, 255, (4, 5, 3), dtype=np.uint8) for _ in range(n)],
            "label": [0, 1, 0, 1, 1, 1],
            "boxes": [np.ones((i % 3, 4), np.float32) * i for i in range(n)],
            "emb": rng.random((n, 3), dtype=np.float32),
            "mask": np.zeros((n, 2, 2), np.uint8),
            "caption": [f"pet {i}" for i in range(n)],
            "score": np.arange(n, dtype=np.float16),
        }
    )
    return ds


def test_parquet_round_trip_keeps_types(pets: th.Dataset, tmp_path: Path) -> None:
    out = tmp_path / "pets.parquet"
    report = th.export(pets.uri, str(out))
    assert (report.rows, report.files) == (6, 1) and pq.read_table(out).num_rows == 6
    th.ingest.parquet(str(out), str(tmp_path / "back"), progress=False)
    back = th.open(str(tmp_path / "back"))
    assert back.schema == pets.schema
    a, b = pets.take(range(6)), back.take(range(6))
    for col in pets.columns:
        if isinstance(a[col], np.ndarray):
            np.testing.assert_array_equal(a[col], b[col])
        else:
            assert all(np.array_equal(x, y) for x, y in zip(a[col], b[col], strict=True)), col


def test_partitioned_streaming_export(pets: th.Dataset, tmp_path: Path) -> None:
    dest = tmp_path / "by-label"
    report = th.export(
        pets,
        str(dest),
        partition_by=["label"],
        columns=["label", "emb", "caption"],
        filter=pc.field("caption") != "pet 0",
        max_rows_per_file=2,
    )
    assert report.rows == 5 and report.files >= 3
    assert sorted(p.name for p in dest.iterdir()) == ["label=0", "label=1"]
    t = pads.dataset(str(dest), partitioning="hive").to_table()
    assert t.num_rows == 5 and sorted(t.column("caption").to_pylist()) == [
        f"pet {i}" for i in range(1, 6)
    ]
    assert not list(tmp_path.glob("*.tmp-*"))
    with pytest.raises(th.TensorhouseError, match="already exists"):
        th.export(pets, str(dest), partition_by=["label"])
    assert th.export(pets, str(dest), overwrite=True, format="arrow").rows == 6


def test_write_dataset_on_the_arrow_dataset(pets: th.Dataset, tmp_path: Path) -> None:
    ad = arrow_dataset(pets.uri, rowid=False)
    pads.write_dataset(
        ad,
        str(tmp_path / "wd"),
        format="parquet",
        partitioning=["label"],
        partitioning_flavor="hive",
    )
    t = pads.dataset(str(tmp_path / "wd"), partitioning="hive").to_table()
    assert t.num_rows == 6 and t.schema.field("image").metadata[b"tensorhouse.type"]


def test_csv_is_checked_before_writing(pets: th.Dataset, tmp_path: Path) -> None:
    out = tmp_path / "pets.csv"
    with pytest.raises(th.UnsupportedError, match="emb"):
        th.export(pets, str(out))
    assert not out.exists() and not list(tmp_path.glob("pets.csv*"))
    assert th.export(pets, str(out), columns=["label", "caption", "score"]).rows == 6
    assert out.read_text().splitlines()[0] == '"label","caption","score"'
    with pytest.raises(th.UnsupportedError, match=r"\.json"):
        th.export(pets, str(tmp_path / "x.json"))
    assert not (tmp_path / "x.json").exists()


def test_failed_export_leaves_no_file(
    pets: th.Dataset, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    mod = importlib.import_module("tensorhouse.connector.arrow_dataset")

    real = mod.TensorhouseScanner.to_batches

    def failing(self: object) -> object:  # fault injection: the read fails after one batch
        yield from list(real(self))[:1]  # type: ignore[arg-type]
        raise OSError("disk gone")

    monkeypatch.setattr(mod.TensorhouseScanner, "to_batches", failing)
    for dest in ("pets.parquet", "dir"):
        with pytest.raises(OSError, match="disk gone"):
            th.export(pets, str(tmp_path / dest))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pets"]


def test_export_to_s3(pets: th.Dataset, s3_uri: tuple[str, dict[str, object]]) -> None:
    uri, options = s3_uri
    bucket = uri.split("/")[2]
    one = th.export(pets, f"s3://{bucket}/pets.parquet", dest_storage_options=options)
    parts = th.export(
        pets, f"s3://{bucket}/by-label", partition_by=["label"], dest_storage_options=options
    )
    assert (one.rows, parts.rows) == (6, 6)
    import s3fs

    fs = s3fs.S3FileSystem(**options)
    names = sorted(p.split("/", 1)[1] for p in fs.find(bucket))
    assert "pets.parquet" in names and any(n.startswith("by-label/label=0/") for n in names)
    assert not [n for n in names if ".tmp-" in n]
    with fs.open(f"{bucket}/pets.parquet", "rb") as f:
        assert pq.read_table(f).num_rows == 6
