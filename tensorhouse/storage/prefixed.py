"""A view of a store under a key prefix."""

from __future__ import annotations

import builtins
from collections.abc import Sequence

from tensorhouse.storage.base import ObjectInfo, Store, check_key


class PrefixedStore(Store):
    """Every key is looked up as ``prefix/key`` in the parent store.

    Example:
        >>> from tensorhouse.storage import open_store
        >>> parent = open_store("memory://prefixed-example")
        >>> child = parent.child("sub")
        >>> child.put("x", b"1")
        >>> parent.get("sub/x")
        b'1'
    """

    def __init__(self, parent: Store, prefix: str) -> None:
        self.parent = parent
        self.prefix = check_key(prefix.strip("/")) + "/"
        self.uri = parent.uri.rstrip("/") + "/" + self.prefix.rstrip("/")
        self.supports_conditional_put = parent.supports_conditional_put
        self.is_local = parent.is_local

    def _k(self, key: str) -> str:
        return self.prefix + check_key(key)

    def get(self, key: str) -> bytes:
        return self.parent.get(self._k(key))

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self.parent.get_range(self._k(key), start, length)

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        return self.parent.get_ranges(self._k(key), ranges)

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        self.parent.put(self._k(key), data)

    def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> None:
        self.parent.put_if_absent(self._k(key), data)

    def exists(self, key: str) -> bool:
        return self.parent.exists(self._k(key))

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        n = len(self.prefix)
        return [
            ObjectInfo(info.key[n:], info.size, info.mtime)
            for info in self.parent.list(self.prefix + prefix)
        ]

    def list_keys(self, prefix: str = "") -> builtins.list[str]:
        n = len(self.prefix)
        return [key[n:] for key in self.parent.list_keys(self.prefix + prefix)]

    def list_staged(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        n = len(self.prefix)
        return [
            ObjectInfo(i.key[n:], i.size, i.mtime)
            for i in self.parent.list_staged(self.prefix + prefix)
        ]

    def delete_staged(self, key: str) -> None:
        self.parent.delete_staged(self._k(key))

    def delete(self, key: str) -> None:
        self.parent.delete(self._k(key))

    def size(self, key: str) -> int:
        return self.parent.size(self._k(key))

    def local_path(self, key: str) -> str | None:
        return self.parent.local_path(self._k(key))

    def map(self, key: str) -> memoryview | None:
        return self.parent.map(self._k(key))
