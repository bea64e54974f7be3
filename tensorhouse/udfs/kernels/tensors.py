"""Arrow tensor layouts <-> numpy, for every kernel.

A column of tensors reaches a UDF in one of these Arrow layouts:

| layout                                   | where it comes from                         |
|------------------------------------------|---------------------------------------------|
| nested ``FixedSizeList`` (``FLOAT[4][2]``) | ``Tensor`` of fixed shape, ``Embedding``    |
| ``struct<data: list<T>, shape: [int32]>`` | ragged ``Tensor``, decoded images, our results |
| ``list<T>`` (nested lists)                | DuckDB ``DOUBLE[]`` literals, DataFusion coercion |
| ``fixed_shape_tensor`` extension          | DataFusion, for such a column               |
| a primitive (int, float, bool)            | a 0-d tensor                                |

:func:`to_tensors` turns any of them into a :class:`TensorBatch`: one flat
numpy array of elements, row offsets into it, a ``(rows, ndim)`` shape
table and a validity mask. It copies nothing for numeric data; a row with a
NULL element counts as a NULL row. The builders at the end go the other way.

Example:
    >>> import pyarrow as pa
    >>> tb = to_tensors(pa.array([[[1, 2], [3, 4]], None], pa.list_(pa.list_(pa.int8(), 2), 2)), "f", 1)
    >>> tb.shapes.tolist(), tb.valid.tolist(), tb.row(0).tolist()
    ([[2, 2], [2, 2]], [True, False], [[1, 2], [3, 4]])
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tensorhouse.types import ragged_arrow_type
from tensorhouse.udfs.kernels.errors import arg_error, row_error

#: What tensor-valued UDFs return: float64 data and a shape list (its length is the ndim).
RAGGED_F64 = pa.struct(
    [
        pa.field("data", pa.list_(pa.float64()), nullable=False),
        pa.field("shape", pa.list_(pa.int32()), nullable=False),
    ]
)
#: A decoded uint8 HxWxC image: the ``Image(None)`` / ``Tensor("uint8", (None,)*3)`` layout.
IMAGE = ragged_arrow_type(pa.uint8(), 3)

_MAX_OFFSET = 2**31 - 1


def plain(arr: pa.Array | pa.ChunkedArray) -> pa.Array:
    """One contiguous array: chunks combined (DuckDB hands ChunkedArrays), extension unwrapped."""
    if isinstance(arr, pa.ChunkedArray):
        arr = (
            arr.chunk(0)
            if arr.num_chunks == 1
            else (arr.combine_chunks() if arr.num_chunks else pa.array([], arr.type))
        )
    if isinstance(arr.type, pa.BaseExtensionType) and not _is_fixed_tensor(arr.type):
        arr = arr.storage
    return arr


def _is_fixed_tensor(t: pa.DataType) -> bool:
    return getattr(t, "extension_name", None) == "arrow.fixed_shape_tensor"


def validity(arr: pa.Array) -> np.ndarray:
    """Per-row validity of ``arr`` as a bool array (no copy of the values)."""
    n = len(arr)
    if arr.null_count == 0:
        return np.ones(n, dtype=bool)
    if arr.null_count == n or arr.buffers()[0] is None:
        return np.zeros(n, dtype=bool)
    bits = np.frombuffer(arr.buffers()[0], dtype=np.uint8)
    return np.unpackbits(bits, bitorder="little")[arr.offset : arr.offset + n].astype(bool)


def primitive_numpy(arr: pa.Array, fn: str, pos: int) -> np.ndarray:
    """The values of a primitive array (nulls hold arbitrary values); decimals become float64."""
    t = arr.type
    n = len(arr)
    if pa.types.is_boolean(t):
        if n == 0 or arr.buffers()[1] is None:
            return np.zeros(n, dtype=bool)
        bits = np.frombuffer(arr.buffers()[1], dtype=np.uint8)
        return np.unpackbits(bits, bitorder="little")[arr.offset : arr.offset + n].astype(bool)
    if pa.types.is_decimal(t):
        # DuckDB types list literals such as [1.5, 2.0] as DECIMAL(2,1)[].
        return primitive_numpy(pc.cast(arr, pa.float64()), fn, pos)
    if pa.types.is_null(t):
        return np.zeros(n, dtype=np.float64)
    if pa.types.is_integer(t) or pa.types.is_floating(t):
        dtype = np.dtype(t.to_pandas_dtype())
        buf = arr.buffers()[1]
        if n == 0 or buf is None:
            return np.zeros(n, dtype=dtype)
        return np.frombuffer(buf, dtype=dtype, count=n, offset=arr.offset * dtype.itemsize)
    raise arg_error(fn, pos, None, f"has elements of type {t}; expected numbers or booleans")


def _is_listlike(t: pa.DataType) -> bool:
    return pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t)


def _rows_with(elem_flags: np.ndarray, row_off: np.ndarray) -> np.ndarray:
    """Which rows contain a flagged element; rows own elements ``row_off[i]:row_off[i+1]``."""
    n = len(row_off) - 1
    counts = np.diff(row_off)
    row_of = np.repeat(np.arange(n), counts)
    flags = elem_flags[int(row_off[0]) : int(row_off[-1])]
    return np.bincount(row_of, weights=flags, minlength=n) > 0


@dataclass(frozen=True, slots=True)
class TensorBatch:
    """A batch of N-d tensors of one ndim: row ``i`` is ``values[offsets[i]:offsets[i+1]]`` in C order.

    ``shapes[i]`` is row i's shape. NULL rows have ``valid[i] == False``; their
    shape and elements are meaningless (but ``offsets`` stay monotonic).
    """

    values: np.ndarray
    offsets: np.ndarray
    shapes: np.ndarray
    valid: np.ndarray

    @property
    def n(self) -> int:
        return len(self.valid)

    @property
    def ndim(self) -> int:
        return int(self.shapes.shape[1])

    @property
    def sizes(self) -> np.ndarray:
        return np.diff(self.offsets)

    def row(self, i: int) -> np.ndarray:
        """Row ``i`` as an ndarray (for tests and per-row fallbacks)."""
        return self.values[self.offsets[i] : self.offsets[i + 1]].reshape(self.shapes[i])

    def uniform_shape(self) -> tuple[int, ...] | None:
        """The shape of every row, NULL rows included, when it is the same for all."""
        if self.n == 0:
            return None
        first = self.shapes[0]
        if self.ndim and not (self.shapes == first).all():
            return None
        return tuple(int(d) for d in first)

    def groups(self) -> Iterator[tuple[tuple[int, ...], np.ndarray]]:
        """(shape, row indices) for the valid rows, one group per distinct shape."""
        rows = np.flatnonzero(self.valid)
        if len(rows) == 0:
            return
        shapes = self.shapes[rows]
        if self.ndim == 0 or (shapes == shapes[0]).all():
            yield tuple(int(d) for d in shapes[0]), rows
            return
        # One int64 key per shape (mixed radix) sorts far faster than np.unique(axis=0).
        span = shapes.max(axis=0) + 1
        if float(np.prod(span.astype(np.float64))) < 2.0**62:
            radix = np.concatenate([np.cumprod(span[::-1])[::-1][1:], [1]]).astype(np.int64)
            _, first, inverse = np.unique(shapes @ radix, return_index=True, return_inverse=True)
            uniq = shapes[first]
        else:
            uniq, inverse = np.unique(shapes, axis=0, return_inverse=True)
        inverse = inverse.reshape(-1)
        order = np.argsort(inverse, kind="stable")
        bounds = np.cumsum(np.bincount(inverse, minlength=len(uniq)))
        for g, part in enumerate(np.split(order, bounds[:-1])):
            yield tuple(int(d) for d in uniq[g]), rows[part]

    def stack(self, rows: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
        """Rows of one shape as a ``(len(rows), *shape)`` array (a view when they are contiguous)."""
        m = int(np.prod(shape, dtype=np.int64))
        k = len(rows)
        if m == 0:
            return np.zeros((k, *shape), dtype=self.values.dtype)
        starts = self.offsets[rows]
        if k and starts[-1] - starts[0] == (k - 1) * m and (k == 1 or (np.diff(starts) == m).all()):
            s = int(starts[0])
            return self.values[s : s + k * m].reshape(k, *shape)
        return self.values[starts[:, None] + np.arange(m)].reshape(k, *shape)

    def trailing_shape(self) -> tuple[int, ...] | None:
        """The shape after the first axis when all rows (NULL ones too) share it.

        Then the rows, concatenated, are one ``(sum of first dims, *trailing)``
        array (:meth:`concatenated`): an operation that keeps axis 0 runs once
        for the batch however the row lengths differ (e.g. n x 3 point clouds).
        """
        if self.ndim < 2 or self.n == 0:
            return None
        rest = self.shapes[:, 1:]
        if not (rest == rest[0]).all() or not (np.prod(self.shapes, axis=1) == self.sizes).all():
            return None
        return tuple(int(d) for d in rest[0])

    def concatenated(self, trailing: tuple[int, ...]) -> np.ndarray:
        return self.values[int(self.offsets[0]) : int(self.offsets[-1])].reshape(-1, *trailing)

    def with_valid(self, valid: np.ndarray) -> TensorBatch:
        return TensorBatch(self.values, self.offsets, self.shapes, self.valid & valid)


def to_tensors(arr: pa.Array | pa.ChunkedArray, fn: str, pos: int) -> TensorBatch:
    """A TensorBatch over any tensor layout (see the module docstring); errors name ``fn``/``pos``."""
    arr = plain(arr)
    t = arr.type
    n = len(arr)
    valid = validity(arr)
    if _is_fixed_tensor(t):
        tb = _from_lists(arr.storage, fn, pos, valid)
        shape = tuple(int(d) for d in t.shape)
        if list(t.permutation or range(len(shape))) != list(range(len(shape))):
            raise arg_error(fn, pos, None, "is a permuted fixed_shape_tensor; store it in C order")
        return TensorBatch(
            tb.values, tb.offsets, np.tile(np.asarray(shape, np.int64), (n, 1)), tb.valid
        )
    if pa.types.is_struct(t):
        return _from_struct(arr, fn, pos, valid)
    if _is_listlike(t):
        return _from_lists(arr, fn, pos, valid)
    if (
        pa.types.is_integer(t)
        or pa.types.is_floating(t)
        or pa.types.is_boolean(t)
        or pa.types.is_decimal(t)
    ):
        return TensorBatch(
            primitive_numpy(arr, fn, pos),
            np.arange(n + 1, dtype=np.int64),
            np.zeros((n, 0), np.int64),
            valid,
        )
    if pa.types.is_null(t):
        return TensorBatch(
            np.zeros(n), np.arange(n + 1, dtype=np.int64), np.zeros((n, 0), np.int64), valid
        )
    hint = (
        "; decode images with decode_image()"
        if pa.types.is_binary(t) or pa.types.is_large_binary(t)
        else ""
    )
    raise arg_error(
        fn, pos, None, f"has type {t}; expected a tensor (array, list or struct<data, shape>){hint}"
    )


def _from_lists(arr: pa.Array, fn: str, pos: int, valid: np.ndarray) -> TensorBatch:
    """Descend nested lists level by level, checking every row is rectangular."""
    n = len(arr)
    row_off = np.arange(n + 1, dtype=np.int64)
    cur: pa.Array = arr
    dims: list[np.ndarray] = []
    bad = np.zeros(n, dtype=bool)
    level = 0
    while _is_listlike(cur.type):
        if level and cur.null_count:
            bad |= _rows_with(~validity(cur), row_off)
        counts = np.diff(row_off)
        if pa.types.is_fixed_size_list(cur.type):
            size = cur.type.list_size
            child_off = (cur.offset + np.arange(len(cur) + 1, dtype=np.int64)) * size
            dims.append(np.full(n, size, dtype=np.int64))
        else:
            child_off = np.asarray(cur.offsets, dtype=np.int64)
            lens = np.diff(child_off)
            firsts = np.minimum(row_off[:-1], max(len(lens) - 1, 0))
            dim = np.where(counts > 0, lens[firsts] if len(lens) else 0, 0).astype(np.int64)
            mismatch = lens[int(row_off[0]) : int(row_off[-1])] != np.repeat(dim, counts)
            if mismatch.any():
                ragged_rows = _rows_with(
                    np.concatenate([np.zeros(int(row_off[0]), bool), mismatch]), row_off
                )
                culprit = np.flatnonzero(ragged_rows & valid & ~bad)
                if len(culprit):
                    raise row_error(
                        fn,
                        pos,
                        int(culprit[0]),
                        f"is not rectangular: its level-{level + 1} lists differ in length",
                    )
            dims.append(dim)
        row_off = child_off[row_off]
        cur = cur.values
        level += 1
    values = primitive_numpy(cur, fn, pos)
    if level and cur.null_count:
        bad |= _rows_with(~validity(cur), row_off)
    shapes = np.stack(dims, axis=1) if dims else np.zeros((n, 0), np.int64)
    return TensorBatch(values, row_off, shapes, valid & ~bad)


def _from_struct(arr: pa.StructArray, fn: str, pos: int, valid: np.ndarray) -> TensorBatch:
    names = [arr.type.field(i).name for i in range(arr.type.num_fields)]
    if "data" not in names or "shape" not in names:
        raise arg_error(
            fn, pos, None, f"has type {arr.type}; expected a tensor struct<data, shape>"
        )
    data = arr.field("data")
    shape = arr.field("shape")
    if not _is_listlike(data.type) or not _is_listlike(shape.type):
        raise arg_error(fn, pos, None, f"has type {arr.type}; 'data' and 'shape' must be lists")
    valid = valid & validity(data) & validity(shape)
    flat = _from_lists(data, fn, pos, valid)
    n = len(arr)
    if pa.types.is_fixed_size_list(shape.type):
        ndim = shape.type.list_size
        shp = primitive_numpy(shape.values, fn, pos)
        start = shape.offset * ndim
        shapes = shp[start : start + n * ndim].reshape(n, ndim).astype(np.int64)
    else:
        sb = _from_lists(shape, fn, pos, np.ones(n, dtype=bool))
        lens = sb.sizes
        ndims = np.unique(lens[valid])
        if len(ndims) > 1:
            raise row_error(
                fn,
                pos,
                int(np.flatnonzero(valid & (lens != ndims[0]))[0]),
                "has rows of different ndim in one batch",
            )
        ndim = int(ndims[0]) if len(ndims) else 0
        shapes = np.zeros((n, ndim), dtype=np.int64)
        ok = lens == ndim
        if ndim:
            shapes[ok] = sb.stack(np.flatnonzero(ok), (ndim,))
    sizes = flat.sizes
    wrong = flat.valid & ((np.prod(shapes, axis=1) != sizes) | (shapes < 0).any(axis=1))
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        raise row_error(
            fn, pos, i, f"is a corrupt tensor: shape {shapes[i].tolist()} but {sizes[i]} elements"
        )
    return TensorBatch(flat.values, flat.offsets, shapes, flat.valid)


# -- results ----------------------------------------------------------------------
def _mask(valid: np.ndarray) -> pa.Array | None:
    return None if valid.all() else pa.array(~valid)


def float_array(values: np.ndarray, valid: np.ndarray) -> pa.Array:
    """A DOUBLE column; rows where ``valid`` is False (or the value is undefined) are NULL."""
    return pa.array(
        np.asarray(values, dtype=np.float64),
        type=pa.float64(),
        mask=None if valid.all() else ~valid,
    )


_INT64 = pa.int64()


def int_array(values: np.ndarray, valid: np.ndarray, type_: pa.DataType = _INT64) -> pa.Array:
    dtype = np.dtype(type_.to_pandas_dtype())
    return pa.array(
        np.asarray(values, dtype=dtype), type=type_, mask=None if valid.all() else ~valid
    )


def _offsets32(sizes: np.ndarray, fn: str) -> pa.Array:
    offsets = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    if offsets[-1] > _MAX_OFFSET:
        raise arg_error(fn, 1, None, "gives a result of more than 2**31 elements in one batch")
    return pa.array(offsets.astype(np.int32), type=pa.int32())


def list_array(
    values: np.ndarray | pa.Array,
    sizes: np.ndarray,
    valid: np.ndarray,
    type_: pa.ListType,
    fn: str = "?",
) -> pa.Array:
    """A ``list<...>`` column from flat values and per-row sizes (NULL rows should have size 0)."""
    vals = pa.array(values, type=type_.value_type) if isinstance(values, np.ndarray) else values
    return pa.ListArray.from_arrays(_offsets32(sizes, fn), vals, type=type_, mask=_mask(valid))


def ragged_array(
    values: np.ndarray,
    shapes: np.ndarray,
    valid: np.ndarray,
    type_: pa.StructType = RAGGED_F64,
    fn: str = "?",
) -> pa.StructArray:
    """A tensor-struct column; row i holds ``prod(shapes[i])`` consecutive elements of ``values``."""
    n, ndim = shapes.shape
    data_t = type_.field("data").type
    shape_t = type_.field("shape").type
    sizes = np.prod(shapes, axis=1, dtype=np.int64)
    data = pa.ListArray.from_arrays(
        _offsets32(sizes, fn), pa.array(values, type=data_t.value_type), type=data_t
    )
    flat_shapes = pa.array(shapes.reshape(-1).astype(np.int32), type=pa.int32())
    if pa.types.is_fixed_size_list(shape_t):
        shape = pa.FixedSizeListArray.from_arrays(flat_shapes, type=shape_t)
    else:
        shape = pa.ListArray.from_arrays(
            pa.array(np.arange(n + 1, dtype=np.int32) * ndim), flat_shapes, type=shape_t
        )
    return pa.StructArray.from_arrays([data, shape], fields=list(type_), mask=_mask(valid))


def map_groups(
    tb: TensorBatch,
    fn: Callable[[np.ndarray, tuple[int, ...], int], np.ndarray],
    out_dtype: np.dtype | type,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Apply ``fn(stack, shape, first_row) -> (k, *out_shape)`` per shape group; gather the results.

    Returns ``(values, shapes, valid)`` ready for :func:`ragged_array`. All
    groups must give results of one ndim. When every row (NULL rows too) has
    one shape, ``fn`` runs once over a view of the whole batch.
    """
    n = tb.n
    uniform = tb.uniform_shape()
    if uniform is not None:
        res = np.asarray(fn(tb.stack(np.arange(n), uniform), uniform, 0))
        out_shape = np.asarray(res.shape[1:], dtype=np.int64)
        # One pass from a strided view to contiguous output of the result dtype.
        flat = np.ascontiguousarray(res, dtype=out_dtype).reshape(-1)
        return flat, np.tile(out_shape, (n, 1)), tb.valid.copy()
    results: list[tuple[np.ndarray, np.ndarray]] = []
    out_ndim = 0
    for shape, rows in tb.groups():
        res = np.asarray(fn(tb.stack(rows, shape), shape, int(rows[0])))
        out_ndim = res.ndim - 1
        results.append((rows, res))
    shapes = np.zeros((n, out_ndim), dtype=np.int64)
    for rows, res in results:
        shapes[rows] = res.shape[1:]
    # NULL rows keep an all-zero shape: no elements, or one (ignored) for 0-d results,
    # which is what ragged_array expects from the shapes.
    sizes = np.prod(shapes, axis=1, dtype=np.int64)
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=offsets[1:])
    out = np.zeros(int(offsets[-1]), dtype=out_dtype)
    for rows, res in results:
        m = int(np.prod(res.shape[1:], dtype=np.int64))
        if m:
            out[(offsets[rows][:, None] + np.arange(m)).reshape(-1)] = res.reshape(-1)
    return out, shapes, tb.valid.copy()


__all__ = [
    "IMAGE",
    "RAGGED_F64",
    "TensorBatch",
    "float_array",
    "int_array",
    "list_array",
    "map_groups",
    "plain",
    "primitive_numpy",
    "ragged_array",
    "to_tensors",
    "validity",
]
