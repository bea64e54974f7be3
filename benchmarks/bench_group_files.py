"""Group files vs chunk files (issue 12): the storage of tabular columns, side by side in one run.

Since group files, the tabular columns of each append are one plain Parquet
file (``tabular_files="parquet"``, the default); before, each column and
chunk was a chunk file (``tabular_files="chunks"``, still writable). Both
layouts are written by the same code from the same TPC-H data, with plain
Parquet (``pq.read_table`` + ``pq.write_table``) as the peer:

1. ingest (``th.ingest.parquet`` of the generated files) time and bytes on disk;
2. the Python scan path (what DuckDB/DataFusion read through a Python scan,
   the loader, object stores): process CPU time to drain scans of ``lineitem``
   as the SQL engines ask for them (engine types, pushed filters), medians of
   interleaved repeats;
3. ``take`` of 1,000 random rows (random access), CPU time.

Run:
    .venv/bin/python benchmarks/bench_group_files.py              # SF 0.1, 3 repeats
    .venv/bin/python benchmarks/bench_group_files.py --sf 1       # SF 1
    .venv/bin/python benchmarks/bench_group_files.py --smoke      # SF 0.01, 1 repeat, well under a minute
"""

from __future__ import annotations

import argparse
import datetime
import decimal
import os
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import tensorhouse as th  # noqa: E402
from benchmarks.bench_tpch import generate  # noqa: E402
from benchmarks.common import DATA_DIR, rotations, tree_bytes  # noqa: E402
from benchmarks.tpch_queries import TABLES  # noqa: E402
from tensorhouse.connector.arrow_dataset import TensorhouseArrowDataset  # noqa: E402

LAYOUTS = ("parquet", "chunks")
SHIPDATE = datetime.date(1998, 9, 2)
SCANS: dict[str, tuple[list[str], Any]] = {
    "all 16 columns": ([], None),
    "Q1 (7 columns, shipdate <=)": (
        [
            "l_returnflag",
            "l_linestatus",
            "l_quantity",
            "l_extendedprice",
            "l_discount",
            "l_tax",
            "l_shipdate",
        ],
        pc.field("l_shipdate") <= SHIPDATE,
    ),
    "Q6 (4 columns, 3 filters)": (
        ["l_shipdate", "l_discount", "l_quantity", "l_extendedprice"],
        (pc.field("l_shipdate") >= datetime.date(1994, 1, 1))
        & (pc.field("l_shipdate") < datetime.date(1995, 1, 1))
        & (pc.field("l_quantity") < pa.scalar(decimal.Decimal(24), pa.decimal128(15, 2))),
    ),
    "keys (3 int64)": (["l_orderkey", "l_partkey", "l_suppkey"], None),
    "text (3 strings)": (["l_comment", "l_shipinstruct", "l_shipmode"], None),
}


def cpu(fn: Callable[[], Any]) -> float:
    """Process CPU seconds (every thread) of one call."""
    t0 = time.process_time()
    fn()
    return time.process_time() - t0


def ingest(src: Path, out: Path, repeats: int) -> dict[str, dict[str, float]]:
    """Seconds and bytes per system, all tables, interleaved; the last round's datasets are kept."""
    systems = (*LAYOUTS, "parquet peer")
    secs: dict[str, list[float]] = {s: [] for s in systems}
    cpus: dict[str, list[float]] = {s: [] for s in systems}
    schemas: dict[str, th.Schema] = {}
    for r in range(repeats):
        for s in rotations(list(systems), r):
            total = 0.0
            c0 = time.process_time()
            for t in TABLES:
                dest = out / s.replace(" ", "_") / t
                shutil.rmtree(dest, ignore_errors=True)
                if s == "parquet peer":
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    t0 = time.perf_counter()
                    pq.write_table(pq.read_table(src / f"{t}.parquet"), f"{dest}.parquet")
                    total += time.perf_counter() - t0
                    continue
                if t in schemas:  # the schema ingest infers, created in this layout first
                    th.create(str(dest), schemas[t], tabular_files=s)
                t0 = time.perf_counter()
                th.ingest.parquet(str(src / f"{t}.parquet"), str(dest), progress=False)
                total += time.perf_counter() - t0
                schemas[t] = th.open(str(dest)).schema
            secs[s].append(total)
            cpus[s].append(time.process_time() - c0)
    out_bytes = {
        s: float(
            sum(
                tree_bytes(out / s / t)
                if s != "parquet peer"
                else os.path.getsize(out / "parquet_peer" / f"{t}.parquet")
                for t in TABLES
            )
        )
        for s in systems
    }
    return {
        s: {
            "s": statistics.median(secs[s]),
            "cpu": statistics.median(cpus[s]),
            "bytes": out_bytes[s],
        }
        for s in systems
    }


def scans(out: Path, repeats: int) -> dict[str, dict[str, float]]:
    """CPU seconds per scan and layout (median of interleaved repeats, after one untimed warm-up)."""
    res: dict[str, dict[str, float]] = {}
    for name, (columns, expr) in SCANS.items():
        fns = {}
        for layout in LAYOUTS:
            ds = th.open(str(out / layout / "lineitem"))
            cols = columns or ds.columns
            scan = TensorhouseArrowDataset(ds)

            def drain(scan: Any = scan, cols: list[str] = cols, expr: Any = expr) -> int:
                return sum(b.num_rows for b in scan.to_batches(columns=cols, filter=expr))

            fns[layout] = drain
        counts = {k: f() for k, f in fns.items()}  # warm-up; both layouts give the same rows
        assert len(set(counts.values())) == 1, counts
        times: dict[str, list[float]] = {k: [] for k in fns}
        for r in range(repeats):
            for k in rotations(list(fns), r):
                times[k].append(cpu(fns[k]))
        res[name] = {k: statistics.median(v) for k, v in times.items()}
    return res


def takes(out: Path, repeats: int) -> dict[str, float]:
    rng = np.random.default_rng(0)
    fns = {}
    for layout in LAYOUTS:
        ds = th.open(str(out / layout / "lineitem"))
        rows = rng.integers(0, len(ds), 1000)
        fns[layout] = lambda ds=ds, rows=rows: ds.take(rows, columns=["l_orderkey", "l_comment"])
    times: dict[str, list[float]] = {k: [] for k in fns}
    for r in range(repeats + 1):
        for k in rotations(list(fns), r):
            t = cpu(fns[k])
            if r:
                times[k].append(t)
    return {k: statistics.median(v) for k, v in times.items()}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--sf", type=float, default=0.1)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--smoke", action="store_true", help="SF 0.01, one repeat")
    args = p.parse_args(argv)
    sf, repeats = (0.01, 1) if args.smoke else (args.sf, args.repeats)
    src = generate(sf, DATA_DIR)
    out = DATA_DIR / f"group-files-sf{sf:g}"
    print(f"# Group files vs chunk files, TPC-H SF {sf:g} (load: {os.getloadavg()[0]:.1f})\n")
    ing = ingest(src, out, max(1, min(repeats, 2)))
    peer = ing["parquet peer"]
    print("## Ingest of all tables (th.ingest.parquet; peer: pq.read_table + pq.write_table)\n")
    print("| layout | seconds | vs Parquet | CPU seconds | vs Parquet | MB on disk | vs Parquet |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for s, v in ing.items():
        print(
            f"| {s} | {v['s']:.2f} | {v['s'] / peer['s']:.2f}x | {v['cpu']:.2f} | "
            f"{v['cpu'] / peer['cpu']:.2f}x | {v['bytes'] / 1e6:.1f} | {v['bytes'] / peer['bytes']:.2f}x |"
        )
    print("\n## Python scan of lineitem: process CPU ms (median), group files / chunk files\n")
    print("| scan | group files | chunk files | ratio |")
    print("|---|---:|---:|---:|")
    for name, v in scans(out, repeats).items():
        print(
            f"| {name} | {v['parquet'] * 1e3:.0f} | {v['chunks'] * 1e3:.0f} | "
            f"{v['parquet'] / v['chunks']:.2f}x |"
        )
    tk = takes(out, repeats)
    print(
        f"| take 1,000 random rows (l_orderkey, l_comment) | {tk['parquet'] * 1e3:.0f} | "
        f"{tk['chunks'] * 1e3:.0f} | {tk['parquet'] / tk['chunks']:.2f}x |"
    )
    print(f"\n(load average at the end: {os.getloadavg()[0]:.1f})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
