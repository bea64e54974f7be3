"""Registered tables read the version's Parquet files with the engines' own readers.

Real DuckDB and DataFusion over the datasets' own Parquet group files
(``ds.native_files()``). Every check compares the native path with the
Python scan (``native=False``) of the same registration, or with native
engine tables of the same data (the parity statements).
"""

from __future__ import annotations

import logging
import tempfile
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


@pytest.fixture(autouse=True)
def _native_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(native.ENV, raising=False)


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
            "tags": pa.array([[f"t{i % 3}"] * int(i % 3) for i in ids], pa.list_(pa.string())),
            "pt": pa.array(
                [{"x": float(i), "y": None if i % 5 == 0 else -float(i)} for i in ids],
                pa.struct([("x", pa.float32()), ("y", pa.float64())]),
            ),
            "small": pa.array(ids % 100, pa.uint8()),
        }
    )


def write(root: Path, name: str, parts: list[pa.Table]) -> th.Dataset:
    """A dataset with one fragment (so one Parquet group file) per part."""
    ds = th.create(str(root / name), {f.name: _type(f.type) for f in parts[0].schema})
    for p in parts:
        ds.append(p)
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
def test_types_rows_and_filters_match_the_python_scan(tmp_path: Path, engine: Engine) -> None:
    ds = write(tmp_path, "typed", [typed_table(300), typed_table(200, 300)])
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


def test_a_registered_old_version_reads_its_own_files(tmp_path: Path, engine: Engine) -> None:
    ds = write(tmp_path, "tt", [typed_table(100)])
    ds.append(typed_table(50, 100))
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


def test_deleted_rows_are_not_read(tmp_path: Path, engine: Engine) -> None:
    ds = write(tmp_path, "del", [typed_table(100), typed_table(100, 100)])
    ds.delete("id % 10 = 3")
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
    tmp_path: Path, engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(native, "MAX_INLINE_DELETED", 5)
    ds = write(tmp_path, "del2", [typed_table(100)])
    ds.delete("id % 10 = 3")
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


def test_empty_dataset(tmp_path: Path, engine: Engine) -> None:
    ds = th.create(str(tmp_path / "empty"), {"id": "int64", "name": th.Text()})
    got, want, s = both(engine, ds, "SELECT * FROM t")
    assert got.num_rows == 0 and got.schema == want.schema
    assert engine.path(s, "t") == native.ReadPath(False, "the dataset has no rows")


def test_opt_out_by_argument_and_environment(
    tmp_path: Path,
    engine: Engine,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    ds = write(tmp_path, "opt", [typed_table(10)])
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


def test_a_column_added_later_falls_back(tmp_path: Path, engine: Engine) -> None:
    ds = write(tmp_path, "added", [typed_table(20)])
    ds.add_column("extra", "int64", np.arange(20))
    got, want, s = both(engine, ds, "SELECT id, extra FROM t")
    assert not engine.path(s, "t").native  # type: ignore[union-attr]
    assert sorted_rows(got) == sorted_rows(want)


def test_a_renamed_column_reads_under_its_new_name(tmp_path: Path, engine: Engine) -> None:
    ds = write(tmp_path, "ren", [typed_table(20)])
    ds.rename_column("name", "label")
    got, want, s = both(engine, ds.uri, "SELECT id, label FROM t")
    assert engine.path(s, "t").native  # type: ignore[union-attr]
    assert sorted_rows(got) == sorted_rows(want)


def test_the_loader_and_catalog_helpers_see_the_dataset(tmp_path: Path, engine: Engine) -> None:
    ds = write(tmp_path, "ld", [typed_table(60), typed_table(40, 60)])
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


def test_re_registering_a_name_drops_the_old_native_view(tmp_path: Path) -> None:
    ds = write(tmp_path, "re", [typed_table(10)])
    con = duckdb.connect()
    th.duckdb.register(con, "t", ds)
    th.duckdb.register(con, "t", ds)
    views = [
        r[0] for r in con.sql("SELECT view_name FROM duckdb_views() WHERE NOT internal").fetchall()
    ]
    assert len([v for v in views if v.endswith(native.NATIVE_SUFFIX)]) == 1
    assert len(views) == 3  # t, its companion, its native view
    assert con.sql("SELECT count(*) FROM t").fetchall() == [(10,)]


def test_duckdb_scan_reads_natively(tmp_path: Path) -> None:
    ds = write(tmp_path, "sc", [typed_table(30)])
    ds.append(typed_table(5, 30))
    con = duckdb.connect()
    rel = th.duckdb.scan(con, ds.uri, version=1)
    assert "read_parquet" in " ".join(
        r[1] for r in con.sql("SELECT view_name, sql FROM duckdb_views()").fetchall()
    )
    assert rel.aggregate("count(*)").fetchall() == [(30,)]


def test_join_order_over_native_tables_is_parquets(tmp_path: Path) -> None:
    """A small native table joined to a big one hashes the small side (Parquet statistics)."""
    big = write(tmp_path, "big", [typed_table(5000)])
    small = write(tmp_path, "small", [typed_table(50)])
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
def data(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The parity tables as datasets: the tabular ones are read natively (pets has a tensor)."""
    root = tmp_path_factory.mktemp("native-parity")
    out: dict[str, Any] = {"uris": {}, "arrow": {}}
    for name, (schema, table) in parity.tables().items():
        th.create(str(root / name), schema).append(table)
        out["uris"][name] = str(root / name)
        out["arrow"][name] = table
    out["parquet"] = str(root / "pets.parquet")
    pq.write_table(parity.tables()["pets"][1], out["parquet"])
    return out


class TestDuckDBNative(parity.TestDuckDB):
    def test_tabular_tables_are_native(self, data: dict[str, Any]) -> None:
        con = self.session("tensorhouse", data)
        for name in ("labels", "nation", "region"):
            assert th.duckdb.read_path(con, name).native, name  # type: ignore[union-attr]
        pets = th.duckdb.read_path(
            con, "pets"
        )  # a tensor column: read by row id (test_native_mixed)
        assert pets is not None and pets.native and pets.by_rowid


class TestDataFusionNative(parity.TestDataFusion):
    def test_tabular_tables_are_native(self, data: dict[str, Any]) -> None:
        ctx = self.session("tensorhouse", data)
        for name in ("labels", "nation", "region"):
            assert th.datafusion.read_path(ctx, name).native, name  # type: ignore[union-attr]
        assert not th.datafusion.read_path(ctx, "pets").native  # type: ignore[union-attr]


def test_duckdb_knows_every_files_statistics(tmp_path: Path) -> None:
    """The row count and null counts come from every file, not the first (else join sides flip)."""
    ds = write(tmp_path, "stats", [typed_table(1000), typed_table(5000, 1000)])
    con = duckdb.connect()
    th.duckdb.register(con, "t", ds)
    plan = con.sql("EXPLAIN SELECT id FROM t WHERE id IS NOT NULL").fetchall()[0][1]
    assert "~6,000" in plan  # without maximum_files_for_stats: ~2,000 (the first file's rows x 2)
    assert "IS NOT NULL" not in plan  # no file holds a null in id, so DuckDB drops the filter


def test_types_parquet_stores_differently_read_the_same(tmp_path: Path, engine: Engine) -> None:
    """Time zones, nanoseconds, dictionaries, float16, large strings, times and durations."""
    ids = np.arange(50)
    t = pa.table(
        {
            "tz": pa.array((ids * 10**6).astype("datetime64[us]")).cast(pa.timestamp("us", "UTC")),
            "ns": pa.array((ids * 10**9 + 7).astype("datetime64[ns]")),
            "dic": pa.array(["a", "b"] * 25).dictionary_encode(),
            "h": pa.array(ids.astype("float16")),
            "lg": pa.array([f"x{i}" for i in ids], pa.large_string()),
            "t32": pa.array(ids.astype("int32"), pa.time32("s")),
            "dur": pa.array(ids, pa.duration("ms")),
        }
    )
    for name, table in (("nodur", t.drop_columns(["dur"])), ("dur", t)):
        ds = th.write(str(tmp_path / name), table)
        got, want, s = both(engine, ds, "SELECT * FROM t")
        assert got.schema == want.schema and got.to_pylist() == want.to_pylist(), name
        path = engine.path(s, "t")
        assert path is not None
        if name == "dur" and engine.name == "duckdb":
            # DuckDB reads a Parquet duration as BIGINT and cannot cast it to INTERVAL: Python scan.
            assert not path.native and "INTERVAL" in path.reason
        else:
            assert path.native, (name, path)


def test_datafusion_reads_a_multi_file_version_as_one_table(tmp_path: Path) -> None:
    """One Parquet table over links to exactly the version's files, gone with the registration."""
    import gc

    ds = write(tmp_path, "multi", [typed_table(100), typed_table(100, 100), typed_table(50, 200)])
    ctx = datafusion.SessionContext()
    th.datafusion.register(ctx, "v2", ds.uri, version=2)  # two of the three files
    explain = ctx.sql("EXPLAIN SELECT count(*) FROM v2 WHERE id >= 0").to_arrow_table()
    plan = explain.column("plan")[1].as_py()
    links = plan.split("tensorhouse-native-")[1].split("/")[0]
    where = Path(tempfile.gettempdir()) / f"tensorhouse-native-{links}"
    assert sorted(p.name for p in where.iterdir()) == ["00000000.parquet", "00000001.parquet"]
    assert ctx.sql("SELECT count(*) AS n, max(id) AS m FROM v2").to_pylist() == [
        {"n": 200, "m": 199}
    ]
    del ctx
    gc.collect()
    assert not where.exists()


def test_a_store_that_is_not_a_local_disk_keeps_the_python_scan(engine: Engine) -> None:
    ds = th.write(f"memory://native-not-local-{engine.name}", typed_table(20))
    files = ds.native_files()
    assert files is not None and files[0].path.startswith("memory://")
    got, want, s = both(engine, ds, "SELECT * FROM t")
    path = engine.path(s, "t")
    assert path is not None and not path.native and "not a file on a local disk" in path.reason
    assert sorted_rows(got) == sorted_rows(want)
