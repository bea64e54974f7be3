"""The demo: build a small detection dataset, reopen it, and show what is in it."""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

import tensorhouse as th
from tensorhouse.synth import CLASSES, embedding_of, scene


def build(path: str, *, rows: int = 512, seed: int = 0) -> th.Dataset:
    """Generate ``rows`` scenes in two appends (so the dataset has versions to show)."""
    rng = np.random.default_rng(seed)
    ds = th.create(path, {
        "image": th.Image("jpeg"), "label": th.ClassLabel(list(CLASSES)), "boxes": th.BBox("xyxy"),
        "embedding": th.Embedding(64), "caption": th.Text(), "score": "float32",
    })  # fmt: skip
    half = rows // 2
    for start, stop in ((0, half), (half, rows)):
        imgs, boxes, labels = [], [], []
        for _ in range(start, stop):
            h, w = int(rng.integers(96, 160)), int(rng.integers(96, 160))
            img, b, lab = scene(rng, h, w)
            imgs.append(img)
            boxes.append(b)
            labels.append(int(np.bincount(lab, minlength=len(CLASSES)).argmax()) if len(lab) else 0)
        ds.append({
            "image": imgs, "label": labels, "boxes": boxes,
            "embedding": np.stack([embedding_of(i, 64) for i in imgs]),
            "caption": [f"{len(b)} {CLASSES[lab]}(s)" for b, lab in zip(boxes, labels, strict=True)],
            "score": rng.random(len(imgs)).astype(np.float32),
        }, message=f"rows {start}..{stop - 1}")  # fmt: skip
    return ds


def run(path: str = "data/demo", *, rows: int = 512) -> None:
    """Build the demo dataset at ``path`` (replacing it), reopen it and print what it holds."""
    if Path(path).exists():
        shutil.rmtree(path)
    t0 = time.perf_counter()
    build(path, rows=rows)
    dt = time.perf_counter() - t0
    ds = th.open(path)
    size = sum(f.stat().st_size for f in Path(path).rglob("*") if f.is_file())
    print(f"built {path}: {len(ds)} rows, {size / 1e6:.1f} MB in {dt:.2f} s ({len(ds) / dt:.0f} rows/s)\n")
    print("schema:")
    for name, t in ds.schema.items():
        print(f"  {name:<10} {t!r:<48} arrow: {t.arrow_type()}")
    print("\nversions:")
    for h in ds.history():
        print(f"  v{h.version}  {h.timestamp:%Y-%m-%d %H:%M:%S}  {h.operation:<7} rows={h.num_rows:<5} {h.message or ''}")
    print("\nrows 0, 1, 2 (image decoded, boxes as xyxy):")
    sample = ds.take([0, 1, 2], columns=["_rowid", "image", "label", "boxes", "caption", "score"])
    for i in range(3):
        img = sample["image"][i]
        assert img is not None
        print(f"  _rowid={sample['_rowid'][i]}  image {img.shape} {img.dtype} mean={img.mean():.1f}  "
              f"label={CLASSES[sample['label'][i]]:<8} boxes={[[round(float(x), 1) for x in b] for b in sample['boxes'][i]]}  "
              f"caption={sample['caption'][i]!r}  score={sample['score'][i]:.3f}")  # fmt: skip
    v1 = th.open(path, version=1)
    print(f"\ntime travel: version 1 has {len(v1)} rows, version {ds.version} has {len(ds)}")
