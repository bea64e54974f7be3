"""``ds.optimize`` and ``ds.alter``: maintenance grouped by what it does, as delta-rs groups it.

``ds.optimize`` rewrites files for speed and never changes what a query
returns (``compact``, ``indexes``); ``ds.alter`` changes the schema
(``add_column``, ``drop_column``, ``rename_column``). Each call is one commit
and returns what the operation reports. ``ds.vacuum()`` stays on the dataset,
as in delta-rs: it deletes files, it does not commit.

Example:
    >>> import tensorhouse as th
    >>> ds = th.create("memory://doc-groups", {"x": "int64"})
    >>> for i in range(3):
    ...     _ = ds.append({"x": [i]})
    >>> ds.optimize.compact(target_rows=1_000)
    CompactReport(version=4, fragments_before=3, fragments_after=1, rows_rewritten=3)
    >>> ds.alter.add_column("y", "float32")
    5
    >>> ds.alter.rename_column("y", "score")
    6
    >>> ds.columns
    ['x', 'score']
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np

from tensorhouse.format.log import Snapshot
from tensorhouse.format.maintenance import compact
from tensorhouse.format.maintenance_types import CompactReport
from tensorhouse.format.transaction import Transaction
from tensorhouse.types import TypeLike


class Dataset(Protocol):
    """What the groups use of a dataset (format/ never imports the facade: no import cycle)."""

    @property
    def uri(self) -> str: ...
    @property
    def version(self) -> int: ...
    @property
    def snapshot(self) -> Snapshot: ...
    def refresh(self) -> Any: ...
    def transaction(self, *, message: str | None = None) -> Transaction: ...
    def optimize_indexes(
        self, name: str | None = None, *, rebuild: bool = False, progress: bool | None = None
    ) -> list[int]: ...


class Optimize:
    """``ds.optimize``: rewrites that make reads faster without changing any row (delta-rs's ``dt.optimize``)."""

    def __init__(self, ds: Dataset) -> None:
        self._ds = ds

    def compact(self, *, target_rows: int = 1 << 20, message: str | None = None) -> CompactReport:
        """Merge runs of fragments smaller than ``target_rows`` live rows into bigger ones (one commit).

        Fragments with deleted rows are rewritten without them. Nothing is
        committed when there is nothing to merge (the report's version is None).
        """
        ds = self._ds
        ds.refresh()
        before = len(ds.snapshot.fragments)
        with ds.transaction(message=message) as tx:
            rewritten = compact(tx, target_rows=target_rows)
        if not tx.actions:
            return CompactReport(None, before, before, 0)
        return CompactReport(ds.version, before, len(ds.snapshot.fragments), rewritten)

    def indexes(
        self, name: str | None = None, *, rebuild: bool = False, progress: bool | None = None
    ) -> list[int]:
        """Extend vector indexes with rows appended since they were built, or rebuild them (``rebuild=True``).

        Returns the versions committed (none when every index is up to date).
        """
        # The index package sits above format/: the facade reaches it (lazily, it loads faiss).
        return self._ds.optimize_indexes(name, rebuild=rebuild, progress=progress)

    def __repr__(self) -> str:
        return f"<optimize of {self._ds.uri!r}: compact(), indexes()>"


class Alter:
    """``ds.alter``: schema changes, each one commit that returns the new version (delta-rs's ``dt.alter``)."""

    def __init__(self, ds: Dataset) -> None:
        self._ds = ds

    def add_column(
        self,
        name: str,
        ctype: TypeLike,
        values: Sequence[Any] | np.ndarray | None = None,
        *,
        message: str | None = None,
    ) -> int:
        """Add a column: nulls for existing rows, or ``values``, one per live row."""
        with self._ds.transaction(message=message) as tx:
            tx.add_column(name, ctype, values)
        return self._ds.version

    def drop_column(self, name: str, *, message: str | None = None) -> int:
        """Drop a column from the new version on (its files stay for older versions)."""
        with self._ds.transaction(message=message) as tx:
            tx.drop_column(name)
        return self._ds.version

    def rename_column(self, old: str, new: str, *, message: str | None = None) -> int:
        """Rename a column without touching its data."""
        with self._ds.transaction(message=message) as tx:
            tx.rename_column(old, new)
        return self._ds.version

    def __repr__(self) -> str:
        return f"<alter of {self._ds.uri!r}: add_column(), drop_column(), rename_column()>"
