"""A process-wide cache of replayed states, so that opening a dataset again reads only what is new.

Checkpoints and log entries never change once written, so the state replayed
from a checkpoint plus the entries after it stays true. Lance keeps its
manifests in a per-process session cache for the same reason. An entry is
keyed by the store, the log's prefix and the checkpoint's identity as the
``_last_checkpoint`` hint states it (version, size and xxh3 of its bytes), which
every open reads anyway: a dataset deleted and created again at the same URI
has other checkpoint bytes, so it can never hit an entry of the old one. A hit
leaves one listing, the hint and the entries not seen yet to read.

Each entry holds the oldest state known from the checkpoint (its own, or the state
of a compacted log file when an open read that instead) and the newest state replayed from it.
The cache is bounded by the checkpoints' stored sizes (their decoded arrays are
about as big), least recently used first out: ``TENSORHOUSE_LOG_CACHE_BYTES``
sets the bound (default 256 MiB; 0 turns the cache off). :func:`clear` empties it.

Example:
    >>> from tensorhouse.format.log import cache
    >>> cache.clear()
    >>> cache.stats().entries
    0
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass

from tensorhouse.format.log.snapshot import Snapshot

DEFAULT_MAX_BYTES = 256 << 20


@dataclass(frozen=True)
class CacheKey:
    """One checkpoint of one log: where, and its identity as its hint states it."""

    store: str
    prefix: str
    version: int
    size: int
    digest: int


@dataclass(frozen=True)
class CacheStats:
    entries: int
    bytes: int
    max_bytes: int
    hits: int
    misses: int


@dataclass(frozen=True)
class _Entry:
    base: Snapshot
    newest: Snapshot


def _max_bytes() -> int:
    raw = os.environ.get("TENSORHOUSE_LOG_CACHE_BYTES")
    try:
        return DEFAULT_MAX_BYTES if raw is None else max(0, int(raw))
    except ValueError:
        return DEFAULT_MAX_BYTES


class SnapshotCache:
    """LRU of (oldest state known from a checkpoint, newest state replayed from it) by :class:`CacheKey`, bounded in bytes."""

    def __init__(self, max_bytes: int | None = None) -> None:
        self._fixed = max_bytes
        self._entries: OrderedDict[CacheKey, _Entry] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    @property
    def max_bytes(self) -> int:
        return self._fixed if self._fixed is not None else _max_bytes()

    def get(self, key: CacheKey) -> tuple[Snapshot, Snapshot] | None:
        """(the checkpoint's state or a later one, the newest state replayed from it), or None."""
        with self._lock:
            e = self._entries.get(key)
            if e is None:
                self.misses += 1
                return None
            self._entries.move_to_end(key)
            self.hits += 1
            return e.base, e.newest

    def put(self, key: CacheKey, base: Snapshot, newest: Snapshot | None = None) -> None:
        """Remember ``base`` (the checkpoint's state, or a later one read from a compacted file) and ``newest``."""
        newest = newest if newest is not None else base
        if key.size > self.max_bytes or base.version < key.version or newest.version < base.version:
            return
        with self._lock:
            old = self._entries.get(key)
            if old is not None:
                if old.base.version < base.version:
                    base = old.base  # the checkpoint's own state serves more versions
                if old.newest.version > newest.version:
                    newest = old.newest  # a reader of an older version must not move it back
                self._bytes -= key.size
            self._entries[key] = _Entry(base, newest)
            self._entries.move_to_end(key)
            self._bytes += key.size
            limit = self.max_bytes
            while self._bytes > limit and self._entries:
                k, _ = self._entries.popitem(last=False)
                self._bytes -= k.size

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self._bytes = 0
            self.hits = self.misses = 0

    def stats(self) -> CacheStats:
        with self._lock:
            return CacheStats(
                len(self._entries), self._bytes, self.max_bytes, self.hits, self.misses
            )


#: The process's cache, shared by every Log.
CACHE = SnapshotCache()


def clear() -> None:
    """Forget every cached state (the next open reads its checkpoint again)."""
    CACHE.clear()


def stats() -> CacheStats:
    return CACHE.stats()
