"""Deletion vectors: which rows of a fragment are deleted.

File layout (``_deletions/<uuid>.dv``): magic ``THDV``, u16 format version,
u16 reserved, u32 count, u32 crc32 of the offsets, then ``count`` sorted
u32 row offsets. Sorted offsets are compact for the common case (a few
deletions in a big fragment) and validated cheaply.
"""

from __future__ import annotations

import struct
import uuid
import zlib

import numpy as np

from tensorhouse import limits
from tensorhouse.errors import CorruptDataError
from tensorhouse.format.log.actions import DeletionRef
from tensorhouse.storage.base import Store

MAGIC = b"THDV"
VERSION = 1
_HEAD = struct.Struct("<4sHHII")


def write(store: Store, offsets: np.ndarray) -> DeletionRef:
    """Store sorted unique row offsets and return the reference the log keeps."""
    offs = np.unique(np.asarray(offsets, dtype=np.uint32)).astype("<u4")
    body = offs.tobytes()
    data = _HEAD.pack(MAGIC, VERSION, 0, len(offs), zlib.crc32(body)) + body
    path = f"_deletions/{uuid.uuid4().hex}.dv"
    store.put(path, data)
    return DeletionRef(path, len(offs), len(data))


def read(store: Store, ref: DeletionRef, num_rows: int) -> np.ndarray:
    """The deleted offsets (int64, sorted), validated against the fragment's row count."""
    where = f"{store.uri}/{ref.path}"
    # The log's size is checked before reading: a 1 GiB or sparse 64 GiB file is refused unread.
    limits.check(
        "max_deletion_vector_bytes",
        ref.size,
        what=f"{where}: deletion vector of {ref.size} bytes",
        error=CorruptDataError,
    )
    if ref.size != _HEAD.size + 4 * ref.count:
        raise CorruptDataError(
            f"{where}: the log says {ref.count} deleted rows in {ref.size} bytes"
        )
    data = limits.read_bounded(
        store, ref.path, "max_deletion_vector_bytes", what="deletion vector", error=CorruptDataError
    )
    if len(data) != ref.size or len(data) < _HEAD.size:
        raise CorruptDataError(
            f"{where}: deletion vector of {len(data)} bytes, the log says {ref.size}"
        )
    magic, version, _, count, crc = _HEAD.unpack_from(data, 0)
    if magic != MAGIC or version != VERSION:
        raise CorruptDataError(f"{where}: not a deletion vector of a known version")
    body = memoryview(data)[_HEAD.size :]
    if count != ref.count or len(body) != 4 * count or zlib.crc32(body) != crc:
        raise CorruptDataError(f"{where}: deletion vector fails its checks (count or checksum)")
    offs = np.frombuffer(body, dtype="<u4").astype(np.int64)
    if count and (offs[-1] >= num_rows or bool((np.diff(offs) <= 0).any())):
        raise CorruptDataError(
            f"{where}: offsets not sorted or beyond the fragment's {num_rows} rows"
        )
    return offs
