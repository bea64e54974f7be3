"""Benchmark statistics pruning: tensorhouse's filter tree vs Arrow's simplifier and Parquet row groups.

The same rows (``--rows``, 1M by default; sorted ``id`` int64, random
``score`` float64 with a few NaN, sorted ``day`` date32, random ``tag``
string) are written to tensorhouse (chunks of ``--chunk-rows`` rows) and to a
Parquet file with row groups of the same size. For each filter, the planners
decide which row ranges may hold matches, before reading any data:

- **tensorhouse**: ``TensorhouseArrowDataset.scanner(filter=...).ranges``
  (``connector/pruning.py``: the filter's tree evaluated on chunk min/max);
- **arrow-simplifier**: the approach tensorhouse used before, Arrow's own
  expression simplifier over one dummy fragment per chunk whose
  ``partition_expression`` states the chunk's min/max (the same statistics);
- **parquet**: ``pyarrow.dataset`` splitting the Parquet file by row group
  with the filter (Arrow's Parquet statistics pruning).

Reported per filter: the median planning time of 5 interleaved repeats (after
a warm-up) as a ratio of Parquet's, and the fraction of rows each planner
keeps (lower is better; all planners are exact about which rows match, the
fraction only says how much is read). tensorhouse's planning is timed on a
fresh handle each repeat, so no cache of the filter's tree hides its cost.

Target: tensorhouse keeps no more rows than either peer on every filter, and
plans within 2x of Parquet's time.

Usage::

    .venv/bin/python benchmarks/bench_pruning.py            # 1M rows
    .venv/bin/python benchmarks/bench_pruning.py --smoke    # tiny sizes, seconds
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import tensorhouse as th  # noqa: E402
from tensorhouse.connector import pruning  # noqa: E402
from tensorhouse.connector.arrow_dataset import TensorhouseArrowDataset  # noqa: E402
from tensorhouse.connector.filters import clear_caches  # noqa: E402

DAY0 = dt.date(2020, 1, 1)


def make_table(rows: int, seed: int = 0) -> pa.Table:
    rng = np.random.default_rng(seed)
    score = rng.uniform(0, 100, rows)
    score[rng.integers(0, rows, max(1, rows // 100_000))] = np.nan
    tags = np.array([f"t{k:04d}" for k in range(10_000)])
    return pa.table(
        {
            "id": pa.array(np.arange(rows, dtype=np.int64)),
            "score": pa.array(score),
            "day": pa.array(
                [DAY0 + dt.timedelta(days=int(d)) for d in np.arange(rows) * 1000 // rows],
                pa.date32(),
            ),
            "tag": pa.array(tags[rng.integers(0, len(tags), rows)]),
        }
    )


def filters(rows: int) -> dict[str, pc.Expression]:
    idx, day = pc.field("id"), pc.field("day")
    return {
        "id < 1%": idx < rows // 100,
        "id in 3 values": idx.isin([5, rows // 2, rows - 3]),
        "id range OR score": ((idx >= rows // 2) & (idx < rows // 2 + 1000))
        | (pc.field("score") > 200),
        "NOT id >= 10%": ~(idx >= rows // 10),
        "day = one date": day == pa.scalar(DAY0 + dt.timedelta(days=500)),
        "tag = (random)": pc.field("tag") == "t0042",
        "id < 5% AND tag": (idx < rows // 20) & (pc.field("tag") >= "t5000"),
    }


def arrow_simplifier(
    schema: pa.Schema, stats: dict[str, pruning.ColumnStats]
) -> Callable[[pc.Expression], float]:
    """The pre-tree planner: one dummy fragment per chunk range, guarantees as partition expressions."""
    first = next(iter(stats.values()))
    starts = first.starts
    guarantees = []
    for i in range(len(starts) - 1):
        parts = []
        for name, cs in stats.items():
            s = cs.stats[i] or {}
            if s.get("has_nan") or s.get("min") is None or s.get("max") is None:
                continue
            from tensorhouse.format.chunks.columnar import stat_scalar

            bound = (pc.field(name) >= stat_scalar(s["min"], cs.type)) & (
                pc.field(name) <= stat_scalar(s["max"], cs.type)
            )
            parts.append(bound if not s.get("null_count") else bound | pc.field(name).is_null())
        g = pc.scalar(True)
        for p in parts:
            g = g & p
        guarantees.append(g)
    sizes = np.diff(starts)

    def plan(expr: pc.Expression) -> float:
        dummy = pads.FileSystemDataset.from_paths(
            [f"/g/{i}" for i in range(len(guarantees))],
            schema=schema,
            format=pads.ParquetFileFormat(),
            filesystem=pafs.LocalFileSystem(),
            partitions=guarantees,
        )
        kept = [int(f.path.rsplit("/", 1)[1]) for f in dummy.get_fragments(filter=expr)]
        return float(sizes[kept].sum()) / float(starts[-1])

    return plan


def elapsed_ms(fn: Callable[[pc.Expression], float], expr: pc.Expression) -> float:
    t0 = time.perf_counter()
    fn(expr)
    return (time.perf_counter() - t0) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--chunk-rows", type=int, default=8192)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument(
        "--smoke", action="store_true", help="tiny sizes, one repeat: a quick check that it runs"
    )
    args = ap.parse_args()
    if args.smoke:
        args.rows, args.chunk_rows, args.repeats = 20_000, 1024, 1
    table = make_table(args.rows)
    with tempfile.TemporaryDirectory() as tmp:
        ds = th.create(
            f"{tmp}/th", {"id": "int64", "score": "float64", "day": "date32", "tag": "string"}
        )
        for a in range(0, args.rows, args.chunk_rows):  # one fragment, one chunk per append
            ds.append(table.slice(a, args.chunk_rows))
        pq.write_table(table, f"{tmp}/t.parquet", row_group_size=args.chunk_rows)
        parquet = pads.dataset(f"{tmp}/t.parquet", format="parquet")
        pq_file = next(iter(parquet.get_fragments()))
        pq_sizes = [rg.num_rows for rg in pq_file.row_groups]

        def plan_parquet(expr: pc.Expression) -> float:
            kept = [rg.num_rows for f in pq_file.split_by_row_group(expr) for rg in f.row_groups]
            return sum(kept) / sum(pq_sizes)

        probe = TensorhouseArrowDataset(th.open(f"{tmp}/th"))

        def plan_th(expr: pc.Expression) -> float:
            clear_caches()  # time reading and checking the tree too, as a new query would
            ranges = probe.scanner(filter=expr).ranges
            return sum(b - a for a, b in ranges) / args.rows

        reader = probe.dataset.reader
        stats = {}
        for n in table.column_names:
            idx = reader.index(n)
            stats[n] = pruning.ColumnStats(
                probe.schema.field(n).type,
                idx.starts,
                [r.stats if r is not None else None for r in idx.refs],
            )
        plan_simplifier = arrow_simplifier(probe.schema, stats)
        systems = {
            "tensorhouse": plan_th,
            "arrow-simplifier": plan_simplifier,
            "parquet": plan_parquet,
        }
        print(
            f"{args.rows:,} rows, {len(pq_sizes)} chunks / row groups of {args.chunk_rows:,} rows"
        )
        print(f"{'filter':<20}" + "".join(f"{s:>30}" for s in systems))
        worse = []
        for name, expr in filters(args.rows).items():
            kept = {s: fn(expr) for s, fn in systems.items()}  # warm-up, and the fractions
            times: dict[str, list[float]] = {s: [] for s in systems}
            for _ in range(args.repeats):  # interleaved
                for s, fn in systems.items():
                    times[s].append(elapsed_ms(fn, expr))
            med = {s: statistics.median(v) for s, v in times.items()}
            cells = [
                f"{med[s]:8.2f} ms {med[s] / med['parquet']:5.2f}x kept {kept[s]:6.1%}"
                for s in systems
            ]
            print(f"{name:<20}" + "".join(f"{c:>30}" for c in cells))
            if kept["tensorhouse"] > min(kept["arrow-simplifier"], kept["parquet"]) + 1e-9:
                worse.append(name)
        if worse:
            print(f"tensorhouse keeps more rows than a peer on: {', '.join(worse)}")
        want = table.filter(filters(args.rows)["id < 1%"]).num_rows
        got = probe.to_table(filter=filters(args.rows)["id < 1%"]).num_rows
        if got != want:
            raise SystemExit(f"pruned scan returned {got} rows, Arrow's filter {want}")


if __name__ == "__main__":
    main()
