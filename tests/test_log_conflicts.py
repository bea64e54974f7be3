"""Optimistic concurrency: the conflict matrix (one test per pair) and idempotent writes."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

import tensorhouse as th

Op = Callable[[th.Dataset], object]


def _row(label: int) -> dict[str, object]:
    return {"label": [label], "name": [f"r{label}"]}


OPS: dict[str, Op] = {
    "append": lambda ds: ds.append(_row(7)),
    "delete_f0": lambda ds: ds.delete("name = 'a0'"),
    "delete_f1": lambda ds: ds.delete("name = 'b0'"),
    "update_f0": lambda ds: ds.update({"label": 5}, where="name = 'a1'"),
    "update_f1": lambda ds: ds.update({"label": 5}, where="name = 'b1'"),
    "compact": lambda ds: ds.compact(target_rows=100),
    "add_column": lambda ds: ds.add_column("extra", "int64"),
    "add_column_values": lambda ds: ds.add_column("filled", "int64", values=np.arange(len(ds))),
    "rename": lambda ds: ds.rename_column("name", "title"),
    "restore": lambda ds: ds.restore(1),
}

# (first committed, second rebased onto it) -> conflicts?
CONFLICTS = {
    ("append", "append"): False,
    ("append", "delete_f0"): False,
    ("delete_f0", "append"): False,
    ("append", "update_f0"): False,
    ("append", "add_column"): False,
    ("add_column", "append"): False,
    ("rename", "append"): False,
    ("delete_f0", "delete_f0"): True,
    ("delete_f0", "delete_f1"): False,
    ("delete_f0", "update_f0"): True,
    ("update_f0", "delete_f0"): True,
    ("update_f0", "update_f1"): False,
    ("update_f1", "delete_f1"): True,
    ("compact", "delete_f0"): True,
    (
        "delete_f1",
        "compact",
    ): False,  # compact starts from the latest version, so it sees the delete
    ("compact", "update_f1"): True,
    ("add_column", "add_column"): True,
    ("add_column", "rename"): True,
    ("rename", "add_column_values"): True,
    ("add_column_values", "delete_f0"): True,
    ("delete_f0", "add_column_values"): True,
    ("restore", "append"): False,  # a blind append lands on top of the restored state
    ("append", "restore"): True,
    ("restore", "delete_f0"): True,
}


def _setup(tmp_path: Path) -> str:
    uri = str(tmp_path / "ds")
    ds = th.create(uri, {"label": "int32", "name": th.Text()})
    ds.append({"label": [0, 1, 2], "name": ["a0", "a1", "a2"]})  # fragment 0
    ds.append({"label": [3, 4, 5], "name": ["b0", "b1", "b2"]})  # fragment 1
    return uri


@pytest.mark.parametrize(
    ("first", "second"), list(CONFLICTS), ids=[f"{a}-then-{b}" for a, b in CONFLICTS]
)
def test_conflict_matrix(tmp_path: Path, first: str, second: str) -> None:
    uri = _setup(tmp_path)
    a, b = th.open(uri), th.open(uri)  # both read version 2
    OPS[first](a)
    versions_before = th.open(uri).version
    if CONFLICTS[(first, second)]:
        with pytest.raises(th.CommitConflictError):
            OPS[second](b)
        assert th.open(uri).version == versions_before  # the loser committed nothing
    else:
        OPS[second](b)
        ds = th.open(uri)
        assert ds.version == versions_before + 1
        assert b.version == ds.version  # the writer's object follows its commit
        ds.to_table()  # the merged state reads


def test_rebased_append_keeps_both_rows_and_unique_row_ids(tmp_path: Path) -> None:
    uri = _setup(tmp_path)
    a, b = th.open(uri), th.open(uri)
    a.append(_row(10))
    b.append(_row(11))
    ds = th.open(uri)
    t = ds.to_table(["label", "_rowid"])
    assert sorted(t.column("label").to_pylist()) == [0, 1, 2, 3, 4, 5, 10, 11]
    assert len(set(t.column("_rowid").to_pylist())) == 8


def test_conflict_error_names_rows(tmp_path: Path) -> None:
    uri = _setup(tmp_path)
    a, b = th.open(uri), th.open(uri)
    a.delete("name = 'a0'")
    with pytest.raises(th.CommitConflictError, match=r"fragment 0: rows 1"):
        b.update({"label": 9}, where="name = 'a1'")


def test_idempotent_append_commits_once(tmp_path: Path) -> None:
    uri = _setup(tmp_path)
    ds = th.open(uri)
    v1 = ds.append(_row(1), app_id="ingest-7", txn_version=12)
    v2 = ds.append(_row(1), app_id="ingest-7", txn_version=12)
    v3 = th.open(uri).append(_row(1), app_id="ingest-7", txn_version=11)  # older: also already done
    assert v1 == v2 == v3 == 3 and len(th.open(uri)) == 7
    assert th.open(uri).append(_row(1), app_id="ingest-7", txn_version=13) == 4
    assert th.open(uri).append(_row(1), app_id="other-app", txn_version=12) == 5
    with pytest.raises(ValueError, match="both"):
        ds.append(_row(1), app_id="x")


def test_concurrent_idempotent_retries_commit_once(tmp_path: Path) -> None:
    uri = _setup(tmp_path)
    errors: list[BaseException] = []

    def retry() -> None:
        try:
            th.open(uri).append(_row(42), app_id="job", txn_version=1)
        except BaseException as err:  # pragma: no cover - reported below
            errors.append(err)

    threads = [threading.Thread(target=retry) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert th.open(uri).to_table(["label"]).column("label").to_pylist().count(42) == 1


def test_single_writer_mode_for_stores_without_conditional_put() -> None:
    uri = "memory://no-cas"
    from tensorhouse.storage import open_store

    store = open_store(uri)
    store.supports_conditional_put = False  # a store that cannot put-if-absent
    from tensorhouse.format.dataset import Dataset
    from tensorhouse.format.log import Log

    th.create(uri, {"x": "int64"})
    ds = th.open(uri)
    unsafe = Dataset(store, ds.snapshot, log=Log(store))
    with pytest.raises(th.ConditionalPutUnsupportedError, match="single_writer=True"):
        unsafe.append({"x": [1]})
    ok = Dataset(store, ds.snapshot, log=Log(store, single_writer=True))
    assert ok.append({"x": [1]}) == 1
