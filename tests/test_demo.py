"""The README's first command: `tensorhouse demo` runs end to end, through the real entry point."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import tensorhouse as th


def test_demo_runs_end_to_end(tmp_path: Path) -> None:
    path = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "tensorhouse", "demo", "--path", str(path), "--rows", "96"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = proc.stdout
    for step in (
        "1. generated 96 scenes",
        "2. ingesting",
        "3. added an embedding column",
        "4. SQL with DuckDB",
        "nearest neighbours",
        "tensor UDFs",
        "time travel",
        "5. a SELECT into a training loop",
        "images/s",
    ):
        assert step in out, step
    ds = th.open(str(path))
    assert (
        len(ds) < 96 and len(th.open(str(path), version=2)) == 96
    )  # the demo's delete, and time travel
    assert "embedding" in ds.columns
