"""Query tensorhouse datasets from DuckDB.

``register`` puts a dataset under a table name on a connection; ``scan``
returns a relation for a one-off query (time travel without a name);
``connect`` opens a connection with tables already registered.

How DuckDB 2.0 treats a registered dataset (measured):

- It reads the schema once per registration and keeps it. A registration is
  pinned to the version it opened, unless ``refresh=True``: then each query
  re-reads the latest version when it starts (one consistent version per
  query). A schema change after registration makes the next query fail with
  a SchemaError that says to register again.
- Time travel in SQL: register one name per version (``pets_v1``,
  ``pets_v3``); DuckDB has no public way to register a Python table
  function. From Python, ``scan(con, uri, version=3)`` gives a relation.
- ``_rowid``: declared first, so ``SELECT *`` shows it (DuckDB cannot hide a
  column of a Python source) and ``count(*)``, which DuckDB answers from
  column 0, reads nothing. ``SELECT * EXCLUDE (_rowid)`` gives the dataset's
  columns; ``rowid=False`` leaves it out of the table.
- Field metadata (the tensorhouse type) does not survive DuckDB: its
  results carry plain Arrow types. The datasets registered on a connection
  are remembered (``registered_datasets``), so ``th.write`` recovers column
  types by name and the loader finds the dataset behind ``_rowid``.
- Filters DuckDB pushes (comparisons with constants, IN, IS NULL, AND/OR/NOT)
  prune chunks by their min/max statistics and are then applied exactly.

Example:
    >>> import duckdb, numpy as np, tensorhouse as th
    >>> ds = th.create("memory://doc-duck", {"label": th.ClassLabel(["cat", "dog"]), "emb": th.Embedding(2)})
    >>> _ = ds.append({"label": [0, 1, 1], "emb": np.eye(3, 2, dtype="float32")})
    >>> con = duckdb.connect()
    >>> _ = th.duckdb.register(con, "pets", "memory://doc-duck")
    >>> con.sql("SELECT label, count(*) FROM pets GROUP BY label ORDER BY label").fetchall()
    [(0, 1), (1, 2)]
    >>> th.duckdb.scan(con, "memory://doc-duck", version=0).aggregate("count(*)").fetchall()
    [(0,)]
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import duckdb

from tensorhouse.connector.arrow_dataset import TensorhouseArrowDataset, arrow_dataset
from tensorhouse.format.dataset import Dataset
from tensorhouse.types import ColumnType

# Datasets given to DuckDB, by connection, for th.write to recover column types
# that DuckDB drops. Weak: an entry lives as long as DuckDB holds the dataset.
_LOCK = threading.Lock()
_GIVEN: list[tuple[int, str | None, weakref.ref[TensorhouseArrowDataset]]] = []


def _remember(con: duckdb.DuckDBPyConnection, table: TensorhouseArrowDataset, name: str | None = None) -> None:
    with _LOCK:
        _GIVEN[:] = [(c, n, r) for c, n, r in _GIVEN if r() is not None and not (c == id(con) and n == name and name)]
        _GIVEN.append((id(con), name, weakref.ref(table)))


def _named_tables(con: Any) -> list[tuple[str | None, TensorhouseArrowDataset]]:
    with _LOCK:
        refs = [(n, r()) for c, n, r in _GIVEN if con is None or c == id(con)]
    return [(n, t) for n, t in refs if t is not None]


def _tables(con: Any) -> list[TensorhouseArrowDataset]:
    return [t for _, t in _named_tables(con)]


def dataset_behind(rel: duckdb.DuckDBPyRelation) -> Dataset | None:
    """The dataset a query reads, when the registered tables it names resolve to exactly one.

    Used by the loader to read tensors by row id. Matching is by the names the
    query text mentions, so a connection may hold several datasets.
    """
    entries = _named_tables(getattr(rel, "_con", None))  # DuckDB names a relation's connection only privately
    try:
        text = rel.sql_query()
    except duckdb.Error:
        text = ""
    mentioned = [t for n, t in entries if n and re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", text, re.IGNORECASE)]
    found = {(t.dataset.uri, t.dataset.branch_name, t.dataset.version): t.dataset for t in (mentioned or [t for _, t in entries])}
    return next(iter(found.values())) if len(found) == 1 else None


def registered_table(con: duckdb.DuckDBPyConnection, name: str) -> TensorhouseArrowDataset | None:
    """What ``register(con, name, ...)`` put under table ``name`` on ``con``, if it still holds it.

    Example:
        >>> import duckdb, tensorhouse as th
        >>> ds = th.create("memory://doc-duck-registered-table", {"x": "int64"})
        >>> con = duckdb.connect()
        >>> _ = th.duckdb.register(con, "t", ds)
        >>> th.duckdb.registered_table(con, "t").dataset.uri, th.duckdb.registered_table(con, "u")
        ('memory://doc-duck-registered-table', None)
    """
    found = [t for n, t in _named_tables(con) if n == name]
    return found[-1] if found else None


def registered_datasets(con: duckdb.DuckDBPyConnection | None = None) -> list[Dataset]:
    """The tensorhouse datasets registered (or scanned) on ``con`` and still held by it; on any
    connection when ``con`` is None. One entry per (uri, branch, version).

    Example:
        >>> import duckdb, tensorhouse as th
        >>> ds = th.create("memory://doc-duck-registered", {"x": "int64"})
        >>> con = duckdb.connect()
        >>> _ = th.duckdb.register(con, "t", ds)
        >>> [d.uri for d in th.duckdb.registered_datasets(con)]
        ['memory://doc-duck-registered']
    """
    out: dict[tuple[str, str | None, int], Dataset] = {}
    for t in _tables(con):
        d = t.dataset
        out.setdefault((d.uri, getattr(d, "branch_name", None), d.version), d)
    return list(out.values())


def column_types(result: Any) -> dict[str, set[ColumnType]]:
    """Column name -> types of the tensorhouse datasets registered on the connection of ``result``.

    A relation names its connection only through a private attribute; where
    that is missing, every dataset currently registered on any connection counts.
    """
    out: dict[str, set[ColumnType]] = {}
    for t in _tables(getattr(result, "_con", None)):
        for name, ctype in t.dataset.schema.columns:
            out.setdefault(name, set()).add(ctype)
    return out


def register(con: duckdb.DuckDBPyConnection, name: str, source: str | Dataset, *, version: int | None = None,
             tag: str | None = None, timestamp: datetime | None = None, branch: str | None = None,
             storage_options: Mapping[str, Any] | None = None, refresh: bool = False,
             rowid: bool = True) -> TensorhouseArrowDataset:  # fmt: skip
    """Register a dataset (URI or open Dataset) as table ``name`` on ``con``; returns the Arrow dataset.

    A name already registered is replaced. ``refresh=True`` makes every query
    read the latest committed version instead of the one opened here.

    Example:
        >>> import duckdb, tensorhouse as th
        >>> ds = th.create("memory://doc-duck-reg", {"x": "int64"})
        >>> _ = ds.append({"x": [1, 2, 3]})
        >>> con = duckdb.connect()
        >>> _ = th.duckdb.register(con, "t", "memory://doc-duck-reg", refresh=True)
        >>> _ = ds.append({"x": [4]})
        >>> con.sql("SELECT sum(x) FROM t").fetchall()
        [(10,)]
    """
    _check_name(name)
    table = arrow_dataset(source, version=version, tag=tag, timestamp=timestamp, branch=branch,
                          storage_options=storage_options, rowid=rowid, refresh=refresh)  # fmt: skip
    con.register(name, table)
    _remember(con, table, name)
    return table


def scan(con: duckdb.DuckDBPyConnection, source: str | Dataset, *, version: int | None = None,
         tag: str | None = None, timestamp: datetime | None = None, branch: str | None = None,
         storage_options: Mapping[str, Any] | None = None, rowid: bool = True) -> duckdb.DuckDBPyRelation:  # fmt: skip
    """A relation over one version of a dataset, for a query without a registered name.

    Example:
        >>> import duckdb, tensorhouse as th
        >>> ds = th.create("memory://doc-duck-scan", {"x": "int64"})
        >>> _ = ds.append({"x": [1, 2]})
        >>> _ = ds.append({"x": [3]})
        >>> th.duckdb.scan(duckdb.connect(), "memory://doc-duck-scan", version=1).aggregate("sum(x)").fetchall()
        [(3,)]
    """
    table = arrow_dataset(source, version=version, tag=tag, timestamp=timestamp, branch=branch,
                          storage_options=storage_options, rowid=rowid)  # fmt: skip
    _remember(con, table)
    return con.from_arrow(table)


def connect(database: str = ":memory:", *, tables: Mapping[str, str | Dataset] | None = None,
            storage_options: Mapping[str, Any] | None = None, refresh: bool = False,
            rowid: bool = True) -> duckdb.DuckDBPyConnection:  # fmt: skip
    """A new DuckDB connection with ``tables`` (name -> URI or Dataset) registered.

    Example:
        >>> import tensorhouse as th
        >>> ds = th.create("memory://doc-duck-connect", {"x": "int64"})
        >>> _ = ds.append({"x": [5]})
        >>> th.duckdb.connect(tables={"t": "memory://doc-duck-connect"}).sql("SELECT x FROM t").fetchall()
        [(5,)]
    """
    con = duckdb.connect(database)
    for name, source in (tables or {}).items():
        register(con, name, source, storage_options=storage_options, refresh=refresh, rowid=rowid)
    return con


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"a table name is a non-empty string, got {name!r}")


__all__ = ["column_types", "connect", "register", "registered_datasets", "registered_table", "scan"]
