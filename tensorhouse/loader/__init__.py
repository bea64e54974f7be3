"""SELECT into a training loop: ``th.loader(dataset_or_query, batch_size=64, shuffle=True)``.

Example:
    >>> import numpy as np, tensorhouse as th
    >>> ds = th.create("memory://doc-loader", {"x": th.Embedding(2), "y": "int64"})
    >>> _ = ds.append({"x": np.ones((10, 2), "float32"), "y": np.arange(10)})
    >>> batches = list(th.loader(ds, batch_size=4, format="numpy"))
    >>> [len(b["y"]) for b in batches], batches[0]["x"].shape
    ([4, 4, 2], (4, 2))
    >>> cfg = th.LoaderConfig(batch_size=5, format="numpy")   # options as one value
    >>> ys = [b["y"].tolist() for b in th.loader(ds, cfg, shuffle=True, seed=1)]
    >>> len(ys), sorted(sum(ys, [])) == list(range(10))
    (2, True)

``th.loader`` is the function :func:`loader` of this package: ``tensorhouse``
imports it at start-up, which is why this package's ``__init__`` stays light
(the reading machinery, pyarrow's datasets and torch load on the first call).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from tensorhouse.loader.config import LoaderConfig, OutputFormat, ShuffleMode

if TYPE_CHECKING:
    from tensorhouse.format.dataset import Dataset


def _distributed_defaults(fmt: str) -> tuple[int, int]:
    if fmt != "torch" or "torch" not in sys.modules:
        return 0, 1
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def loader(
    source: Any,
    config: LoaderConfig | None = None,
    *,
    columns: Sequence[str] | None = None,
    dataset: Dataset | None = None,
    **options: Any,
) -> Any:
    """Batches of a Dataset or of a query (DuckDB relation, DataFusion DataFrame, Arrow table with ``_rowid``).

    ``columns`` picks the columns to load (default: all of the dataset, or the query's);
    ``dataset`` names the dataset behind a query when the loader cannot tell. Every other
    option is a field of :class:`LoaderConfig` (batch_size, shuffle, seed, shuffle_mode,
    rank, world_size, prefetch, reuse_buffers, format, device, ...), given as keywords,
    as a ``config``, or both (keywords win). Highlights:

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
    - Batch buffers are reused, but never while a batch that uses one is still referenced:
      keeping batches (``list(loader)``) is safe.
    """
    cfg = (config or LoaderConfig()).with_options(**options)
    r0, w0 = _distributed_defaults(cfg.format)
    cfg = cfg.with_options(
        rank=r0 if cfg.rank is None else cfg.rank,
        world_size=w0 if cfg.world_size is None else cfg.world_size,
    )
    from tensorhouse.loader.core import Loader
    from tensorhouse.loader.source import select

    sel = select(source, columns=columns, dataset=dataset)
    if cfg.format == "numpy":
        return Loader(sel, cfg)
    import torch

    from tensorhouse.loader import torch_adapter

    dev = torch.device(cfg.device) if cfg.device is not None else None
    gpu_cols: list[str] = []
    usable = (
        torch_adapter.gpu_jpeg_available(dev)
        and cfg.decode
        and cfg.transform is None
        and cfg.collate is None
    )
    if cfg.gpu_decode and not usable:
        raise ValueError(
            "gpu_decode=True needs device='cuda', a working torchvision, decode=True and no transform/collate"
        )
    if usable and cfg.gpu_decode is not False:
        gpu_cols = [
            c for c in sel.heavy if getattr(sel.dataset.schema[c], "compression", None) == "jpeg"
        ]
    return torch_adapter.TorchLoader(
        Loader(sel, cfg), device=dev, pin_memory=cfg.pin_memory, gpu_decode_columns=gpu_cols
    )


# The reading machinery loads with the first loader, not with `import tensorhouse`.
_LAZY = {
    "Loader": ("tensorhouse.loader.core", "Loader"),
    "default_collate": ("tensorhouse.loader.core", "default_collate"),
    "Selection": ("tensorhouse.loader.source", "Selection"),
    "ROWID_DATASET_KEY": ("tensorhouse.loader.source", "ROWID_DATASET_KEY"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'tensorhouse.loader' has no attribute {name!r}")


__all__ = [
    "ROWID_DATASET_KEY",
    "Loader",
    "LoaderConfig",
    "OutputFormat",
    "Selection",
    "ShuffleMode",
    "default_collate",
    "loader",
]
