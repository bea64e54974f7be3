"""Vacuum (delete unreferenced files) and compaction (merge small fragments)."""

from __future__ import annotations

import contextlib
from datetime import timedelta

from tensorhouse.errors import ObjectNotFoundError, VersionNotFoundError
from tensorhouse.format import refs
from tensorhouse.format.chunks import concat, normalize
from tensorhouse.format.log import (
    Action,
    AddFragment,
    AddIndex,
    Log,
    PrunePlan,
    RemoveFragment,
    ReplaceFragment,
)
from tensorhouse.format.maintenance_types import VacuumReport
from tensorhouse.format.transaction import Transaction
from tensorhouse.format.writer import stage_fragments
from tensorhouse.storage.base import Store

#: Shorter retentions risk deleting the files of a write still in flight.
MIN_SAFE_RETENTION = timedelta(hours=1)
VACUUMED_PREFIXES = ("data/", "_deletions/", "_indexes/")


def _retained_files(lg: Log, cutoff_ms: int, protected: set[int]) -> tuple[set[str], int, int]:
    """Files of the versions of ``lg`` that vacuum keeps, how many versions those are, and the oldest of them.

    Timestamps increase with versions, so the versions current at some point
    since the cutoff are the one current at the cutoff (found by binary
    search) and every later one: their files are that version's plus every file
    a later commit adds. Older versions are read only where tagged or branched
    from. Nothing before the checkpoint under the cutoff version is replayed.
    """
    latest = lg.latest_version()
    try:
        k = max(lg.version_at(cutoff_ms - 1), lg.first_version)
    except VersionNotFoundError:  # every commit is newer than the cutoff
        k = lg.first_version
    if k > latest:  # a branch with no commit of its own: its base is protected on the parent
        return set(), 0, k
    base = lg.snapshot(k)
    files = base.files()
    for c in lg.read_range(k + 1, latest + 1):
        for a in c.actions:
            match a:
                case AddFragment(f) | ReplaceFragment(f):
                    files.update(f.files())
                case AddIndex(entry):
                    files.update(f.path for f in entry.files)
    older = sorted(v for v in protected if lg.first_version <= v < k)
    for v in older:
        files |= lg.snapshot(v).files()
    return files, latest - k + 1 + len(older), k


def vacuum(
    store: Store, retention: timedelta, *, dry_run: bool, force: bool, now: float
) -> VacuumReport:
    """Delete data and deletion files that no retained version references and that are older than ``retention``.

    Retained: every branch's latest version, every tagged version, every branch's
    base version, and every version that was current at some point within the
    retention window. Files of an unfinished write are new, so the age check
    keeps them; that is why retentions under an hour need ``force=True``.
    Staged files of writes that crashed before renaming them into place
    (``.tmp-*`` on a local file system) go too, once older than ``retention``.

    The log is pruned too (:meth:`Log.prune_plan`): checkpoints no retained
    version starts from, and the entries older than the oldest checkpoint
    still needed. Every retained version, tag and branch still opens (as fast
    as before), and ``history()`` lists the versions from there on.
    """
    if retention < MIN_SAFE_RETENTION and not force:
        raise ValueError(
            f"retention {retention} is shorter than {MIN_SAFE_RETENTION}: files of writes still in "
            "progress could be deleted; pass force=True if no one else is writing"
        )
    now_ms = now * 1000
    cutoff = now_ms - retention.total_seconds() * 1000
    tags = refs.list_tags(store)
    branches = refs.list_branches(store)
    protected: dict[str, set[int]] = {b: set() for b in branches}
    for t in tags.values():
        protected.setdefault(t.branch, set()).add(t.version)
    logs = {b: refs.branch_log(store, b) for b in branches}
    for lg in logs.values():
        if lg.parent is not None:
            parent_name = next(p for p, pl in logs.items() if pl.prefix == lg.parent[0].prefix)
            protected[parent_name].add(lg.parent[1])
    keep: set[str] = set()
    retained = 0
    plans: list[tuple[Log, PrunePlan]] = []
    for b, lg in logs.items():
        files, count, oldest = _retained_files(lg, int(cutoff), protected.get(b, set()))
        keep |= files
        retained += count
        if count:
            plans.append((lg, lg.prune_plan(oldest, protected.get(b, set()))))
    victims = []
    freed = 0
    for prefix in VACUUMED_PREFIXES:
        for info in store.list(prefix):
            if info.key in keep or info.mtime is None or info.mtime * 1000 >= cutoff:
                continue
            victims.append(info.key)
            freed += info.size
    # Staged files of writes that crashed before their rename: never referenced, only old ones go.
    staged = [i for i in store.list_staged() if i.mtime is not None and i.mtime * 1000 < cutoff]
    freed += sum(i.size for i in staged)
    if not dry_run:
        for key in victims:
            with contextlib.suppress(ObjectNotFoundError):  # a concurrent vacuum got it first
                store.delete(key)
        for info in staged:
            store.delete_staged(info.key)
        for lg, plan in plans:
            lg.prune(plan)
    victims += [i.key for i in staged]
    log_files = tuple(key for _, plan in plans for key, _ in plan.keys)
    log_freed = sum(size for _, plan in plans for _, size in plan.keys)
    return VacuumReport(
        dry_run,
        tuple(victims),
        freed,
        len(keep),
        retained,
        log_files=log_files,
        log_bytes_freed=log_freed,
    )


#: A compaction group holds at most this many bytes of chunks (it is rewritten in memory, one column at a time).
MAX_GROUP_BYTES = 512 << 20


def compact(tx: Transaction, *, target_rows: int) -> int:
    """Stage into ``tx`` the rewrite of runs of small fragments (and fragments with deleted rows).

    Each run becomes fragments near ``target_rows`` live rows. Visible data is
    unchanged; rewritten rows get new row ids (their fragment is new). Returns
    the number of rows rewritten (0: nothing staged).
    """
    if target_rows < 1:
        raise ValueError(f"target_rows must be positive, got {target_rows}")
    snap = tx.state
    groups: list[list[int]] = []
    current: list[int] = []
    rows = size = 0
    for i, f in enumerate(snap.fragments):
        fsize = sum(c.size for chunks in f.columns.values() for c in chunks)
        small = f.num_live < target_rows
        if small and rows + f.num_live <= target_rows and size + fsize <= MAX_GROUP_BYTES:
            current.append(i)
            rows += f.num_live
            size += fsize
            continue
        if current:
            groups.append(current)
        current, rows, size = ([i], f.num_live, fsize) if small else ([], 0, 0)
    if current:
        groups.append(current)
    groups = [g for g in groups if len(g) > 1 or snap.fragments[g[0]].deletion is not None]
    if not groups:
        return 0
    reader = tx.reader()
    actions: list[Action] = []
    next_id = snap.next_fragment_id
    rewritten = 0
    for g in groups:
        start, stop = int(reader.frag_starts[g[0]]), int(reader.frag_starts[g[-1] + 1])
        batches = {}
        n = 0
        for name, ctype in snap.metadata.schema.items():
            parts = [
                normalize(b.column(0), ctype, name)
                for b in reader.iter_batches([(name, ctype)], start=start, stop=stop)
            ]
            batches[name] = concat(parts) if parts else normalize([], ctype, name)
            n = len(batches[name])
        actions += [RemoveFragment(snap.fragments[i].id) for i in g]
        for p in stage_fragments(tx.store, snap.metadata, batches, n):
            actions.append(AddFragment(p.with_id(next_id)))
            next_id += 1
        rewritten += n
    tx.stage("compact", actions)
    return rewritten


__all__ = ["compact", "vacuum"]
