"""Loader throughput: tensorhouse against the decode-only bound and its peers (issue 6; not run in CI).

Every system reads the same N 256x256 q90 JPEGs (``tensorhouse.synth.scene``
content, encoded once with simplejpeg) and yields batches of 64 decoded uint8
HxWxC images, in the same run, so ratios are comparable on this shared,
noisy machine (absolute numbers are not):

- decode-only bound: in-memory bytes, simplejpeg on 2 threads into a reused buffer;
- tensorhouse ``th.loader`` (JPEG column; shuffle on/off; raw uint8 column in GB/s,
  beside a raw copy bound from a memory-mapped .npy; inside ``DataLoader(num_workers=2)``);
  and streamed from S3 (a local moto server) with 20 ms injected per-request latency;
- Deep Lake 4.7.4 (``ds.pytorch()`` + DataLoader, ``ds.batches``), Lance
  (``LanceDataset`` + simplejpeg, in the loop or as ``to_tensor_fn``), WebDataset tar
  shards, a plain PyTorch Dataset over JPEG files.

Each configuration gets one untimed warm-up epoch (which also starts persistent
DataLoader workers); then every configuration is timed once per round, for 3
rounds with a warm page cache and, where it can be dropped (root), 3 cold ones.
Interleaving spreads other jobs' load over all systems alike. A system slower than
``--cap`` seconds per epoch is measured on a prefix. Besides img/s (median), the
CPU seconds per image of each system (its process and its workers) are reported:
they hardly move with the machine's load, unlike wall time. When tensorhouse
misses a target, its loader loop is profiled phase by phase.

Usage:
    .venv/bin/python benchmarks/bench_loader.py [--rows 10000] [--smoke] [--only th,decode,lance]

Inputs are cached under ``benchmarks/_data/loader_<N>/`` (gitignored).
"""

from __future__ import annotations

import argparse
import contextlib
import itertools
import os
import resource
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE / "_data"
H = W = 256
BATCH = 64
QUALITY = 90
NUM_CLASSES = 1000
IMG_BYTES = H * W * 3
LATENCY_S = 0.020
GROUPS = (
    "decode",
    "th",
    "raw_bound",
    "th_raw",
    "th_torch",
    "deeplake",
    "lance",
    "wds",
    "files",
    "s3",
)
#: Bump when the generator changes, so stale caches are not reused.
GEN_VERSION = 1


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# -- page cache ----------------------------------------------------------------------
_DROP: bool | None = None
_NO_COLD = False


def drop_page_cache() -> bool:
    """``sync; echo 3 > /proc/sys/vm/drop_caches``; False where not permitted (then: warm only)."""
    global _DROP
    if _DROP is False:
        return False
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        _DROP = True
    except OSError:
        _DROP = False
    return _DROP


#: Mappings held by the raw copy bound (cleared by release_mappings).
_BOUND_MAPS: list[dict[str, Any]] = []


def release_mappings() -> None:
    """Unmap the chunk files tensorhouse keeps mapped process-wide, so a page-cache drop evicts them.

    The kernel never drops pages that a process has mapped. tensorhouse keeps chunk files
    mapped across epochs (an LRU of mappings, and the header cache, whose checksum arrays
    are views of the mapped header, so it pins every mapping it has seen). Without this,
    "cold" epochs of tensorhouse would read from memory. Private internals: guarded.
    """
    import gc

    for state in _BOUND_MAPS:
        state.clear()
    try:
        from tensorhouse.format.chunks import reader as chunk_reader
    except ImportError:
        return
    maps, lock = getattr(chunk_reader, "_MAPS", None), getattr(chunk_reader, "_MAPS_LOCK", None)
    if maps is not None and lock is not None:
        with lock:
            maps.clear()
    headers = getattr(chunk_reader, "_HEADERS", None)
    items, hlock = getattr(headers, "_items", None), getattr(headers, "_lock", None)
    if items is not None and hlock is not None:
        with hlock:
            items.clear()
    gc.collect()


def page_cache_mb() -> tuple[float, float]:
    """(Cached, Mapped) from /proc/meminfo, in MB: what a page-cache drop left behind."""
    vals = {}
    with open("/proc/meminfo") as f:
        for line in f:
            k, _, v = line.partition(":")
            if k in ("Cached", "Mapped"):
                vals[k] = int(v.split()[0]) / 1024
    return vals.get("Cached", 0.0), vals.get("Mapped", 0.0)


# -- CPU accounting (robust to the machine's load, unlike wall time) -----------------------
#: Child processes that are not part of any loader (the moto server).
_NOT_LOADER: set[int] = set()


def proc_cpu_seconds(pid: int) -> float:
    """CPU seconds (user + system) of one process so far; 0 when it is gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            fields = f.read().rsplit(b")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds() -> float:
    """CPU seconds (user + system) used so far by this process and its live children (DataLoader workers)."""
    total = time.process_time()
    me = os.getpid()
    tick = os.sysconf("SC_CLK_TCK")
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit() or int(entry.name) in _NOT_LOADER:
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                fields = f.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        # fields[0] is the state, [1] the parent pid, [11] and [12] utime and stime.
        if int(fields[1]) == me:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


# -- inputs ----------------------------------------------------------------------------
@dataclass
class Inputs:
    dir: Path
    jpegs: list[bytes]
    labels: np.ndarray  # int64 [n]
    raw_path: Path  # raw.npy, uint8 [n, H, W, 3]

    def __len__(self) -> int:
        return len(self.jpegs)

    @property
    def jpeg_bytes(self) -> int:
        return sum(len(b) for b in self.jpegs)


def _scene(i: int) -> np.ndarray:
    from tensorhouse.synth import scene

    return scene(np.random.default_rng([GEN_VERSION, i]), H, W)[0]


def inputs(n: int) -> Inputs:
    """Generate once (images, JPEG q90 via simplejpeg, raw pixels, labels); later calls read the cache."""
    import simplejpeg

    d = DATA_DIR / f"loader_{n}"
    done = d / "inputs.done"
    if not done.exists():
        t0 = time.perf_counter()
        log(f"generating {n} images {H}x{W} into {d}")
        d.mkdir(parents=True, exist_ok=True)
        mm = np.lib.format.open_memmap(d / "raw.npy", mode="w+", dtype=np.uint8, shape=(n, H, W, 3))

        def make(i: int) -> bytes:
            img = _scene(i)
            mm[i] = img
            return simplejpeg.encode_jpeg(img, quality=QUALITY, colorspace="RGB")

        with ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as ex:
            blobs = list(ex.map(make, range(n)))
        mm.flush()
        del mm
        offsets = np.zeros(n + 1, np.int64)
        np.cumsum([len(b) for b in blobs], out=offsets[1:])
        (d / "jpeg.bin").write_bytes(b"".join(blobs))
        np.save(d / "jpeg_offsets.npy", offsets)
        np.save(
            d / "labels.npy", np.random.default_rng(n).integers(0, NUM_CLASSES, n).astype(np.int64)
        )
        done.write_text("ok\n")
        log(f"generated in {time.perf_counter() - t0:.1f} s")
    blob = (d / "jpeg.bin").read_bytes()
    offs = np.load(d / "jpeg_offsets.npy")
    jpegs = [blob[int(a) : int(b)] for a, b in itertools.pairwise(offs)]
    return Inputs(d, jpegs, np.load(d / "labels.npy"), d / "raw.npy")


def _build(path: Path, fn: Callable[[Path], None]) -> Path:
    """Build ``path`` once (a ``.done`` marker beside it); a half-built one is rebuilt."""
    marker = path.with_name(path.name + ".done")
    if marker.exists():
        return path
    if path.exists():
        shutil.rmtree(path) if path.is_dir() else path.unlink()
    t0 = time.perf_counter()
    log(f"building {path.name} ...")
    fn(path)
    os.sync()
    marker.write_text("ok\n")
    log(f"built {path.name} in {time.perf_counter() - t0:.1f} s")
    return path


def build_th(data: Inputs, raw: bool) -> Path:
    import tensorhouse as th

    def go(p: Path) -> None:
        if raw:
            ds = th.create(str(p), {"image": th.Tensor("uint8", (H, W, 3)), "label": "int64"})
            mm = np.load(data.raw_path, mmap_mode="r")
            for a in range(0, len(data), 1024):
                b = min(len(data), a + 1024)
                ds.append({"image": np.ascontiguousarray(mm[a:b]), "label": data.labels[a:b]})
        else:
            ds = th.create(str(p), {"image": th.Image("jpeg"), "label": "int64"})
            for a in range(0, len(data), 4096):
                b = min(len(data), a + 4096)
                ds.append({"image": data.jpegs[a:b], "label": data.labels[a:b]})

    # Keyed by the chunk format, so a dataset written by an older format is rebuilt, not measured.
    try:
        from tensorhouse.format.chunks.header import FORMAT_VERSION as fmt
    except ImportError:
        fmt = 0
    return _build(data.dir / (f"th_raw_f{fmt}" if raw else f"th_jpeg_f{fmt}"), go)


def build_files(data: Inputs) -> Path:
    def go(p: Path) -> None:
        p.mkdir(parents=True)
        for i, b in enumerate(data.jpegs):
            (p / f"{i:06d}.jpg").write_bytes(b)

    return _build(data.dir / "files", go)


def build_wds(data: Inputs) -> Path:
    import webdataset as wds

    # ~100 MB shards; with fewer than 4 shards' worth of data (smoke runs) smaller ones, so that
    # DataLoader workers each get a shard.
    maxsize = int(min(100e6, max(1e6, data.jpeg_bytes / 4)))

    def go(p: Path) -> None:
        p.mkdir(parents=True)
        with (
            contextlib.redirect_stdout(sys.stderr),
            wds.ShardWriter(str(p / "shard-%05d.tar"), maxsize=maxsize, maxcount=10**9) as sink,
        ):
            for i, b in enumerate(data.jpegs):
                sink.write({"__key__": f"{i:06d}", "jpg": b, "cls": int(data.labels[i])})

    return _build(data.dir / "wds", go)


def build_lance(data: Inputs) -> Path:
    import lance
    import pyarrow as pa

    def go(p: Path) -> None:
        table = pa.table(
            {"image": pa.array(data.jpegs, type=pa.binary()), "label": pa.array(data.labels)}
        )
        lance.write_dataset(table, str(p))

    return _build(data.dir / "lance", go)


def build_deeplake(data: Inputs) -> Path:
    import deeplake

    def go(p: Path) -> None:
        ds = deeplake.create(f"file://{p}")
        ds.add_column("image", deeplake.types.Image(sample_compression="jpeg"))
        ds.add_column("label", "int64")
        for a in range(0, len(data), 1000):
            b = min(len(data), a + 1000)
            ds.append({"image": data.jpegs[a:b], "label": data.labels[a:b]})
        ds.commit()

    return _build(data.dir / "deeplake", go)


# -- measurement -----------------------------------------------------------------------
@dataclass
class Result:
    group: str
    system: str
    mode: str  # "warm" | "cold"
    detail: str
    rows: int  # images per timed epoch
    times: list[float]
    bytes_per_img: int | None = None
    note: str = ""
    ref: str = "jpeg"  # which tensorhouse row it is compared with
    cpu: list[float] = field(default_factory=list)  # CPU seconds of each timed epoch, all processes
    label: str = ""  # how the mode reads in the tables (defaults to ``mode``)

    @property
    def cpu_us_per_img(self) -> float:
        return statistics.median(self.cpu) / self.rows * 1e6

    @property
    def cores(self) -> float:
        return statistics.median(c / t for c, t in zip(self.cpu, self.times, strict=True))

    @property
    def img_s(self) -> float:
        return self.rows / statistics.median(self.times)

    @property
    def gb_s(self) -> float | None:
        return self.img_s * self.bytes_per_img / 1e9 if self.bytes_per_img else None


@dataclass
class Config:
    group: str
    system: str
    detail: str
    factory: Callable[[int], Callable[[], int]]  # rows -> epoch() -> images yielded
    cold: bool = True
    #: Without I/O (cold=False), still timed in the cold rounds: a reference from the same minutes.
    in_cold_rounds: bool = False
    prefixable: bool = False  # factory honours rows < N
    bytes_per_img: int | None = None
    note: str = ""
    ref: str = "jpeg"


@dataclass
class Entry:
    """A prepared configuration: its epoch function, warmed up, and its timings."""

    cfg: Config
    label: str
    epoch: Callable[[], int]
    rows: int
    note: str
    times: dict[str, list[float]] = field(default_factory=lambda: {"warm": [], "cold": []})
    cpu: dict[str, list[float]] = field(default_factory=lambda: {"warm": [], "cold": []})
    #: Page cache (MB) left right after each cold drop (other processes' files included).
    left: list[float] = field(default_factory=list)
    #: CPU seconds of the moto server during each timed epoch.
    server_cpu: list[float] = field(default_factory=list)
    failed: bool = False


@dataclass
class Run:
    """Prepare every configuration (warm-up pass), then time them in interleaved rounds.

    Interleaving (round r runs every configuration once) spreads the load of other
    processes on this shared machine over all systems alike, so the ratios hold
    even when absolute throughput drifts during the run.
    """

    n: int
    repeats: int
    cap_s: float
    prefix_target_s: float
    probe_rows: int
    entries: list[Entry] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    #: Page cache (MB) right after each cold drop, kept after the entries are closed.
    left: list[float] = field(default_factory=list)
    #: 1-minute load average before each timed epoch.
    loads: list[float] = field(default_factory=list)

    def _fail(self, label: str, err: BaseException) -> None:
        traceback.print_exc()
        self.failures.append(f"{label}: {type(err).__name__}: {err}".splitlines()[0][:300])

    def prepare(self, cfg: Config) -> None:
        label = f"{cfg.system} [{cfg.detail}]" if cfg.detail else cfg.system
        try:
            self._prepare(cfg, label)
        except Exception as err:  # one peer failing must not lose the others' numbers
            self._fail(label, err)

    def _prepare(self, cfg: Config, label: str) -> None:
        rows, note = self.n, cfg.note
        if cfg.prefixable:
            probe_rows = min(self.n, self.probe_rows)
            probe = cfg.factory(probe_rows)
            t0 = time.perf_counter()
            probe()
            per_img = (time.perf_counter() - t0) / probe_rows
            if per_img * self.n > self.cap_s:
                rows = int(min(self.n, max(BATCH, self.prefix_target_s / per_img // BATCH * BATCH)))
                note = (note + "; " if note else "") + (
                    f"an epoch would take ~{per_img * self.n:.0f} s (> {self.cap_s:.0f} s cap): "
                    f"measured on the first {rows} of {self.n} rows"
                )
            close = getattr(probe, "close", None)
            if close is not None:
                close()
            del probe
        epoch = cfg.factory(rows)
        t0 = time.perf_counter()
        got = epoch()  # warm-up pass, untimed (also starts persistent DataLoader workers)
        warm_s = time.perf_counter() - t0
        if got != rows:
            raise RuntimeError(f"an epoch yielded {got} images, expected {rows}")
        log(f"{label}: warm-up {warm_s:.2f} s ({rows / warm_s:,.0f} img/s)")
        self.entries.append(Entry(cfg, label, epoch, rows, note))

    def rounds(self, kind: str) -> None:
        """``repeats`` rounds; each times every live entry once (dropping the page cache first if cold)."""
        cold = kind == "cold"
        if cold and not drop_page_cache():
            return
        for r in range(self.repeats):
            for e in self.entries:
                if e.failed or (cold and not (e.cfg.cold or e.cfg.in_cold_rounds)):
                    continue
                if len(e.times[kind]) and e.times[kind][-1] > self.cap_s:
                    continue  # a slow system: one repeat is enough
                try:
                    if cold:
                        release_mappings()
                        drop_page_cache()
                        e.left.append(page_cache_mb()[0])
                    self.loads.append(os.getloadavg()[0])
                    c0 = cpu_seconds()
                    s0 = sum(proc_cpu_seconds(p) for p in _NOT_LOADER)
                    t0 = time.perf_counter()
                    got = e.epoch()
                    dt = time.perf_counter() - t0
                    dc = cpu_seconds() - c0
                    e.server_cpu.append(sum(proc_cpu_seconds(p) for p in _NOT_LOADER) - s0)
                    if got != e.rows:
                        raise RuntimeError(f"an epoch yielded {got} images, expected {e.rows}")
                except Exception as err:
                    e.failed = True
                    self._fail(e.label, err)
                    continue
                e.times[kind].append(dt)
                e.cpu[kind].append(dc)
                log(
                    f"round {r + 1}/{self.repeats} {kind}: {e.label}: {e.rows / dt:,.0f} img/s, "
                    f"{dc / e.rows * 1e6:,.0f} CPU us/img, {dc / dt:.2f} cores"
                )

    def close(self) -> None:
        self.left += [x for e in self.entries for x in e.left]
        for e in self.entries:
            close = getattr(e.epoch, "close", None)
            if close is not None:
                with contextlib.suppress(Exception):
                    close()
        self.entries.clear()

    @property
    def results(self) -> list[Result]:
        out = []
        for e in self.entries:
            for kind in ("warm", "cold"):
                ts = e.times[kind]
                if ts:
                    note = e.note
                    if e.cfg.group == "s3" and e.server_cpu:
                        note = (note + "; " if note else "") + (
                            f"the moto server used another {statistics.median(e.server_cpu) / e.rows * 1e6:,.0f} "
                            "CPU us/image on the same 2 CPUs"
                        )
                    if len(ts) < self.repeats:
                        note = (
                            note + "; " if note else ""
                        ) + f"{len(ts)} of {self.repeats} repeats (slow or failed)"
                    label = (
                        kind
                        if e.cfg.cold or kind == "warm"
                        else "in memory, timed in the cold rounds"
                    )
                    out.append(
                        Result(
                            e.cfg.group,
                            e.cfg.system,
                            kind,
                            e.cfg.detail,
                            e.rows,
                            ts,
                            e.cfg.bytes_per_img,
                            note,
                            e.cfg.ref,
                            e.cpu[kind],
                            label,
                        )
                    )
        order = {g: i for i, g in enumerate(GROUPS)}
        return sorted(out, key=lambda r: (order[r.group], r.system, r.detail, r.mode != "warm"))


def _check_batch(images: Any, n: int | None = None) -> None:
    shape, dtype = tuple(images.shape), str(images.dtype)
    if shape[1:] != (H, W, 3) or "uint8" not in dtype or (n is not None and shape[0] != n):
        raise AssertionError(f"unexpected batch {shape} {dtype}")


def _counting(
    it_fn: Callable[[], Iterator[Any]], images: Callable[[Any], Any]
) -> Callable[[], int]:
    """epoch(): iterate once, count images, check the first batch's shape and dtype."""

    def epoch() -> int:
        n = 0
        first = True
        for b in it_fn():
            x = images(b)
            if first:
                _check_batch(x)
                first = False
            n += len(x)
        return n

    return epoch


def _dataloader(ds: Any, workers: int, *, context: str = "fork", **kw: Any) -> Any:
    from torch.utils.data import DataLoader

    extra: dict[str, Any] = {}
    if workers:
        # Persistent workers: start-up happens in the untimed warm pass; a hung worker raises.
        extra = dict(persistent_workers=True, timeout=300, multiprocessing_context=context)
    return DataLoader(ds, num_workers=workers, **kw, **extra)


# -- systems -------------------------------------------------------------------------------
def decode_bound(data: Inputs) -> Callable[[int], Callable[[], int]]:
    import simplejpeg

    def factory(rows: int) -> Callable[[], int]:
        buf = np.empty((BATCH, H, W, 3), np.uint8)
        pool = ThreadPoolExecutor(2)
        order = np.random.default_rng(0).permutation(rows)
        jpegs = data.jpegs

        def work(idx: np.ndarray, a: int, b: int) -> None:
            for j in range(a, b):
                simplejpeg.decode_jpeg(jpegs[idx[j]], colorspace="RGB", buffer=buf[j])

        def epoch() -> int:
            n = 0
            for s in range(0, rows, BATCH):
                idx = order[s : s + BATCH]
                k = len(idx)
                f1 = pool.submit(work, idx, 0, k // 2)
                work(idx, k // 2, k)  # the calling thread is the second of the two
                f1.result()
                n += k
            return n

        epoch.close = lambda: pool.shutdown()  # type: ignore[attr-defined]
        return epoch

    return factory


def raw_bound(data: Inputs) -> Callable[[int], Callable[[], int]]:
    """The same pixels from a memory-mapped .npy, random batches copied into a reused buffer on 2 threads."""

    def factory(rows: int) -> Callable[[], int]:
        buf = np.empty((BATCH, H, W, 3), np.uint8)
        pool = ThreadPoolExecutor(1)
        order = np.random.default_rng(0).permutation(rows)
        state: dict[str, Any] = {}

        def work(idx: np.ndarray, a: int, b: int) -> None:
            mm = state["mm"]
            for j in range(a, b):
                buf[j] = mm[idx[j]]

        # The mapping persists across epochs (as tensorhouse's does); release_mappings() drops it
        # before a page-cache drop, so cold epochs map the file afresh and really read the disk.
        _BOUND_MAPS.append(state)

        def epoch() -> int:
            if "mm" not in state:
                state["mm"] = np.load(data.raw_path, mmap_mode="r")
            n = 0
            for s in range(0, rows, BATCH):
                idx = order[s : s + BATCH]
                k = len(idx)
                f1 = pool.submit(work, idx, 0, k // 2)
                work(idx, k // 2, k)
                f1.result()
                n += k
            return n

        epoch.close = lambda: pool.shutdown()  # type: ignore[attr-defined]
        return epoch

    return factory


def th_factory(
    path_or_ds: Any, *, shuffle: bool, workers: int | None = None, **kw: Any
) -> Callable[[int], Callable[[], int]]:
    import tensorhouse as th

    def factory(rows: int) -> Callable[[], int]:
        ds = th.open(str(path_or_ds)) if isinstance(path_or_ds, str | Path) else path_or_ds
        ld = th.loader(ds, batch_size=BATCH, shuffle=shuffle, columns=["image", "label"], **kw)
        state = {"epoch": 0}
        if workers is None:

            def it() -> Iterator[Any]:
                ld.set_epoch(state["epoch"])
                state["epoch"] += 1
                return iter(ld)

            return _counting(it, lambda b: b["image"])
        dl = _dataloader(releasing_dataset(ld), workers, batch_size=None)
        return _counting(lambda: iter(dl), lambda b: b["image"])

    return factory


def _releasing_dataset_class() -> type:
    from torch.utils.data import IterableDataset

    class ReleasingDataset(IterableDataset):  # type: ignore[type-arg]
        """Iterates the wrapped loader, then unmaps tensorhouse's chunk files in this (worker) process.

        Persistent DataLoader workers would otherwise keep every chunk mapped, so no
        later page-cache drop (in any configuration) could evict those files.
        """

        def __init__(self, inner: Any) -> None:
            self.inner = inner

        def __iter__(self) -> Iterator[Any]:
            try:
                yield from self.inner
            finally:
                release_mappings()

    return ReleasingDataset


def releasing_dataset(inner: Any) -> Any:
    return _releasing_dataset_class()(inner)


class FileDataset:
    """A plain map-style PyTorch Dataset: read a JPEG file, decode it with simplejpeg."""

    def __init__(self, paths: Sequence[str], labels: np.ndarray) -> None:
        self.paths = list(paths)
        self.labels = labels

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> tuple[np.ndarray, int]:
        import simplejpeg

        with open(self.paths[i], "rb") as f:
            blob = f.read()
        return simplejpeg.decode_jpeg(blob, colorspace="RGB"), int(self.labels[i])


def files_factory(
    root: Path, labels: np.ndarray, workers: int
) -> Callable[[int], Callable[[], int]]:
    def factory(rows: int) -> Callable[[], int]:
        paths = [str(root / f"{i:06d}.jpg") for i in range(rows)]
        dl = _dataloader(FileDataset(paths, labels), workers, batch_size=BATCH, shuffle=True)
        return _counting(lambda: iter(dl), lambda b: b[0])

    return factory


def _sj_decode(blob: bytes) -> np.ndarray:
    import simplejpeg

    return simplejpeg.decode_jpeg(blob, colorspace="RGB")


def wds_factory(root: Path, workers: int) -> Callable[[int], Callable[[], int]]:
    import webdataset as wds

    def factory(rows: int) -> Callable[[], int]:
        urls = sorted(str(p) for p in root.glob("shard-*.tar"))
        pipe = (
            wds.WebDataset(urls, shardshuffle=False, empty_check=False)
            .decode(wds.handle_extension("jpg", _sj_decode))
            .to_tuple("jpg", "cls")
            .batched(BATCH)
        )
        dl = _dataloader(pipe, workers, batch_size=None)
        return _counting(lambda: iter(dl), lambda b: b[0])

    return factory


def _lance_decode_batch(batch: Any, out: np.ndarray | None = None) -> np.ndarray:
    """Decode a RecordBatch's binary image column with simplejpeg, straight from Arrow's buffers."""
    import simplejpeg

    col = batch["image"]
    n = len(col)
    _validity, offs_buf, data_buf = col.buffers()
    offs = np.frombuffer(offs_buf, np.int32)[col.offset : col.offset + n + 1]
    data = np.frombuffer(data_buf, np.uint8)
    out = np.empty((n, H, W, 3), np.uint8) if out is None else out[:n]
    for j in range(n):
        simplejpeg.decode_jpeg(data[offs[j] : offs[j + 1]], colorspace="RGB", buffer=out[j])
    return out


def _lance_to_tensor(batch: Any, **_kw: Any) -> dict[str, Any]:
    import torch

    return {
        "image": torch.from_numpy(_lance_decode_batch(batch)),
        "label": torch.from_numpy(batch["label"].to_numpy()),
    }


def lance_factory(
    path: Path, workers: int, *, to_tensor: bool
) -> Callable[[int], Callable[[], int]]:
    import lance
    from lance.torch.data import LanceDataset

    def factory(rows: int) -> Callable[[], int]:
        ds = lance.dataset(str(path))
        kw: dict[str, Any] = {"to_tensor_fn": _lance_to_tensor if to_tensor else None}
        if workers:
            # One fragment: split it by batches across the workers.
            kw["shard_granularity"] = "batch"
        lds = LanceDataset(ds, batch_size=BATCH, columns=["image", "label"], **kw)
        # Lance's Rust runtime does not survive fork (its workers die): spawn, as lance.torch's own
        # get_safe_loader does.
        dl = _dataloader(lds, workers, batch_size=None, context="spawn")
        if to_tensor:
            return _counting(lambda: iter(dl), lambda b: b["image"])
        buf = np.empty((BATCH, H, W, 3), np.uint8)
        # Decode on the main thread, in the training loop.
        return _counting(lambda: iter(dl), lambda b: _lance_decode_batch(b, buf))

    return factory


def deeplake_factory(
    path: Path, *, api: str, workers: int = 0
) -> Callable[[int], Callable[[], int]]:
    import deeplake

    def factory(rows: int) -> Callable[[], int]:
        ds = deeplake.open_read_only(f"file://{path}")
        view = ds if rows >= len(ds) else ds.query(f"SELECT * LIMIT {rows}")
        if api == "batches":
            return _counting(lambda: iter(view.batches(BATCH)), lambda b: b["image"])
        dl = _dataloader(view.pytorch(), workers, batch_size=BATCH, shuffle=True)
        return _counting(lambda: iter(dl), lambda b: b["image"])

    return factory


# -- S3 (moto) with injected latency -----------------------------------------------------
def latency_store_class() -> type:
    from tensorhouse.storage import ForwardingStore
    from tensorhouse.storage.base import Store

    class LatencyStore(ForwardingStore):
        """Delegates to a real store; every read request first sleeps ``delay`` seconds (a WAN round trip)."""

        def __init__(self, inner: Store, delay: float) -> None:
            super().__init__(inner)
            self.delay = delay
            self.requests = 0
            self._lock = threading.Lock()

        def _wait(self) -> None:
            with self._lock:
                self.requests += 1
            if self.delay:
                time.sleep(self.delay)

        def get(self, key: str) -> bytes:
            self._wait()
            return self.inner.get(key)

        def get_range(self, key: str, start: int, length: int) -> bytes:
            self._wait()
            return self.inner.get_range(key, start, length)

        def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
            self._wait()
            return self.inner.get_ranges(key, ranges)

    return LatencyStore


class MotoServer:
    """A moto S3 server on 127.0.0.1 (a free port), started from the venv's bin dir; killed on exit."""

    def __init__(self, log_path: Path) -> None:
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = ""

    def __enter__(self) -> MotoServer:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        env = dict(
            os.environ,
            AWS_ACCESS_KEY_ID="testing",
            AWS_SECRET_ACCESS_KEY="testing",
            AWS_DEFAULT_REGION="us-east-1",
        )
        exe = Path(sys.executable).parent / "moto_server"
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(
            [str(exe), "-H", "127.0.0.1", "-p", str(port)],
            env=env,
            stdout=self._log,
            stderr=subprocess.STDOUT,
        )
        _NOT_LOADER.add(self.proc.pid)
        self.url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 60
        while True:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    break
            except OSError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"moto_server did not start (see {self.log_path})") from None
                time.sleep(0.2)
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()


def s3_dataset(moto: MotoServer, data: Inputs, delay: float) -> tuple[Any, Any]:
    """The JPEG dataset on moto S3 (uploaded once per run), opened through a LatencyStore."""
    import boto3

    import tensorhouse as th
    from tensorhouse.format.dataset import Dataset
    from tensorhouse.format.log import Log
    from tensorhouse.storage import open_store

    opts = {"endpoint_url": moto.url, "key": "testing", "secret": "testing"}
    uri = "s3://bench-loader/ds"
    if not getattr(moto, "uploaded", False):
        t0 = time.perf_counter()
        s3 = boto3.client(
            "s3",
            endpoint_url=moto.url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            region_name="us-east-1",
        )
        s3.create_bucket(Bucket="bench-loader")
        ds = th.create(uri, {"image": th.Image("jpeg"), "label": "int64"}, storage_options=opts)
        for a in range(0, len(data), 4096):
            b = min(len(data), a + 4096)
            ds.append({"image": data.jpegs[a:b], "label": data.labels[a:b]})
        moto.uploaded = True  # type: ignore[attr-defined]
        log(f"uploaded {len(data)} rows to moto S3 in {time.perf_counter() - t0:.1f} s")
    store = latency_store_class()(open_store(uri, opts), delay)
    lg = Log(store)
    return Dataset(store, lg.snapshot(), log=lg, storage_options=opts), store


# -- profile of the tensorhouse loader ------------------------------------------------------
def profile_th(ds: Any, label: str, n_rows: int, *, shuffle: bool = True, epochs: int = 2) -> str:
    """Time the loader's phases (wrapping its functions in this process only; no code is edited).

    Per-thread sums of: chunk reads (``SnapshotReader.read_chunk``: map/GET, checksum,
    decompress), payload slicing (``Materializer._payloads`` minus its chunk reads),
    per-image decode (``decode_image``), the decode fan-out (``_parallel``, wall), the
    whole column per batch, the consumer's wait for each batch and its torch conversion.
    """
    import tensorhouse as th
    from tensorhouse.format.scan import SnapshotReader
    from tensorhouse.loader import batch_columns as M
    from tensorhouse.loader import torch_adapter as TA

    lock = threading.Lock()
    wall: defaultdict[str, float] = defaultdict(float)
    cpu: defaultdict[str, float] = defaultdict(float)
    calls: defaultdict[str, int] = defaultdict(int)
    inner_reads = threading.local()

    def add(name: str, w: float, c: float) -> None:
        with lock:
            wall[name] += w
            cpu[name] += c
            calls[name] += 1

    def timed(name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def wrapper(*a: Any, **k: Any) -> Any:
            t, c = time.perf_counter(), time.thread_time()
            try:
                return fn(*a, **k)
            finally:
                add(name, time.perf_counter() - t, time.thread_time() - c)

        return wrapper

    orig_read = SnapshotReader.read_chunk
    orig_payloads = M.Materializer._payloads
    orig_decode = M.decode_image
    orig_parallel = M.Materializer._parallel
    orig_column = M.Materializer.column
    orig_to_torch = TA.batch_to_tensors

    def read_chunk(self: Any, *a: Any, **k: Any) -> Any:
        t, c = time.perf_counter(), time.thread_time()
        try:
            return orig_read(self, *a, **k)
        finally:
            w, cc = time.perf_counter() - t, time.thread_time() - c
            add("chunk read (read_chunk)", w, cc)
            acc = getattr(inner_reads, "v", None)
            if acc is not None:
                acc[0] += w
                acc[1] += cc

    def payloads(self: Any, *a: Any, **k: Any) -> Any:
        inner_reads.v = [0.0, 0.0]
        t, c = time.perf_counter(), time.thread_time()
        try:
            return orig_payloads(self, *a, **k)
        finally:
            w, cc = time.perf_counter() - t, time.thread_time() - c
            rw, rc = inner_reads.v
            inner_reads.v = None
            add("payload slicing (_payloads minus chunk reads)", w - rw, cc - rc)

    SnapshotReader.read_chunk = read_chunk  # type: ignore[method-assign]
    M.Materializer._payloads = payloads  # type: ignore[method-assign]
    M.decode_image = timed("decode (decode_image, per image)", orig_decode)

    def parallel(self: Any, n: int, work: Callable[[int, int], None]) -> None:
        def timed_work(a: int, b: int) -> None:
            t, c = time.perf_counter(), time.thread_time()
            try:
                work(a, b)
            finally:
                add(
                    "fill: decode / copy into the batch buffer (decode threads)",
                    time.perf_counter() - t,
                    time.thread_time() - c,
                )

        t, c = time.perf_counter(), time.thread_time()
        try:
            orig_parallel(self, n, timed_work)
        finally:
            add(
                "fan-out (_parallel: submit + wait, batch thread)",
                time.perf_counter() - t,
                time.thread_time() - c,
            )

    M.Materializer._parallel = parallel  # type: ignore[method-assign]
    M.Materializer.column = timed("column total (one per batch)", orig_column)  # type: ignore[method-assign]
    TA.batch_to_tensors = timed("to_torch (consumer thread)", orig_to_torch)
    lines = []
    try:
        ld = th.loader(ds, batch_size=BATCH, shuffle=shuffle, columns=["image", "label"])
        for e in range(epochs):
            wall.clear()
            cpu.clear()
            calls.clear()
            ld.set_epoch(100 + e)
            req0 = getattr(ds.store, "requests", 0)
            flt0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
            it = iter(ld)
            wait = 0.0
            n = 0
            p0, t0 = time.process_time(), time.perf_counter()
            while True:
                t = time.perf_counter()
                try:
                    b = next(it)
                except StopIteration:
                    break
                wait += time.perf_counter() - t
                n += len(b["label"])
            total = time.perf_counter() - t0
            proc = time.process_time() - p0
            requests = getattr(ds.store, "requests", 0) - req0
            faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - flt0
        nb = calls["column total (one per batch)"]
        nchunks = calls["chunk read (read_chunk)"]
        lines.append(f"#### Profile: {label} ({n} images, {nb} batches, last of {epochs} epochs)")
        lines.append("")
        lines.append(
            f"- wall {total:.3f} s = {n / total:,.0f} img/s; process CPU {proc:.3f} s "
            f"({proc / max(n, 1) * 1e6:.0f} us/image) "
            f"= {proc / total:.2f} of {os.cpu_count()} cores busy; {faults / max(n, 1):.1f} minor page faults/image; "
            f"consumer blocked in next() {wait:.3f} s ({wait / total:.0%} of wall)"
        )
        lines.append(
            f"- chunk reads: {nchunks} ({nchunks / max(nb, 1):.2f} per batch), "
            f"{wall['chunk read (read_chunk)'] / max(nchunks, 1) * 1e3:.1f} ms wall each"
            + (f"; {requests} store read requests" if hasattr(ds.store, "requests") else "")
        )
        dk = "decode (decode_image, per image)"
        if calls[dk]:
            lines.append(
                f"- decode: {cpu[dk] / calls[dk] * 1e6:.0f} us CPU vs {wall[dk] / calls[dk] * 1e6:.0f} us wall "
                f"per image (wall > CPU: the decode threads were descheduled, i.e. waited for a core); "
                f"decode CPU = {cpu[dk] / max(proc, 1e-9):.0%} of the process CPU"
            )
        lines.append("")
        lines.append(
            "| phase | calls | wall s (sum over threads) | CPU s | wall us / image | share of epoch wall |"
        )
        lines.append("|---|---|---|---|---|---|")
        for name in sorted(wall, key=lambda k: -wall[k]):
            lines.append(
                f"| {name} | {calls[name]} | {wall[name]:.3f} | {cpu[name]:.3f} | "
                f"{wall[name] / max(n, 1) * 1e6:.1f} | {wall[name] / total:.0%} |"
            )
    finally:
        SnapshotReader.read_chunk = orig_read  # type: ignore[method-assign]
        M.Materializer._payloads = orig_payloads  # type: ignore[method-assign]
        M.decode_image = orig_decode
        M.Materializer._parallel = orig_parallel  # type: ignore[method-assign]
        M.Materializer.column = orig_column  # type: ignore[method-assign]
        TA.batch_to_tensors = orig_to_torch
    return "\n".join(lines)


def decode_micro(data: Inputs, k: int = 2000) -> str:
    """Single-thread cost per image: plain simplejpeg vs tensorhouse's decode_image on a memoryview."""
    import simplejpeg

    from tensorhouse.format.chunks.codecs import decode_image

    blobs = data.jpegs[:k]
    views = [memoryview(b) for b in blobs]
    buf = np.empty((H, W, 3), np.uint8)

    def plain() -> None:
        for b in blobs:
            simplejpeg.decode_jpeg(b, colorspace="RGB", buffer=buf)

    def header() -> None:
        for b in views:
            simplejpeg.decode_jpeg_header(b)

    def th_dec() -> None:
        for v in views:
            decode_image("jpeg", v, out=buf)

    fns = {
        "simplejpeg.decode_jpeg(bytes, buffer=)": plain,
        "simplejpeg.decode_jpeg_header alone": header,
        "tensorhouse decode_image('jpeg', memoryview, out=)": th_dec,
    }
    ts: dict[str, list[float]] = {k: [] for k in fns}
    for _ in range(5):  # interleaved, so the machine's load hits each alike
        for name, fn in fns.items():
            t = time.perf_counter()
            fn()
            ts[name].append(time.perf_counter() - t)
    return "\n".join(
        f"- {name}: {statistics.median(v) / len(blobs) * 1e6:.1f} us/image (1 thread, median of 5)"
        for name, v in ts.items()
    )


# -- report ------------------------------------------------------------------------------------
def _fmt_img_s(r: Result) -> str:
    s = f"{r.img_s:,.0f}"
    if r.gb_s is not None:
        s += f" ({r.gb_s:.2f} GB/s)"
    return s


def report(
    run: Run, res: list[Result], data: Inputs, extras: list[str]
) -> tuple[str, list[tuple[str, bool]]]:
    def bound_for(mode: str) -> Result | None:
        """The decode-only bound timed in the same rounds (warm, or the cold ones)."""
        rows = [r for r in res if r.group == "decode"]
        return next((r for r in rows if r.mode == mode), rows[0] if rows else None)

    def th_ref(mode: str) -> Result | None:
        return next(
            (r for r in res if r.group == "th" and r.detail == "shuffle=True" and r.mode == mode),
            None,
        )

    lines = [
        f"### Loader throughput: {run.n} x {H}x{W} q90 JPEG (mean {data.jpeg_bytes / len(data) / 1e3:.1f} KB), "
        f"batches of {BATCH} uint8 HxWxC; median of {run.repeats} epoch(s) per row, timed in interleaved rounds "
        f"after an untimed warm-up epoch; {os.cpu_count()} CPUs",
        "",
        "| system | mode | img/s (median) | ratio vs decode-only bound | ratio vs tensorhouse |",
        "|---|---|---|---|---|",
    ]
    notes: list[str] = []
    for r in res:
        ref = th_ref(r.mode) or th_ref("warm")
        bound = bound_for(r.mode)
        vs_bound = f"{r.img_s / bound.img_s:.2f}" if bound else "-"
        if r.group == "s3":
            local = th_ref("warm")
            vs_th = f"{r.img_s / local.img_s:.2f} (vs local warm)" if local else "-"
        else:
            vs_th = f"{r.img_s / ref.img_s:.2f}" if ref else "-"
        mode = (r.label or r.mode) + (f", {r.detail}" if r.detail else "")
        if r.note:
            notes.append(f"{r.system} ({mode}): {r.note}")
            mode += f" [{len(notes)}]"
        lines.append(f"| {r.system} | {mode} | {_fmt_img_s(r)} | {vs_bound} | {vs_th} |")
    if notes:
        lines.append("")
        lines += [f"[{i + 1}] {n}" for i, n in enumerate(notes)]
    lines.append("")
    if run.loads:
        ld = sorted(run.loads)
        lines.append(
            f"Machine load (1-minute load average on {os.cpu_count()} CPUs, sampled before each timed epoch): "
            f"min {ld[0]:.1f}, median {statistics.median(ld):.1f}, max {ld[-1]:.1f}. Other jobs share the "
            "machine: a load above the CPU count means every thread waits for a core, which penalises "
            "designs that need both cores (tensorhouse, the decode-only bound) more than single-threaded "
            "ones."
        )
        lines.append("")
    left = [x for e in run.entries for x in e.left] or run.left
    if _DROP:
        if left:
            cache_left = (
                f" Right after each drop the page cache held {min(left):,.0f}-{max(left):,.0f} MB "
                "(all processes, other jobs' included). tensorhouse's process-wide chunk mappings and the raw "
                "copy bound's mapping were released before each drop (see release_mappings): the kernel "
                "never drops mapped pages."
            )
        else:
            cache_left = ""
        cache = (
            "cold rows dropped it before every epoch (`echo 3 > /proc/sys/vm/drop_caches`); processes, "
            "opened datasets and DataLoader workers stay warm." + cache_left
        )
    else:
        cache = "warm only (" + ("--no-cold)." if _NO_COLD else "dropping it is not permitted).")
    lines.append("Page cache: " + cache)
    if run.failures:
        lines.append("")
        lines.append("Failed configurations: " + "; ".join(run.failures))

    # CPU cost: less sensitive to the machine's load than wall time.
    lines += [
        "",
        "#### CPU cost per image (user + system, this process and its DataLoader workers; "
        "the moto server excluded)",
        "",
        "| system | mode | CPU us / image | cores busy (CPU s / wall s) | CPU cost vs tensorhouse |",
        "|---|---|---|---|---|",
    ]
    for r in res:
        if not r.cpu:
            continue
        ref = th_ref(r.mode) or th_ref("warm")
        rel = f"{r.cpu_us_per_img / ref.cpu_us_per_img:.2f}x" if ref and ref.cpu else "-"
        mode = (r.label or r.mode) + (f", {r.detail}" if r.detail else "")
        lines.append(f"| {r.system} | {mode} | {r.cpu_us_per_img:,.0f} | {r.cores:.2f} | {rel} |")

    # Targets
    checks: list[tuple[str, bool]] = []
    tl = ["", "### Targets", "", "| target | measured | met |", "|---|---|---|"]
    peer_groups = ("deeplake", "lance", "wds", "files")
    for mode in ("warm", "cold"):
        th_r = th_ref(mode)
        if th_r is None:
            continue
        bound = bound_for(mode)
        if bound is not None:
            x = th_r.img_s / bound.img_s
            name = f"JPEG ({mode}) >= 90% of decode-only bound"
            tl.append(
                f"| {name} | {th_r.img_s:,.0f} / {bound.img_s:,.0f} = {x:.0%} | {'met' if x >= 0.9 else 'MISSED'} |"
            )
            checks.append((name, x >= 0.9))
        peers = [r for r in res if r.group in peer_groups and r.mode == mode]
        if peers:
            best = max(peers, key=lambda r: r.img_s)
            x = th_r.img_s / best.img_s
            name = f"JPEG ({mode}) >= 1.8x best peer"
            tl.append(
                f"| {name} | {x:.2f}x ({best.system}, {best.detail}: {best.img_s:,.0f} img/s) | "
                f"{'met' if x >= 1.8 else 'MISSED'} |"
            )
            checks.append((name, x >= 1.8))
    th_w, bound_w = th_ref("warm"), bound_for("warm")
    if th_w is not None and bound_w is not None and th_w.cpu and bound_w.cpu:
        x = bound_w.cpu_us_per_img / th_w.cpu_us_per_img
        tl.append(
            f"| (info, load-robust) JPEG CPU efficiency vs decode-only bound | {th_w.cpu_us_per_img:,.0f} vs "
            f"{bound_w.cpu_us_per_img:,.0f} CPU us/image = {x:.0%} | - |"
        )
    raw = next((r for r in res if r.group == "th_raw" and r.mode == "warm"), None)
    if raw is not None and raw.gb_s is not None:
        ok = raw.gb_s >= 4.0
        rb = next((r for r in res if r.group == "raw_bound" and r.mode == "warm"), None)
        extra = (
            f" ({raw.gb_s / rb.gb_s:.0%} of the raw copy bound's {rb.gb_s:.2f} GB/s)"
            if rb and rb.gb_s
            else ""
        )
        tl.append(
            f"| raw >= 4 GB/s warm | {raw.gb_s:.2f} GB/s{extra} | {'met' if ok else 'MISSED'} |"
        )
        checks.append(("raw >= 4 GB/s warm", ok))
    s3 = next((r for r in res if r.group == "s3" and r.detail.startswith("20 ms")), None)
    local = th_ref("warm")
    if s3 is not None and local is not None:
        x = s3.img_s / local.img_s
        tl.append(
            f"| S3 with 20 ms latency >= 80% of local | {s3.img_s:,.0f} / {local.img_s:,.0f} = {x:.0%} | "
            f"{'met' if x >= 0.8 else 'MISSED'} |"
        )
        checks.append(("S3 with 20 ms latency >= 80% of local", x >= 0.8))
    text = "\n".join(lines + tl + (["", *extras] if extras else []))
    return text, checks


# -- main ----------------------------------------------------------------------------------------
def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=10_000)
    ap.add_argument("--smoke", action="store_true", help="500 rows, 1 repeat (< 90 s)")
    ap.add_argument("--only", default="", help=f"comma-separated subset of {','.join(GROUPS)}")
    ap.add_argument("--repeats", type=int, default=None)
    ap.add_argument(
        "--cap", type=float, default=None, help="seconds per epoch above which a prefix is used"
    )
    ap.add_argument(
        "--profile",
        choices=("auto", "always", "never"),
        default="auto",
        help="profile tensorhouse when it misses a target (auto), always, or never",
    )
    ap.add_argument("--no-cold", action="store_true", help="skip the cold-cache repeats")
    args = ap.parse_args(argv)
    n = 500 if args.smoke else args.rows
    repeats = args.repeats or (1 if args.smoke else 3)
    cap = args.cap or (4.0 if args.smoke else 120.0)
    only = [g.strip() for g in args.only.split(",") if g.strip()] or list(GROUPS)
    bad = [g for g in only if g not in GROUPS]
    if bad:
        ap.error(f"unknown --only name(s) {bad}; choose from {', '.join(GROUPS)}")
    global _DROP, _NO_COLD
    if args.no_cold:
        _DROP, _NO_COLD = False, True
    os.environ.setdefault("AWS_DEFAULT_REGION", "us-east-1")
    t_start = time.perf_counter()

    import torch

    # The loaders bring their own threads; keep torch's pool out of the way.
    torch.set_num_threads(1)
    data = inputs(n)
    run = Run(
        n,
        repeats,
        cap,
        prefix_target_s=(1.0 if args.smoke else 8.0),
        probe_rows=64 if args.smoke else 128,
    )
    want = set(only)
    jpeg_path = build_th(data, raw=False) if want & {"th", "th_torch", "s3"} else None
    raw_path = build_th(data, raw=True) if "th_raw" in want else None
    paths = {
        g: fn(data)
        for g, fn in (
            ("deeplake", build_deeplake),
            ("lance", build_lance),
            ("wds", build_wds),
            ("files", build_files),
        )
        if g in want
    }
    log(
        f"inputs ready: {n} rows, {data.jpeg_bytes / 1e6:.1f} MB of JPEG; page cache drop "
        f"{'permitted' if drop_page_cache() else 'NOT permitted: warm only'}"
    )

    configs: list[Config] = []
    if "decode" in want:
        configs.append(
            Config(
                "decode",
                "decode-only bound",
                "simplejpeg, 2 threads, reused buffer",
                decode_bound(data),
                cold=False,
                in_cold_rounds=True,
                note="in-memory bytes, no I/O: its cold-round timing is the reference for cold rows",
            )
        )
    if "th" in want:
        configs.append(
            Config(
                "th",
                "tensorhouse th.loader JPEG",
                "shuffle=True",
                th_factory(jpeg_path, shuffle=True),
            )
        )
        configs.append(
            Config(
                "th",
                "tensorhouse th.loader JPEG",
                "shuffle=False",
                th_factory(jpeg_path, shuffle=False),
            )
        )
    if "raw_bound" in want:
        configs.append(
            Config(
                "raw_bound",
                "raw copy bound",
                ".npy memmap, random batches, 2 threads, reused buffer",
                raw_bound(data),
                bytes_per_img=IMG_BYTES,
            )
        )
    if "th_raw" in want:
        configs.append(
            Config(
                "th_raw",
                "tensorhouse th.loader raw uint8",
                "shuffle=True",
                th_factory(raw_path, shuffle=True),
                bytes_per_img=IMG_BYTES,
            )
        )
    if "th_torch" in want:
        configs.append(
            Config(
                "th_torch",
                "tensorhouse th.loader JPEG",
                "shuffle=True, DataLoader(workers=2)",
                th_factory(jpeg_path, shuffle=True, workers=2),
            )
        )
    if "deeplake" in want:
        p = paths["deeplake"]
        for w in (0, 2):
            configs.append(
                Config(
                    "deeplake",
                    "Deep Lake 4.7.4",
                    f"ds.pytorch() + DataLoader(bs=64, shuffle), workers={w}",
                    deeplake_factory(p, api="pytorch", workers=w),
                    prefixable=True,
                )
            )
        configs.append(
            Config(
                "deeplake",
                "Deep Lake 4.7.4",
                "ds.batches(64)",
                deeplake_factory(p, api="batches"),
                prefixable=True,
            )
        )
    if "lance" in want:
        for tt in (False, True):
            for w in (0, 2):
                how = "to_tensor_fn=simplejpeg" if tt else "simplejpeg in the loop (main thread)"
                configs.append(
                    Config(
                        "lance",
                        "Lance LanceDataset",
                        f"{how}, workers={w}",
                        lance_factory(paths["lance"], w, to_tensor=tt),
                        note="sequential scan (no shuffle)",
                    )
                )
    if "wds" in want:
        shards = len(list(paths["wds"].glob("shard-*.tar")))
        for w in (0, 2):
            configs.append(
                Config(
                    "wds",
                    "WebDataset tar shards",
                    f"decode=simplejpeg, workers={w}",
                    wds_factory(paths["wds"], w),
                    note=f"{shards} shard(s); sequential (no shuffle buffer)",
                )
            )
    if "files" in want:
        for w in (0, 2):
            configs.append(
                Config(
                    "files",
                    "PyTorch Dataset over JPEG files",
                    f"simplejpeg, shuffle, workers={w}",
                    files_factory(paths["files"], data.labels, w),
                )
            )

    moto: MotoServer | None = None
    s3_ds: dict[float, Any] = {}
    extras: list[str] = []
    results: list[Result] = []
    try:
        if "s3" in want:
            moto = MotoServer(data.dir / "moto_server.log").__enter__()
            for delay in (LATENCY_S, 0.0):
                ds, _store = s3_dataset(moto, data, delay)
                s3_ds[delay] = ds
                configs.append(
                    Config(
                        "s3",
                        "tensorhouse th.loader JPEG on S3 (moto)",
                        f"{delay * 1e3:.0f} ms per request, shuffle=True",
                        th_factory(ds, shuffle=True),
                        cold=False,
                        note="moto keeps objects in memory: no cold run",
                    )
                )
        for cfg in configs:
            run.prepare(cfg)
        log(
            f"prepared {len(run.entries)} configurations; timing {repeats} interleaved round(s), warm"
        )
        run.rounds("warm")
        if _DROP is not False:
            log(f"timing {repeats} interleaved round(s), cold")
            run.rounds("cold")
        results = run.results
        run.close()  # stops persistent DataLoader workers before profiling

        # Profiles when a target is missed (or always).
        _text, checks = report(run, results, data, [])
        missed = {name for name, ok in checks if not ok}
        if args.profile != "never":
            do_all = args.profile == "always"
            import tensorhouse as th

            if jpeg_path is not None and (do_all or any(m.startswith("JPEG") for m in missed)):
                extras += [
                    profile_th(th.open(str(jpeg_path)), "local JPEG, shuffle=True", n),
                    "",
                    "Per-image decode cost, single thread:",
                    decode_micro(data),
                    "",
                ]
            if raw_path is not None and (do_all or "raw >= 4 GB/s warm" in missed):
                extras += [
                    profile_th(th.open(str(raw_path)), "local raw uint8, shuffle=True", n),
                    "",
                ]
            if LATENCY_S in s3_ds and (do_all or any(m.startswith("S3") for m in missed)):
                extras += [
                    profile_th(s3_ds[LATENCY_S], "S3 (moto) + 20 ms latency, shuffle=True", n),
                    "",
                ]
    finally:
        run.close()
        if moto is not None:
            moto.__exit__(None, None, None)
    text, checks = report(run, results, data, extras)
    print(text, flush=True)
    out = data.dir / ("results_smoke.md" if args.smoke else "results.md")
    out.write_text(text + "\n")
    log(f"done in {time.perf_counter() - t_start:.0f} s; report also in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
