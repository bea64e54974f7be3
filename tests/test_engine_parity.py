"""A registered dataset behaves exactly like a native table of the same columns, in both engines.

Every statement runs twice on the same engine: over tensorhouse registrations
and over native tables (DuckDB tables, DataFusion in-memory tables) built from
the same Arrow data. Both must give the same columns and rows, or both fail.
One shared class, one subclass per engine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import datafusion
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sql_fixtures import counted

import tensorhouse as th

N = 40


def tables() -> dict[str, tuple[dict[str, Any], pa.Table]]:
    """name -> (tensorhouse schema, Arrow data)."""
    rng = np.random.default_rng(3)
    emb = rng.random((N, 2), dtype=np.float32)
    pets = pa.table(
        {
            "id": pa.array(np.arange(N), pa.int64()),
            "label": pa.array(np.arange(N) % 3, pa.int32()),
            "name": pa.array([f"p{i}" for i in range(N)]),
            "emb": pa.FixedSizeListArray.from_arrays(pa.array(emb.ravel()), 2),
        }
    )
    labels = pa.table(
        {"label": pa.array([0, 1, 2], pa.int32()), "label_name": ["cat", "dog", "bird"]}
    )
    nation = pa.table(
        {
            "n_nationkey": pa.array([0, 1, 2, 3], pa.int64()),
            "n_name": ["a", "b", "c", "d"],
            "n_regionkey": pa.array([0, 1, 1, 0], pa.int64()),
        }
    )
    region = pa.table({"r_regionkey": pa.array([0, 1], pa.int64()), "r_name": ["east", "west"]})
    return {
        "pets": (
            {"id": "int64", "label": "int32", "name": th.Text(), "emb": th.Embedding(2)},
            pets,
        ),
        "labels": ({"label": "int32", "label_name": th.Text()}, labels),
        "nation": ({"n_nationkey": "int64", "n_name": th.Text(), "n_regionkey": "int64"}, nation),
        "region": ({"r_regionkey": "int64", "r_name": th.Text()}, region),
    }


STATEMENTS = [
    "SELECT * FROM nation NATURAL JOIN region",  # no common column: DuckDB refuses, DataFusion cross-joins
    "SELECT * FROM pets NATURAL JOIN labels ORDER BY id",
    "SELECT * FROM pets JOIN labels USING (label) ORDER BY id",
    "SELECT * FROM pets p JOIN labels l ON p.label = l.label ORDER BY id",
    "SELECT * FROM pets UNION ALL SELECT * FROM pets_parquet ORDER BY id, name",
    "SELECT * FROM labels UNION SELECT * FROM labels ORDER BY label",
    "SELECT count(*) AS n FROM pets",
    "SELECT * FROM pets WHERE id IN (SELECT id FROM pets_parquet WHERE label = 2) ORDER BY id",
]
SCRIPTS = [
    # (setup statements, the query whose result is compared)
    (
        [
            "CREATE TABLE copy AS SELECT * FROM pets WHERE id < 0",
            "INSERT INTO copy SELECT * FROM pets",
        ],
        "SELECT * FROM copy ORDER BY id",
    ),
    (
        ["CREATE TABLE joined AS SELECT * FROM pets JOIN labels USING (label)"],
        "SELECT * FROM joined ORDER BY id",
    ),
    (["CREATE VIEW v AS SELECT * FROM pets NATURAL JOIN labels"], "SELECT * FROM v ORDER BY id"),
    (
        ["CREATE VIEW w AS SELECT * FROM pets p JOIN labels l ON p.label = l.label"],
        "SELECT * FROM w ORDER BY id",
    ),
]


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The same tables as tensorhouse datasets and as Arrow tables (and pets as Parquet)."""
    root = tmp_path_factory.mktemp("parity")
    out: dict[str, Any] = {"uris": {}, "arrow": {}}
    for name, (schema, table) in tables().items():
        uri = str(root / name)
        th.create(uri, schema).append(table)
        out["uris"][name] = uri
        out["arrow"][name] = table
    out["parquet"] = str(root / "pets.parquet")
    pq.write_table(tables()["pets"][1], out["parquet"])
    return out


# A module-scoped fixture, not a class-scoped method: pytest 9 deprecates
# class-scoped fixtures defined on the class, and the data is the same for both engines.
class EngineParity:
    """Subclasses set up one engine: ``session(kind)`` with kind "tensorhouse" or "native"."""

    def session(self, kind: str, data: dict[str, Any]) -> Any:
        raise NotImplementedError

    def run(self, session: Any, sql: str) -> pa.Table:
        raise NotImplementedError

    def execute(self, session: Any, sql: str) -> None:
        raise NotImplementedError

    def outcome(self, session: Any, setup: list[str], sql: str) -> tuple[str, Any]:
        try:
            for stmt in setup:
                self.execute(session, stmt)
            t = self.run(session, sql)
        except Exception as err:  # the engine refused: so must it on native tables
            return "error", type(err).__name__
        rows = [[_plain(v) for v in row.values()] for row in t.to_pylist()]
        return "ok", (t.column_names, rows if "ORDER BY" in sql else sorted(rows, key=repr))

    @pytest.mark.parametrize("sql", STATEMENTS)
    def test_statement_matches_native(self, data: dict[str, Any], sql: str) -> None:
        want = self.outcome(self.session("native", data), [], sql)
        got = self.outcome(self.session("tensorhouse", data), [], sql)
        assert got == want

    @pytest.mark.parametrize(("setup", "sql"), SCRIPTS, ids=[s[0][0][:24] for s in SCRIPTS])
    def test_script_matches_native(self, data: dict[str, Any], setup: list[str], sql: str) -> None:
        want = self.outcome(self.session("native", data), setup, sql)
        got = self.outcome(self.session("tensorhouse", data), setup, sql)
        assert want[0] == "ok" or "NATURAL" in setup[0] or "ON p.label" in setup[0]
        assert got == want

    def test_star_is_the_datasets_columns(self, data: dict[str, Any]) -> None:
        s = self.session("tensorhouse", data)
        for name, table in data["arrow"].items():
            assert self.run(s, f"SELECT * FROM {name} LIMIT 0").column_names == table.column_names

    def test_rowids_on_request(self, data: dict[str, Any]) -> None:
        s = self.session("tensorhouse", data)
        self.register(s, "pets_ids", data["uris"]["pets"], rowid=True)
        t = self.run(s, "SELECT _rowid, id FROM pets_ids ORDER BY id")
        assert t.column("_rowid").to_pylist() == list(range(N))  # fragment 0, offsets 0..N-1
        assert self.run(s, "SELECT * FROM pets_ids LIMIT 0").column_names == [
            "_rowid",
            "id",
            "label",
            "name",
            "emb",
        ]

    def register(self, session: Any, name: str, uri: str, *, rowid: bool = False) -> None:
        raise NotImplementedError

    def query(self, session: Any, sql: str) -> Any:
        raise NotImplementedError

    def test_loader_from_a_plain_select(self, data: dict[str, Any]) -> None:
        """No _rowid in the query: the loader adds it and reads the heavy column by row id."""
        ds, store = counted(th.open(data["uris"]["pets"]))
        s = self.session("native", data)
        self.register_dataset(s, "pets_th", ds)
        q = self.query(
            s,
            "SELECT p.emb, p.label, p.id * 10 AS tens FROM pets_th p "
            "JOIN labels l ON p.label = l.label WHERE l.label_name = 'dog' AND p.id < 30",
        )
        store.reset()
        loader = th.loader(q, batch_size=4, format="numpy", reuse_buffers=False)  # runs the query
        assert "emb" not in store.reads  # the engine never read the embedding chunks
        batches = list(loader)
        assert set(batches[0]) == {"emb", "label", "tens"}
        tens = np.concatenate([b["tens"] for b in batches])
        want_ids = [i for i in range(30) if i % 3 == 1]
        assert sorted((tens // 10).tolist()) == want_ids
        emb = np.concatenate([b["emb"] for b in batches])
        arrow_emb = np.stack(data["arrow"]["pets"].column("emb").to_numpy(zero_copy_only=False))
        np.testing.assert_array_equal(emb, arrow_emb[tens // 10])
        assert all((b["label"] == 1).all() for b in batches)

    def test_loader_refuses_aggregates_clearly(self, data: dict[str, Any]) -> None:
        s = self.session("tensorhouse", data)
        with pytest.raises(th.TensorhouseError, match=r"GROUP.*rowid=True"):
            th.loader(
                self.query(s, "SELECT label, count(*) AS n FROM pets GROUP BY label"),
                format="numpy",
            )

    def register_dataset(self, session: Any, name: str, ds: th.Dataset) -> None:
        raise NotImplementedError


def _plain(v: Any) -> Any:
    return (
        round(v, 5)
        if isinstance(v, float)
        else [_plain(x) for x in v]
        if isinstance(v, list)
        else v
    )


class TestDuckDB(EngineParity):
    def session(self, kind: str, data: dict[str, Any]) -> Any:
        con = duckdb.connect()
        for name, table in data["arrow"].items():
            if kind == "native":
                con.register("__arrow", table)
                con.execute(f"CREATE TABLE {name} AS SELECT * FROM __arrow")
                con.unregister("__arrow")
            else:
                th.duckdb.register(con, name, data["uris"][name])
        con.execute(f"CREATE VIEW pets_parquet AS SELECT * FROM read_parquet('{data['parquet']}')")
        return con

    def run(self, session: Any, sql: str) -> pa.Table:
        return session.sql(sql).to_arrow_table()

    def execute(self, session: Any, sql: str) -> None:
        session.execute(sql)

    def register(self, session: Any, name: str, uri: str, *, rowid: bool = False) -> None:
        th.duckdb.register(session, name, uri, rowid=rowid)

    def register_dataset(self, session: Any, name: str, ds: th.Dataset) -> None:
        th.duckdb.register(session, name, ds)

    def query(self, session: Any, sql: str) -> Any:
        return session.sql(sql)


class TestDataFusion(EngineParity):
    def session(self, kind: str, data: dict[str, Any]) -> Any:
        ctx = datafusion.SessionContext()
        for name, table in data["arrow"].items():
            if kind == "native":
                ctx.register_record_batches(name, [table.to_batches()])
            else:
                th.datafusion.register(ctx, name, data["uris"][name])
        ctx.register_parquet("pets_parquet", data["parquet"])
        return ctx

    def run(self, session: Any, sql: str) -> pa.Table:
        return session.sql(sql).to_arrow_table()

    def execute(self, session: Any, sql: str) -> None:
        session.sql(sql).collect()

    def register(self, session: Any, name: str, uri: str, *, rowid: bool = False) -> None:
        th.datafusion.register(session, name, uri, rowid=rowid)

    def register_dataset(self, session: Any, name: str, ds: th.Dataset) -> None:
        th.datafusion.register(session, name, ds)

    def query(self, session: Any, sql: str) -> Any:
        return session.sql(sql)


def test_a_replaced_name_reads_the_new_version(tmp_path: Path) -> None:
    uri = str(tmp_path / "v")
    ds = th.create(uri, {"x": "int64"})
    ds.append({"x": [1, 2]})
    con = duckdb.connect()
    th.duckdb.register(con, "t", uri, version=1)
    ds.append({"x": [3]})
    th.duckdb.register(con, "t", uri)
    assert con.sql("SELECT sum(x) FROM t").fetchall() == [(6,)]
    assert len(th.duckdb.registered_datasets(con)) == 1  # the old companion is gone
