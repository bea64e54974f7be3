"""Transactions: one or more writes committed atomically as one version.

Every write of a Dataset (append, delete, update, schema change, restore)
runs in a Transaction. Operations apply to a working snapshot, so later ones
see earlier ones (append, then delete some of what was appended). At commit
the actions are rebased onto whatever won meanwhile, under these rules:

- blind appends never conflict: their new fragments are renumbered past
  the winners' ones (an append landing after a restore adds to the restored state);
- a delete, update, compaction or column rewrite conflicts with a winner
  that replaced or removed one of the same fragments;
- a schema change conflicts with a winner's schema change;
- a restore conflicts with any winner.

Example:
    >>> import tensorhouse as th
    >>> ds = th.create("memory://doc-txn", {"x": "int64", "tag": th.Text()})
    >>> with ds.transaction(message="load and fix") as tx:
    ...     _ = tx.append({"x": [1, 2, 3], "tag": ["a", "b", "c"]})
    ...     _ = tx.delete(where="x = 2")
    >>> ds.version, len(ds)
    (1, 2)
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from tensorhouse.errors import CommitConflictError, SchemaError
from tensorhouse.format import deletions
from tensorhouse.format.chunks import (
    ChunkReader,
    SampleBatch,
    concat,
    encode_chunk,
    normalize,
    split_points,
    take,
)
from tensorhouse.format.input import Data, to_columns
from tensorhouse.format.log import Action, ChunkRef, Commit, Fragment, Metadata, Snapshot, replay
from tensorhouse.format.log.log import AlreadyCommitted
from tensorhouse.format.predicate import evaluate, parse_with_columns
from tensorhouse.format.scan import SnapshotReader, null_batch
from tensorhouse.format.writer import chunk_bytes, normalize_columns, write_fragments
from tensorhouse.types import ROWID, ColumnType, Schema, TypeLike, as_type, check_column_name

if TYPE_CHECKING:
    from tensorhouse.format.dataset import Dataset


@dataclass(frozen=True)
class Footprint:
    """What a commit changed, for conflict checks."""

    touched: frozenset[int]
    schema: bool
    everything: bool

    @staticmethod
    def of(commit: Commit) -> Footprint:
        touched = set()
        for a in commit.actions:
            if a.kind == "replace_fragment":
                touched.add(a.body.id)
            elif a.kind == "remove_fragment":
                touched.add(a.body["id"])
        return Footprint(frozenset(touched), any(a.kind == "metadata" for a in commit.actions),
                         commit.operation == "restore")  # fmt: skip


def _row_ranges(fid: int, offsets: Sequence[int]) -> str:
    offs = sorted(offsets)[:3]
    return ", ".join(str((fid << 32) | o) for o in offs) + (" ..." if len(offsets) > 3 else "")


class Transaction:
    """Writes that commit together. Obtain one with ``Dataset.transaction()``."""

    def __init__(self, ds: Dataset, *, message: str | None = None, app_id: str | None = None,
                 txn_version: int | None = None) -> None:  # fmt: skip
        if (app_id is None) != (txn_version is None):
            raise ValueError("give both app_id and txn_version for an idempotent write, or neither")
        self.ds = ds
        self.message = message
        self.app_id = app_id
        self.txn_version = txn_version
        self.base = ds.snapshot
        self.state = ds.snapshot
        self.actions: list[Action] = []
        self.touched: dict[int, list[int]] = {}  # base fragment id -> row offsets it changes (for messages)
        self.schema_changed = False
        self.restore_from: int | None = None
        self.operations: list[str] = []
        self.committed_version: int | None = None

    # -- context manager -------------------------------------------------------------
    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.commit()

    # -- bookkeeping -----------------------------------------------------------------
    @property
    def schema(self) -> Schema:
        return self.state.metadata.schema

    def _apply(self, operation: str, actions: list[Action]) -> None:
        if self.committed_version is not None:
            raise RuntimeError("this transaction is already committed")
        fake = Commit(self.state.version + 1, "working", self.state.timestamp_ms, operation, self.state.version,
                      tuple(actions))  # fmt: skip
        self.state = replay(self.state, [fake])
        self.actions.extend(actions)
        self.operations.append(operation)

    def _touch(self, fid: int, offsets: Sequence[int] = ()) -> None:
        if fid < self.base.next_fragment_id:
            self.touched.setdefault(fid, []).extend(int(o) for o in offsets)

    def _reader(self) -> SnapshotReader:
        return SnapshotReader(self.state, ChunkReader(self.ds.store))

    # -- operations ------------------------------------------------------------------
    def append(self, data: Data) -> int:
        """Add rows; returns how many."""
        columns, n = to_columns(data, self.schema)
        if not n:  # nothing to validate: empty columns have no dtype to check (an empty list is float64)
            self._apply("append", [])
            return 0
        batches = normalize_columns(columns, self.schema)
        pending = write_fragments(self.ds.store, self.state, batches, n)
        first = self.state.next_fragment_id
        self._apply("append", [Action("add_fragment", p.with_id(first + i)) for i, p in enumerate(pending)])
        return n

    def matching_rowids(self, where: str) -> np.ndarray:
        """Row ids of the live rows where the SQL predicate holds."""
        usable = {n: t.arrow_type() for n, t in self.schema.items() if pa.types.is_primitive(t.arrow_type())
                  or pa.types.is_string(t.arrow_type())}  # fmt: skip
        expr, used = parse_with_columns(where, usable)
        cols = [(n, self.schema[n]) for n in sorted(used)]
        out = []
        for batch in self._reader().iter_batches(cols, with_rowid=True):
            mask = evaluate(expr, batch)
            out.append(batch.column(ROWID).filter(mask).to_numpy())
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def _group(self, rowids: np.ndarray) -> dict[int, np.ndarray]:
        """Validated row ids grouped by fragment id (offsets sorted, unique)."""
        self._reader().rows_of_rowids(rowids)  # raises KeyError naming an unknown or deleted row
        rowids = np.unique(np.asarray(rowids, dtype=np.int64))
        fids = rowids >> 32
        return {int(f): (rowids[fids == f] & 0xFFFFFFFF) for f in np.unique(fids)}

    def delete(self, where: str | None = None, *, rowids: Sequence[int] | np.ndarray | None = None) -> int:
        """Delete rows matching ``where`` (a SQL predicate) or with the given row ids; returns how many."""
        if (where is None) == (rowids is None):
            raise ValueError("delete needs exactly one of where= or rowids=")
        ids = self.matching_rowids(where) if where is not None else np.asarray(rowids, dtype=np.int64)
        groups = self._group(ids)
        actions = []
        for fid, offs in groups.items():
            i = [f.id for f in self.state.fragments].index(fid)
            frag = self.state.fragments[i]
            old = self._reader().deleted_offsets(i)
            dead = np.union1d(old, offs)
            self._touch(fid, offs.tolist())
            if len(dead) == frag.num_rows:
                actions.append(Action("remove_fragment", {"id": fid}))
            else:
                ref = deletions.write(self.ds.store, dead)
                actions.append(Action("replace_fragment", replace(frag, deletion=ref)))
        self._apply("delete", actions)
        return int(sum(len(o) for o in groups.values()))

    def update(self, values: Mapping[str, Any], where: str | None = None, *,
               rowids: Sequence[int] | np.ndarray | None = None) -> int:  # fmt: skip
        """Set columns to constant values on matching rows, rewriting only affected chunks; returns how many."""
        if not values:
            raise ValueError("update needs at least one column value")
        for name in values:
            if name not in self.schema:
                raise SchemaError(f"unknown column {name!r}; columns are {self.schema.names}")
        new = {name: normalize([v], self.schema[name], name) for name, v in values.items()}
        if where is None and rowids is None:  # every live row
            reader = self._reader()
            ids = reader.rowids(reader.physical(np.arange(reader.num_rows)))
        elif where is not None:
            ids = self.matching_rowids(where)
        else:
            ids = np.asarray(rowids, dtype=np.int64)
        groups = self._group(ids)
        chunks = ChunkReader(self.ds.store)
        actions = []
        for fid, offs in groups.items():
            frag = next(f for f in self.state.fragments if f.id == fid)
            cols = dict(frag.columns)
            for name, value in new.items():
                field = self.state.metadata.field_ids[name]
                cols[field] = self._rewrite_column(chunks, frag, field, self.schema[name], name, offs, value)
            self._touch(fid, offs.tolist())
            actions.append(Action("replace_fragment", replace(frag, columns=cols)))
        self._apply("update", actions)
        return int(sum(len(o) for o in groups.values()))

    def _rewrite_column(self, reader: ChunkReader, frag: Fragment, field: int, ctype: ColumnType, name: str,
                        offsets: np.ndarray, value: Any) -> tuple[ChunkRef, ...]:  # fmt: skip
        """Copy-on-write: new chunks only where a changed row lives."""
        chunks = frag.columns.get(field)
        if chunks is None:  # the column was added after this fragment: materialise its nulls
            chunks = (ChunkRef("", frag.num_rows, 0, 0),)
        out = []
        start = 0
        for ref in chunks:
            stop = start + ref.rows
            local = offsets[(offsets >= start) & (offsets < stop)] - start
            if not len(local):
                out.append(ref)
            else:
                old = null_batch(ctype, ref.rows) if not ref.path else reader.read_all(ref.path, ref.size)
                idx = np.arange(ref.rows)
                idx[local] = ref.rows  # points at the new value, appended after the old rows
                merged = take(concat([old, value]), idx)
                out.append(self._put_chunk(name, ctype, merged))
            start = stop
        return tuple(out)

    def _put_chunk(self, name: str, ctype: ColumnType, batch: SampleBatch) -> ChunkRef:
        chunk = encode_chunk(batch, ctype)
        path = f"data/{name}/{uuid.uuid4().hex}.chunk"
        self.ds.store.put(path, chunk.data)
        return ChunkRef(path, chunk.num_rows, chunk.header_length, len(chunk.data), chunk.stats)

    # -- schema ----------------------------------------------------------------------
    def _set_metadata(self, operation: str, meta: Metadata, extra: list[Action] | None = None) -> None:
        self.schema_changed = True
        self._apply(operation, [Action("metadata", meta), *(extra or [])])

    def add_column(self, name: str, ctype: TypeLike, values: Sequence[Any] | np.ndarray | None = None) -> None:
        """Add a column; existing rows get nulls, or ``values`` (one per live row)."""
        check_column_name(name)
        if name in self.schema:
            raise SchemaError(f"column {name!r} already exists")
        t = as_type(ctype)
        meta = self.state.metadata
        fid = meta.next_field_id
        new_meta = Metadata(meta.dataset_id, Schema((*meta.schema.columns, (name, t))),
                            {**meta.field_ids, name: fid}, fid + 1, meta.config)  # fmt: skip
        extra: list[Action] = []
        if values is not None:
            reader = self._reader()
            if len(values) != reader.num_rows:
                raise SchemaError(f"add_column {name!r}: {len(values)} values for {reader.num_rows} rows")
            batch = normalize(values, t, name)
            pos = 0
            for i, frag in enumerate(self.state.fragments):
                dead = reader.deleted_offsets(i)
                live = np.setdiff1d(np.arange(frag.num_rows), dead)
                part = take(batch, np.arange(pos, pos + len(live)))
                pos += len(live)
                if len(dead):  # deleted rows get nulls so the column stays aligned with the others
                    idx = np.full(frag.num_rows, len(live))
                    idx[live] = np.arange(len(live))
                    part = take(concat([part, null_batch(t, 1)]), idx)
                refs = self._write_full_column(name, t, part)
                self._touch(frag.id)
                extra.append(Action("replace_fragment", replace(frag, columns={**frag.columns, fid: refs})))
        self._set_metadata("add_column", new_meta, extra)

    def _write_full_column(self, name: str, ctype: ColumnType, batch: SampleBatch) -> tuple[ChunkRef, ...]:
        return tuple(self._put_chunk(name, ctype, batch.slice(a, b))
                     for a, b in split_points(batch, chunk_bytes(self.state, name)))  # fmt: skip

    def drop_column(self, name: str) -> None:
        """Remove a column from this version on (older versions keep it)."""
        meta = self.state.metadata
        self.schema[name]
        if len(meta.schema) == 1:
            raise SchemaError(f"cannot drop {name!r}, the only column")
        self._set_metadata("drop_column", Metadata(
            meta.dataset_id, Schema(tuple(c for c in meta.schema.columns if c[0] != name)),
            {k: v for k, v in meta.field_ids.items() if k != name}, meta.next_field_id, meta.config))  # fmt: skip

    def rename_column(self, old: str, new: str) -> None:
        """Rename a column; its data is untouched (chunks are addressed by field id)."""
        meta = self.state.metadata
        self.schema[old]  # raises SchemaError for an unknown column
        check_column_name(new)
        if new in self.schema:
            raise SchemaError(f"column {new!r} already exists")
        cols = tuple((new if n == old else n, ct) for n, ct in meta.schema.columns)
        ids = {(new if k == old else k): v for k, v in meta.field_ids.items()}
        self._set_metadata("rename_column", Metadata(meta.dataset_id, Schema(cols), ids, meta.next_field_id,
                                                     meta.config))  # fmt: skip

    def restore(self, version: int) -> None:
        """Make the state equal to ``version`` of this branch (a new commit; history is kept)."""
        target = self.ds._log.snapshot(version)
        live = {f.id: f for f in self.state.fragments}
        want = {f.id: f for f in target.fragments}
        actions: list[Action] = []
        if target.metadata != self.state.metadata:
            actions.append(Action("metadata", target.metadata))
        for fid, f in live.items():
            if fid not in want:
                actions.append(Action("remove_fragment", {"id": fid}))
            elif want[fid] != f:
                actions.append(Action("replace_fragment", want[fid]))
        actions += [Action("add_fragment", f) for fid, f in want.items() if fid not in live]
        self.restore_from = version
        self._apply("restore", actions)

    # -- commit ----------------------------------------------------------------------
    def _rebase(self, snap: Snapshot, winners: Sequence[Commit]) -> list[Action]:
        if self.app_id is not None and snap.txns.get(self.app_id, -1) >= (self.txn_version or 0):
            raise AlreadyCommitted(snap.version)
        for w in winners:
            fp = Footprint.of(w)
            if self.restore_from is not None:
                raise CommitConflictError(f"{self.ds.uri}: version {w.version} ({w.operation}) was committed "
                                          "while restoring; restore again from the new version")  # fmt: skip
            if fp.everything and (self.touched or self.schema_changed):
                raise CommitConflictError(f"{self.ds.uri}: version {w.version} restored an older state while "
                                          f"this transaction ({', '.join(self.operations)}) was running")  # fmt: skip
            both = sorted(set(self.touched) & fp.touched)
            if both:
                rows = "; ".join(f"fragment {f}: rows {_row_ranges(f, self.touched[f])}" for f in both[:3])
                raise CommitConflictError(
                    f"{self.ds.uri}: version {w.version} ({w.operation}) changed the same rows' fragments as this "
                    f"{'/'.join(self.operations)} ({rows}); re-run it against the new version"
                )
            if self.schema_changed and fp.schema:
                raise CommitConflictError(
                    f"{self.ds.uri}: version {w.version} ({w.operation}) changed the schema concurrently "
                    f"(now {snap.metadata.schema.names}); re-run {'/'.join(self.operations)}"
                )
        shift = snap.next_fragment_id - self.base.next_fragment_id if self.restore_from is None else 0
        out = []
        for a in self.actions:
            if shift and a.kind in ("add_fragment", "replace_fragment") and a.body.id >= self.base.next_fragment_id:
                a = Action(a.kind, replace(a.body, id=a.body.id + shift))
            elif shift and a.kind == "remove_fragment" and a.body["id"] >= self.base.next_fragment_id:
                a = Action(a.kind, {"id": a.body["id"] + shift})
            out.append(a)
        if self.app_id is not None:
            out.append(Action("txn", {"app_id": self.app_id, "version": self.txn_version}))
        return out

    def commit(self) -> int:
        """Commit every operation as one version; returns it (or the version of an earlier identical commit)."""
        if self.committed_version is not None:
            return self.committed_version
        op = self.operations[0] if len(self.operations) == 1 else "transaction"

        def build(snap: Snapshot | None, winners: Sequence[Commit]) -> list[Action]:
            assert snap is not None
            return self._rebase(snap, winners)

        try:
            result = self.ds._log.commit(self.base, build, operation=op, message=self.message)
        except AlreadyCommitted:
            self.ds.refresh()
            self.committed_version = self.ds.version
            return self.ds.version
        self.ds._set_snapshot(result.snapshot)
        self.committed_version = result.version
        return result.version
