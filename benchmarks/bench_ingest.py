"""Ingestion benchmark (issue 7): an ImageNet-style folder of JPEGs into each format.

Input: ``--n`` (10,000) realistic 256x256 scenes (``tensorhouse.synth.scene``)
as q90 JPEG files in ``root/<class>/<file>.jpg`` (100 classes), generated once
and cached under ``benchmarks/_data/ingest_imagefolder/`` (gitignored).
Every system produces the same rows: the JPEG bytes as they are, the label
(folder index) and the relative path; every system reads the files itself.

| system        | how                                                                          |
|---------------|------------------------------------------------------------------------------|
| tensorhouse   | ``th.ingest.imagefolder`` (batched idempotent commits, threaded reads)       |
| deeplake      | ``deeplake.create`` with an ``Image(sample_compression="jpeg")`` column, ``ds.append`` of column dicts of 1,024 rows (bytes are stored as given), one ``commit`` |
| lance         | ``lance.write_dataset`` of a RecordBatchReader of 1,024-row batches (binary images) |
| webdataset    | ``webdataset.TarWriter``: one ``.jpg`` + ``.cls`` sample per image, one tar  |
| parquet       | ``pyarrow.parquet.ParquetWriter``, 1,024-row batches, images as binary       |

The peers read their files on a thread pool of the same width as
tensorhouse's (their fastest way here; a plain loop is slower). Timed twice:
as the call returns, and durable (after an fsync of everything written;
tensorhouse fsyncs its chunks and commits itself). Medians of ``--repeats`` runs.

Run:
    .venv/bin/python benchmarks/bench_ingest.py             # 10,000 images, 3 repeats, ~2 minutes
    .venv/bin/python benchmarks/bench_ingest.py --smoke     # 500 images, 1 repeat
    .venv/bin/python benchmarks/bench_ingest.py --profile   # also cProfile tensorhouse's ingest
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import os
import platform
import pstats
import shutil
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import deeplake
import lance
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import webdataset as wds

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import tensorhouse as th  # noqa: E402
from benchmarks.common import (  # noqa: E402
    DATA_DIR,
    Row,
    Timing,
    fsync_tree,
    markdown_table,
    target_table,
    tree_bytes,
)
from tensorhouse.ingest.engine import default_workers  # noqa: E402
from tensorhouse.synth import scene  # noqa: E402

SYSTEMS = ("tensorhouse", "deeplake", "lance", "webdataset", "parquet")
NUM_CLASSES = 100
BATCH = 1024


def log(msg: str) -> None:
    print(f"[bench_ingest] {msg}", file=sys.stderr, flush=True)


# -- input ----------------------------------------------------------------------------
def image_folder(n: int, *, size: int = 256, quality: int = 90, seed: int = 0) -> Path:
    """Generate (once) ``n`` JPEG files in the ImageNet layout; returns the root."""
    import simplejpeg

    root = DATA_DIR / "ingest_imagefolder" / f"n{n}-s{size}-q{quality}-seed{seed}"
    done = root / "done.json"
    if done.exists():
        return root
    log(f"generating {n} {size}x{size} q{quality} JPEGs into {root} ...")
    t0 = time.perf_counter()
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, NUM_CLASSES, n)
    for c in range(NUM_CLASSES):
        (root / f"class_{c:03d}").mkdir(parents=True, exist_ok=True)

    def write(i: int) -> None:
        img = scene(np.random.default_rng([seed, i]), size, size)[0]
        data = simplejpeg.encode_jpeg(img, quality=quality, colorspace="RGB")
        (root / f"class_{labels[i]:03d}" / f"{i:07d}.jpg").write_bytes(data)

    with ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as ex:
        list(ex.map(write, range(n)))
    done.write_text(json.dumps({"n": n, "seconds": time.perf_counter() - t0}))
    log(f"generated in {time.perf_counter() - t0:.1f} s")
    return root


def list_folder(root: Path) -> tuple[list[str], list[int]]:
    """Relative paths (sorted) and labels, the way every peer enumerates the folder."""
    classes = sorted(d.name for d in root.iterdir() if d.is_dir())
    rels, labels = [], []
    for i, c in enumerate(classes):
        for name in sorted(os.listdir(root / c)):
            rels.append(f"{c}/{name}")
            labels.append(i)
    order = sorted(range(len(rels)), key=rels.__getitem__)
    return [rels[i] for i in order], [labels[i] for i in order]


def read_batches(
    root: Path, pool: ThreadPoolExecutor
) -> Iterator[tuple[list[bytes], list[int], list[str]]]:
    """(images, labels, paths) per batch of ``BATCH`` files, files read on ``pool``."""
    rels, labels = list_folder(root)

    def read(rel: str) -> bytes:
        with open(root / rel, "rb", buffering=0) as f:
            return f.read()

    for a in range(0, len(rels), BATCH):
        part = rels[a : a + BATCH]
        yield list(pool.map(read, part, chunksize=32)), labels[a : a + BATCH], part


# -- systems --------------------------------------------------------------------------
def run_tensorhouse(root: Path, out: Path, pool: ThreadPoolExecutor) -> None:
    th.ingest.imagefolder(str(root), str(out), progress=False)


def run_deeplake(root: Path, out: Path, pool: ThreadPoolExecutor) -> None:
    ds = deeplake.create(
        str(out),
        schema={
            "image": deeplake.types.Image(sample_compression="jpeg"),
            "label": deeplake.types.Int32(),
            "path": deeplake.types.Text(),
        },
    )
    for imgs, labels, paths in read_batches(root, pool):
        ds.append({"image": imgs, "label": np.asarray(labels, np.int32), "path": paths})
    ds.commit()


def _arrow_batches(root: Path, pool: ThreadPoolExecutor) -> Iterator[pa.RecordBatch]:
    for imgs, labels, paths in read_batches(root, pool):
        yield pa.record_batch(
            [pa.array(imgs, pa.binary()), pa.array(labels, pa.int32()), pa.array(paths)],
            names=["image", "label", "path"],
        )


ARROW_SCHEMA = pa.schema([("image", pa.binary()), ("label", pa.int32()), ("path", pa.string())])


def run_lance(root: Path, out: Path, pool: ThreadPoolExecutor) -> None:
    reader = pa.RecordBatchReader.from_batches(ARROW_SCHEMA, _arrow_batches(root, pool))
    lance.write_dataset(reader, str(out))


def run_webdataset(root: Path, out: Path, pool: ThreadPoolExecutor) -> None:
    out.mkdir(parents=True)
    with wds.TarWriter(str(out / "shard-000000.tar")) as sink:
        for imgs, labels, paths in read_batches(root, pool):
            for img, label, path in zip(imgs, labels, paths, strict=True):
                sink.write({"__key__": path.rsplit(".", 1)[0], "jpg": img, "cls": label})


def run_parquet(root: Path, out: Path, pool: ThreadPoolExecutor) -> None:
    out.mkdir(parents=True)
    with pq.ParquetWriter(str(out / "part-0.parquet"), ARROW_SCHEMA) as w:
        for batch in _arrow_batches(root, pool):
            w.write_batch(batch)


RUNNERS: dict[str, Callable[[Path, Path, ThreadPoolExecutor], None]] = {
    "tensorhouse": run_tensorhouse,
    "deeplake": run_deeplake,
    "lance": run_lance,
    "webdataset": run_webdataset,
    "parquet": run_parquet,
}


def check_rows(system: str, out: Path, n: int) -> None:
    """Every system wrote all rows (a fast wrong benchmark is worse than a slow one)."""
    if system == "tensorhouse":
        got = len(th.open(str(out)))
    elif system == "deeplake":
        got = len(deeplake.open_read_only(str(out)))
    elif system == "lance":
        got = lance.dataset(str(out)).count_rows()
    elif system == "parquet":
        got = pq.ParquetFile(str(out / "part-0.parquet")).metadata.num_rows
    else:
        import tarfile

        with tarfile.open(out / "shard-000000.tar") as t:
            got = sum(1 for m in t.getmembers() if m.name.endswith(".jpg"))
    if got != n:
        raise AssertionError(f"{system} wrote {got} rows, expected {n}")


# -- run ------------------------------------------------------------------------------
def run(args: argparse.Namespace) -> None:
    n = 500 if args.smoke else args.n
    repeats = 1 if args.smoke else args.repeats
    root = image_folder(n)
    input_bytes = tree_bytes(root) - (root / "done.json").stat().st_size
    work = DATA_DIR / f"work-bench_ingest-{n}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    systems = [s for s in SYSTEMS if s in args.systems]
    plain = Row("ingest, as returned", rows=n)
    durable = Row("ingest, durable (fsync)", rows=n)
    # CPU seconds of the whole process (every thread, Rust ones included): on a shared,
    # noisy machine this moves less than wall time.
    cpu = Row("CPU seconds (rows per CPU-second)", rows=n)
    sizes = {}
    pool = ThreadPoolExecutor(default_workers())
    # Warm the page cache with the input once, so no system pays the first cold read.
    for _ in read_batches(root, pool):
        pass
    times: dict[str, dict[str, list[float]]] = {
        s: {"plain": [], "durable": [], "cpu": []} for s in systems
    }
    # Repeats interleave the systems, so drifting background load hits all of them alike.
    for rep in range(repeats):
        for system in systems:
            out = work / system
            shutil.rmtree(out, ignore_errors=True)
            c0 = time.process_time()
            t0 = time.perf_counter()
            RUNNERS[system](root, out, pool)
            t1 = time.perf_counter()
            if system != "tensorhouse":
                fsync_tree(out)
            t2 = time.perf_counter()
            times[system]["cpu"].append(time.process_time() - c0)
            times[system]["plain"].append(t1 - t0)
            times[system]["durable"].append(t2 - t0)
            log(
                f"repeat {rep + 1}/{repeats} {system}: {t1 - t0:.2f} s (durable {t2 - t0:.2f} s, "
                f"cpu {times[system]['cpu'][-1]:.2f} s)"
            )
            if rep == repeats - 1:
                check_rows(system, out, n)
                sizes[system] = tree_bytes(out)
                shutil.rmtree(out, ignore_errors=True)
    for system in systems:
        plain.timings[system] = Timing(tuple(times[system]["plain"]))
        durable.timings[system] = Timing(tuple(times[system]["durable"]))
        cpu.timings[system] = Timing(tuple(times[system]["cpu"]))
        plain.nbytes[system] = durable.nbytes[system] = cpu.nbytes[system] = input_bytes
    pool.shutdown()

    print(f"\n## Ingest {n:,} 256x256 q90 JPEGs ({input_bytes / 1e6:,.1f} MB) from an image folder")
    print(
        f"{platform.platform()}, {os.cpu_count()} CPUs, python {platform.python_version()}, "
        f"{repeats} repeat(s), medians; reader threads {default_workers()}\n"
    )
    print(markdown_table([plain, durable, cpu], systems, reference="tensorhouse"))
    print("\non-disk size: " + ", ".join(f"{s} {b / 1e6:,.1f} MB" for s, b in sizes.items()))
    print("\n### Target: tensorhouse at least as fast as the best peer\n")
    print(
        target_table(
            [plain, durable, cpu],
            "tensorhouse",
            {r.name: ("best", 1.0) for r in (plain, durable, cpu)},
        )
    )
    if args.profile:
        profile(root, work / "profile")
    shutil.rmtree(work, ignore_errors=True)


def profile(root: Path, out: Path) -> None:
    """Where tensorhouse's ingest spends its time: its stages run one after another on the main
    thread (cProfile sees one thread only), timed, then profiled by own time."""
    from tensorhouse.ingest.imagefolder import _load, scan_folder
    from tensorhouse.ingest.images import split_batches

    shutil.rmtree(out, ignore_errors=True)
    pool = ThreadPoolExecutor(1)  # runs inline enough: the point is to attribute the time
    prof = cProfile.Profile()
    stages: dict[str, float] = {}
    prof.enable()
    t0 = time.perf_counter()
    classes, files = scan_folder(str(root))
    stages["scan folder (listdir + stat)"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    loaded = [
        _load(str(root), files[a:b], "jpeg", "header", 90, pool)
        for a, b in split_batches([f[2] for f in files], 1024, 64 << 20)
    ]
    stages["read files + magic check"] = time.perf_counter() - t0
    ds = th.create(
        str(out), {"image": th.Image("jpeg"), "label": th.ClassLabel(classes), "path": th.Text()}
    )
    t0 = time.perf_counter()
    for i, batch in enumerate(loaded):
        ds.append(batch.columns, app_id="profile", txn_version=i)
    stages["Dataset.append (format layer)"] = time.perf_counter() - t0
    prof.disable()
    pool.shutdown()
    print("\n### Where the time goes (stages run serially on one thread)\n")
    for name, sec in stages.items():
        print(f"- {name}: {sec:.2f} s")
    s = io.StringIO()
    pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(15)
    print("\n```")
    print(s.getvalue())
    print("```")


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--smoke", action="store_true", help="500 images, 1 repeat")
    p.add_argument("--n", type=int, default=10_000, help="number of images (default 10,000)")
    p.add_argument("--repeats", type=int, default=3, help="timed runs per system (default 3)")
    p.add_argument(
        "--systems", nargs="+", default=list(SYSTEMS), choices=SYSTEMS, help="which systems to run"
    )
    p.add_argument(
        "--profile", action="store_true", help="also print a cProfile of tensorhouse's ingest"
    )
    run(p.parse_args(argv))


if __name__ == "__main__":
    main()
