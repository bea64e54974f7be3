"""Tensor UDF kernels against numpy references, on tensorhouse's own Arrow layouts (no engine).

Columns are built the way datasets hand them to engines:
``to_arrow(normalize(values, ctype, name), ctype)``.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage

import tensorhouse as th
from tensorhouse.format.chunks import normalize
from tensorhouse.format.chunks.codecs import decode_image as codec_decode
from tensorhouse.format.chunks.codecs import encode_image
from tensorhouse.format.convert import to_arrow
from tensorhouse.udfs import BY_NAME, UDFArgumentError
from tensorhouse.udfs.kernels import boxes as K_boxes
from tensorhouse.udfs.kernels import images as K_images
from tensorhouse.udfs.kernels import reductions as K_red
from tensorhouse.udfs.kernels import similarity as K_sim
from tensorhouse.udfs.kernels.slicing import parse_slice, tensor_slice
from tensorhouse.udfs.kernels.tensors import to_tensors

FAST = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])


# -- column builders -------------------------------------------------------------------
def column(values: Any, ctype: th.ColumnType) -> pa.Array:
    return to_arrow(normalize(values, ctype, "c"), ctype)


def fixed(arr: np.ndarray) -> pa.Array:
    """A fixed-shape column; Arrow has no FixedSizeList of size 0, so a 0 dimension goes ragged."""
    if 0 in arr.shape[1:]:
        return ragged(list(arr), arr.dtype.name, arr.ndim - 1)
    return column(arr, th.Tensor(arr.dtype.name, arr.shape[1:]))


def ragged(rows: list[np.ndarray | None], dtype: str, ndim: int) -> pa.Array:
    return column(rows, th.Tensor(dtype, (None,) * ndim))


def rows_of(result: pa.Array) -> list[np.ndarray | None]:
    """Tensor-struct results back to ndarrays (an independent path: to_pylist)."""
    out: list[np.ndarray | None] = []
    for r in result.to_pylist():
        out.append(
            None if r is None else np.asarray(r["data"], dtype=np.float64).reshape(r["shape"])
        )
    return out


DTYPES = st.sampled_from(["float32", "float64", "int32", "uint8", "int64"])


@st.composite
def arrays(draw: st.DrawFn, ndim: tuple[int, int] = (1, 3), max_dim: int = 5) -> np.ndarray:
    nd = draw(st.integers(*ndim))
    shape = tuple(draw(st.integers(0, max_dim)) for _ in range(nd))
    dtype = draw(DTYPES)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return (rng.standard_normal(shape) * 50).astype(dtype)


# -- layouts ---------------------------------------------------------------------------
def test_to_tensors_reads_every_layout() -> None:
    a = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    tb = to_tensors(fixed(a), "f", 1)
    assert tb.shapes.tolist() == [[3, 4], [3, 4]] and np.array_equal(tb.row(1), a[1])
    rg = ragged([a[0], None, a[1][:1]], "int16", 2)
    tb = to_tensors(rg, "f", 1)
    assert tb.valid.tolist() == [True, False, True] and np.array_equal(tb.row(2), a[1][:1])
    nested = pa.array([[[1, 2], [3, 4]], [[5, 6]]], pa.list_(pa.list_(pa.int64())))
    assert to_tensors(nested, "f", 1).shapes.tolist() == [[2, 2], [1, 2]]
    ext = pa.FixedShapeTensorArray.from_numpy_ndarray(a.astype(np.float32))
    tb = to_tensors(ext, "f", 1)
    assert tb.shapes.tolist() == [[3, 4]] * 2 and np.array_equal(tb.row(0), a[0])
    sliced = fixed(a).slice(1)
    assert np.array_equal(to_tensors(sliced, "f", 1).row(0), a[1])
    chunked = pa.chunked_array([fixed(a[:1]), fixed(a[1:])])
    assert np.array_equal(to_tensors(chunked, "f", 1).row(1), a[1])
    # A NULL element makes the whole row NULL.
    assert to_tensors(pa.array([[1.0, None], [2.0, 3.0]]), "f", 1).valid.tolist() == [False, True]


def test_to_tensors_rejects_non_rectangular_and_non_tensors() -> None:
    with pytest.raises(UDFArgumentError, match=r"f: argument 1 is not rectangular.*row 1"):
        to_tensors(pa.array([[[1], [2]], [[1, 2], [3]]]), "f", 1)
    with pytest.raises(UDFArgumentError, match="decode_image"):
        to_tensors(pa.array([b"x"]), "f", 1)
    bad = pa.array(
        [{"data": [1.0, 2.0], "shape": [3]}],
        pa.struct([("data", pa.list_(pa.float64())), ("shape", pa.list_(pa.int32(), 1))]),
    )
    with pytest.raises(UDFArgumentError, match="corrupt tensor"):
        to_tensors(bad, "f", 1)


# -- slicing -----------------------------------------------------------------------------
def render(key: tuple[Any, ...], brackets: bool, space: str) -> str:
    parts = []
    for it in key:
        if it is Ellipsis:
            parts.append("...")
        elif isinstance(it, int):
            parts.append(str(it))
        else:
            s = f"{'' if it.start is None else it.start}:{'' if it.stop is None else it.stop}"
            parts.append(s if it.step is None else f"{s}:{it.step}")
    text = ("," + space).join(parts)
    return f"[{text}]" if brackets else text


@st.composite
def slice_keys(draw: st.DrawFn, shape: tuple[int, ...]) -> tuple[Any, ...]:
    """A key valid for ``shape``: ints in range, slices with any bounds and steps, maybe one '...'."""

    def item(d: int) -> Any:
        if d > 0 and draw(st.booleans()):
            return draw(st.integers(-d, d - 1))
        bound = st.none() | st.integers(-7, 7)
        return slice(draw(bound), draw(bound), draw(st.none() | st.integers(-3, 3).filter(bool)))

    n_lead = draw(st.integers(0, len(shape)))
    lead = [item(d) for d in shape[:n_lead]]
    if not draw(st.booleans()):
        return tuple(lead)
    # '...' absorbs the middle axes; items after it index the last axes.
    n_trail = draw(st.integers(0, len(shape) - n_lead))
    trail = [item(d) for d in shape[len(shape) - n_trail :]]
    return (*lead, Ellipsis, *trail)


@FAST
@given(data=st.data(), arr=arrays(), brackets=st.booleans(), space=st.sampled_from(["", " "]))
def test_tensor_slice_matches_numpy_on_fixed_tensors(
    data: st.DataObject, arr: np.ndarray, brackets: bool, space: str
) -> None:
    key = data.draw(slice_keys(arr.shape))
    spec = render(key, brackets, space)
    assert parse_slice(spec) == key
    batch = np.stack([arr, arr + 1])
    got = rows_of(tensor_slice(fixed(batch), spec))
    for i in range(2):
        want = batch[i][key]
        assert got[i] is not None and got[i].shape == want.shape
        np.testing.assert_array_equal(got[i], want.astype(np.float64))


@FAST
@given(data=st.data(), seed=st.integers(0, 2**32 - 1), ndim=st.integers(1, 3))
def test_tensor_slice_matches_numpy_on_ragged_rows(
    data: st.DataObject, seed: int, ndim: int
) -> None:
    rng = np.random.default_rng(seed)
    shapes = [tuple(int(x) for x in rng.integers(1, 5, ndim)) for _ in range(5)]
    shapes[1] = shapes[0]  # two rows of one shape share a numpy call
    rows: list[np.ndarray | None] = [rng.integers(-9, 9, s).astype(np.float32) for s in shapes]
    rows[3] = None
    common = tuple(min(s[k] for s in shapes) for k in range(ndim))
    key = data.draw(slice_keys(common))
    got = rows_of(tensor_slice(ragged(rows, "float32", ndim), render(key, True, " ")))
    for r, g in zip(rows, got, strict=True):
        if r is None:
            assert g is None
        else:
            assert g is not None
            np.testing.assert_array_equal(g, r[key])


@settings(max_examples=200, deadline=None)
@given(text=st.text(alphabet="[]:,-+0123456789. ", max_size=14))
def test_slice_parser_on_arbitrary_text(text: str) -> None:
    """Any text either parses to what Python's own indexing syntax means, or is a UDFArgumentError."""
    try:
        got = parse_slice(text)
    except UDFArgumentError as err:
        assert str(err).startswith(f"tensor_slice: argument 2 ({text!r})")
        return
    body = text.strip()
    body = body[1:-1] if body.startswith("[") else body
    try:
        want = eval(f"np.s_[{body},]") if body.strip() else ()  # a test oracle on a tiny alphabet
    except SyntaxError:
        return  # we accept a few spellings Python does not (e.g. "01"); nothing to compare
    assert got == tuple(Ellipsis if w is Ellipsis else w for w in want)


@FAST
@given(seed=st.integers(0, 2**32 - 1), data=st.data(), op=st.sampled_from(K_red.REDUCTIONS))
def test_rows_differing_only_in_length(seed: int, data: st.DataObject, op: str) -> None:
    """Point-cloud-like rows (n_i x 2 x 3): the one-call path for keys and axes that keep axis 0."""
    rng = np.random.default_rng(seed)
    rows: list[np.ndarray | None] = [
        rng.integers(-9, 9, (int(k), 2, 3)).astype(np.float32) for k in rng.integers(0, 5, 6)
    ]
    rows[2] = None
    col = ragged(rows, "float32", 3)
    key = (slice(None), *data.draw(slice_keys((2, 3))))
    sliced = rows_of(tensor_slice(col, render(key, True, "")))
    axis = data.draw(st.sampled_from([1, 2, -1]))
    reduced = rows_of(K_red.tensor_reduce_axis(col, op, axis))  # type: ignore[arg-type]
    for r, s, m in zip(rows, sliced, reduced, strict=True):
        if r is None:
            assert s is None and m is None
            continue
        np.testing.assert_array_equal(s, r[key])
        np.testing.assert_allclose(m, getattr(np, op)(r.astype(np.float64), axis=axis), rtol=1e-12)


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("[1:2", "missing the closing"),
        ("1:2]", "missing the opening"),
        ("[a]", "not an integer"),
        ("[1:2:3:4]", "more than two"),
        ("[::0]", "step 0"),
        ("[..., ...]", "at most one"),
        ("[1,,2]", "empty"),
    ],
)
def test_malformed_slices_name_function_and_argument(spec: str, why: str) -> None:
    with pytest.raises(UDFArgumentError) as info:
        tensor_slice(fixed(np.zeros((1, 3, 3))), spec)
    assert str(info.value).startswith(f"tensor_slice: argument 2 ({spec!r}) is not a valid slice: ")
    assert why in str(info.value)


def test_slice_errors_out_of_range_and_too_many_indices() -> None:
    t = fixed(np.zeros((2, 3, 4)))
    with pytest.raises(UDFArgumentError, match=r"index 4 is out of range for axis 1 with size 4"):
        tensor_slice(t, "[0, 4]")
    with pytest.raises(UDFArgumentError, match=r"has 3 indices but the tensor is 2-d"):
        tensor_slice(t, "[0, 1, 2]")


def test_slice_keeps_nulls_and_empty_tensors() -> None:
    got = tensor_slice(ragged([np.zeros((0, 3)), None, np.ones((2, 3))], "float64", 2), "[:, 1:]")
    assert got.to_pylist() == [
        {"data": [], "shape": [0, 2]},
        None,
        {"data": [1.0] * 4, "shape": [2, 2]},
    ]
    assert tensor_slice(fixed(np.zeros((0, 2))), "[0]").to_pylist() == []


# -- shape and reductions -----------------------------------------------------------------
@FAST
@given(arr=arrays(ndim=(0, 3)))
def test_shape_ndim_size(arr: np.ndarray) -> None:
    batch = np.stack([arr, arr])
    col = fixed(batch) if arr.ndim else pa.array(batch)
    assert K_red.tensor_shape(col).to_pylist() == [list(arr.shape)] * 2
    assert K_red.tensor_ndim(col).to_pylist() == [arr.ndim] * 2
    assert K_red.tensor_size(col).to_pylist() == [arr.size] * 2


def _ref_reduce(x: np.ndarray, op: str) -> float | None:
    if x.size == 0:
        return 0.0 if op == "sum" else None
    x = x.astype(np.float64)
    return float(
        {"sum": np.sum, "mean": np.mean, "min": np.min, "max": np.max, "std": np.std}[op](x)
    )


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    dtype=DTYPES,
    op=st.sampled_from(K_red.REDUCTIONS),
    fixed_shape=st.booleans(),
)
def test_reductions_match_numpy(seed: int, dtype: str, op: str, fixed_shape: bool) -> None:
    rng = np.random.default_rng(seed)
    if fixed_shape:
        batch = (rng.standard_normal((4, 3, 2)) * 20).astype(dtype)
        rows: list[np.ndarray | None] = list(batch)
        col = fixed(batch)
    else:
        rows = [
            (rng.standard_normal(tuple(rng.integers(0, 4, 2))) * 20).astype(dtype) for _ in range(6)
        ]
        rows[2] = None
        col = ragged(rows, dtype, 2)
    got = K_red.tensor_reduce(col, op).to_pylist()  # type: ignore[arg-type]
    for r, g in zip(rows, got, strict=True):
        want = None if r is None else _ref_reduce(r, op)
        assert (g is None) == (want is None)
        if want is not None:
            assert g == pytest.approx(want, rel=1e-9, abs=1e-9)


@FAST
@given(arr=arrays(ndim=(1, 3)), op=st.sampled_from(K_red.REDUCTIONS), data=st.data())
def test_axis_reductions_match_numpy(arr: np.ndarray, op: str, data: st.DataObject) -> None:
    axis = data.draw(st.integers(-arr.ndim, arr.ndim - 1))
    got = rows_of(
        K_red.tensor_reduce_axis(ragged([arr, None, arr * 2], arr.dtype.name, arr.ndim), op, axis)
    )  # type: ignore[arg-type]
    assert got[1] is None
    for src, g in ((arr, got[0]), (arr * 2, got[2])):
        rest = src.shape[: axis % arr.ndim] + src.shape[axis % arr.ndim + 1 :]
        if src.shape[axis] == 0 and op != "sum" and int(np.prod(rest)) > 0:
            assert g is None
            continue
        want = (
            getattr(np, op)(src.astype(np.float64), axis=axis)
            if src.shape[axis]
            else np.zeros(rest)
        )
        assert g is not None
        np.testing.assert_allclose(g, want, rtol=1e-9, atol=1e-9)


def test_reduction_nulls_empty_and_axis_errors() -> None:
    col = pa.array([[], None, [True, False, True]], pa.list_(pa.bool_()))
    assert K_red.tensor_reduce(col, "sum").to_pylist() == [0.0, None, 2.0]
    assert K_red.tensor_reduce(col, "max").to_pylist() == [None, None, 1.0]
    with pytest.raises(
        UDFArgumentError, match=r"tensor_sum_axis: argument 2 \(2\) is out of range for a 1-d"
    ):
        K_red.tensor_reduce_axis(col, "sum", 2)
    with pytest.raises(UDFArgumentError, match=r"takes 1 argument, got 2.*tensor_sum_axis"):
        BY_NAME["tensor_sum"](col, pa.array([0, 0, 0]))


# -- similarity ----------------------------------------------------------------------------
def _ref_metric(a: np.ndarray, b: np.ndarray, metric: str) -> float | None:
    a, b = a.astype(np.float64), b.astype(np.float64)
    if metric == "cosine":
        na, nb = np.linalg.norm(a), np.linalg.norm(b)
        return None if na == 0 or nb == 0 else float(a @ b / (na * nb))
    return float(
        {
            "dot": lambda: a @ b,
            "l2": lambda: np.linalg.norm(a - b),
            "l1": lambda: np.abs(a - b).sum(),
            "linf": lambda: np.abs(a - b).max(initial=0.0),
            "hamming": lambda: (a != b).sum(),
        }[metric]()
    )


METRICS = st.sampled_from(["cosine", "dot", "l2", "l1", "linf", "hamming"])


@FAST
@given(
    seed=st.integers(0, 2**32 - 1),
    metric=METRICS,
    d=st.integers(0, 9),
    layout=st.sampled_from(["fixed", "list"]),
    dtype=st.sampled_from(["float32", "float64", "int32"]),
)
def test_similarity_pairwise_and_constant(
    seed: int, metric: str, d: int, layout: str, dtype: str
) -> None:
    rng = np.random.default_rng(seed)
    if metric == "hamming":
        a, b = rng.integers(0, 2, (5, d)).astype(dtype), rng.integers(0, 2, (5, d)).astype(dtype)
    else:
        a, b = (
            (rng.standard_normal((5, d)) * 5).astype(dtype),
            (rng.standard_normal((5, d)) * 5).astype(dtype),
        )
    a[1] = 0  # a zero vector: cosine is NULL
    mk = (
        fixed
        if layout == "fixed"
        else (lambda x: pa.array(list(x), pa.list_(pa.from_numpy_dtype(x.dtype))))
    )
    q = b[0]
    for got, pairs in (
        (K_sim.similarity(mk(a), mk(b), metric), [(a[i], b[i]) for i in range(5)]),  # type: ignore[arg-type]
        (K_sim.similarity(mk(a), mk(np.tile(q, (5, 1))), metric), [(a[i], q) for i in range(5)]),  # type: ignore[arg-type]
        (K_sim.similarity(mk(np.tile(q, (5, 1))), mk(a), metric), [(q, a[i]) for i in range(5)]),  # type: ignore[arg-type]
        (K_sim.similarity(mk(a), q, metric), [(a[i], q) for i in range(5)]),  # type: ignore[arg-type]
    ):
        for g, (x, y) in zip(got.to_pylist(), pairs, strict=True):
            want = _ref_metric(x, y, metric)
            assert (g is None) == (want is None)
            if want is not None:
                assert g == pytest.approx(want, rel=1e-4, abs=1e-3)


def test_similarity_ragged_lists_nulls_and_errors() -> None:
    a = pa.array([[1.0, 2.0], None, [3.0], [], [1.0, 0.0, 1.0]])
    b = pa.array([[2.0, 2.0], [1.0], [3.0], [], [1.0, 1.0, 0.0]])
    assert K_sim.similarity(a, b, "dot").to_pylist() == [6.0, None, 9.0, 0.0, 1.0]
    assert K_sim.similarity(a, b, "cosine").to_pylist()[3] is None
    assert K_sim.similarity(a, b, "linf").to_pylist() == [1.0, None, 0.0, 0.0, 1.0]
    with pytest.raises(
        UDFArgumentError,
        match=r"cosine_similarity: argument 2 has length 1 but argument 1 has length 2 \(row 1",
    ):
        K_sim.similarity(pa.array([[1.0], [1.0, 2.0]]), pa.array([[2.0], [1.0]]), "cosine")
    with pytest.raises(
        UDFArgumentError,
        match=r"l2_distance: argument 1 has length 2 but argument 2 has length 3 \(row 0",
    ):
        K_sim.similarity(pa.array([[1.0, 2.0]]), [1.0, 2.0, 3.0], "l2")
    with pytest.raises(
        UDFArgumentError, match="hamming_distance: argument 1 is not a binary vector"
    ):
        K_sim.similarity(pa.array([[2, 0]]), pa.array([[1, 0]]), "hamming")


# -- boxes ---------------------------------------------------------------------------------
def _xyxy(b: np.ndarray, fmt: str) -> np.ndarray:
    b = b.astype(np.float64)
    return b if fmt == "xyxy" else np.array([b[0], b[1], b[0] + b[2], b[1] + b[3]])


def _ref_area(x: np.ndarray) -> float:
    return float(max(x[2] - x[0], 0) * max(x[3] - x[1], 0))


def _ref_iou(a: np.ndarray, b: np.ndarray, fmt: str) -> float | None:
    a, b = _xyxy(a, fmt), _xyxy(b, fmt)
    inter = max(min(a[2], b[2]) - max(a[0], b[0]), 0) * max(min(a[3], b[3]) - max(a[1], b[1]), 0)
    union = _ref_area(a) + _ref_area(b) - inter
    return None if union <= 0 else inter / union


def _ref_mean_iou(pa_: np.ndarray, pb: np.ndarray, fmt: str) -> float | None:
    if len(pa_) == 0 and len(pb) == 0:
        return None
    pairs = sorted(
        ((_ref_iou(x, y, fmt) or 0.0, i, j) for i, x in enumerate(pa_) for j, y in enumerate(pb)),
        key=lambda t: (-t[0], t[1], t[2]),
    )
    used_a: set[int] = set()
    used_b: set[int] = set()
    total = 0.0
    for v, i, j in pairs:
        if v > 0 and i not in used_a and j not in used_b:
            used_a.add(i)
            used_b.add(j)
            total += v
    return total / max(len(pa_), len(pb))


@st.composite
def box_rows(draw: st.DrawFn, max_boxes: int = 5) -> list[np.ndarray | None]:
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    rows: list[np.ndarray | None] = []
    for _ in range(draw(st.integers(1, 6))):
        k = int(rng.integers(0, max_boxes + 1))
        xy = rng.integers(0, 8, (k, 2))
        wh = rng.integers(0, 6, (k, 2))
        rows.append(
            np.concatenate([xy, xy + wh], axis=1).astype(np.float32)
            if draw(st.booleans())
            else np.concatenate([xy, wh], axis=1).astype(np.float32)
        )
    if len(rows) > 2:
        rows[1] = None
    return rows


@FAST
@given(a=box_rows(), data=st.data(), fmt=st.sampled_from(["xyxy", "xywh"]))
def test_box_functions_match_references(
    a: list[np.ndarray | None], data: st.DataObject, fmt: str
) -> None:
    b = data.draw(box_rows().filter(lambda r: len(r) == len(a)))
    ca, cb = column(a, th.BBox(fmt)), column(b, th.BBox(fmt))  # type: ignore[arg-type]
    one = [None if r is None or not len(r) else r[0] for r in b]
    single = pa.array([None if x is None else x.tolist() for x in one], pa.list_(pa.float32(), 4))
    got_mean = K_boxes.mean_iou(ca, cb, fmt=fmt).to_pylist()
    got_max = K_boxes.max_iou(ca, single, fmt=fmt).to_pylist()
    got_area = K_boxes.box_area(ca, fmt=fmt).to_pylist()
    got_n = K_boxes.num_boxes(ca).to_pylist()
    for i, (ra, rb) in enumerate(zip(a, b, strict=True)):
        if ra is None or rb is None:
            assert got_mean[i] is None
        else:
            want = _ref_mean_iou(ra, rb, fmt)
            assert got_mean[i] == (None if want is None else pytest.approx(want))
        if ra is None or one[i] is None:
            assert got_max[i] is None
        else:
            assert got_max[i] == pytest.approx(
                max([_ref_iou(x, one[i], fmt) or 0.0 for x in ra], default=0.0)
            )
        if ra is not None:
            assert got_n[i] == len(ra)
            assert got_area[i] == pytest.approx([_ref_area(_xyxy(x, fmt)) for x in ra])


def test_box_iou_normalize_and_errors() -> None:
    t = pa.list_(pa.float32(), 4)
    a = pa.array([[0, 0, 2, 2], [1, 1, 1, 1], None], t)
    b = pa.array([[1, 1, 3, 3], [1, 1, 1, 1], [0, 0, 1, 1]], t)
    assert K_boxes.box_iou(a, b).to_pylist() == [
        pytest.approx(1 / 7),
        None,
        None,
    ]  # zero union -> NULL
    bs = column([np.array([[10, 10, 20, 20], [-5, 0, 50, 200]], np.float32)], th.BBox())
    got = K_boxes.normalize_boxes(bs, [0, 0, 100, 100]).to_pylist()[0]
    np.testing.assert_allclose(got, [[0.1, 0.1, 0.2, 0.2], [0.0, 0.0, 0.5, 1.0]], rtol=1e-6)
    xywh = column([np.array([[10, 10, 20, 20]], np.float32)], th.BBox("xywh"))
    np.testing.assert_allclose(
        K_boxes.normalize_boxes(xywh, [0, 0, 100, 50], fmt="xywh").to_pylist()[0],
        [[0.1, 0.2, 0.2, 0.4]],
        rtol=1e-6,
    )
    with pytest.raises(
        UDFArgumentError,
        match=r"max_iou: argument 1 has boxes of type .*\[3\].*last dimension must be 4",
    ):
        K_boxes.max_iou(pa.array([[[0, 0, 1]]], pa.list_(pa.list_(pa.float32(), 3))), a)
    with pytest.raises(
        UDFArgumentError, match=r"box_iou: argument 2 is not a box: expected 4 numbers, got 3"
    ):
        K_boxes.box_iou(pa.array([[0.0, 0, 1, 1]]), pa.array([[0.0, 0, 1]]))
    with pytest.raises(
        UDFArgumentError, match=r"normalize_boxes: argument 2 .* width and height must be > 0"
    ):
        K_boxes.normalize_boxes(bs, [0, 0, 0, 10])
    with pytest.raises(
        UDFArgumentError, match=r"box_area: argument 2 \('cxcywh'\) is not a box format"
    ):
        K_boxes.box_area(bs, fmt="cxcywh")
    assert K_boxes.box_format('{"kind": "bbox", "format": "xywh"}', "f", 2) == "xywh"


# -- images -------------------------------------------------------------------------------
def _resize_reference(img: np.ndarray, h: int, w: int) -> np.ndarray:
    """Per-pixel bilinear with half-pixel centres (written independently of the kernel)."""
    hh, ww, c = img.shape
    out = np.zeros((h, w, c))
    for y in range(h):
        sy = min(max((y + 0.5) * hh / h - 0.5, 0), hh - 1)
        y0 = int(np.floor(sy))
        y1, fy = min(y0 + 1, hh - 1), sy - int(np.floor(sy))
        for x in range(w):
            sx = min(max((x + 0.5) * ww / w - 0.5, 0), ww - 1)
            x0 = int(np.floor(sx))
            x1, fx = min(x0 + 1, ww - 1), sx - x0
            top = img[y0, x0] * (1 - fx) + img[y0, x1] * fx
            bot = img[y1, x0] * (1 - fx) + img[y1, x1] * fx
            out[y, x] = top * (1 - fy) + bot * fy
    return np.clip(np.rint(out), 0, 255)


@settings(max_examples=15, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    h=st.integers(1, 9),
    w=st.integers(1, 9),
    codec=st.sampled_from(["png", "jpeg"]),
)
def test_decode_resize_gray_match_references(seed: int, h: int, w: int, codec: str) -> None:
    rng = np.random.default_rng(seed)
    imgs: list[np.ndarray | None] = [
        rng.integers(0, 256, (int(rng.integers(1, 8)), int(rng.integers(1, 8)), 3), dtype=np.uint8)
        for _ in range(4)
    ]
    imgs[2] = None
    blobs = column(imgs, th.Image(codec))  # type: ignore[arg-type]
    decoded = [
        None if x is None else codec_decode(codec, bytes(encode_image(codec, x))) for x in imgs
    ]
    got = K_images.decode_image(blobs).to_pylist()
    for g, want in zip(got, decoded, strict=True):
        assert (g is None) == (want is None)
        if want is not None:
            assert g["shape"] == list(want.shape) and g["data"] == want.reshape(-1).tolist()
    for source in (blobs, K_images.decode_image(blobs)):
        resized = K_images.image_resize(source, h, w).to_pylist()
        gray = K_images.image_to_gray(source).to_pylist()
        for r, gr, want in zip(resized, gray, decoded, strict=True):
            if want is None:
                assert r is None and gr is None
                continue
            ref = _resize_reference(want.astype(np.float64), h, w)
            assert r["shape"] == [h, w, 3]
            assert np.abs(np.asarray(r["data"]).reshape(h, w, 3) - ref).max() <= 1
            pil = np.asarray(PILImage.fromarray(want).convert("L"))
            assert gr["shape"] == [*want.shape[:2], 1] and gr["data"] == pil.reshape(-1).tolist()


def test_image_errors_and_float_tensors() -> None:
    with pytest.raises(
        UDFArgumentError,
        match=r"decode_image: argument 1 is not a JPEG or PNG image .*\(row 1 of the batch\)",
    ):
        K_images.decode_image(
            pa.array([encode_image("png", np.zeros((2, 2, 3), np.uint8)), b"GIF89a..."])
        )
    with pytest.raises(UDFArgumentError, match="decode_image: argument 1 is a corrupt JPEG image"):
        K_images.decode_image(pa.array([b"\xff\xd8\xff\xe0 truncated"]))
    with pytest.raises(
        UDFArgumentError, match=r"image_resize: argument 2 \(0\) is not an image size"
    ):
        K_images.image_resize(pa.array([b""]), 0, 3)
    # A float tensor (e.g. a tensor_slice result) is rounded and clipped to uint8.
    crop = tensor_slice(ragged([np.full((4, 4, 3), 300.0)], "float64", 3), "[0:2, 0:2, :]")
    assert K_images.image_resize(crop, 1, 1).to_pylist() == [
        {"data": [255, 255, 255], "shape": [1, 1, 3]}
    ]
    buf = io.BytesIO()
    PILImage.fromarray(np.zeros((3, 3, 4), np.uint8), "RGBA").save(buf, format="PNG")
    assert K_images.image_to_gray(pa.array([buf.getvalue()])).to_pylist()[0]["shape"] == [3, 3, 1]


# -- the catalog -----------------------------------------------------------------------------
def test_catalog_options_must_be_constant_and_nulls_propagate() -> None:
    t = fixed(np.arange(8, dtype=np.float32).reshape(2, 4))
    with pytest.raises(
        UDFArgumentError,
        match=r"tensor_slice: argument 2 \('\[0\]'\) must be the same on every row",
    ):
        BY_NAME["tensor_slice"](t, pa.array(["[0]", "[1]"]))
    got = BY_NAME["tensor_slice"](t, pa.array(["[1:3]", None]))
    assert got.to_pylist() == [{"data": [1.0, 2.0], "shape": [2]}, None]
    assert BY_NAME["tensor_sum_axis"](t, pa.array([None, None], pa.int64())).to_pylist() == [
        None,
        None,
    ]
    for udf in BY_NAME.values():
        assert udf.summary and udf.example.startswith("SELECT") and udf.name in udf.example


def test_every_function_handles_sliced_and_chunked_input() -> None:
    """Engines hand over arrays with offsets and in chunks: results must not depend on that."""
    rng = np.random.default_rng(0)
    n = 7
    samples: dict[str, pa.Array] = {
        "tensor": ragged(
            [
                rng.random((int(k), 3)).astype("float32") if k != 2 else None
                for k in rng.integers(0, 4, n)
            ],
            "float32",
            2,
        ),
        "image": column(
            [
                rng.integers(0, 255, (4 + i, 5, 3), dtype=np.uint8) if i != 3 else None
                for i in range(n)
            ],
            th.Image("png"),
        ),
        "vector": column(rng.random((n, 5)).astype("float32"), th.Embedding(5)),
        "binvector": pa.array([list(rng.integers(0, 2, 5)) for _ in range(n)]),
        "box": pa.array([[0, 0, 1 + i, 2] for i in range(n)], pa.list_(pa.float32(), 4)),
        "boxes": column(
            [rng.random((int(k), 4)).astype("float32") for k in rng.integers(0, 4, n)], th.BBox()
        ),
        "frame": pa.array([[0, 0, 2, 2]] * n, pa.list_(pa.float64())),
        "text": pa.array(["[0:2, 1:]"] * n),
        "int": pa.array([1] * n),
        "format": pa.array(["xywh"] * n),
    }
    samples["blob"] = samples["image"]
    for udf in BY_NAME.values():
        args = [samples[p.kind] for p in udf.params]
        full = udf(*args)
        assert len(full) == n and full.type == udf.returns
        for off in (1, 3):
            assert udf(*[a.slice(off) for a in args]).to_pylist() == full.slice(off).to_pylist(), (
                udf.name
            )
            chunked = udf(*[pa.chunked_array([a.slice(0, off), a.slice(off)]) for a in args])
            assert chunked.to_pylist() == full.to_pylist(), udf.name
