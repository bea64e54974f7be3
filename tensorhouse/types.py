"""Column types: what a column holds, how it is stored, how engines see it.

Every type is a frozen dataclass with ``to_dict``/``from_dict`` (stored in the
log as versioned JSON) and an ``arrow_type()`` (what DuckDB and DataFusion see).

| type                          | sample in Python           | Arrow                                   |
|-------------------------------|----------------------------|-----------------------------------------|
| ``"int64"``, ``"float32"`` .. | numpy scalar               | the primitive type                      |
| ``ClassLabel(classes)``       | int                        | int32                                   |
| ``Tensor(dtype, (2, 3))``     | ndarray of that shape      | FixedSizeList (nested for N-d)          |
| ``Tensor(dtype, (None, 4))``  | ndarray, ragged dims       | struct<data: list, shape: fsl<int32>>   |
| ``Embedding(128)``            | float32[128]               | FixedSizeList<float32>[128]             |
| ``BBox("xyxy")``              | float32[n, 4]              | list<FixedSizeList<float32>[4]>         |
| ``Image("jpeg"/"png")``       | uint8 HxWxC (decoded)      | binary (the encoded file)               |
| ``Image(None)``               | uint8 HxWxC                | struct<data: list, shape: fsl<int32>>   |
| ``Text()`` / ``Json()``       | str / any JSON value       | string (JSON text for Json)             |
| ``Binary()``                  | bytes                      | binary                                  |

The ragged layout is the storage of Arrow's canonical
``arrow.variable_shape_tensor`` extension (a struct of flat ``data`` and
``shape``). Boxes use a list of 4-vectors instead because SQL users count and
index boxes (``len(boxes)``, ``boxes[1]``) and the last dimension is fixed.

Example:
    >>> import tensorhouse as th
    >>> th.Tensor("float32", (None, 4)).arrow_type()
    StructType(struct<data: list<item: float> not null, shape: fixed_size_list<item: int32>[2] not null>)
    >>> th.types.as_type("int64").arrow_type()
    DataType(int64)
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal, TypeAlias

import numpy as np
import pyarrow as pa

from tensorhouse.errors import SchemaError

#: Field-metadata key under which a column's tensorhouse type travels in Arrow.
ARROW_METADATA_KEY = b"tensorhouse.type"

NUMERIC_DTYPES = (
    "bool",
    "int8",
    "int16",
    "int32",
    "int64",
    "uint8",
    "uint16",
    "uint32",
    "uint64",
    "float16",
    "float32",
    "float64",
)
ChunkCodec = Literal["none", "lz4", "zstd"]
SampleCodec = Literal["jpeg", "png"]
Shape = tuple[int | None, ...]


def _check_dtype(dtype: str) -> str:
    try:
        name = np.dtype(dtype).name if dtype not in NUMERIC_DTYPES else dtype
    except TypeError:  # numpy's error for a name it does not know
        name = str(dtype)
    if name not in NUMERIC_DTYPES:
        raise SchemaError(
            f"unsupported dtype {dtype!r}; expected one of {', '.join(NUMERIC_DTYPES)}"
        )
    return name


def _check_codec(codec: str) -> ChunkCodec:
    if codec not in ("none", "lz4", "zstd"):
        raise SchemaError(f"unknown chunk compression {codec!r}; expected 'none', 'lz4' or 'zstd'")
    return codec  # type: ignore[return-value]


@dataclass(frozen=True)
class ColumnType:
    """Base of all column types. Subclasses define how a sample is stored."""

    kind: ClassVar[str] = ""
    #: numpy dtype name of the stored elements, or "bytes" / "str" for byte-like samples.
    storage_dtype: ClassVar[str] = "bytes"

    @property
    def sample_shape(self) -> Shape:
        """Shape of one sample; ``None`` marks a dimension that varies between samples."""
        return ()

    @property
    def sample_codec(self) -> SampleCodec | None:
        """Per-sample codec (images), or None."""
        return None

    @property
    def chunk_codec(self) -> ChunkCodec:
        """Whole-chunk codec applied to the data section."""
        return "none"

    @property
    def chunk_dtype(self) -> str:
        """The dtype a chunk of this column declares in its header (checked on every read)."""
        return self.storage_dtype

    @property
    def is_fixed_shape(self) -> bool:
        return all(d is not None for d in self.sample_shape)

    @property
    def is_scalar(self) -> bool:
        """A 0-d numeric sample: chunks keep min/max statistics for it."""
        return self.storage_dtype not in ("bytes", "str") and self.sample_shape == ()

    def arrow_type(self) -> pa.DataType:
        raise NotImplementedError

    def arrow_field(self, name: str) -> pa.Field:
        """The Arrow field for a column, carrying this type in its metadata."""
        meta = {ARROW_METADATA_KEY: json.dumps(self.to_dict()).encode()}
        return pa.field(name, self.arrow_type(), nullable=True, metadata=meta)

    def to_dict(self) -> dict[str, Any]:
        raise NotImplementedError

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> ColumnType:
        """Rebuild a type from its stored JSON form (validating it)."""
        if not isinstance(d, Mapping) or "kind" not in d:
            raise SchemaError(f"malformed column type {d!r}")
        kind = d["kind"]
        try:
            if kind == "scalar":
                return Scalar(str(d["dtype"]))
            if kind == "tensor":
                return Tensor(
                    str(d["dtype"]),
                    tuple(None if x is None else int(x) for x in d["shape"]),
                    compression=d.get("compression", "none"),
                )
            if kind == "embedding":
                return Embedding(int(d["dim"]), dtype=str(d.get("dtype", "float32")))
            if kind == "class_label":
                return ClassLabel([str(c) for c in d["classes"]])
            if kind == "bbox":
                return BBox(d.get("format", "xyxy"))
            if kind == "image":
                return Image(d.get("compression"), quality=int(d.get("quality", 90)))
            if kind == "text":
                return Text(compression=d.get("compression", "lz4"))
            if kind == "json":
                return Json(compression=d.get("compression", "lz4"))
            if kind == "binary":
                return Binary(compression=d.get("compression", "none"))
            if kind == "arrow":
                return Arrow(str(d["type"]))
        except (KeyError, TypeError, ValueError) as err:
            if isinstance(err, SchemaError):
                raise
            raise SchemaError(f"malformed column type {dict(d)!r}: {err}") from err
        raise SchemaError(f"unknown column type kind {kind!r}")

    @staticmethod
    def from_arrow_field(f: pa.Field) -> ColumnType:
        """The tensorhouse type of an Arrow field: from its metadata, else inferred."""
        if f.metadata and ARROW_METADATA_KEY in f.metadata:
            return ColumnType.from_dict(json.loads(f.metadata[ARROW_METADATA_KEY]))
        return infer_from_arrow(f.type, f.name)


@dataclass(frozen=True)
class Scalar(ColumnType):
    """A single number or bool per row: ``th.Scalar("int64")`` or just ``"int64"``."""

    dtype: str = "int64"
    kind: ClassVar[str] = "scalar"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", _check_dtype(self.dtype))

    @property
    def storage_dtype(self) -> str:  # type: ignore[override]
        return self.dtype

    def arrow_type(self) -> pa.DataType:
        return pa.from_numpy_dtype(np.dtype(self.dtype))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "dtype": self.dtype}


@dataclass(frozen=True)
class ClassLabel(ColumnType):
    """An integer class index with names: ``ClassLabel(["cat", "dog"])``."""

    classes: Sequence[str] = ()
    kind: ClassVar[str] = "class_label"
    storage_dtype: ClassVar[str] = "int32"

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(str(c) for c in self.classes))

    def arrow_type(self) -> pa.DataType:
        return pa.int32()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "classes": list(self.classes)}


@dataclass(frozen=True)
class Tensor(ColumnType):
    """An N-d array per row; ``None`` in ``shape`` marks a ragged dimension.

    Example: ``Tensor("float32", (None, 4))`` holds any number of 4-vectors.
    """

    dtype: str = "float32"
    shape: Shape = ()
    compression: ChunkCodec = "none"
    kind: ClassVar[str] = "tensor"

    def __post_init__(self) -> None:
        object.__setattr__(self, "dtype", _check_dtype(self.dtype))
        shape = tuple(self.shape)
        for d in shape:
            if d is not None and (not isinstance(d, int | np.integer) or d < 0):
                raise SchemaError(f"bad tensor shape {shape!r}: dimensions are ints >= 0 or None")
        object.__setattr__(self, "shape", tuple(None if d is None else int(d) for d in shape))
        object.__setattr__(self, "compression", _check_codec(self.compression))

    @property
    def storage_dtype(self) -> str:  # type: ignore[override]
        return self.dtype

    @property
    def sample_shape(self) -> Shape:
        return self.shape

    @property
    def chunk_codec(self) -> ChunkCodec:
        return self.compression

    def arrow_type(self) -> pa.DataType:
        value = pa.from_numpy_dtype(np.dtype(self.dtype))
        if self.is_fixed_shape:
            t = value
            for d in reversed(self.shape):
                t = pa.list_(t, d)
            return t
        return ragged_arrow_type(value, len(self.shape))

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "dtype": self.dtype,
            "shape": list(self.shape),
            "compression": self.compression,
        }


@dataclass(frozen=True)
class Embedding(ColumnType):
    """A fixed-length vector per row, e.g. ``Embedding(128)``; DuckDB sees ``FLOAT[128]``."""

    dim: int = 0
    dtype: str = "float32"
    kind: ClassVar[str] = "embedding"

    def __post_init__(self) -> None:
        if int(self.dim) <= 0:
            raise SchemaError(f"embedding dim must be positive, got {self.dim!r}")
        object.__setattr__(self, "dim", int(self.dim))
        object.__setattr__(self, "dtype", _check_dtype(self.dtype))

    @property
    def storage_dtype(self) -> str:  # type: ignore[override]
        return self.dtype

    @property
    def sample_shape(self) -> Shape:
        return (self.dim,)

    def arrow_type(self) -> pa.DataType:
        return pa.list_(pa.from_numpy_dtype(np.dtype(self.dtype)), self.dim)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "dim": self.dim, "dtype": self.dtype}


@dataclass(frozen=True)
class BBox(ColumnType):
    """Boxes of one image: float32 ``[n, 4]`` in ``"xyxy"`` or ``"xywh"`` (COCO) order."""

    format: Literal["xyxy", "xywh"] = "xyxy"
    kind: ClassVar[str] = "bbox"
    storage_dtype: ClassVar[str] = "float32"

    def __post_init__(self) -> None:
        if self.format not in ("xyxy", "xywh"):
            raise SchemaError(f"unknown box format {self.format!r}; expected 'xyxy' or 'xywh'")

    @property
    def sample_shape(self) -> Shape:
        return (None, 4)

    def arrow_type(self) -> pa.DataType:
        return pa.list_(pa.list_(pa.float32(), 4))

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "format": self.format}


@dataclass(frozen=True)
class Image(ColumnType):
    """A uint8 ``HxWxC`` image per row (C in 1, 3, 4; H and W vary).

    ``compression="jpeg"`` or ``"png"`` stores each image encoded (bytes given
    as already-encoded files are stored as they are); ``None`` stores raw pixels.
    """

    compression: Literal["jpeg", "png"] | None = "jpeg"
    quality: int = 90
    kind: ClassVar[str] = "image"
    storage_dtype: ClassVar[str] = "uint8"

    def __post_init__(self) -> None:
        if self.compression not in ("jpeg", "png", None):
            raise SchemaError(
                f"unknown image compression {self.compression!r}; expected 'jpeg', 'png' or None"
            )
        if not 1 <= int(self.quality) <= 100:
            raise SchemaError(f"jpeg quality must be 1..100, got {self.quality!r}")

    @property
    def sample_shape(self) -> Shape:
        return (None, None, None)

    @property
    def sample_codec(self) -> SampleCodec | None:
        return self.compression

    def arrow_type(self) -> pa.DataType:
        if self.compression is None:
            return ragged_arrow_type(pa.uint8(), 3)
        return pa.binary()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "compression": self.compression, "quality": self.quality}


@dataclass(frozen=True)
class Text(ColumnType):
    """A unicode string per row."""

    compression: ChunkCodec = "lz4"
    kind: ClassVar[str] = "text"
    storage_dtype: ClassVar[str] = "str"

    def __post_init__(self) -> None:
        _check_codec(self.compression)

    @property
    def chunk_codec(self) -> ChunkCodec:
        return self.compression

    def arrow_type(self) -> pa.DataType:
        return pa.string()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "compression": self.compression}


@dataclass(frozen=True)
class Json(Text):
    """Any JSON-serialisable value per row; engines see its JSON text."""

    kind: ClassVar[str] = "json"


@dataclass(frozen=True)
class Binary(ColumnType):
    """Opaque bytes per row."""

    compression: ChunkCodec = "none"
    kind: ClassVar[str] = "binary"
    storage_dtype: ClassVar[str] = "bytes"

    def __post_init__(self) -> None:
        _check_codec(self.compression)

    @property
    def chunk_codec(self) -> ChunkCodec:
        return self.compression

    def arrow_type(self) -> pa.DataType:
        return pa.binary()

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "compression": self.compression}


@dataclass(frozen=True)
class Arrow(ColumnType):
    """Values of any Arrow type, stored columnar and returned with that same type.

    Dates, times, timestamps (any unit, with or without a time zone),
    durations, exact decimals, every string and binary flavour, dictionary
    columns, and lists, structs and maps of these: what Parquet and Delta
    tables hold. Give the type as a name (``"date32"``, ``"timestamp[us,
    tz=UTC]"``, ``"decimal(15,2)"``, ``"string"``, ``"list<date32>"``) or a
    ``pyarrow.DataType``. Chunks are encoded with Parquet's encodings
    (dictionary, run-length, bit-packing) and a compression codec picked by
    measuring each chunk.

    Example:
        >>> th_type = Arrow("decimal(15,2)")
        >>> th_type.arrow_type()
        Decimal128Type(decimal128(15, 2))
        >>> as_type("timestamp[us, tz=UTC]") == Arrow(pa.timestamp("us", tz="UTC"))
        True
    """

    type: pa.DataType | str = "string"
    kind: ClassVar[str] = "arrow"
    storage_dtype: ClassVar[str] = "bytes"

    def __post_init__(self) -> None:
        from tensorhouse.arrow_types import parse_arrow_type

        t = self.type if isinstance(self.type, pa.DataType) else parse_arrow_type(self.type)
        t = canonical_arrow_type(t)
        check_arrow_storable(t)
        object.__setattr__(self, "type", t)

    @property
    def is_scalar(self) -> bool:
        """One orderable value per row: chunks keep min/max statistics for it (not for nested values)."""
        return has_statistics(self.arrow_type())

    def arrow_type(self) -> pa.DataType:
        assert isinstance(self.type, pa.DataType)
        return self.type

    @property
    def chunk_dtype(self) -> str:
        """Columnar chunks (format 3) declare "arrow"; samples are handled as bytes elsewhere."""
        return "arrow"

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "type": str(self.type)}

    def __repr__(self) -> str:
        return f"Arrow({str(self.type)!r})"


def canonical_arrow_type(t: pa.DataType) -> pa.DataType:
    """``t`` with the child field names Arrow uses by default (``item``; a map's ``entries``/``key``/``value``).

    Parquet readers name list items ``element`` and map fields after the
    column; the values are the same, and one spelling keeps types comparable.
    """
    if pa.types.is_map(t):
        return pa.map_(
            canonical_arrow_type(t.key_type),
            t.item_field.with_type(canonical_arrow_type(t.item_type)).with_name("value"),
            t.keys_sorted,
        )
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        item = pa.field("item", canonical_arrow_type(t.value_type), nullable=t.value_field.nullable)
        if pa.types.is_fixed_size_list(t):
            return pa.list_(item, t.list_size)
        return pa.large_list(item) if pa.types.is_large_list(t) else pa.list_(item)
    if pa.types.is_struct(t):
        return pa.struct(
            [pa.field(f.name, canonical_arrow_type(f.type), nullable=f.nullable) for f in t]
        )
    if pa.types.is_dictionary(t):
        return pa.dictionary(t.index_type, canonical_arrow_type(t.value_type), t.ordered)
    return t


def has_statistics(t: pa.DataType) -> bool:
    """Whether chunks of this Arrow type keep min/max (orderable, not nested, not a float: NaN)."""
    if pa.types.is_dictionary(t):
        t = t.value_type
    return bool(
        pa.types.is_integer(t)
        or pa.types.is_temporal(t)
        or pa.types.is_decimal(t)
        or pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_string_view(t)
        or pa.types.is_boolean(t)
    )


def check_arrow_storable(t: pa.DataType) -> None:
    """SchemaError unless a column can hold values of ``t`` and give them back with that type."""
    from tensorhouse.arrow_types import parse_arrow_type

    bad = _unstorable(t)
    if bad is not None:
        raise SchemaError(
            f"Arrow type {t} cannot be stored ({bad}); store it as 'string', 'binary' or th.Json()"
        )
    try:
        same = parse_arrow_type(str(t)) == t
    except SchemaError:
        same = False
    if not same:
        raise SchemaError(
            f"Arrow type {t} has no name tensorhouse can store (field metadata or odd field names?)"
        )


def _unstorable(t: pa.DataType) -> str | None:
    if (
        pa.types.is_null(t)
        or pa.types.is_union(t)
        or isinstance(t, pa.ExtensionType)
        or pa.types.is_run_end_encoded(t)
        or pa.types.is_list_view(t)
        or pa.types.is_large_list_view(t)
        or pa.types.is_interval(t)
        or pa.types.is_fixed_size_binary(t)
    ):
        return f"{t} is not supported"
    if pa.types.is_dictionary(t):
        return _unstorable(t.value_type)
    for i in range(t.num_fields):
        bad = _unstorable(t.field(i).type)
        if bad is not None:
            return bad
    return None


def ragged_arrow_type(value: pa.DataType, ndim: int) -> pa.DataType:
    """The storage layout of ``arrow.variable_shape_tensor``: flat data plus shape."""
    return pa.struct(
        [
            pa.field("data", pa.list_(value), nullable=False),
            pa.field("shape", pa.list_(pa.int32(), ndim), nullable=False),
        ]
    )


TypeLike: TypeAlias = ColumnType | str | pa.DataType


def as_type(t: TypeLike) -> ColumnType:
    """Accept a ColumnType, a dtype name (``"int64"``), an Arrow type name or a ``pa.DataType``.

    Numeric names give :class:`Scalar`; other Arrow names (``"date32"``,
    ``"timestamp[us, tz=UTC]"``, ``"decimal(15,2)"``, ``"string"``) give :class:`Arrow`.

    Example:
        >>> as_type("decimal(15,2)")
        Arrow('decimal128(15, 2)')
    """
    if isinstance(t, ColumnType):
        return t
    if isinstance(t, str):
        if t in NUMERIC_DTYPES or t in _NUMPY_ALIASES:
            return Scalar(t)
        return Arrow(t)
    if isinstance(t, pa.DataType):
        if pa.types.is_boolean(t) or pa.types.is_integer(t) or pa.types.is_floating(t):
            return Scalar(str(t.to_pandas_dtype().__name__) if t != pa.float16() else "float16")
        return Arrow(t)
    if isinstance(t, np.dtype | type) and t is not str:
        return Scalar(np.dtype(t).name)
    raise SchemaError(
        f"not a column type: {t!r}; e.g. 'int64', 'date32', 'decimal(15,2)', th.Image('jpeg')"
    )


#: numpy spellings of numeric dtypes that stay scalars (``"f4"``, ``"double"``...).
_NUMPY_ALIASES = frozenset(
    {
        "f2",
        "f4",
        "f8",
        "i1",
        "i2",
        "i4",
        "i8",
        "u1",
        "u2",
        "u4",
        "u8",
        "float",
        "double",
        "half",
        "single",
        "int",
        "uint",
        "b1",
        "?",
    }
)


def infer_from_arrow(t: pa.DataType, name: str = "?") -> ColumnType:
    """Pick a tensorhouse type for a plain Arrow type (a query result, a Parquet file, a DataFrame).

    Decided from the type alone, never from the values, so a column whose first
    rows are empty or null gets the same type as any other:

    - fixed-size lists (nested for N-d) of numbers: ``Tensor(dtype, shape)``; one level of
      floats: ``Embedding(n, dtype)``;
    - a list (or large list) of 4-vectors of float32: ``BBox()``; of other fixed-size lists:
      ``Tensor(dtype, (None, *dims))``; of numbers: ``Tensor(dtype, (None,))``; lists of lists
      of numbers: a ragged tensor with that many dimensions;
    - tensor extension types (Arrow's canonical ``arrow.fixed_shape_tensor``, Ray's
      ``ray.data.arrow_tensor``/``_v2`` and ``ray.data.arrow_variable_shaped_tensor``): the
      tensor they describe;
    - ``struct<data: list, shape: fixed_size_list<int>>``: a ragged tensor;
    - temporal, decimal, dictionary and other string flavours, and lists and structs of
      tabular values: :class:`Arrow` (see :func:`infer_tabular`).

    Example:
        >>> infer_from_arrow(pa.large_list(pa.list_(pa.float32(), 4)))
        BBox(format='xyxy')
        >>> infer_from_arrow(pa.fixed_shape_tensor(pa.uint8(), (2, 3)))
        Tensor(dtype='uint8', shape=(2, 3), compression='none')
    """

    def numeric(x: pa.DataType) -> bool:
        return bool(pa.types.is_integer(x) or pa.types.is_floating(x) or pa.types.is_boolean(x))

    def dtype_of(x: pa.DataType) -> str:
        return str(np.dtype(x.to_pandas_dtype()).name)

    def is_list(x: pa.DataType) -> bool:
        return bool(
            pa.types.is_list(x)
            or pa.types.is_large_list(x)
            or pa.types.is_list_view(x)
            or pa.types.is_large_list_view(x)
        )

    def fixed_dims(x: pa.DataType) -> tuple[list[int], pa.DataType]:
        dims: list[int] = []
        while pa.types.is_fixed_size_list(x):
            dims.append(x.list_size)
            x = x.value_type
        return dims, x

    def leaf(x: pa.DataType) -> pa.DataType:
        while is_list(x) or pa.types.is_fixed_size_list(x):
            x = x.value_type
        return x

    if isinstance(t, pa.BaseExtensionType):
        ext = t.extension_name
        if ext == "arrow.fixed_shape_tensor":
            perm = getattr(t, "permutation", None)
            if perm is not None and list(perm) != sorted(perm):
                raise SchemaError(
                    f"column {name!r}: a fixed_shape_tensor with a permutation {list(perm)} is not "
                    "supported; make it row-major (permutation=None) first"
                )
            return Tensor(dtype_of(t.value_type), tuple(int(d) for d in t.shape))
        if ext in ("ray.data.arrow_tensor", "ray.data.arrow_tensor_v2") and hasattr(t, "shape"):
            return Tensor(dtype_of(leaf(t.storage_type)), tuple(int(d) for d in t.shape))
        if ext in ("ray.data.arrow_variable_shaped_tensor", "arrow.variable_shape_tensor"):
            data_t = t.storage_type.field("data").type
            ndim = getattr(t, "ndim", None)
            if ndim is None:
                shape_t = t.storage_type.field("shape").type
                ndim = shape_t.list_size if pa.types.is_fixed_size_list(shape_t) else None
            if ndim is None:
                raise SchemaError(
                    f"column {name!r}: extension type {ext} without a known ndim; pass schema="
                )
            return Tensor(dtype_of(leaf(data_t)), (None,) * int(ndim))
        return infer_from_arrow(t.storage_type, name)
    tabular = infer_tabular(t)
    if tabular is not None:
        return tabular
    if numeric(t):
        return Scalar(dtype_of(t))
    if pa.types.is_string(t) or pa.types.is_large_string(t) or pa.types.is_string_view(t):
        return Text()
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or pa.types.is_binary_view(t):
        return Binary()
    if pa.types.is_fixed_size_list(t):
        dims, inner = fixed_dims(t)
        if len(dims) == 1 and pa.types.is_floating(inner):
            return Embedding(dims[0], dtype=dtype_of(inner))
        if numeric(inner):
            return Tensor(dtype_of(inner), tuple(dims))
    if is_list(t):
        dims, inner = fixed_dims(t.value_type)
        if dims == [4] and pa.types.is_float32(inner):
            return BBox()
        if dims and numeric(inner):
            return Tensor(dtype_of(inner), (None, *dims))
        depth, x = 1, t.value_type
        while is_list(x):
            depth, x = depth + 1, x.value_type
        if numeric(x):
            return Tensor(dtype_of(x), (None,) * depth)
    if pa.types.is_struct(t) and {f.name for f in t} == {"data", "shape"}:
        data_t = t.field("data").type
        shape_t = t.field("shape").type
        if pa.types.is_fixed_size_list(shape_t) and is_list(data_t) and numeric(data_t.value_type):
            return Tensor(dtype_of(data_t.value_type), (None,) * shape_t.list_size)
    if _unstorable(t) is None:
        return Arrow(t)  # lists and structs of tabular values: engines see the nested type itself
    raise SchemaError(
        f"column {name!r}: no tensorhouse type for Arrow type {t} ({_unstorable(t)}); "
        f"pass e.g. {{{name!r}: 'string'}} or {{{name!r}: th.Binary()}}, or cast it first"
    )


def infer_tabular(t: pa.DataType) -> ColumnType | None:
    """The :class:`Arrow` type for a tabular Arrow type (temporal, decimal, string flavours, dictionary), else None.

    ``string`` and ``binary`` keep their historical types (``Text``, ``Binary``);
    lists and structs are left to :func:`infer_from_arrow`'s tensor rules first.
    """
    if (
        pa.types.is_temporal(t)
        or pa.types.is_decimal(t)
        or pa.types.is_dictionary(t)
        or pa.types.is_large_string(t)
        or pa.types.is_string_view(t)
        or pa.types.is_large_binary(t)
        or pa.types.is_binary_view(t)
    ):
        return Arrow(t) if _unstorable(t) is None else None
    return None


@dataclass(frozen=True)
class Schema(Mapping[str, ColumnType]):
    """An ordered mapping of column name -> type.

    Example:
        >>> s = Schema.of({"label": ClassLabel(["a", "b"]), "score": "float32"})
        >>> list(s)
        ['label', 'score']
    """

    columns: tuple[tuple[str, ColumnType], ...] = field(default=())

    @staticmethod
    def of(spec: Mapping[str, TypeLike] | Schema) -> Schema:
        if isinstance(spec, Schema):
            return spec
        if not isinstance(spec, Mapping) or not spec:
            raise SchemaError("a schema is a non-empty mapping of column name -> type")
        cols = []
        for name, t in spec.items():
            check_column_name(name)
            cols.append((name, as_type(t)))
        return Schema(tuple(cols))

    def __getitem__(self, name: str) -> ColumnType:
        for n, t in self.columns:
            if n == name:
                return t
        raise SchemaError(f"unknown column {name!r}; columns are {', '.join(self.names)}")

    def __iter__(self):  # type: ignore[no-untyped-def]
        return (n for n, _ in self.columns)

    def __len__(self) -> int:
        return len(self.columns)

    def __contains__(self, name: object) -> bool:
        return any(n == name for n, _ in self.columns)

    @property
    def names(self) -> list[str]:
        return [n for n, _ in self.columns]

    def to_arrow(self) -> pa.Schema:
        return pa.schema([t.arrow_field(n) for n, t in self.columns])

    def to_dict(self) -> list[dict[str, Any]]:
        return [{"name": n, "type": t.to_dict()} for n, t in self.columns]

    @staticmethod
    def from_dict(d: Sequence[Mapping[str, Any]]) -> Schema:
        try:
            return Schema(
                tuple(
                    (check_column_name(str(c["name"])), ColumnType.from_dict(c["type"])) for c in d
                )
            )
        except (KeyError, TypeError) as err:
            raise SchemaError(f"malformed schema: {err}") from err

    @staticmethod
    def from_arrow(schema: pa.Schema) -> Schema:
        return Schema(tuple((f.name, ColumnType.from_arrow_field(f)) for f in schema))

    def __repr__(self) -> str:
        inner = ", ".join(f"{n}: {t!r}" for n, t in self.columns)
        return f"Schema({inner})"


#: Reserved name of the hidden row-id column.
ROWID = "_rowid"
_MAX_NAME = 128


def check_column_name(name: str) -> str:
    """Column names are SQL-friendly identifiers: letters, digits and '_', not starting with '_'."""
    ok = (
        isinstance(name, str)
        and 0 < len(name) <= _MAX_NAME
        and (name[0].isalpha())
        and all(c.isalnum() or c == "_" for c in name)
        and name.isascii()
    )
    if not ok:
        raise SchemaError(
            f"invalid column name {name!r}: use letters, digits and '_', starting with a letter"
        )
    return name


def shape_matches(shape: Sequence[int], spec: Shape) -> bool:
    return len(shape) == len(spec) and all(
        s is None or s == d for d, s in zip(shape, spec, strict=True)
    )


def sample_nbytes(shape: Sequence[int], dtype: str) -> int:
    return math.prod(shape) * np.dtype(dtype).itemsize
