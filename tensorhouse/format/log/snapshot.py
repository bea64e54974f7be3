"""Snapshot: the state of a dataset at one version, replayed from the log."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from tensorhouse.errors import CorruptLogError
from tensorhouse.format.log.actions import Commit, Fragment, Metadata


@dataclass(frozen=True)
class Snapshot:
    """Replayed state: schema, live fragments in order, idempotency records."""

    version: int
    timestamp_ms: int
    metadata: Metadata
    fragments: tuple[Fragment, ...]
    next_fragment_id: int
    txns: Mapping[str, int] = field(default_factory=dict)

    @property
    def num_rows(self) -> int:
        return sum(f.num_rows for f in self.fragments)

    def apply(self, commit: Commit) -> Snapshot:
        """The snapshot after one more commit (validated: versions are contiguous)."""
        if commit.version != self.version + 1:
            raise CorruptLogError(f"commit {commit.version} does not follow version {self.version}")
        return replay(self, [commit])


def replay(base: Snapshot | None, commits: Iterable[Commit]) -> Snapshot:
    """Apply commits in order to ``base`` (None: start from an empty dataset)."""
    state = base
    for c in commits:
        metadata = state.metadata if state else None
        frags = {f.id: f for f in state.fragments} if state else {}
        next_id = state.next_fragment_id if state else 0
        txns = dict(state.txns) if state else {}
        if state is not None and c.version != state.version + 1:
            raise CorruptLogError(f"log gap: version {c.version} after {state.version}")
        if state is None and c.version != 0:
            raise CorruptLogError(f"log starts at version {c.version}, not 0")
        for a in c.actions:
            if a.kind == "metadata":
                metadata = a.body
            elif a.kind == "add_fragment":
                f: Fragment = a.body
                if f.id in frags or f.id < next_id:
                    raise CorruptLogError(f"version {c.version}: fragment id {f.id} reused")
                frags[f.id] = f
                next_id = f.id + 1
            elif a.kind == "remove_fragment":
                if a.body["id"] not in frags:
                    raise CorruptLogError(f"version {c.version}: removes unknown fragment {a.body['id']}")
                del frags[a.body["id"]]
            elif a.kind == "txn":
                txns[a.body["app_id"]] = a.body["version"]
        if metadata is None:
            raise CorruptLogError(f"version {c.version}: no metadata action before it")
        state = Snapshot(c.version, c.timestamp_ms, metadata, tuple(frags[k] for k in sorted(frags)), next_id, txns)
    if state is None:
        raise CorruptLogError("empty log")
    return state


def with_fragments(snapshot: Snapshot, fragments: tuple[Fragment, ...]) -> Snapshot:
    return replace(snapshot, fragments=fragments)
