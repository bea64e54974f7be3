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
    group,
    normalize,
    split_points,
)
from tensorhouse.format.chunks.writer import scalar_stats
from tensorhouse.format.convert import to_arrow
from tensorhouse.format.log.actions import MAX_FRAGMENT_ROWS, ChunkRef, Fragment, Metadata
from tensorhouse.format.threads import CORES, io_pool, pool
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
        """The files these chunks lie in (a group file once, however many chunks it holds)."""
        return list(dict.fromkeys(c.path for chunks in self.columns.values() for c in chunks))

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


def grouped(metadata: Metadata, ctype: ColumnType) -> bool:
    """Whether a column's chunks go into group files (tabular, unless the dataset asked for chunk files)."""
    return group.in_group(ctype) and metadata.config.get("tabular_files") != "chunks"


def write_chunks(
    store: Store, metadata: Metadata, name: str, batch: SampleBatch, *, split: bool = True
) -> tuple[ChunkRef, ...]:
    """Encode and upload one column's rows as chunks of the configured size (one chunk unless ``split``).

    A tabular column gets group files of its own (a column added to existing
    rows, or one chunk rewritten by an update).
    """
    ctype = metadata.schema[name]
    if grouped(metadata, ctype) and len(batch):
        fid = metadata.field_ids[name]
        rows = _group_rows(metadata, {name: batch}, len(batch)) if split else len(batch)
        refs = _wait_groups(_submit_groups(store, metadata, {name: batch}, len(batch), rows))
        return tuple(refs[fid])
    ranges = split_points(batch, chunk_bytes(metadata, name)) if split else [(0, len(batch))]
    jobs = [pool().submit(_encode_and_upload, store, name, ctype, batch.slice(*r)) for r in ranges]
    return tuple(_wait(f) for f in jobs)


def _group_rows(metadata: Metadata, batches: Mapping[str, SampleBatch], n: int) -> int:
    """Rows per row group: every column's chunk near its chunk byte target."""
    per_row = [
        (batch.nbytes / max(n, 1), chunk_bytes(metadata, name)) for name, batch in batches.items()
    ]
    return group.rows_per_group(per_row, n)


def _submit_groups(
    store: Store,
    metadata: Metadata,
    batches: Mapping[str, SampleBatch],
    n: int,
    rows_per_group: int,
) -> list[Future[tuple[dict[int, list[ChunkRef]], Future[None]]]]:
    """Encode ``batches`` (tabular columns of ``n`` rows) as group files of up to GROUPS_PER_FILE row
    groups each, on the CPU pool: several files of one large append are encoded in parallel.

    A Parquet file is written by one thread: an append of several row groups is
    spread over up to one file per core, so that one append keeps every core busy
    (chunk files are encoded per column and chunk, in parallel).
    """
    groups = -(-n // rows_per_group)
    per_file = rows_per_group * max(1, min(group.GROUPS_PER_FILE, -(-groups // CORES)))
    return [
        pool().submit(
            _encode_group_and_upload,
            store,
            metadata,
            {name: b.slice(a, min(a + per_file, n)) for name, b in batches.items()},
            rows_per_group,
        )
        for a in range(0, n, per_file)
    ]


def _wait_groups(
    jobs: list[Future[tuple[dict[int, list[ChunkRef]], Future[None]]]],
) -> dict[int, list[ChunkRef]]:
    out: dict[int, list[ChunkRef]] = {}
    for job in jobs:
        refs, upload = job.result()
        upload.result()
        for fid, r in refs.items():
            out.setdefault(fid, []).extend(r)
    return out


def _encode_group_and_upload(
    store: Store, metadata: Metadata, batches: Mapping[str, SampleBatch], rows_per_group: int
) -> tuple[dict[int, list[ChunkRef]], Future[None]]:
    """One group file of ``batches`` and its ChunkRefs (one per column per row group, with statistics)."""
    columns = []
    for name, batch in batches.items():
        ctype = metadata.schema[name]
        arr = batch.column if batch.column is not None else to_arrow(batch, ctype)
        columns.append((metadata.field_ids[name], arr))
    enc = group.encode_group(columns, rows_per_group)
    path = f"data/_groups/{uuid.uuid4().hex}.parquet"
    upload = io_pool().submit(store.put_parts, path, (enc.data,))
    refs: dict[int, list[ChunkRef]] = {}
    for name, batch in batches.items():
        ctype = metadata.schema[name]
        fid = metadata.field_ids[name]
        start = 0
        out = refs[fid] = []
        for (part, size), rows in zip(enc.parts[fid], enc.row_counts, strict=True):
            stats = scalar_stats(batch.slice(start, start + rows), ctype) or {}
            stats["codec"] = f"parquet+{enc.codecs[fid]}"
            out.append(ChunkRef(path, rows, 0, size, stats, part))
            start += rows
    return refs, upload


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
        tabular: dict[str, SampleBatch] = {}
        for name, batch in batches.items():
            part = batch.slice(start, stop) if (start, stop) != (0, len(batch)) else batch
            ctype = metadata.schema[name]
            if grouped(metadata, ctype) and stop > start:
                tabular[name] = part
                continue
            jobs[metadata.field_ids[name]] = [
                pool().submit(_encode_and_upload, store, name, ctype, part.slice(*r))
                for r in split_points(part, chunk_bytes(metadata, name))
            ]
        group_jobs = (
            _submit_groups(
                store, metadata, tabular, stop - start, _group_rows(metadata, tabular, stop - start)
            )
            if tabular
            else []
        )
        chunked = {fid: tuple(_wait(f) for f in futures) for fid, futures in jobs.items()}
        in_groups = _wait_groups(group_jobs)
        cols = {
            metadata.field_ids[name]: chunked.get(metadata.field_ids[name])
            or tuple(in_groups[metadata.field_ids[name]])
            for name in batches
        }
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
