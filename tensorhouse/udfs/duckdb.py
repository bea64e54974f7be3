"""Register the tensor UDFs on a DuckDB connection.

How DuckDB 2.0's Python UDFs behave (measured), and what we do about it:

- One function per name: a second ``create_function`` with the same name is
  refused ("creating multiple functions with the same name is not supported
  yet"). Registering with ``parameters=None`` makes the function accept any
  number of arguments of ANY type, so one registration takes every tensor
  layout (FLOAT[4][2], FLOAT[], STRUCT(data, shape), BLOB); the catalog
  checks the argument count and kinds itself. The return type is declared.
- ``type="arrow"``: each call gets one ``pa.ChunkedArray`` per argument,
  at most 2048 rows; a constant argument arrives repeated on every row.
- With the default null handling, rows with a NULL argument are dropped
  before the call, and a NULL in the result is an error ("The returned
  result contained NULL values, but the 'null_handling' was set to
  DEFAULT"). Our functions return NULL for undefined results (the mean of
  an empty tensor, cosine with a zero vector), so they are registered with
  ``null_handling=SPECIAL``: NULL rows reach them and the catalog maps them
  to NULL results.
- Field metadata (the column's tensorhouse type, the box format) does not
  reach the function: pass the box format as the last argument.
- An exception surfaces as ``duckdb.InvalidInputException: Invalid Input
  Error: Python exception occurred while executing the UDF:
  UDFArgumentError: <our message>``.

Example:
    >>> import duckdb, tensorhouse as th
    >>> con = duckdb.connect()
    >>> _ = th.udfs.register(con)
    >>> con.sql("SELECT tensor_sum([[1, 2], [3, 4]]::INTEGER[2][2]) AS s").fetchall()
    [(10.0,)]
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable

import duckdb
import duckdb.func
import pyarrow as pa

from tensorhouse.udfs.catalog import CATALOG, UDF

_PRIMITIVES: dict[pa.DataType, str] = {
    pa.bool_(): "BOOLEAN",
    pa.int8(): "TINYINT",
    pa.int16(): "SMALLINT",
    pa.int32(): "INTEGER",
    pa.int64(): "BIGINT",
    pa.uint8(): "UTINYINT",
    pa.uint16(): "USMALLINT",
    pa.uint32(): "UINTEGER",
    pa.uint64(): "UBIGINT",
    pa.float32(): "FLOAT",
    pa.float64(): "DOUBLE",
    pa.string(): "VARCHAR",
    pa.binary(): "BLOB",
}


def sql_type(t: pa.DataType) -> str:
    """DuckDB's spelling of an Arrow type: ``list<fixed_size_list<float>[4]>`` -> ``FLOAT[4][]``.

    Example:
        >>> from tensorhouse.udfs.kernels.tensors import RAGGED_F64
        >>> sql_type(RAGGED_F64)
        'STRUCT("data" DOUBLE[], "shape" INTEGER[])'
    """
    if t in _PRIMITIVES:
        return _PRIMITIVES[t]
    if pa.types.is_fixed_size_list(t):
        return f"{sql_type(t.value_type)}[{t.list_size}]"
    if pa.types.is_list(t) or pa.types.is_large_list(t):
        return f"{sql_type(t.value_type)}[]"
    if pa.types.is_struct(t):
        inner = ", ".join(
            f'"{t.field(i).name}" {sql_type(t.field(i).type)}' for i in range(t.num_fields)
        )
        return f"STRUCT({inner})"
    raise TypeError(f"no DuckDB type for Arrow type {t}")


def _wrap(udf: UDF) -> Callable[..., pa.Array]:
    def call(*args: pa.ChunkedArray) -> pa.Array:
        return udf(*args)

    call.__name__ = udf.name
    call.__doc__ = f"{udf.signature()}: {udf.summary}"
    return call


def register(con: duckdb.DuckDBPyConnection, *, names: Iterable[str] | None = None) -> list[str]:
    """Install the tensor UDFs (all, or ``names``) on ``con``, replacing earlier registrations.

    Returns the names registered.

    Example:
        >>> import duckdb
        >>> con = duckdb.connect()
        >>> register(con, names=["tensor_shape"])
        ['tensor_shape']
        >>> con.sql("SELECT tensor_shape([[1, 2, 3]]::FLOAT[3][1]) AS s").fetchall()
        [([1, 3],)]
    """
    wanted = set(names) if names is not None else None
    done: list[str] = []
    for udf in CATALOG:
        if wanted is not None and udf.name not in wanted:
            continue
        with contextlib.suppress(duckdb.Error):  # not registered yet
            con.remove_function(udf.name)
        # parameters=None: any number of arguments of any type (see the module docstring).
        con.create_function(
            udf.name,
            _wrap(udf),
            None,
            duckdb.sqltype(sql_type(udf.returns)),
            type=duckdb.func.ARROW,
            null_handling=duckdb.func.SPECIAL,
        )
        done.append(udf.name)
    return done


__all__ = ["register", "sql_type"]
