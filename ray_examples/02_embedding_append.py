"""A Ray job that computes an embedding column and appends it, one commit per job.

New images arrive in a staging dataset; a Ray job reads them, computes an
embedding per image in ``map_batches`` (here a fixed random projection of a
colour histogram, standing in for a model), and appends image, label and
embedding to the indexed dataset with ``th.ray.write``: write tasks upload
chunks in parallel and the driver commits once. DuckDB then searches it.

    python ray_examples/02_embedding_append.py
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
    return {"image": batch["image"], "label": batch["label"], "embedding": emb}


def main(root: str | None = None) -> int:
    from _data import pets

    root = root or tempfile.mkdtemp()
    indexed = f"{root}/indexed"
    for day in (1, 2):  # two arrivals of new images: each job appends and commits once
        incoming = pets(f"{root}/incoming-{day}", batches=2, per=12 * day)
        if day == 1:
            th.create(indexed, {"image": th.Image("jpeg"), "label": incoming.schema["label"],
                                "embedding": th.Embedding(DIM)})
        rds = th.ray.read(incoming.uri, columns=["image", "label"], decode_images=True)
        rds = rds.filter(expr=ray.data.expressions.col("label") >= 0)  # pushed into the read tasks
        version = th.ray.write(rds.map_batches(embed, batch_format="numpy"), indexed)
        print(f"day {day}: appended {len(incoming)} rows as version {version}; {len(th.open(indexed))} rows in all")
    con = duckdb.connect()
    th.duckdb.register(con, "pets", indexed)
    hits = con.sql("SELECT p.label, count(*) AS n FROM pets AS p, (SELECT embedding FROM pets LIMIT 1) AS q "
                   "WHERE array_cosine_similarity(p.embedding, q.embedding) > 0.95 GROUP BY p.label").fetchall()
    print("neighbours of the first image by label:", hits)
    return len(th.open(indexed))


if __name__ == "__main__":
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    main()
