"""What the safe batch-buffer default costs (issue 14, item 7).

The loader fills batches into a ring of reused buffers. Before, a batch kept
past ``prefetch + 1`` more batches was silently overwritten (``list(loader)``
returned repeated rows). Now a buffer still referenced when its turn comes is
replaced by a fresh one. Same data, same run, rounds interleaved:

- ``ring, unchecked``: the old behaviour (the reference check switched off);
- ``ring, checked``: the default now, batches dropped as a training loop does;
- ``fresh buffers``: ``reuse_buffers=False``, a new allocation for every batch;
- ``ring, checked, kept``: the default with every batch kept (``list(loader)``).

Two columns: raw uint8 224x224x3 tensors (memcpy-bound, where allocation shows)
and 224x224 q90 JPEGs (decode-bound). Reports img/s (median of rounds) and the
ratio to the unchecked ring.

Usage:
    .venv/bin/python benchmarks/bench_loader_buffers.py [--rows 3000] [--rounds 5] [--smoke]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from typing import Any

import numpy as np
import simplejpeg

import tensorhouse as th
from tensorhouse.loader import batch_columns
from tensorhouse.synth import scene

H = W = 224
BATCH = 64


def build(root: str, n: int) -> th.Dataset:
    rng = np.random.default_rng(0)
    base = [scene(rng, H, W)[0] for _ in range(min(n, 64))]
    imgs = [base[i % len(base)] for i in range(n)]
    ds = th.create(
        f"{root}/ds",
        {"raw": th.Tensor("uint8", (H, W, 3)), "jpeg": th.Image("jpeg"), "label": "int64"},
    )
    for a in range(0, n, 512):
        part = imgs[a : a + 512]
        ds.append(
            {
                "raw": np.stack(part),
                "jpeg": [simplejpeg.encode_jpeg(x, quality=90) for x in part],
                "label": np.arange(a, a + len(part)),
            }
        )
    return th.open(f"{root}/ds")


def epoch(ds: th.Dataset, column: str, *, reuse: bool, keep: bool, checked: bool) -> float:
    """Seconds for one epoch of ``column``."""
    saved = batch_columns._RING_REFS
    if not checked:
        batch_columns._RING_REFS = 1 << 30  # every buffer counts as free: the old, unchecked reuse
    try:
        loader = th.loader(
            ds, batch_size=BATCH, columns=[column, "label"], format="numpy", reuse_buffers=reuse
        )
        t = time.perf_counter()
        if keep:
            kept = list(loader)
            assert len(kept) == len(loader)
        else:
            for b in loader:
                del b
        return time.perf_counter() - t
    finally:
        batch_columns._RING_REFS = saved


CONFIGS: list[tuple[str, dict[str, Any]]] = [
    ("ring, unchecked (before)", {"reuse": True, "keep": False, "checked": False}),
    ("ring, checked (default now)", {"reuse": True, "keep": False, "checked": True}),
    ("fresh buffers (reuse_buffers=False)", {"reuse": False, "keep": False, "checked": True}),
    ("ring, checked, every batch kept", {"reuse": True, "keep": True, "checked": True}),
]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=3000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="256 rows, 1 round (seconds)")
    args = ap.parse_args()
    rows, rounds = (256, 1) if args.smoke else (args.rows, args.rounds)
    with tempfile.TemporaryDirectory() as root:
        ds = build(root, rows)
        for column in ("raw", "jpeg"):
            runs: dict[str, list[float]] = {name: [] for name, _ in CONFIGS}
            for _name, kw in CONFIGS:  # warm-up: page cache, thread pools
                epoch(ds, column, **kw)
            for _ in range(rounds):
                for name, kw in CONFIGS:
                    runs[name].append(epoch(ds, column, **kw))
            rate = {name: rows / statistics.median(times) for name, times in runs.items()}
            base = rate[CONFIGS[0][0]]
            print(
                f"\n{column} column, {rows} rows of {H}x{W}x3, batches of {BATCH}, median of {rounds} round(s)"
            )
            print("| configuration | img/s | vs unchecked ring |\n|---|---|---|")
            for name, _ in CONFIGS:
                print(f"| {name} | {rate[name]:,.0f} | {rate[name] / base:.2f} |")


if __name__ == "__main__":
    main()
