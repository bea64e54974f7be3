"""What a loader reads: a Dataset, or a query result.

The user writes one query, e.g. ``SELECT image, label FROM pets WHERE ...``.
The loader keeps from it only the row ids and the light columns (scalars,
text, computed values), so the engine never reads tensor chunks; heavy
columns (images, tensors, boxes, embeddings) named in the query are read
from the dataset by row id, chunk by chunk.

Where the row ids come from:
1. a ``_rowid`` column the query selects (tables registered with
   ``rowid=True``); the dataset is ``dataset=``, the ``_rowid`` field's
   metadata (DataFusion keeps it) or the one registered dataset the query reads;
2. otherwise the query is rewritten to read the registration's companion
   table and add ``_rowid`` (:mod:`tensorhouse.connector.rowids`): the tables
   come from the engine's catalog and a parse of the SQL (DuckDB: the
   relation's ``sql_query()``; DataFusion: the plan's SQL from its unparser).
   Aggregates, DISTINCT and set operations have no row ids: the loader says so.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from tensorhouse.connector.arrow_dataset import ROWID_DATASET_KEY  # the connector writes it
from tensorhouse.engines import engine_of
from tensorhouse.errors import SchemaError
from tensorhouse.format.dataset import Dataset
from tensorhouse.format.dataset import open as open_dataset
from tensorhouse.types import ROWID


@dataclass
class Selection:
    """Rows to load: their ids, the light columns from the engine, the heavy ones to read."""

    dataset: Dataset
    rowids: np.ndarray | None  # None: every live row of the dataset, in order
    light: dict[str, Any]  # column -> numpy array (or object array) aligned with rowids
    heavy: list[str]
    keep_rowid: bool

    def __len__(self) -> int:
        return len(self.dataset) if self.rowids is None else len(self.rowids)


def is_heavy(ds: Dataset, name: str) -> bool:
    """Tensors and images are read by row id; scalars and text come from the engine."""
    if name not in ds.schema:
        return False
    t = ds.schema[name].arrow_type()
    return not (pa.types.is_primitive(t) or pa.types.is_string(t))


def _dataset_from_metadata(schema: pa.Schema) -> Dataset | None:
    if ROWID not in schema.names:
        return None
    meta = schema.field(ROWID).metadata or {}
    raw = meta.get(ROWID_DATASET_KEY)
    if not raw:
        return None
    info = json.loads(raw)
    # Credentials never travel in metadata: S3 users pass dataset= (with storage_options).
    return open_dataset(info["uri"], version=info.get("version"), branch=info.get("branch"))


def _dataset_from_registry(rel: Any) -> Dataset | None:
    from tensorhouse.connector import duckdb as thduck

    return thduck.dataset_behind(rel)


def select(source: Any, *, columns: Sequence[str] | None, dataset: Dataset | None) -> Selection:
    """Resolve any supported source into a Selection (materialising only row ids and light columns)."""
    if isinstance(source, Dataset):
        names = list(columns) if columns is not None else source.columns
        unknown = [c for c in names if c != ROWID and c not in source.schema]
        if unknown:
            raise SchemaError(f"unknown column(s) {unknown}; columns are {source.columns}")
        return Selection(source, None, {}, [c for c in names if c != ROWID], ROWID in names)
    kind = engine_of(source)
    if kind == "duckdb":
        names = list(source.columns)
        if ROWID not in names:
            return _rewritten(source, kind, names, columns, dataset)
        ds = dataset or _dataset_from_registry(source)
        if ds is None:
            raise ValueError(
                "cannot tell which tensorhouse dataset this DuckDB query reads: pass dataset=ds "
                "(or read exactly one dataset registered with th.duckdb.register)"
            )
        keep = _light(ds, names, columns)
        table = source.project(", ".join(_quote(c) for c in keep)).to_arrow_table()
    elif kind == "datafusion":
        names = [f.name for f in source.schema()]
        if ROWID not in names:
            return _rewritten(source, kind, names, columns, dataset)
        ds = dataset or _dataset_from_metadata(source.schema())
        if ds is None:
            raise ValueError(
                "cannot tell which tensorhouse dataset this DataFrame reads: pass dataset=ds"
            )
        keep = _light(ds, names, columns)
        table = source.select(*[_quote(c) for c in keep]).to_arrow_table()
    elif isinstance(source, pa.Table | pa.RecordBatch | pa.RecordBatchReader):
        table = source.read_all() if isinstance(source, pa.RecordBatchReader) else pa.table(source)
        names = table.column_names
        _require_rowid(names)
        ds = dataset or _dataset_from_metadata(table.schema)
        if ds is None:
            raise ValueError(
                "cannot tell which tensorhouse dataset these row ids belong to: pass dataset=ds"
            )
        keep = _light(ds, names, columns)
        table = table.select(keep)
    else:
        raise TypeError(
            f"cannot load from {type(source).__name__}: pass a tensorhouse Dataset, a DuckDB relation, "
            "a DataFusion DataFrame or an Arrow table with a _rowid column"
        )
    wanted = list(columns) if columns is not None else names
    heavy = [c for c in wanted if is_heavy(ds, c)]
    light = {
        c: _numpy_or_objects(table.column(c))
        for c in table.column_names
        if c != ROWID and c in wanted
    }
    rowids = table.column(ROWID).to_numpy().astype(np.int64)
    return Selection(ds, rowids, light, heavy, ROWID in wanted)


def _heavy_columns(table: Any) -> set[str]:
    ds = table.dataset
    return {c for c in ds.columns if is_heavy(ds, c)}


def _rewritten(
    source: Any, kind: str, names: list[str], columns: Sequence[str] | None, dataset: Dataset | None
) -> Selection:
    """A query without ``_rowid``: rewritten to return row ids and light columns only."""
    wanted = list(columns) if columns is not None else names
    unknown = [c for c in wanted if c not in names]
    if unknown:
        raise SchemaError(f"column(s) {unknown} are not in the query result {names}")
    if kind == "duckdb":
        from tensorhouse.connector import duckdb as thduck

        rel, q, arrow_ds = thduck.rowid_relation(source, _heavy_columns)
        table = rel.to_arrow_table()
    else:
        from tensorhouse.connector import datafusion as thdf

        df, q, arrow_ds = thdf.rowid_dataframe(source, _heavy_columns)
        table = df.to_arrow_table()
    ds = dataset or arrow_ds.dataset
    light = {c: _numpy_or_objects(table.column(c)) for c in q.light if c in wanted}
    rowids = table.column(ROWID).to_numpy().astype(np.int64)
    return Selection(ds, rowids, light, [c for c in q.heavy if c in wanted], False)


def _require_rowid(names: Sequence[str]) -> None:
    if ROWID not in names:
        raise SchemaError(
            f"the query must select {ROWID} so the loader can read tensors by row id "
            f"(e.g. SELECT {ROWID}, image, label FROM ...); it selects {list(names)}"
        )


def _light(ds: Dataset, names: Sequence[str], columns: Sequence[str] | None) -> list[str]:
    wanted = set(columns) if columns is not None else set(names)
    unknown = [c for c in wanted if c not in names]
    if unknown:
        raise SchemaError(f"column(s) {unknown} are not in the query result {list(names)}")
    return [c for c in names if c == ROWID or (c in wanted and not is_heavy(ds, c))]


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _numpy_or_objects(col: pa.ChunkedArray) -> Any:
    """A light column as a numpy array: numbers without nulls as they are, anything else as objects."""
    arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    if (
        pa.types.is_integer(arr.type)
        or pa.types.is_floating(arr.type)
        or pa.types.is_boolean(arr.type)
    ) and arr.null_count == 0:
        return arr.to_numpy(zero_copy_only=False)
    return np.array(arr.to_pylist(), dtype=object)
