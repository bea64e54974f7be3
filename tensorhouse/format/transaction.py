"""Transactions: one or more writes committed atomically as one version.

Every write of a Dataset (append, delete, update, schema change, restore,
merge, compaction, ingestion, index changes) runs in a Transaction and
reaches the log through one public method, :meth:`Transaction.stage`, which
takes typed log actions. Operations apply to a working snapshot, so later
ones see earlier ones (append, then delete some of what was appended). What
a transaction conflicts with is derived from the actions it staged; at commit
they are rebased onto whatever won meanwhile, under these rules:

- blind appends never conflict: their new fragments are renumbered past
  the winners' ones (an append landing after a restore adds to the restored state);
- a delete, update, compaction or column rewrite conflicts with a winner
  that replaced or removed one of the same fragments;
- a schema change conflicts with a winner's schema change;
- an index change conflicts with a winner's change of the same index or of the schema;
- a restore conflicts with any winner.

A transaction that staged nothing commits nothing.

Example:
    >>> import tensorhouse as th
    >>> ds = th.create("memory://doc-txn", {"x": "int64", "tag": th.Text()})
    >>> with ds.transaction(message="load and fix") as tx:
    ...     _ = tx.append({"x": [1, 2, 3], "tag": ["a", "b", "c"]})
    ...     _ = tx.delete(where="x = 2")
    >>> ds.version, len(ds)
    (1, 2)
    >>> with ds.transaction() as tx:
    ...     pass
    >>> ds.version
    1
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import pyarrow as pa

from tensorhouse.errors import CommitConflictError, SchemaError
from tensorhouse.format import deletions
from tensorhouse.format.chunks import ChunkReader, SampleBatch, concat, normalize, take
from tensorhouse.format.input import Data, to_columns
from tensorhouse.format.log import (
    Action,
    AddFragment,
    AddIndex,
    ChunkRef,
    Commit,
    DropIndex,
    Fragment,
    IndexEntry,
    Log,
    Metadata,
    RemoveFragment,
    ReplaceFragment,
    Restore,
    SetMetadata,
    Snapshot,
    Txn,
    replay,
)
from tensorhouse.format.log.log import AlreadyCommitted
from tensorhouse.format.predicate import evaluate, parse_with_columns
from tensorhouse.format.scan import SnapshotReader, null_batch
from tensorhouse.format.writer import (
    StagedFragment,
    normalize_columns,
    stage_fragments,
    write_chunks,
)
from tensorhouse.storage.base import Store
from tensorhouse.types import ROWID, ColumnType, Schema, TypeLike, as_type, check_column_name


@dataclass(frozen=True)
class Footprint:
    """What a set of actions changes, for conflict checks."""

    touched: frozenset[int]
    schema: bool
    restore: bool
    indexes: frozenset[str]

    @staticmethod
    def of(
        actions: Sequence[Action], *, operation: str = "", below: int | None = None
    ) -> Footprint:
        """The footprint of ``actions``; with ``below``, only fragment ids under it count as touched."""
        touched: set[int] = set()
        indexes: set[str] = set()
        restore = operation == "restore"  # logs of format 1 mark a restore by its operation only
        schema = False
        for a in actions:
            match a:
                case ReplaceFragment(f):
                    touched.add(f.id)
                case RemoveFragment(fid):
                    touched.add(fid)
                case SetMetadata():
                    schema = True
                case Restore():
                    restore = True
                case AddIndex(entry):
                    indexes.add(entry.name)
                case DropIndex(name):
                    indexes.add(name)
        if below is not None:
            touched = {f for f in touched if f < below}
        return Footprint(frozenset(touched), schema, restore, frozenset(indexes))


def _row_ranges(fid: int, offsets: Sequence[int]) -> str:
    offs = sorted(offsets)[:3]
    return ", ".join(str((fid << 32) | o) for o in offs) + (" ..." if len(offsets) > 3 else "")


def _shift_fragment_ids(a: Action, first_new: int, shift: int) -> Action:
    """Renumber the fragments this transaction created (ids >= first_new) past the winners' ones."""
    match a:
        case AddFragment(f) if f.id >= first_new:
            return AddFragment(replace(f, id=f.id + shift))
        case ReplaceFragment(f) if f.id >= first_new:
            return ReplaceFragment(replace(f, id=f.id + shift))
        case RemoveFragment(fid) if fid >= first_new:
            return RemoveFragment(fid + shift)
        case AddIndex(e) if any(f >= first_new for f in e.fragment_ids):
            ids = tuple(f + shift if f >= first_new else f for f in e.fragment_ids)
            return AddIndex(replace(e, fragment_ids=ids))
    return a


class Transaction:
    """Writes that commit together. Obtain one with ``Dataset.transaction()``.

    ``log`` is the branch's log and ``base`` the snapshot the writes start
    from; ``on_commit`` receives the snapshot of the committed version (the
    dataset moves to it). Everything a transaction does to the log goes
    through :meth:`stage`.
    """

    def __init__(
        self,
        log: Log,
        base: Snapshot,
        *,
        store: Store | None = None,
        message: str | None = None,
        app_id: str | None = None,
        txn_version: int | None = None,
        on_commit: Callable[[Snapshot], None] | None = None,
    ) -> None:
        if (app_id is None) != (txn_version is None):
            raise ValueError("give both app_id and txn_version for an idempotent write, or neither")
        self.log = log
        self.store = store if store is not None else log.store
        self.message = message
        self.app_id = app_id
        self.txn_version = txn_version
        self.base = base
        self.state = base
        self.actions: list[Action] = []
        self.operations: list[str] = []
        self.committed_version: int | None = None
        self._on_commit = on_commit
        # base fragment id -> row offsets this transaction changes (only for conflict messages)
        self._rows: dict[int, list[int]] = {}

    # -- context manager -------------------------------------------------------------
    def __enter__(self) -> Transaction:
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self.commit()

    # -- the staging API -------------------------------------------------------------
    @property
    def schema(self) -> Schema:
        """The schema as of the operations staged so far."""
        return self.state.metadata.schema

    def stage(
        self,
        operation: str,
        actions: Sequence[Action],
        *,
        rows: Mapping[int, Sequence[int]] | None = None,
    ) -> None:
        """Add ``actions`` (typed log actions) to this transaction as one named operation.

        The actions are validated at once by replaying them onto the working
        state (a fragment id that is not live raises CorruptLogError and stages
        nothing). What they touch decides what they conflict with at commit.
        New fragments take ids from ``self.state.next_fragment_id`` on; the
        commit renumbers them past concurrent appends. ``rows`` optionally names
        the row offsets changed per fragment id, for conflict messages.
        """
        if self.committed_version is not None:
            raise RuntimeError("this transaction is already committed")
        actions = list(actions)
        if not actions:
            return
        working = Commit(
            self.state.version + 1,
            "working",
            self.state.timestamp_ms,
            operation,
            self.state.version,
            tuple(actions),
        )
        self.state = replay(self.state, [working])
        self.actions.extend(actions)
        self.operations.append(operation)
        for fid, offs in (rows or {}).items():
            if fid < self.base.next_fragment_id:
                self._rows.setdefault(fid, []).extend(int(o) for o in offs)

    def add_staged(self, fragments: Sequence[StagedFragment], *, operation: str = "append") -> int:
        """Add fragments whose chunks are already written (by :meth:`Dataset.stage` in any process); returns rows."""
        for f in fragments:
            f.check(self.state.metadata)
        first = self.state.next_fragment_id
        self.stage(operation, [AddFragment(f.with_id(first + i)) for i, f in enumerate(fragments)])
        return sum(f.num_rows for f in fragments)

    def add_index(self, entry: IndexEntry) -> None:
        """Create (or replace) the index ``entry.name`` over a column of this version."""
        if entry.column not in self.schema:
            raise SchemaError(
                f"index {entry.name!r}: unknown column {entry.column!r}; columns are {self.schema.names}"
            )
        live = {f.id for f in self.state.fragments}
        unknown = sorted(set(entry.fragment_ids) - live)
        if unknown:
            raise ValueError(
                f"index {entry.name!r} covers fragments {unknown[:5]} that are not in this version"
            )
        self.stage("create_index", [AddIndex(entry)])

    def drop_index(self, name: str) -> None:
        """Drop the index ``name`` (its files stay for older versions until vacuum)."""
        if name not in self.state.indexes:
            raise KeyError(f"no index {name!r}; indexes are {sorted(self.state.indexes)}")
        self.stage("drop_index", [DropIndex(name)])

    def reader(self) -> SnapshotReader:
        """A reader of the working state (what the operations staged so far leave)."""
        return SnapshotReader(self.state, ChunkReader(self.store))

    # -- operations ------------------------------------------------------------------
    def append(self, data: Data) -> int:
        """Add rows; returns how many."""
        columns, n = to_columns(data, self.schema)
        if (
            not n
        ):  # nothing to validate: empty columns have no dtype to check (an empty list is float64)
            return 0
        batches = normalize_columns(columns, self.schema)
        self.add_staged(stage_fragments(self.store, self.state.metadata, batches, n))
        return n

    def matching_rowids(self, where: str) -> np.ndarray:
        """Row ids of the live rows where the SQL predicate holds."""
        usable = {
            n: t.arrow_type()
            for n, t in self.schema.items()
            if pa.types.is_primitive(t.arrow_type())
            or pa.types.is_string(t.arrow_type())
            or (t.is_scalar and not _view(t.arrow_type()))
        }
        expr, used = parse_with_columns(where, usable)
        cols = [(n, self.schema[n]) for n in sorted(used)]
        out = []
        for batch in self.reader().iter_batches(cols, with_rowid=True):
            mask = evaluate(expr, batch)
            out.append(batch.column(ROWID).filter(mask).to_numpy())
        return np.concatenate(out) if out else np.zeros(0, np.int64)

    def _group(self, rowids: np.ndarray) -> dict[int, np.ndarray]:
        """Validated row ids grouped by fragment id (offsets sorted, unique)."""
        self.reader().rows_of_rowids(rowids)  # raises KeyError naming an unknown or deleted row
        rowids = np.unique(np.asarray(rowids, dtype=np.int64))
        fids = rowids >> 32
        return {int(f): (rowids[fids == f] & 0xFFFFFFFF) for f in np.unique(fids)}

    def delete(
        self, where: str | None = None, *, rowids: Sequence[int] | np.ndarray | None = None
    ) -> int:
        """Delete rows matching ``where`` (a SQL predicate) or with the given row ids; returns how many."""
        if (where is None) == (rowids is None):
            raise ValueError("delete needs exactly one of where= or rowids=")
        ids = (
            self.matching_rowids(where) if where is not None else np.asarray(rowids, dtype=np.int64)
        )
        groups = self._group(ids)
        actions: list[Action] = []
        positions = {f.id: i for i, f in enumerate(self.state.fragments)}
        reader = self.reader()
        for fid, offs in groups.items():
            i = positions[fid]
            frag = self.state.fragments[i]
            dead = np.union1d(reader.deleted_offsets(i), offs)
            if len(dead) == frag.num_rows:
                actions.append(RemoveFragment(fid))
            else:
                actions.append(
                    ReplaceFragment(replace(frag, deletion=deletions.write(self.store, dead)))
                )
        self.stage("delete", actions, rows={f: o.tolist() for f, o in groups.items()})
        return int(sum(len(o) for o in groups.values()))

    def update(
        self,
        values: Mapping[str, Any],
        where: str | None = None,
        *,
        rowids: Sequence[int] | np.ndarray | None = None,
    ) -> int:
        """Set columns to constant values on matching rows, rewriting only affected chunks; returns how many."""
        if not values:
            raise ValueError("update needs at least one column value")
        for name in values:
            if name not in self.schema:
                raise SchemaError(f"unknown column {name!r}; columns are {self.schema.names}")
        new = {name: normalize([v], self.schema[name], name) for name, v in values.items()}
        if where is None and rowids is None:  # every live row
            reader = self.reader()
            ids = reader.rowids(reader.physical(np.arange(reader.num_rows)))
        elif where is not None:
            ids = self.matching_rowids(where)
        else:
            ids = np.asarray(rowids, dtype=np.int64)
        groups = self._group(ids)
        chunks = ChunkReader(self.store)
        actions: list[Action] = []
        for fid, offs in groups.items():
            frag = next(f for f in self.state.fragments if f.id == fid)
            cols = dict(frag.columns)
            for name, value in new.items():
                field = self.state.metadata.field_ids[name]
                cols[field] = self._rewrite_column(
                    chunks, frag, field, self.schema[name], name, offs, value
                )
            actions.append(ReplaceFragment(replace(frag, columns=cols)))
        self.stage("update", actions, rows={f: o.tolist() for f, o in groups.items()})
        return int(sum(len(o) for o in groups.values()))

    def _rewrite_column(
        self,
        reader: ChunkReader,
        frag: Fragment,
        field: int,
        ctype: ColumnType,
        name: str,
        offsets: np.ndarray,
        value: Any,
    ) -> tuple[ChunkRef, ...]:
        """Copy-on-write: new chunks only where a changed row lives."""
        chunks = frag.columns.get(field)
        if chunks is None:  # the column was added after this fragment: materialise its nulls
            chunks = (ChunkRef("", frag.num_rows, 0, 0),)
        out: list[ChunkRef] = []
        start = 0
        for ref in chunks:
            stop = start + ref.rows
            local = offsets[(offsets >= start) & (offsets < stop)] - start
            if not len(local):
                out.append(ref)
            else:
                old = null_batch(ctype, ref.rows) if not ref.path else reader.read_ref(ref, ctype)
                idx = np.arange(ref.rows)
                idx[local] = ref.rows  # points at the new value, appended after the old rows
                merged = take(concat([old, value]), idx)
                # One chunk in, one chunk out: the row ranges of the other chunks stay as they are.
                out.extend(write_chunks(self.store, self.state.metadata, name, merged, split=False))
            start = stop
        return tuple(out)

    # -- schema ----------------------------------------------------------------------
    def add_column(
        self, name: str, ctype: TypeLike, values: Sequence[Any] | np.ndarray | None = None
    ) -> None:
        """Add a column; existing rows get nulls, or ``values`` (one per live row)."""
        check_column_name(name)
        if name in self.schema:
            raise SchemaError(f"column {name!r} already exists")
        t = as_type(ctype)
        new_meta = self.state.metadata.with_columns(Schema(((name, t),)))
        fid = new_meta.field_id(name)
        extra: list[Action] = []
        if values is not None:
            reader = self.reader()
            if len(values) != reader.num_rows:
                raise SchemaError(
                    f"add_column {name!r}: {len(values)} values for {reader.num_rows} rows"
                )
            batch = normalize(values, t, name)
            pos = 0
            for i, frag in enumerate(self.state.fragments):
                dead = reader.deleted_offsets(i)
                live = np.setdiff1d(np.arange(frag.num_rows), dead)
                part: SampleBatch = take(batch, np.arange(pos, pos + len(live)))
                pos += len(live)
                if len(dead):  # deleted rows get nulls so the column stays aligned with the others
                    idx = np.full(frag.num_rows, len(live))
                    idx[live] = np.arange(len(live))
                    part = take(concat([part, null_batch(t, 1)]), idx)
                refs = write_chunks(self.store, new_meta, name, part)
                extra.append(ReplaceFragment(replace(frag, columns={**frag.columns, fid: refs})))
        self.stage("add_column", [SetMetadata(new_meta), *extra])

    def drop_column(self, name: str) -> None:
        """Remove a column from this version on (older versions keep it)."""
        meta = self.state.metadata
        self.schema[name]
        if len(meta.schema) == 1:
            raise SchemaError(f"cannot drop {name!r}, the only column")
        self.stage(
            "drop_column",
            [
                SetMetadata(
                    Metadata(
                        meta.dataset_id,
                        Schema(tuple(c for c in meta.schema.columns if c[0] != name)),
                        {k: v for k, v in meta.field_ids.items() if k != name},
                        meta.next_field_id,
                        meta.config,
                    )
                )
            ],
        )

    def rename_column(self, old: str, new: str) -> None:
        """Rename a column; its data is untouched (chunks are addressed by field id)."""
        meta = self.state.metadata
        self.schema[old]  # raises SchemaError for an unknown column
        check_column_name(new)
        if new in self.schema:
            raise SchemaError(f"column {new!r} already exists")
        cols = tuple((new if n == old else n, ct) for n, ct in meta.schema.columns)
        ids = {(new if k == old else k): v for k, v in meta.field_ids.items()}
        self.stage(
            "rename_column",
            [
                SetMetadata(
                    Metadata(meta.dataset_id, Schema(cols), ids, meta.next_field_id, meta.config)
                )
            ],
        )

    def restore(self, version: int) -> None:
        """Make the state equal to ``version`` of this branch (a new commit; history is kept)."""
        target = self.log.snapshot(version)
        live = {f.id: f for f in self.state.fragments}
        want = {f.id: f for f in target.fragments}
        actions: list[Action] = [Restore(version)]
        if target.metadata != self.state.metadata:
            actions.append(SetMetadata(target.metadata))
        for fid, f in live.items():
            if fid not in want:
                actions.append(RemoveFragment(fid))
            elif want[fid] != f:
                actions.append(ReplaceFragment(want[fid]))
        actions += [AddFragment(f) for fid, f in want.items() if fid not in live]
        actions += [DropIndex(n) for n in self.state.indexes if n not in target.indexes]
        actions += [
            AddIndex(e) for n, e in target.indexes.items() if self.state.indexes.get(n) != e
        ]
        self.stage("restore", actions)

    # -- commit ----------------------------------------------------------------------
    def _rebase(self, snap: Snapshot, winners: Sequence[Commit]) -> list[Action]:
        if self.app_id is not None and snap.txns.get(self.app_id, -1) >= (self.txn_version or 0):
            raise AlreadyCommitted(snap.version)
        mine = Footprint.of(self.actions, below=self.base.next_fragment_id)
        what = "/".join(self.operations)
        for w in winners:
            fp = Footprint.of(w.actions, operation=w.operation)
            if mine.restore:
                raise CommitConflictError(
                    f"{self.log.store.uri}: version {w.version} ({w.operation}) was committed "
                    "while restoring; restore again from the new version"
                )
            if fp.restore and (mine.touched or mine.schema or mine.indexes):
                raise CommitConflictError(
                    f"{self.log.store.uri}: version {w.version} restored an older state while "
                    f"this transaction ({', '.join(self.operations)}) was running"
                )
            both = sorted(mine.touched & fp.touched)
            if both:
                rows = "; ".join(
                    f"fragment {f}: rows {_row_ranges(f, self._rows.get(f, []))}" for f in both[:3]
                )
                raise CommitConflictError(
                    f"{self.log.store.uri}: version {w.version} ({w.operation}) changed the same rows' fragments "
                    f"as this {what} ({rows}); re-run it against the new version"
                )
            if mine.schema and fp.schema:
                raise CommitConflictError(
                    f"{self.log.store.uri}: version {w.version} ({w.operation}) changed the schema concurrently "
                    f"(now {snap.metadata.schema.names}); re-run {what}"
                )
            if mine.indexes and (fp.schema or mine.indexes & fp.indexes):
                raise CommitConflictError(
                    f"{self.log.store.uri}: version {w.version} ({w.operation}) changed the schema or the index(es) "
                    f"{sorted(mine.indexes)} concurrently; re-run {what}"
                )
        shift = snap.next_fragment_id - self.base.next_fragment_id if not mine.restore else 0
        out = (
            [_shift_fragment_ids(a, self.base.next_fragment_id, shift) for a in self.actions]
            if shift
            else list(self.actions)
        )
        if self.app_id is not None and self.txn_version is not None:
            out.append(Txn(self.app_id, self.txn_version))
        return out

    def commit(self) -> int:
        """Commit every staged operation as one version and return it.

        Returns the version of an earlier identical commit for an idempotent
        write already in the log, and the current version, committing nothing,
        when nothing was staged.
        """
        if self.committed_version is not None:
            return self.committed_version
        if not self.actions:
            self.committed_version = self.base.version
            return self.base.version
        op = self.operations[0] if len(self.operations) == 1 else "transaction"

        def build(snap: Snapshot | None, winners: Sequence[Commit]) -> list[Action]:
            if snap is None:
                raise CommitConflictError(
                    f"{self.log.store.uri}: the dataset has no version to write on"
                )
            return self._rebase(snap, winners)

        result = self.log.commit(self.base, build, operation=op, message=self.message)
        if self._on_commit is not None:
            self._on_commit(result.snapshot)
        self.committed_version = result.version
        return result.version


def _view(t: pa.DataType) -> bool:
    # Arrow's compute kernels cannot compare string_view/binary_view yet.
    return bool(pa.types.is_string_view(t) or pa.types.is_binary_view(t))
