"""DataFusion tensor UDFs typed per query: the SQL reader, the contexts, threads, views, the loader.

The matrix of every UDF on every column type is in test_udf_matrix.py; this
file covers how the types are found and what stays stable around them.
"""

from __future__ import annotations

import threading
from typing import Any

import datafusion
import duckdb
import numpy as np
import pyarrow as pa
import pytest

import tensorhouse as th
from tensorhouse.udfs import datafusion as udf_df
from tensorhouse.udfs import routing
from tensorhouse.udfs.kernels.tensors import IMAGE, RAGGED_F64

MASK = pa.list_(pa.list_(pa.list_(pa.uint8(), 3), 7), 6)
EMB = pa.list_(pa.float32(), 4)
BOXES = pa.list_(pa.list_(pa.float32(), 4))
SCHEMAS = {
    "scans": pa.schema([("id", pa.int64()), ("mask", MASK), ("emb", EMB), ("image", pa.binary())]),
    "pets": pa.schema([("id", pa.int64()), ("mask", EMB), ("boxes", BOXES)]),
}


def route(sql: str) -> routing.Routing:
    return routing.route(sql, SCHEMAS.get, defaults=udf_df.DEFAULT_TYPES)


def sigs(r: routing.Routing) -> dict[str, list[pa.DataType]]:
    return {c.name: list(c.arg_types) for c in r.calls}


def test_columns_are_typed_through_ctes_subqueries_joins_and_aliases() -> None:
    r = route(
        "WITH s AS (SELECT mask AS m FROM scans WHERE id > 1) "
        "SELECT tensor_max(x.m), tensor_min(p.mask), tensor_sum(q.mm) "
        "FROM s AS x, pets AS p, (SELECT mask AS mm FROM scans) q"
    )
    assert r.sql.startswith("WITH s AS")  # the text is untouched
    assert sigs(r) == {"tensor_max": [MASK], "tensor_min": [EMB], "tensor_sum": [MASK]}


def test_udf_results_indexing_and_literals_have_their_types() -> None:
    r = route(
        "SELECT tensor_mean(decode_image(image)), tensor_std(tensor_slice(scans.mask, '[0]')), "
        "box_iou(boxes[1], [0, 0, 1, 1], 'xywh'), cosine_similarity([[1.0]], [1, 2]) FROM scans, pets"
    )
    s = sigs(r)
    assert s["tensor_mean"] == [IMAGE] and s["decode_image"] == [pa.binary()]
    assert s["tensor_std"] == [RAGGED_F64] and s["tensor_slice"] == [MASK, pa.string()]
    assert s["box_iou"] == [pa.list_(pa.float32(), 4), pa.list_(pa.float64()), pa.string()]
    assert s["cosine_similarity"] == [pa.list_(pa.list_(pa.float64())), pa.list_(pa.float64())]


def test_one_function_on_two_types_renames_only_the_later_calls() -> None:
    sql = "SELECT tensor_sum(s.mask) + 1, TENSOR_SUM (p.mask), tensor_sum(s.mask) FROM scans s, pets p"
    r = route(sql)
    assert r.sql == sql.replace("TENSOR_SUM (", "tensor_sum__2 (")
    assert sigs(r) == {"tensor_sum": [MASK], "tensor_sum__2": [EMB]}


def test_what_cannot_be_read_keeps_the_defaults_or_the_text() -> None:
    assert route("SELECT 'tensor_sum(mask)' AS s FROM scans").calls == ()  # a string, not a call
    assert route("SELECT 1").calls == ()
    bad = "SELECT tensor_sum(mask FROM scans"
    assert route(bad) == routing.Routing(bad, ())
    unknown = route("SELECT tensor_sum(m), tensor_sum(CASE WHEN true THEN m END) FROM nowhere")
    assert sigs(unknown) == {"tensor_sum": [udf_df.DEFAULT_TYPES["tensor"]]}
    wrong_count = route("SELECT tensor_sum(mask, mask) FROM scans")
    assert wrong_count.calls == ()  # the UDF reports the count itself


# -- DataFusion -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def ds() -> th.Dataset:
    rng = np.random.default_rng(3)
    d = th.create(
        "memory://udf-routing",
        {
            "id": "int64",
            "mask": th.Tensor("uint8", (6, 7, 3)),
            "depth": th.Tensor("float32", (None, None)),
            "emb": th.Embedding(4),
            "label": "int32",
        },
    )
    d.append(
        {
            "id": list(range(12)),
            "mask": rng.integers(0, 255, (12, 6, 7, 3), dtype=np.uint8),
            "depth": [rng.normal(size=(1 + i % 3, 2)).astype("float32") for i in range(12)],
            "emb": rng.normal(size=(12, 4)).astype("float32"),
            "label": [i % 3 for i in range(12)],
        }
    )
    return d


def _np(ds: th.Dataset, column: str) -> list[np.ndarray]:
    con = duckdb.connect()
    th.duckdb.register(con, "x", ds)
    return [
        np.asarray(v["data"] if isinstance(v, dict) else v, np.float64)
        for v in con.sql(f"SELECT {column} FROM x ORDER BY id")
        .to_arrow_table()
        .column(0)
        .to_pylist()
    ]


def sums(ds: th.Dataset, column: str) -> list[float]:
    return [float(np.sum(np.asarray(a, np.float64))) for a in _np(ds, column)]


def test_plain_context_through_th_datafusion_sql(ds: th.Dataset) -> None:
    ctx = datafusion.SessionContext()
    th.datafusion.register(ctx, "scans", ds)
    th.udfs.register(ctx)
    with pytest.raises(Exception, match="Failed to coerce arguments"):  # plain ctx.sql: one type
        ctx.sql("SELECT tensor_sum(mask) FROM scans")
    got = th.datafusion.sql(
        ctx,
        "SELECT tensor_sum(mask) AS m, tensor_sum(depth), tensor_sum(emb) AS e FROM scans ORDER BY id",
    ).to_pydict()
    assert list(got) == ["m", "tensor_sum(scans.depth)", "e"]  # as the user wrote it: no __2
    assert np.allclose(got["m"], sums(ds, "mask"))
    assert np.allclose(got["tensor_sum(scans.depth)"], sums(ds, "depth"))
    assert np.allclose(got["e"], sums(ds, "emb"))


def test_types_keyword_still_works_with_plain_sql(ds: th.Dataset) -> None:
    ctx = datafusion.SessionContext()
    th.datafusion.register(ctx, "scans", ds)
    udf_df.register(ctx, types={"tensor": ctx.table("scans").schema().field("mask").type})
    got = ctx.sql("SELECT tensor_sum(mask) AS s FROM scans ORDER BY id").to_pydict()["s"]
    assert np.allclose(got, sums(ds, "mask"))


def test_earlier_dataframes_and_views_keep_their_signatures(ds: th.Dataset) -> None:
    ctx = th.datafusion.context()
    th.datafusion.register(ctx, "scans", ds)
    first = ctx.sql("SELECT tensor_max(mask) AS x FROM scans ORDER BY id")
    ctx.sql("CREATE VIEW deep AS SELECT id, tensor_max(depth) AS x FROM scans").collect()
    ctx.sql("SELECT tensor_max(emb) FROM scans").collect()  # re-registers tensor_max for FLOAT[4]
    assert np.allclose(first.to_pydict()["x"], [a.max() for a in _np(ds, "mask")])
    deep = ctx.sql("SELECT x FROM deep ORDER BY id").to_pydict()["x"]
    assert np.allclose(deep, [a.max() for a in _np(ds, "depth")])


def test_threads_querying_different_types_at_once(ds: th.Dataset) -> None:
    ctx = th.datafusion.context()
    th.datafusion.register(ctx, "scans", ds)
    want = {c: sums(ds, c) for c in ("mask", "depth", "emb")}
    errors: list[BaseException] = []

    def work(column: str) -> None:
        try:
            for _ in range(8):
                got = ctx.sql(
                    f"SELECT tensor_sum({column}) AS s FROM scans ORDER BY id"
                ).to_pydict()
                assert np.allclose(got["s"], want[column]), column
        except BaseException as err:  # re-raised in the main thread
            errors.append(err)

    threads = [threading.Thread(target=work, args=(c,)) for c in want for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors[0]


def test_the_loader_replans_a_query_with_tensor_udfs(ds: th.Dataset) -> None:
    ctx = th.datafusion.context()
    th.datafusion.register(ctx, "scans", ds)
    limit = float(np.median(sums(ds, "mask")))
    q = ctx.sql(f"SELECT mask, label, id FROM scans WHERE tensor_sum(mask) > {limit}")
    ctx.sql("SELECT tensor_sum(emb) FROM scans").collect()  # the name now takes FLOAT[4]
    batches = list(th.loader(q, batch_size=4, format="numpy", reuse_buffers=False))
    ids = np.concatenate([b["id"] for b in batches]).tolist()
    want = [i for i, s in enumerate(sums(ds, "mask")) if s > limit]
    assert sorted(ids) == want
    masks = np.concatenate([b["mask"] for b in batches])
    assert masks.shape == (len(want), 6, 7, 3)


def test_context_is_a_session_context_with_everything_installed(ds: th.Dataset) -> None:
    ctx: Any = th.datafusion.context()
    assert isinstance(ctx, datafusion.SessionContext)
    assert "tensor_slice" in ctx.udfs()
    th.datafusion.register(ctx, "scans", ds)
    n = ctx.sql(f"SELECT count(*) AS n FROM tensorhouse('{ds.uri}')").to_pydict()["n"]
    assert n == [12]


@pytest.mark.parametrize("engine", ["duckdb", "datafusion"])
def test_cli_sql_has_the_tensor_udfs(ds: th.Dataset, engine: str) -> None:
    from click.testing import CliRunner

    from tensorhouse.cli import cli

    query = (
        "SELECT id, tensor_sum(mask) AS s, tensor_size(depth) AS n FROM scans ORDER BY id LIMIT 2"
    )
    out = CliRunner().invoke(cli, ["sql", query, "-d", f"scans={ds.uri}", "--engine", engine])
    assert out.exit_code == 0, out.output
    rows = [line.split() for line in out.output.splitlines()[2:4]]
    sizes = [a.size for a in _np(ds, "depth")]
    assert rows == [[str(i), f"{sums(ds, 'mask')[i]:g}", str(sizes[i])] for i in range(2)]


@pytest.mark.parametrize("engine", ["duckdb", "datafusion"])
def test_a_wrong_column_type_gets_our_message_in_both_engines(engine: str) -> None:
    ds = th.create(
        f"memory://udf-routing-text-{engine}",
        {"id": "int64", "name": th.Text(), "photo": th.Binary()},
    )
    ds.append({"id": [1], "name": ["cat"], "photo": [b"not an image"]})
    if engine == "duckdb":
        con = duckdb.connect()
        th.udfs.register(con)
        th.duckdb.register(con, "t", ds)
        run: Any = lambda q: con.sql(q).fetchall()  # noqa: E731
    else:
        ctx = th.datafusion.context()
        th.datafusion.register(ctx, "t", ds)
        run = lambda q: ctx.sql(q).collect()  # noqa: E731
    with pytest.raises(Exception, match=r"tensor_sum.*expected a tensor"):
        run("SELECT tensor_sum(name) FROM t")
    with pytest.raises(Exception, match=r"tensor_sum.*decode images with decode_image"):
        run("SELECT tensor_sum(photo) FROM t")


def test_the_same_text_over_a_table_whose_types_changed_is_read_again(ds: th.Dataset) -> None:
    ctx = th.datafusion.context()
    th.datafusion.register(ctx, "scans", ds)
    q = "SELECT tensor_sum(mask) AS s FROM scans ORDER BY id"
    assert np.allclose(ctx.sql(q).to_pydict()["s"], sums(ds, "mask"))
    other = th.create(
        "memory://udf-routing-retyped", {"id": "int64", "mask": th.Tensor("float64", (None,))}
    )
    other.append({"id": [0, 1], "mask": [np.array([0.5, 1.0]), np.array([2.0])]})
    th.datafusion.register(ctx, "scans", other)  # same name, same column, another type
    assert ctx.sql(q).to_pydict()["s"] == [1.5, 2.0]
    assert routing.route(q, SCHEMAS.get, defaults=udf_df.DEFAULT_TYPES).calls[0].arg_types == (
        MASK,
    )


def test_explain_and_identifier_case_are_routed(ds: th.Dataset) -> None:
    ctx = th.datafusion.context()
    th.datafusion.register(ctx, "Scans", ds)  # DataFusion folds it to scans, as for a native table
    want = sums(ds, "mask")
    for q in (
        "SELECT tensor_sum(MASK) AS s FROM SCANS",
        'SELECT tensor_sum("mask") AS s FROM "scans"',
    ):
        assert np.allclose(ctx.sql(f"{q} ORDER BY id").to_pydict()["s"], want), q
    plan = ctx.sql("EXPLAIN ANALYZE SELECT tensor_sum(mask) FROM scans").to_pydict()
    assert "tensor_sum" in str(plan)
    r = route("explain verbose SELECT tensor_sum(mask) FROM scans")
    assert r.sql.startswith("explain verbose SELECT") and sigs(r) == {"tensor_sum": [MASK]}


def test_a_mixed_case_table_name_registers_as_a_native_table_would(ds: th.Dataset) -> None:
    ctx = datafusion.SessionContext()
    th.datafusion.register(ctx, "T", ds)  # failed before: the quoted companion kept its capital
    ctx.register_record_batches("N", [[pa.record_batch({"id": [1]})]])
    for table, native in (("T", "N"), ("t", "n")):  # both fold to lower case
        assert ctx.sql(f"SELECT count(*) AS n FROM {table}").to_pydict() == {"n": [12]}, table
        assert ctx.sql(f"SELECT count(*) AS n FROM {native}").to_pydict() == {"n": [1]}, native


def test_columns_of_the_time_travel_table_function_are_typed(ds: th.Dataset) -> None:
    ctx = th.datafusion.context()
    q = f"SELECT t.id, tensor_sum(t.mask) AS s, tensor_size(depth) AS n FROM tensorhouse('{ds.uri}', 1) AS t ORDER BY id"
    got = ctx.sql(q).to_pydict()
    assert got["id"] == list(range(12))
    assert np.allclose(got["s"], sums(ds, "mask"))
    assert got["n"] == [a.size for a in _np(ds, "depth")]
