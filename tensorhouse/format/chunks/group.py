"""Group files: the tabular columns of a fragment's rows as one plain Parquet file.

A *group file* holds every tabular column (numbers, text, and the ``Arrow``
types: dates, decimals, strings, lists, structs...) of a run of a fragment's
rows. It is an ordinary Parquet file, with no tensorhouse header, so DuckDB,
DataFusion, pyarrow or Spark open it directly:

- its row groups are the chunks: one ChunkRef per column per row group in
  the log, with the same statistics as a chunk file's, so pruning is unchanged;
- its columns are named ``f<field id>`` (and carry that Parquet field id), so
  a rename changes the log, never the file;
- the Arrow schema is stored (``ARROW:schema``): types round-trip exactly;
- decimals of up to 18 digits are INT64, pages carry CRC32 checksums, and
  row-group statistics are written for engines that prune with them;
- each column has its own codec and dictionary choice, measured on a sample.

The log records, for each chunk, the byte range of its column chunk and an
xxh3-64 checksum of those bytes and of the file's footer. A reader checks both
before decoding anything, so a flipped byte anywhere it reads (page headers
and footer included, which Parquet's page checksums do not cover) is a
:class:`~tensorhouse.errors.CorruptChunkError`, never a wrong value.

Tensor columns (tensors, embeddings, boxes, images, opaque bytes) keep chunk
files: their samples are read one by one by range.

Example:
    >>> import pyarrow as pa
    >>> enc = encode_group([(1, pa.array([1, 2, 3])), (2, pa.array(["a", "b", None]))], 2)
    >>> [p.row_group for p, _ in enc.parts[1]], enc.row_counts
    ([0, 1], [2, 1])
    >>> import pyarrow.parquet as pq
    >>> pq.read_table(pa.BufferReader(enc.data)).column_names
    ['f1', 'f2']
"""

from __future__ import annotations

import functools
import itertools
import struct
import threading
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import xxhash

from tensorhouse import limits
from tensorhouse.errors import CorruptChunkError
from tensorhouse.format.chunks import columnar
from tensorhouse.format.chunks.samples import SampleBatch, of_column
from tensorhouse.format.log.actions import GroupPart
from tensorhouse.types import Arrow, ClassLabel, ColumnType, Scalar, Text

#: Rows of one row group at most (pyarrow's own default): engines split work by row group.
MAX_GROUP_ROWS = 1 << 20
#: Row groups of one group file at most: a large append becomes several files, encoded in parallel.
GROUPS_PER_FILE = 8
#: Bytes read from a file's end to find its footer (one read for most footers).
FOOTER_PROBE = 64 << 10
MAGIC = b"PAR1"


def in_group(ctype: ColumnType) -> bool:
    """Whether a column of this type is stored in group files (tabular), not chunk files (tensors)."""
    return isinstance(ctype, Arrow | Scalar | ClassLabel | Text)


def physical_name(field_id: int) -> str:
    """The name of a column inside group files: its field id, so a rename leaves files alone."""
    return f"f{field_id}"


def checksum(data: bytes | memoryview) -> str:
    return xxhash.xxh3_64_hexdigest(data)


# -- writing ---------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class EncodedGroup:
    """A group file's bytes, and per field id the (part, size) of each of its row groups."""

    data: pa.Buffer
    parts: dict[int, list[tuple[GroupPart, int]]]
    row_counts: list[int]
    codecs: dict[int, str]


#: No column's part of a row group exceeds this many times its chunk byte target.
MAX_OVER_TARGET = 4


def rows_per_group(nbytes_per_row: Sequence[tuple[float, int]], num_rows: int) -> int:
    """Rows per row group, from each column's (bytes per row, chunk byte target).

    The columns' parts average their targets, and none exceeds MAX_OVER_TARGET
    times its own: sizing by the widest column alone made TPC-H's lineitem row
    groups 3x smaller than its chunk files, and each chunk read has a fixed cost.
    The row groups of an append are then made equal (no small last one).
    """
    per_row = sum(max(p, 1e-3) for p, _ in nbytes_per_row)
    rows = min(MAX_GROUP_ROWS, sum(t for _, t in nbytes_per_row) / max(per_row, 1e-3))
    for p, t in nbytes_per_row:
        rows = min(rows, MAX_OVER_TARGET * t / max(p, 1e-3))
    rows = max(int(rows), 1)
    n = max(num_rows, 1)
    groups = -(-n // rows)
    return -(-n // groups)


#: Rows of a column encoded every candidate way to choose one.
SAMPLE_ROWS = 4096
#: Rows over which a text column's distinct values are counted. A 4,096-row sample hides a
#: dictionary's gain once a column has thousands of distinct values (10,000 tags look unique
#: in 4,096 rows): the file then stored them PLAIN, which pyarrow decodes ~7x slower than a
#: dictionary and DuckDB filters value by value instead of on the dictionary page.
DICT_SAMPLE_ROWS = 65_536
#: A text column whose values repeat this often on average (in ``DICT_SAMPLE_ROWS``) is
#: dictionary-encoded whatever the small sample says.
DICT_REPEATS = 4
#: A slower way to store a column must save this fraction of the bytes of the best faster one:
#: lz4 and Parquet's encodings 10%; zstd, which pyarrow decodes 3-5x slower than lz4 or
#: delta-encoded integers (measured on TPC-H's keys, prices and dates), half.
MIN_GAIN = {"none": 0.10, "lz4": 0.10, "zstd": 0.50}


@dataclass(frozen=True)
class Encoding:
    """How one column of a group file is written: Parquet encoding and compression codec."""

    encoding: str  # "plain", "dictionary" or "delta" (DELTA_BINARY_PACKED)
    codec: str  # "none", "lz4" or "zstd"


def _delta_able(t: pa.DataType) -> bool:
    """Types stored as Parquet INT32/INT64 (delta encoding applies): integers, dates, times,
    timestamps, durations, decimals of up to 18 digits."""
    return bool(
        pa.types.is_integer(t)
        or pa.types.is_temporal(t)
        or (pa.types.is_decimal(t) and t.precision <= 18)
    )


def _sample_sizes(samples: Sequence[pa.Array], encodings: Sequence[str], codec: str) -> list[int]:
    """The stored bytes of each sample, written with its encoding and ``codec``: one Parquet file
    of all the samples (column chunks are encoded independently, so each size is what the
    sample alone would take; one write instead of one per column halves the choice's cost)."""
    import pyarrow.parquet as pq

    names = [f"c{i}" for i in range(len(samples))]
    sink = pa.BufferOutputStream()
    pq.write_table(
        pa.table(dict(zip(names, samples, strict=True))),
        sink,
        compression=codec,
        use_dictionary=[n for n, e in zip(names, encodings, strict=True) if e == "dictionary"],
        column_encoding={
            n: "DELTA_BINARY_PACKED" for n, e in zip(names, encodings, strict=True) if e == "delta"
        }
        or None,
        write_statistics=False,
        store_schema=False,
        store_decimal_as_integer=True,
    )
    rg = pq.ParquetFile(pa.BufferReader(sink.getvalue())).metadata.row_group(0)
    return [int(rg.column(i).total_compressed_size) for i in range(len(samples))]


def choose_encodings(arrays: Sequence[pa.Array]) -> list[Encoding]:
    """The encoding and codec for each column, measured on a sample of its rows.

    Candidates go from the fastest to decode to the slowest: plain, delta
    (integer-like types) and dictionary, uncompressed; then the best of those
    with lz4, then with zstd. A candidate replaces the best so far only when it
    saves :data:`MIN_GAIN` of its bytes. Each candidate is written for every
    column at once: five sample writes per file (one per column cost ~2x).
    """
    out: list[Encoding | None] = []
    measured: list[int] = []  # the columns measured here, by index in ``arrays``
    for i, arr in enumerate(arrays):
        if pa.types.is_nested(arr.type) or pa.types.is_dictionary(arr.type) or len(arr) == 0:
            use_dict, codec = columnar.encoding_choice(arr)
            out.append(Encoding("dictionary" if use_dict else "plain", codec))
        else:
            out.append(None)
            measured.append(i)
    samples = [arrays[i].slice(0, SAMPLE_ROWS) for i in measured]
    best: list[tuple[int, Encoding] | None] = [None] * len(measured)
    dict_size: dict[int, int] = {}

    def offer(cols: list[int], encodings: list[str], codec: str) -> None:
        try:
            sizes = _sample_sizes([samples[c] for c in cols], encodings, codec)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError, OSError):
            if len(cols) == 1:
                return  # this column cannot be written this way
            for c, e in zip(cols, encodings, strict=True):  # find the column that cannot
                offer([c], [e], codec)
            return
        for c, e, size in zip(cols, encodings, sizes, strict=True):
            if e == "dictionary" and codec == "none":
                dict_size[c] = size
            b = best[c]
            if b is None or size < (1 - MIN_GAIN[codec]) * b[0]:
                best[c] = (size, Encoding(e, codec))

    if measured:
        all_cols = list(range(len(measured)))
        offer(all_cols, ["plain"] * len(measured), "none")
        delta = [c for c in all_cols if _delta_able(samples[c].type)]
        if delta:
            offer(delta, ["delta"] * len(delta), "none")
        offer(all_cols, ["dictionary"] * len(measured), "none")
        for c in all_cols:
            b = best[c]
            if (
                c in dict_size
                and b is not None
                and b[1].encoding == "plain"
                and _repeats(arrays[measured[c]])
            ):
                best[c] = (dict_size[c], Encoding("dictionary", "none"))
        for codec in ("lz4", "zstd"):
            cols = [c for c in all_cols if best[c] is not None]
            if cols:
                offer(cols, [best[c][1].encoding for c in cols], codec)  # type: ignore[index]
    for c, i in enumerate(measured):
        b = best[c]
        out[i] = b[1] if b is not None else Encoding("plain", "none")
    return [e for e in out if e is not None]


def _repeats(arr: pa.Array) -> bool:
    """Whether a text column's values repeat :data:`DICT_REPEATS` times on average in its
    first :data:`DICT_SAMPLE_ROWS` rows (other types: never)."""
    if not _is_text(arr.type):
        return False
    import pyarrow.compute as pc

    head = arr.slice(0, DICT_SAMPLE_ROWS)
    distinct = pc.count_distinct(head, mode="all").as_py()
    return bool(distinct * DICT_REPEATS <= len(head))


def encode_group(columns: Sequence[tuple[int, pa.Array]], rows_per_group: int) -> EncodedGroup:
    """One Parquet file of ``columns`` ((field id, values) of equal length), ``rows_per_group`` rows per row group."""
    import pyarrow.parquet as pq

    fields, arrays, codec_of, dictionary, delta = [], [], {}, [], {}
    for fid, arr in columns:
        name = physical_name(fid)
        fields.append(
            pa.field(
                name, arr.type, nullable=True, metadata={b"PARQUET:field_id": str(fid).encode()}
            )
        )
        arrays.append(arr)
    for (fid, _), enc in zip(
        columns, choose_encodings([a.slice(0, rows_per_group) for a in arrays]), strict=True
    ):
        name = physical_name(fid)
        codec_of[fid] = enc.codec
        if enc.encoding == "dictionary":
            dictionary.append(name)
        elif enc.encoding == "delta":
            delta[name] = "DELTA_BINARY_PACKED"
    schema = pa.schema(fields)
    sink = pa.BufferOutputStream()
    with pq.ParquetWriter(
        sink,
        schema,
        compression={physical_name(f): c for f, c in codec_of.items()},
        use_dictionary=dictionary,
        column_encoding=delta or None,
        write_statistics=True,
        store_schema=True,
        data_page_size=1 << 20,
        # Decimals of up to 18 digits as INT64: 6x faster to decode than fixed-length byte arrays.
        store_decimal_as_integer=True,
        write_page_checksum=True,
    ) as writer:
        writer.write_table(
            pa.Table.from_arrays(arrays, schema=schema), row_group_size=rows_per_group
        )
    data = sink.getvalue()
    md = pq.ParquetFile(pa.BufferReader(data)).metadata
    footer = _footer_checksum(memoryview(data))
    parts: dict[int, list[tuple[GroupPart, int]]] = {fid: [] for fid, _ in columns}
    view = memoryview(data)
    for rg in range(md.num_row_groups):
        for fid, _ in columns:
            start, size = column_range(md, rg, physical_name(fid))
            parts[fid].append(
                (
                    GroupPart(
                        rg,
                        physical_name(fid),
                        start,
                        len(data),
                        checksum(view[start : start + size]),
                        footer,
                    ),
                    size,
                )
            )
    counts = [md.row_group(rg).num_rows for rg in range(md.num_row_groups)]
    return EncodedGroup(data, parts, counts, codec_of)


def _footer_checksum(data: memoryview) -> str:
    (length,) = struct.unpack("<I", data[-8:-4])
    return checksum(data[len(data) - 8 - length : len(data) - 8])


def column_range(md: Any, rg: int, name: str) -> tuple[int, int]:
    """(offset, size) of every column chunk of top-level column ``name`` in row group ``rg``.

    A nested column has one column chunk per leaf; Parquet writers put them
    one after the other, so they form one range. Raises ValueError if they do not.
    """
    row_group = md.row_group(rg)
    ranges = []
    for j in range(row_group.num_columns):
        col = row_group.column(j)
        if col.path_in_schema.split(".", 1)[0] != name:
            continue
        start = col.data_page_offset
        if col.has_dictionary_page and col.dictionary_page_offset is not None:
            start = min(start, col.dictionary_page_offset)
        ranges.append((int(start), int(col.total_compressed_size)))
    if not ranges:
        raise ValueError(f"no column {name!r} in row group {rg}")
    ranges.sort()
    for (a, n), (b, _) in itertools.pairwise(ranges):
        if a + n != b:
            raise ValueError(f"the column chunks of {name!r} in row group {rg} are not contiguous")
    return ranges[0][0], ranges[-1][0] + ranges[-1][1] - ranges[0][0]


# -- reading ---------------------------------------------------------------------------
class _LRU:
    """A small thread-safe LRU (footers, and which chunks were verified in this process)."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self._items: OrderedDict[Any, Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any) -> Any:
        with self._lock:
            v = self._items.get(key)
            if v is not None:
                self._items.move_to_end(key)
            return v

    def put(self, key: Any, value: Any) -> None:
        with self._lock:
            self._items[key] = value
            self._items.move_to_end(key)
            while len(self._items) > self.capacity:
                self._items.popitem(last=False)


#: Parsed footers, by (store, path, footer checksum): each parsed once (a footer of a file of
#: 8 row groups of 16 columns is ~20 KB parsed). Bounded: a long scan of many files evicts.
_FOOTERS = _LRU(512)
#: Column chunks whose checksum was verified in this process (group files are immutable).
_VERIFIED = _LRU(1 << 16)


class DecodedCache:
    """Decoded chunks of group files for random access, LRU by bytes. Thread-safe.

    A chunk file serves one value by a range read; a group file's column chunk
    is decoded whole. Single-row and small ``take`` reads (``ds[i]``, the
    viewer, the loader's light columns) would decode the same chunk again and
    again: they keep the last few here. Scans do not use it (they read each
    chunk once, and its memory would count in their RSS).
    """

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._items: OrderedDict[Any, SampleBatch] = OrderedDict()
        self._bytes = 0
        self._lock = threading.Lock()

    def get(self, key: Any) -> SampleBatch | None:
        with self._lock:
            v = self._items.get(key)
            if v is not None:
                self._items.move_to_end(key)
            return v

    def put(self, key: Any, batch: SampleBatch) -> None:
        size = batch.nbytes + 8 * len(batch)
        if size > self.max_bytes:
            return
        with self._lock:
            if key in self._items:
                return
            self._items[key] = batch
            self._bytes += size
            while self._bytes > self.max_bytes:
                _, old = self._items.popitem(last=False)
                self._bytes -= old.nbytes + 8 * len(old)


#: Decoded chunks kept for random access (see DecodedCache).
DECODED = DecodedCache(64 << 20)


@dataclass(frozen=True)
class ChunkInfo:
    """What a footer says of one column of one row group (all its leaves together)."""

    rows: int
    offset: int
    size: int
    decoded_bytes: int
    dictionary: bool  # one leaf, dictionary-encoded


@dataclass(frozen=True, eq=False)
class Footer:
    """A group file's parsed footer: Parquet metadata, the stored Arrow schema, and per
    (row group, column) its ChunkInfo (computed once: reads then look it up)."""

    metadata: Any  # pyarrow.parquet.FileMetaData
    schema: pa.Schema
    chunks: dict[tuple[int, str], ChunkInfo]


def _chunk_infos(md: Any) -> dict[tuple[int, str], ChunkInfo]:
    """ChunkInfo of every column of every row group; ValueError when a column's leaves are
    not one contiguous range."""
    out: dict[tuple[int, str], ChunkInfo] = {}
    for rg in range(md.num_row_groups):
        row_group = md.row_group(rg)
        leaves: dict[str, list[Any]] = {}
        for j in range(row_group.num_columns):
            col = row_group.column(j)
            leaves.setdefault(col.path_in_schema.split(".", 1)[0], []).append(col)
        for name, cols in leaves.items():
            offset, size = column_range(md, rg, name)
            out[rg, name] = ChunkInfo(
                int(row_group.num_rows),
                offset,
                size,
                sum(int(c.total_uncompressed_size) for c in cols),
                len(cols) == 1 and bool(cols[0].has_dictionary_page),
            )
    return out


def read_footer(get_range: Any, uri: str, path: str, part: GroupPart) -> Footer:
    """The footer of the group file ``path`` (cached), checked against ``part``'s checksum.

    ``get_range(path, start, length)``: the store's range read. Raises CorruptChunkError for a
    file shorter than the log says, a footer length past its start, a footer over
    ``max_chunk_header_bytes``, or one whose bytes differ from those written.
    """
    import pyarrow.parquet as pq

    key = (uri, path, part.footer_checksum)
    hit = _FOOTERS.get(key)
    if hit is not None:
        return hit
    where = f"{uri}/{path}"
    size = part.file_size
    probe = min(size, FOOTER_PROBE)
    tail = get_range(path, size - probe, probe)
    if len(tail) != probe or tail[-4:] != MAGIC:
        raise CorruptChunkError(
            f"{where}: not a Parquet file of {size} bytes (short, or no PAR1 at its end)"
        )
    (length,) = struct.unpack("<I", tail[-8:-4])
    if length > size - 12:
        raise CorruptChunkError(f"{where}: footer of {length} bytes in a file of {size}")
    limits.check(
        "max_chunk_header_bytes",
        length,
        what=f"{where}: a Parquet footer of {length} bytes",
        error=CorruptChunkError,
    )
    footer = (
        memoryview(tail)[probe - 8 - length : probe - 8]
        if length + 8 <= probe
        else memoryview(get_range(path, size - 8 - length, length))
    )
    if len(footer) != length or checksum(footer) != part.footer_checksum:
        raise CorruptChunkError(
            f"{where}: the Parquet footer's checksum differs from the log's (corrupt file)"
        )
    try:
        pf = pq.ParquetFile(
            pa.BufferReader(MAGIC + bytes(footer) + struct.pack("<I", length) + MAGIC),
            thrift_string_size_limit=limits.current().max_chunk_header_bytes,
            thrift_container_size_limit=1 << 22,
        )
        got = Footer(pf.metadata, pf.schema_arrow, _chunk_infos(pf.metadata))
    except Exception as err:  # pyarrow raises several kinds on a damaged footer
        raise CorruptChunkError(f"{where}: the Parquet footer does not parse: {err}") from err
    _FOOTERS.put(key, got)
    return got


def verify(data: bytes | memoryview, part: GroupPart, uri: str, path: str) -> None:
    """Check a column chunk's bytes against the log's checksum, once per process."""
    key = (uri, path, part.row_group, part.column, part.checksum)
    if _VERIFIED.get(key) is not None:
        return
    if checksum(data) != part.checksum:
        raise CorruptChunkError(
            f"{uri}/{path}: column {part.column} of row group {part.row_group} does not match "
            "its checksum (corrupt file)"
        )
    _VERIFIED.put(key, True)


class RangeFile:
    """A file of ``size`` bytes of which only ``[offset, offset + len(data))`` is held.

    pyarrow reads one column chunk through it (wrapped in ``pa.PythonFile``)
    once the footer is known: the chunk's bytes come from one range read of
    object storage. A read outside the held range is refused.
    """

    def __init__(self, size: int, offset: int, data: bytes, where: str) -> None:
        self._size, self._offset, self._data, self._where = size, offset, data, where
        self._pos = 0
        self.closed = False

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def tell(self) -> int:
        return self._pos

    def seek(self, pos: int, whence: int = 0) -> int:
        base = {0: 0, 1: self._pos, 2: self._size}[whence]
        self._pos = base + pos
        return self._pos

    def read(self, n: int = -1) -> bytes:
        n = self._size - self._pos if n < 0 else n
        lo = self._pos - self._offset
        if lo < 0 or lo + n > len(self._data):
            raise CorruptChunkError(
                f"{self._where}: the reader asked for bytes {self._pos}..{self._pos + n}, outside "
                "the column chunk the log names"
            )
        self._pos += n
        return self._data[lo : lo + n]

    def close(self) -> None:
        self.closed = True


@functools.lru_cache(maxsize=1024)
def read_back_type(t: pa.DataType) -> pa.DataType:
    """The Arrow type pyarrow reads back from Parquet for a column written as ``t``.

    Parquet has no date64, time32[s] or timestamp[s] (read back as date32,
    time32[ms], timestamp[ms], exactly convertible) and names list items
    "element": a chunk's stored type is checked against this, not ``t``.
    """
    import pyarrow.parquet as pq

    sink = pa.BufferOutputStream()
    schema = pa.schema([pa.field("c", t)])
    pq.write_table(pa.Table.from_batches([], schema), sink, store_decimal_as_integer=True)
    return pq.ParquetFile(pa.BufferReader(sink.getvalue())).schema_arrow.field(0).type


def decode(
    source: Any,
    footer: Footer,
    part: GroupPart,
    rows: int,
    size: int,
    where: str,
    *,
    declared: pa.DataType,
    wanted: pa.DataType | None = None,
) -> pa.Array:
    """The values of one chunk (column ``part.column`` of row group ``part.row_group``).

    ``source``: a pyarrow-readable file holding (at least) the chunk's verified
    bytes. Returns the ``declared`` Arrow type, or ``wanted`` for a dictionary-encoded
    text chunk wanted as plain text (read as a dictionary and expanded: cheaper
    than decoding every value). Raises CorruptChunkError for a row group or
    column the file lacks, a row count other than the log's, a decoded size
    over the limits, or a chunk that does not decode.
    """
    import pyarrow.parquet as pq

    info = footer.chunks.get((part.row_group, part.column))
    if info is None or footer.schema.get_field_index(part.column) < 0:
        raise CorruptChunkError(f"{where}: no column {part.column} in row group {part.row_group}")
    if info.rows != rows:
        raise CorruptChunkError(
            f"{where}: row group {part.row_group} holds {info.rows} rows, the log says {rows}"
        )
    if (info.offset, info.size) != (part.offset, size):
        # The bytes checked against the log's checksum must be the bytes decoded.
        raise CorruptChunkError(
            f"{where}: column {part.column} of row group {part.row_group} lies at "
            f"{info.offset}+{info.size} in the file, the log says {part.offset}+{size}"
        )
    columnar.check_decoded_size(info.decoded_bytes, info.size, f"{where}: column chunk")
    stored_type = footer.schema.field(part.column).type
    if stored_type != read_back_type(declared):
        # A log pointing a column at another column's chunks (the bits would be reinterpreted).
        raise CorruptChunkError(
            f"{where}: column {part.column} holds {stored_type}, the column stores {declared}"
        )
    expand = (
        wanted is not None
        and _is_text(wanted)
        and not pa.types.is_dictionary(stored_type)
        and info.dictionary
    )
    try:
        f = pq.ParquetFile(
            source,
            metadata=footer.metadata,
            read_dictionary=[part.column] if expand else None,
            pre_buffer=False,
        )
        table = f.read_row_group(part.row_group, columns=[part.column], use_threads=False)
        col = table.column(0)
        arr = col.combine_chunks() if col.num_chunks != 1 else col.chunk(0)
    except CorruptChunkError:
        raise
    except Exception as err:  # pyarrow raises several kinds on a damaged file
        raise CorruptChunkError(f"{where}: column chunk does not decode: {err}") from err
    if len(arr) != rows:
        raise CorruptChunkError(f"{where}: decoded {len(arr)} rows, the log says {rows}")
    try:
        if expand and isinstance(arr, pa.DictionaryArray):
            out = arr.dictionary_decode()
            return out if out.type == wanted else out.cast(wanted)
        return arr if arr.type == declared else arr.cast(declared)
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError) as err:
        raise CorruptChunkError(f"{where}: column chunk holds {arr.type}, not {declared}") from err


def _is_text(t: pa.DataType) -> bool:
    return bool(
        pa.types.is_string(t)
        or pa.types.is_large_string(t)
        or pa.types.is_binary(t)
        or pa.types.is_large_binary(t)
    )


def to_batch(arr: pa.Array, ctype: ColumnType) -> SampleBatch:
    """A decoded chunk (typed ``ctype.arrow_type()``) as the SampleBatch a chunk file of ``ctype`` gives."""
    if isinstance(ctype, Arrow):
        return of_column(arr)
    n = len(arr)
    nulls = np.asarray(arr.is_null().to_numpy(zero_copy_only=False)) if arr.null_count else None
    if ctype.storage_dtype == "str":
        offsets = np.frombuffer(arr.buffers()[1], np.int32, n + 1, arr.offset * 4).astype(np.int64)
        data = arr.buffers()[2]
        return SampleBatch(
            memoryview(data) if data is not None else b"",
            offsets,
            np.empty((n, 0), np.int64),
            nulls,
        )
    # Null samples hold zeros, as in a chunk file (a bool's zero is False, a float16's 0.0).
    values = arr.fill_null(pa.array([0], pa.int8()).cast(arr.type)[0]) if arr.null_count else arr
    dtype = np.dtype(ctype.storage_dtype)
    raw = np.ascontiguousarray(values.to_numpy(zero_copy_only=False), dtype=dtype)
    return SampleBatch(
        raw.data.cast("B"), _offsets(n, dtype.itemsize), np.empty((n, 0), np.int64), nulls
    )


_OFFSETS = _LRU(16)


def _offsets(n: int, itemsize: int) -> np.ndarray:
    """``arange(n + 1) * itemsize``, read-only and shared: the columns of a row group have
    the same row count, and a chunk file's header caches its own the same way."""
    hit = _OFFSETS.get((n, itemsize))
    if hit is None:
        hit = np.arange(0, (n + 1) * itemsize, itemsize, dtype=np.int64)
        hit.flags.writeable = False
        _OFFSETS.put((n, itemsize), hit)
    return hit


__all__ = [
    "EncodedGroup",
    "Footer",
    "RangeFile",
    "checksum",
    "column_range",
    "decode",
    "encode_group",
    "in_group",
    "physical_name",
    "read_footer",
    "rows_per_group",
    "to_batch",
    "verify",
]
