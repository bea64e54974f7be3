"""Row changes, schema evolution, time travel, tags, branches, merge, restore, vacuum, compaction."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

import tensorhouse as th


def make(tmp_path: Path, n: int = 100, frags: int = 2) -> th.Dataset:
    ds = th.create(
        str(tmp_path / "ds"),
        {"label": "int32", "score": "float32", "name": th.Text(), "emb": th.Embedding(4)},
        chunk_bytes=1024,
    )
    for f in range(frags):
        ids = np.arange(f * n, (f + 1) * n)
        ds.append(
            {
                "label": ids % 5,
                "score": (ids % 10) / 10,
                "name": [f"n{i}" for i in ids],
                "emb": np.repeat(ids[:, None], 4, 1).astype(np.float32),
            }
        )
    return ds


def col(ds: th.Dataset, name: str) -> list[object]:
    return ds.to_table([name]).column(name).to_pylist()


def test_delete_where_and_by_rowid(tmp_path: Path) -> None:
    ds = make(tmp_path)
    v = ds.delete("label = 3 AND score < 0.5")
    assert v == 3 and len(ds) == 200 - 20
    names = col(ds, "name")
    assert all(not (int(n[1:]) % 5 == 3 and (int(n[1:]) % 10) < 5) for n in names)  # type: ignore[index]
    rid = ds.take([0, 5], columns=["_rowid"])["_rowid"]
    ds.delete(rowids=rid)
    assert len(ds) == 178 and "n0" not in col(ds, "name")
    with pytest.raises(KeyError, match="row id"):
        ds.delete(rowids=rid)  # already deleted
    # take, len and scans agree; the old version still has every row
    assert ds.take([0])["name"] == [col(ds, "name")[0]]
    assert len(th.open(ds.uri, version=2)) == 200
    assert len(th.open(ds.uri)) == 178
    with pytest.raises(th.SchemaError, match="unknown column 'nope'"):
        ds.delete("nope = 1")
    with pytest.raises(th.SchemaError, match=r"cannot parse|expected"):
        ds.delete("label = = 3")


def test_delete_everything_in_a_fragment_removes_it(tmp_path: Path) -> None:
    ds = make(tmp_path, n=10)
    ds.delete("name IN ('n0','n1','n2','n3','n4','n5','n6','n7','n8','n9')")
    assert len(ds) == 10 and len(ds.snapshot.fragments) == 1


def test_update_copy_on_write(tmp_path: Path) -> None:
    ds = make(tmp_path)
    before = {c.path for f in ds.snapshot.fragments for cs in f.columns.values() for c in cs}
    ds.update({"label": 9, "name": "changed"}, where="score >= 0.9")
    labels, names, scores = col(ds, "label"), col(ds, "name"), col(ds, "score")
    assert all((lab == 9) == (s >= 0.9 - 1e-6) for lab, s in zip(labels, scores, strict=True))
    assert names.count("changed") == 20
    after = {c.path for f in ds.snapshot.fragments for cs in f.columns.values() for c in cs}
    assert {
        p for p in before if p.startswith("data/emb/")
    } <= after  # untouched columns keep their chunks
    assert len(after - before) < len(before)  # only affected chunks were rewritten
    assert col(th.open(ds.uri, version=2), "label").count(9) == 0
    ds.update({"score": 0.5})  # every row
    assert set(col(ds, "score")) == {0.5}
    with pytest.raises(th.SchemaError):
        ds.update({"label": "not a number"}, where="label = 1")
    with pytest.raises(th.SchemaError, match="unknown column"):
        ds.update({"nope": 1})


def test_schema_evolution_keeps_old_versions(tmp_path: Path) -> None:
    ds = make(tmp_path)
    ds.delete("label = 0")
    n = len(ds)
    ds.add_column("flag", "bool")
    ds.add_column("w", "float32", values=np.arange(n, dtype=np.float32))
    assert col(ds, "flag") == [None] * n
    assert col(ds, "w") == list(range(n))
    ds.rename_column("name", "title")
    ds.drop_column("flag")
    assert ds.columns == ["label", "score", "title", "emb", "w"]
    assert th.open(ds.uri, version=2).columns == ["label", "score", "name", "emb"]
    assert col(ds, "title") == col(th.open(ds.uri, version=3), "name")
    ds.append({"label": [1], "score": [0.1], "title": ["new"], "emb": [np.zeros(4)], "w": [7.0]})
    assert col(ds, "title")[-1] == "new" and col(ds, "w")[-1] == 7.0
    with pytest.raises(th.SchemaError, match="already exists"):
        ds.add_column("w", "int64")
    with pytest.raises(th.SchemaError, match="values"):
        ds.add_column("z", "int64", values=[1, 2])
    with pytest.raises(th.SchemaError):
        ds.drop_column("nope")


class FakeClock:
    """A commit clock the test moves by hand (``th.create(..., clock=...)``): no sleeps, no flakiness."""

    def __init__(self, start: datetime) -> None:
        self.now = start.timestamp()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> datetime:
        self.now += seconds
        return datetime.fromtimestamp(self.now, UTC)


def test_time_travel_by_timestamp(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    ds = th.create(str(tmp_path / "ds"), {"x": "int64"}, clock=clock)
    created = clock.advance(0)
    clock.advance(10)
    ds.append({"x": [1]})
    mid = clock.advance(10)
    clock.advance(10)
    ds.append({"x": [2]})
    assert [h.timestamp for h in ds.history()] == [
        created,
        created + timedelta(seconds=10),
        created + timedelta(seconds=30),
    ]
    assert th.open(ds.uri, timestamp=mid).version == 1
    assert (
        th.open(ds.uri, timestamp=mid - timedelta(seconds=10)).version == 1
    )  # the commit's own millisecond
    assert th.open(ds.uri, timestamp=mid - timedelta(seconds=10, milliseconds=1)).version == 0
    assert th.open(ds.uri, timestamp=clock.advance(1)).version == 2
    assert th.open(ds.uri, timestamp=mid.replace(tzinfo=None)).version == 1  # naive means UTC
    with pytest.raises(th.VersionNotFoundError, match="first commit is later"):
        th.open(ds.uri, timestamp=datetime(2001, 1, 1))
    with pytest.raises(ValueError):
        th.open(ds.uri, version=1, tag="x")


def test_commit_timestamps_increase_even_when_the_clock_goes_back(tmp_path: Path) -> None:
    clock = FakeClock(datetime(2026, 1, 1, tzinfo=UTC))
    ds = th.create(str(tmp_path / "ds"), {"x": "int64"}, clock=clock)
    clock.advance(-3600)  # an NTP step backwards
    ds.append({"x": [1]})
    stamps = [h.timestamp for h in ds.history()]
    assert stamps[1] == stamps[0] + timedelta(milliseconds=1)
    branch = ds.branch("b")  # a branch made from a handle commits with the same clock
    clock.advance(7200)
    branch.append({"x": [2]})
    assert branch.history()[-1].timestamp == datetime.fromtimestamp(clock.now, UTC)


def test_tags(tmp_path: Path) -> None:
    ds = make(tmp_path)
    ds.tag("v1", version=1)
    ds.tag("latest")
    assert ds.tags == {"v1": 1, "latest": 2}
    assert len(th.open(ds.uri, tag="v1")) == 100
    with pytest.raises(th.RefExistsError):
        ds.tag("v1")
    with pytest.raises(th.VersionNotFoundError, match="cannot tag version 9"):
        ds.tag("nine", version=9)
    with pytest.raises(ValueError, match="invalid tag name"):
        ds.tag("../escape")
    ds.delete_tag("v1")
    assert ds.tags == {"latest": 2}
    with pytest.raises(th.VersionNotFoundError, match="no tag 'v1'"):
        th.open(ds.uri, tag="v1")


def test_branches_are_isolated_and_merge(tmp_path: Path) -> None:
    ds = make(tmp_path)
    b = ds.branch("relabel")
    assert b.branch_name == "relabel" and b.version == ds.version
    b.update({"label": 7}, where="label = 1")
    b.append({"label": [7], "score": [0.0], "name": ["branch-row"], "emb": [np.zeros(4)]})
    ds.append({"label": [2], "score": [0.0], "name": ["main-row"], "emb": [np.zeros(4)]})
    assert 7 not in col(th.open(ds.uri), "label")
    assert "main-row" not in col(th.open(ds.uri, branch="relabel"), "name")
    assert ds.branches == ["main", "relabel"]
    with pytest.raises(th.RefExistsError):
        ds.branch("relabel")
    ds.merge("relabel")
    merged = th.open(ds.uri)
    names = col(merged, "name")
    assert "branch-row" in names and "main-row" in names and len(merged) == 202
    assert col(merged, "label").count(7) == 41 and 1 not in col(merged, "label")
    with pytest.raises(th.VersionNotFoundError, match="no branch"):
        th.open(ds.uri, branch="nope")


def test_merge_conflict_names_fragments(tmp_path: Path) -> None:
    ds = make(tmp_path)
    b = ds.branch("fix")
    b.update({"label": 0}, where="name = 'n3'")
    ds.delete("name = 'n4'")
    with pytest.raises(th.CommitConflictError, match="fragment 0"):
        ds.merge("fix")
    b2 = th.open(ds.uri).branch("schema")
    b2.add_column("extra", "int64")
    ds.add_column("other", "int64")
    with pytest.raises(th.CommitConflictError, match="schema"):
        ds.merge("schema")


def test_restore(tmp_path: Path) -> None:
    ds = make(tmp_path)
    ds.delete("label = 1")
    ds.rename_column("name", "title")
    v = ds.restore(1)
    assert v == 5 and len(ds) == 100 and ds.columns == ["label", "score", "name", "emb"]
    assert ds.take([0, 99], columns=["_rowid"])["_rowid"].tolist() == [
        0,
        99,
    ]  # row ids as they were
    assert col(ds, "name") == col(th.open(ds.uri, version=1), "name")
    assert len(th.open(ds.uri, version=3)) == 160  # history is kept


def test_transaction_groups_writes(tmp_path: Path) -> None:
    ds = make(tmp_path, frags=1)
    with ds.transaction(message="batch") as tx:
        tx.append(
            {"label": [4, 4], "score": [0.9, 0.9], "name": ["a", "b"], "emb": np.zeros((2, 4))}
        )
        tx.delete(where="name = 'a'")
        tx.add_column("note", th.Text())
    assert ds.version == 2 and len(ds) == 101 and "note" in ds.columns
    assert ds.history()[-1].operation == "transaction" and ds.history()[-1].message == "batch"
    with pytest.raises(th.SchemaError), ds.transaction() as tx:
        tx.append({"label": [1]})
    assert ds.version == 2  # nothing committed by the failed transaction


def test_vacuum_keeps_everything_retained(tmp_path: Path) -> None:
    ds = make(tmp_path)
    ds.tag("keep", version=1)
    ds.update({"name": "x"}, where="label = 2")
    ds.delete("label = 3")
    ds.compact(target_rows=10_000)
    with pytest.raises(ValueError, match="force=True"):
        ds.vacuum(timedelta(0))
    dry = ds.vacuum(timedelta(0), dry_run=True, force=True)
    assert dry.dry_run and dry.deleted and all(Path(ds.uri, p).exists() for p in dry.deleted)
    report = ds.vacuum(timedelta(0), force=True)
    assert set(report.deleted) == set(dry.deleted) and report.bytes_freed > 0
    assert col(th.open(ds.uri), "name") == col(ds, "name")  # latest reads fine
    assert len(th.open(ds.uri, tag="keep").to_table()) == 100  # tagged version reads fine
    assert not ds.vacuum(timedelta(0), force=True).deleted  # idempotent
    assert not ds.vacuum(timedelta(days=7)).deleted  # nothing is older than a week


def test_vacuum_deletes_orphans_from_failed_writes(tmp_path: Path) -> None:
    ds = make(tmp_path)
    orphan = Path(ds.uri) / "data" / "label" / "orphan.chunk"
    orphan.parent.mkdir(
        parents=True, exist_ok=True
    )  # label is in group files: no folder of its own
    orphan.write_bytes(b"x" * 10)
    assert str(Path("data/label/orphan.chunk")) in ds.vacuum(timedelta(0), force=True).deleted
    assert not orphan.exists()


def test_compact_merges_small_fragments(tmp_path: Path) -> None:
    ds = make(tmp_path, n=10, frags=6)
    ds.delete("label = 0")
    before = ds.to_table(["name", "label", "emb"])
    report = ds.compact(target_rows=25)
    assert (
        report.fragments_before == 6 and report.fragments_after == 2
    )  # 8 live rows each: groups of three
    assert ds.to_table(["name", "label", "emb"]).equals(before)
    assert not any(f.deletion for f in ds.snapshot.fragments)
    assert ds.compact(target_rows=25).version is None  # nothing left to do


def test_optimize_and_alter_group_maintenance_and_the_old_names_do_the_same(tmp_path: Path) -> None:
    ds = th.create(str(tmp_path / "g"), {"x": "int64"})
    for i in range(4):
        ds.append({"x": [i]})
    ds.delete("x = 1")
    report = ds.optimize.compact(target_rows=100, message="merge")
    assert (report.fragments_before, report.fragments_after, report.rows_rewritten) == (
        3,
        1,
        3,
    )  # the delete emptied one fragment
    assert ds.history()[-1].operation == "compact" and ds.history()[-1].message == "merge"
    assert ds.optimize.compact(target_rows=100).version is None  # nothing left to merge: no commit
    assert ds.compact(target_rows=100).version is None
    v = ds.alter.add_column("y", "float32", [0.5, 1.5, 2.5])
    assert v == ds.version and ds.columns == ["x", "y"]
    assert ds.alter.rename_column("y", "score") == ds.version and ds.columns == ["x", "score"]
    assert ds.alter.drop_column("score") == ds.version and ds.columns == ["x"]
    ds.add_column("z", "int32")  # the alias
    assert ds.columns == ["x", "z"] and th.open(ds.uri).columns == ["x", "z"]
    assert ds.optimize.indexes() == []  # no index: nothing to do
    assert "compact()" in repr(ds.optimize) and "add_column()" in repr(ds.alter)
    with pytest.raises(th.SchemaError):
        ds.alter.drop_column("nope")
