"""Query results -> numpy arrays and torch tensors, keeping tensor shapes.

A result is a DuckDB relation, a DataFusion DataFrame, a ``pa.Table``,
``RecordBatch``, ``RecordBatchReader``, anything exporting an Arrow stream
(``__arrow_c_stream__``), or an iterable of RecordBatches.

What each Arrow column becomes:

| Arrow | numpy |
|---|---|
| numbers, bool | 1-d array of that dtype (nulls: NaN for floats, 0 for ints and bools) |
| FixedSizeList (nested for N-d) of numbers | one stacked array ``[rows, *shape]``; a null row is zeros |
| struct<data: list, shape: fsl<int32>> (ragged tensor) | list of arrays of each row's shape; None for null |
| list of numbers / of FixedSizeLists (boxes) | list of arrays ``[n, *inner shape]``; None for null |
| binary / string | list of ``bytes`` / ``str``; None for null |
| anything else | the column's ``to_pylist()`` |

Fixed-shape numeric columns without nulls are zero-copy views of the Arrow
buffers when the result is one chunk (read-only arrays).

Example:
    >>> import pyarrow as pa
    >>> t = pa.table({"emb": pa.FixedSizeListArray.from_arrays(pa.array([1, 2, 3, 4], pa.float32()), 2)})
    >>> result_to_numpy(t)["emb"].shape
    (2, 2)
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tensorhouse.engines import engine_of
from tensorhouse.errors import SchemaError

#: One column of :func:`to_numpy`: a stacked array, or a list with one item per row.
NumpyColumn = np.ndarray | list[Any]


def to_arrow_reader(result: Any, *, batch_rows: int = 65536) -> pa.RecordBatchReader:
    """A streaming reader over a query result (nothing is collected up front).

    DuckDB relations stream through ``to_arrow_reader`` (the connection stays
    busy until the reader is exhausted or closed); DataFrames of DataFusion and
    other Arrow producers through their ``__arrow_c_stream__``.
    """
    if isinstance(result, pa.RecordBatchReader):
        return result
    if isinstance(result, pa.Table):
        return result.to_reader()
    if isinstance(result, pa.RecordBatch):
        return pa.RecordBatchReader.from_batches(result.schema, [result])
    if engine_of(result) == "duckdb" and hasattr(result, "to_arrow_reader"):
        reader = result.to_arrow_reader(batch_rows)
        if reader is None:
            raise ValueError("the DuckDB statement returned no result set")
        return reader
    if hasattr(result, "__arrow_c_stream__"):
        return pa.RecordBatchReader.from_stream(result)
    if hasattr(result, "to_reader") and hasattr(result, "projected_schema"):
        return result.to_reader()  # a pyarrow or tensorhouse scanner
    if isinstance(result, Iterable) and not isinstance(result, str | bytes | dict):
        it = iter(result)
        first = next(it, None)
        if first is None:
            raise ValueError(
                "an empty iterable of record batches has no schema; pass a pa.Table instead"
            )
        if not isinstance(first, pa.RecordBatch):
            raise TypeError(f"expected RecordBatches, got {type(first).__name__}")

        def chain() -> Iterable[pa.RecordBatch]:
            yield first
            yield from it

        return pa.RecordBatchReader.from_batches(first.schema, chain())
    raise TypeError(
        f"cannot read a query result from {type(result).__name__}: pass a DuckDB relation, a "
        "DataFusion DataFrame, a pa.Table, a RecordBatchReader or RecordBatches"
    )


def to_table(result: Any) -> pa.Table:
    """A query result collected into one ``pa.Table``."""
    if isinstance(result, pa.Table):
        return result
    return to_arrow_reader(result).read_all()


def _leaf_numpy(arr: pa.Array) -> np.ndarray:
    if pa.types.is_dictionary(arr.type):
        arr = arr.dictionary_decode()
    if arr.null_count:
        fill = (
            float("nan")
            if pa.types.is_floating(arr.type)
            else (False if pa.types.is_boolean(arr.type) else 0)
        )
        arr = pc.fill_null(arr, pa.scalar(fill, type=arr.type))
    return arr.to_numpy(zero_copy_only=False)


def _is_numeric(t: pa.DataType) -> bool:
    return pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t)


def _fsl_dims(t: pa.DataType) -> tuple[list[int], pa.DataType]:
    dims: list[int] = []
    while pa.types.is_fixed_size_list(t):
        dims.append(t.list_size)
        t = t.value_type
    return dims, t


def _fsl_numpy(arr: pa.Array) -> np.ndarray:
    """A (nested) FixedSizeList array as one ``[rows, *dims]`` array; null rows are zeros."""
    n = len(arr)
    dims, _ = _fsl_dims(arr.type)
    top_nulls = arr.is_null().to_numpy(zero_copy_only=False) if arr.null_count else None
    flat = arr
    while pa.types.is_fixed_size_list(flat.type):
        size = flat.type.list_size
        # .values ignores the slice offset and keeps null rows' slots, unlike flatten().
        flat = flat.values.slice(flat.offset * size, len(flat) * size)
    out = _leaf_numpy(flat).reshape(n, *dims)
    if top_nulls is not None and top_nulls.any():
        out = out.copy()
        out[top_nulls] = 0
    return out


def _rows_of_list(arr: pa.Array) -> list[Any]:
    """list<number> or list<fsl<number>> -> one array per row (views of one flat array)."""
    dims, _ = _fsl_dims(arr.type.value_type)
    offsets = arr.offsets.to_numpy(zero_copy_only=False)
    values = arr.values
    flat = _fsl_numpy(values) if dims else _leaf_numpy(values)
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    return [flat[offsets[i] : offsets[i + 1]] if valid[i] else None for i in range(len(arr))]


def _rows_of_ragged(arr: pa.StructArray) -> list[Any]:
    """struct<data: list, shape: fsl<int32>> -> one array of each row's shape."""
    data = arr.field("data")
    shapes = _fsl_numpy(arr.field("shape"))
    offsets = data.offsets.to_numpy(zero_copy_only=False)
    flat = _leaf_numpy(data.values)
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    return [
        flat[offsets[i] : offsets[i + 1]].reshape(shapes[i]) if valid[i] else None
        for i in range(len(arr))
    ]


def _is_ragged(t: pa.DataType) -> bool:
    if not pa.types.is_struct(t) or {f.name for f in t} != {"data", "shape"}:
        return False
    data, shape = t.field("data").type, t.field("shape").type
    return (
        (pa.types.is_list(data) or pa.types.is_large_list(data))
        and _is_numeric(data.value_type)
        and pa.types.is_fixed_size_list(shape)
    )


def column_to_numpy(col: pa.ChunkedArray | pa.Array) -> NumpyColumn:
    """One Arrow column as numpy (see the module table)."""
    chunks = col.chunks if isinstance(col, pa.ChunkedArray) else [col]
    t = col.type
    if pa.types.is_dictionary(t):
        chunks = [c.dictionary_decode() for c in chunks]
        t = t.value_type
    dims, leaf = _fsl_dims(t)
    if _is_numeric(t) or (dims and _is_numeric(leaf)):
        conv = _fsl_numpy if dims else _leaf_numpy
        if len(chunks) == 1:
            return conv(chunks[0])
        if not chunks:
            return np.zeros((0, *dims), dtype=leaf.to_pandas_dtype())
        return np.concatenate([conv(c) for c in chunks])
    rows: list[Any] = []
    for c in chunks:
        if _is_ragged(c.type):
            rows += _rows_of_ragged(c)
        elif (pa.types.is_list(c.type) or pa.types.is_large_list(c.type)) and (
            _is_numeric(c.type.value_type)
            or (_fsl_dims(c.type.value_type)[0] and _is_numeric(_fsl_dims(c.type.value_type)[1]))
        ):
            rows += _rows_of_list(c)
        else:
            rows += c.to_pylist()
    return rows


def result_to_numpy(result: Any, columns: Sequence[str] | None = None) -> dict[str, NumpyColumn]:
    """A query result as column -> numpy array (or list per row for ragged and byte columns): ``th.to_numpy``.

    Example:
        >>> import duckdb, numpy as np, tensorhouse as th
        >>> ds = th.create("memory://doc-to-numpy", {"label": "int32", "emb": th.Tensor("float32", (2, 3))})
        >>> _ = ds.append({"label": [7, 8], "emb": np.zeros((2, 2, 3), "float32")})
        >>> con = duckdb.connect()
        >>> _ = th.duckdb.register(con, "t", ds)
        >>> out = th.to_numpy(con.sql("SELECT label, emb FROM t"))
        >>> out["label"].tolist(), out["emb"].shape
        ([7, 8], (2, 2, 3))
    """
    table = to_table(result)
    names = table.column_names
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise SchemaError(
            f"the result has duplicate column names {dupes}; alias them (AS) to convert"
        )
    wanted = names if columns is None else list(columns)
    unknown = [c for c in wanted if c not in names]
    if unknown:
        raise SchemaError(f"unknown column(s) {unknown}; the result's columns are {names}")
    return {c: column_to_numpy(table.column(c)) for c in wanted}


#: The public name (``th.to_numpy``); ``result_to_numpy`` says which of the to_numpy functions this is.
to_numpy = result_to_numpy

__all__ = [
    "NumpyColumn",
    "column_to_numpy",
    "result_to_numpy",
    "to_arrow_reader",
    "to_numpy",
    "to_table",
]
