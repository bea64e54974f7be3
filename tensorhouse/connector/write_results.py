"""Write a query result into a tensorhouse dataset: ``th.write``.

The result streams through: a DuckDB relation is read with
``to_arrow_reader``, a DataFusion DataFrame through its Arrow C stream (which
DataFusion executes incrementally), so the whole result is never held in
memory; batches are grouped up to about 64 MiB.

Every mode commits once (one ``Dataset.transaction``): each group's chunks
are uploaded as it arrives and the version appears when the last group is
written; a failure part way commits nothing. ``mode="overwrite"`` deletes
the rows live when the write started and adds the new ones in that same
commit, so readers see the old rows or the new ones, never a mix or an empty
table (rows another writer appends meanwhile are kept, as appends never
conflict).

Column types, for a new dataset, column by column:

1. ``schema=`` (a mapping of some or all columns to types) wins;
2. else the type in the Arrow field's metadata (tensorhouse puts it there;
   DataFusion keeps it for columns selected as they are, DuckDB drops it);
3. else, for a DuckDB result, where a dataset registered on its connection
   (``th.duckdb.register``/``scan``) has a column of that name whose Arrow
   type matches, that column's type: ``image`` selected from a dataset whose
   ``image`` is ``Image("jpeg")`` stays ``Image("jpeg")`` (only when every
   such dataset agrees; a matching name is a guess, pass ``schema=`` to be sure);
4. else a type inferred from the Arrow type (``types.infer_from_arrow``).

Appending takes the existing dataset's types; values are cast to them
(``sum()`` in DuckDB gives decimals, for instance). A ``_rowid`` column in
the result is dropped: row ids belong to the dataset written.

Example:
    >>> import duckdb, numpy as np, tensorhouse as th
    >>> src = th.create("memory://doc-write-src", {"label": "int32", "emb": th.Embedding(2)})
    >>> _ = src.append({"label": [0, 1, 1], "emb": np.ones((3, 2), "float32")})
    >>> con = duckdb.connect()
    >>> _ = th.duckdb.register(con, "src", src)
    >>> out = th.write("memory://doc-write-dst", con.sql("SELECT * FROM src WHERE label = 1"))
    >>> len(out), out.schema["emb"]
    (2, Embedding(dim=2, dtype='float32'))
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from tensorhouse.connector.arrow_dataset import open_dataset, widen_float16
from tensorhouse.connector.results import to_arrow_reader
from tensorhouse.engines import engine_of
from tensorhouse.errors import DatasetNotFoundError, SchemaError
from tensorhouse.format.dataset import Dataset, create
from tensorhouse.format.foreign import dataframe_to_arrow, is_dataframe
from tensorhouse.types import (
    ROWID,
    Arrow,
    ColumnType,
    Scalar,
    Schema,
    TypeLike,
    as_type,
    infer_from_arrow,
)

Mode = Literal["create", "append", "overwrite"]
#: Rows are committed in groups of about this many bytes.
GROUP_BYTES = 64 << 20


def _plain(t: pa.DataType) -> Any:
    """A comparable form of an Arrow type: field names, nullability, large/view variants ignored."""
    if pa.types.is_large_string(t) or pa.types.is_string_view(t) or pa.types.is_string(t):
        return "string"
    if pa.types.is_large_binary(t) or pa.types.is_binary_view(t) or pa.types.is_binary(t):
        return "binary"
    if pa.types.is_fixed_size_list(t):
        return ("fsl", t.list_size, _plain(t.value_type))
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_list_view(t):
        return ("list", _plain(t.value_type))
    if pa.types.is_struct(t):
        return ("struct", tuple((f.name, _plain(f.type)) for f in t))
    return str(t)


def matches(ctype: ColumnType, t: pa.DataType) -> bool:
    """Whether Arrow type ``t`` is how engines show a column of ``ctype``."""
    return _plain(widen_float16(ctype.arrow_type())) == _plain(t) or _plain(
        ctype.arrow_type()
    ) == _plain(t)


def _infer(t: pa.DataType, name: str, *, engine: bool = False) -> ColumnType:
    # From the Arrow type alone (types.infer_from_arrow): boxes, embeddings, tensor extensions, large lists.
    if engine and pa.types.is_string_view(t):
        t = (
            pa.string()
        )  # an engine's VARCHAR, whatever its Arrow spelling: text, as from any engine
    elif engine and pa.types.is_binary_view(t):
        t = pa.binary()
    try:
        return infer_from_arrow(t, name)
    except SchemaError as err:
        raise SchemaError(
            f"column {name!r}: no tensorhouse type for Arrow type {t}; CAST it in the query "
            f"or pass schema={{{name!r}: ...}}"
        ) from err


def resolve_schema(
    arrow_schema: pa.Schema,
    schema: Mapping[str, TypeLike] | Schema | None = None,
    *,
    hints: Mapping[str, set[ColumnType]] | None = None,
    engine: bool = False,
) -> Schema:
    """The tensorhouse schema for a result's Arrow schema (see the module notes for the rules).

    ``hints``: column name -> types of the datasets the result may come from.
    ``engine``: the result comes from a SQL engine, whose ``string_view`` is just
    how it spells VARCHAR (an Arrow table's own types are kept as they are).
    """
    given = (
        dict(Schema.of(schema).columns)
        if isinstance(schema, Schema)
        else {k: as_type(v) for k, v in (schema or {}).items()}
    )
    names = [f.name for f in arrow_schema if f.name != ROWID]
    unknown = [n for n in given if n not in names]
    if unknown:
        raise SchemaError(
            f"schema= names column(s) {unknown} that the result does not have; it has {names}"
        )
    cols: dict[str, TypeLike] = {}
    for f in arrow_schema:
        if f.name == ROWID:
            continue
        if f.name in given:
            cols[f.name] = given[f.name]
            continue
        if f.metadata:
            try:
                meta = ColumnType.from_arrow_field(f)
            except SchemaError:
                meta = None
            if meta is not None and matches(meta, f.type):
                cols[f.name] = meta
                continue
        known = {t for t in (hints or {}).get(f.name, ()) if matches(t, f.type)}
        cols[f.name] = known.pop() if len(known) == 1 else _infer(f.type, f.name, engine=engine)
    if not cols:
        raise SchemaError("the result has no columns to write")
    return Schema.of(cols)


def _conform(batch: pa.Table, schema: Schema) -> pa.Table:
    """The columns of ``schema`` in order, cast where the Arrow type differs in substance."""
    arrays = []
    for name, ctype in schema.columns:
        col = batch.column(name)
        target = widen_float16(ctype.arrow_type())
        if isinstance(ctype, Scalar | Arrow):
            pass  # cast by the format layer's one rule for every write path (columnar.cast)
        elif isinstance(col.type, pa.BaseExtensionType):
            pass  # tensor extension columns are reshaped by the write itself (format.foreign), not cast
        elif _plain(col.type) != _plain(target):
            try:
                col = col.cast(target)
            except pa.ArrowNotImplementedError:
                pass  # no Arrow cast (a list for a ragged tensor): normalisation checks the values
            except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
                raise SchemaError(
                    f"column {name!r}: cannot store {col.type} values as {ctype!r}: {err}"
                ) from err
        arrays.append(col)
    return pa.table(arrays, names=schema.names)


def _groups(reader: pa.RecordBatchReader, group_bytes: int) -> Iterator[pa.Table]:
    group: list[pa.RecordBatch] = []
    size = 0
    for batch in reader:
        if batch.num_rows == 0:
            continue
        group.append(batch)
        size += batch.nbytes
        if size >= group_bytes:
            yield pa.Table.from_batches(group, schema=reader.schema)
            group, size = [], 0
    if group:
        yield pa.Table.from_batches(group, schema=reader.schema)


def write(
    uri: str,
    result: Any,
    *,
    mode: Mode = "create",
    schema: Mapping[str, TypeLike] | Schema | None = None,
    storage_options: Mapping[str, Any] | None = None,
    message: str | None = None,
    group_bytes: int = GROUP_BYTES,
) -> Dataset:
    """Write a query result (DuckDB relation, DataFusion DataFrame, Arrow table/reader/batches, pandas or
    Polars DataFrame) to ``uri``.

    ``mode``: ``"create"`` a new dataset (DatasetExistsError if one is there),
    ``"append"`` to an existing one (same columns), ``"overwrite"`` an existing
    one's rows (or create it). One commit in every mode. Returns the dataset at its new version.

    Example:
        >>> import pyarrow as pa, tensorhouse as th
        >>> ds = th.write("memory://doc-write", pa.table({"x": [1, 2]}))
        >>> ds = th.write("memory://doc-write", pa.table({"x": [3]}), mode="append")
        >>> len(ds), ds.version
        (3, 2)
    """
    if mode not in ("create", "append", "overwrite"):
        raise ValueError(f"mode must be 'create', 'append' or 'overwrite', got {mode!r}")
    if group_bytes <= 0:
        raise ValueError(f"group_bytes must be positive, got {group_bytes}")
    if is_dataframe(result):  # pandas / Polars: typed Arrow columns (format.foreign)
        result = dataframe_to_arrow(result)
    hints = _hints(result)  # before the reader: a streaming DuckDB result keeps its connection busy
    reader = to_arrow_reader(result)
    try:
        existing: Dataset | None = None
        if mode != "create":
            try:
                existing = open_dataset(uri, storage_options=storage_options)
            except DatasetNotFoundError:
                if mode == "append":
                    raise
        if existing is None:
            target = resolve_schema(reader.schema, schema, hints=hints, engine=_from_engine(result))
            ds = create(uri, target, storage_options=storage_options)
        else:
            ds = existing
            target = ds.schema
            _check_columns(reader.schema, target, uri)
            given = schema.columns if isinstance(schema, Schema) else (schema or {}).items()
            differ = [n for n, t in given if n not in target or as_type(t) != target[n]]
            if differ:
                raise SchemaError(
                    f"schema= gives column(s) {differ} types other than the dataset at {uri}: {target}"
                )
        tx = ds.transaction(message=message)
        changed = False
        if mode == "overwrite" and existing is not None:
            live = [b.column(ROWID).to_numpy() for b in ds.reader.iter_batches([], with_rowid=True)]
            if sum(len(x) for x in live):
                tx.delete(rowids=np.concatenate(live))
                changed = True
        for g in _groups(reader, group_bytes):
            tx.append(_conform(g, target))  # uploads the chunks now; commits below
            changed = True
        if changed:  # an empty result adds no version
            tx.commit()
        return ds
    finally:
        reader.close()


def _from_engine(result: Any) -> bool:
    return engine_of(result) is not None


def _hints(result: Any) -> dict[str, set[ColumnType]]:
    if engine_of(result) != "duckdb":
        return {}  # Arrow inputs and DataFusion results keep the types in field metadata
    from tensorhouse.connector.duckdb import column_types

    return column_types(result)


def _check_columns(arrow_schema: pa.Schema, target: Schema, uri: str) -> None:
    names = [f.name for f in arrow_schema if f.name != ROWID]
    missing = [n for n in target.names if n not in names]
    extra = [n for n in names if n not in target]
    if missing or extra:
        raise SchemaError(
            f"the result's columns do not match the dataset at {uri}: "
            f"missing {missing}, not in the dataset {extra}"
        )


__all__ = ["Mode", "matches", "resolve_schema", "write"]
