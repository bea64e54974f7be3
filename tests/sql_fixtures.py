"""A small demo dataset for the SQL tests, with the raw values kept for independent references.

``make_demo(root)`` writes, under ``root``:

- ``pets``: a tensorhouse dataset of every column type, in four versions:
  0 created, 1 +150 rows (fragment 0), 2 +50 rows (fragment 1),
  3 deletes the rows whose ``id % 10 == 9``;
- ``meta.parquet``: ``id -> split, weight`` for every id;
- ``owners``: a Delta table ``label -> owner, since``.

Expected answers are computed from ``Demo.rows(version)``, plain numpy and
pandas, never through tensorhouse's own read path.
"""

from __future__ import annotations

import collections
from collections.abc import Sequence
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from PIL import Image as PILImage

import tensorhouse as th
from tensorhouse.format.dataset import Dataset
from tensorhouse.format.log import Log
from tensorhouse.storage import ForwardingStore
from tensorhouse.storage.base import Store

CLASSES = ["cat", "dog", "bird", "fish"]
EMB_DIM = 8
N1, N2 = 150, 50
CAPTION_WORDS = ["a", "small", "sleepy", "happy", "dog", "cat", "on", "the", "sofa", "grass"]


def schema() -> dict[str, th.ColumnType | str]:
    return {
        "id": "int64",
        "label": th.ClassLabel(CLASSES),
        "score": "float32",
        "image": th.Image("jpeg"),
        "embedding": th.Embedding(EMB_DIM),
        "boxes": th.BBox(),
        "mask": th.Tensor("uint8", (4, 4)),
        "depth": th.Tensor("float32", (None, 3)),
        "caption": th.Text(),
    }


def _jpeg(rng: np.random.Generator, h: int, w: int) -> bytes:
    pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    buf = BytesIO()
    PILImage.fromarray(pixels).save(buf, format="JPEG", quality=80)
    return buf.getvalue()


def make_rows(ids: np.ndarray, seed: int) -> dict[str, Any]:
    """Column values for rows ``ids`` (deterministic for a seed)."""
    rng = np.random.default_rng(seed)
    n = len(ids)
    score = rng.random(n).astype(np.float32)
    return {
        "id": ids.astype(np.int64),
        "label": rng.integers(0, len(CLASSES), n).astype(np.int32),
        "score": score,
        "image": [_jpeg(rng, 8 + 4 * (i % 3), 8 + 4 * (i % 2)) for i in range(n)],
        "embedding": rng.standard_normal((n, EMB_DIM)).astype(np.float32),
        "boxes": [rng.random((int(k), 4)).astype(np.float32) for k in rng.integers(0, 4, n)],
        "mask": rng.integers(0, 2, (n, 4, 4)).astype(np.uint8),
        "depth": [rng.random((int(k), 3)).astype(np.float32) for k in rng.integers(1, 4, n)],
        "caption": [" ".join(rng.choice(CAPTION_WORDS, 4)) for _ in range(n)],
    }


def _concat(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k in parts[0]:
        vals = [p[k] for p in parts]
        out[k] = (
            np.concatenate(vals)
            if isinstance(vals[0], np.ndarray)
            else [x for v in vals for x in v]
        )
    return out


def _select(cols: dict[str, Any], keep: np.ndarray) -> dict[str, Any]:
    idx = np.flatnonzero(keep)
    return {
        k: v[keep] if isinstance(v, np.ndarray) else [v[i] for i in idx] for k, v in cols.items()
    }


@dataclass
class Demo:
    root: Path
    uri: str
    meta_path: str
    owners_path: str
    all_rows: dict[str, Any]
    meta: pd.DataFrame
    owners: pd.DataFrame
    versions: dict[int, np.ndarray] = field(
        default_factory=dict
    )  # version -> bool mask over all_rows

    def rows(self, version: int = 3) -> dict[str, Any]:
        """The live rows of a version, with ``_rowid``, in scan order."""
        return _select(self.all_rows, self.versions[version])

    def frame(
        self, version: int = 3, columns: Sequence[str] = ("_rowid", "id", "label", "score")
    ) -> pd.DataFrame:
        r = self.rows(version)
        return pd.DataFrame({c: r[c] for c in columns})


def make_demo(root: Path, *, chunk_bytes: int | None = 4096) -> Demo:
    root.mkdir(parents=True, exist_ok=True)
    uri = str(root / "pets")
    ds = th.create(uri, schema(), chunk_bytes=chunk_bytes)
    first = make_rows(np.arange(N1), seed=1)
    second = make_rows(np.arange(N1, N1 + N2), seed=2)
    ds.append(first, message="first batch")
    ds.append(second, message="second batch")
    ds.delete(rowids=_rowids_where(first, second), message="drop every tenth id")
    all_rows = _concat([first, second])
    all_rows["_rowid"] = np.concatenate([np.arange(N1), (1 << 32) + np.arange(N2)]).astype(np.int64)
    n = N1 + N2
    versions = {
        0: np.zeros(n, bool),
        1: np.arange(n) < N1,
        2: np.ones(n, bool),
        3: all_rows["id"] % 10 != 9,
    }
    meta = pd.DataFrame(
        {
            "id": np.arange(n, dtype=np.int64),
            "split": np.where(np.arange(n) % 5 == 0, "val", "train"),
            "weight": (np.arange(n) % 7 + 1).astype(np.float64) / 7,
        }
    )
    meta_path = str(root / "meta.parquet")
    pq.write_table(pa.Table.from_pandas(meta, preserve_index=False), meta_path)
    owners = pd.DataFrame(
        {
            "label": np.arange(len(CLASSES), dtype=np.int32),
            "owner": ["ana", "bo", "cy", "di"],
            "since": [2019, 2020, 2021, 2022],
        }
    )
    owners_path = str(root / "owners")
    from deltalake import write_deltalake

    write_deltalake(owners_path, pa.Table.from_pandas(owners, preserve_index=False))
    return Demo(root, uri, meta_path, owners_path, all_rows, meta, owners, versions)


def _rowids_where(first: dict[str, Any], second: dict[str, Any]) -> np.ndarray:
    ids = np.concatenate([first["id"], second["id"]])
    rowids = np.concatenate([np.arange(N1), (1 << 32) + np.arange(N2)])
    return rowids[ids % 10 == 9]


def make_float16(uri: str) -> dict[str, Any]:
    """A dataset with float16 in a scalar, an embedding and a ragged tensor; returns the values."""
    ds = th.create(
        uri,
        {
            "h": "float16",
            "emb": th.Embedding(4, dtype="float16"),
            "rag": th.Tensor("float16", (None, 2)),
            "k": "int32",
        },
    )
    rng = np.random.default_rng(5)
    vals = {
        "h": rng.random(10).astype(np.float16),
        "emb": rng.random((10, 4)).astype(np.float16),
        "rag": [rng.random((i % 3 + 1, 2)).astype(np.float16) for i in range(10)],
        "k": np.arange(10, dtype=np.int32),
    }
    ds.append(vals)
    return vals


class CountingStore(ForwardingStore):
    """Wraps a store and counts reads per column folder (``data/<column>/``) and bytes.

    A range read of a group file counts for the column whose column chunk it
    starts in (``columns``: path -> [(start, end, column)]); a footer read is
    counted apart, in ``footers`` (once per file and process: footers are cached).
    It acts as a remote store (no memory mapping), so every read goes through
    the counted calls below.
    """

    def __init__(
        self, inner: Store, columns: dict[str, list[tuple[int, int, str]]] | None = None
    ) -> None:
        super().__init__(inner)
        self.columns = columns or {}
        self.footers: collections.Counter[str] = collections.Counter()
        self.is_local = False
        self.reads: collections.Counter[str] = collections.Counter()
        self.nbytes: collections.Counter[str] = collections.Counter()

    def map(self, key: str) -> memoryview | None:
        return None

    def _count(self, key: str, n: int, start: int | None = None) -> None:
        parts = key.split("/")
        folder = parts[1] if parts[0] == "data" and len(parts) > 2 else parts[0]
        if key in self.columns and start is not None:
            hits = [c for a, b, c in self.columns[key] if a <= start < b]
            if not hits:
                self.footers[key] += 1
                return
            folder = hits[0]
        self.reads[folder] += 1
        self.nbytes[folder] += n

    def get(self, key: str) -> bytes:
        out = self.inner.get(key)
        self._count(key, len(out))
        return out

    def get_range(self, key: str, start: int, length: int) -> bytes:
        out = self.inner.get_range(key, start, length)
        self._count(key, len(out), start)
        return out

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        out = self.inner.get_ranges(key, ranges)
        self._count(key, sum(len(b) for b in out))
        return out

    def reset(self) -> None:
        self.reads.clear()
        self.nbytes.clear()
        self.footers.clear()


def counted(ds: Dataset) -> tuple[Dataset, CountingStore]:
    columns: dict[str, list[tuple[int, int, str]]] = {}
    names = {fid: name for name, fid in ds.snapshot.metadata.field_ids.items()}
    for frag in ds.snapshot.fragments:
        for fid, refs in frag.columns.items():
            for r in refs:
                if r.part is not None:
                    columns.setdefault(r.path, []).append(
                        (r.part.offset, r.part.offset + r.size, names.get(fid, "?"))
                    )
    store = CountingStore(ds.store, columns)
    return Dataset(store, ds.snapshot, log=Log(store)), store
