"""Shared data and checks for the Ray tests (tests/test_ray*.py)."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

import tensorhouse as th
from tensorhouse.format.chunks.codecs import encode_image
from tensorhouse.ray.columns import TensorhouseColumnSink
from tensorhouse.ray.datasink import TensorhouseDatasink

SCHEMA = {
    "id": "int64",
    "label": th.ClassLabel(["cat", "dog", "bird"]),
    "score": "float32",
    "emb": th.Embedding(8),
    "boxes": th.BBox(),
    "pts": th.Tensor("int16", (None, 2)),
    "img": th.Image("jpeg"),
    "caption": th.Text(),
}


def rows(start: int, n: int) -> dict[str, Any]:
    """``n`` deterministic rows with ids ``start .. start + n - 1``."""
    rng = np.random.default_rng(start)
    ids = np.arange(start, start + n)
    return {
        "id": ids,
        "label": ids % 3,
        "score": ((ids % 10) / 10).astype("float32"),
        "emb": rng.random((n, 8)).astype("float32"),
        "boxes": [np.full((int(i % 3), 4), float(i), np.float32) for i in ids],
        "pts": [np.arange(2 * int(i % 4), dtype=np.int16).reshape(-1, 2) for i in ids],
        "img": [
            encode_image("jpeg", rng.integers(0, 255, (12 + int(i % 2) * 4, 16, 3), dtype=np.uint8))
            for i in ids
        ],
        "caption": [None if i % 7 == 0 else f"row {i}" for i in ids],
    }


def make(uri: str, fragments: int = 3, per: int = 20, **kw: Any) -> th.Dataset:
    """A dataset of ``fragments`` appends of ``per`` rows each (ids 0 .. fragments * per - 1)."""
    ds = th.create(uri, SCHEMA, **kw)
    for f in range(fragments):
        ds.append(rows(f * per, per))
    return ds


class KillingSink(TensorhouseDatasink):
    """Fault injection: the first write task to reach its second block (its first group already
    uploaded) kills its worker process, as a preempted node would; ``marker`` records that it happened."""

    def __init__(self, uri: str, marker: Path, **kw: Any) -> None:
        super().__init__(uri, group_bytes=1, **kw)
        self.marker = marker

    def write(self, blocks: Iterable[Any], ctx: Any) -> Any:
        def killing() -> Iterator[Any]:
            for i, block in enumerate(blocks):
                if i == 1 and not self.marker.exists():
                    self.marker.write_text(f"task {ctx.task_idx}")
                    os._exit(1)
                yield block

        return super().write(killing(), ctx)


def data_files(root: Path) -> set[str]:
    return {
        str(p.relative_to(root))
        for pattern in ("*.chunk", "*.parquet")  # chunk files and group files
        for p in (root / "data").rglob(pattern)
    }


def referenced(ds: th.Dataset) -> set[str]:
    return {p for f in ds.snapshot.fragments for p in f.files()}


def double_emb(batch: dict[str, Any]) -> dict[str, Any]:
    return {
        "id": batch["id"],
        "label": batch["label"],
        "emb": batch["emb"] * 2,
        "img": batch["img"],
    }


def always_fail(batch: dict[str, Any]) -> dict[str, Any]:
    if int(batch["id"][0]) >= 20:
        raise RuntimeError("boom in the job")
    return batch


class KillingColumnSink(TensorhouseColumnSink):
    """Fault injection for add_columns: the first write task to finish staging its chunk files
    kills its worker before returning them; ``marker`` records that it happened."""

    def __init__(self, uri: str, marker: Path, **kw: Any) -> None:
        super().__init__(uri, **kw)
        self.marker = marker

    def write(self, blocks: Iterable[Any], ctx: Any) -> Any:
        result = super().write(blocks, ctx)
        if result.segments and not self.marker.exists():
            self.marker.write_text(f"task {ctx.task_idx}")
            os._exit(1)
        return result


def emb_plus(batch: dict[str, Any]) -> dict[str, Any]:
    """New columns for existing rows: keyed by ``_rowid``, derived from ``id`` and ``emb``."""
    return {"_rowid": batch["_rowid"], "emb2": batch["emb"] * 2, "tag": batch["id"] * 10}
