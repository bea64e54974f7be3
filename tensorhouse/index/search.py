"""Nearest-neighbour search over one version of a dataset, with or without an index.

With an index covering the column, a query searches it (filter inside the
search) and searches exactly the rows the index does not cover: fragments
appended after it was built, and fragments whose vectors were rewritten. The
two lists are merged. Rows deleted since the build (deletion vectors) and
rows of fragments that left the dataset (compaction) are excluded inside the
search, like the ``where`` filter, so k rows come back whenever k live rows
match. Without an index, or with ``exact=True``, every row is scored.

Scores follow ``th.sql.nearest``: cosine similarity and inner product
(higher is nearer) or L2 distance (lower is nearer), in a ``score`` column.

Example:
    >>> import numpy as np, tensorhouse as th
    >>> ds = th.create("memory://doc-index-search", {"id": "int64", "emb": th.Embedding(2)})
    >>> _ = ds.append({"id": [1, 2, 3], "emb": np.array([[1, 0], [0.6, 0.8], [0, 1]], "float32")})
    >>> nearest(ds, "emb", [0.0, 1.0], k=2, columns=["id"]).column("id").to_pylist()
    [3, 2]
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from tensorhouse.errors import SchemaError
from tensorhouse.format.convert import to_arrow
from tensorhouse.format.predicate import evaluate, parse_with_columns
from tensorhouse.index import ann, files
from tensorhouse.index.errors import IndexNotFoundError, VectorSearchError
from tensorhouse.index.vectors import (
    HIGHER_IS_NEARER,
    check_k,
    check_metric,
    check_query,
    scores,
    to_matrix,
    vector_dim,
)
from tensorhouse.types import ROWID

if TYPE_CHECKING:
    from tensorhouse.format.dataset import Dataset
    from tensorhouse.format.log.actions import IndexEntry

#: At or below this many allowed indexed rows (or 1% of them), score them all exactly with the index's
#: own vectors instead of an approximate search: as cheap, and a very selective filter starves an
#: approximate search of candidates.
EXACT_BELOW = 4096
SCORE = "score"


@dataclass(frozen=True)
class Hits:
    """Row ids and scores, best first."""

    rowids: np.ndarray
    scores: np.ndarray

    @staticmethod
    def empty() -> Hits:
        return Hits(np.zeros(0, np.int64), np.zeros(0, np.float64))


def top(rowids: np.ndarray, s: np.ndarray, k: int, metric: str) -> Hits:
    """The ``k`` best of ``(rowids, s)``, best first; rows without a score (NaN) are dropped."""
    ok = ~np.isnan(s)
    rowids, s = rowids[ok], s[ok]
    key = -s if HIGHER_IS_NEARER[metric] else s
    if len(key) > k:
        part = np.argpartition(key, k - 1)[:k]
        rowids, s, key = rowids[part], s[part], key[part]
    order = np.lexsort((rowids, key))  # ties: lower row id first, so results are deterministic
    return Hits(rowids[order].astype(np.int64), s[order].astype(np.float64))


def merge(a: Hits, b: Hits, k: int, metric: str) -> Hits:
    return top(
        np.concatenate([a.rowids, b.rowids]), np.concatenate([a.scores, b.scores]), k, metric
    )


def indexed_column(ds: Dataset, entry: IndexEntry) -> str | None:
    """The column ``entry`` indexes under its current name (it follows renames by field id), or None
    when that column was dropped."""
    meta = ds.snapshot.metadata
    fid = entry.params.get("field_id")
    if isinstance(fid, int):
        names = [n for n, i in meta.field_ids.items() if i == fid]
        return names[0] if names else None
    return entry.column if entry.column in meta.field_ids else None


def column_index(
    ds: Dataset, column: str, name: str | None, metric: str | None = None
) -> IndexEntry | None:
    """The index a search of ``column`` uses: ``name`` if given (it must cover the column), else the
    first index on the column with ``metric`` (when given and one has it), or None."""
    indexes = ds.snapshot.indexes
    if name is not None:
        entry = indexes.get(name)
        if entry is None:
            raise IndexNotFoundError(
                f"{ds.uri} (version {ds.version}): no index {name!r}; indexes are {sorted(indexes)}"
            )
        if indexed_column(ds, entry) != column:
            raise VectorSearchError(
                f"index={name!r} covers column {entry.column!r}, not column={column!r}"
            )
        return entry
    found = [e for _, e in sorted(indexes.items()) if indexed_column(ds, e) == column]
    same = [e for e in found if e.metric == metric]
    return same[0] if same else found[0] if found else None


_PARSED_LOCK = threading.Lock()
#: Parsed predicates by (text, schema): parsing type-checks on Arrow (~ms), a repeated query needn't.
_PARSED: OrderedDict[tuple[str, Any], tuple[Any, list[str]]] = OrderedDict()


class _Filter:
    """A ``where=`` predicate over the dataset's columns, evaluated on Arrow batches."""

    def __init__(self, ds: Dataset | None, where: str | None) -> None:
        self.expr: Any = None
        self.columns: list[str] = []
        self.rowids: np.ndarray | None = None
        self.text = where
        if where is None or ds is None:
            return
        if not isinstance(where, str):
            raise VectorSearchError(
                f"where: must be a SQL condition string, got {type(where).__name__}"
            )
        key = (where, ds.schema)
        with _PARSED_LOCK:
            hit = _PARSED.get(key)
        if hit is None:
            types = {n: t.arrow_type() for n, t in ds.schema.columns}
            expr, used = parse_with_columns(where, types)
            hit = (expr, [n for n in ds.columns if n in used])
            with _PARSED_LOCK:
                _PARSED[key] = hit
                while len(_PARSED) > 64:
                    _PARSED.popitem(last=False)
        self.expr, self.columns = hit[0], list(hit[1])

    @staticmethod
    def of_rowids(rowids: np.ndarray) -> _Filter:
        """A filter that keeps the given row ids (a condition an engine already evaluated)."""
        f = _Filter(None, None)
        f.rowids = np.unique(np.asarray(rowids, dtype=np.int64))
        return f

    @property
    def active(self) -> bool:
        return self.expr is not None or self.rowids is not None

    def mask(self, batch: pa.RecordBatch) -> np.ndarray | None:
        if self.rowids is not None:
            return np.isin(batch.column(ROWID).to_numpy(), self.rowids)
        if self.expr is None:
            return None
        return np.asarray(
            evaluate(self.expr, batch.select(self.columns)).to_numpy(zero_copy_only=False),
            dtype=bool,
        )

    def matching_rowids(self, ds: Dataset) -> np.ndarray:
        """Sorted row ids of the live rows where the predicate holds (reads only its columns)."""
        if self.rowids is not None:
            return self.rowids
        out = []
        cols = [(n, ds.schema[n]) for n in self.columns]
        for b in ds.reader.iter_batches(cols, with_rowid=True):
            m = self.mask(b)
            out.append(
                b.column(ROWID).to_numpy()[m] if m is not None else b.column(ROWID).to_numpy()
            )
        return np.sort(np.concatenate(out)) if out else np.zeros(0, np.int64)


def _exact_ranges(
    ds: Dataset,
    column: str,
    dim: int,
    q: np.ndarray,
    k: int,
    metric: str,
    flt: _Filter,
    ranges: Sequence[tuple[int, int]],
) -> Hits:
    """Exact top-k over the live rows of physical row ranges, the filter applied per batch."""
    best = Hits.empty()
    cols = [(column, ds.schema[column])] + [(n, ds.schema[n]) for n in flt.columns if n != column]
    for start, stop in ranges:
        for b in ds.reader.iter_batches(cols, start=start, stop=stop, with_rowid=True):
            m, valid = to_matrix(b.column(0), dim)
            rowids = b.column(ROWID).to_numpy()
            keep = valid
            fm = flt.mask(b)
            if fm is not None:
                keep = fm if keep is None else keep & fm
            if keep is not None:
                m, rowids = m[keep], rowids[keep]
            if len(rowids):
                best = merge(best, top(rowids, scores(m, q, metric), k, metric), k, metric)
    return best


@dataclass(frozen=True)
class _Mask:
    """Which index positions a search may return, and the fragments the index validly covers."""

    allowed: np.ndarray | None  # None: every position
    count: int
    covered: frozenset[int]


_MASK_LOCK = threading.Lock()
#: Masks by (store, branch, version, index file, where): a version never changes, so neither does the
#: mask of a predicate over it; a repeated filtered query then skips re-reading the filter's columns.
_MASKS: OrderedDict[tuple[Any, ...], _Mask] = OrderedDict()
MASK_CACHE_ENTRIES = 16


def _mask(ds: Dataset, loaded: files.LoadedIndex, path: str, column: str, flt: _Filter) -> _Mask:
    key = None
    if flt.rowids is None:
        key = (
            ds.store.uri,
            ds.snapshot.metadata.dataset_id,
            ds.branch_name,
            ds.version,
            path,
            flt.text,
        )
        with _MASK_LOCK:
            hit = _MASKS.get(key)
            if hit is not None:
                _MASKS.move_to_end(key)
                return hit
    meta = loaded.meta
    snap = ds.snapshot
    field_id = snap.metadata.field_id(column)
    live = {f.id: i for i, f in enumerate(snap.fragments)}
    n = meta.count
    allowed = np.ones(n, dtype=bool)
    restricted = False
    covered: set[int] = set()
    for fid, start, count, paths in meta.fragments:
        i = live.get(fid)
        if i is None or tuple(c.path for c in snap.fragments[i].columns.get(field_id, ())) != paths:
            allowed[start : start + count] = False  # gone (compacted) or its vectors were rewritten
            restricted = True
            continue
        covered.add(fid)
        if snap.fragments[i].deletion is not None:
            dead = ds.reader.deleted_offsets(i)
            offs = loaded.rowids[start : start + count] & 0xFFFFFFFF
            at = np.searchsorted(offs, dead)
            ok = at < count
            at = at[ok][offs[at[ok]] == dead[ok]]
            allowed[start + at] = False
            restricted = True
    if flt.active:
        where_mask = np.zeros(n, dtype=bool)
        where_mask[loaded.positions(flt.matching_rowids(ds))] = True
        allowed &= where_mask
        restricted = True
    out = _Mask(
        allowed if restricted else None, int(allowed.sum()) if restricted else n, frozenset(covered)
    )
    if key is not None:
        with _MASK_LOCK:
            _MASKS[key] = out
            while len(_MASKS) > MASK_CACHE_ENTRIES:
                _MASKS.popitem(last=False)
    return out


def _search_params(kind: str, given: Mapping[str, int] | None) -> dict[str, int]:
    allowed = {"ivf_flat": "nprobe", "hnsw": "ef_search"}[kind]
    out = ann.check_params(kind, dict(given or {}))
    if set(out) - {allowed}:
        raise VectorSearchError(
            f"search_params={dict(given or {})!r}: a {kind} index is tuned per query with "
            f"{allowed!r} only"
        )
    return out


def _indexed(
    ds: Dataset,
    entry: IndexEntry,
    column: str,
    q: np.ndarray,
    k: int,
    metric: str,
    flt: _Filter,
    tuning: Mapping[str, int],
) -> tuple[Hits, frozenset[int]]:
    """Search the index; returns the hits and the ids of the fragments it validly covers."""
    ref = entry.files[0]
    loaded = files.load(ds.store, ref.path, ref.size)
    m = _mask(ds, loaded, ref.path, column, flt)
    n = loaded.meta.count
    if m.count == 0:
        return Hits.empty(), m.covered
    params = {**loaded.meta.params, **tuning}
    kind = loaded.meta.kind
    few = m.allowed is not None and m.count <= max(EXACT_BELOW, n // 100)
    pos, s = ann.search(
        loaded.index,
        q,
        k=k,
        metric=metric,
        kind=kind,
        params=params,
        allowed=m.allowed,
        selectivity=m.count / max(n, 1),
        exhaustive=few,
    )
    if len(pos) < min(
        k, m.count
    ):  # the search ran out of candidates: score every allowed vector exactly
        pos, s = ann.search(
            loaded.index,
            q,
            k=k,
            metric=metric,
            kind=kind,
            params=params,
            allowed=m.allowed,
            exhaustive=True,
        )
    return Hits(loaded.rowids[pos], s), m.covered


def search(
    ds: Dataset,
    column: str,
    query: Sequence[float] | np.ndarray,
    *,
    k: int = 10,
    where: str | None = None,
    metric: str | None = None,
    exact: bool = False,
    index: str | None = None,
    allowed_rowids: np.ndarray | None = None,
    search_params: Mapping[str, int] | None = None,
) -> tuple[Hits, str]:
    """Row ids and scores of the ``k`` nearest rows, and the metric used (see :func:`nearest`).

    ``allowed_rowids``: search only these rows (a filter an engine evaluated), instead of ``where``.
    ``search_params``: this query's ``nprobe`` (ivf_flat) or ``ef_search`` (hnsw), trading speed for recall.
    """
    if column not in ds.schema:
        raise VectorSearchError(
            f"column={column!r} is not a column of {ds.uri}; columns are {ds.columns}"
        )
    dim = vector_dim(ds.schema[column], column)
    k = check_k(k)
    entry = column_index(ds, column, index, metric)
    if metric is None:
        metric = entry.metric if entry is not None else "cosine"
    metric = check_metric(metric)
    if entry is not None and metric != entry.metric and not exact:
        raise VectorSearchError(
            f"metric={metric!r} does not match index {entry.name!r} on column {column!r}, "
            f"built with metric={entry.metric!r}; pass metric={entry.metric!r}, exact=True, "
            "or create an index with this metric"
        )
    q = check_query(query, dim, metric=metric, column=column)
    if where is not None and allowed_rowids is not None:
        raise VectorSearchError("where: give where= or allowed_rowids=, not both")
    flt = _Filter(ds, where) if allowed_rowids is None else _Filter.of_rowids(allowed_rowids)
    reader = ds.reader
    starts = reader.frag_starts
    if exact or entry is None:
        return _exact_ranges(
            ds, column, dim, q, k, metric, flt, [(0, reader.num_physical_rows)]
        ), metric
    tuning = _search_params(entry.kind, search_params)
    hits, covered = _indexed(ds, entry, column, q, k, metric, flt, tuning)
    rest = [
        (int(starts[i]), int(starts[i + 1]))
        for i, f in enumerate(ds.snapshot.fragments)
        if f.id not in covered
    ]
    if rest:
        hits = merge(hits, _exact_ranges(ds, column, dim, q, k, metric, flt, rest), k, metric)
    return hits, metric


def rows_table(
    ds: Dataset,
    hits: Hits,
    columns: Sequence[str] | None,
    *,
    with_rowid: bool,
    rowid_field: pa.Field | None = None,
) -> pa.Table:
    """The hit rows as an Arrow table: ``_rowid`` (if asked), the columns, then ``score``."""
    names = ds.columns if columns is None else list(columns)
    if isinstance(columns, str):
        raise SchemaError(f"columns must be a list of names, got the string {columns!r}")
    for c in names:
        if c != ROWID and c not in ds.schema:
            raise SchemaError(f"unknown column {c!r}; columns are {ds.columns}")
        if c == SCORE:
            raise VectorSearchError(
                f"columns: the dataset's column {SCORE!r} would clash with the result's "
                f"{SCORE!r}; leave it out of columns=[...]"
            )
    with_rowid = with_rowid or ROWID in names
    names = [c for c in names if c != ROWID]
    rows = ds.reader.rows_of_rowids(hits.rowids)
    arrays: list[pa.Array] = []
    fields: list[pa.Field] = []
    if with_rowid:
        arrays.append(pa.array(hits.rowids, pa.int64()))
        fields.append(rowid_field or pa.field(ROWID, pa.int64(), nullable=False))
    for n in names:
        ctype = ds.schema[n]
        arrays.append(to_arrow(ds.reader.read_rows(n, ctype, rows), ctype))
        fields.append(ctype.arrow_field(n))
    arrays.append(pa.array(hits.scores, pa.float64()))
    fields.append(pa.field(SCORE, pa.float64()))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def nearest(
    ds: Dataset,
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
    """The ``k`` rows whose ``column`` vector is nearest ``query``, best first, as an Arrow table.

    Columns: the dataset's (or ``columns``), then ``score``. ``where`` (the
    predicate language of ``delete``) filters inside the search. ``metric``
    defaults to the index's (cosine without one); another metric than the
    index's is an error unless ``exact=True``. ``exact=True`` scores every row.
    ``search_params``: ``{"nprobe": 32}`` (ivf_flat) or ``{"ef_search": 128}`` (hnsw) for this query.
    """
    hits, _ = search(
        ds,
        column,
        query,
        k=k,
        where=where,
        metric=metric,
        exact=exact,
        index=index,
        search_params=search_params,
    )
    field = None
    if (
        with_rowid
    ):  # name the dataset in _rowid's metadata, as registered tables do, so th.loader finds it
        from tensorhouse.connector.arrow_dataset import rowid_field

        field = rowid_field({"uri": ds.uri, "version": ds.version, "branch": ds.branch_name})
    return rows_table(ds, hits, columns, with_rowid=with_rowid, rowid_field=field)


__all__ = ["Hits", "column_index", "indexed_column", "nearest", "rows_table", "search"]
