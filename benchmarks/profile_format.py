"""Where tensorhouse spends its time in bench_format's operations (cProfile, all threads).

cProfile sees only the thread that enables it, and tensorhouse reads and
writes chunks on its thread pools, so every pool task is profiled too and the
statistics of all threads are merged. Percentages are of the summed CPU-side
time of all threads, lock waits left out (a thread blocked in ``pread`` or
``fsync`` counts as the time of that call). With several pool threads on few
cores, a GIL-releasing call (crc32, pread) also counts the time its thread
waited for a core; ``TENSORHOUSE_THREADS=1 TENSORHOUSE_IO_THREADS=1`` gives a
serial profile whose shares are CPU shares.

Run:
    .venv/bin/python benchmarks/profile_format.py                 # 10,000 rows, every operation
    .venv/bin/python benchmarks/profile_format.py --ops take_jpeg single_raw --top 25
    TENSORHOUSE_THREADS=1 TENSORHOUSE_IO_THREADS=1 .venv/bin/python benchmarks/profile_format.py
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import shutil
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import thread as futures_thread
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.bench_format import SYSTEMS, Tensorhouse  # noqa: E402
from benchmarks.common import DATA_DIR, image_dataset  # noqa: E402

_lock = threading.Lock()
_worker_profiles: list[cProfile.Profile] = []
_original_run = futures_thread._WorkItem.run


def _profiled_run(self: Any) -> None:
    prof = cProfile.Profile()
    prof.enable()
    try:
        _original_run(self)
    finally:
        prof.disable()
        with _lock:
            _worker_profiles.append(prof)


def profile(fn: Callable[[], Any], repeats: int) -> tuple[pstats.Stats, float]:
    """Profile ``repeats`` calls of ``fn`` in the calling thread and in every pool task."""
    _worker_profiles.clear()
    futures_thread._WorkItem.run = _profiled_run  # type: ignore[method-assign]
    main = cProfile.Profile()
    t0 = time.perf_counter()
    try:
        main.enable()
        for _ in range(repeats):
            fn()
        main.disable()
    finally:
        futures_thread._WorkItem.run = _original_run  # type: ignore[method-assign]
    wall = (time.perf_counter() - t0) / repeats
    stats = pstats.Stats(main)
    with _lock:
        for p in _worker_profiles:
            stats.add(p)
    return stats, wall


_WAITS = (
    "<method 'acquire' of '_thread.lock' objects>",
    "<method 'acquire' of '_thread.RLock' objects>",
)


def report(name: str, stats: pstats.Stats, wall: float, top: int) -> str:
    """The top functions by own time, with their share of all profiled time."""
    # A thread waiting on another (Future.result, a queue) is not work: leave lock waits out.
    entries = [kv for kv in stats.stats.items() if kv[0][2] not in _WAITS]  # type: ignore[attr-defined]
    waits = sum(v[2] for k, v in stats.stats.items() if k[2] in _WAITS)  # type: ignore[attr-defined]
    total = sum(v[2] for _k, v in entries)
    entries.sort(key=lambda kv: kv[1][2], reverse=True)
    out = io.StringIO()
    out.write(
        f"\n### {name}: {wall * 1e3:.1f} ms wall per call; {total * 1e3:.1f} ms profiled in all threads "
        f"({waits * 1e3:.1f} ms more waiting on locks, left out)\n\n"
    )
    out.write("| own % | own ms | cum ms | calls | function |\n|---|---|---|---|---|\n")
    for (file, line, func), (_cc, nc, tt, ct, _callers) in entries[:top]:
        where = f"{Path(file).name}:{line}" if file != "~" else "builtin"
        out.write(
            f"| {100 * tt / total:.1f} | {tt * 1e3:.1f} | {ct * 1e3:.1f} | {nc} | `{func}` ({where}) |\n"
        )
    return out.getvalue()


def profile_kind(
    system: Tensorhouse,
    kind: str,
    data: Any,
    work: Path,
    take_idx: np.ndarray,
    single: np.ndarray,
    args: argparse.Namespace,
) -> None:
    """Profile every operation of one dataset kind and print a table per operation."""
    prepared = system.prepare(data, kind)
    path = work / kind
    counter = iter(range(1_000_000))
    system.write(prepared, kind, path)
    h = system.open(path, kind)
    system.scan(h, kind)  # warm the page cache and the header cache

    def write() -> None:
        system.write(prepared, kind, work / f"w-{kind}-{next(counter)}")

    def scan() -> None:
        system.scan(h, kind)

    def take() -> None:
        system.take(h, take_idx, kind)

    def rows() -> None:
        for i in single:
            system.row(h, int(i))

    ops: dict[str, tuple[Callable[[], Any], int]] = {
        f"write_{kind}": (write, 1),
        f"scan_{kind}": (scan, 3),
        f"take_{kind}": (take, 5),
        f"single_{kind}": (rows, 1),
    }
    for name, (fn, repeats) in ops.items():
        if args.ops and name not in args.ops:
            continue
        stats, wall = profile(fn, repeats)
        if name.startswith("single"):
            wall /= len(single)
            name += f" (per row, {len(single)} rows)"
        print(report(name, stats, wall, args.top), flush=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=10_000)
    p.add_argument("--top", type=int, default=15)
    p.add_argument(
        "--ops",
        nargs="*",
        default=None,
        help="write_jpeg write_raw scan_jpeg scan_raw take_jpeg take_raw single_jpeg single_raw",
    )
    args = p.parse_args()
    system = next(s for s in SYSTEMS if isinstance(s, Tensorhouse))
    from benchmarks.bench_format import SCAN_BATCH  # noqa: F401 (documents what scan uses)

    data = image_dataset(args.rows)
    work = DATA_DIR / f"work-profile_format-{args.rows}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    rng = np.random.default_rng(1)
    take_idx = rng.choice(args.rows, size=min(1000, args.rows), replace=False)
    single = rng.integers(0, args.rows, size=200)
    try:
        for kind in ("jpeg", "raw"):
            profile_kind(system, kind, data, work, take_idx, single, args)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
