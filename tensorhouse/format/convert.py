"""SampleBatch -> Arrow arrays (engines, to_batches) and -> numpy (take).

Arrow arrays are built from the batch's buffers without a Python loop per
row; fixed-shape numeric data is not copied.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from tensorhouse import limits
from tensorhouse.errors import CorruptChunkError
from tensorhouse.format.chunks import codecs
from tensorhouse.format.chunks.samples import SampleBatch
from tensorhouse.format.threads import pool
from tensorhouse.types import BBox, ColumnType, Image, Json, Text

#: What ``take`` returns for one column: a stacked array, or one item per row.
ColumnValues = np.ndarray | list[Any]


def _validity(batch: SampleBatch) -> pa.Buffer | None:
    if batch.nulls is None:
        return None
    return pa.py_buffer(np.packbits(~batch.nulls, bitorder="little"))


def _numeric_values(batch: SampleBatch, dtype: str) -> pa.Array:
    """The flat element array of a numeric batch (a view of its buffer)."""
    start = int(batch.offsets[0])
    data = memoryview(batch.data)[start : int(batch.offsets[-1])]
    arr = np.frombuffer(data, dtype=dtype)
    if arr.ctypes.data % arr.dtype.itemsize:
        arr = arr.copy()  # Arrow kernels expect naturally aligned buffers.
    return (
        pa.array(arr)
        if dtype != "float16"
        else pa.Array.from_buffers(pa.float16(), len(arr), [None, pa.py_buffer(arr)])
    )


def to_arrow(batch: SampleBatch, ctype: ColumnType) -> pa.Array:
    """The Arrow array for a batch, typed ``ctype.arrow_type()``."""
    n = len(batch)
    t = ctype.arrow_type()
    if batch.column is not None:
        return batch.column if batch.column.type == t else batch.column.cast(t)
    validity = _validity(batch)
    if ctype.storage_dtype in ("bytes", "str") or (isinstance(ctype, Image) and ctype.compression):
        offsets = batch.offsets - batch.offsets[0]
        data = memoryview(batch.data)[int(batch.offsets[0]) : int(batch.offsets[-1])]
        if offsets[-1] >= 2**31:
            # Beyond int32 offsets: build the large variant, then cast down per slice is
            # impossible, so fail loudly instead of wrapping around.
            raise ValueError(
                "a batch of more than 2 GiB of bytes cannot be one Arrow array; use a smaller batch"
            )
        return pa.Array.from_buffers(
            t, n, [validity, pa.py_buffer(offsets.astype(np.int32)), pa.py_buffer(data)]
        )
    values = _numeric_values(batch, ctype.storage_dtype)
    if ctype.is_scalar:
        if validity is None:
            return values
        return pa.Array.from_buffers(t, n, [validity, *values.buffers()[1:]])
    mask = pa.array(batch.nulls) if batch.nulls is not None else None
    if ctype.is_fixed_shape:
        arr = values
        for d in reversed(ctype.sample_shape[1:]):
            arr = pa.FixedSizeListArray.from_arrays(arr, d)
        return pa.FixedSizeListArray.from_arrays(arr, ctype.sample_shape[0], mask=mask)
    itemsize = np.dtype(ctype.storage_dtype).itemsize
    elem_offsets = ((batch.offsets - batch.offsets[0]) // itemsize).astype(np.int32)
    if isinstance(ctype, BBox):
        boxes = pa.FixedSizeListArray.from_arrays(values, 4)
        return pa.ListArray.from_arrays(pa.array(elem_offsets // 4), boxes, mask=mask)
    data = pa.ListArray.from_arrays(pa.array(elem_offsets), values)
    ndim = batch.shapes.shape[1]
    shape = pa.FixedSizeListArray.from_arrays(
        pa.array(batch.shapes.reshape(-1).astype(np.int32)), ndim
    )
    return pa.StructArray.from_arrays([data, shape], fields=list(t), mask=mask)


def batch_to_values(batch: SampleBatch, ctype: ColumnType, *, decode: bool = True) -> ColumnValues:
    """Values for ``take``: a stacked array for fixed shapes, else a list per row.

    Null rows are zeros in stacked arrays (use Arrow output to see the mask)
    and ``None`` in lists. Images are decoded unless ``decode=False``.
    """
    n = len(batch)
    if batch.column is not None:
        return column_values(batch.column)
    if isinstance(ctype, Image) and ctype.compression:
        if not decode:
            return [None if batch.is_null(i) else bytes(batch.payload(i)) for i in range(n)]
        return decode_images(batch, ctype.compression)
    if isinstance(ctype, Json):
        # Stored JSON comes from strangers too: depth and size limits, CorruptChunkError on bad text.
        return [
            None
            if batch.is_null(i)
            else limits.parse_json(
                bytes(batch.payload(i)),
                where=f"row {i} of a chunk",
                what="JSON value",
                error=CorruptChunkError,
            )
            for i in range(n)
        ]
    if isinstance(ctype, Text):
        return [
            None if batch.is_null(i) else bytes(batch.payload(i)).decode("utf-8", "surrogatepass")
            for i in range(n)
        ]
    if ctype.storage_dtype == "bytes":
        return [None if batch.is_null(i) else bytes(batch.payload(i)) for i in range(n)]
    dtype = np.dtype(ctype.storage_dtype)
    start = int(batch.offsets[0])
    if ctype.is_fixed_shape:
        flat = np.frombuffer(
            batch.data, dtype=dtype, count=int(batch.nbytes // dtype.itemsize), offset=start
        )
        return flat.reshape(n, *ctype.sample_shape)
    out: list[Any] = []
    for i in range(n):
        if batch.is_null(i):
            out.append(None)
            continue
        s, e = int(batch.offsets[i]), int(batch.offsets[i + 1])
        out.append(
            np.frombuffer(
                batch.data, dtype=dtype, count=(e - s) // dtype.itemsize, offset=s
            ).reshape(batch.shapes[i])
        )
    return out


def column_values(arr: pa.Array) -> ColumnValues:
    """An ``Arrow`` column's values for ``take``: numpy for dates, times, timestamps and durations
    (``NaT`` for nulls), else Python objects (``Decimal``, ``str``, lists, dicts; ``None`` for nulls)."""
    t = arr.type
    if pa.types.is_temporal(t) and not pa.types.is_time(t):
        return arr.to_numpy(zero_copy_only=False)
    return arr.to_pylist()


def payloads_to_images(
    views: list[memoryview | bytes], nulls: np.ndarray, codec: str, *, decode: bool
) -> list[Any]:
    """Encoded images -> decoded arrays (on the thread pool) or ``bytes``; None for nulls."""
    if not decode:
        return [None if z else bytes(v) for v, z in zip(views, nulls.tolist(), strict=True)]

    def one(i: int) -> np.ndarray | None:
        return None if nulls[i] else codecs.decode_image(codec, views[i])

    if len(views) <= 2:
        return [one(i) for i in range(len(views))]
    return list(pool().map(one, range(len(views))))


def decode_images(batch: SampleBatch, codec: str) -> list[np.ndarray | None]:
    """Decode every image of a batch on the shared thread pool."""
    n = len(batch)

    def one(i: int) -> np.ndarray | None:
        if batch.is_null(i):
            return None
        return codecs.decode_image(codec, batch.payload(i))

    if n <= 2:
        return [one(i) for i in range(n)]
    return list(pool().map(one, range(n)))
