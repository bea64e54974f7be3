"""Registered tables read the version's Parquet files with the engines' own readers.

Real DuckDB and DataFusion over real Parquet files. Every check compares the
native path with the Python scan (``native=False``) of the same registration,
or with native engine tables of the same data (the parity statements).

Until the format writes Parquet group files, :func:`stand_in` plays the
format's accessor: it writes, for each append a test makes, one Parquet file
with pyarrow (physical names ``c0, c1, ...``) and lists them per version as
the contract's ``NativeFile`` values.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import datafusion
import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import test_engine_parity as parity

import tensorhouse as th
from tensorhouse.connector import native

REAL_ACCESSOR = importlib.util.find_spec("tensorhouse.format.native_files") is not None


@dataclass(frozen=True)
class StandInFile:
    """The contract's NativeFile, over a file written by pyarrow."""

    fragment_id: int
    path: str
    offset: int
    rows: int
    columns: Mapping[str, str]
    deleted: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))


class StandIn:
    """What the format's accessor would answer for the datasets a test wrote through :meth:`append`."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.files: dict[tuple[str, int], tuple[StandInFile, ...]] = {}

    def append(self, ds: th.Dataset, table: pa.Table) -> None:
        before = self.files.get((ds.uri, ds.version), ())
        ds.append(table)
        if REAL_ACCESSOR:
            return
        i = len(before)
        path = self.root / f"{Path(ds.uri).name}-{i}.parquet"
        names = list(table.column_names)
        pq.write_table(table.rename_columns([f"c{j}" for j in range(len(names))]), path)
        f = StandInFile(i, str(path), 0, table.num_rows, {n: f"c{j}" for j, n in enumerate(names)})
        self.files[(ds.uri, ds.version)] = (*before, f)

    def delete(self, ds: th.Dataset, where: str, rows: Mapping[int, list[int]]) -> None:
        """``rows``: file index -> row offsets the ``where`` deletes (the test knows its data)."""
        before = self.files.get((ds.uri, ds.version), ())
        ds.delete(where)
        self.files[(ds.uri, ds.version)] = tuple(
            StandInFile(
                f.fragment_id,
                f.path,
                f.offset,
                f.rows,
                f.columns,
                np.union1d(f.deleted, np.asarray(rows.get(i, []), np.int64)).astype(np.int64),
            )
            for i, f in enumerate(before)
        )

    def __call__(self, ds: Any) -> tuple[StandInFile, ...] | None:
        files = self.files.get((ds.uri, ds.version))
        if files is None:
            return None if len(ds) else ()
        if any(set(ds.schema.names) - set(f.columns) for f in files):
            return None  # a column added later lives in its own files
        return files


@pytest.fixture
def files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[StandIn]:
    s = StandIn(tmp_path / "standin")
    s.root.mkdir()
    if not REAL_ACCESSOR:
        monkeypatch.setattr(native, "files_of", s)
    monkeypatch.delenv(native.ENV, raising=False)
    yield s


def typed_table(n: int, start: int = 0) -> pa.Table:
    ids = np.arange(start, start + n)
    return pa.table(
        {
            "id": pa.array(ids, pa.int64()),
            "k": pa.array(ids % 7, pa.int32()),
            "x": pa.array(ids * 0.5, pa.float64()),
            "ok": pa.array(ids % 2 == 0),
            "name": pa.array([f"n{i % 13}" for i in ids]),
            "price": pa.array([f"{i}.25" for i in ids]).cast(pa.decimal128(12, 2)),
            "day": pa.array(ids.astype("datetime64[D]")),
            "ts": pa.array((ids * 1_000_000).astype("datetime64[us]")),
        }
    )


def write(root: Path, s: StandIn, name: str, parts: list[pa.Table]) -> th.Dataset:
    ds = th.create(
        str(root / name),
        {c: _type(t) for c, t in zip(parts[0].column_names, parts[0].schema.types, strict=True)},
    )
    for p in parts:
        s.append(ds, p)
    return ds


def _type(t: pa.DataType) -> Any:
    if pa.types.is_string(t):
        return th.Text()
    return str(t) if t in (pa.int64(), pa.int32(), pa.float64(), pa.bool_()) else th.Arrow(t)


# -- the two engines, one API -------------------------------------------------------------
class Engine:
    name = ""

    def session(self) -> Any:
        raise NotImplementedError

    def register(self, s: Any, name: str, src: Any, **kw: Any) -> None:
        raise NotImplementedError

    def rows(self, s: Any, sql: str) -> pa.Table:
        raise NotImplementedError

    def path(self, s: Any, name: str) -> native.ReadPath | None:
        raise NotImplementedError

    def schema(self, s: Any, name: str) -> list[tuple[str, str]]:
        raise NotImplementedError


class DuckDB(Engine):
    name = "duckdb"

    def session(self) -> Any:
        return duckdb.connect()

    def register(self, s: Any, name: str, src: Any, **kw: Any) -> None:
        th.duckdb.register(s, name, src, **kw)

    def rows(self, s: Any, sql: str) -> pa.Table:
        return s.sql(sql).to_arrow_table()

    def path(self, s: Any, name: str) -> native.ReadPath | None:
        return th.duckdb.read_path(s, name)

    def schema(self, s: Any, name: str) -> list[tuple[str, str]]:
        return [(r[0], r[1]) for r in s.sql(f"DESCRIBE {name}").fetchall()]


class DataFusion(Engine):
    name = "datafusion"

    def session(self) -> Any:
        return datafusion.SessionContext()

    def register(self, s: Any, name: str, src: Any, **kw: Any) -> None:
        th.datafusion.register(s, name, src, **kw)

    def rows(self, s: Any, sql: str) -> pa.Table:
        return s.sql(sql).to_arrow_table()

    def path(self, s: Any, name: str) -> native.ReadPath | None:
        return th.datafusion.read_path(s, name)

    def schema(self, s: Any, name: str) -> list[tuple[str, str]]:
        return [(f.name, str(f.type)) for f in s.table(name).schema()]


ENGINES = [DuckDB(), DataFusion()]


@pytest.fixture(params=ENGINES, ids=lambda e: e.name)
def engine(request: pytest.FixtureRequest) -> Engine:
    return request.param


def sorted_rows(t: pa.Table) -> list[tuple[Any, ...]]:
    return sorted((tuple(r.values()) for r in t.to_pylist()), key=repr)


def both(e: Engine, src: Any, sql: str, **kw: Any) -> tuple[pa.Table, pa.Table, Any]:
    """(native result, Python-scan result, the native session)."""
    a, b = e.session(), e.session()
    e.register(a, "t", src, **kw)
    e.register(b, "t", src, native=False, **kw)
    return e.rows(a, sql), e.rows(b, sql), a


# -- tests --------------------------------------------------------------------------------
def test_types_rows_and_filters_match_the_python_scan(
    tmp_path: Path, files: StandIn, engine: Engine
) -> None:
    ds = write(tmp_path, files, "typed", [typed_table(300), typed_table(200, 300)])
    a, b = engine.session(), engine.session()
    engine.register(a, "t", ds)
    engine.register(b, "t", ds, native=False)
    path = engine.path(a, "t")
    assert path is not None and path.native, path
    assert engine.path(b, "t") == native.ReadPath(False, "native=False")
    assert engine.schema(a, "t") == engine.schema(b, "t")
    for sql in [
        "SELECT * FROM t",
        "SELECT id, name FROM t WHERE name = 'n3' AND id > 100",
        "SELECT k, count(*) AS n, sum(price) AS p, min(day) AS d, max(ts) AS m FROM t GROUP BY k",
        "SELECT id FROM t WHERE name IN ('n1', 'n2') OR name LIKE 'n1%'",
        "SELECT count(*) AS n FROM t WHERE ok",
    ]:
        assert sorted_rows(engine.rows(a, sql)) == sorted_rows(engine.rows(b, sql)), sql
    assert engine.rows(a, "SELECT * FROM t").schema == engine.rows(b, "SELECT * FROM t").schema


def test_a_registered_old_version_reads_its_own_files(
    tmp_path: Path, files: StandIn, engine: Engine
) -> None:
    ds = write(tmp_path, files, "tt", [typed_table(100)])
    files.append(ds, typed_table(50, 100))
    s = engine.session()
    engine.register(s, "v1", ds.uri, version=1)
    engine.register(s, "v2", ds.uri)
    assert engine.path(s, "v1").native and engine.path(s, "v2").native  # type: ignore[union-attr]
    assert engine.rows(s, "SELECT count(*) AS n, max(id) AS m FROM v1").to_pylist() == [
        {"n": 100, "m": 99}
    ]
    assert engine.rows(s, "SELECT count(*) AS n, max(id) AS m FROM v2").to_pylist() == [
        {"n": 150, "m": 149}
    ]


def test_deleted_rows_are_not_read(tmp_path: Path, files: StandIn, engine: Engine) -> None:
    ds = write(tmp_path, files, "del", [typed_table(100), typed_table(100, 100)])
    files.delete(ds, "id % 10 = 3", {0: list(range(3, 100, 10)), 1: list(range(3, 100, 10))})
    got, want, s = both(engine, ds, "SELECT * FROM t")
    assert got.num_rows == want.num_rows == 180
    assert sorted_rows(got) == sorted_rows(want)
    path = engine.path(s, "t")
    assert path is not None and path.native and path.deleted_rows == 20
    # the loader's rewrite still leads to the companion (which applies the same deletions)
    q = s.sql("SELECT id, name FROM t WHERE k = 3")
    ids = np.concatenate([b["id"] for b in th.loader(q, batch_size=16, format="numpy")])
    assert sorted(ids.tolist()) == [i for i in range(200) if i % 7 == 3 and i % 10 != 3]


def test_deletions_past_the_inline_limit_fall_back(
    tmp_path: Path, files: StandIn, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(native, "MAX_INLINE_DELETED", 5)
    ds = write(tmp_path, files, "del2", [typed_table(100)])
    files.delete(ds, "id % 10 = 3", {0: list(range(3, 100, 10))})
    got, want, s = both(engine, ds, "SELECT * FROM t")
    assert sorted_rows(got) == sorted_rows(want) and got.num_rows == 90
    assert "more than 5" in engine.path(s, "t").reason  # type: ignore[union-attr]


def test_datafusion_file_row_index_is_the_row_in_the_file(tmp_path: Path) -> None:
    """What the deletion filter relies on: right under a filter and when a file is split in byte ranges."""
    path = tmp_path / "rows.parquet"
    pq.write_table(pa.table({"c0": np.arange(400_000)}), path, row_group_size=50_000)
    ctx = datafusion.SessionContext(datafusion.SessionConfig().with_target_partitions(4))
    ctx.register_parquet("a", str(path))
    t = ctx.sql("SELECT c0, file_row_index() AS r FROM a WHERE c0 % 7 = 3").to_arrow_table()
    assert t.num_rows == len(range(3, 400_000, 7))
    assert t.column("c0").to_pylist() == t.column("r").to_pylist()


def test_empty_dataset(tmp_path: Path, files: StandIn, engine: Engine) -> None:
    ds = th.create(str(tmp_path / "empty"), {"id": "int64", "name": th.Text()})
    got, want, s = both(engine, ds, "SELECT * FROM t")
    assert got.num_rows == 0 and got.schema == want.schema
    assert engine.path(s, "t") == native.ReadPath(False, "the dataset has no rows")


def test_opt_out_by_argument_and_environment(
    tmp_path: Path,
    files: StandIn,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ds = write(tmp_path, files, "opt", [typed_table(10)])
    s = engine.session()
    monkeypatch.setenv(native.ENV, "0")
    with caplog.at_level(logging.DEBUG, logger="tensorhouse.native"):
        engine.register(s, "t", ds)
    assert engine.path(s, "t") == native.ReadPath(False, f"{native.ENV}=0")
    assert "Python scan (TENSORHOUSE_NATIVE=0)" in caplog.text
    engine.register(s, "u", ds, native=True)  # an explicit native=True wins over the environment
    assert engine.path(s, "u").native  # type: ignore[union-attr]
    monkeypatch.delenv(native.ENV)
    for kw, why in [({"refresh": True}, "refresh=True"), ({"rowid": True}, "rowid=True")]:
        engine.register(s, "w", ds, **kw)
        assert engine.path(s, "w").reason.startswith(why)  # type: ignore[union-attr]


def test_a_column_added_later_falls_back(tmp_path: Path, files: StandIn, engine: Engine) -> None:
    ds = write(tmp_path, files, "added", [typed_table(20)])
    ds.add_column("extra", "int64", np.arange(20))
    got, want, s = both(engine, ds, "SELECT id, extra FROM t")
    assert not engine.path(s, "t").native  # type: ignore[union-attr]
    assert sorted_rows(got) == sorted_rows(want)


@pytest.mark.skipif(
    not REAL_ACCESSOR, reason="physical names stable under rename come from the format"
)
def test_a_renamed_column_reads_under_its_new_name(
    tmp_path: Path, files: StandIn, engine: Engine
) -> None:
    ds = write(tmp_path, files, "ren", [typed_table(20)])
    ds.rename_column("name", "label")
    got, want, s = both(engine, ds.uri, "SELECT id, label FROM t")
    assert engine.path(s, "t").native  # type: ignore[union-attr]
    assert sorted_rows(got) == sorted_rows(want)


def test_the_loader_and_catalog_helpers_see_the_dataset(
    tmp_path: Path, files: StandIn, engine: Engine
) -> None:
    ds = write(tmp_path, files, "ld", [typed_table(60), typed_table(40, 60)])
    s = engine.session()
    engine.register(s, "t", ds)
    assert engine.path(s, "t").native  # type: ignore[union-attr]
    mod = th.duckdb if engine.name == "duckdb" else th.datafusion
    assert mod.registered_table(s, "t").dataset.uri == ds.uri
    q = s.sql("SELECT id, name, price FROM t WHERE k = 3 AND id < 90")
    batches = list(th.loader(q, batch_size=8, format="numpy"))
    ids = np.concatenate([b["id"] for b in batches])
    assert sorted(ids.tolist()) == [i for i in range(90) if i % 7 == 3]
    names = np.concatenate([b["name"] for b in batches])
    assert all(n == f"n{i % 13}" for i, n in zip(ids, names, strict=True))
    if engine.name == "duckdb":
        assert th.duckdb.dataset_behind(q).uri == ds.uri


def test_re_registering_a_name_drops_the_old_native_view(tmp_path: Path, files: StandIn) -> None:
    ds = write(tmp_path, files, "re", [typed_table(10)])
    con = duckdb.connect()
    th.duckdb.register(con, "t", ds)
    th.duckdb.register(con, "t", ds)
    views = [
        r[0] for r in con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    ]
    assert len([v for v in views if v.endswith(native.NATIVE_SUFFIX)]) == 1
    assert len(views) == 3  # t, its companion, its native view
    assert con.sql("SELECT count(*) FROM t").fetchall() == [(10,)]


def test_duckdb_scan_reads_natively(tmp_path: Path, files: StandIn) -> None:
    ds = write(tmp_path, files, "sc", [typed_table(30)])
    files.append(ds, typed_table(5, 30))
    con = duckdb.connect()
    rel = th.duckdb.scan(con, ds.uri, version=1)
    assert "read_parquet" in " ".join(
        r[1] for r in con.sql("SELECT view_name, sql FROM duckdb_views()").fetchall()
    )
    assert rel.aggregate("count(*)").fetchall() == [(30,)]


def test_join_order_over_native_tables_is_parquets(tmp_path: Path, files: StandIn) -> None:
    """A small native table joined to a big one hashes the small side (Parquet statistics)."""
    big = write(tmp_path, files, "big", [typed_table(5000)])
    small = write(tmp_path, files, "small", [typed_table(50)])
    con = duckdb.connect()
    th.duckdb.register(con, "big", big)
    th.duckdb.register(con, "small", small)
    plan = con.sql("EXPLAIN ANALYZE SELECT count(*) FROM big JOIN small USING (id)").fetchall()[0][
        1
    ]
    assert "READ_PARQUET" in plan and "PYTHON" not in plan
    assert con.sql("SELECT count(*) FROM big JOIN small USING (id)").fetchall() == [(50,)]


# -- the parity statements over native registrations ----------------------------------------
@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The parity tables, written so that the tabular ones have native files (pets has a tensor)."""
    root = tmp_path_factory.mktemp("native-parity")
    s = StandIn(root / "standin")
    s.root.mkdir()
    mp = pytest.MonkeyPatch()
    if not REAL_ACCESSOR:
        mp.setattr(native, "files_of", s)
    mp.delenv(native.ENV, raising=False)
    out: dict[str, Any] = {"uris": {}, "arrow": {}}
    for name, (schema, table) in parity.tables().items():
        ds = th.create(str(root / name), schema)
        if name == "pets":
            ds.append(table)
        else:
            s.append(ds, table)
        out["uris"][name] = ds.uri
        out["arrow"][name] = table
    out["parquet"] = str(root / "pets.parquet")
    pq.write_table(parity.tables()["pets"][1], out["parquet"])
    yield out
    mp.undo()


class TestDuckDBNative(parity.TestDuckDB):
    def test_tabular_tables_are_native(self, data: dict[str, Any]) -> None:
        con = self.session("tensorhouse", data)
        for name in ("labels", "nation", "region"):
            assert th.duckdb.read_path(con, name).native, name  # type: ignore[union-attr]
        assert not th.duckdb.read_path(con, "pets").native  # type: ignore[union-attr]


class TestDataFusionNative(parity.TestDataFusion):
    def test_tabular_tables_are_native(self, data: dict[str, Any]) -> None:
        ctx = self.session("tensorhouse", data)
        for name in ("labels", "nation", "region"):
            assert th.datafusion.read_path(ctx, name).native, name  # type: ignore[union-attr]
        assert not th.datafusion.read_path(ctx, "pets").native  # type: ignore[union-attr]
