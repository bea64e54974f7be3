"""Every tensor UDF on every tensor column type, in DuckDB and DataFusion, against numpy.

One dataset holds a column of each type the format produces (a fixed-shape
tensor of every dtype at 1, 2 and 3 dimensions, ragged tensors, embeddings,
boxes in both formats, encoded and raw images, blobs, Arrow list columns,
labels and scalars), plus UDF results used as arguments (a decoded image, a
slice); one row is NULL in every column. It is
registered through the real connectors: ``th.duckdb.register`` and
``th.datafusion.register`` on ``th.datafusion.context()``, queried with plain
``ctx.sql`` and no ``types=``. :class:`TestEveryUDF` runs once per engine;
each check compares the engine's rows with a numpy reference and with the
other engine's rows for the same SQL.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pytest
from PIL import Image as PILImage
from test_udfs_kernels import _ref_iou, _ref_mean_iou, _ref_metric, _resize_reference

import tensorhouse as th
from tensorhouse.udfs.catalog import BY_NAME, CATALOG

ENGINES = ["duckdb", "datafusion"]
N = 4
NULL_ROW = 2  # every column is NULL in this row: every function must give NULL there


def each(rows: list[Any], f: Callable[[Any], Any]) -> list[Any]:
    """``f`` of every row, NULL rows staying NULL."""
    return [None if r is None else f(r) for r in rows]


Rows = list[Any]
Ref = Callable[[np.ndarray], Any]


# -- the dataset ------------------------------------------------------------------------------
@dataclass
class Column:
    """A column (or an expression over columns) and its rows as numpy arrays."""

    sql: str
    rows: list[np.ndarray]
    roles: set[str] = field(default_factory=set)
    fmt: str = "xyxy"


def _png(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    PILImage.fromarray(a).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


def _decode(b: bytes) -> np.ndarray:
    return np.asarray(PILImage.open(io.BytesIO(b)).convert("RGB"))


def _values(rng: np.random.Generator, dtype: str, shape: tuple[int, ...]) -> np.ndarray:
    if dtype == "bool":
        return rng.integers(0, 2, shape).astype(bool)
    if dtype.startswith(("int", "uint")):
        return rng.integers(0 if dtype.startswith("u") else -9, 10, shape).astype(dtype)
    return (rng.normal(size=shape) * 4).round(2).astype(dtype)


def _boxes(rng: np.random.Generator, k: int, fmt: str) -> np.ndarray:
    xy = rng.integers(0, 6, (k, 2)).astype(np.float32)
    wh = rng.integers(1, 5, (k, 2)).astype(np.float32)
    return np.hstack([xy, wh if fmt == "xywh" else xy + wh])


SHAPES = [(4,), (2, 3), (2, 2, 3)]
DTYPES = list(th.types.NUMERIC_DTYPES)


def build(uri: str) -> tuple[th.Dataset, dict[str, Column]]:
    rng = np.random.default_rng(12)
    schema: dict[str, Any] = {"id": "int64"}
    data: dict[str, Any] = {"id": list(range(N))}
    cols: dict[str, Column] = {}

    def add(name: str, ctype: Any, rows: list[Any], roles: set[str], **kw: Any) -> None:
        rows = [None if i == NULL_ROW else r for i, r in enumerate(rows)]
        schema[name] = ctype
        data[name] = rows
        cols[name] = Column(name, each(rows, np.asarray), roles, **kw)

    tensor = {"tensor"}
    for i, dtype in enumerate(DTYPES):  # every dtype, cycling through 1-3 dimensions
        shape = SHAPES[i % 3] if dtype != "bool" else (4,)
        roles = tensor | ({"vector"} if len(shape) == 1 and dtype != "bool" else set())
        roles |= {"binvector"} if dtype == "bool" else set()
        add(
            f"f_{dtype}",
            th.Tensor(dtype, shape),
            [_values(rng, dtype, shape) for _ in range(N)],
            roles,
        )
    for shape in SHAPES:  # float32 at every depth
        add(
            f"f32_{len(shape)}d",
            th.Tensor("float32", shape),
            [_values(rng, "float32", shape) for _ in range(N)],
            tensor,
        )
    add(
        "r_f32_1",
        th.Tensor("float32", (None,)),
        [_values(rng, "float32", (i + 1,)) for i in range(N)],
        tensor,
    )
    add(
        "r_i16_2",
        th.Tensor("int16", (None, 3)),
        [_values(rng, "int16", (i + 1, 3)) for i in range(N)],
        tensor,
    )
    add(
        "r_u8_3",
        th.Tensor("uint8", (None, None, 3)),
        [_values(rng, "uint8", (i + 1, 2 + i % 2, 3)) for i in range(N)],
        tensor,
    )
    add(
        "r_f64_2",
        th.Tensor("float64", (2, None)),
        [_values(rng, "float64", (2, i + 1)) for i in range(N)],
        tensor,
    )
    for dtype in ("float32", "float64", "float16"):
        add(
            f"emb_{dtype}",
            th.Embedding(4, dtype=dtype),
            [_values(rng, dtype, (4,)) for _ in range(N)],
            tensor | {"vector"},
        )
    add(
        "bits",
        th.Tensor("uint8", (4,)),
        [rng.integers(0, 2, 4).astype("uint8") for _ in range(N)],
        tensor | {"binvector", "vector"},
    )
    add(
        "box4",
        th.Tensor("float32", (4,)),
        [_boxes(rng, 1, "xyxy")[0] for _ in range(N)],
        tensor | {"box", "vector"},
    )
    for fmt in ("xyxy", "xywh"):
        add(
            f"boxes_{fmt}",
            th.BBox(fmt),  # type: ignore[arg-type]
            [_boxes(rng, i % 3 + 1, fmt) for i in range(N)],
            tensor | {"boxes"},
            fmt=fmt,
        )
    add(
        "rbox",
        th.Tensor("float32", (None, 4)),
        [_boxes(rng, i % 3 + 1, "xyxy") for i in range(N)],
        tensor | {"boxes"},
    )
    add(
        "fbox",
        th.Tensor("float32", (2, 4)),
        [_boxes(rng, 2, "xyxy") for _ in range(N)],
        tensor | {"boxes"},
    )
    pictures = [rng.integers(0, 256, (3 + i % 3, 4 + i % 2, 3), dtype=np.uint8) for i in range(N)]
    add("img_raw", th.Image(None), pictures, tensor | {"image"})
    add(
        "u8img",
        th.Tensor("uint8", (5, 4, 3)),
        [_values(rng, "uint8", (5, 4, 3)) for _ in range(N)],
        tensor | {"image"},
    )
    encoded = {
        "img_png": (th.Image("png"), [_png(p) for p in pictures]),
        "img_jpeg": (th.Image("jpeg"), [_jpeg(p) for p in pictures]),
        "blob": (th.Binary(), [_png(p[::-1]) for p in pictures]),
    }
    for name, (ctype, blobs) in encoded.items():
        blobs = [None if i == NULL_ROW else b for i, b in enumerate(blobs)]
        schema[name] = ctype
        data[name] = blobs
        cols[name] = Column(name, each(blobs, _decode), {"image", "blob"})
    # Arrow list columns (what Parquet and Delta lists ingest as): ragged, nested, large.
    add(
        "a_f64",
        th.Arrow("list<double>"),
        [_values(rng, "float64", (i + 1,)) for i in range(N)],
        tensor,
    )
    nested = [_values(rng, "int32", (2, 3)) for _ in range(N)]
    schema["a_i32_2"] = th.Arrow("list<list<int32>>")
    nested = [None if i == NULL_ROW else a for i, a in enumerate(nested)]
    data["a_i32_2"] = pa.array(each(nested, np.ndarray.tolist), pa.list_(pa.list_(pa.int32())))
    cols["a_i32_2"] = Column("a_i32_2", nested, tensor)
    add(
        "a_large",
        th.Arrow(pa.large_list(pa.float32())),
        [_values(rng, "float32", (4,)) for _ in range(N)],
        tensor | {"vector"},
    )
    add("label", th.ClassLabel(["a", "b", "c"]), [i % 3 for i in range(N)], tensor)
    for dtype in ("int64", "float32", "bool"):
        add(f"s_{dtype}", dtype, list(_values(rng, dtype, (N,))), tensor)
    # UDF results as arguments: a decoded image (struct<uint8>) and a slice (struct<double>).
    cols["decoded"] = Column("decode_image(img_png)", cols["img_png"].rows, tensor)
    cols["sliced"] = Column(
        "tensor_slice(f32_3d, '[1]')",
        each(cols["f32_3d"].rows, lambda r: r[1].astype(np.float64)),
        tensor,
    )
    ds = th.create(uri, schema)
    ds.append(data)
    return ds, cols


# -- the engines ------------------------------------------------------------------------------
class World:
    """Both engines over the same dataset, and every result each has produced (by SQL text)."""

    def __init__(self, uri: str) -> None:
        self.ds, self.cols = build(uri)
        self.con = duckdb.connect()
        th.udfs.register(self.con)
        th.duckdb.register(self.con, "t", self.ds)
        self.ctx = th.datafusion.context()  # plain ctx.sql, no types=
        th.datafusion.register(self.ctx, "t", self.ds)
        self.results: dict[tuple[str, str], list[Rows]] = {}
        self.used: set[str] = set()

    def columns(self, engine: str, sql: str) -> list[Rows]:
        key = (engine, sql)
        if key not in self.results:
            if engine == "duckdb":
                table = self.con.sql(sql).to_arrow_table()
            else:
                table = self.ctx.sql(sql).to_arrow_table()
            self.results[key] = [c.to_pylist() for c in table.columns]
        return self.results[key]


@pytest.fixture(scope="module")
def world() -> Iterator[World]:
    yield World("memory://udf-matrix")


def _tensor(v: Any) -> np.ndarray | None:
    return None if v is None else np.asarray(v["data"], np.float64).reshape(v["shape"])


def close(got: Any, want: Any, tol: float) -> bool:
    if isinstance(want, np.ndarray):
        arr = _tensor(got) if isinstance(got, dict) else np.asarray(got, np.float64)
        return (
            arr is not None
            and arr.shape == want.shape
            and np.allclose(arr, want, rtol=tol, atol=tol)
        )
    if isinstance(want, list | tuple):
        return (
            isinstance(got, list | tuple)
            and len(got) == len(want)
            and all(close(g, w, tol) for g, w in zip(got, want, strict=True))
        )
    if isinstance(want, float) or isinstance(got, float):
        return (
            got is not None
            and want is not None
            and math.isclose(got, want, rel_tol=tol, abs_tol=tol)
        )
    return bool(got == want)


@dataclass(frozen=True)
class Call:
    """One UDF call in a matrix query and the rows numpy expects."""

    fn: str
    args: str
    want: list[Any]
    tol: float = 1e-6


class TestEveryUDF:
    """Each check: one UDF call on one column type; numpy reference and the other engine agree."""

    @pytest.fixture(params=ENGINES, autouse=True)
    def _engine(self, request: pytest.FixtureRequest, world: World) -> None:
        self.engine: str = request.param
        self.world = world

    def check(self, calls: list[Call]) -> None:
        """Run ``calls`` as one query (one output column each) and check every value."""
        w = self.world
        sql = "SELECT " + ", ".join(f"{c.fn}({c.args}) AS c{i}" for i, c in enumerate(calls))
        sql += " FROM t ORDER BY id"
        got_all = w.columns(self.engine, sql)
        other_all = w.columns(next(e for e in ENGINES if e != self.engine), sql)
        for call, got, other in zip(calls, got_all, other_all, strict=True):
            w.used.add(call.fn)
            what = f"{call.fn}({call.args})"
            assert len(got) == len(call.want), what
            for i, (g, ref) in enumerate(zip(got, call.want, strict=True)):
                assert close(g, ref, call.tol), (
                    f"{self.engine}: {what}, row {i}: got {g!r}, numpy says {ref!r}"
                )
            assert close(got, other, 1e-12), (
                f"{what}: duckdb and datafusion differ: {got!r} vs {other!r}"
            )

    def columns(self, role: str) -> list[Column]:
        return [c for c in self.world.cols.values() if role in c.roles]

    def test_shape_and_reductions(self) -> None:
        for c in self.columns("tensor"):
            rows = each(c.rows, lambda r: r.astype(np.float64))
            calls = [
                Call("tensor_shape", c.sql, each(rows, lambda r: list(r.shape))),
                Call("tensor_ndim", c.sql, each(rows, lambda r: r.ndim)),
                Call("tensor_size", c.sql, each(rows, lambda r: r.size)),
            ]
            for op in ("sum", "mean", "min", "max", "std"):
                want = each(rows, lambda r, op=op: float(getattr(np, op)(r)))
                calls.append(Call(f"tensor_{op}", c.sql, want, tol=1e-9))
            self.check(calls)

    def test_slices_and_axis_reductions(self) -> None:
        specs = {
            1: ("'[1:3]'", np.s_[1:3]),
            2: ("'[0, 1:]'", np.s_[0, 1:]),
            3: ("'[..., 0]'", np.s_[..., 0]),
        }
        for c in self.columns("tensor"):
            ndim = c.rows[0].ndim
            if ndim == 0:
                continue
            rows = each(c.rows, lambda r: r.astype(np.float64))
            spec, key = specs[ndim]
            calls = [Call("tensor_slice", f"{c.sql}, {spec}", each(rows, lambda r, k=key: r[k]))]
            for op in ("sum", "mean", "min", "max", "std"):
                for axis in (0, -1):
                    want = each(
                        rows, lambda r, op=op, a=axis: np.asarray(getattr(np, op)(r, axis=a))
                    )
                    calls.append(Call(f"tensor_{op}_axis", f"{c.sql}, {axis}", want, tol=1e-9))
            self.check(calls)

    def test_images(self) -> None:
        for c in self.columns("image"):
            resized = each(c.rows, lambda r: _resize_reference(r.astype(np.float64), 3, 2))
            gray = each(c.rows, lambda r: np.asarray(PILImage.fromarray(r).convert("L"))[..., None])
            calls = [
                Call("image_resize", f"{c.sql}, 3, 2", resized, tol=1.0),  # bilinear rounding
                Call("image_to_gray", c.sql, gray, tol=0),
            ]
            if "blob" in c.roles:
                calls.append(Call("decode_image", c.sql, c.rows, tol=0))
            self.check(calls)

    def test_similarity(self) -> None:
        q = np.array([0.5, -1.0, 2.0, 0.25])
        lit = "[0.5, -1.0, 2.0, 0.25]"
        names = {
            "cosine": "cosine_similarity",
            "dot": "dot_product",
            "l2": "l2_distance",
            "l1": "l1_distance",
            "linf": "linf_distance",
        }
        for c in self.columns("vector"):
            calls = []
            for metric, fn in names.items():
                calls += [
                    Call(
                        fn,
                        f"{c.sql}, {lit}",
                        each(c.rows, lambda r, m=metric: _ref_metric(r, q, m)),
                        1e-5,
                    ),
                    Call(
                        fn,
                        f"{lit}, {c.sql}",
                        each(c.rows, lambda r, m=metric: _ref_metric(q, r, m)),
                        1e-5,
                    ),
                    Call(
                        fn,
                        f"{c.sql}, {c.sql}",
                        each(c.rows, lambda r, m=metric: _ref_metric(r, r, m)),
                        1e-5,
                    ),
                ]
            self.check(calls)
        bits = np.array([1, 0, 1, 1])
        for c in self.columns("binvector"):
            differ = each(c.rows, lambda r: int((r.astype(int) != bits).sum()))
            self.check(
                [
                    Call("hamming_distance", f"{c.sql}, [1, 0, 1, 1]", differ),
                    Call("hamming_distance", f"{c.sql}, {c.sql}", each(c.rows, lambda r: 0)),
                ]
            )

    def test_boxes(self) -> None:
        frame = np.array([0.0, 0.0, 8.0, 8.0])
        box, lit = np.array([1.0, 1.0, 4.0, 3.0]), "[1.0, 1.0, 4.0, 3.0]"
        box4 = self.world.cols["box4"]
        single = [(box4.sql, box4.rows, "xyxy")]
        for c in self.columns("boxes"):
            opt = "" if c.fmt == "xyxy" else f", '{c.fmt}'"
            f = c.fmt
            best = each(c.rows, lambda r, f=f: max((_ref_iou(b, box, f) or 0.0) for b in r))
            areas = each(c.rows, lambda r, f=f: np.array([_ref_box_area(b, f) for b in r]))
            self.check(
                [
                    Call("max_iou", f"{c.sql}, {lit}{opt}", best),
                    Call(
                        "mean_iou",
                        f"{c.sql}, {c.sql}{opt}",
                        each(c.rows, lambda r, f=f: _ref_mean_iou(r, r, f)),
                    ),
                    Call(
                        "normalize_boxes",
                        f"{c.sql}, [0, 0, 8, 8]{opt}",
                        each(c.rows, lambda r, f=f: _ref_normalize(r, frame, f)),
                    ),
                    Call("box_area", f"{c.sql}{opt}", areas),
                    Call("num_boxes", c.sql, each(c.rows, len)),
                ]
            )
            if c.sql != "rbox":  # x[1] is a box of a list column, not of a struct
                single.append((f"{c.sql}[1]", each(c.rows, lambda r: r[0]), c.fmt))
        for sql, rows, fmt in single:
            opt = "" if fmt == "xyxy" else f", '{fmt}'"
            want = each(rows, lambda r, f=fmt: _ref_iou(r, box, f))
            self.check([Call("box_iou", f"{sql}, {lit}{opt}", want)])


def _xyxy(b: np.ndarray, fmt: str) -> np.ndarray:
    b = b.astype(np.float64)
    return b if fmt == "xyxy" else np.array([b[0], b[1], b[0] + b[2], b[1] + b[3]])


def _ref_box_area(b: np.ndarray, fmt: str) -> float:
    x = _xyxy(b, fmt)
    return float(max(x[2] - x[0], 0) * max(x[3] - x[1], 0))


def _ref_normalize(r: np.ndarray, frame: np.ndarray, fmt: str) -> np.ndarray:
    out = []
    for b in r.astype(np.float64):
        if fmt == "xyxy":
            rel = (b - np.tile(frame[:2], 2)) / np.tile(frame[2:], 2)
        else:
            rel = np.concatenate([(b[:2] - frame[:2]) / frame[2:], b[2:] / frame[2:]])
        out.append(np.clip(rel, 0, 1))
    return np.array(out)


def test_every_catalog_udf_is_in_the_matrix(world: World) -> None:
    """Runs after the class (file order): a new UDF must join the matrix."""
    if not world.used:
        pytest.skip("the matrix did not run (selected out)")
    assert world.used == set(BY_NAME), sorted(set(BY_NAME) - world.used)
    assert len(CATALOG) == len(BY_NAME)
