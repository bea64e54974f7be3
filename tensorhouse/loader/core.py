"""The Loader: batches of a selection, prefetched on threads, deterministic per (seed, epoch)."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Literal

import numpy as np

from tensorhouse.format.dataset import Dataset
from tensorhouse.loader import plan
from tensorhouse.loader.materialize import BufferRing, Column, Materializer
from tensorhouse.loader.source import Selection
from tensorhouse.types import ROWID

Batch = dict[str, Any]


class Loader:
    """Iterate batches (dicts of column -> array) of a selection of rows.

    Build one with :func:`tensorhouse.loader.loader`. Numpy output; the torch
    adapter converts. Batch buffers are reused (``reuse_buffers=True``): a batch
    stays valid until ``prefetch + 1`` further batches have been taken; copy it
    to keep it longer.
    """

    def __init__(self, sel: Selection, *, batch_size: int, shuffle: bool, seed: int, shuffle_mode: plan.ShuffleMode,
                 buffer_chunks: int, drop_last: bool, rank: int, world_size: int, prefetch: int, num_threads: int | None,
                 reuse_buffers: bool, decode: bool, pad: bool, cache_bytes: int,
                 transform: Callable[[dict[str, Any]], dict[str, Any]] | None,
                 collate: Callable[[list[dict[str, Any]]], Any] | None,
                 batch_transform: Callable[[Batch], Any] | None) -> None:  # fmt: skip
        if shuffle_mode not in ("chunk", "full"):
            raise ValueError(f"shuffle_mode must be 'chunk' or 'full', got {shuffle_mode!r}")
        if prefetch < 1:
            raise ValueError(f"prefetch must be at least 1, got {prefetch}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be positive, got {batch_size}")
        self.sel = sel
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.shuffle_mode: plan.ShuffleMode = shuffle_mode
        self.buffer_chunks = buffer_chunks
        self.drop_last = drop_last
        self.rank = rank
        self.world_size = world_size
        self.prefetch = prefetch
        self.num_threads = num_threads or max(2, os.cpu_count() or 2)
        self.reuse_buffers = reuse_buffers
        self.decode = decode
        self.pad = pad
        self.cache_bytes = cache_bytes
        self.transform = transform
        self.collate = collate
        self.batch_transform = batch_transform
        self.epoch = 0
        #: How many batches ahead chunk reads start on object storage.
        self.lookahead_batches = 8
        #: Columns handed over still encoded (the torch adapter decodes them on the GPU).
        self.raw_columns: set[str] = set()
        #: Runs on each finished batch in the prefetch threads (the torch adapter's device copy).
        self.post: Callable[[Any], Any] | None = None
        #: Makes batch buffers (the torch adapter's pinned memory).
        self.allocator: Callable[[tuple[int, ...], np.dtype[Any]], np.ndarray] | None = None
        self._physical: np.ndarray | None = None
        plan.shard(np.zeros(0, np.int64), rank=rank, world_size=world_size, drop_last=drop_last)  # validates

    # -- pickling (DataLoader workers under spawn) -----------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["post"] = state["allocator"] = None  # process-local hooks
        ds = self.sel.dataset
        state["_reopen"] = (ds.uri, ds.version, ds.branch_name, ds.storage_options)
        state["sel"] = Selection(None, self.sel.rowids, self.sel.light, self.sel.heavy, self.sel.keep_rowid)  # type: ignore[arg-type]
        state["_physical"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        reopen = state.pop("_reopen")
        self.__dict__.update(state)
        import tensorhouse as th

        uri, version, branch, opts = reopen
        self.sel.dataset = th.open(uri, version=version, branch=branch, storage_options=opts or None)

    # -- planning ----------------------------------------------------------------------
    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch: with shuffling, each epoch has its own order (same on every rank)."""
        self.epoch = int(epoch)

    @property
    def dataset(self) -> Dataset:
        return self.sel.dataset

    def physical_rows(self) -> np.ndarray:
        """Physical rows of the selection (row ids resolved once)."""
        if self._physical is None:
            reader = self.sel.dataset.reader
            if self.sel.rowids is None:
                self._physical = reader.physical(np.arange(len(self.sel.dataset), dtype=np.int64))
            else:
                self._physical = reader.rows_of_rowids(self.sel.rowids)
        return self._physical

    def indices(self, *, worker: int = 0, num_workers: int = 1) -> np.ndarray:
        """Selection indices this rank (and worker) visits this epoch, in order."""
        phys = self.physical_rows()
        heavy = self.sel.heavy or self.sel.dataset.columns[:1]
        chunk_of_row = self.sel.dataset.reader.index(heavy[0]).locate(phys) if len(phys) else phys
        order = plan.epoch_order(chunk_of_row, shuffle=self.shuffle, mode=self.shuffle_mode, seed=self.seed,
                                 epoch=self.epoch, buffer_chunks=self.buffer_chunks)  # fmt: skip
        mine = plan.shard(order, rank=self.rank, world_size=self.world_size, drop_last=self.drop_last)
        if num_workers > 1:
            # Workers of one rank split its shard by whole batches: together they yield it exactly once.
            nb = -(-len(mine) // self.batch_size)
            per = np.array_split(np.arange(nb), num_workers)[worker]
            if not len(per):
                return mine[:0]
            mine = mine[per[0] * self.batch_size : (per[-1] + 1) * self.batch_size]
        return mine

    def __len__(self) -> int:
        n = len(plan.shard(np.arange(len(self.sel)), rank=self.rank, world_size=self.world_size,
                           drop_last=self.drop_last))  # fmt: skip
        return n // self.batch_size if self.drop_last else -(-n // self.batch_size)

    # -- iteration ---------------------------------------------------------------------
    def iter_batches(self, *, worker: int = 0, num_workers: int = 1) -> Iterator[Any]:
        idx = self.indices(worker=worker, num_workers=num_workers)
        groups = plan.batches(idx, self.batch_size, drop_last=self.drop_last)
        if not groups:
            return
        phys = self.physical_rows()
        decode_pool = ThreadPoolExecutor(self.num_threads, thread_name_prefix="tensorhouse-decode")
        batch_pool = ThreadPoolExecutor(self.prefetch, thread_name_prefix="tensorhouse-batch")
        ring = BufferRing(self.prefetch + 2, self.allocator) if self.reuse_buffers else None
        cols = [Column(n, self.sel.dataset.schema[n], self.decode and n not in self.raw_columns, self.pad)
                for n in self.sel.heavy]  # fmt: skip
        remote = not self.sel.dataset.store.is_local
        mat = Materializer(self.sel.dataset.reader, cols, threads=decode_pool, n_threads=self.num_threads,
                           cache_bytes=self.cache_bytes, ring=ring,
                           whole_chunks=not (remote and self.shuffle and self.shuffle_mode == "full"))  # fmt: skip
        # Object stores answer in tens of milliseconds: read the chunks of the next
        # batches ahead, on their own wide pool, so no batch waits for a request.
        lookahead = self.prefetch + (self.lookahead_batches if remote else 0)
        io_pool = ThreadPoolExecutor(16 if remote else 2, thread_name_prefix="tensorhouse-chunks")

        def make(k: int) -> Any:
            sel_idx = groups[k]
            rows = phys[sel_idx]
            out: Batch = {}
            for col in cols:
                out[col.name] = mat.column(col, rows, k)
            for name, values in self.sel.light.items():
                out[name] = values[sel_idx]
            if self.sel.keep_rowid:
                out[ROWID] = (self.sel.rowids[sel_idx] if self.sel.rowids is not None
                              else self.sel.dataset.reader.rowids(rows))  # fmt: skip
            done = self._finish(out)
            return self.post(done) if self.post is not None else done

        pending: deque[Future[Any]] = deque()
        try:
            nxt = 0
            for _ in range(min(self.prefetch, len(groups))):
                pending.append(batch_pool.submit(make, nxt))
                nxt += 1
            ahead = 0
            while pending:
                while ahead < min(len(groups), nxt + lookahead):
                    mat.prefetch(io_pool, phys[groups[ahead]])
                    ahead += 1
                batch = pending.popleft().result()
                if nxt < len(groups):
                    pending.append(batch_pool.submit(make, nxt))
                    nxt += 1
                yield batch
        finally:
            # Early exit (break, exception, garbage collection): stop the pipeline, leave no threads.
            for f in pending:
                f.cancel()
            batch_pool.shutdown(wait=True, cancel_futures=True)
            io_pool.shutdown(wait=True, cancel_futures=True)
            decode_pool.shutdown(wait=True, cancel_futures=True)

    def _finish(self, batch: Batch) -> Any:
        if self.transform is not None or self.collate is not None:
            n = len(next(iter(batch.values()))) if batch else 0
            rows = [{k: v[i] for k, v in batch.items()} for i in range(n)]
            if self.transform is not None:
                rows = [self.transform(r) for r in rows]
            batch = self.collate(rows) if self.collate is not None else default_collate(rows)
        if self.batch_transform is not None:
            batch = self.batch_transform(batch)
        return batch

    def __iter__(self) -> Iterator[Any]:
        return self.iter_batches()


def default_collate(rows: Sequence[dict[str, Any]]) -> Batch:
    """Rows -> batch: stack arrays of one shape, else keep a list."""
    out: Batch = {}
    for k in rows[0] if rows else ():
        vals = [r[k] for r in rows]
        if all(isinstance(v, np.ndarray | np.generic) for v in vals) and len({np.shape(v) for v in vals}) == 1:
            out[k] = np.stack(vals)
        else:
            out[k] = vals
    return out


OutputFormat = Literal["numpy", "torch"]
