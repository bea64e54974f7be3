"""Checkpoint files: the replayed state of one version, so that opening never replays the whole log.

Format 2 (written now) is columnar, as Delta's Parquet checkpoints are: an
Arrow IPC file with one row per live fragment (see
:mod:`tensorhouse.format.log.fragments`) and the small rest of the state
(schema, idempotency records, indexes) as JSON in the schema metadata, behind
a 20-byte header::

    b"THCKPT02" | xxh3_64 of the body (u64 le) | body length (u64 le) | body (Arrow IPC file)

The checksum covers the raw bytes, so checking it costs one pass of xxh3
(0.1 ms for 3 MB; crc32 took 5 ms), not a re-serialisation. Format 1 checkpoints (one JSON document with a
sha256 over its canonical form) still read.

Compacted log files use the same layout. A small state (up to
``FULL_MAX_CHUNKS`` chunks) is stored whole, with ``"full": true``: opening
reads that one file and validates it, and never reads the checkpoint. A
larger one holds only the fragments changed since its checkpoint, laid over
the checkpoint when read. Both name the ids changed and removed since the
checkpoint, so a reader that only knows the second form (tensorhouse before
full files) merges a full file into the same state.
"""

from __future__ import annotations

import hashlib
import json
import struct
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pyarrow as pa
import xxhash

from tensorhouse.errors import CorruptLogError
from tensorhouse.format.log.actions import Fragment, IndexEntry, Metadata, load_json
from tensorhouse.format.log.fragments import FragmentColumns, by_id, to_table, upgraded
from tensorhouse.format.log.snapshot import Snapshot

MAGIC = b"THCKPT02"
HEADER = struct.Struct("<8sQQ")
STATE_KEY = b"tensorhouse.state"
#: A compacted file stores the whole state up to this many chunks (about 1 MB, see
#: ``log.OVERLAY_FROM_BYTES``): reading one file and validating it costs less than reading the
#: checkpoint too and validating their merge, and writing it every other commit stays cheap.
FULL_MAX_CHUNKS = 4096
LEGACY_FORMAT = "tensorhouse.checkpoint"


def encode_checkpoint(snap: Snapshot) -> bytes:
    """The stored bytes of ``snap``'s checkpoint."""
    return _encode(snap, to_table(snap.fragments), {})


def encode_compacted(snap: Snapshot) -> bytes:
    """The stored bytes of a compacted log file: ``snap`` as changes to the checkpoint it was replayed from.

    The same layout as a checkpoint, with ``base`` (the checkpoint's
    version), ``removed`` (ids removed since) and, for a full file,
    ``changed`` (ids added or replaced since) in the state. It holds every
    live fragment when they have at most ``FULL_MAX_CHUNKS`` chunks, and
    only those added or replaced since the checkpoint otherwise. Raises
    ValueError when ``snap`` was not replayed from a checkpoint.
    """
    return CompactedEncoder().encode(snap)


class CompactedEncoder:
    """Encodes the compacted files of successive versions, re-encoding only the fragments that changed.

    Consecutive versions share most of their changed fragments (an append adds
    one): the rows of the fragments that are the same objects as last time are
    taken from the previous table instead of being encoded again (encoding a
    fragment from Python costs ~25 us). A full file takes the other fragments'
    rows from the snapshot's arrays.
    """

    def __init__(self) -> None:
        self._base = -1
        self._frags: dict[int, tuple[Fragment, int]] = {}  # id -> (value, row in _table)
        self._table: pa.Table | None = None
        self._lock = threading.Lock()  # one Log may commit from several threads

    def encode(self, snap: Snapshot) -> bytes:
        with self._lock:
            return self._encode_locked(snap)

    def _encode_locked(self, snap: Snapshot) -> bytes:
        if snap.since is None:
            raise ValueError(f"version {snap.version} was not replayed from a checkpoint")
        base, ids = snap.since[0], sorted(snap.since[1])
        if base != self._base:
            self._base, self._frags, self._table = base, {}, None
        changed, live, removed = self._changed_rows(snap, ids)
        state: dict[str, Any] = {"base": base, "removed": removed}
        if _chunk_count(snap.fragments) > FULL_MAX_CHUNKS:
            return _encode(snap, changed, state)
        table = by_id(pa.concat_tables([_unchanged_rows(snap.fragments, ids), changed]))
        return _encode(snap, table, {**state, "changed": live, "full": True})

    def _changed_rows(
        self, snap: Snapshot, ids: list[int]
    ) -> tuple[pa.Table, list[int], list[int]]:
        """(rows of the live fragments among ``ids``, their ids, the ids no longer live), reusing last call's rows."""
        reuse: list[int] = []
        new: list[Fragment] = []
        removed: list[int] = []
        live: list[Fragment] = []
        for fid in ids:
            f = _lookup(snap, fid)
            if f is None:
                removed.append(fid)
                continue
            live.append(f)
            old = self._frags.get(fid)
            if (
                old is not None and old[0] is f
            ):  # fragments are immutable: the same object, the same row
                reuse.append(old[1])
            else:
                new.append(f)
        parts = []
        if reuse and self._table is not None:
            parts.append(self._table.take(pa.array(reuse, pa.int64())))
        if new or not parts:
            parts.append(to_table(new))
        table = by_id(pa.concat_tables(parts) if len(parts) > 1 else parts[0])
        self._table = table
        self._frags = {
            f.id: (f, i) for i, f in enumerate(live)
        }  # live is in id order, as the table
        return table, [f.id for f in live], removed


def _unchanged_rows(fragments: Sequence[Fragment], ids: list[int]) -> pa.Table:
    """The rows of the live fragments not among ``ids`` (taken from the arrays when columnar)."""
    if isinstance(fragments, FragmentColumns):
        return fragments.table_without(np.asarray(ids, np.int64))
    skip = set(ids)
    return to_table([f for f in fragments if f.id not in skip])


def _chunk_count(fragments: Sequence[Fragment]) -> int:
    if isinstance(fragments, FragmentColumns):
        return fragments.chunk_count()
    return sum(len(refs) for f in fragments for refs in f.columns.values())


def _lookup(snap: Snapshot, fid: int) -> Fragment | None:
    if isinstance(snap.fragments, FragmentColumns):
        return snap.fragments.lookup(fid)
    return next((x for x in snap.fragments if x.id == fid), None)


def _encode(snap: Snapshot, table: pa.Table, extra: Mapping[str, Any]) -> bytes:
    state = {
        "version": snap.version,
        "timestamp_ms": snap.timestamp_ms,
        "next_fragment_id": snap.next_fragment_id,
        "metadata": snap.metadata.to_dict(),
        "txns": dict(snap.txns),
        "indexes": [e.to_dict() for e in snap.indexes.values()],
        **extra,
    }
    table = table.replace_schema_metadata(
        {STATE_KEY: json.dumps(state, separators=(",", ":")).encode()}
    )
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    body = sink.getvalue().to_pybytes()
    return HEADER.pack(MAGIC, xxhash.xxh3_64_intdigest(body), len(body)) + body


def checkpoint_digest(raw: bytes) -> int:
    """The body checksum a checkpoint's header records (0 for a format 1 checkpoint); the hint repeats it."""
    if raw[:8] != MAGIC or len(raw) < HEADER.size:
        return 0
    return int(HEADER.unpack_from(raw)[1])


def parse_checkpoint(raw: bytes, where: str) -> Snapshot:
    """Parse and validate a checkpoint's stored bytes (either format); raises CorruptLogError naming ``where``."""
    if raw[:1] == b"{":
        return _parse_legacy(raw, where)
    table, state = _read(raw, where)
    if "base" in state:
        raise CorruptLogError(f"{where}: a compacted log file, not a checkpoint")
    return _snapshot(table, state, where)


def checkpoint_fragments(raw: bytes, where: str) -> pa.Table:
    """A format 2 checkpoint's fragment table, checksummed and Arrow-validated but not yet checked as fragments.

    For :func:`parse_compacted`, which checks the fragments it builds from it.
    """
    if raw[:1] == b"{":
        return to_table(_parse_legacy(raw, where).fragments)
    return _read(raw, where, state=False)[0]


def parse_compacted(
    raw: bytes,
    where: str,
    *,
    base_version: int,
    base_fragments: Callable[[], pa.Table | Snapshot],
) -> Snapshot:
    """The state a compacted log file holds, against checkpoint ``base_version``.

    A full file (see the module docstring) is validated on its own, and
    ``base_fragments`` is never called. Otherwise ``base_fragments()`` gives
    the checkpoint's fragment table, only checksummed (see
    :func:`checkpoint_fragments`): the fragments that changed are replaced by
    the file's, those removed are dropped, and the merged table is validated
    once, as a checkpoint's is. Or it gives the checkpoint's validated state:
    then only the file's fragments are validated and laid over it (cheaper for
    a large checkpoint, whose merged table would be copied and validated
    again). Raises CorruptLogError naming ``where``; what ``base_fragments``
    raises propagates.
    """
    table, state = _read(raw, where)
    removed = _ids(state, "removed", base_version, where)
    if state.get("full") is True:
        changed = _ids(state, "changed", base_version, where)
        snap = _snapshot(table, state, where)  # validation upgrades a table from before group files
        if snap.version <= base_version:
            raise CorruptLogError(f"{where}: version {snap.version} is not after {base_version}")
        return replace(snap, since=(base_version, frozenset(changed) | frozenset(removed)))
    base = base_fragments()
    if isinstance(base, Snapshot):
        return _overlay(table, state, removed, base, where)
    return _merged(table, state, removed, base_version, base, where)


def _overlay(
    table: pa.Table, state: Mapping[str, Any], removed: list[int], base: Snapshot, where: str
) -> Snapshot:
    part = _snapshot(upgraded(table), state, where)
    if part.version <= base.version:
        raise CorruptLogError(f"{where}: version {part.version} is not after {base.version}")
    if part.next_fragment_id < base.next_fragment_id:  # ids are never handed out twice
        raise CorruptLogError(f"{where}: next fragment id {part.next_fragment_id} went back")
    changes: dict[int, Fragment | None] = dict.fromkeys(removed)
    changes.update((f.id, f) for f in part.fragments)  # at most the changes of one interval
    fragments = FragmentColumns.of(base.fragments, next_fragment_id=base.next_fragment_id)
    return replace(
        part,
        fragments=fragments.with_overlay(changes),
        since=(base.version, frozenset(changes)),
    )


def _ids(state: Mapping[str, Any], key: str, base_version: int, where: str) -> list[int]:
    """A compacted file's list of fragment ids under ``key``, after checking it was written against ``base_version``."""
    try:
        if state.get("base") != base_version:
            raise CorruptLogError(
                f"written against version {state.get('base')!r}, not {base_version}"
            )
        ids = state.get(key)
        # type() is exact: a bool is no id. One pass in C per check, not a Python test per id.
        if not isinstance(ids, list) or (
            ids and (set(map(type, ids)) != {int} or min(ids) < 0 or max(ids) >= 1 << 31)
        ):
            raise CorruptLogError(f"{key} must be a list of fragment ids")
    except CorruptLogError as err:
        raise CorruptLogError(f"{where}: malformed compacted file: {err}") from err
    return ids


def _merged(
    table: pa.Table,
    state: Mapping[str, Any],
    removed: list[int],
    base_version: int,
    base_fragments: pa.Table,
    where: str,
) -> Snapshot:
    # A checkpoint written before group files has chunks without a "part": bring both to one schema.
    table, base_fragments = upgraded(table), upgraded(base_fragments)
    if not table.schema.equals(base_fragments.schema):
        raise CorruptLogError(f"{where}: fragments of another schema than its checkpoint's")
    changed = table.column("id").to_numpy()
    drop = np.union1d(changed, np.asarray(removed, np.int64))
    base_ids = base_fragments.column("id").to_numpy()
    if (
        drop.size and base_ids.size and drop[0] <= base_ids[-1]
    ):  # not only appends: drop the old rows
        base_fragments = base_fragments.filter(pa.array(~np.isin(base_ids, drop)))
    merged = by_id(pa.concat_tables([base_fragments, table]))  # appends only keep the id order
    snap = _snapshot(merged, state, where)
    if snap.version <= base_version:
        raise CorruptLogError(f"{where}: version {snap.version} is not after {base_version}")
    return replace(snap, since=(base_version, frozenset(drop.tolist())))


def _read(raw: bytes, where: str, *, state: bool = True) -> tuple[pa.Table, Mapping[str, Any]]:
    """A format 2 file's fragment table (without its metadata) and its state, checksummed and Arrow-validated.

    ``state=False``: the state is not parsed (an empty mapping comes back).
    """
    if len(raw) < HEADER.size:
        raise CorruptLogError(f"{where}: truncated checkpoint")
    magic, digest, length = HEADER.unpack_from(raw)
    if magic != MAGIC:
        raise CorruptLogError(f"{where}: not a tensorhouse checkpoint of a known format")
    body = memoryview(raw)[HEADER.size :]
    if len(body) != length or xxhash.xxh3_64_intdigest(body) != digest:
        raise CorruptLogError(f"{where}: checkpoint checksum mismatch (torn or corrupt)")
    try:
        table = pa.ipc.open_file(pa.py_buffer(body)).read_all()
        # Full validation: a resealed body can carry offsets past its buffers, which Arrow would read out of bounds.
        table.validate(full=True)
    except (pa.ArrowException, OSError) as err:
        raise CorruptLogError(f"{where}: unreadable checkpoint: {err}") from err
    state_raw = (table.schema.metadata or {}).get(STATE_KEY)
    if state_raw is None:
        raise CorruptLogError(f"{where}: checkpoint has no state")
    if not state:
        if (
            b'"base":' in state_raw
        ):  # only compacted files have it (a checkpoint's state names no key so)
            raise CorruptLogError(f"{where}: a compacted log file, not a checkpoint")
        return table.replace_schema_metadata(None), {}
    parsed = load_json(state_raw, where)
    if not isinstance(parsed, Mapping):
        raise CorruptLogError(f"{where}: checkpoint state must be an object")
    return table.replace_schema_metadata(None), parsed


def _snapshot(table: pa.Table, state: Mapping[str, Any], where: str) -> Snapshot:
    """The validated state of a fragment table and the rest of a checkpoint's state."""
    try:
        next_id = _int(state, "next_fragment_id")
        metadata = Metadata.from_dict(state["metadata"])
        fragments = FragmentColumns.from_table(
            table, next_fragment_id=next_id, next_field_id=metadata.next_field_id
        )
        version = _int(state, "version")
        return Snapshot(
            version,
            _int(state, "timestamp_ms"),
            metadata,
            fragments,
            next_id,
            _txns(state.get("txns")),
            _indexes(state.get("indexes", [])),
            (version, frozenset()),
        )
    except (CorruptLogError, KeyError, TypeError, ValueError) as err:
        raise CorruptLogError(f"{where}: malformed checkpoint: {err}") from err


def _int(d: Mapping[str, Any], key: str) -> int:
    v = d.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not 0 <= v < 1 << 63:
        raise CorruptLogError(f"checkpoint field {key!r} must be a non-negative int, got {v!r:.50}")
    return v


def _txns(raw: Any) -> dict[str, int]:
    if not isinstance(raw, Mapping) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in raw.values()
    ):
        raise CorruptLogError("checkpoint txns must map app ids to ints")
    return dict(raw)


def _indexes(raw: Any) -> dict[str, IndexEntry]:
    if not isinstance(raw, list) or not all(isinstance(e, Mapping) for e in raw):
        raise CorruptLogError("checkpoint indexes must be a list of objects")
    return {e.name: e for e in (IndexEntry.from_dict(x) for x in raw)}


def _parse_legacy(raw: bytes, where: str) -> Snapshot:
    """Format 1: ``{"format", "format_version": 1, "sha256", "state"}`` (written before columnar checkpoints)."""
    doc = load_json(raw, where)
    try:
        if doc.get("format") != LEGACY_FORMAT or doc.get("format_version") != 1:
            raise CorruptLogError("not a tensorhouse checkpoint of a known version")
        state = doc["state"]
        digest = hashlib.sha256(
            json.dumps(state, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
        if digest != doc.get("sha256"):
            raise CorruptLogError("checkpoint checksum mismatch")
        return Snapshot.from_dict(state)
    except (KeyError, TypeError, AttributeError) as err:
        raise CorruptLogError(f"{where}: unreadable checkpoint: {err!r}") from err
    except CorruptLogError as err:
        raise CorruptLogError(f"{where}: {err}") from err
