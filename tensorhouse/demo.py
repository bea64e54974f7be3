"""The demo, the README's first command: a small detection dataset from files to a training loop.

1. generate COCO-style data (JPEG files + annotations JSON), as a user would have it;
2. ingest it (progress bar, one idempotent commit per batch);
3. add an embedding column (schema evolution), write a Parquet metadata table;
4. query with DuckDB: a group-by, a join with Parquet, top-k similarity, tensor UDFs,
   time travel after a delete;
5. feed a loader epoch from a SELECT into a tiny torch model and print images/s.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

import tensorhouse as th
from tensorhouse.format.chunks.codecs import encode_image
from tensorhouse.synth import CLASSES, embedding_of, scene

SIZE = 128  # pixels: every image one size, so batches stack for the model


def generate(root: Path, rows: int, seed: int) -> tuple[Path, Path]:
    """JPEG files and a COCO annotations file, like a downloaded detection dataset."""
    images = root / "images"
    images.mkdir(parents=True)

    def one(i: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        img, boxes, labels = scene(np.random.default_rng([seed, i]), SIZE, SIZE)
        name = f"{i:06d}.jpg"
        (images / name).write_bytes(encode_image("jpeg", img, 90))
        anns = [
            {
                "id": i * 10 + k,
                "image_id": i,
                "category_id": int(lab) + 1,
                "iscrowd": 0,
                "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])],
                "area": float((b[2] - b[0]) * (b[3] - b[1])),
            }
            for k, (b, lab) in enumerate(zip(boxes, labels, strict=True))
        ]
        return {"id": i, "file_name": name, "width": SIZE, "height": SIZE}, anns

    with ThreadPoolExecutor() as pool:
        done = list(pool.map(one, range(rows)))
    coco = {
        "images": [d[0] for d in done],
        "annotations": [a for d in done for a in d[1]],
        "categories": [{"id": k + 1, "name": c} for k, c in enumerate(CLASSES)],
    }
    ann = root / "annotations.json"
    ann.write_text(json.dumps(coco))
    return ann, images


def build(path: str, *, rows: int = 512, seed: int = 0) -> th.Dataset:
    """A detection dataset written directly (no files): ``rows`` scenes in two appends, so it has versions.

    Columns: image (jpeg), label (the most frequent shape), boxes (xyxy), embedding, caption, score.
    Used by the viewer's tests and handy in a notebook.
    """
    rng = np.random.default_rng(seed)
    ds = th.create(
        path,
        {
            "image": th.Image("jpeg"),
            "label": th.ClassLabel(list(CLASSES)),
            "boxes": th.BBox("xyxy"),
            "embedding": th.Embedding(64),
            "caption": th.Text(),
            "score": "float32",
        },
    )
    half = rows // 2
    for start, stop in ((0, half), (half, rows)):
        imgs, boxes, labels = [], [], []
        for _ in range(start, stop):
            h, w = int(rng.integers(96, 160)), int(rng.integers(96, 160))
            img, b, lab = scene(rng, h, w)
            imgs.append(img)
            boxes.append(b)
            labels.append(int(np.bincount(lab, minlength=len(CLASSES)).argmax()) if len(lab) else 0)
        ds.append(
            {
                "image": imgs,
                "label": labels,
                "boxes": boxes,
                "embedding": np.stack([embedding_of(i, 64) for i in imgs]),
                "caption": [
                    f"{len(b)} shapes, mostly {CLASSES[lab]}s"
                    for b, lab in zip(boxes, labels, strict=True)
                ],
                "score": rng.random(len(imgs)).astype(np.float32),
            },
            message=f"rows {start}..{stop - 1}",
        )
    return ds


def show(title: str, table: pa.Table, limit: int = 8) -> None:
    print(f"\n  {title}")
    cols = table.column_names
    data = [[_fmt(v) for v in row.values()] for row in table.slice(0, limit).to_pylist()]
    widths = [
        max(len(c), *(len(r[i]) for r in data)) if data else len(c) for i, c in enumerate(cols)
    ]
    print("    " + "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)))
    for r in data:
        print("    " + "  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3f}"
    if isinstance(v, list):
        return "[" + ", ".join(_fmt(x) for x in v[:4]) + (", ...]" if len(v) > 4 else "]")
    return str(v)


def run(path: str = "data/demo", *, rows: int = 512, seed: int = 0) -> None:
    """Build the demo dataset at ``path`` (replacing it) and walk through what tensorhouse does with it."""
    import duckdb

    if Path(path).exists():
        shutil.rmtree(path)
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        t = time.perf_counter()
        ann, images = generate(root, rows, seed)
        print(
            f"1. generated {rows} scenes ({SIZE}x{SIZE} JPEG files + COCO annotations) in {time.perf_counter() - t:.1f} s"
        )

        print(f"2. ingesting into {path}")
        report = th.ingest.coco(str(ann), str(images), path)
        print(f"   {report}")

    ds = th.open(path)
    imgs = ds.take(np.arange(len(ds)), columns=["image"])["image"]
    ds.add_column(
        "embedding",
        th.Embedding(64),
        values=np.stack([embedding_of(i, 64) for i in imgs]),
        message="embeddings from a stand-in model",
    )
    meta_path = str(Path(path).parent / f"{Path(path).name}_meta.parquet")
    ids = ds.to_table(["image_id"]).column("image_id").to_numpy()
    pq.write_table(
        pa.table(
            {
                "image_id": ids,
                "split": np.where(ids % 5 == 0, "val", "train"),
                "camera": np.array(["cam-a", "cam-b", "cam-c"])[ids % 3],
            }
        ),
        meta_path,
    )
    print(
        f"3. added an embedding column (version {ds.version}) and wrote a metadata table {meta_path}"
    )
    print("   schema: " + ", ".join(f"{n}: {type(t).__name__}" for n, t in ds.schema.items()))

    print("4. SQL with DuckDB")
    con = duckdb.connect()
    th.duckdb.register(con, "scenes", path)
    show(
        "objects per image (length of the ragged categories tensor):",
        con.sql(
            "SELECT len(categories.data) AS objects, count(*) AS images FROM scenes GROUP BY ALL ORDER BY objects"
        ).to_arrow_table(),
    )
    show(
        "joined with the Parquet table:",
        con.sql(
            f"SELECT m.split, count(*) AS images, sum(len(s.categories.data)) AS objects FROM scenes s "
            f"JOIN read_parquet('{meta_path}') m USING (image_id) GROUP BY ALL ORDER BY m.split"
        ).to_arrow_table(),
    )
    query = ds.take([0], columns=["embedding"])["embedding"][0]
    show(
        "5 nearest neighbours of image 0 by cosine similarity (th.sql.nearest):",
        th.sql.nearest(con, "scenes", "embedding", query, k=5, columns=["image_id"]),
    )
    th.udfs.register(con)
    show(
        "tensor UDFs: the biggest boxes (box_area honours COCO's xywh):",
        con.sql(
            "SELECT image_id, num_boxes(boxes) AS boxes, list_max(box_area(boxes, 'xywh')) AS largest, "
            "tensor_shape(decode_image(image)) AS shape FROM scenes ORDER BY largest DESC LIMIT 3"
        ).to_arrow_table(),
    )
    before = ds.version
    ds.delete("image_id % 10 = 0", message="drop every tenth image")
    th.duckdb.register(con, "scenes", path)
    th.duckdb.register(con, "scenes_before", path, version=before)
    show(
        f"time travel: version {before} vs version {ds.version} after a delete:",
        con.sql(
            "SELECT (SELECT count(*) FROM scenes_before) AS before, (SELECT count(*) FROM scenes) AS after"
        ).to_arrow_table(),
    )

    print("\n5. a SELECT into a training loop")
    train(con, ds, meta_path)
    print(
        f"\ndone in {time.perf_counter() - t_all:.1f} s. Next: tensorhouse info {path} | tensorhouse log {path} | "
        f"tensorhouse serve {path}"
    )


def train(con: Any, ds: th.Dataset, meta_path: str) -> None:
    """One loader epoch over the training split into a tiny CNN; prints the loader's and the loop's rates."""
    # No _rowid needed: the loader adds it to the query and reads the images by row id.
    rel = con.sql(
        f"SELECT s.image, s.categories.data[1] - 1 AS label FROM scenes s "
        f"JOIN read_parquet('{meta_path}') m USING (image_id) WHERE m.split = 'train' "
        f"AND len(s.categories.data) > 0"
    )
    print(f"   query: {rel.sql_query()[:100]}...")
    try:
        import torch
    except ImportError:
        loader = th.loader(rel, dataset=ds, batch_size=64, shuffle=True, format="numpy")
        n = sum(len(b["label"]) for b in loader)
        print(f"   torch is not installed: read {n} rows with format='numpy' instead")
        return
    torch.manual_seed(0)
    loader = th.loader(rel, dataset=ds, batch_size=64, shuffle=True, seed=0)
    t = time.perf_counter()
    n = sum(len(b["label"]) for b in loader)
    rate = n / (time.perf_counter() - t)
    print(
        f"   loader alone: {n} images in {len(loader)} batches, {rate:,.0f} images/s (decoded uint8 HxWxC)"
    )
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 16, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, stride=2),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(32, len(CLASSES)),
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    torch.set_num_threads(max(1, (os.cpu_count() or 2) // 2))
    for epoch in range(2):
        loader.set_epoch(epoch)
        t, seen, loss_sum = time.perf_counter(), 0, 0.0
        for b in loader:
            x = b["image"].permute(0, 3, 1, 2).float() / 255
            loss = torch.nn.functional.cross_entropy(model(x), b["label"].long())
            opt.zero_grad()
            loss.backward()
            opt.step()
            seen += len(x)
            loss_sum += loss.item() * len(x)
        print(
            f"   epoch {epoch}: loss {loss_sum / seen:.3f}, {seen / (time.perf_counter() - t):,.0f} images/s "
            "through the tiny CNN (the model, not the loader, is the limit here)"
        )
