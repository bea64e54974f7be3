"""A store that passes every call to another: subclass it to observe or change a few calls.

Example:
    >>> from tensorhouse.storage import ForwardingStore, open_store
    >>> class Counting(ForwardingStore):
    ...     gets = 0
    ...     def get(self, key: str) -> bytes:
    ...         self.gets += 1
    ...         return super().get(key)
    >>> s = Counting(open_store("memory://forwarding-example"))
    >>> s.put("k", b"v"); s.get("k"), s.gets
    (b'v', 1)
"""

from __future__ import annotations

import builtins
from collections.abc import Sequence

from tensorhouse.storage.base import ObjectInfo, Store


class ForwardingStore(Store):
    """Every operation of ``inner``, unchanged; ``uri`` may be given to tell instances apart in caches."""

    def __init__(self, inner: Store, uri: str | None = None) -> None:
        self.inner = inner
        self.uri = uri or inner.uri
        self.supports_conditional_put = inner.supports_conditional_put
        self.is_local = inner.is_local

    def get(self, key: str) -> bytes:
        return self.inner.get(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self.inner.get_range(key, start, length)

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        return self.inner.get_ranges(key, ranges)

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        self.inner.put(key, data)

    def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> None:
        self.inner.put_if_absent(key, data)

    def exists(self, key: str) -> bool:
        return self.inner.exists(key)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        return self.inner.list(prefix)

    # list_keys is not forwarded: the base class derives it from list(), so a wrapper
    # that counts or filters list() sees every listing.
    def list_staged(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        return self.inner.list_staged(prefix)

    def delete_staged(self, key: str) -> None:
        self.inner.delete_staged(key)

    def delete(self, key: str) -> None:
        self.inner.delete(key)

    def size(self, key: str) -> int:
        return self.inner.size(key)

    def map(self, key: str) -> memoryview | None:
        return self.inner.map(key)

    def local_path(self, key: str) -> str | None:
        return self.inner.local_path(key)

    def close(self) -> None:
        self.inner.close()
