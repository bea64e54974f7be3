"""The error every tensor UDF raises for bad input.

Engines surface the message of a Python exception raised inside a UDF
(DuckDB: ``Invalid Input Error: Python exception occurred while executing
the UDF: UDFArgumentError: ...``; DataFusion: ``Execution error: PyErr {
... UDFArgumentError("...") }``), so the message names the function, the
argument and, where one row is at fault, the row number within the batch.

Example:
    >>> from tensorhouse.udfs.kernels.errors import arg_error
    >>> str(arg_error("tensor_slice", 2, "[1:2", "is not a valid slice: missing ']'"))
    "tensor_slice: argument 2 ('[1:2') is not a valid slice: missing ']'"
"""

from __future__ import annotations

from typing import Any

from tensorhouse.errors import ArgumentError


class UDFArgumentError(ArgumentError):
    """A tensor UDF got an argument it cannot use (bad slice, wrong shape, not an image...)."""


def arg_error(fn: str, pos: int, value: Any, detail: str) -> UDFArgumentError:
    """An error about argument ``pos`` (1-based) of ``fn``; ``value`` is shown when it is short."""
    if value is None:
        return UDFArgumentError(f"{fn}: argument {pos} {detail}")
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return UDFArgumentError(f"{fn}: argument {pos} ({shown}) {detail}")


def row_error(fn: str, pos: int, row: int, detail: str) -> UDFArgumentError:
    """An error about one row of argument ``pos``; ``row`` counts from 0 within the batch."""
    return UDFArgumentError(f"{fn}: argument {pos} {detail} (row {row} of the batch)")


__all__ = ["UDFArgumentError", "arg_error", "row_error"]
