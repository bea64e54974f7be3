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
- A table shows exactly the dataset's columns (``SELECT *``, ``NATURAL
  JOIN``, ``UNION``, ``INSERT ... SELECT *`` behave as on a native table). It
  is a view over a companion registration that also has ``_rowid`` (see
  :mod:`tensorhouse.connector.rowids`); ``rowid=True`` shows ``_rowid`` as the
  table's first column for those who want row ids in SQL.
- The companion is registered with the dataset's row count, so DuckDB's join
  order builds hash tables on the small side, and it takes from DuckDB only
  the filters that chunk statistics make it skip rows for; DuckDB keeps the
  others in its plan, where its estimates count them as they would over
  Parquet (:mod:`.duckdb_source`).
- Field metadata (the tensorhouse type) does not survive DuckDB: its
  results carry plain Arrow types. The registered tables are found again
  from a query (its connection's catalog lists the companions), so
  ``th.write`` recovers column types by name and the loader finds the
  dataset behind a query without ``_rowid``.
- Filters DuckDB offers (comparisons with constants, IN, IS NULL, AND/OR/NOT)
  are taken by the scan when they prune chunks by their min/max statistics,
  and are then applied exactly there; DuckDB applies the rest itself.

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

from collections.abc import Mapping
from datetime import datetime
from typing import Any

import duckdb

from tensorhouse.connector import native as _native
from tensorhouse.connector import rowids
from tensorhouse.connector.arrow_dataset import TensorhouseArrowDataset, arrow_dataset
from tensorhouse.connector.duckdb_source import register_counted
from tensorhouse.format.dataset import Dataset
from tensorhouse.types import ColumnType

_VIEWS_SQL = "SELECT view_name, sql FROM duckdb_views() WHERE NOT internal"


def _catalog(con_or_rel: Any) -> tuple[list[str], dict[str, str]]:
    """(companions, other views -> their SQL) on the connection of a connection or a relation.

    A relation runs SQL on its own connection through ``rel.query``: no private attribute needed.
    """
    try:
        if isinstance(con_or_rel, duckdb.DuckDBPyConnection):
            rows = con_or_rel.execute(_VIEWS_SQL).fetchall()
        else:
            rows = con_or_rel.query("__tensorhouse_probe", _VIEWS_SQL).fetchall()
    except duckdb.Error:
        return [], {}
    companions = [n for n, _ in rows if rowids.is_companion(n)]
    views = {n: sql for n, sql in rows if not n.startswith(rowids.COMPANION_PREFIX)}
    return companions, views


def _tables(con_or_rel: Any) -> list[TensorhouseArrowDataset]:
    companions, _ = _catalog(con_or_rel)
    return [t for c in companions if (t := rowids.lookup(c)) is not None]


def dataset_behind(rel: duckdb.DuckDBPyRelation) -> Dataset | None:
    """The dataset a query reads, when the registered tables it names resolve to exactly one.

    The tables are found from the query's connection catalog and its SQL,
    parsed with sqlglot (no private attribute, no regular expression).
    """
    companions, views = _catalog(rel)
    try:
        read = rowids.tables_in(rel.sql_query(), dialect="duckdb")
    except duckdb.Error:
        read = set()
    mentioned = {c for c in companions if c.lower() in read}
    for view, text in views.items():
        if view.lower() in read:
            mentioned |= {
                c for c in companions if c.lower() in rowids.tables_in(text, dialect="duckdb")
            }
    tables = [t for c in (mentioned or companions) if (t := rowids.lookup(c)) is not None]
    found = {(t.dataset.uri, t.dataset.branch_name, t.dataset.version): t.dataset for t in tables}
    return next(iter(found.values())) if len(found) == 1 else None


def rowid_relation(
    rel: duckdb.DuckDBPyRelation, heavy_of: Any
) -> tuple[duckdb.DuckDBPyRelation, Any, Any]:
    """``rel`` rewritten to return ``_rowid`` and its light columns (see :func:`.rowids.rowid_query`).

    Returns (the new relation, the rewrite, the Arrow dataset read). Raises
    :class:`~tensorhouse.connector.rowids.LateMaterializationError` when it cannot.
    """
    companions, views = _catalog(rel)
    q, table = rowids.rowid_loader_query(
        rel.sql_query(),
        dialect="duckdb",
        companions=companions,
        views=views,
        output=list(rel.columns),
        heavy_of=heavy_of,
    )
    out = rel.query("__tensorhouse_input", q.sql)
    if out is None:  # a SELECT always gives a relation
        raise rowids.LateMaterializationError(f"DuckDB returned no relation for {q.sql}")
    return out, q, table


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
    companion = _companion_behind(con, name)
    return rowids.lookup(companion) if companion is not None else None


def registered_datasets(con: duckdb.DuckDBPyConnection | None = None) -> list[Dataset]:
    """The tensorhouse datasets registered (or scanned) on ``con`` and still held by it.
    One entry per (uri, branch, version).

    Example:
        >>> import duckdb, tensorhouse as th
        >>> ds = th.create("memory://doc-duck-registered", {"x": "int64"})
        >>> con = duckdb.connect()
        >>> _ = th.duckdb.register(con, "t", ds)
        >>> [d.uri for d in th.duckdb.registered_datasets(con)]
        ['memory://doc-duck-registered']
    """
    out: dict[tuple[str, str | None, int], Dataset] = {}
    for t in _tables(con) if con is not None else []:
        d = t.dataset
        out.setdefault((d.uri, getattr(d, "branch_name", None), d.version), d)
    return list(out.values())


def column_types(result: Any) -> dict[str, set[ColumnType]]:
    """Column name -> types of the tensorhouse datasets registered on the connection of ``result``."""
    out: dict[str, set[ColumnType]] = {}
    for t in _tables(result):
        for name, ctype in t.dataset.schema.columns:
            out.setdefault(name, set()).add(ctype)
    return out


def _register_table(
    con: duckdb.DuckDBPyConnection,
    name: str,
    table: TensorhouseArrowDataset,
    rowid: bool,
    refresh: bool,
    native: bool | None = None,
) -> str:
    """The companion (with ``_rowid``) under a fresh name, and ``name`` as a view over it.

    When the version's columns are Parquet files DuckDB can read (:mod:`.native`), the view
    reads them through a native view instead, and the companion stays for row ids.
    """
    companion = rowids.companion_name(name)
    register_counted(con, companion, table, pinned=not refresh)
    rowids.remember(companion, table)
    source = _native_source(
        con, name, companion, table, rowid=rowid, refresh=refresh, native=native
    )
    old = _companion_behind(con, name)
    con.execute(f"CREATE OR REPLACE TEMP VIEW {_quote(name)} AS {source}")
    if old is not None:  # the name now reads the new companion; the old one only held memory
        _drop(con, old)
    return companion


def _native_source(
    con: duckdb.DuckDBPyConnection,
    name: str,
    companion: str,
    table: TensorhouseArrowDataset,
    *,
    rowid: bool,
    refresh: bool,
    native: bool | None,
) -> str:
    """The SELECT behind the user's name: the native view when the files allow, else the companion."""
    path = _native.choose(table, native=native, rowid=rowid, refresh=refresh, engine="duckdb")
    if path.native:
        view = companion + _native.NATIVE_SUFFIX
        failed = _native.duckdb_view(con, view, companion, path, table)
        if failed is None:
            rowids.remember(view, table, source=companion)
            _native.remember_path(table, path)
            _native.report(name, "duckdb", path)
            return f"SELECT * FROM {_quote(view)}"
        path = _native.ReadPath(False, failed)
    _native.remember_path(table, path)
    _native.report(name, "duckdb", path)
    return rowids.view_sql(companion, rowid=rowid)


def _drop(con: duckdb.DuckDBPyConnection, companion: str) -> None:
    view = companion + _native.NATIVE_SUFFIX
    if rowids.lookup(view) is not None:
        con.execute(f"DROP VIEW IF EXISTS {_quote(view)}")
        rowids.forget(view)
        _native.drop_functions(con, companion)
    con.unregister(companion)
    rowids.forget(companion)


def read_path(con: duckdb.DuckDBPyConnection, name: str) -> _native.ReadPath | None:
    """How table ``name`` is read: by DuckDB's Parquet reader (``native``) or the Python scan, and why.

    None when ``name`` is not a tensorhouse registration on ``con``.

    Example:
        >>> import duckdb, tensorhouse as th
        >>> ds = th.create("memory://doc-duck-read-path", {"x": "int64"})
        >>> _ = ds.append({"x": [1]})
        >>> con = duckdb.connect()
        >>> _ = th.duckdb.register(con, "t", ds)
        >>> th.duckdb.read_path(con, "t").native
        False
    """
    table = registered_table(con, name)
    return _native.path_of(table) if table is not None else None


def companion_of(con: duckdb.DuckDBPyConnection, name: str) -> str | None:
    """The companion table (the same rows, with ``_rowid``) behind table ``name``, if tensorhouse registered it."""
    return _companion_behind(con, name)


def _companion_behind(con: duckdb.DuckDBPyConnection, name: str) -> str | None:
    companions, views = _catalog(con)
    text = views.get(name)
    if text is None:
        return None
    read = rowids.tables_in(text, dialect="duckdb")
    hits = {rowids.rowid_source(c) for c in companions if c.lower() in read}
    return hits.pop() if len(hits) == 1 else None


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def register(
    con: duckdb.DuckDBPyConnection,
    name: str,
    source: str | Dataset,
    *,
    version: int | None = None,
    tag: str | None = None,
    timestamp: datetime | None = None,
    branch: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    refresh: bool = False,
    rowid: bool = False,
    native: bool | None = None,
) -> TensorhouseArrowDataset:
    """Register a dataset (URI or open Dataset) as table ``name`` on ``con``; returns the Arrow dataset.

    The table has exactly the dataset's columns; ``rowid=True`` adds ``_rowid``
    (int64, stable row ids) as its first column. A name already registered is
    replaced. ``refresh=True`` makes every query read the latest committed
    version instead of the one opened here.

    When the version's columns are Parquet files on a local disk, the table
    reads them with DuckDB's own Parquet reader (:mod:`.native`);
    ``native=False`` (or ``TENSORHOUSE_NATIVE=0``) keeps the Python scan.
    :func:`read_path` says which one a table uses, and why.

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
    table = arrow_dataset(
        source,
        version=version,
        tag=tag,
        timestamp=timestamp,
        branch=branch,
        storage_options=storage_options,
        rowid=True,
        refresh=refresh,
    )
    _register_table(con, name, table, rowid, refresh, native)
    return table


def scan(
    con: duckdb.DuckDBPyConnection,
    source: str | Dataset,
    *,
    version: int | None = None,
    tag: str | None = None,
    timestamp: datetime | None = None,
    branch: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    rowid: bool = False,
    native: bool | None = None,
) -> duckdb.DuckDBPyRelation:
    """A relation over one version of a dataset, for a query without a registered name.

    It reads the version's Parquet files natively when it can, as :func:`register` does.

    Example:
        >>> import duckdb, tensorhouse as th
        >>> ds = th.create("memory://doc-duck-scan", {"x": "int64"})
        >>> _ = ds.append({"x": [1, 2]})
        >>> _ = ds.append({"x": [3]})
        >>> th.duckdb.scan(duckdb.connect(), "memory://doc-duck-scan", version=1).aggregate("sum(x)").fetchall()
        [(3,)]
    """
    table = arrow_dataset(
        source,
        version=version,
        tag=tag,
        timestamp=timestamp,
        branch=branch,
        storage_options=storage_options,
        rowid=True,
    )
    companion = rowids.companion_name("scan")
    register_counted(con, companion, table, pinned=True)
    rowids.remember(companion, table)
    source = _native_source(
        con, "scan", companion, table, rowid=rowid, refresh=False, native=native
    )
    return con.sql(source)


def connect(
    database: str = ":memory:",
    *,
    tables: Mapping[str, str | Dataset] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    refresh: bool = False,
    rowid: bool = False,
    native: bool | None = None,
) -> duckdb.DuckDBPyConnection:
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
        register(
            con,
            name,
            source,
            storage_options=storage_options,
            refresh=refresh,
            rowid=rowid,
            native=native,
        )
    return con


def _check_name(name: str) -> None:
    if not isinstance(name, str) or not name:
        raise ValueError(f"a table name is a non-empty string, got {name!r}")


__all__ = [
    "column_types",
    "connect",
    "read_path",
    "register",
    "registered_datasets",
    "registered_table",
    "scan",
]
