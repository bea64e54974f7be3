"""Merge a branch into its parent: one commit carrying the branch's changes.

The merge compares three states: the parent at the branch's base version,
the branch now, and the parent now. Fragments the branch added are added
(renumbered after the parent's own); fragments it changed or removed are
replaced or removed, unless the parent changed or removed them too, which is
a conflict naming the fragments and rows. Schema changes on both sides are a
conflict too, unless they agree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tensorhouse.errors import CommitConflictError, UnsupportedError
from tensorhouse.format import refs
from tensorhouse.format.log import Action, Fragment, Snapshot

if TYPE_CHECKING:
    from tensorhouse.format.dataset import Dataset


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


def merge(ds: Dataset, branch: str, *, message: str | None) -> int:
    store = ds.store
    src = refs.branch_log(store, branch)
    if src.parent is None or src.parent[0].prefix != ds._log.prefix:
        raise UnsupportedError(f"{ds.uri}: branch {branch!r} was not created from branch {ds.branch_name!r}; "
                               "merge it into its own parent")  # fmt: skip
    base_version = src.parent[1]
    ds.refresh()
    base = ds._log.snapshot(base_version)
    theirs = src.snapshot()
    ours = ds.snapshot
    t_added, t_changed = _changes(base, theirs)
    _, o_changed = _changes(base, ours)
    both = sorted(set(t_changed) & set(o_changed))
    if both:
        detail = "; ".join(f"fragment {f} (row ids {f << 32}..{(f << 32) + base.fragment(f).num_rows - 1})"
                           for f in both[:5])  # fmt: skip
        raise CommitConflictError(f"{ds.uri}: cannot merge {branch!r} into {ds.branch_name!r}: both changed {detail}")
    schema_change = theirs.metadata != base.metadata
    if schema_change and ours.metadata != base.metadata and ours.metadata != theirs.metadata:
        raise CommitConflictError(
            f"{ds.uri}: cannot merge {branch!r}: both branches changed the schema "
            f"(ours: {ours.metadata.schema.names}, theirs: {theirs.metadata.schema.names})"
        )
    tx = ds.transaction(message=message or f"merge {branch}")
    actions: list[Action] = []
    if schema_change and ours.metadata != theirs.metadata:
        actions.append(Action("metadata", theirs.metadata))
        tx.schema_changed = True
    for fid, f in t_changed.items():
        tx._touch(fid)
        actions.append(Action("remove_fragment", {"id": fid}) if f is None else Action("replace_fragment", f))
    first = ours.next_fragment_id
    actions += [Action("add_fragment", Fragment(first + i, f.num_rows, f.columns, f.deletion))
                for i, f in enumerate(t_added)]  # fmt: skip
    if not actions:
        return ds.version
    tx._apply("merge", actions)
    return tx.commit()
