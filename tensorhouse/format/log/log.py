"""The commit log on a Store: list, read and atomically write entries.

A commit is written with ``put_if_absent``; when another writer took the
version first, the writer re-reads what won, lets its action builder check
for conflicts and rebase, and tries the next version (optimistic concurrency,
as in Delta). Every ``CHECKPOINT_INTERVAL`` versions the replayed state is
written as a checkpoint, so opening the latest version costs one listing,
one checkpoint and at most ``CHECKPOINT_INTERVAL - 1`` entries.

A branch's log lives under ``_branches/<name>/`` and continues the version
numbers of its parent after the version it was created from.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import time
import uuid
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, replace

import pyarrow as pa

from tensorhouse import limits
from tensorhouse.errors import (
    CommitConflictError,
    ConditionalPutUnsupportedError,
    CorruptLogError,
    DatasetNotFoundError,
    ObjectExistsError,
    ObjectNotFoundError,
    StorageError,
    TensorhouseError,
    VersionNotFoundError,
)
from tensorhouse.format.log.actions import Action, Commit, load_json, parse_entry
from tensorhouse.format.log.cache import CACHE, CacheKey
from tensorhouse.format.log.checkpoint import HEADER as CHECKPOINT_HEADER
from tensorhouse.format.log.checkpoint import MAGIC as CHECKPOINT_MAGIC
from tensorhouse.format.log.checkpoint import (
    CompactedEncoder,
    checkpoint_digest,
    checkpoint_fragments,
    encode_checkpoint,
    parse_checkpoint,
    parse_compacted,
)
from tensorhouse.format.log.snapshot import Snapshot, replay
from tensorhouse.format.threads import io_pool
from tensorhouse.storage.base import Store

log = logging.getLogger("tensorhouse.log")

LOG_DIR = "_log/"
CHECKPOINT_INTERVAL = 100
#: The hint naming the newest checkpoint, with its size and checksum (verified against the file it names).
HINT_NAME = "_last_checkpoint"
#: ``<a>.<b>.compacted`` (20 digits each): the state of version b against checkpoint a (whole when
#: small, else as changes to a), written by the committer of b, so that opening b reads this file
#: (and a, for changes) instead of b - a entries. Optional for correctness, like checkpoints.
#: On a local store written every ``COMPACTED_EVERY`` versions (a reader reads at most that many
#: entries more), the previous one deleted unless it is on the grid (kept for time travel); a local
#: open finds the newest by name. On a remote store written on the grid only (every
#: ``COMPACTED_GRID`` versions, never deleted by a commit); a remote open lists the log anyway, and
#: the listing names them: the hint, one file and at most ``COMPACTED_GRID`` - 1 entries (read in
#: parallel) anywhere in the interval. ``COMPACTED_GRID`` is a multiple of ``COMPACTED_EVERY``.
COMPACTED_SUFFIX = ".compacted"
COMPACTED_GRID = 10
#: Encoding and writing the file is ~3 ms of a ~15 ms commit: every 2nd commit pays it, not each
#: (every 5th cost a cold open up to 4 entry reads, ~0.6 ms each: over cold Lance at 1,000 commits).
COMPACTED_EVERY = 2
#: From this checkpoint size on (about 3,000 fragments), a cold open validates the checkpoint alone and
#: lays the compacted file's fragments over it, instead of validating the merged table.
OVERLAY_FROM_BYTES = 1 << 20
#: ``<20-digit version>.floor``: vacuum removed the log entries and checkpoints below that version
#: (written before it removes any). The highest one listed counts.
FLOOR_SUFFIX = ".floor"
#: Listing from a checkpoint asks for versions sharing all but the last LIST_BLOCK_DIGITS digits.
LIST_BLOCK_DIGITS = 3
LIST_BLOCK = 10**LIST_BLOCK_DIGITS
#: A re-open with a cached state reads up to this many new entries one by one before it lists instead.
PROBE_MAX = 8
#: The same on a local store (a failed read is one syscall), which also opens cold this way.
LOCAL_PROBE_MAX = 1000
LOCAL_PROBE_BATCH = 16
#: Missing entries asked for one by one after a second listing still shows a gap.
MAX_RECHECKS = 1000
#: Retries are bounded by time, not a small count: with W writers racing, each
#: round has one winner, so a fixed count of ~50 starves someone when W ~ 16
#: (seen: 16 processes x 200 appends on 2 cores). A blind append always wins eventually.
MAX_RETRIES = 100_000
COMMIT_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class _Hint:
    version: int
    size: int
    digest: int


def _missing(entries: Collection[int], lo: int) -> list[int]:
    """Versions from ``lo`` to the newest listed entry that the listing lacks."""
    top = max((v for v in entries if v >= lo), default=lo - 1)
    if top < lo or top - lo + 1 == sum(1 for v in entries if v >= lo):
        return []
    return sorted(set(range(lo, top + 1)) - set(entries))


def _parse_name(name: str, suffix: str) -> int | None:
    if len(name) == 20 + len(suffix) and name.endswith(suffix) and name[:20].isdigit():
        return int(name[:20])
    return None


def _parse_compacted_name(name: str) -> tuple[int, int] | None:
    """(a, b) of ``<a>.<b>.compacted`` (20 digits each), else None."""
    if (
        len(name) == 41 + len(COMPACTED_SUFFIX)
        and name.endswith(COMPACTED_SUFFIX)
        and name[20] == "."
        and name[:20].isdigit()
        and name[21:41].isdigit()
    ):
        return int(name[:20]), int(name[21:41])
    return None


@dataclass(frozen=True)
class PrunePlan:
    """The log files vacuum may delete so that every version from ``floor`` on (and every kept one) still opens.

    ``keys`` are (key, size), oldest entries first: deleting them in that
    order never leaves a reader with a checkpoint it needs missing.
    """

    floor: int
    keys: tuple[tuple[str, int], ...]


@dataclass
class _Listed:
    entries: set[int]
    checkpoints: set[int]
    floors: set[int]
    compacted: set[tuple[int, int]]


@dataclass(frozen=True)
class _Listing:
    """What a listing found: entries contiguous from its start, checkpoints, and compacted files (a, b)."""

    entries: list[int]
    checkpoints: list[int]
    compacted: frozenset[tuple[int, int]] = frozenset()


class _UnusableHint(Exception):
    """The checkpoint a hint names cannot be read: open from a full listing instead."""


class _LazyCheckpoint:
    """The hinted checkpoint, read on the first call only (a whole compacted file never needs it).

    ``table_only``: its fragment table, only checksummed (to merge with a compacted file of
    changes, validated once merged); else its validated state. A failure is ``_UnusableHint``.
    """

    def __init__(self, log: Log, hint: _Hint, *, table_only: bool) -> None:
        self._log, self._hint, self._table_only = log, hint, table_only
        self.value: pa.Table | Snapshot | None = None

    def __call__(self) -> pa.Table | Snapshot:
        if self.value is None:
            try:
                if self._table_only:
                    raw, where = self._log._checkpoint_bytes(self._hint.version, self._hint)
                    self.value = checkpoint_fragments(raw, where)
                else:
                    self.value = self._log.read_checkpoint(self._hint.version, hint=self._hint)
            except (CorruptLogError, ObjectNotFoundError, StorageError) as err:
                raise _UnusableHint(str(err)) from err
        return self.value


class AlreadyCommitted(TensorhouseError):
    """Raised by an action builder when its idempotent transaction is already in the log.

    A signal between the transaction and the log, caught in format/transaction.py;
    under TensorhouseError so that nothing tensorhouse raises escapes the hierarchy.
    """

    def __init__(self, version: int) -> None:
        self.version = version


#: Builds the actions of a commit against the latest snapshot. Called again on
#: every retry with the commits that won since the last try; raises
#: CommitConflictError when one of them makes it invalid.
ActionBuilder = Callable[[Snapshot | None, Sequence[Commit]], list[Action]]


@dataclass(frozen=True)
class CommitResult:
    """The outcome of :meth:`Log.commit`: the version and state now current, and whether this call wrote it."""

    version: int
    snapshot: Snapshot
    attempts: int
    committed: bool = True


#: A commit clock: seconds since the epoch, like ``time.time`` (the default).
Clock = Callable[[], float]


class Log:
    """The commit log of one dataset or branch.

    ``prefix`` is where this log's ``_log/`` folder lives inside the dataset's
    store ("" for the main branch); ``parent`` is the log and version a branch
    was created from.
    """

    def __init__(
        self,
        store: Store,
        *,
        prefix: str = "",
        parent: tuple[Log, int] | None = None,
        single_writer: bool = False,
        checkpoint_interval: int | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.store = store
        self.prefix = prefix
        self.parent = parent
        self.single_writer = single_writer
        #: Where commit timestamps come from (``time.time`` unless injected, e.g. by tests).
        self.clock: Clock = clock or time.time
        # None: the module default, read at commit time (tests shrink it).
        self._checkpoint_interval = checkpoint_interval
        self._compacted_encoder = CompactedEncoder()

    @property
    def checkpoint_interval(self) -> int:
        return (
            self._checkpoint_interval
            if self._checkpoint_interval is not None
            else CHECKPOINT_INTERVAL
        )

    @property
    def first_version(self) -> int:
        """The first version this log holds itself (0, or a branch's base + 1)."""
        return self.parent[1] + 1 if self.parent else 0

    def entry_key(self, version: int) -> str:
        return f"{self.prefix}{LOG_DIR}{version:020d}.json"

    def checkpoint_key(self, version: int) -> str:
        return f"{self.prefix}{LOG_DIR}{version:020d}.checkpoint"

    def compacted_key(self, base: int, version: int) -> str:
        return f"{self.prefix}{LOG_DIR}{base:020d}.{version:020d}{COMPACTED_SUFFIX}"

    @property
    def hint_key(self) -> str:
        return f"{self.prefix}{LOG_DIR}{HINT_NAME}"

    # -- listing -------------------------------------------------------------------
    def _list_once(self, start: int | None) -> _Listed:
        """Entry, checkpoint and floor versions listed from the block of ``start`` on (all when None).

        Names only, no stat. From a start, the listing asks for one block of
        ``LIST_BLOCK`` versions by key prefix (one request on S3), and the next
        block only while the last one is full.
        """
        out = _Listed(set(), set(), set(), set())
        n = len(self.prefix) + len(LOG_DIR)
        blocks = [None] if start is None else [start // LIST_BLOCK]
        while blocks:
            block = blocks.pop()
            name = "" if block is None else f"{block * LIST_BLOCK:020d}"[: 20 - LIST_BLOCK_DIGITS]
            for key in self.store.list_keys(self.prefix + LOG_DIR + name):
                tail = key[n:]
                if (v := _parse_name(tail, ".json")) is not None:
                    out.entries.add(v)
                elif (v := _parse_name(tail, ".checkpoint")) is not None:
                    out.checkpoints.add(v)
                elif (v := _parse_name(tail, FLOOR_SUFFIX)) is not None:
                    out.floors.add(v)
                elif (ab := _parse_compacted_name(tail)) is not None:
                    out.compacted.add(ab)
            if block is not None and (block + 1) * LIST_BLOCK - 1 in out.entries:
                blocks.append(block + 1)
        return out

    def _floor(self) -> int | None:
        """The version below which vacuum removed this log's entries (None: it never did)."""
        n = len(self.prefix) + len(LOG_DIR)
        floors = [
            v
            for key in self.store.list_keys(self.prefix + LOG_DIR)
            if (v := _parse_name(key[n:], FLOOR_SUFFIX)) is not None
        ]
        return max(floors, default=None)

    def _listing(self, start: int | None = None) -> _Listing:
        """Entry and checkpoint versions, sorted, with entries contiguous from ``start`` (or the first); compacted files.

        A listing is not a snapshot: an entry created while it runs can be
        missing from it while a later one is present. A gap is therefore
        re-checked, by listing again and then asking for each missing entry,
        before the log is called corrupt. A full listing starts at the
        floor vacuum left (``<version>.floor``): what is below it was removed
        on purpose, and may still be going while this lists.
        """
        listed = self._list_once(start)
        entries, checkpoints = listed.entries, listed.checkpoints
        lo = self.first_version if start is None else start
        if start is None and listed.floors:
            lo = max(lo, *listed.floors)
        missing = _missing(entries, lo)
        if missing:
            again = self._list_once(start)
            entries |= again.entries
            checkpoints |= again.checkpoints
            missing = _missing(entries, lo)
            for v in missing[:MAX_RECHECKS]:
                if self.store.exists(self.entry_key(v)):
                    entries.add(v)
            missing = _missing(entries, lo)
            if missing:
                floor = self._floor()
                if floor is not None and missing[0] < floor:
                    raise VersionNotFoundError(
                        f"{self.store.uri}: versions before {floor} were removed by vacuum "
                        f"(version {missing[0]} was asked for)"
                    )
                raise CorruptLogError(
                    f"{self.store.uri}: log has gaps (missing versions {missing[:5]})"
                )
        if lo > self.first_version:
            entries = {v for v in entries if v >= lo}
            checkpoints = {v for v in checkpoints if v >= lo}
        return _Listing(sorted(entries), sorted(checkpoints), frozenset(listed.compacted))

    def _hinted_listing(
        self, version: int | None, hint: _Hint | bool | None = False
    ) -> tuple[_Listing, _Hint | None]:
        """The listing needed to open ``version`` (latest when None): from the hinted checkpoint when it is usable.

        ``hint``: the hint already read (None: there is none), or False to read it here.
        """
        if hint is False:
            hint = self._read_hint()
        assert hint is None or isinstance(hint, _Hint)
        first = self.first_version
        if (
            hint is not None
            and hint.version >= first
            and (version is None or hint.version <= version)
        ):
            listing = self._listing(hint.version)
            entries = listing.entries
            if (
                entries
                and entries[0] <= hint.version <= entries[-1]
                and hint.version in listing.checkpoints
            ):
                return listing, hint
            log.debug(
                "%s: ignoring a _last_checkpoint hint of version %d", self.store.uri, hint.version
            )
        return self._listing(), None

    def _read_hint(self) -> _Hint | None:
        try:
            raw = limits.read_bounded(
                self.store,
                self.hint_key,
                "max_ref_bytes",
                what="checkpoint hint",
                error=CorruptLogError,
            )
        except (ObjectNotFoundError, StorageError, CorruptLogError):
            return None
        try:
            doc = load_json(raw, f"{self.store.uri}/{self.hint_key}")
            return _Hint(int(doc["version"]), int(doc["size"]), int(doc["xxh3"]))
        except (
            CorruptLogError,
            KeyError,
            TypeError,
            ValueError,
        ):  # a hint from an older tensorhouse, or garbage
            return None

    def versions(self) -> list[int]:
        """Every version readable through this log (a branch includes its parent's history)."""
        own = self._listing().entries
        inherited = (
            [v for v in self.parent[0].versions() if v <= self.parent[1]] if self.parent else []
        )
        return inherited + own

    def oldest_version(self) -> int:
        """The oldest version whose log entry remains: vacuum removes the entries of versions it no longer keeps.

        One existence check when nothing was removed; a listing otherwise.
        """
        first = self.first_version
        if not self.store.exists(self.entry_key(first)):
            own = self._listing().entries
            if own and own[0] > first:
                return own[0]
        return self.parent[0].oldest_version() if self.parent else first

    def latest_version(self) -> int:
        if self.store.is_local and self.parent is None:
            # The hinted checkpoint's entry, then one existence check per entry after it (no listing).
            hint = self._read_hint()
            if hint is not None and self.store.exists(self.entry_key(hint.version)):
                v = hint.version
                while self.store.exists(self.entry_key(v + 1)):
                    v += 1
                return v
        own = self._hinted_listing(None)[0].entries
        if own:
            return own[-1]
        if self.parent:
            return self.parent[1]
        raise DatasetNotFoundError(f"no tensorhouse dataset at {self.store.uri}")

    # -- pruning (vacuum) ------------------------------------------------------------
    def prune_plan(self, oldest_retained: int, keep: Collection[int] = ()) -> PrunePlan:
        """The log files no longer needed to open ``oldest_retained``, every later version, and each of ``keep``.

        Kept: the newest checkpoint at or before ``oldest_retained`` and every
        later one, the newest checkpoint at or before each version of ``keep``
        (tags, branch bases: they open as fast as before), the hinted one, and
        every entry from the oldest of those checkpoints on (the floor), so that
        each of those versions replays and ``history()`` lists every version
        from the floor on without a hole. Removed: older entries, checkpoints
        no kept version starts from (with their compacted files), and older floor markers. A kept
        version with no checkpoint at or before it replays from the log's start: no entry goes then.
        """
        first = self.first_version
        infos = self.store.list(self.prefix + LOG_DIR)
        n = len(self.prefix) + len(LOG_DIR)
        entries: dict[int, tuple[str, int]] = {}
        checkpoints: dict[int, tuple[str, int]] = {}
        floors: dict[int, tuple[str, int]] = {}
        compacted: list[tuple[int, str, int]] = []
        for info in infos:
            tail = info.key[n:]
            if (v := _parse_name(tail, ".json")) is not None:
                entries[v] = (info.key, info.size)
            elif (v := _parse_name(tail, ".checkpoint")) is not None:
                checkpoints[v] = (info.key, info.size)
            elif (v := _parse_name(tail, FLOOR_SUFFIX)) is not None:
                floors[v] = (info.key, info.size)
            elif (
                tail.endswith(COMPACTED_SUFFIX)
                and (a := _parse_name(tail[:20] + ".json", ".json")) is not None
            ):
                compacted.append((a, info.key, info.size))
        cps = sorted(c for c in checkpoints if c >= first)
        needed = {oldest_retained, *(v for v in keep if first <= v < oldest_retained)}
        starts: set[int] = set()
        for v in needed:
            below = [c for c in cps if c <= v]
            # Without a checkpoint at or before it, that version replays from the log's start.
            starts.add(below[-1] if below else first)
        hint = self._read_hint()
        if hint is not None:
            starts.add(hint.version)
        base = max((c for c in cps if c <= oldest_retained), default=first)
        floor = min(starts)
        victims = [entries[v] for v in sorted(entries) if v < floor]
        victims += [checkpoints[c] for c in sorted(checkpoints) if c < base and c not in starts]
        # A compacted file is read with its checkpoint: it goes with it.
        victims += [
            (key, size) for a, key, size in sorted(compacted) if a < base and a not in starts
        ]
        newest_floor = max(floors, default=None)
        victims += [floors[f] for f in sorted(floors) if f != newest_floor or f < floor]
        return PrunePlan(floor, tuple(victims))

    def prune(self, plan: PrunePlan) -> None:
        """Delete what ``plan`` names, after recording its floor (so that a listing meanwhile is not called corrupt)."""
        if not plan.keys:
            return
        if plan.floor > self.first_version:
            self.store.put(f"{self.prefix}{LOG_DIR}{plan.floor:020d}{FLOOR_SUFFIX}", b"")
        for key, _ in plan.keys:
            with contextlib.suppress(ObjectNotFoundError):  # a concurrent vacuum got it first
                self.store.delete(key)

    # -- reading -------------------------------------------------------------------
    def read(self, version: int) -> Commit:
        if self.parent and version <= self.parent[1]:
            return self.parent[0].read(version)
        key = self.entry_key(version)
        where = f"{self.store.uri}/{key}"
        try:
            # Size-checked before reading, depth- and digit-limited parse (tensorhouse.limits).
            raw = limits.read_bounded(
                self.store, key, "max_log_entry_bytes", what="log entry", error=CorruptLogError
            )
        except ObjectNotFoundError as err:
            raise VersionNotFoundError(
                f"{self.store.uri}: version {version} does not exist"
            ) from err
        try:
            return parse_entry(raw, version, where)
        except CorruptLogError:
            raise
        except (AttributeError, TypeError, KeyError, ValueError, RecursionError) as err:
            # A crafted entry (valid crc) of the wrong shape, e.g. a number where an object belongs.
            raise CorruptLogError(f"{where}: malformed entry: {err!r}") from err

    def read_range(self, start: int, stop: int) -> list[Commit]:
        """Entries ``start`` to ``stop - 1``, read in parallel."""
        return self._read_many(range(start, stop))

    def _read_many(self, versions: Sequence[int]) -> list[Commit]:
        if len(versions) <= 2:
            return [self.read(v) for v in versions]
        return list(io_pool().map(self.read, versions))

    def read_checkpoint(self, version: int, *, hint: _Hint | None = None) -> Snapshot:
        """The checkpoint of ``version``; with ``hint``, its bytes must also match the hint's size and checksum."""
        raw, where = self._checkpoint_bytes(version, hint)
        try:
            snap = parse_checkpoint(raw, where)
        except CorruptLogError:
            raise
        except (AttributeError, TypeError, KeyError, ValueError, RecursionError, OSError) as err:
            raise CorruptLogError(f"{where}: malformed checkpoint: {err!r}") from err
        if snap.version != version:
            raise CorruptLogError(f"{where}: checkpoint says version {snap.version}")
        return snap

    def _checkpoint_bytes(self, version: int, hint: _Hint | None) -> tuple[bytes, str]:
        key = self.checkpoint_key(version)
        # Size-checked before reading (tensorhouse.limits); its JSON parts go through load_json's limits.
        raw = limits.read_bounded(
            self.store, key, "max_checkpoint_bytes", what="checkpoint", error=CorruptLogError
        )
        where = f"{self.store.uri}/{key}"
        if hint is not None and (len(raw) != hint.size or checkpoint_digest(raw) != hint.digest):
            raise CorruptLogError(f"{where}: does not match its _last_checkpoint hint")
        return raw, where

    def snapshot(self, version: int | None = None) -> Snapshot:
        """The state at ``version`` (latest when None): newest valid checkpoint + later entries."""
        hint = self._read_hint()
        if version is None and hint is not None:
            found = self._latest_without_listing(hint)
            if found is not None:
                return found
        if version is not None and self.store.is_local and self.parent is None:
            found = self._version_without_listing(version)
            if found is not None:
                return found
        listing, hint = self._hinted_listing(version, hint)
        entries = listing.entries
        first = self.first_version
        if not entries and not self.parent:
            raise DatasetNotFoundError(f"no tensorhouse dataset at {self.store.uri}")
        latest = entries[-1] if entries else first - 1
        target = latest if version is None else version
        if target < 0 or target > latest:
            raise VersionNotFoundError(
                f"{self.store.uri}: version {version} does not exist (latest is {latest})"
            )
        if entries and first <= target < entries[0]:
            raise VersionNotFoundError(
                f"{self.store.uri}: version {version} was removed by vacuum (the oldest is {entries[0]})"
            )
        if self.parent and target < first:
            return self.parent[0].snapshot(target)
        try:
            return self._replay_to(target, listing, hint)
        except (
            _UnusableHint
        ):  # the listing started at the hinted checkpoint: list everything instead
            return self._replay_to(target, self._listing(), None)

    def _version_without_listing(self, version: int) -> Snapshot | None:
        """``version`` from the checkpoint of its interval and the entries up to it, read by name; None: list instead.

        Time travel on a local store: listing the log costs O(history), while
        checkpoints sit at multiples of the interval. Without that checkpoint
        (never written, or unreadable) the caller lists.
        """
        k = self.checkpoint_interval
        cp = version - version % k if k else 0
        base: Snapshot | None = None
        if cp > 0:
            base = self._checkpoint_state(cp)
            if base is None:
                return None
        if base is not None and version > base.version:
            base = self._compacted_upto(base, version) or base
        start = base.version + 1 if base is not None else 0
        try:
            commits = self._read_many(range(start, version + 1))
        except VersionNotFoundError:
            return None  # past the latest version: the listing says so precisely
        return replay(base, commits) if commits else base

    def _compacted_upto(self, base: Snapshot, version: int) -> Snapshot | None:
        """The state of ``version`` or the grid version before it, from a compacted file against ``base``."""
        a = base.version
        every = version - (version - a) % COMPACTED_EVERY
        grid = version - (version - a) % COMPACTED_GRID
        for b in (every, grid) if grid != every else (every,):
            if b > a and self.store.exists(self.compacted_key(a, b)):
                found = self._read_compacted(a, lambda: base, b)
                if found is not None:
                    return found
        return None

    def _checkpoint_state(self, version: int) -> Snapshot | None:
        """The state a checkpoint holds, from the process cache when its header's checksum matches one there."""
        key = self.checkpoint_key(version)
        try:
            head = self.store.get_range(key, 0, CHECKPOINT_HEADER.size)
        except (ObjectNotFoundError, StorageError):
            return None
        if len(head) < CHECKPOINT_HEADER.size or head[:8] != CHECKPOINT_MAGIC:
            return None  # a format 1 checkpoint, or garbage: the listing path reads or skips it
        _, digest, length = CHECKPOINT_HEADER.unpack_from(head)
        ck = self._cache_key(version, CHECKPOINT_HEADER.size + length, digest)
        hit = CACHE.get(ck)
        if hit is not None and hit[0].version == version:  # else a compacted state came first
            return hit[0]
        try:
            state = self.read_checkpoint(version)
        except (CorruptLogError, ObjectNotFoundError, StorageError) as err:
            log.debug("%s: checkpoint %d unusable: %s", self.store.uri, version, err)
            return None
        CACHE.put(ck, state)
        return state

    def _read_until_missing(self, start: int) -> list[Commit] | None:
        """Entries from ``start`` on, up to the first missing one; None when there are too many to read this way.

        Remote: one at a time, up to ``PROBE_MAX`` (each read is a request).
        Local: ``LOCAL_PROBE_BATCH`` at a time in parallel (a failed read is one syscall).
        """
        out: list[Commit] = []
        local = self.store.is_local
        batch = LOCAL_PROBE_BATCH if local else 1
        limit = LOCAL_PROBE_MAX if local else PROBE_MAX
        while True:
            first = start + len(out)
            # The first reads alone: usually nothing is new, or the few entries after the newest
            # compacted file (fewer than COMPACTED_EVERY); a read is cheaper than a pool round trip.
            got = (
                [self._read_or_none(first)]
                if batch == 1 or len(out) < COMPACTED_EVERY
                else list(io_pool().map(self._read_or_none, range(first, first + batch)))
            )
            for c in got:
                if c is None:
                    return out
                out.append(c)
                if len(out) > limit:
                    return None

    def _read_or_none(self, version: int) -> Commit | None:
        try:
            return self.read(version)
        except VersionNotFoundError:
            return None

    def _cache_key(self, version: int, size: int, digest: int) -> CacheKey:
        return CacheKey(self.store.uri, self.prefix, version, size, digest)

    def _latest_without_listing(self, hint: _Hint) -> Snapshot | None:
        """The latest state from the hinted checkpoint (cached, or read on a local store) and the entries after it.

        None: list instead. Versions are written in order (a writer takes version
        v + 1 only once v exists) and entries are never removed, so the entries
        after a known state are read one by one until one is missing: that one
        was not committed yet when it was asked for, and neither was any later
        one. This costs one failed read where a listing costs a LIST, and a
        local listing is O(history) (one directory holds every entry). On a
        remote store, more than ``PROBE_MAX`` new entries are listed and read in
        parallel instead; without a cached state, a remote open lists.
        """
        if hint.version < self.first_version:
            return None
        key = self._cache_key(hint.version, hint.size, hint.digest)
        hit = CACHE.get(key)
        if hit is not None:
            cp_state, newest = hit
        elif self.store.is_local:
            found = self._cold_state(hint)
            if found is None:
                return None
            cp_state, newest = found
        else:
            return None
        new = self._read_until_missing(newest.version + 1)
        if new is None:
            return None
        snap = replay(newest, new) if new else newest
        CACHE.put(key, cp_state, snap)
        return snap

    def _cold_state(self, hint: _Hint) -> tuple[Snapshot, Snapshot] | None:
        """(oldest, newest) states the hinted checkpoint and a compacted file against it give, read by name.

        None: unusable. A full compacted file (a small state) is all that is
        read: the checkpoint is not needed. Otherwise, for a small checkpoint,
        its fragments are only checksummed and merged with the compacted
        file's, and the merged table is validated once (validation is most of
        an open). A large one (``OVERLAY_FROM_BYTES``) is validated on its own
        and the file's few fragments are laid over it: copying and validating
        the merged table would cost about as much again.
        """
        large = hint.size >= OVERLAY_FROM_BYTES  # checked against the bytes when they are read
        checkpoint = _LazyCheckpoint(self, hint, table_only=not large)
        try:
            for b in self._compacted_candidates(hint.version):
                found = self._read_compacted(hint.version, checkpoint, b)
                if found is not None:
                    base = checkpoint.value if large and checkpoint.value is not None else found
                    assert isinstance(base, Snapshot)
                    return base, found
            # No compacted file: the checkpoint's whole state (read again if only its table was)
            snap = checkpoint() if large else _LazyCheckpoint(self, hint, table_only=False)()
            assert isinstance(snap, Snapshot)
        except (_UnusableHint, CorruptLogError, ObjectNotFoundError, StorageError) as err:
            log.debug("%s: hinted checkpoint unusable: %s", self.store.uri, err)
            return None
        except (AttributeError, TypeError, KeyError, ValueError, RecursionError, OSError) as err:
            log.debug("%s: hinted checkpoint malformed: %r", self.store.uri, err)
            return None
        return snap, snap

    def _replay_to(self, target: int, listing: _Listing, hint: _Hint | None) -> Snapshot:
        """The newest readable checkpoint at or before ``target`` (or a compacted file against it), plus the entries after it."""
        first = self.first_version
        usable = [c for c in listing.checkpoints if first <= c <= target]
        key = None
        if hint is not None and usable and usable[-1] == hint.version:
            # The hinted checkpoint is the one to start from: a state cached from it needs only newer entries.
            key = self._cache_key(hint.version, hint.size, hint.digest)
            hit = CACHE.get(key)
            if hit is not None:
                cp_state, newest = hit
                start = newest if newest.version <= target else cp_state
                if (
                    start.version <= target
                ):  # the oldest cached state can be past it (a compacted one)
                    snap = self._replay_from(start, target)
                    CACHE.put(key, cp_state, snap)
                    return snap
        if key is not None and hint is not None and target > hint.version:
            found = self._listed_compacted(hint, target, listing.compacted)
            if found is not None:
                snap = self._replay_from(found[1], target)
                CACHE.put(key, found[0], snap)
                return snap
        base: Snapshot | None = None
        for cp in reversed(usable):
            try:
                base = self.read_checkpoint(
                    cp, hint=hint if hint is not None and hint.version == cp else None
                )
                break
            except (CorruptLogError, ObjectNotFoundError) as err:
                # A checkpoint is only an accelerator: skip a bad one, replay instead.
                log.warning("skipping checkpoint: %s", err)
                if hint is not None:
                    raise _UnusableHint from err
        if base is None and hint is not None:
            raise _UnusableHint
        if base is None and self.parent:
            base = self.parent[0].snapshot(self.parent[1])
        if base is None:
            return replay(None, self._read_many(range(0, target + 1)))
        snap = self._replay_from(base, target)
        if key is not None and base.version == key.version:
            CACHE.put(key, base, snap)
        return snap

    def _listed_compacted(
        self, hint: _Hint, target: int, listed: Collection[tuple[int, int]]
    ) -> tuple[Snapshot, Snapshot] | None:
        """(oldest, newest) states from the newest listed compacted file at or before ``target``; None: none usable.

        What a listed open starts from (every cold open of a remote store):
        the listing names the files, so none is looked for. The hinted
        checkpoint is read only for a file of changes. A file deleted since
        the listing (a local writer replaced it, or vacuum removed it) is one
        failed read, and the grid file before it is tried.
        """
        a = hint.version
        checkpoint = _LazyCheckpoint(self, hint, table_only=False)
        newest = sorted((b for aa, b in listed if aa == a and a < b <= target), reverse=True)
        # the newest, then the newest grid file before it (grid files stay until vacuum)
        grid = [b for b in newest[1:] if (b - a) % COMPACTED_GRID == 0][:1]
        for b in newest[:1] + grid:
            try:
                found = self._read_compacted(a, checkpoint, b)
            except _UnusableHint:
                return None  # the caller reads the checkpoint again and says why it cannot
            if found is not None:
                base = checkpoint.value if checkpoint.value is not None else found
                assert isinstance(base, Snapshot)
                return base, found
        return None

    def _replay_from(self, base: Snapshot, target: int) -> Snapshot:
        if target <= base.version:
            return base
        return replay(base, self._read_many(range(base.version + 1, target + 1)))

    def read_since(self, version: int) -> list[Commit]:
        """Commits after ``version`` (used to rebase and to refresh): one listing, then the entries it names."""
        start = max(version + 1, self.first_version)
        entries = [v for v in self._listing(start).entries if v > version]
        return self._read_many(entries)

    def version_at(self, timestamp_ms: int) -> int:
        """The latest version committed at or before ``timestamp_ms`` (binary search; timestamps increase)."""
        versions: Sequence[int] = (
            range(self.oldest_version(), self.latest_version() + 1)
            if self.store.is_local and self.parent is None
            else self.versions()
        )
        if not versions:
            raise DatasetNotFoundError(f"no tensorhouse dataset at {self.store.uri}")
        lo, hi = 0, len(versions) - 1
        if self.read(versions[0]).timestamp_ms > timestamp_ms:
            raise VersionNotFoundError(
                f"{self.store.uri}: no version at or before that time (the first commit is later)"
            )
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.read(versions[mid]).timestamp_ms <= timestamp_ms:
                lo = mid
            else:
                hi = mid - 1
        return versions[lo]

    # -- writing -------------------------------------------------------------------
    def commit(
        self,
        base: Snapshot | None,
        build: ActionBuilder,
        *,
        operation: str,
        message: str | None = None,
    ) -> CommitResult:
        """Atomically commit the actions ``build`` returns, retrying on collisions.

        When ``build`` raises AlreadyCommitted (an idempotent write already in
        the log) nothing is written and the result, with ``committed=False``,
        holds the latest state. Raises CommitConflictError when a concurrent
        commit conflicts.
        """
        if not self.store.supports_conditional_put and not self.single_writer:
            raise ConditionalPutUnsupportedError(
                f"{self.store.uri} cannot write put-if-absent, so concurrent writers could overwrite each "
                "other's commits; open the dataset with single_writer=True if only one process writes"
            )
        txn_id = uuid.uuid4().hex
        snapshot = base
        winners: list[Commit] = []
        deadline = time.monotonic() + COMMIT_TIMEOUT_S
        for attempt in range(1, MAX_RETRIES + 1):
            if time.monotonic() > deadline:
                break
            try:
                actions = build(snapshot, winners)
            except AlreadyCommitted:
                assert snapshot is not None
                latest = replay(snapshot, self.read_since(snapshot.version))
                return CommitResult(latest.version, latest, attempt, committed=False)
            version = snapshot.version + 1 if snapshot else 0
            now = int(self.clock() * 1000)
            # Timestamps increase with versions so that time travel by timestamp is well defined.
            ts = max(now, snapshot.timestamp_ms + 1) if snapshot else now
            entry = Commit(
                version,
                txn_id,
                ts,
                operation,
                snapshot.version if snapshot else -1,
                tuple(actions),
                message,
            )
            data = entry.to_bytes()
            try:
                self._put(self.entry_key(version), data)
            except ObjectExistsError:
                won = self.read_since(snapshot.version if snapshot else -1)
                if not won:
                    raise CorruptLogError(
                        f"{self.store.uri}: version {version} exists but cannot be read"
                    ) from None
                mine = [c for c in won if c.txn_id == txn_id]
                if mine:  # our earlier attempt landed after all (an ambiguous outcome)
                    return self._finish(replay(snapshot, won[: won.index(mine[0]) + 1]), attempt)
                winners = [*winners, *won]
                snapshot = replay(snapshot, won)
                time.sleep(random.uniform(0, min(0.2, 0.002 * 2 ** min(attempt, 7))))
                continue
            except StorageError:
                # The PUT may or may not have landed: read the entry back and compare txn ids.
                try:
                    landed = self.read(version)
                except (VersionNotFoundError, StorageError, CorruptLogError):
                    landed = None
                if landed is not None and landed.txn_id == txn_id:
                    return self._finish(replay(snapshot, [landed]), attempt)
                raise
            return self._finish(replay(snapshot, [entry]), attempt)
        raise CommitConflictError(
            f"{self.store.uri}: gave up after {attempt} attempts under contention"
        )

    def _finish(self, snap: Snapshot, attempts: int) -> CommitResult:
        k = self.checkpoint_interval
        v = snap.version
        if k and v % k == 0 and v:
            try:
                self.write_checkpoint(snap)
                snap = replace(snap, since=(v, frozenset()))
            except StorageError as err:  # the commit stands; a checkpoint only speeds up opening
                log.warning("could not write checkpoint %d: %s", v, err)
        elif (
            k
            and snap.since is not None
            and snap.since[0] == v - v % k
            and snap.since[0]
            # A remote store writes the grid's files only (a PUT per 10 commits, as often as Delta
            # writes checkpoints by default): a PUT and a DELETE every 2nd commit cost 40-100% of
            # an S3 commit (moto), for a reader that lists the log anyway.
            and (v % k) % (COMPACTED_EVERY if self.store.is_local else COMPACTED_GRID) == 0
        ):
            self._write_compacted(snap)
        return CommitResult(v, snap, attempts)

    def _write_compacted(self, snap: Snapshot) -> None:
        """Store ``snap`` as changes to its checkpoint, and delete the previous version's unless it is on the grid."""
        assert snap.since is not None
        base, v = snap.since[0], snap.version
        try:
            # Not flushed to disk: a compacted file lost or torn in a crash is skipped (checksum).
            self.store.put_volatile(
                self.compacted_key(base, v), self._compacted_encoder.encode(snap)
            )
            prev = v - COMPACTED_EVERY
            if self.store.is_local and prev > base and (prev - base) % COMPACTED_GRID:
                with contextlib.suppress(ObjectNotFoundError):
                    self.store.delete(self.compacted_key(base, prev))
        except StorageError as err:  # the commit stands; this file only speeds up opening
            log.warning("could not write compacted log file %d.%d: %s", base, v, err)

    def _compacted_candidates(self, base: int) -> Iterator[int]:
        """Versions of the compacted files against checkpoint ``base``, newest first (found by name, lazily).

        The grid's files (every ``COMPACTED_GRID`` versions) are kept and
        written in order, so the newest is found by a binary search over their
        names; then the newest entry after it (entries are contiguous), whose
        compacted file (or the one up to ``COMPACTED_EVERY`` - 1 versions
        before it) is usually there. About 2 log2(grid points) existence
        checks, no listing. A file a writer skipped only makes this land lower.
        """
        exists = self.store.exists
        if not exists(self.entry_key(base + 1)):
            return  # nothing was committed after the checkpoint
        top = base + self.checkpoint_interval - 1
        lo, hi = 0, (top - base) // COMPACTED_GRID
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if exists(self.compacted_key(base, base + mid * COMPACTED_GRID)):
                lo = mid
            else:
                hi = mid - 1
        g = base + lo * COMPACTED_GRID
        lo, hi = max(g, base + 1), min(g + COMPACTED_GRID - 1, top)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if exists(self.entry_key(mid)):
                lo = mid
            else:
                hi = mid - 1
        for b in range(lo - (lo - base) % COMPACTED_EVERY, g, -COMPACTED_EVERY):
            if exists(self.compacted_key(base, b)):
                yield b
        if g > base:
            yield g

    def _read_compacted(
        self, base_version: int, base_fragments: Callable[[], pa.Table | Snapshot], version: int
    ) -> Snapshot | None:
        """The state of ``version`` from its compacted file against checkpoint ``base_version``; None if unusable."""
        key = self.compacted_key(base_version, version)
        where = f"{self.store.uri}/{key}"
        try:
            raw = limits.read_bounded(
                self.store,
                key,
                "max_checkpoint_bytes",
                what="compacted log file",
                error=CorruptLogError,
            )
            snap = parse_compacted(
                raw, where, base_version=base_version, base_fragments=base_fragments
            )
        except ObjectNotFoundError:
            return None  # the next commit replaced it meanwhile
        except (CorruptLogError, StorageError) as err:
            log.warning("skipping compacted log file: %s", err)
            return None
        if snap.version != version:
            log.warning("skipping compacted log file %s: it says version %d", where, snap.version)
            return None
        return snap

    def write_checkpoint(self, snap: Snapshot) -> None:
        """Store ``snap`` as the checkpoint of its version (kept if one exists) and point the hint at it."""
        data = encode_checkpoint(snap)
        key = self.checkpoint_key(snap.version)
        try:
            self._put(key, data)
        except (
            ObjectExistsError
        ):  # someone else wrote the same state: the hint must describe their bytes
            data = self.store.get(key)
        current = self._read_hint()
        if (
            current is not None
            and current.version > snap.version
            and self.store.exists(self.checkpoint_key(current.version))
        ):
            return  # an older checkpoint (written on demand from an old handle) must not pull the hint back
        digest = checkpoint_digest(data)
        hint = {"version": snap.version, "size": len(data), "xxh3": digest}
        self.store.put(self.hint_key, json.dumps(hint).encode())
        # The next open in this process starts from this state instead of reading the file back.
        state = replace(snap, since=(snap.version, frozenset()))
        CACHE.put(self._cache_key(snap.version, len(data), digest), state)

    def _put(self, key: str, data: bytes) -> None:
        if self.store.supports_conditional_put:
            self.store.put_if_absent(key, data)
        else:
            if self.store.exists(key):
                raise ObjectExistsError(f"{self.store.uri}/{key} exists")
            self.store.put(key, data)


def entry_key(version: int) -> str:
    """The key of a main-branch log entry."""
    return f"{LOG_DIR}{version:020d}.json"
