"""SELECT into a training loop: ``th.loader(dataset_or_query, batch_size=64, shuffle=True)``.

Example:
    >>> import numpy as np, tensorhouse as th
    >>> ds = th.create("memory://doc-loader", {"x": th.Embedding(2), "y": "int64"})
    >>> _ = ds.append({"x": np.ones((10, 2), "float32"), "y": np.arange(10)})
    >>> batches = list(th.loader(ds, batch_size=4, format="numpy", reuse_buffers=False))
    >>> [len(b["y"]) for b in batches], batches[0]["x"].shape
    ([4, 4, 2], (4, 2))

``th.loader`` is this module, made callable, so ``th.loader(...)`` and
``from tensorhouse.loader import loader`` both work.
"""

from __future__ import annotations

import sys
import types
from collections.abc import Callable, Sequence
from typing import Any

from tensorhouse.format.dataset import Dataset
from tensorhouse.loader.core import Loader, OutputFormat, default_collate
from tensorhouse.loader.plan import ShuffleMode
from tensorhouse.loader.source import ROWID_DATASET_KEY, Selection, select


def _distributed_defaults(fmt: str) -> tuple[int, int]:
    if fmt != "torch" or "torch" not in sys.modules:
        return 0, 1
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def loader(
    source: Any,
    *,
    batch_size: int = 64,
    shuffle: bool = False,
    seed: int = 0,
    columns: Sequence[str] | None = None,
    dataset: Dataset | None = None,
    shuffle_mode: ShuffleMode = "chunk",
    buffer_chunks: int = 4,
    drop_last: bool = False,
    rank: int | None = None,
    world_size: int | None = None,
    prefetch: int = 2,
    num_threads: int | None = None,
    reuse_buffers: bool = True,
    decode: bool = True,
    pad: bool = False,
    cache_bytes: int = 512 << 20,
    transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    collate: Callable[[list[dict[str, Any]]], Any] | None = None,
    batch_transform: Callable[[dict[str, Any]], Any] | None = None,
    format: OutputFormat = "torch",
    device: str | None = None,
    pin_memory: bool = False,
    gpu_decode: bool | None = None,
) -> Any:
    """Batches of a Dataset or of a query (DuckDB relation, DataFusion DataFrame, Arrow table with ``_rowid``).

    - ``shuffle_mode="chunk"`` (default) shuffles chunk order and rows within a window
      of ``buffer_chunks`` chunks: few reads per batch, fast on object storage;
      ``"full"`` is an exact permutation. Deterministic for (seed, epoch): call ``set_epoch``.
    - ``rank``/``world_size`` (default: torch.distributed when initialised) give disjoint
      shards of equal length; inside ``DataLoader(num_workers=N)`` workers split the shard.
    - Images decode to uint8 HxWxC, stacked when a batch's images share a shape, else a
      list (``pad=True`` pads ragged columns and returns ``(padded, shapes)``).
    - ``format="numpy"`` never imports torch. ``device="cuda"`` moves batches to the GPU and
      decodes JPEG there when torchvision is available (``gpu_decode=False`` keeps decoding
      on CPU threads; ``True`` requires it).
    - Buffers are reused: a batch is valid until ``prefetch + 1`` more are taken
      (``reuse_buffers=False`` allocates fresh ones).
    """
    if format not in ("torch", "numpy"):
        raise ValueError(f"format must be 'torch' or 'numpy', got {format!r}")
    sel = select(source, columns=columns, dataset=dataset)
    r0, w0 = _distributed_defaults(format)
    core_kwargs: dict[str, Any] = dict(
        batch_size=batch_size, shuffle=shuffle, seed=seed, shuffle_mode=shuffle_mode, buffer_chunks=buffer_chunks,
        drop_last=drop_last, rank=r0 if rank is None else rank, world_size=w0 if world_size is None else world_size,
        prefetch=prefetch, num_threads=num_threads, reuse_buffers=reuse_buffers, decode=decode, pad=pad,
        cache_bytes=cache_bytes, transform=transform, collate=collate, batch_transform=batch_transform,
    )  # fmt: skip
    if format == "numpy":
        if device is not None or pin_memory:
            raise ValueError("device= and pin_memory= need format='torch'")
        return Loader(sel, **core_kwargs)
    import torch

    from tensorhouse.loader import torch_adapter

    dev = torch.device(device) if device is not None else None
    gpu_cols: list[str] = []
    usable = torch_adapter.gpu_jpeg_available(dev) and decode and transform is None and collate is None
    if gpu_decode and not usable:
        raise ValueError("gpu_decode=True needs device='cuda', a working torchvision, decode=True and no transform/collate")
    if usable and gpu_decode is not False:
        gpu_cols = [c for c in sel.heavy if getattr(sel.dataset.schema[c], "compression", None) == "jpeg"]
    core = Loader(sel, **core_kwargs)
    core.raw_columns = set(gpu_cols)
    return torch_adapter.TorchLoader(core, device=dev, pin_memory=pin_memory, gpu_decode_columns=gpu_cols)


class _CallableModule(types.ModuleType):
    def __call__(self, source: Any, **kwargs: Any) -> Any:
        return loader(source, **kwargs)


sys.modules[__name__].__class__ = _CallableModule

__all__ = ["ROWID_DATASET_KEY", "Loader", "Selection", "default_collate", "loader"]
