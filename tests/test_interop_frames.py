"""pandas and Polars as their users hand data over, and Arrow data from other tools (types from the type)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
import pytest

import tensorhouse as th
from tensorhouse.types import infer_from_arrow


@pytest.fixture
def pets() -> th.Dataset:
    ds = th.create(
        f"memory://frames-{np.random.randint(1 << 30)}",
        {
            "image": th.Image("png"),
            "label": th.ClassLabel(["cat", "dog"]),
            "boxes": th.BBox(),
            "emb": th.Embedding(3),
            "caption": th.Text(),
            "meta": th.Json(),
            "score": "float32",
            "n": "int64",
        },
    )
    img = np.arange(48, dtype=np.uint8).reshape(4, 4, 3)
    ds.append(
        {
            "image": [img, None, img],
            "label": [1, None, 0],
            "boxes": [np.zeros((0, 4), np.float32), np.ones((2, 4), np.float32), None],
            "emb": np.arange(9, dtype=np.float32).reshape(3, 3),
            "caption": ["a", None, "c"],
            "meta": [{"k": 1}, None, [1, 2]],
            "score": [0.5, None, 1.5],
            "n": [1, None, 3],
        }
    )
    return ds


def test_to_pandas_types(pets: th.Dataset) -> None:
    df = pets.to_pandas(with_rowid=True)
    assert list(df.columns) == [*pets.columns, "_rowid"]
    assert isinstance(df["label"].dtype, pd.CategoricalDtype) and list(
        df["label"].cat.categories
    ) == ["cat", "dog"]
    assert (
        df["label"].tolist()[0] == "dog"
        and pd.isna(df["label"][1])
        and df["label"].cat.codes.tolist() == [1, -1, 0]
    )
    assert (
        df["boxes"][0].shape == (0, 4) and df["boxes"][1].shape == (2, 4) and df["boxes"][2] is None
    )
    assert df["emb"][2].tolist() == [6.0, 7.0, 8.0] and df["emb"][2].dtype == np.float32
    assert df["caption"].tolist()[0] == "a" and pd.isna(df["caption"][1])
    assert df["meta"].tolist() == [{"k": 1}, None, [1, 2]]
    assert str(df["n"].dtype) == "Int64" and pd.isna(df["n"][1]) and df["n"][2] == 3
    assert (
        isinstance(df["image"][0], bytes)
        and df["image"][0].startswith(b"\x89PNG")
        and df["image"][1] is None
    )
    decoded = pets.to_pandas(["image", "n"], rows=[2, 0], decode=True)
    assert decoded["image"][0].shape == (4, 4, 3) and decoded["n"].tolist() == [3, 1]
    with pytest.raises(th.SchemaError, match="nope"):
        pets.to_pandas(["nope"])
    with pytest.raises(IndexError):
        pets.to_pandas(rows=[3])


def test_pandas_round_trip_through_append_and_write(pets: th.Dataset) -> None:
    df = pets.to_pandas()
    v = pets.append(df)  # a DataFrame appends like a dict of columns
    back = th.open(pets.uri, version=v).to_pandas(rows=[3, 4, 5])
    for col in ("label", "caption", "meta", "n", "image"):
        assert back[col].tolist()[0] == df[col].tolist()[0], col
    assert back["boxes"][0].shape == (0, 4) and back["boxes"][2] is None
    out = th.write(f"{pets.uri}-copy", df.drop(columns=["image", "meta"]))
    assert out.schema["label"] == th.ClassLabel(["cat", "dog"])  # a categorical of names
    assert out.schema["boxes"] == th.BBox() and out.schema["emb"] == th.Embedding(3)
    assert out.to_pandas()["n"].tolist()[::2] == [1, 3]


def test_polars_frames_append_and_write(pets: th.Dataset) -> None:
    frame = pl.DataFrame(
        {"boxes": [[], [[1.0, 2, 3, 4]]], "emb": np.ones((2, 3), np.float32), "y": [1, 2]},
        schema={
            "boxes": pl.List(pl.Array(pl.Float32, 4)),
            "emb": pl.Array(pl.Float32, 3),
            "y": pl.Int64,
        },
    )
    ds = th.write(f"{pets.uri}-polars", frame)
    assert ds.schema["boxes"] == th.BBox() and ds.schema["emb"] == th.Embedding(3)
    ds.append(frame)
    boxes = ds.take([0, 3], columns=["boxes"])["boxes"]
    assert boxes[0].shape == (0, 4) and boxes[1].tolist() == [[1, 2, 3, 4]]


@pytest.mark.parametrize(
    ("arrow_type", "expected"),
    [
        (pa.list_(pa.list_(pa.float32(), 4)), th.BBox()),
        (pa.large_list(pa.list_(pa.float32(), 4)), th.BBox()),
        (pa.large_list(pa.large_list(pa.float64())), th.Tensor("float64", (None, None))),
        (pa.list_(pa.list_(pa.float64(), 4)), th.Tensor("float64", (None, 4))),
        (pa.list_(pa.float16(), 8), th.Embedding(8, dtype="float16")),
        (pa.list_(pa.list_(pa.uint8(), 3), 2), th.Tensor("uint8", (2, 3))),
        (pa.fixed_shape_tensor(pa.float32(), (2, 3)), th.Tensor("float32", (2, 3))),
    ],
)
def test_inference_from_the_type(arrow_type: pa.DataType, expected: th.ColumnType) -> None:
    assert infer_from_arrow(arrow_type) == expected


def test_boxes_with_empty_first_rows_write(tmp_path: object) -> None:
    # What pandas/Polars/HF .map() return without our metadata: the first rows hold no box.
    boxes = pa.array([[], [], [[1, 2, 3, 4]], None], pa.list_(pa.list_(pa.float32(), 4)))
    ds = th.write("memory://foreign-boxes", pa.table({"boxes": boxes}))
    got = ds.take([0, 2, 3], columns=["boxes"])["boxes"]
    assert (
        ds.schema["boxes"] == th.BBox()
        and got[0].shape == (0, 4)
        and got[1].shape == (1, 4)
        and got[2] is None
    )
    ragged = pa.array([[], [[1.0, 2.0]]], pa.list_(pa.list_(pa.float64(), 2)))
    t = th.write("memory://foreign-ragged", pa.table({"t": ragged}))
    assert [a.shape for a in t.take([0, 1], columns=["t"])["t"]] == [(0, 2), (1, 2)]


def test_tensor_extension_types_write() -> None:
    ft = pa.fixed_shape_tensor(pa.float32(), (2, 3))
    ext = pa.ExtensionArray.from_storage(
        ft, pa.array([list(range(6)), list(range(6, 12))], pa.list_(pa.float32(), 6))
    )
    ds = th.write("memory://foreign-fst", pa.table({"t": ext}))
    assert (
        ds.schema["t"] == th.Tensor("float32", (2, 3))
        and ds.take([1], columns=["t"])["t"][0, 1, 2] == 11
    )
    from ray.data.extensions import ArrowTensorArray

    fixed = ArrowTensorArray.from_numpy(np.arange(12, dtype=np.int16).reshape(2, 2, 3))
    ragged = ArrowTensorArray.from_numpy(
        np.array([np.zeros((2, 3), np.float32), np.ones((1, 3), np.float32)], dtype=object)
    )
    ds = th.write("memory://foreign-ray", pa.table({"f": fixed, "r": ragged}))
    assert ds.schema["f"] == th.Tensor("int16", (2, 3)) and ds.schema["r"] == th.Tensor(
        "float32", (None, None)
    )
    got = ds.take([1], columns=["f", "r"])
    assert got["f"][0].tolist() == [[6, 7, 8], [9, 10, 11]] and got["r"][0].shape == (1, 3)


def test_tabular_arrow_columns_through_pandas() -> None:
    import datetime
    import decimal

    table = pa.table(
        {
            "d": pa.array([datetime.date(2020, 1, 1), None]),
            "price": pa.array([decimal.Decimal("1.50"), None], pa.decimal128(5, 2)),
            "tags": pa.array([["a"], []], pa.list_(pa.string())),
        }
    )
    ds = th.write("memory://frames-tabular", table)
    df = ds.to_pandas()
    assert df["d"][0] == datetime.date(2020, 1, 1) and df["price"][0] == decimal.Decimal("1.50")
    assert list(df["tags"][0]) == ["a"] and df["d"][1] is None
    ds.append(df)
    assert ds.to_table().slice(2).equals(ds.to_table().slice(0, 2))
