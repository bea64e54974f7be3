"""The Store contract: bytes in, bytes out, keyed by '/'-separated paths.

A Store is rooted at a URI (a dataset's folder). Keys are relative to that
root, use '/' as separator and never start with '/'. Stores know nothing of
tensors or logs; the format layer builds on exactly these operations.

Example:
    >>> from tensorhouse.storage import open_store
    >>> s = open_store("memory://doc-example")
    >>> s.put("a/b.bin", b"hello")
    >>> s.get_range("a/b.bin", 1, 3)
    b'ell'
"""

from __future__ import annotations

import abc
import builtins
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class ObjectInfo:
    """What a listing knows of one object."""

    key: str
    size: int
    mtime: float | None  # seconds since the epoch; None where the backend cannot tell


class Store(abc.ABC):
    """Byte storage rooted at one URI.

    Implementations must be safe to call from several threads at once.
    Errors: a missing key raises :class:`~tensorhouse.errors.ObjectNotFoundError`;
    ``put_if_absent`` on a taken key raises
    :class:`~tensorhouse.errors.ObjectExistsError`; other I/O failures raise
    :class:`~tensorhouse.errors.StorageError`.
    """

    #: The URI this store is rooted at, as given by the user.
    uri: str
    #: Whether ``put_if_absent`` is atomic against concurrent writers.
    supports_conditional_put: bool = True
    #: Whether reads are cheap enough that caching them locally gains nothing.
    is_local: bool = False

    @abc.abstractmethod
    def get(self, key: str) -> bytes:
        """Return the whole object."""

    @abc.abstractmethod
    def get_range(self, key: str, start: int, length: int) -> bytes:
        """Return ``length`` bytes from ``start``; fewer only at the end of the object."""

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        """Return several ``(start, length)`` ranges of one object, in order.

        Backends override this to coalesce or parallelise the reads.
        """
        return [self.get_range(key, start, length) for start, length in ranges]

    @abc.abstractmethod
    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        """Write an object, replacing any previous one. Atomic: readers never see a torn object."""

    def put_parts(self, key: str, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        """``put(key, b"".join(parts))``; a backend that can write the parts in turn skips the copy."""
        self.put(key, b"".join(parts))

    def put_volatile(self, key: str, data: bytes | bytearray | memoryview) -> None:
        """``put`` for an object only kept to go faster (a compacted log file): it may be lost in a crash.

        Still atomic. A backend whose durable writes cost a flush to disk skips it.
        """
        self.put(key, data)

    @abc.abstractmethod
    def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> None:
        """Write an object only if the key is free, atomically; else ObjectExistsError."""

    @abc.abstractmethod
    def exists(self, key: str) -> bool:
        """Whether the key holds an object."""

    @abc.abstractmethod
    def list(self, prefix: str = "") -> list[ObjectInfo]:
        """Every object whose key starts with ``prefix`` (recursive), sorted by key."""

    def list_keys(self, prefix: str = "") -> builtins.list[str]:
        """The keys ``list`` would return, sorted; backends override it to skip per-object metadata (a stat).

        Like ``list``, a listing is not a snapshot: an object created while it
        runs may be missing from it (readers of the log re-check gaps).
        """
        return [info.key for info in self.list(prefix)]

    def list_staged(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        """Staged files of writes that never finished (a crash between writing and renaming), if the
        backend stages writes at all. Their keys are only good for :meth:`delete_staged`."""
        return []

    def delete_staged(self, key: str) -> None:  # noqa: B027 - optional hook
        """Remove a staged file that :meth:`list_staged` returned."""

    @abc.abstractmethod
    def delete(self, key: str) -> None:
        """Remove an object; a missing key is not an error."""

    def size(self, key: str) -> int:
        """The object's size in bytes."""
        return len(self.get(key))

    def get_bounded(self, key: str, limit: int) -> tuple[bytes, int]:
        """``(bytes, size)`` of an object of at most ``limit`` bytes, never holding more than ``limit + 1`` bytes.

        A larger object comes back as ``(b"", its size)`` where the size costs
        no read (``is_local`` stores: a 64 GiB sparse file costs a stat), and
        elsewhere as its first ``limit + 1`` bytes (one range request, no
        extra one for the size). The caller refuses it either way.

        Example:
            >>> from tensorhouse.storage import open_store
            >>> s = open_store("memory://bounded-example")
            >>> s.put("k", b"12345")
            >>> s.get_bounded("k", 8), s.get_bounded("k", 3)
            ((b'12345', 5), (b'', 5))
        """
        if self.is_local:
            size = self.size(key)
            if size > limit:
                return b"", size
            data = self.get(key)
        else:
            data = self.get_range(key, 0, limit + 1)
        return data, len(data)

    def map(self, key: str) -> memoryview | None:
        """A read-only zero-copy view of a whole object, where the backend can map it (local files).

        Reading a large object into fresh memory costs a page fault per 4 KiB;
        a mapping of a file in the page cache does not. None means "use get".
        """
        return None

    def local_path(self, key: str) -> str | None:
        """The absolute file-system path of ``key``, where the backend keeps objects as local files
        that other programs (a SQL engine's own Parquet reader) can open; None elsewhere."""
        return None

    def child(self, prefix: str) -> Store:
        """A store rooted at ``prefix`` inside this one (e.g. a branch's folder)."""
        from tensorhouse.storage.prefixed import PrefixedStore

        return PrefixedStore(self, prefix)

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release resources (connections, file handles)."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.uri!r})"


def check_key(key: str) -> str:
    """Validate a store key: relative, '/'-separated, no '..' segments."""
    if not key or key.startswith("/") or "\\" in key:
        raise ValueError(f"invalid store key {key!r}")
    # Only a key with "//", "/." or a leading or trailing "." or "/" can hold such a segment: most keys skip the split.
    if ("//" in key or "/." in key or key[0] == "." or key[-1] in "./") and any(
        part in ("", ".", "..") for part in key.split("/")
    ):
        raise ValueError(f"invalid store key {key!r}")
    return key
