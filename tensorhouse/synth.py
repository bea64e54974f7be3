"""Realistic synthetic data for demos, tests and benchmarks.

No data set can be downloaded here, and pure noise is a poor stand-in for
photos (no codec compresses it). These scenes have what codecs and models
see in real images: smooth gradients, solid shapes with edges, mild noise.

Example:
    >>> import numpy as np
    >>> from tensorhouse.synth import scene
    >>> img, boxes, labels = scene(np.random.default_rng(0), 64, 64)
    >>> img.shape, img.dtype, boxes.shape[1]
    ((64, 64, 3), dtype('uint8'), 4)
"""

from __future__ import annotations

import numpy as np

CLASSES = ("circle", "square", "triangle")


def scene(
    rng: np.random.Generator, h: int, w: int, max_objects: int = 4
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """An HxWx3 uint8 image with 0..max_objects shapes; returns (image, xyxy boxes, class ids)."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    t = (
        xx / max(w - 1, 1) * rng.uniform(0.2, 1.0) + yy / max(h - 1, 1) * rng.uniform(0.2, 1.0)
    ) / 2
    img = c0[None, None, :] * (1 - t[..., None]) + c1[None, None, :] * t[..., None]
    n = int(rng.integers(0, max_objects + 1))
    boxes = np.zeros((n, 4), np.float32)
    labels = np.zeros(n, np.int32)
    for i in range(n):
        cls = int(rng.integers(0, len(CLASSES)))
        size = rng.uniform(0.1, 0.4) * min(h, w)
        cx, cy = rng.uniform(size / 2, w - size / 2), rng.uniform(size / 2, h - size / 2)
        color = rng.uniform(0, 255, 3)
        if cls == 0:
            mask = (xx - cx) ** 2 + (yy - cy) ** 2 <= (size / 2) ** 2
        elif cls == 1:
            mask = (np.abs(xx - cx) <= size / 2) & (np.abs(yy - cy) <= size / 2)
        else:
            mask = (
                (yy >= cy - size / 2)
                & (yy <= cy + size / 2)
                & (np.abs(xx - cx) <= (yy - (cy - size / 2)) / 2)
            )
        img[mask] = color
        boxes[i] = (cx - size / 2, cy - size / 2, cx + size / 2, cy + size / 2)
        labels[i] = cls
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8), boxes, labels


def embedding_of(img: np.ndarray, dim: int, seed: int = 0) -> np.ndarray:
    """A deterministic unit vector that depends on the image content (a stand-in for a model)."""
    proj = np.random.default_rng(seed).standard_normal((48, dim)).astype(np.float32)
    small = img[:: max(1, img.shape[0] // 4), :: max(1, img.shape[1] // 4), :].astype(np.float32)
    feats = np.resize(small.reshape(-1) / 255.0, 48)
    v = feats @ proj
    return (v / (np.linalg.norm(v) + 1e-9)).astype(np.float32)
