"""``th.ray.read``: a Ray Data datasource over one version of a tensorhouse dataset.

Planning happens on the driver: the dataset is opened once and pinned to one
version; its fragments are cut into pieces of about ``task_bytes`` stored bytes
of the selected columns (one piece per fragment, or several for a big one), and
per-chunk min/max statistics drop the pieces a filter cannot match. Each read
task gets pieces as picklable fragments of the Arrow dataset (the URI, branch,
version and storage options; no data), reopens the dataset in its worker (once
per worker process and version) and reads object storage directly, applying
the projection and the filter as it scans. Tensor columns arrive as Ray's
tensor extension types (see :mod:`tensorhouse.ray.tensors`).

A ``memory://`` dataset lives in the driver's process, which Ray's workers
cannot see: its pieces are read on the driver and travel inside the tasks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeAlias

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import ray.data
from ray.data.block import BlockMetadata
from ray.data.datasource import Datasource, ReadTask

from tensorhouse.connector.arrow_dataset import (
    BATCH_BYTES,
    TensorhouseArrowDataset,
    TensorhouseFragment,
    engine_schema,
    open_dataset,
)
from tensorhouse.connector.filters import check_filter
from tensorhouse.errors import SchemaError
from tensorhouse.format.dataset import Dataset
from tensorhouse.format.predicate import parse
from tensorhouse.ray.tensors import ray_type, to_ray
from tensorhouse.types import ROWID, ColumnType

#: A read task reads about this many stored bytes of the selected columns.
TASK_BYTES = 128 << 20
#: Stored bytes per scanned batch when images are decoded (JPEG grows ~10x in memory).
DECODE_BATCH_BYTES = 8 << 20

Filter: TypeAlias = str | pc.Expression | None


def _process_local(uri: str) -> bool:
    return uri.startswith("memory://")


class TensorhouseDatasource(Datasource):
    """A Ray Data datasource reading one pinned version; what :func:`read` passes to ``ray.data.read_datasource``.

    Ray may push a ``select_columns`` projection and a ``filter(expr=...)``
    predicate into it; both are applied inside the read tasks.
    """

    def __init__(
        self,
        source: str | Dataset,
        *,
        version: int | None = None,
        tag: str | None = None,
        timestamp: datetime | None = None,
        branch: str | None = None,
        columns: Sequence[str] | None = None,
        filter: Filter = None,
        storage_options: Mapping[str, Any] | None = None,
        decode_images: bool = False,
        task_bytes: int = TASK_BYTES,
    ) -> None:
        super().__init__()
        if task_bytes <= 0:
            raise ValueError(f"task_bytes must be positive, got {task_bytes}")
        self._ds = open_dataset(
            source,
            version=version,
            tag=tag,
            timestamp=timestamp,
            branch=branch,
            storage_options=storage_options,
        )
        self._declared = engine_schema(self._ds.schema, rowid=True)
        self._columns = self._check_columns(columns)
        self._filter = self._parse_filter(filter)
        self._decode = bool(decode_images)
        self._task_bytes = int(task_bytes)
        self._projection_map: dict[str, str] | None = None

    # -- description --------------------------------------------------------------------
    @property
    def dataset(self) -> Dataset:
        """The tensorhouse dataset, pinned to the version every read task reads."""
        return self._ds

    def get_name(self) -> str:
        return "Tensorhouse"

    def _check_columns(self, columns: Sequence[str] | None) -> list[str]:
        if columns is None:
            return list(self._ds.columns)
        if isinstance(columns, str):
            raise SchemaError(f"columns must be a list of names, got the string {columns!r}")
        for c in columns:
            if c != ROWID and c not in self._ds.schema:
                raise SchemaError(
                    f"unknown column {c!r} of {self._ds.uri}; columns are {self._ds.columns}"
                )
        return list(columns)

    def _parse_filter(self, filter: Filter) -> pc.Expression | None:
        if filter is None:
            return None
        if isinstance(filter, str):
            usable = {
                f.name: f.type
                for f in self._declared
                if pa.types.is_primitive(f.type) or pa.types.is_string(f.type)
            }
            expr = parse(filter, usable)
        elif isinstance(filter, pc.Expression):
            expr = filter
        else:
            raise SchemaError(
                f"filter is a SQL predicate string or a pyarrow.compute.Expression, "
                f"got {type(filter).__name__}"
            )
        check_filter(expr, self._declared, where=f"{self._ds.uri} (version {self._ds.version})")
        return expr

    def selected_columns(self) -> list[str]:
        """The columns read tasks produce: ``columns=``, narrowed by a projection Ray pushed down."""
        if self._projection_map is None:
            return list(self._columns)
        # Ray counts no rows in a block without columns (count() projects none): keep the free row id.
        return [c for c in self._columns if c in self._projection_map] or [ROWID]

    def output_schema(self) -> pa.Schema:
        """The Arrow schema of the blocks (tensor columns as Ray tensor types)."""
        return pa.schema([self._field(c) for c in self.selected_columns()])

    def _field(self, name: str) -> pa.Field:
        if name == ROWID:
            return pa.field(ROWID, pa.int64(), nullable=False)
        ctype = self._ds.schema[name]
        # The type in the field metadata lets th.ray.write keep it (an Image stays an Image).
        return pa.field(
            name,
            ray_type(ctype, decode_images=self._decode),
            metadata=ctype.arrow_field(name).metadata,
        )

    def _expression(self) -> pc.Expression | None:
        pushed = self.get_current_predicate()
        extra = pushed.to_pyarrow() if pushed is not None else None
        if extra is None:
            return self._filter
        return extra if self._filter is None else self._filter & extra

    # -- pushdown ---------------------------------------------------------------------------
    def supports_projection_pushdown(self) -> bool:
        return True

    def supports_predicate_pushdown(self) -> bool:
        return True

    def apply_predicate(self, predicate_expr: Any) -> Datasource:
        """Take a Ray filter expression when pyarrow can evaluate it on the stored columns; otherwise
        decline (Ray then keeps its own Filter above the read)."""
        try:
            check_filter(predicate_expr.to_pyarrow(), self._declared)
        except Exception:  # any expression this scan cannot apply exactly stays in Ray's plan
            return self
        return super().apply_predicate(predicate_expr)

    # -- planning ---------------------------------------------------------------------------
    def _stored_bytes(self, names: Sequence[str]) -> int:
        snap = self._ds.snapshot
        ids = {snap.metadata.field_ids[n] for n in names if n != ROWID}
        return sum(
            c.size
            for f in snap.fragments
            for fid, refs in f.columns.items()
            if fid in ids
            for c in refs
        )

    def estimate_inmemory_data_size(self) -> int | None:
        return self._stored_bytes(self.selected_columns())

    def _needed(self, expr: pc.Expression | None) -> list[str]:
        names = self.selected_columns()
        if expr is not None:
            from tensorhouse.connector.filters import referenced_columns

            names += [c for c in referenced_columns(expr, self._declared) if c not in names]
        return names

    def pieces(self) -> list[TensorhouseFragment]:
        """The row ranges to read, after statistics pruning, in dataset order."""
        expr = self._expression()
        physical = max(1, self._ds.reader.num_physical_rows)
        row_bytes = self._stored_bytes(self._needed(expr)) / physical
        rows = int(max(1, min(physical, self._task_bytes // max(row_bytes, 1e-9))))
        batch_bytes = DECODE_BATCH_BYTES if self._decode else BATCH_BYTES
        arrow = TensorhouseArrowDataset(
            self._ds, rowid=True, fragment_rows=rows, batch_bytes=batch_bytes
        )
        return arrow.get_fragments(expr)

    def get_read_tasks(
        self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
    ) -> list[ReadTask]:
        """One task per piece; adjacent pieces share a task when Ray asks for fewer (``override_num_blocks``)."""
        pieces = self.pieces()
        if not pieces:
            return []
        n_tasks = (
            len(pieces)
            if parallelism is None or parallelism <= 0
            else min(len(pieces), parallelism)
        )
        expr = self._expression()
        columns = self.selected_columns()
        types = {c: self._ds.schema[c] for c in columns if c != ROWID}
        schema = self.output_schema()
        local = _process_local(self._ds.uri)
        decode = self._decode
        per_row = self._stored_bytes(columns) / max(1, self._ds.reader.num_physical_rows)
        tasks = []
        for group in np.array_split(np.arange(len(pieces)), n_tasks):
            frags = [pieces[i] for i in group.tolist()]
            rows: int | None = None
            if expr is None:
                rows = sum(_live_rows(self._ds, f.start, f.stop) for f in frags)
            size = int(sum((f.stop - f.start) * per_row for f in frags))
            meta = BlockMetadata(num_rows=rows, size_bytes=size, input_files=None, exec_stats=None)
            read_fn: Callable[[], Iterator[pa.Table]]
            if local:  # the driver reads; the task carries the data
                tables = list(_read_pieces(frags, columns, expr, types, decode, schema))

                def read_fn(tables: list[pa.Table] = tables) -> Iterator[pa.Table]:
                    return iter(tables)
            else:

                def read_fn(frags: list[TensorhouseFragment] = frags) -> Iterator[pa.Table]:
                    return _read_pieces(frags, columns, expr, types, decode, schema)

            tasks.append(
                ReadTask(read_fn, meta, schema=schema, per_task_row_limit=per_task_row_limit)
            )
        return tasks


def _live_rows(ds: Dataset, start: int, stop: int) -> int:
    dead = ds.reader.deleted_mask(start, stop)
    return stop - start - (int(dead.sum()) if dead is not None else 0)


def _read_pieces(
    frags: Sequence[TensorhouseFragment],
    columns: list[str],
    expr: pc.Expression | None,
    types: Mapping[str, ColumnType],
    decode: bool,
    schema: pa.Schema,
) -> Iterator[pa.Table]:
    """What a read task runs: scan each piece (projection and filter applied), convert tensor columns."""
    for frag in frags:
        for batch in frag.scanner(columns=columns, filter=expr).to_batches():
            arrays = [
                batch.column(c)
                if c == ROWID
                else to_ray(batch.column(c), types[c], decode_images=decode)
                for c in columns
            ]
            yield pa.Table.from_arrays(arrays, schema=schema)


def read(
    uri: str | Dataset,
    *,
    version: int | None = None,
    tag: str | None = None,
    timestamp: datetime | None = None,
    branch: str | None = None,
    columns: Sequence[str] | None = None,
    filter: Filter = None,
    storage_options: Mapping[str, Any] | None = None,
    decode_images: bool = False,
    override_num_blocks: int | None = None,
    ray_remote_args: Mapping[str, Any] | None = None,
    concurrency: int | None = None,
) -> ray.data.Dataset:
    """Read a tensorhouse dataset (one version of it) as a ``ray.data.Dataset``.

    ``version``/``tag``/``timestamp``/``branch`` pick the version (default: the
    latest of ``main``); every task reads that version even if commits land
    meanwhile. ``columns`` (may include ``"_rowid"``) and ``filter`` (a SQL
    predicate such as ``"label = 1 AND score > 0.5"``, or a
    ``pyarrow.compute.Expression``) are applied inside each read task, and
    chunk statistics skip fragments the filter cannot match. Tensors arrive
    as Ray tensor types (``map_batches(batch_format="numpy")`` gets ndarrays);
    images as their encoded bytes, or decoded HxWxC uint8 arrays with
    ``decode_images=True``. ``override_num_blocks`` caps the number of read
    tasks (by default one per fragment or ~128 MiB range).

    Example:
        >>> import ray, tensorhouse as th  # doctest: +SKIP
        >>> rds = th.ray.read("s3://bucket/pets", columns=["image", "label"], filter="label = 1",
        ...                   storage_options={"endpoint_url": "http://127.0.0.1:9000"})  # doctest: +SKIP
        >>> rds.map_batches(lambda b: {"n": b["label"] * 2}, batch_format="numpy").count()  # doctest: +SKIP
    """
    source = TensorhouseDatasource(
        uri,
        version=version,
        tag=tag,
        timestamp=timestamp,
        branch=branch,
        columns=columns,
        filter=filter,
        storage_options=storage_options,
        decode_images=decode_images,
    )
    return ray.data.read_datasource(
        source,
        override_num_blocks=override_num_blocks,
        ray_remote_args=dict(ray_remote_args or {}),
        concurrency=concurrency,
    )


__all__ = ["TensorhouseDatasource", "read"]
