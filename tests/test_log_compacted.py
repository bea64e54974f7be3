"""Compacted log files: a version's state, whole or as changes to its checkpoint, so opening it parses no entry."""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import pytest

import tensorhouse as th
from tensorhouse.format.dataset import Dataset
from tensorhouse.format.log import Log, cache
from tensorhouse.format.log import checkpoint as checkpoint_module
from tensorhouse.format.log import log as log_module
from tensorhouse.storage import LocalStore


@pytest.fixture(params=["full", "delta"])
def interval(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    # full: these small states are stored whole; delta: as changes to the checkpoint (a large state)
    if request.param == "delta":
        monkeypatch.setattr(checkpoint_module, "FULL_MAX_CHUNKS", 0)
    monkeypatch.setattr(log_module, "CHECKPOINT_INTERVAL", 25)
    monkeypatch.setattr(log_module, "COMPACTED_GRID", 4)
    monkeypatch.setattr(log_module, "COMPACTED_EVERY", 2)
    return 25


def compacted(uri: str) -> list[tuple[int, int]]:
    names = sorted(p.name for p in (Path(uri) / "_log").glob("*.compacted"))
    return [(int(n[:20]), int(n[21:41])) for n in names]


def replayed(uri: str, version: int | None = None) -> Dataset:
    """The state from checkpoints and entries only: what opening gave before compacted files."""
    cache.clear()
    hidden = Path(uri) / "_hidden"
    hidden.mkdir(exist_ok=True)
    for p in (Path(uri) / "_log").glob("*.compacted"):
        p.rename(hidden / p.name)
    try:
        store = LocalStore(uri)
        log = Log(store)
        return Dataset(store, log.snapshot(version), log=log)
    finally:
        for p in hidden.iterdir():
            p.rename(Path(uri) / "_log" / p.name)


@pytest.mark.parametrize("overlay_from", [0, 1 << 20], ids=["overlay", "merged"])
def test_every_version_opens_to_the_same_state_with_and_without_compacted_files(
    tmp_path: Path, interval: int, overlay_from: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a cold open lays the file's fragments over the validated checkpoint, or validates the merged table
    monkeypatch.setattr(log_module, "OVERLAY_FROM_BYTES", overlay_from)
    rng = random.Random(7)
    uri = str(tmp_path / "ds")
    ds = th.create(uri, {"x": "int64", "s": "string"})
    n = 0
    for _ in range(70):
        op = rng.random()
        if op < 0.55 or len(ds) < 4:
            row = {c: [None, None] for c in ds.columns}
            ds.append({**row, "x": [n, n + 1], "s": [f"r{n}", f"r{n + 1}"]})
            n += 2
        elif op < 0.7:
            ds.delete(f"x = {rng.choice(ds.to_table(['x']).column('x').to_pylist())}")
        elif op < 0.8:
            ds.update({"s": "u"}, where=f"x < {rng.randrange(n)}")
        elif op < 0.87:
            ds.compact(target_rows=5)
        elif op < 0.93:
            ds.restore(rng.randrange(max(1, ds.version - 10), ds.version))
        else:
            ds.add_column(f"c{ds.version}", "int32")
    latest = ds.version
    files = compacted(uri)
    assert files, "the committer wrote compacted files"
    # the grid's files stay; off the grid only the newest of each checkpoint interval
    for a, b in files:
        assert a % interval == 0 and a < b < a + interval
        assert (b - a) % 4 == 0 or b == max(bb for aa, bb in files if aa == a)
    for v in range(latest + 1):
        cache.clear()
        got = th.open(uri, version=v)
        want = replayed(uri, v)
        assert got.snapshot == want.snapshot, v
        assert got.snapshot.metadata == want.snapshot.metadata
        assert got.snapshot.txns == want.snapshot.txns
    cache.clear()
    got = th.open(uri)
    assert got.snapshot == replayed(uri).snapshot
    assert got.to_table().equals(ds.to_table())


def test_a_writer_that_opened_from_a_compacted_file_keeps_writing_them(
    tmp_path: Path, interval: int
) -> None:
    uri = str(tmp_path / "ds")
    ds = th.create(uri, {"x": "int64"})
    for i in range(28):
        ds.append({"x": [i]})
    assert compacted(uri)[-1] == (25, 27)  # written every 2nd version in these tests
    cache.clear()
    again = th.open(uri)  # checkpoint 25 + compacted 25..27 + entry 28
    again.append({"x": [28]})
    again.delete("x = 26")
    again.append({"x": [29]})
    # 29 is on the grid (25 + 4): kept; 27 is not: its file went when 29's was written; 30 wrote none
    assert compacted(uri) == [(25, 29), (25, 31)]
    cache.clear()
    assert th.open(uri).snapshot == replayed(uri).snapshot
    assert sorted(th.open(uri).to_table().column("x").to_pylist()) == [
        *range(26),
        27,
        28,
        29,
    ]


@pytest.mark.parametrize("damage", ["flip", "truncate", "other-base", "empty"])
def test_a_damaged_compacted_file_is_skipped(tmp_path: Path, interval: int, damage: str) -> None:
    uri = str(tmp_path / "ds")
    ds = th.create(uri, {"x": "int64"})
    for i in range(31):
        ds.append({"x": [i]})
    path = Path(uri) / "_log" / f"{25:020d}.{31:020d}.compacted"
    raw = bytearray(path.read_bytes())
    if damage == "flip":
        raw[len(raw) // 2] ^= 0xFF
    elif damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "other-base":  # a valid file of another checkpoint under this name
        grid = (Path(uri) / "_log" / f"{25:020d}.{29:020d}.compacted").read_bytes()
        raw = bytearray(grid)  # version 29's state named as version 31's
    else:
        raw = bytearray()
    path.write_bytes(bytes(raw))
    cache.clear()
    ds2 = th.open(uri)
    assert ds2.version == 31 and sorted(ds2.to_table().column("x").to_pylist()) == list(range(31))
    cache.clear()
    assert th.open(uri, version=31).snapshot == replayed(uri, 31).snapshot


def test_a_forged_compacted_file_with_a_valid_checksum_is_validated_and_skipped(
    tmp_path: Path, interval: int, caplog: pytest.LogCaptureFixture
) -> None:
    from dataclasses import replace

    from tensorhouse.format.log import ChunkRef, Fragment
    from tensorhouse.format.log.checkpoint import encode_compacted

    uri = str(tmp_path / "ds")
    ds = th.create(uri, {"x": "int64"})
    for i in range(27):
        ds.append({"x": [i]})
    snap = ds.snapshot
    assert snap.since is not None and snap.since[0] == 25
    good = snap.fragment(26)
    fid = next(iter(good.columns))
    evil = Fragment(26, 1, {fid: (ChunkRef("../../etc/passwd", 1, 64, 72),)})
    forged = replace(snap, fragments=[*snap.fragments[:-1], evil])
    path = Path(uri) / "_log" / f"{25:020d}.{27:020d}.compacted"
    path.write_bytes(encode_compacted(forged))
    cache.clear()
    again = th.open(uri)  # the forged file fails validation: checkpoint 25 + entries instead
    assert "unsafe data path" in caplog.text
    assert sorted(again.to_table().column("x").to_pylist()) == list(range(27))
    assert again.snapshot == replayed(uri).snapshot


def test_a_full_file_reads_without_its_checkpoint_and_as_a_delta_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import json

    import pyarrow as pa
    import xxhash

    from tensorhouse.format.log.checkpoint import HEADER, MAGIC, STATE_KEY, parse_compacted

    monkeypatch.setattr(log_module, "CHECKPOINT_INTERVAL", 25)
    uri = str(tmp_path / "ds")
    ds = th.create(uri, {"x": "int64"})
    for i in range(31):
        ds.append({"x": [i]})
    ds.delete("x = 3")  # version 32: removes a fragment of the checkpoint
    ds.append({"x": [99]})  # 33: its compacted file (every 2nd version)
    ds.append({"x": [100]})  # 34
    want = replayed(uri).snapshot
    path = Path(uri) / "_log" / f"{25:020d}.{33:020d}.compacted"
    raw = path.read_bytes()
    table = pa.ipc.open_file(pa.py_buffer(raw[HEADER.size :])).read_all()
    state = json.loads(table.schema.metadata[STATE_KEY])
    assert state["full"] is True and state["base"] == 25 and state["removed"]
    assert table.num_rows == len(replayed(uri, 33).snapshot.fragments)

    # the checkpoint is never read: a cold open of 34 is this file and entry 34
    cp = Path(uri) / "_log" / f"{25:020d}.checkpoint"
    cp.rename(cp.with_suffix(".away"))
    cache.clear()
    assert th.open(uri).snapshot == want
    cp.with_suffix(".away").rename(cp)

    # a reader that only knows files of changes (before full files) merges it into the same state
    del state["full"]
    table = table.replace_schema_metadata({STATE_KEY: json.dumps(state).encode()})
    sink = pa.BufferOutputStream()
    with pa.ipc.new_file(sink, table.schema) as writer:
        writer.write_table(table)
    body = sink.getvalue().to_pybytes()
    as_delta = HEADER.pack(MAGIC, xxhash.xxh3_64_intdigest(body), len(body)) + body
    base = replayed(uri, 25).snapshot
    merged = parse_compacted(as_delta, "as-delta", base_version=25, base_fragments=lambda: base)
    assert merged == replayed(uri, 33).snapshot


def test_on_s3_the_grid_is_written_and_a_cold_open_reads_the_listed_file(
    s3_uri: tuple[str, dict[str, Any]], interval: int, request: pytest.FixtureRequest
) -> None:
    from faults import CountingStore

    from tensorhouse.storage import ForwardingStore, open_store

    uri, opts = s3_uri
    ds = th.create(uri, {"x": "int64"}, storage_options=opts)
    for i in range(32):
        ds.append({"x": [i]})
    ds.delete("x = 30")  # 33
    ds.append({"x": [99]})  # 34
    ds.append({"x": [100]})  # 35
    store = open_store(uri, opts)
    names = [k.rsplit("/", 1)[-1] for k in store.list_keys("_log/") if k.endswith(".compacted")]
    # the grid's files only (every 4th version in these tests): a PUT per 4 commits, no DELETE
    assert names == [f"{25:020d}.{v:020d}.compacted" for v in (29, 33)], names
    ds.append({"x": [101]})  # 36

    cache.clear()
    counting = CountingStore(open_store(uri, opts))
    log = Log(counting)
    got = Dataset(counting, log.snapshot(), log=log)
    full = "full" in request.node.callspec.id
    # one listing, the hint, file 33 (and checkpoint 25 for a file of changes), entries 34-36
    assert counting.calls["list"] == 1
    assert counting.calls["get"] + counting.calls["get_range"] == (5 if full else 6), counting.calls
    assert sorted(got.to_table().column("x").to_pylist()) == [*range(30), 31, 99, 100, 101]

    # a listed file deleted before it is read (vacuum, or a local writer replacing it): the next
    # listed one instead (here grid file 29)
    class ReplacedAfterListing(ForwardingStore):
        def list_keys(self, prefix: str = "") -> list[str]:
            keys = super().list_keys(prefix)
            self.inner.delete(f"_log/{25:020d}.{33:020d}.compacted")
            return keys

    cache.clear()
    racing = ReplacedAfterListing(open_store(uri, opts))
    log = Log(racing)
    assert Dataset(racing, log.snapshot(), log=log).snapshot == got.snapshot

    # the same state as the entries give without the compacted files
    for k in store.list_keys("_log/"):
        if k.endswith(".compacted"):
            store.delete(k)
    cache.clear()
    assert th.open(uri, storage_options=opts).snapshot == got.snapshot
