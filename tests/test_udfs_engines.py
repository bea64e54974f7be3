"""Tensor UDFs through SQL in DuckDB and DataFusion: numpy references, NULLs, errors, nearest().

Tables are plain pyarrow tables in tensorhouse's layouts (no connector), except
one end-to-end test through ``th.duckdb.register``. DataFusion UDFs have one
exact signature each: tests that pass ``types``/``signatures`` register them by
hand (the ``types=`` path); the others are typed per query by
``udfs.datafusion.sql`` (see tensorhouse/udfs/datafusion.py).
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import datafusion
import duckdb
import numpy as np
import pyarrow as pa
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image as PILImage
from test_udfs_kernels import (
    _ref_iou,
    _ref_mean_iou,
    _resize_reference,
    column,
    fixed,
    render,
    slice_keys,
)

import tensorhouse as th
from tensorhouse.format.chunks.codecs import decode_image as codec_decode
from tensorhouse.format.chunks.codecs import encode_image
from tensorhouse.udfs import datafusion as udf_df
from tensorhouse.udfs.catalog import BY_NAME, CATALOG, markdown_table
from tensorhouse.udfs.duckdb import sql_type

ENGINES = ["duckdb", "datafusion"]
EXAMPLES = Path(__file__).resolve().parent.parent / "sql_examples"
SQL_SETTINGS = settings(
    max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


class Engine:
    """One connection per engine, reused across hypothesis examples (tables replaced per query)."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        if kind == "duckdb":
            self.con = duckdb.connect()
            th.udfs.register(self.con)
        else:
            self.ctx = datafusion.SessionContext()
            th.udfs.register(self.ctx)

    def query(
        self,
        sql: str,
        tables: Mapping[str, pa.Table],
        signatures: Mapping[str, Sequence[pa.DataType]] | None = None,
        types: Mapping[str, pa.DataType] | None = None,
    ) -> pa.Table:
        """Run ``sql``; in DataFusion, first (re)register the UDFs for ``types`` and ``signatures``."""
        if self.kind == "duckdb":
            for name, t in tables.items():
                self.con.register(name, t)
            return self.con.sql(sql).to_arrow_table()
        for name, t in tables.items():
            if self.ctx.table_exist(name):
                self.ctx.deregister_table(name)
            self.ctx.from_arrow(t, name=name)
        if types is None and signatures is None:  # typed per query, as th.datafusion.context() does
            return udf_df.sql(self.ctx, sql).to_arrow_table()
        udf_df.register(self.ctx, types=types)  # undo earlier tests' signatures
        for fn, arg_types in (signatures or {}).items():
            udf_df.specialize(self.ctx, fn, arg_types)
        return self.ctx.sql(sql).to_arrow_table()


_ENGINES: dict[str, Engine] = {}


def engine(kind: str) -> Engine:
    if kind not in _ENGINES:
        _ENGINES[kind] = Engine(kind)
    return _ENGINES[kind]


def tensors_of(values: list[Any]) -> list[np.ndarray | None]:
    return [
        None if v is None else np.asarray(v["data"], np.float64).reshape(v["shape"]) for v in values
    ]


def approx_equal(a: Any, b: Any, tol: float = 1e-5) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(approx_equal(a[k], b[k], tol) for k in a)
    if isinstance(a, list | tuple) and isinstance(b, list | tuple):
        return len(a) == len(b) and all(approx_equal(x, y, tol) for x, y in zip(a, b, strict=True))
    if isinstance(a, float) or isinstance(b, float):
        return a is not None and b is not None and math.isclose(a, b, rel_tol=tol, abs_tol=tol)
    return bool(a == b)


# -- slicing -----------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ENGINES)
@SQL_SETTINGS
@given(
    data=st.data(), seed=st.integers(0, 2**32 - 1), ndim=st.integers(1, 3), is_fixed=st.booleans()
)
def test_tensor_slice_in_sql(
    kind: str, data: st.DataObject, seed: int, ndim: int, is_fixed: bool
) -> None:
    rng = np.random.default_rng(seed)
    if is_fixed:
        shape = tuple(int(x) for x in rng.integers(1, 5, ndim))
        rows: list[np.ndarray | None] = list(rng.integers(-50, 50, (4, *shape)).astype(np.int32))
        common = shape
    else:
        rows = [
            rng.random(tuple(int(x) for x in rng.integers(1, 5, ndim))).astype(np.float32)
            for _ in range(4)
        ]
        common = tuple(min(r.shape[k] for r in rows if r is not None) for k in range(ndim))
    rows[2] = None
    col = column(
        rows, th.Tensor("int32" if is_fixed else "float32", shape if is_fixed else (None,) * ndim)
    )  # type: ignore[arg-type]
    spec = render(data.draw(slice_keys(common)), True, " ")
    key = th.udfs.parse_slice(spec)
    out = engine(kind).query(
        f"SELECT tensor_slice(t, '{spec}') AS r FROM tbl",
        {"tbl": pa.table({"t": col})},
        {"tensor_slice": [col.type, pa.string()]},
    )
    for r, g in zip(rows, tensors_of(out.column("r").to_pylist()), strict=True):
        assert (g is None) == (r is None)
        if r is not None:
            np.testing.assert_array_equal(g, r[key].astype(np.float64))


# -- shapes and reductions --------------------------------------------------------------------
REDUCE_SQL = ", ".join(
    [
        "tensor_shape(t) AS shape",
        "tensor_ndim(t) AS ndim",
        "tensor_size(t) AS size",
        *(f"tensor_{op}(t) AS {op}" for op in ("sum", "mean", "min", "max", "std")),
        "tensor_sum_axis(t, 0) AS sum0",
        "tensor_max_axis(t, -1) AS maxlast",
    ]
)


@pytest.mark.parametrize("kind", ENGINES)
@SQL_SETTINGS
@given(
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from(["float32", "int64", "uint8"]),
    is_fixed=st.booleans(),
)
def test_shapes_and_reductions_in_sql(kind: str, seed: int, dtype: str, is_fixed: bool) -> None:
    rng = np.random.default_rng(seed)
    if is_fixed:
        rows: list[np.ndarray | None] = list((rng.random((5, 2, 3)) * 100).astype(dtype))
    else:
        rows = [(rng.random((int(rng.integers(0, 4)), 2)) * 100).astype(dtype) for _ in range(5)]
    rows[1] = None
    col = column(rows, th.Tensor(dtype, (2, 3) if is_fixed else (None, 2)))  # type: ignore[arg-type]
    out = (
        engine(kind)
        .query(
            f"SELECT {REDUCE_SQL} FROM tbl",
            {"tbl": pa.table({"t": col})},
            types={"tensor": col.type},
        )
        .to_pylist()
    )
    for r, got in zip(rows, out, strict=True):
        if r is None:
            assert all(v is None for v in got.values())
            continue
        x = r.astype(np.float64)
        assert got["shape"] == list(r.shape) and got["ndim"] == 2 and got["size"] == r.size
        assert got["sum"] == pytest.approx(x.sum())
        for op in ("mean", "min", "max", "std"):
            assert got[op] == (None if r.size == 0 else pytest.approx(getattr(np, op)(x)))
        np.testing.assert_allclose(tensors_of([got["sum0"]])[0], x.sum(axis=0))  # type: ignore[arg-type]
        if r.shape[1]:
            assert got["maxlast"] is not None
            np.testing.assert_allclose(tensors_of([got["maxlast"]])[0], x.max(axis=-1))  # type: ignore[arg-type]


# -- similarity ---------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ENGINES)
@SQL_SETTINGS
@given(seed=st.integers(0, 2**32 - 1), d=st.integers(1, 6), as_list=st.booleans())
def test_similarity_in_sql(kind: str, seed: int, d: int, as_list: bool) -> None:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((6, d)).astype(np.float32)
    b = rng.standard_normal((6, d)).astype(np.float32)
    a[0] = 0
    bits = rng.integers(0, 2, (6, d)).astype(bool)
    vec_t = pa.list_(pa.float32()) if as_list else pa.list_(pa.float32(), d)
    tbl = pa.table(
        {
            "a": pa.array([*list(a[:5]), None], vec_t),
            "b": pa.array(list(b), vec_t),
            "h": pa.array(list(bits), pa.list_(pa.bool_(), d)),
        }
    )
    q = [round(float(x), 3) for x in rng.standard_normal(d)]
    sql = (
        f"SELECT cosine_similarity(a, {q}) AS cq, l2_distance(a, b) AS l2, dot_product(b, a) AS dot, "
        f"l1_distance(a, {q}) AS l1, linf_distance(a, b) AS linf, "
        f"hamming_distance(h, {[int(x) for x in bits[0]]}) AS ham FROM tbl"
    )
    out = engine(kind).query(sql, {"tbl": tbl}).to_pylist()
    qv = np.asarray(q)
    for i, got in enumerate(out):
        assert got["ham"] == int((bits[i] != bits[0]).sum())
        if i == 5:
            assert [got[k] for k in ("cq", "l2", "dot", "l1", "linf")] == [None] * 5
            continue
        x, y = a[i].astype(np.float64), b[i].astype(np.float64)
        assert got["cq"] == (
            None
            if i == 0
            else pytest.approx(x @ qv / np.linalg.norm(x) / np.linalg.norm(qv), abs=1e-5)
        )
        assert got["l2"] == pytest.approx(np.linalg.norm(x - y), rel=1e-5)
        assert got["dot"] == pytest.approx(x @ y, rel=1e-5, abs=1e-5)
        assert got["l1"] == pytest.approx(np.abs(x - qv).sum(), rel=1e-5)
        assert got["linf"] == pytest.approx(np.abs(x - y).max(), rel=1e-5)


# -- boxes ------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ENGINES)
def test_boxes_in_sql(kind: str) -> None:
    rng = np.random.default_rng(5)
    rows: list[np.ndarray | None] = []
    for k in (2, 0, 3, 1, 4):
        xy = rng.integers(0, 6, (k, 2))
        rows.append(np.concatenate([xy, xy + rng.integers(1, 5, (k, 2))], 1).astype(np.float32))
    rows[3] = None
    truth = [None if r is None else r[::-1] + 0.5 for r in rows]
    tbl = pa.table({"p": column(rows, th.BBox()), "g": column(truth, th.BBox())})
    sql = (
        "SELECT num_boxes(p) AS n, box_area(p) AS area, max_iou(p, [1, 1, 4, 4]) AS best, "
        "box_iou(p[1], [1, 1, 4, 4]) AS first, mean_iou(p, g) AS m, "
        "normalize_boxes(p, [0, 0, 10, 20]) AS norm FROM tbl"
    )
    out = engine(kind).query(sql, {"tbl": tbl}).to_pylist()
    query = np.array([1, 1, 4, 4])
    for r, t, got in zip(rows, truth, out, strict=True):
        if r is None:
            assert all(v is None for v in got.values())
            continue
        assert got["n"] == len(r)
        assert got["area"] == pytest.approx([(x[2] - x[0]) * (x[3] - x[1]) for x in r])
        assert got["best"] == pytest.approx(
            max([_ref_iou(x, query, "xyxy") or 0 for x in r], default=0.0)
        )
        assert got["first"] == (
            None if not len(r) else pytest.approx(_ref_iou(r[0], query, "xyxy"))
        )
        want = _ref_mean_iou(r, t, "xyxy")  # type: ignore[arg-type]
        assert got["m"] == (None if want is None else pytest.approx(want))
        np.testing.assert_allclose(
            np.asarray(got["norm"]).reshape(-1, 4),
            np.clip(r / [10, 20, 10, 20], 0, 1).reshape(-1, 4),
            rtol=1e-6,
        )


@pytest.mark.parametrize("kind", ENGINES)
def test_box_format_argument_and_metadata(kind: str) -> None:
    boxes = column([np.array([[1, 1, 2, 3]], np.float32)], th.BBox("xywh"))
    tbl = pa.Table.from_arrays([boxes], schema=pa.schema([th.BBox("xywh").arrow_field("b")]))
    e = engine(kind)
    sig = {"box_area": [tbl.schema.field("b").type, pa.string()]}
    assert e.query("SELECT box_area(b, 'xywh') AS a FROM tbl", {"tbl": tbl}, sig).to_pylist() == [
        {"a": [6.0]}
    ]
    if kind == "datafusion":
        # DataFusion keeps field metadata in SQL: the column's own format can be passed along.
        got = e.query(
            "SELECT box_area(b, arrow_metadata(b, 'tensorhouse.type')) AS a FROM tbl",
            {"tbl": tbl},
            sig,
        )
        assert got.to_pylist() == [{"a": [6.0]}]


# -- images -----------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ENGINES)
def test_images_in_sql(kind: str) -> None:
    rng = np.random.default_rng(3)
    imgs: list[np.ndarray | None] = [
        rng.integers(0, 256, (5 + i, 7, 3), dtype=np.uint8) for i in range(4)
    ]
    imgs[1] = None
    blobs = column(imgs, th.Image("png"))  # type: ignore[arg-type]
    sql = (
        "SELECT decode_image(img) AS d, image_resize(img, 3, 4) AS r, image_to_gray(img) AS g, "
        "tensor_slice(decode_image(img), '[1:3, ::-2, 0]') AS s"
        + (", image_resize(decode_image(img), 2, 2) AS rd" if kind == "duckdb" else "")
        + " FROM tbl"
    )
    rows = engine(kind).query(sql, {"tbl": pa.table({"img": blobs})}).to_pylist()
    if kind == "datafusion":  # image_resize of a decoded tensor needs its own signature there
        rd = (
            engine(kind)
            .query(
                "SELECT image_resize(decode_image(img), 2, 2) AS rd FROM tbl",
                {"tbl": pa.table({"img": blobs})},
                {"image_resize": [th.udfs.IMAGE, pa.int64(), pa.int64()]},
            )
            .to_pylist()
        )
        for r, x in zip(rows, rd, strict=True):
            r["rd"] = x["rd"]
    for img, got in zip(imgs, rows, strict=True):
        if img is None:
            assert all(v is None for v in got.values())
            continue
        assert got["d"] == {"data": img.reshape(-1).tolist(), "shape": list(img.shape)}
        assert (
            np.abs(
                np.asarray(got["r"]["data"]).reshape(3, 4, 3)
                - _resize_reference(img.astype(float), 3, 4)
            ).max()
            <= 1
        )
        assert (
            got["g"]["data"]
            == np.asarray(PILImage.fromarray(img).convert("L")).reshape(-1).tolist()
        )
        np.testing.assert_array_equal(tensors_of([got["s"]])[0], img[1:3, ::-2, 0])  # type: ignore[arg-type]
        assert got["rd"]["shape"] == [2, 2, 3]


# -- errors, NULLs and empty input --------------------------------------------------------------
def _error_cases() -> list[tuple[str, pa.Table, str, dict[str, list[pa.DataType]]]]:
    t = fixed(np.zeros((2, 3, 3), np.float32))
    tt = pa.table({"t": t})
    vec = pa.table({"v": pa.array([[1.0, 2.0, 3.0]] * 2, pa.list_(pa.float32(), 3))})
    bad_boxes = pa.table({"b": pa.array([[[0, 0, 1]]], pa.list_(pa.list_(pa.float32(), 3)))})
    blob = pa.table({"x": pa.array([b"GIF89a not an image"], pa.binary())})
    ts = {"tensor_slice": [t.type, pa.string()]}
    return [
        (
            "SELECT tensor_slice(t, '[1:2') FROM tbl",
            tt,
            "tensor_slice: argument 2 ('[1:2') is not a valid slice: missing the closing ']'",
            ts,
        ),
        (
            "SELECT tensor_slice(t, '[0, 7]') FROM tbl",
            tt,
            "tensor_slice: argument 2 ('[0, 7]'): index 7 is out of range for axis 1 with size 3",
            ts,
        ),
        (
            "SELECT cosine_similarity(v, [1.0, 2.0]) FROM tbl",
            vec,
            "cosine_similarity: argument 1 has length 3 but argument 2 has length 2",
            {},
        ),
        (
            "SELECT num_boxes(b) FROM tbl",
            bad_boxes,
            "num_boxes: argument 1 has boxes of type",
            {"num_boxes": [bad_boxes.schema.field("b").type]},
        ),
        (
            "SELECT decode_image(x) FROM tbl",
            blob,
            "decode_image: argument 1 is not a JPEG or PNG image",
            {},
        ),
    ]


@pytest.mark.parametrize("kind", ENGINES)
@pytest.mark.parametrize("case", range(5))
def test_bad_input_surfaces_our_message(kind: str, case: int) -> None:
    sql, tbl, message, sig = _error_cases()[case]
    with pytest.raises(Exception, match=re.escape(message)) as info:
        engine(kind).query(sql, {"tbl": tbl}, sig)
    assert "UDFArgumentError" in str(info.value)


@pytest.mark.parametrize("kind", ENGINES)
def test_wrong_argument_count_and_empty_tables(kind: str) -> None:
    e = engine(kind)
    t = fixed(np.ones((2, 2, 2), np.float32))
    if kind == "duckdb":  # DataFusion checks the count itself, against the one signature
        with pytest.raises(Exception, match=re.escape("tensor_sum: takes 1 argument, got 2")):
            e.query("SELECT tensor_sum(t, 0) FROM tbl", {"tbl": pa.table({"t": t})})
    sig = {"tensor_sum": [t.type], "tensor_slice": [t.type, pa.string()]}
    out = e.query(
        "SELECT tensor_sum(t) AS s, tensor_slice(t, '[0]') AS x FROM tbl WHERE false",
        {"tbl": pa.table({"t": t})},
        sig,
    )
    assert out.num_rows == 0
    assert out.schema.field("s").type == pa.float64()


@pytest.mark.parametrize("kind", ENGINES)
def test_every_function_returns_null_for_null_rows(kind: str) -> None:
    """NULL in any argument gives NULL out, for every function in the catalog."""
    tensor = pa.array([None, {"data": [1, 2, 3, 4, 5, 6], "shape": [1, 2, 3]}], th.udfs.IMAGE)
    samples: dict[str, pa.Array] = {
        "tensor": tensor,
        "image": pa.array([None, encode_image("png", np.zeros((2, 2, 3), np.uint8))]),
        "vector": pa.array([None, [1.0, 2.0]], pa.list_(pa.float32())),
        "binvector": pa.array([None, [1.0, 0.0]], pa.list_(pa.float64())),
        "box": pa.array([None, [0.0, 0.0, 1.0, 1.0]], pa.list_(pa.float64())),
        "boxes": pa.array([None, [[0, 0, 1, 1]]], pa.list_(pa.list_(pa.float32(), 4))),
        "frame": pa.array([None, [0.0, 0.0, 2.0, 2.0]], pa.list_(pa.float64())),
    }
    samples["blob"] = samples["image"]
    options = {"text": "'[0]'", "int": "1", "format": "'xyxy'"}
    cols = {f"c_{k}": v for k, v in samples.items()}
    calls = []
    for udf in CATALOG:
        args = [
            f"c_{p.kind}" if p.kind in samples else options[p.kind]
            for p in udf.params
            if not p.optional
        ]
        calls.append(f"{udf.name}({', '.join(args)}) AS {udf.name}")
    out = (
        engine(kind)
        .query(f"SELECT {', '.join(calls)} FROM tbl", {"tbl": pa.table(cols)})
        .to_pylist()
    )
    assert all(v is None for v in out[0].values()), out[0]
    assert all(v is not None for v in out[1].values()), out[1]


# -- nearest ----------------------------------------------------------------------------------
def _emb_table(n: int = 200, d: int = 8) -> tuple[pa.Table, np.ndarray]:
    rng = np.random.default_rng(11)
    emb = rng.standard_normal((n, d)).astype(np.float32)
    emb[3] = 0  # a zero vector has no cosine: left out
    return pa.table({"id": np.arange(n), "grp": np.arange(n) % 3, "emb": fixed(emb)}), emb


@pytest.mark.parametrize("kind", ENGINES)
@pytest.mark.parametrize("metric", ["cosine", "l2", "dot"])
def test_nearest_matches_numpy(kind: str, metric: str) -> None:
    tbl, emb = _emb_table()
    e = engine(kind)
    e.query("SELECT 1", {"docs": tbl})
    q = emb[7] + 0.01
    conn = e.con if kind == "duckdb" else e.ctx
    got = th.sql.nearest(
        conn, "docs", "emb", q, k=5, metric=metric, where="grp <> 2", columns=["id"]
    )
    x = emb.astype(np.float64)
    score = {
        "cosine": x @ q / np.maximum(np.linalg.norm(x, axis=1), 1e-30) / np.linalg.norm(q),
        "l2": np.linalg.norm(x - q, axis=1),
        "dot": x @ q,
    }[metric]
    ok = (np.arange(len(x)) % 3 != 2) & ((np.linalg.norm(x, axis=1) > 0) | (metric != "cosine"))
    ids = np.flatnonzero(ok)
    order = ids[np.argsort(score[ids] if metric == "l2" else -score[ids], kind="stable")[:5]]
    assert got.column_names == ["id", "score"]
    assert got.column("id").to_pylist() == order.tolist()
    np.testing.assert_allclose(got.column("score").to_numpy(), score[order], rtol=1e-4)


@pytest.mark.parametrize("kind", ENGINES)
def test_nearest_validates_names_and_lengths(kind: str) -> None:
    tbl, _ = _emb_table()
    e = engine(kind)
    e.query("SELECT 1", {"docs": tbl})
    conn = e.con if kind == "duckdb" else e.ctx
    with pytest.raises(th.ArgumentError, match="table 'docs; DROP' is not an identifier"):
        th.sql.nearest(conn, "docs; DROP", "emb", [1.0] * 8)
    with pytest.raises(th.ArgumentError, match="query vector has length 3 but column"):
        th.sql.nearest(conn, "docs", "emb", [1.0, 2.0, 3.0])
    with pytest.raises(th.ArgumentError, match="all zeros"):
        th.sql.nearest(conn, "docs", "emb", [0.0] * 8)
    assert th.sql.nearest(conn, "docs", "emb", [1.0] * 8, k=3).column_names == [
        "id",
        "grp",
        "emb",
        "score",
    ]


# -- registration and examples -----------------------------------------------------------------
def test_register_detects_the_engine_and_imports_engines_lazily() -> None:
    con = duckdb.connect()
    assert th.udfs.register(con) == [u.name for u in CATALOG]
    assert th.udfs.register(con) == [u.name for u in CATALOG]  # again: replaces, no error
    assert set(th.udfs.register(datafusion.SessionContext())) == set(BY_NAME)
    with pytest.raises(TypeError, match="duckdb connection or a datafusion SessionContext"):
        th.udfs.register(object())
    code = "import sys, tensorhouse.udfs; assert 'duckdb' not in sys.modules and 'datafusion' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def _pets() -> pa.Table:
    """A table shaped like the demo ``pets`` dataset, which the udf_*.sql examples query."""
    rng = np.random.default_rng(2)
    n = 12
    cols = {
        "id": (np.arange(n), th.Scalar("int64")),
        "image": (
            [
                rng.integers(0, 256, (8 + i % 3 * 4, 8 + i % 2 * 4, 3), dtype=np.uint8)
                for i in range(n)
            ],
            th.Image("jpeg"),
        ),
        "embedding": (rng.standard_normal((n, 8)).astype(np.float32), th.Embedding(8)),
        "boxes": (
            [rng.random((int(k), 4)).astype(np.float32) for k in rng.integers(0, 4, n)],
            th.BBox(),
        ),
        "mask": (rng.integers(0, 2, (n, 4, 4)).astype(np.uint8), th.Tensor("uint8", (4, 4))),
        "depth": (
            [rng.random((int(k), 3)).astype(np.float32) for k in rng.integers(1, 4, n)],
            th.Tensor("float32", (None, 3)),
        ),
    }
    return pa.Table.from_arrays(
        [column(v, t) for v, t in cols.values()],
        schema=pa.schema([t.arrow_field(k) for k, (_, t) in cols.items()]),
    )


UDF_EXAMPLES = sorted(EXAMPLES.glob("udf_*.sql"))


def test_every_udf_has_an_example_and_a_docs_row() -> None:
    text = "\n".join(p.read_text() for p in UDF_EXAMPLES)
    docs = (EXAMPLES.parent / "docs" / "udfs.md").read_text()
    for udf in CATALOG:
        assert re.search(rf"\b{udf.name}\(", text), f"no sql_examples/udf_*.sql uses {udf.name}"
        assert f"`{udf.name}`" in docs
    # docs/udfs.md holds the catalog's own table: regenerate it with markdown_table when the catalog changes.
    assert markdown_table(sql_type) in docs
    for p in UDF_EXAMPLES:
        head = p.read_text()
        assert (
            head.startswith("-- shows: ") and "\n-- tables: " in head and "\n-- engines: " in head
        ), p.name


@pytest.mark.parametrize("path", UDF_EXAMPLES, ids=[p.stem for p in UDF_EXAMPLES])
def test_udf_examples_run_and_engines_agree(path: Path) -> None:
    engines = re.search(r"^-- engines: (.+)$", path.read_text(), re.M)
    assert engines
    sql = path.read_text().strip().rstrip(";")
    results = {
        k.strip(): engine(k.strip()).query(sql, {"pets": _pets()}).to_pylist()
        for k in engines.group(1).split(",")
    }
    for rows in results.values():
        assert len(rows) == 5
    if len(results) == 2:
        assert approx_equal(results["duckdb"], results["datafusion"]), results


def test_end_to_end_through_the_duckdb_connector(tmp_path: Path) -> None:
    connector = pytest.importorskip("tensorhouse.connector.duckdb")
    ds = th.create(
        str(tmp_path / "ds"), {"image": th.Image("png"), "emb": th.Embedding(4), "boxes": th.BBox()}
    )
    rng = np.random.default_rng(0)
    imgs = [rng.integers(0, 256, (6, 5, 3), dtype=np.uint8) for _ in range(3)]
    emb = rng.standard_normal((3, 4)).astype(np.float32)
    ds.append({"image": imgs, "emb": emb, "boxes": [np.array([[0, 0, 2, 2]], np.float32)] * 3})
    con = duckdb.connect()
    connector.register(con, "ds", str(tmp_path / "ds"))
    th.udfs.register(con)
    rows = con.sql(
        "SELECT tensor_shape(image_resize(image, 2, 3)) AS s, cosine_similarity(emb, emb) AS c, "
        "max_iou(boxes, [1, 1, 2, 2]) AS m FROM ds"
    ).fetchall()
    assert [r[0] for r in rows] == [[2, 3, 3]] * 3
    assert [round(r[1], 5) for r in rows] == [1.0] * 3 and [r[2] for r in rows] == [0.25] * 3
    decoded = codec_decode("png", encode_image("png", imgs[0]))
    assert (
        con.sql("SELECT decode_image(image).data AS d FROM ds LIMIT 1").fetchall()[0][0]
        == decoded.reshape(-1).tolist()
    )


def test_nearest_refuses_a_score_column_clash() -> None:
    import duckdb

    import tensorhouse as th

    con = duckdb.connect()
    con.register(
        "t",
        pa.table(
            {
                "score": [1.0, 2.0],
                "v": pa.array([[1.0, 0.0], [0.0, 1.0]], pa.list_(pa.float32(), 2)),
            }
        ),
    )
    with pytest.raises(ValueError, match="already has a column named 'score'"):
        th.sql.nearest(con, "t", "v", [1.0, 0.0], k=1)
    assert th.sql.nearest(con, "t", "v", [1.0, 0.0], k=1, columns=["v"]).column_names == [
        "v",
        "score",
    ]
