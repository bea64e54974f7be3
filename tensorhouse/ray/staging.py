"""Staged writes: chunk files written by one process, committed once by another.

The one place where ``tensorhouse.ray`` touches the write path below the
public ``Dataset`` API. Write tasks call :func:`stage` (encode and upload a
group of rows as immutable, uniquely named chunk files, nothing committed);
the driver calls :func:`commit` once with every task's
:class:`StagedFragment`\\ s, which become the new fragments of one commit
(through ``Dataset.transaction``, so the log's rules hold: appends never
conflict, an overwrite conflicts with a concurrent delete of the same rows).
Chunk files of a task that died, or of a duplicate attempt the driver
dropped, are referenced by no commit: ``vacuum`` removes them.

Until the commit log's public staging API lands this module uses the
transaction's internal step that records pre-built fragments; nothing else
in ``tensorhouse.ray`` depends on how that happens.

Example:
    >>> import tensorhouse as th
    >>> ds = th.create("memory://doc-staging", {"x": "int64"})
    >>> layout = WriteLayout.of_dataset(ds)
    >>> staged = stage(layout, {"x": [1, 2, 3]})
    >>> commit(ds, staged), len(ds)
    (1, 3)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tensorhouse.errors import SchemaError
from tensorhouse.format.dataset import Dataset
from tensorhouse.format.input import Data, to_columns
from tensorhouse.format.log import Action, ChunkRef, Fragment, Metadata, Snapshot
from tensorhouse.format.log.actions import MAX_FRAGMENT_ROWS
from tensorhouse.format.writer import normalize_columns, write_fragments
from tensorhouse.storage import Store, open_store
from tensorhouse.types import ROWID, Schema


@dataclass(frozen=True)
class WriteLayout:
    """What a write task needs to encode chunks for a dataset: where it is, its schema, field ids, chunk config."""

    uri: str
    schema: Schema
    field_ids: Mapping[str, int]
    config: Mapping[str, Any] = field(default_factory=dict)
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    @staticmethod
    def of_dataset(ds: Dataset) -> WriteLayout:
        meta = ds.snapshot.metadata
        return WriteLayout(ds.uri, meta.schema, dict(meta.field_ids), dict(meta.config), ds.storage_options)

    @staticmethod
    def for_new(uri: str, schema: Schema, storage_options: Mapping[str, Any] | None = None) -> WriteLayout:
        """The layout ``th.create(uri, schema)`` gives a new dataset (field ids in schema order)."""
        return WriteLayout(uri, schema, {n: i for i, n in enumerate(schema.names)}, {}, dict(storage_options or {}))

    def _snapshot(self) -> Snapshot:
        # write_fragments reads only the metadata (types, field ids, chunk sizes) of the snapshot it is given.
        meta = Metadata("", self.schema, dict(self.field_ids), max(self.field_ids.values(), default=-1) + 1,
                        dict(self.config))  # fmt: skip
        return Snapshot(-1, 0, meta, (), 0)


@dataclass(frozen=True)
class StagedFragment:
    """Rows whose chunk files are written and not yet committed: field id -> chunks covering every row."""

    num_rows: int
    columns: Mapping[int, tuple[ChunkRef, ...]]

    def files(self) -> list[str]:
        return [c.path for refs in self.columns.values() for c in refs]


_STORES: dict[tuple[str, str], Store] = {}


def _store(layout: WriteLayout) -> Store:
    # One store per process and dataset: a Ray worker runs many write tasks.
    key = (layout.uri, repr(sorted(layout.storage_options.items())))
    store = _STORES.get(key)
    if store is None:
        store = _STORES[key] = open_store(layout.uri, layout.storage_options or None)
    return store


def stage(layout: WriteLayout, data: Data) -> list[StagedFragment]:
    """Validate rows and upload their chunk files; commits nothing. Bad values raise SchemaError first."""
    columns, n = to_columns(data, layout.schema)
    if not n:
        return []
    batches = normalize_columns(columns, layout.schema)
    pending = write_fragments(_store(layout), layout._snapshot(), batches, n)
    return [StagedFragment(p.num_rows, dict(p.columns)) for p in pending]


def merge(staged: Sequence[StagedFragment]) -> list[StagedFragment]:
    """Consecutive staged groups joined into as few fragments as the row limit allows."""
    out: list[StagedFragment] = []
    for s in staged:
        last = out[-1] if out else None
        if last is not None and last.columns.keys() == s.columns.keys() and \
                last.num_rows + s.num_rows <= MAX_FRAGMENT_ROWS:  # fmt: skip
            cols = {k: (*last.columns[k], *s.columns[k]) for k in last.columns}
            out[-1] = StagedFragment(last.num_rows + s.num_rows, cols)
        else:
            out.append(s)
    return out


def commit(ds: Dataset, staged: Sequence[StagedFragment], *, overwrite: bool = False,
           message: str | None = None) -> int:  # fmt: skip
    """Commit staged fragments (after deleting the rows live at ``ds.version`` when ``overwrite``) as one
    version, and return it. Nothing to commit leaves the dataset at its version."""
    ids = dict(ds.snapshot.metadata.field_ids)
    for s in staged:
        unknown = sorted(set(s.columns) - set(ids.values()))
        if unknown:
            raise SchemaError(f"{ds.uri}: staged chunks for field ids {unknown} that the dataset does not have "
                              "(a column was dropped while the job ran?)")  # fmt: skip
    tx = ds.transaction(message=message)
    changed = False
    if overwrite:
        live = [b.column(ROWID).to_numpy() for b in ds.reader.iter_batches([], with_rowid=True)]
        if sum(len(x) for x in live):
            tx.delete(rowids=np.concatenate(live))
            changed = True
    rows = [s for s in staged if s.num_rows]
    if rows:
        first = tx.state.next_fragment_id
        actions = [Action("add_fragment", Fragment(first + i, s.num_rows, dict(s.columns))) for i, s in enumerate(rows)]
        # TODO(i16 staging API): replace with the public call that commits pre-written fragments.
        tx._apply("append", actions)
        changed = True
    if not changed:
        return ds.version
    return tx.commit()


__all__ = ["StagedFragment", "WriteLayout", "commit", "merge", "stage"]
