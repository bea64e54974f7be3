"""``th.ray.write``: write tasks stage chunk files in parallel; the driver commits them once.

Each write task turns its blocks into rows of the target schema, uploads
their chunk files in groups of about ``group_bytes`` (nothing is committed;
the files are immutable and uniquely named) and returns what it staged,
tagged with its task index. When every task has finished, the driver keeps
one result per task index (a duplicated or speculatively re-run task never
adds its rows twice), and commits all staged fragments as **one** version
through the commit log. So:

- a task that fails and is retried by Ray leaves only unreferenced chunk files
  behind (``vacuum`` removes them), and its retry's rows are committed once;
- a job that fails, or whose driver is killed, before the commit leaves the
  dataset at its previous version;
- concurrent jobs appending to one dataset both commit (appends never
  conflict); an ``overwrite`` deletes the rows live when the job started.

Column types, for a new dataset: ``schema=`` first; else the tensorhouse type
a column read by ``th.ray.read`` carries in its field metadata, when the
column still has the Arrow type that type reads as; else Ray's tensor types
(fixed shape -> ``Tensor(dtype, shape)``, variable shape -> ``Tensor(dtype,
(None,) * ndim)``); else the rules of ``th.write``. Appending takes the
dataset's types.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import ray.data
from ray.data.block import Block, BlockAccessor
from ray.data.datasource import Datasink
from ray.data.datasource.datasink import WriteResult

from tensorhouse.connector.write_results import resolve_schema
from tensorhouse.errors import DatasetExistsError, DatasetNotFoundError, SchemaError
from tensorhouse.format.dataset import Dataset, create
from tensorhouse.format.dataset import open as open_uri
from tensorhouse.ray import staging
from tensorhouse.ray.staging import StagedFragment, WriteLayout
from tensorhouse.ray.tensors import column_values, infer_type, is_tensor_type, ray_type
from tensorhouse.types import ARROW_METADATA_KEY, ROWID, ColumnType, Schema, TypeLike, as_type

Mode = Literal["append", "create", "overwrite"]
#: A write task uploads its rows in groups of about this many bytes (one chunk set per column each).
GROUP_BYTES = 64 << 20


@dataclass(frozen=True)
class TaskResult:
    """What one write task returns to the driver."""

    task_idx: int
    num_rows: int
    schema: Schema | None  # the types this task resolved (None when it saw no rows)
    fragments: tuple[StagedFragment, ...] = ()
    tables: tuple[
        pa.Table, ...
    ] = ()  # rows for a memory:// target, which only the driver can write


def _process_local(uri: str) -> bool:
    return uri.startswith("memory://")


def _metadata_type(f: pa.Field) -> ColumnType | None:
    """The tensorhouse type in a field's metadata, when the field still has the Arrow type it reads as."""
    if not f.metadata or ARROW_METADATA_KEY not in f.metadata:
        return None
    try:
        ctype = ColumnType.from_dict(json.loads(f.metadata[ARROW_METADATA_KEY]))
    except (SchemaError, ValueError):
        return None
    return ctype if f.type in (ray_type(ctype), ray_type(ctype, decode_images=True)) else None


SchemaLike = Mapping[str, TypeLike] | Schema | Dataset


@dataclass(frozen=True)
class _SourceTypes:
    """The types of a source dataset: used for the columns a job kept, ignored for the others."""

    schema: Schema


def _given(schema: SchemaLike | _SourceTypes | None, names: Sequence[str]) -> dict[str, ColumnType]:
    if isinstance(schema, Dataset):
        schema = _SourceTypes(schema.schema)
    if isinstance(schema, _SourceTypes):
        return {n: t for n, t in schema.schema.columns if n in names}
    if isinstance(schema, Schema):
        return dict(schema.columns)
    return {k: as_type(v) for k, v in (schema or {}).items()}


def resolve_types(
    arrow_schema: pa.Schema, schema: SchemaLike | _SourceTypes | None = None
) -> Schema:
    """The tensorhouse schema for a Ray block's Arrow schema (see the module notes)."""
    names = [f.name for f in arrow_schema if f.name != ROWID]
    given = _given(schema, names)
    unknown = [n for n in given if n not in names]
    if unknown:
        raise SchemaError(
            f"schema= names column(s) {unknown} that the Ray dataset does not have; it has {names}"
        )
    out: dict[str, ColumnType] = {}
    plain: list[pa.Field] = []
    for f in arrow_schema:
        if f.name == ROWID:
            continue
        t = given.get(f.name) or _metadata_type(f) or infer_type(f.type, f.name)
        if t is not None:
            out[f.name] = t
        else:
            plain.append(f.with_metadata(None) if is_tensor_type(f.type) else f)
    if plain:
        out.update(resolve_schema(pa.schema(plain)).columns)
    if not out:
        raise SchemaError("the Ray dataset has no columns to write")
    return Schema(tuple((n, out[n]) for n in names))


def _rows(table: pa.Table, target: Schema, uri: str) -> dict[str, Any]:
    names = [c for c in table.column_names if c != ROWID]
    missing = [n for n in target.names if n not in names]
    extra = [n for n in names if n not in target]
    if missing or extra:
        raise SchemaError(
            f"the Ray dataset's columns do not match the dataset at {uri}: missing {missing}, "
            f"not in the dataset {extra}"
        )
    return {n: column_values(table.column(n)) for n in target.names}


class TensorhouseDatasink(Datasink[TaskResult]):
    """A Ray Data datasink that commits a whole ``write_datasink`` job as one tensorhouse version.

    After the job, :attr:`version` is the committed version (the dataset's
    version before the job when there was nothing to write).
    """

    def __init__(
        self,
        uri: str,
        *,
        mode: Mode = "append",
        schema: SchemaLike | None = None,
        storage_options: Mapping[str, Any] | None = None,
        message: str | None = None,
        group_bytes: int = GROUP_BYTES,
        app_id: str | None = None,
        txn_version: int | None = None,
    ) -> None:
        if mode not in ("append", "create", "overwrite"):
            raise ValueError(f"mode must be 'append', 'create' or 'overwrite', got {mode!r}")
        if group_bytes <= 0:
            raise ValueError(f"group_bytes must be positive, got {group_bytes}")
        if (app_id is None) != (txn_version is None):
            raise ValueError("give both app_id and txn_version for an idempotent write, or neither")
        self._txn = (app_id, txn_version)
        self._uri = uri
        self._mode: Mode = mode
        # A source Dataset travels to the tasks as its types only.
        self._given = _SourceTypes(schema.schema) if isinstance(schema, Dataset) else schema
        self._options = dict(storage_options or {})
        self._message = message
        self._group_bytes = int(group_bytes)
        self._local = _process_local(uri)
        existing: Dataset | None = None
        with contextlib.suppress(DatasetNotFoundError):
            existing = open_uri(uri, storage_options=self._options or None)
        if existing is not None and mode == "create":
            raise DatasetExistsError(
                f"a dataset already exists at {uri}; use mode='append' or 'overwrite'"
            )
        if existing is not None and schema is not None and not isinstance(schema, Dataset):
            given = _given(schema, list(existing.schema.names))
            differ = [
                n for n, t in given.items() if n not in existing.schema or t != existing.schema[n]
            ]
            if differ:
                raise SchemaError(
                    f"schema= gives column(s) {differ} types other than the dataset at {uri}: "
                    f"{existing.schema}"
                )
        # The driver's handle: write tasks get only the layout (pickled with this object, lazily reopened).
        self._existing = existing
        self._layout = WriteLayout.of_dataset(existing) if existing is not None else None
        self.version: int | None = None
        self.num_rows = 0

    def get_name(self) -> str:
        return "Tensorhouse"

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_existing"] = None  # tasks never need the driver's dataset object
        return state

    # -- in the write tasks ---------------------------------------------------------------
    def write(self, blocks: Iterable[Block], ctx: Any) -> TaskResult:
        layout = self._layout
        group: list[pa.Table] = []
        size = 0
        staged: list[StagedFragment] = []
        tables: list[pa.Table] = []
        rows = 0

        def flush() -> None:
            nonlocal group, size
            if not group:
                return
            table = (
                pa.concat_tables(group, promote_options="permissive")
                if len(group) > 1
                else group[0]
            )
            assert layout is not None
            if self._local:
                tables.append(table)
            else:
                staged.extend(staging.stage(layout, _rows(table, layout.schema, self._uri)))
            group, size = [], 0

        for block in blocks:
            table = BlockAccessor.for_block(block).to_arrow()
            if table.num_rows == 0:
                continue
            if (
                layout is None
            ):  # a new dataset: this task resolves the types; the driver checks all agree
                layout = WriteLayout.for_new(
                    self._uri, resolve_types(table.schema, self._given), self._options
                )
            group.append(table)
            size += table.nbytes
            rows += table.num_rows
            if size >= self._group_bytes:
                flush()
        flush()
        return TaskResult(
            int(ctx.task_idx),
            rows,
            layout.schema if layout else None,
            tuple(staging.merge(staged)),
            tuple(tables),
        )

    # -- on the driver ------------------------------------------------------------------------
    def on_write_complete(self, write_result: WriteResult[TaskResult]) -> None:
        results: dict[int, TaskResult] = {}
        for r in write_result.write_returns:
            results.setdefault(
                r.task_idx, r
            )  # a duplicate of a task's result is never committed twice
        ordered = [results[k] for k in sorted(results)]
        ds = self._existing
        if ds is None:
            ds = self._create(ordered)
            if ds is None:
                return
        staged: list[StagedFragment] = []
        layout = WriteLayout.of_dataset(ds)
        for r in ordered:
            staged.extend(staging.adopt(ds, r.fragments))
            for t in r.tables:
                staged.extend(staging.stage(layout, _rows(t, layout.schema, self._uri)))
        self.version = staging.commit(
            ds,
            staged,
            overwrite=self._mode == "overwrite",
            message=self._message,
            app_id=self._txn[0],
            txn_version=self._txn[1],
        )
        self.num_rows = sum(r.num_rows for r in ordered)

    def _create(self, results: Sequence[TaskResult]) -> Dataset | None:
        schemas = {r.schema for r in results if r.schema is not None}
        if len(schemas) > 1:
            a, b = sorted(schemas, key=repr)[:2]
            diff = [n for n in a.names if n not in b or a[n] != b[n]]
            raise SchemaError(
                f"write tasks inferred different types for column(s) {diff} ({a} vs {b}); "
                "pass schema= to fix them"
            )
        if schemas:
            target = schemas.pop()
        elif self._given is not None and not isinstance(self._given, _SourceTypes):
            target = Schema.of(self._given)
        else:
            raise SchemaError(
                f"nothing to write to {self._uri} and no schema= to create the dataset with"
            )
        ds = create(
            self._uri,
            target,
            storage_options=self._options or None,
            exist_ok=self._mode != "create",
        )
        if dict(ds.snapshot.metadata.field_ids) != dict(
            WriteLayout.for_new(self._uri, target).metadata.field_ids
        ):
            raise DatasetExistsError(
                f"a dataset with other columns was created at {self._uri} while this job ran"
            )
        return ds


def write(
    ray_dataset: ray.data.Dataset,
    uri: str,
    *,
    mode: Mode = "append",
    schema: SchemaLike | None = None,
    storage_options: Mapping[str, Any] | None = None,
    message: str | None = None,
    group_bytes: int = GROUP_BYTES,
    app_id: str | None = None,
    txn_version: int | None = None,
    ray_remote_args: Mapping[str, Any] | None = None,
    concurrency: int | None = None,
) -> int:
    """Write a ``ray.data.Dataset`` to a tensorhouse dataset as one commit; returns the new version.

    ``schema``: column types for a new dataset (a mapping of some or all
    columns to types), or the tensorhouse Dataset the rows came from (its
    types for the columns of the same name). ``mode``: ``"append"`` (creates the dataset when there is none),
    ``"create"`` (DatasetExistsError if one is there), ``"overwrite"`` (the
    rows live when the job started are replaced, in the same commit). Write
    tasks upload chunk files in parallel; the driver commits once, so a
    retried task never duplicates rows and a failed job leaves the dataset at
    its previous version (its orphaned files are what ``vacuum`` removes).
    ``app_id``/``txn_version`` make the whole job idempotent: re-running a job
    whose commit already landed (a driver that crashed after committing)
    commits nothing and returns the version it committed.

    Example:
        >>> import ray, tensorhouse as th  # doctest: +SKIP
        >>> rds = ray.data.range(1000).map_batches(lambda b: {"id": b["id"], "sq": b["id"] ** 2})  # doctest: +SKIP
        >>> th.ray.write(rds, "s3://bucket/squares", mode="create")  # doctest: +SKIP
        1
    """
    sink = TensorhouseDatasink(
        uri,
        mode=mode,
        schema=schema,
        storage_options=storage_options,
        message=message,
        group_bytes=group_bytes,
        app_id=app_id,
        txn_version=txn_version,
    )
    ray_dataset.write_datasink(
        sink, ray_remote_args=dict(ray_remote_args or {}), concurrency=concurrency
    )
    if sink.version is None:  # nothing was written to an existing dataset
        assert sink._existing is not None
        return sink._existing.version
    return sink.version


__all__ = ["GROUP_BYTES", "TaskResult", "TensorhouseDatasink", "resolve_types", "write"]
