"""The one place that touches DuckDB internals: how DuckDB scans a registered dataset.

DuckDB 2.0 reads a Python object through a *source* (``duckdb._sources``):
the scan asks it ``rows()`` when a query binds, offers it each filter with
``accepts(predicate)`` while optimizing, then asks ``stream(columns,
filters)`` for the accepted ones. There is no statistics callback. Two
measured consequences shape the source registered here:

1. **Row count.** DuckDB's own dataset source answers ``rows()`` with None,
   so the optimizer assumes one row and builds join hash tables on the
   tensorhouse side however big it is (1M rows joined to 1,000 Parquet rows:
   13x slower). This source answers the snapshot's live row count, known
   from the commit log without I/O.
2. **Which filters to take.** A filter the source accepts is removed from
   DuckDB's plan, so the optimizer no longer counts its selectivity: with
   the row count, a filtered scan was estimated at every row of its table
   where the same scan over Parquet counts a fifth, and the join order
   came out worse (TPC-H Q4 built its hash table on 380k lineitem rows
   instead of 5.5k orders). So the source takes a predicate only where the
   scan does something DuckDB cannot: skip chunks by their min/max
   statistics. A predicate is accepted when statistics rule out at least
   :data:`PUSH_WHEN_SKIPPED` of the rows; any other predicate stays in
   DuckDB's plan, where it is estimated as over Parquet and evaluated by
   DuckDB's vectorized filter (which is also faster than filtering in the
   scan). ``IS NOT NULL``, which DuckDB adds on join keys, is always
   accepted, as Parquet's statistics let DuckDB drop it; on a pinned
   registration whose column holds no null it is not even evaluated.

Either way every row is filtered exactly once, by the scan or by DuckDB, so
results do not depend on the choice. ``benchmarks/bench_duckdb_plans.py``
prints the EXPLAIN ANALYZE plans of both choices (``--compare-push-all``).

The names used are private to DuckDB 2.0.x (``PyArrowDatasetSource``,
``to_arrow``, the predicate nodes and ``DuckDBPyConnection._register_arrow_source``;
``con.register`` accepts only pyarrow's own classes). :func:`supported`
checks them once, and :func:`register_counted` falls back to the public
``con.register`` (correct, only the plans suffer) when they are gone.
``tests/test_duckdb_source.py`` fails loudly on a DuckDB version that
changes them.

Example:
    >>> import duckdb, tensorhouse as th
    >>> from tensorhouse.connector.arrow_dataset import TensorhouseArrowDataset
    >>> ds = th.create("memory://doc-duck-source", {"x": "int64"})
    >>> _ = ds.append({"x": list(range(5000))})
    >>> con = duckdb.connect()
    >>> register_counted(con, "t", TensorhouseArrowDataset(ds))
    True
    >>> "5000" in con.sql("EXPLAIN SELECT * FROM t").fetchall()[0][1].replace(",", "")
    True
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import duckdb
import pyarrow.compute as pc

#: DuckDB versions whose internals this module was written against (major, minor).
TESTED_VERSIONS = ((2, 0),)

#: A predicate is pushed into the scan when chunk statistics rule out at least this share of the
#: rows. Below it, keeping the filter in DuckDB's plan (a better estimate, a faster filter) is worth
#: more than the chunks skipped. DuckDB offers each column's conjunction (``a >= x AND a < y``) as
#: one predicate, so both ends of a range are judged together. 0 pushes every predicate (as before
#: this policy; ``benchmarks/bench_duckdb_plans.py --compare-push-all`` measures both).
PUSH_WHEN_SKIPPED = 0.5

_DECISIONS_KEPT = 512


def _span(scanner: Any) -> int:
    """Physical rows a tensorhouse scanner reads after statistics pruning."""
    return sum(b - a for a, b in scanner.ranges)


def skipped_share(table: Any, expr: pc.Expression) -> float:
    """The share of ``table``'s rows (a :class:`TensorhouseArrowDataset`) that chunk statistics
    rule out for ``expr``, from the commit log alone (no chunk is read).

    Example:
        >>> import pyarrow.compute as pc, tensorhouse as th
        >>> from tensorhouse.connector.arrow_dataset import TensorhouseArrowDataset
        >>> ds = th.create("memory://doc-skipped-share", {"x": "int64"})
        >>> for start in range(0, 400, 100):
        ...     _ = ds.append({"x": list(range(start, start + 100))})
        >>> t = TensorhouseArrowDataset(ds)
        >>> skipped_share(t, pc.field("x") < 100), skipped_share(t, pc.field("x") != 7)
        (0.75, 0.0)
    """
    total = _span(table.scanner(columns=[]))
    if total == 0:
        return 0.0
    return 1.0 - _span(table.scanner(columns=[], filter=expr)) / total


def holds_no_null(table: Any, column: str) -> bool:
    """Whether chunk statistics prove that ``column`` of ``table`` holds no null (no chunk is read)."""
    return not table.scanner(columns=[], filter=pc.field(column).is_null()).ranges


@functools.cache
def _source_class() -> type | None:
    try:
        from duckdb._sources.nodes import Col, Postfix
        from duckdb._sources.pyarrow import PyArrowDatasetSource
        from duckdb._sources.to_arrow import to_arrow
    except ImportError:
        return None
    if not callable(getattr(duckdb.DuckDBPyConnection, "_register_arrow_source", None)):
        return None

    def not_null_column(predicate: Any) -> str | None:
        """The top-level column of an ``IS NOT NULL`` predicate, else None."""
        if (
            isinstance(predicate, Postfix)
            and predicate.op == "IS NOT NULL"
            and isinstance(predicate.operand, Col)
            and len(predicate.operand.parts) == 1
        ):
            return str(predicate.operand.parts[0])
        return None

    class TensorhouseDatasetSource(PyArrowDatasetSource):
        """DuckDB's own dataset source, plus the row count, and taking only the filters that prune.

        ``pinned``: the registration reads one version for good (no ``refresh``), so what its
        statistics prove at planning time still holds when the scan runs.
        """

        def __init__(self, obj: Any, *, pinned: bool) -> None:
            super().__init__(obj)
            self.pinned = pinned
            self.push_when_skipped = PUSH_WHEN_SKIPPED  # read once: a benchmark compares settings
            self._decided: dict[tuple[int, str], bool] = {}
            self._translated: dict[str, pc.Expression] = {}
            self._no_null: dict[str, bool] = {}

        def rows(self) -> int | None:
            try:
                return int(self.obj.count_rows())
            except Exception:  # an estimate only: never fail a query for it
                return None

        def accepts(self, predicate: Any) -> bool:
            try:
                if not self.pinned:
                    self.obj.scanner(columns=[])  # moves a refreshing table to its latest version
                # A predicate's SQL text names its column and its literal typed as that column
                # (duckdb._sources.nodes), so the text decides for a given schema and version.
                # Deciding afresh translated it twice per query (~0.5 ms per predicate).
                key = (int(self.obj.version), predicate.fragment())
            except Exception:  # refusing is always correct: DuckDB then applies the filter itself
                return False
            decided = self._decided.get(key)
            if decided is None:
                decided = self._decide(predicate)
                if len(self._decided) >= _DECISIONS_KEPT:
                    self._decided.clear()
                self._decided[key] = decided
            return decided

        def _decide(self, predicate: Any) -> bool:
            if not super().accepts(predicate):
                return False
            if not_null_column(predicate) is not None:
                return True
            try:
                expr = self._arrow(predicate)
                return skipped_share(self.obj, expr) >= self.push_when_skipped
            except Exception:  # refusing is always correct: DuckDB then applies the filter itself
                return False

        def _arrow(self, predicate: Any) -> pc.Expression:
            """``predicate`` as an Arrow expression over the declared schema, translated once per
            text (the schema of a registration never changes)."""
            text = predicate.fragment()
            expr = self._translated.get(text)
            if expr is None:
                expr = to_arrow(predicate, self.declared_schema())
                if len(self._translated) >= _DECISIONS_KEPT:
                    self._translated.clear()
                self._translated[text] = expr
            return expr

        def stream(
            self, columns: Sequence[int] | None, filters: Sequence[Any]
        ) -> tuple[object, bool]:
            if self.pinned:
                filters = [f for f in filters if not self._always_true(f)]
            # DatasetSource.stream, with each predicate's translation taken from the cache.
            mask = None
            for predicate in filters:
                term = self._arrow(predicate)
                mask = term if mask is None else mask & term
            names = self.declared_schema().names
            chosen = None if columns is None else [names[i] for i in columns]
            scanner = self.obj.scanner(columns=chosen, filter=mask)
            return scanner.to_reader().__arrow_c_stream__(), chosen is not None

        def _always_true(self, predicate: Any) -> bool:
            column = not_null_column(predicate)
            if column is None:
                return False
            if column not in self._no_null:
                self._no_null[column] = holds_no_null(self.obj, column)
            return self._no_null[column]

    return TensorhouseDatasetSource


def supported() -> bool:
    """Whether this DuckDB has the internals :func:`register_counted` uses."""
    return _source_class() is not None


def register_counted(con: Any, name: str, table: Any, *, pinned: bool = False) -> bool:
    """Register ``table`` (a :class:`TensorhouseArrowDataset`) as ``name`` through the source
    described above; False when only the plain registration (no row count, every filter pushed)
    was possible. ``pinned=True`` says the table reads one version for good (not ``refresh``), so
    an ``IS NOT NULL`` its statistics prove true need not be evaluated."""
    cls = _source_class()
    if cls is None:
        con.register(name, table)
        return False
    con._register_arrow_source(name, cls(table, pinned=pinned))
    return True


__all__ = [
    "PUSH_WHEN_SKIPPED",
    "TESTED_VERSIONS",
    "holds_no_null",
    "register_counted",
    "skipped_share",
    "supported",
]
