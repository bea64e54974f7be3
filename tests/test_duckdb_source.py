"""How DuckDB plans over a registered dataset: the row count, which filters the scan takes, join sides.

The source is ``connector/duckdb_source.py``; its plans are compared with
DuckDB's over Parquet files of the same data (EXPLAIN ANALYZE in JSON). Every registration
here passes ``native=False``: these tests are about the Python scan, not DuckDB's Parquet reader.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest

import tensorhouse as th
from tensorhouse.connector import duckdb_source
from tensorhouse.connector.arrow_dataset import TensorhouseArrowDataset

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from tpch_queries import QUERIES, TABLES

SCAN = "PYTHON_ARROW_SCAN"


def _nodes(
    con: duckdb.DuckDBPyConnection, sql: str, *, analyze: bool = False
) -> list[dict[str, Any]]:
    """Every operator of the plan, depth first, as {"name", "info", "rows", "children"}."""
    text = con.sql(f"EXPLAIN ({'ANALYZE, ' if analyze else ''}FORMAT JSON) {sql}").fetchall()[0][1]
    doc = json.loads(text)
    out: list[dict[str, Any]] = []

    def walk(n: dict[str, Any]) -> dict[str, Any]:
        node = {
            "name": n["name"],
            "info": n.get("extra_info", {}),
            "rows": int(n.get("intermediate_rows", 0) or 0),
        }
        out.append(node)
        node["children"] = [walk(c) for c in n.get("children", [])]
        return node

    for op in doc["operator"] if isinstance(doc, dict) else doc:
        walk(op)
    return out


def _estimate(node: dict[str, Any]) -> int:
    return int(str(node["info"].get("Estimated Cardinality", "-1")).replace(",", ""))


@pytest.fixture(scope="module")
def sorted_and_random(tmp_path_factory: pytest.TempPathFactory) -> tuple[th.Dataset, pa.Table]:
    """``id`` sorted (chunk statistics prune it), ``label`` random (they cannot), ``x`` with nulls."""
    root = tmp_path_factory.mktemp("duck-source")
    n = 40_000
    rng = np.random.default_rng(7)
    table = pa.table(
        {
            "id": np.arange(n, dtype=np.int64),
            "label": rng.integers(0, 100, n).astype(np.int32),
            "x": pa.array([None if i % 7 == 0 else float(i) for i in range(n)]),
        }
    )
    ds = th.create(str(root / "t"), {"id": "int64", "label": "int32", "x": "float64"})
    for start in range(0, n, 5_000):  # 8 fragments, so 8 chunks per column with their own min/max
        ds.append(table.slice(start, 5_000))
    return ds, table


def test_a_predicate_that_prunes_goes_to_the_scan_and_one_that_cannot_stays_in_duckdb(
    sorted_and_random: tuple[th.Dataset, pa.Table],
) -> None:
    ds, table = sorted_and_random
    con = duckdb.connect()
    th.duckdb.register(con, "t", ds, native=False)
    con.register("native_src", table)
    con.sql("CREATE TABLE native AS SELECT * FROM native_src")
    for where in ("id < 1000", "label = 7", "id < 1000 AND label = 7", "id BETWEEN 100 AND 30000"):
        got = con.sql(f"SELECT count(*), sum(id) FROM t WHERE {where}").fetchall()
        assert got == con.sql(f"SELECT count(*), sum(id) FROM native WHERE {where}").fetchall(), (
            where
        )
    nodes = _nodes(con, "SELECT count(*) FROM t WHERE id < 1000 AND label = 7")
    scan = next(n for n in nodes if n["name"] == SCAN)
    assert '"id" < 1000' in str(scan["info"].get("Filters")), scan  # skips 7 chunks of 8: taken
    assert "label" not in str(scan["info"].get("Filters"))  # random: DuckDB filters it
    assert any(n["name"] == "FILTER" and "label = 7" in str(n["info"]) for n in nodes)
    # A filter left in DuckDB's plan counts in its estimate as over Parquet: a fifth of the rows.
    nodes = _nodes(con, "SELECT count(*) FROM t WHERE label = 7")
    filt = next(n for n in nodes if n["name"] == "FILTER")
    assert _estimate(filt) == len(table) // 5


def test_skipped_share_and_holds_no_null(sorted_and_random: tuple[th.Dataset, pa.Table]) -> None:
    ds, _ = sorted_and_random
    t = TensorhouseArrowDataset(ds)
    assert duckdb_source.skipped_share(t, pc.field("id") < 1000) == 7 / 8
    assert duckdb_source.skipped_share(t, pc.field("label") == 7) == 0.0
    assert duckdb_source.holds_no_null(t, "id") and not duckdb_source.holds_no_null(t, "x")


def test_is_not_null_is_exact_pinned_or_refreshing(tmp_path: Path) -> None:
    """IS NOT NULL is always taken; it is skipped only where the pinned version's statistics allow."""
    ds = th.create(str(tmp_path / "n"), {"k": "int64"})
    ds.append({"k": list(range(100))})
    con = duckdb.connect()
    th.duckdb.register(con, "pinned", ds, native=False)
    th.duckdb.register(con, "live", ds, refresh=True)
    q = "SELECT count(*) FROM {} WHERE k IS NOT NULL"
    assert con.sql(q.format("pinned")).fetchall() == [(100,)]
    assert con.sql(q.format("live")).fetchall() == [(100,)]
    ds.append({"k": [None, None, 5]})  # the refreshing table now reads nulls
    assert con.sql(q.format("live")).fetchall() == [(101,)]
    assert con.sql(q.format("pinned")).fetchall() == [(100,)]
    # a semi join, where DuckDB adds IS NOT NULL on the key itself
    got = con.sql("SELECT count(*) FROM live a WHERE EXISTS (SELECT 1 FROM live b WHERE b.k = a.k)")
    assert got.fetchall() == [(101,)]


def test_is_not_null_is_not_evaluated_where_pinned_statistics_prove_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ds = th.create(str(tmp_path / "n"), {"k": "int64"})
    ds.append({"k": list(range(100))})
    scans: list[str] = []
    real = TensorhouseArrowDataset.scanner

    def spy(
        self: TensorhouseArrowDataset, columns: Any = None, filter: Any = None, **kw: Any
    ) -> Any:
        if columns != []:  # the scan DuckDB reads, not a planning-time statistics probe
            scans.append(str(filter))
        return real(self, columns=columns, filter=filter, **kw)

    monkeypatch.setattr(TensorhouseArrowDataset, "scanner", spy)
    con = duckdb.connect()
    th.duckdb.register(con, "pinned", ds, native=False)
    th.duckdb.register(con, "live", ds, refresh=True)
    for name in ("pinned", "live"):
        scans.clear()
        assert con.sql(f"SELECT sum(k) FROM {name} WHERE k IS NOT NULL").fetchall() == [(4950,)]
        assert scans == (["None"] if name == "pinned" else ["is_valid(k)"]), name


def test_join_builds_on_the_small_side(tmp_path: Path) -> None:
    """bench_sql's join: a big dataset joined with a small Parquet table hashes the small one."""
    n = 20_000
    ds = th.create(str(tmp_path / "big"), {"id": "int64", "v": "float32"})
    ds.append({"id": np.arange(n), "v": np.ones(n, np.float32)})
    pq.write_table(pa.table({"id": np.arange(0, n, 100)}), str(tmp_path / "small.parquet"))
    con = duckdb.connect()
    th.duckdb.register(con, "big", ds, native=False)
    q = f"SELECT count(*) FROM big b JOIN '{tmp_path / 'small.parquet'}' s ON b.id = s.id"
    assert con.sql(q).fetchall() == [(n // 100,)]
    join = next(x for x in _nodes(con, q, analyze=True) if x["name"] == "HASH_JOIN")
    probe, build = join["children"]
    assert build["rows"] == n // 100 and probe["rows"] == n  # hashed: the 200 Parquet rows


def test_duckdb_private_source_contract() -> None:
    """connector/duckdb_source.py uses DuckDB internals; this fails loudly when a version changes them."""
    version = tuple(int(x) for x in duckdb.__version__.split(".")[:2])
    assert version in duckdb_source.TESTED_VERSIONS, (
        f"DuckDB {duckdb.__version__}: re-check duckdb._sources (PyArrowDatasetSource, to_arrow, nodes.Col and "
        "nodes.Postfix, and when rows(), accepts() and stream() are called) and "
        "DuckDBPyConnection._register_arrow_source, then add the version to TESTED_VERSIONS"
    )
    assert duckdb_source.supported()
    ds = th.create("memory://duck-source-contract", {"k": "int64"})
    ds.append({"k": list(range(5000))})
    con = duckdb.connect()
    assert duckdb_source.register_counted(con, "t", TensorhouseArrowDataset(ds))
    plan = con.sql("EXPLAIN SELECT count(*) FROM t").fetchall()[0][1].replace(",", "")
    assert "~5000 rows" in plan  # rows() reached the optimizer
    # accepts() is offered IS NOT NULL as Postfix(Col) and its answer decides the plan
    nodes = _nodes(con, "SELECT count(*) FROM t WHERE k IS NOT NULL AND k % 2 = 0")
    assert '"k" IS NOT NULL' in str(next(n for n in nodes if n["name"] == SCAN)["info"])


# -- TPC-H: every query's join sides, against DuckDB over Parquet ------------------------
def _tpchgen() -> str | None:
    here = Path(sys.executable).parent / "tpchgen-cli"
    return str(here) if here.exists() else shutil.which("tpchgen-cli")


@pytest.fixture(scope="module")
def tpch_cons(
    tmp_path_factory: pytest.TempPathFactory,
) -> tuple[duckdb.DuckDBPyConnection, duckdb.DuckDBPyConnection]:
    exe = _tpchgen()
    if exe is None:
        pytest.skip("tpchgen-cli is not installed (pip install tpchgen-cli)")
    root = tmp_path_factory.mktemp("tpch-plans")
    src = root / "parquet"
    subprocess.run(
        [exe, "parquet", "-s", "0.01", f"--output-dir={src}"], check=True, stdout=subprocess.DEVNULL
    )
    on_th, on_pq = duckdb.connect(), duckdb.connect()
    for t in TABLES:
        th.ingest.parquet(str(src / f"{t}.parquet"), str(root / "th" / t), progress=False)
        th.duckdb.register(on_th, t, str(root / "th" / t), native=False)
        on_pq.sql(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{src / t}.parquet')")
    return on_th, on_pq


def _build_rows(con: duckdb.DuckDBPyConnection, sql: str) -> int:
    """Rows hashed by every hash join of the plan (its build, right-hand, inputs)."""
    return sum(
        n["children"][1]["rows"]
        for n in _nodes(con, sql, analyze=True)
        if n["name"] == "HASH_JOIN" and len(n["children"]) == 2
    )


@pytest.mark.parametrize("q", sorted(QUERIES))
def test_tpch_join_sides_are_no_worse_than_over_parquet(
    tpch_cons: tuple[duckdb.DuckDBPyConnection, duckdb.DuckDBPyConnection], q: int
) -> None:
    """A hash table over tensorhouse holds at most a few times the rows it holds over Parquet.

    The slack covers DuckDB's runtime join filters, which shrink Parquet scans (and so the
    build inputs above them) but never reach a Python scan. Before the source left the filters
    it cannot prune by in DuckDB's plan, Q4, Q5 and Q21 hashed 5x to 70x Parquet's rows.
    """
    on_th, on_pq = tpch_cons
    th_rows, pq_rows = _build_rows(on_th, QUERIES[q]), _build_rows(on_pq, QUERIES[q])
    if q == 13:
        # Known: the LEFT JOIN's NOT LIKE on orders is never offered to a Python scan, and DuckDB
        # estimates its filter at 4% of orders (over Parquet: 80%), so it hashes orders rather than
        # customer. When this fails, DuckDB changed; the exception can go.
        assert th_rows > 5 * pq_rows
        return
    assert th_rows <= 4 * pq_rows + 1000, (q, th_rows, pq_rows)
