"""Column types: validation, JSON round trip, Arrow mapping."""

from __future__ import annotations

import json

import pyarrow as pa
import pytest

import tensorhouse as th
from tensorhouse.types import ColumnType, Schema, as_type, infer_from_arrow

ALL_TYPES = [
    th.Image("jpeg"),
    th.Image("png"),
    th.Image(None),
    th.Tensor("float32", (None, 4)),
    th.Tensor("int16", (2, 3, 4)),
    th.Tensor("float64", ()),
    th.Embedding(128),
    th.Embedding(8, dtype="float16"),
    th.ClassLabel(["cat", "dog"]),
    th.BBox("xywh"),
    th.Text(),
    th.Json(),
    th.Binary(compression="zstd"),
    as_type("int64"),
    as_type("bool"),
    as_type("float32"),
]


@pytest.mark.parametrize("t", ALL_TYPES, ids=repr)
def test_type_json_round_trip(t: ColumnType) -> None:
    d = json.loads(json.dumps(t.to_dict()))
    assert ColumnType.from_dict(d) == t


@pytest.mark.parametrize("t", ALL_TYPES, ids=repr)
def test_type_survives_arrow_field_metadata(t: ColumnType) -> None:
    f = t.arrow_field("col")
    assert f.type == t.arrow_type()
    assert ColumnType.from_arrow_field(f) == t


def test_arrow_layouts() -> None:
    assert th.Embedding(128).arrow_type() == pa.list_(pa.float32(), 128)
    assert th.Tensor("int16", (2, 3)).arrow_type() == pa.list_(pa.list_(pa.int16(), 3), 2)
    ragged = th.Tensor("float32", (None, 4)).arrow_type()
    assert pa.types.is_struct(ragged) and [f.name for f in ragged] == ["data", "shape"]
    assert ragged.field("shape").type == pa.list_(pa.int32(), 2)
    assert th.Image("jpeg").arrow_type() == pa.binary()
    assert th.BBox().arrow_type() == pa.list_(pa.list_(pa.float32(), 4))
    assert th.Tensor("float64", ()).arrow_type() == pa.float64()


@pytest.mark.parametrize(
    "make",
    [
        lambda: th.Tensor("complex64", (2,)),
        lambda: th.Tensor("float32", (-1,)),
        lambda: th.Embedding(0),
        lambda: th.BBox("cxcywh"),  # type: ignore[arg-type]
        lambda: th.Image("webp"),  # type: ignore[arg-type]
        lambda: th.Text(compression="gzip"),  # type: ignore[arg-type]
        lambda: as_type("object"),
        lambda: as_type("float33"),
    ],
)
def test_bad_type_parameters_raise_schema_error(make) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(th.SchemaError):
        make()


@pytest.mark.parametrize("name", ["", "_rowid", "1abc", "a-b", "a b", "é", "x" * 200])
def test_bad_column_names(name: str) -> None:
    with pytest.raises(th.SchemaError, match="invalid column name"):
        Schema.of({name: "int64"})


def test_malformed_stored_types_raise() -> None:
    for bad in [
        {},
        {"kind": "nope"},
        {"kind": "tensor", "dtype": "float32"},
        {"kind": "embedding", "dim": "x"},
        [],
    ]:
        with pytest.raises(th.SchemaError):
            ColumnType.from_dict(bad)  # type: ignore[arg-type]


def test_infer_from_plain_arrow() -> None:
    assert infer_from_arrow(pa.int32()) == as_type("int32")
    assert infer_from_arrow(pa.string()) == th.Text()
    assert infer_from_arrow(pa.list_(pa.float32(), 16)) == th.Embedding(16)
    assert infer_from_arrow(pa.list_(pa.int16(), 16)) == th.Tensor("int16", (16,))
    assert infer_from_arrow(pa.list_(pa.float64())) == th.Tensor("float64", (None,))
    assert infer_from_arrow(pa.map_(pa.string(), pa.int32())) == th.Arrow("map<string, int32>")
    with pytest.raises(th.SchemaError, match="'string'"):  # the error names a type that would work
        infer_from_arrow(pa.dense_union([pa.field("a", pa.int32())]), "u")


def test_schema_mapping() -> None:
    s = Schema.of({"a": "int64", "b": th.Text()})
    assert list(s) == ["a", "b"] and s["b"] == th.Text() and "a" in s and len(s) == 2
    assert Schema.from_dict(s.to_dict()) == s
    assert Schema.from_arrow(s.to_arrow()) == s
    with pytest.raises(th.SchemaError, match="unknown column 'c'"):
        s["c"]
