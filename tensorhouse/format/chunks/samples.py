"""SampleBatch: the samples of one column as one contiguous buffer.

Writing normalises user values (arrays, lists, bytes, Arrow arrays) into a
SampleBatch; reading a chunk yields one. Conversions to Arrow and numpy work
on this single representation, vectorised, without a Python loop per row on
fixed-shape data.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from tensorhouse.errors import CodecError, SchemaError
from tensorhouse.format.chunks import codecs, columnar
from tensorhouse.format.threads import pool
from tensorhouse.types import (
    Arrow,
    BBox,
    ClassLabel,
    ColumnType,
    Image,
    Json,
    Scalar,
    Text,
    shape_matches,
)


@dataclass(frozen=True, eq=False)
class SampleBatch:
    """``n`` samples: raw payload bytes, per-sample shapes, and a null mask.

    For numeric columns each payload is the sample's C-order bytes; for image
    columns with a codec, the encoded file; for text, UTF-8; for json, JSON text.
    A null fixed-shape sample holds zeros of the full shape, so fixed-shape data
    stays one regular array.

    ``Arrow`` columns are held as an Arrow array instead (``column``); their
    ``data`` is empty and ``offsets`` all zero (see :func:`of_column`).
    """

    data: bytes | memoryview
    offsets: np.ndarray  # int64 [n + 1]
    shapes: np.ndarray  # int64 [n, ndim]
    nulls: np.ndarray | None  # bool [n], None when no sample is null
    column: pa.Array | None = None

    def __len__(self) -> int:
        return len(self.offsets) - 1

    @property
    def nbytes(self) -> int:
        if self.column is not None:
            return int(self.column.nbytes)
        return int(self.offsets[-1] - self.offsets[0])

    def slice(self, start: int, stop: int) -> SampleBatch:
        """Rows ``[start, stop)`` as a batch of their own (data view, offsets rebased)."""
        if self.column is not None:
            return of_column(self.column.slice(start, stop - start))
        a, b = int(self.offsets[start]), int(self.offsets[stop])
        nulls = self.nulls[start:stop] if self.nulls is not None else None
        if nulls is not None and not nulls.any():
            nulls = None
        return SampleBatch(
            memoryview(self.data)[a:b],
            self.offsets[start : stop + 1] - a,
            self.shapes[start:stop],
            nulls,
        )

    def payload(self, i: int) -> memoryview:
        return memoryview(self.data)[int(self.offsets[i]) : int(self.offsets[i + 1])]

    def is_null(self, i: int) -> bool:
        return self.nulls is not None and bool(self.nulls[i])


def of_column(arr: pa.Array) -> SampleBatch:
    """A batch holding an Arrow array (the rows of an ``Arrow`` column)."""
    n = len(arr)
    # Read-only zero-byte stand-ins: a column batch has no payload offsets or shapes.
    return SampleBatch(
        b"", np.broadcast_to(np.int64(0), (n + 1,)), np.empty((n, 0), np.int64), None, arr
    )


def take_column(batch: SampleBatch, rows: np.ndarray) -> SampleBatch:
    """Rows of a column batch, in the given order."""
    assert batch.column is not None
    return of_column(columnar.take(batch.column, pa.array(np.asarray(rows, dtype=np.int64))))


def concat(batches: Sequence[SampleBatch]) -> SampleBatch:
    """One batch holding the rows of several, in order."""
    if len(batches) == 1:
        return batches[0]
    if batches and batches[0].column is not None:
        t = batches[0].column.type
        return of_column(
            pa.concat_arrays(
                [
                    b.column if b.column.type == t else b.column.cast(t)
                    for b in batches
                    if b.column is not None
                ]
            )
        )
    sizes = [b.nbytes for b in batches]
    starts = np.concatenate([[0], np.cumsum(sizes)])
    offsets = np.concatenate(
        [b.offsets[:-1] - b.offsets[0] + s for b, s in zip(batches, starts, strict=False)]
        + [np.array([starts[-1]], dtype=np.int64)]
    )
    data = b"".join(memoryview(b.data)[int(b.offsets[0]) : int(b.offsets[-1])] for b in batches)
    ndim = batches[0].shapes.shape[1] if batches else 0
    shapes = (
        np.concatenate([b.shapes for b in batches]) if batches else np.zeros((0, ndim), np.int64)
    )
    if any(b.nulls is not None for b in batches):
        nulls: np.ndarray | None = np.concatenate(
            [b.nulls if b.nulls is not None else np.zeros(len(b), bool) for b in batches]
        )
    else:
        nulls = None
    return SampleBatch(data, offsets.astype(np.int64), shapes, nulls)


# -- normalisation: user values -> SampleBatch ---------------------------------
def _err(column: str, row: int, msg: str) -> SchemaError:
    return SchemaError(f"column {column!r}, row {row}: {msg}")


def _cast_numeric(arr: np.ndarray, dtype: np.dtype, column: str, row: int) -> np.ndarray:
    """Cast within a kind (ints to ints, ints/floats to floats); refuse lossy kinds."""
    if arr.dtype == dtype:
        return arr
    if arr.dtype.kind not in "biuf":
        raise _err(column, row, f"expected {dtype.name} values, got {arr.dtype} data")
    if not np.can_cast(arr.dtype, dtype, "same_kind") and not (arr.dtype.kind == "b"):
        raise _err(column, row, f"cannot store {arr.dtype} values in a {dtype.name} column")
    if dtype.kind in "iu" and arr.size:
        info = np.iinfo(dtype)
        lo, hi = arr.min(), arr.max()
        if lo < info.min or hi > info.max:
            raise _err(column, row, f"values {lo}..{hi} do not fit {dtype.name}")
    return arr.astype(dtype)


def _class_indices(values: Any, ctype: ClassLabel, column: str) -> np.ndarray:
    """Class labels given as ints or names -> int32 indices, range-checked."""
    seq = list(values) if not isinstance(values, np.ndarray) else values
    if isinstance(seq, list) and any(isinstance(v, str) for v in seq):
        lookup = {c: i for i, c in enumerate(ctype.classes)}
        out = []
        for row, v in enumerate(seq):
            if isinstance(v, str):
                if v not in lookup:
                    raise _err(
                        column, row, f"unknown class {v!r}; classes are {list(ctype.classes)}"
                    )
                out.append(lookup[v])
            else:
                out.append(v)
        seq = out
    return np.asarray(seq)


def normalize(values: Any, ctype: ColumnType, column: str) -> SampleBatch:
    """Validate and convert one column's values into a SampleBatch.

    Raises SchemaError naming the column and row for a wrong dtype or shape.
    """
    if isinstance(ctype, Arrow):
        return of_column(columnar.to_column(values, ctype.arrow_type(), column))
    if isinstance(values, pa.ChunkedArray | pa.Array):
        if ctype.storage_dtype == "bytes" and (
            pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type)
        ):
            return _binary_batch(values)
        if (
            isinstance(ctype, Image)
            and ctype.compression is not None
            and (pa.types.is_binary(values.type) or pa.types.is_large_binary(values.type))
        ):
            fast = _binary_images(values, ctype, column)
            if fast is not None:
                return fast
        values = _from_arrow(values, ctype, column)
    if ctype.storage_dtype in ("bytes", "str"):
        return _normalize_bytes(values, ctype, column)
    if isinstance(ctype, Image) and ctype.compression is not None:
        return _normalize_images(values, ctype, column)
    return _normalize_numeric(values, ctype, column)


def _normalize_numeric(values: Any, ctype: ColumnType, column: str) -> SampleBatch:
    dtype = np.dtype(ctype.storage_dtype)
    spec = ctype.sample_shape
    if isinstance(ctype, ClassLabel):
        values = _class_indices(values, ctype, column)
    # Fast path: one stacked array of fixed-shape samples.
    if isinstance(values, np.ndarray) and values.dtype != object and ctype.is_fixed_shape:
        if values.ndim != len(spec) + 1 or not shape_matches(values.shape[1:], spec):
            raise _err(
                column, 0, f"expected samples of shape {spec}, got an array of shape {values.shape}"
            )
        arr = np.ascontiguousarray(_cast_numeric(values, dtype, column, 0))
        n = len(arr)
        nbytes = arr[0].nbytes if n else 0
        _check_labels(arr, ctype, column)
        return SampleBatch(
            arr.reshape(-1).view(np.uint8).data if n else b"",
            np.arange(n + 1, dtype=np.int64) * nbytes,
            np.tile(np.asarray(spec, dtype=np.int64), (n, 1)),
            None,
        )
    if isinstance(values, np.ndarray) and values.ndim == 0:
        raise _err(column, 0, "expected a sequence of samples, got a 0-d array")
    parts: list[bytes | memoryview] = []
    shapes: list[tuple[int, ...]] = []
    nulls = np.zeros(len(values), dtype=bool)
    for row, v in enumerate(values):
        if v is None:
            nulls[row] = True
            fill = tuple(0 if d is None else d for d in spec)
            if ctype.is_fixed_shape:
                parts.append(bytes(int(np.prod(fill, dtype=np.int64)) * dtype.itemsize))
            else:
                parts.append(b"")
            shapes.append(fill if ctype.is_fixed_shape else (0,) * len(spec))
            continue
        a = np.asarray(v)
        if isinstance(ctype, Image) and a.ndim == 2:
            a = a[:, :, None]  # grayscale HxW -> HxWx1
        if isinstance(ctype, BBox) and a.size == 0:
            a = a.reshape(0, 4)
        if not shape_matches(a.shape, spec):
            raise _err(column, row, f"expected shape {spec}, got {a.shape}")
        if isinstance(ctype, Image) and a.shape[2] not in (1, 3, 4):
            raise _err(column, row, f"an image has 1, 3 or 4 channels, got {a.shape[2]}")
        shapes.append(a.shape)  # before ascontiguousarray, which makes 0-d arrays 1-d
        a = np.ascontiguousarray(_cast_numeric(a, dtype, column, row))
        parts.append(a.reshape(-1).view(np.uint8).data)
    if isinstance(ctype, ClassLabel):
        valid = [np.frombuffer(p, dtype) for p, z in zip(parts, nulls, strict=True) if not z]
        if valid:
            _check_labels(np.concatenate(valid), ctype, column)
    return _pack(parts, shapes, len(spec), nulls)


def _check_labels(arr: np.ndarray, ctype: ColumnType, column: str) -> None:
    if isinstance(ctype, ClassLabel) and ctype.classes and arr.size:
        bad = np.flatnonzero((arr < 0) | (arr >= len(ctype.classes)))
        if len(bad):
            raise _err(
                column,
                int(bad[0]),
                f"label {arr.reshape(-1)[bad[0]]} is not in 0..{len(ctype.classes) - 1}",
            )


def _pack(
    parts: Sequence[bytes | memoryview],
    shapes: Sequence[Sequence[int]],
    ndim: int,
    nulls: np.ndarray | None,
) -> SampleBatch:
    lengths = np.fromiter((len(p) for p in parts), dtype=np.int64, count=len(parts))
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    shp = np.asarray(shapes, dtype=np.int64).reshape(len(parts), ndim)
    if nulls is not None and not nulls.any():
        nulls = None
    return SampleBatch(b"".join(parts), offsets, shp, nulls)


def _binary_batch(arr: pa.ChunkedArray | pa.Array) -> SampleBatch:
    """An Arrow binary column as a batch without a copy per value: its data buffer and offsets as they are."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    n = len(arr)
    _, off_buf, data = arr.buffers()[:3]
    if n == 0 or off_buf is None:
        return _pack([b""] * n, [()] * n, 0, np.ones(n, bool) if n else None)
    width = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    offs = np.frombuffer(off_buf, width)[arr.offset : arr.offset + n + 1].astype(np.int64)
    view = (
        np.frombuffer(data, np.uint8).data[int(offs[0]) : int(offs[-1])]
        if data is not None
        else b""
    )
    nulls = (
        np.asarray(arr.is_null().to_numpy(zero_copy_only=False), bool) if arr.null_count else None
    )
    return SampleBatch(view, offs - offs[0], np.zeros((n, 0), np.int64), nulls)


def _binary_images(
    arr: pa.ChunkedArray | pa.Array, ctype: Image, column: str
) -> SampleBatch | None:
    """Encoded images in an Arrow binary column, checked header by header but not copied.

    The same checks and result as :func:`_normalize_images` on the values as
    bytes, without a Python bytes object per row and a join (a third of a Ray
    write task's time on JPEGs). None (use the general path) when a null slot
    has bytes, which the general path would drop.
    """
    codec = ctype.compression
    assert codec is not None
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    n = len(arr)
    _, off_buf, data = arr.buffers()[:3]
    if n == 0 or off_buf is None or data is None:
        return None
    width = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    offs = np.frombuffer(off_buf, width)[arr.offset : arr.offset + n + 1].astype(np.int64)
    nulls = (
        np.asarray(arr.is_null().to_numpy(zero_copy_only=False), bool) if arr.null_count else None
    )
    if nulls is not None and (np.diff(offs)[nulls] != 0).any():
        return None
    # Unsigned bytes: simplejpeg refuses a signed view.
    view = np.frombuffer(data, np.uint8).data[int(offs[0]) : int(offs[-1])]
    rel = (offs - offs[0]).tolist()
    shapes = np.zeros((n, 3), np.int64)
    for row in range(n):
        if nulls is not None and nulls[row]:
            continue
        try:
            shapes[row] = codecs.image_header_shape(codec, view[rel[row] : rel[row + 1]])
        except CodecError as err:
            raise _err(column, row, f"bytes are not a {codec} image: {err}") from err
    if nulls is not None and not nulls.any():
        nulls = None
    return SampleBatch(view, offs - offs[0], shapes, nulls)


def _normalize_bytes(values: Any, ctype: ColumnType, column: str) -> SampleBatch:
    parts: list[bytes] = []
    nulls = np.zeros(len(values), dtype=bool)
    for row, v in enumerate(values):
        if v is None:
            nulls[row] = True
            parts.append(b"")
        elif isinstance(ctype, Json):
            try:
                parts.append(json.dumps(v, ensure_ascii=False, allow_nan=False).encode())
            except (TypeError, ValueError) as err:
                raise _err(column, row, f"value is not JSON-serialisable: {err}") from err
            except RecursionError as err:  # nested deeper than Python can serialise
                raise _err(
                    column,
                    row,
                    "value is nested too deeply to store as JSON (deeper than Python's "
                    "recursion limit)",
                ) from err
        elif isinstance(ctype, Text):
            if not isinstance(v, str):
                raise _err(column, row, f"expected str, got {type(v).__name__}")
            try:
                parts.append(v.encode("utf-8"))
            except UnicodeEncodeError as err:
                raise _err(
                    column,
                    row,
                    f"text is not valid Unicode ({err.reason} at character {err.start}, "
                    "e.g. a lone surrogate from os.fsdecode of a non-UTF-8 name): store "
                    "it as bytes in a th.Binary() column",
                ) from None
        else:
            if not isinstance(v, bytes | bytearray | memoryview):
                raise _err(column, row, f"expected bytes, got {type(v).__name__}")
            parts.append(bytes(v))
    return _pack(parts, [()] * len(parts), 0, nulls)


def _normalize_images(values: Any, ctype: Image, column: str) -> SampleBatch:
    codec = ctype.compression
    assert codec is not None

    def one(row: int, v: Any) -> tuple[bytes, tuple[int, int, int]] | None:
        if v is None:
            return None
        if isinstance(v, bytes | bytearray | memoryview):
            # An encoded file is stored as it is (no re-encoding), if it is of this codec.
            try:
                return bytes(v), codecs.image_header_shape(codec, v)
            except CodecError as err:
                raise _err(column, row, f"bytes are not a {codec} image: {err}") from err
        a = np.asarray(v)
        if a.ndim == 2:
            a = a[:, :, None]
        if a.ndim != 3 or a.shape[2] not in (1, 3, 4):
            raise _err(column, row, f"expected an HxWxC image (C in 1, 3, 4), got shape {a.shape}")
        if a.dtype != np.uint8:
            raise _err(column, row, f"expected uint8 pixels, got {a.dtype}")
        if a.shape[0] == 0 or a.shape[1] == 0:
            raise _err(column, row, f"cannot encode an empty image of shape {a.shape}")
        try:
            return codecs.encode_image(codec, a, ctype.quality), (
                a.shape[0],
                a.shape[1],
                a.shape[2],
            )
        except CodecError as err:
            raise _err(column, row, str(err)) from err

    items = list(values)
    # Validating an encoded file's header takes microseconds, less than a pool task
    # costs: do it inline. Encoding arrays is the real work: spread it in groups.
    to_encode = [
        i
        for i, v in enumerate(items)
        if v is not None and not isinstance(v, bytes | bytearray | memoryview)
    ]
    results: list[tuple[bytes, tuple[int, int, int]] | None] = [None] * len(items)
    for i, v in enumerate(items):
        if v is not None and isinstance(v, bytes | bytearray | memoryview):
            results[i] = one(i, v)
    if len(to_encode) > 8:
        groups = np.array_split(
            np.asarray(to_encode), max(1, min(len(to_encode) // 8, 4 * (os.cpu_count() or 2)))
        )

        def encode_group(g: np.ndarray) -> None:
            for i in g.tolist():
                results[i] = one(i, items[i])

        list(pool().map(encode_group, groups))
    else:
        for i in to_encode:
            results[i] = one(i, items[i])
    nulls = np.fromiter((r is None for r in results), dtype=bool, count=len(results))
    parts = [b"" if r is None else r[0] for r in results]
    shapes = [(0, 0, 0) if r is None else r[1] for r in results]
    return _pack(parts, shapes, 3, nulls)


def _from_arrow(arr: pa.ChunkedArray | pa.Array, ctype: ColumnType, column: str) -> Any:
    """Arrow column -> values ``normalize`` accepts (stacked numpy where the shape is fixed)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    if isinstance(ctype, Scalar) and arr.type != ctype.arrow_type():
        # The one casting rule of every write path: Arrow's safe cast, exact or an error naming the row.
        arr = columnar.cast(arr, ctype.arrow_type(), column)
    if (
        pa.types.is_fixed_size_list(arr.type)
        and arr.null_count == 0
        and ctype.is_fixed_shape
        and ctype.storage_dtype not in ("bytes", "str")
    ):
        flat = arr
        dims = []
        while pa.types.is_fixed_size_list(flat.type):
            dims.append(flat.type.list_size)
            flat = flat.flatten()
        return flat.to_numpy(zero_copy_only=False).reshape(len(arr), *dims)
    if (
        ctype.is_scalar
        and arr.null_count == 0
        and (
            pa.types.is_integer(arr.type)
            or pa.types.is_floating(arr.type)
            or pa.types.is_boolean(arr.type)
        )
    ):
        return arr.to_numpy(zero_copy_only=False)
    if pa.types.is_struct(arr.type) and {f.name for f in arr.type} == {"data", "shape"}:
        out: list[Any] = []
        for row in arr.to_pylist():
            out.append(None if row is None else np.asarray(row["data"]).reshape(row["shape"]))
        return out
    if isinstance(ctype, Json) and (
        pa.types.is_string(arr.type) or pa.types.is_large_string(arr.type)
    ):
        return [None if s is None else json.loads(s) for s in arr.to_pylist()]
    return arr.to_pylist()
