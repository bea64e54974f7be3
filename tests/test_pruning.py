"""Filter trees and statistics pruning: the contract with Arrow's expression layout, and pruning that never drops a match.

The contract tests pin how pyarrow serializes every node kind the engines
push (a new pyarrow that changes the layout fails here, loudly). The
property tests draw random data of every scalar type the format stores and
random predicates, write real datasets (small chunks, several fragments),
and check that pruning keeps every range holding a matching row and that
the pushed-down scan equals Arrow's own ``Table.filter``.
"""

from __future__ import annotations

import datetime as dt
import decimal
import math
import uuid
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tensorhouse as th
from tensorhouse.connector.arrow_dataset import TensorhouseArrowDataset
from tensorhouse.connector.filter_tree import (
    Call,
    Field,
    Literal,
    UnreadableExpression,
    from_arrow,
    unknown_columns,
)
from tensorhouse.connector.filters import check_filter, referenced_columns
from tensorhouse.connector.pruning import ColumnStats, plan_ranges


# -- the contract with Arrow's serialized expressions -----------------------------
def lit(v: Any, t: pa.DataType | None = None) -> Literal:
    return Literal(pa.scalar(v, type=t))


def test_every_node_kind_reads_back_as_its_tree() -> None:
    a, s = Field(("a",)), Field(("s",))
    ts = pa.scalar(dt.datetime(2024, 1, 1, tzinfo=dt.UTC), pa.timestamp("ns", tz="UTC"))
    cases: list[tuple[pc.Expression, Any]] = [
        (pc.field("a") < 1, Call("less", (a, lit(1)))),
        (pc.field("a") <= 1, Call("less_equal", (a, lit(1)))),
        (pc.field("a") > 1.5, Call("greater", (a, lit(1.5)))),
        (pc.field("a") >= 1, Call("greater_equal", (a, lit(1)))),
        (pc.field("a") == 1, Call("equal", (a, lit(1)))),
        (pc.field("a") != 1, Call("not_equal", (a, lit(1)))),
        (
            (pc.field("a") > 1) & (pc.field("s") == "x"),
            Call("and_kleene", (Call("greater", (a, lit(1))), Call("equal", (s, lit("x"))))),
        ),
        (
            (pc.field("a") > 1) | pc.field("b"),
            Call("or_kleene", (Call("greater", (a, lit(1))), Field(("b",)))),
        ),
        (~pc.field("b"), Call("invert", (Field(("b",)),))),
        (pc.field("a") < ts, Call("less", (a, Literal(ts)))),
        (pc.field(("st", "x")) == 2, Call("equal", (Field(("st", "x")), lit(2)))),
        (pc.scalar(True), lit(True)),
        (pc.field("a") == pc.scalar(None), Call("equal", (a, Literal(pa.scalar(None))))),
    ]
    for expr, want in cases:
        assert from_arrow(expr) == want, expr
    # Options come back as the struct Arrow wrote; the rules read them by name.
    isin = from_arrow(pc.field("a").isin([1, None]))
    assert isinstance(isin, Call) and isin.function == "is_in" and isin.args == (a,)
    assert isin.option("null_matching_behavior") == 0  # MATCH
    assert isin.options is not None and isin.options["value_set"].values.to_pylist() == [1, None]
    null = from_arrow(pc.field("a").is_null(nan_is_null=True))
    assert isinstance(null, Call) and null.option("nan_is_null") is True
    cast = from_arrow(pc.field("a").cast(pa.float32()) > 1)
    assert isinstance(cast, Call) and isinstance(cast.args[0], Call)
    assert cast.args[0].function == "cast" and cast.args[0].options is not None
    assert cast.args[0].options.type.field("to_type").type == pa.float32()
    duck_in = from_arrow(
        pc.if_else(
            pc.field("a").is_valid(), pc.field("a").isin([1, 2]), pa.scalar(None, pa.bool_())
        )
    )
    assert isinstance(duck_in, Call) and duck_in.function == "if_else" and len(duck_in.args) == 3
    odd = from_arrow(pc.field("a b) == (c") > 1)
    assert odd == Call("greater", (Field(("a b) == (c",)), lit(1)))


def test_unreadable_expressions_read_everything_and_prune_nothing() -> None:
    expr = pc.field(0) > 1  # Arrow serializes only name references
    with pytest.raises(UnreadableExpression):
        from_arrow(expr)
    schema = pa.schema([("a", pa.int64()), ("b", pa.int64())])
    assert referenced_columns(expr, schema) == ["a", "b"]
    stats = ColumnStats(pa.int64(), np.array([0, 10]), [{"null_count": 0, "min": 0, "max": 9}])
    ranges = plan_ranges(
        expr,
        schema,
        {"a": stats},
        start=0,
        stop=10,
        frag_starts=np.array([0, 10]),
        frag_ids=np.array([0]),
    )
    assert ranges == [(0, 10)]


def test_unknown_columns_are_found_by_walking_the_tree() -> None:
    schema = pa.schema([("a", pa.int64()), ("st", pa.struct([("x", pa.int64())]))])
    tree = from_arrow((pc.field("a") > 1) & (pc.field("ghost") == 2) | (pc.field(("st", "y")) > 0))
    assert unknown_columns(tree, schema) == ["ghost", "st.y"]
    with pytest.raises(th.SchemaError, match="unknown column 'ghost' of my table"):
        check_filter(pc.field("ghost") > 1, schema, where="my table")
    with pytest.raises(th.SchemaError, match="cannot evaluate filter"):
        check_filter(pc.field("a") > "text", schema)  # known columns, wrong types: Arrow's words
    with pytest.raises(th.SchemaError, match=r"is a pyarrow\.compute\.Expression"):
        check_filter("a > 1", schema)  # type: ignore[arg-type]


def test_engine_pushdowns_read_back_as_trees(monkeypatch: pytest.MonkeyPatch) -> None:
    """What DuckDB and DataFusion actually push reads as a tree (a new engine version that pushes
    a construct Arrow cannot serialize by name fails here, not silently in the scan)."""
    duckdb = pytest.importorskip("duckdb")
    datafusion = pytest.importorskip("datafusion")
    ds = th.create("memory://pruning-engines", {"i": "int64", "s": "string", "b": "bool"})
    ds.append({"i": [1, 2, None], "s": ["a", "b", None], "b": [True, False, None]})
    seen: list[pc.Expression] = []
    real = TensorhouseArrowDataset.scanner

    def spy(self: Any, **kwargs: Any) -> Any:
        if kwargs.get("filter") is not None:
            seen.append(kwargs["filter"])
        return real(self, **kwargs)

    monkeypatch.setattr(TensorhouseArrowDataset, "scanner", spy)
    queries = [
        "i > 1",
        "i = 1 OR i = 2",
        "i IN (1, 3)",
        "i IS NULL",
        "s = 'a' AND i < 2",
        "i BETWEEN 1 AND 2",
        "i <> 2",
        "b",
        "NOT b",
    ]
    con = duckdb.connect()
    con.register("t", TensorhouseArrowDataset(ds))
    ctx = datafusion.SessionContext()
    ctx.register_dataset("t", TensorhouseArrowDataset(ds))
    for q in queries:
        con.sql(f"SELECT count(*) FROM t WHERE {q}").fetchall()
        ctx.sql(f"SELECT count(*) FROM t WHERE {q}").collect()
    assert len(seen) >= len(queries)
    for expr in seen:
        assert not unknown_columns(from_arrow(expr), TensorhouseArrowDataset(ds).schema), expr


# -- pruning never drops a match -----------------------------------------------------
TOKYO = "Asia/Tokyo"
EPOCH = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


def _ints() -> st.SearchStrategy[Any]:
    return st.one_of(st.none(), st.integers(-50, 50), st.sampled_from([-(2**62), 2**62]))


def _floats() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.floats(-100, 100, width=32),
        st.sampled_from([float("nan"), float("inf"), float("-inf"), -0.0, 0.0]),
    )


def _strings() -> st.SearchStrategy[Any]:
    short = st.text(alphabet="abcé\U0001f600", max_size=4)
    long = st.builds(
        lambda p, n: p + "z" * n, short, st.integers(60, 70)
    )  # past the 64-char stats prefix
    return st.one_of(st.none(), short, long)


def _dates() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.builds(lambda d: dt.date(2020, 1, 1) + dt.timedelta(days=d), st.integers(-40, 40)),
    )


def _timestamps() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(),
        st.builds(lambda s: EPOCH + dt.timedelta(seconds=s), st.integers(-(10**6), 10**6)),
    )


def _decimals() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.none(), st.decimals(min_value=-100, max_value=100, places=2, allow_nan=False)
    )


#: name -> (tensorhouse type, Arrow type of the values, value strategy, literal strategy)
TYPES: dict[str, tuple[str, pa.DataType, Any, Any]] = {
    "int64": (
        "int64",
        pa.int64(),
        _ints(),
        st.one_of(
            st.integers(-60, 60).map(pa.scalar),
            st.integers(-60, 60).map(lambda v: pa.scalar(v, pa.int8())),
            st.floats(-60, 60).map(pa.scalar),  # compared as float64, as Arrow casts
            st.sampled_from([pa.scalar(2**62), pa.scalar(float(2**62)), pa.scalar(2**62 + 1)]),
        ),
    ),
    "int16": (
        "int16",
        pa.int16(),
        st.one_of(st.none(), st.integers(-300, 300)),
        st.one_of(st.integers(-400, 400).map(pa.scalar), st.floats(-400, 400).map(pa.scalar)),
    ),
    "float32": (
        "float32",
        pa.float32(),
        _floats(),
        st.one_of(
            st.floats(-110, 110, width=32).map(lambda v: pa.scalar(v, pa.float32())),
            st.floats(-110, 110).map(pa.scalar),  # float64 literal: the column is cast up
            st.integers(-110, 110).map(pa.scalar),
            st.sampled_from([pa.scalar(float("nan")), pa.scalar(float("inf")), pa.scalar(-0.0)]),
        ),
    ),
    "float64": (
        "float64",
        pa.float64(),
        _floats(),
        st.one_of(
            st.floats(-110, 110).map(pa.scalar),
            st.sampled_from([pa.scalar(float("nan")), pa.scalar(float("-inf")), pa.scalar(0.0)]),
        ),
    ),
    "string": (
        "string",
        pa.string(),
        _strings(),
        _strings().filter(lambda v: v is not None).map(pa.scalar),
    ),
    "date32": (
        "date32",
        pa.date32(),
        _dates(),
        st.one_of(
            _dates().filter(lambda v: v is not None).map(pa.scalar),
            _timestamps()
            .filter(lambda v: v is not None)
            .map(lambda v: pa.scalar(v.replace(tzinfo=None), pa.timestamp("s"))),
        ),
    ),
    "timestamp_tz": (
        f"timestamp[us, tz={TOKYO}]",
        pa.timestamp("us", tz=TOKYO),
        _timestamps(),
        st.one_of(
            _timestamps()
            .filter(lambda v: v is not None)
            .map(lambda v: pa.scalar(v, pa.timestamp("us", tz=TOKYO))),
            _timestamps()
            .filter(lambda v: v is not None)
            .map(lambda v: pa.scalar(v, pa.timestamp("ns", tz=TOKYO))),
            _timestamps()
            .filter(lambda v: v is not None)
            .map(lambda v: pa.scalar(v, pa.timestamp("s", tz=TOKYO))),
        ),
    ),
    "decimal": (
        "decimal(12,2)",
        pa.decimal128(12, 2),
        _decimals(),
        st.one_of(
            _decimals()
            .filter(lambda v: v is not None)
            .map(lambda v: pa.scalar(v, pa.decimal128(12, 2))),
            st.decimals(min_value=-110, max_value=110, places=3, allow_nan=False).map(
                lambda v: pa.scalar(v, pa.decimal128(10, 3))
            ),
            st.integers(-110, 110).map(pa.scalar),
        ),
    ),
}


@st.composite
def predicate(
    draw: st.DrawFn, literal: Any, floating: bool, numeric: bool = False, depth: int = 0
) -> pc.Expression:
    kinds = ["cmp", "cmp", "in", "null", "between"]
    if floating:
        kinds.append("nan")
    if numeric:
        kinds += ["cast", "arith"]
    if depth < 2:
        kinds += ["and", "or", "not", "cmp_y"]
    kind = draw(st.sampled_from(kinds))
    x = pc.field("x")
    if kind in ("cmp", "cmp_y"):
        op = draw(st.sampled_from(["<", "<=", ">", ">=", "==", "!="]))
        v = draw(literal)
        e = {"<": x < v, "<=": x <= v, ">": x > v, ">=": x >= v, "==": x == v, "!=": x != v}[op]
        if kind == "cmp_y":  # a second column, so ranges are cut by both columns' chunks
            e = e & (pc.field("y") < draw(st.integers(0, 400)))
        return e
    if kind == "in":
        values = draw(st.lists(literal, min_size=1, max_size=4))
        try:
            value_set = pa.array([v.as_py() for v in values], type=values[0].type)
        except (
            pa.ArrowInvalid,
            pa.ArrowTypeError,
            TypeError,
            OverflowError,
        ):  # mixed literal types
            value_set = pa.array([values[0].as_py()], type=values[0].type)
        if draw(st.booleans()):
            value_set = pa.concat_arrays([value_set, pa.nulls(1, value_set.type)])
        e = x.isin(value_set)
        return (
            pc.if_else(x.is_valid(), e, pa.scalar(None, pa.bool_())) if draw(st.booleans()) else e
        )
    if kind == "null":
        return draw(st.sampled_from([x.is_null(), x.is_valid(), x.is_null(nan_is_null=True)]))
    if kind == "nan":
        return x.is_nan()
    if kind == "arith":  # x + c, c + x, x - c: unchecked kernels wrap, the bounds must not lie
        c = draw(
            st.sampled_from(
                [pa.scalar(3), pa.scalar(-2.5), pa.scalar(2**62), pa.scalar(32_700, pa.int16())]
            )
        )
        shifted = draw(st.sampled_from([x + c, pc.scalar(c) + x, x - c]))
        op = draw(st.sampled_from(["<", ">=", "=="]))
        v = draw(st.integers(-200, 200))
        return {"<": shifted < v, ">=": shifted >= v, "==": shifted == v}[op]
    if kind == "cast":  # unsafe casts too: a NaN or an overflow becomes some value
        to = draw(st.sampled_from([pa.float64(), pa.int64(), pa.int8(), pa.float32()]))
        return x.cast(to, safe=draw(st.booleans())) > draw(st.integers(-130, 130))
    if kind == "between":
        lo, hi = draw(literal), draw(literal)
        return (x >= lo) & (x <= hi)
    if kind == "not":
        return ~draw(predicate(literal, floating, numeric, depth + 1))
    a, b = (
        draw(predicate(literal, floating, numeric, depth + 1)),
        draw(predicate(literal, floating, numeric, depth + 1)),
    )
    return a & b if kind == "and" else a | b


def _mask(table: pa.Table, expr: pc.Expression) -> np.ndarray | None:
    """Arrow's answer per row (None when Arrow itself refuses the predicate on these types)."""
    try:
        rows = table.filter(expr).column("i").to_pylist()
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError):
        return None
    out = np.zeros(table.num_rows, dtype=bool)
    out[rows] = True
    return out


def _check(name: str, data: st.DataObject) -> None:
    th_type, arrow_type, values, literal = TYPES[name]
    xs = data.draw(st.lists(values, min_size=1, max_size=120), label="x")
    cuts = sorted(data.draw(st.sets(st.integers(1, max(1, len(xs) - 1)), max_size=3), label="cuts"))
    ds = th.create(
        f"memory://prune-{name}-{uuid.uuid4().hex}",
        {"i": "int64", "x": th_type, "y": "int32"},
        chunk_bytes=1024,
    )
    table = pa.table(
        {
            "i": pa.array(range(len(xs)), pa.int64()),
            "x": pa.array(xs, arrow_type),
            "y": pa.array([(k * 7) % 401 for k in range(len(xs))], pa.int32()),
        }
    )
    for a, b in zip([0, *cuts], [*cuts, len(xs)], strict=True):
        if b > a:
            ds.append(table.slice(a, b - a))
    floating = pa.types.is_floating(arrow_type)
    numeric = floating or pa.types.is_integer(arrow_type)
    expr = data.draw(predicate(literal, floating, numeric), label="predicate")
    want = _mask(table, expr)
    if want is None:
        return
    scan = TensorhouseArrowDataset(ds)
    ranges = scan.scanner(filter=expr).ranges
    kept = np.zeros(len(xs), dtype=bool)
    for a, b in ranges:
        kept[a:b] = True
    dropped = np.flatnonzero(want & ~kept)
    assert not len(dropped), f"{expr} dropped matching rows {dropped.tolist()} (ranges {ranges})"
    got = scan.to_table(filter=expr)
    assert got.column("i").to_pylist() == np.flatnonzero(want).tolist(), expr
    via_fragments = [
        f.scanner(scan.schema, filter=expr).to_table() for f in scan.get_fragments(expr)
    ]
    rows = sorted(r for t in via_fragments for r in t.column("i").to_pylist())
    assert rows == np.flatnonzero(want).tolist(), expr


@pytest.mark.parametrize("name", list(TYPES))
@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_pruning_never_drops_a_matching_row(name: str, data: st.DataObject) -> None:
    _check(name, data)


@pytest.mark.slow
@pytest.mark.parametrize("name", list(TYPES))
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_pruning_never_drops_a_matching_row_stress(name: str, data: st.DataObject) -> None:
    _check(name, data)


def test_pruning_skips_what_statistics_rule_out() -> None:
    """The rules are not vacuous: each kind of predicate skips the ranges it can."""
    ds = th.create("memory://pruning-skips", {"x": "float64", "s": "string"}, chunk_bytes=1024)
    for k in range(4):
        xs: list[Any] = [k * 100.0 + j for j in range(100)]
        if k == 2:
            xs[5] = math.nan
        if k == 3:
            xs[7] = None
        ds.append({"x": xs, "s": [f"{k}-{j:03d}" for j in range(100)]})
    scan = TensorhouseArrowDataset(ds)
    x, s = pc.field("x"), pc.field("s")
    cases: list[tuple[pc.Expression, list[tuple[int, int]]]] = [
        (x < 50, [(0, 100)]),  # NaN < 50 is FALSE
        (~(x >= 50), [(0, 100), (200, 300)]),  # NOT (NaN >= 50) is TRUE
        (x.is_null(), [(300, 400)]),
        (x.is_nan(), [(200, 300)]),
        (x.isin([150.0, 320.0]), [(100, 300), (300, 400)]),
        ((s >= "3") | (x == 42.0), [(0, 100), (300, 400)]),
        (
            pc.if_else(x.is_valid(), x.isin([10.0]), pa.scalar(None, pa.bool_())),
            [(0, 100), (200, 300)],
        ),
        (x.cast(pa.int64()) > 350, [(200, 400)]),
        (x + 50.0 < 100, [(0, 100)]),  # NaN + 50 is NaN, NULL + 50 is NULL: neither matches
    ]
    for expr, want in cases:
        merged: list[tuple[int, int]] = []
        for a, b in want:
            merged = (
                [*merged[:-1], (merged[-1][0], b)]
                if merged and merged[-1][1] == a
                else [*merged, (a, b)]
            )
        assert scan.scanner(filter=expr).ranges == merged, expr


def test_decimal_and_timestamp_literals_of_other_types_compare_as_arrow_casts_them() -> None:
    ds = th.create(
        "memory://pruning-casts", {"p": "decimal(12,2)", "t": f"timestamp[us, tz={TOKYO}]"}
    )
    for k in range(3):
        ds.append(
            {
                "p": [decimal.Decimal(k * 10) + decimal.Decimal(j) / 100 for j in range(10)],
                "t": [EPOCH + dt.timedelta(days=k, seconds=j) for j in range(10)],
            }
        )
    scan = TensorhouseArrowDataset(ds)
    cases = [
        (pc.field("p") >= pa.scalar(decimal.Decimal("20.000"), pa.decimal128(10, 3)), [(20, 30)]),
        (pc.field("p") < pa.scalar(decimal.Decimal(10), pa.decimal128(4, 0)), [(0, 10)]),
        (pc.field("p") < 10.05, [(0, 20)]),
        (
            pc.field("t") >= pa.scalar(EPOCH + dt.timedelta(days=2), pa.timestamp("ns", tz=TOKYO)),
            [(20, 30)],
        ),
    ]
    for expr, ranges in cases:
        assert scan.scanner(filter=expr).ranges == ranges, expr


def test_in_casts_its_values_to_the_column_type_as_arrow_does() -> None:
    """Arrow casts an IN list of timestamps to a date column's type: 00:00:01 is that day."""
    ds = th.create("memory://pruning-in-cast", {"d": "date32"})
    ds.append({"d": [dt.date(2020, 1, 1)]})
    ds.append({"d": [dt.date(2020, 1, 3)]})
    value_set = pa.array([dt.datetime(2020, 1, 1, 0, 0, 1)], pa.timestamp("s"))
    expr = pc.field("d").isin(value_set)
    scan = TensorhouseArrowDataset(ds)
    assert scan.scanner(filter=expr).ranges == [(0, 1)]
    assert scan.to_table(filter=expr).num_rows == 1


def test_a_deep_unbalanced_chain_is_read_in_full_not_a_crash() -> None:
    """1,500 ANDs chained one by one nest deeper than Python's stack: no tree, exact result."""
    ds = th.create("memory://pruning-deep", {"x": "int64"})
    ds.append({"x": list(range(100))})
    expr = pc.field("x") >= 0
    for k in range(1500):
        expr = expr & (pc.field("x") != -1 - k)
    scan = TensorhouseArrowDataset(ds)
    assert referenced_columns(expr, scan.schema) == ["x"]
    assert scan.to_table(filter=expr).num_rows == 100
