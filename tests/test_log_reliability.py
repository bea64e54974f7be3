"""Checkpoints, corrupt and torn log entries, and crashes at every I/O step of a commit."""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import tensorhouse as th
from tensorhouse.format.dataset import Dataset
from tensorhouse.format.log import Log, cache
from tensorhouse.format.log import log as log_module
from tensorhouse.storage import LocalStore

sys.path.insert(0, str(Path(__file__).parent))
from faults import CountingStore, FaultyStore, InjectedFault


@pytest.fixture
def small_checkpoints(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(log_module, "CHECKPOINT_INTERVAL", 5)


def build(path: Path, commits: int) -> str:
    uri = str(path / "ds")
    ds = th.create(uri, {"x": "int64"})
    for i in range(commits):
        ds.append({"x": [i]})
    return uri


def xs(ds: th.Dataset) -> list[int]:
    return ds.to_table(["x"]).column("x").to_pylist()


def open_counting(uri: str, version: int | None = None) -> tuple[th.Dataset, CountingStore]:
    """Open as a new process would: nothing cached from the writes made in this one."""
    cache.clear()
    store = CountingStore(LocalStore(uri))
    log = Log(store)
    return Dataset(store, log.snapshot(version), log=log), store


def test_checkpoints_every_interval_and_bounded_open(
    tmp_path: Path, small_checkpoints: None
) -> None:
    uri = build(tmp_path, 12)
    names = sorted(p.name for p in (Path(uri) / "_log").iterdir())
    assert "00000000000000000005.checkpoint" in names and "00000000000000000010.checkpoint" in names
    ds, store = open_counting(uri)
    assert xs(ds) == list(range(12))
    assert store.calls["list"] == 0  # locally: entries read in order until one is missing
    log_gets = [k for k in store.keys_read if k.startswith("_log/")]
    # the hint, then the compacted file of version 12 against the checkpoint it names (a small
    # state: held whole, so the checkpoint is not read), no entry
    assert log_gets == [
        "_log/_last_checkpoint",
        "_log/00000000000000000010.00000000000000000012.compacted",
    ]
    old, _ = open_counting(uri, version=3)
    assert xs(old) == [0, 1, 2]


def test_on_demand_checkpoint(tmp_path: Path) -> None:
    uri = build(tmp_path, 3)
    th.open(uri).checkpoint()
    assert (Path(uri) / "_log" / "00000000000000000003.checkpoint").exists()
    ds, store = open_counting(uri)
    assert xs(ds) == [0, 1, 2] and [k for k in store.keys_read if k.startswith("_log/")] == [
        "_log/_last_checkpoint",
        "_log/00000000000000000003.checkpoint",
    ]


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_checkpoint_at_every_offset_is_skipped(
    tmp_path: Path, small_checkpoints: None, damage: str
) -> None:
    uri = build(tmp_path, 11)
    cp = Path(uri) / "_log" / "00000000000000000010.checkpoint"
    clean = cp.read_bytes()
    (Path(uri) / "_log" / "_last_checkpoint").write_bytes(b"garbage")  # only a hint
    step = max(1, len(clean) // 150)
    for offset in range(0, len(clean), step):
        bad = bytearray(clean)
        if damage == "flip":
            bad[offset] ^= 0x20
        else:
            bad = bad[:offset]
        cp.write_bytes(bytes(bad))
        assert xs(th.open(uri)) == list(range(11)), offset
    cp.write_bytes(clean)


@pytest.mark.parametrize("damage", ["flip", "truncate"])
def test_corrupt_newest_entry_at_every_offset_is_detected(tmp_path: Path, damage: str) -> None:
    uri = build(tmp_path, 3)
    entry = Path(uri) / "_log" / "00000000000000000003.json"
    clean = entry.read_bytes()
    for offset in range(len(clean)):
        bad = bytearray(clean)
        if damage == "flip":
            bad[offset] ^= 0x01
        else:
            bad = bad[:offset]
        entry.write_bytes(bytes(bad))
        with pytest.raises(th.CorruptLogError, match="00000000000000000003"):
            th.open(uri)
    entry.write_bytes(clean)
    assert len(th.open(uri, version=2)) == 2


def test_log_gap_and_foreign_entries_are_errors(tmp_path: Path) -> None:
    uri = build(tmp_path, 3)
    (Path(uri) / "_log" / "00000000000000000002.json").unlink()
    with pytest.raises(th.CorruptLogError, match="gaps"):
        th.open(uri)
    uri2 = build(tmp_path / "b", 1)
    doc = json.loads((Path(uri2) / "_log" / "00000000000000000001.json").read_bytes())
    doc["actions"][0]["add_fragment"]["columns"]["0"][0]["path"] = "../../etc/passwd"
    from tensorhouse.format.log.actions import document_crc

    doc.pop("crc32")
    doc["crc32"] = document_crc(doc)  # a well-formed entry whose content is hostile
    (Path(uri2) / "_log" / "00000000000000000001.json").write_text(json.dumps(doc))
    with pytest.raises(th.CorruptLogError, match="unsafe data path"):
        th.open(uri2)


def _append_steps(uri: str) -> int:
    """How many writes an append of one row to this dataset performs."""
    probe = FaultyStore(LocalStore(uri), fail_at=10**9, when="before")
    log = Log(probe)
    ds = Dataset(probe, log.snapshot(), log=log)
    ds.append({"x": [99], "y": ["probe"]})
    return probe.writes


@pytest.mark.parametrize("when", ["before", "after"])
def test_failure_at_every_write_of_a_commit(tmp_path: Path, when: str) -> None:
    base = tmp_path / "base"
    uri0 = str(base)
    ds = th.create(uri0, {"x": "int64", "y": th.Text()})
    ds.append({"x": [1], "y": ["a"]})
    steps = _append_steps(uri0) + 1
    for k in range(steps):
        uri = str(tmp_path / f"d{k}")
        t = th.create(uri, {"x": "int64", "y": th.Text()})
        t.append({"x": [1], "y": ["a"]})
        store = FaultyStore(LocalStore(uri), fail_at=k, when=when)
        log = Log(store)
        victim = Dataset(store, log.snapshot(), log=log)
        with contextlib.suppress(
            InjectedFault
        ):  # the injected failure, where it hits before the commit lands
            victim.append({"x": [2], "y": ["b"]}, app_id="job", txn_version=1)
        after = th.open(uri)
        assert after.version in (1, 2)
        assert xs(after) == ([1] if after.version == 1 else [1, 2])  # nothing partial is visible
        # A retry of the same idempotent transaction, now without faults, commits exactly once.
        th.open(uri).append({"x": [2], "y": ["b"]}, app_id="job", txn_version=1)
        assert xs(th.open(uri)) == [1, 2]
        assert not list(Path(uri).rglob(".tmp-*"))


KILL_SCRIPT = textwrap.dedent(
    """
    import sys
    sys.path.insert(0, {tests!r})
    from faults import FaultyStore
    from tensorhouse.format.dataset import Dataset
    from tensorhouse.format.log import Log
    from tensorhouse.storage import LocalStore
    store = FaultyStore(LocalStore({uri!r}), fail_at={k}, when={when!r}, kill=True)
    log = Log(store)
    Dataset(store, log.snapshot(), log=log).append({{"x": [2], "y": ["b"]}}, app_id="job", txn_version=1)
    """
)


@pytest.mark.parametrize("when", ["before", "after"])
def test_sigkill_at_every_write_of_a_commit(tmp_path: Path, when: str) -> None:
    steps = 2  # the group file (x and y) and the log entry
    for k in range(steps):
        uri = str(tmp_path / f"{when}{k}")
        t = th.create(uri, {"x": "int64", "y": th.Text()})
        t.append({"x": [1], "y": ["a"]})
        code = KILL_SCRIPT.format(tests=str(Path(__file__).parent), uri=uri, k=k, when=when)
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
        assert proc.returncode == -9, proc.stderr.decode()[-500:]
        after = th.open(uri)
        assert after.version in (1, 2) and xs(after) == ([1] if after.version == 1 else [1, 2])
        th.open(uri).append({"x": [2], "y": ["b"]}, app_id="job", txn_version=1)
        assert xs(th.open(uri)) == [1, 2]
