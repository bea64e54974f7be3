"""Vector indexes: approximate nearest-neighbour search that lives in the dataset's versions.

- ``ds.create_index("emb", metric="cosine", kind="ivf_flat")`` builds an index
  with faiss (on every core, with a progress bar), writes it as an immutable
  file under ``_indexes/`` through the dataset's store (local, memory://, S3)
  and commits it: the index has a version, time travel finds the index valid
  then, vacuum keeps the files retained versions need.
- ``ds.nearest("emb", query, k=10, where="label = 3")`` uses it: the filter is
  applied inside the search; rows appended later are searched exactly and
  merged in; deleted rows never come back. ``exact=True`` scores every row.
- ``th.sql.nearest(con_or_ctx, "table", "emb", query, ...)`` does the same for
  a registered table in DuckDB or DataFusion, and the DataFusion table
  function ``nearest('uri', 'emb', [..], k)`` in SQL (:mod:`tensorhouse.index.sql`).
- ``ds.indexes``, ``ds.drop_index(name)``, ``ds.optimize_indexes()`` (extend
  with new rows, or rebuild after compaction); CLI: ``tensorhouse index``.

faiss is imported only when an index is built or searched (``pip install
'tensorhouse[vector]'``); why faiss is in :mod:`tensorhouse.index.ann`.

Example:
    >>> import numpy as np, tensorhouse as th
    >>> rng = np.random.default_rng(0)
    >>> ds = th.create("memory://doc-index", {"label": "int64", "emb": th.Embedding(16)})
    >>> _ = ds.append({"label": np.arange(1000) % 10, "emb": rng.standard_normal((1000, 16)).astype("float32")})
    >>> ds.create_index("emb", metric="cosine", progress=False)
    2
    >>> hits = ds.nearest("emb", ds[42]["emb"], k=3, where="label = 2")
    >>> hits.column("label").to_pylist(), hits.column("score")[0].as_py() <= 1.0
    ([2, 2, 2], True)
"""

from __future__ import annotations

from tensorhouse.index.build import (
    IndexInfo,
    create_index,
    drop_index,
    list_indexes,
    optimize_indexes,
)
from tensorhouse.index.errors import IndexLibraryMissingError, IndexNotFoundError, VectorSearchError
from tensorhouse.index.search import nearest, search

__all__ = [
    "IndexInfo",
    "IndexLibraryMissingError",
    "IndexNotFoundError",
    "VectorSearchError",
    "create_index",
    "drop_index",
    "list_indexes",
    "nearest",
    "optimize_indexes",
    "search",
]
