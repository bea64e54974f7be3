"""Write rows as chunk files: fragments' worth of data, staged but not yet committed.

This is the one place chunks are encoded and uploaded. Appends, updates,
column additions and compaction all come through :func:`write_chunks` or
:func:`stage_fragments`; what they return is committed later through a
:class:`~tensorhouse.format.transaction.Transaction`, possibly by another
process (a Ray driver commits the fragments its tasks staged).

Example:
    >>> import tensorhouse as th
    >>> ds = th.create("memory://doc-stage", {"x": "int64"})
    >>> staged = ds.stage({"x": [1, 2, 3]})       # chunk files written, nothing committed
    >>> sent = [StagedFragment.from_dict(s.to_dict()) for s in staged]  # e.g. returned by a worker
    >>> ds.commit_staged(sent), len(ds)
    (1, 3)
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from tensorhouse.errors import CorruptLogError, SchemaError, TensorhouseError
from tensorhouse.format.chunks import (
    DEFAULT_CHUNK_BYTES,
    SampleBatch,
    encode_chunk,
    normalize,
    split_points,
)
from tensorhouse.format.log.actions import MAX_FRAGMENT_ROWS, ChunkRef, Fragment, Metadata
from tensorhouse.format.threads import io_pool, pool
from tensorhouse.format.validate import check_batch
from tensorhouse.storage.base import Store
from tensorhouse.types import ColumnType, Schema


@dataclass(frozen=True)
class StagedFragment:
    """Chunks written for a fragment whose id is assigned at commit time.

    Ids are handed out by the committer so that a retry after losing a race
    only renumbers fragments; the uniquely named chunk files stay as they are.
    ``dataset_id`` and ``field_ids`` let the committer check that the chunks
    were written for this dataset and for columns it still has. The value is
    picklable and has a JSON form (:meth:`to_dict`), so the process that writes
    the chunks need not be the one that commits them.
    """

    dataset_id: str
    num_rows: int
    columns: Mapping[int, tuple[ChunkRef, ...]]

    def with_id(self, fid: int) -> Fragment:
        return Fragment(fid, self.num_rows, self.columns)

    def files(self) -> list[str]:
        return [c.path for chunks in self.columns.values() for c in chunks]

    def to_dict(self) -> dict[str, Any]:
        return {"dataset_id": self.dataset_id, **Fragment(0, self.num_rows, self.columns).to_dict()}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> StagedFragment:
        """Parse (and validate, as a log entry is validated) a staged fragment's JSON form."""
        dataset_id = d.get("dataset_id")
        try:
            if not isinstance(dataset_id, str):
                raise CorruptLogError("dataset_id must be a string")
            frag = Fragment.from_dict({**d, "id": 0})
        except CorruptLogError as err:
            raise SchemaError(f"not a staged fragment: {err}") from err
        if frag.deletion is not None:
            raise SchemaError("a staged fragment cannot carry deletions")
        return StagedFragment(dataset_id, frag.num_rows, frag.columns)

    def check(self, metadata: Metadata) -> None:
        """Raise SchemaError unless these chunks fit ``metadata`` (same dataset, columns still there)."""
        if self.dataset_id != metadata.dataset_id:
            raise SchemaError(
                f"staged fragment belongs to dataset {self.dataset_id}, not {metadata.dataset_id}"
            )
        live = set(metadata.field_ids.values())
        for fid in self.columns:
            if fid not in live:
                raise SchemaError(
                    f"staged fragment has chunks of field {fid}, which this version no longer has "
                    "(the column was dropped after the chunks were written)"
                )


def chunk_bytes(metadata: Metadata, name: str) -> int:
    cfg = metadata.config
    per_col = cfg.get("chunk_bytes_by_column", {})
    return int(per_col.get(name, cfg.get("chunk_bytes", DEFAULT_CHUNK_BYTES)))


def normalize_columns(columns: Mapping[str, Any], schema: Schema) -> dict[str, SampleBatch]:
    """Validate every column before anything is written, so bad input writes nothing."""
    batches = {name: _normalize(columns[name], schema[name], name) for name in schema.names}
    for name, batch in batches.items():
        check_batch(
            batch, schema[name], name
        )  # values no later read could serve (tensorhouse.limits)
    return batches


def _normalize(values: Any, ctype: ColumnType, name: str) -> SampleBatch:
    """normalize(), with numpy's and Python's own errors for malformed values turned into SchemaError."""
    try:
        return normalize(values, ctype, name)
    except TensorhouseError:
        raise
    except (
        ValueError,
        TypeError,
        OverflowError,
        AttributeError,
        IndexError,
    ) as err:  # e.g. ragged nested lists
        raise SchemaError(
            f"column {name!r}: values do not fit a {type(ctype).__name__} column: {err}"
        ) from err


def write_chunks(
    store: Store, metadata: Metadata, name: str, batch: SampleBatch, *, split: bool = True
) -> tuple[ChunkRef, ...]:
    """Encode and upload one column's rows as chunks of the configured size (one chunk unless ``split``)."""
    ctype = metadata.schema[name]
    ranges = split_points(batch, chunk_bytes(metadata, name)) if split else [(0, len(batch))]
    jobs = [pool().submit(_encode_and_upload, store, name, ctype, batch.slice(*r)) for r in ranges]
    return tuple(_wait(f) for f in jobs)


def stage_fragments(
    store: Store, metadata: Metadata, batches: Mapping[str, SampleBatch], num_rows: int
) -> list[StagedFragment]:
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
            ctype = metadata.schema[name]
            jobs[metadata.field_ids[name]] = [
                pool().submit(_encode_and_upload, store, name, ctype, part.slice(*r))
                for r in split_points(part, chunk_bytes(metadata, name))
            ]
        cols = {fid: tuple(_wait(f) for f in futures) for fid, futures in jobs.items()}
        out.append(StagedFragment(metadata.dataset_id, stop - start, cols))
        if num_rows == 0:
            break
    return out


def _wait(job: Future[tuple[ChunkRef, Future[None]]]) -> ChunkRef:
    ref, upload = job.result()
    upload.result()  # raises the upload's error, if any, before anything is committed
    return ref


def _encode_and_upload(
    store: Store, name: str, ctype: ColumnType, batch: SampleBatch
) -> tuple[ChunkRef, Future[None]]:
    chunk = encode_chunk(batch, ctype)
    path = f"data/{name}/{uuid.uuid4().hex}.chunk"
    upload = io_pool().submit(store.put_parts, path, chunk.parts)
    return ChunkRef(path, chunk.num_rows, chunk.header_length, chunk.size, chunk.stats), upload
