"""The chunk file layout and its header.

A chunk file is ``header | data section``. The header is binary (a few
bytes per sample; JSON would cost more to parse than reading the samples):

```
offset  size        field
0       4           magic b"THC1"
4       4   u32     header_length (bytes before the data section)
8       2   u16     format_version
10      1   u8      chunk codec   (0 none, 1 lz4, 2 zstd)
11      1   u8      sample codec  (0 none, 1 jpeg, 2 png)
12      1   u8      dtype code    (index in DTYPES)
13      1   u8      ndim
14      1   u8      flags         (1 uniform shape, 2 has nulls, 4 fixed sample size,
                                   8 columnar: format 3, see below)
15      1           reserved
16      4   u32     num_samples
20      8   u64     data_length   (stored bytes of the data section)
28      8   u64     raw_length    (bytes after the chunk codec)
36      4   u32     block_size    (bytes covered by each block checksum)
40      ..  u32     shapes: ndim values if uniform, else num_samples * ndim
..      ..  u64     offsets: num_samples + 1 byte offsets into the raw data section;
                    with flag 4 (format 2: every sample the same size) one u64, that size
..      ..  u32     block_crc32: ceil(data_length / block_size) checksums of the
                    stored data section, block by block
..      ..  u8      null bitmap (only with flag 2; 1 = null, numpy bit order)
..      ..          zero padding, so that the header length is a multiple of 64
..      4   u32     header_crc32 (of every header byte before it)
```

A columnar chunk (flag 8, format 3; ``Arrow`` columns) has no shapes, offsets
or null bitmap: its data section is one encoded column of ``num_samples``
values (a Parquet file of one column and one row group, which carries its
own encodings, compression, validity and checksums per page).

The padding aligns the data section, so numeric samples are viewed in place
(``np.frombuffer``) with their natural alignment.

Checksums cover fixed-size blocks of the stored data section rather than
samples: a sample read by range is verified by reading the few blocks around
it, and a chunk of two million int32 labels needs 2,000 checksums, not two
million.
Every field is validated before use: a stranger's file cannot make us
allocate or index out of bounds.
"""

from __future__ import annotations

import struct
import zlib
from dataclasses import dataclass

import numpy as np

from tensorhouse import limits
from tensorhouse.errors import CorruptChunkError
from tensorhouse.types import NUMERIC_DTYPES

MAGIC = b"THC1"
FORMAT_VERSION = 2
#: Columnar chunks (flag 8) are format 3; others are still written as format 2,
#: so datasets without the new column types stay readable by older readers.
COLUMNAR_VERSION = 3
#: Versions this reader understands. Format 2 added flag 4: fixed-size samples
#: store their size instead of an offset per sample (an int32 label column was
#: 3x its values on disk with offsets).
READABLE_VERSIONS = (1, 2, 3)
DTYPES: tuple[str, ...] = (*NUMERIC_DTYPES, "bytes", "str", "arrow")
CHUNK_CODEC_IDS = {"none": 0, "lz4": 1, "zstd": 2}
SAMPLE_CODEC_IDS = {None: 0, "jpeg": 1, "png": 2}
_CHUNK_CODEC_NAMES = {v: k for k, v in CHUNK_CODEC_IDS.items()}
_SAMPLE_CODEC_NAMES = {v: k for k, v in SAMPLE_CODEC_IDS.items()}
_FIXED = struct.Struct("<4sIHBBBBBxIQQI")
FIXED_SIZE = _FIXED.size  # 40
FLAG_UNIFORM = 1
FLAG_NULLS = 2
FLAG_FIXED_SIZE = 4
FLAG_COLUMNAR = 8
#: Upper bounds that keep a corrupt header from asking for absurd allocations
#: (the configurable ones are in :mod:`tensorhouse.limits`). The writer never
#: puts more samples than this in one chunk; readers refuse more than
#: ``max_chunk_samples`` (the same by default: a fixed-size header claiming
#: more would make the reader build an offset array of 8 bytes per claimed
#: sample; raise it to read chunks written before the cap with a large chunk_bytes).
MAX_SAMPLES = 1 << 24
#: Largest product of a sample's dimensions (it must fit an int64 without overflow).
MAX_ELEMENTS = 1 << 62
MAX_NDIM = 32
ALIGN = 64
MIN_BLOCK = 512
MAX_BLOCK = 1 << 30


@dataclass(frozen=True, eq=False)
class ChunkHeader:
    """The parsed, validated header of one chunk file."""

    header_length: int
    chunk_codec: str
    sample_codec: str | None
    dtype: str
    ndim: int
    num_samples: int
    data_length: int
    raw_length: int
    block_size: int
    shapes: np.ndarray  # int64 [num_samples, ndim]
    offsets: np.ndarray  # int64 [num_samples + 1], into the raw data section
    block_crcs: np.ndarray  # uint32 [ceil(data_length / block_size)]
    nulls: np.ndarray | None  # bool [num_samples]
    uniform: bool
    columnar: bool = False

    @property
    def file_length(self) -> int:
        return self.header_length + self.data_length

    def sample_range(self, i: int) -> tuple[int, int]:
        """(start, length) of sample ``i`` in the raw data section."""
        start = int(self.offsets[i])
        return start, int(self.offsets[i + 1]) - start


def encode_header(
    *,
    chunk_codec: str,
    sample_codec: str | None,
    dtype: str,
    ndim: int,
    shapes: np.ndarray,
    offsets: np.ndarray,
    nulls: np.ndarray | None,
    data_length: int,
    raw_length: int,
    block_size: int,
    block_crcs: np.ndarray,
    columnar: bool = False,
) -> bytes:
    """Serialise a header; ``shapes`` is int [n, ndim], ``offsets`` int [n + 1].

    ``columnar``: the data section is one encoded column of ``len(offsets) - 1``
    values; shapes, offsets and nulls are not stored.
    """
    n = len(offsets) - 1
    if columnar:
        parts = [b"", block_crcs.astype("<u4").tobytes()]
        unpadded = FIXED_SIZE + sum(len(p) for p in parts) + 4
        pad = -unpadded % ALIGN
        parts.append(b"\0" * pad)
        parts[0] = _FIXED.pack(
            MAGIC,
            unpadded + pad,
            COLUMNAR_VERSION,
            CHUNK_CODEC_IDS[chunk_codec],
            SAMPLE_CODEC_IDS[None],
            DTYPES.index("arrow"),
            0,
            FLAG_COLUMNAR | FLAG_UNIFORM,
            n,
            data_length,
            raw_length,
            block_size,
        )
        head = b"".join(parts)
        return head + struct.pack("<I", zlib.crc32(head))
    uniform = n > 0 and bool((shapes == shapes[0]).all()) if ndim else True
    flags = (FLAG_UNIFORM if uniform else 0) | (
        FLAG_NULLS if nulls is not None and nulls.any() else 0
    )
    sizes = np.diff(offsets)
    fixed = n > 0 and bool((sizes == sizes[0]).all())
    if fixed:
        flags |= FLAG_FIXED_SIZE
    parts = [
        b"",  # fixed part, filled in once the length is known
        (shapes[0] if (uniform and n) else shapes).astype("<u4").tobytes() if ndim else b"",
        np.array([sizes[0]], "<u8").tobytes() if fixed else offsets.astype("<u8").tobytes(),
    ]
    parts.append(block_crcs.astype("<u4").tobytes())
    if flags & FLAG_NULLS:
        assert nulls is not None
        parts.append(np.packbits(nulls).tobytes())
    unpadded = FIXED_SIZE + sum(len(p) for p in parts) + 4
    pad = -unpadded % ALIGN
    parts.append(b"\0" * pad)
    header_length = unpadded + pad
    parts[0] = _FIXED.pack(
        MAGIC,
        header_length,
        FORMAT_VERSION,
        CHUNK_CODEC_IDS[chunk_codec],
        SAMPLE_CODEC_IDS[sample_codec],
        DTYPES.index(dtype),
        ndim,
        flags,
        n,
        data_length,
        raw_length,
        block_size,
    )
    head = b"".join(parts)
    return head + struct.pack("<I", zlib.crc32(head))


def header_length_hint(data: bytes | memoryview) -> int:
    """The header length stored in a chunk's first 8 bytes."""
    if len(data) < 8 or bytes(data[:4]) != MAGIC:
        raise CorruptChunkError("not a tensorhouse chunk (bad magic bytes)")
    (length,) = struct.unpack_from("<I", data, 4)
    check_header_length(int(length))
    return int(length)


def check_header_length(length: int) -> None:
    """Refuse a header length over ``max_chunk_header_bytes`` before reading that many bytes."""
    limits.check(
        "max_chunk_header_bytes",
        length,
        what=f"chunk header of {length} bytes",
        error=CorruptChunkError,
    )


def check_expansion(codec: str, data_length: int, raw_length: int) -> None:
    """Refuse a data section that would decompress to more than the limits allow, before allocating it."""
    lim = limits.current()
    limits.check(
        "max_chunk_decompressed_bytes",
        raw_length,
        what=f"chunk data section of {raw_length} bytes",
        error=CorruptChunkError,
    )
    if (
        codec != "none"
        and raw_length > lim.compression_ratio_floor
        and raw_length > lim.max_compression_ratio * max(data_length, 1)
    ):
        ratio = raw_length // max(data_length, 1)
        raise limits.exceeded(
            "max_compression_ratio",
            ratio,
            what=f"{codec} chunk of {data_length} stored bytes claiming {raw_length} decompressed",
            error=CorruptChunkError,
        )


def decode_header(data: bytes | memoryview, *, file_length: int | None = None) -> ChunkHeader:
    """Parse and validate a header from the first ``header_length`` bytes of a chunk."""
    if len(data) < FIXED_SIZE + 4:
        raise CorruptChunkError(f"chunk header truncated ({len(data)} bytes)")
    (
        magic,
        header_length,
        version,
        cc,
        sc,
        dt,
        ndim,
        flags,
        n,
        data_length,
        raw_length,
        block_size,
    ) = _FIXED.unpack_from(data, 0)
    if magic != MAGIC:
        raise CorruptChunkError("not a tensorhouse chunk (bad magic bytes)")
    if version not in READABLE_VERSIONS:
        raise CorruptChunkError(
            f"chunk format version {version} is not supported (this reader knows {READABLE_VERSIONS})"
        )
    if flags & FLAG_FIXED_SIZE and version < 2:
        raise CorruptChunkError("chunk flag 4 (fixed sample size) in a format 1 header")
    check_header_length(header_length)
    columnar = bool(flags & FLAG_COLUMNAR)
    if columnar and (version < 3 or flags & (FLAG_FIXED_SIZE | FLAG_NULLS) or ndim):
        raise CorruptChunkError(
            f"chunk flag 8 (columnar) with format {version}, flags {flags}, ndim {ndim}"
        )
    if (DTYPES[dt] == "arrow" if dt < len(DTYPES) else False) != columnar:
        raise CorruptChunkError("chunk dtype 'arrow' and flag 8 (columnar) come together")
    if header_length > len(data) or header_length < FIXED_SIZE + 4:
        raise CorruptChunkError(
            f"chunk header length {header_length} does not fit the {len(data)} bytes read"
        )
    (stored_crc,) = struct.unpack_from("<I", data, header_length - 4)
    if zlib.crc32(memoryview(data)[: header_length - 4]) != stored_crc:
        raise CorruptChunkError("chunk header checksum mismatch")
    if cc not in _CHUNK_CODEC_NAMES or sc not in _SAMPLE_CODEC_NAMES or dt >= len(DTYPES):
        raise CorruptChunkError(f"chunk header names an unknown codec or dtype ({cc}, {sc}, {dt})")
    limits.check(
        "max_chunk_samples", n, what=f"chunk header claiming {n} samples", error=CorruptChunkError
    )
    if ndim > MAX_NDIM or not (MIN_BLOCK <= block_size <= MAX_BLOCK):
        raise CorruptChunkError(
            f"chunk header out of bounds (ndim {ndim}, {n} samples, block {block_size})"
        )
    chunk_codec = _CHUNK_CODEC_NAMES[cc]
    check_expansion(chunk_codec, data_length, raw_length)
    uniform = bool(flags & FLAG_UNIFORM)
    pos = FIXED_SIZE
    n_shape = ndim if uniform else n * ndim
    n_blocks = -(-data_length // block_size)
    fixed = bool(flags & FLAG_FIXED_SIZE)
    offsets_size = 0 if columnar else (8 if fixed else 8 * (n + 1))
    expected = FIXED_SIZE + 4 * n_shape + offsets_size + 4 * n_blocks
    expected += (n + 7) // 8 if flags & FLAG_NULLS else 0
    expected += 4
    expected += -expected % ALIGN
    if expected != header_length:
        raise CorruptChunkError(
            f"chunk header length {header_length} disagrees with its fields ({expected})"
        )
    raw_shapes = np.frombuffer(data, dtype="<u4", count=n_shape, offset=pos).astype(np.int64)
    pos += 4 * n_shape
    shapes = np.broadcast_to(raw_shapes, (n, ndim)) if uniform else raw_shapes.reshape(n, ndim)
    # In floating point: an int64 product of 65536^4 wraps to 0 and would pass the size check below.
    if (
        ndim
        and n
        and float(np.prod(raw_shapes.reshape(-1, ndim).astype(np.float64), axis=1).max())
        > MAX_ELEMENTS
    ):
        raise CorruptChunkError(
            f"chunk sample shape {raw_shapes.reshape(-1, ndim)[0].tolist()} is too large"
        )
    if columnar:
        offsets = np.zeros(
            n + 1, dtype=np.int64
        )  # no per-sample payloads: the section is one column
        if data_length != raw_length:
            raise CorruptChunkError("columnar chunk with data_length != raw_length")
    elif fixed:
        (size,) = struct.unpack_from("<Q", data, pos)
        if size * n != raw_length:
            raise CorruptChunkError(
                f"{n} samples of {size} bytes do not fill the {raw_length}-byte data section"
            )
        offsets = np.arange(n + 1, dtype=np.int64) * size
        pos += 8
    else:
        offsets = np.frombuffer(data, dtype="<u8", count=n + 1, offset=pos).astype(np.int64)
        pos += 8 * (n + 1)
    block_crcs = np.frombuffer(data, dtype="<u4", count=n_blocks, offset=pos)
    pos += 4 * n_blocks
    nulls = None
    if flags & FLAG_NULLS:
        nulls = np.unpackbits(
            np.frombuffer(data, dtype=np.uint8, count=(n + 7) // 8, offset=pos), count=n
        ).astype(bool)
    if not columnar and (
        offsets[0] != 0 or offsets[-1] != raw_length or (n and bool((np.diff(offsets) < 0).any()))
    ):
        raise CorruptChunkError("chunk sample offsets are not monotonic within the data section")
    if chunk_codec == "none" and data_length != raw_length:
        raise CorruptChunkError("uncompressed chunk with data_length != raw_length")
    dtype = DTYPES[dt]
    if _SAMPLE_CODEC_NAMES[sc] is None and dtype not in ("bytes", "str", "arrow") and n:
        # Numeric samples: every sample's byte length must equal its shape's.
        itemsize = np.dtype(dtype).itemsize
        if not np.array_equal(np.diff(offsets), shapes.prod(axis=1) * itemsize):
            raise CorruptChunkError("chunk sample sizes disagree with their shapes")
    if file_length is not None and header_length + data_length != file_length:
        raise CorruptChunkError(
            f"chunk is {file_length} bytes but its header describes {header_length + data_length}"
        )
    return ChunkHeader(
        header_length=header_length,
        chunk_codec=chunk_codec,
        sample_codec=_SAMPLE_CODEC_NAMES[sc],
        dtype=dtype,
        ndim=ndim,
        num_samples=n,
        data_length=data_length,
        raw_length=raw_length,
        block_size=block_size,
        shapes=shapes,
        offsets=offsets,
        block_crcs=block_crcs,
        nulls=nulls,
        uniform=uniform,
        columnar=columnar,
    )


def choose_block_size(raw_length: int, num_samples: int) -> int:
    """A checksum block near the mean sample size, between 4 KiB and 1 MiB.

    Small blocks keep a single-sample range read small; large ones keep the
    number of checksums per chunk low.
    """
    mean = raw_length // max(num_samples, 1)
    size = 4096
    while size < mean and size < (1 << 20):
        size <<= 1
    return size


def block_checksums(data: bytes | memoryview, block_size: int) -> np.ndarray:
    """crc32 of each ``block_size`` slice of ``data`` (zlib releases the GIL)."""
    view = memoryview(data)
    n = -(-len(view) // block_size)
    return np.fromiter(
        (zlib.crc32(view[i * block_size : (i + 1) * block_size]) for i in range(n)),
        dtype=np.uint32,
        count=n,
    )


def verify_blocks(header: ChunkHeader, first_block: int, data: bytes | memoryview) -> None:
    """Check ``data`` (the stored bytes starting at ``first_block``) against the block checksums."""
    bs = header.block_size
    view = memoryview(data)
    n = -(-len(view) // bs)
    expected = header.block_crcs[first_block : first_block + n]
    if len(expected) != n:
        raise CorruptChunkError("chunk read past its last checksum block")
    for i in range(n):
        if zlib.crc32(view[i * bs : (i + 1) * bs]) != expected[i]:
            raise CorruptChunkError(f"chunk data checksum mismatch in block {first_block + i}")
