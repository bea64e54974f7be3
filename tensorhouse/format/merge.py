"""Merge a branch into its parent: one commit carrying the branch's changes.

The merge compares three states: the parent at the branch's base version,
the branch now, and the parent now. Fragments the branch added are added
(renumbered after the parent's own); fragments it changed or removed are
replaced or removed, unless the parent changed or removed them too, which is
a conflict naming the fragments and rows. Schema changes on both sides are a
conflict too, unless they agree. Index changes follow the same rule by name.
"""

from __future__ import annotations

from dataclasses import replace

from tensorhouse.errors import CommitConflictError
from tensorhouse.format.log import (
    Action,
    AddFragment,
    AddIndex,
    DropIndex,
    Fragment,
    Log,
    RemoveFragment,
    ReplaceFragment,
    SetMetadata,
    Snapshot,
)
from tensorhouse.format.transaction import Transaction


def _changes(base: Snapshot, now: Snapshot) -> tuple[list[Fragment], dict[int, Fragment | None]]:
    """(fragments added since base, base fragment id -> new value or None if removed)."""
    before = {f.id: f for f in base.fragments}
    after = {f.id: f for f in now.fragments}
    added = [f for fid, f in after.items() if fid not in before or fid >= base.next_fragment_id]
    changed: dict[int, Fragment | None] = {}
    for fid, f in before.items():
        if fid not in after:
            changed[fid] = None
        elif after[fid] != f:
            changed[fid] = after[fid]
    return added, changed


def merge_branch(tx: Transaction, source: Log, *, name: str) -> None:
    """Stage into ``tx`` (opened on the branch's parent) the changes of the branch whose log is ``source``."""
    assert source.parent is not None, "merge_branch needs a branch log"
    uri = tx.log.store.uri
    base = tx.log.snapshot(source.parent[1])
    theirs = source.snapshot()
    ours = tx.state
    t_added, t_changed = _changes(base, theirs)
    _, o_changed = _changes(base, ours)
    both = sorted(set(t_changed) & set(o_changed))
    if both:
        detail = "; ".join(
            f"fragment {f} (row ids {f << 32}..{(f << 32) + base.fragment(f).num_rows - 1})"
            for f in both[:5]
        )
        raise CommitConflictError(f"{uri}: cannot merge {name!r}: both branches changed {detail}")
    schema_change = theirs.metadata != base.metadata
    if schema_change and ours.metadata != base.metadata and ours.metadata != theirs.metadata:
        raise CommitConflictError(
            f"{uri}: cannot merge {name!r}: both branches changed the schema "
            f"(ours: {ours.metadata.schema.names}, theirs: {theirs.metadata.schema.names})"
        )
    t_indexes = {
        n for n in {*base.indexes, *theirs.indexes} if base.indexes.get(n) != theirs.indexes.get(n)
    }
    o_indexes = {
        n for n in {*base.indexes, *ours.indexes} if base.indexes.get(n) != ours.indexes.get(n)
    }
    clash = sorted(n for n in t_indexes & o_indexes if ours.indexes.get(n) != theirs.indexes.get(n))
    if clash:
        raise CommitConflictError(
            f"{uri}: cannot merge {name!r}: both branches changed the index(es) {clash}"
        )
    actions: list[Action] = []
    if schema_change and ours.metadata != theirs.metadata:
        actions.append(SetMetadata(theirs.metadata))
    for fid, f in t_changed.items():
        actions.append(RemoveFragment(fid) if f is None else ReplaceFragment(f))
    first = ours.next_fragment_id
    renumber = {f.id: first + i for i, f in enumerate(t_added)}
    actions += [
        AddFragment(Fragment(renumber[f.id], f.num_rows, f.columns, f.deletion)) for f in t_added
    ]
    for n in sorted(t_indexes):
        entry = theirs.indexes.get(n)
        if entry is None:
            if n in ours.indexes:
                actions.append(DropIndex(n))
        elif ours.indexes.get(n) != entry:
            ids = tuple(renumber.get(f, f) for f in entry.fragment_ids)
            actions.append(AddIndex(replace(entry, fragment_ids=ids)))
    tx.stage("merge", actions)
