"""Benchmark SQL over light columns: tensorhouse vs Parquet vs Lance, in DuckDB and DataFusion.

Data (``--rows``, 1M by default; generated once with a seeded numpy and cached
under ``benchmarks/_data/sql_<N>/``): ``id`` int64 (sorted), ``label`` int32
(0..999), ``score`` float32, ``tag`` string (``t0000``..``t9999``, random),
``embedding`` float32[128], written to
tensorhouse (1 MiB chunks, so chunk statistics prune), to Parquet (row
groups of 64k rows) and to Lance; plus a small Parquet ``meta`` table
(label -> name, grp) for a join.

Queries, each on DuckDB and DataFusion over each of the three formats:

1. ``count(*) WHERE id < 10000 AND label = 7`` (selective filter);
2. ``label, count(*), avg(score) GROUP BY label``;
3. top-10 cosine against a fixed query vector;
4. a join with ``meta`` grouped by ``meta.grp``;
5.-7. string equality, ``IN`` and prefix ``LIKE`` on ``tag``.

Peak memory: each of DuckDB-over-tensorhouse and DuckDB-over-Parquet runs the
group-by and the join once in a fresh process; reported is that process's
peak RSS during the query (``VmHWM`` after resetting it once imports and
registration are done) and its growth over the RSS before the query
(``--no-memory`` skips it).

Reported: median ms of 5 interleaved repeats (after 1 warm-up), each time as
a ratio of DuckDB-on-Parquet's, and the bytes tensorhouse reads per query
(through a counting store wrapper, counting ``map()`` too: local chunks are
memory-mapped), measured on a fresh handle so no cache hides a read.

Targets: DuckDB over tensorhouse within 1.3x of DuckDB over Parquet on each
query and faster than DuckDB over Lance; scalar-only queries read < 1% of the
dataset's bytes; peak RSS within 1.5x of Parquet's.

Usage::

    .venv/bin/python benchmarks/bench_sql.py             # 1M rows
    .venv/bin/python benchmarks/bench_sql.py --smoke     # tiny sizes, seconds
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import datafusion  # noqa: E402
import duckdb  # noqa: E402
import lance  # noqa: E402

import tensorhouse as th  # noqa: E402
from benchmarks.common import DATA_DIR, Timing, time_interleaved, tree_bytes  # noqa: E402
from tensorhouse.format.dataset import Dataset  # noqa: E402
from tensorhouse.format.log import Log  # noqa: E402
from tensorhouse.storage import ForwardingStore, LocalStore  # noqa: E402
from tensorhouse.storage.base import Store  # noqa: E402

DIM = 128
SEED = 0
GEN_VERSION = 3  # 3: tabular columns in group files (format of the group-files merge)
REFERENCE = "duckdb/parquet"
#: Each engine over tensorhouse against the same engine over Parquet (the issue's targets).
SAME_ENGINE = [("df/th", "df/parquet")]
SYSTEMS = ["duckdb/th", "duckdb/parquet", "duckdb/lance", "df/th", "df/parquet", "df/lance"]


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# -- a store that counts bytes read ---------------------------------------------------
class CountingStore(ForwardingStore):
    """Delegates to ``inner``; counts the bytes of get / get_range / get_ranges / map.

    ``tag`` makes the URI unique: tensorhouse keeps chunk headers and mappings in
    process-wide caches keyed by URI, which would otherwise hide reads.
    """

    def __init__(self, inner: Store, tag: str = "") -> None:
        super().__init__(inner, f"{inner.uri}#{tag}" if tag else None)
        self.bytes_read = 0
        self._lock = threading.Lock()

    def _add(self, n: int) -> None:
        with self._lock:  # engines scan on several threads
            self.bytes_read += n

    def get(self, key: str) -> bytes:
        data = self.inner.get(key)
        self._add(len(data))
        return data

    def get_range(self, key: str, start: int, length: int) -> bytes:
        data = self.inner.get_range(key, start, length)
        self._add(len(data))
        return data

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        out = self.inner.get_ranges(key, ranges)
        self._add(sum(len(b) for b in out))
        return out

    def map(self, key: str) -> memoryview | None:
        view = self.inner.map(key)
        if view is not None:
            self._add(view.nbytes)
        return view


def counted_dataset(path: Path, tag: str) -> tuple[Dataset, CountingStore]:
    store = CountingStore(LocalStore(str(path)), tag)
    lg = Log(store)
    return Dataset(store, lg.snapshot(), log=lg), store


# -- data -----------------------------------------------------------------------------
def make_data(rows: int) -> Path:
    d = DATA_DIR / f"sql_{rows}"
    done = d / "done.json"
    if done.exists() and json.loads(done.read_text()).get("v") == GEN_VERSION:
        return d
    if d.exists():
        shutil.rmtree(d)
    d.mkdir(parents=True)
    t0 = time.perf_counter()
    log(f"[data] generating {rows:,} rows into {d} ...")
    rng = np.random.default_rng(SEED)
    ids = np.arange(rows, dtype=np.int64)
    labels = rng.integers(0, 1000, size=rows, dtype=np.int32)
    scores = rng.random(rows, dtype=np.float32)
    tags = np.char.add("t", np.char.zfill(rng.integers(0, 10_000, size=rows).astype(str), 4))
    emb = rng.standard_normal((rows, DIM), dtype=np.float32)
    emb_arrow = pa.FixedSizeListArray.from_arrays(pa.array(emb.reshape(-1)), DIM)
    table = pa.table(
        {
            "id": ids,
            "label": labels,
            "score": scores,
            "tag": pa.array(tags.tolist()),
            "embedding": emb_arrow,
        }
    )

    ds = th.create(
        str(d / "th"),
        {
            "id": "int64",
            "label": "int32",
            "score": "float32",
            "tag": th.Text(),
            "embedding": th.Embedding(DIM),
        },
        chunk_bytes=1 << 20,
    )
    ds.append(table)
    pq.write_table(table, d / "t.parquet", row_group_size=65536)
    lance.write_dataset(table, str(d / "lance"))
    meta = pa.table(
        {
            "label": pa.array(np.arange(1000, dtype=np.int32)),
            "name": [f"class_{i}" for i in range(1000)],
            "grp": [f"g{i % 10}" for i in range(1000)],
        }
    )
    pq.write_table(meta, d / "meta.parquet")
    done.write_text(json.dumps({"v": GEN_VERSION, "rows": rows}))
    log(f"[data] done in {time.perf_counter() - t0:.1f} s")
    return d


# -- queries ----------------------------------------------------------------------------
Q_FILTER = "SELECT count(*) FROM t WHERE id < 10000 AND label = 7"
Q_GROUP = "SELECT label, count(*), avg(score) FROM t GROUP BY label"
Q_JOIN = "SELECT m.grp, count(*) FROM t JOIN meta m USING (label) GROUP BY m.grp"
# Parquet stores the FixedSizeList as a LIST, which DuckDB reads as FLOAT[]: cast (a no-op for the others).
Q_COS_DUCK = (
    "SELECT id, array_cosine_similarity(embedding::FLOAT[128], $q::FLOAT[128]) AS s FROM t "
    "ORDER BY s DESC LIMIT 10"
)
Q_STR_EQ = "SELECT count(*) FROM t WHERE tag = 't0042'"
Q_STR_IN = "SELECT count(*) FROM t WHERE tag IN ('t0042', 't0777', 't9999')"
Q_LIKE = "SELECT count(*) FROM t WHERE tag LIKE 't004%'"
QUERIES = [
    "1 filter id<10000 & label=7",
    "2 group by label",
    "3 top-10 cosine",
    "4 join meta",
    "5 tag = const",
    "6 tag IN (3)",
    "7 tag LIKE prefix",
]
PLAIN = {
    QUERIES[0]: Q_FILTER,
    QUERIES[1]: Q_GROUP,
    QUERIES[3]: Q_JOIN,
    QUERIES[4]: Q_STR_EQ,
    QUERIES[5]: Q_STR_IN,
    QUERIES[6]: Q_LIKE,
}
SCALAR_ONLY = set(PLAIN)
#: Queries whose peak memory is measured (in fresh processes).
MEMORY_QUERIES = [QUERIES[1], QUERIES[3]]


def duck_fns(con: duckdb.DuckDBPyConnection, q: np.ndarray) -> dict[str, Callable[[], Any]]:
    qlist = q.tolist()
    out: dict[str, Callable[[], Any]] = {
        name: (lambda sql=sql: con.sql(sql).fetchall()) for name, sql in PLAIN.items()
    }
    out[QUERIES[2]] = lambda: con.execute(Q_COS_DUCK, {"q": qlist}).fetchall()
    return {k: out[k] for k in QUERIES}


def df_fns(ctx: datafusion.SessionContext, q: np.ndarray) -> dict[str, Callable[[], Any]]:
    out: dict[str, Callable[[], Any]] = {
        name: (lambda sql=sql: ctx.sql(sql).to_arrow_table()) for name, sql in PLAIN.items()
    }
    out[QUERIES[2]] = lambda: th.sql.nearest(ctx, "t", "embedding", q, k=10, columns=["id"])
    return {k: out[k] for k in QUERIES}


def duck_con(d: Path, kind: str, dataset: Dataset | None = None) -> duckdb.DuckDBPyConnection:
    con = duckdb.connect()
    con.execute(f"CREATE VIEW meta AS SELECT * FROM read_parquet('{d / 'meta.parquet'}')")
    if kind == "th":
        th.duckdb.register(con, "t", dataset if dataset is not None else str(d / "th"))
    elif kind == "parquet":
        con.execute(f"CREATE VIEW t AS SELECT * FROM read_parquet('{d / 't.parquet'}')")
    else:
        con.register("t", lance.dataset(str(d / "lance")))
    return con


def df_ctx(d: Path, kind: str) -> datafusion.SessionContext:
    ctx = datafusion.SessionContext()
    ctx.register_parquet("meta", str(d / "meta.parquet"))
    if kind == "th":
        th.datafusion.register(ctx, "t", str(d / "th"))
    elif kind == "parquet":
        ctx.register_parquet("t", str(d / "t.parquet"))
    else:
        ctx.register_dataset("t", lance.dataset(str(d / "lance")))
    return ctx


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--smoke", action="store_true", help="tiny sizes (20k rows, 2 repeats)")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-RSS runs")
    ap.add_argument(
        "--memory-child", nargs=3, metavar=("DIR", "KIND", "QUERY"), help=argparse.SUPPRESS
    )
    args = ap.parse_args(argv)
    if args.memory_child:
        return memory_child(*args.memory_child)
    rows = 20_000 if args.smoke else args.rows
    repeats = 2 if args.smoke else args.repeats

    d = make_data(rows)
    q = np.random.default_rng(SEED + 1).standard_normal(DIM).astype(np.float32)

    fns: dict[str, dict[str, Callable[[], Any]]] = {}
    notes: list[str] = []
    for kind in ("th", "parquet", "lance"):
        fns[f"duckdb/{kind}"] = duck_fns(duck_con(d, kind), q)
        try:
            ctx = df_ctx(d, kind)
            f = df_fns(ctx, q)
            f[QUERIES[0]]()  # fail here, not mid-measurement
            fns[f"df/{kind}"] = f
        except Exception as err:  # report any engine failure and go on
            notes.append(
                f"df/{kind} skipped: {type(err).__name__}: {str(err).splitlines()[0][:160]}"
            )
            log(notes[-1])

    systems = [s for s in SYSTEMS if s in fns]
    timings: dict[str, dict[str, Timing]] = {}
    results: dict[str, dict[str, Any]] = {}
    cpu: dict[str, dict[str, list[float]]] = {}
    for qname in QUERIES:
        per = {s: fns[s][qname] for s in systems}
        results[qname] = {s: fn() for s, fn in per.items()}  # warm-up
        cpu[qname] = {s: [] for s in systems}
        timings[qname] = time_interleaved(
            {s: _cpu_timed(fn, cpu[qname][s]) for s, fn in per.items()}, repeats=repeats
        )
        log(
            f"[{qname}] "
            + ", ".join(f"{s} {t.median * 1e3:.1f} ms" for s, t in timings[qname].items())
        )

    # sanity: every system agrees on query 1
    counts = {s: _first_int(results[QUERIES[0]][s]) for s in systems}
    if len(set(counts.values())) != 1:
        notes.append(f"WARNING: query 1 counts differ: {counts}")

    # bytes read by DuckDB over tensorhouse, fresh handle per query
    total = tree_bytes(d / "th")
    bytes_read: dict[str, int] = {}
    for i, qname in enumerate(QUERIES):
        ds, store = counted_dataset(d / "th", f"counted-{i}")
        base = store.bytes_read  # log replay
        res = duck_fns(duck_con(d, "th", ds), q)[qname]()
        bytes_read[qname] = store.bytes_read - base
        if sorted(res) != sorted(results[qname]["duckdb/th"]):
            notes.append(f"WARNING: {qname}: the counted run returned a different result")

    print(report(timings, systems, bytes_read, total, rows, repeats))
    print(cpu_report(cpu))
    if not args.no_memory:
        print(memory_report(d))
    for n in notes:
        print(f"\n- {n}")
    return 0


# -- peak memory, one fresh process per (system, query) ------------------------------------
def memory_child(d: str, kind: str, qname: str) -> int:
    con = duck_con(Path(d), kind)
    con.sql("SELECT 1").fetchall()
    base = _status("VmRSS")
    # Reset the high-water mark (Linux: clear_refs 5) so imports do not count, only the query.
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    con.sql(PLAIN[qname]).fetchall()
    print(json.dumps({"peak": _status("VmHWM"), "base": base}))
    return 0


def _status(key: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {key} in /proc/self/status")


def memory_report(d: Path) -> str:
    import subprocess

    lines = [
        "",
        "### Peak RSS of one query in a fresh process (DuckDB)",
        "",
        "| query | th peak MB | parquet peak MB | th growth MB | parquet growth MB | peak ratio | target <= 1.5x |",
        "|---|---|---|---|---|---|---|",
    ]
    for qname in MEMORY_QUERIES:
        got = {}
        for kind in ("th", "parquet"):
            out = subprocess.run(
                [sys.executable, __file__, "--memory-child", str(d), kind, qname],
                capture_output=True,
                text=True,
                check=True,
            )
            got[kind] = json.loads(out.stdout.strip().splitlines()[-1])
        r = got["th"]["peak"] / got["parquet"]["peak"]
        cells = [f"{got[k]['peak'] / 1e6:,.0f}" for k in ("th", "parquet")]
        cells += [f"{(got[k]['peak'] - got[k]['base']) / 1e6:,.0f}" for k in ("th", "parquet")]
        lines.append(
            f"| {qname} | "
            + " | ".join(cells)
            + f" | {r:.2f}x | {'met' if r <= 1.5 else 'MISSED'} |"
        )
    return "\n".join(lines)


def _cpu_timed(fn: Callable[[], Any], into: list[float]) -> Callable[[], Any]:
    """``fn``, recording the process CPU time (all threads: the engine's and tensorhouse's) of each call."""

    def f() -> Any:
        c0 = time.process_time()
        out = fn()
        into.append(time.process_time() - c0)
        return out

    return f


def cpu_report(cpu: dict[str, dict[str, list[float]]]) -> str:
    """Process CPU time per query, as a ratio of DuckDB-over-Parquet's: the work each system
    does, which other people's load on a shared machine stretches less than wall time."""
    systems = [s for s in SYSTEMS if all(s in v for v in cpu.values())]
    others = [s for s in systems if s != REFERENCE]
    same_engine = [p for p in SAME_ENGINE if p[0] in systems and p[1] in systems]
    lines = [
        "",
        f"### Process CPU time (median ms; ratio to {REFERENCE}, and each engine to itself over Parquet)",
        "",
        "| query | "
        + " | ".join(f"{s} CPU ms" for s in systems)
        + " | "
        + " | ".join(f"{s} / {REFERENCE}" for s in others)
        + "".join(f" | {a} / {b}" for a, b in same_engine)
        + " |",
        "|" + "|".join(["---"] * (1 + len(systems) + len(others) + len(same_engine))) + "|",
    ]
    for qname, per in cpu.items():
        med = {s: statistics.median(per[s]) for s in systems}
        ref = max(med[REFERENCE], 1e-6)
        lines.append(
            f"| {qname} | "
            + " | ".join(f"{med[s] * 1e3:.1f}" for s in systems)
            + " | "
            + " | ".join(f"{med[s] / ref:.2f}x" for s in others)
            + "".join(f" | {med[a] / max(med[b], 1e-6):.2f}x" for a, b in same_engine)
            + " |"
        )
    return "\n".join(lines)


def _first_int(res: Any) -> int:
    if isinstance(res, pa.Table):
        return int(res.column(0)[0].as_py())
    return int(res[0][0])


def report(
    timings: dict[str, dict[str, Timing]],
    systems: list[str],
    bytes_read: dict[str, int],
    total: int,
    rows: int,
    repeats: int,
) -> str:
    others = [s for s in systems if s != REFERENCE]
    same_engine = [p for p in SAME_ENGINE if p[0] in systems and p[1] in systems]
    head = [
        "query",
        *(f"{s} ms" for s in systems),
        *(f"{s} / {REFERENCE}" for s in others),
        *(f"{a} / {b}" for a, b in same_engine),
        "th bytes read (% of dataset)",
    ]
    lines = [
        f"### SQL over {rows:,} rows (median of {repeats}, after 1 warm-up; tensorhouse dataset "
        f"{total / 1e6:,.1f} MB)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "|".join(["---"] * len(head)) + "|",
    ]
    verdicts = ["", "| target | value | met |", "|---|---|---|"]
    for qname in QUERIES:
        t = timings[qname]
        ref = t[REFERENCE].median
        cells = [f"{t[s].median * 1e3:.1f}" for s in systems]
        cells += [f"{t[s].median / ref:.2f}x" for s in others]
        cells += [f"{t[a].median / t[b].median:.2f}x" for a, b in same_engine]
        b = bytes_read[qname]
        cells.append(f"{b / 1e6:,.2f} MB ({100 * b / total:.2f}%)")
        lines.append("| " + " | ".join([qname, *cells]) + " |")
        r = t["duckdb/th"].median / ref
        verdicts.append(
            f"| {qname}: duckdb/th <= 1.3x duckdb/parquet | {r:.2f}x | {'met' if r <= 1.3 else 'MISSED'} |"
        )
        if "duckdb/lance" in t:
            rl = t["duckdb/th"].median / t["duckdb/lance"].median
            verdicts.append(
                f"| {qname}: duckdb/th faster than duckdb/lance | {rl:.2f}x | "
                f"{'met' if rl < 1 else 'MISSED'} |"
            )
        if qname in SCALAR_ONLY:
            pct = 100 * b / total
            verdicts.append(
                f"| {qname}: th bytes < 1% of dataset | {pct:.2f}% | {'met' if pct < 1 else 'MISSED'} |"
            )
    return "\n".join(lines + verdicts)


if __name__ == "__main__":
    sys.exit(main())
