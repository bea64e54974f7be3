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

from collections.abc import Callable
from typing import TypeAlias

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

    The expression is evaluated over the columns it reads only, to one boolean
    mask, and the batch is then filtered by that mask with the plain ``filter``
    kernel: measured on TPC-H's Q1, 10-20x cheaper than
    ``RecordBatch.filter(expr)``, which runs every column of the batch through
    an Acero plan. A mask that keeps every row returns the batch itself, with
    no copy. A scan filtering many batches binds the filter once
    (:func:`bind_filter`) instead.

    ``string_view``/``binary_view`` columns are filtered as their plain
    equivalents (Arrow has few view kernels) and come back as views.
    """
    return bind_filter(expr, batch.schema).apply(batch)


class BoundFilter:
    """A filter bound to one schema: what it reads and how it is evaluated, worked out once.

    :func:`apply_filter` did this work on every batch: serializing the
    expression for its cache key, finding the columns it reads and the view
    columns, and planning an Acero projection (~0.2-0.5 ms a batch). A bound
    filter evaluates the expression's tree with Arrow's compute functions
    directly, the same kernels Acero calls, with the same implicit casts
    (both dispatch through ``call_function``), and falls back to the Acero
    projection for a node it does not know.

    Example:
        >>> import pyarrow as pa, pyarrow.compute as pc
        >>> b = pa.record_batch({"a": [1, 2, 3], "s": ["x", "y", None]})
        >>> f = bind_filter((pc.field("a") > 1) & pc.field("s").isin(["y", "z"]), b.schema)
        >>> f.apply(b).to_pydict()
        {'a': [2], 's': ['y']}
    """

    def __init__(self, expr: pc.Expression, schema: pa.Schema) -> None:
        self.expr = expr
        self.schema = schema
        self.views = [i for i, f in enumerate(schema) if plain_type(f.type) != f.type]
        plain = schema
        if self.views:
            plain = pa.schema([f.with_type(plain_type(f.type)) for f in schema])
        self.used = referenced_columns(expr, plain)
        self._direct: _Eval | None = None
        if self.used:
            try:
                self._direct = _compile(from_arrow(expr), self.used)
            except (UnreadableExpression, _Unsupported):
                self._direct = None

    @property
    def direct(self) -> bool:
        """Whether the filter is evaluated by direct compute calls (else by an Acero projection)."""
        return self._direct is not None

    def mask(self, batch: pa.RecordBatch) -> pa.Array:
        """The filter evaluated on every row of ``batch`` (nulls where it is NULL)."""
        sub = batch.select(self.used)
        if self.views:
            sub = pa.RecordBatch.from_arrays([unview(c) for c in sub.columns], names=self.used)
        try:
            if self._direct is not None:
                out = self._direct(sub.columns)
                if isinstance(out, pa.Array) and len(out) == sub.num_rows:
                    return out
            return _mask(sub, self.expr)
        except _ERRORS as err:
            raise SchemaError(f"cannot evaluate filter {self.expr}: {err}") from err

    def apply(self, batch: pa.RecordBatch) -> pa.RecordBatch:
        """Rows of ``batch`` where the filter is TRUE (see :func:`apply_filter`)."""
        if not self.used:  # a constant filter: nothing to project, let Arrow evaluate it
            return _filter_by_expression(batch, self.expr)
        mask = self.mask(batch)
        if mask.null_count == 0:
            kept = mask.true_count
            if kept == batch.num_rows:
                return batch
            if kept == 0:
                return batch.slice(0, 0)
        if not self.views:
            return batch.filter(mask)
        views = self.views
        return pa.RecordBatch.from_arrays(
            [
                unview(c).filter(mask).cast(c.type) if i in views else c.filter(mask)
                for i, c in enumerate(batch.columns)
            ],
            schema=batch.schema,
        )


def bind_filter(expr: pc.Expression, schema: pa.Schema) -> BoundFilter:
    """``expr`` bound to ``schema`` (cached: every scan of a query binds the same filter)."""
    key = expression_key(expr) if isinstance(expr, pc.Expression) else None
    if key is None:
        return BoundFilter(expr, schema)
    hit = _BOUND.get((key, schema))
    if hit is None:
        if len(_BOUND) >= 1024:
            _BOUND.clear()
        hit = _BOUND[(key, schema)] = BoundFilter(expr, schema)
    return hit


_BOUND: dict[tuple[bytes, pa.Schema], BoundFilter] = {}

_Value: TypeAlias = pa.Array | pa.Scalar
_Eval: TypeAlias = Callable[[list[pa.Array]], _Value]


class _Unsupported(Exception):
    """A node the direct evaluator does not know: the filter is evaluated by Acero."""


#: Options rebuilt from the struct Arrow serialized them as, per options class.
def _options(call: filter_tree.Call) -> pc.FunctionOptions | None:
    if call.options is None:
        return None
    kind = call.option("_type_name")
    if kind == b"SetLookupOptions":
        behavior = call.option("null_matching_behavior")
        if behavior not in (0, 1):  # MATCH and SKIP are what pyarrow's constructor can say
            raise _Unsupported(call.function)
        return pc.SetLookupOptions(call.options["value_set"].values, skip_nulls=behavior == 1)
    if kind == b"MatchSubstringOptions":
        return pc.MatchSubstringOptions(
            call.option("pattern"), ignore_case=bool(call.option("ignore_case"))
        )
    if kind == b"NullOptions":
        return pc.NullOptions(nan_is_null=bool(call.option("nan_is_null")))
    raise _Unsupported(call.function)


def _equality_chain(node: filter_tree.Call) -> tuple[str, pa.Array] | None:
    """``(x = 'a') OR (x = 'b') OR ...`` (what DataFusion pushes for ``x IN ('a', 'b', ...)``)
    as the column and its values; None for anything else. Text only: a number literal may not
    fit the column's type, where ``equal`` answers false and ``is_in`` would fail its cast."""
    if node.function not in ("or_kleene", "or"):
        return None
    column: str | None = None
    values: list[pa.Scalar] = []
    stack: list[filter_tree.Node] = [node]
    while stack:
        cur = stack.pop()
        if not isinstance(cur, filter_tree.Call):
            return None
        if cur.function in ("or_kleene", "or") and cur.options is None:
            stack.extend(reversed(cur.args))
            continue
        if cur.function != "equal" or len(cur.args) != 2:
            return None
        a, b = cur.args
        field, lit = (a, b) if isinstance(a, filter_tree.Field) else (b, a)
        if (
            not isinstance(field, filter_tree.Field)
            or not isinstance(lit, filter_tree.Literal)
            or len(field.path) != 1
            or not lit.value.is_valid
            or not (pa.types.is_string(lit.value.type) or pa.types.is_large_string(lit.value.type))
            or (column is not None and field.name != column)
            or (values and lit.value.type != values[0].type)
        ):
            return None
        column = field.name
        values.append(lit.value)
    if column is None or len(values) < 2:
        return None
    return column, pa.array([v.as_py() for v in values], type=values[0].type)


def _membership(i: int, values: pa.Array) -> _Eval:
    """One ``is_in`` pass instead of an ``equal`` pass per value; NULL where the column is NULL,
    as the chain of equalities gives."""
    options = pc.SetLookupOptions(values)

    def run(cols: list[pa.Array]) -> _Value:
        col = cols[i]
        hit = pc.call_function("is_in", [col], options)
        if col.null_count == 0:
            return hit
        return pc.if_else(col.is_valid(), hit, pa.scalar(None, pa.bool_()))

    return run


def _compile(node: filter_tree.Node, used: list[str]) -> _Eval:
    """A function of the ``used`` columns (in that order) computing ``node``."""
    if isinstance(node, filter_tree.Field):
        if len(node.path) != 1:
            raise _Unsupported("a struct field path")
        i = used.index(node.name)
        return lambda cols: cols[i]
    if isinstance(node, filter_tree.Literal):
        value = node.value
        return lambda cols: value
    if isinstance(node, filter_tree.Call):
        members = _equality_chain(node)
        if members is not None:
            return _membership(used.index(members[0]), members[1])
        args = [_compile(a, used) for a in node.args]
        options = _options(node)
        function = node.function
        return lambda cols: pc.call_function(function, [a(cols) for a in args], options)
    raise _Unsupported(type(node).__name__)


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
