"""Building, extending, listing and dropping indexes: each change is one commit in the log.

An index is an immutable file under ``_indexes/`` plus an ``add_index`` log
action naming it, its column, metric and kind, and the fragments it covers.
So an index has a version like everything else: time travel finds the index
valid then, a restore brings its index back, and vacuum keeps index files
that retained versions reference.

Example:
    >>> import numpy as np, tensorhouse as th
    >>> ds = th.create("memory://doc-index-build", {"emb": th.Embedding(8)})
    >>> _ = ds.append({"emb": np.random.default_rng(0).standard_normal((200, 8)).astype("float32")})
    >>> create_index(ds, "emb", metric="l2", progress=False)
    2
    >>> [(i.name, i.column, i.metric, i.kind, i.num_vectors) for i in list_indexes(ds)]
    [('emb_idx', 'emb', 'l2', 'ivf_flat', 200)]
"""

from __future__ import annotations

import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from tensorhouse.format.log.actions import IndexEntry, IndexFile
from tensorhouse.index import ann, files
from tensorhouse.index.errors import IndexNotFoundError, VectorSearchError
from tensorhouse.index.search import indexed_column
from tensorhouse.index.vectors import check_metric, iter_vectors, vector_dim

if TYPE_CHECKING:
    from tensorhouse.format.dataset import Dataset

_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.-]{0,127}")


@dataclass(frozen=True)
class IndexInfo:
    """One index of a dataset version, as ``ds.indexes`` lists it."""

    name: str
    column: str
    metric: str
    kind: str
    num_vectors: int
    size_bytes: int
    fragment_ids: tuple[int, ...]
    params: Mapping[str, Any]
    #: False once its column was dropped: searches no longer use it (drop_index removes it).
    usable: bool = True


def info(entry: IndexEntry, column: str | None) -> IndexInfo:
    return IndexInfo(
        entry.name,
        column or entry.column,
        entry.metric,
        entry.kind,
        int(entry.params.get("num_vectors", 0)),
        sum(f.size for f in entry.files),
        tuple(entry.fragment_ids),
        dict(entry.params.get("given", {})),
        column is not None,
    )


def list_indexes(ds: Dataset) -> list[IndexInfo]:
    return [info(e, indexed_column(ds, e)) for _, e in sorted(ds.snapshot.indexes.items())]


def _progress(progress: bool | None) -> bool:
    return sys.stderr.isatty() if progress is None else bool(progress)


def _collect(
    ds: Dataset,
    column: str,
    dim: int,
    fragment_ids: set[int] | None,
    progress: bool,
    *,
    metric: str,
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, int, int, tuple[str, ...]]]]:
    """Vectors and row ids of the live rows of the dataset's fragments (all, or ``fragment_ids``).

    For cosine, zero vectors are left out: their cosine is undefined, and exact search never returns them.
    """
    from tqdm.auto import tqdm

    snap = ds.snapshot
    starts = ds.reader.frag_starts
    field_id = snap.metadata.field_id(column)
    vecs: list[np.ndarray] = []
    ids: list[np.ndarray] = []
    frags: list[tuple[int, int, int, tuple[str, ...]]] = []
    pos = 0
    todo = [
        (i, f) for i, f in enumerate(snap.fragments) if fragment_ids is None or f.id in fragment_ids
    ]
    with tqdm(
        total=sum(f.num_live for _, f in todo),
        desc=f"read {column}",
        unit="row",
        disable=not progress,
        leave=False,
    ) as bar:
        for i, f in todo:
            n = 0
            for rowids, m in iter_vectors(
                ds, column, dim, start=int(starts[i]), stop=int(starts[i + 1])
            ):
                if metric == "cosine":
                    nonzero = np.any(m != 0, axis=1)
                    if not nonzero.all():
                        rowids, m = rowids[nonzero], m[nonzero]
                vecs.append(m)
                ids.append(rowids)
                n += len(rowids)
            bar.update(f.num_live)
            frags.append((f.id, pos, n, tuple(c.path for c in f.columns.get(field_id, ()))))
            pos += n
    x = np.concatenate(vecs) if vecs else np.zeros((0, dim), np.float32)
    return x, (np.concatenate(ids) if ids else np.zeros(0, np.int64)), frags


def _commit(
    ds: Dataset,
    name: str,
    column: str,
    metric: str,
    kind: str,
    given: Mapping[str, int],
    meta: files.IndexMeta,
    rowids: np.ndarray,
    payload: bytes,
    message: str | None,
) -> int:
    ref = files.write(ds.store, meta, rowids, payload)
    params = {
        "given": dict(given),
        "resolved": dict(meta.params),
        "num_vectors": meta.count,
        "dim": meta.dim,
        "field_id": ds.snapshot.metadata.field_id(column),
        "library": f"faiss {ann.library_version()}",
    }
    entry = IndexEntry(
        name,
        column,
        metric,
        kind,
        (IndexFile(ref.path, ref.size),),
        tuple(f for f, _, _, _ in meta.fragments),
        params,
    )
    with ds.transaction(message=message or f"index {name} on {column}") as tx:
        tx.add_index(entry)
    return ds.version


def create_index(
    ds: Dataset,
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
    """Build an index over ``column`` of the latest version and commit it; returns the new version.

    ``params`` are the kind's settings (``nlist``/``nprobe`` for ``ivf_flat``,
    ``m``/``ef_construction``/``ef_search`` for ``hnsw``). The name defaults
    to ``<column>_idx``; an existing index of that name is replaced only with
    ``replace=True``. A progress bar shows on a terminal (``progress=``).
    """
    ds.refresh()
    if column not in ds.schema:
        raise VectorSearchError(
            f"column={column!r} is not a column of {ds.uri}; columns are {ds.columns}"
        )
    dim = vector_dim(ds.schema[column], column)
    metric = check_metric(metric)
    given = ann.check_params(kind, params)
    name = f"{column}_idx" if name is None else name
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise VectorSearchError(
            f"name={name!r}: an index name is letters, digits, '_', '.', '-' (at most 128)"
        )
    if name in ds.snapshot.indexes and not replace:
        raise VectorSearchError(
            f"name={name!r}: {ds.uri} already has an index of that name; pass replace=True (--replace) "
            "to rebuild it, or drop_index it first"
        )
    return _build(ds, name, column, dim, metric, kind, given, _progress(progress), message)


def _build(
    ds: Dataset,
    name: str,
    column: str,
    dim: int,
    metric: str,
    kind: str,
    given: Mapping[str, int],
    progress: bool,
    message: str | None,
) -> int:
    x, rowids, frags = _collect(ds, column, dim, None, progress, metric=metric)
    if len(x) == 0:
        raise VectorSearchError(
            f"column={column!r} of {ds.uri} has no vectors to index (no rows, or all NULL)"
        )
    built = ann.build(
        x, metric=metric, kind=kind, params=given, progress=progress, desc=f"index {name}"
    )
    meta = files.IndexMeta(kind, metric, dim, len(x), tuple(frags), built.params)
    return _commit(
        ds, name, column, metric, kind, given, meta, rowids, ann.save(built.index), message
    )


def drop_index(ds: Dataset, name: str, *, message: str | None = None) -> int:
    """Drop the index ``name`` from the new version on (older versions keep it). Returns the new version."""
    ds.refresh()
    if name not in ds.snapshot.indexes:
        raise IndexNotFoundError(
            f"{ds.uri}: no index {name!r}; indexes are {sorted(ds.snapshot.indexes)}"
        )
    with ds.transaction(message=message or f"drop index {name}") as tx:
        tx.drop_index(name)
    return ds.version


def optimize_indexes(
    ds: Dataset, name: str | None = None, *, rebuild: bool = False, progress: bool | None = None
) -> list[int]:
    """Bring indexes (``name``, or all) up to date with the latest version; returns the versions committed.

    Rows appended since the build are added to the index (extend); when
    fragments it covered were compacted, rewritten or removed, or the new rows
    outnumber the indexed ones (IVF lists trained on too few), it is rebuilt
    with the same settings. An index already up to date is left alone.
    """
    ds.refresh()
    show = _progress(progress)
    names = sorted(ds.snapshot.indexes) if name is None else [name]
    out = []
    for n in names:
        entry = ds.snapshot.indexes.get(n)
        if entry is None:
            raise IndexNotFoundError(
                f"{ds.uri}: no index {n!r}; indexes are {sorted(ds.snapshot.indexes)}"
            )
        v = _optimize_one(ds, entry, rebuild, show)
        if v is not None:
            out.append(v)
    return out


def _optimize_one(ds: Dataset, entry: IndexEntry, rebuild: bool, progress: bool) -> int | None:
    snap = ds.snapshot
    found = indexed_column(ds, entry)
    if found is None:
        raise VectorSearchError(
            f"index {entry.name!r}: its column {entry.column!r} was dropped; drop_index it"
        )
    column = found
    dim = vector_dim(ds.schema[column], column)
    given = ann.check_params(entry.kind, entry.params.get("given", {}))
    ref = entry.files[0]
    loaded = files.load(ds.store, ref.path, ref.size)
    field_id = snap.metadata.field_id(column)
    live = {f.id: f for f in snap.fragments}
    stale = [
        f
        for f, _, _, paths in loaded.meta.fragments
        if f not in live or tuple(c.path for c in live[f].columns.get(field_id, ())) != paths
    ]
    covered = {f for f, _, _, _ in loaded.meta.fragments}
    new = {f.id for f in snap.fragments if f.id not in covered}
    new_rows = sum(live[f].num_live for f in new)
    if rebuild or stale or new_rows > loaded.meta.count:
        return _build(
            ds,
            entry.name,
            column,
            dim,
            entry.metric,
            entry.kind,
            given,
            progress,
            f"rebuild index {entry.name}",
        )
    if not new:
        return None
    x, rowids, frags = _collect(ds, column, dim, new, progress, metric=entry.metric)
    # A copy: the loaded index is shared by searches of the version that still uses it.
    index = ann.load(ann.save(loaded.index))
    if len(x):
        built_vectors = ann.prepare(x, entry.metric)
        index.add(built_vectors)
    base = loaded.meta.count
    meta = files.IndexMeta(
        entry.kind,
        entry.metric,
        dim,
        base + len(x),
        loaded.meta.fragments + tuple((f, s + base, c, p) for f, s, c, p in frags),
        loaded.meta.params,
    )
    all_ids = np.concatenate([loaded.rowids, rowids])
    return _commit(
        ds,
        entry.name,
        column,
        entry.metric,
        entry.kind,
        given,
        meta,
        all_ids,
        ann.save(index),
        f"extend index {entry.name}",
    )


__all__ = ["IndexInfo", "create_index", "drop_index", "list_indexes", "optimize_indexes"]
