"""Read chunks: whole (scans) or a few samples by range (random access).

Reading one sample costs at most two range reads: the header (whose length
the log records) and the sample's checksum blocks; once the header is cached,
one. Several samples of one chunk are fetched with coalesced ranges.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa

from tensorhouse import limits
from tensorhouse.errors import CorruptChunkError
from tensorhouse.format.chunks import codecs, columnar, group
from tensorhouse.format.chunks.header import (
    ChunkHeader,
    check_header_length,
    decode_header,
    header_length_hint,
    verify_blocks,
)
from tensorhouse.format.chunks.samples import SampleBatch, of_column, take_column
from tensorhouse.format.log.actions import ChunkRef
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
#: Text chunks whose samples were checked to be UTF-8 in this process.
_TEXT_OK = HeaderCache()
#: Chunks read whole and verified in this process without keeping their mapping.
_WHOLE_OK = HeaderCache()


def _decoded_apart(h: ChunkHeader) -> bool:
    """Whether reading the chunk whole copies its data out (decompressed or decoded), so
    nothing returned views the file's bytes."""
    return bool(h.columnar or h.chunk_codec != "none")


@dataclass(frozen=True)
class Expect:
    """What the log and the schema say a chunk holds; checked against its header for free.

    A checksummed but crafted dataset can point a float32 column at an int32
    chunk, or claim fewer rows than the chunk holds: without this check the
    reader would reinterpret bits or return part of the rows silently.
    """

    column: str
    dtype: str
    shape: tuple[int | None, ...]
    sample_codec: str | None
    rows: int

    @staticmethod
    def of(column: str, ctype: Any, rows: int) -> Expect:
        """From a column type (anything with chunk_dtype, sample_shape, sample_codec)."""
        return Expect(
            column, ctype.chunk_dtype, tuple(ctype.sample_shape), ctype.sample_codec, int(rows)
        )

    def check(self, h: ChunkHeader, where: str) -> None:
        bad = None
        if h.num_samples != self.rows:
            bad = f"holds {h.num_samples} rows, the log says {self.rows}"
        elif h.dtype != self.dtype:
            bad = f"holds {h.dtype} samples, the column stores {self.dtype}"
        elif h.sample_codec != self.sample_codec:
            bad = f"holds samples encoded as {h.sample_codec}, the column's codec is {self.sample_codec}"
        elif h.ndim != len(self.shape):
            bad = f"holds {h.ndim}-d samples, the column's samples are {len(self.shape)}-d"
        elif h.num_samples:
            fixed = [(i, d) for i, d in enumerate(self.shape) if d is not None]
            shapes = np.asarray(h.shapes[:1]) if h.uniform else np.asarray(h.shapes)
            if h.nulls is not None:  # a null sample's shape is all zeros: only values must fit
                shapes = (
                    shapes[:0]
                    if h.uniform and h.nulls.all()
                    else shapes
                    if h.uniform
                    else shapes[~h.nulls]
                )
            for i, d in fixed:
                if bool((shapes[:, i] != d).any()):
                    bad = f"holds samples of shape {shapes[0].tolist()}, the column's is {list(self.shape)}"
                    break
            if (
                bad is None
                and self.sample_codec is not None
                and len(shapes)
                and shapes.shape[1] >= 2
            ):
                # Decoding allocates H x W x C from these shapes before the codec sees a byte.
                pixels = shapes[:, 0].astype(np.float64) * shapes[:, 1]
                worst = int(pixels.argmax())
                limits.check(
                    "max_image_pixels",
                    int(pixels[worst]),
                    what=f"{where} (column {self.column!r}): an image of {shapes[worst, 0]}x"
                    f"{shapes[worst, 1]} pixels",
                    error=CorruptChunkError,
                )
        if bad is not None:
            raise CorruptChunkError(f"{where} (column {self.column!r}) {bad}")


def check_stats(
    batch: SampleBatch, stats: Mapping[str, Any] | None, *, dtype: str, where: str
) -> None:
    """The log's min/max of a scalar chunk must cover the values read (forged stats prune wrongly)."""
    if (
        not stats
        or dtype in ("bytes", "str", "arrow")
        or len(batch) == 0
        or np.asarray(batch.shapes).shape[1] != 0
    ):
        return
    lo, hi = stats.get("min"), stats.get("max")
    if lo is None and hi is None:
        return
    values = np.frombuffer(batch.data, dtype=dtype, count=len(batch), offset=int(batch.offsets[0]))
    if batch.nulls is not None:
        values = values[~batch.nulls]
    if values.dtype.kind == "f":
        values = values[~np.isnan(values)]
    if not len(values):
        return
    vmin, vmax = values.min().item(), values.max().item()
    try:
        below = lo is not None and not (isinstance(vmin, float) and math.isinf(vmin)) and vmin < lo
        above = hi is not None and not (isinstance(vmax, float) and math.isinf(vmax)) and vmax > hi
    except TypeError:  # a stats value of the wrong kind (a string for a number)
        below = above = True
    if below or above:
        raise CorruptChunkError(
            f"{where}: the log's statistics (min {lo!r}, max {hi!r}) do not cover the chunk's "
            f"values (min {vmin!r}, max {vmax!r}); the log is corrupt or forged"
        )


class ChunkReader:
    """Reads chunk files of one store.

    Example:
        >>> # reader = ChunkReader(store); batch = reader.read_all("data/x/1.chunk", 128, 4096)
    """

    def __init__(self, store: Store, headers: HeaderCache | None = None) -> None:
        self.store = store
        self.headers = headers or _HEADERS

    def header(
        self, path: str, header_length: int | None, size: int | None, expect: Expect | None = None
    ) -> ChunkHeader:
        key = (self.store.uri, path)
        h = self.headers.get(key)
        if h is not None:
            if expect is not None:
                expect.check(h, f"{self.store.uri}/{path}")
            return h
        if header_length is not None:
            try:
                check_header_length(header_length)
            except CorruptChunkError as err:
                raise CorruptChunkError(f"{self.store.uri}/{path}: {err}") from err
        if header_length is None:
            probe = self.store.get_range(path, 0, HEADER_PROBE)
            header_length = header_length_hint(probe)
            data = (
                probe
                if header_length <= len(probe)
                else self.store.get_range(path, 0, header_length)
            )
        else:
            data = self.store.get_range(path, 0, header_length)
        h = self._parse(path, data, size)
        if expect is not None:
            expect.check(h, f"{self.store.uri}/{path}")
        self.headers.put(key, h)
        return h

    def _parse(self, path: str, data: bytes | memoryview, size: int | None) -> ChunkHeader:
        try:
            return decode_header(data, file_length=size)
        except CorruptChunkError as err:
            raise CorruptChunkError(f"{self.store.uri}/{path}: {err}") from err

    def _mapped(self, path: str, size: int | None, *, keep: bool = True) -> _Mapped | None:
        """The chunk file mapped into memory (local stores), from a process-wide LRU.

        ``keep=False`` maps it for this read only (not kept in the LRU): for
        chunks decoded into memory of their own, whose file pages would
        otherwise stay mapped, and counted in the process's RSS, long after.
        """
        if not self.store.is_local:
            return None
        key = (self.store.uri, path)
        with _MAPS_LOCK:
            m = _MAPS.get(key)
            if m is not None:
                _MAPS.move_to_end(key)
                return m
        view = self.store.map(path)
        if view is None:
            return None
        if size is not None and len(view) != size:
            raise CorruptChunkError(
                f"{self.store.uri}/{path}: {len(view)} bytes, the log says {size}"
            )
        m = _Mapped(view)
        if keep:
            with _MAPS_LOCK:
                _MAPS[key] = m
                while len(_MAPS) > _MAPS_CAPACITY:
                    _MAPS.popitem(last=False)
        return m

    def _release(self, path: str) -> None:
        """Drop a chunk's mapping from the LRU (unmapped once nothing views it)."""
        with _MAPS_LOCK:
            _MAPS.pop((self.store.uri, path), None)

    def _verify_mapped(self, m: _Mapped, h: ChunkHeader, blocks: np.ndarray, path: str) -> None:
        """Check the given blocks once per process: mapped bytes were verified when first used."""
        if m.verified is None:
            m.verified = np.zeros(len(h.block_crcs), dtype=bool)
        blocks = blocks[blocks < len(h.block_crcs)]  # an empty sample at the end covers no block
        todo = blocks[~m.verified[blocks]]
        if not len(todo):
            return
        bs = h.block_size
        stored = m.view[h.header_length :]
        # Consecutive blocks are checked with one call each run (the common case).
        runs = np.split(todo, np.flatnonzero(np.diff(todo) != 1) + 1)
        try:
            for run in runs:
                a, b = int(run[0]), int(run[-1]) + 1
                verify_blocks(h, a, stored[a * bs : min(b * bs, h.data_length)])
        except CorruptChunkError as err:
            raise CorruptChunkError(f"{self.store.uri}/{path}: {err}") from err
        m.verified[todo] = True

    def read_all(
        self,
        path: str,
        size: int | None = None,
        *,
        expect: Expect | None = None,
        wanted: Any = None,
    ) -> SampleBatch:
        """Every sample of a chunk, read with one request (or mapped, locally) and verified.

        ``wanted``: the Arrow type a columnar chunk will be cast to (see ``columnar.decode``).
        """
        if size is not None and expect is not None:
            # Known header (cached): refuse a mismatch before reading the data at all.
            cached = self.headers.get((self.store.uri, path))
            if cached is not None:
                expect.check(cached, f"{self.store.uri}/{path}")
        key = (self.store.uri, path)
        h = self.headers.get(key)
        # A compressed or columnar chunk is decoded into memory of its own: its file need not
        # stay mapped after this read (the bytes stay in the page cache, out of this RSS).
        transient = h is not None and _decoded_apart(h)
        m = self._mapped(path, size, keep=not transient)
        blob: bytes | memoryview = m.view if m is not None else self.store.get(path)
        if size is not None and len(blob) != size:
            raise CorruptChunkError(
                f"{self.store.uri}/{path}: {len(blob)} bytes, the log says {size}"
            )
        view = memoryview(blob)
        if h is None:
            try:
                # From a copy: the cached header's arrays must not keep a mapped file alive.
                h = decode_header(bytes(view[: header_length_hint(view)]), file_length=len(blob))
            except CorruptChunkError as err:
                raise CorruptChunkError(f"{self.store.uri}/{path}: {err}") from err
            self.headers.put(key, h)
        if expect is not None:
            expect.check(h, f"{self.store.uri}/{path}")
        stored = view[h.header_length :]
        try:
            if m is not None and not _decoded_apart(h):
                self._verify_mapped(m, h, np.arange(len(h.block_crcs)), path)
            elif m is not None and _WHOLE_OK.get(key) is not None:
                pass  # verified whole earlier in this process (chunk files are immutable)
            else:
                verify_blocks(h, 0, stored)
                if m is not None:
                    _WHOLE_OK.put(key, h)
            raw = codecs.decompress(h.chunk_codec, stored, h.raw_length)
            if h.columnar:  # one encoded column (format 3), decoded to the Arrow type it stores
                return of_column(columnar.decode(raw, None, h.num_samples, wanted=wanted))
        except CorruptChunkError as err:
            raise CorruptChunkError(f"{self.store.uri}/{path}: {err}") from err
        finally:
            if m is not None and _decoded_apart(h):
                self._release(path)
        if h.dtype == "str":
            self._check_text(path, raw, h)
        return SampleBatch(raw, h.offsets, np.asarray(h.shapes), h.nulls)

    def read_ref(
        self,
        ref: ChunkRef,
        ctype: Any,
        *,
        expect: Expect | None = None,
        wanted: Any = None,
        keep: bool = False,
    ) -> SampleBatch:
        """Every sample of the chunk ``ref`` names: a chunk file, or a column chunk of a group file.

        ``ctype``: the column's type (a group file's chunk is converted to the
        batch a chunk file of that type gives); ``wanted`` as for :meth:`read_all`.
        ``keep``: serve a group file's chunk from, and keep it in, the decoded
        cache of random access (``group.DECODED``).
        """
        if ref.part is None:
            return self.read_all(ref.path, ref.size, expect=expect, wanted=wanted)
        part = ref.part
        uri, path = self.store.uri, ref.path
        key = (uri, path, part.row_group, part.column, str(ctype), str(wanted))
        if keep:
            hit = group.DECODED.get(key)
            if hit is not None:
                return hit
        batch = self._read_part(ref, ctype, wanted)
        if keep:
            group.DECODED.put(key, batch)
        return batch

    def _read_part(self, ref: ChunkRef, ctype: Any, wanted: Any) -> SampleBatch:
        part = ref.part
        assert part is not None
        uri, path = self.store.uri, ref.path
        where = f"{uri}/{path}"
        # Locally the file is mapped for this read only (the decoded values are a copy); elsewhere
        # the footer and the chunk's bytes come from range reads.
        m = self._mapped(path, part.file_size, keep=False)
        footer = group.read_footer(
            self.store.get_range if m is None else (lambda _p, s, n: m.view[s : s + n]),
            uri,
            path,
            part,
        )
        source: Any
        if m is not None:
            data: bytes | memoryview = m.view[part.offset : part.offset + ref.size]
            source = pa.BufferReader(pa.py_buffer(m.view))
        else:
            data = self.store.get_range(path, part.offset, ref.size)
            if len(data) != ref.size:
                raise CorruptChunkError(f"{where}: short read ({len(data)} of {ref.size} bytes)")
            source = pa.PythonFile(
                group.RangeFile(part.file_size, part.offset, bytes(data), where), mode="r"
            )
        group.verify(data, part, uri, path)
        arr = group.decode(
            source,
            footer,
            part,
            ref.rows,
            ref.size,
            where,
            declared=ctype.arrow_type(),
            wanted=wanted,
        )
        return group.to_batch(arr, ctype)

    def _check_text(self, path: str, raw: bytes | memoryview, h: ChunkHeader) -> None:
        """A whole text chunk is UTF-8, checked once per process (chunk files are immutable)."""
        key = (self.store.uri, path)
        if _TEXT_OK.get(key) is None:
            check_utf8(raw, h.offsets, f"{self.store.uri}/{path}")
            _TEXT_OK.put(key, h)

    def read_payloads(
        self,
        path: str,
        rows: np.ndarray,
        *,
        header_length: int | None = None,
        size: int | None = None,
        expect: Expect | None = None,
    ) -> tuple[list[memoryview], ChunkHeader]:
        views, h = self._read_payloads(
            path, rows, header_length=header_length, size=size, expect=expect
        )
        if h.dtype == "str" and _TEXT_OK.get((self.store.uri, path)) is None:
            m = self._mapped(path, size)
            if m is not None:  # local: check the whole chunk once
                self._check_text(path, m.view[h.header_length : h.header_length + h.raw_length], h)
            else:  # remote, uncompressed (read_all checked compressed ones whole): just these samples
                for v in views:
                    check_utf8(v, np.array([0, len(v)]), f"{self.store.uri}/{path}")
        return views, h

    def _read_payloads(
        self,
        path: str,
        rows: np.ndarray,
        *,
        header_length: int | None = None,
        size: int | None = None,
        expect: Expect | None = None,
    ) -> tuple[list[memoryview], ChunkHeader]:
        """Views of the stored payloads of ``rows`` (chunk-local, any order), verified, and the header.

        Locally: slices of the mapped file, no system call once mapped. Elsewhere:
        coalesced range reads of the checksum blocks around the samples.
        """
        h = self.header(path, header_length, size, expect)
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= h.num_samples):
            # The caller computed the rows from the log: a chunk with fewer samples is corrupt.
            raise CorruptChunkError(
                f"{self.store.uri}/{path}: row out of range for a chunk of {h.num_samples} samples"
            )
        starts = h.offsets[rows]
        ends = h.offsets[rows + 1]
        if h.chunk_codec != "none":
            batch = self.read_all(path, size)
            data = memoryview(batch.data)
            return [data[s:e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)], h
        bs = h.block_size
        b0 = starts // bs
        b1 = np.maximum(-(-ends // bs), b0 + 1)
        m = self._mapped(path, size)
        if m is not None:
            span = int((b1 - b0).max()) if len(rows) else 0
            cand = (b0[:, None] + np.arange(span)[None, :])[
                (np.arange(span)[None, :] < (b1 - b0)[:, None])
            ]
            self._verify_mapped(m, h, np.unique(cand), path)
            base = h.header_length
            v = m.view
            return [
                v[base + s : base + e] for s, e in zip(starts.tolist(), ends.tolist(), strict=True)
            ], h
        # Expand each sample to the checksum blocks that cover it, then merge nearby ranges.
        order = np.argsort(b0, kind="stable")
        ranges: list[list[int]] = []
        for lo, hi in zip(b0[order].tolist(), b1[order].tolist(), strict=True):
            if ranges and lo * bs <= ranges[-1][1] * bs + COALESCE_GAP:
                ranges[-1][1] = max(ranges[-1][1], hi)
            else:
                ranges.append([lo, hi])
        total_blocks = len(h.block_crcs)
        reqs = [
            (h.header_length + lo * bs, min(hi, total_blocks) * bs - lo * bs) for lo, hi in ranges
        ]
        reqs = [(s, min(ln, h.data_length - (s - h.header_length))) for s, ln in reqs]
        parts = self.store.get_ranges(path, reqs)
        firsts = np.array([lo for lo, _ in ranges], dtype=np.int64)
        views = []
        for (lo, _hi), part, (_s, ln) in zip(ranges, parts, reqs, strict=True):
            if len(part) != ln:
                raise CorruptChunkError(
                    f"{self.store.uri}/{path}: short read ({len(part)} of {ln} bytes)"
                )
            try:
                verify_blocks(h, lo, part)
            except CorruptChunkError as err:
                raise CorruptChunkError(f"{self.store.uri}/{path}: {err}") from err
            views.append(memoryview(part))
        which = np.searchsorted(firsts, b0, side="right") - 1
        bases = firsts[which] * bs
        return [
            views[w][s - b : e - b]
            for w, s, e, b in zip(
                which.tolist(), starts.tolist(), ends.tolist(), bases.tolist(), strict=True
            )
        ], h

    def read_one(
        self,
        path: str,
        row: int,
        *,
        header_length: int | None = None,
        size: int | None = None,
        expect: Expect | None = None,
    ) -> tuple[memoryview, ChunkHeader]:
        """One sample's stored payload: the lean path of single-row reads (plain ints, no arrays)."""
        h = self.header(path, header_length, size, expect)
        if not 0 <= row < h.num_samples:
            raise CorruptChunkError(
                f"{self.store.uri}/{path}: row {row} out of range for a chunk of {h.num_samples} samples"
            )
        m = self._mapped(path, size) if h.chunk_codec == "none" else None
        if m is None:
            views, h = self.read_payloads(
                path, np.array([row]), header_length=header_length, size=size
            )
            return views[0], h
        s, e = int(h.offsets[row]), int(h.offsets[row + 1])
        bs = h.block_size
        last = min(max(-(-e // bs), s // bs + 1), len(h.block_crcs))
        if m.verified is None or not all(m.verified[b] for b in range(s // bs, last)):
            self._verify_mapped(m, h, np.arange(s // bs, last), path)
        if h.dtype == "str":
            self._check_text(path, m.view[h.header_length : h.header_length + h.raw_length], h)
        return m.view[h.header_length + s : h.header_length + e], h

    def read_rows(
        self,
        path: str,
        rows: Sequence[int] | np.ndarray,
        *,
        header_length: int | None = None,
        size: int | None = None,
    ) -> SampleBatch:
        """Samples ``rows`` (chunk-local indices, any order, repeats allowed), in that order."""
        rows = np.asarray(rows, dtype=np.int64)
        views, h = self.read_payloads(path, rows, header_length=header_length, size=size)
        return gather(
            views, np.asarray(h.shapes)[rows], h.nulls[rows] if h.nulls is not None else None
        )


def check_utf8(data: bytes | memoryview, offsets: np.ndarray, where: str) -> None:
    """Text samples must be UTF-8: a crafted (resealed) chunk would otherwise fail later, in user code."""
    import pyarrow as pa

    try:
        pa.LargeStringArray.from_buffers(
            len(offsets) - 1,
            pa.py_buffer(np.ascontiguousarray(offsets, np.int64)),
            pa.py_buffer(data),
        ).validate(full=True)
    except (pa.ArrowInvalid, ValueError) as err:
        # Chunks written before lone surrogates were refused hold them "surrogatepass"-encoded: still readable.
        try:
            bytes(data).decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise CorruptChunkError(f"{where}: a text sample is not valid UTF-8 ({err})") from err


def gather(
    views: Sequence[memoryview | bytes], shapes: np.ndarray, nulls: np.ndarray | None
) -> SampleBatch:
    """One SampleBatch from payload views in order: a single copy."""
    lengths = np.fromiter((len(v) for v in views), dtype=np.int64, count=len(views))
    offsets = np.zeros(len(views) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if nulls is not None and not nulls.any():
        nulls = None
    return SampleBatch(b"".join(views), offsets, shapes, nulls)


class _Mapped:
    """A mapped chunk file and which of its checksum blocks were verified in this process."""

    __slots__ = ("verified", "view")

    def __init__(self, view: memoryview) -> None:
        self.view = view
        self.verified: np.ndarray | None = None


_MAPS: OrderedDict[tuple[str, str], _Mapped] = OrderedDict()
_MAPS_LOCK = threading.Lock()
#: Mapped chunk files kept open (address space only; the page cache holds the bytes).
_MAPS_CAPACITY = 1024


def take(batch: SampleBatch, rows: np.ndarray) -> SampleBatch:
    """Rows of an in-memory batch, in the given order."""
    rows = np.asarray(rows, dtype=np.int64)
    if batch.column is not None:
        return take_column(batch, rows)
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
        if bool(
            ((batch.offsets - base) == np.arange(n + 1) * size).all()
        ):  # every sample, not only those taken
            arr = np.frombuffer(
                batch.data, dtype=np.uint8, count=n * size, offset=int(base)
            ).reshape(n, size)
            data: bytes | memoryview = arr[rows].reshape(-1).data
            nulls = batch.nulls[rows] if batch.nulls is not None else None
            return SampleBatch(data, offsets, batch.shapes[rows], nulls)
    view = memoryview(batch.data)
    data = b"".join(view[int(s) : int(e)] for s, e in zip(starts, ends, strict=True))
    nulls = batch.nulls[rows] if batch.nulls is not None else None
    return SampleBatch(data, offsets, batch.shapes[rows], nulls)
