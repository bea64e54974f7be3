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
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from tensorhouse.errors import (
    ArgumentError,
    DatasetExistsError,
    DatasetNotFoundError,
    RowNotFoundError,
    SchemaError,
    UnsupportedError,
    VersionNotFoundError,
)
from tensorhouse.format import layout, refs
from tensorhouse.format.chunks import ChunkReader
from tensorhouse.format.convert import ColumnValues, batch_to_values, payloads_to_images
from tensorhouse.format.groups import Alter, Optimize
from tensorhouse.format.input import Data, to_columns
from tensorhouse.format.log import (
    Action,
    AddFragment,
    Commit,
    Log,
    Metadata,
    RemoveFragment,
    ReplaceFragment,
    SetMetadata,
    Snapshot,
    replay,
)
from tensorhouse.format.log.actions import protocol
from tensorhouse.format.log.fragments import fragment_arrays
from tensorhouse.format.log.log import Clock
from tensorhouse.format.maintenance import vacuum
from tensorhouse.format.maintenance_types import CompactReport, VacuumReport
from tensorhouse.format.merge import merge_branch
from tensorhouse.format.native_files import NativeFile, native_files
from tensorhouse.format.scan import SnapshotReader
from tensorhouse.format.transaction import Transaction
from tensorhouse.format.writer import StagedFragment, normalize_columns, stage_fragments
from tensorhouse.storage import Store, open_store
from tensorhouse.types import ROWID, Schema, TypeLike

if TYPE_CHECKING:
    from tensorhouse.index import IndexInfo


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

    def __init__(
        self,
        store: Store,
        snapshot: Snapshot,
        *,
        log: Log,
        storage_options: Mapping[str, Any] | None = None,
        branch: str = refs.MAIN,
    ) -> None:
        self._store = store
        self._log = log
        self._branch = branch
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

    def native_files(self, columns: Sequence[str] | None = None) -> tuple[NativeFile, ...] | None:
        """The Parquet files holding ``columns`` (default: all) of this version, for engines to read
        directly; None when some of those rows are not in such files (see
        :func:`tensorhouse.format.native_files.native_files`)."""
        return native_files(self, columns)

    def arrow_schema(self, *, with_rowid: bool = False) -> pa.Schema:
        s = self.schema.to_arrow()
        return s.append(pa.field(ROWID, pa.int64(), nullable=False)) if with_rowid else s

    def __len__(self) -> int:
        return self._reader.num_rows

    def __repr__(self) -> str:
        cols = ", ".join(f"{n}: {t!r}" for n, t in self.schema.columns)
        branch = f" branch={self._branch!r}" if self._branch != refs.MAIN else ""
        return f"<tensorhouse.Dataset {self.uri!r}{branch} version={self.version} rows={len(self)} [{cols}]>"

    # -- pickling ----------------------------------------------------------------
    def __reduce__(self) -> tuple[Any, ...]:
        """Pickle by (uri, branch, version, storage options): no lock, store or snapshot travels.

        The receiving process (a Ray task, a spawn-started DataLoader worker)
        reopens the same version lazily, on first use. A ``memory://`` dataset
        only reopens in a process that can see it (this one, or a fork).
        """
        return (
            _unpickle,
            (self.uri, self._branch, self.version, self._storage_options, self._log.single_writer),
        )

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes not set yet: those of an unpickled, not yet reopened dataset.
        lazy = self.__dict__.get("_lazy")
        if lazy is None or name.startswith("__"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        # A failed open (storage unreachable) leaves the object unopened: the next use tries again.
        opened = _open_pinned(self.__dict__["_uri_pending"], **lazy)
        del self.__dict__["_lazy"], self.__dict__["_uri_pending"]
        self.__dict__.update(opened.__dict__)
        return getattr(self, name)

    # -- writing -----------------------------------------------------------------
    def transaction(
        self,
        *,
        message: str | None = None,
        app_id: str | None = None,
        txn_version: int | None = None,
    ) -> Transaction:
        """Group several writes into one commit: ``with ds.transaction() as tx: tx.append(...); tx.delete(...)``.

        With ``app_id``/``txn_version`` the commit is idempotent: a transaction whose
        (app_id, txn_version) was already committed (by anyone) commits nothing.
        A transaction that staged nothing commits nothing either.
        """
        return Transaction(
            self._log,
            self._snapshot,
            store=self._store,
            message=message,
            app_id=app_id,
            txn_version=txn_version,
            on_commit=self._set_snapshot,
        )

    def stage(self, data: Data) -> list[StagedFragment]:
        """Validate ``data`` and write its chunk files without committing; commit them with :meth:`commit_staged`.

        The result is picklable and has a JSON form, so workers (Ray tasks,
        other processes) can write chunks in parallel and hand the fragments to
        one process that commits them all at once. Staged files that are never
        committed are removed by ``vacuum`` once older than its retention.
        """
        columns, n = to_columns(data, self.schema)
        batches = normalize_columns(columns, self.schema)
        return stage_fragments(self._store, self._snapshot.metadata, batches, n) if n else []

    def commit_staged(
        self,
        fragments: Sequence[StagedFragment],
        *,
        message: str | None = None,
        app_id: str | None = None,
        txn_version: int | None = None,
    ) -> int:
        """Commit fragments written by :meth:`stage` (here or in any process) as one version; returns it."""
        with self.transaction(message=message, app_id=app_id, txn_version=txn_version) as tx:
            tx.add_staged(fragments)
        return self.version

    def append(
        self,
        data: Data,
        *,
        message: str | None = None,
        app_id: str | None = None,
        txn_version: int | None = None,
    ) -> int:
        """Append rows atomically as one commit and return the new version.

        ``data``: a dict of column -> values (arrays, lists), a ``pa.Table`` /
        ``RecordBatch``, or a list of row dicts. Nothing is committed, and the
        dataset stays at its version, when any value is invalid. With
        ``app_id="ingest-7", txn_version=12`` a retried append commits once.
        """
        with self.transaction(message=message, app_id=app_id, txn_version=txn_version) as tx:
            tx.append(data)
        return self.version

    def delete(
        self,
        where: str | None = None,
        *,
        rowids: Sequence[int] | np.ndarray | None = None,
        message: str | None = None,
    ) -> int:
        """Delete rows matching a SQL predicate (``"label = 3 AND score < 0.5"``) or by row id.

        Deleted rows vanish from scans, ``take`` and ``len`` from the new version on;
        older versions keep them. Returns the new version.
        """
        with self.transaction(message=message) as tx:
            tx.delete(where, rowids=rowids)
        return self.version

    def update(
        self,
        values: Mapping[str, Any],
        where: str | None = None,
        *,
        rowids: Sequence[int] | np.ndarray | None = None,
        message: str | None = None,
    ) -> int:
        """Set columns on matching rows (all live rows without ``where``/``rowids``), copy-on-write.

        Example: ``ds.update({"label": 3}, where="score < 0.1")``. Returns the new version.
        """
        with self.transaction(message=message) as tx:
            tx.update(values, where, rowids=rowids)
        return self.version

    @property
    def alter(self) -> Alter:
        """Schema changes, one commit each: ``ds.alter.add_column(...)``, ``drop_column``, ``rename_column``."""
        return Alter(self)

    @property
    def optimize(self) -> Optimize:
        """Rewrites for speed that change no row: ``ds.optimize.compact()``, ``ds.optimize.indexes()``."""
        return Optimize(self)

    # The schema changes also stay here under the names a transaction uses (tx.add_column, ...).
    def add_column(
        self,
        name: str,
        ctype: TypeLike,
        values: Sequence[Any] | np.ndarray | None = None,
        *,
        message: str | None = None,
    ) -> int:
        """Same as ``ds.alter.add_column``: a column of nulls, or one value per live row. Returns the new version."""
        return self.alter.add_column(name, ctype, values, message=message)

    def drop_column(self, name: str, *, message: str | None = None) -> int:
        """Same as ``ds.alter.drop_column``. Returns the new version."""
        return self.alter.drop_column(name, message=message)

    def rename_column(self, old: str, new: str, *, message: str | None = None) -> int:
        """Same as ``ds.alter.rename_column``. Returns the new version."""
        return self.alter.rename_column(old, new, message=message)

    def restore(self, version: int, *, message: str | None = None) -> int:
        """Commit a new version whose state equals ``version`` (rows, schema, row ids). Returns it."""
        with self.transaction(message=message or f"restore version {version}") as tx:
            tx.restore(version)
        return self.version

    def checkpoint(self) -> None:
        """Write a checkpoint of this version now (they are also written every 100 commits)."""
        self._log.write_checkpoint(self._snapshot)

    # -- refs --------------------------------------------------------------------
    @property
    def branch_name(self) -> str:
        return self._branch

    @property
    def tags(self) -> dict[str, int]:
        """Tag name -> version, for tags of this branch."""
        return {
            n: t.version for n, t in refs.list_tags(self._store).items() if t.branch == self._branch
        }

    def tag(self, name: str, version: int | None = None) -> None:
        """Name a version (this one by default): ``th.open(uri, tag=name)`` opens it; vacuum keeps it."""
        v = self.version if version is None else version
        if v not in self._log.versions():
            raise VersionNotFoundError(f"{self.uri}: cannot tag version {v}: it does not exist")
        refs.create_tag(self._store, name, self._branch, v)

    def delete_tag(self, name: str) -> None:
        refs.delete_tag(self._store, name)

    @property
    def branches(self) -> list[str]:
        return refs.list_branches(self._store)

    def branch(self, name: str, version: int | None = None) -> Dataset:
        """Create a branch from ``version`` (this one by default) and return the dataset on it.

        Writes on the branch never change its parent; ``merge`` brings them back.
        """
        v = self.version if version is None else version
        if v not in self._log.versions():
            raise VersionNotFoundError(
                f"{self.uri}: cannot branch from version {v}: it does not exist"
            )
        refs.create_branch(self._store, name, self._branch, v)
        log = refs.branch_log(self._store, name, single_writer=self._log.single_writer)
        log.clock = self._log.clock
        return Dataset(
            self._store, log.snapshot(), log=log, storage_options=self._storage_options, branch=name
        )

    def merge(self, branch: str, *, message: str | None = None) -> int:
        """Bring ``branch``'s changes into this branch as one commit (same conflict rules as writes)."""
        source = refs.branch_log(self._store, branch, single_writer=self._log.single_writer)
        if source.parent is None or source.parent[0].prefix != self._log.prefix:
            raise UnsupportedError(
                f"{self.uri}: branch {branch!r} was not created from branch {self._branch!r}; "
                "merge it into its own parent"
            )
        self.refresh()
        with self.transaction(message=message or f"merge {branch}") as tx:
            merge_branch(tx, source, name=branch)
        return self.version

    # -- maintenance ---------------------------------------------------------------
    def vacuum(
        self,
        retention: timedelta = timedelta(days=7),
        *,
        dry_run: bool = False,
        force: bool = False,
    ) -> VacuumReport:
        """Delete files no retained version, tag or branch references, older than ``retention``.

        Also deletes chunks staged by writes that never committed (crashed or
        abandoned) once they are older than ``retention``.
        """
        return vacuum(self._store, retention, dry_run=dry_run, force=force, now=self._log.clock())

    def compact(self, *, target_rows: int = 1 << 20, message: str | None = None) -> CompactReport:
        """Same as ``ds.optimize.compact``: merge runs of fragments smaller than ``target_rows`` live rows."""
        return self.optimize.compact(target_rows=target_rows, message=message)

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
        if isinstance(indices, list) and len(indices) == 1 and isinstance(indices[0], int):
            i, n = indices[0], len(self)  # the common single-row case, without array checks
            if not -n <= i < n:
                raise RowNotFoundError(f"row {i} is out of range for {n} rows")
            return np.array([i + n if i < 0 else i], dtype=np.int64)
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
            raise RowNotFoundError(f"row {bad} is out of range for {n} rows")
        return np.where(idx < 0, idx + n, idx)

    def take(
        self,
        indices: Sequence[int] | np.ndarray,
        columns: Sequence[str] | None = None,
        *,
        decode: bool = True,
    ) -> dict[str, ColumnValues]:
        """Rows at positions ``indices`` (any order, repeats allowed), in that order.

        Returns column -> stacked ``np.ndarray`` for fixed-shape columns, or a list
        with one item per row (images decoded unless ``decode=False``; ragged
        tensors; text). Ask for ``"_rowid"`` to get the rows' stable ids.
        """
        rows = self._reader.physical(self._positions(indices))
        return self._take_rows(rows, self._resolve_columns(columns), decode)

    def take_rowids(
        self,
        rowids: Sequence[int] | np.ndarray,
        columns: Sequence[str] | None = None,
        *,
        decode: bool = True,
    ) -> dict[str, ColumnValues]:
        """Like :meth:`take`, addressed by stable row ids (``fragment_id << 32 | offset``)."""
        rows = self._reader.rows_of_rowids(np.asarray(rowids, dtype=np.int64))
        return self._take_rows(rows, self._resolve_columns(columns), decode)

    def _take_rows(
        self, rows: np.ndarray, columns: list[str], decode: bool
    ) -> dict[str, ColumnValues]:
        out: dict[str, ColumnValues] = {}
        for name in columns:
            if name == ROWID:
                out[name] = self._reader.rowids(rows)
                continue
            ctype = self.schema[name]
            if (
                ctype.sample_codec is not None
            ):  # images: decode (or copy) straight from the payload views
                views, _, nulls = self._reader.read_views(name, ctype, rows)
                out[name] = payloads_to_images(views, nulls, ctype.sample_codec, decode=decode)
            else:
                out[name] = batch_to_values(
                    self._reader.read_rows(name, ctype, rows), ctype, decode=decode
                )
        return out

    def __getitem__(self, i: int) -> dict[str, Any]:
        """One row as a dict of column -> value."""
        if not isinstance(i, int | np.integer):
            raise TypeError(
                f"index a dataset with an int (use take() for several rows), got {type(i).__name__}"
            )
        row = self.take([int(i)])
        return {k: v[0] for k, v in row.items()}

    def to_batches(
        self,
        columns: Sequence[str] | None = None,
        *,
        batch_size: int = 65536,
        with_rowid: bool = False,
    ) -> Iterator[pa.RecordBatch]:
        """Stream the rows as Arrow RecordBatches, lazily, chunk by chunk.

        Only the named columns' chunks are read. Images stay encoded (binary).
        """
        if batch_size <= 0:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        names = [c for c in self._resolve_columns(columns) if c != ROWID]
        with_rowid = with_rowid or (columns is not None and ROWID in columns)
        return self._reader.iter_batches(
            [(n, self.schema[n]) for n in names], batch_size=batch_size, with_rowid=with_rowid
        )

    def to_table(
        self, columns: Sequence[str] | None = None, *, with_rowid: bool = False
    ) -> pa.Table:
        """All rows as one Arrow table (for small datasets; prefer to_batches)."""
        names = [c for c in self._resolve_columns(columns) if c != ROWID]
        with_rowid = with_rowid or (columns is not None and ROWID in columns)
        schema = pa.schema([self.schema[n].arrow_field(n) for n in names])
        if with_rowid:
            schema = schema.append(pa.field(ROWID, pa.int64(), nullable=False))
        return pa.Table.from_batches(
            list(self.to_batches(names, with_rowid=with_rowid)), schema=schema
        )

    def to_pandas(
        self,
        columns: Sequence[str] | None = None,
        *,
        rows: Sequence[int] | np.ndarray | None = None,
        decode: bool = False,
        with_rowid: bool = False,
    ) -> Any:
        """The rows (all, or the positions ``rows`` in that order) as a ``pandas.DataFrame``.

        Class labels become categoricals of their names, tensors and embeddings
        object columns of numpy arrays, images encoded bytes (arrays with
        ``decode=True``). Details: ``tensorhouse.interop.pandas``.
        """
        from tensorhouse.interop.pandas import to_pandas  # pandas is optional: imported on use

        return to_pandas(self, columns, rows=rows, decode=decode, with_rowid=with_rowid)

    # -- versions ----------------------------------------------------------------
    def history(self, *, limit: int | None = None) -> list[VersionInfo]:
        """Versions up to this one, oldest first: when, what operation, how many rows.

        With ``limit``, only the newest ``limit`` versions, reading only their
        log entries (and the checkpoint before them), not the whole log. After
        ``vacuum`` removed old log entries, it starts at the oldest one left.
        """
        if limit is not None and limit < 1:
            raise ValueError(f"limit must be positive, got {limit}")
        oldest = self._log.oldest_version()
        first = oldest if limit is None else max(oldest, self.version - limit + 1)
        live: dict[int, int] = {}
        # The first version's row count comes from the state before it, or its own when that is gone.
        own_base = first > 0 and first == oldest
        if first > 0:
            base = self._log.snapshot(first if own_base else first - 1)
            ids, rows, deleted = fragment_arrays(base.fragments)
            live = dict(zip(ids.tolist(), (rows - deleted).tolist(), strict=True))
        total = sum(live.values())
        out = []
        # Row counts follow the actions, without replaying whole snapshots.
        for c in self._log.read_range(first, self.version + 1):
            for a in c.actions if not (own_base and c.version == first) else ():
                match a:
                    case AddFragment(f) | ReplaceFragment(f):
                        total += f.num_live - live.get(f.id, 0)
                        live[f.id] = f.num_live
                    case RemoveFragment(fid):
                        total -= live.pop(fid, 0)
            out.append(
                VersionInfo(
                    c.version,
                    datetime.fromtimestamp(c.timestamp_ms / 1000, tz=UTC),
                    c.operation,
                    c.message,
                    total,
                )
            )
        return out

    def versions(self) -> list[int]:
        """Every committed version of the dataset (not only up to this one)."""
        return self._log.versions()

    def latest_version(self) -> int:
        """The newest committed version of this branch (one listing from the checkpoint hint)."""
        return self._log.latest_version()

    def refresh(self) -> Dataset:
        """Move this object to the latest committed version; returns self."""
        newer = self._log.read_since(self.version)
        if newer:
            self._set_snapshot(replay(self._snapshot, newer))
        return self

    def checkout(self, version: int) -> Dataset:
        """A new Dataset object pinned to ``version`` of the same branch."""
        return Dataset(
            self._store,
            self._log.snapshot(version),
            log=self._log,
            storage_options=self._storage_options,
            branch=self._branch,
        )

    # -- vector indexes (the logic lives in tensorhouse.index) -------------------------
    @property
    def indexes(self) -> list[IndexInfo]:
        """The vector indexes of this version (name, column, metric, kind, size)."""
        from tensorhouse.index import list_indexes

        return list_indexes(self)

    def create_index(
        self,
        column: str,
        *,
        name: str | None = None,
        metric: str = "cosine",
        kind: str = "ivf_flat",
        replace: bool = False,
        progress: bool | None = None,
        message: str | None = None,
        **params: Any,
    ) -> int:
        """Build a vector index over ``column`` (an Embedding or 1-d float Tensor) and commit it; returns the version.

        ``metric``: ``"cosine"``, ``"l2"`` or ``"dot"``. ``kind``: ``"ivf_flat"``
        (default; params ``nlist``, ``nprobe``) or ``"hnsw"`` (``m``,
        ``ef_construction``, ``ef_search``). Built with faiss on every core;
        a progress bar shows on a terminal. See :mod:`tensorhouse.index`.
        """
        from tensorhouse.index import create_index

        return create_index(
            self,
            column,
            name=name,
            metric=metric,
            kind=kind,
            replace=replace,
            progress=progress,
            message=message,
            **params,
        )

    def drop_index(self, name: str, *, message: str | None = None) -> int:
        """Drop the index ``name`` from the new version on (older versions keep it). Returns the new version."""
        from tensorhouse.index import drop_index

        return drop_index(self, name, message=message)

    def optimize_indexes(
        self, name: str | None = None, *, rebuild: bool = False, progress: bool | None = None
    ) -> list[int]:
        """Same as ``ds.optimize.indexes``: extend indexes with new rows, or rebuild them after compaction.

        Returns the versions committed (none when every index is up to date).
        """
        from tensorhouse.index import optimize_indexes

        return optimize_indexes(self, name, rebuild=rebuild, progress=progress)

    def nearest(
        self,
        column: str,
        query: Sequence[float] | np.ndarray,
        *,
        k: int = 10,
        where: str | None = None,
        metric: str | None = None,
        exact: bool = False,
        columns: Sequence[str] | None = None,
        index: str | None = None,
        with_rowid: bool = False,
        search_params: Mapping[str, int] | None = None,
    ) -> pa.Table:
        """The ``k`` rows whose ``column`` vector is nearest ``query``, best first: columns plus ``score``.

        Uses the column's index when there is one (rows appended since are
        searched exactly; deleted rows never return), brute force with
        ``exact=True`` or without an index. ``where`` (as in :meth:`delete`)
        filters inside the search, so k rows come back when k match.
        ``score``: cosine similarity, inner product (higher is nearer) or L2
        distance (lower is nearer). ``with_rowid=True`` adds ``_rowid`` (for ``th.loader``).
        ``search_params``: ``{"nprobe": 32}`` (ivf_flat) or ``{"ef_search": 128}`` (hnsw) trade
        speed for recall in this query.
        """
        from tensorhouse.index import nearest

        return nearest(
            self,
            column,
            query,
            k=k,
            where=where,
            metric=metric,
            exact=exact,
            columns=columns,
            index=index,
            with_rowid=with_rowid,
            search_params=search_params,
        )


def create(
    uri: str,
    schema: Mapping[str, TypeLike] | Schema,
    *,
    storage_options: Mapping[str, Any] | None = None,
    exist_ok: bool = False,
    chunk_bytes: int | None = None,
    tabular_files: str = "parquet",
    single_writer: bool = False,
    clock: Clock | None = None,
) -> Dataset:
    """Create an empty dataset at ``uri`` (a path, ``memory://name``, ``s3://bucket/prefix``).

    ``tabular_files``: how tabular columns (numbers, text, dates, decimals...)
    are stored. ``"parquet"`` (the default): the tabular columns of each append
    in plain Parquet files that SQL engines read natively (``ds.native_files()``).
    ``"chunks"``: a chunk file per column and chunk, the layout before Parquet
    group files, which tensorhouse 0.1 before group files reads, and which serves one text
    value by a range read. Tensor columns are always in chunk files.

    ``clock`` (seconds since the epoch, like ``time.time``, the default) stamps
    the commits made through the returned object; tests inject a fake one.
    Commit timestamps always increase with versions, whatever the clock says.

    Concurrent creators race on version 0: exactly one wins; the others get
    DatasetExistsError (or, with ``exist_ok=True`` and the same schema, the dataset).

    Example:
        >>> import tensorhouse as th
        >>> ds = th.create("memory://doc-create", {"caption": th.Text(), "score": "float32"})
        >>> ds.columns
        ['caption', 'score']
    """
    sch = Schema.of(schema)
    store = open_store(uri, storage_options, cacheable=layout.is_immutable)
    log = Log(store, single_writer=single_writer, clock=clock)
    config: dict[str, Any] = {}
    if chunk_bytes is not None:
        if chunk_bytes < 1024:
            raise ValueError(f"chunk_bytes must be at least 1024, got {chunk_bytes}")
        config["chunk_bytes"] = int(chunk_bytes)
    if tabular_files not in ("parquet", "chunks"):
        raise ValueError(f"tabular_files must be 'parquet' or 'chunks', got {tabular_files!r}")
    if tabular_files == "chunks":
        config["tabular_files"] = "chunks"
    meta = Metadata(
        uuid.uuid4().hex, sch, {n: i for i, n in enumerate(sch.names)}, len(sch), config
    )

    def build(snap: Snapshot | None, winners: Sequence[Commit]) -> list[Action]:
        if snap is not None:
            raise DatasetExistsError(f"a dataset already exists at {uri}")
        return [protocol(), SetMetadata(meta)]

    try:
        if log.versions():
            raise DatasetExistsError(f"a dataset already exists at {uri}")
        result = log.commit(None, build, operation="create")
    except DatasetExistsError:
        if not exist_ok:
            raise
        ds = open(uri, storage_options=storage_options, single_writer=single_writer, clock=clock)
        if ds.schema != sch:
            raise DatasetExistsError(
                f"a dataset with a different schema exists at {uri}: {ds.schema}"
            ) from None
        return ds
    return Dataset(store, result.snapshot, log=log, storage_options=storage_options)


def open(
    uri: str,
    *,
    version: int | None = None,
    timestamp: datetime | None = None,
    tag: str | None = None,
    branch: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    single_writer: bool = False,
    clock: Clock | None = None,
) -> Dataset:
    """Open the dataset at ``uri``: latest version, or one ``version``, ``timestamp`` or ``tag``, on a ``branch``.

    ``clock`` stamps the commits made through the returned object (see :func:`create`).

    ``timestamp`` picks the last version committed at or before it (a naive
    datetime is taken as UTC). Raises DatasetNotFoundError when there is no
    dataset, VersionNotFoundError when the version, time, tag or branch does not resolve.

    Example:
        >>> import tensorhouse as th
        >>> ds = th.create("memory://doc-open", {"x": "int64"})
        >>> _ = ds.append({"x": [1, 2]}); ds.tag("first")
        >>> _ = ds.append({"x": [3]})
        >>> len(th.open("memory://doc-open", tag="first")), len(th.open("memory://doc-open"))
        (2, 3)
    """
    if sum(x is not None for x in (version, timestamp, tag)) > 1:
        raise ValueError("give at most one of version=, timestamp=, tag=")
    if version is not None and (
        isinstance(version, bool) or not isinstance(version, int | np.integer)
    ):
        raise ArgumentError(f"open(version=...) takes an int version number, got {version!r}")
    store = open_store(uri, storage_options, cacheable=layout.is_immutable)
    if tag is not None:
        t = refs.read_tag(store, tag)
        if branch is not None and branch != t.branch:
            raise VersionNotFoundError(
                f"{uri}: tag {tag!r} is on branch {t.branch!r}, not {branch!r}"
            )
        branch, version = t.branch, t.version
    name = branch or refs.MAIN
    try:
        log = refs.branch_log(store, name, single_writer=single_writer)
        if clock is not None:
            log.clock = clock
        if timestamp is not None:
            ts = timestamp if timestamp.tzinfo else timestamp.replace(tzinfo=UTC)
            version = log.version_at(int(ts.timestamp() * 1000))
        snapshot = log.snapshot(version)
    except DatasetNotFoundError:
        raise DatasetNotFoundError(f"no tensorhouse dataset at {uri}") from None
    return Dataset(store, snapshot, log=log, storage_options=storage_options, branch=name)


#: Snapshots reopened by unpickling, per process: a Ray worker runs many read tasks of one
#: version and should replay the log once. Versions never change, so entries never go stale.
_REOPENED: dict[tuple[str, str, int, str, bool], tuple[Store, Log, Snapshot]] = {}
_REOPENED_MAX = 16


def reopen(
    uri: str,
    *,
    branch: str = refs.MAIN,
    version: int,
    storage_options: Mapping[str, Any] | None = None,
    single_writer: bool = False,
) -> Dataset:
    """A Dataset pinned to ``version`` of ``branch`` that opens on first use (what unpickling returns).

    Example:
        >>> import pickle, tensorhouse as th
        >>> ds = th.create("memory://doc-pickle", {"x": "int64"})
        >>> _ = ds.append({"x": [1, 2]})
        >>> again = pickle.loads(pickle.dumps(ds))
        >>> again.version, len(again)
        (1, 2)
    """
    ds = Dataset.__new__(Dataset)
    ds.__dict__["_uri_pending"] = uri
    ds.__dict__["_lazy"] = {
        "branch": branch,
        "version": version,
        "storage_options": dict(storage_options or {}),
        "single_writer": single_writer,
    }
    return ds


def _unpickle(
    uri: str, branch: str, version: int, storage_options: Mapping[str, Any], single_writer: bool
) -> Dataset:
    return reopen(
        uri,
        branch=branch,
        version=version,
        storage_options=storage_options,
        single_writer=single_writer,
    )


def _open_pinned(
    uri: str, *, branch: str, version: int, storage_options: Mapping[str, Any], single_writer: bool
) -> Dataset:
    key = (uri, branch, version, repr(sorted(storage_options.items())), single_writer)
    hit = _REOPENED.get(key)
    if hit is None:
        ds = open(
            uri,
            version=version,
            branch=branch,
            storage_options=storage_options or None,
            single_writer=single_writer,
        )
        if len(_REOPENED) >= _REOPENED_MAX:
            _REOPENED.pop(next(iter(_REOPENED)))
        _REOPENED[key] = hit = (ds.store, ds._log, ds.snapshot)
    store, log, snapshot = hit
    return Dataset(store, snapshot, log=log, storage_options=storage_options, branch=branch)
