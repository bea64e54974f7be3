"""``tensor_slice``: numpy basic indexing from a string, over a batch of tensors.

Grammar (numpy's basic indexing, written as text)::

    spec  := '[' items? ']' | items?
    items := item (',' item)* ','?
    item  := '...' | int | int? ':' int? (':' int?)?

Integers may be negative (counted from the end) and drop their axis; a slice
keeps it, clamps its bounds like numpy and may have a negative step (not 0);
``...`` stands for as many ``:`` as needed. The string is parsed once per
batch. Rows are sliced in groups of equal shape, one numpy indexing
operation per group (one for a fixed-shape column).

Example:
    >>> import pyarrow as pa
    >>> parse_slice("[1:, ::-1, 0]")
    (slice(1, None, None), slice(None, None, -1), 0)
    >>> out = tensor_slice(pa.array([[1, 2, 3, 4]], pa.list_(pa.int32(), 4)), "[::2]")
    >>> out.to_pylist()
    [{'data': [1.0, 3.0], 'shape': [2]}]
"""

from __future__ import annotations

import re
from functools import lru_cache
from types import EllipsisType

import numpy as np
import pyarrow as pa

from tensorhouse.udfs.kernels.errors import UDFArgumentError, arg_error
from tensorhouse.udfs.kernels.tensors import RAGGED_F64, map_groups, ragged_array, to_tensors

Index = int | slice | EllipsisType
_INT = re.compile(r"[+-]?\d+")
_MAX_INDEX = 2**62


@lru_cache(maxsize=256)
def parse_slice(spec: str, fn: str = "tensor_slice", pos: int = 2) -> tuple[Index, ...]:
    """Parse a numpy-style index string into a tuple of ints, slices and ``...``."""
    if not isinstance(spec, str):
        raise arg_error(
            fn, pos, spec, "is not a valid slice: expected a string like '[0:10, ::2, -1]'"
        )
    text = spec.strip()
    if text.startswith("["):
        if not text.endswith("]"):
            raise arg_error(fn, pos, spec, "is not a valid slice: missing the closing ']'")
        text = text[1:-1]
    elif text.endswith("]"):
        raise arg_error(fn, pos, spec, "is not a valid slice: missing the opening '['")
    if not text.strip():
        return ()
    parts = text.split(",")
    if parts[-1].strip() == "" and len(parts) > 1:
        parts = parts[:-1]  # a trailing comma, as numpy allows: "[1,]"
    items: list[Index] = []
    for k, part in enumerate(parts, start=1):
        items.append(_parse_item(part.strip(), spec, k, fn, pos))
    if sum(1 for it in items if it is Ellipsis) > 1:
        raise arg_error(fn, pos, spec, "is not a valid slice: at most one '...' is allowed")
    return tuple(items)


def _parse_int(text: str, spec: str, k: int, fn: str, pos: int) -> int | None:
    if text == "":
        return None
    if not _INT.fullmatch(text):
        raise arg_error(
            fn, pos, spec, f"is not a valid slice: item {k}: {text!r} is not an integer"
        )
    value = int(text)
    if abs(value) > _MAX_INDEX:
        raise arg_error(fn, pos, spec, f"is not a valid slice: item {k}: {text} is too large")
    return value


def _parse_item(text: str, spec: str, k: int, fn: str, pos: int) -> Index:
    if text == "...":
        return Ellipsis
    if text == "":
        raise arg_error(
            fn, pos, spec, f"is not a valid slice: item {k} is empty (use ':' for a whole axis)"
        )
    bits = text.split(":")
    if len(bits) > 3:
        raise arg_error(
            fn, pos, spec, f"is not a valid slice: item {k} ({text!r}) has more than two ':'"
        )
    if len(bits) == 1:
        value = _parse_int(bits[0].strip(), spec, k, fn, pos)
        assert value is not None
        return value
    start, stop, *rest = (_parse_int(b.strip(), spec, k, fn, pos) for b in bits)
    step = rest[0] if rest else None
    if step == 0:
        raise arg_error(fn, pos, spec, f"is not a valid slice: item {k} ({text!r}) has step 0")
    return slice(start, stop, step)


def expand(
    key: tuple[Index, ...], ndim: int, spec: str, fn: str = "tensor_slice", pos: int = 2
) -> tuple[int | slice, ...]:
    """Replace ``...`` by full slices for an ``ndim``-d tensor; too many indices is an error."""
    n_real = sum(1 for it in key if it is not Ellipsis)
    if n_real > ndim:
        raise arg_error(fn, pos, spec, f"has {n_real} indices but the tensor is {ndim}-d")
    out: list[int | slice] = []
    for it in key:
        if it is Ellipsis:
            out.extend([slice(None)] * (ndim - n_real))
        else:
            assert not isinstance(it, EllipsisType)
            out.append(it)
    out.extend([slice(None)] * (ndim - len(out)))
    return tuple(out)


def check_bounds(
    key: tuple[int | slice, ...],
    shape: tuple[int, ...],
    spec: str,
    row: int,
    fn: str = "tensor_slice",
    pos: int = 2,
) -> None:
    """Raise a clear error when an integer index is out of range for ``shape``."""
    for axis, (it, dim) in enumerate(zip(key, shape, strict=True)):
        if isinstance(it, int) and not -dim <= it < dim:
            raise UDFArgumentError(
                f"{fn}: argument {pos} ({spec!r}): index {it} is out of range for axis {axis} "
                f"with size {dim} (row {row} of the batch)"
            )


def slice_tensor_batch(
    tensors: pa.Array | pa.ChunkedArray, key: tuple[Index, ...], spec: str, fn: str = "tensor_slice"
) -> pa.StructArray:
    """Slice every row of a tensor column with an already parsed key."""
    tb = to_tensors(tensors, fn, 1)
    full = expand(key, tb.ndim, spec, fn)
    trailing = tb.trailing_shape() if tb.uniform_shape() is None else None
    if trailing is not None and full[0] == slice(None):
        # Rows differ only in their first dimension and the key keeps it whole:
        # slice the concatenated rows in one numpy operation.
        check_bounds(full[1:], trailing, spec, 0, fn)
        res = tb.concatenated(trailing)[(slice(None), *full[1:])]
        shapes = np.concatenate(
            [tb.shapes[:, :1], np.tile(np.asarray(res.shape[1:], np.int64), (tb.n, 1))], 1
        )
        values = np.ascontiguousarray(res, dtype=np.float64).reshape(-1)
        return ragged_array(values, shapes, tb.valid, RAGGED_F64, fn)

    def apply(stack: np.ndarray, shape: tuple[int, ...], first_row: int) -> np.ndarray:
        check_bounds(full, shape, spec, first_row, fn)
        return stack[(slice(None), *full)]

    values, shapes, valid = map_groups(tb, apply, np.float64)
    return ragged_array(values, shapes, valid, RAGGED_F64, fn)


def tensor_slice(tensors: pa.Array | pa.ChunkedArray, spec: str) -> pa.StructArray:
    """Slice each tensor with numpy syntax; returns ``struct<data: list<double>, shape: list<int32>>``.

    Works on fixed (nested FixedSizeList), ragged (struct<data, shape>) and
    list tensors and on decoded images. NULL rows stay NULL.

    Example:
        >>> import numpy as np, pyarrow as pa
        >>> from tensorhouse.udfs.kernels.tensors import to_tensors
        >>> img = pa.array([{"data": list(range(12)), "shape": [2, 2, 3]}],
        ...                pa.struct([("data", pa.list_(pa.uint8())), ("shape", pa.list_(pa.int32(), 3))]))
        >>> to_tensors(tensor_slice(img, "[:, -1, 0:2]"), "t", 1).row(0).tolist()
        [[3.0, 4.0], [9.0, 10.0]]
    """
    return slice_tensor_batch(tensors, parse_slice(spec), spec)


__all__ = ["Index", "check_bounds", "expand", "parse_slice", "slice_tensor_batch", "tensor_slice"]
