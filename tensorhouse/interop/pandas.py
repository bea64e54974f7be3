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

from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from tensorhouse.errors import SchemaError, UnsupportedError
from tensorhouse.format.convert import to_arrow, to_numpy
from tensorhouse.format.dataset import Dataset
from tensorhouse.types import ROWID, ClassLabel, ColumnType, Image, Json, Text


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


def _series_values(ds: Dataset, name: str, ctype: ColumnType, physical: np.ndarray, decode: bool) -> Any:
    pd = _pandas()
    batch = ds.reader.read_rows(name, ctype, physical)
    if isinstance(ctype, ClassLabel):
        codes = np.asarray(to_arrow(batch, ctype).fill_null(-1).to_numpy(zero_copy_only=False), dtype=np.int64)
        if ctype.classes:
            return pd.Categorical.from_codes(codes, categories=list(ctype.classes))
        return pd.array([None if c < 0 else c for c in codes], dtype="Int64")
    if ctype.is_scalar or (isinstance(ctype, Text) and not isinstance(ctype, Json)):
        arr = to_arrow(batch, ctype)
        if arr.null_count and (pa.types.is_integer(arr.type) or pa.types.is_boolean(arr.type)):
            # pandas' nullable dtype (Int64, boolean) keeps the ints; NaN would make them floats.
            return pd.array(arr.to_pylist(), dtype="boolean" if pa.types.is_boolean(arr.type) else
                            str(arr.type).replace("int", "Int").replace("uInt", "UInt"))  # fmt: skip
        return arr.to_pandas()
    if isinstance(ctype, Image) and ctype.compression is not None:
        return to_numpy(batch, ctype, decode=decode)
    values = to_numpy(batch, ctype, decode=decode)
    if isinstance(values, np.ndarray):  # a stacked fixed-shape column: one array per row, None for a null
        return [None if batch.is_null(i) else values[i] for i in range(len(values))]
    return values


def to_pandas(ds: Dataset, columns: Sequence[str] | None = None, *, rows: Sequence[int] | np.ndarray | None = None,
              decode: bool = False, with_rowid: bool = False) -> Any:  # fmt: skip
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
    physical = ds.reader.physical(_positions(ds, rows))
    data: dict[str, Any] = {}
    for name in names:
        if name == ROWID:
            data[name] = ds.reader.rowids(physical)
        else:
            data[name] = _series_values(ds, name, ds.schema[name], physical, decode)
    return pd.DataFrame({k: _objects(v) if isinstance(v, list) else v for k, v in data.items()}, columns=names)


def _objects(values: list[Any]) -> np.ndarray:
    # Element by element: handing pandas a list of equal-shape arrays would make it 2-d.
    out = np.empty(len(values), dtype=object)
    for i, v in enumerate(values):
        out[i] = v
    return out


__all__ = ["to_pandas"]
