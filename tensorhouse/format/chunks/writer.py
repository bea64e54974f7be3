"""Encode SampleBatches into chunk files of a target size."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tensorhouse.format.chunks import codecs, columnar
from tensorhouse.format.chunks.header import (
    MAX_SAMPLES,
    block_checksums,
    choose_block_size,
    encode_header,
)
from tensorhouse.format.chunks.samples import SampleBatch
from tensorhouse.types import Arrow, ColumnType, Scalar

#: Default target size of a chunk's raw data (DESIGN.md: 8-16 MiB).
DEFAULT_CHUNK_BYTES = 12 << 20
#: Scalar chunks are compressed when a sample of this many bytes shrinks below MAX_RATIO.
SCALAR_SAMPLE_BYTES = 1 << 20
MAX_RATIO = 0.8


@dataclass(frozen=True, eq=False)
class EncodedChunk:
    """A chunk file's bytes (the header, then the data section) plus what the log records about it.

    The two parts stay apart: the data section is often a view of the caller's
    buffer (an Arrow binary column), and ``Store.put_parts`` writes them one
    after the other instead of first copying both into one new buffer.
    """

    parts: tuple[bytes | memoryview, ...]
    num_rows: int
    header_length: int
    stats: dict[str, Any] | None

    @property
    def size(self) -> int:
        """The chunk file's length in bytes."""
        return sum(memoryview(p).nbytes for p in self.parts)

    @property
    def data(self) -> bytes:
        """The chunk file's bytes in one buffer (a copy)."""
        return b"".join(self.parts)


def split_points(batch: SampleBatch, target_bytes: int) -> list[tuple[int, int]]:
    """Row ranges whose raw bytes stay near ``target_bytes``.

    A sample bigger than the target gets a chunk of its own rather than
    failing: one read still fetches it whole.
    """
    n = len(batch)
    if batch.column is not None:
        # An Arrow column: rows of about equal size, so split by the mean row size.
        per_row = max(batch.nbytes / max(n, 1), 1.0)
        rows = max(int(target_bytes // per_row), 1)
        return [(a, min(a + rows, n)) for a in range(0, n, rows)] or [(0, 0)]
    offsets = batch.offsets
    out = []
    start = 0
    while start < n:
        stop = int(np.searchsorted(offsets, offsets[start] + target_bytes, side="right")) - 1
        # Readers refuse chunks of more than MAX_SAMPLES samples (see header.py).
        stop = min(max(stop, start + 1), n, start + MAX_SAMPLES)
        out.append((start, stop))
        start = stop
    return out


def scalar_stats(batch: SampleBatch, ctype: ColumnType) -> dict[str, Any] | None:
    """min / max / null_count of a scalar chunk, for pruning; None for other columns."""
    if batch.column is not None:
        return (
            columnar.column_stats(batch.column)
            if ctype.is_scalar
            else {"null_count": batch.column.null_count}
        )
    if not ctype.is_scalar:
        return None
    values = np.frombuffer(batch.data, dtype=ctype.storage_dtype, count=len(batch))
    null_count = 0
    if batch.nulls is not None:
        null_count = int(batch.nulls.sum())
        values = values[~batch.nulls]
    stats: dict[str, Any] = {"null_count": null_count, "min": None, "max": None}
    if values.dtype.kind == "f":
        values = values[~np.isnan(values)]
        stats["has_nan"] = bool(len(values) < len(batch) - null_count)
    if len(values):
        lo, hi = values.min(), values.max()
        if values.dtype.kind == "f" and (math.isinf(lo) or math.isinf(hi)):
            lo, hi = float(lo), float(hi)
            stats["min"] = None if math.isinf(lo) else lo
            stats["max"] = None if math.isinf(hi) else hi
        else:
            stats["min"], stats["max"] = lo.item(), hi.item()
    return stats


def scalar_codec(raw: memoryview) -> str:
    """zstd for a scalar chunk whose first megabyte it shrinks below MAX_RATIO, else none (measured)."""
    if len(raw) < 4096:
        return "none"
    sample = raw[:SCALAR_SAMPLE_BYTES]
    return (
        "zstd"
        if len(codecs.compress("zstd", sample, level=1)) < MAX_RATIO * len(sample)
        else "none"
    )


def encode_columnar(batch: SampleBatch) -> tuple[EncodedChunk, str]:
    """A columnar chunk (format 3) for an ``Arrow`` column's batch."""
    assert batch.column is not None
    stored, codec = columnar.encode(batch.column)
    block_size = choose_block_size(len(stored), len(batch))
    header = encode_header(
        chunk_codec="none",
        sample_codec=None,
        dtype="arrow",
        ndim=0,
        shapes=np.zeros((len(batch), 0), np.int64),
        offsets=np.zeros(len(batch) + 1, np.int64),
        nulls=None,
        data_length=len(stored),
        raw_length=len(stored),
        block_size=block_size,
        block_crcs=block_checksums(stored, block_size),
        columnar=True,
    )
    return EncodedChunk((header, stored), len(batch), len(header), None), codec


def encode_chunk(batch: SampleBatch, ctype: ColumnType) -> EncodedChunk:
    """One chunk file holding every sample of ``batch``.

    ``Arrow`` columns get a columnar chunk; scalar columns a zstd data section
    where measuring a sample says it pays; other columns their type's codec.
    The log's statistics for the chunk name the codec (``"codec"``).
    """
    if batch.column is not None and isinstance(ctype, Arrow):
        chunk, codec = encode_columnar(batch)
        col_stats = scalar_stats(batch, ctype) or {}
        col_stats["codec"] = f"parquet+{codec}"
        return EncodedChunk(chunk.parts, chunk.num_rows, chunk.header_length, col_stats)
    raw = memoryview(batch.data)[int(batch.offsets[0]) : int(batch.offsets[-1])]
    codec = scalar_codec(raw) if isinstance(ctype, Scalar) else ctype.chunk_codec
    # zstd level 1 for scalars: measured on TPC-H keys, 2x faster than 3 for 2-3% more bytes.
    stored = (
        codecs.compress(codec, raw, level=1 if isinstance(ctype, Scalar) else 3)
        if codec != "none"
        else raw
    )
    block_size = choose_block_size(len(raw), len(batch))
    stats = scalar_stats(batch, ctype)
    if stats is not None and codec != "none":
        stats["codec"] = codec
    header = encode_header(
        chunk_codec=codec,
        sample_codec=ctype.sample_codec,
        dtype=ctype.storage_dtype,
        ndim=batch.shapes.shape[1],
        shapes=batch.shapes,
        offsets=batch.offsets - batch.offsets[0],
        nulls=batch.nulls,
        data_length=len(stored),
        raw_length=len(raw),
        block_size=block_size,
        block_crcs=block_checksums(stored, block_size),
    )
    return EncodedChunk((header, stored), len(batch), len(header), stats)
