"""Helpers to craft hostile datasets: rewrite a log entry with a valid checksum, forge chunk headers.

A crafted dataset passes every checksum (whoever can write the files can
recompute them); these helpers do exactly that, so tests exercise the checks
that remain: limits, containment and consistency.
"""

from __future__ import annotations

import json
import os
import struct
import subprocess
import sys
import textwrap
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tensorhouse.format.chunks import header as H
from tensorhouse.format.log.actions import document_crc


def entry_path(root: Path | str, version: int) -> Path:
    return Path(root) / "_log" / f"{version:020d}.json"


def rewrite_entry(root: Path | str, version: int, change: Callable[[dict[str, Any]], Any]) -> None:
    """Apply ``change`` to log entry ``version`` and store it again with a matching crc32."""
    path = entry_path(root, version)
    doc = json.loads(path.read_bytes())
    change(doc)
    write_entry(path, doc)


def write_entry(path: Path, doc: dict[str, Any]) -> None:
    body = {k: v for k, v in doc.items() if k != "crc32"}
    body["crc32"] = document_crc(body)
    path.write_text(json.dumps(body, separators=(",", ":")))


def chunk_refs(doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every chunk reference of an entry's add_fragment actions, in order."""
    out = []
    for action in doc["actions"]:
        frag = action.get("add_fragment")
        if frag:
            for refs in frag["columns"].values():
                out.extend(refs)
    return out


def forged_header(
    *,
    n: int,
    dtype: str = "uint8",
    ndim: int = 0,
    shape: tuple[int, ...] = (),
    chunk_codec: str = "none",
    raw_length: int = 0,
    data_length: int = 0,
    fixed_size: int | None = None,
    block_size: int = 4096,
) -> bytes:
    """A checksummed chunk header with arbitrary (uniform) fields, as an attacker would write it."""
    flags = H.FLAG_UNIFORM | (H.FLAG_FIXED_SIZE if fixed_size is not None else 0)
    parts = [struct.pack(f"<{ndim}I", *shape) if ndim else b""]
    parts.append(
        struct.pack("<Q", fixed_size)
        if fixed_size is not None
        else struct.pack(f"<{n + 1}Q", *range(n + 1))
    )
    n_blocks = -(-data_length // block_size)
    parts.append(b"\0" * (4 * n_blocks))
    unpadded = H.FIXED_SIZE + sum(len(p) for p in parts) + 4
    pad = -unpadded % H.ALIGN
    parts.append(b"\0" * pad)
    header_length = unpadded + pad
    fixed = struct.pack(
        "<4sIHBBBBBxIQQI",
        H.MAGIC,
        header_length,
        H.FORMAT_VERSION,
        H.CHUNK_CODEC_IDS[chunk_codec],
        0,
        H.DTYPES.index(dtype),
        ndim,
        flags,
        n,
        data_length,
        raw_length,
        block_size,
    )
    head = fixed + b"".join(parts)
    return head + struct.pack("<I", zlib.crc32(head))


def run_isolated(code: str, *, timeout: float = 120.0) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter: a segfault or a hang fails the test, not the test run."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(Path(__file__).resolve().parents[1]), env.get("PYTHONPATH", "")]
    )
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
