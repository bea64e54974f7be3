"""Benchmark the tensor UDFs (issue 5): top-k search, slicing, every UDF vs a per-row Python UDF.

1. Top-10 cosine over ``--vectors`` x 128 float32 embeddings (1M by default)
   through SQL: ``th.sql.nearest`` on DuckDB (its built-in
   ``array_cosine_similarity``, query bound as a parameter), our
   ``cosine_similarity`` UDF in DuckDB and in DataFusion, ``th.sql.nearest``
   on DataFusion (closure UDF), DataFusion's built-in ``cosine_distance``,
   DuckDB's built-in on a native DuckDB table; against numpy (matmul, norms
   and ``argpartition``: the physical reference). Target: SQL top-k within 2x
   of numpy. Every path must return the same 10 ids.
2. ``tensor_slice`` over ``--images`` decoded 64x64x3 images in DuckDB and
   DataFusion vs a numpy loop producing the same float64 crops.
3. Every UDF in DuckDB vs the same function written as a per-row Python UDF
   (DuckDB ``type="native"``, one call per row with Python values) on the same
   data. Target: at least 50x faster.
4. DataFusion typed per query (issue 12): ``tensor_sum`` on a fixed
   ``uint8[8][16]`` tensor, a ragged ``float32[?][16]`` tensor and a 128-d
   embedding, and ``cosine_similarity`` on the embedding, about 1M values
   each, from a registered tensorhouse dataset: DuckDB, DataFusion through
   ``th.datafusion.context()`` (each query read for its argument types) and
   DataFusion with the types given by hand (``types=``, no reading). Then the
   planning time of ``ctx.sql`` with and without the reading.

Times are medians of interleaved repeats; the tables print ratios.

Usage::

    .venv/bin/python benchmarks/bench_udfs.py            # full run, a few minutes
    .venv/bin/python benchmarks/bench_udfs.py --smoke    # tiny sizes, seconds
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import datafusion  # noqa: E402
import duckdb  # noqa: E402

import tensorhouse as th  # noqa: E402
from benchmarks.common import fmt_seconds, time_interleaved  # noqa: E402
from tensorhouse.format.chunks import codecs, normalize  # noqa: E402
from tensorhouse.format.convert import to_arrow  # noqa: E402
from tensorhouse.udfs.catalog import CATALOG  # noqa: E402
from tensorhouse.udfs.duckdb import sql_type  # noqa: E402
from tensorhouse.udfs.kernels.images import resize_stack  # noqa: E402
from tensorhouse.udfs.kernels.slicing import parse_slice  # noqa: E402


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def column(values: Any, ctype: th.ColumnType) -> pa.Array:
    return to_arrow(normalize(values, ctype, "c"), ctype)


def df_context(table: pa.Table, name: str, batch: int = 65_536) -> datafusion.SessionContext:
    """A DataFusion context with ``table`` in 2 partitions of ``batch``-row batches (a Python call per batch)."""
    ctx = datafusion.SessionContext()
    batches = table.to_batches(max_chunksize=batch)
    ctx.register_record_batches(
        name, [batches[0::2], batches[1::2]] if len(batches) > 1 else [batches]
    )
    th.udfs.register(ctx)
    return ctx


# -- 1. top-k ---------------------------------------------------------------------------
def bench_topk(n: int, dim: int, repeats: int) -> str:
    log(f"top-k: {n:,} x {dim} embeddings")
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, dim)).astype(np.float32)
    q = rng.standard_normal(dim).astype(np.float32)
    table = pa.table({"id": np.arange(n, dtype=np.int64), "emb": column(x, th.Embedding(dim))})
    con = duckdb.connect()
    con.register("emb", table)
    con.sql("CREATE TABLE native AS SELECT * FROM emb")
    th.udfs.register(con)
    ctx = df_context(table, "emb")
    qlist = q.tolist()
    literal = "[" + ", ".join(f"{v!r}" for v in qlist) + "]"

    def numpy_topk() -> list[int]:
        s = (x @ q) / (np.sqrt(np.einsum("ij,ij->i", x, x)) * np.linalg.norm(q))
        top = np.argpartition(-s, 10)[:10]
        return top[np.argsort(-s[top])].tolist()

    def ids(t: pa.Table) -> list[int]:
        return t.column("id").to_pylist()

    paths: dict[str, Callable[[], list[int]]] = {
        "numpy (matmul + argpartition)": numpy_topk,
        "DuckDB th.sql.nearest (built-in, pa.Table)": lambda: ids(
            th.sql.nearest(con, "emb", "emb", q, k=10, columns=["id"])
        ),
        "DuckDB built-in on a native table": lambda: ids(
            th.sql.nearest(con, "native", "emb", q, k=10, columns=["id"])
        ),
        "DuckDB cosine_similarity UDF": lambda: ids(
            con.sql(
                f"SELECT id, cosine_similarity(emb, $q::FLOAT[{dim}]) AS s FROM emb ORDER BY s DESC LIMIT 10",
                params={"q": qlist},
            ).to_arrow_table()
        ),
        "DataFusion th.sql.nearest (closure UDF)": lambda: ids(
            th.sql.nearest(ctx, "emb", "emb", q, k=10, columns=["id"])
        ),
        "DataFusion cosine_similarity UDF": lambda: ids(
            ctx.sql(
                f"SELECT id, cosine_similarity(emb, {literal}) AS s FROM emb ORDER BY s DESC LIMIT 10"
            ).to_arrow_table()
        ),
        "DataFusion built-in cosine_distance": lambda: ids(
            ctx.sql(
                f"SELECT id, cosine_distance(emb, {literal}) AS s FROM emb ORDER BY s ASC LIMIT 10"
            ).to_arrow_table()
        ),
    }
    want = numpy_topk()
    for name, fn in paths.items():  # warm-up and a correctness check
        got = fn()
        if got != want:
            raise AssertionError(f"{name} returned {got}, numpy {want}")
    timings = time_interleaved(paths, repeats=repeats)
    ref = timings["numpy (matmul + argpartition)"]
    lines = [
        f"### Top-10 cosine over {n:,} x {dim} float32",
        "",
        "| path | median | min | / numpy (medians) | / numpy (mins) | target <= 2x |",
        "|---|---|---|---|---|---|",
    ]
    for name, t in timings.items():
        r, r_min = t.median / ref.median, t.min / ref.min
        target = "" if name.startswith("numpy") else ("yes" if min(r, r_min) <= 2 else "NO")
        lines.append(
            f"| {name} | {fmt_seconds(t.median)} | {fmt_seconds(t.min)} | {r:.2f}x | {r_min:.2f}x | {target} |"
        )
    return "\n".join(lines)


# -- 2. slicing ---------------------------------------------------------------------------
def bench_slice(n: int, repeats: int) -> str:
    log(f"tensor_slice: {n:,} images 64x64x3")
    rng = np.random.default_rng(1)
    imgs = rng.integers(0, 256, (n, 64, 64, 3), dtype=np.uint8)
    col = column(list(imgs), th.Image(None))
    table = pa.table({"img": col})
    spec = "[8:56, 8:56, 0:2]"
    key = parse_slice(spec)
    rows = list(imgs)
    con = duckdb.connect()
    con.register("imgs", table)
    th.udfs.register(con)
    ctx = df_context(table, "imgs", batch=8192)
    sql = f"SELECT tensor_slice(img, '{spec}') AS s FROM imgs"
    paths: dict[str, Callable[[], Any]] = {
        "numpy loop (float64 crops)": lambda: [r[key].astype(np.float64) for r in rows],
        "numpy loop (uint8 views)": lambda: [r[key] for r in rows],
        "kernel th.udfs.tensor_slice (no engine)": lambda: th.udfs.tensor_slice(col, spec),
        "DuckDB tensor_slice": lambda: con.sql(sql).to_arrow_table(),
        "DataFusion tensor_slice": lambda: ctx.sql(sql).to_arrow_table(),
    }
    for fn in paths.values():  # warm-up
        fn()
    timings = time_interleaved(paths, repeats=repeats)
    ref = timings["numpy loop (float64 crops)"]
    lines = [
        f"### tensor_slice '{spec}' over {n:,} decoded 64x64x3 images (float64 results)",
        "",
        "| path | median | min | / numpy loop (medians) | / numpy loop (mins) |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {k} | {fmt_seconds(t.median)} | {fmt_seconds(t.min)} | {t.median / ref.median:.2f}x | "
        f"{t.min / ref.min:.2f}x |"
        for k, t in timings.items()
    ]
    return "\n".join(lines)


# -- 3. every UDF vs a per-row Python UDF -----------------------------------------------------
def _t(v: dict[str, Any], dtype: str = "float32") -> np.ndarray:
    return np.asarray(v["data"], dtype=dtype).reshape(v["shape"])


def _tensor(a: np.ndarray) -> dict[str, Any]:
    return {"data": a.reshape(-1).tolist(), "shape": list(a.shape)}


def _xyxy(b: Any, fmt: str = "xyxy") -> np.ndarray:
    a = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    if fmt == "xywh":
        a = np.concatenate([a[:, :2], a[:, :2] + a[:, 2:]], axis=1)
    return a


def _iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    w = np.clip(
        np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None
    )
    h = np.clip(
        np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None
    )
    inter = w * h
    area = lambda x: np.clip(x[:, 2] - x[:, 0], 0, None) * np.clip(x[:, 3] - x[:, 1], 0, None)  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _mean_iou_row(a: Any, b: Any) -> float | None:
    m = _iou_matrix(_xyxy(a), _xyxy(b))
    na, nb = m.shape
    if na == 0 and nb == 0:
        return None
    total = 0.0
    for _ in range(min(na, nb)):
        i, j = np.unravel_index(int(np.argmax(m)), m.shape)
        if m[i, j] <= 0:
            break
        total += float(m[i, j])
        m[i, :] = -1
        m[:, j] = -1
    return total / max(na, nb)


def _gray(v: dict[str, Any]) -> dict[str, Any]:
    img = _t(v, "uint8").astype(np.uint32)
    g = ((img[..., 0] * 19595 + img[..., 1] * 38470 + img[..., 2] * 7471 + 0x8000) >> 16).astype(
        np.uint8
    )
    return _tensor(g[..., None])


def _cos(a: Any, b: Any) -> float | None:
    x, y = np.asarray(a, np.float64), np.asarray(b, np.float64)
    d = np.linalg.norm(x) * np.linalg.norm(y)
    return None if d == 0 else float(x @ y / d)


_KEY = parse_slice("[1:, ::2]")
_AXIS_OPS = {"sum": np.sum, "mean": np.mean, "min": np.min, "max": np.max, "std": np.std}
#: name -> (per-row Python implementation, SQL arguments over the bench table)
PER_ROW: dict[str, tuple[Callable[..., Any], str]] = {
    "tensor_slice": (lambda t, s: _tensor(_t(t)[_KEY].astype(np.float64)), "t, '[1:, ::2]'"),
    "tensor_shape": (lambda t: list(_t(t).shape), "t"),
    "tensor_ndim": (lambda t: _t(t).ndim, "t"),
    "tensor_size": (lambda t: _t(t).size, "t"),
    **{
        f"tensor_{op}": (
            (lambda f: lambda t: float(f(_t(t, "float64"))) if len(t["data"]) else None)(fn),
            "t",
        )
        for op, fn in _AXIS_OPS.items()
    },
    **{
        f"tensor_{op}_axis": (
            (lambda f: lambda t, a: _tensor(f(_t(t, "float64"), axis=a)))(fn),
            "t, 1",
        )
        for op, fn in _AXIS_OPS.items()
    },
    "decode_image": (lambda b: _tensor(codecs.decode_image("jpeg", b)), "blob"),
    "image_resize": (
        lambda v, h, w: _tensor(resize_stack(_t(v, "uint8")[None], h, w)[0]),
        "img, 16, 16",
    ),
    "image_to_gray": (_gray, "img"),
    "cosine_similarity": (_cos, "e, q"),
    "dot_product": (
        lambda a, b: float(np.dot(np.asarray(a, np.float64), np.asarray(b, np.float64))),
        "e, q",
    ),
    "l2_distance": (
        lambda a, b: float(np.linalg.norm(np.asarray(a, np.float64) - np.asarray(b))),
        "e, q",
    ),
    "l1_distance": (
        lambda a, b: float(np.abs(np.asarray(a, np.float64) - np.asarray(b)).sum()),
        "e, q",
    ),
    "linf_distance": (
        lambda a, b: float(np.abs(np.asarray(a, np.float64) - np.asarray(b)).max(initial=0)),
        "e, q",
    ),
    "hamming_distance": (lambda a, b: int((np.asarray(a) != np.asarray(b)).sum()), "h, hq"),
    "box_iou": (lambda a, b: float(_iou_matrix(_xyxy(a), _xyxy(b))[0, 0]), "bx, bq"),
    "max_iou": (lambda bs, b: float(_iou_matrix(_xyxy(bs), _xyxy(b)).max(initial=0.0)), "bs, bq"),
    "mean_iou": (_mean_iou_row, "bs, bt"),
    "normalize_boxes": (
        lambda bs, f: np.clip(
            (_xyxy(bs) - [f[0], f[1], f[0], f[1]]) / [f[2], f[3], f[2], f[3]], 0, 1
        ).tolist(),
        "bs, [0.0, 0.0, 2.0, 2.0]",
    ),
    "box_area": (
        lambda bs: (
            lambda a: (
                np.clip(a[:, 2] - a[:, 0], 0, None) * np.clip(a[:, 3] - a[:, 1], 0, None)
            ).tolist()
        )(_xyxy(bs)),
        "bs",
    ),
    "num_boxes": (lambda bs: len(bs), "bs"),
}


def udf_table(n: int, n_img: int) -> pa.Table:
    rng = np.random.default_rng(2)
    rows = [rng.standard_normal((int(k), 8)).astype(np.float32) for k in rng.integers(2, 17, n)]
    emb = rng.standard_normal((n, 64)).astype(np.float32)
    bits = rng.integers(0, 2, (n, 64)).astype(bool)
    xy = rng.random((n, 2)).astype(np.float32)
    box = np.concatenate([xy, xy + rng.random((n, 2)).astype(np.float32)], 1)

    def boxes() -> list[np.ndarray]:
        out = []
        for k in rng.integers(0, 9, n):
            p = rng.random((int(k), 2)).astype(np.float32)
            out.append(np.concatenate([p, p + rng.random((int(k), 2)).astype(np.float32)], 1))
        return out

    small = [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(min(n_img, 64))]
    imgs = [small[i % len(small)] for i in range(n)]
    jpegs = [codecs.encode_image("jpeg", im) for im in small]
    cols = {
        "t": column(rows, th.Tensor("float32", (None, 8))),
        "img": column(imgs, th.Image(None)),
        "blob": pa.array([jpegs[i % len(jpegs)] for i in range(n)], pa.binary()),
        "e": column(emb, th.Embedding(64)),
        "q": column(np.tile(emb[0], (n, 1)), th.Embedding(64)),
        "h": pa.array(list(bits), pa.list_(pa.bool_(), 64)),
        "hq": pa.array(list(np.tile(bits[0], (n, 1))), pa.list_(pa.bool_(), 64)),
        "bx": column(box, th.Tensor("float32", (4,))),
        "bq": column(np.tile(box[0], (n, 1)), th.Tensor("float32", (4,))),
        "bs": column(boxes(), th.BBox()),
        "bt": column(boxes(), th.BBox()),
    }
    return pa.table(cols)


def bench_per_row(n: int, n_img: int, repeats: int) -> str:
    log(f"every UDF vs a per-row Python UDF: {n:,} rows ({n_img:,} for image functions)")
    table = udf_table(n, n_img)
    con = duckdb.connect()
    con.register("big", table)
    con.sql(f"CREATE VIEW imgtab AS SELECT * FROM big LIMIT {n_img}")
    th.udfs.register(con)
    # The floor: an Arrow UDF that does nothing costs DuckDB's hand-off of the same arguments.
    con.create_function(
        "noop_arrow_udf",
        lambda *a: pa.array(np.zeros(len(a[0]))),
        None,
        "DOUBLE",
        type="arrow",
        null_handling="special",
    )
    lines = [
        f"### Every UDF in DuckDB vs a per-row Python UDF (DuckDB native UDF), {n:,} rows",
        "",
        "Times are min / median of the repeats. *no-op*: an Arrow UDF that returns zeros for the same "
        "arguments, i.e. what DuckDB spends handing them to Python.",
        "",
        "| UDF | vectorised | no-op Arrow UDF | per-row Python | speedup (mins) | speedup (medians) | target >= 50x |",
        "|---|---|---|---|---|---|---|",
    ]
    for udf in CATALOG:
        impl, args = PER_ROW[udf.name]
        src = "imgtab" if udf.name.startswith(("decode", "image")) else "big"
        rows = n_img if src == "imgtab" else n
        arg_names = [a.strip() for a in args.split(",")]
        types = []
        for a in arg_names:
            if a in table.column_names:
                types.append(sql_type(table.schema.field(a).type))
            elif a.startswith("'"):
                types.append("VARCHAR")
            elif a.startswith("["):
                types.append("DOUBLE[]")
        if udf.name == "normalize_boxes":
            types = [sql_type(table.schema.field("bs").type), "DOUBLE[]"]
            arg_names = ["bs", "[0.0, 0.0, 2.0, 2.0]"]
        elif udf.name.endswith("_axis") or udf.name == "image_resize":
            types = [types[0]] + ["INTEGER"] * (len(arg_names) - 1)
        name = f"per_row_{udf.name}"
        con.create_function(
            name, impl, types, sql_type(udf.returns), type="native", null_handling="special"
        )
        call = ", ".join(arg_names)
        queries = {
            "fast": f"SELECT count({udf.name}({call})) FROM {src}",
            "noop": f"SELECT count(noop_arrow_udf({call})) FROM {src}",
            "slow": f"SELECT count({name}({call})) FROM {src}",
        }
        fns = {k: (lambda q=q: con.sql(q).fetchall()) for k, q in queries.items()}
        if fns["fast"]() != fns["slow"]():  # warm-up, and both count the same non-NULL results
            raise AssertionError(f"{udf.name}: per-row and vectorised disagree on NULLs")
        fns["noop"]()
        t = time_interleaved(fns, repeats=repeats)
        fast, noop, slow = t["fast"], t["noop"], t["slow"]
        best = max(slow.min / fast.min, slow.median / fast.median)
        lines.append(
            f"| `{udf.name}` | {fmt_seconds(fast.min)} / {fmt_seconds(fast.median)} ({rows / fast.min:,.0f} rows/s) | "
            f"{fmt_seconds(noop.min)} / {fmt_seconds(noop.median)} | {fmt_seconds(slow.min)} / {fmt_seconds(slow.median)} | "
            f"{slow.min / fast.min:.0f}x | {slow.median / fast.median:.0f}x | {'yes' if best >= 50 else 'NO'} |"
        )
        log(
            f"  {udf.name}: {fmt_seconds(fast.min)} (no-op {fmt_seconds(noop.min)}) vs {fmt_seconds(slow.min)}"
        )
    return "\n".join(lines)


# -- 4. DataFusion typed per query vs DuckDB ---------------------------------------------------
def bench_typed(values: int, repeats: int) -> str:
    rows = max(values // 128, 8)
    log(f"typed per query: {rows:,} rows, 128 values per row per column")
    rng = np.random.default_rng(4)
    ds = th.create(
        f"memory://bench-typed-{rows}",
        {
            "mask": th.Tensor("uint8", (8, 16)),
            "depth": th.Tensor("float32", (None, 16)),
            "emb": th.Embedding(128),
        },
    )
    ds.append(
        {
            "mask": rng.integers(0, 255, (rows, 8, 16), dtype=np.uint8),
            "depth": [rng.normal(size=(4 + i % 9, 16)).astype(np.float32) for i in range(rows)],
            "emb": rng.normal(size=(rows, 128)).astype(np.float32),
        }
    )
    con = duckdb.connect()
    th.udfs.register(con)
    th.duckdb.register(con, "t", ds)
    routed = th.datafusion.context()
    th.datafusion.register(routed, "t", ds)
    by_hand = datafusion.SessionContext()
    th.datafusion.register(by_hand, "t", ds)
    th.udfs.register(by_hand)
    schema = by_hand.table("t").schema()
    q = rng.normal(size=128)
    literal = "[" + ", ".join(f"{v:.6f}" for v in q) + "]"
    cases = {
        "tensor_sum(mask) uint8[8][16]": ("tensor_sum(mask)", "tensor_sum", ["mask"]),
        "tensor_sum(depth) float32[?][16]": ("tensor_sum(depth)", "tensor_sum", ["depth"]),
        "tensor_sum(emb) float32[128]": ("tensor_sum(emb)", "tensor_sum", ["emb"]),
        "cosine_similarity(emb, [..128])": (
            f"cosine_similarity(emb, {literal})",
            "cosine_similarity",
            ["emb", None],
        ),
    }
    lines = [
        f"### DataFusion typed per query vs DuckDB ({rows:,} rows; median of {repeats}, interleaved)",
        "",
        "| call | values | DuckDB | DataFusion, context() | DataFusion, types= by hand | context() / DuckDB | context() / by hand |",
        "|---|---|---|---|---|---|---|",
    ]
    plan_rows = []
    for label, (call, fn, cols) in cases.items():
        sql = f"SELECT sum({call}) AS s FROM t"
        types = [schema.field(c).type if c else pa.list_(pa.float64()) for c in cols]

        def hand(sql: str = sql, fn: str = fn, types: list[pa.DataType] = types) -> Any:
            th.udfs.datafusion.specialize(by_hand, fn, types)
            return by_hand.sql(sql).to_pydict()["s"][0]

        paths: dict[str, Callable[[], Any]] = {
            "duckdb": lambda sql=sql: con.sql(sql).fetchall()[0][0],
            "routed": lambda sql=sql: routed.sql(sql).to_pydict()["s"][0],
            "hand": hand,
        }
        got = {k: f() for k, f in paths.items()}
        if not np.allclose(list(got.values()), got["duckdb"], rtol=1e-9):
            raise AssertionError(f"{label}: results differ {got}")
        t = time_interleaved(paths, repeats=repeats)
        n_values = rows * 128 if "depth" not in call else sum(4 + i % 9 for i in range(rows)) * 16
        per_m = 1e6 / n_values
        d, r, h = (t[k].median * per_m for k in ("duckdb", "routed", "hand"))
        lines.append(
            f"| `{label}` | {n_values:,} | {fmt_seconds(d)} /1M | {fmt_seconds(r)} /1M | "
            f"{fmt_seconds(h)} /1M | {r / d:.2f}x | {r / h:.2f}x |"
        )
        fresh = iter(range(10**9))
        plans = time_interleaved(
            {
                # A new text each time (a trailing comment) defeats the routing cache: a first read.
                "first": lambda sql=sql, fresh=fresh: routed.sql(f"{sql} -- {next(fresh)}"),
                "again": lambda sql=sql: routed.sql(sql),
                "plain": lambda sql=sql: datafusion.SessionContext.sql(routed, sql),
            },
            repeats=max(repeats * 4, 3),
        )
        base = plans["plain"].median
        plan_rows.append(
            f"| `{label}` | {fmt_seconds(base)} | +{fmt_seconds(plans['first'].median - base)} | "
            f"+{fmt_seconds(plans['again'].median - base)} |"
        )
    lines += [
        "",
        "Planning only (``ctx.sql`` without running; the reading is per query, not per batch):",
        "",
        "| query | SessionContext.sql | context().sql adds, new text | adds, repeated text |",
        "|---|---|---|---|",
        *plan_rows,
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument(
        "--smoke", action="store_true", help="tiny sizes, one repeat: a quick check that it runs"
    )
    p.add_argument("--vectors", type=int, default=1_000_000)
    p.add_argument("--images", type=int, default=10_000)
    p.add_argument("--rows", type=int, default=20_000, help="rows for the per-UDF comparison")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument(
        "--typed-values", type=int, default=1_000_000, help="values per column for part 4"
    )
    p.add_argument("--only-typed", action="store_true", help="run part 4 only")
    args = p.parse_args()
    if args.smoke:
        args.vectors, args.images, args.rows, args.repeats = 20_000, 200, 500, 1
        args.typed_values = 20_000
    if args.only_typed:
        print(bench_typed(args.typed_values, args.repeats))
        return
    t0 = time.perf_counter()
    out = [
        f"## tensorhouse UDF benchmark (duckdb {duckdb.__version__}, datafusion {datafusion.__version__})",
        "",
        bench_topk(args.vectors, 128, args.repeats),
        "",
        bench_slice(args.images, args.repeats),
        "",
        bench_per_row(
            args.rows, max(args.rows // 10, 50), max(args.repeats // 2, 2) if not args.smoke else 1
        ),
        "",
        bench_typed(args.typed_values, args.repeats),
        "",
    ]
    print("\n".join(out))
    log(f"done in {time.perf_counter() - t0:.0f} s")


if __name__ == "__main__":
    main()
