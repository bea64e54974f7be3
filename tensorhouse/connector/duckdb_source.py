"""The one place that touches DuckDB internals: registering a dataset with its row count.

Why: DuckDB plans joins from cardinality estimates. For a Python Arrow
dataset its scan source (``duckdb._sources.pyarrow.PyArrowDatasetSource``)
answers ``rows()`` with None, so the optimizer assumes about one row and
builds the hash table of a join on the tensorhouse side, however big
(measured on 1M rows joined with a 1,000-row Parquet table: 13x slower,
see ``notes`` in the issue-12 report). A pandas DataFrame or a pyarrow
Table reports its length; a Dataset cannot through any public call.

What: a subclass of that source whose ``rows()`` returns the snapshot's live
row count (known from the commit log, no I/O), registered through the
connection's ``_register_arrow_source`` hook (``con.register`` accepts only
the pyarrow classes themselves). Both names are private to DuckDB 2.0.x, so
:func:`supported` checks them once and everything falls back to the public
``con.register`` (correct, only the join order suffers) when they are gone.
``tests/test_duckdb.py::test_duckdb_private_source_contract`` fails loudly on
a DuckDB version that changes them.

Example:
    >>> import duckdb, tensorhouse as th
    >>> from tensorhouse.connector.arrow_dataset import TensorhouseArrowDataset
    >>> ds = th.create("memory://doc-duck-source", {"x": "int64"})
    >>> _ = ds.append({"x": list(range(5000))})
    >>> con = duckdb.connect()
    >>> register_counted(con, "t", TensorhouseArrowDataset(ds))
    True
    >>> "5000" in con.sql("EXPLAIN SELECT * FROM t").fetchall()[0][1].replace(",", "")
    True
"""

from __future__ import annotations

import functools
from typing import Any

import duckdb

#: DuckDB versions whose internals this module was written against (major, minor).
TESTED_VERSIONS = ((2, 0),)


@functools.cache
def _source_class() -> type | None:
    try:
        from duckdb._sources.pyarrow import PyArrowDatasetSource
    except ImportError:
        return None
    if not callable(getattr(duckdb.DuckDBPyConnection, "_register_arrow_source", None)):
        return None

    class CountedDatasetSource(PyArrowDatasetSource):
        """DuckDB's own dataset source, plus the row count the optimizer needs."""

        def rows(self) -> int | None:
            try:
                return int(self.obj.count_rows())
            except Exception:  # an estimate only: never fail a query for it
                return None

    return CountedDatasetSource


def supported() -> bool:
    """Whether this DuckDB has the internals :func:`register_counted` uses."""
    return _source_class() is not None


def register_counted(con: Any, name: str, table: Any) -> bool:
    """Register ``table`` (a pyarrow Dataset subclass) as ``name`` with its row count; False when
    only the plain registration (no row count) was possible."""
    cls = _source_class()
    if cls is None:
        con.register(name, table)
        return False
    con._register_arrow_source(name, cls(table))
    return True


__all__ = ["TESTED_VERSIONS", "register_counted", "supported"]
