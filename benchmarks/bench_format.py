"""Format benchmark (issue 2): tensorhouse vs Lance vs Parquet on the same image data.

Two datasets per system, each with ``image``, ``label`` (int32) and
``embedding`` (float32[128]) columns:

* ``jpeg``: the images as q90 JPEG files (~15 KB each), stored as given;
* ``raw``:  the same images as raw uint8 256x256x3 pixels (196,608 bytes each).

Measured side by side in one run: write throughput, a full scan of the image
column, ``take`` of 1,000 random unsorted rows (image + label, no JPEG decode)
and single-row latency (every column, no decode), the systems interleaved
round-robin; reads warm and, with ``--cold`` where the page cache can be
dropped (root), cold. Prints Markdown tables of medians, ratios, and whether
the issue's targets are met. Fairness choices: ``benchmarks/README.md``.

Run:
    .venv/bin/python benchmarks/bench_format.py            # 10,000 rows, warm, 4-6 minutes
    .venv/bin/python benchmarks/bench_format.py --cold     # also cold-cache reads (root), 5-8 minutes
    .venv/bin/python benchmarks/bench_format.py --smoke    # 200 rows, 1 repeat, well under a minute
"""

from __future__ import annotations

import argparse
import platform
import shutil
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import lance  # noqa: E402

import tensorhouse as th  # noqa: E402
from benchmarks.common import (  # noqa: E402
    DATA_DIR,
    ImageData,
    Row,
    Timing,
    drop_page_cache,
    fsync_tree,
    image_dataset,
    markdown_table,
    rotations,
    target_table,
    time_each_interleaved,
    time_interleaved,
    tree_bytes,
)

KINDS = ("jpeg", "raw")
SHAPE = (256, 256, 3)
PIXELS = int(np.prod(SHAPE))
#: Parquet row-group size: small enough that one row costs one ~1 MB (jpeg) /
#: ~12.6 MB (raw) row-group read, large enough to keep the footer small.
PARQUET_ROW_GROUP = 64
#: Rows per batch in every system's scan: ~16 MB of JPEGs, ~50 MB of raw pixels.
SCAN_BATCH = {"jpeg": 1024, "raw": 256}
TAKE_COLUMNS = ["image", "label"]


# -- Arrow inputs for the peers (built once, outside the timed region) --------------
def _chunks(n: int, size: int = 1024) -> list[tuple[int, int]]:
    return [(a, min(n, a + size)) for a in range(0, n, size)]


def arrow_table(data: ImageData, kind: str, *, raw_as: str) -> pa.Table:
    """The rows as an Arrow table; raw images as ``fsl`` (fixed_size_list<uint8>) or ``binary``.

    Zero-copy over the numpy inputs; chunked so no binary array passes 2 GiB.
    """
    n = len(data)
    if kind == "jpeg":
        image = pa.chunked_array(
            [pa.array(data.jpegs[a:b], pa.binary()) for a, b in _chunks(n)], pa.binary()
        )
    else:
        flat = data.raw.reshape(n, PIXELS)
        parts = []
        for a, b in _chunks(n):
            buf = pa.py_buffer(flat[a:b].reshape(-1))
            if raw_as == "fsl":
                values = pa.Array.from_buffers(pa.uint8(), (b - a) * PIXELS, [None, buf])
                parts.append(pa.FixedSizeListArray.from_arrays(values, PIXELS))
            else:
                offsets = pa.py_buffer(np.arange(b - a + 1, dtype=np.int32) * PIXELS)
                parts.append(pa.Array.from_buffers(pa.binary(), b - a, [None, offsets, buf]))
        image = pa.chunked_array(parts)
    emb_values = pa.array(data.embeddings.reshape(-1))
    embedding = pa.FixedSizeListArray.from_arrays(emb_values, data.embeddings.shape[1])
    return pa.table(
        {"image": image, "label": pa.array(data.labels, pa.int32()), "embedding": embedding}
    )


# -- the systems --------------------------------------------------------------------
class System:
    """One storage system: write a dataset, open it, and read it the way its users do."""

    name = ""
    fsyncs = False  # True when its write is already durable (fsyncs its files)

    def prepare(self, data: ImageData, kind: str) -> Any:
        """Input in this system's preferred form (untimed)."""
        raise NotImplementedError

    def write(self, prepared: Any, kind: str, path: Path) -> None:
        raise NotImplementedError

    def open(self, path: Path, kind: str) -> Any:
        raise NotImplementedError

    def scan(self, h: Any, kind: str) -> int:
        """Read every image's bytes (no decode); return the row count."""
        raise NotImplementedError

    def take(self, h: Any, idx: np.ndarray, kind: str) -> Any:
        """Image + label of rows ``idx`` (in that order): encoded JPEGs, or a stacked uint8 array."""
        raise NotImplementedError

    def row(self, h: Any, i: int) -> Any:
        """Every column of row ``i``, images not decoded."""
        raise NotImplementedError

    def images(self, result: Any, kind: str) -> list[bytes] | np.ndarray:
        """The images of a ``take``/``row`` result, for the correctness check."""
        raise NotImplementedError


class Tensorhouse(System):
    name = "tensorhouse"
    fsyncs = True  # LocalStore fsyncs every chunk and log entry

    def prepare(self, data: ImageData, kind: str) -> Any:
        image = data.jpegs if kind == "jpeg" else data.raw
        return {
            "image": image,
            "label": data.labels,
            "embedding": data.embeddings,
        }, data.num_classes

    def write(self, prepared: Any, kind: str, path: Path) -> None:
        cols, num_classes = prepared
        image_type = th.Image("jpeg") if kind == "jpeg" else th.Tensor("uint8", SHAPE)
        schema = {
            "image": image_type,
            "label": th.ClassLabel([f"c{i}" for i in range(num_classes)]),
            "embedding": th.Embedding(cols["embedding"].shape[1]),
        }
        ds = th.create(str(path), schema)
        ds.append(cols)

    def open(self, path: Path, kind: str) -> Any:
        return th.open(str(path))

    def scan(self, h: Any, kind: str) -> int:
        n = 0
        for b in h.to_batches(columns=["image"], batch_size=SCAN_BATCH[kind]):
            n += b.num_rows
        return n

    def take(self, h: Any, idx: np.ndarray, kind: str) -> Any:
        return h.take(idx, columns=TAKE_COLUMNS, decode=False)

    def row(self, h: Any, i: int) -> Any:
        return h.take([i], decode=False)

    def images(self, result: Any, kind: str) -> list[bytes] | np.ndarray:
        return result["image"]


class Lance(System):
    """pylance with its defaults (stable file format, 1,024-row groups).

    Raw images are ``fixed_size_list<uint8>[196608]``: the layout Lance's docs
    and its PyTorch loader use for tensors. Take is ``ds.take(indices,
    columns=...)``, its recommended fast path for random access.
    """

    name = "lance"

    def prepare(self, data: ImageData, kind: str) -> Any:
        return arrow_table(data, kind, raw_as="fsl")

    def write(self, prepared: Any, kind: str, path: Path) -> None:
        lance.write_dataset(prepared, str(path))

    def open(self, path: Path, kind: str) -> Any:
        return lance.dataset(str(path))

    def scan(self, h: Any, kind: str) -> int:
        n = 0
        for b in h.to_batches(columns=["image"], batch_size=SCAN_BATCH[kind]):
            n += b.num_rows
        return n

    def take(self, h: Any, idx: np.ndarray, kind: str) -> Any:
        t = h.take(idx, columns=TAKE_COLUMNS)
        if kind == "raw":  # what a trainer needs: one stacked array (zero-copy when possible)
            col = t.column("image").combine_chunks()
            return col.flatten().to_numpy().reshape(len(idx), *SHAPE), t.column("label")
        return t

    def row(self, h: Any, i: int) -> Any:
        return h.take([i])

    def images(self, result: Any, kind: str) -> list[bytes] | np.ndarray:
        if isinstance(result, tuple):
            return result[0]
        col = result.column("image")
        if kind == "jpeg":
            return col.to_pylist()
        return col.combine_chunks().flatten().to_numpy().reshape(len(result), *SHAPE)


class Parquet(System):
    """pyarrow Parquet: images as ``binary`` (raw pixels too: a list<uint8> column
    would cost a repetition level per byte), uncompressed (JPEG does not compress,
    raw pixels barely), no dictionary or statistics on the image column; snappy for
    the rest. 64-row row groups for random access. Take reads the needed row groups
    with ``ParquetFile.read_row_groups`` and then ``Table.take``; the scan streams
    with ``pyarrow.dataset`` (read-ahead; faster here than ``iter_batches``).
    """

    name = "parquet"

    def prepare(self, data: ImageData, kind: str) -> Any:
        return arrow_table(data, kind, raw_as="binary")

    def write(self, prepared: Any, kind: str, path: Path) -> None:
        path.mkdir(parents=True, exist_ok=True)
        pq.write_table(
            prepared,
            str(path / "data.parquet"),
            row_group_size=PARQUET_ROW_GROUP,
            compression={"image": "NONE", "label": "SNAPPY", "embedding": "SNAPPY"},
            use_dictionary=["label"],
            write_statistics=["label"],
        )

    def open(self, path: Path, kind: str) -> Any:
        pf = pq.ParquetFile(str(path / "data.parquet"))
        md = pf.metadata
        sizes = [md.row_group(i).num_rows for i in range(md.num_row_groups)]
        starts = np.zeros(len(sizes) + 1, dtype=np.int64)
        np.cumsum(sizes, out=starts[1:])
        return pf, starts, pads.dataset(str(path / "data.parquet"), format="parquet")

    def scan(self, h: Any, kind: str) -> int:
        n = 0
        for b in h[2].to_batches(columns=["image"], batch_size=SCAN_BATCH[kind]):
            n += b.num_rows
        return n

    def take(self, h: Any, idx: np.ndarray, kind: str) -> Any:
        pf, starts, _ = h
        rg = np.searchsorted(starts, idx, side="right") - 1
        groups = np.unique(rg)
        t = pf.read_row_groups(groups.tolist(), columns=TAKE_COLUMNS)
        # Where each row group begins inside the table just read.
        sizes = starts[groups + 1] - starts[groups]
        base = np.zeros(len(groups), dtype=np.int64)
        np.cumsum(sizes[:-1], out=base[1:])
        pos = base[np.searchsorted(groups, rg)] + (idx - starts[rg])
        out = t.take(pa.array(pos))
        if kind == "raw":
            col = out.column("image").combine_chunks()
            offsets = np.frombuffer(col.buffers()[1], dtype=np.int32)[
                col.offset : col.offset + len(col) + 1
            ]
            arr = np.frombuffer(
                col.buffers()[2], dtype=np.uint8, count=len(col) * PIXELS, offset=int(offsets[0])
            )
            return arr.reshape(len(idx), *SHAPE), out.column("label")
        return out

    def row(self, h: Any, i: int) -> Any:
        pf, starts, _ = h
        g = int(np.searchsorted(starts, i, side="right") - 1)
        return pf.read_row_group(g).slice(i - int(starts[g]), 1)

    def images(self, result: Any, kind: str) -> list[bytes] | np.ndarray:
        if isinstance(result, tuple):
            return result[0]
        col = result.column("image")
        if kind == "jpeg":
            return col.to_pylist()
        return np.stack([np.frombuffer(b, np.uint8).reshape(SHAPE) for b in col.to_pylist()])


SYSTEMS: tuple[System, ...] = (Tensorhouse(), Lance(), Parquet())


# -- checks ---------------------------------------------------------------------------
def check_images(
    system: System, result: Any, kind: str, data: ImageData, idx: Sequence[int] | np.ndarray
) -> None:
    got = system.images(result, kind)
    if kind == "jpeg":
        want = [data.jpegs[i] for i in idx]
        ok = [bytes(g) for g in got] == want
    else:
        ok = np.array_equal(np.asarray(got).reshape(len(idx), *SHAPE), data.raw[np.asarray(idx)])
    if not ok:
        raise AssertionError(f"{system.name} {kind}: wrong images for rows {list(idx)[:5]}...")


# -- the run ----------------------------------------------------------------------------
def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def measure_writes(
    data: ImageData, kind: str, work: Path, repeats: int, rows: dict[str, Row], *, cold: bool
) -> dict[str, Path]:
    """Write each system's dataset ``repeats`` times, round-robin, into a fresh directory; keep the last."""
    durable = rows[f"write {kind} (durable)"]
    plain = rows[f"write {kind} (peers without fsync)"]
    input_bytes = (
        (data.jpeg_bytes if kind == "jpeg" else data.raw.nbytes)
        + data.labels.nbytes
        + data.embeddings.nbytes
    )
    systems = {s.name: s for s in SYSTEMS}
    prepared = {s.name: s.prepare(data, kind) for s in SYSTEMS}
    paths = {s.name: work / f"{s.name}-{kind}" for s in SYSTEMS}
    t_plain: dict[str, list[float]] = {s: [] for s in systems}
    t_durable: dict[str, list[float]] = {s: [] for s in systems}
    for rep in range(repeats):
        for name in rotations(list(systems), rep):
            system, path = systems[name], paths[name]
            shutil.rmtree(path, ignore_errors=True)
            if cold:  # start each write from clean memory (no dirty pages from the last)
                drop_page_cache()
            t0 = time.perf_counter()
            system.write(prepared[name], kind, path)
            t1 = time.perf_counter()
            if not system.fsyncs:
                fsync_tree(path)
            t2 = time.perf_counter()
            t_plain[name].append(t1 - t0)
            t_durable[name].append(t2 - t0)
    for name in systems:
        durable.timings[name] = Timing(tuple(t_durable[name]))
        plain.timings[name] = Timing(tuple(t_plain[name]))
        durable.nbytes[name] = plain.nbytes[name] = input_bytes
        rows["on-disk size"].note += f"{name} {kind}: {tree_bytes(paths[name]) / 1e6:,.1f} MB; "
        log(f"write {kind} {name}: {durable.cell(name)}")
    return paths


def measure_reads(
    kind: str,
    paths: dict[str, Path],
    tiny: dict[str, Any],
    data: ImageData,
    row: Callable[..., Row],
    *,
    take_sets: list[np.ndarray],
    single: np.ndarray,
    single_cold: np.ndarray,
    cold: bool,
    args: argparse.Namespace,
) -> None:
    """Check every system's dataset, then time scans, takes and single rows, systems interleaved."""
    n = len(data)
    systems = {s.name: s for s in SYSTEMS}
    handles = {s.name: s.open(paths[s.name], kind) for s in SYSTEMS}
    for name, system in systems.items():  # correctness first (and a warm-up)
        h = handles[name]
        if system.scan(h, kind) != n:
            raise AssertionError(f"{name} {kind}: scan returned the wrong row count")
        check_images(system, system.take(h, take_sets[0], kind), kind, data, take_sets[0])
        check_images(system, system.row(h, int(single[0])), kind, data, [int(single[0])])

    def cold_setup(system: System) -> Callable[[], None]:
        def setup() -> None:
            drop_page_cache()
            # Touch a tiny dataset of the same system, so that its code pages (not
            # the measured data) are back in memory: cold data, warm process.
            system.take(tiny[system.name], np.array([3, 1]), kind)
            system.row(tiny[system.name], 2)

        return setup

    def scan(system: System) -> Callable[[], Any]:
        return lambda: system.scan(handles[system.name], kind)

    def take(system: System) -> Callable[[], Any]:
        sets = iter(take_sets[1:] * 2)  # the same row sets, in the same order, for every system
        return lambda: system.take(handles[system.name], next(sets), kind)

    def one(system: System) -> Callable[[Any], Any]:
        return lambda i: system.row(handles[system.name], int(i))

    mb = data.jpeg_bytes if kind == "jpeg" else data.raw.nbytes
    take_n = len(take_sets[0])
    for temp in ("warm", "cold") if cold else ("warm",):
        setup = {k: cold_setup(s) for k, s in systems.items()} if temp == "cold" else None
        repeats = args.cold_repeats if temp == "cold" else args.repeats
        r = row(f"scan {kind} images ({temp})", rows=n)
        r.timings.update(
            time_interleaved({k: scan(s) for k, s in systems.items()}, repeats=repeats, setup=setup)
        )
        r.nbytes.update({k: mb for k in systems})
        r = row(f"take {take_n} random {kind} ({temp})")
        r.timings.update(
            time_interleaved({k: take(s) for k, s in systems.items()}, repeats=repeats, setup=setup)
        )
        r = row(f"single row {kind} ({temp})")
        r.timings.update(
            time_each_interleaved(
                {k: one(s) for k, s in systems.items()},
                single_cold if temp == "cold" else single,
                setup=setup,
            )
        )
        log(f"reads {kind} ({temp}) done")


def run(args: argparse.Namespace) -> None:
    n = args.rows
    t_start = time.perf_counter()
    log(f"data: {n} rows")
    data = image_dataset(n)
    log(
        f"data ready: {data.jpeg_bytes / n / 1e3:.1f} KB per JPEG, raw {data.raw.nbytes / 1e9:.2f} GB"
    )
    work = DATA_DIR / f"work-bench_format-{n}"
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    cold = args.cold and drop_page_cache()
    if args.cold and not cold:
        log("cannot drop the page cache (not root?): warm numbers only")
    rng = np.random.default_rng(1)
    take_n = min(args.take_rows, n)
    take_sets = [rng.choice(n, size=take_n, replace=False) for _ in range(args.repeats + 1)]
    single = rng.integers(0, n, size=args.single_rows)
    single_cold = single[: args.cold_single_rows]

    order: list[str] = []
    rows: dict[str, Row] = {}

    def row(name: str, **kw: Any) -> Row:
        if name not in rows:
            rows[name] = Row(name, **kw)
            order.append(name)
        return rows[name]

    row("on-disk size")
    for kind in KINDS:
        row(f"write {kind} (durable)", rows=n)
        row(f"write {kind} (peers without fsync)", rows=n)
        # Tiny copies of each dataset, written first as an untimed warm-up of every
        # system's write path (lazy imports, thread pools), and touched after a
        # cache drop so that the code pages (not the measured data) are in memory.
        tiny = image_dataset(64, verbose=False)
        tiny_handles = {}
        for system in SYSTEMS:
            p = work / f"tiny-{system.name}-{kind}"
            system.write(system.prepare(tiny, kind), kind, p)
            tiny_handles[system.name] = system.open(p, kind)
        paths = measure_writes(data, kind, work, args.write_repeats, rows, cold=cold)

        measure_reads(
            kind,
            paths,
            tiny_handles,
            data,
            row,
            take_sets=take_sets,
            single=single,
            single_cold=single_cold,
            cold=cold,
            args=args,
        )

    names = [s.name for s in SYSTEMS]
    table_rows = [rows[k] for k in order if k != "on-disk size"]
    print()
    print(f"## bench_format: {n} rows of 256x256x3 images + int32 label + float32[128] embedding")
    print()
    print(
        f"Machine: {platform.machine()}, {_cpus()} CPUs, Python {platform.python_version()}; "
        f"lance {lance.__version__}, pyarrow {pa.__version__}, tensorhouse {th.__version__}. "
        f"JPEG q90, {data.jpeg_bytes / n / 1e3:.1f} KB per image on average. "
        f"Page cache: {'warm and cold (dropped before each cold repeat)' if cold else 'warm only'}. "
        f"Repeats: writes {args.write_repeats}, scans/takes {args.repeats} warm / {args.cold_repeats} cold; "
        f"single row: {len(single)} warm / {len(single_cold)} cold rows."
    )
    print()
    print(
        "Medians. `peer / tensorhouse`: the peer's median time over tensorhouse's (> 1: the peer is slower). "
        "`tensorhouse / best peer`: tensorhouse's over the fastest peer's (> 1: tensorhouse is slower)."
    )
    print()
    print(markdown_table(table_rows, names, reference="tensorhouse"))
    print()
    print(f"On-disk size: {rows['on-disk size'].note.rstrip('; ')}.")
    print()
    print("### Targets (issue 2): tensorhouse's median time over the peer's")
    print()
    targets: dict[str, tuple[str, float]] = {}
    for kind in KINDS:
        targets[f"write {kind} (durable)"] = ("parquet", 1.5)
        targets[f"write {kind} (peers without fsync)"] = ("parquet", 1.5)
        for temp in ("warm", "cold"):
            targets[f"scan {kind} images ({temp})"] = ("best", 1.2)
            for peer in ("lance", "parquet"):
                targets[f"take {take_n} random {kind} ({temp}) vs {peer}"] = (peer, 1.0)
                targets[f"single row {kind} ({temp}) vs {peer}"] = (peer, 1.0)
    expanded = []
    for r in table_rows:
        if r.name.startswith(("take", "single")):
            for peer in ("lance", "parquet"):
                expanded.append(Row(f"{r.name} vs {peer}", timings=r.timings))
        else:
            expanded.append(r)
    print(target_table(expanded, "tensorhouse", targets))
    print()
    print(f"Total benchmark time {time.perf_counter() - t_start:.0f} s.")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)


def _cpus() -> int:
    import os

    return (
        len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 0)
    )


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--rows", type=int, default=10_000, help="rows per dataset (default 10,000)")
    p.add_argument(
        "--smoke", action="store_true", help="tiny sizes for CI: 200 rows, 1 repeat, warm only"
    )
    p.add_argument("--repeats", type=int, default=5, help="timed repeats of warm scans and takes")
    p.add_argument(
        "--cold-repeats", type=int, default=3, help="timed repeats of cold scans and takes"
    )
    p.add_argument("--write-repeats", type=int, default=3)
    p.add_argument("--take-rows", type=int, default=1000)
    p.add_argument("--single-rows", type=int, default=200, help="rows timed one by one (warm)")
    p.add_argument(
        "--cold-single-rows", type=int, default=30, help="rows timed one by one after a cache drop"
    )
    p.add_argument(
        "--cold",
        action="store_true",
        help="also measure reads after dropping the OS page cache (needs root; it empties the cache "
        "of the whole machine, so other people's runs slow down meanwhile)",
    )
    p.add_argument(
        "--keep", action="store_true", help="keep the written datasets under benchmarks/_data/"
    )
    args = p.parse_args(argv)
    if args.smoke:
        args.rows = 200
        args.repeats = args.cold_repeats = args.write_repeats = 1
        args.take_rows = 100
        args.single_rows = 20
        args.cold = False
    run(args)


if __name__ == "__main__":
    main()
