"""Vector columns and query vectors: what may be indexed, and reading vectors as float32 matrices.

An indexable column is an ``Embedding`` or a ``Tensor`` with one fixed
dimension and a float dtype. Rows whose vector is NULL are neither indexed
nor returned by a search.

Example:
    >>> import tensorhouse as th
    >>> vector_dim(th.Embedding(4), "emb")
    4
    >>> check_query([1, 0, 0, 0], 4, metric="cosine").dtype
    dtype('float32')
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import TYPE_CHECKING, Literal

import numpy as np
import pyarrow as pa

from tensorhouse.index.errors import VectorSearchError
from tensorhouse.types import ColumnType, Embedding, Tensor

if TYPE_CHECKING:
    from tensorhouse.format.dataset import Dataset

Metric = Literal["cosine", "l2", "dot"]
METRICS: tuple[str, ...] = ("cosine", "l2", "dot")
#: Whether a higher score is nearer, per metric (score: cosine similarity, L2 distance, inner product).
HIGHER_IS_NEARER = {"cosine": True, "l2": False, "dot": True}


def check_metric(metric: object, *, argument: str = "metric") -> str:
    if metric not in METRICS:
        raise VectorSearchError(
            f"{argument}={metric!r} is not a metric; expected 'cosine', 'l2' or 'dot'"
        )
    return str(metric)


def check_k(k: object) -> int:
    if isinstance(k, bool) or not isinstance(k, int | np.integer) or k < 1:
        raise VectorSearchError(f"k={k!r}: k must be a positive integer")
    return int(k)


def vector_dim(ctype: ColumnType, column: str) -> int:
    """The vector length of an indexable column; VectorSearchError naming the column otherwise."""
    if isinstance(ctype, Embedding):
        dim = ctype.dim
    elif isinstance(ctype, Tensor) and len(ctype.shape) == 1 and ctype.shape[0] is not None:
        dim = int(ctype.shape[0])
    else:
        raise VectorSearchError(
            f"column={column!r} has type {ctype!r}; a vector index or search needs an "
            "Embedding or a 1-d fixed-size float Tensor column"
        )
    if np.dtype(ctype.storage_dtype).kind != "f":
        raise VectorSearchError(
            f"column={column!r} holds {ctype.storage_dtype} vectors; vector search needs "
            "float vectors (float16, float32 or float64)"
        )
    return dim


def check_query(
    query: Sequence[float] | np.ndarray, dim: int, *, metric: str, column: str = ""
) -> np.ndarray:
    """The query as a float32 vector of length ``dim``; VectorSearchError naming ``query`` otherwise."""
    try:
        q = np.asarray(query, dtype=np.float64)
    except (TypeError, ValueError) as err:
        raise VectorSearchError(f"query: not a vector of numbers ({err})") from err
    if q.ndim != 1:
        raise VectorSearchError(f"query: must be one 1-d vector, got shape {q.shape}")
    of = f" of column {column!r}" if column else ""
    if len(q) != dim:
        raise VectorSearchError(f"query: has {len(q)} values but the vectors{of} have {dim}")
    if not np.isfinite(q).all():
        bad = int(np.flatnonzero(~np.isfinite(q))[0])
        raise VectorSearchError(
            f"query: value {bad} is {q[bad]}; the query must be finite (no NaN or infinity)"
        )
    if metric == "cosine" and not np.any(q):
        raise VectorSearchError("query: is all zeros; its cosine similarity is undefined")
    return q.astype(np.float32)


def to_matrix(arr: pa.Array | pa.ChunkedArray, dim: int) -> tuple[np.ndarray, np.ndarray | None]:
    """A fixed-size-list array as an (n, dim) float32 matrix, and the valid-row mask (None: all valid)."""
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    valid = None
    if arr.null_count:
        valid = arr.is_valid().to_numpy(zero_copy_only=False)
        arr = arr.fill_null(pa.scalar([0.0] * dim, arr.type)) if len(arr) else arr
    flat = arr.flatten() if arr.offset else arr.values
    values = flat.to_numpy(zero_copy_only=False)
    m = np.asarray(values, dtype=np.float32).reshape(len(arr), dim)
    return m, valid


def iter_vectors(
    ds: Dataset,
    column: str,
    dim: int,
    *,
    start: int = 0,
    stop: int | None = None,
    batch_size: int = 65536,
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(rowids, float32 vectors) of the live, non-NULL rows of physical rows ``[start, stop)``."""
    ctype = ds.schema[column]
    for b in ds.reader.iter_batches(
        [(column, ctype)], start=start, stop=stop, batch_size=batch_size, with_rowid=True
    ):
        m, valid = to_matrix(b.column(0), dim)
        rowids = b.column(1).to_numpy()
        if valid is not None:
            m, rowids = m[valid], rowids[valid]
        if len(rowids):
            yield rowids, m


def normalized(m: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length (zero rows stay zero: their cosine is undefined and never nearest)."""
    norms = np.linalg.norm(m, axis=1, keepdims=True)
    np.maximum(norms, np.finfo(np.float32).tiny, out=norms)
    return m / norms


def scores(m: np.ndarray, q: np.ndarray, metric: str) -> np.ndarray:
    """Exact scores of rows of ``m`` against ``q`` (cosine similarity, L2 distance or inner product)."""
    if metric == "l2":
        d = m - q
        return np.sqrt(np.einsum("ij,ij->i", d, d))
    if metric == "cosine":
        norms = np.linalg.norm(m, axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            s = (m @ q) / (norms * np.linalg.norm(q))
        return np.where(norms > 0, s, np.nan)  # a zero vector has no cosine: never returned
    return m @ q


__all__ = [
    "HIGHER_IS_NEARER",
    "METRICS",
    "Metric",
    "check_k",
    "check_metric",
    "check_query",
    "iter_vectors",
    "normalized",
    "scores",
    "to_matrix",
    "vector_dim",
]
