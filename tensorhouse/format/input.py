"""Accept user data in the shapes people have it, as columns."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa

from tensorhouse.errors import SchemaError
from tensorhouse.format.foreign import arrow_values, dataframe_columns, is_dataframe
from tensorhouse.types import Schema

Data: TypeAlias = Mapping[str, Any] | pa.Table | pa.RecordBatch | Sequence[Mapping[str, Any]]


def to_columns(data: Data, schema: Schema) -> tuple[dict[str, Any], int]:
    """Columns by name and the row count; every schema column present, no others.

    Accepts a mapping of column -> values, a ``pa.Table``/``RecordBatch``, a
    pandas or Polars DataFrame (anything with ``__arrow_c_stream__``), or a
    list of row dicts.
    """
    if is_dataframe(data):
        try:
            data = _dataframe_to_arrow(
                data
            )  # typed Arrow columns: datetimes, decimals, categoricals
        except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
            data = dataframe_columns(
                data
            )  # object columns of n-d arrays (boxes, images): format.foreign
    else:
        data = _dataframe_to_arrow(data)
    if isinstance(data, pa.RecordBatch):
        data = pa.Table.from_batches([data])
    if isinstance(data, pa.Table):
        cols: dict[str, Any] = {name: data.column(name) for name in data.column_names}
    elif isinstance(data, Mapping):
        cols = dict(data)
    elif isinstance(data, Sequence) and not isinstance(data, str | bytes):
        for i, row in enumerate(data):
            if not isinstance(row, Mapping):
                raise SchemaError(
                    f"row {i}: expected a dict of column -> value, got {type(row).__name__}"
                )
        names = set().union(*(row.keys() for row in data)) if data else set(schema.names)
        cols = {name: [row.get(name) for row in data] for name in names}
    else:
        raise SchemaError(
            f"cannot append {type(data).__name__}: pass a dict of columns, an Arrow table or a list of rows"
        )
    unknown = [c for c in cols if c not in schema]
    if unknown:
        raise SchemaError(f"unknown column(s) {unknown}; the dataset's columns are {schema.names}")
    missing = [c for c in schema.names if c not in cols]
    if missing:
        raise SchemaError(
            f"missing column(s) {missing}: every append gives every column (use None for nulls)"
        )
    # Arrow columns shaped from their type (tensor extensions, empty rows of boxes): format.foreign.
    cols = {
        n: arrow_values(v, schema[n]) if isinstance(v, pa.Array | pa.ChunkedArray) else v
        for n, v in cols.items()
    }
    lengths = {name: _length(v, name) for name, v in cols.items()}
    if len(set(lengths.values())) > 1:
        raise SchemaError(f"columns have different lengths: {lengths}")
    n = next(iter(lengths.values())) if lengths else 0
    return cols, n


def _dataframe_to_arrow(data: Any) -> Any:
    """A DataFrame as an Arrow table (its columns keep their types: datetimes, decimals, categoricals)."""
    if isinstance(data, pa.Table | pa.RecordBatch | Mapping | Sequence):
        return data
    if type(data).__module__.partition(".")[0] == "pandas" and hasattr(data, "columns"):
        return pa.Table.from_pandas(data, preserve_index=False)
    if hasattr(data, "__arrow_c_stream__"):
        return pa.table(data)
    return data


def _length(values: Any, name: str) -> int:
    if isinstance(values, np.ndarray):
        if values.ndim == 0:
            raise SchemaError(f"column {name!r}: expected a sequence of samples, got a 0-d array")
        return len(values)
    if isinstance(values, str | bytes) or not hasattr(values, "__len__"):
        raise SchemaError(
            f"column {name!r}: expected a sequence of samples, got {type(values).__name__}"
        )
    return len(values)
