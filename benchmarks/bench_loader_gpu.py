"""GPU check of the loader (run on a machine with CUDA; CI never runs it).

Measures, in one run, on the same generated JPEG dataset:
- decode-only bounds: simplejpeg on all CPU threads into a reused buffer; torchvision's
  batched GPU decode_jpeg on in-memory bytes;
- tensorhouse loader to the GPU with CPU decode (threads) and with GPU decode;
- a small training loop (ResNet-18 at 256x256, bf16 autocast) fed by each loader vs
  the same loop on synthetic batches already on the GPU: the loader keeps the GPU
  busy when the two step rates match.

Usage: python benchmarks/bench_loader_gpu.py [--rows 8192] [--out results.md]
       python benchmarks/bench_loader_gpu.py --smoke   # CI: 256 rows, no training loop
Without CUDA it prints why it skipped and exits 0 (so `make bench-smoke` passes on CPU machines).
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import simplejpeg
import torch

import tensorhouse as th
from tensorhouse.synth import scene


def build(n: int, root: str) -> tuple[th.Dataset, list[bytes]]:
    rng = np.random.default_rng(0)
    pool = ThreadPoolExecutor(os.cpu_count() or 4)
    seeds = rng.integers(0, 2**31, n)
    blobs = list(
        pool.map(
            lambda s: simplejpeg.encode_jpeg(
                scene(np.random.default_rng(int(s)), 256, 256)[0], quality=90
            ),
            seeds,
        )
    )
    ds = th.create(f"{root}/ds", {"image": th.Image("jpeg"), "label": "int64"})
    for a in range(0, n, 2048):
        ds.append({"image": blobs[a : a + 2048], "label": np.arange(a, min(n, a + 2048)) % 1000})
    return th.open(f"{root}/ds"), blobs


def timed(fn, repeats: int = 3) -> float:  # type: ignore[no-untyped-def]
    fn()  # warm-up
    out = []
    for _ in range(repeats):
        t = time.perf_counter()
        fn()
        torch.cuda.synchronize()
        out.append(time.perf_counter() - t)
    return statistics.median(out)


def cpu_bound(blobs: list[bytes], threads: int) -> float:
    buf = np.empty((64, 256, 256, 3), np.uint8)
    pool = ThreadPoolExecutor(threads)

    def run() -> None:
        for s in range(0, len(blobs), 64):
            part = blobs[s : s + 64]
            bounds = np.linspace(0, len(part), threads + 1).astype(int)

            def work(a: int, b: int, part: list[bytes] = part) -> None:
                for i in range(a, b):
                    simplejpeg.decode_jpeg(part[i], buffer=buf[i])

            list(pool.map(work, bounds[:-1], bounds[1:]))

    return len(blobs) / timed(run)


def gpu_bound(blobs: list[bytes]) -> float:
    from torchvision.io import decode_jpeg

    tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]

    def run() -> None:
        for s in range(0, len(tensors), 64):
            decode_jpeg(tensors[s : s + 64], device="cuda")

    return len(blobs) / timed(run)


def loader_rate(ds: th.Dataset, *, gpu_decode: bool, threads: int | None) -> float:
    loader = th.loader(
        ds,
        batch_size=64,
        shuffle=True,
        columns=["image", "label"],
        device="cuda",
        gpu_decode=gpu_decode,
        num_threads=threads,
        prefetch=4,
    )

    def run() -> None:
        for b in loader:
            assert b["image"].is_cuda

    return len(ds) / timed(run)


class GpuSampler:
    """nvidia-smi utilisation samples while a block runs."""

    def __init__(self) -> None:
        self.samples: list[int] = []
        self._stop = threading.Event()

    def __enter__(self) -> GpuSampler:
        def loop() -> None:
            while not self._stop.is_set():
                out = subprocess.run(
                    ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                    capture_output=True,
                    text=True,
                ).stdout.strip()
                if out.isdigit():
                    self.samples.append(int(out))
                time.sleep(0.2)

        self._t = threading.Thread(target=loop, daemon=True)
        self._t.start()
        return self

    def __exit__(self, *a: object) -> None:
        self._stop.set()
        self._t.join()

    @property
    def mean(self) -> float:
        return statistics.mean(self.samples) if self.samples else float("nan")


def training(ds: th.Dataset, *, source: str, steps: int) -> tuple[float, float]:
    """(steps/s, mean GPU utilisation %) of ResNet-18 training steps fed by ``source``."""
    from torchvision.models import resnet18

    model = resnet18(num_classes=1000).cuda().to(memory_format=torch.channels_last)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    mean = torch.tensor([0.485, 0.456, 0.406], device="cuda").view(1, 3, 1, 1) * 255
    std = torch.tensor([0.229, 0.224, 0.225], device="cuda").view(1, 3, 1, 1) * 255

    def step(img: torch.Tensor, label: torch.Tensor) -> None:
        x = ((img.permute(0, 3, 1, 2).float() - mean) / std).contiguous(
            memory_format=torch.channels_last
        )
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = torch.nn.functional.cross_entropy(model(x), label)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    def batches():  # type: ignore[no-untyped-def]
        if source == "synthetic":
            img = torch.randint(0, 255, (64, 256, 256, 3), dtype=torch.uint8, device="cuda")
            lab = torch.randint(0, 1000, (64,), device="cuda")
            while True:
                yield img, lab
        epoch = 0
        while True:
            loader = th.loader(
                ds,
                batch_size=64,
                shuffle=True,
                columns=["image", "label"],
                device="cuda",
                gpu_decode=(source == "gpu-decode"),
                prefetch=4,
                drop_last=True,
            )
            loader.set_epoch(epoch)
            for b in loader:
                yield b["image"], b["label"]
            epoch += 1

    it = batches()
    for _ in range(10):  # warm-up: cudnn autotune, allocator
        step(*next(it))
    torch.cuda.synchronize()
    with GpuSampler() as gpu:
        t = time.perf_counter()
        for _ in range(steps):
            step(*next(it))
        torch.cuda.synchronize()
        dt = time.perf_counter() - t
    return steps / dt, gpu.mean


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=8192)
    ap.add_argument("--steps", type=int, default=150)
    ap.add_argument("--out", default=None)
    ap.add_argument(
        "--smoke",
        action="store_true",
        help="256 rows, loader and decode bounds only (seconds); exits 0 with a reason without CUDA",
    )
    args = ap.parse_args()
    if not torch.cuda.is_available():
        # CI machines have no GPU: the smoke run must still say what it did not measure, and pass.
        print(
            "bench_loader_gpu: skipped: torch.cuda.is_available() is False (no CUDA device or a CPU build "
            f"of torch {torch.__version__}); run it on a GPU machine"
        )
        return
    if args.smoke:
        args.rows = 256
    torchvision = _has_torchvision()
    torch.backends.cudnn.benchmark = True
    cores = os.cpu_count() or 1
    lines = [
        f"device: {torch.cuda.get_device_name()}, {cores} CPU cores, torch {torch.__version__}, {args.rows} "
        "256x256 q90 JPEGs, batches of 64",
        "",
    ]
    with tempfile.TemporaryDirectory() as root:
        ds, blobs = build(args.rows, root)
        rows = [
            ("decode-only bound, simplejpeg, 2 threads", cpu_bound(blobs, 2)),
            (f"decode-only bound, simplejpeg, {cores} threads", cpu_bound(blobs, cores)),
            (
                "tensorhouse loader -> cuda, CPU decode, 2 threads",
                loader_rate(ds, gpu_decode=False, threads=2),
            ),
            (
                f"tensorhouse loader -> cuda, CPU decode, {cores} threads",
                loader_rate(ds, gpu_decode=False, threads=cores),
            ),
        ]
        if torchvision:
            rows += [
                ("decode-only bound, torchvision GPU decode_jpeg", gpu_bound(blobs)),
                (
                    "tensorhouse loader -> cuda, GPU decode",
                    loader_rate(ds, gpu_decode=True, threads=None),
                ),
            ]
        else:
            print("torchvision is not installed: GPU decode rows and the training loop are skipped")
        lines += ["| pipeline | img/s (median of 3 epochs) |", "|---|---|"]
        lines += [f"| {name} | {rate:,.0f} |" for name, rate in rows]
        if args.smoke or not torchvision:
            print("\n".join(lines))
            return
        lines += [
            "",
            "| ResNet-18 training fed by | steps/s | img/s | GPU util % (nvidia-smi mean) | vs synthetic |",
            "|---|---|---|---|---|",
        ]
        base = None
        for source in ("synthetic", "gpu-decode", "cpu-decode"):
            sps, util = training(ds, source=source, steps=args.steps)
            base = base or sps
            lines.append(
                f"| {source} | {sps:.2f} | {sps * 64:,.0f} | {util:.0f} | {sps / base:.2f} |"
            )
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "w") as f:
            f.write(text + "\n")


def _has_torchvision() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:  # absent, or built for another torch
        return False
    return True


if __name__ == "__main__":
    main()
