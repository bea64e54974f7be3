"""A hypothesis state machine: random writes against a plain Python model.

Every step checks the latest version against the model; at the end every
version ever committed is re-opened and compared with the model's record of it.
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from datetime import timedelta
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

import tensorhouse as th

_ids = itertools.count()
Row = dict[str, Any]


class LogModel(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.dir = tempfile.mkdtemp()
        self.uri = f"{self.dir}/ds"
        self.ds = th.create(self.uri, {"k": "int64", "v": "int32"})
        self.rows: list[Row] = []  # the model: live rows in order
        self.columns = ["k", "v"]
        self.history: dict[int, tuple[list[str], list[Row]]] = {0: (["k", "v"], [])}
        self.tags: dict[str, int] = {}

    def _record(self) -> None:
        self.history[self.ds.version] = (list(self.columns), [dict(r) for r in self.rows])

    @rule(n=st.integers(0, 4), v=st.integers(0, 3))
    def append(self, n: int, v: int) -> None:
        new = [{c: None for c in self.columns} | {"k": next(_ids), "v": v} for _ in range(n)]
        self.ds.append({c: [r[c] for r in new] for c in self.columns})
        self.rows += new
        self._record()

    @rule(v=st.integers(0, 3))
    def delete(self, v: int) -> None:
        self.ds.delete(f"v = {v}")
        self.rows = [r for r in self.rows if r["v"] != v]
        self._record()

    @rule(v=st.integers(0, 3), new=st.integers(0, 3))
    def update(self, v: int, new: int) -> None:
        self.ds.update({"v": new}, where=f"v = {v}")
        for r in self.rows:
            if r["v"] == v:
                r["v"] = new
        self._record()

    @precondition(lambda self: len(self.columns) < 4)
    @rule(fill=st.booleans())
    def add_column(self, fill: bool) -> None:
        name = f"c{len(self.columns)}_{next(_ids)}"
        values = list(range(len(self.rows))) if fill else None
        self.ds.add_column(name, "int64", values=values)
        for i, r in enumerate(self.rows):
            r[name] = i if fill else None
        self.columns.append(name)
        self._record()

    @precondition(lambda self: len(self.history) > 1)
    @rule(data=st.data())
    def restore(self, data: st.DataObject) -> None:
        version = data.draw(st.sampled_from(sorted(self.history)))
        self.ds.restore(version)
        cols, rows = self.history[version]
        self.columns, self.rows = list(cols), [dict(r) for r in rows]
        self._record()

    @rule()
    def tag(self) -> None:
        name = f"t{next(_ids)}"
        self.ds.tag(name)
        self.tags[name] = self.ds.version

    @rule(n=st.integers(1, 3))
    def branch_append_merge(self, n: int) -> None:
        b = self.ds.branch(f"b{next(_ids)}")
        new = [{c: None for c in self.columns} | {"k": next(_ids), "v": 3} for _ in range(n)]
        b.append({c: [r[c] for r in new] for c in self.columns})
        self.ds.merge(b.branch_name)
        self.rows += new
        self._record()

    @rule()
    def checkpoint(self) -> None:
        self.ds.checkpoint()

    @rule()
    def compact(self) -> None:
        self.ds.compact(target_rows=1000)
        self._record()

    @rule()
    def vacuum(self) -> None:
        # Keeps what retained versions need: with a day's retention, every version here.
        self.ds.vacuum(timedelta(days=1))

    def _rows_of(self, ds: th.Dataset) -> tuple[list[str], list[Row]]:
        return ds.columns, ds.to_table().to_pylist()

    @invariant()
    def latest_matches_model(self) -> None:
        cols, rows = self._rows_of(th.open(self.uri))
        assert cols == self.columns
        assert rows == self.rows

    def teardown(self) -> None:
        try:
            for version, (cols, rows) in self.history.items():
                assert self._rows_of(th.open(self.uri, version=version)) == (cols, rows), (
                    f"version {version}"
                )
            for name, version in self.tags.items():
                assert th.open(self.uri, tag=name).version == version
        finally:
            shutil.rmtree(self.dir, ignore_errors=True)


LogModel.TestCase.settings = settings(max_examples=25, stateful_step_count=15, deadline=None)
TestLogModel = LogModel.TestCase
