"""The tensor chunk format: codecs, chunk files, and the in-memory SampleBatch."""

from tensorhouse.format.chunks.header import ChunkHeader, decode_header
from tensorhouse.format.chunks.reader import ChunkReader, take
from tensorhouse.format.chunks.samples import SampleBatch, concat, normalize
from tensorhouse.format.chunks.writer import (
    DEFAULT_CHUNK_BYTES,
    EncodedChunk,
    encode_chunk,
    split_points,
)

__all__ = [
    "DEFAULT_CHUNK_BYTES",
    "ChunkHeader",
    "ChunkReader",
    "EncodedChunk",
    "SampleBatch",
    "concat",
    "decode_header",
    "encode_chunk",
    "normalize",
    "split_points",
    "take",
]
