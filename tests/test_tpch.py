"""TPC-H at a tiny scale factor: all 8 tables ingest untouched, and queries equal DuckDB over Parquet exactly.

Data comes from ``tpchgen-cli`` (a dev dependency, on PyPI), generated once
per test session; the queries are the benchmark's (``benchmarks/tpch_queries.py``).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import datafusion
import duckdb
import pyarrow.parquet as pq
import pytest

import tensorhouse as th

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
from tpch_queries import QUERIES, TABLES

SF = "0.01"


def _tpchgen() -> str | None:
    here = Path(sys.executable).parent / "tpchgen-cli"
    return str(here) if here.exists() else shutil.which("tpchgen-cli")


@pytest.fixture(scope="module")
def tpch(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    exe = _tpchgen()
    if exe is None:
        pytest.skip("tpchgen-cli is not installed (pip install tpchgen-cli)")
    root = tmp_path_factory.mktemp("tpch")
    src = root / "parquet"
    subprocess.run(
        [exe, "parquet", "-s", SF, f"--output-dir={src}"], check=True, stdout=subprocess.DEVNULL
    )
    for t in TABLES:
        th.ingest.parquet(str(src / f"{t}.parquet"), str(root / "th" / t), progress=False)
    return src, root / "th"


def test_every_table_ingests_untouched(tpch: tuple[Path, Path]) -> None:
    src, dst = tpch
    for t in TABLES:
        want = pq.read_table(src / f"{t}.parquet")
        got = th.open(str(dst / t)).to_table()
        assert [f.type for f in got.schema] == [f.type for f in want.schema], (
            t
        )  # date32, decimal128, string_view
        assert got.to_pylist() == want.to_pylist(), t


def _rows(table: Any) -> list[tuple[Any, ...]]:
    cols = [c.to_pylist() for c in table.columns]
    return list(zip(*cols, strict=True))


@pytest.mark.parametrize("q", [1, 3, 5, 6, 10, 14, 15, 18])
def test_queries_equal_duckdb_over_parquet_exactly(tpch: tuple[Path, Path], q: int) -> None:
    src, dst = tpch
    on_th, on_pq = duckdb.connect(), duckdb.connect()
    for t in TABLES:
        th.duckdb.register(on_th, t, str(dst / t), rowid=False)
        on_pq.sql(f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{src / t}.parquet')")
    got, want = (
        _rows(on_th.sql(QUERIES[q]).to_arrow_table()),
        _rows(on_pq.sql(QUERIES[q]).to_arrow_table()),
    )
    assert got and got == want  # Decimal == Decimal: money exactly, to the cent


@pytest.mark.parametrize("q", [1, 6, 15])
def test_queries_equal_datafusion_over_parquet_exactly(tpch: tuple[Path, Path], q: int) -> None:
    src, dst = tpch
    on_th, on_pq = datafusion.SessionContext(), datafusion.SessionContext()
    for t in TABLES:
        th.datafusion.register(on_th, t, str(dst / t), rowid=False)
        on_pq.register_parquet(t, str(src / f"{t}.parquet"))
    assert _rows(on_th.sql(QUERIES[q]).to_arrow_table()) == _rows(
        on_pq.sql(QUERIES[q]).to_arrow_table()
    )
