"""Encode SampleBatches into chunk files of a target size."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tensorhouse.format.chunks import codecs
from tensorhouse.format.chunks.header import (
    MAX_SAMPLES,
    block_checksums,
    choose_block_size,
    encode_header,
)
from tensorhouse.format.chunks.samples import SampleBatch
from tensorhouse.types import ColumnType

#: Default target size of a chunk's raw data (DESIGN.md: 8-16 MiB).
DEFAULT_CHUNK_BYTES = 12 << 20


@dataclass(frozen=True, eq=False)
class EncodedChunk:
    """A chunk file's bytes plus what the log records about it."""

    data: bytes
    num_rows: int
    header_length: int
    stats: dict[str, Any] | None


def split_points(batch: SampleBatch, target_bytes: int) -> list[tuple[int, int]]:
    """Row ranges whose raw bytes stay near ``target_bytes``.

    A sample bigger than the target gets a chunk of its own rather than
    failing: one read still fetches it whole.
    """
    n = len(batch)
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


def encode_chunk(batch: SampleBatch, ctype: ColumnType) -> EncodedChunk:
    """One chunk file holding every sample of ``batch``."""
    raw = memoryview(batch.data)[int(batch.offsets[0]) : int(batch.offsets[-1])]
    stored = codecs.compress(ctype.chunk_codec, raw) if ctype.chunk_codec != "none" else raw
    block_size = choose_block_size(len(raw), len(batch))
    header = encode_header(
        chunk_codec=ctype.chunk_codec,
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
    return EncodedChunk(b"".join((header, stored)), len(batch), len(header), scalar_stats(batch, ctype))
