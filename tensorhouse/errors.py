"""One error hierarchy for tensorhouse.

Every error raised on purpose derives from :class:`TensorhouseError`. Where a
builtin exception means the same thing, the error also derives from it, so
``except FileNotFoundError`` keeps working for callers that do not know us.

Example:
    >>> import tensorhouse as th
    >>> try:
    ...     th.open("/nonexistent/dataset")
    ... except th.DatasetNotFoundError as err:
    ...     print(type(err).__name__)
    DatasetNotFoundError
"""

from __future__ import annotations


class TensorhouseError(Exception):
    """Root of every error tensorhouse raises on purpose."""


# -- storage -----------------------------------------------------------------
class StorageError(TensorhouseError, OSError):
    """A storage backend failed (I/O, permissions, network)."""


class ObjectNotFoundError(StorageError, FileNotFoundError):
    """A key does not exist in a store."""


class ObjectExistsError(StorageError, FileExistsError):
    """``put_if_absent`` found the key already taken."""


class ConditionalPutUnsupportedError(StorageError):
    """The store cannot write put-if-absent, so concurrent commits are unsafe."""


# -- datasets and versions ---------------------------------------------------
class DatasetNotFoundError(TensorhouseError, FileNotFoundError):
    """No dataset at the given URI."""


class DatasetExistsError(TensorhouseError, FileExistsError):
    """``create`` found a dataset already at the URI."""


class VersionNotFoundError(TensorhouseError, LookupError):
    """A version, timestamp, tag or branch does not resolve to a commit."""


class RefExistsError(TensorhouseError, FileExistsError):
    """A tag or branch of that name already exists."""


class SchemaError(TensorhouseError, ValueError):
    """Data does not fit the schema: unknown or missing column, wrong dtype or shape."""


class CorruptDataError(TensorhouseError, IOError):
    """Bytes read from storage failed validation."""


class CorruptChunkError(CorruptDataError):
    """A chunk file failed its checksum or structural checks."""


class CorruptLogError(CorruptDataError):
    """A log entry or checkpoint is unreadable or inconsistent."""


class CommitConflictError(TensorhouseError):
    """A concurrent commit conflicts with this one and retrying cannot help."""


class ArgumentError(TensorhouseError, ValueError):
    """A function got an argument it cannot use; the message names the function and the argument.

    ``th.sql.nearest`` raises it; the tensor UDFs raise its subclass
    :class:`~tensorhouse.udfs.kernels.errors.UDFArgumentError`.
    """


class RowNotFoundError(TensorhouseError, KeyError, IndexError):
    """A row position or row id that the version does not hold (the message names it)."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class CodecError(TensorhouseError, ValueError):
    """A sample could not be encoded or decoded (e.g. not a JPEG)."""


class UnsupportedError(TensorhouseError, NotImplementedError):
    """An operation this dataset, store or type does not support."""


class NotIterableError(UnsupportedError, TypeError):
    """Iterating an object that is not a sequence of rows or tables (a TypeError, as ``iter()`` raises)."""


__all__ = [
    "ArgumentError",
    "CodecError",
    "CommitConflictError",
    "ConditionalPutUnsupportedError",
    "CorruptChunkError",
    "CorruptDataError",
    "CorruptLogError",
    "DatasetExistsError",
    "DatasetNotFoundError",
    "NotIterableError",
    "ObjectExistsError",
    "ObjectNotFoundError",
    "RefExistsError",
    "RowNotFoundError",
    "SchemaError",
    "StorageError",
    "TensorhouseError",
    "UnsupportedError",
    "VersionNotFoundError",
]
