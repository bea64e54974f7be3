"""Reading a snapshot: row positions -> chunks, random take, batched scans."""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Iterator, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from tensorhouse.errors import RowNotFoundError
from tensorhouse.format.chunks import ChunkReader, SampleBatch, columnar
from tensorhouse.format.chunks.reader import Expect, check_stats, gather
from tensorhouse.format.chunks.samples import normalize, of_column
from tensorhouse.format.convert import to_arrow
from tensorhouse.format.log.actions import ChunkRef
from tensorhouse.format.log.snapshot import Snapshot
from tensorhouse.format.threads import decode_pool, io_pool
from tensorhouse.types import ROWID, Arrow, ColumnType

#: Chunks whose values were checked against the log's statistics in this process (see read_chunk).
_STATS_OK: dict[tuple[str, str, str, str], None] = {}
_STATS_KEPT = 1 << 16


@dataclass(frozen=True, eq=False)
class ColumnIndex:
    """Every chunk of one column in row order; ``None`` where a fragment predates the column."""

    refs: tuple[ChunkRef | None, ...]
    starts: np.ndarray  # int64 [len(refs) + 1]: first physical row of each chunk, then the total

    def locate(self, rows: np.ndarray) -> np.ndarray:
        return np.searchsorted(self.starts, rows, side="right") - 1

    def locate_one(self, row: int) -> int:
        """The chunk of one row, by bisection on a Python list (no array round trip)."""
        starts = self.__dict__.get("_starts_list")
        if starts is None:
            starts = self.starts.tolist()
            object.__setattr__(self, "_starts_list", starts)
        return bisect.bisect_right(starts, row) - 1


def build_column_index(snapshot: Snapshot, name: str) -> ColumnIndex:
    fid = snapshot.metadata.field_ids[name]
    refs: list[ChunkRef | None] = []
    sizes: list[int] = []
    for frag in snapshot.fragments:
        chunks = frag.columns.get(fid)
        if chunks is None:
            refs.append(None)
            sizes.append(frag.num_rows)
        else:
            for c in chunks:
                if c.rows:
                    refs.append(c)
                    sizes.append(c.rows)
    starts = np.zeros(len(sizes) + 1, dtype=np.int64)
    np.cumsum(sizes, out=starts[1:])
    return ColumnIndex(tuple(refs), starts)


def null_batch(ctype: ColumnType, n: int) -> SampleBatch:
    """``n`` null samples of a type (rows written before the column existed)."""
    if isinstance(ctype, Arrow):
        return of_column(pa.nulls(n, ctype.arrow_type()))
    return normalize([None] * n, ctype, "?")


class SnapshotReader:
    """Reads rows of one snapshot.

    Rows have two coordinates: the *physical* row (fragments concatenated,
    deleted rows included; what chunks and ``iter_batches`` use) and the
    *position* (live rows only; what ``len`` and ``take`` use).
    """

    def __init__(self, snapshot: Snapshot, reader: ChunkReader) -> None:
        self.snapshot = snapshot
        self.reader = reader
        self._indexes: dict[str, ColumnIndex] = {}
        # Vectorised: a snapshot opened from a checkpoint builds no fragment object for this.
        sizes = snapshot.fragment_rows()
        self.frag_starts = np.zeros(len(sizes) + 1, dtype=np.int64)
        np.cumsum(sizes, out=self.frag_starts[1:])
        self.frag_ids = snapshot.fragment_ids()
        self._deleted: dict[int, np.ndarray] = {}
        self._live: np.ndarray | None = None
        self.has_deletions = snapshot.has_deletions

    @property
    def num_rows(self) -> int:
        """Live rows."""
        return self.snapshot.num_rows

    @property
    def num_physical_rows(self) -> int:
        return int(self.frag_starts[-1])

    def deleted_offsets(self, i: int) -> np.ndarray:
        """Deleted row offsets of the ``i``-th fragment (sorted; read once, then cached)."""
        frag = self.snapshot.fragments[i]
        if frag.deletion is None:
            return np.zeros(0, dtype=np.int64)
        offs = self._deleted.get(i)
        if offs is None:
            from tensorhouse.format import deletions

            offs = self._deleted[i] = deletions.read(
                self.reader.store, frag.deletion, frag.num_rows
            )
        return offs

    def deleted_mask(self, start: int, stop: int) -> np.ndarray | None:
        """Which physical rows of ``[start, stop)`` are deleted; None when none are."""
        if not self.has_deletions:
            return None
        mask = np.zeros(stop - start, dtype=bool)
        f0 = int(np.searchsorted(self.frag_starts, start, side="right")) - 1
        f1 = int(np.searchsorted(self.frag_starts, max(stop - 1, start), side="right")) - 1
        for i in range(f0, min(f1, len(self.frag_ids) - 1) + 1):
            rows = self.deleted_offsets(i) + self.frag_starts[i]
            rows = rows[(rows >= start) & (rows < stop)]
            mask[rows - start] = True
        return mask if mask.any() else None

    def physical(self, positions: np.ndarray) -> np.ndarray:
        """Physical rows of live-row positions."""
        if not self.has_deletions:
            return positions
        if self._live is None:
            mask = self.deleted_mask(0, self.num_physical_rows)
            self._live = (
                np.flatnonzero(~mask) if mask is not None else np.arange(self.num_physical_rows)
            )
        return self._live[positions]

    def index(self, name: str) -> ColumnIndex:
        idx = self._indexes.get(name)
        if idx is None:
            idx = self._indexes[name] = build_column_index(self.snapshot, name)
        return idx

    def rowids(self, rows: np.ndarray) -> np.ndarray:
        """Stable row ids (``fragment_id << 32 | offset``) of physical rows."""
        f = np.searchsorted(self.frag_starts, rows, side="right") - 1
        return (self.frag_ids[f] << 32) | (rows - self.frag_starts[f])

    def rows_of_rowids(self, rowids: np.ndarray) -> np.ndarray:
        """Physical rows of row ids; KeyError naming the first unknown one."""
        rowids = np.asarray(rowids, dtype=np.int64)
        fids = rowids >> 32
        offs = rowids & 0xFFFFFFFF
        if not len(self.frag_ids):
            pos_c = np.zeros(len(rowids), np.int64)
            ok = np.zeros(len(rowids), bool)
        else:
            pos_c = np.minimum(np.searchsorted(self.frag_ids, fids), len(self.frag_ids) - 1)
            ok = (self.frag_ids[pos_c] == fids) & (offs < np.diff(self.frag_starts)[pos_c])
        if self.has_deletions and np.all(ok):
            for i in np.unique(pos_c):
                dead = self.deleted_offsets(int(i))
                sel = pos_c == i
                ok[sel] &= ~np.isin(offs[sel], dead)
        if not np.all(ok):
            bad = int(rowids[np.flatnonzero(~ok)[0]])
            raise RowNotFoundError(
                f"row id {bad} (fragment {bad >> 32}, offset {bad & 0xFFFFFFFF}) is not in this version"
            )
        return self.frag_starts[pos_c] + offs

    def read_rows(self, name: str, ctype: ColumnType, rows: np.ndarray) -> SampleBatch:
        """Samples at physical ``rows`` (any order), gathered with one copy in that order."""
        if isinstance(ctype, Arrow):
            return self._read_column_rows(name, ctype, np.asarray(rows, dtype=np.int64))
        views, shapes, nulls = self.read_views(name, ctype, rows)
        return gather(views, shapes, nulls)

    def _read_column_rows(self, name: str, ctype: Arrow, rows: np.ndarray) -> SampleBatch:
        """Rows of a columnar column: each chunk touched is decoded whole (it is one Parquet column)."""
        idx = self.index(name)
        cidx = idx.locate(rows)
        parts: list[pa.Array] = []
        order: list[np.ndarray] = []
        for c in np.unique(cidx).tolist():
            sel = np.flatnonzero(cidx == c)
            chunk = self.read_chunk(name, ctype, c)
            assert chunk.column is not None
            parts.append(columnar.take(chunk.column, pa.array(rows[sel] - idx.starts[c])))
            order.append(sel)
        if not parts:
            return of_column(pa.array([], type=ctype.arrow_type()))
        arr = pa.concat_arrays(parts) if len(parts) > 1 else parts[0]
        if len(parts) > 1:
            where = np.empty(len(rows), np.int64)
            where[np.concatenate(order)] = np.arange(len(rows))
            arr = columnar.take(arr, pa.array(where))
        return of_column(arr)

    def read_views(
        self, name: str, ctype: ColumnType, rows: np.ndarray
    ) -> tuple[list[memoryview | bytes], np.ndarray, np.ndarray]:
        """Each row's stored payload (a view, no copy), its shape and whether it is null.

        Chunks are read in parallel on object storage; local chunks are mapped, so
        there a read is a slice and the loop stays on this thread.
        """
        idx = self.index(name)
        rows = np.asarray(rows, dtype=np.int64)
        n = len(rows)
        ndim = len(ctype.sample_shape)
        if n == 1:
            row = int(rows[0])
            c = idx.locate_one(row)
            ref = idx.refs[c]
            if ref is not None and ref.part is None:
                local = row - int(idx.starts[c])
                view, h = self.reader.read_one(
                    ref.path,
                    local,
                    header_length=ref.header_length,
                    size=ref.size,
                    expect=Expect.of(name, ctype, ref.rows),
                )
                null = (
                    np.array([bool(h.nulls[local])]) if h.nulls is not None else np.zeros(1, bool)
                )
                return [view], np.asarray(h.shapes)[local : local + 1], null
        cidx = idx.locate(rows)
        chunks = np.unique(cidx)
        views: list[memoryview | bytes] = [b""] * n
        shapes = np.zeros((n, ndim), np.int64)
        nulls = np.zeros(n, bool)

        def read(c: int) -> None:
            sel = np.flatnonzero(cidx == c) if len(chunks) > 1 else np.arange(n)
            ref = idx.refs[c]
            local = rows[sel] - idx.starts[c]
            if ref is None:  # rows written before the column existed
                empty = null_batch(ctype, 1)
                for i in sel.tolist():
                    views[i] = empty.payload(0)
                shapes[sel] = empty.shapes[0]
                nulls[sel] = True
                return
            if ref.part is not None:  # a group file's chunk: decoded whole, kept for the next take
                batch = self.reader.read_ref(ref, ctype, keep=True)
                for i, j in zip(sel.tolist(), local.tolist(), strict=True):
                    views[i] = batch.payload(j)
                shapes[sel] = batch.shapes[local]
                if batch.nulls is not None:
                    nulls[sel] = batch.nulls[local]
                return
            got, h = self.reader.read_payloads(
                ref.path,
                local,
                header_length=ref.header_length,
                size=ref.size,
                expect=Expect.of(name, ctype, ref.rows),
            )
            for i, v in zip(sel.tolist(), got, strict=True):
                views[i] = v
            shapes[sel] = np.asarray(h.shapes)[local]
            if h.nulls is not None:
                nulls[sel] = h.nulls[local]

        if len(chunks) <= 1 or self.reader.store.is_local:
            for c in chunks.tolist():
                read(c)
        else:
            list(io_pool().map(read, chunks.tolist()))
        return views, shapes, nulls

    def read_chunk(
        self, name: str, ctype: ColumnType, c: int, *, as_type: pa.DataType | None = None
    ) -> SampleBatch:
        """Chunk ``c`` of a column. ``as_type``: the Arrow type an ``Arrow`` column's rows are
        wanted in (the engines' plain ``string`` for ``string_view``), converted once per chunk,
        and read the cheapest way to it; other columns ignore it."""
        idx = self.index(name)
        ref = idx.refs[c]
        want = as_type if as_type is not None and isinstance(ctype, Arrow) else ctype.arrow_type()
        if ref is None:
            if isinstance(ctype, Arrow):
                return of_column(pa.nulls(int(idx.starts[c + 1] - idx.starts[c]), want))
            return null_batch(ctype, int(idx.starts[c + 1] - idx.starts[c]))
        batch = self.reader.read_ref(
            ref, ctype, expect=Expect.of(name, ctype, ref.rows), wanted=want
        )
        if batch.column is not None and batch.column.type != want:
            return of_column(columnar.cast(batch.column, want, name))
        if batch.column is None and ctype.is_scalar and ref.stats:
            # Checking the stats costs a min/max pass: once per process per chunk and stats
            # (data files are immutable), not on every scan of every query. A group file holds
            # many chunks: its part (row group, column) is in the key.
            part = None if ref.part is None else (ref.part.row_group, ref.part.column)
            key = (self.reader.store.uri, ref.path, repr(part), repr(ref.stats))
            if key not in _STATS_OK:
                check_stats(
                    batch,
                    ref.stats,
                    dtype=ctype.storage_dtype,
                    where=f"{self.reader.store.uri}/{ref.path}",
                )
                if len(_STATS_OK) >= _STATS_KEPT:
                    _STATS_OK.clear()
                _STATS_OK[key] = None
        return batch

    def iter_batches(
        self,
        columns: Sequence[tuple[str, ColumnType]],
        *,
        start: int = 0,
        stop: int | None = None,
        batch_size: int = 65536,
        with_rowid: bool = False,
        selection: np.ndarray | None = None,
        arrow_types: Sequence[pa.DataType | None] | None = None,
    ) -> Iterator[pa.RecordBatch]:
        """RecordBatches of the live physical rows ``[start, stop)``, lazily, prefetching the next chunk.

        ``selection`` (bool per row of the range) keeps only the marked rows; deleted
        rows are always dropped. Batches
        never cross a fragment boundary, so a scan of one fragment is one call.
        ``arrow_types`` (one per column, None to keep the column's own): the type an
        ``Arrow`` column is produced in, converted once per chunk rather than per batch.
        """
        stop = self.num_physical_rows if stop is None else stop
        dead = self.deleted_mask(start, stop)
        if dead is not None:
            selection = ~dead if selection is None else (selection & ~dead)
        wanted = list(arrow_types) if arrow_types is not None else [None] * len(columns)
        cursors = [
            _Cursor(self, n, t, stop, as_type=w if isinstance(t, Arrow) else None)
            for (n, t), w in zip(columns, wanted, strict=True)
        ]
        fields = [
            t.arrow_field(n) if c.as_type is None else t.arrow_field(n).with_type(c.as_type)
            for (n, t), c in zip(columns, cursors, strict=True)
        ]
        if with_rowid:
            fields.append(pa.field(ROWID, pa.int64(), nullable=False))
        schema = pa.schema(fields)
        for cur in cursors[1:]:  # this thread reads the first column's chunk meanwhile
            cur.start(start)
        pos = start
        frag_starts = self.frag_starts.tolist()
        while pos < stop:
            f = bisect.bisect_right(frag_starts, pos) - 1
            end = min(stop, pos + batch_size, frag_starts[f + 1])
            # End at the next chunk boundary of any column: every column of the batch is
            # then a zero-copy slice of one chunk, never a concatenation of two.
            for cur in cursors:
                end = min(end, cur.chunk_end(pos))
            keep = None
            if selection is not None:
                keep = selection[pos - start : end - start]
                if not keep.any():
                    pos = end
                    continue
            arrays = []
            rows_kept = None
            if keep is not None and not keep.all():
                rows_kept = pa.array(np.flatnonzero(keep))
            for cur in cursors:
                arr = cur.rows(pos, end)
                arrays.append(arr if rows_kept is None else columnar.take(arr, rows_kept))
            if with_rowid:
                # One fragment per batch: ids are a range (no per-row search; count(*) reads them).
                base = (int(self.frag_ids[f]) << 32) - int(self.frag_starts[f])
                ids = np.arange(pos + base, end + base, dtype=np.int64)
                arrays.append(pa.array(ids[keep] if keep is not None else ids))
            if arrays:
                yield pa.RecordBatch.from_arrays(arrays, schema=schema)
            else:  # no columns asked (count(*)): rows without columns
                n = int(keep.sum()) if keep is not None else end - pos
                yield pa.record_batch([pa.nulls(n)], names=["_"]).select([])
            pos = end


#: Chunks read ahead between two hand-backs of freed allocator pages (see ``_release_now``).
RELEASE_EVERY = 8
_reads_ahead = itertools.count()


def _release_now() -> None:
    """Every RELEASE_EVERY chunks read ahead, hand the pages freed since back to the system.

    The read-ahead threads allocate the decoded chunks and the engine's
    threads free them: mimalloc keeps such pages with the allocating thread
    until it collects. Measured on TPC-H SF1 Q1 in DuckDB (peak RSS; Parquet
    264 MB): never 399 MB, every 8th chunk 376, every 4th 350, every chunk 313
    MB. Collecting costs CPU, since pages handed back fault in again: +20-40%
    on Q1/Q6 after every chunk, ~15% every 4th, ~5% every 8th.
    """
    if next(_reads_ahead) % RELEASE_EVERY == RELEASE_EVERY - 1:
        pa.default_memory_pool().release_unused()


#: A chunk whose payload is at least this big is converted to Arrow batch by batch: Arrow's
#: ``string``/``binary`` offsets are 32-bit, so a whole text chunk of 2 GiB cannot be one array.
WHOLE_CHUNK_BYTES = 1 << 30


def _fixed_list_in_fixed_list(t: pa.DataType) -> bool:
    """Whether ``t`` holds a fixed-size list of fixed-size lists (an N-d tensor, N >= 2).

    pyarrow 25's ``take`` and ``filter`` return wrong rows for a *sliced* array of
    such a type (the inner list ignores the slice offset), so chunks of these
    columns are converted batch by batch, into arrays that start at offset 0.
    """
    if pa.types.is_fixed_size_list(t) and pa.types.is_fixed_size_list(t.value_type):
        return True
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        return _fixed_list_in_fixed_list(t.value_type)
    if pa.types.is_struct(t):
        return any(_fixed_list_in_fixed_list(f.type) for f in t)
    return False


class _Cursor:
    """Walks one column's chunks in order, holding the current one and prefetching the next.

    Each chunk is converted to one Arrow array once, when it is read (on the read-ahead
    thread for all but the first), and every batch is a zero-copy slice of it. Converting
    slices instead cost a copy of the offsets per batch and per column (``SampleBatch.slice``
    rebases them, ``to_arrow`` again): measured at a third of the scan's own time on a
    text column.
    """

    def __init__(
        self,
        reader: SnapshotReader,
        name: str,
        ctype: ColumnType,
        stop: int,
        *,
        as_type: pa.DataType | None = None,
    ) -> None:
        self.reader = reader
        self.stop = stop  # no prefetch past the scan's last row (a pruned range, a partition)
        self.name = name
        self.ctype = ctype
        self.as_type = as_type
        self.index = reader.index(name)
        self.current: tuple[int, pa.Array | SampleBatch] | None = None
        self.pending: tuple[int, Future[pa.Array | SampleBatch]] | None = None

    def start(self, pos: int) -> None:
        """Start reading the chunk holding ``pos`` in the background: the first chunks of all
        the columns of a scan are then read at once, not one after the other."""
        if pos < self.stop and self.pending is None and self.current is None:
            c = self.index.locate_one(pos)
            if 0 <= c < len(self.index.refs):
                self.pending = (c, decode_pool().submit(self._read_ahead, c))

    def _chunk(self, c: int) -> pa.Array | SampleBatch:
        if self.current is not None and self.current[0] == c:
            return self.current[1]
        if self.pending is not None and self.pending[0] == c:
            chunk = self.pending[1].result()
        else:
            chunk = self._read(c)
        self.current = (c, chunk)
        nxt = c + 1
        if nxt < len(self.index.refs) and self.index.starts[nxt] < self.stop:
            self.pending = (
                nxt,
                decode_pool().submit(self._read_ahead, nxt),
            )
        else:
            self.pending = None
        return chunk

    def _read(self, c: int) -> pa.Array | SampleBatch:
        batch = self.reader.read_chunk(self.name, self.ctype, c, as_type=self.as_type)
        if batch.column is not None:
            return batch.column if self.as_type is not None else to_arrow(batch, self.ctype)
        if batch.nbytes >= WHOLE_CHUNK_BYTES or _fixed_list_in_fixed_list(self.ctype.arrow_type()):
            return batch
        return to_arrow(batch, self.ctype)

    def _read_ahead(self, c: int) -> pa.Array | SampleBatch:
        chunk = self._read(c)
        _release_now()
        return chunk

    def chunk_end(self, pos: int) -> int:
        """The first row after the chunk holding ``pos``."""
        return int(self.index.starts[self.index.locate_one(pos) + 1])

    def rows(self, start: int, stop: int) -> pa.Array:
        parts = []
        pos = start
        while pos < stop:
            c = self.index.locate_one(pos)
            cstart, cend = int(self.index.starts[c]), int(self.index.starts[c + 1])
            hi = min(stop, cend)
            chunk = self._chunk(c)
            if isinstance(chunk, SampleBatch):
                parts.append(self._arrow(chunk.slice(pos - cstart, hi - cstart)))
            else:
                parts.append(chunk.slice(pos - cstart, hi - pos))
            pos = hi
        return parts[0] if len(parts) == 1 else pa.concat_arrays(parts)

    def _arrow(self, batch: SampleBatch) -> pa.Array:
        if batch.column is not None and self.as_type is not None:
            return batch.column
        return to_arrow(batch, self.ctype)
