"""Staged writes: chunk files written by Ray tasks, committed once by the driver.

Built on the commit log's public staging API: write tasks call :func:`stage`
(validate a group of rows, encode and upload them as immutable, uniquely
named chunk files; nothing is committed) and return the
:class:`~tensorhouse.format.writer.StagedFragment`\\ s; the driver calls
:func:`commit` once with every task's fragments, which become the new
fragments of one commit (``Transaction.add_staged``, so the log's rules hold:
appends never conflict, an overwrite conflicts with a concurrent delete of
the same rows). Chunk files of a task that died, or of a duplicate attempt the
driver dropped, are referenced by no commit: ``vacuum`` removes them.

Tasks do not open the dataset: they get a :class:`WriteLayout` (where it is,
its metadata), which also lets them write for a dataset the driver creates
only once every task has succeeded (``mode="create"``: a failed job then
leaves no empty dataset behind).

Example:
    >>> import tensorhouse as th
    >>> ds = th.create("memory://doc-staging", {"x": "int64"})
    >>> staged = stage(WriteLayout.of_dataset(ds), {"x": [1, 2, 3]})
    >>> commit(ds, staged), len(ds)
    (1, 3)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from tensorhouse.format.dataset import Dataset
from tensorhouse.format.input import Data, to_columns
from tensorhouse.format.log import Metadata
from tensorhouse.format.log.actions import MAX_FRAGMENT_ROWS
from tensorhouse.format.writer import StagedFragment, normalize_columns, stage_fragments
from tensorhouse.storage import Store, open_store
from tensorhouse.types import ROWID, Schema

#: The dataset id of chunks staged for a dataset that does not exist yet (restamped when it is created).
UNBORN = ""


@dataclass(frozen=True)
class WriteLayout:
    """What a write task needs to encode chunks for a dataset: where it is and its metadata."""

    uri: str
    metadata: Metadata
    storage_options: Mapping[str, Any] = field(default_factory=dict)

    @property
    def schema(self) -> Schema:
        return self.metadata.schema

    @staticmethod
    def of_dataset(ds: Dataset) -> WriteLayout:
        return WriteLayout(ds.uri, ds.snapshot.metadata, ds.storage_options)

    @staticmethod
    def for_new(
        uri: str, schema: Schema, storage_options: Mapping[str, Any] | None = None
    ) -> WriteLayout:
        """The layout ``th.create(uri, schema)`` gives a new dataset (field ids in schema order)."""
        meta = Metadata(UNBORN, schema, {n: i for i, n in enumerate(schema.names)}, len(schema), {})
        return WriteLayout(uri, meta, dict(storage_options or {}))


_STORES: dict[tuple[str, str], Store] = {}


def store_for(layout: WriteLayout) -> Store:
    """The store of ``layout``'s dataset: one per process and dataset (a Ray worker runs many write tasks)."""
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
    return stage_fragments(
        store_for(layout), layout.metadata, normalize_columns(columns, layout.schema), n
    )


def merge(staged: Sequence[StagedFragment]) -> list[StagedFragment]:
    """Consecutive staged groups of one task joined into as few fragments as the row limit allows."""
    out: list[StagedFragment] = []
    for s in staged:
        last = out[-1] if out else None
        if (
            last is not None
            and last.columns.keys() == s.columns.keys()
            and last.dataset_id == s.dataset_id
            and last.num_rows + s.num_rows <= MAX_FRAGMENT_ROWS
        ):
            cols = {k: (*last.columns[k], *s.columns[k]) for k in last.columns}
            out[-1] = StagedFragment(last.dataset_id, last.num_rows + s.num_rows, cols)
        else:
            out.append(s)
    return out


def adopt(ds: Dataset, staged: Sequence[StagedFragment]) -> list[StagedFragment]:
    """Fragments staged for a dataset not yet created, claimed by ``ds`` (just created with their layout)."""
    own = ds.snapshot.metadata.dataset_id
    return [replace(s, dataset_id=own) if s.dataset_id == UNBORN else s for s in staged]


def commit(
    ds: Dataset,
    staged: Sequence[StagedFragment],
    *,
    overwrite: bool = False,
    message: str | None = None,
    app_id: str | None = None,
    txn_version: int | None = None,
) -> int:
    """Commit staged fragments (after deleting the rows live at ``ds.version`` when ``overwrite``) as one
    version, and return it. Nothing to commit leaves the dataset at its version. With ``app_id`` and
    ``txn_version`` the commit is idempotent: a pair already in the log commits nothing."""
    tx = ds.transaction(message=message, app_id=app_id, txn_version=txn_version)
    if overwrite:
        live = [b.column(ROWID).to_numpy() for b in ds.reader.iter_batches([], with_rowid=True)]
        if sum(len(x) for x in live):
            tx.delete(rowids=np.concatenate(live))
    tx.add_staged(
        [s for s in staged if s.num_rows]
    )  # checks each was written for this dataset's columns
    return tx.commit()


__all__ = ["StagedFragment", "WriteLayout", "adopt", "commit", "merge", "stage", "store_for"]
