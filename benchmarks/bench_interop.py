"""Benchmark the Arrow-ecosystem paths against what users would otherwise use, in the same run.

Data (``--rows``, 20,000 by default): ``image`` (32x32 JPEG), ``label`` int32,
``emb`` float32[128], ``boxes`` (0-3 boxes); written to tensorhouse and, with
``th.export``, to one Parquet file (what the Parquet peers read).

| measurement | tensorhouse | peers |
|---|---|---|
| Polars ``select(label).head(5)`` | ``th.polars.scan`` | ``pl.scan_pyarrow_dataset(ad)``, ``pl.scan_parquet`` |
| Polars ``filter(label < 10).select(emb)``, ``select(image).head(5)`` | ``th.polars.scan`` | same |
| export to Parquet (all columns) | ``th.export`` | ``pyarrow.dataset.write_dataset(ad)``, DuckDB ``COPY ... TO`` over the registered dataset |
| pandas ``label, emb`` | ``Dataset.to_pandas`` | ``pa.table(scanner).to_pandas()``, ``pd.read_parquet`` |
| Hugging Face ``label, emb`` | ``th.to_huggingface`` (typed) | ``datasets.Dataset(pa.table(scanner))`` (untyped) |

Reported: median of 5 interleaved repeats (3 with ``--smoke``), and each
peer's time as a ratio of tensorhouse's (above 1: the peer is slower).

Usage::

    .venv/bin/python benchmarks/bench_interop.py            # 20,000 rows
    .venv/bin/python benchmarks/bench_interop.py --smoke    # 500 rows, seconds
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import fmt_seconds, time_interleaved

import tensorhouse as th


def build(root: Path, rows: int) -> str:
    uri = str(root / "pets")
    ds = th.create(
        uri,
        {"image": th.Image("jpeg"), "label": "int32", "emb": th.Embedding(128), "boxes": th.BBox()},
    )
    rng = np.random.default_rng(0)
    step = 5000
    for a in range(0, rows, step):
        n = min(step, rows - a)
        ds.append(
            {
                "image": list(rng.integers(0, 255, (n, 32, 32, 3), dtype=np.uint8)),
                "label": rng.integers(0, 1000, n, dtype=np.int32),
                "emb": rng.random((n, 128), dtype=np.float32),
                "boxes": [rng.random((i % 4, 4), dtype=np.float32) for i in range(n)],
            }
        )
    return uri


def report(name: str, fns: dict[str, Callable[[], Any]], repeats: int) -> None:
    timings = time_interleaved(fns, repeats=repeats)
    ref = timings["tensorhouse"].median
    cells = [
        f"{k} {fmt_seconds(t.median)}" + ("" if k == "tensorhouse" else f" ({t.median / ref:.2f}x)")
        for k, t in timings.items()
    ]
    print(f"| {name} | " + " | ".join(cells) + " |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--smoke", action="store_true", help="500 rows, 3 repeats")
    args = ap.parse_args()
    rows, repeats = (500, 3) if args.smoke else (args.rows, args.repeats)

    import datasets
    import duckdb
    import pandas as pd
    import polars as pl
    import pyarrow as pa
    import pyarrow.dataset as pads

    from tensorhouse.connector.arrow_dataset import arrow_dataset

    datasets.disable_progress_bars()
    root = Path(tempfile.mkdtemp(prefix="bench-interop-"))
    try:
        uri = build(root, rows)
        parquet = str(root / "pets.parquet")
        th.export(uri, parquet)
        ad = arrow_dataset(uri, rowid=False)
        print(
            f"{rows:,} rows; median of {repeats} interleaved repeats; (ratio: peer time / tensorhouse time)\n"
        )
        print("| measurement | systems |\n|---|---|")
        # The lazy frames are built once, as a Polars user keeps one; each collect() plans and scans.
        ours, pyds, pq_lf = (
            th.polars.scan(uri),
            pl.scan_pyarrow_dataset(ad),
            pl.scan_parquet(parquet),
        )
        report(
            "Polars select(label).head(5)",
            {
                "tensorhouse": lambda: ours.select("label").head(5).collect(),
                "scan_pyarrow_dataset": lambda: pyds.select("label").head(5).collect(),
                "scan_parquet": lambda: pq_lf.select("label").head(5).collect(),
            },
            repeats,
        )
        report(
            "Polars filter(label < 10).select(emb)",
            {
                "tensorhouse": lambda: ours.filter(pl.col("label") < 10).select("emb").collect(),
                "scan_pyarrow_dataset": lambda: (
                    pyds.filter(pl.col("label") < 10).select("emb").collect()
                ),
                "scan_parquet": lambda: pq_lf.filter(pl.col("label") < 10).select("emb").collect(),
            },
            repeats,
        )
        report(
            "Polars select(image).head(5)",
            {
                "tensorhouse": lambda: ours.select("image").head(5).collect(),
                "scan_pyarrow_dataset": lambda: pyds.select("image").head(5).collect(),
                "scan_parquet": lambda: pq_lf.select("image").head(5).collect(),
            },
            repeats,
        )
        n = iter(range(1 << 30))
        con = duckdb.connect()
        th.duckdb.register(con, "pets", uri)
        report(
            "export to Parquet, all columns",
            {
                "tensorhouse": lambda: th.export(uri, str(root / f"e{next(n)}.parquet")),
                "write_dataset(ad)": lambda: pads.write_dataset(
                    ad, str(root / f"w{next(n)}"), format="parquet"
                ),
                "duckdb COPY": lambda: con.sql(
                    f"COPY (SELECT * FROM pets) TO "
                    f"'{root / f'c{next(n)}.parquet'}' (FORMAT parquet)"
                ),
            },
            repeats,
        )
        ds = th.open(uri)
        report(
            "pandas label, emb",
            {
                "tensorhouse": lambda: ds.to_pandas(["label", "emb"]),
                "pa.table(scanner).to_pandas": lambda: pa.table(
                    ad.scanner(columns=["label", "emb"])
                ).to_pandas(),
                "pd.read_parquet": lambda: pd.read_parquet(parquet, columns=["label", "emb"]),
            },
            repeats,
        )
        report(
            "Hugging Face label, emb",
            {
                "tensorhouse": lambda: th.to_huggingface(uri, ["label", "emb"]),
                "datasets.Dataset(pa.table)": lambda: datasets.Dataset(
                    pa.table(ad.scanner(columns=["label", "emb"]))
                ),
            },
            repeats,
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
