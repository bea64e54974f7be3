"""Ray Data -> map_batches (JPEG decode, augment) -> iter_torch_batches.

Read tasks (one per fragment) read the encoded JPEGs and decode them in
parallel (``decode_images=True``); ``map_batches`` crops and flips them into a
fixed-size uint8 batch; ``iter_torch_batches`` feeds torch.

    python ray_examples/01_decode_augment_torch.py [DATASET_URI]
"""

from __future__ import annotations

import sys
import tempfile
from typing import Any

import numpy as np
import ray

import tensorhouse as th

CROP = 32


def augment(batch: dict[str, Any]) -> dict[str, Any]:
    """Random 32x32 crops, half of them mirrored: a fixed-shape batch Ray hands to torch as one tensor."""
    rng = np.random.default_rng()
    out = np.empty((len(batch["image"]), CROP, CROP, 3), np.uint8)
    for i, img in enumerate(batch["image"]):  # decoded HxWx3 uint8 arrays of varying size
        y = rng.integers(0, img.shape[0] - CROP + 1)
        x = rng.integers(0, img.shape[1] - CROP + 1)
        crop = img[y : y + CROP, x : x + CROP]
        out[i] = crop[:, ::-1] if rng.random() < 0.5 else crop
    return {"image": out, "label": batch["label"].astype(np.int64)}


def main(uri: str | None = None) -> int:
    if uri is None:
        from _data import pets

        uri = tempfile.mkdtemp() + "/pets"
        pets(uri)
    rds = th.ray.read(uri, columns=["image", "label"], filter="score > 0.2", decode_images=True)
    seen = 0
    for batch in rds.map_batches(augment, batch_format="numpy").iter_torch_batches(batch_size=16):
        images, labels = batch["image"], batch["label"]  # torch.uint8 [16, 32, 32, 3], torch.int64 [16]
        assert tuple(images.shape[1:]) == (CROP, CROP, 3) and images.dtype.is_floating_point is False
        seen += len(labels)
    print(f"fed {seen} augmented images to torch in batches of 16")
    return seen


if __name__ == "__main__":
    ray.init(address="local", num_cpus=2, include_dashboard=False)
    main(sys.argv[1] if len(sys.argv) > 1 else None)
