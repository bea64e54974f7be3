"""Write appended rows as chunk files: one fragment's worth of data, not yet committed."""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from tensorhouse.errors import SchemaError, TensorhouseError
from tensorhouse.format.chunks import (
    DEFAULT_CHUNK_BYTES,
    SampleBatch,
    encode_chunk,
    normalize,
    split_points,
)
from tensorhouse.format.log.actions import MAX_FRAGMENT_ROWS, ChunkRef, Fragment
from tensorhouse.format.log.snapshot import Snapshot
from tensorhouse.format.threads import io_pool, pool
from tensorhouse.format.validate import check_batch
from tensorhouse.storage.base import Store
from tensorhouse.types import ColumnType, Schema


@dataclass(frozen=True)
class PendingFragment:
    """Chunks written for a fragment whose id is assigned at commit time.

    Ids are handed out by the committer so that a retry after losing a race
    only renumbers fragments; the uniquely named chunk files stay as they are.
    """

    num_rows: int
    columns: Mapping[int, tuple[ChunkRef, ...]]

    def with_id(self, fid: int) -> Fragment:
        return Fragment(fid, self.num_rows, self.columns)


def chunk_bytes(snapshot: Snapshot, name: str) -> int:
    cfg = snapshot.metadata.config
    per_col = cfg.get("chunk_bytes_by_column", {})
    return int(per_col.get(name, cfg.get("chunk_bytes", DEFAULT_CHUNK_BYTES)))


def normalize_columns(columns: Mapping[str, Any], schema: Schema) -> dict[str, SampleBatch]:
    """Validate every column before anything is written, so bad input writes nothing."""
    batches = {name: _normalize(columns[name], schema[name], name) for name in schema.names}
    for name, batch in batches.items():
        check_batch(batch, schema[name], name)  # values no later read could serve (tensorhouse.limits)
    return batches


def _normalize(values: Any, ctype: ColumnType, name: str) -> SampleBatch:
    """normalize(), with numpy's and Python's own errors for malformed values turned into SchemaError."""
    try:
        return normalize(values, ctype, name)
    except TensorhouseError:
        raise
    except (ValueError, TypeError, OverflowError, AttributeError, IndexError) as err:  # e.g. ragged nested lists
        raise SchemaError(f"column {name!r}: values do not fit a {type(ctype).__name__} column: {err}") from err


def write_fragments(store: Store, snapshot: Snapshot, batches: Mapping[str, SampleBatch],
                    num_rows: int) -> list[PendingFragment]:  # fmt: skip
    """Encode and upload the chunks of validated columns; one fragment per 2^32-1 rows.

    Every chunk of every column is encoded on the CPU pool and uploaded on the
    I/O pool as soon as it is encoded, so uploads (and their fsyncs) overlap
    instead of running one column, or two chunks, at a time.
    """
    out = []
    for start in range(0, max(num_rows, 1), MAX_FRAGMENT_ROWS):
        stop = min(num_rows, start + MAX_FRAGMENT_ROWS)
        jobs: dict[int, list[Future[tuple[ChunkRef, Future[None]]]]] = {}
        for name, batch in batches.items():
            part = batch.slice(start, stop) if (start, stop) != (0, len(batch)) else batch
            ctype = snapshot.metadata.schema[name]
            jobs[snapshot.metadata.field_ids[name]] = [
                pool().submit(_encode_and_upload, store, name, ctype, part.slice(*r))
                for r in split_points(part, chunk_bytes(snapshot, name))
            ]
        cols: dict[int, tuple[ChunkRef, ...]] = {}
        for fid, futures in jobs.items():
            refs = []
            for f in futures:
                ref, upload = f.result()
                upload.result()  # raises the upload's error, if any, before anything is committed
                refs.append(ref)
            cols[fid] = tuple(refs)
        out.append(PendingFragment(stop - start, cols))
        if num_rows == 0:
            break
    return out


def _encode_and_upload(store: Store, name: str, ctype: ColumnType,
                       batch: SampleBatch) -> tuple[ChunkRef, Future[None]]:  # fmt: skip
    chunk = encode_chunk(batch, ctype)
    path = f"data/{name}/{uuid.uuid4().hex}.chunk"
    upload = io_pool().submit(store.put, path, chunk.data)
    return ChunkRef(path, chunk.num_rows, chunk.header_length, len(chunk.data), chunk.stats), upload
