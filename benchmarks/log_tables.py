"""Builders of the N-commit tables that ``bench_log.py`` measures, fast enough for 100,000 commits.

Each table holds N commits that each append one row (``id`` int64, ``value`` float32).

* **tensorhouse**: N real ``ds.append`` calls, the public commit path, checkpoints
  included (above 10,000 commits, old checkpoints are pruned as they go: see
  :func:`prune_checkpoints`). The table is built on a RAM file system (``/dev/shm``) when there is
  one, where ``fsync`` costs nothing, then copied to its cache directory: the
  files are the same bytes a build on disk would write (about 2 ms a commit
  instead of 15 ms).
* **deltalake**: version 0 (create) and 1 (the first append) are written by
  delta-rs; every later commit is written in the exact form delta-rs gave
  version 1 (a ``commitInfo`` and an ``add`` action, the data file a real 1-row
  Parquet file), and delta-rs itself writes the checkpoints at the versions its
  post-commit hook would (every version ``v`` with ``v % 100 == 99``; above
  10,000 commits only those the measured reads use, see
  :func:`delta_checkpoint_versions`). A real
  delta-rs append costs 50-100 ms here, so 10,000 commits would take 15 minutes.
* **Lance**: real ``lance.write_dataset(..., mode="append")`` commits up to
  ``LANCE_REAL_MAX`` commits. Every Lance version is a full manifest (about
  80 bytes a fragment), so N single-row commits write O(N^2) bytes: 4 GB at
  10,000, 400 GB at 100,000. Above that, the N one-row fragments are written
  by one ``write_fragments`` call and committed in batches of
  ``LANCE_BATCH`` fragments: the newest manifest (what opening reads) is the
  same, the table has N / ``LANCE_BATCH`` versions instead of N.

``tests/test_log_bench_tables.py`` checks each fast path against real commits
at a small N.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

SCHEMA = pa.schema([("id", pa.int64()), ("value", pa.float32())])
#: Above this many commits, Lance tables are built in batches (see the module docstring).
LANCE_REAL_MAX = 10_000
LANCE_BATCH = 1_000
#: delta-rs's post-commit hook checkpoints every version v with (v + 1) % interval == 0.
DELTA_CHECKPOINT_INTERVAL = 100
#: Up to this many commits, the fast Delta build checkpoints every 100 versions as the hook does.
DELTA_ALL_CHECKPOINTS_MAX = ALL_CHECKPOINTS_MAX = 10_000
#: Milliseconds between the synthetic Delta commits' timestamps.
DELTA_STEP_MS = 2

Progress = Callable[[int, int], None]


def one_row(i: int) -> pa.Table:
    return pa.table(
        {"id": pa.array([i], pa.int64()), "value": pa.array([i * 0.5], pa.float32())}, schema=SCHEMA
    )


def th_row(i: int) -> dict[str, np.ndarray]:
    return {"id": np.array([i], np.int64), "value": np.array([i * 0.5], np.float32)}


def _nothing(done: int, n: int) -> None:
    pass


# -- tensorhouse --------------------------------------------------------------------
def build_tensorhouse(path: str, n: int, *, progress: Progress = _nothing) -> None:
    """N real one-row appends (public API), built on /dev/shm when present and copied to ``path``."""
    import tensorhouse as th

    ram = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
    work = tempfile.mkdtemp(prefix="th-log-build-", dir=ram)
    try:
        where = os.path.join(work, "t") if ram else path
        ds = th.create(where, {"id": "int64", "value": "float32"})
        for i in range(n):
            ds.append(th_row(i))
            progress(i + 1, n)
            if n > ALL_CHECKPOINTS_MAX and (i + 1) % 1000 == 0:
                prune_checkpoints(Path(where) / "_log", ".checkpoint")
        if ram:
            shutil.copytree(where, path, copy_function=shutil.copy2)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def prune_checkpoints(log_dir: Path, suffix: str) -> None:
    """Delete the checkpoints but every 10,000th and the newest 5: above 10,000 commits they add up to O(N^2).

    A checkpoint of f fragments is O(f) bytes, so a checkpoint every 100 commits
    of a 100,000-commit table adds up to 15 GB (tensorhouse; Delta's alike).
    Checkpoints only speed reads up, and the benchmark reads from the newest one
    and from the one at the middle version (a multiple of 10,000), so both
    tables keep the same sparse set (see :func:`delta_checkpoint_versions`).
    """
    versions = sorted(int(f.name[:20]) for f in log_dir.iterdir() if f.name.endswith(suffix))
    for v in versions[:-5]:
        if v % 10_000:
            (log_dir / f"{v:020d}{suffix}").unlink(missing_ok=True)


# -- deltalake ------------------------------------------------------------------------
def build_delta_real(path: str, n: int, *, progress: Progress = _nothing) -> None:
    """N real delta-rs appends (what the fast builder must match)."""
    from deltalake import DeltaTable, write_deltalake

    dt = DeltaTable.create(path, SCHEMA)
    for i in range(n):
        write_deltalake(dt, one_row(i), mode="append")
        progress(i + 1, n)


def build_delta(path: str, n: int, *, progress: Progress = _nothing) -> None:
    """Delta table of N one-row appends: versions 0-1 by delta-rs, the rest in its exact entry form."""
    from deltalake import DeltaTable, write_deltalake

    dt = DeltaTable.create(path, SCHEMA)
    if n == 0:
        return
    write_deltalake(dt, one_row(0), mode="append")
    progress(1, n)
    log_dir = Path(path) / "_delta_log"
    lines = [json.loads(x) for x in (log_dir / f"{1:020d}.json").read_text().splitlines()]
    info = next(x["commitInfo"] for x in lines if "commitInfo" in x)
    add = next(x["add"] for x in lines if "add" in x)
    if len(lines) != 2:
        raise RuntimeError(f"delta-rs wrote {len(lines)} actions for one append; expected 2")
    t0 = int(info["timestamp"])
    checkpoints = delta_checkpoint_versions(n)
    for i in range(1, n):
        v = i + 1
        ts = t0 + i * DELTA_STEP_MS
        name = f"part-00000-{uuid.uuid4()}-c000.snappy.parquet"
        pq.write_table(one_row(i), Path(path) / name, compression="snappy")
        stats = {
            "numRecords": 1,
            "minValues": {"id": i, "value": i * 0.5},
            "maxValues": {"id": i, "value": i * 0.5},
            "nullCount": {"id": 0, "value": 0},
        }
        entry = [
            {"commitInfo": {**info, "timestamp": ts}},
            {
                "add": {
                    **add,
                    "path": name,
                    "size": os.path.getsize(Path(path) / name),
                    "modificationTime": ts,
                    "stats": json.dumps(stats, separators=(",", ":")),
                }
            },
        ]
        key = log_dir / f"{v:020d}.json"
        key.write_text("\n".join(json.dumps(x, separators=(",", ":")) for x in entry) + "\n")
        # The file's modification time is the commit time, as for a real commit.
        os.utime(key, ns=(ts * 1_000_000, ts * 1_000_000))
        if v in checkpoints:
            # A fresh load reads the previous checkpoint and 100 entries (update_incremental on a
            # long-lived handle was 20x slower here).
            DeltaTable(path).create_checkpoint()
        progress(i + 1, n)
    dt = DeltaTable(path)
    if dt.version() != n:
        raise RuntimeError(f"delta build ended at version {dt.version()}, expected {n}")


def delta_checkpoint_versions(n: int) -> set[int]:
    """The versions the fast Delta build checkpoints (the hook's, sparser above ``DELTA_ALL_CHECKPOINTS_MAX``).

    Each delta-rs checkpoint of a table of f files costs O(f) (about 0.4 s at
    10,000 files here), so checkpointing every 100 of 100,000 versions would take
    hours. Above the limit, checkpoints are written every 10,000 versions and at
    the hook's versions that the benchmark's reads start from: the newest one
    and the one below the middle version (time travel by timestamp).
    """
    k = DELTA_CHECKPOINT_INTERVAL
    every = {v for v in range(k - 1, n + 1, k)}
    if n <= DELTA_ALL_CHECKPOINTS_MAX:
        return every
    return {
        v
        for v in every
        if (v + 1) % 10_000 == 0 or v == max(every) or v == max(x for x in every if x <= n // 2)
    }


# -- Lance ------------------------------------------------------------------------------
def build_lance_real(path: str, n: int, *, progress: Progress = _nothing) -> None:
    import lance

    ds = lance.write_dataset(SCHEMA.empty_table(), path)
    for i in range(n):
        ds = lance.write_dataset(one_row(i), ds, mode="append")
        progress(i + 1, n)


def build_lance_batched(
    path: str, n: int, *, batch: int = LANCE_BATCH, progress: Progress = _nothing
) -> None:
    """N one-row fragments (one write), committed ``batch`` fragments per version."""
    import lance
    from lance.fragment import write_fragments

    ds = lance.write_dataset(SCHEMA.empty_table(), path)
    ids = np.arange(n, dtype=np.int64)
    table = pa.table({"id": ids, "value": (ids * 0.5).astype(np.float32)}, schema=SCHEMA)
    frags = write_fragments(table, path, max_rows_per_file=1)
    if len(frags) != n:
        raise RuntimeError(f"lance wrote {len(frags)} fragments for {n} rows")
    for j in range(0, n, batch):
        ds = lance.LanceDataset.commit(
            path, lance.LanceOperation.Append(frags[j : j + batch]), read_version=ds.version
        )
        progress(min(j + batch, n), n)


def build_lance(path: str, n: int, *, progress: Progress = _nothing) -> None:
    if n <= LANCE_REAL_MAX:
        build_lance_real(path, n, progress=progress)
    else:
        build_lance_batched(path, n, progress=progress)


def lance_versions_per_commit(n: int) -> int:
    """How many one-row appends one Lance version of the N-row table holds (1 unless batched)."""
    return 1 if n <= LANCE_REAL_MAX else LANCE_BATCH


BUILDERS: dict[str, Callable[..., None]] = {
    "tensorhouse": build_tensorhouse,
    "deltalake": build_delta,
    "lance": build_lance,
}


def timed(fn: Callable[[], None]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0
