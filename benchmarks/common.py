"""Shared helpers for the benchmarks: synthetic data, timing, tables, page cache.

Benchmarks compare tensorhouse with its peers *in the same run* and report
ratios; absolute times on this shared machine move between runs.

Example:
    >>> from benchmarks.common import image_dataset, time_it
    >>> data = image_dataset(16)                      # doctest: +SKIP
    >>> t = time_it(lambda: sum(len(b) for b in data.jpegs), repeats=3)  # doctest: +SKIP
    >>> t.median <= t.max                             # doctest: +SKIP
    True
"""

from __future__ import annotations

import itertools
import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

#: Where generated inputs are cached (gitignored: ``/benchmarks/_data/``).
DATA_DIR = Path(__file__).resolve().parent / "_data"

#: Bump when the generator changes, so stale caches are not reused.
GENERATOR_VERSION = 1


# -- synthetic images -------------------------------------------------------------
def synthetic_image(rng: np.random.Generator, height: int = 256, width: int = 256) -> np.ndarray:
    """One photo-like uint8 HxWx3 image: a colour gradient, a few shapes, mild noise.

    Pure noise would make JPEGs unrealistically large (and raw pixels
    incompressible in an unrealistic way); smooth regions with edges give
    JPEG files of the size real 256x256 photos have at q90 (~15-25 KB).
    """
    yy = np.linspace(0.0, 1.0, height, dtype=np.float32)[:, None, None]
    xx = np.linspace(0.0, 1.0, width, dtype=np.float32)[None, :, None]
    c0, c1, c2 = (rng.uniform(0, 255, size=3).astype(np.float32) for _ in range(3))
    img = c0 + (c1 - c0) * yy + (c2 - c0) * xx * 0.5
    img = np.broadcast_to(img, (height, width, 3)).copy()
    gy = np.arange(height, dtype=np.float32)[:, None]
    gx = np.arange(width, dtype=np.float32)[None, :]
    for _ in range(int(rng.integers(3, 9))):
        colour = rng.uniform(0, 255, size=3).astype(np.float32)
        alpha = np.float32(rng.uniform(0.5, 1.0))
        if rng.random() < 0.5:  # a filled circle
            cy, cx = rng.uniform(0, height), rng.uniform(0, width)
            r = rng.uniform(min(height, width) * 0.05, min(height, width) * 0.3)
            y0, y1 = max(int(cy - r), 0), min(int(cy + r) + 1, height)
            x0, x1 = max(int(cx - r), 0), min(int(cx + r) + 1, width)
            mask = (gy[y0:y1] - cy) ** 2 + (gx[:, x0:x1] - cx) ** 2 <= r * r
            box = img[y0:y1, x0:x1]
            box[mask] = box[mask] * (1 - alpha) + colour * alpha
        else:  # a filled rectangle
            y0, y1 = sorted(rng.integers(0, height, size=2))
            x0, x1 = sorted(rng.integers(0, width, size=2))
            img[y0 : y1 + 1, x0 : x1 + 1] = (
                img[y0 : y1 + 1, x0 : x1 + 1] * (1 - alpha) + colour * alpha
            )
    img += rng.standard_normal(img.shape, dtype=np.float32) * np.float32(3.0)  # sensor-like noise
    return np.clip(img, 0, 255).astype(np.uint8)


@dataclass(frozen=True, eq=False)
class ImageData:
    """``n`` rows: the same images as q90 JPEG files and as raw pixels, labels, embeddings."""

    jpegs: list[bytes]
    raw: np.ndarray  # uint8 [n, H, W, 3]
    labels: np.ndarray  # int32 [n], 0..num_classes-1
    embeddings: np.ndarray  # float32 [n, dim]
    num_classes: int

    def __len__(self) -> int:
        return len(self.jpegs)

    @property
    def jpeg_bytes(self) -> int:
        return sum(len(b) for b in self.jpegs)


def _cache_dir(**params: Any) -> Path:
    key = "-".join(f"{k}{v}" for k, v in params.items())
    return DATA_DIR / f"images-v{GENERATOR_VERSION}-{key}"


def image_dataset(
    n: int,
    *,
    height: int = 256,
    width: int = 256,
    quality: int = 90,
    dim: int = 128,
    num_classes: int = 1000,
    seed: int = 0,
    verbose: bool = True,
) -> ImageData:
    """Generate (once) and load the benchmark inputs, cached under ``benchmarks/_data/``.

    The cache is keyed by every parameter; a second call with the same
    parameters only reads files (raw pixels are memory-mapped, then loaded).
    """
    import simplejpeg

    d = _cache_dir(n=n, h=height, w=width, q=quality, d=dim, c=num_classes, s=seed)
    done = d / "done.json"
    if not done.exists():
        t0 = time.perf_counter()
        if verbose:
            print(
                f"[data] generating {n} images {height}x{width} into {d} ...",
                file=sys.stderr,
                flush=True,
            )
        d.mkdir(parents=True, exist_ok=True)
        rng = np.random.default_rng(seed)
        mm = np.lib.format.open_memmap(
            d / "raw.npy", mode="w+", dtype=np.uint8, shape=(n, height, width, 3)
        )
        for i in range(n):
            mm[i] = synthetic_image(rng, height, width)

        def enc(i: int) -> bytes:
            return simplejpeg.encode_jpeg(
                np.ascontiguousarray(mm[i]), quality=quality, colorspace="RGB"
            )

        with ThreadPoolExecutor(max(2, os.cpu_count() or 2)) as ex:
            jpegs = list(ex.map(enc, range(n)))
        mm.flush()
        del mm
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum([len(b) for b in jpegs], out=offsets[1:])
        (d / "jpeg.bin").write_bytes(b"".join(jpegs))
        np.save(d / "jpeg_offsets.npy", offsets)
        np.save(d / "labels.npy", rng.integers(0, num_classes, size=n).astype(np.int32))
        np.save(d / "embeddings.npy", rng.standard_normal((n, dim), dtype=np.float32))
        done.write_text(json.dumps({"n": n, "seconds": time.perf_counter() - t0}))
        if verbose:
            print(
                f"[data] generated in {time.perf_counter() - t0:.1f} s", file=sys.stderr, flush=True
            )
    blob = (d / "jpeg.bin").read_bytes()
    offsets = np.load(d / "jpeg_offsets.npy")
    view = memoryview(blob)
    jpegs = [bytes(view[int(a) : int(b)]) for a, b in itertools.pairwise(offsets)]
    raw = np.array(
        np.load(d / "raw.npy", mmap_mode="r")
    )  # fully in memory: writes must not time disk reads
    return ImageData(
        jpegs, raw, np.load(d / "labels.npy"), np.load(d / "embeddings.npy"), num_classes
    )


# -- timing -------------------------------------------------------------------------
@dataclass(frozen=True)
class Timing:
    """Seconds of each repeat of a measurement; the median is what we report."""

    times: tuple[float, ...]

    @property
    def median(self) -> float:
        return statistics.median(self.times)

    @property
    def min(self) -> float:
        return min(self.times)

    @property
    def max(self) -> float:
        return max(self.times)


def time_it(
    fn: Callable[[], Any],
    *,
    repeats: int = 5,
    warmup: int = 0,
    setup: Callable[[], Any] | None = None,
) -> Timing:
    """Run ``fn`` ``warmup`` times untimed, then ``repeats`` times timed.

    ``setup`` runs before every call, untimed (e.g. drop the page cache, or
    delete the previous write's output).
    """
    for _ in range(warmup):
        if setup is not None:
            setup()
        fn()
    times = []
    for _ in range(repeats):
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return Timing(tuple(times))


def time_each(
    fn: Callable[[Any], Any],
    args: Sequence[Any] | np.ndarray,
    *,
    setup: Callable[[], Any] | None = None,
) -> Timing:
    """Time one call per argument (latency distributions, e.g. single-row reads)."""
    times = []
    for a in args:
        if setup is not None:
            setup()
        t0 = time.perf_counter()
        fn(a)
        times.append(time.perf_counter() - t0)
    return Timing(tuple(times))


def rotations(names: Sequence[str], k: int) -> list[str]:
    """``names`` rotated by ``k``, so no system always runs first (or right after another)."""
    k %= max(len(names), 1)
    return list(names[k:]) + list(names[:k])


def time_interleaved(
    fns: Mapping[str, Callable[[], Any]],
    *,
    repeats: int = 5,
    setup: Mapping[str, Callable[[], Any]] | None = None,
) -> dict[str, Timing]:
    """Like :func:`time_it` for several systems, round-robin: repeat 1 of each, then repeat 2 ...

    On a shared, noisy machine a burst of someone else's work then lands on
    every system alike instead of on whichever ran during it, which keeps the
    ratios between systems honest. The order rotates every round.
    """
    names = list(fns)
    times: dict[str, list[float]] = {k: [] for k in names}
    for rep in range(repeats):
        for name in rotations(names, rep):
            if setup is not None and name in setup:
                setup[name]()
            t0 = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - t0)
    return {k: Timing(tuple(v)) for k, v in times.items()}


def time_each_interleaved(
    fns: Mapping[str, Callable[[Any], Any]],
    args: Sequence[Any] | np.ndarray,
    *,
    setup: Mapping[str, Callable[[], Any]] | None = None,
) -> dict[str, Timing]:
    """Like :func:`time_each` for several systems: each argument goes to every system in turn."""
    names = list(fns)
    times: dict[str, list[float]] = {k: [] for k in names}
    for j, a in enumerate(args):
        for name in rotations(names, j):
            if setup is not None and name in setup:
                setup[name]()
            t0 = time.perf_counter()
            fns[name](a)
            times[name].append(time.perf_counter() - t0)
    return {k: Timing(tuple(v)) for k, v in times.items()}


# -- page cache ---------------------------------------------------------------------
_DROP_OK: bool | None = None


def drop_page_cache() -> bool:
    """Flush dirty pages and drop the OS page cache; False where not permitted.

    Needs root (``echo 3 > /proc/sys/vm/drop_caches``). Where it fails the
    benchmarks report warm-cache numbers only. In-process caches (parsed
    headers, manifests) of every system are kept: "cold" means cold disk,
    warm process, as in a training job that re-reads a dataset.
    """
    global _DROP_OK
    if _DROP_OK is False:
        return False
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        _DROP_OK = True
    except OSError:
        try:  # not root, but maybe sudo without a password
            subprocess.run(
                ["sudo", "-n", "sh", "-c", "sync; echo 3 > /proc/sys/vm/drop_caches"],
                check=True,
                capture_output=True,
                timeout=30,
            )
            _DROP_OK = True
        except (OSError, subprocess.SubprocessError):
            _DROP_OK = False
    return _DROP_OK


def fsync_tree(path: str | os.PathLike[str]) -> None:
    """fsync every file and directory below ``path`` (make a peer's write durable)."""
    for root, _dirs, files in os.walk(path):
        for name in files:
            fd = os.open(os.path.join(root, name), os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
        fd = os.open(root, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def tree_bytes(path: str | os.PathLike[str]) -> int:
    """Total size of the files below ``path``."""
    return sum(os.path.getsize(os.path.join(r, f)) for r, _d, fs in os.walk(path) for f in fs)


# -- reporting ----------------------------------------------------------------------
def fmt_seconds(s: float) -> str:
    if s < 1e-3:
        return f"{s * 1e6:.0f} us"
    if s < 1:
        return f"{s * 1e3:.1f} ms"
    return f"{s:.2f} s"


@dataclass
class Row:
    """One measurement across systems. ``rows``/``nbytes`` turn times into throughputs."""

    name: str
    timings: dict[str, Timing] = field(default_factory=dict)
    rows: int | None = None
    nbytes: dict[str, int] = field(default_factory=dict)  # bytes moved, per system
    note: str = ""

    def cell(self, system: str) -> str:
        t = self.timings.get(system)
        if t is None:
            return "-"
        s = fmt_seconds(t.median)
        if self.rows:
            s += f"; {self.rows / t.median:,.0f} rows/s"
            nb = self.nbytes.get(system)
            if nb:
                s += f", {nb / t.median / 1e6:,.0f} MB/s"
        return s


def ratio(row: Row, system: str, reference: str) -> float | None:
    """Median time of ``system`` over that of ``reference`` (< 1: ``system`` is faster)."""
    a, b = row.timings.get(system), row.timings.get(reference)
    if a is None or b is None or b.median == 0:
        return None
    return a.median / b.median


def best_peer(row: Row, subject: str) -> str | None:
    """The fastest system other than ``subject`` on this row."""
    peers = [s for s in row.timings if s != subject]
    return min(peers, key=lambda s: row.timings[s].median) if peers else None


def markdown_table(rows: Sequence[Row], systems: Sequence[str], *, reference: str) -> str:
    """Medians per system, each other system's time as a ratio of ``reference``'s, and
    ``reference``'s time over its best peer's (the fastest other system on that row).

    A ratio above 1 means slower than the system it is divided by. Cells with
    throughputs show rows/s and MB/s of the same median.
    """
    others = [s for s in systems if s != reference]
    head = [
        "measurement",
        *systems,
        *(f"{s} / {reference}" for s in others),
        f"{reference} / best peer",
    ]
    lines = ["| " + " | ".join(head) + " |", "|" + "|".join(["---"] * len(head)) + "|"]
    for r in rows:
        ratios = []
        for s in others:
            x = ratio(r, s, reference)
            ratios.append("-" if x is None else f"{x:.2f}x")
        peer = best_peer(r, reference)
        x = ratio(r, reference, peer) if peer else None
        ratios.append("-" if x is None else f"**{x:.2f}x** ({peer})")
        lines.append("| " + " | ".join([r.name, *(r.cell(s) for s in systems), *ratios]) + " |")
    return "\n".join(lines)


def target_table(
    rows: Sequence[Row], subject: str, targets: Mapping[str, tuple[str, float]]
) -> str:
    """For each row with a target: ``subject``'s time over a peer's (the best peer, or a named one).

    ``targets`` maps row name -> (peer name or "best", allowed ratio). The
    verdict uses the ratio of medians; the ratio of minimums (the fastest
    repeat of each, least disturbed by other load) is shown beside it.
    """
    lines = [
        f"| measurement | {subject} / peer (medians) | (minimums) | peer | target | met |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        if r.name not in targets:
            continue
        peer_spec, limit = targets[r.name]
        peer = best_peer(r, subject) if peer_spec == "best" else peer_spec
        x = ratio(r, subject, peer) if peer else None
        if x is None or peer is None:
            continue
        x_min = r.timings[subject].min / r.timings[peer].min
        met = "yes" if x <= limit else "NO"
        lines.append(f"| {r.name} | {x:.2f}x | {x_min:.2f}x | {peer} | <= {limit:.2f}x | {met} |")
    return "\n".join(lines)


def geomean(xs: Sequence[float]) -> float:
    """The geometric mean of the positive values (NaN if none): how TPC-H ratios are summarised."""
    xs = [x for x in xs if x > 0]
    return math.exp(sum(math.log(x) for x in xs) / len(xs)) if xs else float("nan")
