"""Read chunks: whole (scans) or a few samples by range (random access).

Reading one sample costs at most two range reads: the header (whose length
the log records) and the sample's checksum blocks; once the header is cached,
one. Several samples of one chunk are fetched with coalesced ranges.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence

import numpy as np

from tensorhouse.errors import CorruptChunkError
from tensorhouse.format.chunks import codecs
from tensorhouse.format.chunks.header import (
    ChunkHeader,
    decode_header,
    header_length_hint,
    verify_blocks,
)
from tensorhouse.format.chunks.samples import SampleBatch
from tensorhouse.storage.base import Store

#: Ranges closer than this are fetched in one read (a seek costs more than the gap).
COALESCE_GAP = 64 << 10
#: How many bytes to read when a header's length is unknown.
HEADER_PROBE = 64 << 10


class HeaderCache:
    """A thread-safe LRU of parsed chunk headers, keyed by store URI and path."""

    def __init__(self, capacity: int = 8192) -> None:
        self.capacity = capacity
        self._items: OrderedDict[tuple[str, str], ChunkHeader] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, str]) -> ChunkHeader | None:
        with self._lock:
            h = self._items.get(key)
            if h is not None:
                self._items.move_to_end(key)
            return h

    def put(self, key: tuple[str, str], header: ChunkHeader) -> None:
        with self._lock:
            self._items[key] = header
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


_HEADERS = HeaderCache()
#: Mapped chunk files whose checksums passed in this process (files are immutable).
_VERIFIED: set[tuple[str, str, int]] = set()


class ChunkReader:
    """Reads chunk files of one store.

    Example:
        >>> # reader = ChunkReader(store); batch = reader.read_all("data/x/1.chunk", 128, 4096)
    """

    def __init__(self, store: Store, headers: HeaderCache | None = None) -> None:
        self.store = store
        self.headers = headers or _HEADERS

    def header(self, path: str, header_length: int | None, size: int | None) -> ChunkHeader:
        key = (self.store.uri, path)
        h = self.headers.get(key)
        if h is not None:
            return h
        if header_length is None:
            probe = self.store.get_range(path, 0, HEADER_PROBE)
            header_length = header_length_hint(probe)
            data = probe if header_length <= len(probe) else self.store.get_range(path, 0, header_length)
        else:
            data = self.store.get_range(path, 0, header_length)
        h = self._parse(path, data, size)
        self.headers.put(key, h)
        return h

    def _parse(self, path: str, data: bytes | memoryview, size: int | None) -> ChunkHeader:
        try:
            return decode_header(data, file_length=size)
        except CorruptChunkError as err:
            raise CorruptChunkError(f"{self.store.uri}/{path}: {err}") from err

    def read_all(self, path: str, size: int | None = None) -> SampleBatch:
        """Every sample of a chunk, read with one request (or mapped, locally) and verified.

        A chunk whose checksums passed once in this process is not checked again
        when mapped anew: chunk files are immutable, and the page cache holds the
        bytes that were verified.
        """
        mapped = self.store.map(path)
        blob: bytes | memoryview = mapped if mapped is not None else self.store.get(path)
        if size is not None and len(blob) != size:
            raise CorruptChunkError(f"{self.store.uri}/{path}: {len(blob)} bytes, the log says {size}")
        view = memoryview(blob)
        try:
            hl = header_length_hint(view)
            h = decode_header(view[:hl], file_length=len(blob))
        except CorruptChunkError as err:
            raise CorruptChunkError(f"{self.store.uri}/{path}: {err}") from err
        self.headers.put((self.store.uri, path), h)
        stored = view[h.header_length :]
        key = (self.store.uri, path, len(blob))
        try:
            if mapped is None or key not in _VERIFIED:
                verify_blocks(h, 0, stored)
                if mapped is not None:
                    _VERIFIED.add(key)
            raw = codecs.decompress(h.chunk_codec, stored, h.raw_length)
        except CorruptChunkError as err:
            raise CorruptChunkError(f"{self.store.uri}/{path}: {err}") from err
        return SampleBatch(raw, h.offsets, np.asarray(h.shapes), h.nulls)

    def read_rows(self, path: str, rows: Sequence[int] | np.ndarray, *, header_length: int | None = None,
                  size: int | None = None) -> SampleBatch:  # fmt: skip
        """Samples ``rows`` (chunk-local indices, any order, repeats allowed), in that order."""
        h = self.header(path, header_length, size)
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= h.num_samples):
            raise IndexError(f"{path}: row out of range for a chunk of {h.num_samples} samples")
        if h.chunk_codec != "none":
            return take(self.read_all(path, size), rows)
        starts = h.offsets[rows]
        ends = h.offsets[rows + 1]
        bs = h.block_size
        # Expand each sample to the checksum blocks that cover it, then merge.
        b0 = starts // bs
        b1 = np.maximum(-(-ends // bs), b0 + 1)
        order = np.argsort(b0, kind="stable")
        ranges: list[list[int]] = []
        for i in order:
            lo, hi = int(b0[i]), int(b1[i])
            if ranges and lo * bs <= ranges[-1][1] * bs + COALESCE_GAP:
                ranges[-1][1] = max(ranges[-1][1], hi)
            else:
                ranges.append([lo, hi])
        total_blocks = len(h.block_crcs)
        reqs = [(h.header_length + lo * bs, min(hi, total_blocks) * bs - lo * bs) for lo, hi in ranges]
        reqs = [(s, min(ln, h.data_length - (s - h.header_length))) for s, ln in reqs]
        parts = self.store.get_ranges(path, reqs)
        pieces: dict[int, tuple[int, memoryview]] = {}
        for (lo, _hi), part, (_s, ln) in zip(ranges, parts, reqs, strict=True):
            if len(part) != ln:
                raise CorruptChunkError(f"{self.store.uri}/{path}: short read ({len(part)} of {ln} bytes)")
            try:
                verify_blocks(h, lo, part)
            except CorruptChunkError as err:
                raise CorruptChunkError(f"{self.store.uri}/{path}: {err}") from err
            pieces[lo] = (lo * bs, memoryview(part))
        range_starts = np.array(sorted(pieces), dtype=np.int64)
        out_parts = []
        for s, e, blk in zip(starts, ends, b0, strict=True):
            key = int(range_starts[np.searchsorted(range_starts, blk, side="right") - 1])
            base, view = pieces[key]
            out_parts.append(view[int(s) - base : int(e) - base])
        lengths = (ends - starts).astype(np.int64)
        offsets = np.zeros(len(rows) + 1, dtype=np.int64)
        np.cumsum(lengths, out=offsets[1:])
        nulls = h.nulls[rows] if h.nulls is not None else None
        return SampleBatch(b"".join(out_parts), offsets, np.asarray(h.shapes)[rows], nulls)


def take(batch: SampleBatch, rows: np.ndarray) -> SampleBatch:
    """Rows of an in-memory batch, in the given order."""
    rows = np.asarray(rows, dtype=np.int64)
    n = len(batch)
    if len(rows) == n and (n == 0 or (rows[0] == 0 and bool((np.diff(rows) == 1).all()))):
        return batch
    starts = batch.offsets[rows]
    ends = batch.offsets[rows + 1]
    lengths = ends - starts
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if len(rows) and bool((lengths == lengths[0]).all()) and lengths[0] > 0:
        # Fixed-size samples: one vectorised gather instead of a join.
        size = int(lengths[0])
        base = batch.offsets[0]
        if bool(((batch.offsets[:-1] - base) == np.arange(n) * size).all()):
            arr = np.frombuffer(batch.data, dtype=np.uint8, count=n * size, offset=int(base)).reshape(n, size)
            data: bytes | memoryview = arr[rows].reshape(-1).data
            nulls = batch.nulls[rows] if batch.nulls is not None else None
            return SampleBatch(data, offsets, batch.shapes[rows], nulls)
    view = memoryview(batch.data)
    data = b"".join(view[int(s) : int(e)] for s, e in zip(starts, ends, strict=True))
    nulls = batch.nulls[rows] if batch.nulls is not None else None
    return SampleBatch(data, offsets, batch.shapes[rows], nulls)
