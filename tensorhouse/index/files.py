"""Index files: one immutable file per built index, written through the dataset's Store.

Layout (``_indexes/<uuid>.thidx``)::

    b"THIDX\\x00\\x01\\x00"  magic and format version
    u64 little-endian       header length
    header                  JSON: kind, metric, dim, count, covered fragments, crc32 of the body
    rowids                  int64[count]: the row id of each faiss position, ascending
    faiss bytes             the serialized index

Each covered fragment is recorded with the paths of the vector column's chunks
at build time: a fragment whose vectors were later rewritten (an update) no
longer matches and is searched exactly instead. Loaded indexes are kept in a
small in-process cache keyed by (store, path): files never change.

Example:
    >>> from tensorhouse.storage import open_store
    >>> import numpy as np
    >>> from tensorhouse.index import ann
    >>> x = np.eye(4, dtype="float32")
    >>> built = ann.build(x, metric="l2", kind="hnsw", params={}, progress=False)
    >>> store = open_store("memory://doc-index-files")
    >>> meta = IndexMeta("hnsw", "l2", 4, 4, ((0, 0, 4, ("data/x.chunk",)),), built.params)
    >>> ref = write(store, meta, np.arange(4, dtype="int64"), ann.save(built.index))
    >>> load(store, ref.path, ref.size).meta.count
    4
"""

from __future__ import annotations

import json
import struct
import threading
import uuid
import zlib
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import numpy as np

from tensorhouse.errors import CorruptDataError
from tensorhouse.index import ann
from tensorhouse.storage import Store

MAGIC = b"THIDX\x00\x01\x00"
PREFIX = "_indexes/"
#: A header is a few KiB per thousand fragments; anything larger is not ours.
MAX_HEADER = 64 << 20
#: Loaded indexes kept in memory (each is about the size of its vectors).
CACHE_ENTRIES = 4


@dataclass(frozen=True)
class IndexMeta:
    """What an index file says about itself. ``fragments``: (id, first position, count, chunk paths)."""

    kind: str
    metric: str
    dim: int
    count: int
    fragments: tuple[tuple[int, int, int, tuple[str, ...]], ...]
    params: dict[str, int]

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": "tensorhouse.index",
            "kind": self.kind,
            "metric": self.metric,
            "dim": self.dim,
            "count": self.count,
            "params": dict(self.params),
            "fragments": [[f, s, n, list(p)] for f, s, n, p in self.fragments],
        }

    @staticmethod
    def from_dict(d: Any) -> IndexMeta:
        try:
            if d["format"] != "tensorhouse.index":
                raise ValueError("not a tensorhouse index")
            frags = tuple(
                (int(f), int(s), int(n), tuple(str(x) for x in p)) for f, s, n, p in d["fragments"]
            )
            meta = IndexMeta(
                str(d["kind"]),
                str(d["metric"]),
                int(d["dim"]),
                int(d["count"]),
                frags,
                {str(k): int(v) for k, v in d["params"].items()},
            )
        except (KeyError, TypeError, ValueError) as err:
            raise CorruptDataError(f"malformed index header: {err!r}") from err
        if (
            meta.kind not in ann.KINDS
            or sum(n for _, _, n, _ in frags) != meta.count
            or meta.count < 0
        ):
            raise CorruptDataError(
                "index header: unknown kind or fragment counts that do not add up"
            )
        return meta


@dataclass(frozen=True)
class IndexFileRef:
    path: str
    size: int


@dataclass(frozen=True)
class LoadedIndex:
    meta: IndexMeta
    rowids: np.ndarray
    index: Any  # the faiss index
    order: np.ndarray | None = (
        None  # argsort of rowids when they are not ascending (a restore re-added old ids)
    )

    def positions(self, rowids: np.ndarray) -> np.ndarray:
        """Index positions of those of ``rowids`` (sorted) that the index holds."""
        ids = self.rowids if self.order is None else self.rowids[self.order]
        pos = np.searchsorted(ids, rowids)
        ok = pos < len(ids)
        pos = pos[ok][ids[pos[ok]] == rowids[ok]]
        return pos if self.order is None else self.order[pos]


def write(store: Store, meta: IndexMeta, rowids: np.ndarray, payload: bytes) -> IndexFileRef:
    """Write a new index file (a fresh name, put-if-absent) and return its path and size."""
    rowids = np.ascontiguousarray(rowids, dtype="<i8")
    if len(rowids) != meta.count:
        raise ValueError(f"{len(rowids)} row ids for an index of {meta.count} vectors")
    body = rowids.tobytes() + payload
    header = dict(meta.to_dict(), crc32=zlib.crc32(body), rowid_bytes=rowids.nbytes)
    head = json.dumps(header, separators=(",", ":")).encode()
    data = MAGIC + struct.pack("<Q", len(head)) + head + body
    path = f"{PREFIX}{uuid.uuid4().hex}.thidx"
    store.put_if_absent(path, data)
    return IndexFileRef(path, len(data))


_LOCK = threading.Lock()
_CACHE: OrderedDict[tuple[str, str], LoadedIndex] = OrderedDict()


def load(store: Store, path: str, size: int) -> LoadedIndex:
    """The index in ``path`` (checked against its recorded size and checksum), from the cache when loaded."""
    key = (store.uri, path)
    with _LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
            return hit
    data = store.get(path)
    where = f"{store.uri}/{path}"
    if len(data) != size:
        raise CorruptDataError(f"{where}: index file is {len(data)} bytes, the log says {size}")
    if data[:8] != MAGIC or len(data) < 16:
        raise CorruptDataError(f"{where}: not a tensorhouse index file")
    (hlen,) = struct.unpack("<Q", data[8:16])
    if hlen > min(MAX_HEADER, len(data) - 16):
        raise CorruptDataError(f"{where}: index header length {hlen} is out of range")
    try:
        header = json.loads(data[16 : 16 + hlen])
    except ValueError as err:
        raise CorruptDataError(f"{where}: unreadable index header") from err
    meta = IndexMeta.from_dict(header)
    body = memoryview(data)[16 + hlen :]
    if header.get("crc32") != zlib.crc32(body) or header.get("rowid_bytes") != meta.count * 8:
        raise CorruptDataError(f"{where}: index file checksum mismatch (corrupt file)")
    rowids = np.frombuffer(body[: meta.count * 8], dtype="<i8").astype(np.int64)
    index = ann.load(body[meta.count * 8 :])
    if index.ntotal != meta.count or index.d != meta.dim:
        raise CorruptDataError(
            f"{where}: the index holds {index.ntotal} x {index.d} vectors, the header says "
            f"{meta.count} x {meta.dim}"
        )
    ascending = bool(np.all(np.diff(rowids) > 0))
    loaded = LoadedIndex(
        meta, rowids, index, None if ascending else np.argsort(rowids, kind="stable")
    )
    with _LOCK:
        _CACHE[key] = loaded
        while len(_CACHE) > CACHE_ENTRIES:
            _CACHE.popitem(last=False)
    return loaded


__all__ = ["PREFIX", "IndexFileRef", "IndexMeta", "LoadedIndex", "load", "write"]
