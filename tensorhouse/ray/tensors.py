"""Column conversions between tensorhouse's Arrow layouts and Ray Data's tensor extension types.

Ray Data hands ``map_batches(batch_format="numpy")`` an ndarray per column only
for its own tensor extension types; a nested ``FixedSizeList`` or the ragged
``struct<data, shape>`` layout tensorhouse shows SQL engines would arrive as
arrays of Python objects. So read tasks convert tensor columns:

- a fixed-shape tensor or embedding becomes Ray's fixed-shape tensor type (the
  flavour ``DataContext.arrow_fixed_shape_tensor_format`` selects);
- a ragged tensor, boxes and raw images become ``ArrowVariableShapedTensorType``;
- encoded images stay ``binary`` unless decoding is asked for; decoded images are
  always variable-shaped tensors (the type never depends on the data).

Buffers are reused, not copied, where the layouts agree (the flat element
values); only offsets and shapes are rebuilt. Null rows stay null.

Writes go the other way (:func:`column_values`): Ray tensor columns become
stacked ndarrays or lists of ndarrays, and :func:`infer_type` names the
tensorhouse type a Ray column maps to.

Example:
    >>> import numpy as np, pyarrow as pa, tensorhouse as th
    >>> emb = pa.array([[1.0, 2.0], [3.0, 4.0]], pa.list_(pa.float32(), 2))
    >>> out = to_ray(emb, th.Embedding(2))
    >>> column_values(out).shape
    (2, 2)
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
from ray.air.util.tensor_extensions.arrow import (
    ArrowTensorType,
    ArrowTensorTypeV2,
    ArrowVariableShapedTensorType,
)
from ray.data import DataContext

from tensorhouse.connector.arrow_dataset import engine_field
from tensorhouse.errors import SchemaError
from tensorhouse.format.convert import payloads_to_images
from tensorhouse.types import BBox, ColumnType, Image, Tensor

_FIXED_TYPES = (ArrowTensorType, ArrowTensorTypeV2, pa.FixedShapeTensorType)


def _fsl_dims(t: pa.DataType) -> tuple[list[int], pa.DataType]:
    dims = []
    while pa.types.is_fixed_size_list(t):
        dims.append(t.list_size)
        t = t.value_type
    return dims, t


def fixed_tensor_type(shape: tuple[int, ...], value: pa.DataType) -> pa.DataType:
    """Ray's fixed-shape tensor type in the format this process's DataContext selects."""
    fmt = DataContext.get_current().arrow_fixed_shape_tensor_format.name
    if fmt == "ARROW_NATIVE" and (pa.types.is_integer(value) or pa.types.is_floating(value)):
        return pa.fixed_shape_tensor(value, list(shape))
    if fmt == "V1":
        return ArrowTensorType(shape, value)
    return ArrowTensorTypeV2(shape, value)


def _kind(ctype: ColumnType, decode_images: bool) -> str:
    """How a column travels to Ray: plain, fixed, ragged, boxes or image."""
    if isinstance(ctype, Image):
        if ctype.compression is None:
            return "ragged"
        return "image" if decode_images else "plain"
    if isinstance(ctype, BBox):
        return "boxes"
    if ctype.storage_dtype in ("bytes", "str") or ctype.is_scalar:
        return "plain"
    return "fixed" if ctype.is_fixed_shape else "ragged"


def ray_type(ctype: ColumnType, *, decode_images: bool = False) -> pa.DataType:
    """The Arrow type a column of ``ctype`` has in a Ray dataset read by ``th.ray.read``."""
    engine = engine_field("c", ctype).type
    kind = _kind(ctype, decode_images)
    if kind == "plain":
        return engine
    if kind == "fixed":
        dims, value = _fsl_dims(engine)
        return fixed_tensor_type(tuple(dims), value)
    if kind == "image":
        return ArrowVariableShapedTensorType(pa.uint8(), 3)
    if kind == "boxes":
        return ArrowVariableShapedTensorType(engine.value_type.value_type, 2)
    return ArrowVariableShapedTensorType(
        engine.field("data").type.value_type, engine.field("shape").type.list_size
    )


def _mask(arr: pa.Array) -> pa.Array | None:
    return arr.is_null() if arr.null_count else None


def _fixed_storage(
    t: pa.DataType, flat: pa.Array, size: int, n: int, mask: pa.Array | None
) -> pa.Array:
    storage = t.storage_type
    if pa.types.is_fixed_size_list(storage):
        return pa.FixedSizeListArray.from_arrays(flat, size, mask=mask)
    offsets = pa.array(np.arange(n + 1, dtype=np.int64) * size)
    if pa.types.is_large_list(storage):
        return pa.LargeListArray.from_arrays(offsets, flat, mask=mask)
    return pa.ListArray.from_arrays(offsets.cast(pa.int32()), flat, mask=mask)


def _variable(
    value: pa.DataType,
    ndim: int,
    offsets: np.ndarray,
    flat: pa.Array,
    shapes: np.ndarray,
    mask: pa.Array | None,
) -> pa.Array:
    t = ArrowVariableShapedTensorType(value, ndim)
    n = len(offsets) - 1
    data = pa.LargeListArray.from_arrays(pa.array(offsets.astype(np.int64)), flat)
    shape = pa.ListArray.from_arrays(
        pa.array(np.arange(n + 1, dtype=np.int32) * ndim),
        pa.array(shapes.reshape(-1).astype(np.int64)),
    )
    storage = pa.StructArray.from_arrays([data, shape], fields=list(t.storage_type), mask=mask)
    return pa.ExtensionArray.from_storage(t, storage)


def _list_offsets(arr: pa.Array) -> np.ndarray:
    """Offsets of a list array as int64, relative to its first value (slices start anywhere)."""
    offs = arr.offsets.to_numpy().astype(np.int64)
    return offs - offs[0]


def _list_values(arr: pa.Array) -> pa.Array:
    offs = arr.offsets.to_numpy()
    return arr.values.slice(int(offs[0]), int(offs[-1] - offs[0]))


def to_ray(
    arr: pa.Array | pa.ChunkedArray, ctype: ColumnType, *, decode_images: bool = False
) -> pa.Array:
    """One column as ``th.ray.read`` hands it to Ray (see :func:`ray_type`)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    kind = _kind(ctype, decode_images)
    if kind == "plain":
        return arr
    t = ray_type(ctype, decode_images=decode_images)
    n = len(arr)
    mask = _mask(arr)
    if kind == "fixed":
        flat: pa.Array = arr
        size = 1
        while pa.types.is_fixed_size_list(flat.type):
            k = flat.type.list_size
            flat = flat.values.slice(flat.offset * k, len(flat) * k)
            size *= k
        return pa.ExtensionArray.from_storage(t, _fixed_storage(t, flat, size, n, mask))
    if kind == "boxes":
        inner = _list_values(arr)  # FixedSizeList<float32>[4], one entry per box
        flat = inner.values.slice(inner.offset * 4, len(inner) * 4)
        counts = np.diff(_list_offsets(arr))
        shapes = np.stack([counts, np.full(n, 4, np.int64)], axis=1)
        return _variable(t.value_type, 2, _list_offsets(arr) * 4, flat, shapes, mask)
    if kind == "ragged":
        data = arr.field("data")
        shape = arr.field("shape")
        ndim = shape.type.list_size
        shapes = (
            shape.values.slice(shape.offset * ndim, n * ndim)
            .to_numpy(zero_copy_only=False)
            .reshape(n, ndim)
        )
        return _variable(t.value_type, ndim, _list_offsets(data), _list_values(data), shapes, mask)
    # kind == "image": decode the encoded files on the thread pool
    _, off_buf, values = arr.buffers()[:3]
    off_type = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    offs = np.frombuffer(off_buf, off_type)[arr.offset : arr.offset + n + 1]
    nulls = np.asarray(arr.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    # Through numpy: a pyarrow buffer's own memoryview is signed chars, which decoders refuse.
    view = np.frombuffer(values, np.uint8).data if values is not None else memoryview(b"")
    views: list[memoryview | bytes] = [view[int(offs[i]) : int(offs[i + 1])] for i in range(n)]
    images = payloads_to_images(views, nulls, str(ctype.sample_codec), decode=True)
    return images_to_ray(images)


def images_to_ray(images: list[np.ndarray | None]) -> pa.Array:
    """Decoded HxWxC uint8 images (None for nulls) as a variable-shaped tensor column."""
    n = len(images)
    shapes = np.zeros((n, 3), np.int64)
    sizes = np.zeros(n, np.int64)
    for i, img in enumerate(images):
        if img is not None:
            shapes[i] = img.shape
            sizes[i] = img.size
    offsets = np.zeros(n + 1, np.int64)
    np.cumsum(sizes, out=offsets[1:])
    buf = np.empty(int(offsets[-1]), np.uint8)
    for i, img in enumerate(images):
        if img is not None:
            buf[offsets[i] : offsets[i + 1]] = img.reshape(-1)
    mask = pa.array([img is None for img in images]) if any(img is None for img in images) else None
    return _variable(pa.uint8(), 3, offsets, pa.array(buf), shapes, mask)


# -- the write direction --------------------------------------------------------------
def is_tensor_type(t: pa.DataType) -> bool:
    """Whether ``t`` is one of Ray's (or Arrow's canonical fixed-shape) tensor extension types."""
    return isinstance(t, (*_FIXED_TYPES, ArrowVariableShapedTensorType))


def infer_type(t: pa.DataType, name: str) -> ColumnType | None:
    """The tensorhouse type of a Ray tensor column, or None for other Arrow types."""
    if isinstance(t, _FIXED_TYPES):
        value = t.value_type
        if not (
            pa.types.is_integer(value) or pa.types.is_floating(value) or pa.types.is_boolean(value)
        ):
            raise SchemaError(
                f"column {name!r}: tensors of {value} cannot be stored; cast them to a number type"
            )
        return Tensor(np.dtype(value.to_pandas_dtype()).name, tuple(int(d) for d in t.shape))
    if isinstance(t, ArrowVariableShapedTensorType):
        return Tensor(np.dtype(t.value_type.to_pandas_dtype()).name, (None,) * t.ndim)
    return None


def column_values(col: pa.Array | pa.ChunkedArray) -> Any:
    """A Ray tensor column as values ``Dataset.append`` takes: a stacked ndarray (fixed
    shape, no nulls) or a list of ndarrays and None; other columns are returned as they are."""
    if isinstance(col, pa.ChunkedArray):
        col = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    t = col.type
    if not is_tensor_type(t):
        return col
    if isinstance(t, _FIXED_TYPES) and col.null_count == 0:
        shape = tuple(int(d) for d in t.shape)
        storage = col.storage
        if pa.types.is_fixed_size_list(storage.type):
            flat = storage.values.slice(
                storage.offset * storage.type.list_size, len(storage) * storage.type.list_size
            )
        else:
            flat = _list_values(storage)
        return flat.to_numpy(zero_copy_only=False).reshape(len(col), *shape)
    out: list[np.ndarray | None] = []
    for i in range(len(col)):
        s = col[i]
        out.append(
            None
            if not s.is_valid
            else np.asarray(s.to_numpy() if hasattr(s, "to_numpy") else s.as_py())
        )
    return out


__all__ = [
    "column_values",
    "fixed_tensor_type",
    "images_to_ray",
    "infer_type",
    "is_tensor_type",
    "ray_type",
    "to_ray",
]
