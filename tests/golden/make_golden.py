"""Writes a golden dataset: a tiny dataset of every column type, in the current on-disk format.

tests/golden/v1 holds chunk format 1; tests/golden/v2 chunk format 2 (fixed-size samples
store one size instead of an offset each).

Run once when a format version is introduced; never rewrite an existing golden
dataset (the point is that later code still reads what older code wrote).

    python tests/golden/make_golden.py tests/golden/v2
"""

from __future__ import annotations

import sys

import numpy as np

import tensorhouse as th


def expected() -> dict[str, list[object]]:
    """The rows of the golden dataset, as plain Python values (its test compares against these)."""
    img = (np.arange(8 * 6 * 3) % 251).astype(np.uint8).reshape(8, 6, 3)
    return {
        "label": [0, 1, 2],
        "score": [0.5, -1.25, 3.0],
        "flag": [True, False, None],
        "caption": ["zero", "ünï", None],
        "meta": [{"a": 1}, [1, 2], None],
        "blob": [b"\x00\x01", b"", None],
        "emb": [[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [-1.0, 0.5, 0.25]],
        "grid": [np.arange(6, dtype=np.int16).reshape(2, 3).tolist()] * 3,
        "ragged": [np.ones((2, 2)).tolist(), np.zeros((0, 2)).tolist(), np.arange(6.0).reshape(3, 2).tolist()],
        "boxes": [[[1.0, 2.0, 3.0, 4.0]], [], [[0.0, 0.0, 1.0, 1.0], [2.0, 2.0, 5.0, 6.0]]],
        "png": [img.tolist(), img[:4].tolist(), img[:, :3].tolist()],
    }


SCHEMA = {
    "label": th.ClassLabel(["a", "b", "c"]), "score": "float64", "flag": "bool", "caption": th.Text(),
    "meta": th.Json(), "blob": th.Binary(compression="zstd"), "emb": th.Embedding(3),
    "grid": th.Tensor("int16", (2, 3), compression="lz4"), "ragged": th.Tensor("float32", (None, 2)),
    "boxes": th.BBox("xywh"), "png": th.Image("png"),
}  # fmt: skip


def main(path: str) -> None:
    rows = expected()
    ds = th.create(path, SCHEMA)
    data = {k: v for k, v in rows.items()}
    data["png"] = [np.asarray(x, np.uint8) for x in rows["png"]]
    data["ragged"] = [np.asarray(x, np.float32).reshape(-1, 2) for x in rows["ragged"]]
    data["boxes"] = [np.asarray(x, np.float32).reshape(-1, 4) for x in rows["boxes"]]
    ds.append({k: v[:2] for k, v in data.items()})
    ds.append({k: v[2:] for k, v in data.items()})
    ds.delete(rowids=[0])  # a deletion vector on fragment 0 (version 3)...
    ds.restore(2)  # ...then restored, so every row is live at the latest version
    ds.tag("golden")


if __name__ == "__main__":
    main(sys.argv[1])
