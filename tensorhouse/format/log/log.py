"""The commit log on a Store: list, read and atomically write entries.

A commit is written with ``put_if_absent``; when another writer took the
version first, the writer re-reads what won, checks for conflicts, rebases
its actions and tries the next version (optimistic concurrency, as Delta).
"""

from __future__ import annotations

import json
import random
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from tensorhouse.errors import (
    CommitConflictError,
    ConditionalPutUnsupportedError,
    CorruptLogError,
    DatasetNotFoundError,
    ObjectExistsError,
    ObjectNotFoundError,
    StorageError,
    VersionNotFoundError,
)
from tensorhouse.format.log.actions import Action, Commit
from tensorhouse.format.log.snapshot import Snapshot, replay
from tensorhouse.storage.base import Store

LOG_DIR = "_log/"
#: Largest JSON entry we agree to parse (a stranger's log must not exhaust memory).
MAX_ENTRY_BYTES = 256 << 20
MAX_RETRIES = 50


def entry_key(version: int) -> str:
    return f"{LOG_DIR}{version:020d}.json"


def parse_entry_key(key: str) -> int | None:
    name = key[len(LOG_DIR) :] if key.startswith(LOG_DIR) else None
    if name and len(name) == 25 and name.endswith(".json") and name[:20].isdigit():
        return int(name[:20])
    return None


#: Builds the actions of a commit against the latest snapshot. Called again on
#: every retry; raises CommitConflictError when a winning commit makes it invalid.
ActionBuilder = Callable[[Snapshot | None, Sequence[Commit]], list[Action]]


@dataclass
class CommitResult:
    version: int
    snapshot: Snapshot
    attempts: int


class Log:
    """The commit log of one dataset (or branch) rooted in a Store."""

    def __init__(self, store: Store, *, single_writer: bool = False) -> None:
        self.store = store
        self.single_writer = single_writer

    # -- reading ---------------------------------------------------------------
    def versions(self) -> list[int]:
        """Every committed version, ascending (one listing)."""
        out = [v for info in self.store.list(LOG_DIR) if (v := parse_entry_key(info.key)) is not None]
        out.sort()
        return out

    def read(self, version: int) -> Commit:
        key = entry_key(version)
        try:
            raw = self.store.get(key)
        except ObjectNotFoundError as err:
            raise VersionNotFoundError(f"{self.store.uri}: version {version} does not exist") from err
        if len(raw) > MAX_ENTRY_BYTES:
            raise CorruptLogError(f"{self.store.uri}/{key}: entry of {len(raw)} bytes exceeds the limit")
        try:
            doc = json.loads(raw)
        except (UnicodeDecodeError, json.JSONDecodeError) as err:
            raise CorruptLogError(f"{self.store.uri}/{key}: not valid JSON (torn or corrupt entry): {err}") from err
        try:
            return Commit.from_dict(doc, version)
        except CorruptLogError as err:
            raise CorruptLogError(f"{self.store.uri}/{key}: {err}") from err

    def snapshot(self, version: int | None = None) -> Snapshot:
        """Replay the log up to ``version`` (latest when None)."""
        versions = self.versions()
        if not versions:
            raise DatasetNotFoundError(f"no tensorhouse dataset at {self.store.uri}")
        if versions != list(range(len(versions))):
            missing = sorted(set(range(versions[-1] + 1)) - set(versions))
            raise CorruptLogError(f"{self.store.uri}: log has gaps (missing versions {missing[:5]})")
        target = versions[-1] if version is None else version
        if target < 0 or target > versions[-1]:
            raise VersionNotFoundError(
                f"{self.store.uri}: version {version} does not exist (versions 0..{versions[-1]})"
            )
        return replay(None, (self.read(v) for v in range(target + 1)))

    def read_since(self, version: int) -> list[Commit]:
        """Commits after ``version`` (used to rebase and to refresh)."""
        out = []
        v = version + 1
        while True:
            try:
                out.append(self.read(v))
            except VersionNotFoundError:
                return out
            v += 1

    # -- writing ---------------------------------------------------------------
    def commit(self, base: Snapshot | None, build: ActionBuilder, *, operation: str,
               message: str | None = None) -> CommitResult:  # fmt: skip
        """Atomically commit the actions ``build`` returns, retrying on collisions."""
        if not self.store.supports_conditional_put and not self.single_writer:
            raise ConditionalPutUnsupportedError(
                f"{self.store.uri} cannot write put-if-absent, so concurrent writers could overwrite each "
                "other's commits; open the dataset with single_writer=True if only one process writes"
            )
        txn_id = uuid.uuid4().hex
        snapshot = base
        winners: list[Commit] = []
        for attempt in range(1, MAX_RETRIES + 1):
            actions = build(snapshot, winners)
            version = snapshot.version + 1 if snapshot else 0
            now = int(time.time() * 1000)
            # Timestamps increase with versions so that time travel by timestamp is well defined.
            ts = max(now, snapshot.timestamp_ms + 1) if snapshot else now
            entry = Commit(version, txn_id, ts, operation, snapshot.version if snapshot else -1,
                           tuple(actions), message)  # fmt: skip
            data = json.dumps(entry.to_dict(), separators=(",", ":")).encode()
            try:
                self._put(entry_key(version), data)
            except ObjectExistsError:
                won = self.read_since(snapshot.version if snapshot else -1)
                if not won:
                    raise CorruptLogError(f"{self.store.uri}: version {version} exists but cannot be read") from None
                if any(c.txn_id == txn_id for c in won):
                    # Our own earlier attempt landed (an ambiguous outcome): done.
                    return self._landed(base, won, txn_id, attempt)
                winners = winners + won
                snapshot = replay(snapshot, won)
                time.sleep(random.uniform(0, min(0.2, 0.002 * 2**min(attempt, 7))))
                continue
            except StorageError:
                # The PUT may or may not have landed: read it back and compare txn ids.
                try:
                    landed = self.read(version)
                except (VersionNotFoundError, StorageError, CorruptLogError):
                    raise
                if landed.txn_id == txn_id:
                    return CommitResult(version, replay(snapshot, [landed]), attempt)
                raise
            return CommitResult(version, replay(snapshot, [entry]), attempt)
        raise CommitConflictError(f"{self.store.uri}: gave up after {MAX_RETRIES} attempts under contention")

    def _landed(self, base: Snapshot | None, won: list[Commit], txn_id: str, attempt: int) -> CommitResult:
        snap = base
        for c in won:
            snap = replay(snap, [c])
            if c.txn_id == txn_id:
                return CommitResult(c.version, snap, attempt)
        raise AssertionError("unreachable")

    def _put(self, key: str, data: bytes) -> None:
        if self.store.supports_conditional_put:
            self.store.put_if_absent(key, data)
        else:
            if self.store.exists(key):
                raise ObjectExistsError(f"{self.store.uri}/{key} exists")
            self.store.put(key, data)
