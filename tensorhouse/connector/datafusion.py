"""Query tensorhouse datasets from DataFusion.

``register`` puts a dataset under a table name on a ``SessionContext``;
``install`` adds the table function ``tensorhouse(uri [, at])`` for time
travel in SQL, ``nearest(uri, column, [..], k)`` for vector search
(:mod:`tensorhouse.index.sql`), and the tensor UDFs when they are available.
``context()`` makes a SessionContext with all of that whose ``sql`` types
the tensor UDFs for each query's columns; ``sql(ctx, query)`` does the
same on any context (DataFusion 55 gives a Python UDF one signature per
name: see :mod:`tensorhouse.udfs.datafusion`).

How DataFusion 55 treats a registered dataset (measured):

- ``get_fragments(filter)`` once per query, then one partition per fragment;
  a fragment is a contiguous row range (at most ``FRAGMENT_ROWS`` rows, never
  across a tensorhouse fragment), and fragments whose statistics rule the
  filter out are not returned at all.
- Field metadata survives DataFusion for columns selected as they are, so
  ``th.write`` of a DataFusion result keeps tensorhouse types exactly.
- A table shows exactly the dataset's columns: it is a view over a
  companion registration that also has ``_rowid`` (DataFusion has no system
  columns; see :mod:`tensorhouse.connector.rowids`). ``rowid=True`` shows
  ``_rowid`` as the first column. The loader finds the companion in a
  DataFrame's logical plan (views are inlined there) and rewrites the plan's
  SQL (DataFusion's own unparser, then sqlglot) to add ``_rowid``.
- The table function takes **positional** arguments only: DataFusion's SQL
  planner rejects named arguments (``version => 3``) for Python table
  functions with "Unsupported function argument type". The second argument
  picks the version by its type: an integer is a version number, a string a
  tag, a timestamp the last commit at or before it; NULL or nothing means the
  latest. A third argument names a branch. The function never calls the
  SessionContext (doing so from inside a table function panicked).

Example:
    >>> import datafusion, numpy as np, tensorhouse as th
    >>> ds = th.create("memory://doc-df", {"label": th.ClassLabel(["cat", "dog"]), "emb": th.Embedding(2)})
    >>> _ = ds.append({"label": [0, 1, 1], "emb": np.eye(3, 2, dtype="float32")})
    >>> ctx = datafusion.SessionContext()
    >>> _ = th.datafusion.register(ctx, "pets", "memory://doc-df")
    >>> ctx.sql("SELECT count(*) AS n FROM pets WHERE label = 1").to_pydict()
    {'n': [2]}
    >>> th.datafusion.install(ctx)
    >>> ctx.sql("SELECT count(*) AS n FROM tensorhouse('memory://doc-df', 0)").to_pydict()
    {'n': [0]}
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any

import datafusion
import pyarrow as pa

from tensorhouse.connector import native as _native
from tensorhouse.connector import rowids
from tensorhouse.connector.arrow_dataset import TensorhouseArrowDataset, arrow_dataset
from tensorhouse.format.dataset import Dataset
from tensorhouse.types import ROWID


def register(
    ctx: datafusion.SessionContext,
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
    """Register a dataset (URI or open Dataset) as table ``name`` on ``ctx``; returns the Arrow dataset.

    The table has exactly the dataset's columns; ``rowid=True`` adds
    ``_rowid`` (int64, stable row ids) first. A name already registered is replaced. ``refresh=True`` makes every query
    read the latest committed version instead of the one opened here.

    When the version's columns are Parquet files on a local disk, the table
    reads them with DataFusion's own Parquet reader (:mod:`.native`);
    ``native=False`` (or ``TENSORHOUSE_NATIVE=0``) keeps the Python scan.
    :func:`read_path` says which one a table uses, and why.

    Example:
        >>> import datafusion, tensorhouse as th
        >>> ds = th.create("memory://doc-df-reg", {"x": "int64"})
        >>> _ = ds.append({"x": [1, 2, 3]})
        >>> ctx = datafusion.SessionContext()
        >>> _ = th.datafusion.register(ctx, "t", ds)
        >>> ctx.sql("SELECT sum(x) AS s FROM t").to_pydict()
        {'s': [6]}
    """
    if not isinstance(name, str) or not name:
        raise ValueError(f"a table name is a non-empty string, got {name!r}")
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
    # DataFusion folds a registered name to lower case, as it does unquoted SQL names; so the
    # companion is made lower-case (the view's SQL quotes it) and the user's name is registered
    # as register_dataset would register it: "T" is table t, as for a native table.
    companion = rowids.companion_name(name).lower()
    ctx.register_dataset(companion, table)
    rowids.remember(companion, table, owner=ctx)
    view = _native_view(ctx, name, companion, table, rowid=rowid, refresh=refresh, native=native)
    if ctx.table_exist(name):
        ctx.deregister_table(name)
    ctx.register_view(name, view)
    return table


def _native_view(
    ctx: datafusion.SessionContext,
    name: str,
    companion: str,
    table: TensorhouseArrowDataset,
    *,
    rowid: bool,
    refresh: bool,
    native: bool | None,
) -> datafusion.DataFrame:
    """What the user's name reads: the version's Parquet files when they allow, else the companion."""
    path = _native.choose(table, native=native, rowid=rowid, refresh=refresh, engine="datafusion")
    if path.native:
        prefix = companion + _native.NATIVE_SUFFIX
        try:
            df, names = _native.datafusion_view(ctx, prefix, table, path)
        except Exception as err:  # DataFusion raises its own exception types; the Python scan works
            path = _native.ReadPath(False, f"DataFusion could not read the files natively: {err}")
        else:
            for n in names:
                rowids.remember(n, table, owner=ctx, source=companion)
            _native.remember_path(table, path)
            _native.report(name, "datafusion", path)
            return df
    _native.remember_path(table, path)
    _native.report(name, "datafusion", path)
    return ctx.sql(rowids.view_sql(companion, rowid=rowid))


def read_path(ctx: datafusion.SessionContext, name: str) -> _native.ReadPath | None:
    """How table ``name`` is read: by DataFusion's Parquet reader (``native``) or the Python scan, and why.

    None when ``name`` is not a tensorhouse registration on ``ctx``.

    Example:
        >>> import datafusion, tensorhouse as th
        >>> ds = th.create("memory://doc-df-read-path", {"x": "int64"})
        >>> _ = ds.append({"x": [1]})
        >>> ctx = datafusion.SessionContext()
        >>> _ = th.datafusion.register(ctx, "t", ds)
        >>> th.datafusion.read_path(ctx, "t").native  # a memory:// store has no local files
        False
    """
    table = registered_table(ctx, name)
    return _native.path_of(table) if table is not None else None


def _literal(arg: Any, position: int, fname: str) -> Any:
    try:
        value = arg.python_value()
    except Exception as err:  # DataFusion raises its own exception types for non-literals
        raise ValueError(f"{fname}(): argument {position} must be a constant, got {arg}") from err
    return value.as_py() if isinstance(value, pa.Scalar) else value


def table_function(
    *,
    storage_options: Mapping[str, Any] | None = None,
    rowid: bool = False,
    name: str = "tensorhouse",
) -> Callable[..., TensorhouseArrowDataset]:
    """The body of the ``tensorhouse(uri [, at [, branch]])`` table function (see the module notes)."""

    def tensorhouse_table(*args: Any) -> TensorhouseArrowDataset:
        if not 1 <= len(args) <= 3:
            raise ValueError(
                f"{name}(uri [, version | tag | timestamp [, branch]]) takes 1 to 3 arguments, "
                f"got {len(args)}"
            )
        uri = _literal(args[0], 1, name)
        if not isinstance(uri, str):
            raise ValueError(
                f"{name}(): the first argument is the dataset URI as a string, got {uri!r}"
            )
        at = _literal(args[1], 2, name) if len(args) > 1 else None
        branch = _literal(args[2], 3, name) if len(args) > 2 else None
        if branch is not None and not isinstance(branch, str):
            raise ValueError(f"{name}(): the branch is a string, got {branch!r}")
        travel: dict[str, Any] = {}
        if isinstance(at, bool):
            raise ValueError(
                f"{name}(): a version is an integer, a tag a string, a time a timestamp; got {at!r}"
            )
        if isinstance(at, int):
            travel["version"] = at
        elif isinstance(at, str):
            travel["tag"] = at
        elif isinstance(at, datetime):
            travel["timestamp"] = at
        elif at is not None:
            raise ValueError(
                f"{name}(): a version is an integer, a tag a string, a time a timestamp; got {at!r}"
            )
        return arrow_dataset(
            uri, branch=branch, storage_options=storage_options, rowid=rowid, **travel
        )

    return tensorhouse_table


def install(
    ctx: datafusion.SessionContext,
    *,
    name: str = "tensorhouse",
    storage_options: Mapping[str, Any] | None = None,
    rowid: bool = False,
) -> None:
    """Register the ``tensorhouse(...)`` table function on ``ctx``, and the tensor UDFs if installed.

    Example:
        >>> import datafusion, tensorhouse as th
        >>> ds = th.create("memory://doc-df-install", {"x": "int64"})
        >>> _ = ds.append({"x": [1, 2]})
        >>> _ = ds.append({"x": [3]})
        >>> ctx = datafusion.SessionContext()
        >>> th.datafusion.install(ctx)
        >>> ctx.sql("SELECT sum(x) AS s FROM tensorhouse('memory://doc-df-install', 1)").to_pydict()
        {'s': [3]}
    """
    fn = table_function(storage_options=storage_options, rowid=rowid, name=name)
    ctx.register_udtf(datafusion.udtf(fn, name))
    # Vector search in SQL: nearest(uri, column, [..], k [, where [, version]]) (tensorhouse.index.sql).
    from tensorhouse.index.sql import install as install_nearest

    install_nearest(ctx, storage_options=storage_options)
    _register_udfs(ctx)


class TensorhouseContext(datafusion.SessionContext):
    """A DataFusion SessionContext whose ``sql`` types the tensor UDFs for each query.

    Everything else is DataFusion's own. Before planning, ``sql`` registers
    each tensor UDF the query calls for the Arrow types of its arguments
    (:func:`tensorhouse.udfs.datafusion.prepare`), so ``tensor_sum(mask)``
    works on a ``uint8[6][7][3]`` column, a ragged tensor, an embedding or
    a decoded image alike, as in DuckDB. Make one with :func:`context`.
    """

    def sql(
        self,
        query: str,
        options: Any = None,
        param_values: dict[str, Any] | None = None,
        **named_params: Any,
    ) -> datafusion.DataFrame:
        udfs = _udf_module()
        base = super().sql
        if udfs is None:
            return base(query, options, param_values, **named_params)
        return udfs.plan(self, query, lambda q: base(q, options, param_values, **named_params))


def context(
    config: datafusion.SessionConfig | None = None,
    runtime: datafusion.RuntimeEnvBuilder | None = None,
    *,
    storage_options: Mapping[str, Any] | None = None,
) -> TensorhouseContext:
    """A SessionContext with :func:`install` done whose ``ctx.sql`` types the tensor UDFs per query.

    Example:
        >>> import numpy as np, tensorhouse as th
        >>> ds = th.create("memory://doc-df-ctx", {"mask": th.Tensor("uint8", (2, 3)), "emb": th.Embedding(2)})
        >>> _ = ds.append({"mask": np.arange(12, dtype="uint8").reshape(2, 2, 3), "emb": np.eye(2, dtype="float32")})
        >>> ctx = th.datafusion.context()
        >>> _ = th.datafusion.register(ctx, "scans", ds)
        >>> ctx.sql("SELECT tensor_sum(mask) AS s, tensor_sum(emb) AS e, tensor_shape(mask) AS shape FROM scans").to_pydict()
        {'s': [15.0, 51.0], 'e': [1.0, 1.0], 'shape': [[2, 3], [2, 3]]}
    """
    ctx = TensorhouseContext(config, runtime)
    install(ctx, storage_options=storage_options)
    return ctx


def sql(ctx: datafusion.SessionContext, query: str, **kwargs: Any) -> datafusion.DataFrame:
    """``ctx.sql(query, **kwargs)`` on any SessionContext, with the tensor UDFs typed for this query.

    Example:
        >>> import datafusion, numpy as np, tensorhouse as th
        >>> ds = th.create("memory://doc-df-sql", {"depth": th.Tensor("float32", (None, None))})
        >>> _ = ds.append({"depth": [np.ones((2, 3), "float32"), np.ones((1, 4), "float32")]})
        >>> ctx = datafusion.SessionContext()
        >>> _ = th.datafusion.register(ctx, "scans", ds)
        >>> th.datafusion.sql(ctx, "SELECT tensor_size(depth) AS n FROM scans").to_pydict()
        {'n': [6, 4]}
    """
    return _typed_sql(ctx, query, **kwargs)


def _typed_sql(ctx: datafusion.SessionContext, query: str, **kwargs: Any) -> datafusion.DataFrame:
    udfs = _udf_module()
    if udfs is None:
        return ctx.sql(query, **kwargs)
    return udfs.sql(ctx, query, **kwargs)


def _udf_module() -> Any:
    # The UDF package is optional here (see _register_udfs); its DataFusion half imports lazily.
    try:
        return importlib.import_module("tensorhouse.udfs.datafusion")
    except ImportError:
        return None


def _register_udfs(ctx: datafusion.SessionContext) -> None:
    # The UDF package is written separately; install works with or without it.
    try:
        udfs = importlib.import_module("tensorhouse.udfs")
    except ImportError:
        return
    hook = getattr(udfs, "register", None)
    if callable(hook):
        hook(ctx)


def rowid_dataframe(
    df: datafusion.DataFrame, heavy_of: Callable[[Any], set[str]]
) -> tuple[datafusion.DataFrame, Any, Any]:
    """``df`` rewritten to return ``_rowid`` and its light columns (see :func:`.rowids.rowid_query`).

    DataFusion inlines views into the logical plan, so the plan's SQL (from
    DataFusion's own unparser) names the companion table directly; the
    rewritten SQL runs on the SessionContext the companion was registered
    on. Returns (the new DataFrame, the rewrite, the Arrow dataset read).
    """
    from datafusion.unparser import Dialect, Unparser

    try:
        sql = Unparser(Dialect.default()).plan_to_sql(df.logical_plan())
    except Exception as err:  # DataFusion raises its own exception types
        raise rowids.LateMaterializationError(
            f"DataFusion cannot write this DataFrame's plan back as SQL ({err}); select {ROWID} from a table "
            "registered with rowid=True"
        ) from None
    read = rowids.tables_in(sql, dialect=_DIALECT)
    companions = [t for t in _companion_names(sql) if t.lower() in read and rowids.is_companion(t)]
    q, table = rowids.rowid_loader_query(
        sql,
        dialect=_DIALECT,
        companions=companions,
        views={},
        output=df.schema().names,
        heavy_of=heavy_of,
    )
    ctx = rowids.owner_of(q.companion)
    if ctx is None:
        raise rowids.LateMaterializationError(f"the SessionContext of {q.companion} is gone")
    # Re-planned from text, so tensor UDFs must be typed for it again (another query may have
    # re-registered them since the original DataFrame was planned).
    return _typed_sql(ctx, q.sql), q, table


def companion_of(ctx: datafusion.SessionContext, name: str) -> str | None:
    """The companion table (the same rows, with ``_rowid``) behind table ``name``, if tensorhouse registered it."""
    from datafusion.unparser import Dialect, Unparser

    try:
        sql = Unparser(Dialect.default()).plan_to_sql(ctx.table(name).logical_plan())
    except Exception:  # not a table, or a plan DataFusion cannot write as SQL
        return None
    found = {rowids.rowid_source(t) for t in _companion_names(sql) if rowids.is_companion(t)}
    return found.pop() if len(found) == 1 else None


def registered_table(ctx: datafusion.SessionContext, name: str) -> TensorhouseArrowDataset | None:
    """What ``register(ctx, name, ...)`` put under table ``name``, if it is still registered."""
    companion = companion_of(ctx, name)
    return rowids.lookup(companion) if companion is not None else None


_DIALECT = (
    "postgres"  # closest to DataFusion's SQL among sqlglot's dialects (double-quoted identifiers)
)


def _companion_names(sql: str) -> list[str]:
    import sqlglot
    from sqlglot import exp

    return sorted({t.name for t in sqlglot.parse_one(sql, read=_DIALECT).find_all(exp.Table)})


__all__ = [
    "TensorhouseContext",
    "companion_of",
    "context",
    "install",
    "read_path",
    "register",
    "registered_table",
    "rowid_dataframe",
    "sql",
    "table_function",
]
