"""The ANN library behind tensorhouse indexes: faiss (``faiss-cpu``), imported lazily here only.

Chosen by measurement on this project's machine (2 cores, 50k x 128 clustered
float32, cosine, top-10; see ``notes/issue-18.md``):

============================  ========  ==========  ==========  ===================
library / index               build     recall@10   latency     filtered search
============================  ========  ==========  ==========  ===================
usearch 2.26 HNSW (M=16)      8.4 s     1.000       0.25 ms     not in the Python API
faiss HNSW (M=16)             5.7 s     1.000       0.12 ms     IDSelector, 0.93
faiss IVF-Flat (nlist=894)    1.8 s     1.000       0.09 ms     IDSelector, 0.95-0.97
============================  ========  ==========  ==========  ===================

faiss builds faster on all cores (OpenMP), searches faster, and filters
*inside* the search with an ``IDSelector`` (a row outside the filter is
skipped during the scan, so k filtered rows come back when they exist);
usearch's Python API has no filtered search, and hnswlib's filter is a Python
callback per candidate and is not installed here. Two kinds:

- ``ivf_flat`` (default): k-means lists of full vectors; fastest to build,
  exact distances, filtered recall holds up. Params: ``nlist`` (default
  ``sqrt(n)``), ``nprobe`` (lists scanned per query, default 16).
- ``hnsw``: a graph; lowest latency, slower to build. Params: ``m`` (16),
  ``ef_construction`` (80), ``ef_search`` (64).

Faiss ids are positions 0..n-1 in the index file; the file maps them to row ids.

Example:
    >>> import numpy as np
    >>> x = np.random.default_rng(0).standard_normal((500, 8)).astype("float32")
    >>> built = build(x, metric="l2", kind="ivf_flat", params={"nlist": 4}, progress=False)
    >>> ix = load(save(built.index))
    >>> pos, dist = search(ix, x[7], k=1, metric="l2", kind="ivf_flat", params=built.params, allowed=None)
    >>> int(pos[0]), float(dist[0])
    (7, 0.0)
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from tensorhouse.index.errors import IndexLibraryMissingError, VectorSearchError
from tensorhouse.index.vectors import normalized

KINDS = ("ivf_flat", "hnsw")
_PARAMS = {"ivf_flat": {"nlist", "nprobe"}, "hnsw": {"m", "ef_construction", "ef_search"}}
#: Vectors added per call: the progress bar moves between calls, faiss parallelizes within one.
ADD_BATCH = 65536
#: Training points per IVF list (faiss warns under 39; more costs build time, not recall).
TRAIN_PER_LIST = 64


def faiss_module() -> Any:
    try:
        import faiss
    except ImportError as err:  # pragma: no cover - the extra is installed in dev
        raise IndexLibraryMissingError(
            "vector indexes need faiss: pip install 'tensorhouse[vector]' (or faiss-cpu)"
        ) from err
    return faiss


def library_version() -> str:
    return str(faiss_module().__version__)


def check_params(kind: str, params: Mapping[str, Any]) -> dict[str, int]:
    """Validated integer parameters of ``kind``; VectorSearchError naming a bad one."""
    if kind not in KINDS:
        raise VectorSearchError(
            f"kind={kind!r} is not an index kind; expected one of {list(KINDS)}"
        )
    out: dict[str, int] = {}
    for name, value in params.items():
        if name not in _PARAMS[kind]:
            raise VectorSearchError(
                f"{name}={value!r} is not a parameter of a {kind} index; "
                f"its parameters are {sorted(_PARAMS[kind])}"
            )
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise VectorSearchError(f"{name}={value!r}: must be a positive integer")
        out[name] = int(value)
    return out


def resolve_params(kind: str, n: int, params: Mapping[str, Any]) -> dict[str, int]:
    """``params`` with the defaults for ``n`` vectors filled in."""
    p = check_params(kind, params)
    if kind == "ivf_flat":
        nlist = p.get("nlist", max(1, round(math.sqrt(n))))
        p["nlist"] = max(1, min(nlist, n // 39 if n >= 39 else 1))
        p.setdefault("nprobe", 16)
    else:
        p.setdefault("m", 16)
        p.setdefault("ef_construction", 80)
        p.setdefault("ef_search", 64)
    return p


@dataclass(frozen=True)
class Built:
    index: Any
    params: dict[str, int]


def _faiss_metric(faiss: Any, metric: str) -> int:
    return int(faiss.METRIC_L2 if metric == "l2" else faiss.METRIC_INNER_PRODUCT)


def prepare(vectors: np.ndarray, metric: str) -> np.ndarray:
    """Vectors as the index stores them: unit length for cosine (searched by inner product)."""
    return (
        normalized(vectors)
        if metric == "cosine"
        else np.ascontiguousarray(vectors, dtype=np.float32)
    )


def build(
    vectors: np.ndarray,
    *,
    metric: str,
    kind: str,
    params: Mapping[str, Any],
    progress: bool,
    desc: str = "index",
) -> Built:
    """A faiss index over ``vectors`` (positions are ids), trained and filled on every core."""
    faiss = faiss_module()
    from tqdm.auto import tqdm

    n, dim = vectors.shape
    p = resolve_params(kind, n, params)
    faiss.omp_set_num_threads(
        os.cpu_count() or 1
    )  # builds use every core (searches set 1, see search)
    x = prepare(vectors, metric)
    fm = _faiss_metric(faiss, metric)
    if kind == "ivf_flat":
        quantizer = faiss.IndexFlat(dim, fm)
        index = faiss.IndexIVFFlat(quantizer, dim, p["nlist"], fm)
        sample = x
        want = p["nlist"] * TRAIN_PER_LIST
        if n > want:
            sample = x[np.sort(np.random.default_rng(0).choice(n, want, replace=False))]
        index.train(sample)
    else:
        index = faiss.IndexHNSWFlat(dim, p["m"], fm)
        index.hnsw.efConstruction = p["ef_construction"]
    with tqdm(total=n, desc=desc, unit="vec", disable=not progress, leave=False) as bar:
        for s in range(0, n, ADD_BATCH):
            index.add(x[s : s + ADD_BATCH])
            bar.update(min(ADD_BATCH, n - s))
    return Built(index, p)


def save(index: Any) -> bytes:
    faiss = faiss_module()
    return bytes(faiss.serialize_index(index))


def load(data: bytes | memoryview) -> Any:
    faiss = faiss_module()
    try:
        return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))
    except RuntimeError as err:
        from tensorhouse.errors import CorruptDataError

        raise CorruptDataError(f"the index library could not read the index: {err}") from err


def search(
    index: Any,
    query: np.ndarray,
    *,
    k: int,
    metric: str,
    kind: str,
    params: Mapping[str, int],
    allowed: np.ndarray | None,
    selectivity: float = 1.0,
    exhaustive: bool = False,
) -> tuple[np.ndarray, np.ndarray]:
    """Positions and scores of up to ``k`` nearest vectors, best first, among ``allowed`` (bool per position).

    The filter is applied inside the search (faiss IDSelector), and the search
    widens as it gets more selective: a 10% filter scans ~3x the lists or graph
    candidates, because its nearest rows lie farther from the query.
    ``exhaustive``: exact scores of every allowed vector, from the index's own
    copy of the vectors (every list of an IVF index; the flat storage of an
    HNSW graph): what a very selective filter needs.
    """
    faiss = faiss_module()
    # One query runs on one thread: OpenMP teams only add overhead there, 4x on a busy 2-core host
    # (measured: flat search of 10k vectors 0.12 ms with 1 thread, 0.49 ms with 2).
    if faiss.omp_get_max_threads() != 1:
        faiss.omp_set_num_threads(1)
    q = query.reshape(1, -1).astype(np.float32)
    if metric == "cosine":
        q = normalized(q)
    widen = 1.0 if selectivity >= 1.0 else min(8.0, 1.0 / math.sqrt(max(selectivity, 1e-6)))
    sel = bits = None
    if allowed is not None:
        bits = np.packbits(allowed, bitorder="little")
        sel = faiss.IDSelectorBitmap(len(allowed), faiss.swig_ptr(bits))
    k_eff = min(k, index.ntotal)
    if exhaustive and kind == "hnsw":
        flat = faiss.downcast_index(index.storage)
        sp = faiss.SearchParameters() if sel is None else faiss.SearchParameters(sel=sel)
        dist, pos = flat.search(q, k_eff, params=sp)
    elif kind == "ivf_flat":
        nlist = index.nlist
        nprobe = (
            nlist if exhaustive else min(nlist, max(1, math.ceil(params.get("nprobe", 16) * widen)))
        )
        sp = (
            faiss.SearchParametersIVF(nprobe=nprobe)
            if sel is None
            else faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
        )
        dist, pos = index.search(q, k_eff, params=sp)  # params per call: the cached index is shared
    else:
        ef = max(k_eff, math.ceil(params.get("ef_search", 64) * widen))
        sp = (
            faiss.SearchParametersHNSW(efSearch=ef)
            if sel is None
            else faiss.SearchParametersHNSW(sel=sel, efSearch=ef)
        )
        dist, pos = index.search(q, k_eff, params=sp)
    del bits  # the selector reads the bitmap during the search only
    pos, dist = pos[0], dist[0]
    keep = pos >= 0  # fewer than k found
    pos, dist = pos[keep].astype(np.int64), dist[keep].astype(np.float64)
    if metric == "l2":
        dist = np.sqrt(np.maximum(dist, 0.0))  # faiss gives squared L2
    return pos, dist


__all__ = [
    "KINDS",
    "Built",
    "build",
    "check_params",
    "library_version",
    "load",
    "prepare",
    "resolve_params",
    "save",
    "search",
]
