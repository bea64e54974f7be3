"""Which row ranges a filter may match, from per-chunk min/max statistics.

:func:`plan_ranges` evaluates the filter's tree
(:mod:`tensorhouse.connector.filter_tree`) on each candidate row range with
three-valued logic: for every node it computes which outcomes (TRUE, FALSE,
NULL) are *possible* given the range's statistics (min, max, null count,
NaN), vectorised over all ranges with Arrow's own comparison kernels, so a
literal meets the statistics with the same implicit casts it meets the rows
with. A range is read when TRUE is possible. Every rule over-approximates (an
unknown function or an undecidable comparison says "anything is possible"),
so a range holding a matching row is never dropped; the property tests in
``tests/test_pruning.py`` check that over random data of every scalar type
and random predicates.

Statistics are JSON in the log: integers, strings (a string column's min is
a prefix of at most 64 characters, still a lower bound; a longer max is not
kept), dates/times/timestamps/durations as their stored integers, decimals
as text (:func:`tensorhouse.format.chunks.columnar.stat_scalar` turns them
back into typed scalars). Min and max leave NaN out; a range holding NaN may
hold a row where a comparison is FALSE (``!=``: TRUE), as Arrow compares NaN.

Example:
    >>> import numpy as np, pyarrow as pa, pyarrow.compute as pc
    >>> stats = ColumnStats(pa.int64(), np.array([0, 10, 20]), [{"null_count": 0, "min": 0, "max": 9},
    ...                                                          {"null_count": 0, "min": 10, "max": 19}])
    >>> plan_ranges(pc.field("x") >= 12, pa.schema([("x", pa.int64())]), {"x": stats},
    ...             start=0, stop=20, frag_starts=np.array([0, 20]), frag_ids=np.array([0]))
    [(10, 20)]
"""

from __future__ import annotations

import decimal
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tensorhouse.connector.filter_tree import (
    Call,
    Field,
    Literal,
    Node,
    UnreadableExpression,
    columns_of,
    from_arrow,
)
from tensorhouse.format.chunks.columnar import plain_type, stat_scalar
from tensorhouse.types import ROWID

_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, pa.ArrowKeyError)
#: Arithmetic with a constant whose bounds follow the constant (``x + 1 > 2``).
_SHIFTS = ("add", "add_checked", "subtract", "subtract_checked")
#: Above this many values, ``is_in`` prunes nothing (each value costs two compares per range).
MAX_IN_VALUES = 1024


# -- what each range may hold --------------------------------------------------------
@dataclass(frozen=True)
class ColumnStats:
    """Statistics of one scalar column, chunk by chunk, in physical row order.

    ``stats[i]`` covers rows ``[starts[i], starts[i + 1])``; ``None`` marks a
    range where the column is absent (rows written before it existed: all
    null), ``{}`` a chunk without statistics (nothing known).
    """

    type: pa.DataType
    starts: np.ndarray
    stats: Sequence[Mapping[str, Any] | None]


@dataclass(frozen=True)
class _Bounds:
    """What the values of a node may be, per range.

    ``lo``/``hi``: bounds of the non-null, non-NaN values (an Arrow array over
    the ranges or one scalar; a null entry, or None, is unbounded).
    ``values``/``nulls``/``nans``: whether a range may hold a non-null value, a
    null, a NaN.
    """

    lo: pa.Array | pa.Scalar | None
    hi: pa.Array | pa.Scalar | None
    values: np.ndarray
    nulls: np.ndarray
    nans: np.ndarray


@dataclass(frozen=True)
class _Truth:
    """Which outcomes a condition may have, per range."""

    t: np.ndarray
    f: np.ndarray
    n: np.ndarray

    def swap(self) -> _Truth:
        return _Truth(self.f, self.t, self.n)


class _Ranges:
    """The statistics of the candidate ranges, and the rules that evaluate a tree on them."""

    def __init__(self, n: int, columns: Mapping[str, _Bounds]) -> None:
        self.n = n
        self.columns = columns
        self.yes = np.ones(n, dtype=bool)
        self.no = np.zeros(n, dtype=bool)

    def unknown(self) -> _Bounds:
        return _Bounds(None, None, self.yes, self.yes, self.yes)

    def anything(self) -> _Truth:
        return _Truth(self.yes, self.yes, self.yes)

    def mask(self, result: Any) -> np.ndarray:
        """An Arrow boolean result (array or scalar; null: unknown) as a per-range mask."""
        if isinstance(result, pa.Scalar):
            return self.yes if not result.is_valid or result.as_py() else self.no
        return np.asarray(pc.fill_null(result, True).to_numpy(zero_copy_only=False), dtype=bool)

    # -- values ---------------------------------------------------------------------
    def bounds(self, node: Node) -> _Bounds:
        if isinstance(node, Field):
            b = self.columns.get(node.name) if len(node.path) == 1 else None
            return b if b is not None else self.unknown()
        if isinstance(node, Literal):
            v = node.value
            valid = v.is_valid
            nan = bool(valid and pa.types.is_floating(v.type) and np.isnan(v.as_py()))
            return _Bounds(
                v if valid and not nan else None,
                v if valid and not nan else None,
                self.yes if valid and not nan else self.no,
                self.no if valid else self.yes,
                self.yes if nan else self.no,
            )
        if node.function == "cast" and len(node.args) == 1:
            return self.cast(self.bounds(node.args[0]), node)
        if node.function in _SHIFTS and len(node.args) == 2:
            return self.shift(node)
        return self.unknown()

    def shift(self, call: Call) -> _Bounds:
        """``x + c``, ``c + x``, ``x - c``: bounds move with the constant, in the kernel's own type.

        The bounds are shifted with the checked kernel: where that overflows, a row
        near the bound may wrap around in the unchecked one, so nothing is known.
        """
        a, b = (self.bounds(x) for x in call.args)
        constant = [isinstance(x, Literal) for x in call.args]
        if call.function.startswith("subtract") and not constant[1]:
            return self.unknown()  # c - x reverses the order: not worth a rule
        if constant[1]:
            x, c = a, call.args[1]
        elif constant[0]:
            x, c = b, call.args[0]
        else:
            return self.unknown()
        assert isinstance(c, Literal)
        if not c.value.is_valid or x.lo is None or x.hi is None:
            return _Bounds(None, None, x.values, x.nulls | (not c.value.is_valid), self.yes)
        kernel = pc.subtract_checked if call.function.startswith("subtract") else pc.add_checked
        try:
            lo, hi = kernel(x.lo, c.value), kernel(x.hi, c.value)
        except (*_ARROW_ERRORS, OverflowError):
            return _Bounds(None, None, x.values, x.nulls, self.yes)
        nans = x.nans | (pa.types.is_floating(lo.type) and bool(np.isnan(c.value.as_py())))
        return _Bounds(lo, hi, x.values, x.nulls, nans)

    def cast(self, b: _Bounds, call: Call) -> _Bounds:
        """Casts between numbers (or between timestamps) keep order; others lose the bounds."""
        to = call.options.type.field("to_type").type if call.options is not None else None
        ends = [e for e in (b.lo, b.hi) if e is not None]
        if to is None or not ends:
            return _Bounds(None, None, b.values, b.nulls, b.nans)
        src = ends[0].type
        numeric = (pa.types.is_integer, pa.types.is_floating, pa.types.is_decimal)
        ordered = (any(p(src) for p in numeric) and any(p(to) for p in numeric)) or (
            pa.types.is_timestamp(src) and pa.types.is_timestamp(to)
        )
        if not ordered:
            return _Bounds(None, None, b.values, b.nulls, self.yes)
        try:
            lo = None if b.lo is None else pc.cast(b.lo, to)
            hi = None if b.hi is None else pc.cast(b.hi, to)
        except (*_ARROW_ERRORS, OverflowError):
            return _Bounds(None, None, b.values, b.nulls, self.yes)
        if pa.types.is_floating(to) or not b.nans.any():
            return _Bounds(lo, hi, b.values, b.nulls, b.nans)
        # A NaN cast to a non-float (where the cast allows it) is some value: unbounded there.
        nan = pa.array(b.nans)
        lo = pc.if_else(nan, pa.scalar(None, lo.type), lo) if isinstance(lo, pa.Array) else None
        hi = pc.if_else(nan, pa.scalar(None, hi.type), hi) if isinstance(hi, pa.Array) else None
        return _Bounds(lo, hi, b.values | b.nans, b.nulls, self.no)

    def compare(self, fn: Callable[..., Any], x: Any, y: Any) -> np.ndarray:
        """``fn(x, y)`` over the ranges; unbounded or incomparable ends: possible."""
        if x is None or y is None:
            return self.yes
        try:
            return self.mask(fn(x, y))
        except (*_ARROW_ERRORS, OverflowError):
            return self.yes

    def comparison(self, function: str, a: _Bounds, b: _Bounds) -> _Truth:
        if function in ("greater", "greater_equal"):
            a, b = b, a
            function = "less" if function == "greater" else "less_equal"
        both = a.values & b.values
        nan = (a.nans & (b.values | b.nans)) | (b.nans & (a.values | a.nans))
        nulls = a.nulls | b.nulls
        if function == "less":
            t = both & self.compare(pc.less, a.lo, b.hi)
            f = both & self.compare(pc.greater_equal, a.hi, b.lo)
        elif function == "less_equal":
            t = both & self.compare(pc.less_equal, a.lo, b.hi)
            f = both & self.compare(pc.greater, a.hi, b.lo)
        else:  # equal, not_equal
            t = (
                both
                & self.compare(pc.less_equal, a.lo, b.hi)
                & self.compare(pc.less_equal, b.lo, a.hi)
            )
            single = (
                ~self.compare(pc.not_equal, a.lo, a.hi)
                & ~self.compare(pc.not_equal, b.lo, b.hi)
                & ~self.compare(pc.not_equal, a.lo, b.lo)
            )
            known = all(e is not None for e in (a.lo, a.hi, b.lo, b.hi))
            f = both & (~single if known else self.yes)
            if function == "not_equal":
                t, f = f, t
        # Arrow: a comparison with NaN is FALSE, and != is TRUE (rows are filtered by Arrow,
        # whatever NaN ordering the engine has: the engines drop a filter they push down).
        if function == "not_equal":
            return _Truth(t | nan, f, nulls)
        return _Truth(t, f | nan, nulls)

    # -- conditions -----------------------------------------------------------------
    def truth(self, node: Node) -> _Truth:
        if isinstance(node, Literal):
            value = node.value
            if not value.is_valid:
                return _Truth(self.no, self.no, self.yes)
            if pa.types.is_boolean(value.type):
                return _Truth(
                    self.yes if value.as_py() else self.no,
                    self.no if value.as_py() else self.yes,
                    self.no,
                )
            return self.anything()
        if isinstance(node, Field):
            v = self.bounds(node)
            if v.lo is None or v.hi is None or not pa.types.is_boolean(v.lo.type):
                return _Truth(v.values, v.values, v.nulls)  # a boolean column without bounds
            t = v.values & self.compare(pc.equal, v.hi, pa.scalar(True))
            f = v.values & self.compare(pc.equal, v.lo, pa.scalar(False))
            return _Truth(t, f, v.nulls)
        fn, args = node.function, node.args
        if len(args) == 2 and fn in (
            "equal",
            "not_equal",
            "less",
            "less_equal",
            "greater",
            "greater_equal",
        ):
            return self.comparison(fn, self.bounds(args[0]), self.bounds(args[1]))
        if fn == "invert":
            return self.truth(args[0]).swap()
        if fn in ("and_kleene", "and", "and_not_kleene", "and_not"):
            a, b = self.truth(args[0]), self.truth(args[1])
            if fn.startswith("and_not"):
                b = b.swap()
            kleene = fn.endswith("kleene")  # NULL AND FALSE is FALSE; without Kleene it is NULL
            n = ((a.n & (b.t | b.n)) | (b.n & (a.t | a.n))) if kleene else a.n | b.n
            return _Truth(a.t & b.t, a.f | b.f, n)
        if fn in ("or_kleene", "or"):
            a, b = self.truth(args[0]), self.truth(args[1])
            kleene = fn == "or_kleene"  # NULL OR TRUE is TRUE; without Kleene it is NULL
            n = ((a.n & (b.f | b.n)) | (b.n & (a.f | a.n))) if kleene else a.n | b.n
            return _Truth(a.t | b.t, a.f & b.f, n)
        if fn == "is_null":
            v = self.bounds(args[0])
            return _Truth(
                v.nulls | (v.nans if node.option("nan_is_null") else self.no),
                v.values | v.nans,
                self.no,
            )
        if fn == "is_valid":
            v = self.bounds(args[0])
            return _Truth(v.values | v.nans, v.nulls, self.no)
        if fn == "is_nan":
            v = self.bounds(args[0])
            return _Truth(v.nans, v.values, v.nulls)
        if fn == "true_unless_null":
            v = self.bounds(args[0])
            return _Truth(v.values | v.nans, self.no, v.nulls)
        if fn == "is_in" and node.options is not None:
            return self.is_in(self.bounds(args[0]), node)
        if fn == "if_else" and len(args) == 3:
            c, a, b = (self.truth(x) for x in args)
            return _Truth(
                (c.t & a.t) | (c.f & b.t),
                (c.t & a.f) | (c.f & b.f),
                c.n | (c.t & a.n) | (c.f & b.n),
            )
        return self.anything()

    def is_in(self, x: _Bounds, call: Call) -> _Truth:
        assert call.options is not None
        value_set = call.options["value_set"].values
        behavior = call.option(
            "null_matching_behavior"
        )  # 0 MATCH, 1 SKIP, 2 EMIT_NULL, 3 INCONCLUSIVE
        if value_set is None or behavior not in (0, 1, 2, 3):
            return self.anything()
        has_null = value_set.null_count > 0
        present = value_set.drop_null()
        # Arrow compares numbers in a common type but casts, e.g., timestamps to a date column's
        # type (a timestamp at 00:00:01 is in a date's set): try both readings, keep either's match.
        readings = [present]
        bound = x.lo if x.lo is not None else x.hi
        if bound is not None and bound.type != present.type:
            try:
                readings.append(pc.cast(present, bound.type, safe=False))
            except (*_ARROW_ERRORS, OverflowError):
                pass
        if sum(len(r) for r in readings) > MAX_IN_VALUES:
            t = x.values.copy()
        else:
            t = self.no.copy()
            for values in readings:
                for k in range(len(values)):
                    v = values[k]
                    lo_ok = self.compare(pc.less_equal, x.lo, v)
                    t |= lo_ok & self.compare(pc.greater_equal, x.hi, v)
            t &= x.values
        t = t | x.nans  # NaN is in a set holding NaN
        f = x.values | x.nans
        n = self.no
        if behavior == 0:
            t, f = (t | x.nulls, f) if has_null else (t, f | x.nulls)
        elif behavior == 1:
            f = f | x.nulls
        else:
            n = x.nulls | ((x.values | x.nans) if behavior == 3 and has_null else self.no)
        return _Truth(t, f, n)


def _stat_array(raw: list[Any], t: pa.DataType) -> pa.Array:
    """Stored statistics (JSON values, None unknown) as one Arrow array of ``t``.

    The vectorised form of :func:`~tensorhouse.format.chunks.columnar.stat_scalar`;
    a value that does not fit the type becomes unknown (None), one by one.
    """
    try:
        if pa.types.is_temporal(t):
            return pa.array(raw, type=pa.int32() if t.bit_width == 32 else pa.int64()).view(t)
        if pa.types.is_decimal(t):
            return pa.array([None if v is None else decimal.Decimal(v) for v in raw], type=t)
        return pa.array(raw, type=t)
    except (*_ARROW_ERRORS, OverflowError, ValueError, ArithmeticError, TypeError):
        out: list[pa.Scalar | None] = []
        for v in raw:
            try:
                out.append(None if v is None else stat_scalar(v, t))
            except (*_ARROW_ERRORS, OverflowError, ValueError, ArithmeticError, TypeError):
                out.append(None)  # a statistic that does not fit the type: know nothing
        return pa.array(out, type=t)


def _column_bounds(cs: ColumnStats, chunk: np.ndarray, rows: np.ndarray) -> _Bounds:
    """Per-range bounds of one column, from the statistics of the chunk each range lies in."""
    t = plain_type(cs.type.value_type if pa.types.is_dictionary(cs.type) else cs.type)
    floating = pa.types.is_floating(t)
    k = len(cs.stats)
    lo_raw: list[Any] = []
    hi_raw: list[Any] = []
    values_c = np.ones(k + 1, dtype=bool)
    nulls_c = np.ones(k + 1, dtype=bool)
    nans_c = np.ones(k + 1, dtype=bool)
    for i, s in enumerate(cs.stats):
        lo = hi = None
        if s is None:  # the column did not exist yet: all null
            values_c[i], nans_c[i] = False, False
        elif s:
            nulls = s.get("null_count")
            if nulls is not None:
                nulls_c[i] = int(nulls) > 0
                values_c[i] = int(rows[i]) - int(nulls) > 0
            # Statistics written without a NaN flag (columnar chunks) may hide a NaN.
            nans_c[i] = bool(s.get("has_nan", True)) if floating else False
            lo, hi = s.get("min"), s.get("max")
        lo_raw.append(lo)
        hi_raw.append(hi)
    lo_raw.append(None)  # index k: a range outside every chunk, nothing known
    hi_raw.append(None)
    idx = np.where((chunk >= 0) & (chunk < k), chunk, k)
    try:
        lo_arr = _stat_array(lo_raw, t).take(pa.array(idx))
        hi_arr = _stat_array(hi_raw, t).take(pa.array(idx))
    except (*_ARROW_ERRORS, OverflowError):
        return _Bounds(
            None, None, np.ones(len(idx), bool), np.ones(len(idx), bool), np.ones(len(idx), bool)
        )
    return _Bounds(lo_arr, hi_arr, values_c[idx], nulls_c[idx], nans_c[idx])


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
    if expr is None:
        return [(start, stop)]
    try:
        tree = from_arrow(expr)
    except UnreadableExpression:
        return [(start, stop)]
    use_rowid = ROWID in schema.names and ROWID in columns_of(tree)
    if not columns and not use_rowid:
        return [(start, stop)]
    cuts = {start, stop}
    for idx in [frag_starts, *(c.starts for c in columns.values())]:
        inside = idx[(idx > start) & (idx < stop)]
        cuts.update(int(x) for x in inside)
    bounds = np.array(sorted(cuts), dtype=np.int64)
    seg_lo, seg_hi = bounds[:-1], bounds[1:]
    n = len(seg_lo)
    known: dict[str, _Bounds] = {}
    for name, cs in columns.items():
        chunk = np.searchsorted(cs.starts, seg_lo, side="right") - 1
        known[name] = _column_bounds(cs, chunk, np.diff(np.asarray(cs.starts, dtype=np.int64)))
    if use_rowid:
        f = np.searchsorted(frag_starts, seg_lo, side="right") - 1
        base = frag_ids[f].astype(np.int64) << 32
        lo_ids = base | (seg_lo - frag_starts[f])
        hi_ids = base | (seg_hi - 1 - frag_starts[f])
        none = np.zeros(n, dtype=bool)
        known[ROWID] = _Bounds(
            pa.array(lo_ids, pa.int64()), pa.array(hi_ids, pa.int64()), ~none, none, none
        )
    try:
        keep = _Ranges(n, known).truth(tree).t
    except RecursionError:  # deeper than Python's stack (a long unbalanced chain): read everything
        return [(start, stop)]
    out: list[tuple[int, int]] = []
    for k in np.flatnonzero(keep):
        a, b = int(seg_lo[k]), int(seg_hi[k])
        if out and out[-1][1] == a:
            out[-1] = (out[-1][0], b)
        else:
            out.append((a, b))
    return out
