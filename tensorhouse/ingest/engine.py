"""The ingestion engine shared by every source: batching, idempotent commits, progress.

A source describes its input as an ordered sequence of planned batches. The
engine loads them on a loader thread (files read and checked on a thread
pool), writes each batch's chunks on writer threads (``WRITE_AHEAD`` batches
at a time), and commits the batches strictly in order on the calling thread,
each as one commit with ``app_id=f"ingest:{fingerprint}"`` and
``txn_version=batch_index``. Reading, encoding + fsync, and committing thus
overlap, while memory stays bounded by a few batches.

The commit log keeps the highest committed ``txn_version`` per app id, and
no batch commits before the ones ahead of it, so a re-run after a crash or
Ctrl-C skips every batch up to that number (file sources do not even read
them) and never commits a row twice. On Ctrl-C, batches written but not yet
committed are dropped; after any other failure, the batches before the
failing one are committed first.

The fingerprint identifies the source (the sorted list of its files with
their sizes, an annotation file's digest, ...), so a changed source gets a
fresh app id instead of silently skipping rows. The batch limits are part of
the app id too: re-running the same source with other limits is refused
(batch ``i`` would be other rows), not taken for a new source.

Example:
    >>> from tensorhouse.ingest.engine import Loaded, PlannedBatch, run_batches
    >>> import tensorhouse as th
    >>> plan = [PlannedBatch(lambda pool, i=i: Loaded({"x": [i, i]}, rows=2, nbytes=16), rows=2) for i in range(3)]
    >>> report = run_batches("memory://doc-engine", th.Schema.of({"x": "int64"}), plan, kind="demo",
    ...                      fingerprint="f00d", batching=(2, 1 << 20), progress=False)
    >>> report.rows, report.batches_committed, report.version
    (6, 3, 3)
    >>> run_batches("memory://doc-engine", th.Schema.of({"x": "int64"}), plan, kind="demo",
    ...             fingerprint="f00d", batching=(2, 1 << 20), progress=False).batches_skipped
    3
"""

from __future__ import annotations

import hashlib
import logging
import os
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tensorhouse.errors import (
    DatasetExistsError,
    DatasetNotFoundError,
    SchemaError,
    TensorhouseError,
)
from tensorhouse.format.dataset import Dataset, create
from tensorhouse.format.dataset import open as open_dataset
from tensorhouse.format.transaction import Transaction
from tensorhouse.types import Schema

log = logging.getLogger("tensorhouse.ingest")

#: Default batch limits: one commit per this many rows or source bytes, whichever comes first.
BATCH_ROWS = 1024
BATCH_BYTES = 64 << 20
#: How many skipped items are named one by one (in the log and the report); the rest are counted.
MAX_NAMED_SKIPS = 100
_LOGGED_SKIPS = 10
#: Batches whose chunks are being written while earlier ones commit. Writing a
#: batch (validate, pack, checksum, write + fsync its chunks) is most of the
#: time; commits are small log entries and must land in batch order.
WRITE_AHEAD = 2


class IngestError(TensorhouseError, ValueError):
    """A source cannot be ingested: a malformed annotation file, an unreadable item under ``strict=True``."""


class IngestInterrupted(KeyboardInterrupt):
    """Ctrl-C during an ingest: every batch committed so far stays; re-running resumes after it.

    A ``KeyboardInterrupt``, so ``except KeyboardInterrupt`` keeps working; it
    carries the dataset's version at the interrupt and the partial report.
    """

    def __init__(self, version: int | None, report: IngestReport) -> None:
        super().__init__(f"interrupted: dataset at version {version}; re-run to resume")
        self.version = version
        self.report = report


@dataclass(frozen=True)
class IngestReport:
    """What one ingest run did.

    ``rows``/``bytes`` count what this run appended (source bytes read), not
    rows committed by an earlier, interrupted run; those batches are counted
    in ``batches_skipped``. ``skipped`` counts unreadable or corrupt items left
    out, the first ``MAX_NAMED_SKIPS`` of them named in ``skipped_items``.
    """

    uri: str
    source: str
    rows: int
    skipped: int
    bytes: int
    seconds: float
    version: int
    batches_committed: int
    batches_skipped: int
    skipped_items: tuple[str, ...] = field(default=())

    @property
    def rows_per_second(self) -> float:
        return self.rows / self.seconds if self.seconds > 0 else 0.0

    @property
    def mb_per_second(self) -> float:
        return self.bytes / self.seconds / 1e6 if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "uri": self.uri,
            "source": self.source,
            "rows": self.rows,
            "skipped": self.skipped,
            "bytes": self.bytes,
            "seconds": self.seconds,
            "version": self.version,
            "batches_committed": self.batches_committed,
            "batches_skipped": self.batches_skipped,
            "skipped_items": list(self.skipped_items),
        }

    def __str__(self) -> str:
        lines = [
            f"ingested {self.rows:,} rows ({self.bytes / 1e6:,.1f} MB) from {self.source} into {self.uri} in "
            f"{self.seconds:.2f} s ({self.rows_per_second:,.0f} rows/s, {self.mb_per_second:,.1f} MB/s)",
            f"batches: {self.batches_committed} committed, {self.batches_skipped} already committed earlier; "
            f"dataset at version {self.version}",
        ]
        if self.skipped:
            lines.append(f"skipped {self.skipped} unreadable item(s):")
            lines += [f"  {s}" for s in self.skipped_items[:20]]
            if self.skipped > 20:
                lines.append(f"  ... and {self.skipped - 20} more")
        return "\n".join(lines)


@dataclass
class Loaded:
    """One batch, read and validated: column -> values for ``Dataset.append``.

    ``skipped`` lists ``"item: reason"`` for items left out of ``columns``.
    """

    columns: Mapping[str, Any]
    rows: int
    nbytes: int
    skipped: list[str] = field(default_factory=list)
    #: For a batch whose images were passed on unchecked (the format checks every header
    #: anyway): the same batch with each item checked, called only if the format refuses one.
    recheck: Callable[[], Loaded] | None = None


@dataclass(frozen=True)
class PlannedBatch:
    """A batch the engine will load (on its loader thread) unless an earlier run committed it.

    ``load`` gets the engine's thread pool for parallel reads. ``rows`` is the
    expected row count when known up front (for the progress bar).
    """

    load: Callable[[ThreadPoolExecutor], Loaded]
    rows: int | None = None


def fingerprint(*parts: Any) -> str:
    """A short stable digest of what defines a source's batches (``repr`` of each part)."""
    h = hashlib.sha256()
    for p in parts:
        h.update(repr(p).encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()[:24]


def default_workers() -> int:
    """Threads for reading and validating files: I/O waits and GIL-free header parsing overlap."""
    return min(32, max(4, 2 * (os.cpu_count() or 2)))


def check_batch_limits(batch_rows: int, batch_bytes: int) -> None:
    if batch_rows <= 0:
        raise ValueError(f"batch_rows must be positive, got {batch_rows}")
    if batch_bytes <= 0:
        raise ValueError(f"batch_bytes must be positive, got {batch_bytes}")


def open_or_create(
    uri: str, schema: Schema, *, storage_options: Mapping[str, Any] | None = None
) -> Dataset:
    """The dataset at ``uri``, created with ``schema`` when there is none; its schema must equal ``schema``."""
    try:
        ds = open_dataset(uri, storage_options=storage_options)
    except DatasetNotFoundError:
        try:
            return create(uri, schema, storage_options=storage_options)
        except DatasetExistsError:  # another ingest created it meanwhile
            ds = open_dataset(uri, storage_options=storage_options)
    if ds.schema != schema:
        raise DatasetExistsError(
            f"the dataset at {uri} has schema {ds.schema}, but this source gives {schema}; "
            "ingest into a new URI (or one created with the same schema)"
        )
    return ds


class _Progress:
    """A tqdm bar counting rows, with MB/s and skips in its postfix; silent when disabled."""

    def __init__(self, enabled: bool, total: int | None, desc: str) -> None:
        self.bar: Any = None
        if enabled:
            from tqdm import tqdm

            self.bar = tqdm(
                total=total,
                desc=desc,
                unit="row",
                unit_scale=True,
                dynamic_ncols=True,
                file=sys.stderr,
            )
        self.t0 = time.perf_counter()

    def update(self, rows: int, nbytes: int, skipped: int) -> None:
        if self.bar is None:
            return
        dt = max(time.perf_counter() - self.t0, 1e-9)
        post = f"{nbytes / dt / 1e6:,.1f} MB/s"
        if skipped:
            post += f", {skipped} skipped"
        self.bar.set_postfix_str(post, refresh=False)
        self.bar.update(rows)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def progress_enabled(progress: bool | None) -> bool:
    """``None`` means: show the bar when stderr is a terminal."""
    return sys.stderr.isatty() if progress is None else bool(progress)


_END = object()


class _Loader:
    """Loads planned batches on a background thread, at most ``depth`` ahead of the committer."""

    def __init__(
        self, plan: Iterable[PlannedBatch], done: int, pool: ThreadPoolExecutor, depth: int = 1
    ) -> None:
        self.queue: queue.Queue[Any] = queue.Queue(maxsize=depth)
        self.stop = threading.Event()
        self.thread = threading.Thread(
            target=self._run, args=(plan, done, pool), daemon=True, name="tensorhouse-ingest-loader"
        )
        self.thread.start()

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def _run(self, plan: Iterable[PlannedBatch], done: int, pool: ThreadPoolExecutor) -> None:
        try:
            for i, pb in enumerate(plan):
                if self.stop.is_set():
                    return
                # Batches up to `done` are committed: never read them again.
                item = (i, pb, None) if i <= done else (i, pb, pb.load(pool))
                if not self._put(item):
                    return
            self._put(_END)
        except BaseException as err:  # handed to the committer, which raises it
            self._put(err)

    def __iter__(self) -> Any:
        while True:
            item = self.queue.get()
            if item is _END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self.stop.set()


class _Run:
    """The state of one ingest run: counters, the progress bar, batches written but not yet committed."""

    def __init__(self, ds: Dataset, kind: str, app_id: str, strict: bool, bar: _Progress) -> None:
        self.ds, self.kind, self.app_id, self.strict, self.bar = ds, kind, app_id, strict, bar
        self.t0 = time.perf_counter()
        self.rows = self.nbytes = self.committed = self.already = self.skip_count = 0
        self.skipped: list[str] = []
        self.inflight: deque[tuple[int, Future[tuple[Transaction | None, Loaded]]]] = deque()
        self.commit_failed = False

    def report(self) -> IngestReport:
        return IngestReport(
            self.ds.uri,
            self.kind,
            self.rows,
            self.skip_count,
            self.nbytes,
            time.perf_counter() - self.t0,
            self.ds.version,
            self.committed,
            self.already,
            tuple(self.skipped),
        )

    def write(self, i: int, loaded: Loaded) -> tuple[Transaction | None, Loaded]:
        """Encode and upload batch ``i``'s chunks (runs on the writer thread); the commit comes later, in order."""
        tx = self.ds.transaction(
            message=f"ingest {self.kind} batch {i}", app_id=self.app_id, txn_version=i
        )
        try:
            if loaded.rows:
                tx.append(loaded.columns)
        except SchemaError as err:
            if loaded.recheck is None:
                raise SchemaError(f"{err} (in ingest batch {i})") from err
            # The format refused an item the loader passed unchecked: find it, leave it out, write again.
            loaded = loaded.recheck()
            tx = self.ds.transaction(message=tx.message, app_id=self.app_id, txn_version=i)
            if loaded.rows:
                tx.append(loaded.columns)
        return (tx if loaded.rows else None), loaded

    def note_skips(self, loaded: Loaded) -> None:
        for s in loaded.skipped:
            if self.strict:
                raise IngestError(f"unreadable item (strict=True): {s}")
            if self.skip_count < _LOGGED_SKIPS:
                log.warning("skipped %s", s)
            elif self.skip_count == _LOGGED_SKIPS:
                log.warning("skipping more unreadable items; the report counts them all")
            if len(self.skipped) < MAX_NAMED_SKIPS:
                self.skipped.append(s)
            self.skip_count += 1

    def commit_oldest(self) -> None:
        """Commit the oldest written batch. After a failure here nothing later may commit (order is the contract)."""
        try:
            _i, fut = self.inflight.popleft()
            tx, loaded = fut.result()
            self.note_skips(loaded)
            if tx is not None:
                tx.commit()
                self.committed += 1
        except BaseException:
            self.commit_failed = True
            raise
        self.rows += loaded.rows
        self.nbytes += loaded.nbytes
        self.bar.update(loaded.rows, self.nbytes, self.skip_count)


def run_batches(
    uri: str,
    schema: Schema,
    plan: Iterable[PlannedBatch],
    *,
    kind: str,
    fingerprint: str,
    batching: tuple[int, int],
    strict: bool = False,
    progress: bool | None = None,
    total_rows: int | None = None,
    workers: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> IngestReport:
    """Commit ``plan``'s batches into ``uri`` (created with ``schema`` if missing), exactly once each, in order.

    Raises IngestError for an unreadable item under ``strict``; IngestInterrupted
    on Ctrl-C (the dataset stays at its last commit).
    """
    ds = open_or_create(uri, schema, storage_options=storage_options)
    limit_rows, limit_bytes = batching
    # The batch limits are part of the id, in plain text: batch i of other limits is other rows,
    # and a re-run with other limits must be refused, not counted as a new source (it would
    # append every row again).
    app_id = f"ingest:{fingerprint}:rows={limit_rows}:bytes={limit_bytes}"
    other = sorted(
        k for k in ds.snapshot.txns if k.startswith(f"ingest:{fingerprint}:") and k != app_id
    )
    if other:
        found = other[0].split(":")[2:]
        raise IngestError(
            f"{ds.uri}: this {kind} source was ingested (at least in part) with other batch limits "
            f"({', '.join(found)}); re-run with those (batch_rows=..., batch_bytes=...) to resume, or "
            "ingest into a new dataset"
        )
    done = ds.snapshot.txns.get(app_id, -1)
    if done >= 0:
        log.info("%s: resuming %s ingest after batch %d (committed earlier)", ds.uri, kind, done)
    run = _Run(
        ds,
        kind,
        app_id,
        strict,
        _Progress(progress_enabled(progress), total_rows, f"ingest {kind}"),
    )
    pool = ThreadPoolExecutor(
        max_workers=workers or default_workers(), thread_name_prefix="tensorhouse-ingest"
    )
    writer = ThreadPoolExecutor(
        max_workers=max(1, WRITE_AHEAD), thread_name_prefix="tensorhouse-ingest-write"
    )
    loader = _Loader(plan, done, pool)
    try:
        try:
            for i, pb, loaded in loader:
                if loaded is None:
                    run.already += 1
                    run.bar.update(pb.rows or 0, run.nbytes, run.skip_count)
                    continue
                run.inflight.append((i, writer.submit(run.write, i, loaded)))
                while len(run.inflight) > WRITE_AHEAD:
                    run.commit_oldest()
        except Exception:
            # A batch failed to load: the ones before it are sound, commit them so a re-run has less to do.
            while run.inflight and not run.commit_failed:
                run.commit_oldest()
            raise
        while run.inflight:
            run.commit_oldest()
    except KeyboardInterrupt as err:
        # Batches written but not committed are dropped: Ctrl-C stops now (vacuum removes their files).
        try:  # the interrupt may have landed between a commit and the snapshot update
            version = ds.refresh().version
        except Exception:
            version = ds.version
        raise IngestInterrupted(version, run.report()) from err
    finally:
        loader.close()
        pool.shutdown(wait=False, cancel_futures=True)
        writer.shutdown(wait=False, cancel_futures=True)
        run.bar.close()
    if run.skip_count > _LOGGED_SKIPS:
        log.warning("%s: skipped %d unreadable item(s) of %s in all", ds.uri, run.skip_count, kind)
    return run.report()


__all__ = [
    "BATCH_BYTES",
    "BATCH_ROWS",
    "IngestError",
    "IngestInterrupted",
    "IngestReport",
    "Loaded",
    "PlannedBatch",
    "fingerprint",
    "open_or_create",
    "run_batches",
]
