"""Which rows an epoch visits, in which order, on which rank: pure numpy, deterministic.

The order of an epoch depends only on (seed, epoch, the selected rows), so
every rank computes the same global order and takes its own contiguous
slice: shards are disjoint, cover every row, and have equal lengths (the
last ``world_size - 1`` slots wrap around to the start when the count does
not divide, as torch's DistributedSampler does; ``drop_last`` truncates).
"""

from __future__ import annotations

import numpy as np

from tensorhouse.loader.config import ShuffleMode


def epoch_order(
    chunk_of_row: np.ndarray,
    *,
    shuffle: bool,
    mode: ShuffleMode,
    seed: int,
    epoch: int,
    buffer_chunks: int,
) -> np.ndarray:
    """A permutation of ``range(len(chunk_of_row))``.

    ``chunk``: visit chunks in a random order, and shuffle rows within a window
    of ``buffer_chunks`` consecutive chunks, so a batch reads a few chunks (fast on
    object storage). ``full``: an exact uniform permutation.
    """
    n = len(chunk_of_row)
    if not shuffle:
        return np.arange(n, dtype=np.int64)
    rng = np.random.default_rng([seed, epoch])
    if mode == "full":
        return rng.permutation(n).astype(np.int64)
    chunks, inverse = np.unique(chunk_of_row, return_inverse=True)
    chunk_rank = rng.permutation(len(chunks))[
        inverse
    ]  # each row's chunk position in the visit order
    window = chunk_rank // max(1, buffer_chunks)
    # Sort by window, then by a random key: rows mix freely inside a window only.
    key = rng.random(n)
    return np.lexsort((key, window)).astype(np.int64)


def shard(order: np.ndarray, *, rank: int, world_size: int, drop_last: bool) -> np.ndarray:
    """This rank's contiguous slice of ``order``, all ranks equally long."""
    if world_size < 1 or not 0 <= rank < world_size:
        raise ValueError(f"rank {rank} is not in a world of {world_size}")
    n = len(order)
    if drop_last:
        per = n // world_size
        return order[rank * per : (rank + 1) * per]
    per = -(-n // world_size) if n else 0
    if per * world_size > n and n:
        order = np.concatenate([order, order[: per * world_size - n]])
    return order[rank * per : (rank + 1) * per]


def batches(indices: np.ndarray, batch_size: int, *, drop_last: bool) -> list[np.ndarray]:
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    stop = len(indices) - (len(indices) % batch_size if drop_last else 0)
    return [indices[i : i + batch_size] for i in range(0, stop, batch_size)]
