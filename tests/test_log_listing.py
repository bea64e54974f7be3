"""Opening from the verified checkpoint hint, listing races, history and vacuum that read only what they need."""

from __future__ import annotations

import json
import os
import sys
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import tensorhouse as th
from tensorhouse.errors import CorruptLogError
from tensorhouse.format.dataset import Dataset
from tensorhouse.format.log import Log, cache
from tensorhouse.format.log import log as log_module
from tensorhouse.storage import LocalStore
from tensorhouse.storage.base import ObjectInfo, Store

sys.path.insert(0, str(Path(__file__).parent))
from faults import CountingStore, Wrapper


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


def open_with(store: Store, version: int | None = None) -> Dataset:
    log = Log(store)
    return Dataset(store, log.snapshot(version), log=log)


class Hiding(Wrapper):
    """Its first ``misses`` listings leave out ``hidden`` keys: a listing racing with a commit."""

    def __init__(self, inner: Store, hidden: set[str], misses: int) -> None:
        super().__init__(inner)
        self.hidden, self.misses = hidden, misses

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        out = self.inner.list(prefix)
        if self.misses > 0:
            self.misses -= 1
            out = [i for i in out if i.key not in self.hidden]
        return out


def test_a_gap_seen_while_listing_is_rechecked_not_reported(tmp_path: Path) -> None:
    uri = build(tmp_path, 6)
    hidden = {"_log/00000000000000000003.json"}
    for misses in (1, 2):  # the second listing misses it too: then the entry itself is asked for
        assert xs(open_with(Hiding(LocalStore(uri), hidden, misses))) == list(range(6))
    os.remove(Path(uri) / "_log" / "00000000000000000003.json")  # a real gap stays an error
    with pytest.raises(CorruptLogError, match=r"missing versions \[3\]"):
        open_with(LocalStore(uri))


def test_open_reads_the_hint_the_checkpoint_and_the_entries_after_it_only(
    tmp_path: Path, small_checkpoints: None
) -> None:
    uri = build(tmp_path, 13)
    cache.clear()  # as a new process: nothing cached from the build
    store = CountingStore(LocalStore(uri))
    assert xs(open_with(store)) == list(range(13))
    # locally no listing. The compacted file of version 12 (against checkpoint 10; one every 2nd
    # version) holds its whole state (a small one): the checkpoint is not read, only entry 13 is
    # parsed, and the failed read of 14 ends it
    assert store.calls["list"] == 0 and store.keys_read == [
        "_log/_last_checkpoint",
        "_log/00000000000000000010.00000000000000000012.compacted",
        "_log/00000000000000000013.json",
    ]
    # without compacted files (an older writer, or deleted), the entries after the checkpoint are read
    for p in (Path(uri) / "_log").glob("*.compacted"):
        p.unlink()
    cache.clear()
    store = CountingStore(LocalStore(uri))
    assert xs(open_with(store)) == list(range(13)) and store.calls["list"] == 0
    assert store.keys_read[:2] == ["_log/_last_checkpoint", "_log/00000000000000000010.checkpoint"]
    assert sorted(store.keys_read[2:]) == [f"_log/{v:020d}.json" for v in (11, 12, 13)]


@pytest.mark.parametrize("hint", ["stale", "ahead", "mismatch", "missing", "old-format"])
def test_a_wrong_hint_is_never_trusted(tmp_path: Path, small_checkpoints: None, hint: str) -> None:
    uri = build(tmp_path, 12)
    path = Path(uri) / "_log" / "_last_checkpoint"
    doc = json.loads(path.read_bytes())
    assert doc["version"] == 10
    if hint == "stale":  # a slow writer put back the hint of an older checkpoint
        from tensorhouse.format.log.checkpoint import checkpoint_digest

        cp5 = (Path(uri) / "_log" / "00000000000000000005.checkpoint").read_bytes()
        doc = {"version": 5, "size": len(cp5), "xxh3": checkpoint_digest(cp5)}
    elif hint == "ahead":  # names a checkpoint that does not exist (a copied or truncated dataset)
        doc["version"] = 5000
    elif hint == "mismatch":  # names the right version, but other bytes
        doc["xxh3"] ^= 1
    elif hint == "old-format":
        doc = {"version": 10}
    if hint == "missing":
        path.unlink()
    else:
        path.write_text(json.dumps(doc))
    assert xs(th.open(uri)) == list(range(12)) and th.open(uri).version == 12
    assert xs(th.open(uri, version=7)) == list(range(7))


def test_a_checkpoint_that_passes_its_checksum_but_lies_is_refused(
    tmp_path: Path, small_checkpoints: None
) -> None:
    """Validation is semantic too (vectorised): an unsafe path or rows that do not add up."""
    import pyarrow as pa

    from tensorhouse.format.log.checkpoint import HEADER, encode_checkpoint, parse_checkpoint
    from tensorhouse.format.log.fragments import FragmentColumns

    uri = build(tmp_path, 5)
    snap = th.open(uri).snapshot
    raw = encode_checkpoint(snap)
    assert parse_checkpoint(raw, "x").num_rows == 5
    table = FragmentColumns.from_table(
        pa.ipc.open_file(pa.py_buffer(raw[HEADER.size :])).read_all().replace_schema_metadata(None),
        next_fragment_id=snap.next_fragment_id,
    ).table
    chunks = table.column("chunks").combine_chunks()
    values = chunks.values
    for field, bad in (
        ("path", pa.array(["../../etc/passwd"] * len(values))),
        ("rows", pa.array([7] * len(values), pa.int64())),
    ):
        arrays = [bad if n == field else values.field(n) for n in (f.name for f in values.type)]
        struct = pa.StructArray.from_arrays(arrays, fields=list(values.type))
        lying = table.set_column(5, "chunks", pa.ListArray.from_arrays(chunks.offsets, struct))
        with pytest.raises(CorruptLogError):
            FragmentColumns.from_table(lying, next_fragment_id=snap.next_fragment_id)


@pytest.mark.parametrize("order", ["as-written", "columns-reversed"])
def test_chunks_that_do_not_cover_their_fragment_are_refused_in_any_order(
    tmp_path: Path, order: str
) -> None:
    """Chunk coverage is summed per run when chunks are grouped as written, else per sorted key."""
    import pyarrow as pa

    from tensorhouse.format.log.fragments import FragmentColumns, to_table

    ds = th.create(str(tmp_path / "ds"), {"a": "int64", "b": "int64"})
    ds.append({"a": [1, 2], "b": [3, 4]})
    ds.append({"a": [5], "b": [6]})
    frags = list(ds.snapshot.fragments)
    if order == "columns-reversed":  # each fragment's columns listed b before a: not grouped by key
        frags = [
            type(f)(f.id, f.num_rows, dict(reversed(list(f.columns.items()))), f.deletion)
            for f in frags
        ]
    table = to_table(frags)
    n = ds.snapshot.next_fragment_id
    assert len(FragmentColumns.from_table(table, next_fragment_id=n)) == 2
    chunks = table.column("chunks").combine_chunks()
    values = chunks.values
    rows = values.field("rows").to_pylist()
    rows[-1] += 1  # the last chunk claims a row its fragment does not have
    arrays = [
        pa.array(rows, pa.int64()) if f.name == "rows" else values.field(f.name)
        for f in values.type
    ]
    lying = table.set_column(
        5,
        "chunks",
        pa.ListArray.from_arrays(
            chunks.offsets, pa.StructArray.from_arrays(arrays, fields=list(values.type))
        ),
    )
    with pytest.raises(CorruptLogError, match=f"fragment {frags[-1].id}: chunks do not cover"):
        FragmentColumns.from_table(lying, next_fragment_id=n)


def test_history_with_a_limit_reads_only_the_newest_entries(
    tmp_path: Path, small_checkpoints: None
) -> None:
    uri = build(tmp_path, 12)
    ds = th.open(uri)
    ds.delete(where="x < 3")
    full = ds.history()
    assert [h.num_rows for h in full] == [*range(13), 9] and full[-1].operation == "delete"
    store = CountingStore(LocalStore(uri))
    last = open_with(store).history(limit=3)
    assert last == full[-3:]
    entries = [k for k in store.keys_read if k.endswith(".json") and "_log/0" in k]
    assert len(entries) <= 5 + 3  # the entries after the checkpoint, then the three asked for


def test_vacuum_removes_abandoned_staged_files_older_than_the_retention(tmp_path: Path) -> None:
    uri = build(tmp_path, 2)
    old = Path(uri) / "data" / "x" / ".tmp-0123abcd"
    old.parent.mkdir(parents=True, exist_ok=True)  # x is in a group file: no folder of its own
    fresh = Path(uri) / "_log" / ".tmp-4567ef01"
    for p in (old, fresh):
        p.write_bytes(b"half a chunk")
    week_ago = time.time() - 8 * 86400
    os.utime(old, (week_ago, week_ago))
    ds = th.open(uri)
    dry = ds.vacuum(timedelta(days=7), dry_run=True)
    assert dry.deleted == ("data/x/.tmp-0123abcd",) and old.exists()
    report = ds.vacuum(timedelta(days=7))
    assert report.deleted == ("data/x/.tmp-0123abcd",) and report.bytes_freed == len(
        b"half a chunk"
    )
    assert not old.exists() and fresh.exists()  # a write in flight keeps its staged file
    assert xs(th.open(uri)) == [0, 1]


def test_vacuum_reads_only_the_retained_part_of_a_long_log(
    tmp_path: Path, small_checkpoints: None
) -> None:
    now = [time.time() - 3 * 86400]
    uri = str(tmp_path / "ds")
    ds = th.create(uri, {"x": "int64"}, clock=lambda: now[0])
    for i in range(30):
        if i == 25:
            now[0] = (
                time.time()
            )  # the last 5 commits are recent, the first 26 versions three days old
        ds.append({"x": [i]})
    store = CountingStore(LocalStore(uri))
    report = open_with(store).vacuum(timedelta(days=1))
    # version 25 was current at the cutoff: it and every later version are retained
    assert report.deleted == () and report.retained_versions == 6
    entries = [k for k in store.keys_read if k.endswith(".json") and "_log/0" in k]
    assert len(entries) <= 12, (
        entries
    )  # a binary search over timestamps, then the entries after checkpoint 25
    assert "_log/00000000000000000025.checkpoint" in store.keys_read


def test_opening_on_s3_costs_one_list_and_three_gets(
    s3_uri: tuple[str, dict[str, Any]], small_checkpoints: None
) -> None:
    from tensorhouse.storage import open_store

    uri, opts = s3_uri
    ds = th.create(uri, {"x": "int64"}, storage_options=opts)
    for i in range(6):
        ds.append({"x": [i]})  # a checkpoint at version 5, then one entry
    cache.clear()  # as a new process: nothing cached from the build
    store = CountingStore(open_store(uri, opts))
    opened = open_with(store)
    gets = store.calls["get"] + store.calls["get_range"]  # bounded reads are one ranged GET each
    assert len(opened) == 6 and store.calls["list"] == 1 and gets == 3, store.calls
    assert xs(opened) == list(range(6))
    assert store.keys_read[:3] == [
        "_log/_last_checkpoint",
        "_log/00000000000000000005.checkpoint",
        "_log/00000000000000000006.json",
    ]


def test_format_1_json_checkpoints_still_read(tmp_path: Path, small_checkpoints: None) -> None:
    """Datasets written before columnar checkpoints: a JSON state with a sha256 over its canonical form."""
    import hashlib

    uri = build(tmp_path, 7)
    snap = th.open(uri, version=5).snapshot
    state = snap.to_dict()
    digest = hashlib.sha256(
        json.dumps(state, sort_keys=True, separators=(",", ":")).encode()
    ).hexdigest()
    doc = {
        "format": "tensorhouse.checkpoint",
        "format_version": 1,
        "sha256": digest,
        "state": state,
    }
    (Path(uri) / "_log" / "00000000000000000005.checkpoint").write_text(json.dumps(doc))
    (Path(uri) / "_log" / "_last_checkpoint").write_text(json.dumps({"version": 5}))  # the old hint
    store = CountingStore(LocalStore(uri))
    ds = open_with(store)
    assert xs(ds) == list(range(7)) and "_log/00000000000000000005.checkpoint" in store.keys_read
    assert ds.snapshot.fragments[0] == snap.fragments[0]


def test_an_old_checkpoint_does_not_pull_the_hint_back(
    tmp_path: Path, small_checkpoints: None
) -> None:
    uri = build(tmp_path, 11)
    th.open(uri, version=3).checkpoint()  # on demand, from an old handle
    assert json.loads((Path(uri) / "_log" / "_last_checkpoint").read_bytes())["version"] == 10
    (Path(uri) / "_log" / "_last_checkpoint").write_text(
        json.dumps({"version": 99, "size": 1, "xxh3": 1})
    )
    ds = th.open(uri)
    ds.append({"x": [11]})
    ds.checkpoint()  # a hint naming a checkpoint that does not exist is replaced
    assert json.loads((Path(uri) / "_log" / "_last_checkpoint").read_bytes())["version"] == 12
