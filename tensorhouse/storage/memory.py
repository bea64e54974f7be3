"""An in-process store, for tests and examples.

Our own dict rather than fsspec's memory file system: it is typed, needs no
import of fsspec, and one lock makes ``put_if_absent`` atomic.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Sequence
from typing import Any

from tensorhouse.errors import ObjectExistsError, ObjectNotFoundError
from tensorhouse.storage.base import ObjectInfo, Store, check_key
from tensorhouse.storage.local import check_range

_SCHEME = "memory://"


class _Bucket:
    """The objects of one top-level memory name, shared by every store on it."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.objects: dict[str, tuple[bytes, float]] = {}  # key -> (data, mtime)


_BUCKETS: dict[str, _Bucket] = {}
_BUCKETS_LOCK = threading.Lock()


def _fresh_locks_after_fork() -> None:
    # A fork while another thread held a lock would leave the child's copy
    # locked for ever; the child is single-threaded here, so new locks are safe.
    global _BUCKETS_LOCK
    _BUCKETS_LOCK = threading.Lock()
    for bucket in _BUCKETS.values():
        bucket.lock = threading.Lock()


if hasattr(os, "register_at_fork"):  # POSIX only
    os.register_at_fork(after_in_child=_fresh_locks_after_fork)


def _bucket(name: str) -> _Bucket:
    with _BUCKETS_LOCK:
        bucket = _BUCKETS.get(name)
        if bucket is None:
            bucket = _BUCKETS[name] = _Bucket()
        return bucket


class MemoryStore(Store):
    """Objects in a process-global dict, looked up by name.

    Two stores with the same name see the same objects, so
    ``open_store("memory://x")`` twice gives the same data. A name with
    slashes (``"x/sub"``) is the folder ``sub`` of ``"x"``, as
    ``open_store("memory://x").child("sub")`` is. Forked processes get a
    copy of the data, not a shared view.

    Example:
        >>> from tensorhouse.storage import MemoryStore
        >>> MemoryStore("memory-example").put("a", b"1")
        >>> MemoryStore("memory-example").get("a")
        b'1'
    """

    is_local = True
    supports_conditional_put = True

    def __init__(self, name: str) -> None:
        name = name[len(_SCHEME) :] if name.startswith(_SCHEME) else name
        path = name.strip("/")
        if not path:
            raise ValueError("a memory store needs a name, as in 'memory://name'")
        check_key(path)
        self.name = path
        self.uri = _SCHEME + path
        top, _, rest = path.partition("/")
        self._bucket = _bucket(top)
        self._root = rest + "/" if rest else ""

    @staticmethod
    def clear_all() -> None:
        """Forget every memory store's objects (for test isolation)."""
        with _BUCKETS_LOCK:
            buckets = list(_BUCKETS.values())
        for bucket in buckets:
            with bucket.lock:
                bucket.objects.clear()

    def __reduce__(self) -> tuple[Any, ...]:
        return (MemoryStore, (self.name,))

    def _k(self, key: str) -> str:
        return self._root + check_key(key)

    def _lookup(self, key: str) -> bytes:
        full = self._k(key)
        with self._bucket.lock:
            entry = self._bucket.objects.get(full)
        if entry is None:
            raise ObjectNotFoundError(f"no object {key!r} in {self.uri!r}")
        return entry[0]

    def get(self, key: str) -> bytes:
        return self._lookup(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        check_range(start, length)
        return self._lookup(key)[start : start + length]

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        for start, length in ranges:
            check_range(start, length)
        data = self._lookup(key)
        return [data[start : start + length] for start, length in ranges]

    def size(self, key: str) -> int:
        return len(self._lookup(key))

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        full = self._k(key)
        # bytes() copies mutable buffers, so later changes by the caller do not
        # leak in; a bytes object is immutable and is kept as it is.
        entry = (bytes(data), time.time())
        with self._bucket.lock:
            self._bucket.objects[full] = entry

    def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> None:
        full = self._k(key)
        entry = (bytes(data), time.time())
        with self._bucket.lock:
            if full in self._bucket.objects:
                raise ObjectExistsError(f"object {key!r} already exists in {self.uri!r}")
            self._bucket.objects[full] = entry

    def exists(self, key: str) -> bool:
        full = self._k(key)
        with self._bucket.lock:
            return full in self._bucket.objects

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        full = self._root + prefix
        n = len(self._root)
        with self._bucket.lock:
            items = [(k, v) for k, v in self._bucket.objects.items() if k.startswith(full)]
        return sorted(
            (ObjectInfo(k[n:], len(data), mtime) for k, (data, mtime) in items),
            key=lambda info: info.key,
        )

    def delete(self, key: str) -> None:
        full = self._k(key)
        with self._bucket.lock:
            self._bucket.objects.pop(full, None)
