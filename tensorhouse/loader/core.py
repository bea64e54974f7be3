"""The Loader: batches of a selection, prefetched on threads, deterministic per (seed, epoch)."""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tensorhouse.format.dataset import Dataset
from tensorhouse.format.dataset import open as open_dataset
from tensorhouse.loader import plan
from tensorhouse.loader.batch_columns import BufferRing, Column, Materializer
from tensorhouse.loader.config import LoaderConfig, OutputFormat
from tensorhouse.loader.source import Selection
from tensorhouse.types import ROWID

Batch = dict[str, Any]


class Loader:
    """Iterate batches (dicts of column -> array) of a selection of rows.

    Build one with :func:`tensorhouse.loader.loader`. Numpy output; the torch
    adapter converts. Its options are one frozen :class:`LoaderConfig` (with
    ``rank`` and ``world_size`` resolved); only the epoch changes.
    """

    #: How many batches ahead chunk reads start on object storage.
    LOOKAHEAD_BATCHES = 8

    def __init__(self, sel: Selection, config: LoaderConfig) -> None:
        if config.rank is None or config.world_size is None:
            raise ValueError(
                "Loader needs a config with rank and world_size resolved (th.loader does it)"
            )
        plan.shard(
            np.zeros(0, np.int64),
            rank=config.rank,
            world_size=config.world_size,
            drop_last=config.drop_last,
        )  # validates
        self.sel = sel
        self.config = config
        self.num_threads = config.num_threads or max(2, os.cpu_count() or 2)
        self.epoch = 0
        self._physical: np.ndarray | None = None

    @property
    def rank(self) -> int:
        return self.config.rank or 0

    @property
    def world_size(self) -> int:
        return self.config.world_size or 1

    # -- pickling (DataLoader workers under spawn) -----------------------------------
    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        ds = self.sel.dataset
        state["_reopen"] = (ds.uri, ds.version, ds.branch_name, ds.storage_options)
        state["sel"] = Selection(
            None,  # type: ignore[arg-type]
            self.sel.rowids,
            self.sel.light,
            self.sel.heavy,
            self.sel.keep_rowid,
        )
        state["_physical"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        uri, version, branch, opts = state.pop("_reopen")
        self.__dict__.update(state)
        self.sel.dataset = open_dataset(
            uri, version=version, branch=branch, storage_options=opts or None
        )

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

    def indices(
        self, *, worker: int = 0, num_workers: int = 1, epoch: int | None = None
    ) -> np.ndarray:
        """Selection indices this rank (and worker) visits in ``epoch`` (default: the current one), in order."""
        cfg = self.config
        phys = self.physical_rows()
        heavy = self.sel.heavy or self.sel.dataset.columns[:1]
        chunk_of_row = self.sel.dataset.reader.index(heavy[0]).locate(phys) if len(phys) else phys
        order = plan.epoch_order(
            chunk_of_row,
            shuffle=cfg.shuffle,
            mode=cfg.shuffle_mode,
            seed=cfg.seed,
            epoch=self.epoch if epoch is None else epoch,
            buffer_chunks=cfg.buffer_chunks,
        )
        mine = plan.shard(
            order, rank=self.rank, world_size=self.world_size, drop_last=cfg.drop_last
        )
        if num_workers > 1:
            # Workers of one rank split its shard by whole batches: together they yield it exactly once.
            bs = cfg.batch_size
            nb = -(-len(mine) // bs)
            per = np.array_split(np.arange(nb), num_workers)[worker]
            if not len(per):
                return mine[:0]
            mine = mine[per[0] * bs : (per[-1] + 1) * bs]
        return mine

    def __len__(self) -> int:
        cfg = self.config
        n = len(
            plan.shard(
                np.arange(len(self.sel)),
                rank=self.rank,
                world_size=self.world_size,
                drop_last=cfg.drop_last,
            )
        )
        return n // cfg.batch_size if cfg.drop_last else -(-n // cfg.batch_size)

    # -- iteration ---------------------------------------------------------------------
    def iter_batches(
        self,
        *,
        worker: int = 0,
        num_workers: int = 1,
        epoch: int | None = None,
        hooks: BatchHooks | None = None,
    ) -> Iterator[Any]:
        """Batches of ``epoch`` (default: the one ``set_epoch`` chose) for one worker of this rank.

        ``hooks`` are the caller's process-local pieces (the torch adapter's device copy,
        pinned buffers, columns left encoded for GPU decode).
        """
        cfg = self.config
        hooks = hooks or BatchHooks()
        idx = self.indices(worker=worker, num_workers=num_workers, epoch=epoch)
        groups = plan.batches(idx, cfg.batch_size, drop_last=cfg.drop_last)
        if not groups:
            return
        phys = self.physical_rows()
        decode_pool = ThreadPoolExecutor(self.num_threads, thread_name_prefix="tensorhouse-decode")
        batch_pool = ThreadPoolExecutor(cfg.prefetch, thread_name_prefix="tensorhouse-batch")
        ring = BufferRing(cfg.prefetch + 2, hooks.allocator) if cfg.reuse_buffers else None
        cols = [
            Column(
                n, self.sel.dataset.schema[n], cfg.decode and n not in hooks.raw_columns, cfg.pad
            )
            for n in self.sel.heavy
        ]
        remote = not self.sel.dataset.store.is_local
        mat = Materializer(
            self.sel.dataset.reader,
            cols,
            threads=decode_pool,
            n_threads=self.num_threads,
            cache_bytes=cfg.cache_bytes,
            ring=ring,
            whole_chunks=not (remote and cfg.shuffle and cfg.shuffle_mode == "full"),
        )
        # Object stores answer in tens of milliseconds: read the chunks of the next
        # batches ahead, on their own wide pool, so no batch waits for a request.
        lookahead = cfg.prefetch + (self.LOOKAHEAD_BATCHES if remote else 0)
        post = hooks.post
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
                out[ROWID] = (
                    self.sel.rowids[sel_idx]
                    if self.sel.rowids is not None
                    else self.sel.dataset.reader.rowids(rows)
                )
            done = self._finish(out)
            return post(done) if post is not None else done

        pending: deque[Future[Any]] = deque()
        try:
            nxt = 0
            for _ in range(min(cfg.prefetch, len(groups))):
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
        cfg = self.config
        if cfg.transform is not None or cfg.collate is not None:
            n = len(next(iter(batch.values()))) if batch else 0
            rows = [{k: v[i] for k, v in batch.items()} for i in range(n)]
            if cfg.transform is not None:
                rows = [cfg.transform(r) for r in rows]
            batch = cfg.collate(rows) if cfg.collate is not None else default_collate(rows)
        if cfg.batch_transform is not None:
            batch = cfg.batch_transform(batch)
        return batch

    def __iter__(self) -> Iterator[Any]:
        return self.iter_batches()


@dataclass(frozen=True)
class BatchHooks:
    """Process-local parts of one iteration, supplied by the torch adapter (never pickled)."""

    #: Runs on each finished batch in the prefetch threads (the device copy).
    post: Callable[[Any], Any] | None = None
    #: Makes batch buffers (pinned memory).
    allocator: Callable[[tuple[int, ...], np.dtype[Any]], np.ndarray] | None = None
    #: Columns handed over still encoded (decoded on the GPU).
    raw_columns: frozenset[str] = field(default_factory=frozenset)


def default_collate(rows: Sequence[dict[str, Any]]) -> Batch:
    """Rows -> batch: stack arrays of one shape, else keep a list."""
    out: Batch = {}
    for k in rows[0] if rows else ():
        vals = [r[k] for r in rows]
        if (
            all(isinstance(v, np.ndarray | np.generic) for v in vals)
            and len({np.shape(v) for v in vals}) == 1
        ):
            out[k] = np.stack(vals)
        else:
            out[k] = vals
    return out


__all__ = ["Batch", "BatchHooks", "Loader", "OutputFormat", "default_collate"]
