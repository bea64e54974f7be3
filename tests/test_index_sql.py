"""Vector indexes through the engines: th.sql.nearest on DuckDB and DataFusion, the DataFusion
``nearest(...)`` table function, joins, and the ``tensorhouse index`` CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import datafusion
import duckdb
import numpy as np
import pyarrow as pa
import pytest

import tensorhouse as th
from tensorhouse.cli import cli
from tensorhouse.index import VectorSearchError

DIM = 16


@pytest.fixture
def indexed(tmp_path: Any) -> tuple[th.Dataset, np.ndarray]:
    rng = np.random.default_rng(1)
    centers = rng.standard_normal((20, DIM)).astype(np.float32) * 2
    x = (centers[rng.integers(0, 20, 3000)] + rng.standard_normal((3000, DIM))).astype(np.float32)
    ds = th.create(str(tmp_path / "ds"), {"id": "int64", "grp": "int64", "emb": th.Embedding(DIM)})
    ds.append({"id": np.arange(3000), "grp": np.arange(3000) % 10, "emb": x})
    ds.create_index("emb", metric="cosine", progress=False)
    return ds, x


def engine(kind: str, name: str, ds: th.Dataset, **kw: Any) -> Any:
    if kind == "duckdb":
        con = duckdb.connect()
        th.duckdb.register(con, name, ds, **kw)
        return con
    ctx = datafusion.SessionContext()
    th.datafusion.register(ctx, name, ds, **kw)
    return ctx


@pytest.mark.parametrize("kind", ["duckdb", "datafusion"])
def test_sql_nearest_uses_the_index_and_matches_ds_nearest(
    indexed: tuple[th.Dataset, np.ndarray], kind: str
) -> None:
    ds, x = indexed
    conn = engine(kind, "docs", ds)
    q = x[42] + 0.01
    got = th.sql.nearest(conn, "docs", "emb", q, k=5)
    want = ds.nearest("emb", q, k=5, with_rowid=True)
    # same columns, order and types as the brute-force query of this table
    brute = th.sql.nearest(conn, "docs", "emb", q, k=5, exact=True)
    assert (
        got.column_names == brute.column_names == ["id", "grp", "emb", "score"]
    )  # SELECT *: no _rowid
    assert got.schema.types == brute.schema.types
    assert (
        got.column("id").to_pylist()
        == want.column("id").to_pylist()
        == brute.column("id").to_pylist()
    )
    np.testing.assert_allclose(
        got.column("score").to_numpy(), brute.column("score").to_numpy(), rtol=1e-5
    )
    # the engine's WHERE is applied inside the search
    f = th.sql.nearest(
        conn, "docs", "emb", q, k=10, where="grp = 4 AND id > 100", columns=["id", "grp"]
    )
    assert (
        f.num_rows == 10
        and set(f.column("grp").to_pylist()) == {4}
        and min(f.column("id").to_pylist()) > 100
    )
    fb = th.sql.nearest(
        conn, "docs", "emb", q, k=10, where="grp = 4 AND id > 100", columns=["id"], exact=True
    )
    assert len(set(f.column("id").to_pylist()) & set(fb.column("id").to_pylist())) >= 9
    with pytest.raises(VectorSearchError, match="metric='l2'"):
        th.sql.nearest(conn, "docs", "emb", q, metric="l2")
    assert th.sql.nearest(conn, "docs", "emb", q, k=3, metric="l2", exact=True).num_rows == 3


@pytest.mark.parametrize("kind", ["duckdb", "datafusion"])
def test_sql_nearest_sees_appends_and_deletes(
    indexed: tuple[th.Dataset, np.ndarray], kind: str
) -> None:
    ds, x = indexed
    ds.delete("id = 7")
    ds.append({"id": [5000], "grp": [1], "emb": [x[7] * 2]})
    conn = engine(kind, "docs", ds)
    ids = th.sql.nearest(conn, "docs", "emb", x[7], k=3, columns=["id"]).column("id").to_pylist()
    assert ids[0] == 5000 and 7 not in ids


@pytest.mark.parametrize("kind", ["duckdb", "datafusion"])
def test_result_joins_in_the_engine(indexed: tuple[th.Dataset, np.ndarray], kind: str) -> None:
    ds, x = indexed
    conn = engine(kind, "docs", ds)
    hits = th.sql.nearest(conn, "docs", "emb", x[3], k=4, columns=["id"])
    names = pa.table({"grp": list(range(10)), "gname": [f"g{i}" for i in range(10)]})
    if kind == "duckdb":
        conn.register("hits", hits)
        conn.register("names", names)
        rows = conn.sql(
            "SELECT h.id, n.gname FROM hits h JOIN docs d USING (id) JOIN names n USING (grp) "
            "ORDER BY h.score DESC"
        ).fetchall()
    else:
        conn.from_arrow(hits, name="hits")
        conn.from_arrow(names, name="names")
        rows = [
            tuple(r.values())
            for r in conn.sql(
                "SELECT h.id, n.gname FROM hits h JOIN docs d ON h.id = d.id JOIN names n ON d.grp = n.grp "
                "ORDER BY h.score DESC"
            ).to_pylist()
        ]
    assert rows[0] == (3, "g3") and len(rows) == 4


def test_plain_tables_and_rowid_free_registrations_use_brute_force(
    indexed: tuple[th.Dataset, np.ndarray],
) -> None:
    ds, x = indexed
    con = engine("duckdb", "docs", ds, rowid=False)
    assert th.sql.nearest(con, "docs", "emb", x[9], k=1).column("id").to_pylist() == [9]
    con.register("plain", ds.to_table())
    assert th.sql.nearest(con, "plain", "emb", x[9], k=1).column("id").to_pylist() == [9]


def test_datafusion_table_function(indexed: tuple[th.Dataset, np.ndarray]) -> None:
    ds, x = indexed
    ctx = datafusion.SessionContext()
    th.datafusion.install(ctx)
    q = ", ".join(f"{v:.6f}" for v in x[11])
    got = ctx.sql(f"SELECT id, score FROM nearest('{ds.uri}', 'emb', [{q}], 5)").to_pydict()
    want = ds.nearest("emb", x[11], k=5, columns=["id"])
    assert got["id"] == want.column("id").to_pylist()
    filt = ctx.sql(
        f"SELECT id, grp FROM nearest('{ds.uri}', 'emb', [{q}], 5, 'grp = 2')"
    ).to_pydict()
    assert len(filt["id"]) == 5 and set(filt["grp"]) == {2}
    # time travel: version 1 had no index (brute force), same answer
    old = ctx.sql(f"SELECT id FROM nearest('{ds.uri}', 'emb', [{q}], 5, NULL, 1)").to_pydict()
    assert old["id"][0] == 11
    # joins like any table
    th.datafusion.register(ctx, "docs", ds)
    n = ctx.sql(
        f"SELECT count(*) AS n FROM nearest('{ds.uri}', 'emb', [{q}], 5) h JOIN docs d ON h.id = d.id"
    )
    assert n.to_pydict()["n"] == [5]
    with pytest.raises(Exception, match="query: has 2 values"):
        ctx.sql(f"SELECT * FROM nearest('{ds.uri}', 'emb', [1.0, 2.0], 5)").collect()
    with pytest.raises(Exception, match="k=0"):
        ctx.sql(f"SELECT * FROM nearest('{ds.uri}', 'emb', [{q}], 0)").collect()


def test_cli_index_create_list_drop(indexed: tuple[th.Dataset, np.ndarray]) -> None:
    ds, _ = indexed
    exe = [sys.executable, "-m", "tensorhouse"]
    run = lambda *a: subprocess.run([*exe, *a], capture_output=True, text=True)  # noqa: E731
    r = run(
        "index",
        "create",
        ds.uri,
        "emb",
        "--name",
        "by_l2",
        "--metric",
        "l2",
        "--kind",
        "hnsw",
        "--param",
        "m=8",
    )
    assert r.returncode == 0, r.stderr
    assert "created index 'by_l2'" in r.stdout and "3,000 vectors" in r.stdout
    r = run("index", "list", ds.uri)
    assert (
        r.returncode == 0 and "by_l2" in r.stdout and "emb_idx" in r.stdout and "hnsw" in r.stdout
    )
    r = run("index", "create", ds.uri, "grp")
    assert r.returncode == 1 and r.stderr.startswith("error: column='grp'")
    r = run("index", "create", ds.uri, "emb", "--param", "m")
    assert r.returncode == 2
    r = run("index", "drop", ds.uri, "by_l2")
    assert r.returncode == 0 and "dropped index 'by_l2'" in r.stdout
    r = run("index", "drop", ds.uri, "by_l2")
    assert r.returncode == 1 and "no index 'by_l2'" in r.stderr
    assert [i.name for i in th.open(ds.uri).indexes] == ["emb_idx"]
    assert "index" in cli.list_commands(None)  # type: ignore[arg-type]
    assert json.loads(json.dumps(th.open(ds.uri).indexes[0].params)) == {}


@pytest.mark.s3
def test_sql_nearest_on_s3_uses_the_registration_and_its_credentials(
    s3_uri: tuple[str, dict[str, Any]],
) -> None:
    from tensorhouse.index.sql import dataset_behind

    uri, opts = s3_uri
    rng = np.random.default_rng(3)
    x = rng.standard_normal((500, DIM)).astype(np.float32)
    ds = th.create(uri, {"id": "int64", "emb": th.Embedding(DIM)}, storage_options=opts)
    ds.append({"id": np.arange(500), "emb": x})
    ds.create_index("emb", progress=False)
    for kind in ("duckdb", "datafusion"):
        conn = engine(kind, "docs", ds)
        behind = dataset_behind(conn, kind, "docs")
        assert behind is not None and behind.storage_options == opts and behind.indexes
        assert th.sql.nearest(conn, "docs", "emb", x[42], k=1, columns=["id"]).column(
            "id"
        ).to_pylist() == [42]
