"""Hugging Face datasets as its users work with them: features, formats, .map(), and back into tensorhouse."""

from __future__ import annotations

from pathlib import Path

import datasets
import numpy as np
import pytest

import tensorhouse as th


@pytest.fixture(autouse=True)
def _quiet() -> None:
    datasets.disable_progress_bars()


@pytest.fixture
def pets(tmp_path: Path) -> th.Dataset:
    ds = th.create(
        str(tmp_path / "pets"),
        {
            "image": th.Image("jpeg"),
            "thumb": th.Image("png"),
            "label": th.ClassLabel(["cat", "dog"]),
            "boxes": th.BBox(),
            "emb": th.Embedding(3),
            "mask": th.Tensor("uint8", (2, 2)),
            "points": th.Tensor("float32", (None, 3)),
            "caption": th.Text(),
            "meta": th.Json(),
            "score": "float16",
        },
    )
    rng = np.random.default_rng(0)
    ds.append(
        {
            "image": [rng.integers(0, 255, (16, 12, 3), dtype=np.uint8) for _ in range(3)],
            "thumb": [np.full((4, 4, 3), i, np.uint8) for i in range(3)],
            "label": [1, None, 0],
            "boxes": [np.zeros((0, 4), np.float32), np.ones((2, 4), np.float32), None],
            "emb": np.arange(9, dtype=np.float32).reshape(3, 3),
            "mask": np.arange(12, dtype=np.uint8).reshape(3, 2, 2),
            "points": [
                np.zeros((0, 3), np.float32),
                np.ones((2, 3), np.float32),
                np.ones((1, 3), np.float32),
            ],
            "caption": ["a", None, "c"],
            "meta": [{"k": [1]}, None, 3],
            "score": [0.5, 1.0, 2.0],
        }
    )
    return ds


def test_features_are_real(pets: th.Dataset) -> None:
    hf = th.to_huggingface(pets.uri)
    f = hf.features
    assert isinstance(f["image"], datasets.Image) and isinstance(f["thumb"], datasets.Image)
    assert isinstance(f["label"], datasets.ClassLabel) and f["label"].names == ["cat", "dog"]
    assert f["emb"] == datasets.List(datasets.Value("float32"), length=3)
    assert f["mask"] == datasets.Array2D((2, 2), "uint8") and f["points"] == datasets.Array2D(
        (None, 3), "float32"
    )
    assert f["boxes"] == datasets.List(datasets.List(datasets.Value("float32"), length=4))
    assert isinstance(f["meta"], datasets.Json) and f["score"] == datasets.Value("float16")
    row = hf[0]
    assert (
        row["image"].size == (12, 16)
        and row["label"] == 1
        and row["boxes"] == []
        and row["meta"] == {"k": [1]}
    )
    assert f["label"].int2str(hf[2]["label"]) == "cat" and hf[1]["label"] is None
    np_rows = hf.with_format("numpy")[0:3]
    assert np_rows["mask"].shape == (3, 2, 2) and np_rows["emb"].dtype == np.float32
    torch_rows = hf.with_format("torch", columns=["emb", "label"])[0]
    assert tuple(torch_rows["emb"].shape) == (3,)


def test_columns_and_streaming(pets: th.Dataset, tmp_path: Path) -> None:
    hf = th.to_huggingface(pets, ["label", "emb", "mask", "thumb"], streaming=True)
    assert isinstance(hf, datasets.IterableDataset)
    rows = list(hf)
    assert [r["label"] for r in rows] == [1, None, 0] and rows[2]["emb"] == [6.0, 7.0, 8.0]
    th.ingest.huggingface(
        hf, str(tmp_path / "it"), progress=False, batch_rows=2
    )  # an IterableDataset back
    back = th.open(str(tmp_path / "it"))
    assert back.schema == th.Schema(
        tuple((n, pets.schema[n]) for n in ("label", "emb", "mask", "thumb"))
    )
    np.testing.assert_array_equal(
        back.take([2], columns=["mask"])["mask"], pets.take([2], columns=["mask"])["mask"]
    )


def test_round_trip_keeps_types_and_values(pets: th.Dataset, tmp_path: Path) -> None:
    hf = th.to_huggingface(pets)
    report = th.ingest.huggingface(hf, str(tmp_path / "back"), progress=False)
    back = th.open(str(tmp_path / "back"))
    assert report.rows == 3 and back.schema == pets.schema
    a, b = pets.take(range(3), decode=False), back.take(range(3), decode=False)
    assert a["image"] == b["image"]  # JPEG bytes kept as they were, not re-encoded
    for col in ("label", "emb", "mask"):
        np.testing.assert_array_equal(a[col], b[col])
    assert [x is None or x.shape for x in b["boxes"]] == [(0, 4), (2, 4), True]
    assert b["meta"] == a["meta"] and b["caption"] == a["caption"]


def test_map_output_and_plain_hf_data_ingest(tmp_path: Path) -> None:
    features = datasets.Features(
        {
            "boxes": datasets.List(datasets.List(datasets.Value("float32"), length=4)),
            "label": datasets.ClassLabel(names=["a", "b", "c"]),
            "vec": datasets.List(datasets.Value("float32"), length=2),
        }
    )
    hf = datasets.Dataset.from_dict(
        {"boxes": [[], [[1, 2, 3, 4]]], "label": [2, 0], "vec": [[1, 2], [3, 4]]}, features=features
    )
    mapped = hf.map(lambda r: {"boxes": r["boxes"][:1], "vec": [v * 2 for v in r["vec"]]})
    th.ingest.huggingface(mapped, str(tmp_path / "m"), progress=False)
    ds = th.open(str(tmp_path / "m"))
    assert ds.schema == th.Schema.of(
        {"boxes": th.BBox(), "label": th.ClassLabel(["a", "b", "c"]), "vec": th.Embedding(2)}
    )
    assert ds.take([0], columns=["boxes"])["boxes"][0].shape == (0, 4) and ds.take([1])[
        "vec"
    ].tolist() == [[6, 8]]
    # th.write on the Arrow table behind a mapped dataset (no tensorhouse metadata): boxes stay boxes
    out = th.write(str(tmp_path / "w"), mapped.data.table)
    assert out.schema["boxes"] == th.BBox() and out.schema["vec"] == th.Embedding(2)
