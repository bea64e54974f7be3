"""The Dataset facade: create, open, append, read, versions.

Example:
    >>> import numpy as np, tensorhouse as th
    >>> ds = th.create("memory://doc-pets", {"label": th.ClassLabel(["cat", "dog"]),
    ...                                      "embedding": th.Embedding(4)})
    >>> ds.append({"label": [0, 1], "embedding": np.ones((2, 4), "float32")})
    1
    >>> len(ds), ds.version
    (2, 1)
    >>> ds.take([1], columns=["label"])["label"]
    array([1], dtype=int32)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import numpy as np
import pyarrow as pa

from tensorhouse.errors import DatasetExistsError, DatasetNotFoundError, SchemaError
from tensorhouse.format.chunks import ChunkReader
from tensorhouse.format.convert import ColumnValues, to_numpy
from tensorhouse.format.input import Data, to_columns
from tensorhouse.format.log import Action, Commit, Log, Metadata, Snapshot
from tensorhouse.format.log.actions import protocol
from tensorhouse.format.scan import SnapshotReader
from tensorhouse.format.writer import PendingFragment, normalize_columns, write_fragments
from tensorhouse.storage import Store, open_store
from tensorhouse.types import ROWID, Schema, TypeLike


@dataclass(frozen=True)
class VersionInfo:
    """One entry of ``Dataset.history()``."""

    version: int
    timestamp: datetime
    operation: str
    message: str | None
    num_rows: int


class Dataset:
    """A tensor dataset pinned to one version. Writes return the new version and move it forward.

    Obtain one with :func:`create` or :func:`open`.
    """

    def __init__(self, store: Store, snapshot: Snapshot, *, log: Log, storage_options: Mapping[str, Any] | None = None) -> None:
        self._store = store
        self._log = log
        self._storage_options = dict(storage_options or {})
        self._set_snapshot(snapshot)

    def _set_snapshot(self, snapshot: Snapshot) -> None:
        self._snapshot = snapshot
        self._reader = SnapshotReader(snapshot, ChunkReader(self._store))

    # -- description -------------------------------------------------------------
    @property
    def uri(self) -> str:
        return self._store.uri

    @property
    def store(self) -> Store:
        return self._store

    @property
    def storage_options(self) -> dict[str, Any]:
        return dict(self._storage_options)

    @property
    def snapshot(self) -> Snapshot:
        return self._snapshot

    @property
    def reader(self) -> SnapshotReader:
        """Low-level access for connectors and the loader: chunk index, row ids, batched scans."""
        return self._reader

    @property
    def version(self) -> int:
        return self._snapshot.version

    @property
    def schema(self) -> Schema:
        return self._snapshot.metadata.schema

    @property
    def columns(self) -> list[str]:
        return self.schema.names

    def arrow_schema(self, *, with_rowid: bool = False) -> pa.Schema:
        s = self.schema.to_arrow()
        return s.append(pa.field(ROWID, pa.int64(), nullable=False)) if with_rowid else s

    def __len__(self) -> int:
        return self._reader.num_rows

    def __repr__(self) -> str:
        cols = ", ".join(f"{n}: {t!r}" for n, t in self.schema.columns)
        return f"<tensorhouse.Dataset {self.uri!r} version={self.version} rows={len(self)} [{cols}]>"

    # -- writing -----------------------------------------------------------------
    def append(self, data: Data, *, message: str | None = None) -> int:
        """Append rows atomically as one commit and return the new version.

        ``data``: a dict of column -> values (arrays, lists), a ``pa.Table`` /
        ``RecordBatch``, or a list of row dicts. Nothing is committed, and the
        dataset stays at its version, when any value is invalid.
        """
        columns, n = to_columns(data, self.schema)
        batches = normalize_columns(columns, self.schema)
        pending = write_fragments(self._store, self._snapshot, batches, n) if n else []
        return self._commit_fragments(pending, operation="append", message=message)

    def _commit_fragments(self, pending: Sequence[PendingFragment], *, operation: str, message: str | None) -> int:
        schema_at_write = self._snapshot.metadata

        def build(snap: Snapshot | None, winners: Sequence[Commit]) -> list[Action]:
            assert snap is not None
            if snap.metadata.field_ids != schema_at_write.field_ids or snap.metadata.schema != schema_at_write.schema:
                from tensorhouse.errors import CommitConflictError

                raise CommitConflictError(f"{self.uri}: the schema changed at version {snap.version} while appending")
            return [Action("add_fragment", p.with_id(snap.next_fragment_id + i)) for i, p in enumerate(pending)]

        result = self._log.commit(self._snapshot, build, operation=operation, message=message)
        self._set_snapshot(result.snapshot)
        return result.version

    # -- reading -----------------------------------------------------------------
    def _resolve_columns(self, columns: Sequence[str] | None) -> list[str]:
        if columns is None:
            return self.columns
        if isinstance(columns, str):
            raise SchemaError(f"columns must be a list of names, got the string {columns!r}")
        for c in columns:
            if c != ROWID and c not in self.schema:
                raise SchemaError(f"unknown column {c!r}; columns are {self.columns}")
        return list(columns)

    def _positions(self, indices: Sequence[int] | np.ndarray) -> np.ndarray:
        idx = np.asarray(indices)
        if idx.dtype.kind not in "iu":
            if idx.size == 0:
                idx = idx.astype(np.int64)
            else:
                raise TypeError(f"row indices must be integers, got {idx.dtype}")
        idx = idx.astype(np.int64).reshape(-1)
        n = len(self)
        if idx.size and (idx.min() < -n or idx.max() >= n):
            bad = int(idx[(idx < -n) | (idx >= n)][0])
            raise IndexError(f"row {bad} is out of range for {n} rows")
        return np.where(idx < 0, idx + n, idx)

    def take(self, indices: Sequence[int] | np.ndarray, columns: Sequence[str] | None = None, *,
             decode: bool = True) -> dict[str, ColumnValues]:  # fmt: skip
        """Rows at positions ``indices`` (any order, repeats allowed), in that order.

        Returns column -> stacked ``np.ndarray`` for fixed-shape columns, or a list
        with one item per row (images decoded unless ``decode=False``; ragged
        tensors; text). Ask for ``"_rowid"`` to get the rows' stable ids.
        """
        rows = self._positions(indices)
        return self._take_rows(rows, self._resolve_columns(columns), decode)

    def take_rowids(self, rowids: Sequence[int] | np.ndarray, columns: Sequence[str] | None = None, *,
                    decode: bool = True) -> dict[str, ColumnValues]:  # fmt: skip
        """Like :meth:`take`, addressed by stable row ids (``fragment_id << 32 | offset``)."""
        rows = self._reader.rows_of_rowids(np.asarray(rowids, dtype=np.int64))
        return self._take_rows(rows, self._resolve_columns(columns), decode)

    def _take_rows(self, rows: np.ndarray, columns: list[str], decode: bool) -> dict[str, ColumnValues]:
        out: dict[str, ColumnValues] = {}
        for name in columns:
            if name == ROWID:
                out[name] = self._reader.rowids(rows)
                continue
            ctype = self.schema[name]
            out[name] = to_numpy(self._reader.read_rows(name, ctype, rows), ctype, decode=decode)
        return out

    def __getitem__(self, i: int) -> dict[str, Any]:
        """One row as a dict of column -> value."""
        if not isinstance(i, int | np.integer):
            raise TypeError(f"index a dataset with an int (use take() for several rows), got {type(i).__name__}")
        row = self.take([int(i)])
        return {k: v[0] for k, v in row.items()}

    def to_batches(self, columns: Sequence[str] | None = None, *, batch_size: int = 65536,
                   with_rowid: bool = False) -> Iterator[pa.RecordBatch]:  # fmt: skip
        """Stream the rows as Arrow RecordBatches, lazily, chunk by chunk.

        Only the named columns' chunks are read. Images stay encoded (binary).
        """
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        names = [c for c in self._resolve_columns(columns) if c != ROWID]
        with_rowid = with_rowid or (columns is not None and ROWID in columns)
        return self._reader.iter_batches([(n, self.schema[n]) for n in names], batch_size=batch_size,
                                         with_rowid=with_rowid)  # fmt: skip

    def to_table(self, columns: Sequence[str] | None = None, *, with_rowid: bool = False) -> pa.Table:
        """All rows as one Arrow table (for small datasets; prefer to_batches)."""
        names = [c for c in self._resolve_columns(columns) if c != ROWID]
        with_rowid = with_rowid or (columns is not None and ROWID in columns)
        schema = pa.schema([self.schema[n].arrow_field(n) for n in names])
        if with_rowid:
            schema = schema.append(pa.field(ROWID, pa.int64(), nullable=False))
        return pa.Table.from_batches(list(self.to_batches(names, with_rowid=with_rowid)), schema=schema)

    # -- versions ----------------------------------------------------------------
    def history(self) -> list[VersionInfo]:
        """Every version up to this one: when, what operation, how many rows."""
        out = []
        snap: Snapshot | None = None
        for v in range(self.version + 1):
            c = self._log.read(v)
            from tensorhouse.format.log import replay

            snap = replay(snap, [c])
            out.append(VersionInfo(v, datetime.fromtimestamp(c.timestamp_ms / 1000, tz=timezone.utc),
                                   c.operation, c.message, snap.num_rows))  # fmt: skip
        return out

    def versions(self) -> list[int]:
        """Every committed version of the dataset (not only up to this one)."""
        return self._log.versions()

    def latest_version(self) -> int:
        return self._log.versions()[-1]

    def refresh(self) -> Dataset:
        """Move this object to the latest committed version; returns self."""
        newer = self._log.read_since(self.version)
        if newer:
            from tensorhouse.format.log import replay

            self._set_snapshot(replay(self._snapshot, newer))
        return self

    def checkout(self, version: int) -> Dataset:
        """A new Dataset object pinned to ``version`` of the same store."""
        return Dataset(self._store, self._log.snapshot(version), log=self._log, storage_options=self._storage_options)


def create(uri: str, schema: Mapping[str, TypeLike] | Schema, *, storage_options: Mapping[str, Any] | None = None,
           exist_ok: bool = False, chunk_bytes: int | None = None, single_writer: bool = False) -> Dataset:  # fmt: skip
    """Create an empty dataset at ``uri`` (a path, ``memory://name``, ``s3://bucket/prefix``).

    Concurrent creators race on version 0: exactly one wins; the others get
    DatasetExistsError (or, with ``exist_ok=True`` and the same schema, the dataset).

    Example:
        >>> import tensorhouse as th
        >>> ds = th.create("memory://doc-create", {"caption": th.Text(), "score": "float32"})
        >>> ds.columns
        ['caption', 'score']
    """
    sch = Schema.of(schema)
    store = open_store(uri, storage_options)
    log = Log(store, single_writer=single_writer)
    config: dict[str, Any] = {}
    if chunk_bytes is not None:
        if chunk_bytes < 1024:
            raise ValueError(f"chunk_bytes must be at least 1024, got {chunk_bytes}")
        config["chunk_bytes"] = int(chunk_bytes)
    meta = Metadata(uuid.uuid4().hex, sch, {n: i for i, n in enumerate(sch.names)}, len(sch), config)

    def build(snap: Snapshot | None, winners: Sequence[Commit]) -> list[Action]:
        if snap is not None:
            raise DatasetExistsError(f"a dataset already exists at {uri}")
        return [protocol(), Action("metadata", meta)]

    try:
        if log.versions():
            raise DatasetExistsError(f"a dataset already exists at {uri}")
        result = log.commit(None, build, operation="create")
    except DatasetExistsError:
        if not exist_ok:
            raise
        ds = open(uri, storage_options=storage_options, single_writer=single_writer)
        if ds.schema != sch:
            raise DatasetExistsError(f"a dataset with a different schema exists at {uri}: {ds.schema}") from None
        return ds
    return Dataset(store, result.snapshot, log=log, storage_options=storage_options)


def open(uri: str, *, version: int | None = None, storage_options: Mapping[str, Any] | None = None,
         single_writer: bool = False) -> Dataset:  # fmt: skip
    """Open the dataset at ``uri``, at its latest version or at ``version``.

    Raises DatasetNotFoundError when there is none, VersionNotFoundError for a
    version that does not exist.
    """
    store = open_store(uri, storage_options)
    log = Log(store, single_writer=single_writer)
    try:
        snapshot = log.snapshot(version)
    except DatasetNotFoundError:
        raise DatasetNotFoundError(f"no tensorhouse dataset at {uri}") from None
    return Dataset(store, snapshot, log=log, storage_options=storage_options)
