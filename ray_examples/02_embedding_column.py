"""A Ray job that computes an embedding column for the rows a dataset already has, in one commit.

A pets dataset holds images and labels. A Ray job reads each row's ``_rowid``
and decoded image, computes an embedding in ``map_batches`` (here a fixed
random projection of a colour histogram, standing in for a model), and
``th.ray.add_columns`` adds the ``embedding`` column to those same rows:
write tasks write the column's chunk files in parallel and the driver commits
once (a retried task never writes a row twice; a failed job changes nothing).
The images are not rewritten. DuckDB then searches the embeddings.

    python ray_examples/02_embedding_column.py
"""

from __future__ import annotations

import tempfile
from typing import Any

import duckdb
import numpy as np
import ray

import tensorhouse as th

DIM = 16
PROJECTION = np.random.default_rng(42).standard_normal((24, DIM)).astype(np.float32)


def embed(batch: dict[str, Any]) -> dict[str, Any]:
    feats = np.stack([np.concatenate([np.histogram(img[..., c], bins=8, range=(0, 256))[0] for c in range(3)])
                      for img in batch["image"]]).astype(np.float32)
    emb = feats @ PROJECTION
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    return {"_rowid": batch["_rowid"], "embedding": emb}  # the row each value belongs to, and the value


def main(root: str | None = None) -> int:
    from _data import pets

    uri = f"{root or tempfile.mkdtemp()}/pets"
    ds = pets(uri, batches=3, per=24)
    print(f"{len(ds)} rows at version {ds.version}, columns {ds.columns}")
    rds = th.ray.read(uri, columns=["_rowid", "image"], decode_images=True)
    version = th.ray.add_columns(rds.map_batches(embed, batch_format="numpy"), uri,
                                 schema={"embedding": th.Embedding(DIM)})
    ds = th.open(uri)
    print(f"version {version}: columns {ds.columns}, {len(ds)} rows (none added), "
          f"last commit: {ds.history()[-1].operation}")
    con = duckdb.connect()
    th.duckdb.register(con, "pets", uri)
    hits = con.sql("SELECT p.label, count(*) AS n FROM pets AS p, (SELECT embedding FROM pets LIMIT 1) AS q "
                   "WHERE array_cosine_similarity(p.embedding, q.embedding) > 0.95 GROUP BY p.label").fetchall()
    print("neighbours of the first image by label:", hits)
    return int(con.sql("SELECT count(embedding) FROM pets").fetchall()[0][0])  # rows with an embedding


if __name__ == "__main__":
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    main()
