"""A dataset as a Daft DataFrame: ``th.daft.read(uri, version=...)``.

Built on Daft's public custom-source API (``daft.io.DataSource`` and
``DataSourceTask``), not on its internals: one Daft task per scan fragment
(a contiguous row range of at most ~1M rows, as DataFusion's partitions),
each reading only the columns Daft's optimizer asks for and stopping at a
pushed-down ``limit``. A pushed-down filter (converted with Daft's public
``Expression.to_arrow_expr``) skips the fragments and chunks whose
statistics rule it out; Daft applies its filter after the scan as well. Tasks carry the dataset's URI,
version and branch and reopen it, so they pickle to Daft's Ray runner.

``daft.from_arrow(ad)`` (or ``daft.from_arrow(ad.scanner(columns=...,
filter=...))``) also works: the Arrow dataset and its scanners export an
Arrow C stream. That path is eager (Daft reads the whole stream into memory
at once) and single-task; this reader is lazy and parallel.

Example:
    >>> import numpy as np, tensorhouse as th
    >>> ds = th.create("memory://doc-daft", {"label": "int32", "emb": th.Embedding(2)})
    >>> _ = ds.append({"label": [0, 1, 1], "emb": np.ones((3, 2), "float32")})
    >>> th.daft.read("memory://doc-daft").where("label = 1").count_rows()
    2
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator, Mapping
from datetime import datetime
from typing import Any

import pyarrow as pa

from tensorhouse.errors import TensorhouseError, UnsupportedError
from tensorhouse.format.dataset import Dataset

try:
    from daft.io import DataSource, DataSourceTask
except ImportError as _err:  # pragma: no cover - daft is in the dev extra
    raise UnsupportedError("th.daft needs Daft: pip install 'tensorhouse[daft]'") from _err


@functools.lru_cache(maxsize=16)
def _open(
    uri: str, version: int, branch: str, options: tuple[tuple[str, Any], ...], rowid: bool
) -> Any:
    """The Arrow dataset of one snapshot, opened once per process (tasks of one query share it)."""
    from tensorhouse.connector.arrow_dataset import arrow_dataset

    return arrow_dataset(
        uri, version=version, branch=branch, storage_options=dict(options), rowid=rowid
    )


class TensorhouseSource(DataSource):
    """A Daft ``DataSource`` over one snapshot of a tensorhouse dataset."""

    def __init__(
        self,
        source: str | Dataset,
        *,
        version: int | None = None,
        tag: str | None = None,
        timestamp: datetime | None = None,
        branch: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        rowid: bool = False,
    ) -> None:
        from daft.schema import Schema as DaftSchema

        from tensorhouse.connector.arrow_dataset import arrow_dataset

        ad = arrow_dataset(
            source,
            version=version,
            tag=tag,
            timestamp=timestamp,
            branch=branch,
            storage_options=storage_options,
            rowid=rowid,
        )
        ds = ad.dataset
        self._key = (
            ds.uri,
            ds.version,
            ds.branch_name,
            tuple(sorted(ds.storage_options.items())),
            rowid,
        )
        self._arrow_schema = ad.schema
        self._schema = DaftSchema.from_pyarrow_schema(ad.schema)

    @property
    def name(self) -> str:
        return f"tensorhouse({self._key[0]} version {self._key[1]})"

    @property
    def schema(self) -> Any:
        return self._schema

    async def get_tasks(self, pushdowns: Any) -> AsyncIterator[DataSourceTask]:
        ad = _open(*self._key)
        columns = (
            list(pushdowns.columns)
            if pushdowns.columns is not None
            else list(self._arrow_schema.names)
        )
        flt = None
        if pushdowns.filters is not None:
            # Daft applies its filter after the scan as well; ours only skips fragments and chunks early.
            try:
                flt = pushdowns.filters.to_arrow_expr()
                fragments = ad.get_fragments(flt)
            except (
                TensorhouseError,
                ValueError,
                TypeError,
                NotImplementedError,
                pa.ArrowException,
            ):
                flt = None
        if flt is None:
            fragments = ad.get_fragments()
        for f in fragments:
            yield TensorhouseTask(self._key, f.start, columns, flt, pushdowns.limit, self._schema)


class TensorhouseTask(DataSourceTask):
    """One scan fragment (by its first row): reopens the snapshot by its key, reads the asked
    columns of the rows the filter may match, stops at ``limit``."""

    def __init__(
        self,
        key: tuple[Any, ...],
        start: int,
        columns: list[str],
        filter: Any,
        limit: int | None,
        schema: Any,
    ) -> None:
        self._key = key
        self._start = start
        self._columns = columns
        self._filter = filter
        self._limit = limit
        self._full = schema

    @property
    def schema(self) -> Any:
        from daft.schema import Schema as DaftSchema

        arrow = self._full.to_pyarrow_schema()
        return DaftSchema.from_pyarrow_schema(pa.schema([arrow.field(c) for c in self._columns]))

    async def read(self) -> AsyncIterator[Any]:
        from daft.recordbatch import RecordBatch

        ad = _open(*self._key)
        fragment = next(f for f in ad.get_fragments() if f.start == self._start)
        left = self._limit
        for batch in fragment.scanner(columns=self._columns, filter=self._filter).to_batches():
            if left is not None:
                batch = batch.slice(0, left)
                left -= batch.num_rows
            yield RecordBatch.from_arrow_record_batches([batch], batch.schema)
            if left is not None and left <= 0:
                return


def read(
    source: str | Dataset,
    *,
    version: int | None = None,
    tag: str | None = None,
    timestamp: datetime | None = None,
    branch: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    rowid: bool = False,
) -> Any:
    """A lazy ``daft.DataFrame`` over a dataset (URI or Dataset) at a version, tag, timestamp or branch."""
    return TensorhouseSource(
        source,
        version=version,
        tag=tag,
        timestamp=timestamp,
        branch=branch,
        storage_options=storage_options,
        rowid=rowid,
    ).read()


__all__ = ["TensorhouseSource", "read"]
