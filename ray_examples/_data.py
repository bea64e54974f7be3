"""Tiny generated image datasets for the Ray examples (no downloads)."""

from __future__ import annotations

import numpy as np

import tensorhouse as th
from tensorhouse.format.chunks.codecs import encode_image


def pets(uri: str, *, batches: int = 4, per: int = 32, size: int = 48) -> th.Dataset:
    """``batches`` appends (fragments) of ``per`` JPEG images with a class label and a score."""
    ds = th.create(uri, {"image": th.Image("jpeg"), "label": th.ClassLabel(["cat", "dog"]), "score": "float32"},
                   exist_ok=True)
    rng = np.random.default_rng(0)
    for _ in range(batches):
        labels = rng.integers(0, 2, per)
        images = []
        for lab in labels:  # cats reddish, dogs bluish: something for an embedding to find
            img = rng.integers(0, 80, (size, size + 8, 3), dtype=np.uint8)
            img[..., 0 if lab == 0 else 2] += 150
            images.append(encode_image("jpeg", img))
        ds.append({"image": images, "label": labels, "score": rng.random(per).astype("float32")})
    return ds
