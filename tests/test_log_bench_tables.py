"""The fast builders of the commit-log benchmark's tables make what real commits make (benchmarks/log_tables.py)."""

from __future__ import annotations

import json
import os
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

import tensorhouse as th
from tensorhouse.format.log import cache

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import log_tables as lt

N = 130  # past delta-rs's first checkpoint (version 99) and tensorhouse's (version 100)


def _th_shape(uri: str) -> dict[str, object]:
    cache.clear()
    ds = th.open(uri)
    hist = ds.history()
    return {
        "version": ds.version,
        "rows": ds.to_table().to_pylist(),
        "fragment_rows": ds.snapshot.fragment_rows().tolist(),
        "fragment_ids": ds.snapshot.fragment_ids().tolist(),
        "history": [(h.version, h.operation, h.num_rows) for h in hist],
        "log": sorted(os.listdir(Path(uri) / "_log")),
        "at_57": th.open(uri, version=57).to_table().to_pylist(),
    }


def test_tensorhouse_builder_matches_real_commits_on_disk(tmp_path: Path) -> None:
    fast, real = str(tmp_path / "fast"), str(tmp_path / "real")
    lt.build_tensorhouse(fast, N)
    ds = th.create(real, {"id": "int64", "value": "float32"})
    for i in range(N):
        ds.append(lt.th_row(i))
    assert _th_shape(fast) == _th_shape(real)
    assert "00000000000000000100.checkpoint" in os.listdir(Path(fast) / "_log")


def _delta_entry_shape(path: Path, v: int) -> list[tuple[str, list[str]]]:
    lines = [
        json.loads(x) for x in (path / "_delta_log" / f"{v:020d}.json").read_text().splitlines()
    ]
    return [(k, sorted(a[k])) for a in lines for k in a]


def test_delta_builder_matches_real_delta_rs_commits(tmp_path: Path) -> None:
    from deltalake import DeltaTable

    fast, real = tmp_path / "fast", tmp_path / "real"
    lt.build_delta(str(fast), N)
    lt.build_delta_real(str(real), N)
    for p in (fast, real):
        assert DeltaTable(str(p)).version() == N
    logs = [
        sorted(f for f in os.listdir(p / "_delta_log") if not f.endswith(".crc"))
        for p in (fast, real)
    ]
    assert [f for f in logs[0] if "checkpoint" in f] == [f for f in logs[1] if "checkpoint" in f]
    assert len(logs[0]) == len(logs[1])
    assert _delta_entry_shape(fast, N - 7) == _delta_entry_shape(real, N - 7)
    for v in (1, 50, 99, 100, N):
        a, b = DeltaTable(str(fast), version=v), DeltaTable(str(real), version=v)
        assert len(a.file_uris()) == len(b.file_uris()) == v
        ta = a.to_pyarrow_table().sort_by("id")
        assert ta.equals(b.to_pyarrow_table().sort_by("id"))
    ha, hb = DeltaTable(str(fast)).history(), DeltaTable(str(real)).history()
    assert [(h["version"], h["operation"]) for h in ha] == [
        (h["version"], h["operation"]) for h in hb
    ]
    # time travel by timestamp lands on the version whose commit time it is
    stamp = next(h["timestamp"] for h in ha if h["version"] == 77)
    dt = DeltaTable(str(fast))
    dt.load_as_version(datetime.fromtimestamp(stamp / 1000, UTC))
    assert dt.version() == 77


def test_lance_batched_builder_holds_the_same_rows_and_fragments(tmp_path: Path) -> None:
    lance = pytest.importorskip("lance")
    fast, real = str(tmp_path / "fast"), str(tmp_path / "real")
    lt.build_lance_batched(fast, N, batch=50)
    lt.build_lance_real(real, N)
    a, b = lance.dataset(fast), lance.dataset(real)
    assert a.count_rows() == b.count_rows() == N
    assert len(a.get_fragments()) == len(b.get_fragments()) == N
    assert a.to_table().sort_by("id").equals(b.to_table().sort_by("id"))
    assert (
        a.version == 1 + 3 and b.version == 1 + N
    )  # the batched table has fewer versions: documented
