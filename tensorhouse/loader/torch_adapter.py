"""PyTorch side of the loader: tensors, pinned memory, devices, DataLoader workers, GPU JPEG decode.

The only module of tensorhouse that imports torch (and torchvision, when present).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info

from tensorhouse.loader.core import BatchHooks, Loader


def batch_to_tensors(value: Any, *, pin: bool, device: torch.device | None) -> Any:
    """A numpy batch -> torch without copying; lists, tuples and dicts recurse; strings stay as they are."""
    if isinstance(value, np.ndarray):
        if value.dtype == object:
            return [batch_to_tensors(v, pin=pin, device=device) for v in value]
        t = torch.from_numpy(value)
        if pin:
            t = t.pin_memory()
        return t.to(device, non_blocking=True) if device is not None else t
    if isinstance(value, np.generic):
        return torch.as_tensor(value)
    if isinstance(value, list):
        return [batch_to_tensors(v, pin=pin, device=device) for v in value]
    if isinstance(value, tuple):
        return tuple(batch_to_tensors(v, pin=pin, device=device) for v in value)
    if isinstance(value, dict):
        return {k: batch_to_tensors(v, pin=pin, device=device) for k, v in value.items()}
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
    ``set_epoch`` reaches the workers, persistent ones included: the epoch lives
    in a shared-memory tensor that every worker's copy reads when an epoch starts.
    A loader built inside a worker (torch's recipe: ``rank=info.id,
    world_size=info.num_workers``) is that worker's share already and is not
    split again; built there without a split, every worker would yield every
    row, so that is refused.

    With a CUDA device the copy to the GPU (and JPEG decoding, when torchvision
    can) happens in the prefetch threads, each on its own CUDA stream, from
    pinned batch buffers, so the training loop only receives ready GPU tensors.
    """

    def __init__(
        self,
        core: Loader,
        *,
        device: str | torch.device | None,
        pin_memory: bool,
        gpu_decode_columns: list[str],
    ) -> None:
        self.core = core
        self.device = torch.device(device) if device is not None else None
        self.pin_memory = pin_memory and torch.cuda.is_available()
        self.gpu_decode_columns = gpu_decode_columns
        self._streams = threading.local()
        info = get_worker_info()
        #: Built inside a DataLoader worker: the caller split the rows by worker already.
        self.built_in_worker = info is not None
        if info is not None and info.num_workers > 1 and core.world_size == 1:
            raise ValueError(
                f"th.loader was built inside DataLoader worker {info.id} of {info.num_workers} without a split, "
                "so every worker would yield every row: pass rank=info.id, world_size=info.num_workers "
                "(from torch.utils.data.get_worker_info()), or build the loader outside and pass it to "
                "DataLoader(loader, batch_size=None, num_workers=N), which splits it"
            )
        # Shared memory: DataLoader pickles it (fork or spawn) as a handle to the same
        # storage, so set_epoch in the main process reaches persistent workers.
        self._epoch = torch.zeros((), dtype=torch.int64).share_memory_()

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch for this loader and for every DataLoader worker's copy of it."""
        self._epoch.fill_(int(epoch))
        self.core.set_epoch(epoch)

    @property
    def epoch(self) -> int:
        return int(self._epoch)

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        del state["_streams"]  # CUDA streams are per process (and per thread)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._streams = threading.local()

    def __len__(self) -> int:
        return len(self.core)

    @property
    def dataset(self) -> Any:
        return self.core.dataset

    def _stream(self) -> torch.cuda.Stream:
        s = getattr(self._streams, "s", None)
        if s is None:
            s = self._streams.s = torch.cuda.Stream(self.device)
        return s

    def _to_device(self, batch: Any) -> Any:
        """In a prefetch thread: decode on the GPU, copy the rest, and wait for this stream only."""
        assert self.device is not None
        stream = self._stream()
        with torch.cuda.stream(stream):
            raw = (
                {name: batch.pop(name) for name in self.gpu_decode_columns}
                if isinstance(batch, dict)
                else {}
            )
            out = batch_to_tensors(batch, pin=False, device=self.device)
            for name, payloads in raw.items():
                out[name] = gpu_decode(payloads, self.device)
        stream.synchronize()  # releases the GIL; the consumer gets finished tensors
        return out

    def __iter__(self) -> Iterator[Any]:
        info = get_worker_info()
        split = info is not None and not self.built_in_worker
        worker, workers = (info.id, info.num_workers) if split and info is not None else (0, 1)
        on_gpu = self.device is not None and self.device.type == "cuda" and info is None
        pin = self.pin_memory or on_gpu
        pin_here = self.pin_memory and info is None

        def post(b: Any) -> Any:
            return batch_to_tensors(b, pin=pin_here, device=None)

        def pinned(shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
            return torch.empty(shape, dtype=_TORCH_DTYPES[np.dtype(dtype)], pin_memory=True).numpy()

        hooks = BatchHooks(
            post=self._to_device if on_gpu else post,
            allocator=pinned if pin else None,
            raw_columns=frozenset(self.gpu_decode_columns) if on_gpu else frozenset(),
        )
        for batch in self.core.iter_batches(
            worker=worker, num_workers=workers, epoch=self.epoch, hooks=hooks
        ):
            if self.device is not None and not on_gpu:
                batch = batch_to_tensors(batch, pin=False, device=self.device)
            yield batch


def gpu_decode(payloads: list[Any], device: torch.device) -> Any:
    """Encoded JPEGs (buffers) -> uint8 HxWxC tensors on ``device`` (stacked when shapes agree)."""
    from torchvision.io import decode_jpeg

    sizes = np.fromiter((len(p) for p in payloads), dtype=np.int64, count=len(payloads))
    ends = np.cumsum(sizes)
    flat = torch.from_numpy(np.frombuffer(b"".join(payloads), dtype=np.uint8).copy())
    blobs = [flat[int(e - s) : int(e)] for s, e in zip(sizes, ends, strict=True)]
    imgs = decode_jpeg(blobs, device=device)
    if len({tuple(i.shape) for i in imgs}) == 1:
        return torch.stack(imgs).permute(0, 2, 3, 1).contiguous()  # CxHxW -> the CPU path's HxWxC
    return [i.permute(1, 2, 0) for i in imgs]


_TORCH_DTYPES = {
    np.dtype(k): v
    for k, v in {
        "uint8": torch.uint8,
        "int8": torch.int8,
        "int16": torch.int16,
        "int32": torch.int32,
        "int64": torch.int64,
        "float16": torch.float16,
        "float32": torch.float32,
        "float64": torch.float64,
        "bool": torch.bool,
        "uint16": torch.uint16,
        "uint32": torch.uint32,
        "uint64": torch.uint64,
    }.items()
}
