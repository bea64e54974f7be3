"""Typed log actions, the staging API, index entries and staged fragments committed elsewhere."""

from __future__ import annotations

import ast
import json
import multiprocessing as mp
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

import tensorhouse as th
from tensorhouse.errors import CommitConflictError, CorruptLogError, SchemaError
from tensorhouse.format.log import (
    AddFragment,
    AddIndex,
    ChunkRef,
    DropIndex,
    Fragment,
    IndexEntry,
    IndexFile,
    Metadata,
    Protocol,
    RemoveFragment,
    ReplaceFragment,
    Restore,
    SetMetadata,
    Txn,
)
from tensorhouse.format.log.actions import KINDS, decode_action, encode_action
from tensorhouse.format.writer import StagedFragment
from tensorhouse.types import Schema

FORMAT = Path(__file__).parent.parent / "tensorhouse" / "format"


def entry(
    name: str = "emb_idx",
    files: tuple[str, ...] = ("_indexes/a.bin",),
    fids: tuple[int, ...] = (0,),
) -> IndexEntry:
    return IndexEntry(
        name,
        "x",
        "l2",
        "hnsw",
        tuple(IndexFile(p, 10) for p in files),
        fids,
        {"M": 16, "ef": [1, 2]},
    )


def test_every_action_kind_round_trips_through_its_json_form() -> None:
    frag = Fragment(3, 2, {0: (ChunkRef("data/x/a.chunk", 2, 44, 100, {"min": 1}),)})
    meta = Metadata("id", Schema.of({"x": "int64"}), {"x": 0}, 1, {})
    actions = [
        Protocol(),
        SetMetadata(meta),
        AddFragment(frag),
        ReplaceFragment(frag),
        RemoveFragment(3),
        Txn("app", 7),
        Restore(2),
        AddIndex(entry()),
        DropIndex("emb_idx"),
    ]
    encoded = [encode_action(a) for a in actions]
    assert [next(iter(e)) for e in encoded] == list(KINDS)
    assert [decode_action(json.loads(json.dumps(e))) for e in encoded] == actions


@pytest.mark.parametrize(
    "bad",
    [
        {"nope": {}},
        {"remove_fragment": {"id": -1}},
        {"txn": {"app_id": 1, "version": 0}},
        {"add_index": {"name": "i"}},
        {"drop_index": []},
        {"a": {}, "b": {}},
        {"add_index": {**entry().to_dict(), "files": [{"path": "../x", "size": 1}]}},
    ],
)
def test_bad_actions_are_refused_with_a_typed_error(bad: dict[str, Any]) -> None:
    with pytest.raises(CorruptLogError):
        decode_action(bad)


def test_empty_transaction_commits_nothing(tmp_path: Path) -> None:
    ds = th.create(str(tmp_path / "ds"), {"x": "int64"})
    ds.append({"x": [1]})
    with ds.transaction() as tx:
        pass
    assert tx.commit() == 1 and ds.version == 1 and ds.versions() == [0, 1]
    assert ds.append({"x": []}) == 1 and ds.versions() == [0, 1]


def test_index_entries_replay_checkpoint_and_survive_vacuum(tmp_path: Path) -> None:
    uri = str(tmp_path / "ds")
    ds = th.create(uri, {"x": "int64"})
    ds.append({"x": [1, 2]})
    for p in ("_indexes/a.bin", "_indexes/b.bin"):
        (tmp_path / "ds" / p).parent.mkdir(exist_ok=True)
        (tmp_path / "ds" / p).write_bytes(b"0123456789")
    with ds.transaction() as tx:
        tx.add_index(entry(files=("_indexes/a.bin",)))
    assert th.open(uri).snapshot.indexes == {"emb_idx": entry(files=("_indexes/a.bin",))}
    with ds.transaction() as tx:  # rebuilt: the entry of that name is replaced
        tx.add_index(entry(files=("_indexes/b.bin",)))
    ds.checkpoint()
    reopened = th.open(uri)
    assert reopened.snapshot.indexes["emb_idx"].files == (IndexFile("_indexes/b.bin", 10),)
    assert th.open(uri, version=2).snapshot.indexes["emb_idx"].files[0].path == "_indexes/a.bin"
    with pytest.raises(SchemaError, match="unknown column"):
        ds.transaction().add_index(IndexEntry("i2", "nope", "l2", "flat", (), ()))
    with pytest.raises(KeyError):
        ds.transaction().drop_index("nope")
    report = ds.vacuum(
        timedelta(hours=1)
    )  # every version was current within the hour: its index files stay
    assert report.deleted == () and report.retained_versions == 4
    with ds.transaction() as tx:
        tx.drop_index("emb_idx")
    assert th.open(uri).snapshot.indexes == {}
    later = th.open(uri, clock=lambda: time.time() + 3600)
    report = later.vacuum(timedelta(minutes=1), force=True)
    assert set(report.deleted) >= {"_indexes/a.bin", "_indexes/b.bin"}


def test_index_changes_conflict_by_name_and_with_schema_changes(tmp_path: Path) -> None:
    uri = str(tmp_path / "ds")
    ds = th.create(uri, {"x": "int64"})
    ds.append({"x": [1]})
    a, b = th.open(uri), th.open(uri)
    tx = a.transaction()
    tx.add_index(entry())
    b.add_column("y", "int64")
    with pytest.raises(CommitConflictError, match="index"):
        tx.commit()
    c, d = th.open(uri), th.open(uri)
    with c.transaction() as t1:
        t1.add_index(entry("one"))
    with d.transaction() as t2:  # another name: both commit
        t2.add_index(entry("two"))
    assert set(th.open(uri).snapshot.indexes) == {"one", "two"}


def test_index_of_fragments_appended_in_the_same_transaction_is_renumbered(tmp_path: Path) -> None:
    uri = str(tmp_path / "ds")
    ds = th.create(uri, {"x": "int64"})
    other = th.open(uri)
    tx = ds.transaction()
    tx.append({"x": [1, 2]})
    tx.add_index(entry(fids=tuple(f.id for f in tx.state.fragments)))
    other.append({"x": [9]})  # wins fragment 0: ours becomes fragment 1, and so does the index's
    tx.commit()
    snap = th.open(uri).snapshot
    assert [f.id for f in snap.fragments] == [0, 1] and snap.indexes["emb_idx"].fragment_ids == (1,)


def _stage_in_child(uri: str, start: int, out: Any) -> None:
    ds = th.open(uri)
    out.put([s.to_dict() for s in ds.stage({"x": list(range(start, start + 3))})])


def test_fragments_staged_by_other_processes_commit_once(tmp_path: Path) -> None:
    uri = str(tmp_path / "ds")
    ds = th.create(uri, {"x": "int64"})
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_stage_in_child, args=(uri, 10 * i, q)) for i in range(2)]
    for p in procs:
        p.start()
    staged = [StagedFragment.from_dict(d) for _ in procs for d in q.get(timeout=120)]
    for p in procs:
        p.join(timeout=60)
    assert ds.versions() == [0]  # staging commits nothing
    v = ds.commit_staged(staged, message="ray write", app_id="job-1", txn_version=0)
    assert v == 1 and sorted(ds.to_table().column("x").to_pylist()) == [0, 1, 2, 10, 11, 12]
    assert (
        ds.commit_staged(staged, app_id="job-1", txn_version=0) == 1
    )  # a retried driver commits once
    assert th.open(uri).history()[-1].message == "ray write"


def test_staged_fragments_are_checked_against_the_dataset(tmp_path: Path) -> None:
    a = th.create(str(tmp_path / "a"), {"x": "int64", "y": "int64"})
    b = th.create(str(tmp_path / "b"), {"x": "int64", "y": "int64"})
    staged = a.stage({"x": [1], "y": [2]})
    with pytest.raises(SchemaError, match="belongs to dataset"):
        b.commit_staged(staged)
    a.drop_column("y")
    with pytest.raises(SchemaError, match="dropped"):
        a.commit_staged(staged)
    with pytest.raises(SchemaError, match="not a staged fragment"):
        StagedFragment.from_dict(
            {"dataset_id": "x", "num_rows": 1, "columns": {"0": [{"path": "/etc/passwd"}]}}
        )
    assert len(a) == 0 and a.version == 1


def test_format_modules_never_import_the_dataset_facade() -> None:
    """dataset -> transaction/maintenance/merge only: the write path has no import cycle."""
    package = FORMAT.parent
    for path in [*FORMAT.glob("*.py"), *FORMAT.glob("log/*.py")]:
        if path.name == "dataset.py":
            continue
        tree = ast.parse(path.read_text())
        imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
        imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
        assert "tensorhouse.format.dataset" not in imported, path
        assert "tensorhouse" not in {
            a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
        }, path
        for node in ast.walk(
            tree
        ):  # "from tensorhouse import x" only for a module x, never the facade's names
            if isinstance(node, ast.ImportFrom) and node.module == "tensorhouse":
                for a in node.names:
                    assert (package / f"{a.name}.py").exists() or (package / a.name).is_dir(), (
                        path,
                        a.name,
                    )


def test_the_write_path_touches_no_private_attribute_of_another_module() -> None:
    """No ``obj._x`` where ``_x`` belongs to a class of another module (``ds._log`` from the transaction)."""
    for name in ("transaction.py", "merge.py", "maintenance.py", "writer.py", "dataset.py"):
        tree = ast.parse((FORMAT / name).read_text())
        own = {
            n.attr
            for n in ast.walk(tree)
            if isinstance(n, ast.Attribute)
            and isinstance(n.value, ast.Name)
            and n.value.id == "self"
        }
        own |= {n.name for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.ClassDef)}
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Attribute)
                and node.attr.startswith("_")
                and not node.attr.startswith("__")
            ):
                is_self = isinstance(node.value, ast.Name) and node.value.id in ("self", "cls")
                assert is_self or node.attr in own, (name, node.attr)
