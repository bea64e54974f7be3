"""The Arrow dataset the engines scan: projection, exact filters, statistics pruning, laziness, row ids."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sql_fixtures import counted, make_demo, make_float16

import tensorhouse as th
from tensorhouse.connector.arrow_dataset import TensorhouseArrowDataset, arrow_dataset
from tensorhouse.connector.filters import referenced_columns
from tensorhouse.format.dataset import Dataset
from tensorhouse.types import ARROW_METADATA_KEY


def same(got: pa.Table, want: pa.Table) -> bool:
    """Tables equal in schema and values, NaN equal to NaN (``Table.equals`` says NaN != NaN)."""

    def values(t: pa.Table) -> dict[str, list[Any]]:
        return {
            c: ["nan" if isinstance(v, float) and v != v else v for v in t.column(c).to_pylist()]
            for c in t.column_names
        }

    return got.schema.equals(want.schema) and values(got) == values(want)


@pytest.fixture(scope="module")
def demo(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return make_demo(tmp_path_factory.mktemp("demo"))


@pytest.fixture(scope="module")
def numbers() -> Dataset:
    """4 fragments x 500 rows of scalars, 128-row chunks, with nulls and NaN in places."""
    ds = th.create(
        "memory://connector-numbers",
        {"a": "int64", "b": "float64", "c": "int32", "img": th.Binary()},
        chunk_bytes=1024,
    )
    for f in range(4):
        a = np.arange(f * 500, (f + 1) * 500)
        b = (a / 10.0).astype(np.float64)
        b_list: list[Any] = list(b)
        if f == 1:
            b_list[10] = float("nan")
        if f == 2:
            b_list[20:30] = [None] * 10
        c_list: list[Any] = [int(x % 7) for x in a]
        if f == 3:
            c_list = [None] * 500  # a chunk range of nulls only
        ds.append({"a": a, "b": b_list, "c": c_list, "img": [bytes([x % 256]) * 64 for x in a]})
    return ds


@pytest.fixture(scope="module")
def numbers_table(numbers: Dataset) -> pa.Table:
    return TensorhouseArrowDataset(numbers, rowid=True).to_table()


# -- schema and projection --------------------------------------------------------------
def test_schema_puts_rowid_first_and_carries_types(demo: Any) -> None:
    t = arrow_dataset(demo.uri, rowid=True)
    assert t.schema.names == ["_rowid", *th.open(demo.uri).columns]
    assert t.schema.field("_rowid").type == pa.int64()
    meta = t.schema.field("image").metadata
    assert th.types.ColumnType.from_dict(
        __import__("json").loads(meta[ARROW_METADATA_KEY])
    ) == th.Image("jpeg")
    assert arrow_dataset(demo.uri, rowid=False).schema.names == th.open(demo.uri).columns
    assert arrow_dataset(demo.uri).schema.names == th.open(demo.uri).columns  # row ids are opt-in


def test_float16_columns_are_widened(tmp_path: Path) -> None:
    vals = make_float16(str(tmp_path / "f16"))
    t = arrow_dataset(str(tmp_path / "f16"))
    assert t.schema.field("h").type == pa.float32()
    assert t.schema.field("emb").type == pa.list_(pa.float32(), 4)
    assert t.schema.field("rag").type.field("data").type.value_type == pa.float32()
    table = t.to_table()
    assert table.schema.equals(t.schema)
    np.testing.assert_array_equal(table.column("h").to_numpy(), vals["h"].astype(np.float32))
    out = th.to_numpy(table)
    np.testing.assert_array_equal(out["emb"], vals["emb"].astype(np.float32))
    for got, want in zip(out["rag"], vals["rag"], strict=True):
        np.testing.assert_array_equal(got, want.astype(np.float32))


def test_projection_reads_only_the_named_columns(demo: Any) -> None:
    ds, store = counted(th.open(demo.uri))
    t = TensorhouseArrowDataset(ds, rowid=True)
    table = t.to_table(columns=["label"])
    assert table.column_names == ["label"] and table.num_rows == 180
    assert set(store.reads) == {"label", "_deletions"}
    store.reset()
    assert t.scanner(columns=["_rowid"]).count_rows() == 180
    assert set(store.reads) <= {"_deletions"}  # row ids cost no chunk reads


def test_filter_columns_are_read_but_not_returned(demo: Any) -> None:
    ds, store = counted(th.open(demo.uri))
    table = TensorhouseArrowDataset(ds, rowid=True).to_table(
        columns=["label"], filter=pc.field("id") < 10
    )
    assert table.column_names == ["label"] and table.num_rows == 9
    assert set(store.reads) - {"_deletions"} == {"label", "id"}


def test_unknown_columns_and_filters_name_the_column(demo: Any) -> None:
    t = arrow_dataset(demo.uri, rowid=True)
    with pytest.raises(th.SchemaError, match="nope"):
        t.scanner(columns=["label", "nope"])
    with pytest.raises(th.SchemaError, match="unknown column 'ghost'"):
        t.scanner(columns=["label"], filter=pc.field("ghost") > 1)
    with pytest.raises(th.SchemaError, match="cannot evaluate filter"):
        t.scanner(filter=pc.field("image") > 3)
    with pytest.raises(th.SchemaError, match="rowid=True"):
        arrow_dataset(demo.uri, rowid=False).scanner(columns=["_rowid"])
    with pytest.raises(th.UnsupportedError):
        t.scanner(columns={"x": pc.field("id")})  # type: ignore[arg-type]


def test_referenced_columns() -> None:
    schema = pa.schema([("a", pa.int64()), ("ab", pa.int64()), ("b", pa.string())])
    assert referenced_columns(pc.field("ab") > 1, schema) == ["ab"]
    assert referenced_columns((pc.field("a") > 1) | (pc.field("b") == "ab"), schema) == ["a", "b"]
    assert referenced_columns(pc.scalar(True), schema) == []


# -- exact filters and pruning --------------------------------------------------------------
FILTERS = [
    pc.field("a") < 100,
    pc.field("a") == 1234,
    (pc.field("a") >= 600) & (pc.field("a") <= 700),
    (pc.field("a") < 50) | (pc.field("a") > 1950),
    pc.field("a").isin([3, 999, 1500]),
    ~(pc.field("a") < 1990),
    pc.field("b") > 150.0,
    pc.field("b") < 3.0,
    pc.field("b").is_null(),
    pc.field("c").is_null(),
    pc.field("c") == 3,
    (pc.field("c") == 3) & (pc.field("a") < 400),
    pc.field("a") != 5,
    pc.field("_rowid") == ((2 << 32) | 7),
    pc.field("img") == b"\x05" * 64,
]


@pytest.mark.parametrize("expr", FILTERS, ids=[str(f) for f in FILTERS])
def test_filters_are_exact(numbers: Dataset, numbers_table: pa.Table, expr: pc.Expression) -> None:
    got = TensorhouseArrowDataset(numbers, rowid=True).to_table(filter=expr)
    want = numbers_table.filter(expr)
    assert same(got, want)


def test_statistics_skip_chunks_and_fragments(numbers: Dataset) -> None:
    ds, store = counted(numbers)
    t = TensorhouseArrowDataset(ds, rowid=True)
    sc = t.scanner(columns=["a"], filter=pc.field("a") < 100)
    first = int(ds.reader.index("a").starts[1])  # 125: a fragment's row groups are equal
    assert first >= 100 and sc.ranges == [(0, first)]
    assert sc.to_table().num_rows == 100
    assert store.reads["a"] == 1  # the first chunk of 16; no prefetch past the pruned range
    assert [(f.start, f.stop) for f in t.get_fragments(pc.field("a") >= 1600)] == [(1500, 2000)]
    assert [f.ranges for f in t.get_fragments(pc.field("a") > 10_000)] == [
        []
    ]  # one empty partition, none read
    # Only nulls in fragment 3's c: IS NULL keeps it, a comparison drops it.
    assert [f.start for f in t.get_fragments(pc.field("c") == 3)] == [0, 500, 1000]
    assert 1500 in [f.start for f in t.get_fragments(pc.field("c").is_null())]
    # Row ids prune by fragment.
    assert [f.start for f in t.get_fragments(pc.field("_rowid") == (2 << 32) | 7)] == [1000]


def test_nan_chunks_are_kept_where_arrow_may_select_nan(
    numbers: Dataset, numbers_table: pa.Table
) -> None:
    """Min/max leave NaN out; Arrow compares NaN as FALSE (``!=``: TRUE), so its range is kept
    exactly when a NaN row may match."""
    t = TensorhouseArrowDataset(numbers, rowid=True)
    cases = [
        (pc.field("b") > 1e9, False),
        (~(pc.field("b") <= 1e9), True),
        (pc.field("b") != 1.0, True),
        (pc.field("b").is_nan(), True),
    ]
    for expr, kept in cases:
        ranges = t.scanner(filter=expr).ranges
        assert any(a <= 510 < b for a, b in ranges) == kept, expr  # the NaN row is at 510
        assert same(t.to_table(filter=expr), numbers_table.filter(expr))


ops = st.sampled_from(["<", "<=", ">", ">=", "==", "!="])


@st.composite
def predicates(draw: st.DrawFn, depth: int = 0) -> pc.Expression:
    kind = draw(
        st.sampled_from(
            ["cmp", "cmp", "in", "null", "and", "or", "not"] if depth < 2 else ["cmp", "in", "null"]
        )
    )
    col = draw(st.sampled_from(["a", "b", "c"]))
    if kind == "cmp":
        op = draw(ops)
        v = (
            draw(st.integers(-10, 2010))
            if col != "b"
            else draw(st.floats(-1, 201, allow_nan=False))
        )
        f = pc.field(col)
        return {"<": f < v, "<=": f <= v, ">": f > v, ">=": f >= v, "==": f == v, "!=": f != v}[op]
    if kind == "in":
        return pc.field(col).isin(draw(st.lists(st.integers(-5, 2005), min_size=1, max_size=4)))
    if kind == "null":
        return pc.field(col).is_null() if draw(st.booleans()) else pc.field(col).is_valid()
    if kind == "not":
        return ~draw(predicates(depth + 1))
    left, right = draw(predicates(depth + 1)), draw(predicates(depth + 1))
    return left & right if kind == "and" else left | right


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(expr=predicates())
def test_pruned_scans_match_a_full_filter(
    numbers: Dataset, numbers_table: pa.Table, expr: pc.Expression
) -> None:
    t = TensorhouseArrowDataset(numbers, rowid=True, fragment_rows=300)
    want = numbers_table.filter(expr)
    assert same(t.to_table(filter=expr), want)
    via_fragments = [f.scanner(t.schema, filter=expr).to_table() for f in t.get_fragments(expr)]
    got = pa.concat_tables(via_fragments) if via_fragments else t.schema.empty_table()
    assert same(got, want)


# -- laziness, fragments, other methods ---------------------------------------------------
def test_reader_is_lazy(numbers: Dataset) -> None:
    ds, store = counted(numbers)
    reader = (
        TensorhouseArrowDataset(ds, rowid=True).scanner(columns=["a"], batch_size=100).to_reader()
    )
    first = reader.read_next_batch()
    assert first.num_rows == 100
    assert store.reads["a"] <= 2  # the first chunk, maybe the prefetched next one: not 16


def test_fragments_split_rows_and_never_cross_tensorhouse_fragments(numbers: Dataset) -> None:
    t = TensorhouseArrowDataset(numbers, rowid=True, fragment_rows=300)
    frags = t.get_fragments()
    assert [(f.start, f.stop) for f in frags] == [
        (0, 300),
        (300, 500),
        (500, 800),
        (800, 1000),
        (1000, 1300),
        (1300, 1500),
        (1500, 1800),
        (1800, 2000),
    ]
    assert sum(f.count_rows() for f in frags) == 2000
    assert frags[1].to_table(columns=["a"]).column("a").to_pylist() == list(range(300, 500))
    # DataFusion's call: dataset schema first, 8,192-row batches asked (raised to 65,536).
    batches = list(
        frags[0].scanner(t.schema, columns=[], filter=None, batch_size=8192).to_batches()
    )
    assert sum(b.num_rows for b in batches) == 300 and all(b.num_columns == 0 for b in batches)


def test_count_head_take_filter(numbers: Dataset, numbers_table: pa.Table) -> None:
    t = TensorhouseArrowDataset(numbers, rowid=True)
    assert t.count_rows() == 2000
    assert t.count_rows(filter=pc.field("a") < 10) == 10
    assert t.head(3, columns=["a"]).column("a").to_pylist() == [0, 1, 2]
    assert t.take([5, 1999, 0], columns=["a"]).column("a").to_pylist() == [5, 1999, 0]
    small = t.filter(pc.field("a") < 20)
    assert small.count_rows() == 20
    assert small.filter(pc.field("a") >= 15).to_table(columns=["a"]).column("a").to_pylist() == [
        15,
        16,
        17,
        18,
        19,
    ]
    assert sum(b.num_rows for b in t.to_batches(columns=["a"], batch_size=512)) == 2000
    for method in ("join", "join_asof", "sort_by", "replace_schema"):
        with pytest.raises(th.UnsupportedError):
            getattr(t, method)(None)


def test_deleted_rows_are_not_scanned(demo: Any) -> None:
    t = arrow_dataset(demo.uri, rowid=True)
    table = t.to_table(columns=["_rowid", "id"])
    assert table.column("id").to_pylist() == demo.rows()["id"].tolist()
    assert table.column("_rowid").to_pylist() == demo.rows()["_rowid"].tolist()
    assert t.count_rows() == 180
    assert arrow_dataset(demo.uri, version=2).count_rows() == 200


def test_refresh_follows_new_versions_and_refuses_schema_changes(tmp_path: Path) -> None:
    uri = str(tmp_path / "live")
    ds = th.create(uri, {"x": "int64"})
    ds.append({"x": [1, 2]})
    pinned, live = arrow_dataset(uri), arrow_dataset(uri, refresh=True)
    ds.append({"x": [3]})
    assert pinned.count_rows() == 2 and live.count_rows() == 3
    assert live.version == 2
    ds.add_column("y", "int32")
    with pytest.raises(th.SchemaError, match="register the table again"):
        live.scanner()
    with pytest.raises(ValueError, match="refresh"):
        arrow_dataset(uri, version=1, refresh=True)


def test_bad_sources(tmp_path: Path, demo: Any) -> None:
    with pytest.raises(th.DatasetNotFoundError):
        arrow_dataset(str(tmp_path / "missing"))
    with pytest.raises(th.VersionNotFoundError):
        arrow_dataset(demo.uri, version=99)
    with pytest.raises(TypeError):
        arrow_dataset(42)  # type: ignore[arg-type]
    # Picklable since issue 13 (Ray tasks, spawn workers): by URI and version, reopened on first use.
    again = __import__("pickle").loads(__import__("pickle").dumps(arrow_dataset(demo.uri)))
    assert again.count_rows() == arrow_dataset(demo.uri).count_rows()


def test_to_numpy_shapes_nulls_and_errors() -> None:
    emb = pa.FixedSizeListArray.from_arrays(
        pa.array(np.arange(12, dtype=np.float32)), 3, mask=pa.array([False, True, False, False])
    )
    table = pa.table(
        {
            "i": pa.array([1, None, 3, 4], pa.int32()),
            "f": pa.array([1.0, None, 3.0, 4.0], pa.float32()),
            "emb": emb,
            "b": pa.array([b"x", None, b"", b"z"]),
            "s": ["a", None, "c", "d"],
        }
    )
    out = th.to_numpy(table)
    assert out["i"].dtype == np.int32 and out["i"].tolist() == [1, 0, 3, 4]
    assert np.isnan(out["f"][1]) and out["f"].dtype == np.float32
    assert out["emb"].shape == (4, 3) and out["emb"][1].tolist() == [0, 0, 0]
    assert out["b"] == [b"x", None, b"", b"z"] and out["s"] == ["a", None, "c", "d"]
    chunked = pa.Table.from_batches(table.to_batches(max_chunksize=2))
    np.testing.assert_array_equal(th.to_numpy(chunked, ["emb"])["emb"], out["emb"])
    with pytest.raises(th.SchemaError, match="nope"):
        th.to_numpy(table, ["nope"])
    with pytest.raises(th.SchemaError, match="duplicate"):
        th.to_numpy(pa.table([pa.array([1]), pa.array([2])], names=["a", "a"]))
    with pytest.raises(TypeError):
        th.to_numpy(42)
    plain = pa.table(
        {"emb": pa.FixedSizeListArray.from_arrays(pa.array(np.arange(6, dtype=np.float32)), 3)}
    )
    view = th.to_numpy(plain)["emb"]
    assert not view.flags.writeable  # a zero-copy view of the Arrow buffer


def test_partitions_across_fragments(numbers: Dataset, numbers_table: pa.Table) -> None:
    """``across_fragments``: partitions of ``fragment_rows`` rows whatever the appends, still pruned
    by statistics; each partition reads exactly its rows, in DataFusion too, and survives pickling."""
    import pickle

    import datafusion

    t = TensorhouseArrowDataset(numbers, rowid=True, fragment_rows=800, across_fragments=True)
    assert [(f.start, f.stop) for f in t.get_fragments()] == [(0, 800), (800, 1600), (1600, 2000)]
    assert [(f.start, f.stop) for f in t.get_fragments(pc.field("a") >= 1700)] == [(1600, 2000)]
    expr = (pc.field("c") == 1) & (pc.field("a") > 450)
    parts = [
        f.scanner(columns=["_rowid", "a", "c"], filter=expr).to_table()
        for f in t.get_fragments(expr)
    ]
    got = pa.concat_tables(parts)
    assert got.equals(numbers_table.select(["_rowid", "a", "c"]).filter(expr))
    again = pickle.loads(pickle.dumps(t))
    assert [(f.start, f.stop) for f in again.get_fragments()] == [
        (0, 800),
        (800, 1600),
        (1600, 2000),
    ]
    ctx = datafusion.SessionContext()
    ctx.register_dataset("t", t)
    out = ctx.sql("SELECT count(*) AS n, sum(a) AS s FROM t WHERE c = 3").to_pydict()
    want = numbers_table.filter(pc.field("c") == 3)
    assert out == {"n": [want.num_rows], "s": [pc.sum(want.column("a")).as_py()]}
