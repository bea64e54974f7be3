"""Shape queries and reductions over a batch of tensors.

Whole-tensor reductions run as segment reductions over the flat element
array (``np.add.reduceat`` and friends), so ragged rows cost no Python loop;
a fixed-shape column is reduced as one ``(rows, size)`` matrix.
Axis reductions group rows by shape and reduce each group in one call.

Definitions (all results are DOUBLE, computed in float64):

- ``sum`` of an empty tensor is 0; ``mean``, ``min``, ``max`` and ``std`` of
  an empty tensor are NULL (undefined, never NaN).
- ``std`` is the population standard deviation (numpy's default, ddof=0).
- A NaN element propagates (the result is NaN), as in numpy.
- Over an axis: an axis of length 0 gives zeros for ``sum`` and a NULL row
  for the others.

Example:
    >>> import pyarrow as pa
    >>> t = pa.array([[1, 2, 3], [], None], pa.list_(pa.int64()))
    >>> tensor_reduce(t, "sum").to_pylist(), tensor_reduce(t, "mean").to_pylist()
    ([6.0, 0.0, None], [2.0, None, None])
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa

from tensorhouse.udfs.kernels.errors import arg_error
from tensorhouse.udfs.kernels.tensors import (
    RAGGED_F64,
    TensorBatch,
    float_array,
    int_array,
    list_array,
    map_groups,
    ragged_array,
    to_tensors,
)

Reduction = Literal["sum", "mean", "min", "max", "std"]
REDUCTIONS: tuple[Reduction, ...] = ("sum", "mean", "min", "max", "std")


# -- shape ----------------------------------------------------------------------
def tensor_shape(tensors: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each tensor's shape as ``list<int32>``.

    Example:
        >>> import pyarrow as pa
        >>> tensor_shape(pa.array([[[1, 2, 3]] * 2], pa.list_(pa.list_(pa.int8(), 3), 2))).to_pylist()
        [[2, 3]]
    """
    tb = to_tensors(tensors, "tensor_shape", 1)
    sizes = np.where(tb.valid, tb.ndim, 0)
    flat = tb.shapes[tb.valid].reshape(-1).astype(np.int32)
    return list_array(flat, sizes, tb.valid, pa.list_(pa.int32()), "tensor_shape")


def tensor_ndim(tensors: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each tensor's number of dimensions (INTEGER).

    Example:
        >>> import pyarrow as pa
        >>> tensor_ndim(pa.array([[1.0, 2.0], None], pa.list_(pa.float32()))).to_pylist()
        [1, None]
    """
    tb = to_tensors(tensors, "tensor_ndim", 1)
    return int_array(np.full(tb.n, tb.ndim), tb.valid, pa.int32())


def tensor_size(tensors: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Each tensor's number of elements (BIGINT).

    Example:
        >>> import pyarrow as pa
        >>> tensor_size(pa.array([[1.0, 2.0], []], pa.list_(pa.float32()))).to_pylist()
        [2, 0]
    """
    tb = to_tensors(tensors, "tensor_size", 1)
    return int_array(np.prod(tb.shapes, axis=1, dtype=np.int64), tb.valid)


# -- whole-tensor reductions -----------------------------------------------------
def _segment(
    ufunc: np.ufunc, values: np.ndarray, offsets: np.ndarray, nonempty: np.ndarray
) -> np.ndarray:
    """``ufunc.reduce`` over each non-empty row's segment (rows are contiguous in ``values``)."""
    out = np.zeros(len(nonempty), dtype=np.float64)
    starts = offsets[:-1][nonempty]
    if len(starts):
        base = int(offsets[0])
        span = values[base : int(offsets[-1])]
        out[nonempty] = ufunc.reduceat(span, starts - base)
    return out


def reduce_batch(tb: TensorBatch, op: Reduction) -> tuple[np.ndarray, np.ndarray]:
    """(result, valid) of a whole-tensor reduction over every row of ``tb``."""
    sizes = tb.sizes
    nonempty = sizes > 0
    values = tb.values
    if values.dtype == np.bool_:
        values = values.view(np.uint8)
    uniform = tb.uniform_shape()
    if uniform is not None and tb.n:
        m = int(np.prod(uniform, dtype=np.int64))
        mat = tb.stack(np.arange(tb.n), uniform).reshape(tb.n, m)
        if m == 0:
            out = np.zeros(tb.n)
        elif op == "sum":
            out = mat.sum(axis=1, dtype=np.float64)
        elif op == "mean":
            out = mat.mean(axis=1, dtype=np.float64)
        elif op == "min":
            out = mat.min(axis=1).astype(np.float64)
        elif op == "max":
            out = mat.max(axis=1).astype(np.float64)
        else:
            out = mat.std(axis=1, dtype=np.float64)
    else:
        if op in ("min", "max"):
            out = _segment(np.minimum if op == "min" else np.maximum, values, tb.offsets, nonempty)
        else:
            total = _segment(np.add, values.astype(np.float64), tb.offsets, nonempty)
            safe = np.maximum(sizes, 1)
            if op == "sum":
                out = total
            elif op == "mean":
                out = total / safe
            else:
                mean = total / safe
                base = int(tb.offsets[0])
                span = values[base : int(tb.offsets[-1])].astype(np.float64)
                dev = span - np.repeat(mean, sizes)
                sq = np.zeros(len(sizes))
                starts = tb.offsets[:-1][nonempty] - base
                if len(starts):
                    sq[nonempty] = np.add.reduceat(dev * dev, starts)
                out = np.sqrt(sq / safe)
    valid = tb.valid if op == "sum" else tb.valid & nonempty
    return out, valid


def tensor_reduce(tensors: pa.Array | pa.ChunkedArray, op: Reduction) -> pa.Array:
    """One DOUBLE per tensor: ``op`` in sum, mean, min, max, std over all its elements.

    Example:
        >>> import pyarrow as pa
        >>> tensor_reduce(pa.array([[1, 5], [2, 2]], pa.list_(pa.int32(), 2)), "max").to_pylist()
        [5.0, 2.0]
    """
    if op not in REDUCTIONS:
        raise arg_error(f"tensor_{op}", 1, None, f"unknown reduction; expected one of {REDUCTIONS}")
    tb = to_tensors(tensors, f"tensor_{op}", 1)
    out, valid = reduce_batch(tb, op)
    return float_array(out, valid)


# -- axis reductions -------------------------------------------------------------
def check_axis(axis: object, ndim: int, fn: str, pos: int = 2) -> int:
    """A valid axis for an ``ndim``-d tensor (negative counts from the end)."""
    if isinstance(axis, bool) or not isinstance(axis, int | np.integer):
        raise arg_error(fn, pos, axis, "is not an axis: expected an integer")
    if not -ndim <= int(axis) < ndim:
        raise arg_error(fn, pos, int(axis), f"is out of range for a {ndim}-d tensor")
    return int(axis) % ndim


def _reduce_axis_stack(data: np.ndarray, op: Reduction, axis: int) -> np.ndarray:
    if op == "sum":
        return data.sum(axis=axis, dtype=np.float64)
    if op == "mean":
        return data.mean(axis=axis, dtype=np.float64)
    if op == "std":
        return data.std(axis=axis, dtype=np.float64)
    return (data.min(axis=axis) if op == "min" else data.max(axis=axis)).astype(np.float64)


def tensor_reduce_axis(
    tensors: pa.Array | pa.ChunkedArray, op: Reduction, axis: int
) -> pa.StructArray:
    """Reduce each tensor over one axis; returns a tensor struct (float64 data) of one less dimension.

    Example:
        >>> import pyarrow as pa
        >>> t = pa.array([[[1, 2, 3], [4, 5, 6]]], pa.list_(pa.list_(pa.int32(), 3), 2))
        >>> tensor_reduce_axis(t, "sum", 0).to_pylist()
        [{'data': [5.0, 7.0, 9.0], 'shape': [3]}]
    """
    fn = f"tensor_{op}_axis"
    if op not in REDUCTIONS:
        raise arg_error(fn, 1, None, f"unknown reduction; expected one of {REDUCTIONS}")
    tb = to_tensors(tensors, fn, 1)
    ax = check_axis(axis, tb.ndim, fn)
    trailing = tb.trailing_shape() if ax > 0 and tb.uniform_shape() is None else None
    if trailing is not None and trailing[ax - 1] > 0:
        # Rows differ only in their first dimension and that one is kept: reduce the
        # concatenated rows in one numpy call.
        big = tb.concatenated(trailing)
        res = _reduce_axis_stack(big.view(np.uint8) if big.dtype == np.bool_ else big, op, ax)
        shapes = np.delete(tb.shapes, ax, axis=1)
        return ragged_array(res.reshape(-1), shapes, tb.valid, RAGGED_F64, fn)

    def apply(stack: np.ndarray, shape: tuple[int, ...], first_row: int) -> np.ndarray:
        data = stack.view(np.uint8) if stack.dtype == np.bool_ else stack
        a = ax + 1
        if shape[ax] == 0:
            return np.zeros(stack.shape[:a] + stack.shape[a + 1 :])
        return _reduce_axis_stack(data, op, a)

    values, shapes, valid = map_groups(tb, apply, np.float64)
    if op != "sum":
        empty_axis = tb.shapes[:, ax] == 0
        valid &= ~(empty_axis & (np.prod(shapes, axis=1) > 0))
    return ragged_array(values, shapes, valid, RAGGED_F64, fn)


__all__ = [
    "REDUCTIONS",
    "Reduction",
    "check_axis",
    "reduce_batch",
    "tensor_ndim",
    "tensor_reduce",
    "tensor_reduce_axis",
    "tensor_shape",
    "tensor_size",
]
