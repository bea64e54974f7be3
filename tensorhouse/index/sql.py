"""Vector search from the SQL engines: the index path of ``th.sql.nearest``, and the DataFusion
table function ``nearest(uri, column, query, k [, where [, version]])``.

``th.sql.nearest(con_or_ctx, table, ...)`` finds the tensorhouse dataset
behind ``table`` (the registration's companion table, which has ``_rowid``;
DataFusion also: the ``_rowid`` field's metadata) and, when the column has an
index, searches it. A ``where`` condition is SQL of the engine: the engine
evaluates it (``SELECT _rowid FROM <companion> WHERE ...``, reading only the
columns it names) and the search is restricted to those row ids, inside the
index search. The rows are then read by row id and returned with the same
columns and types as the brute-force query. Tables that are not tensorhouse
datasets and ``exact=True`` use brute force.

The table function runs in DataFusion's SQL:

    SELECT * FROM nearest('s3://bucket/pets', 'embedding', [0.1, 0.2, ...], 10)
    SELECT * FROM nearest('pets', 'embedding', [..], 10, 'label = 3', 7)   -- filter, version 7

Its ``where`` uses tensorhouse's predicate language (as ``ds.delete``), since
DataFusion gives a table function constants only. Arguments are positional
(DataFusion rejects named arguments for Python table functions).

Example:
    >>> import datafusion, numpy as np, tensorhouse as th
    >>> ds = th.create("memory://doc-index-sql", {"id": "int64", "emb": th.Embedding(2)})
    >>> _ = ds.append({"id": [1, 2, 3], "emb": np.array([[1, 0], [0.6, 0.8], [0, 1]], "float32")})
    >>> _ = ds.create_index("emb", progress=False)
    >>> ctx = datafusion.SessionContext()
    >>> install(ctx)
    >>> ctx.sql("SELECT id FROM nearest('memory://doc-index-sql', 'emb', [0.0, 1.0], 2)").to_pydict()
    {'id': [3, 2]}
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from tensorhouse.errors import TensorhouseError
from tensorhouse.format.dataset import Dataset
from tensorhouse.format.dataset import open as open_dataset
from tensorhouse.index.errors import VectorSearchError
from tensorhouse.index.search import SCORE, column_index, nearest, rows_table, search
from tensorhouse.types import ROWID


def _datafusion_dataset(ctx: Any, table: str) -> Dataset | None:
    from tensorhouse.connector.arrow_dataset import ROWID_DATASET_KEY

    schema = ctx.table(table).schema()
    if ROWID not in schema.names:  # row ids are opt-in: the registration's companion has them
        from tensorhouse.connector import datafusion as thdf

        registered = thdf.registered_table(ctx, table)
        if registered is None:
            return None
        registered.count_rows()  # a refreshing registration moves to the latest version here, as a query would
        return registered.dataset
    raw = (schema.field(ROWID).metadata or {}).get(ROWID_DATASET_KEY)
    if not raw:
        return None
    src = json.loads(raw)
    from tensorhouse.connector import datafusion as thdf

    registered = thdf.registered_table(ctx, table)
    same = (
        registered is not None
        and ROWID in registered.schema.names
        and registered.schema.field(ROWID).metadata == schema.field(ROWID).metadata
    )
    if registered is not None and same:
        registered.count_rows()  # a refreshing registration moves to the latest version here, as a query would
        return registered.dataset  # keeps the registration's storage options (S3 credentials)
    try:
        return open_dataset(src["uri"], version=src.get("version"), branch=src.get("branch"))
    except (
        TensorhouseError,
        OSError,
    ):  # e.g. S3 without the registration's credentials: brute force
        return None


def _duckdb_dataset(con: Any, table: str) -> Dataset | None:
    from tensorhouse.connector import duckdb as thduck

    registered = thduck.registered_table(con, table)
    if registered is None or ROWID not in registered.schema.names:
        return None
    registered.count_rows()  # a refreshing registration moves to the latest version here, as a query would
    return registered.dataset


def _with_rowid(con_or_ctx: Any, engine: str, table: str, tbl_sql: str) -> str:
    """The table to read ``_rowid`` from: the registration's companion (row ids are opt-in on the table)."""
    if engine == "duckdb":
        from tensorhouse.connector import duckdb as thduck

        companion = thduck.companion_of(con_or_ctx, table)
    else:
        from tensorhouse.connector import datafusion as thdf

        companion = thdf.companion_of(con_or_ctx, table)
    return f'"{companion}"' if companion is not None else tbl_sql


def dataset_behind(con_or_ctx: Any, engine: str, table: str) -> Dataset | None:
    """The tensorhouse dataset registered (with ``_rowid``) as ``table``, or None."""
    return (
        _duckdb_dataset(con_or_ctx, table)
        if engine == "duckdb"
        else _datafusion_dataset(con_or_ctx, table)
    )


def indexed_nearest(
    con_or_ctx: Any,
    engine: str,
    table: str,
    column: str,
    query: Sequence[float] | np.ndarray,
    *,
    k: int,
    where: str | None,
    metric: str | None,
    columns: Sequence[str] | None,
    tbl_sql: str,
    cols_sql: str,
) -> pa.Table | None:
    """The index path of ``th.sql.nearest``; None when the table or column has no index to use."""
    ds = dataset_behind(con_or_ctx, engine, table)
    if ds is None or column not in ds.schema or column_index(ds, column, None) is None:
        return None
    allowed = None
    if where is not None:
        sql = (
            f"SELECT {ROWID} FROM {_with_rowid(con_or_ctx, engine, table, tbl_sql)} WHERE ({where})"
        )
        ids = con_or_ctx.sql(sql).to_arrow_table()
        allowed = np.sort(ids.column(ROWID).to_numpy())
    hits, _ = search(ds, column, query, k=k, metric=metric, allowed_rowids=allowed)
    # The same columns and types as the brute-force query: the engine's own schema of them.
    target = con_or_ctx.sql(f"SELECT {cols_sql} FROM {tbl_sql} LIMIT 0").to_arrow_table().schema
    names = list(target.names)
    got = rows_table(ds, hits, [n for n in names if n != ROWID], with_rowid=ROWID in names)
    got = got.select([*names, SCORE])
    # DuckDB scores FLOAT[n] vectors in float32 (array_cosine_similarity & co); DataFusion's UDF in float64.
    single = engine == "duckdb" and ds.schema[column].storage_dtype in ("float16", "float32")
    fields = [target.field(n) for n in names] + [
        pa.field(SCORE, pa.float32() if single else pa.float64())
    ]
    return pa.Table.from_arrays(
        [got.column(n).cast(f.type) for n, f in zip([*names, SCORE], fields, strict=True)],
        schema=pa.schema(fields),
    )


def _const(arg: Any, position: int) -> Any:
    try:
        value = arg.python_value()
    except Exception as err:  # DataFusion raises its own exception types for non-constants
        raise VectorSearchError(
            f"nearest(): argument {position} must be a constant, got {arg}"
        ) from err
    return value.as_py() if isinstance(value, pa.Scalar) else value


def table_function(*, storage_options: Mapping[str, Any] | None = None) -> Callable[..., Any]:
    """The body of the DataFusion table function ``nearest(uri, column, query, k [, where [, version]])``."""
    import pyarrow.dataset as pads

    def nearest_table(*args: Any) -> pads.Dataset:
        if not 4 <= len(args) <= 6:
            raise VectorSearchError(
                "nearest(uri, column, query, k [, where [, version]]) takes 4 to 6 arguments, "
                f"got {len(args)}"
            )
        uri, column, query, k = (_const(a, i + 1) for i, a in enumerate(args[:4]))
        where = _const(args[4], 5) if len(args) > 4 else None
        version = _const(args[5], 6) if len(args) > 5 else None
        if not isinstance(uri, str) or not isinstance(column, str):
            raise VectorSearchError(
                f"nearest(): uri and column are strings, got {uri!r} and {column!r}"
            )
        if not isinstance(query, list):
            raise VectorSearchError(
                f"nearest(): query is an array literal like [0.1, 0.2], got {query!r}"
            )
        if where is not None and not isinstance(where, str):
            raise VectorSearchError(f"nearest(): where is a condition string, got {where!r}")
        if version is not None and (isinstance(version, bool) or not isinstance(version, int)):
            raise VectorSearchError(f"nearest(): version is an integer, got {version!r}")
        ds = open_dataset(uri, version=version, storage_options=storage_options)
        return pads.dataset(nearest(ds, column, query, k=k, where=where, with_rowid=False))

    return nearest_table


def install(
    ctx: Any, *, name: str = "nearest", storage_options: Mapping[str, Any] | None = None
) -> None:
    """Register the ``nearest(...)`` table function on a DataFusion SessionContext."""
    import datafusion

    ctx.register_udtf(datafusion.udtf(table_function(storage_options=storage_options), name))


__all__ = ["dataset_behind", "indexed_nearest", "install", "table_function"]
