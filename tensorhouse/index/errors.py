"""Errors of vector search: bad arguments, unknown indexes, missing library.

:class:`VectorSearchError` subclasses the argument error that
``th.sql.nearest`` raises (:class:`tensorhouse.ArgumentError`), so
``except th.ArgumentError`` (and ``except ValueError``) around a search works
whichever path ran.

Example:
    >>> from tensorhouse.index.errors import VectorSearchError
    >>> issubclass(VectorSearchError, ValueError)
    True
"""

from __future__ import annotations

from tensorhouse.errors import ArgumentError, TensorhouseError, UnsupportedError


class VectorSearchError(ArgumentError):
    """A search or index argument that cannot be used: wrong dimension, NaN query, k <= 0,
    a column that is not a vector, a metric that does not match the index."""


class IndexNotFoundError(TensorhouseError, KeyError):
    """No index of that name in this version of the dataset."""

    def __str__(self) -> str:  # KeyError would show the message in quotes
        return str(self.args[0]) if self.args else ""


class IndexLibraryMissingError(UnsupportedError, ImportError):
    """The ANN library (faiss-cpu) is not installed."""


__all__ = ["IndexLibraryMissingError", "IndexNotFoundError", "VectorSearchError"]
