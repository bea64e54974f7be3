"""Turn a batch of physical rows into arrays: chunk reads, decode, reused buffers.

Heavy columns are read chunk by chunk (whole chunks, mapped locally, kept in
a small LRU because chunk-aware shuffling revisits them batch after batch),
then each batch is split across the worker threads, which decode JPEG/PNG or
copy raw samples straight into a preallocated batch buffer. simplejpeg, zlib
and memcpy release the GIL, so the threads run in parallel.
"""

from __future__ import annotations

import itertools
import sys
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np

from tensorhouse.format.chunks import SampleBatch
from tensorhouse.format.chunks.codecs import decode_image
from tensorhouse.format.convert import batch_to_values
from tensorhouse.format.scan import SnapshotReader, null_batch
from tensorhouse.types import ColumnType, Image


class ChunkCache:
    """Whole decoded-from-codec chunks (SampleBatches), LRU by bytes. Thread-safe."""

    def __init__(self, reader: SnapshotReader, max_bytes: int) -> None:
        self.reader = reader
        self.max_bytes = max_bytes
        self._items: OrderedDict[tuple[str, int], SampleBatch] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()
        self._loading: dict[tuple[str, int], threading.Event] = {}

    def prefetch(self, pool: ThreadPoolExecutor, name: str, ctype: ColumnType, c: int) -> None:
        """Start reading a chunk in the background unless it is cached or being read."""
        with self._lock:
            if (name, c) in self._items or (name, c) in self._loading:
                return
        pool.submit(self.get, name, ctype, c)

    def get(self, name: str, ctype: ColumnType, c: int) -> SampleBatch:
        key = (name, c)
        while True:
            with self._lock:
                hit = self._items.get(key)
                if hit is not None:
                    self._items.move_to_end(key)
                    return hit
                waiter = self._loading.get(key)
                if waiter is None:
                    self._loading[key] = threading.Event()
                    break
            waiter.wait()  # another thread is reading this chunk: share its read
        try:
            batch = self.reader.read_chunk(name, ctype, c)
        finally:
            with self._lock:
                ev = self._loading.pop(key)
        with self._lock:
            self._items[key] = batch
            self._bytes += batch.nbytes
            while self._bytes > self.max_bytes and len(self._items) > 1:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes
        ev.set()
        return batch


@dataclass
class Column:
    """How one heavy column is materialised."""

    name: str
    ctype: ColumnType
    decode: bool
    pad: bool


class BufferRing:
    """Batch buffers reused round-robin, so pages are touched once, not per batch.

    ``allocator`` makes a new buffer (the torch side passes one of pinned memory,
    so copies to the GPU are asynchronous and run at full PCIe speed).

    A buffer is reused only when nothing outside the ring still refers to it:
    a batch the caller kept (``list(loader)``, a tensor made from it, a view of
    it) holds a reference, and then a fresh buffer replaces it in the ring, so
    kept batches never change under the caller. ``fresh`` counts those.
    """

    def __init__(
        self,
        slots: int,
        allocator: Callable[[tuple[int, ...], np.dtype[Any]], np.ndarray] | None = None,
    ) -> None:
        self.allocator = allocator or (lambda shape, dtype: np.empty(shape, dtype))
        self.slots = slots
        self._bufs: dict[tuple[str, int], np.ndarray] = {}
        self._lock = threading.Lock()
        self.fresh = 0

    def get(self, name: str, slot: int, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
        key = (name, slot % self.slots)
        with self._lock:
            buf = self._bufs.get(key)
            # The ring's dict, the local name and getrefcount's argument make 3: any more
            # and a batch handed out earlier still uses this buffer.
            if buf is not None and buf.shape == shape and buf.dtype == dtype:
                if sys.getrefcount(buf) <= _RING_REFS:
                    return buf
                self.fresh += 1
            buf = self._bufs[key] = self.allocator(shape, dtype)
            return buf


_RING_REFS = 3


class Materializer:
    """Reads and decodes heavy columns for batches of physical rows."""

    def __init__(
        self,
        reader: SnapshotReader,
        columns: Sequence[Column],
        *,
        threads: ThreadPoolExecutor,
        n_threads: int,
        cache_bytes: int,
        ring: BufferRing | None,
        whole_chunks: bool = True,
    ) -> None:
        self.reader = reader
        self.columns = list(columns)
        self.threads = threads
        self.n_threads = n_threads
        self.cache = ChunkCache(reader, cache_bytes)
        self.ring = ring
        #: False: fetch only the batch's samples by range (a full shuffle over object storage,
        #: where a batch touches many chunks once each); True: read and cache whole chunks.
        self.whole_chunks = whole_chunks

    def _payloads(
        self, col: Column, rows: np.ndarray
    ) -> tuple[list[memoryview | None], np.ndarray]:
        """Each row's stored payload (encoded image / raw bytes) and its shape."""
        index = self.reader.index(col.name)
        cidx = index.locate(rows)
        payloads: list[memoryview | None] = [None] * len(rows)
        shapes = np.zeros((len(rows), len(col.ctype.sample_shape)), np.int64)
        if not self.whole_chunks:
            batch = self.reader.read_rows(col.name, col.ctype, rows)
            data = memoryview(batch.data)
            for i in range(len(rows)):
                if batch.nulls is None or not batch.nulls[i]:
                    payloads[i] = data[batch.offsets[i] : batch.offsets[i + 1]]
            return payloads, np.asarray(batch.shapes)
        for c in np.unique(cidx):
            sel = np.flatnonzero(cidx == c)
            chunk = self.cache.get(col.name, col.ctype, int(c))
            local = rows[sel] - index.starts[c]
            shapes[sel] = chunk.shapes[local]
            data = memoryview(chunk.data)
            offs = chunk.offsets
            nulls = chunk.nulls
            for i, j in zip(sel.tolist(), local.tolist(), strict=True):
                if nulls is None or not nulls[j]:
                    payloads[i] = data[offs[j] : offs[j + 1]]
        return payloads, shapes

    def prefetch(self, pool: ThreadPoolExecutor, rows: np.ndarray) -> None:
        """Start reading the chunks a future batch needs."""
        if not self.whole_chunks:
            return
        for col in self.columns:
            for c in np.unique(self.reader.index(col.name).locate(rows)):
                self.cache.prefetch(pool, col.name, col.ctype, int(c))

    def _parallel(self, n: int, work: Callable[[int, int], None]) -> None:
        """Run ``work(start, stop)`` over ``range(n)`` split across the threads."""
        parts = min(self.n_threads, max(1, n))
        bounds = np.linspace(0, n, parts + 1).astype(int)
        if parts == 1:
            work(0, n)
            return
        futures = [self.threads.submit(work, int(a), int(b)) for a, b in itertools.pairwise(bounds)]
        for f in futures:
            f.result()

    def column(self, col: Column, rows: np.ndarray, slot: int) -> Any:
        """One column of a batch: a stacked array when every sample has one shape, else a list."""
        ctype = col.ctype
        if not col.decode and ctype.sample_codec is not None:
            # Encoded images handed over as zero-copy views of their chunks (GPU decode joins them).
            return self._payloads(col, rows)[0]
        if (
            not col.decode
            or ctype.storage_dtype in ("bytes", "str")
            or (
                ctype.sample_codec is None
                and not ctype.is_fixed_shape
                and not col.pad
                and not isinstance(ctype, Image)
            )
        ):
            # Text, json, encoded bytes and ragged tensors: the format layer's own conversion.
            return batch_to_values(
                self.reader.read_rows(col.name, ctype, rows) if len(rows) else null_batch(ctype, 0),
                ctype,
                decode=col.decode,
            )
        payloads, shapes = self._payloads(col, rows)
        codec = ctype.sample_codec
        dtype = np.dtype(ctype.storage_dtype)
        uniform = (
            len(rows) > 0
            and bool((shapes == shapes[0]).all())
            and all(p is not None for p in payloads)
        )
        if uniform:
            shape = (len(rows), *map(int, shapes[0]))
            out = (
                self.ring.get(col.name, slot, shape, dtype)
                if self.ring is not None
                else np.empty(shape, dtype)
            )

            def fill(a: int, b: int) -> None:
                for i in range(a, b):
                    p = payloads[i]
                    if codec is not None:
                        decode_image(codec, p, out=out[i])  # type: ignore[arg-type]
                    else:
                        out[i] = np.frombuffer(p, dtype).reshape(out.shape[1:])  # type: ignore[arg-type]

            self._parallel(len(rows), fill)
            return out
        items: list[np.ndarray | None] = [None] * len(rows)

        def fill_list(a: int, b: int) -> None:
            for i in range(a, b):
                p = payloads[i]
                if p is None:
                    continue
                if codec is not None:
                    items[i] = decode_image(codec, p)
                else:
                    items[i] = np.frombuffer(p, dtype).reshape(tuple(shapes[i])).copy()

        self._parallel(len(rows), fill_list)
        if col.pad:
            return pad(items, dtype)
        return items


def pad(items: Sequence[np.ndarray | None], dtype: np.dtype[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Ragged samples -> (zero-padded stack, per-sample shapes); a null sample is all zeros, shape 0."""
    ndim = next((x.ndim for x in items if x is not None), 1)
    shapes = np.array(
        [x.shape if x is not None else (0,) * ndim for x in items], dtype=np.int64
    ).reshape(len(items), ndim)
    top = shapes.max(axis=0) if len(items) else np.zeros(ndim, np.int64)
    out = np.zeros((len(items), *map(int, top)), dtype)
    for i, x in enumerate(items):
        if x is not None and x.size:
            out[i][tuple(slice(0, s) for s in x.shape)] = x
    return out, shapes
