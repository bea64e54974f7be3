"""Box geometry: IoU, matching, areas and normalisation, honouring the box format.

A box is 4 numbers, ``xyxy`` (x1, y1, x2, y2) or ``xywh`` (x, y, width,
height: COCO). A ``BBox`` column is ``list<FLOAT[4]>`` (one list of boxes per
row) and records its format in field metadata, but neither DuckDB nor
DataFusion hands field metadata to a UDF, so functions take the format as an
optional last argument (default ``'xyxy'``). The argument also accepts the
column's metadata JSON, which DataFusion can read in SQL:
``box_area(boxes, arrow_metadata(boxes, 'tensorhouse.type'))``.

Definitions:

- Widths and heights below 0 count as 0 (a degenerate box has area 0).
- ``box_iou(a, b)``: intersection area / union area; NULL when the union is 0.
- ``max_iou(boxes, box)``: the largest IoU of ``box`` with any of ``boxes``;
  0.0 when ``boxes`` is empty (no match).
- ``mean_iou(a, b)``: greedy matching. Repeatedly take the pair (one box of
  ``a``, one of ``b``, both unmatched) with the highest IoU, ties broken by
  the lowest index in ``a`` then in ``b``, until no pair with IoU > 0 is left;
  the result is the sum of the matched IoUs divided by ``max(len(a), len(b))``
  (unmatched boxes on either side count as 0). NULL when both are empty.
- ``normalize_boxes(boxes, [x, y, w, h])``: coordinates relative to that
  frame (``(x - fx) / fw``, sizes ``/ fw``), clipped to [0, 1], in the input's
  format, as float32.

Example:
    >>> import pyarrow as pa
    >>> a = pa.array([[0, 0, 2, 2]], pa.list_(pa.float32(), 4))
    >>> b = pa.array([[1, 1, 3, 3]], pa.list_(pa.float32(), 4))
    >>> box_iou(a, b).to_pylist()
    [0.14285714285714285]
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal

import numpy as np
import pyarrow as pa

from tensorhouse.udfs.kernels.errors import arg_error, row_error
from tensorhouse.udfs.kernels.tensors import float_array, int_array, list_array, plain, to_tensors

BoxFormat = Literal["xyxy", "xywh"]
BOXES = pa.list_(pa.list_(pa.float32(), 4))


def box_format(value: object, fn: str, pos: int) -> BoxFormat:
    """'xyxy' / 'xywh', or a tensorhouse type JSON (``{"kind": "bbox", "format": ...}``)."""
    if value is None:
        return "xyxy"
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("{"):
            try:
                text = str(json.loads(text).get("format", "xyxy"))
            except (ValueError, AttributeError) as err:
                raise arg_error(fn, pos, value, f"is not a box format: {err}") from err
        if text.lower() in ("xyxy", "xywh"):
            return "xywh" if text.lower() == "xywh" else "xyxy"
    raise arg_error(fn, pos, value, "is not a box format: expected 'xyxy' or 'xywh'")


def _to_xyxy(b: np.ndarray, fmt: BoxFormat) -> np.ndarray:
    if fmt == "xyxy":
        return b
    out = b.copy()
    out[..., 2] = b[..., 0] + b[..., 2]
    out[..., 3] = b[..., 1] + b[..., 3]
    return out


def single_boxes(
    arr: pa.Array | pa.ChunkedArray, fn: str, pos: int, fmt: BoxFormat, what: str = "a box"
) -> tuple[np.ndarray, np.ndarray]:
    """One box (or frame) per row -> ``((n, 4) float64 xyxy, valid)``."""
    tb = to_tensors(arr, fn, pos)
    if tb.ndim != 1:
        raise arg_error(fn, pos, None, f"is a {tb.ndim}-d tensor; expected {what} (4 numbers)")
    wrong = tb.valid & (tb.sizes != 4)
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        raise row_error(fn, pos, i, f"is not {what}: expected 4 numbers, got {tb.sizes[i]}")
    uniform = tb.uniform_shape()
    rows = np.arange(tb.n) if uniform is not None else np.flatnonzero(tb.valid)
    boxes = np.zeros((tb.n, 4))
    boxes[rows] = tb.stack(rows, (4,))
    return _to_xyxy(boxes, fmt), tb.valid


def box_sets(
    arr: pa.Array | pa.ChunkedArray, fn: str, pos: int, fmt: BoxFormat
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A set of boxes per row -> ``(flat (total, 4) float64 xyxy, counts (n,), valid)``.

    NULL rows count 0 boxes. A last dimension other than 4 is an error.
    """
    inner = plain(arr).type
    while pa.types.is_list(inner) or pa.types.is_large_list(inner):
        inner = inner.value_type
    if (
        pa.types.is_fixed_size_list(inner)
        and inner.list_size != 4
        and not pa.types.is_fixed_size_list(inner.value_type)
    ):
        raise arg_error(
            fn,
            pos,
            None,
            f"has boxes of type {inner}; a box has 4 numbers (last dimension must be 4)",
        )
    tb = to_tensors(arr, fn, pos)
    if tb.ndim != 2:
        raise arg_error(
            fn, pos, None, f"is a {tb.ndim}-d tensor; expected boxes, a list of FLOAT[4]"
        )
    wrong = tb.valid & (tb.shapes[:, 1] != 4) & (tb.shapes[:, 0] > 0)
    if wrong.any():
        i = int(np.flatnonzero(wrong)[0])
        raise row_error(
            fn,
            pos,
            i,
            f"has boxes of {tb.shapes[i, 1]} numbers; a box has 4 (last dimension must be 4)",
        )
    counts = np.where(tb.valid, tb.shapes[:, 0], 0)
    rows = np.flatnonzero(counts)
    sizes = counts * 4
    if tb.valid.all() and (tb.sizes == sizes).all():
        flat = tb.values[int(tb.offsets[0]) : int(tb.offsets[-1])]
    else:
        starts = tb.offsets[rows]
        new_starts = np.concatenate([[0], np.cumsum(sizes[rows])[:-1]]).astype(np.int64)
        idx = np.arange(int(sizes.sum()), dtype=np.int64) + np.repeat(
            starts - new_starts, sizes[rows]
        )
        flat = tb.values[idx]
    return _to_xyxy(flat.reshape(-1, 4).astype(np.float64), fmt), counts, tb.valid


def _area(b: np.ndarray) -> np.ndarray:
    return np.maximum(b[..., 2] - b[..., 0], 0) * np.maximum(b[..., 3] - b[..., 1], 0)


def _iou(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Elementwise IoU of broadcastable xyxy box arrays; returns (iou, union > 0)."""
    w = np.maximum(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0)
    h = np.maximum(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0)
    inter = w * h
    union = _area(a) + _area(b) - inter
    ok = union > 0
    return np.divide(
        inter, union, out=np.zeros(np.broadcast(a[..., 0], b[..., 0]).shape), where=ok
    ), ok


def box_iou(
    a: pa.Array | pa.ChunkedArray, b: pa.Array | pa.ChunkedArray, *, fmt: str = "xyxy"
) -> pa.Array:
    """IoU of two boxes per row (DOUBLE); NULL when both have zero area.

    Example:
        >>> import pyarrow as pa
        >>> t = pa.list_(pa.float32(), 4)
        >>> box_iou(pa.array([[0, 0, 2, 2]], t), pa.array([[1, 1, 2, 2]], t), fmt="xywh").to_pylist()
        [0.14285714285714285]
    """
    f = box_format(fmt, "box_iou", 3)
    ba, va = single_boxes(a, "box_iou", 1, f)
    bb, vb = single_boxes(b, "box_iou", 2, f)
    iou, ok = _iou(ba, bb)
    return float_array(iou, va & vb & ok)


def max_iou(
    boxes: pa.Array | pa.ChunkedArray, box: pa.Array | pa.ChunkedArray, *, fmt: str = "xyxy"
) -> pa.Array:
    """The best IoU of ``box`` among the row's ``boxes`` (0.0 for no boxes).

    Example:
        >>> import pyarrow as pa
        >>> bs = pa.array([[[0, 0, 1, 1], [0, 0, 2, 2]], []], pa.list_(pa.list_(pa.float32(), 4)))
        >>> max_iou(bs, pa.array([[0, 0, 2, 2]] * 2, pa.list_(pa.float32(), 4))).to_pylist()
        [1.0, 0.0]
    """
    f = box_format(fmt, "max_iou", 3)
    flat, counts, vs = box_sets(boxes, "max_iou", 1, f)
    one, vo = single_boxes(box, "max_iou", 2, f)
    if len(one) != len(counts):
        raise arg_error("max_iou", 2, None, f"has {len(one)} rows but argument 1 has {len(counts)}")
    iou, _ = _iou(flat, np.repeat(one, counts, axis=0))
    out = np.zeros(len(counts))
    nonempty = counts > 0
    if nonempty.any():
        starts = np.concatenate([[0], np.cumsum(counts)[:-1]])[nonempty]
        out[nonempty] = np.maximum.reduceat(iou, starts)
    return float_array(out, vs & vo)


def _next_pow2(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 1, x, 2 ** np.ceil(np.log2(np.maximum(x, 1))).astype(np.int64))


def _greedy(a: np.ndarray, b: np.ndarray, na: np.ndarray, nb: np.ndarray) -> np.ndarray:
    """Greedy matched-IoU sums for k rows padded to ``a: (k, PA, 4)``, ``b: (k, PB, 4)``."""
    k, pa_, pb_ = a.shape[0], a.shape[1], b.shape[1]
    m, _ = _iou(a[:, :, None, :], b[:, None, :, :])
    pad = (np.arange(pa_)[None, :, None] >= na[:, None, None]) | (
        np.arange(pb_)[None, None, :] >= nb[:, None, None]
    )
    m = np.where(pad, -1.0, m)
    total = np.zeros(k)
    flat = m.reshape(k, -1)
    ar = np.arange(k)
    for _ in range(min(pa_, pb_)):
        best = flat.argmax(axis=1)  # first maximum in row-major order: lowest a, then lowest b
        val = flat[ar, best]
        live = val > 0
        if not live.any():
            break
        total[live] += val[live]
        i, j = np.divmod(best[live], pb_)
        m[ar[live], i, :] = -1.0
        m[ar[live], :, j] = -1.0
    return total


def mean_iou(
    a: pa.Array | pa.ChunkedArray, b: pa.Array | pa.ChunkedArray, *, fmt: str = "xyxy"
) -> pa.Array:
    """Mean IoU of a greedy one-to-one matching of two box sets (see the module docstring).

    Example:
        >>> import pyarrow as pa
        >>> t = pa.list_(pa.list_(pa.float32(), 4))
        >>> pred = pa.array([[[0, 0, 2, 2], [5, 5, 6, 6]]], t)
        >>> gt = pa.array([[[0, 0, 2, 2]]], t)
        >>> mean_iou(pred, gt).to_pylist()
        [0.5]
    """
    f = box_format(fmt, "mean_iou", 3)
    fa, na, va = box_sets(a, "mean_iou", 1, f)
    fb, nb, vb = box_sets(b, "mean_iou", 2, f)
    if len(na) != len(nb):
        raise arg_error("mean_iou", 2, None, f"has {len(nb)} rows but argument 1 has {len(na)}")
    n = len(na)
    valid = va & vb & ((na + nb) > 0)
    totals = np.zeros(n)
    starts_a = np.concatenate([[0], np.cumsum(na)[:-1]]).astype(np.int64)
    starts_b = np.concatenate([[0], np.cumsum(nb)[:-1]]).astype(np.int64)
    work = np.flatnonzero(valid & (na > 0) & (nb > 0))
    # Pad rows to power-of-two set sizes and match each size bucket in one go.
    pa_all, pb_all = _next_pow2(na[work]), _next_pow2(nb[work])
    keys = pa_all * (1 << 32) + pb_all
    for key in np.unique(keys):
        sel = work[keys == key]
        pa_, pb_ = int(key >> 32), int(key & 0xFFFFFFFF)
        ia = np.minimum(starts_a[sel][:, None] + np.arange(pa_), max(len(fa) - 1, 0))
        ib = np.minimum(starts_b[sel][:, None] + np.arange(pb_), max(len(fb) - 1, 0))
        totals[sel] = _greedy(fa[ia], fb[ib], na[sel], nb[sel])
    denom = np.maximum(np.maximum(na, nb), 1)
    return float_array(totals / denom, valid)


def normalize_boxes(
    boxes: pa.Array | pa.ChunkedArray,
    frame: pa.Array | pa.ChunkedArray | Sequence[float],
    *,
    fmt: str = "xyxy",
) -> pa.Array:
    """Boxes relative to a frame ``[x, y, w, h]`` (e.g. ``[0, 0, width, height]``), clipped to [0, 1].

    Example:
        >>> import pyarrow as pa
        >>> bs = pa.array([[[10, 20, 30, 40]]], pa.list_(pa.list_(pa.float32(), 4)))
        >>> normalize_boxes(bs, [0, 0, 100, 50]).to_pylist()
        [[[0.10000000149011612, 0.4000000059604645, 0.30000001192092896, 0.800000011920929]]]
    """
    fn = "normalize_boxes"
    f = box_format(fmt, fn, 3)
    flat, counts, valid = box_sets(boxes, fn, 1, f)
    n = len(counts)
    if isinstance(frame, pa.Array | pa.ChunkedArray):
        fr, fvalid = single_boxes(
            frame, fn, 2, "xyxy", "a frame [x, y, width, height]"
        )  # raw values
        valid = valid & fvalid
    else:
        one = np.asarray(frame, dtype=np.float64)
        if one.shape != (4,):
            raise arg_error(
                fn, 2, list(one.reshape(-1)), "is not a frame: expected [x, y, width, height]"
            )
        fr = np.tile(one, (n, 1))
    bad = valid & ((fr[:, 2] <= 0) | (fr[:, 3] <= 0))
    if bad.any():
        i = int(np.flatnonzero(bad)[0])
        raise row_error(
            fn, 2, i, f"is not a frame: width and height must be > 0, got {fr[i].tolist()}"
        )
    per_box = np.repeat(fr, counts, axis=0)
    scale = np.where(per_box[:, 2:] > 0, per_box[:, 2:], 1.0)
    rel = np.empty_like(flat)
    rel[:, 0::2] = (flat[:, 0::2] - per_box[:, 0:1]) / scale[:, 0:1]
    rel[:, 1::2] = (flat[:, 1::2] - per_box[:, 1:2]) / scale[:, 1:2]
    rel = np.clip(rel, 0.0, 1.0)
    if f == "xywh":
        rel[:, 2:] -= rel[:, :2]
    sizes = np.where(valid, counts, 0)
    keep = np.repeat(valid, counts)
    values = pa.FixedSizeListArray.from_arrays(
        pa.array(rel[keep].reshape(-1).astype(np.float32)), 4
    )
    return list_array(values, sizes, valid, BOXES, fn)


def box_area(boxes: pa.Array | pa.ChunkedArray, *, fmt: str = "xyxy") -> pa.Array:
    """The area of each box of each row (``list<double>``).

    Example:
        >>> import pyarrow as pa
        >>> bs = pa.array([[[0, 0, 2, 3], [1, 1, 0, 0]]], pa.list_(pa.list_(pa.float32(), 4)))
        >>> box_area(bs).to_pylist(), box_area(bs, fmt="xywh").to_pylist()
        ([[6.0, 0.0]], [[6.0, 0.0]])
    """
    f = box_format(fmt, "box_area", 2)
    flat, counts, valid = box_sets(boxes, "box_area", 1, f)
    return list_array(_area(flat), counts, valid, pa.list_(pa.float64()), "box_area")


def num_boxes(boxes: pa.Array | pa.ChunkedArray) -> pa.Array:
    """The number of boxes of each row (BIGINT).

    Example:
        >>> import pyarrow as pa
        >>> num_boxes(pa.array([[[0, 0, 1, 1]], [], None], pa.list_(pa.list_(pa.float32(), 4)))).to_pylist()
        [1, 0, None]
    """
    _, counts, valid = box_sets(boxes, "num_boxes", 1, "xyxy")
    return int_array(counts, valid)


__all__ = [
    "BOXES",
    "BoxFormat",
    "box_area",
    "box_format",
    "box_iou",
    "box_sets",
    "max_iou",
    "mean_iou",
    "normalize_boxes",
    "num_boxes",
    "single_boxes",
]
