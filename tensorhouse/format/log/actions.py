"""Log actions: the stored vocabulary of the commit log.

A commit is one JSON document (``_log/<20-digit version>.json``) holding a
list of actions; replaying them in order gives a version's state. Each action
kind is one frozen dataclass (``AddFragment``, ``RemoveFragment``,
``SetMetadata``, ...); :func:`encode_action` and :func:`decode_action` are the
only places that know their JSON form. Every document carries a format name
and version; unknown action kinds are rejected rather than ignored, and every
number read is range-checked.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tensorhouse import limits
from tensorhouse.errors import CorruptLogError
from tensorhouse.types import Schema

COMMIT_FORMAT = "tensorhouse.commit"
#: The commit document version written. 1: the first vocabulary; 2 adds the restore, add_index and
#: drop_index actions; 3 moves the crc32 first and computes it over the raw bytes of the rest
#: (no re-serialisation to check it). Readers accept every version up to this one.
COMMIT_FORMAT_VERSION = 3
READABLE_COMMIT_FORMATS = (1, 2, 3)
#: How a format 3 entry starts: its crc32 covers ``b"{" + everything after the first comma``.
RAW_CRC_PREFIX = b'{"crc32":'
READER_VERSION = 1
WRITER_VERSION = 1
MAX_FRAGMENT_ROWS = (1 << 32) - 1


#: Largest JSON document we agree to parse (a stranger's log must not exhaust memory): see tensorhouse.limits.
MAX_ENTRY_BYTES = limits.Limits().max_log_entry_bytes


def load_json(raw: bytes | str, where: str) -> Any:
    """Parse one JSON document of the log (an entry, a hint, a checkpoint's state): the one place that does.

    Raises CorruptLogError naming ``where`` for oversized, too deeply nested or
    invalid input (including integers of more digits than Python converts);
    the limits are ``max_log_entry_bytes`` and ``max_json_depth``.
    """
    return limits.parse_json(
        raw,
        where=where,
        what="log document (torn or corrupt?)",
        error=CorruptLogError,
        size_limit="max_log_entry_bytes",
    )


def document_crc(doc: Mapping[str, Any]) -> int:
    """crc32 of a document's canonical JSON: catches bit flips that still parse as JSON."""
    return zlib.crc32(
        json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()
    )


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
    if (
        not path
        or path.startswith("/")
        or any(p in ("", ".", "..") for p in parts)
        or "\\" in path
        or "\x00" in path
        or parts[-1].startswith(".tmp-")
    ):
        raise CorruptLogError(f"unsafe data path {path!r} in the log")
    return path


#: A group file's column chunk checksum: xxh3-64 of its bytes, as 16 lower-case hex digits.
_CHECKSUM_CHARS = frozenset("0123456789abcdef")


def _checksum(d: Mapping[str, Any], key: str) -> str:
    v = _str(d, key)
    if len(v) != 16 or not set(v) <= _CHECKSUM_CHARS:
        raise CorruptLogError(f"field {key!r} must be 16 hex digits, got {v!r}")
    return v


@dataclass(frozen=True)
class GroupPart:
    """Where a chunk lies inside a group file (a plain Parquet file holding a fragment's tabular columns).

    The chunk is the column ``column`` (its physical name: ``f<field id>``,
    stable under rename) of row group ``row_group``; its bytes (every page of
    its column chunks, which are contiguous) are ``[offset, offset + size)``
    of a file of ``file_size`` bytes, ``size`` being the ChunkRef's.
    ``checksum`` (xxh3-64 of those bytes) and ``footer_checksum`` (of the
    file's Parquet footer) let a reader refuse a flipped byte anywhere it
    reads, page headers and footer included, before decoding.
    """

    row_group: int
    column: str
    offset: int
    file_size: int
    checksum: str
    footer_checksum: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "row_group": self.row_group,
            "column": self.column,
            "offset": self.offset,
            "file_size": self.file_size,
            "checksum": self.checksum,
            "footer_checksum": self.footer_checksum,
        }

    @staticmethod
    def from_dict(d: Any, size: int) -> GroupPart:
        if not isinstance(d, Mapping):
            raise CorruptLogError(f"chunk part must be an object, got {d!r}")
        column = _str(d, "column")
        if not (0 < len(column) <= 64 and column.isascii() and column.isidentifier()):
            raise CorruptLogError(f"bad physical column name {column!r} in the log")
        file_size = _int(d, "file_size", 12)
        # PAR1 first; the footer, its length and PAR1 last: a column chunk lies between.
        offset = _int(d, "offset", 4, file_size - 8 - size)
        return GroupPart(
            _int(d, "row_group", 0, (1 << 31) - 1),
            column,
            offset,
            file_size,
            _checksum(d, "checksum"),
            _checksum(d, "footer_checksum"),
        )


@dataclass(frozen=True)
class ChunkRef:
    """One chunk of one column of a fragment: a chunk file, or (``part`` set) a column chunk of a group file.

    For a group file's chunk, ``path`` is the group file, ``size`` the bytes of
    this chunk inside it, and ``header_length`` 0 (there is no chunk header).
    """

    path: str
    rows: int
    header_length: int
    size: int
    stats: Mapping[str, Any] | None = None
    part: GroupPart | None = None

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "path": self.path,
            "rows": self.rows,
            "header_length": self.header_length,
            "size": self.size,
        }
        if self.stats is not None:
            d["stats"] = dict(self.stats)
        if self.part is not None:
            d["part"] = self.part.to_dict()
        return d

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> ChunkRef:
        stats = d.get("stats")
        if stats is not None and not isinstance(stats, Mapping):
            raise CorruptLogError(f"chunk stats must be an object, got {stats!r}")
        size = _int(d, "size", 0)
        part = GroupPart.from_dict(d["part"], size) if d.get("part") is not None else None
        header_length = _int(d, "header_length", 44, size) if part is None else 0
        if part is not None and d.get("header_length") != 0:
            raise CorruptLogError("a group file's chunk has header_length 0")
        return ChunkRef(
            _check_path(_str(d, "path")),
            _int(d, "rows", 0, MAX_FRAGMENT_ROWS),
            header_length,
            size,
            stats,
            part,
        )


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
        return DeletionRef(
            _check_path(_str(d, "path")), _int(d, "count", 1, MAX_FRAGMENT_ROWS), _int(d, "size", 0)
        )


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
        d: dict[str, Any] = {
            "id": self.id,
            "num_rows": self.num_rows,
            "columns": {str(k): [c.to_dict() for c in v] for k, v in self.columns.items()},
        }
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
                raise CorruptLogError(
                    f"fragment {fid}: chunks of field {k} cover "
                    f"{sum(r.rows for r in refs)} rows, fragment has {n}"
                )
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

    def with_columns(self, columns: Schema) -> Metadata:
        """This metadata with ``columns`` appended, each under the next unused field id."""
        start = self.next_field_id
        return Metadata(
            self.dataset_id,
            Schema((*self.schema.columns, *columns.columns)),
            {**self.field_ids, **{n: start + k for k, n in enumerate(columns.names)}},
            start + len(columns.columns),
            self.config,
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "dataset_id": self.dataset_id,
            "schema": self.schema.to_dict(),
            "field_ids": dict(self.field_ids),
            "next_field_id": self.next_field_id,
            "config": dict(self.config),
        }

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
        field_ids = {k: _int(ids, k) for k in ids}
        next_id = _int(d, "next_field_id")
        # Field ids are handed out from next_field_id: a duplicate or a higher one is a forged map.
        if len(set(field_ids.values())) != len(field_ids) or any(
            v >= next_id for v in field_ids.values()
        ):
            raise CorruptLogError("metadata field_ids are not distinct ids below next_field_id")
        return Metadata(_str(d, "dataset_id"), schema, field_ids, next_id, dict(config))


@dataclass(frozen=True)
class IndexFile:
    """One immutable file of a vector index (written once, never overwritten)."""

    path: str
    size: int

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "size": self.size}

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> IndexFile:
        return IndexFile(_check_path(_str(d, "path")), _int(d, "size", 0))


@dataclass(frozen=True)
class IndexEntry:
    """A named index over one column, as of one version: its files and the fragments it covers.

    ``params`` is the index library's own settings (a JSON object), stored as given.
    """

    name: str
    column: str
    metric: str
    kind: str
    files: tuple[IndexFile, ...]
    fragment_ids: tuple[int, ...]
    params: Mapping[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "column": self.column,
            "metric": self.metric,
            "kind": self.kind,
            "files": [f.to_dict() for f in self.files],
            "fragment_ids": list(self.fragment_ids),
            "params": dict(self.params),
        }

    @staticmethod
    def from_dict(d: Mapping[str, Any]) -> IndexEntry:
        files = d.get("files")
        fids = d.get("fragment_ids")
        params = d.get("params", {})
        if (
            not isinstance(files, list)
            or not isinstance(fids, list)
            or not isinstance(params, Mapping)
        ):
            raise CorruptLogError(
                "an index entry needs a files list, a fragment_ids list and a params object"
            )
        if not all(
            isinstance(f, int) and not isinstance(f, bool) and 0 <= f < 1 << 31 for f in fids
        ):
            raise CorruptLogError("index fragment_ids must be fragment ids")
        if not all(isinstance(f, Mapping) for f in files):
            raise CorruptLogError("index files must be objects")
        return IndexEntry(
            _str(d, "name"),
            _str(d, "column"),
            _str(d, "metric"),
            _str(d, "kind"),
            tuple(IndexFile.from_dict(f) for f in files),
            tuple(fids),
            dict(params),
        )


# -- actions: one frozen dataclass per kind ------------------------------------------
@dataclass(frozen=True)
class Protocol:
    """The reader and writer versions a dataset needs (the first action of version 0)."""

    min_reader_version: int = READER_VERSION
    min_writer_version: int = WRITER_VERSION


@dataclass(frozen=True)
class SetMetadata:
    """Replace the schema, field ids and settings (create and every schema change)."""

    metadata: Metadata


@dataclass(frozen=True)
class AddFragment:
    """A fragment whose id is not live: new rows, or rows a restore brings back."""

    fragment: Fragment


@dataclass(frozen=True)
class ReplaceFragment:
    """A new value of a live fragment, same id and row count: a delete (deletion vector) or an update (chunks)."""

    fragment: Fragment


@dataclass(frozen=True)
class RemoveFragment:
    """A live fragment leaves the dataset (every row deleted, or compacted into another)."""

    id: int


@dataclass(frozen=True)
class Txn:
    """The idempotency record of an application: ``app_id`` committed its write number ``version``."""

    app_id: str
    version: int


@dataclass(frozen=True)
class Restore:
    """Marks a commit that restored the state of ``version`` (it conflicts with every concurrent commit)."""

    version: int


@dataclass(frozen=True)
class AddIndex:
    """Create or replace the index ``entry.name``."""

    entry: IndexEntry


@dataclass(frozen=True)
class DropIndex:
    """Drop the index ``name``."""

    name: str


Action = (
    Protocol
    | SetMetadata
    | AddFragment
    | ReplaceFragment
    | RemoveFragment
    | Txn
    | Restore
    | AddIndex
    | DropIndex
)


def protocol() -> Protocol:
    return Protocol()


def encode_action(a: Action) -> dict[str, Any]:
    """The stored JSON form of an action: ``{kind: body}``."""
    match a:
        case Protocol(r, w):
            return {"protocol": {"min_reader_version": r, "min_writer_version": w}}
        case SetMetadata(m):
            return {"metadata": m.to_dict()}
        case AddFragment(f):
            return {"add_fragment": f.to_dict()}
        case ReplaceFragment(f):
            return {"replace_fragment": f.to_dict()}
        case RemoveFragment(fid):
            return {"remove_fragment": {"id": fid}}
        case Txn(app_id, version):
            return {"txn": {"app_id": app_id, "version": version}}
        case Restore(version):
            return {"restore": {"version": version}}
        case AddIndex(entry):
            return {"add_index": entry.to_dict()}
        case DropIndex(name):
            return {"drop_index": {"name": name}}
    raise TypeError(f"not a log action: {a!r}")


def decode_action(d: Any) -> Action:
    """Parse and validate one stored action (the inverse of :func:`encode_action`)."""
    if not isinstance(d, Mapping) or len(d) != 1:
        raise CorruptLogError(f"an action is an object with one key, got {d!r:.200}")
    ((kind, body),) = d.items()
    if not isinstance(body, Mapping):
        raise CorruptLogError(f"the body of a {kind!r} action must be an object")
    match kind:
        case "protocol":
            reader = _int(body, "min_reader_version")
            if reader > READER_VERSION:
                raise CorruptLogError(
                    f"dataset needs reader version {reader}; "
                    f"this tensorhouse reads {READER_VERSION}: upgrade tensorhouse"
                )
            return Protocol(reader, _int(body, "min_writer_version"))
        case "metadata":
            return SetMetadata(Metadata.from_dict(body))
        case "add_fragment":
            return AddFragment(Fragment.from_dict(body))
        case "replace_fragment":
            return ReplaceFragment(Fragment.from_dict(body))
        case "remove_fragment":
            return RemoveFragment(_int(body, "id"))
        case "txn":
            return Txn(_str(body, "app_id"), _int(body, "version"))
        case "restore":
            return Restore(_int(body, "version"))
        case "add_index":
            return AddIndex(IndexEntry.from_dict(body))
        case "drop_index":
            return DropIndex(_str(body, "name"))
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

    def to_bytes(self) -> bytes:
        """The stored form: ``{"crc32":<crc of the rest>,`` then the document's other fields."""
        doc = self.to_dict()
        doc.pop("crc32")
        body = json.dumps(doc, separators=(",", ":")).encode()
        return RAW_CRC_PREFIX + str(zlib.crc32(body)).encode() + b"," + body[1:]

    def to_dict(self) -> dict[str, Any]:
        doc = {
            "format": COMMIT_FORMAT,
            "format_version": COMMIT_FORMAT_VERSION,
            "version": self.version,
            "txn_id": self.txn_id,
            "timestamp_ms": self.timestamp_ms,
            "operation": self.operation,
            "read_version": self.read_version,
            "message": self.message,
            "actions": [encode_action(a) for a in self.actions],
        }
        doc["crc32"] = document_crc(doc)
        return doc

    @staticmethod
    def from_dict(d: Any, expected_version: int, *, checked: bool = False) -> Commit:
        """Validate a parsed entry; ``checked``: its raw bytes already passed their crc32."""
        if not isinstance(d, Mapping) or d.get("format") != COMMIT_FORMAT:
            raise CorruptLogError("not a tensorhouse commit document")
        if d.get("format_version") not in READABLE_COMMIT_FORMATS:
            raise CorruptLogError(
                f"commit format version {d.get('format_version')!r} is not supported "
                "(written by a newer tensorhouse?)"
            )
        if not checked and d.get("crc32") != document_crc(
            {k: v for k, v in d.items() if k != "crc32"}
        ):
            raise CorruptLogError("commit checksum mismatch (corrupt entry)")
        version = _int(d, "version")
        if version != expected_version:
            raise CorruptLogError(
                f"entry of version {expected_version} says it is version {version}"
            )
        actions = d.get("actions")
        if not isinstance(actions, list):
            raise CorruptLogError("commit actions must be a list")
        msg = d.get("message")
        if msg is not None and not isinstance(msg, str):
            raise CorruptLogError("commit message must be a string")
        return Commit(
            version,
            _str(d, "txn_id"),
            _int(d, "timestamp_ms"),
            _str(d, "operation"),
            _int(d, "read_version", -1),
            tuple(decode_action(a) for a in actions),
            msg,
        )


def parse_entry(raw: bytes, version: int, where: str) -> Commit:
    """Parse and validate the stored bytes of log entry ``version`` (``where`` names it in errors)."""
    try:
        checked = False
        if raw.startswith(RAW_CRC_PREFIX):  # format 3: check the raw bytes, no re-serialisation
            comma = raw.find(b",", len(RAW_CRC_PREFIX))
            digits = raw[len(RAW_CRC_PREFIX) : comma]
            if (
                comma < 0
                or not digits.isdigit()
                or zlib.crc32(b"{" + raw[comma + 1 :]) != int(digits)
            ):
                raise CorruptLogError("commit checksum mismatch (corrupt entry)")
            checked = True
        return Commit.from_dict(load_json(raw, where), version, checked=checked)
    except CorruptLogError as err:
        raise CorruptLogError(
            f"{where}: {err}" if not str(err).startswith(where) else str(err)
        ) from err


#: Every stored action kind (the JSON key of an action).
KINDS = (
    "protocol",
    "metadata",
    "add_fragment",
    "replace_fragment",
    "remove_fragment",
    "txn",
    "restore",
    "add_index",
    "drop_index",
)
