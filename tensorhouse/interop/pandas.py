"""A dataset (or some of its rows) as a pandas DataFrame: ``Dataset.to_pandas``.

What each column becomes:

| column | pandas |
|---|---|
| numbers | that dtype; an int or bool column with nulls: pandas' nullable ``Int64``/``boolean`` |
| ``ClassLabel`` | ``Categorical`` of the class names (``.cat.codes`` are the indices; -1 for null) |
| ``Text`` / ``Json`` / ``Binary`` | ``str`` / parsed JSON values / ``bytes`` |
| ``Image("jpeg"/"png")`` | the encoded ``bytes``, or with ``decode=True`` uint8 HxWxC arrays |
| tensors, embeddings, boxes, raw images | object column of numpy arrays of each row's shape |

Nulls are ``None`` in object columns. Example:
    >>> import numpy as np, tensorhouse as th
    >>> ds = th.create("memory://doc-pandas", {"label": th.ClassLabel(["cat", "dog"]), "emb": th.Embedding(2)})
    >>> _ = ds.append({"label": [1, 0], "emb": np.ones((2, 2), "float32")})
    >>> df = ds.to_pandas()
    >>> list(df["label"]), df["emb"][0].shape
    (['dog', 'cat'], (2,))
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from tensorhouse.errors import SchemaError, UnsupportedError
from tensorhouse.format.convert import payloads_to_images, to_arrow
from tensorhouse.format.dataset import Dataset
from tensorhouse.format.foreign import arrow_values
from tensorhouse.types import ROWID, Arrow, ClassLabel, ColumnType, Image, Json, Text


def _pandas() -> Any:
    try:
        import pandas
    except ImportError as err:  # pragma: no cover - pandas is a dependency of the dev extra
        raise UnsupportedError("to_pandas needs pandas: pip install 'tensorhouse[pandas]'") from err
    return pandas


def _positions(ds: Dataset, rows: Sequence[int] | np.ndarray | None) -> np.ndarray:
    n = len(ds)
    if rows is None:
        return np.arange(n, dtype=np.int64)
    idx = np.asarray(rows)
    if idx.size == 0:
        return np.zeros(0, dtype=np.int64)
    if idx.dtype.kind not in "iu":
        raise TypeError(f"rows must be integer positions, got {idx.dtype}")
    idx = idx.astype(np.int64).reshape(-1)
    bad = idx[(idx < -n) | (idx >= n)]
    if len(bad):
        raise IndexError(f"row {int(bad[0])} is out of range for {n} rows of {ds.uri}")
    return np.where(idx < 0, idx + n, idx)


def _rows_of_struct(arr: pa.Array) -> list[Any]:
    """A ragged ``struct<data, shape>`` column: each row's array in its shape, None for a null."""
    data, shapes = arr.field("data"), arr.field("shape")
    ndim = shapes.type.list_size
    dims = shapes.flatten().to_numpy(zero_copy_only=False).reshape(len(arr), ndim)
    offsets = data.offsets.to_numpy()
    values = data.values.to_numpy(zero_copy_only=False)
    valid = arr.is_valid().to_numpy(zero_copy_only=False)
    return [
        values[offsets[i] : offsets[i + 1]].reshape(dims[i]) if valid[i] else None
        for i in range(len(arr))
    ]


def _values(arr: pa.Array, ctype: ColumnType, decode: bool) -> Any:
    """One column in our Arrow layout -> what the DataFrame holds (see the module notes)."""
    pd = _pandas()
    if isinstance(ctype, ClassLabel):
        codes = np.asarray(arr.fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
        if ctype.classes:
            return pd.Categorical.from_codes(codes, categories=list(ctype.classes))
        return pd.array([None if c < 0 else c for c in codes], dtype="Int64")
    if ctype.is_scalar or (isinstance(ctype, Text) and not isinstance(ctype, Json)):
        if arr.null_count and (pa.types.is_integer(arr.type) or pa.types.is_boolean(arr.type)):
            # pandas' nullable dtype (Int64, boolean) keeps the ints; NaN would make them floats.
            return pd.array(
                arr.to_pylist(),
                dtype="boolean"
                if pa.types.is_boolean(arr.type)
                else str(arr.type).replace("int", "Int").replace("uInt", "UInt"),
            )
        return arr.to_pandas()
    if isinstance(ctype, Json):
        return [None if v is None else json.loads(v) for v in arr.to_pylist()]
    if isinstance(
        ctype, Arrow
    ):  # tabular Arrow types (dates, decimals, ...): pandas' own conversion
        return arr.to_pandas()
    if isinstance(ctype, Image) and ctype.compression is not None:
        data = arr.to_pylist()
        if not decode:
            return data
        return payloads_to_images(
            [b or b"" for b in data],
            np.array([b is None for b in data], dtype=bool),
            ctype.compression,
            decode=True,
        )
    if ctype.storage_dtype == "bytes":
        return arr.to_pylist()
    if pa.types.is_struct(arr.type):  # ragged tensors and raw images
        return _rows_of_struct(arr)
    if ctype.is_fixed_shape:
        shape = ctype.sample_shape
        flat = arr
        while pa.types.is_fixed_size_list(flat.type):
            flat = flat.flatten()
        # A null fixed-shape row still holds its (zero) values in the buffers: cut rows from the full width.
        stacked = (
            flat.to_numpy(zero_copy_only=False).reshape(len(arr), *shape)
            if arr.null_count == 0
            else None
        )
        if stacked is None:
            return [
                None if v is None else np.asarray(v, dtype=ctype.storage_dtype).reshape(shape)
                for v in arr.to_pylist()
            ]
        return list(stacked)
    return arrow_values(
        arr, ctype
    )  # boxes and other lists of fixed-size lists: arrays of each row's shape


def to_pandas(
    ds: Dataset,
    columns: Sequence[str] | None = None,
    *,
    rows: Sequence[int] | np.ndarray | None = None,
    decode: bool = False,
    with_rowid: bool = False,
) -> Any:
    """``ds`` as a ``pandas.DataFrame`` (see the module notes for the column types).

    ``columns``: the columns to read (default all; ``"_rowid"`` for the stable row
    ids). ``rows``: positions to take, in that order (default every row).
    ``decode``: decode JPEG/PNG images to arrays. ``with_rowid``: add ``_rowid``.
    Only the named columns are read.
    """
    pd = _pandas()
    if isinstance(columns, str):
        raise SchemaError(f"columns must be a list of names, got the string {columns!r}")
    names = list(ds.columns if columns is None else columns)
    for c in names:
        if c != ROWID and c not in ds.schema:
            raise SchemaError(f"unknown column {c!r} of {ds.uri}; columns are {ds.columns}")
    if with_rowid and ROWID not in names:
        names.append(ROWID)
    wanted = [n for n in names if n != ROWID]
    arrays: dict[str, pa.Array] = {}
    if rows is None:  # every row: streamed chunk by chunk, not gathered row by row
        table = ds.to_table(wanted, with_rowid=ROWID in names)
        arrays = {n: table.column(n).combine_chunks() for n in table.column_names}
    else:
        physical = ds.reader.physical(_positions(ds, rows))
        for n in wanted:
            arrays[n] = to_arrow(ds.reader.read_rows(n, ds.schema[n], physical), ds.schema[n])
        if ROWID in names:
            arrays[ROWID] = pa.array(ds.reader.rowids(physical))
    data: dict[str, Any] = {}
    for name in names:
        if name == ROWID:
            data[name] = arrays[name].to_numpy()
        else:
            data[name] = _values(arrays[name], ds.schema[name], decode)
    return pd.DataFrame(
        {k: _objects(v) if isinstance(v, list) else v for k, v in data.items()}, columns=names
    )


def _objects(values: list[Any]) -> np.ndarray:
    # Element by element: handing pandas a list of equal-shape arrays would make it 2-d.
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


__all__ = ["to_pandas"]
