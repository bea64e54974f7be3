"""A read-through local disk cache for remote stores.

Only objects that are never rewritten are cached, so a cached copy can never
be stale and no request is needed to validate it. Which keys those are is the
format's knowledge (data files, deletion files, numbered log entries and
checkpoints; see :mod:`tensorhouse.format.layout`): the caller passes it in as
``cacheable``. Every other key, listings and existence checks always go to
the remote store.
"""

from __future__ import annotations

import hashlib
import logging
import os
import re
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from typing import Any

from tensorhouse.storage.base import ObjectInfo, Store, check_key
from tensorhouse.storage.local import TMP_PREFIX, check_range, pread_exact, unlink_missing_ok

_log = logging.getLogger(__name__)

_CACHE_NAME = re.compile(r"[0-9a-f]{64}")
# Staged files older than this were left by a crashed process, not one still writing.
_STALE_TMP_S = 3600.0


class CachedStore(Store):
    """Serves the objects of ``inner`` that are never rewritten from files under ``cache_dir``.

    ``cacheable(key)`` says which keys are never rewritten (for datasets,
    :func:`tensorhouse.format.layout.is_immutable`); all other keys pass through.

    A whole-object ``get`` fills the cache; ranged reads are served from the
    cache when the object is there and otherwise passed through, so reading a
    header never downloads a whole chunk. Least-recently-used files are
    evicted once the cache passes ``max_bytes``. Several stores and processes
    may share one ``cache_dir`` (file names hash the store URI and key), but
    each process counts only the files it has seen against its limit.

    Example:
        >>> import tempfile
        >>> from tensorhouse.storage import CachedStore, MemoryStore
        >>> remote = MemoryStore("cache-example")
        >>> remote.put("data/a.bin", b"abc")
        >>> store = CachedStore(remote, tempfile.mkdtemp(), max_bytes=1 << 20,
        ...                     cacheable=lambda key: key.startswith("data/"))
        >>> store.get("data/a.bin")  # fetched once, then read from disk
        b'abc'
    """

    def __init__(
        self,
        inner: Store,
        cache_dir: str | os.PathLike[str],
        max_bytes: int = 2 << 30,
        *,
        cacheable: Callable[[str], bool],
    ) -> None:
        if max_bytes < 0:
            raise ValueError(f"max_bytes must be >= 0, not {max_bytes}")
        self.inner = inner
        self.uri = inner.uri
        self.supports_conditional_put = inner.supports_conditional_put
        self.is_local = inner.is_local
        self.cache_dir = os.path.abspath(os.fspath(cache_dir))
        self.max_bytes = max_bytes
        self.cacheable = cacheable
        self._lock = threading.Lock()
        self._pid = os.getpid()
        self._lru: OrderedDict[str, int] = OrderedDict()  # cache file -> size, oldest first
        self._total = 0
        self._warned = False
        os.makedirs(self.cache_dir, exist_ok=True)
        self._scan()

    def __reduce__(self) -> tuple[Any, ...]:
        return (_rebuild, (self.inner, self.cache_dir, self.max_bytes, self.cacheable))

    # -- bookkeeping -------------------------------------------------------------
    def _guard(self) -> threading.Lock:
        # A fork while another thread held the lock would leave the child's copy
        # locked for ever (DataLoader workers fork); a child takes a fresh lock.
        if self._pid != os.getpid():
            self._lock = threading.Lock()
            self._pid = os.getpid()
        return self._lock

    def _cache_path(self, key: str) -> str:
        digest = hashlib.sha256(f"{self.uri}\0{key}".encode()).hexdigest()
        return os.path.join(self.cache_dir, digest[:2], digest)

    def _scan(self) -> None:
        """Count the files already cached, oldest first, and drop stale staged files."""
        found: list[tuple[float, str, int]] = []
        now = time.time()
        for sub in _scandir(self.cache_dir):
            if not sub.is_dir(follow_symlinks=False):
                continue
            for entry in _scandir(sub.path):
                try:
                    st = entry.stat(follow_symlinks=False)
                except FileNotFoundError:
                    continue
                if _CACHE_NAME.fullmatch(entry.name):
                    found.append((st.st_mtime, entry.path, st.st_size))
                elif entry.name.startswith(TMP_PREFIX) and now - st.st_mtime > _STALE_TMP_S:
                    unlink_missing_ok(entry.path)
        found.sort()
        with self._guard():
            for _, path, size in found:
                self._lru[path] = size
                self._total += size
            self._evict()

    def _record(self, path: str, size: int) -> None:
        """Mark ``path`` most recently used; evict others if over the limit."""
        with self._guard():
            old = self._lru.pop(path, None)
            if old is not None:
                self._total -= old
            self._lru[path] = size
            self._total += size
            self._evict()

    def _evict(self) -> None:
        # Called with the lock held.
        while self._total > self.max_bytes and self._lru:
            path, size = self._lru.popitem(last=False)
            self._total -= size
            unlink_missing_ok(path)

    def _forget(self, key: str) -> None:
        path = self._cache_path(key)
        with self._guard():
            size = self._lru.pop(path, None)
            if size is not None:
                self._total -= size
        unlink_missing_ok(path)

    def _fill(self, path: str, data: bytes) -> None:
        """Cache ``data`` at ``path`` atomically; a failing cache never fails the read."""
        if len(data) > self.max_bytes:
            return
        directory = os.path.dirname(path)
        tmp = os.path.join(directory, TMP_PREFIX + uuid.uuid4().hex)
        try:
            os.makedirs(directory, exist_ok=True)
            with open(tmp, "xb") as f:
                f.write(data)
                # Without the fsync a crash could leave a truncated file under the
                # final name, and nothing ever revalidates a cached file.
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as err:
            unlink_missing_ok(tmp)
            if not self._warned:
                self._warned = True
                _log.warning("cannot write to cache %s, reading uncached: %s", self.cache_dir, err)
            return
        self._record(path, len(data))

    # -- reads -----------------------------------------------------------------
    def get(self, key: str) -> bytes:
        if not self.cacheable(check_key(key)):
            return self.inner.get(key)
        path = self._cache_path(key)
        try:
            with open(path, "rb") as f:
                data = f.read()
        except FileNotFoundError:
            data = self.inner.get(key)
            self._fill(path, data)
            return data
        self._record(path, len(data))
        return data

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self.get_ranges(key, [(start, length)])[0]

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        if not self.cacheable(check_key(key)):
            return self.inner.get_ranges(key, ranges)
        for start, length in ranges:
            check_range(start, length)
        path = self._cache_path(key)
        try:
            fd = os.open(path, os.O_RDONLY)
        except FileNotFoundError:
            return self.inner.get_ranges(key, ranges)
        try:
            out = [pread_exact(fd, start, length) for start, length in ranges]
            size = os.fstat(fd).st_size
        finally:
            os.close(fd)
        self._record(path, size)
        return out

    def size(self, key: str) -> int:
        if self.cacheable(check_key(key)):
            try:
                return os.stat(self._cache_path(key)).st_size
            except FileNotFoundError:
                pass
        return self.inner.size(key)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        return self.inner.list(prefix)

    # -- writes ----------------------------------------------------------------
    # Writes do not fill the cache: a writer rarely reads back what it wrote, and
    # an ingest would otherwise evict what readers need. They do drop any cached
    # copy, in case an "immutable" key was deleted and written again.
    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        self.inner.put(key, data)
        if self.cacheable(key):
            self._forget(key)

    def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> None:
        self.inner.put_if_absent(key, data)
        if self.cacheable(key):
            self._forget(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)
        if self.cacheable(key):
            self._forget(key)

    def close(self) -> None:
        self.inner.close()


def _rebuild(
    inner: Store, cache_dir: str, max_bytes: int, cacheable: Callable[[str], bool]
) -> CachedStore:
    return CachedStore(inner, cache_dir, max_bytes, cacheable=cacheable)


def _scandir(path: str) -> list[os.DirEntry[str]]:
    try:
        with os.scandir(path) as it:
            return list(it)
    except (FileNotFoundError, NotADirectoryError):
        return []
