"""The process-wide cache of replayed states: a re-open reads only what is new, and never a stale state."""

from __future__ import annotations

import multiprocessing as mp
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import tensorhouse as th
from tensorhouse.format.dataset import Dataset
from tensorhouse.format.log import Log, cache
from tensorhouse.format.log import log as log_module
from tensorhouse.format.log.fragments import FragmentColumns
from tensorhouse.format.log.snapshot import MAX_OVERLAY
from tensorhouse.storage import LocalStore
from tensorhouse.storage.base import Store

sys.path.insert(0, str(Path(__file__).parent))
from faults import CountingStore


@pytest.fixture
def small_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log_module, "CHECKPOINT_INTERVAL", 5)


def build(uri: str, commits: int, start: int = 0) -> None:
    ds = th.create(uri, {"x": "int64"})
    for i in range(start, start + commits):
        ds.append({"x": [i]})


def xs(ds: th.Dataset) -> list[int]:
    return ds.to_table(["x"]).column("x").to_pylist()


def open_with(store: Store, version: int | None = None) -> Dataset:
    log = Log(store)
    return Dataset(store, log.snapshot(version), log=log)


def log_reads(store: CountingStore) -> list[str]:
    return [k for k in store.keys_read if k.startswith("_log/")]


def _append(uri: str, values: list[int], interval: int) -> None:
    log_module.CHECKPOINT_INTERVAL = interval
    ds = th.open(uri)
    for v in values:
        ds.append({"x": [v]})


def append_in_another_process(uri: str, values: list[int], interval: int = 5) -> None:
    """Commits from a spawned process: nothing of them reaches this process's cache."""
    p = mp.get_context("spawn").Process(target=_append, args=(uri, values, interval))
    p.start()
    p.join(120)
    assert p.exitcode == 0


def test_a_reopen_reads_the_hint_and_nothing_else(tmp_path: Path, small_checkpoints: None) -> None:
    uri = str(tmp_path / "ds")
    build(uri, 13)
    cache.clear()
    first = CountingStore(LocalStore(uri))
    assert xs(open_with(first)) == list(range(13))
    # a small state: the full compacted file of version 12 stands for checkpoint 10, which is not read
    assert log_reads(first) == [
        "_log/_last_checkpoint",
        "_log/00000000000000000010.00000000000000000012.compacted",
        "_log/00000000000000000013.json",
    ]
    again = CountingStore(LocalStore(uri))
    assert xs(open_with(again)) == list(range(13))
    # no listing, no checkpoint, no entry: the hint, and one failed read of version 14
    assert again.calls["list"] == 0 and log_reads(again) == ["_log/_last_checkpoint"]
    assert xs(open_with(again)) == list(range(13))
    assert cache.stats().hits >= 1


def test_commits_from_another_process_are_read_and_only_they(
    tmp_path: Path, small_checkpoints: None
) -> None:
    uri = str(tmp_path / "ds")
    build(uri, 11)  # checkpoint 10, entry 11
    assert xs(th.open(uri)) == list(range(11))
    append_in_another_process(uri, [100, 101, 102])  # versions 12-14: no new checkpoint
    store = CountingStore(LocalStore(uri))
    ds = open_with(store)
    assert xs(ds) == [*range(11), 100, 101, 102]
    assert sorted(log_reads(store)) == [
        "_log/00000000000000000012.json",
        "_log/00000000000000000013.json",
        "_log/00000000000000000014.json",
        "_log/_last_checkpoint",
    ]
    assert store.calls["list"] == 0  # a few new entries are read in order until one is missing
    # the same state as a cold open
    cache.clear()
    cold = th.open(uri)
    assert cold.snapshot == ds.snapshot and xs(cold) == xs(ds)


def test_a_new_checkpoint_from_another_process_is_read(
    tmp_path: Path, small_checkpoints: None
) -> None:
    uri = str(tmp_path / "ds")
    build(uri, 11)
    assert len(th.open(uri)) == 11
    append_in_another_process(uri, [200 + i for i in range(6)])  # versions 12-17: checkpoint 15
    store = CountingStore(LocalStore(uri))
    ds = open_with(store)
    assert xs(ds) == [*range(11), *range(200, 206)]
    # it starts from checkpoint 15 (here its full compacted file of version 17), reading no entry
    assert log_reads(store) == [
        "_log/_last_checkpoint",
        "_log/00000000000000000015.00000000000000000017.compacted",
    ]


def test_many_new_entries_are_listed_and_read_in_parallel(
    tmp_path: Path, small_checkpoints: None, monkeypatch: Any
) -> None:
    uri = str(tmp_path / "ds")
    build(uri, 11)
    assert len(th.open(uri)) == 11
    monkeypatch.setattr(log_module, "PROBE_MAX", 2)
    monkeypatch.setattr(log_module, "LOCAL_PROBE_MAX", 2)
    append_in_another_process(
        uri, [300, 301, 302, 303], interval=100
    )  # versions 12-15, no checkpoint
    store = CountingStore(LocalStore(uri))
    assert xs(open_with(store)) == [*range(11), *range(300, 304)]
    assert store.calls["list"] == 1


def test_time_travel_behind_the_cached_state(tmp_path: Path, small_checkpoints: None) -> None:
    uri = str(tmp_path / "ds")
    build(uri, 14)  # checkpoint 10
    assert len(th.open(uri)) == 14
    assert xs(th.open(uri, version=12)) == list(range(12))  # older than the cached newest state
    assert xs(th.open(uri, version=3)) == list(range(3))
    assert len(th.open(uri)) == 14  # the newest state was not moved back


def test_a_dataset_created_again_at_the_same_uri_is_never_served_from_the_cache(
    tmp_path: Path, small_checkpoints: None
) -> None:
    uri = str(tmp_path / "ds")
    build(uri, 12)
    assert xs(th.open(uri)) == list(range(12))
    shutil.rmtree(uri)
    build(uri, 12, start=1000)  # the same versions, checkpoints and hint version, other bytes
    assert xs(th.open(uri)) == list(range(1000, 1012))


def test_readers_and_a_writer_in_other_processes_agree_with_cold_opens(
    tmp_path: Path, small_checkpoints: None
) -> None:
    uri = str(tmp_path / "ds")
    build(uri, 3)
    expected = list(range(3))
    for round_ in range(4):  # commits land between this process's opens, checkpoints on the way
        values = [1000 * (round_ + 1) + i for i in range(3)]
        append_in_another_process(uri, values)
        expected += values
        warm = th.open(uri)
        assert xs(warm) == expected
        cache.clear()
        assert th.open(uri).snapshot == warm.snapshot


def test_the_cache_is_bounded(tmp_path: Path, small_checkpoints: None, monkeypatch: Any) -> None:
    uris = [str(tmp_path / f"ds{i}") for i in range(3)]
    for u in uris:
        build(u, 6)
    cache.clear()
    size = (Path(uris[0]) / "_log" / "00000000000000000005.checkpoint").stat().st_size
    monkeypatch.setenv("TENSORHOUSE_LOG_CACHE_BYTES", str(2 * size + size // 2))
    for u in uris:
        assert len(th.open(u)) == 6
    stats = cache.stats()
    assert stats.entries == 2 and stats.bytes <= stats.max_bytes
    monkeypatch.setenv("TENSORHOUSE_LOG_CACHE_BYTES", "0")  # off
    cache.clear()
    store = CountingStore(LocalStore(uris[0]))
    open_with(store)
    store2 = CountingStore(LocalStore(uris[0]))
    open_with(store2)
    assert "_log/00000000000000000005.checkpoint" in log_reads(store2)
    assert cache.stats().entries == 0


def test_a_created_handle_commits_on_columns_with_a_bounded_overlay(tmp_path: Path) -> None:
    ds = th.create(str(tmp_path / "ds"), {"x": "int64"})
    for i in range(MAX_OVERLAY + 20):
        ds.append({"x": np.array([i])})
        frags = ds.snapshot.fragments
        assert isinstance(frags, FragmentColumns) and frags.overlay_size <= MAX_OVERLAY
    assert xs(ds) == list(range(MAX_OVERLAY + 20))
    ds.delete("x < 5")
    ds.update({"x": -1}, where="x = 7")
    cache.clear()
    again = th.open(ds.uri)
    assert again.snapshot == ds.snapshot and xs(again) == xs(ds)


def test_local_time_travel_reads_by_name_without_listing(
    tmp_path: Path, small_checkpoints: None
) -> None:
    uri = str(tmp_path / "ds")
    build(uri, 17)  # checkpoints 5, 10, 15
    for v in (0, 3, 5, 7, 12, 17):
        cache.clear()
        store = CountingStore(LocalStore(uri))
        assert xs(open_with(store, v)) == list(range(v))
        assert store.calls["list"] == 0
        if v >= 5:
            assert f"_log/{v - v % 5:020d}.checkpoint" in log_reads(store)
    with pytest.raises(th.VersionNotFoundError, match="latest is 17"):
        th.open(uri, version=18)
    # a damaged checkpoint is skipped: the listing path replays instead
    (Path(uri) / "_log" / f"{10:020d}.checkpoint").write_bytes(b"THCKPT02" + b"\0" * 30)
    cache.clear()
    assert xs(th.open(uri, version=12)) == list(range(12))
    # time travel by timestamp finds the latest version without a listing too
    ts = th.open(uri, version=9).history(limit=1)[0].timestamp
    store = CountingStore(LocalStore(uri))
    log = Log(store)
    assert log.version_at(int(ts.timestamp() * 1000)) == 9 and store.calls["list"] == 0
