"""PyTorch side of the loader: tensors, pinned memory, devices, DataLoader workers, GPU JPEG decode.

The only module of tensorhouse that imports torch (and torchvision, when present).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from tensorhouse.loader.core import Loader


def to_torch(value: Any, *, pin: bool, device: torch.device | None) -> Any:
    """numpy -> torch without copying; lists and tuples recurse; strings stay as they are."""
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return [to_torch(v, pin=pin, device=device) for v in value]
        t = torch.from_numpy(value)
        if pin:
            t = t.pin_memory()
        return t.to(device, non_blocking=True) if device is not None else t
    if isinstance(value, np.generic):
        return torch.as_tensor(value)
    if isinstance(value, list):
        return [to_torch(v, pin=pin, device=device) for v in value]
    if isinstance(value, tuple):
        return tuple(to_torch(v, pin=pin, device=device) for v in value)
    if isinstance(value, dict):
        return {k: to_torch(v, pin=pin, device=device) for k, v in value.items()}
    return value


def gpu_jpeg_available(device: torch.device | None) -> bool:
    """True when JPEG can be decoded on this CUDA device (torchvision present and working)."""
    if device is None or device.type != "cuda" or not torch.cuda.is_available():
        return False
    try:
        from torchvision.io import decode_jpeg  # noqa: F401
    except Exception:  # torchvision absent or not importable beside this torch build
        return False
    return True


class TorchLoader(IterableDataset):
    """Batches as torch tensors. Iterate it directly, or inside ``DataLoader(loader, batch_size=None, num_workers=N)``.

    Inside a DataLoader each worker yields a disjoint part of this rank's shard.
    """

    def __init__(self, core: Loader, *, device: str | torch.device | None, pin_memory: bool,
                 gpu_decode_columns: list[str]) -> None:  # fmt: skip
        self.core = core
        self.device = torch.device(device) if device is not None else None
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self.gpu_decode_columns = gpu_decode_columns

    def set_epoch(self, epoch: int) -> None:
        self.core.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.core)

    @property
    def dataset(self) -> Any:
        return self.core.dataset

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info is not None else (0, 1)
        for batch in self.core.iter_batches(worker=worker, num_workers=workers):
            out = to_torch(batch, pin=self.pin_memory, device=self.device)
            if self.gpu_decode_columns and isinstance(out, dict):
                from torchvision.io import decode_jpeg

                for name in self.gpu_decode_columns:
                    blobs = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in batch[name]]
                    imgs = decode_jpeg(blobs, device=self.device)
                    shapes = {tuple(i.shape) for i in imgs}
                    # torchvision gives CxHxW; match the CPU path's HxWxC.
                    hwc = [i.permute(1, 2, 0) for i in imgs]
                    out[name] = torch.stack(hwc) if len(shapes) == 1 else hwc
            yield out
