"""An Arrow dataset over one snapshot: the object DuckDB and DataFusion scan.

:class:`TensorhouseArrowDataset` subclasses ``pyarrow.dataset.Dataset``
without calling its constructor (there is no C++ dataset behind it) and
overrides every method an engine or a user may call; the inherited ones
would crash. Both engines drive it the same way (measured on DuckDB 2.0.0
and DataFusion 55.0.0, see ``notes/engines.md``):

- DuckDB: ``scanner(columns=..., filter=...)`` once per query, then
  ``to_reader()``. ``columns=None`` means every declared column; ``count(*)``
  asks for column 0.
- DataFusion: ``scanner(...)`` at plan time for ``projected_schema`` only,
  then ``get_fragments(filter)`` and, per fragment (one partition each),
  ``fragment.scanner(schema, columns=, filter=, batch_size=)``.
  ``count(*)`` asks for ``columns=[]``.

Both drop a pushed filter from their own plan, so scans apply it exactly
(pyarrow compute), after skipping chunks and fragments whose min/max
statistics rule it out. Only the columns asked for, and those the filter
reads, are read: a query on ``label`` never touches an image chunk. Batches
are produced lazily (``RecordBatchReader.from_batches`` over a generator), so
an engine that stops pulling after a LIMIT stops the reads too.

**The row id column.** ``_rowid`` (int64, ``fragment_id << 32 | offset``)
costs no I/O. With ``rowid=True`` it is declared **first** (DuckDB's
``count(*)`` reads column 0, and ``_rowid`` is free where an image is not);
by default (``rowid=False``) the schema is exactly the dataset's columns.
The engine connectors register the ``rowid=True`` form under a companion
name and show the user a view without it (see ``connector/rowids.py``).

The ``_rowid`` field's metadata (``ROWID_DATASET_KEY``) names the dataset
(URI, version, branch), so a DataFusion result, which keeps field metadata,
tells the loader where its row ids point.

**Types the engines see.** Each column's Arrow type is
``ColumnType.arrow_type()`` with one change: float16 (scalar, tensor or
embedding elements) becomes float32, because DuckDB rejects a float16
column, selected or not, and fails the whole table. Fields carry the
tensorhouse type in their metadata (``tensorhouse.types.ARROW_METADATA_KEY``).

Example:
    >>> import numpy as np, pyarrow.compute as pc, tensorhouse as th
    >>> from tensorhouse.connector.arrow_dataset import TensorhouseArrowDataset
    >>> ds = th.create("memory://doc-arrow-ds", {"label": th.ClassLabel(["a", "b"]), "emb": th.Embedding(2)})
    >>> _ = ds.append({"label": [0, 1, 1], "emb": np.ones((3, 2), "float32")})
    >>> pets = TensorhouseArrowDataset(ds)
    >>> pets.schema.names
    ['label', 'emb']
    >>> TensorhouseArrowDataset(ds, rowid=True).schema.names
    ['_rowid', 'label', 'emb']
    >>> pets.to_table(columns=["label"], filter=pc.field("label") == 1).num_rows
    2
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tensorhouse.connector.arrow_guard import ALTERNATIVES, NativeGuard
from tensorhouse.connector.filter_tree import expression_key
from tensorhouse.connector.filters import bind_filter, check_filter, referenced_columns
from tensorhouse.connector.pruning import ColumnStats, plan_ranges
from tensorhouse.errors import NotIterableError, SchemaError, UnsupportedError
from tensorhouse.format.chunks.columnar import engine_type
from tensorhouse.format.dataset import Dataset
from tensorhouse.format.dataset import open as open_uri
from tensorhouse.format.scan import SnapshotReader
from tensorhouse.types import ROWID, ColumnType, Schema

#: Field-metadata key on ``_rowid`` naming the dataset its ids belong to: JSON with
#: ``uri``, ``version`` (None when the registration follows the latest) and ``branch``.
#: Storage options are left out: they may hold credentials, and results get written out.
ROWID_DATASET_KEY = b"tensorhouse.dataset"
#: Rows per batch unless the columns are wide: each batch is a round trip through Python.
BATCH_ROWS = 65536
#: Batches are kept to about this many bytes of column data (images make rows big).
BATCH_BYTES = 64 << 20
#: Rows per scan fragment (one DataFusion partition); tensorhouse fragments are split to this.
FRAGMENT_ROWS = 1 << 20
#: Pruning plans kept per pinned snapshot.
_PLANS_KEPT = 256


# -- engine-facing types -----------------------------------------------------------
def widen_float16(t: pa.DataType) -> pa.DataType:
    """``t`` with every float16 inside it made float32."""
    if pa.types.is_float16(t):
        return pa.float32()
    if pa.types.is_fixed_size_list(t):
        return pa.list_(t.value_field.with_type(widen_float16(t.value_type)), t.list_size)
    if pa.types.is_list(t):
        return pa.list_(t.value_field.with_type(widen_float16(t.value_type)))
    if pa.types.is_large_list(t):
        return pa.large_list(t.value_field.with_type(widen_float16(t.value_type)))
    if pa.types.is_struct(t):
        return pa.struct([f.with_type(widen_float16(f.type)) for f in t])
    return t


def engine_field(name: str, ctype: ColumnType) -> pa.Field:
    """The Arrow field engines see for a column (float16 widened), with the type in its metadata."""
    f = ctype.arrow_field(name)
    return f.with_type(engine_type(widen_float16(f.type)))


def rowid_field(source: Mapping[str, Any] | None = None) -> pa.Field:
    """The ``_rowid`` field; ``source`` (uri, version, branch) goes in its metadata for the loader."""
    meta = {ROWID_DATASET_KEY: json.dumps(dict(source)).encode()} if source else None
    return pa.field(ROWID, pa.int64(), nullable=False, metadata=meta)


def engine_schema(
    schema: Schema, *, rowid: bool = False, source: Mapping[str, Any] | None = None
) -> pa.Schema:
    """The Arrow schema a registration declares: ``_rowid`` first when ``rowid``, then the columns."""
    fields = [engine_field(n, t) for n, t in schema.columns]
    return pa.schema(([rowid_field(source)] if rowid else []) + fields)


# -- opening -----------------------------------------------------------------------
def open_dataset(
    source: str | Dataset,
    *,
    version: int | None = None,
    tag: str | None = None,
    timestamp: datetime | None = None,
    branch: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> Dataset:
    """A Dataset from a URI (at a version, tag, timestamp or branch) or an already open Dataset."""
    travel = [
        k for k, v in dict(tag=tag, timestamp=timestamp, branch=branch).items() if v is not None
    ]
    if isinstance(source, Dataset):
        if travel:
            raise ValueError(f"pass a URI, not an open Dataset, to open by {', '.join(travel)}")
        return source if version is None or version == source.version else source.checkout(version)
    if not isinstance(source, str):
        raise TypeError(
            f"expected a dataset URI or a tensorhouse Dataset, got {type(source).__name__}"
        )
    return open_uri(
        source,
        version=version,
        tag=tag,
        timestamp=timestamp,
        branch=branch,
        storage_options=storage_options,
    )


# -- one pinned snapshot -------------------------------------------------------------
@dataclass(eq=False)
class _Pinned:
    """What one query reads: a snapshot's reader and schema, fixed for the whole query."""

    uri: str
    version: int
    schema: Schema
    reader: SnapshotReader
    live_rows: int
    _row_bytes: dict[str, float] = field(default_factory=dict)
    #: Pruned ranges per (filter, start, stop): planning reads every chunk's statistics of the
    #: filter's columns (~0.5 ms for 1M rows), and a repeated query plans the same filter again.
    plans: dict[tuple[bytes, int, int], list[tuple[int, int]]] = field(default_factory=dict)

    @property
    def physical_rows(self) -> int:
        return int(self.reader.frag_starts[-1])

    def row_bytes(self, name: str) -> float:
        """Average stored bytes per row of a column (from chunk sizes in the log)."""
        if name not in self._row_bytes:
            idx = self.reader.index(name)
            total = sum(r.size for r in idx.refs if r is not None)
            self._row_bytes[name] = total / max(1, int(idx.starts[-1]))
        return self._row_bytes[name]

    def column_stats(self, name: str, t: pa.DataType) -> ColumnStats:
        idx = self.reader.index(name)
        # {} marks a chunk without statistics (nothing known); None a chunk-less range (all null).
        stats = [None if r is None else (r.stats if r.stats is not None else {}) for r in idx.refs]
        return ColumnStats(t, idx.starts, stats)


def _pin(ds: Dataset) -> _Pinned:
    return _Pinned(ds.uri, ds.version, ds.schema, ds.reader, len(ds))


# -- the dataset ---------------------------------------------------------------------
class TensorhouseArrowDataset(NativeGuard):
    """A ``pyarrow.dataset.Dataset`` over a tensorhouse dataset, for DuckDB and DataFusion.

    ``across_fragments``: partitions (``get_fragments``) of ``fragment_rows`` rows that may
    span tensorhouse fragments (see :meth:`get_fragments`).

    ``rowid``: declare ``_rowid`` first (see the module notes); off by default. ``refresh``:
    re-read the latest version at the start of every scan (a registration that
    sees new commits; the schema must not change). ``filter``: applied to
    every scan (what :meth:`filter` builds).

    Example:
        >>> import tensorhouse as th
        >>> ds = th.create("memory://doc-thad", {"x": "int64"})
        >>> _ = ds.append({"x": [1, 2, 3]})
        >>> TensorhouseArrowDataset(ds).to_table(columns=["x"], filter=pc.field("x") > 1).num_rows
        2
    """

    def __init__(
        self,
        dataset: Dataset,
        *,
        rowid: bool = False,
        refresh: bool = False,
        filter: pc.Expression | None = None,
        fragment_rows: int = FRAGMENT_ROWS,
        batch_bytes: int = BATCH_BYTES,
        across_fragments: bool = False,
    ) -> None:
        # pyarrow's Dataset constructor is deliberately not called: nothing native backs this object.
        if fragment_rows <= 0 or batch_bytes <= 0:
            raise ValueError("fragment_rows and batch_bytes must be positive")
        # A refreshing scan moves its Dataset forward: use a copy, not the caller's object.
        self._ds = dataset.checkout(dataset.version) if refresh else dataset
        self._rowid = rowid
        self._refresh = refresh
        self._fragment_rows = int(fragment_rows)
        self._across = bool(across_fragments)
        self._batch_bytes = int(batch_bytes)
        self._lock = threading.Lock()
        self._pinned = _pin(self._ds)
        source = {
            "uri": dataset.uri,
            "version": None if refresh else dataset.version,
            "branch": getattr(dataset, "branch_name", None),
        }
        self._schema = engine_schema(self._pinned.schema, rowid=rowid, source=source)
        if filter is not None:
            check_filter(filter, self._schema, where=self._where())
        self._filter = filter
        # A C++ dataset that refuses scans, so pyarrow's native paths raise instead of crashing.
        self.guard_native(self._schema, self._where())

    # -- description ------------------------------------------------------------------
    @property
    def schema(self) -> pa.Schema:
        """The declared Arrow schema (cached: DataFusion reads it many times a query)."""
        return self._schema

    @property
    def dataset(self) -> Dataset:
        return self._ds

    @property
    def version(self) -> int:
        """The version the last scan read (or will read, without ``refresh``)."""
        return self._pinned.version

    @property
    def partition_expression(self) -> pc.Expression:
        return pc.scalar(True)

    def _where(self) -> str:
        return f"{self._ds.uri} (version {self._pinned.version})"

    def __repr__(self) -> str:
        return f"<TensorhouseArrowDataset {self._ds.uri!r} version={self._pinned.version} rowid={self._rowid}>"

    def _current(self) -> _Pinned:
        if not self._refresh:
            return self._pinned
        with self._lock:
            self._ds.refresh()
            if self._ds.version != self._pinned.version:
                if self._ds.schema != self._pinned.schema:
                    raise SchemaError(
                        f"{self._ds.uri}: the schema changed at version {self._ds.version} since it was "
                        f"registered at version {self._pinned.version}; register the table again"
                    )
                self._pinned = _pin(self._ds)
            return self._pinned

    # -- scanning ---------------------------------------------------------------------
    def _columns(self, columns: Sequence[str] | None) -> list[str]:
        if columns is None:
            return list(self._schema.names)
        if isinstance(columns, Mapping):
            raise UnsupportedError(
                "projections given as {name: expression} are not supported; pass column names"
            )
        if isinstance(columns, str):
            raise SchemaError(f"columns must be a list of names, got the string {columns!r}")
        out = list(columns)
        for c in out:
            if c not in self._schema.names:
                if c == ROWID:
                    raise SchemaError(
                        f"{ROWID} is not exposed by this registration of {self._ds.uri}; "
                        "register it with rowid=True"
                    )
                raise SchemaError(
                    f"unknown column {c!r} of {self._where()}; columns are {self._schema.names}"
                )
        return out

    def _combine(self, expr: pc.Expression | None) -> pc.Expression | None:
        if expr is not None:
            if not isinstance(expr, pc.Expression):
                check_filter(expr, self._schema, where=self._where())  # the typed error
            try:
                referenced_columns(
                    expr, self._schema
                )  # validates too, and is cached per filter text
            except SchemaError:
                check_filter(
                    expr, self._schema, where=self._where()
                )  # the message naming this dataset
                raise
        if self._filter is None:
            return expr
        return self._filter if expr is None else self._filter & expr

    def _plan(
        self, pinned: _Pinned, expr: pc.Expression | None, start: int, stop: int
    ) -> list[tuple[int, int]]:
        if expr is None:
            return [(start, stop)] if stop > start else []
        key = expression_key(expr)
        if key is not None:
            hit = pinned.plans.get((key, start, stop))
            if hit is not None:
                return list(hit)
        ranges = self._plan_anew(pinned, expr, start, stop)
        if key is not None:
            if len(pinned.plans) >= _PLANS_KEPT:
                pinned.plans.clear()
            pinned.plans[(key, start, stop)] = list(ranges)
        return ranges

    def _plan_anew(
        self, pinned: _Pinned, expr: pc.Expression, start: int, stop: int
    ) -> list[tuple[int, int]]:
        stats = {
            n: pinned.column_stats(n, self._schema.field(n).type)
            for n in referenced_columns(expr, self._schema)
            if n != ROWID and pinned.schema[n].is_scalar
        }
        r = pinned.reader
        return plan_ranges(
            expr,
            self._schema,
            stats,
            start=start,
            stop=stop,
            frag_starts=r.frag_starts,
            frag_ids=r.frag_ids,
        )

    def _scanner(
        self,
        pinned: _Pinned,
        columns: Sequence[str] | None,
        expr: pc.Expression | None,
        ranges: list[tuple[int, int]] | None,
        start: int,
        stop: int,
        batch_rows: int,
    ) -> TensorhouseScanner:
        cols = self._columns(columns)
        if ranges is None:
            ranges = self._plan(pinned, expr, start, stop)
        return TensorhouseScanner(self, pinned, cols, expr, ranges, batch_rows)

    def scanner(
        self,
        columns: Sequence[str] | None = None,
        filter: pc.Expression | None = None,
        batch_size: int | None = None,
        **_ignored: Any,
    ) -> TensorhouseScanner:
        """A lazy scan of ``columns`` (None: all declared) of rows where ``filter`` holds.

        Other pyarrow scan options (threads, readahead) are accepted and ignored.
        """
        pinned = self._current()
        expr = self._combine(filter)
        rows = BATCH_ROWS if batch_size is None else max(1, int(batch_size))
        return self._scanner(pinned, columns, expr, None, 0, pinned.physical_rows, rows)

    def get_fragments(self, filter: pc.Expression | None = None) -> list[TensorhouseFragment]:
        """Contiguous row ranges (at most ``fragment_rows``, never across a tensorhouse fragment
        unless ``across_fragments``) that may hold rows matching ``filter``; statistics drop the
        others.

        ``across_fragments=True`` cuts the rows into ranges of ``fragment_rows`` whatever the
        tensorhouse fragments: each append makes a fragment, often of a few hundred thousand
        rows, and DataFusion opens every partition at once, each holding the chunks it decodes.
        Measured on TPC-H SF1 Q9 in DataFusion (lineitem: 20 fragments): peak RSS 1,147 MB with
        a partition per fragment, 781 MB with 1M-row partitions (Parquet: 495 MB).
        """
        pinned = self._current()
        expr = self._combine(filter)
        fs = pinned.reader.frag_starts
        bounds = (
            [(0, int(fs[-1]))]
            if self._across
            else list(zip(fs[:-1].tolist(), fs[1:].tolist(), strict=True))
        )
        out = []
        for a, b in bounds:
            for s in range(a, b, self._fragment_rows):
                e = min(b, s + self._fragment_rows)
                ranges = self._plan(pinned, expr, s, e)
                if ranges:
                    out.append(TensorhouseFragment(self, pinned, s, e, ranges))
        # One empty fragment rather than none: DataFusion's CREATE TABLE AS refuses zero partitions.
        return out or [TensorhouseFragment(self, pinned, 0, 0, [])]

    def to_batches(
        self,
        columns: Sequence[str] | None = None,
        filter: pc.Expression | None = None,
        batch_size: int | None = None,
        **_ignored: Any,
    ) -> Iterator[pa.RecordBatch]:
        return self.scanner(columns=columns, filter=filter, batch_size=batch_size).to_batches()

    def to_table(
        self,
        columns: Sequence[str] | None = None,
        filter: pc.Expression | None = None,
        batch_size: int | None = None,
        **_ignored: Any,
    ) -> pa.Table:
        return self.scanner(columns=columns, filter=filter, batch_size=batch_size).to_table()

    def count_rows(self, filter: pc.Expression | None = None, **_ignored: Any) -> int:
        if filter is None and self._filter is None:
            return self._current().live_rows
        return self.scanner(columns=[], filter=filter).count_rows()

    def head(
        self,
        num_rows: int,
        columns: Sequence[str] | None = None,
        filter: pc.Expression | None = None,
        **_ignored: Any,
    ) -> pa.Table:
        return self.scanner(columns=columns, filter=filter).head(num_rows)

    def take(
        self,
        indices: Sequence[int] | np.ndarray | pa.Array,
        columns: Sequence[str] | None = None,
        filter: pc.Expression | None = None,
        **_ignored: Any,
    ) -> pa.Table:
        """Rows at positions ``indices`` of the (filtered) scan. Reads the asked columns in full."""
        return self.scanner(columns=columns, filter=filter).take(indices)

    def filter(self, expression: pc.Expression) -> TensorhouseArrowDataset:
        """A dataset whose every scan also applies ``expression``."""
        out = TensorhouseArrowDataset(
            self._ds,
            rowid=self._rowid,
            refresh=self._refresh,
            filter=self._combine(expression),
            fragment_rows=self._fragment_rows,
            batch_bytes=self._batch_bytes,
            across_fragments=self._across,
        )
        return out

    def _unsupported(self, what: str) -> UnsupportedError:
        return UnsupportedError(
            f"{what} is not supported on a tensorhouse Arrow dataset; run it in DuckDB or "
            "DataFusion (th.duckdb / th.datafusion), or on to_table()"
        )

    def join(self, *args: Any, **kwargs: Any) -> Any:
        raise self._unsupported("join")

    def join_asof(self, *args: Any, **kwargs: Any) -> Any:
        raise self._unsupported("join_asof")

    def sort_by(self, *args: Any, **kwargs: Any) -> Any:
        raise self._unsupported("sort_by")

    def replace_schema(self, *args: Any, **kwargs: Any) -> Any:
        raise UnsupportedError(
            f"replace_schema (which pyarrow.dataset.dataset([...]) calls to union datasets) is "
            f"not supported on the tensorhouse dataset {self._where()}; {ALTERNATIVES}"
        )

    def __iter__(self) -> Any:
        # ray.data.from_arrow (and other "list of tables" APIs) iterate what they get and put every
        # table in memory: a dataset of any size would be loaded whole on the driver. Say what to use.
        raise NotIterableError(
            f"a tensorhouse Arrow dataset ({self._where()}) is not an iterable of tables or rows. "
            "For Ray Data read it in parallel with th.ray.read(uri, columns=..., filter=...) "
            "(ray.data.from_arrow takes in-memory tables only); for one table pa.table(ad) or "
            "ad.to_table(); for pandas th.open(uri).to_pandas()"
        )

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        """A full scan as an Arrow C stream: ``pa.table(ad)``, ``pyarrow.dataset.write_dataset(ad, ...)``,
        Polars and other Arrow consumers read it lazily, batch by batch."""
        return self.scanner().to_reader().__arrow_c_stream__(requested_schema)

    def _get_fragments(self, *args: Any, **kwargs: Any) -> Any:
        raise self._unsupported("_get_fragments")

    # -- pickling (Ray tasks, spawn-started workers) ---------------------------------
    def _options(self) -> dict[str, Any]:
        return {
            "rowid": self._rowid,
            "filter": self._filter,
            "fragment_rows": self._fragment_rows,
            "across_fragments": self._across,
            "batch_bytes": self._batch_bytes,
        }

    def __reduce__(self) -> Any:
        """Pickles by the Dataset's (uri, branch, version, storage options) and its options; the
        receiving process reopens it lazily, on first use (see ``Dataset.__reduce__``)."""
        return (_lazy_arrow_dataset, (self._ds, self._refresh, self._options()))

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes not set yet: those of an unpickled, not yet reopened dataset.
        lazy = self.__dict__.pop("_lazy", None)
        if lazy is None or name.startswith("__"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        ds, refresh, options = lazy
        TensorhouseArrowDataset.__init__(self, ds, refresh=refresh, **options)
        return getattr(self, name)

    # -- scan internals -----------------------------------------------------------------
    def _batch_rows(self, pinned: _Pinned, names: Iterable[str], limit: int) -> int:
        per_row = sum(pinned.row_bytes(n) for n in names if n != ROWID)
        if per_row <= 0:
            return limit
        return int(max(1, min(limit, self._batch_bytes // per_row)))


class TensorhouseFragment:
    """A contiguous row range of one snapshot: one DataFusion partition.

    ``ranges`` are the sub-ranges the filter given to ``get_fragments`` may match.
    """

    def __init__(
        self,
        owner: TensorhouseArrowDataset,
        pinned: _Pinned,
        start: int,
        stop: int,
        ranges: list[tuple[int, int]],
    ) -> None:
        self._owner = owner
        self._pinned = pinned
        self.start = start
        self.stop = stop
        self._ranges = ranges

    @property
    def partition_expression(self) -> pc.Expression:
        return pc.scalar(True)

    def __reduce__(self) -> Any:
        """Pickles as its row range of a dataset pinned to this fragment's version (reopened lazily)."""
        ds = self._owner.dataset
        if ds.version != self._pinned.version:  # a refreshing owner has moved on since
            ds = ds.checkout(self._pinned.version)
        owner = _lazy_arrow_dataset(ds, False, self._owner._options())
        return (_lazy_fragment, (owner, self.start, self.stop, self._ranges))

    def __getattr__(self, name: str) -> Any:
        if (
            name == "_pinned" and "_owner" in self.__dict__
        ):  # unpickled: the owner pins the same version
            self._pinned = self._owner._current()
            return self._pinned
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @property
    def ranges(self) -> list[tuple[int, int]]:
        """The sub-ranges the filter given to ``get_fragments`` may match."""
        return list(self._ranges)

    @property
    def physical_schema(self) -> pa.Schema:
        return self._owner.schema

    def __repr__(self) -> str:
        return f"<TensorhouseFragment rows [{self.start}, {self.stop}) of {self._pinned.uri!r}>"

    def scanner(
        self,
        schema: pa.Schema | None = None,
        columns: Sequence[str] | None = None,
        filter: pc.Expression | None = None,
        batch_size: int | None = None,
        **_ignored: Any,
    ) -> TensorhouseScanner:
        """A lazy scan of this range. ``batch_size`` below 65,536 rows is raised to it (DataFusion
        asks for 8,192, and every batch costs a round trip through Python)."""
        expr = self._owner._combine(filter)
        rows = BATCH_ROWS if batch_size is None else max(BATCH_ROWS, int(batch_size))
        # Planned again for this filter: the one get_fragments saw need not be the same.
        return self._owner._scanner(self._pinned, columns, expr, None, self.start, self.stop, rows)

    def to_batches(self, **kwargs: Any) -> Iterator[pa.RecordBatch]:
        return self.scanner(**kwargs).to_batches()

    def to_table(self, **kwargs: Any) -> pa.Table:
        return self.scanner(**kwargs).to_table()

    def count_rows(self, **kwargs: Any) -> int:
        return self.scanner(columns=[], **kwargs).count_rows()

    def head(self, num_rows: int, **kwargs: Any) -> pa.Table:
        return self.scanner(**kwargs).head(num_rows)

    def take(self, indices: Sequence[int] | np.ndarray | pa.Array, **kwargs: Any) -> pa.Table:
        return self.scanner(**kwargs).take(indices)


class TensorhouseScanner:
    """A lazy scan: what ``scanner()`` returns. Each ``to_batches``/``to_reader`` call scans afresh."""

    def __init__(
        self,
        owner: TensorhouseArrowDataset,
        pinned: _Pinned,
        columns: list[str],
        expr: pc.Expression | None,
        ranges: list[tuple[int, int]],
        batch_rows: int,
    ) -> None:
        self._owner = owner
        self._pinned = pinned
        self._columns = columns
        self._expr = expr
        self._ranges = ranges
        schema = owner.schema
        self.projected_schema = pa.schema([schema.field(c) for c in columns])
        self.dataset_schema = schema
        needed = list(columns)
        if expr is not None:
            needed += [c for c in referenced_columns(expr, schema) if c not in needed]
        self._needed = needed
        self._batch_rows = owner._batch_rows(pinned, needed, batch_rows)

    def __getattr__(self, name: str) -> Any:
        # Only reached for attributes not set yet: those of an unpickled scanner, not yet reopened.
        lazy = self.__dict__.pop("_lazy", None)
        if lazy is None or name.startswith("__"):
            raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")
        owner, columns, expr, ranges, batch_rows = lazy
        TensorhouseScanner.__init__(
            self, owner, owner._current(), columns, expr, ranges, batch_rows
        )
        return getattr(self, name)

    @property
    def ranges(self) -> list[tuple[int, int]]:
        """The physical row ranges this scan reads after statistics pruning."""
        return list(self._ranges)

    def __reduce__(self) -> Any:
        """Pickles as the same scan of a dataset pinned to this scan's version (reopened on unpickling)."""
        ds = self._owner.dataset
        if ds.version != self._pinned.version:
            ds = ds.checkout(self._pinned.version)
        owner = _lazy_arrow_dataset(ds, False, self._owner._options())
        return (
            _unpickle_scanner,
            (owner, self._columns, self._expr, self._ranges, self._batch_rows),
        )

    def to_batches(self) -> Iterator[pa.RecordBatch]:
        return _scan(
            self._pinned,
            self._owner.schema,
            self.projected_schema,
            self._columns,
            self._needed,
            self._expr,
            self._ranges,
            self._batch_rows,
        )

    def to_reader(self) -> pa.RecordBatchReader:
        # from_batches pulls one batch at a time; Scanner.from_batches would read ahead.
        return pa.RecordBatchReader.from_batches(self.projected_schema, self.to_batches())

    def __arrow_c_stream__(self, requested_schema: Any = None) -> Any:
        """This scan as an Arrow C stream (``pyarrow.dataset.write_dataset(scanner, ...)``, ``pa.table``)."""
        return self.to_reader().__arrow_c_stream__(requested_schema)

    def to_table(self) -> pa.Table:
        return pa.Table.from_batches(list(self.to_batches()), schema=self.projected_schema)

    def count_rows(self) -> int:
        return sum(b.num_rows for b in self.to_batches())

    def head(self, num_rows: int) -> pa.Table:
        out: list[pa.RecordBatch] = []
        n = 0
        batches = self.to_batches()
        for b in batches:
            if n >= num_rows:
                break
            out.append(b.slice(0, num_rows - n))
            n += out[-1].num_rows
        return pa.Table.from_batches(out, schema=self.projected_schema)

    def take(self, indices: Sequence[int] | np.ndarray | pa.Array) -> pa.Table:
        return self.to_table().take(indices)


def _scan(
    pinned: _Pinned,
    declared: pa.Schema,
    projected: pa.Schema,
    columns: list[str],
    needed: list[str],
    expr: pc.Expression | None,
    ranges: list[tuple[int, int]],
    batch_rows: int,
) -> Iterator[pa.RecordBatch]:
    data = [(n, pinned.schema[n]) for n in needed if n != ROWID]
    with_rowid = ROWID in needed
    read_schema = pa.schema([declared.field(n) for n in needed])
    # Bound once per scan: what the filter reads and how it is evaluated (not once per batch).
    bound = bind_filter(expr, read_schema) if expr is not None else None
    # Columnar chunks are produced in the declared (engine) types directly, once per chunk:
    # a string_view chunk is read as string instead of being cast batch by batch.
    types = [declared.field(n).type for n, _ in data]
    for a, b in ranges:
        for raw in pinned.reader.iter_batches(
            data,
            start=a,
            stop=b,
            batch_size=batch_rows,
            with_rowid=with_rowid,
            arrow_types=types,
        ):
            if needed:
                arrays = []
                for f in read_schema:
                    arr = raw.column(f.name)
                    arrays.append(arr if arr.type == f.type else arr.cast(f.type))
                batch = pa.RecordBatch.from_arrays(arrays, schema=read_schema)
            else:
                batch = raw.select([])
            if bound is not None:
                batch = bound.apply(batch)
            if batch.num_rows == 0:
                continue
            if not columns:
                yield batch.select([])
            elif len(columns) == len(needed):
                yield batch
            else:
                yield pa.RecordBatch.from_arrays(
                    [batch.column(c) for c in columns], schema=projected
                )


def _lazy_arrow_dataset(
    ds: Dataset, refresh: bool, options: dict[str, Any]
) -> TensorhouseArrowDataset:
    out = TensorhouseArrowDataset.__new__(TensorhouseArrowDataset)
    out.__dict__["_lazy"] = (ds, refresh, options)
    # Not opened yet, so no schema: a refusing C++ object of none until __init__ installs the real one,
    # so that pyarrow's native paths raise on it too instead of crashing on a null pointer.
    out.guard_native(pa.schema([]), "(an unpickled dataset, not opened yet)")
    return out


def _lazy_fragment(
    owner: TensorhouseArrowDataset, start: int, stop: int, ranges: list[tuple[int, int]]
) -> TensorhouseFragment:
    frag = TensorhouseFragment.__new__(TensorhouseFragment)
    frag.__dict__.update(_owner=owner, start=start, stop=stop, _ranges=ranges)
    return frag


def _unpickle_scanner(
    owner: TensorhouseArrowDataset,
    columns: list[str],
    expr: pc.Expression | None,
    ranges: list[tuple[int, int]],
    batch_rows: int,
) -> TensorhouseScanner:
    # Lazy, like the dataset: the scan is planned (and the dataset reopened) on first use.
    scanner = TensorhouseScanner.__new__(TensorhouseScanner)
    scanner.__dict__["_lazy"] = (owner, columns, expr, ranges, batch_rows)
    return scanner


def arrow_dataset(
    source: str | Dataset,
    *,
    version: int | None = None,
    tag: str | None = None,
    timestamp: datetime | None = None,
    branch: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    rowid: bool = False,
    refresh: bool = False,
    across_fragments: bool = False,
) -> TensorhouseArrowDataset:
    """Open a dataset (URI or Dataset) as a :class:`TensorhouseArrowDataset`
    (``across_fragments``: see :meth:`TensorhouseArrowDataset.get_fragments`).

    Example:
        >>> import tensorhouse as th
        >>> ds = th.create("memory://doc-arrow-open", {"x": "int64"})
        >>> _ = ds.append({"x": [1, 2]})
        >>> arrow_dataset("memory://doc-arrow-open", version=1).count_rows()
        2
    """
    pinned = any(x is not None for x in (version, tag, timestamp))
    if refresh and pinned:
        raise ValueError(
            "refresh=True follows the latest version; it cannot be combined with version, tag or timestamp"
        )
    ds = open_dataset(
        source,
        version=version,
        tag=tag,
        timestamp=timestamp,
        branch=branch,
        storage_options=storage_options,
    )
    return TensorhouseArrowDataset(
        ds, rowid=rowid, refresh=refresh, across_fragments=across_fragments
    )
