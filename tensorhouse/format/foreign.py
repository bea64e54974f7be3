"""Data from other tools, made into columns a write accepts: DataFrames, tensor extension arrays, lists.

- pandas and Polars DataFrames become columns without importing either
  package here (they are recognised by their module): Polars through
  ``to_arrow()``; pandas column by column, numbers and strings through Arrow
  (nullable dtypes, ``NaN`` for a missing string become nulls), object
  columns (arrays, bytes, ``None``) as Python values, categoricals as their
  labels (which a ``ClassLabel`` column accepts).
- Arrow columns are reshaped from their type, never from their first row:
  tensor extension arrays (``arrow.fixed_shape_tensor``, Ray's
  ``ray.data.arrow_tensor``/``_v2``/``arrow_variable_shaped_tensor``) become
  stacked or per-row numpy arrays of their shapes, and list columns for a
  ragged tensor or boxes keep every row's shape, an empty row included
  (``[]`` of ``list<fixed_size_list<float>[4]>`` is a ``(0, 4)`` array).

Example:
    >>> import pyarrow as pa
    >>> from tensorhouse.types import Tensor
    >>> col = pa.array([[[1, 2]], []], pa.list_(pa.list_(pa.float32(), 2)))
    >>> [a.shape for a in arrow_values(col, Tensor("float32", (None, 2)))]
    [(1, 2), (0, 2)]
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from tensorhouse.errors import SchemaError
from tensorhouse.types import ClassLabel, ColumnType


def _module(obj: Any) -> str:
    return type(obj).__module__.partition(".")[0]


def is_dataframe(data: Any) -> bool:
    """A pandas or Polars DataFrame (recognised without importing either)."""
    return type(data).__name__ == "DataFrame" and _module(data) in ("pandas", "polars")


def dataframe_columns(data: Any) -> dict[str, Any]:
    """Column name -> values of a pandas or Polars DataFrame."""
    if _module(data) == "polars":
        table = data.to_arrow()
        return {name: table.column(name) for name in table.column_names}
    out: dict[str, Any] = {}
    for name in data.columns:
        if not isinstance(name, str):
            raise SchemaError(f"DataFrame column names must be strings, got {name!r}")
        s = data[name]
        kind = str(s.dtype)
        if kind == "category":
            out[name] = [None if _missing(v) else v for v in s.astype(object).tolist()]
        elif kind == "object":
            out[name] = [None if _missing(v) else v for v in s.tolist()]
        else:
            try:
                out[name] = pa.array(s, from_pandas=True)
            except (pa.ArrowInvalid, pa.ArrowTypeError, pa.ArrowNotImplementedError):
                out[name] = [None if _missing(v) else v for v in s.tolist()]
    return out


def dataframe_to_arrow(data: Any) -> pa.Table:
    """A pandas or Polars DataFrame as an Arrow table whose types say what the columns hold.

    pandas object columns of numpy arrays become fixed-size lists when every
    row has one shape, lists of fixed-size lists when rows differ in their
    first dimension only (boxes), else ragged ``struct<data, shape>``
    tensors; a categorical of strings becomes a ``ClassLabel`` of its categories.
    """
    if _module(data) == "polars":
        return data.to_arrow()
    cols = dataframe_columns(data)
    fields, arrays = [], []
    for name, v in cols.items():
        s = data[name]
        if str(s.dtype) == "category" and all(isinstance(c, str) for c in s.cat.categories):
            # A categorical of names is a ClassLabel: its codes, typed by the field's metadata.
            codes = np.asarray(s.cat.codes, dtype=np.int32)
            arrays.append(pa.array(codes, mask=codes < 0))
            fields.append(ClassLabel(list(s.cat.categories)).arrow_field(name))
            continue
        arr = v if isinstance(v, pa.Array | pa.ChunkedArray) else _objects_to_arrow(v, name)
        arrays.append(arr)
        fields.append(pa.field(name, arr.type))
    return pa.table(arrays, schema=pa.schema(fields))


def _fsl(flat: pa.Array, dims: list[int]) -> pa.Array:
    for d in reversed(dims):
        flat = pa.FixedSizeListArray.from_arrays(flat, d)
    return flat


def _objects_to_arrow(values: list[Any], name: str) -> pa.Array:
    arrays = [None if v is None else np.asarray(v) for v in values]
    present = [a for a in arrays if a is not None]
    if (
        not present
        or any(a.dtype == object or a.dtype.kind in "USO" for a in present)
        or not all(isinstance(v, np.ndarray) for v in values if v is not None)
    ):
        try:
            return pa.array(values)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as err:
            raise SchemaError(
                f"column {name!r}: cannot convert its values to Arrow: {err}"
            ) from err
    dtype = np.result_type(*[a.dtype for a in present])
    shapes = {a.shape for a in present}
    mask = pa.array([a is None for a in arrays])
    if len(shapes) == 1 and present[0].ndim >= 1:  # one shape: nested fixed-size lists
        shape = present[0].shape
        fill = np.zeros(shape, dtype)
        flat = np.concatenate(
            [(fill if a is None else a.astype(dtype)).reshape(-1) for a in arrays]
        )
        out = _fsl(pa.array(flat), list(shape))
        return _with_nulls(out, mask)
    ndims = {a.ndim for a in present}
    if len(ndims) == 1 and len({a.shape[1:] for a in present}) == 1:  # rows differ in dim 0: lists
        inner = list(present[0].shape[1:])
        lengths = [0 if a is None else a.shape[0] for a in arrays]
        offsets = pa.array(np.concatenate([[0], np.cumsum(lengths)]).astype(np.int32))
        flat = np.concatenate([a.astype(dtype).reshape(-1) for a in present])
        return pa.ListArray.from_arrays(offsets, _fsl(pa.array(flat), inner), mask=mask)
    raise SchemaError(
        f"column {name!r}: its arrays have different numbers of dimensions ({sorted(ndims)}); "
        "give the column a type with schema= or make the rows alike"
    )


def _with_nulls(arr: pa.Array, mask: pa.Array) -> pa.Array:
    if not mask.to_numpy(zero_copy_only=False).any():
        return arr
    return pa.FixedSizeListArray.from_arrays(arr.values, arr.type.list_size, mask=mask)


def _missing(v: Any) -> bool:
    # pandas marks a missing object value with None, NaN or pd.NA/NaT: a scalar that is not equal to itself.
    if v is None:
        return True
    if isinstance(v, float):
        return v != v
    return type(v).__name__ in ("NAType", "NaTType")


def _dims(t: pa.DataType) -> tuple[list[int], pa.DataType]:
    dims: list[int] = []
    while pa.types.is_fixed_size_list(t):
        dims.append(t.list_size)
        t = t.value_type
    return dims, t


def _is_list(t: pa.DataType) -> bool:
    return bool(pa.types.is_list(t) or pa.types.is_large_list(t))


def _flat_numpy(arr: pa.Array) -> np.ndarray:
    while pa.types.is_fixed_size_list(arr.type) or _is_list(arr.type):
        arr = arr.flatten()
    return arr.to_numpy(zero_copy_only=False)


def _fixed_tensor(arr: pa.Array, shape: tuple[int, ...]) -> Any:
    storage = arr.storage
    if storage.null_count == 0:
        return _flat_numpy(storage).reshape(len(storage), *shape)
    return [None if v is None else np.asarray(v).reshape(shape) for v in storage.to_pylist()]


def _ragged_rows(arr: pa.Array, depth: int) -> list[Any]:
    """Rows of a list column whose rows are ``depth``-dimensional (lists of lists, or lists of
    fixed-size lists), each as an array of its own shape; an empty row keeps the inner dims."""
    inner_dims, _ = _dims(arr.type.value_type)
    if inner_dims:  # list<fixed_size_list...>: one flat buffer, rows cut by the offsets
        values = _flat_numpy(arr.values).reshape(-1, *inner_dims)
        offsets = arr.offsets.to_numpy()
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        return [values[offsets[i] : offsets[i + 1]] if valid[i] else None for i in range(len(arr))]
    out: list[Any] = []
    for v in arr.to_pylist():
        if v is None:
            out.append(None)
            continue
        a = np.asarray(v)
        out.append(a.reshape((0,) * depth) if a.size == 0 and a.ndim != depth else a)
    return out


def arrow_values(col: pa.Array | pa.ChunkedArray, ctype: ColumnType) -> Any:
    """``col`` as values ``ctype``'s writer accepts: the column itself where Arrow's own layout
    serves, else numpy arrays of each row's shape (see the module notes)."""
    arr = col
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks() if arr.num_chunks != 1 else arr.chunk(0)
    t = arr.type
    if isinstance(t, pa.BaseExtensionType):
        ext = t.extension_name
        if ext in (
            "arrow.fixed_shape_tensor",
            "ray.data.arrow_tensor",
            "ray.data.arrow_tensor_v2",
        ) and hasattr(t, "shape"):
            return _fixed_tensor(arr, tuple(int(d) for d in t.shape))
        if ext in ("ray.data.arrow_variable_shaped_tensor", "arrow.variable_shape_tensor"):
            return [
                None if row is None else np.asarray(row["data"]).reshape(row["shape"])
                for row in arr.storage.to_pylist()
            ]
        return arrow_values(arr.storage, ctype)
    if _is_list(t) and not ctype.is_fixed_shape and ctype.storage_dtype not in ("bytes", "str"):
        return _ragged_rows(arr, len(ctype.sample_shape))
    return col


__all__ = ["arrow_values", "dataframe_columns", "dataframe_to_arrow", "is_dataframe"]
