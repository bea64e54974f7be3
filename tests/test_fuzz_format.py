"""The fuzz suite of issue 15: each campaign in its own process (a crash or hang fails, never kills the run).

Bounded in the default run (derandomized, so a failure reproduces); with
``--run-slow`` each kind runs many more random examples. A failure prints
hypothesis's minimal counterexample. Run one campaign by hand with
``python tests/fuzz_worker.py chunk_header 500 --random``.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

WORKER = Path(__file__).with_name("fuzz_worker.py")
KINDS = [
    "log_entry",
    "checkpoint",
    "compacted",
    "chunk_header",
    "chunk_data",
    "group_file",
    "deletion_vector",
    "tag",
    "predicate",
    "append",
]


def campaign(kind: str, examples: int, *, randomize: bool, timeout: float) -> None:
    env = dict(os.environ)
    root = str(Path(__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join([root, env.get("PYTHONPATH", "")])
    args = [sys.executable, str(WORKER), kind, str(examples), *(["--random"] if randomize else [])]
    try:
        res = subprocess.run(args, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired as err:
        pytest.fail(
            f"fuzz campaign {kind!r} hung (no answer in {timeout:g} s): {str(err.stderr)[-3000:]}"
        )
    assert res.returncode == 0 and res.stdout.strip().endswith("ok"), (
        f"fuzz campaign {kind!r} exited {res.returncode} (negative: killed by a signal):\n{res.stderr[-6000:]}"
    )


def test_fuzz_bounded() -> None:
    # Every kind in one process (one import, one template dataset): a few seconds of fuzzing each.
    campaign(",".join(KINDS), 15, randomize=False, timeout=600)


@pytest.mark.slow
@pytest.mark.parametrize("kind", KINDS)
def test_fuzz_long(kind: str) -> None:
    campaign(kind, 1000, randomize=True, timeout=3600)
