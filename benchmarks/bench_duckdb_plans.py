"""DuckDB's plans over tensorhouse vs over Parquet: TPC-H join sides from EXPLAIN ANALYZE, side by side.

``bench_tpch.py`` times the queries; this looks at why. For each TPC-H query
it runs ``EXPLAIN ANALYZE`` in DuckDB over the tensorhouse datasets and over
the Parquet files of the same tables, and reports:

- **build rows**: rows hashed by all the plan's hash joins (their build,
  right-hand, inputs). A join that hashes its big side shows here;
- **probe rows**: rows streamed through them. DuckDB's runtime join filters
  shrink Parquet scans before they reach a join; they never reach a Python
  scan, so this column shows what is left to scan speed;
- the ratio tensorhouse / Parquet of both, their totals over all queries,
  and the queries whose hash tables hold more than twice Parquet's rows;
- ``--repeats N``: median wall time of N interleaved runs of each query.

``th`` is the default registration: DuckDB's own ``read_parquet`` over the
datasets' Parquet group files where it can (``connector/native.py``; the
read path of each table is logged). ``--compare-python`` adds the same
datasets registered with ``native=False`` (the Python Arrow scan).
``--compare-push-all`` adds the Python scan that hands the scan
every filter DuckDB offers (the behaviour before
``connector/duckdb_source.py`` kept the filters statistics cannot prune by in
DuckDB's plan), so both can be compared in one run. ``--show 4 10`` prints the
operators of those queries' plans (name, estimated and actual rows, filters).

Data: generated with ``tpchgen-cli`` and cached under
``benchmarks/_data/tpch-sf<SF>/`` as ``bench_tpch.py`` does (the ingested
datasets and Parquet files are reused from it, or made here).

Usage::

    .venv/bin/python benchmarks/bench_duckdb_plans.py --sf 0.1 --compare-push-all --show 4 10 12
    .venv/bin/python benchmarks/bench_duckdb_plans.py --smoke      # SF 0.01, seconds
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import duckdb  # noqa: E402

import tensorhouse as th  # noqa: E402
from benchmarks.bench_tpch import diff_rows, generate, rows_of  # noqa: E402
from benchmarks.common import DATA_DIR, geomean, time_interleaved  # noqa: E402
from benchmarks.tpch_queries import QUERIES, TABLES  # noqa: E402
from tensorhouse.connector import duckdb_source  # noqa: E402

#: A plan hashing this many rows more than twice Parquet's is listed as worse (tiny tables aside).
WORSE_ROWS = 10_000


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def prepare(sf: float, root: Path) -> tuple[Path, Path]:
    """The tensorhouse datasets and Parquet files of every table (made once, shared with bench_tpch)."""
    src = generate(sf, root)
    work = root / f"tpch-sf{sf:g}"
    th_dir, pq_dir = work / "tensorhouse", work / "parquet"
    pq_dir.mkdir(parents=True, exist_ok=True)
    for t in TABLES:
        if not (pq_dir / f"{t}.parquet").exists():
            pq.write_table(pq.read_table(src / f"{t}.parquet"), pq_dir / f"{t}.parquet")
        if not (th_dir / t / "_log").exists():
            log(f"[data] ingest {t}")
            th.ingest.parquet(str(src / f"{t}.parquet"), str(th_dir / t), progress=False)
    return th_dir, pq_dir


def connect(
    th_dir: Path, pq_dir: Path, push_all: bool, python: bool = False
) -> dict[str, duckdb.DuckDBPyConnection]:
    cons = {"th": duckdb.connect(), "parquet": duckdb.connect()}
    for t in TABLES:
        th.duckdb.register(cons["th"], t, str(th_dir / t))
        cons["parquet"].sql(
            f"CREATE VIEW {t} AS SELECT * FROM read_parquet('{pq_dir / t}.parquet')"
        )
        log(f"[read path] {t}: {th.duckdb.read_path(cons['th'], t)}")
    if python:
        cons["th python"] = con = duckdb.connect()
        for t in TABLES:
            th.duckdb.register(con, t, str(th_dir / t), native=False)
    if push_all:
        cons["th push-all"] = con = duckdb.connect()
        saved = duckdb_source.PUSH_WHEN_SKIPPED
        duckdb_source.PUSH_WHEN_SKIPPED = 0.0  # read by each source when it is made
        try:
            for t in TABLES:
                th.duckdb.register(con, t, str(th_dir / t), native=False)
        finally:
            duckdb_source.PUSH_WHEN_SKIPPED = saved
    return cons


# -- plans ------------------------------------------------------------------------------
def plan(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    """The operators of ``EXPLAIN ANALYZE``, roots first, each with ``children``."""
    doc = json.loads(con.sql("EXPLAIN (ANALYZE, FORMAT JSON) " + sql).fetchall()[0][1])

    def node(n: dict[str, Any]) -> dict[str, Any]:
        return {
            "name": n.get("name", "?"),
            "info": n.get("extra_info", {}),
            "rows": int(n.get("intermediate_rows", 0) or 0),
            "children": [node(c) for c in n.get("children", [])],
        }

    return [node(op) for op in (doc["operator"] if isinstance(doc, dict) else doc)]


def _walk(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for n in nodes:
        out.append(n)
        out += _walk(n["children"])
    return out


def join_rows(nodes: list[dict[str, Any]]) -> tuple[int, int]:
    """(build rows, probe rows) summed over the plan's hash joins."""
    joins = [n for n in _walk(nodes) if n["name"] == "HASH_JOIN" and len(n["children"]) == 2]
    return sum(j["children"][1]["rows"] for j in joins), sum(
        j["children"][0]["rows"] for j in joins
    )


def render(nodes: list[dict[str, Any]], depth: int = 0) -> list[str]:
    """One line per operator: name, estimated -> actual rows, and what decides the plan."""
    lines = []
    for n in nodes:
        if n["name"] in ("RESULT_COLLECTOR", "EXPLAIN_ANALYZE", "PROJECTION"):
            lines += render(n["children"], depth)
            continue
        bits = []
        for key in ("Join Type", "Conditions", "Filters", "Dynamic Filters", "Expression"):
            value = n["info"].get(key)
            if value:
                text = " AND ".join(value) if isinstance(value, list) else str(value)
                bits.append(f"{key}: {' '.join(text.split())[:90]}")
        est = n["info"].get("Estimated Cardinality", "?")
        lines.append(f"{'  ' * depth}{n['name']} ~{est} -> {n['rows']:,} rows  " + "; ".join(bits))
        lines += render(n["children"], depth + 1)
    return lines


# -- main ------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sf", type=float, default=0.1, help="TPC-H scale factor (default 0.1)")
    ap.add_argument("--queries", type=int, nargs="*", default=sorted(QUERIES))
    ap.add_argument("--show", type=int, nargs="*", default=[], help="print these queries' plans")
    ap.add_argument("--repeats", type=int, default=0, help="also time each query (interleaved)")
    ap.add_argument(
        "--compare-push-all", action="store_true", help="add the push-every-filter source"
    )
    ap.add_argument(
        "--compare-python",
        action="store_true",
        help="add the Python Arrow scan (native=False) beside the default (native) registration",
    )
    ap.add_argument("--smoke", action="store_true", help="SF 0.01 (CI)")
    ap.add_argument(
        "--data", type=Path, default=DATA_DIR, help="cache directory for generated data"
    )
    args = ap.parse_args(argv)
    if args.smoke:
        args.sf = 0.01
    t_start = time.perf_counter()
    cons = connect(*prepare(args.sf, args.data), args.compare_push_all, args.compare_python)
    systems = list(cons)
    ths = [s for s in systems if s != "parquet"]
    problems: list[str] = []
    stats: dict[int, dict[str, tuple[int, int]]] = {}
    times: dict[int, dict[str, float]] = {}
    for q in args.queries:
        want = rows_of(cons["parquet"].sql(QUERIES[q]).to_arrow_table())
        for s in ths:
            d = diff_rows(rows_of(cons[s].sql(QUERIES[q]).to_arrow_table()), want)
            if d is not None:
                problems.append(f"Q{q} {s}: results differ from Parquet: {d}")
        plans = {s: plan(con, QUERIES[q]) for s, con in cons.items()}
        stats[q] = {s: join_rows(p) for s, p in plans.items()}
        if q in args.show:
            for s, p in plans.items():
                print(f"### Q{q} over {s}\n\n```\n" + "\n".join(render(p)) + "\n```\n")
        if args.repeats:
            fns = {
                s: (lambda con=con, sql=QUERIES[q]: con.sql(sql).fetchall())
                for s, con in cons.items()
            }
            times[q] = {s: t.median for s, t in time_interleaved(fns, repeats=args.repeats).items()}
        log(f"Q{q}: " + ", ".join(f"{s} build {b:,} probe {p:,}" for s, (b, p) in stats[q].items()))

    print(f"# DuckDB {duckdb.__version__} plans, TPC-H SF {args.sf:g}: tensorhouse vs Parquet\n")
    head = ["query"]
    for s in ths:
        head += [f"build rows {s}", "Parquet", "ratio", f"probe rows {s}", "Parquet", "ratio"]
        if args.repeats:
            head += [f"ms {s}", "Parquet", "ratio"]
    print("| " + " | ".join(head) + " |\n|" + "---|" * len(head))
    ratios: dict[str, list[list[float]]] = {s: [[], [], []] for s in ths}  # build, probe, time
    for q in args.queries:
        cells = [f"Q{q}"]
        pb, pp = stats[q]["parquet"]
        for s in ths:
            b, p = stats[q][s]
            rb, rp = (b + 1) / (pb + 1), (p + 1) / (pp + 1)  # +1: a plan without joins is 1.0x
            ratios[s][0].append(rb)
            ratios[s][1].append(rp)
            cells += [f"{b:,}", f"{pb:,}", f"{rb:.2f}x", f"{p:,}", f"{pp:,}", f"{rp:.2f}x"]
            if args.repeats:
                ts, tp = times[q][s], times[q]["parquet"]
                ratios[s][2].append(ts / tp)
                cells += [f"{ts * 1e3:.1f}", f"{tp * 1e3:.1f}", f"{ts / tp:.2f}x"]
        print("| " + " | ".join(cells) + " |")
    cells = ["**all queries**"]
    for s in ths:
        tb, tp = (sum(stats[q][s][i] for q in args.queries) for i in (0, 1))
        pb, pp = (sum(stats[q]["parquet"][i] for q in args.queries) for i in (0, 1))
        cells += [f"**{tb:,}**", f"**{pb:,}**", f"**{tb / max(pb, 1):.2f}x**"]
        cells += [f"**{tp:,}**", f"**{pp:,}**", f"**{tp / max(pp, 1):.2f}x**"]
        if args.repeats:
            cells += ["", "", f"**{geomean(ratios[s][2]):.2f}x** (geomean)"]
    print("| " + " | ".join(cells) + " |")
    for s in ths:
        worse = [
            f"Q{q}"
            for q in args.queries
            if stats[q][s][0] > 2 * stats[q]["parquet"][0] + WORSE_ROWS
        ]
        print(
            f"\n{s}: queries hashing more than 2x Parquet's rows (and {WORSE_ROWS:,} more): "
            + (", ".join(worse) or "none")
        )
    if problems:
        print("\n## Differences\n")
        for p in problems:
            print(f"- {p}")
    log(f"[done] {time.perf_counter() - t_start:.1f} s")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
