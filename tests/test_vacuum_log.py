"""Vacuum prunes the log: old checkpoints and entries no retained version, tag or branch needs."""

from __future__ import annotations

import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

import tensorhouse as th
from tensorhouse.format.log import cache
from tensorhouse.format.log import log as log_module

DAY = 86400.0


def logdir(uri: str, prefix: str = "") -> list[str]:
    return sorted(p.name for p in (Path(uri) / prefix / "_log").iterdir())


@pytest.fixture
def small_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log_module, "CHECKPOINT_INTERVAL", 5)


def build(tmp_path: Path, n: int, *, recent: int) -> tuple[str, list[float]]:
    """``n`` one-row appends (versions 1..n): all but the last ``recent`` three days old."""
    now = [time.time() - 3 * DAY]
    uri = str(tmp_path / "ds")
    ds = th.create(uri, {"x": "int64"}, clock=lambda: now[0])
    for i in range(n):
        if i == n - recent:
            now[0] = time.time()
        else:
            now[0] += 1.0
        ds.append({"x": [i]})
    return uri, now


def xs(ds: th.Dataset) -> list[int]:
    return sorted(ds.to_table(["x"]).column("x").to_pylist())


def test_vacuum_removes_old_checkpoints_and_entries_and_keeps_every_retained_version(
    tmp_path: Path, small_checkpoints: None
) -> None:
    uri, _ = build(tmp_path, 60, recent=5)
    before = logdir(uri)
    assert "00000000000000000010.checkpoint" in before and "00000000000000000000.json" in before
    report = th.open(uri).vacuum(timedelta(days=1))
    # version 55 was current at the cutoff: checkpoint 55 (interval 5 here) is its start, so older
    # checkpoints and the entries before 55 go.
    after = logdir(uri)
    assert report.log_files and report.log_bytes_freed > 0
    assert all(Path(uri, k).exists() is False for k in report.log_files)
    cps = [n for n in after if n.endswith(".checkpoint")]
    assert cps == ["00000000000000000055.checkpoint", "00000000000000000060.checkpoint"], after
    assert (
        min(n for n in after if n.endswith(".json") and n[0] == "0") == "00000000000000000055.json"
    )
    assert "00000000000000000055.floor" in after
    cache.clear()
    ds = th.open(uri)
    assert ds.version == 60 and xs(ds) == list(range(60))
    for v in range(55, 61):
        cache.clear()
        assert xs(th.open(uri, version=v)) == list(range(v))
    hist = ds.history()
    assert [h.version for h in hist] == list(range(55, 61))
    assert [h.num_rows for h in hist] == list(range(55, 61))
    assert ds.history(limit=3) == hist[-3:]
    assert ds.versions() == list(range(55, 61))
    for v in (0, 10, 54):
        cache.clear()
        with pytest.raises(th.VersionNotFoundError, match="vacuum"):
            th.open(uri, version=v)
    # time travel by timestamp: to a retained version, and before the oldest kept one
    ts = hist[2].timestamp
    cache.clear()
    assert th.open(uri, timestamp=ts).version == 57
    with pytest.raises(th.VersionNotFoundError):
        th.open(uri, timestamp=datetime(2000, 1, 1, tzinfo=UTC))
    # commits go on; a second vacuum removes nothing more
    ds.append({"x": [60]})
    assert th.open(uri).version == 61 and not ds.vacuum(timedelta(days=1)).log_files
    assert not ds.vacuum(timedelta(days=1), dry_run=True).log_files


def test_a_tag_and_a_branch_on_old_versions_keep_their_checkpoints_and_entries(
    tmp_path: Path, small_checkpoints: None
) -> None:
    uri, _ = build(tmp_path, 60, recent=5)
    ds = th.open(uri)
    ds.tag("old", version=23)
    br = ds.branch("exp", version=42)
    br.append({"x": [1000]})
    dry = ds.vacuum(timedelta(days=1), dry_run=True)
    assert dry.dry_run and dry.log_files and all(Path(uri, k).exists() for k in dry.log_files)
    report = ds.vacuum(timedelta(days=1))
    assert set(report.log_files) == set(dry.log_files)
    after = logdir(uri)
    cps = [n[:20] for n in after if n.endswith(".checkpoint")]
    # 20 (tag 23), 40 (branch base 42), 55 (retained from 55), 60; 5..15, 25..35, 45, 50 are gone
    assert cps == [f"{v:020d}" for v in (20, 40, 55, 60)], after
    assert (
        min(n for n in after if n.endswith(".json") and n[0] == "0") == "00000000000000000020.json"
    )
    cache.clear()
    assert xs(th.open(uri, tag="old")) == list(range(23))
    cache.clear()
    assert xs(th.open(uri, branch="exp")) == [*range(42), 1000]
    assert [h.version for h in th.open(uri).history()] == list(range(20, 61))
    assert th.open(uri, branch="exp").versions() == [*range(20, 43), 43]
    cache.clear()
    with pytest.raises(th.VersionNotFoundError, match="vacuum"):
        th.open(uri, version=19)
    # the branch's own log was pruned on its own terms: everything of it is retained
    assert "00000000000000000043.json" in logdir(uri, "_branches/exp")
    # deleting the tag lets the next vacuum go further
    ds.delete_tag("old")
    ds.vacuum(timedelta(days=1))
    assert min(n for n in logdir(uri) if n.endswith(".json") and n[0] == "0") == (
        "00000000000000000040.json"
    )


def test_nothing_is_pruned_when_no_checkpoint_precedes_the_oldest_retained_version(
    tmp_path: Path, small_checkpoints: None
) -> None:
    uri, _ = build(tmp_path, 8, recent=5)  # first checkpoint at 5, retained from 3
    before = logdir(uri)
    report = th.open(uri).vacuum(timedelta(days=1))
    assert report.log_files == () and logdir(uri) == before
    assert [h.version for h in th.open(uri).history()] == list(range(9))


def test_a_tag_before_the_first_checkpoint_keeps_every_entry_but_not_unneeded_checkpoints(
    tmp_path: Path, small_checkpoints: None
) -> None:
    uri, _ = build(tmp_path, 33, recent=3)  # retained from 30; checkpoints 5..30
    th.open(uri).tag("early", version=3)  # replays from version 0
    report = th.open(uri).vacuum(timedelta(days=1))
    names = {Path(k).name for k in report.log_files}
    compacted = {n for n in names if n.endswith(".compacted")}  # they go with their checkpoints
    assert {n[:20] for n in compacted} <= {f"{v:020d}" for v in (5, 10, 15, 20, 25)}
    assert names - compacted == {f"{v:020d}.checkpoint" for v in (5, 10, 15, 20, 25)}, names
    cache.clear()
    assert xs(th.open(uri, tag="early")) == [0, 1, 2]
    assert [h.version for h in th.open(uri).history()] == list(range(34))


def test_readers_opening_while_vacuum_prunes_never_fail(
    tmp_path: Path, small_checkpoints: None
) -> None:
    uri, _ = build(tmp_path, 300, recent=5)
    errors: list[BaseException] = []
    done = threading.Event()

    def read() -> None:
        while not done.is_set():
            try:
                cache.clear()
                ds = th.open(uri)
                assert ds.version == 300 and len(ds) == 300
                assert len(th.open(uri, version=298)) == 298
                assert ds.versions()[-1] == 300
            except BaseException as err:
                errors.append(err)
                return

    readers = [threading.Thread(target=read) for _ in range(2)]
    for t in readers:
        t.start()
    try:
        report = th.open(uri).vacuum(timedelta(days=1))
    finally:
        time.sleep(0.05)
        done.set()
        for t in readers:
            t.join()
    assert report.log_files and not errors, errors[:3]
    cache.clear()
    assert th.open(uri).versions() == list(range(295, 301))


def test_vacuum_prunes_the_log_on_s3_and_a_cold_open_costs_what_it_did(
    s3_uri: tuple[str, dict[str, Any]], small_checkpoints: None
) -> None:
    from faults import CountingStore

    from tensorhouse.format.dataset import Dataset
    from tensorhouse.format.log import Log
    from tensorhouse.storage import open_store

    uri, opts = s3_uri
    now = [time.time() - 3 * DAY]
    ds = th.create(uri, {"x": "int64"}, storage_options=opts, clock=lambda: now[0])
    for i in range(23):
        now[0] = time.time() if i >= 20 else now[0] + 1.0
        ds.append({"x": [i]})
    ds.tag("t", version=7)
    report = ds.vacuum(timedelta(days=1))
    # retained from 20 (checkpoint 20), tag 7 (checkpoint 5): entries before 5 and checkpoints 10, 15 go
    names = {k.rsplit("/", 1)[-1] for k in report.log_files}
    assert names == {f"{v:020d}.json" for v in range(5)} | {
        f"{v:020d}.checkpoint" for v in (10, 15)
    }, names
    cache.clear()
    store = CountingStore(open_store(uri, opts))
    log = Log(store)
    opened = Dataset(store, log.snapshot(), log=log)
    gets = store.calls["get"] + store.calls["get_range"]
    # one listing, the hint, checkpoint 20 and entries 21-23: as before the vacuum
    assert opened.version == 23 and store.calls["list"] <= 1 and gets == 5, store.calls
    cache.clear()
    assert xs(th.open(uri, tag="t", storage_options=opts)) == list(range(7))
    cache.clear()
    assert xs(th.open(uri, version=21, storage_options=opts)) == list(range(21))
    assert [h.version for h in th.open(uri, storage_options=opts).history()] == list(range(5, 24))
    with pytest.raises(th.VersionNotFoundError, match="vacuum"):
        th.open(uri, version=3, storage_options=opts)


def test_vacuum_removes_compacted_files_with_their_checkpoints(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(log_module, "CHECKPOINT_INTERVAL", 10)
    monkeypatch.setattr(log_module, "COMPACTED_GRID", 3)
    monkeypatch.setattr(log_module, "COMPACTED_EVERY", 3)
    uri, _ = build(tmp_path, 57, recent=3)  # retained from 54: checkpoint 50
    before = {n for n in logdir(uri) if n.endswith(".compacted")}
    assert {n[:20] for n in before} == {f"{v:020d}" for v in (10, 20, 30, 40, 50)}
    report = th.open(uri).vacuum(timedelta(days=1))
    after = {n for n in logdir(uri) if n.endswith(".compacted")}
    assert after == {n for n in before if n.startswith(f"{50:020d}")}
    assert {Path(k).name for k in report.log_files} >= before - after
    cache.clear()
    assert xs(th.open(uri)) == list(range(57))
    for v in (54, 56):
        cache.clear()
        assert xs(th.open(uri, version=v)) == list(range(v))
