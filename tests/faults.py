"""Store wrappers for tests: count operations, or fail at a chosen write.

Wrapping a real store (not mocking it) keeps every byte real; the wrapper
only adds counting or one injected failure.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter
from collections.abc import Sequence

from tensorhouse.errors import StorageError
from tensorhouse.storage import ForwardingStore
from tensorhouse.storage.base import ObjectInfo, Store


class Wrapper(ForwardingStore):
    """The fault-injection and counting wrappers below forward everything else."""


class CountingStore(Wrapper):
    """Counts calls and bytes read, by operation."""

    def __init__(self, inner: Store) -> None:
        super().__init__(inner)
        self.calls: Counter[str] = Counter()
        self.bytes_read = 0
        self.keys_read: list[str] = []
        self._lock = threading.Lock()

    def _count(self, op: str, key: str = "", n: int = 0) -> None:
        with self._lock:
            self.calls[op] += 1
            self.bytes_read += n
            if key:
                self.keys_read.append(key)

    def get(self, key: str) -> bytes:
        data = super().get(key)
        self._count("get", key, len(data))
        return data

    def get_range(self, key: str, start: int, length: int) -> bytes:
        data = super().get_range(key, start, length)
        self._count("get_range", key, len(data))
        return data

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        out = self.inner.get_ranges(key, ranges)
        self._count("get_ranges", key, sum(len(b) for b in out))
        return out

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        self._count("list")
        return super().list(prefix)


class InjectedFault(StorageError):
    """The failure a FaultyStore injects: an I/O error, as a network or disk would raise."""


class FaultyStore(Wrapper):
    """Fails the ``fail_at``-th write (0-based), ``before`` or ``after`` doing it.

    ``kill=True`` SIGKILLs the process instead of raising: a crash, not an error.
    """

    def __init__(self, inner: Store, fail_at: int, when: str, *, kill: bool = False) -> None:
        super().__init__(inner)
        self.fail_at = fail_at
        self.when = when
        self.kill = kill
        self.writes = 0
        self._lock = threading.Lock()

    def _fail(self, n: int, phase: str) -> None:
        if n == self.fail_at and phase == self.when:
            if self.kill:
                os.kill(os.getpid(), signal.SIGKILL)
            raise InjectedFault(f"injected failure {self.when} write {n}")

    def _write(self, fn, key: str, data: bytes | bytearray | memoryview) -> None:  # type: ignore[no-untyped-def]
        # Number each write when it starts: uploads run concurrently, so "the n-th
        # write" is the n-th to begin, and its "after" keeps the same number.
        with self._lock:
            n = self.writes
            self.writes += 1
        self._fail(n, "before")
        fn(key, data)
        self._fail(n, "after")

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        self._write(self.inner.put, key, data)

    def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> None:
        self._write(self.inner.put_if_absent, key, data)
