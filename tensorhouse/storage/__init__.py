"""Byte storage: where datasets live (local disk, memory, S3 and other fsspec backends).

Example:
    >>> from tensorhouse.storage import open_store
    >>> store = open_store("memory://storage-example")
    >>> store.put("a.bin", b"hello")
    >>> store.get("a.bin")
    b'hello'
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from tensorhouse.storage.base import ObjectInfo, Store
from tensorhouse.storage.cache import CachedStore
from tensorhouse.storage.forwarding import ForwardingStore
from tensorhouse.storage.fsspec_store import FsspecStore  # imports fsspec only when used
from tensorhouse.storage.local import LocalStore
from tensorhouse.storage.memory import MemoryStore
from tensorhouse.storage.prefixed import PrefixedStore


def open_store(
    uri: str,
    storage_options: Mapping[str, Any] | None = None,
    *,
    cache_dir: str | None = None,
    cacheable: Callable[[str], bool] | None = None,
) -> Store:
    """Open the store rooted at ``uri``.

    ``memory://name`` gives a :class:`MemoryStore`, a path or ``file://`` URI a
    :class:`LocalStore`, and any other protocol (``s3://``, ``gs://``, ...) an
    :class:`FsspecStore` configured by ``storage_options``. A remote store is
    wrapped in a :class:`CachedStore` when ``cache_dir`` is given, either as
    an argument or as the ``"cache_dir"`` storage option; ``cacheable(key)``
    then says which keys are never rewritten and may be served from it (the
    storage layer knows no key layout: datasets pass
    :func:`tensorhouse.format.layout.is_immutable`).

    Example:
        >>> from tensorhouse.storage import open_store
        >>> open_store("memory://open-example")
        MemoryStore('memory://open-example')

        A cached S3 store (not run here: it needs an S3 server, and opening one
        imports s3fs and looks up credentials, seconds; ``tests/test_storage.py``
        runs it against moto_server):

        >>> store = open_store(  # doctest: +SKIP
        ...     "s3://bucket/ds",
        ...     {"endpoint_url": "http://localhost:9000", "cache_dir": "/tmp/th-cache"},
        ...     cacheable=lambda key: key.startswith("data/"),
        ... )
    """
    options = dict(storage_options or {})
    option_cache_dir = options.pop("cache_dir", None)
    if cache_dir is None:
        cache_dir = option_cache_dir
    scheme, sep, rest = uri.partition("://")
    protocol = scheme.lower() if sep else "file"
    if protocol in ("file", "memory"):
        if options:
            raise ValueError(
                f"storage options {sorted(options)} do not apply to {protocol} store {uri!r}"
            )
        # Local reads gain nothing from a disk cache, so cache_dir is ignored.
        return MemoryStore(rest) if protocol == "memory" else LocalStore(uri)
    store: Store = FsspecStore(uri, options)
    if cache_dir is not None:
        if cacheable is None:
            raise ValueError(
                f"cache_dir={cache_dir!r} needs cacheable=: which keys of {uri!r} are never rewritten"
            )
        store = CachedStore(store, cache_dir, cacheable=cacheable)
    return store


__all__ = [
    "CachedStore",
    "ForwardingStore",
    "FsspecStore",
    "LocalStore",
    "MemoryStore",
    "ObjectInfo",
    "PrefixedStore",
    "Store",
    "open_store",
]
