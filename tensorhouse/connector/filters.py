"""Filters the engines push down: which columns they read, which chunks may match, exact evaluation.

DuckDB and DataFusion hand the scanner a ``pyarrow.compute.Expression`` and
then drop that filter from their own plan, so the scanner must apply it
exactly (:func:`apply_filter`). Before reading anything, per-chunk min/max
statistics rule out row ranges that cannot match (:func:`plan_ranges`).

Pruning reuses Arrow's own expression simplifier instead of a hand-written
interpreter: every candidate row range becomes a dummy fragment of an
in-memory ``FileSystemDataset`` whose ``partition_expression`` states what is
known of its rows (``x >= min and x <= max``); ``get_fragments(filter)``
returns the fragments the filter may match. No file is ever opened.

A range's rows are a mix of cases per column (non-null values in
``[min, max]``, nulls), and Arrow cannot simplify a guarantee written as a
disjunction (``in range OR is null``). So each case gets a dummy fragment of
its own, and the range is kept when any case survives. Chunks holding NaN
are never pruned on that column: min/max leave NaN out and NaN compares
greater than every number in DuckDB.

Statistics are JSON in the log: integers, strings (a string column's min is
a prefix of at most 64 characters, still a lower bound; a longer max is not
kept), dates/times/timestamps/durations as their stored integers, decimals
as text (:func:`tensorhouse.format.chunks.columnar.stat_scalar` turns them
back into typed scalars). ``string_view``/``binary_view`` columns are
filtered as their plain equivalents: Arrow has no view compare/filter
kernels yet (a contract test in ``tests/test_tabular_types.py`` says when it has).

Example:
    >>> import pyarrow as pa, pyarrow.compute as pc
    >>> schema = pa.schema([("a", pa.int64()), ("img", pa.binary())])
    >>> referenced_columns((pc.field("a") > 1) & pc.field("img").is_valid(), schema)
    ['a', 'img']
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from tensorhouse.errors import SchemaError
from tensorhouse.format.chunks.columnar import plain_type, stat_scalar, unview
from tensorhouse.types import ROWID

#: Above this many case combinations for one range, fall back to one
#: disjunctive guarantee per range (weaker, still correct).
MAX_CASES = 16

_FIELD_NAME = re.compile(r"FieldRef\.Name\(([^)]*)\)")
_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, pa.ArrowKeyError)


def _bind(expr: pc.Expression, schema: pa.Schema) -> None:
    # Filtering an empty table binds the expression (names, kernels) and runs nothing.
    schema.empty_table().filter(expr)


def check_filter(expr: pc.Expression, schema: pa.Schema, *, where: str = "this dataset") -> None:
    """Raise SchemaError when ``expr`` names an unknown column or cannot be evaluated on ``schema``."""
    if not isinstance(expr, pc.Expression):
        raise SchemaError(f"a filter is a pyarrow.compute.Expression, got {type(expr).__name__}")
    try:
        _bind(expr, schema)
    except _ERRORS as err:
        missing = _FIELD_NAME.findall(str(err))
        if missing and "No match for FieldRef" in str(err):
            raise SchemaError(
                f"filter {expr} names unknown column {missing[0]!r} of {where}; "
                f"columns are {schema.names}"
            ) from err
        raise SchemaError(f"cannot evaluate filter {expr} on {where}: {err}") from err


def referenced_columns(expr: pc.Expression, schema: pa.Schema) -> list[str]:
    """The columns of ``schema`` that ``expr`` reads, in schema order.

    pyarrow has no call listing an expression's fields, so candidates come
    from its text and are confirmed by binding the expression without each.
    Each bind plans an Acero query (~0.5 ms), and every scan asks again for
    the same filter, so answers are cached by (expression text, schema).
    """
    key = (str(expr), schema)
    hit = _REFERENCED.get(key)
    if hit is not None:
        return list(hit)
    used = _referenced_columns(expr, schema)
    if len(_REFERENCED) >= 4096:
        _REFERENCED.clear()
    _REFERENCED[key] = tuple(used)
    return used


_REFERENCED: dict[tuple[str, pa.Schema], tuple[str, ...]] = {}


def _referenced_columns(expr: pc.Expression, schema: pa.Schema) -> list[str]:
    check_filter(expr, schema)
    text = str(expr)
    names = [n for n in schema.names if re.search(rf"(?<![\w.]){re.escape(n)}(?!\w)", text)]
    sub = pa.schema([schema.field(n) for n in names])
    try:
        _bind(expr, sub)
    except _ERRORS:
        names = list(schema.names)  # the text missed one (odd names): start from every column
    used = []
    for n in names:
        without = pa.schema([schema.field(m) for m in names if m != n])
        try:
            _bind(expr, without)
        except _ERRORS:
            used.append(n)
    return used


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


# -- pruning ---------------------------------------------------------------------
@dataclass(frozen=True)
class ColumnStats:
    """Statistics of one scalar column, chunk by chunk, in physical row order.

    ``stats[i]`` covers rows ``[starts[i], starts[i + 1])``; ``None`` marks a
    range where the column is absent (rows written before it existed: all null).
    """

    type: pa.DataType
    starts: np.ndarray
    stats: Sequence[Mapping[str, Any] | None]


def _lit(value: Any, t: pa.DataType) -> pc.Expression:
    # Statistics are JSON: temporal values in their stored integer units, decimals as text.
    return pc.scalar(stat_scalar(value, t))


def column_cases(
    name: str, t: pa.DataType, stats: Mapping[str, Any] | None, rows: int
) -> list[pc.Expression] | None:
    """What may hold for the rows of one chunk, as alternatives; None when nothing is known."""
    field = pc.field(name)
    if stats is None:
        return [field.is_null()]
    if stats.get("has_nan"):
        return None
    nulls = int(stats.get("null_count") or 0)
    cases: list[pc.Expression] = []
    if nulls > 0:
        cases.append(field.is_null())
    if rows - nulls > 0:
        lo, hi = stats.get("min"), stats.get("max")
        bound: pc.Expression | None = None
        try:
            if lo is not None:
                bound = field >= _lit(lo, t)
            if hi is not None:
                up = field <= _lit(hi, t)
                bound = up if bound is None else bound & up
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, ValueError, ArithmeticError):
            return None  # statistics that do not fit the type: know nothing
        if bound is None:
            return None  # both ends infinite
        cases.append(bound)
    return cases or None


def _survivors(
    expr: pc.Expression, schema: pa.Schema, guarantees: Sequence[pc.Expression]
) -> np.ndarray:
    """Which guarantees leave ``expr`` possibly true, via Arrow's simplifier."""
    if not guarantees:
        return np.zeros(0, dtype=bool)
    paths = [f"/g/{i}" for i in range(len(guarantees))]
    dummy = pads.FileSystemDataset.from_paths(
        paths,
        schema=schema,
        format=pads.ParquetFileFormat(),
        filesystem=pafs.LocalFileSystem(),
        partitions=list(guarantees),
    )
    keep = np.zeros(len(guarantees), dtype=bool)
    for frag in dummy.get_fragments(filter=expr):
        keep[int(frag.path.rsplit("/", 1)[1])] = True
    return keep


def plan_ranges(
    expr: pc.Expression | None,
    schema: pa.Schema,
    columns: Mapping[str, ColumnStats],
    *,
    start: int,
    stop: int,
    frag_starts: np.ndarray,
    frag_ids: np.ndarray,
) -> list[tuple[int, int]]:
    """Row ranges within ``[start, stop)`` that may hold rows matching ``expr``, merged and in order.

    ``columns`` holds the statistics of the scalar columns ``expr`` reads;
    ``_rowid`` in ``expr`` prunes by the row ids each range can hold.
    """
    if stop <= start:
        return []
    use_rowid = (
        ROWID in schema.names and expr is not None and ROWID in referenced_columns(expr, schema)
    )
    if expr is None or (not columns and not use_rowid):
        return [(start, stop)]
    cuts = {start, stop}
    for idx in [frag_starts, *(c.starts for c in columns.values())]:
        inside = idx[(idx > start) & (idx < stop)]
        cuts.update(int(x) for x in inside)
    bounds = np.array(sorted(cuts), dtype=np.int64)
    seg_lo, seg_hi = bounds[:-1], bounds[1:]
    per_column: list[list[list[pc.Expression] | None]] = []
    for name, cs in columns.items():
        chunk = np.searchsorted(cs.starts, seg_lo, side="right") - 1
        cases_of: dict[int, list[pc.Expression] | None] = {}
        col: list[list[pc.Expression] | None] = []
        for ci in chunk:
            c = int(ci)
            if c not in cases_of:
                ok = 0 <= c < len(cs.stats)
                rows = int(cs.starts[c + 1] - cs.starts[c]) if ok else 0
                cases_of[c] = column_cases(name, cs.type, cs.stats[c], rows) if ok else None
            col.append(cases_of[c])
        per_column.append(col)
    if use_rowid:
        f = np.searchsorted(frag_starts, seg_lo, side="right") - 1
        base = frag_ids[f] << 32
        lo_ids = base | (seg_lo - frag_starts[f])
        hi_ids = base | (seg_hi - 1 - frag_starts[f])
        per_column.append(
            [
                [
                    (pc.field(ROWID) >= _lit(int(a), pa.int64()))
                    & (pc.field(ROWID) <= _lit(int(b), pa.int64()))
                ]
                for a, b in zip(lo_ids, hi_ids, strict=True)
            ]
        )
    guarantees: list[pc.Expression] = []
    owner: list[int] = []
    for s in range(len(seg_lo)):
        alternatives = [col[s] for col in per_column if col[s] is not None]
        combos = 1
        for alt in alternatives:
            combos *= len(alt)  # type: ignore[arg-type]
        if combos > MAX_CASES:
            merged = []
            for alt in alternatives:
                assert alt is not None
                merged.append(_or(alt))
            alternatives = [[_and(merged)]]
        for combo in itertools.product(*alternatives):  # type: ignore[arg-type]
            guarantees.append(_and(list(combo)) if combo else pc.scalar(True))
            owner.append(s)
    try:
        alive = _survivors(expr, schema, guarantees)
    except _ERRORS:
        return [(start, stop)]  # an expression the simplifier cannot handle: read everything
    keep = np.zeros(len(seg_lo), dtype=bool)
    keep[np.asarray(owner, dtype=np.int64)[alive]] = True
    out: list[tuple[int, int]] = []
    for k in np.flatnonzero(keep):
        a, b = int(seg_lo[k]), int(seg_hi[k])
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out


def _and(parts: list[pc.Expression]) -> pc.Expression:
    out = parts[0]
    for p in parts[1:]:
        out = out & p
    return out


def _or(parts: list[pc.Expression]) -> pc.Expression:
    out = parts[0]
    for p in parts[1:]:
        out = out | p
    return out
