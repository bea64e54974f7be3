"""Commit-log benchmark: opening, committing and time travel on a table of N small commits.

For each system (tensorhouse, deltalake, Lance) a table is built with N
commits that each append one row (an int64 ``id`` and a float32 ``value``).
Then, side by side in one run (warm page cache, medians over repeats):

1. open the latest version (fresh objects every repeat):
   tensorhouse ``th.open(path)`` + ``len(ds)``; deltalake ``DeltaTable(path)``
   + ``version()`` + the file list; Lance ``lance.dataset(path)`` + ``count_rows()``;
   and the storage operations of one tensorhouse open (lists, gets);
2. the latency of one 1-row append commit, on an open handle and from the path
   (deltalake ``write_deltalake(path, t, mode="append")``, Lance
   ``lance.write_dataset(t, path, mode="append")``, tensorhouse
   ``th.open(path).append(...)``);
3. the same "open latest" with the most log entries a reader can have to
   replay after the newest checkpoint (the worst case between checkpoints);
4. time travel to the first append (tensorhouse and deltalake version 1,
   Lance version 2: Lance numbers its empty create as version 1).

The opens of (1) and (3) are timed interleaved: one call of each system per
round, so a burst of background work on this 2-core machine hits them alike;
the cold columns there are timed in fresh processes of their own (three
each, alternating systems), and deltalake on its own (see time_interleaved).

Columns: ``tensorhouse`` and ``lance`` reopen in one process, so their
in-process caches (tensorhouse's log cache, Lance's session) are warm;
``tensorhouse-cold`` and ``lance-cold`` empty them before every open, as a new
process would. deltalake keeps nothing between opens.

The N-commit tables are built once by ``log_tables.py`` (real tensorhouse
appends on /dev/shm; Delta entries in delta-rs's own form with delta-rs
checkpoints; Lance batched above 10,000 commits: see its docstring) and cached
under ``benchmarks/_data/log_<system>_<N>/`` (gitignored). The appends of (2)
and (3) go to a hard-linked scratch copy, so the cached tables stay at exactly
N commits.

Run:
    .venv/bin/python benchmarks/bench_log.py                 # N = 1,000 and 10,000 (builds: ~3 minutes once)
    .venv/bin/python benchmarks/bench_log.py --sizes 1000,10000,100000   # 100,000: ~15 minutes of builds once
    .venv/bin/python benchmarks/bench_log.py --build-only --sizes 100000 # build the tables, measure nothing
    .venv/bin/python benchmarks/bench_log.py --smoke         # N = 200, < 1 minute
    .venv/bin/python benchmarks/bench_log.py --rebuild       # rebuild the cached tables
    .venv/bin/python benchmarks/bench_log.py --profile       # cProfile tensorhouse even where it wins
"""

from __future__ import annotations

import argparse
import atexit
import cProfile
import io
import json
import os
import platform
import pstats
import random
import shutil
import signal
import statistics
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import deltalake  # noqa: E402
import lance  # noqa: E402
import log_tables  # noqa: E402
from deltalake import DeltaTable, write_deltalake  # noqa: E402

import tensorhouse as th  # noqa: E402
import tensorhouse.format.dataset as th_dataset  # noqa: E402
from tensorhouse.format.log import cache as log_cache  # noqa: E402
from tensorhouse.format.log import log as th_log  # noqa: E402
from tensorhouse.storage import LocalStore  # noqa: E402

#: Where the built tables are cached (gitignored: ``/benchmarks/_data/``).
DATA_DIR = ROOT / "benchmarks" / "_data"
#: Bump when the way tables are built changes, so stale caches are rebuilt.
#: Per system: tensorhouse 3 = columnar checkpoints with an xxh3 header and format 3 entries.
#: 4/3/3: the fast builders of log_tables.py (tensorhouse on /dev/shm, Delta entries in delta-rs's form,
#: Lance batched above 10,000 commits). tensorhouse 5: group files and today's chunk type in checkpoints
#: (a table of format 4 opened through the upgrade of pre-group checkpoints: not what a new table pays).
BUILD_FORMAT = {"tensorhouse": 5, "deltalake": 3, "lance": 3}

SYSTEMS = ("tensorhouse", "tensorhouse-cold", "deltalake", "lance", "lance-cold")
#: The "-cold" columns open as a fresh process would: the in-process cache emptied before every open.
COLD = {"tensorhouse-cold": "tensorhouse", "lance-cold": "lance"}
#: Systems whose calls leave work running in the background (delta-rs's runtime threads): timed
#: alone, not interleaved with the others (see time_interleaved).
ALONE = {"deltalake"}
REFERENCE = "tensorhouse"
SCHEMA = pa.schema([("id", pa.int64()), ("value", pa.float32())])


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


one_row = log_tables.one_row
th_row = log_tables.th_row


# -- timing -------------------------------------------------------------------------
@dataclass
class Timing:
    """Seconds of each repeat; the median is what we report."""

    times: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.times)


#: A measurement stops repeating after this many seconds (at least 3 repeats): some peers take
#: seconds per call at 10,000 commits (Lance's open by timestamp reads its manifests).
BUDGET_S = 30.0


def time_repeat(fn: Callable[[], Any], repeats: int, warmup: int = 1) -> Timing:
    t_end = time.perf_counter() + BUDGET_S
    for _ in range(warmup):
        t0 = time.perf_counter()
        fn()
        first = time.perf_counter() - t0
        if first > BUDGET_S / 3:  # minutes for a few repeats: this one call is the measurement
            return Timing([first])
    out: list[float] = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
        if len(out) >= 3 and time.perf_counter() > t_end:
            break
    return Timing(out)


def time_interleaved(fns: dict[str, Callable[[], Any]], repeats: int) -> dict[str, Timing]:
    """Time each of ``fns`` ``repeats`` times: warm columns one call of each per round, shuffled; cold ones apart.

    On a noisy 2-core machine a burst of background work then hits every
    system alike, instead of whichever one was being measured when it came;
    the order is shuffled (seeded) so that no system always follows the same
    one. Two kinds are kept apart, because a call of theirs slows whatever
    runs next in the process (their runtime threads keep working after it
    returns; right after a deltalake call other systems measured up to 1.6x
    slower):

    - deltalake (``ALONE``) is timed on its own, after the others;
    - a cold column is timed in fresh processes of its own (:func:`time_cold`):
      "cold" is what a new process pays, and there no other library's threads run.
    """
    rng = random.Random(0)
    names = [
        name
        for name in fns
        if name not in COLD and name.split("+")[0] not in ALONE and name not in COLD_PATHS
    ]
    for name in names:  # warm up
        fns[name]()
    out: dict[str, list[float]] = {name: [] for name in names}
    for _ in range(repeats):
        rng.shuffle(names)
        for name in names:
            t0 = time.perf_counter()
            fns[name]()
            out[name].append(time.perf_counter() - t0)
    timings = {name: Timing(ts) for name, ts in out.items()}
    cold = {name: COLD_PATHS[name] for name in fns if name in COLD_PATHS}
    timings.update(time_cold(cold, repeats))
    for name in fns:
        if name not in timings:
            timings[name] = time_repeat(fns[name], repeats)
    return timings


#: Cold columns timed in their own processes: name -> the table path, set by the caller of time_interleaved.
COLD_PATHS: dict[str, str] = {}


def time_cold(paths: dict[str, str], repeats: int, rounds: int = 3) -> dict[str, Timing]:
    """Open latest of each cold column ``repeats`` times in each of ``rounds`` fresh processes (alternating systems)."""
    import subprocess

    out: dict[str, list[float]] = {name: [] for name in paths}
    names = list(paths)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            done = subprocess.run(
                [sys.executable, __file__, "--cold-worker", name, paths[name], str(repeats)],
                check=True,
                capture_output=True,
                text=True,
            )
            out[name] += json.loads(done.stdout.strip().splitlines()[-1])
    return {name: Timing(ts) for name, ts in out.items()}


def cold_worker(name: str, path: str, repeats: int) -> None:
    """In a fresh process: ``repeats`` cold opens of ``path`` by column ``name``, as JSON seconds.

    After 5 untimed ones: the first calls in a process pay one-time costs
    (lazy imports, first-call setup) that are not an open's.
    """
    sysm = ALL[name]
    for _ in range(5):
        sysm.open_latest(path)
    ts = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        sysm.open_latest(path)
        ts.append(time.perf_counter() - t0)
    print(json.dumps(ts))


@dataclass
class Row:
    name: str
    timings: dict[str, Timing] = field(default_factory=dict)
    #: (system -> seconds) for rows that are not medians of repeats (the build).
    fixed: dict[str, float] = field(default_factory=dict)

    def seconds(self, system: str) -> float | None:
        if system in self.timings:
            return self.timings[system].median
        return self.fixed.get(system)


def markdown(rows: list[Row], systems: list[str]) -> str:
    peers = [s for s in systems if s != REFERENCE]
    head = ["measurement", *(f"{s} (ms)" for s in systems), *(f"{p} / {REFERENCE}" for p in peers)]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r in rows:
        cells = []
        for s in systems:
            v = r.seconds(s)
            cells.append("-" if v is None else f"{v * 1e3:.2f}")
        ref = r.seconds(REFERENCE)
        for p in peers:
            v = r.seconds(p)
            cells.append("-" if v is None or not ref else f"{v / ref:.2f}x")
        lines.append("| " + " | ".join([r.name, *cells]) + " |")
    return "\n".join(lines)


# -- counting tensorhouse's storage operations --------------------------------------
class CountingStore(LocalStore):
    """A LocalStore that counts its calls (thread-safe: entries are read in a pool)."""

    def __init__(self, root: str) -> None:
        super().__init__(root)
        self.ops: dict[str, int] = {}
        self._lock = threading.Lock()

    def _count(self, op: str) -> None:
        with self._lock:
            self.ops[op] = self.ops.get(op, 0) + 1

    def get(self, key):  # type: ignore[no-untyped-def]
        self._count("get")
        return super().get(key)

    def get_bounded(self, key, limit):  # type: ignore[no-untyped-def]
        self._count("get")  # one open and read of a whole small file (its size comes with it)
        return super().get_bounded(key, limit)

    def get_range(self, key, start, length):  # type: ignore[no-untyped-def]
        self._count("get_range")
        return LocalStore.get_ranges(self, key, [(start, length)])[0]

    def get_ranges(self, key, ranges):  # type: ignore[no-untyped-def]
        self._count("get_ranges")
        return super().get_ranges(key, ranges)

    def list(self, prefix=""):  # type: ignore[no-untyped-def]
        self._count("list")
        return super().list(prefix)

    def list_keys(self, prefix=""):  # type: ignore[no-untyped-def]
        self._count("list")
        return super().list_keys(prefix)

    def exists(self, key):  # type: ignore[no-untyped-def]
        self._count("exists")
        return super().exists(key)

    def size(self, key):  # type: ignore[no-untyped-def]
        self._count("size")
        return super().size(key)

    def put(self, key, data):  # type: ignore[no-untyped-def]
        self._count("put")
        return super().put(key, data)

    def put_if_absent(self, key, data):  # type: ignore[no-untyped-def]
        self._count("put_if_absent")
        return super().put_if_absent(key, data)

    def delete(self, key):  # type: ignore[no-untyped-def]
        self._count("delete")
        return super().delete(key)


def count_th_ops(fn: Callable[[], Any]) -> dict[str, int]:
    """Run ``fn`` with tensorhouse's ``open_store`` returning a CountingStore; the ops it made."""
    stores: list[CountingStore] = []
    original = th_dataset.open_store

    def counting_open_store(uri: str, storage_options: Any = None, **kw: Any) -> Any:
        store = original(uri, storage_options, **kw)
        if not isinstance(store, LocalStore):
            return store
        cs = CountingStore(store.uri)
        stores.append(cs)
        return cs

    th_dataset.open_store = counting_open_store  # type: ignore[assignment]
    try:
        fn()
    finally:
        th_dataset.open_store = original  # type: ignore[assignment]
    total: dict[str, int] = {}
    for s in stores:
        for k, v in s.ops.items():
            total[k] = total.get(k, 0) + v
    return total


def fmt_ops(ops: dict[str, int]) -> str:
    lists = ops.get("list", 0)
    gets = ops.get("get", 0) + ops.get("get_range", 0) + ops.get("get_ranges", 0)
    rest = {k: v for k, v in ops.items() if k not in ("list", "get", "get_range", "get_ranges")}
    s = f"{lists} list + {gets} gets"
    if rest:
        s += " + " + ", ".join(f"{v} {k}" for k, v in sorted(rest.items()))
    return s


# -- profiling tensorhouse ----------------------------------------------------------
def profile_th(label: str, fn: Callable[[], Any], repeats: int = 5, top: int = 18) -> str:
    """cProfile ``fn`` (``repeats`` calls), including the work it hands to thread pools.

    cProfile sees only the thread that enabled it, so every task a
    ``concurrent.futures`` pool thread runs meanwhile (tensorhouse's log reads,
    chunk writes) is profiled on its own and the stats are merged. Shares of
    "all threads" are of the summed time, in which pool-thread time overlaps
    the main thread's waits.
    """
    from concurrent.futures import thread as cf_thread

    main = threading.main_thread()
    worker_profiles: list[cProfile.Profile] = []
    plock = threading.Lock()
    orig_run = cf_thread._WorkItem.run

    def run(self, *a, **kw):  # type: ignore[no-untyped-def]
        if threading.current_thread() is main:
            return orig_run(self, *a, **kw)
        p = cProfile.Profile()
        p.enable()
        try:
            return orig_run(self, *a, **kw)
        finally:
            p.disable()
            with plock:
                worker_profiles.append(p)

    cf_thread._WorkItem.run = run  # type: ignore[method-assign]
    prof = cProfile.Profile()
    t0 = time.perf_counter()
    try:
        prof.enable()
        for _ in range(repeats):
            fn()
        prof.disable()
    finally:
        cf_thread._WorkItem.run = orig_run  # type: ignore[method-assign]
    wall = (time.perf_counter() - t0) / repeats

    main_stats = pstats.Stats(prof)
    main_total = main_stats.total_tt  # type: ignore[attr-defined]
    stats = pstats.Stats(prof)
    for p in worker_profiles:
        stats.add(p)
    raw = stats.stats  # type: ignore[attr-defined]
    main_raw = main_stats.stats  # type: ignore[attr-defined]

    def name(func: tuple[str, int, str]) -> str:
        file, line, fn_name = func
        if file == "~":
            return fn_name
        parts = Path(file).parts
        short = (
            "/".join(parts[parts.index("tensorhouse") :])
            if "tensorhouse" in parts
            else Path(file).name
        )
        return f"{short}:{line}({fn_name})"

    out = io.StringIO()
    worker_tt = sum(p_stats[2] for p_stats in raw.values()) - main_total
    out.write(f"#### profile: tensorhouse {label}\n")
    out.write(
        f"wall {wall * 1e3:.1f} ms per call (profiled, {repeats} calls); main thread {main_total / repeats * 1e3:.1f} ms"
        f"/call; pool threads {max(worker_tt, 0) / repeats * 1e3:.1f} ms/call (overlapping)\n\n"
    )
    out.write("cumulative time, main thread (share of the main thread's time):\n\n")
    out.write("| function | cum ms/call | share |\n|---|---|---|\n")
    by_cum = sorted(main_raw.items(), key=lambda kv: kv[1][3], reverse=True)
    shown = 0
    for func, (_cc, _nc, _tt, ct, _callers) in by_cum:
        nm = name(func)
        if (
            "bench_log.py" in nm
            or nm.startswith("<built-in method builtins.exec")
            or "profile" in nm.lower()
        ):
            continue
        out.write(f"| {nm} | {ct / repeats * 1e3:.2f} | {ct / main_total:.0%} |\n")
        shown += 1
        if shown >= top:
            break
    out.write("\nself time, all threads (share of all profiled time):\n\n")
    out.write("| function | self ms/call | share | calls/call |\n|---|---|---|---|\n")
    all_tt = sum(v[2] for v in raw.values())
    for func, (_cc, nc, tt, _ct, _callers) in sorted(
        raw.items(), key=lambda kv: kv[1][2], reverse=True
    )[:top]:
        out.write(
            f"| {name(func)} | {tt / repeats * 1e3:.2f} | {tt / all_tt:.0%} | {nc / repeats:.0f} |\n"
        )
    return out.getvalue()


# -- the systems --------------------------------------------------------------------
class System:
    name: str
    #: The version that holds the first appended row (time-travel target).
    first_append_version: int

    def open_latest(self, path: str) -> int: ...  # rows
    def open_version(self, path: str, version: int) -> int: ...
    def handle(self, path: str) -> Any: ...
    def append_handle(self, h: Any, i: int) -> Any: ...  # returns the (new) handle
    def append_path(self, path: str, i: int) -> None: ...
    def latest_version(self, path: str) -> int: ...
    def checkpoints(self, path: str) -> list[int]: ...
    def next_worst_version(self, v: int) -> int | None:
        """The smallest version >= v with the most entries after the newest checkpoint (None: no checkpoints)."""
        return None

    def timestamp_of(self, path: str, version: int) -> datetime: ...
    def open_timestamp(self, path: str, ts: datetime) -> int: ...  # rows (or files) of that version
    def history(self, path: str) -> int: ...  # versions listed
    def s3_open_latest(self, uri: str, endpoint: str) -> int: ...


class Tensorhouse(System):
    name = "tensorhouse"
    first_append_version = 1

    def open_latest(self, path: str) -> int:
        return len(th.open(path))

    def open_version(self, path: str, version: int) -> int:
        return len(th.open(path, version=version))

    def handle(self, path: str) -> Any:
        return th.open(path)

    def append_handle(self, h: Any, i: int) -> Any:
        h.append(th_row(i))
        return h

    def append_path(self, path: str, i: int) -> None:
        th.open(path).append(th_row(i))

    def latest_version(self, path: str) -> int:
        return th.open(path).version

    def checkpoints(self, path: str) -> list[int]:
        return sorted(
            int(f[:20]) for f in os.listdir(os.path.join(path, "_log")) if f.endswith(".checkpoint")
        )

    def next_worst_version(self, v: int) -> int | None:
        k = th_log.CHECKPOINT_INTERVAL
        return v + (k - 1 - v % k) % k  # v % k == k - 1: k - 1 entries after the checkpoint

    def timestamp_of(self, path: str, version: int) -> datetime:
        return th.open(path, version=version).history(limit=1)[0].timestamp

    def open_timestamp(self, path: str, ts: datetime) -> int:
        return len(th.open(path, timestamp=ts))

    def history(self, path: str) -> int:
        return len(th.open(path).history())

    def s3_open_latest(self, uri: str, endpoint: str) -> int:
        return len(
            th.open(
                uri,
                storage_options={"endpoint_url": endpoint, "key": "testing", "secret": "testing"},
            )
        )


class TensorhouseCold(Tensorhouse):
    """tensorhouse with its process-wide log cache emptied before every open: what a new process pays."""

    name = "tensorhouse-cold"

    def open_latest(self, path: str) -> int:
        log_cache.clear()
        return super().open_latest(path)

    def open_version(self, path: str, version: int) -> int:
        log_cache.clear()
        return super().open_version(path, version)

    def open_timestamp(self, path: str, ts: datetime) -> int:
        log_cache.clear()
        return super().open_timestamp(path, ts)

    def s3_open_latest(self, uri: str, endpoint: str) -> int:
        log_cache.clear()
        return super().s3_open_latest(uri, endpoint)


class Delta(System):
    name = "deltalake"
    first_append_version = 1

    def open_latest(self, path: str) -> int:
        dt = DeltaTable(path)
        dt.version()
        return len(dt.file_uris())  # one 1-row file per append

    def open_version(self, path: str, version: int) -> int:
        dt = DeltaTable(path, version=version)
        return len(dt.file_uris())

    def handle(self, path: str) -> Any:
        return DeltaTable(path)

    def append_handle(self, h: Any, i: int) -> Any:
        write_deltalake(h, one_row(i), mode="append")
        return h

    def append_path(self, path: str, i: int) -> None:
        write_deltalake(path, one_row(i), mode="append")

    def append_handle_no_cleanup(self, h: Any, i: int) -> None:
        hooks = deltalake.PostCommitHookProperties(
            create_checkpoint=True, cleanup_expired_logs=False
        )
        write_deltalake(h, one_row(i), mode="append", post_commithook_properties=hooks)

    def latest_version(self, path: str) -> int:
        return DeltaTable(path).version()

    def checkpoints(self, path: str) -> list[int]:
        return sorted(
            int(f[:20])
            for f in os.listdir(os.path.join(path, "_delta_log"))
            if f.endswith(".checkpoint.parquet")
        )

    def next_worst_version(self, v: int) -> int | None:
        # delta-rs checkpoints version c when (c + 1) % interval == 0 (observed: 99, 199, ...),
        # so the most entries after a checkpoint is at v % 100 == 98.
        k = 100
        return v + (k - 2 - v % k) % k

    def timestamp_of(self, path: str, version: int) -> datetime:
        with open(os.path.join(path, "_delta_log", f"{version:020d}.json")) as f:
            for line in f:
                info = json.loads(line).get("commitInfo")
                if info is not None:
                    return datetime.fromtimestamp(info["timestamp"] / 1000, UTC)
        raise AssertionError(f"no commitInfo in version {version}")

    def open_timestamp(self, path: str, ts: datetime) -> int:
        dt = DeltaTable(path)
        dt.load_as_version(ts)
        return len(dt.file_uris())

    def history(self, path: str) -> int:
        return len(DeltaTable(path).history())

    def s3_open_latest(self, uri: str, endpoint: str) -> int:
        opts = {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_REGION": "us-east-1",
            "AWS_ALLOW_HTTP": "true",
        }
        dt = DeltaTable(uri, storage_options=opts)
        dt.version()
        return len(dt.file_uris())


class Lance(System):
    name = "lance"
    first_append_version = 2  # version 1 is the empty dataset

    def open_latest(self, path: str) -> int:
        return lance.dataset(path).count_rows()

    def open_version(self, path: str, version: int) -> int:
        return lance.dataset(path, version=version).count_rows()

    def handle(self, path: str) -> Any:
        return lance.dataset(path)

    def append_handle(self, h: Any, i: int) -> Any:
        return lance.write_dataset(one_row(i), h, mode="append")

    def append_path(self, path: str, i: int) -> None:
        lance.write_dataset(one_row(i), path, mode="append")

    def latest_version(self, path: str) -> int:
        return lance.dataset(path).version

    def checkpoints(self, path: str) -> list[int]:
        return []  # every Lance version is a full manifest

    def timestamp_of(self, path: str, version: int) -> datetime:
        found = [v["timestamp"] for v in lance.dataset(path).versions() if v["version"] == version]
        return found[0].replace(tzinfo=UTC)  # Lance reports naive UTC here (TZ=UTC)

    def open_timestamp(self, path: str, ts: datetime) -> int:
        # Lance compares naive datetimes and picks the last version strictly before ``asof``.
        return lance.dataset(
            path, asof=ts.replace(tzinfo=None) + timedelta(microseconds=1)
        ).count_rows()

    def history(self, path: str) -> int:
        return len(lance.dataset(path).versions())

    def s3_open_latest(self, uri: str, endpoint: str) -> int:
        opts = {
            "aws_endpoint": endpoint,
            "aws_access_key_id": "testing",
            "aws_secret_access_key": "testing",
            "aws_region": "us-east-1",
            "allow_http": "true",
        }
        return lance.dataset(uri, storage_options=opts).count_rows()


class LanceCold(Lance):
    """Lance with a new session per open: no manifest cached from the previous open in this process.

    Lance keeps manifests in a per-process session cache, so opening the same
    version again in one process is a cache hit; tensorhouse re-reads every
    time. This column is the like-for-like one.
    """

    name = "lance-cold"

    def open_latest(self, path: str) -> int:
        return lance.dataset(path, session=lance.Session()).count_rows()

    def open_version(self, path: str, version: int) -> int:
        return lance.dataset(path, version=version, session=lance.Session()).count_rows()

    def open_timestamp(self, path: str, ts: datetime) -> int:
        return lance.dataset(
            path, asof=ts.replace(tzinfo=None) + timedelta(microseconds=1), session=lance.Session()
        ).count_rows()


ALL = {s.name: s for s in (Tensorhouse(), TensorhouseCold(), Delta(), Lance(), LanceCold())}


def progress(name: str, done: int, n: int, t0: float) -> None:
    step = max(n // 10, 1)
    if done % step == 0 or done == n:
        el = time.perf_counter() - t0
        log(f"[build] {name}: {done}/{n} commits, {el:.1f} s, {done / el:.0f} commits/s")


def table_dir(system: str, n: int) -> Path:
    return DATA_DIR / f"log_{COLD.get(system, system)}_{n}"


def ensure_built(system: System, n: int, rebuild: bool) -> dict[str, Any]:
    """Build (or reuse) the N-commit table; the build record (seconds, commits/s)."""
    system = ALL[COLD.get(system.name, system.name)]  # a cold column measures the warm one's table
    d = table_dir(system.name, n)
    meta_file = DATA_DIR / f"log_{system.name}_{n}.build.json"
    if not rebuild and meta_file.exists() and d.exists():
        meta = json.loads(meta_file.read_text())
        if meta.get("format") == BUILD_FORMAT[system.name] and meta.get("n") == n:
            meta["cached"] = True
            return meta
    shutil.rmtree(d, ignore_errors=True)
    meta_file.unlink(missing_ok=True)
    DATA_DIR.mkdir(parents=True, exist_ok=True)
    log(f"[build] {system.name}: {n} one-row commits into {d} ...")
    t0 = time.perf_counter()
    log_tables.BUILDERS[system.name](
        str(d), n, progress=lambda done, total: progress(system.name, done, total, t0)
    )
    seconds = time.perf_counter() - t0
    meta = {
        "format": BUILD_FORMAT[system.name],
        "n": n,
        "seconds": seconds,
        "commits_per_s": n / seconds,
        "versions": {"deltalake": deltalake.__version__, "lance": lance.__version__},
        "built_at": time.strftime("%Y-%m-%d %H:%M:%S"),
    }
    meta_file.write_text(json.dumps(meta, indent=1))
    meta["cached"] = False
    return meta


def per_version(system: str, n: int) -> int:
    """One-row appends per version of ``system``'s N-commit table (Lance is batched above 10,000)."""
    return log_tables.lance_versions_per_commit(n) if COLD.get(system, system) == "lance" else 1


#: Files that the systems replace in place (by rename) and a scratch copy must not share with its source.
MUTABLE_NAMES = {"_last_checkpoint", "latest_version_hint.json"}


def link_copy(src: str, dst: str) -> None:
    """A scratch copy by hard links (seconds, not minutes, for 300,000 files); every system writes new files.

    The few files rewritten in place are copied for real, so the cached table never changes.
    """
    shutil.rmtree(dst, ignore_errors=True)
    shutil.copytree(src, dst, copy_function=os.link)
    for r, _d, fs in os.walk(dst):
        for f in fs:
            if f in MUTABLE_NAMES:
                p = os.path.join(r, f)
                data = Path(p).read_bytes()
                os.unlink(p)
                Path(p).write_bytes(data)


def dir_stats(path: str) -> tuple[int, int]:
    files = nbytes = 0
    for r, _d, fs in os.walk(path):
        for f in fs:
            files += 1
            nbytes += os.path.getsize(os.path.join(r, f))
    return files, nbytes


# -- S3 (moto) ----------------------------------------------------------------------
class Moto:
    """A moto_server on a free port; every request it serves is in its log, which is how requests are counted.

    Counting at the server treats the three systems alike: two of them are Rust
    clients with no Python hook.
    """

    def __init__(self, workdir: Path) -> None:
        import socket
        import subprocess
        import urllib.error
        import urllib.request

        os.environ.update(
            {
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_DEFAULT_REGION": "us-east-1",
            }
        )
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
        self.endpoint = f"http://127.0.0.1:{port}"
        self.log_path = workdir / f"moto_{os.getpid()}.log"
        exe = Path(sys.executable).parent / "moto_server"
        with self.log_path.open("wb") as f:
            self.proc = subprocess.Popen(
                [str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=f, stderr=subprocess.STDOUT
            )
        atexit.register(self.close)
        deadline = time.monotonic() + 30
        while True:
            try:
                urllib.request.urlopen(self.endpoint, timeout=1)
                break
            except urllib.error.HTTPError:
                break
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise RuntimeError(
                        f"moto_server did not start: {self.log_path.read_text()[-2000:]}"
                    ) from None
                time.sleep(0.1)
        import boto3

        self.client = boto3.client("s3", endpoint_url=self.endpoint)
        self.client.create_bucket(Bucket="bench")

    def upload(self, local: str, prefix: str) -> int:
        """Upload a table's metadata: no open measured here reads a data file, so none is uploaded.

        Skipped: tensorhouse's and Lance's ``data/`` and Delta's Parquet data files
        (its checkpoints, under ``_delta_log/``, are uploaded).
        """
        from concurrent.futures import ThreadPoolExecutor

        files = [
            os.path.join(r, f)
            for r, _d, fs in os.walk(local)
            for f in fs
            if os.path.relpath(r, local).split(os.sep)[0] != "data"
            and not (r == local and f.endswith(".parquet"))
        ]

        def put(path: str) -> None:
            key = f"{prefix}/{os.path.relpath(path, local)}"
            with open(path, "rb") as fh:
                self.client.put_object(Bucket="bench", Key=key, Body=fh.read())

        with ThreadPoolExecutor(16) as pool:
            list(pool.map(put, files))
        return len(files)

    def mark(self) -> int:
        return self.log_path.stat().st_size

    def requests_since(self, mark: int) -> dict[str, int]:
        """LIST / GET / HEAD / other requests served since ``mark``."""
        with self.log_path.open("rb") as f:
            f.seek(mark)
            lines = f.read().decode(errors="replace").splitlines()
        out = {"LIST": 0, "GET": 0, "HEAD": 0, "other": 0}
        import re

        ansi = re.compile(r"\x1b\[[0-9;]*m")  # werkzeug colours some request lines
        for line in (ansi.sub("", x) for x in lines):
            if '"' not in line:
                continue
            req = line.split('"')[1].split(" ")
            if len(req) < 2:
                continue
            method, target = req[0], req[1]
            if method == "GET" and (
                "list-type=" in target or "prefix=" in target or "delimiter=" in target
            ):
                out["LIST"] += 1
            elif method in ("GET", "HEAD"):
                out[method] += 1
            else:
                out["other"] += 1
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except Exception:
                self.proc.kill()


def fmt_requests(r: dict[str, int]) -> str:
    extra = f" + {r['HEAD']} HEAD" if r["HEAD"] else ""
    extra += f" + {r['other']} other" if r["other"] else ""
    return f"{r['LIST']} LIST + {r['GET']} GET{extra}"


def pad_to_worst(s: str, path: str, n: int) -> tuple[int, int]:
    """Append one-row commits to ``path`` (``s``'s table of ``n`` rows) up to its worst case between checkpoints.

    A system without checkpoints gets as many commits as tensorhouse. Returns
    (rows, version).
    """
    sysm = ALL[COLD.get(s, s)]
    v = sysm.latest_version(path)
    target = sysm.next_worst_version(v)
    if target is None:
        tv = ALL["tensorhouse"].next_worst_version(n)
        target = v + (tv - n)  # type: ignore[operator]
    h, i = sysm.handle(path), n
    while v < target:
        h = sysm.append_handle(h, i)
        i, v = i + 1, v + 1
    return i, v


def bench_s3(
    n: int, systems: list[str], paths: dict[str, str], repeats: int
) -> tuple[list[Row], dict[str, str]]:
    """Open latest through moto S3: median time, and the requests of one cold open (counted at the server).

    Twice: on the N-commit tables (at a checkpoint), and, for the systems
    with checkpoints, on a copy padded to the worst case between them
    (uploaded beside). Lance has no checkpoints: its open is the same at
    any version, so its row there repeats its first.
    """
    moto = Moto(DATA_DIR)
    row = Row(f"open latest on S3 (moto), {n:,} commits")
    worst = Row(
        f"open latest on S3 (moto), {n:,}+ commits, {th_log.CHECKPOINT_INTERVAL - 1} entries after the newest checkpoint"
    )
    requests: dict[str, str] = {}
    uploaded: dict[str, int] = {}
    try:
        for s in systems:
            base = COLD.get(s, s)  # a cold column opens the warm one's upload
            if base not in uploaded:
                t0 = time.perf_counter()
                files = moto.upload(paths[s], base)
                uploaded[base] = n
                log(f"[s3] {base}: uploaded {files:,} files in {time.perf_counter() - t0:.1f} s")
                if ALL[base].next_worst_version(0) is not None:
                    scratch = str(DATA_DIR / f"scratch_s3_{base}_{n}")
                    link_copy(paths[s], scratch)
                    try:
                        rows, v = pad_to_worst(base, scratch, n)
                        files = moto.upload(scratch, f"{base}_worst")
                    finally:
                        shutil.rmtree(scratch, ignore_errors=True)
                    uploaded[f"{base}_worst"] = rows
                    log(f"[s3] {base}: uploaded version {v} ({files:,} files)")
            sysm = ALL[s]
            for r, prefix in ((row, base), (worst, f"{base}_worst")):
                if prefix not in uploaded:
                    r.timings[s] = row.timings[s]
                    continue
                uri = f"s3://bench/{prefix}"
                mark = moto.mark()
                got = sysm.s3_open_latest(uri, moto.endpoint)
                time.sleep(0.2)  # the server writes its log line after answering
                label = s if r is row else f"{s}, worst case"
                requests[label] = fmt_requests(moto.requests_since(mark))
                if got != uploaded[prefix]:
                    raise AssertionError(f"{s}: S3 open gave {got}, expected {uploaded[prefix]}")
                r.timings[s] = time_repeat(
                    lambda sysm=sysm, uri=uri: sysm.s3_open_latest(uri, moto.endpoint),
                    max(3, repeats // 3),
                )
                log(
                    f"[s3] {label}: {r.timings[s].median * 1e3:.2f} ms, one open: {requests[label]}"
                )
    finally:
        moto.close()
        moto.log_path.unlink(missing_ok=True)
    return [row, worst], requests


# -- the benchmark ------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--sizes",
        default="1000,10000",
        help="commits per table, comma-separated (default 1,000 and 10,000)",
    )
    ap.add_argument("--commits", type=int, default=None, help="one size (overrides --sizes)")
    ap.add_argument(
        "--smoke", action="store_true", help="200 commits and fewer repeats (< 1 minute)"
    )
    ap.add_argument(
        "--s3-size",
        type=int,
        default=None,
        help="the size opened through moto S3 (default: 10,000 if measured, else the largest)",
    )
    ap.add_argument("--no-s3", action="store_true", help="skip the S3 (moto) measurement")
    ap.add_argument(
        "--no-history", action="store_true", help="skip history() (minutes per call at 100,000)"
    )
    ap.add_argument("--rebuild", action="store_true", help="rebuild the cached tables")
    ap.add_argument(
        "--build-only", action="store_true", help="build (or reuse) the tables, measure nothing"
    )
    ap.add_argument("--repeats", type=int, default=None, help="repeats of each open measurement")
    ap.add_argument("--appends", type=int, default=50, help="timed appends per commit measurement")
    ap.add_argument(
        "--systems",
        default=",".join(SYSTEMS),
        help="comma-separated subset of " + ",".join(SYSTEMS),
    )
    ap.add_argument(
        "--profile", action="store_true", help="profile tensorhouse even where it meets targets"
    )
    ap.add_argument("--cold-worker", nargs=3, help=argparse.SUPPRESS)  # name path repeats
    args = ap.parse_args(argv)
    if args.cold_worker:
        cold_worker(args.cold_worker[0], args.cold_worker[1], int(args.cold_worker[2]))
        return 0
    # Scratch copies are removed at exit, also when stopped by SIGTERM (e.g. `timeout`).
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sizes = (
        [200]
        if args.smoke
        else ([args.commits] if args.commits else [int(x) for x in args.sizes.split(",")])
    )
    repeats = args.repeats or (5 if args.smoke else 21)
    systems = [s for s in args.systems.split(",") if s]
    if REFERENCE not in systems:
        ap.error("tensorhouse must be one of --systems")
    t_start = time.perf_counter()
    if args.build_only:
        for n in sizes:
            for s in systems:
                meta = ensure_built(ALL[s], n, args.rebuild)
                log(f"[build] {s} {n}: {meta['seconds']:.1f} s (cached: {meta['cached']})")
        return 0
    opens: dict[int, Row] = {}
    for n in sizes:
        opens[n] = bench_size(n, args, repeats, list(systems))
    if not args.no_s3:
        n3 = args.s3_size or (10_000 if 10_000 in sizes else max(sizes))
        paths = {s: str(table_dir(s, n3)) for s in systems}
        for s in systems:
            ensure_built(ALL[s], n3, False)
        if n3 > 1000:
            # Every Lance version is a full manifest: a real N-commit Lance table is O(N^2) bytes (4 GB
            # at 10,000), too big for moto's memory. On S3 Lance opens a table with the same newest
            # manifest (N fragments) in N / 1,000 versions: its listing is shorter than a real one's.
            lb = DATA_DIR / f"log_lance_{n3}_s3batched"
            if not lb.exists():
                log_tables.build_lance_batched(str(lb), n3)
            for s in systems:
                if COLD.get(s, s) == "lance":
                    paths[s] = str(lb)
        s3_rows, requests = bench_s3(n3, systems, paths, repeats)
        print(
            "## Open latest on S3 (moto_server on localhost; requests counted at the server, one cold open)\n"
        )
        if n3 > 1000:
            print(
                f"Lance on S3 opens a table with the same newest manifest ({n3:,} one-row fragments) built in "
                f"{n3 // 1000} commits of 1,000: a real {n3:,}-commit Lance table is O(N^2) bytes. Only "
                "metadata is uploaded (no open reads a data file).\n"
            )
        print(markdown(s3_rows, systems))
        print()
        for s, r in requests.items():
            print(f"- {s}: {r} per open")
        print(
            "- Lance has no checkpoints: its worst-case row repeats its open of the same table.\n"
        )
    print("## Summary: open latest, ratio peer / tensorhouse (> 1: tensorhouse faster)\n")
    print(
        "| commits | " + " | ".join(f"{s} / tensorhouse" for s in systems if s != REFERENCE) + " |"
    )
    print("|---|" + "---|" * (len(systems) - 1))
    for n, r in opens.items():
        ref = r.seconds(REFERENCE)
        print(
            f"| {n:,} | "
            + " | ".join(
                f"{(r.seconds(s) or 0) / ref:.2f}x" if ref else "-"
                for s in systems
                if s != REFERENCE
            )
            + " |"
        )
    print(f"\n_total run time {time.perf_counter() - t_start:.1f} s_")
    return 0


def bench_size(n: int, args: argparse.Namespace, repeats: int, systems: list[str]) -> Row:
    """Every measurement on the N-commit tables; prints its report and returns the open-latest row."""
    t_start = time.perf_counter()

    print(f"# Commit-log benchmark: {n:,} one-row commits per table\n")
    print(
        f"python {platform.python_version()}, deltalake {deltalake.__version__}, lance {lance.__version__}, "
        f"pyarrow {pa.__version__}, {os.cpu_count()} CPUs, {platform.platform()}; warm page cache; "
        f"medians of {repeats} opens, {args.appends} appends\n"
    )

    # 1. build or reuse
    builds = {s: ensure_built(ALL[s], n, args.rebuild) for s in systems}
    paths = {s: str(table_dir(s, n)) for s in systems}
    print("## Tables\n")
    print("| system | build (s) | commits/s | latest version | checkpoints | files | MB | cached |")
    print("|---|---|---|---|---|---|---|---|")
    for s in systems:
        sysm, b = ALL[s], builds[s]
        cps = sysm.checkpoints(paths[s])
        files, nbytes = dir_stats(paths[s])
        cp_desc = f"{len(cps)} (last {cps[-1]})" if cps else "0"
        print(
            f"| {s} | {b['seconds']:.1f} | {b['commits_per_s']:.0f} | {sysm.latest_version(paths[s])} | {cp_desc} "
            f"| {files:,} | {nbytes / 1e6:.1f} | {'yes, built ' + b.get('built_at', '?') if b['cached'] else 'no'} |"
        )
    print()

    # Delta checkpoints: delta-rs 1.x writes them from a post-commit hook (PostCommitHookProperties
    # create_checkpoint=True by default, every delta.checkpointInterval = 100 commits). If none
    # were written, measure a copy with one explicit create_checkpoint() too.
    delta_note = ""
    if "deltalake" in systems:
        cps = ALL["deltalake"].checkpoints(paths["deltalake"])
        if cps:
            delta_note = (
                f"deltalake: checkpoints were written automatically by delta-rs's post-commit hook "
                f"(every 100 commits: {len(cps)} of them, at versions "
                f"{', '.join(map(str, cps)) if len(cps) <= 3 else f'{cps[0]}, {cps[1]}, ..., {cps[-1]}'}); "
                "DeltaTable.create_checkpoint() was NOT called. The build and the main commit rows use delta-rs's "
                "default post-commit hooks (checkpoints and expired-log cleanup, cleanup_expired_logs=None); the "
                "'cleanup_expired_logs=False' row shows the commit latency with the cleanup hook turned off."
            )
        else:
            ck = str(DATA_DIR / f"log_deltalake_{n}_explicit_checkpoint_{os.getpid()}")
            atexit.register(shutil.rmtree, ck, True)
            shutil.rmtree(ck, ignore_errors=True)
            shutil.copytree(paths["deltalake"], ck)
            DeltaTable(ck).create_checkpoint()
            ALL["deltalake+ckpt"] = ALL["deltalake"]
            paths["deltalake+ckpt"] = ck
            systems.insert(systems.index("deltalake") + 1, "deltalake+ckpt")
            delta_note = (
                "deltalake: NO automatic checkpoints were written; column 'deltalake' has none, "
                "'deltalake+ckpt' is a copy after one explicit DeltaTable.create_checkpoint()."
            )

    rows: list[Row] = []
    build_row = Row(f"build: mean per commit ({n:,} commits)")
    for s in systems:
        if s in builds:
            build_row.fixed[s] = builds[s]["seconds"] / n

    # 2. open latest, on the N-commit tables
    r_open = Row(f"open latest ({n:,} commits)")
    for s in systems:
        got = ALL[s].open_latest(paths[s])
        if got != n:  # rows (tensorhouse, Lance) or 1-row data files (deltalake)
            raise AssertionError(f"{s}: open latest gave {got}, expected {n}")
    COLD_PATHS.clear()
    COLD_PATHS.update({s: paths[s] for s in systems if s in COLD})
    r_open.timings = time_interleaved(
        {s: (lambda sysm=ALL[s], p=paths[s]: sysm.open_latest(p)) for s in systems}, repeats
    )
    for s in systems:
        log(f"[open latest] {s}: {r_open.timings[s].median * 1e3:.2f} ms")
    rows.append(r_open)
    ops_open = count_th_ops(lambda: th.open(paths["tensorhouse"]).__len__())

    # 4. time travel to the first append, on the N-commit tables
    r_tt = Row("open first append (time travel)")
    for s in systems:
        sysm, p = ALL[s], paths[s]
        v = sysm.first_append_version
        got = sysm.open_version(p, v)
        if got != per_version(s, n):
            raise AssertionError(
                f"{s}: version {v} has {got} rows/files, expected {per_version(s, n)}"
            )
        r_tt.timings[s] = time_repeat(lambda sysm=sysm, p=p, v=v: sysm.open_version(p, v), repeats)
        log(f"[time travel] {s}: {r_tt.timings[s].median * 1e3:.2f} ms")
    ops_tt = count_th_ops(lambda: th.open(paths["tensorhouse"], version=1).__len__())

    # time travel by timestamp: to the middle version, at the timestamp each system recorded for it
    r_ts = Row("open by timestamp (middle version)")
    slow: set[str] = set()
    for s in systems:
        sysm, p = ALL[s], paths[s]
        v = sysm.first_append_version + n // 2 // per_version(s, n) - 1  # holds n // 2 rows / files
        ts = sysm.timestamp_of(p, v)
        if COLD.get(s) in slow:
            continue  # the warm column's one call took over 10 s: a cold one adds nothing but minutes
        t0 = time.perf_counter()
        got = sysm.open_timestamp(p, ts)
        once = time.perf_counter() - t0
        # deltalake resolves a timestamp by the log files' modification times (millisecond clocks,
        # commits within one millisecond): it may land one version off. Ours must be exact.
        slack = 0 if s.startswith("tensorhouse") else 1
        if abs(got - n // 2) > slack:
            raise AssertionError(
                f"{s}: timestamp of version {v} opened {got} rows/files, expected {n // 2}"
            )
        r_ts.timings[s] = (
            Timing([once])
            if once > BUDGET_S / 3
            else time_repeat(lambda sysm=sysm, p=p, ts=ts: sysm.open_timestamp(p, ts), repeats)
        )
        if once > BUDGET_S / 3:
            slow.add(s)
        log(f"[timestamp] {s}: {r_ts.timings[s].median * 1e3:.2f} ms")
    r_hist = Row(f"history() of all {n:,} versions")
    for s in systems if not args.no_history else []:
        if s in COLD:  # history is no open: a cold column measures the same
            continue
        sysm, p = ALL[s], paths[s]
        r_hist.timings[s] = time_repeat(
            lambda sysm=sysm, p=p: sysm.history(p), max(3, repeats // 5)
        )
        log(f"[history] {s}: {r_hist.timings[s].median * 1e3:.2f} ms")

    # 3. commits, on scratch copies of the N-commit tables
    # Per-process scratch names: concurrent runs must not append to each other's copies.
    scratch = {s: str(DATA_DIR / f"log_{s}_{n}_scratch_{os.getpid()}") for s in systems}
    for sp in scratch.values():
        atexit.register(shutil.rmtree, sp, True)
    r_app_h = Row("commit 1-row append, open handle")
    r_app_p = Row("commit 1-row append, from path (open + append)")
    # delta-rs's default post-commit hooks include an expired-log cleanup whose cost grows with
    # the log; a variant with it off shows what the commit itself costs.
    r_app_nc = Row("commit 1-row append, open handle, deltalake cleanup_expired_logs=False")
    r_worst = Row(
        f"open latest, {n + 2 * args.appends:,}+ commits, {th_log.CHECKPOINT_INTERVAL - 1} entries after the newest checkpoint"
    )
    worst_info: dict[str, str] = {}
    worst_fns: dict[
        str, Callable[[], Any]
    ] = {}  # timed together, interleaved, once every table is padded
    th_count_worst: dict[str, int] = {}
    for s in systems:
        if s in COLD:  # measured on the warm column's scratch table below
            continue
        sysm = ALL[s]
        sp = scratch[s]
        t0 = time.perf_counter()
        link_copy(paths[s], sp)
        log(f"[scratch] {s}: copied in {time.perf_counter() - t0:.1f} s")
        i = n
        # from path: open + append each time
        ts = []
        for _ in range(args.appends):
            t0 = time.perf_counter()
            sysm.append_path(sp, i)
            ts.append(time.perf_counter() - t0)
            i += 1
        r_app_p.timings[s] = Timing(ts)
        # open handle: one handle, kept across the appends
        h = sysm.handle(sp)
        ts = []
        for _ in range(args.appends):
            t0 = time.perf_counter()
            h = sysm.append_handle(h, i)
            ts.append(time.perf_counter() - t0)
            i += 1
        r_app_h.timings[s] = Timing(ts)
        if isinstance(sysm, Delta):
            ts = []
            for _ in range(args.appends):
                t0 = time.perf_counter()
                sysm.append_handle_no_cleanup(h, i)
                ts.append(time.perf_counter() - t0)
                i += 1
            r_app_nc.timings[s] = Timing(ts)
        log(
            f"[append] {s}: from path {r_app_p.timings[s].median * 1e3:.2f} ms, "
            f"handle {r_app_h.timings[s].median * 1e3:.2f} ms"
        )
        # pad to the worst case between checkpoints (untimed)
        v = sysm.latest_version(sp)
        target = sysm.next_worst_version(v)
        if target is None:  # no checkpoints: as many commits as tensorhouse gets
            tv = ALL["tensorhouse"].next_worst_version(n + 2 * args.appends)
            target = v + (tv - (n + 2 * args.appends))  # type: ignore[operator]
        h = sysm.handle(sp)
        while v < target:
            h = sysm.append_handle(h, i)
            i += 1
            v += 1
        rows_now = i
        got = sysm.open_latest(sp)
        if got != rows_now:
            raise AssertionError(f"{s}: scratch open gave {got}, expected {rows_now}")
        cps = [c for c in sysm.checkpoints(sp) if c <= v]
        after = v - cps[-1] if cps else v
        worst_info[s] = (
            f"version {v}, {after} log entries after checkpoint {cps[-1]}"
            if cps
            else f"version {v}"
        )
        for w in [s, *(c for c, b in COLD.items() if b == s and c in systems)]:
            worst_fns[w] = lambda w=w, sp=sp: ALL[w].open_latest(sp)
            worst_info[w] = worst_info[s]
        if s == "tensorhouse":
            th_count_worst = count_th_ops(lambda sp=sp: th.open(sp).__len__())
    COLD_PATHS.clear()
    COLD_PATHS.update({w: scratch[COLD[w]] for w in worst_fns if w in COLD})
    r_worst.timings = time_interleaved(worst_fns, repeats)
    for w in worst_fns:
        log(f"[open worst] {w}: {r_worst.timings[w].median * 1e3:.2f} ms ({worst_info[w]})")
    rows.insert(1, r_worst)
    if r_app_nc.timings:
        r_app_nc.timings[REFERENCE] = r_app_h.timings[REFERENCE]
    rows += [
        r_tt,
        r_ts,
        *([r_hist] if r_hist.timings else []),
        r_app_h,
        r_app_p,
        *([r_app_nc] if r_app_nc.timings else []),
        build_row,
    ]

    # -- report
    print("## Results (median ms; ratio = peer / tensorhouse, > 1 means tensorhouse is faster)\n")
    print(markdown(rows, systems))
    print()
    for s in systems:
        if s in worst_info:
            print(f"- worst-case table, {s}: {worst_info[s]}")
    if delta_note:
        print(f"- {delta_note}")
    print(
        "- Lance: no checkpoints; every version is a full manifest (V2 manifest paths). Time travel opens "
        "Lance version 2 (its version 1 is the empty create)."
    )
    print(
        "- tensorhouse opens in this table list `_log/` once, then read the newest checkpoint and later entries."
    )
    print()

    print("## Targets from the issue (tensorhouse / peer, measured side by side; <= 1.0x is met)\n")
    print("| measurement | tensorhouse vs peer | tensorhouse / peer | met |")
    print("|---|---|---|---|")
    pairs = [
        (r_open, "tensorhouse", "lance"),
        (r_open, "tensorhouse-cold", "lance-cold"),
        (r_worst, "tensorhouse", "lance"),
        (r_worst, "tensorhouse-cold", "lance-cold"),
        (r_tt, "tensorhouse", "deltalake"),
        (r_tt, "tensorhouse-cold", "deltalake"),
        (r_ts, "tensorhouse", "deltalake"),
        (r_ts, "tensorhouse-cold", "deltalake"),
        (r_app_h, "tensorhouse", "deltalake"),
        (r_app_h, "tensorhouse", "lance"),
    ]
    for row, mine, peer in pairs:
        a, b = row.seconds(mine), row.seconds(peer)
        if a is None or b is None:
            continue
        ratio = a / b
        print(
            f"| {row.name} | {mine} vs {peer} | {ratio:.2f}x | {'yes' if ratio <= 1.0 else 'NO'} |"
        )
    print(
        "\nThe commit latency target is 'no worse than before': compare with main in the same run. "
        "Warm columns reopen in one process (Lance's session cache, tensorhouse's log cache); "
        "cold columns empty those caches before every open, as a new process would.\n"
    )
    th_cps = ALL["tensorhouse"].checkpoints(paths["tensorhouse"])
    print(
        f"tensorhouse storage operations of one open (checkpoints at {th_cps[-1] if th_cps else '-'}): "
        f"latest {fmt_ops(ops_open)}; worst case {fmt_ops(th_count_worst)}; version 1 {fmt_ops(ops_tt)} "
        "(the counting store is new on every open; the warm cache still spares the checkpoint and the entries)\n"
    )

    slower = []
    for r in rows:
        ref = r.seconds(REFERENCE)
        for s in systems:
            v = r.seconds(s)
            if not s.startswith("tensorhouse") and v is not None and ref is not None and v < ref:
                slower.append(
                    f"{r.name}: {s} {v * 1e3:.2f} ms vs tensorhouse {ref * 1e3:.2f} ms ({ref / v:.2f}x slower)"
                )
    if slower:
        print("Where tensorhouse is slower than a peer:\n")
        for line in slower:
            print(f"- {line}")
        print()
    else:
        print("tensorhouse is at least as fast as every peer on every row.\n")

    # -- profiles where tensorhouse misses a target or trails a peer
    def trails(row: Row) -> bool:
        ref = row.seconds(REFERENCE)
        return any(
            row.seconds(s) is not None and ref is not None and row.seconds(s) < ref  # type: ignore[operator]
            for s in systems
            if not s.startswith("tensorhouse")
        )

    thp, ths = paths["tensorhouse"], scratch["tensorhouse"]
    jobs: list[tuple[str, Callable[[], Any]]] = []
    if args.profile or trails(r_open):
        jobs.append((f"open latest ({n:,} commits)", lambda: len(th.open(thp))))
    if args.profile or trails(r_worst):
        jobs.append(("open latest, worst case", lambda: len(th.open(ths))))
    if args.profile or trails(r_tt):
        jobs.append(("open version 1 (time travel)", lambda: len(th.open(thp, version=1))))
    if args.profile or trails(r_app_h) or trails(build_row):
        hh = th.open(ths)
        ctr = [10**9]

        def app_h() -> None:
            hh.append(th_row(ctr[0]))
            ctr[0] += 1

        jobs.append(("commit 1-row append, open handle", app_h))
    if args.profile or trails(r_app_p):
        ctr2 = [2 * 10**9]

        def app_p() -> None:
            th.open(ths).append(th_row(ctr2[0]))
            ctr2[0] += 1

        jobs.append(("commit 1-row append, from path", app_p))
    if jobs:
        print("## Profiles (cProfile) of tensorhouse where it trails a peer or misses a target\n")
        for label, fn in jobs:
            fn()  # warm
            print(profile_th(label, fn, repeats=3 if args.smoke else 10))
    for s in systems:
        shutil.rmtree(scratch[s], ignore_errors=True)
    if "deltalake+ckpt" in paths:
        shutil.rmtree(paths["deltalake+ckpt"], ignore_errors=True)
    print(f"_{n:,} commits: {time.perf_counter() - t_start:.1f} s_\n")
    return r_open


if __name__ == "__main__":
    sys.exit(main())
