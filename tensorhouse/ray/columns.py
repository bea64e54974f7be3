"""``th.ray.add_columns``: new columns for a dataset's existing rows, computed by a Ray job, one commit.

The Ray dataset carries ``_rowid`` (read it with ``th.ray.read(uri,
columns=["_rowid", ...])``) and the new columns' values. Each write task
groups its rows by fragment, sorts them by row offset, and writes the new
columns' chunk files for *segments*: runs of rows the task holds whose gaps
are only deleted rows (those get nulls, as ``Dataset.add_column`` gives them).
A segment starts just after the previous live row of its fragment and, when
it holds the fragment's last live row, runs to the fragment's end, so the
segments of different tasks never overlap unless a row id was given twice.
Nothing is committed by the tasks.

The driver keeps one result per task index (a retried or duplicated task
never counts twice), checks that no row id came twice, writes null chunks for
the rows no task gave a value (rows the job filtered out read as null), and
commits once: the new columns in the schema and, for each fragment that got
values, its new chunk references. Rows that reached the tasks shuffled make
many tiny segments; the driver then rewrites that fragment's new column as
regular chunks before committing. The commit is based on the version the job
started from: a concurrent append commits too (its rows read the new columns
as null); a concurrent delete, update or schema change of those fragments
makes this commit fail with ``CommitConflictError``, and the dataset keeps its
version. Chunk files of failed or duplicate attempts are what ``vacuum``
removes.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa
import ray.data
from ray.data.block import Block, BlockAccessor
from ray.data.datasource import Datasink
from ray.data.datasource.datasink import WriteResult

from tensorhouse.errors import RowNotFoundError, SchemaError
from tensorhouse.format.chunks import ChunkReader, SampleBatch, concat, take
from tensorhouse.format.dataset import Dataset
from tensorhouse.format.dataset import open as open_uri
from tensorhouse.format.log import Action, Metadata, ReplaceFragment, SetMetadata
from tensorhouse.format.log.actions import ChunkRef
from tensorhouse.format.scan import null_batch
from tensorhouse.format.writer import normalize_columns, write_chunks
from tensorhouse.ray import staging
from tensorhouse.ray.datasink import SchemaLike, resolve_types
from tensorhouse.ray.staging import WriteLayout
from tensorhouse.ray.tensors import column_values
from tensorhouse.storage import Store
from tensorhouse.types import ROWID, Schema, check_column_name


@dataclass(frozen=True)
class Segment:
    """New columns' chunks for the physical rows ``[start, stop)`` of one fragment."""

    fragment_id: int
    start: int
    stop: int
    columns: Mapping[str, tuple[ChunkRef, ...]]


@dataclass(frozen=True)
class ColumnTaskResult:
    """What one ``add_columns`` write task returns to the driver."""

    task_idx: int
    num_rows: int
    schema: Schema | None  # the new columns' types this task resolved (None when it saw no rows)
    segments: tuple[Segment, ...] = ()
    tables: tuple[
        pa.Table, ...
    ] = ()  # rows for a memory:// dataset, which only the driver can write


#: Datasets opened by write tasks, by (uri, branch, version, options): a worker runs many tasks.
_OPENED: dict[tuple[str, str, int, str], Dataset] = {}


def _pinned(uri: str, branch: str, version: int, options: Mapping[str, Any]) -> Dataset:
    key = (uri, branch, version, repr(sorted(options.items())))
    ds = _OPENED.get(key)
    if ds is None:
        ds = _OPENED[key] = open_uri(
            uri, version=version, branch=branch, storage_options=dict(options) or None
        )
    return ds


def _rowids(table: pa.Table, where: str) -> np.ndarray:
    if ROWID not in table.column_names:
        raise SchemaError(
            f"add_columns needs the {ROWID!r} column to know which row each value belongs to; read "
            f"the rows with th.ray.read({where!r}, columns=['{ROWID}', ...]) and keep it"
        )
    col = table.column(ROWID)
    if col.null_count:
        raise SchemaError(f"the {ROWID!r} column has {col.null_count} null(s)")
    return np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.int64)


def stage_segments(
    ds: Dataset, layout: WriteLayout, store: Store, table: pa.Table
) -> list[Segment]:
    """Write the new columns of ``table`` (``_rowid`` plus the columns of ``layout.schema``) as
    segments of ``ds``'s fragments; nothing is committed. Unknown, deleted or repeated row ids
    raise before anything is written."""
    rowids = _rowids(table, ds.uri)
    if not len(rowids):
        return []
    new = layout.schema
    batches = normalize_columns({n: column_values(table.column(n)) for n in new.names}, new)
    order = np.argsort(rowids, kind="stable")
    ids = rowids[order]
    twice = np.flatnonzero(ids[1:] == ids[:-1])
    if len(twice):
        raise SchemaError(
            f"row id {int(ids[twice[0]])} appears {int((ids == ids[twice[0]]).sum())} times in the "
            "rows given to add_columns; each row gets one value"
        )
    fids, offs = ids >> 32, ids & 0xFFFFFFFF
    snap, reader = ds.snapshot, ds.reader
    positions = {f.id: i for i, f in enumerate(snap.fragments)}
    # Every row id is checked first, so bad input writes no file.
    plan: list[
        tuple[int, int, np.ndarray, np.ndarray]
    ] = []  # fragment id, rows, live mask, positions
    for sel in np.split(np.arange(len(ids)), np.flatnonzero(np.diff(fids)) + 1):
        fid = int(fids[sel[0]])
        i = positions.get(fid)
        o = offs[sel]
        if i is None or int(o[-1]) >= snap.fragments[i].num_rows:
            bad = int(ids[sel[0]] if i is None else ids[sel[-1]])
            raise RowNotFoundError(
                f"row id {bad} is not a row of {ds.uri} at version {ds.version} (rows come from "
                "th.ray.read of this dataset; a compaction renumbers them)"
            )
        n = snap.fragments[i].num_rows
        live = np.ones(n, bool)
        live[reader.deleted_offsets(i)] = False
        if not live[o].all():
            bad = int(ids[sel[int(np.argmin(live[o]))]])
            raise RowNotFoundError(f"row id {bad} of {ds.uri} is deleted at version {ds.version}")
        plan.append((fid, n, live, sel))
    out: list[Segment] = []
    for fid, n, live, sel in plan:
        o = offs[sel]
        before = np.concatenate(([0], np.cumsum(live)))  # before[k]: live rows below offset k
        live_at = np.flatnonzero(live)
        # A run ends where a live row the task does not hold lies between two of its rows.
        breaks = np.flatnonzero(before[o[1:]] - before[o[:-1] + 1] > 0) + 1
        for run in np.split(np.arange(len(o)), breaks):
            first, last = int(o[run[0]]), int(o[run[-1]])
            start = 0 if before[first] == 0 else int(live_at[before[first] - 1]) + 1
            stop = n if before[n] == before[last + 1] else last + 1
            src = order[sel[run]]
            # Row k of the segment: the task's value, or a null (a deleted row).
            idx = np.full(stop - start, len(run), np.int64)
            idx[o[run] - start] = np.arange(len(run))
            cols: dict[str, tuple[ChunkRef, ...]] = {}
            for name in new.names:
                part: SampleBatch = take(batches[name], src)
                if stop - start != len(run):
                    part = take(concat([part, null_batch(new[name], 1)]), idx)
                cols[name] = write_chunks(store, layout.metadata, name, part)
            out.append(Segment(fid, start, stop, cols))
    return out


class TensorhouseColumnSink(Datasink[ColumnTaskResult]):
    """A Ray Data datasink adding new columns to a dataset's rows, by ``_rowid``, as one commit.

    After the job, :attr:`version` is the committed version.
    """

    def __init__(
        self,
        uri: str,
        *,
        columns: Sequence[str] | None = None,
        schema: SchemaLike | None = None,
        storage_options: Mapping[str, Any] | None = None,
        message: str | None = None,
        app_id: str | None = None,
        txn_version: int | None = None,
    ) -> None:
        if (app_id is None) != (txn_version is None):
            raise ValueError("give both app_id and txn_version for an idempotent write, or neither")
        if isinstance(columns, str):
            raise SchemaError(f"columns must be a list of names, got the string {columns!r}")
        self._options = dict(storage_options or {})
        ds = open_uri(uri, storage_options=self._options or None)  # DatasetNotFoundError if none
        existing = [c for c in columns or () if c in ds.schema or c == ROWID]
        if existing:
            raise SchemaError(
                f"add_columns: column(s) {existing} already exist in {uri}; it adds new columns"
            )
        if isinstance(schema, Dataset):
            raise SchemaError(
                "add_columns: schema= gives the new columns' types (a mapping), not a dataset"
            )
        self._uri = ds.uri
        self._branch = ds.branch_name
        self._version = ds.version
        self._columns = list(columns) if columns is not None else None
        self._given = schema
        self._message = message
        self._txn = (app_id, txn_version)
        self._config = ds.snapshot.metadata.config
        self._local = ds.uri.startswith("memory://")
        self._ds: Dataset | None = ds  # the driver's handle, pinned at the job's version
        self.version: int | None = None
        self.num_rows = 0

    def get_name(self) -> str:
        return "TensorhouseColumns"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_ds"] = None  # tasks open the pinned version themselves (once per worker)
        return state

    def _new_names(self, table: pa.Table, existing: Schema) -> list[str]:
        names = [c for c in table.column_names if c != ROWID]
        if self._columns is None:
            return [c for c in names if c not in existing]
        missing = [c for c in self._columns if c not in names]
        if missing:
            raise SchemaError(
                f"add_columns: the Ray dataset has no column(s) {missing}; it has {names}"
            )
        return list(self._columns)

    def _layout(self, ds: Dataset, table: pa.Table) -> WriteLayout:
        names = self._new_names(table, ds.schema)
        if not names:
            raise SchemaError(
                f"add_columns: the Ray dataset's columns {table.column_names} add nothing to "
                f"{self._uri}, which has {ds.schema.names}"
            )
        keep = table.select([ROWID, *names]) if ROWID in table.column_names else table.select(names)
        types = resolve_types(keep.schema, self._given)
        meta = Metadata(
            ds.snapshot.metadata.dataset_id,
            types,
            {n: i for i, n in enumerate(types.names)},
            len(types),
            self._config,
        )
        return WriteLayout(self._uri, meta, self._options)

    # -- in the write tasks ---------------------------------------------------------------
    def write(self, blocks: Iterable[Block], ctx: Any) -> ColumnTaskResult:
        tables = [t for t in (BlockAccessor.for_block(b).to_arrow() for b in blocks) if t.num_rows]
        if not tables:
            return ColumnTaskResult(int(ctx.task_idx), 0, None)
        table = (
            pa.concat_tables(tables, promote_options="permissive") if len(tables) > 1 else tables[0]
        )
        if self._local:  # only the driver's process sees a memory:// dataset
            return ColumnTaskResult(int(ctx.task_idx), table.num_rows, None, (), (table,))
        ds = _pinned(self._uri, self._branch, self._version, self._options)
        layout = self._layout(ds, table)
        segments = stage_segments(ds, layout, staging.store_for(layout), table)
        return ColumnTaskResult(int(ctx.task_idx), table.num_rows, layout.schema, tuple(segments))

    # -- on the driver ------------------------------------------------------------------------
    def on_write_complete(self, write_result: WriteResult[ColumnTaskResult]) -> None:
        assert self._ds is not None
        ds = self._ds
        results: dict[int, ColumnTaskResult] = {}
        for r in write_result.write_returns:
            results.setdefault(r.task_idx, r)  # a duplicate of a task's result is never used twice
        ordered = [results[k] for k in sorted(results)]
        segments = [s for r in ordered for s in r.segments]
        schemas = {r.schema for r in ordered if r.schema is not None}
        local = [t for r in ordered for t in r.tables]
        if local:
            table = pa.concat_tables(local, promote_options="permissive")
            layout = self._layout(ds, table)
            schemas.add(layout.schema)
            segments += stage_segments(ds, layout, staging.store_for(layout), table)
        if len(schemas) > 1:
            a, b = sorted(schemas, key=repr)[:2]
            raise SchemaError(
                f"add_columns: write tasks inferred different types ({a} vs {b}); pass schema= to fix them"
            )
        if schemas:
            new = schemas.pop()
        elif self._columns and isinstance(self._given, Mapping | Schema):
            # No rows (a filter kept none): the named columns are added, all null.
            given = dict(self._given.columns if isinstance(self._given, Schema) else self._given)
            missing = [c for c in self._columns if c not in given]
            if missing:
                raise SchemaError(f"add_columns: no rows, and no type in schema= for {missing}")
            new = Schema.of({c: given[c] for c in self._columns})
        else:
            raise SchemaError(
                f"add_columns: the Ray dataset has no rows to add to {self._uri}; name the "
                "columns and give schema= to add them anyway (all null)"
            )
        self.version = _commit(
            ds, new, segments, message=self._message, app_id=self._txn[0], txn_version=self._txn[1]
        )
        self.num_rows = sum(r.num_rows for r in ordered)


#: A fragment's new column is rewritten by the driver when it would have more chunks than this, of
#: fewer rows than SMALL_CHUNK_ROWS on average (rows that reached the tasks shuffled).
MAX_SMALL_CHUNKS = 8
SMALL_CHUNK_ROWS = 256


def _rewrite(
    store: Store, meta: Metadata, name: str, refs: Sequence[ChunkRef]
) -> tuple[ChunkRef, ...]:
    reader = ChunkReader(store)
    batch = concat([reader.read_ref(r, meta.schema[name]) for r in refs])
    return write_chunks(store, meta, name, batch)


def _commit(
    ds: Dataset,
    new: Schema,
    segments: Sequence[Segment],
    *,
    message: str | None,
    app_id: str | None,
    txn_version: int | None,
) -> int:
    by_fragment: dict[int, list[Segment]] = {}
    for s in segments:
        by_fragment.setdefault(s.fragment_id, []).append(s)
    tx = ds.transaction(message=message, app_id=app_id, txn_version=txn_version)
    old = tx.state.metadata
    clash = [n for n in new.names if n in old.schema]
    if clash:
        raise SchemaError(f"add_columns: column(s) {clash} already exist in {ds.uri}")
    for name in new.names:
        check_column_name(name)
    # What Transaction.add_column stages, for several columns and with their values, as one operation.
    meta = old.with_columns(new)
    store = staging.store_for(WriteLayout(ds.uri, meta, ds.storage_options))
    frags = {f.id: f for f in tx.state.fragments}
    actions: list[Action] = [SetMetadata(meta)]
    for fid, segs in sorted(by_fragment.items()):
        segs.sort(key=lambda s: s.start)
        for a, b in itertools.pairwise(segs):
            if b.start < a.stop:
                raise SchemaError(
                    f"add_columns: two write tasks gave values for rows {b.start}..{a.stop - 1} of "
                    f"fragment {fid} (row ids from {(fid << 32) + b.start}); each row gets one value"
                )
        frag = frags[fid]
        cols = dict(frag.columns)
        for name, ctype in new.columns:
            refs: list[ChunkRef] = []
            pos = 0
            for s in segs:
                if s.start > pos:  # rows the job gave no value: nulls
                    refs += write_chunks(store, meta, name, null_batch(ctype, s.start - pos))
                refs += s.columns[name]
                pos = s.stop
            if pos < frag.num_rows:
                refs += write_chunks(store, meta, name, null_batch(ctype, frag.num_rows - pos))
            if len(refs) > MAX_SMALL_CHUNKS and frag.num_rows < SMALL_CHUNK_ROWS * len(refs):
                # Rows arrived scattered (a shuffle): many tiny chunks would slow every later scan.
                refs = list(_rewrite(store, meta, name, refs))
            cols[meta.field_ids[name]] = tuple(refs)
        actions.append(ReplaceFragment(replace(frag, columns=cols)))
    tx.stage("add_column", actions)
    return tx.commit()


def add_columns(
    ray_dataset: ray.data.Dataset,
    uri: str,
    *,
    columns: Sequence[str] | None = None,
    schema: SchemaLike | None = None,
    storage_options: Mapping[str, Any] | None = None,
    message: str | None = None,
    app_id: str | None = None,
    txn_version: int | None = None,
    ray_remote_args: Mapping[str, Any] | None = None,
    concurrency: int | None = None,
) -> int:
    """Add new columns to the existing rows of the dataset at ``uri`` from a Ray job; returns the new version.

    ``ray_dataset`` has a ``_rowid`` column (``th.ray.read(uri, columns=["_rowid", ...])``)
    and the values: ``columns`` names the new columns (default: every column the
    dataset does not have yet). ``schema`` maps new columns to types (default:
    Ray's tensor types, else the rules of ``th.write``). Rows the job gives no
    value read as null. Write tasks write the new chunk files in parallel; the
    driver commits once, so a retried task never adds a value twice and a
    failed job leaves the dataset at its version. A row id given twice, unknown
    or deleted raises (SchemaError, RowNotFoundError) and commits nothing.
    ``app_id``/``txn_version`` make a re-run of a job whose commit landed
    commit nothing.

    Example:
        >>> import tensorhouse as th  # doctest: +SKIP
        >>> rds = th.ray.read("s3://bucket/pets", columns=["_rowid", "image"])  # doctest: +SKIP
        >>> rds = rds.map_batches(embed, batch_format="numpy")  # doctest: +SKIP
        >>> th.ray.add_columns(rds, "s3://bucket/pets", columns=["emb"],
        ...                    schema={"emb": th.Embedding(512)})  # doctest: +SKIP
        5
    """
    sink = TensorhouseColumnSink(
        uri,
        columns=columns,
        schema=schema,
        storage_options=storage_options,
        message=message,
        app_id=app_id,
        txn_version=txn_version,
    )
    ray_dataset.write_datasink(
        sink, ray_remote_args=dict(ray_remote_args or {}), concurrency=concurrency
    )
    assert sink.version is not None  # on_write_complete commits or raises
    return sink.version


__all__ = ["ColumnTaskResult", "Segment", "TensorhouseColumnSink", "add_columns", "stage_segments"]
