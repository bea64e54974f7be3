"""Filters the engines push down: which columns they read, whether they fit a schema, exact evaluation.

DuckDB and DataFusion hand the scanner a ``pyarrow.compute.Expression`` and
then drop that filter from their own plan, so the scanner must apply it
exactly (:func:`apply_filter`). Which columns a filter reads, and which row
ranges its min/max statistics rule out, come from the filter's tree
(:mod:`tensorhouse.connector.filter_tree`, :mod:`tensorhouse.connector.pruning`).

``string_view``/``binary_view`` columns are filtered as their plain
equivalents: Arrow has no view compare/filter kernels yet (a contract test in
``tests/test_tabular_types.py`` says when it has).

Example:
    >>> import pyarrow as pa, pyarrow.compute as pc
    >>> schema = pa.schema([("a", pa.int64()), ("img", pa.binary())])
    >>> referenced_columns((pc.field("a") > 1) & pc.field("img").is_valid(), schema)
    ['a', 'img']
"""

from __future__ import annotations

import pyarrow as pa
import pyarrow.compute as pc

from tensorhouse.connector import filter_tree
from tensorhouse.connector.filter_tree import (
    UnreadableExpression,
    columns_of,
    expression_key,
    from_arrow,
    unknown_columns,
)
from tensorhouse.errors import SchemaError
from tensorhouse.format.chunks.columnar import plain_type, unview

_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, pa.ArrowKeyError)


def check_filter(expr: pc.Expression, schema: pa.Schema, *, where: str = "this dataset") -> None:
    """Raise SchemaError when ``expr`` names an unknown column or cannot be evaluated on ``schema``."""
    if not isinstance(expr, pc.Expression):
        raise SchemaError(f"a filter is a pyarrow.compute.Expression, got {type(expr).__name__}")
    try:
        missing = unknown_columns(from_arrow(expr), schema)
    except UnreadableExpression:
        missing = []  # binding below still refuses it, with Arrow's words
    if missing:
        raise SchemaError(
            f"filter {expr} names unknown column {missing[0]!r} of {where}; "
            f"columns are {schema.names}"
        )
    try:
        # Filtering an empty table binds the expression (names, kernels, types) and runs nothing.
        schema.empty_table().filter(expr)
    except _ERRORS as err:
        raise SchemaError(f"cannot evaluate filter {expr} on {where}: {err}") from err


def referenced_columns(expr: pc.Expression, schema: pa.Schema) -> list[str]:
    """The columns of ``schema`` that ``expr`` reads, in schema order.

    An expression whose tree cannot be read (see :mod:`tensorhouse.connector.filter_tree`)
    reads every column: slower, never wrong. Answers are cached: binding the
    expression plans an Acero query (~0.5 ms), and every scan of a query asks again.
    """
    key = expression_key(expr) if isinstance(expr, pc.Expression) else None
    hit = _REFERENCED.get((key, schema)) if key is not None else None
    if hit is not None:
        return list(hit)
    check_filter(expr, schema)
    try:
        used = columns_of(from_arrow(expr))
    except UnreadableExpression:
        return list(schema.names)
    out = [n for n in schema.names if n in used]
    if key is not None:
        if len(_REFERENCED) >= 4096:
            _REFERENCED.clear()
        _REFERENCED[(key, schema)] = tuple(out)
    return out


_REFERENCED: dict[tuple[bytes, pa.Schema], tuple[str, ...]] = {}


def clear_caches() -> None:
    """Forget checked filters and their trees (benchmarks time a first use)."""
    _REFERENCED.clear()
    filter_tree.clear_cache()


def apply_filter(batch: pa.RecordBatch, expr: pc.Expression) -> pa.RecordBatch:
    """Rows of ``batch`` where ``expr`` is TRUE (SQL semantics: NULL drops the row).

    The expression is evaluated over the columns it reads only (an Acero
    projection to one boolean column), and the batch is then filtered by that
    mask with the plain ``filter`` kernel: measured on TPC-H's Q1, 10-20x
    cheaper than ``RecordBatch.filter(expr)``, which runs every column of the
    batch through an Acero plan. A mask that keeps every row returns the batch
    itself, with no copy.

    ``string_view``/``binary_view`` columns are filtered as their plain
    equivalents (Arrow has few view kernels) and come back as views.
    """
    views = [i for i, f in enumerate(batch.schema) if plain_type(f.type) != f.type]
    schema = batch.schema
    if views:
        schema = pa.schema([f.with_type(plain_type(f.type)) for f in batch.schema])
    used = referenced_columns(expr, schema)
    if not used:  # a constant filter: nothing to project, let Arrow evaluate it
        return _filter_by_expression(batch, expr)
    sub = batch.select(used)
    if views:
        sub = pa.RecordBatch.from_arrays([unview(c) for c in sub.columns], names=used)
    try:
        mask = _mask(sub, expr)
    except _ERRORS as err:
        raise SchemaError(f"cannot evaluate filter {expr}: {err}") from err
    if mask.null_count == 0:
        kept = mask.true_count
        if kept == batch.num_rows:
            return batch
        if kept == 0:
            return batch.slice(0, 0)
    if not views:
        return batch.filter(mask)
    out = pa.RecordBatch.from_arrays(
        [
            unview(c).filter(mask).cast(c.type) if i in views else c.filter(mask)
            for i, c in enumerate(batch.columns)
        ],
        schema=batch.schema,
    )
    return out


def _mask(sub: pa.RecordBatch, expr: pc.Expression) -> pa.Array:
    """``expr`` evaluated on every row of ``sub`` (a boolean array, nulls where it is NULL)."""
    import pyarrow.acero as acero

    plan = acero.Declaration.from_sequence(
        [
            acero.Declaration("table_source", acero.TableSourceNodeOptions(pa.table(sub))),
            acero.Declaration("project", acero.ProjectNodeOptions([expr], ["m"])),
        ]
    )
    # One thread: the rows come back in order (a multi-threaded plan may reorder batches).
    col = plan.to_table(use_threads=False).column(0)
    return col.chunk(0) if col.num_chunks == 1 else col.combine_chunks()


def _filter_by_expression(batch: pa.RecordBatch, expr: pc.Expression) -> pa.RecordBatch:
    views = [i for i, f in enumerate(batch.schema) if plain_type(f.type) != f.type]
    work = batch
    if views:
        arrays = [unview(c) if i in views else c for i, c in enumerate(batch.columns)]
        work = pa.RecordBatch.from_arrays(arrays, names=batch.schema.names)
    try:
        out = work.filter(expr)
    except _ERRORS as err:
        raise SchemaError(f"cannot evaluate filter {expr}: {err}") from err
    if views:
        arrays = [
            c.cast(batch.schema.field(i).type) if i in views else c
            for i, c in enumerate(out.columns)
        ]
        out = pa.RecordBatch.from_arrays(arrays, schema=batch.schema)
    return out
