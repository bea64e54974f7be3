"""The loader's options: one frozen, validated value, never changed after construction.

``th.loader(source, batch_size=64, shuffle=True)`` builds a :class:`LoaderConfig`
from its keyword options; a config can also be built once and passed whole
(``th.loader(source, cfg)``), with keyword options overriding its fields.

Example:
    >>> from tensorhouse.loader import LoaderConfig
    >>> cfg = LoaderConfig(batch_size=32, shuffle=True, format="numpy")
    >>> cfg.with_options(seed=7).seed, cfg.seed
    (7, 0)
    >>> LoaderConfig(batch_size=0)
    Traceback (most recent call last):
    ...
    ValueError: batch_size must be positive, got 0
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

ShuffleMode = Literal["chunk", "full"]
OutputFormat = Literal["numpy", "torch"]


@dataclass(frozen=True)
class LoaderConfig:
    """How a loader batches, orders, shards and decodes rows. Every field has a default.

    Order and sharding:
        batch_size: rows per batch.
        shuffle: visit rows in a random order, deterministic for (``seed``, epoch); call
            ``set_epoch`` for each epoch's own order.
        seed: the shuffle seed (the same on every rank).
        shuffle_mode: ``"chunk"`` shuffles chunk order and rows within a window of
            ``buffer_chunks`` chunks (few reads per batch, fast on object storage);
            ``"full"`` is an exact uniform permutation.
        buffer_chunks: the window of ``"chunk"`` shuffling.
        drop_last: drop the last incomplete batch (and truncate shards to equal length
            instead of wrapping around).
        rank, world_size: this process's shard (``None``: torch.distributed's, when it is
            initialised with ``format="torch"``, else 0 and 1). Inside
            ``DataLoader(num_workers=N)`` the workers split the shard.

    Reading and decoding:
        prefetch: batches built ahead on threads (at least 1).
        num_threads: decode threads (``None``: every core, at least 2).
        reuse_buffers: fill batches into a ring of reused buffers (fast: pages are touched
            once). A buffer still referenced when its turn comes (a batch kept, as
            ``list(loader)`` does) is never overwritten: a fresh one replaces it.
            ``False`` allocates fresh buffers for every batch.
        decode: decode images to uint8 HxWxC (``False``: encoded bytes).
        pad: zero-pad ragged columns to ``(padded, shapes)``.
        cache_bytes: the chunk cache (chunk shuffling revisits chunks).

    Per-row and per-batch functions:
        transform: row dict -> row dict, before collation.
        collate: rows -> batch (default: stack arrays of one shape, else a list).
        batch_transform: batch -> anything, last.

    Output:
        format: ``"torch"`` tensors or ``"numpy"`` arrays (never imports torch).
        device: move batches to this torch device (``"cuda"`` also decodes JPEG there when
            torchvision can).
        pin_memory: pinned host buffers (``format="torch"``).
        gpu_decode: ``None`` decodes JPEG on the GPU when possible, ``False`` never,
            ``True`` requires it.
    """

    batch_size: int = 64
    shuffle: bool = False
    seed: int = 0
    shuffle_mode: ShuffleMode = "chunk"
    buffer_chunks: int = 4
    drop_last: bool = False
    rank: int | None = None
    world_size: int | None = None
    prefetch: int = 2
    num_threads: int | None = None
    reuse_buffers: bool = True
    decode: bool = True
    pad: bool = False
    cache_bytes: int = 512 << 20
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None
    collate: Callable[[list[dict[str, Any]]], Any] | None = None
    batch_transform: Callable[[dict[str, Any]], Any] | None = None
    format: OutputFormat = "torch"
    device: str | None = None
    pin_memory: bool = False
    gpu_decode: bool | None = None

    def __post_init__(self) -> None:
        if (
            isinstance(self.batch_size, bool)
            or not isinstance(self.batch_size, int)
            or self.batch_size < 1
        ):
            raise ValueError(f"batch_size must be positive, got {self.batch_size}")
        if self.shuffle_mode not in ("chunk", "full"):
            raise ValueError(f"shuffle_mode must be 'chunk' or 'full', got {self.shuffle_mode!r}")
        if self.buffer_chunks < 1:
            raise ValueError(f"buffer_chunks must be at least 1, got {self.buffer_chunks}")
        if self.prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {self.prefetch}")
        if self.num_threads is not None and self.num_threads < 1:
            raise ValueError(f"num_threads must be at least 1, got {self.num_threads}")
        if self.cache_bytes < 0:
            raise ValueError(f"cache_bytes must be >= 0, got {self.cache_bytes}")
        if self.format not in ("torch", "numpy"):
            raise ValueError(f"format must be 'torch' or 'numpy', got {self.format!r}")
        if self.format == "numpy" and (self.device is not None or self.pin_memory):
            raise ValueError("device= and pin_memory= need format='torch'")
        if (
            self.rank is not None
            and self.world_size is not None
            and not 0 <= self.rank < self.world_size
        ):
            raise ValueError(f"rank {self.rank} is not in a world of {self.world_size}")

    def with_options(self, **options: Any) -> LoaderConfig:
        """A copy with some fields changed (validated again); unknown names are a TypeError naming them."""
        unknown = sorted(set(options) - FIELDS)
        if unknown:
            raise TypeError(f"unknown loader option(s) {unknown}; options are {sorted(FIELDS)}")
        return dataclasses.replace(self, **options) if options else self


FIELDS = frozenset(f.name for f in dataclasses.fields(LoaderConfig))

__all__ = ["FIELDS", "LoaderConfig", "OutputFormat", "ShuffleMode"]
