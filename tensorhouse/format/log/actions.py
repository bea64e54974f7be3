"""Log actions: the stored vocabulary of the commit log.

A commit is one JSON document (``_log/<20-digit version>.json``) holding a
list of actions; replaying them in order gives a version's state. Every
document carries a format name and version; unknown fields are rejected
rather than ignored, and every number read is range-checked.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tensorhouse.errors import CorruptLogError
from tensorhouse.types import Schema

COMMIT_FORMAT = "tensorhouse.commit"
COMMIT_FORMAT_VERSION = 1
READER_VERSION = 1
WRITER_VERSION = 1
MAX_FRAGMENT_ROWS = (1 << 32) - 1


def document_crc(doc: Mapping[str, Any]) -> int:
    """crc32 of a document's canonical JSON: catches bit flips that still parse as JSON."""
    return zlib.crc32(json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode())


def _int(d: Mapping[str, Any], key: str, lo: int = 0, hi: int = 1 << 63) -> int:
    v = d.get(key)
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise CorruptLogError(f"field {key!r} must be an int in [{lo}, {hi}], got {v!r}")
    return v


def _str(d: Mapping[str, Any], key: str) -> str:
    v = d.get(key)
    if not isinstance(v, str):
        raise CorruptLogError(f"field {key!r} must be a string, got {v!r}")
    return v


def _check_path(path: str) -> str:
    """Data paths come from strangers' logs: relative, inside the dataset, no '..'."""
    parts = path.split("/")
    # NUL and ".tmp-" (names stores reserve for staged writes) would only fail later, in the store.
    if (not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts) or "\\" in path
            or "\x00" in path or parts[-1].startswith(".tmp-")):  # fmt: skip
        raise CorruptLogError(f"unsafe data path {path!r} in the log")
    return path


@dataclass(frozen=True)
class ChunkRef:
    """One chunk file of one column of a fragment."""

    path: str
    rows: int
    header_length: int
    size: int
    stats: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"path": self.path, "rows": self.rows, "header_length": self.header_length,
                             "size": self.size}  # fmt: skip
        if self.stats is not None:
            d["stats"] = dict(self.stats)
        return d

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> ChunkRef:
        stats = d.get("stats")
        if stats is not None and not isinstance(stats, Mapping):
            raise CorruptLogError(f"chunk stats must be an object, got {stats!r}")
        size = _int(d, "size", 0)
        header_length = _int(d, "header_length", 44, size)
        return ChunkRef(_check_path(_str(d, "path")), _int(d, "rows", 0, MAX_FRAGMENT_ROWS), header_length,
                        size, stats)  # fmt: skip


@dataclass(frozen=True)
class DeletionRef:
    """A fragment's deletion vector: a file listing every deleted row offset."""

    path: str
    count: int
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "count": self.count, "size": self.size}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> DeletionRef:
        return DeletionRef(_check_path(_str(d, "path")), _int(d, "count", 1, MAX_FRAGMENT_ROWS), _int(d, "size", 0))


@dataclass(frozen=True)
class Fragment:
    """Rows appended together. ``columns`` maps a field id to chunks covering every row.

    Fragments are immutable values: a delete or update produces a new value
    with the same id (a new deletion vector, new chunks for changed columns).
    """

    id: int
    num_rows: int
    columns: Mapping[int, tuple[ChunkRef, ...]]
    deletion: DeletionRef | None = None

    @property
    def num_deleted(self) -> int:
        return self.deletion.count if self.deletion else 0

    @property
    def num_live(self) -> int:
        return self.num_rows - self.num_deleted

    def files(self) -> list[str]:
        out = [c.path for chunks in self.columns.values() for c in chunks]
        if self.deletion:
            out.append(self.deletion.path)
        return out

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"id": self.id, "num_rows": self.num_rows,
                             "columns": {str(k): [c.to_dict() for c in v] for k, v in self.columns.items()}}  # fmt: skip
        if self.deletion:
            d["deletion"] = self.deletion.to_dict()
        return d

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Fragment:
        fid = _int(d, "id", 0, (1 << 31) - 1)
        n = _int(d, "num_rows", 0, MAX_FRAGMENT_ROWS)
        cols_raw = d.get("columns")
        if not isinstance(cols_raw, Mapping):
            raise CorruptLogError(f"fragment {fid}: columns must be an object")
        cols: dict[int, tuple[ChunkRef, ...]] = {}
        for k, chunks in cols_raw.items():
            if not (isinstance(k, str) and k.isdigit()) or not isinstance(chunks, list):
                raise CorruptLogError(f"fragment {fid}: bad column entry {k!r}")
            refs = tuple(ChunkRef.from_dict(c) for c in chunks)
            if sum(r.rows for r in refs) != n:
                raise CorruptLogError(f"fragment {fid}: chunks of field {k} cover "
                                      f"{sum(r.rows for r in refs)} rows, fragment has {n}")  # fmt: skip
            cols[int(k)] = refs
        deletion = DeletionRef.from_dict(d["deletion"]) if d.get("deletion") is not None else None
        if deletion is not None and deletion.count > n:
            raise CorruptLogError(f"fragment {fid}: {deletion.count} deletions in {n} rows")
        return Fragment(fid, n, cols, deletion)


@dataclass(frozen=True)
class Metadata:
    """Schema and settings. ``field_ids`` keeps chunk references stable across renames."""

    dataset_id: str
    schema: Schema
    field_ids: Mapping[str, int]
    next_field_id: int
    config: Mapping[str, Any] = field(default_factory=dict)

    def field_id(self, name: str) -> int:
        return self.field_ids[name]

    def to_dict(self) -> dict[str, Any]:
        return {"dataset_id": self.dataset_id, "schema": self.schema.to_dict(),
                "field_ids": dict(self.field_ids), "next_field_id": self.next_field_id,
                "config": dict(self.config)}  # fmt: skip

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> Metadata:
        schema_raw = d.get("schema")
        ids = d.get("field_ids")
        if not isinstance(schema_raw, list) or not isinstance(ids, Mapping):
            raise CorruptLogError("metadata needs a schema list and field_ids")
        schema = Schema.from_dict(schema_raw)
        if set(ids) != set(schema.names):
            raise CorruptLogError("metadata field_ids do not match the schema's columns")
        config = d.get("config", {})
        if not isinstance(config, Mapping):
            raise CorruptLogError("metadata config must be an object")
        return Metadata(_str(d, "dataset_id"), schema, {k: _int(ids, k) for k in ids},
                        _int(d, "next_field_id"), dict(config))  # fmt: skip


@dataclass(frozen=True)
class Action:
    """One tagged action: ``kind`` in KINDS, ``body`` its JSON payload (already validated)."""

    kind: str
    body: Any

    def to_dict(self) -> dict[str, Any]:
        body = self.body.to_dict() if hasattr(self.body, "to_dict") else self.body
        return {self.kind: body}


def protocol() -> Action:
    return Action("protocol", {"min_reader_version": READER_VERSION, "min_writer_version": WRITER_VERSION})


def parse_action(d: Any) -> Action:
    if not isinstance(d, Mapping) or len(d) != 1:
        raise CorruptLogError(f"an action is an object with one key, got {d!r:.200}")
    ((kind, body),) = d.items()
    if kind == "protocol":
        if _int(body, "min_reader_version") > READER_VERSION:
            raise CorruptLogError(f"dataset needs reader version {body['min_reader_version']}; "
                                  f"this tensorhouse reads {READER_VERSION}: upgrade tensorhouse")  # fmt: skip
        return Action(kind, dict(body))
    if kind == "metadata":
        return Action(kind, Metadata.from_dict(body))
    if kind in ("add_fragment", "replace_fragment"):
        return Action(kind, Fragment.from_dict(body))
    if kind == "remove_fragment":
        return Action(kind, {"id": _int(body, "id")})
    if kind == "txn":
        return Action(kind, {"app_id": _str(body, "app_id"), "version": _int(body, "version")})
    raise CorruptLogError(f"unknown action {kind!r} (written by a newer tensorhouse?)")


@dataclass(frozen=True)
class Commit:
    """One log entry."""

    version: int
    txn_id: str
    timestamp_ms: int
    operation: str
    read_version: int
    actions: tuple[Action, ...]
    message: str | None = None

    def to_dict(self) -> dict[str, Any]:
        doc = {"format": COMMIT_FORMAT, "format_version": COMMIT_FORMAT_VERSION, "version": self.version,
               "txn_id": self.txn_id, "timestamp_ms": self.timestamp_ms, "operation": self.operation,
               "read_version": self.read_version, "message": self.message,
               "actions": [a.to_dict() for a in self.actions]}  # fmt: skip
        doc["crc32"] = document_crc(doc)
        return doc

    @staticmethod
    def from_dict(d: Any, expected_version: int) -> Commit:
        if not isinstance(d, Mapping) or d.get("format") != COMMIT_FORMAT:
            raise CorruptLogError("not a tensorhouse commit document")
        if d.get("format_version") != COMMIT_FORMAT_VERSION:
            raise CorruptLogError(f"commit format version {d.get('format_version')!r} is not supported")
        body = {k: v for k, v in d.items() if k != "crc32"}
        if d.get("crc32") != document_crc(body):
            raise CorruptLogError("commit checksum mismatch (corrupt entry)")
        version = _int(d, "version")
        if version != expected_version:
            raise CorruptLogError(f"entry of version {expected_version} says it is version {version}")
        actions = d.get("actions")
        if not isinstance(actions, list):
            raise CorruptLogError("commit actions must be a list")
        msg = d.get("message")
        if msg is not None and not isinstance(msg, str):
            raise CorruptLogError("commit message must be a string")
        return Commit(version, _str(d, "txn_id"), _int(d, "timestamp_ms"), _str(d, "operation"),
                      _int(d, "read_version", -1), tuple(parse_action(a) for a in actions), msg)  # fmt: skip


#: Every action kind, and what it does to the replayed state:
#: protocol, metadata (replace schema/config), add_fragment (a fragment id not
#: live), replace_fragment (a live id: new deletion vector or chunks),
#: remove_fragment (a live id), txn (idempotency record of an app id).
KINDS = ("protocol", "metadata", "add_fragment", "replace_fragment", "remove_fragment", "txn")
