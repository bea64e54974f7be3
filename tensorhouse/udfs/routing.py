"""Which Arrow types each tensor-UDF call in a SQL query receives, so an engine can be told.

DataFusion 55 gives a Python UDF one exact signature per name, and its
coercion neither changes list depth nor touches structs (see
:mod:`tensorhouse.udfs.datafusion`). So before a query is planned, we read
it with sqlglot, find every call of a catalog function, and work out the
Arrow type of each argument:

- a column: its type in the table the engine reports (through CTEs,
  subqueries and aliases: sqlglot's ``qualify`` and ``annotate_types``
  carry it, each column type tagged as a user-defined type);
- another catalog call: that function's declared return type;
- ``x[i]`` of a known list type: the element type;
- an array literal of depth ``d``: ``list<double>`` nested ``d`` deep
  (DataFusion coerces any numeric list of that depth to it);
- anything else, and option arguments (a slice string, an axis, a box
  format): the function's default type for that kind.

Each function gets one signature per query under its own name; a query
that calls one function with two different argument types has the later
calls renamed (``tensor_sum__2``) in the SQL text, nothing else changed.

Example:
    >>> import pyarrow as pa
    >>> mask = pa.list_(pa.list_(pa.uint8(), 7), 6)
    >>> r = route("SELECT tensor_sum(m) FROM (SELECT mask AS m FROM scans)",
    ...           {"scans": pa.schema([("mask", mask)])}.get, defaults={})
    >>> r.sql == "SELECT tensor_sum(m) FROM (SELECT mask AS m FROM scans)"
    True
    >>> [(c.name, c.function, [str(t) for t in c.arg_types]) for c in r.calls]
    [('tensor_sum', 'tensor_sum', ['fixed_size_list<item: fixed_size_list<item: uint8>[7]>[6]'])]
"""

from __future__ import annotations

import functools
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import pyarrow as pa

from tensorhouse.udfs.catalog import BY_NAME, OPTION_KINDS, UDF

if TYPE_CHECKING:
    from sqlglot import exp

#: sqlglot's dialect closest to DataFusion's SQL (double-quoted identifiers, ARRAY[...]).
DIALECT = "postgres"
_NAMES = re.compile(r"\b(" + "|".join(sorted(BY_NAME, key=len, reverse=True)) + r")\s*\(", re.I)
_TAG = "th_type_"
_EXPLAIN = re.compile(r"\s*EXPLAIN(\s+ANALYZE)?(\s+VERBOSE)?(\s+FORMAT\s+\w+)?\s+", re.I)


@dataclass(frozen=True)
class Call:
    """One signature a query needs: register ``function`` under ``name`` for ``arg_types``."""

    name: str
    function: str
    arg_types: tuple[pa.DataType, ...]


@dataclass(frozen=True)
class Routing:
    """The SQL to run (renamed calls only) and the signatures it needs."""

    sql: str
    calls: tuple[Call, ...]


def mentions_udfs(sql: str) -> bool:
    """Whether ``sql`` may call a catalog function (a cheap text test before parsing)."""
    return _NAMES.search(sql) is not None


def route(
    sql: str,
    schema_of: Callable[[str], pa.Schema | None],
    *,
    defaults: Mapping[str, pa.DataType],
    relation_of: Callable[[str], pa.Schema | None] | None = None,
) -> Routing:
    """The signatures each catalog function needs in ``sql`` (see the module notes).

    ``schema_of(table_name)`` gives a table's Arrow schema, or None when
    unknown; ``relation_of(sql)`` the schema of a table function call in
    FROM (``tensorhouse('data/pets', 3)``), given as SQL text;
    ``defaults`` maps an argument kind to the type used when an
    argument's type cannot be told from the text (and for option arguments).
    SQL that sqlglot cannot read comes back unchanged, with no calls.
    """
    if not mentions_udfs(sql):
        return Routing(sql, ())
    explain = _EXPLAIN.match(sql)
    if explain:  # sqlglot reads EXPLAIN as an opaque command: route the statement it explains
        inner = route(sql[explain.end() :], schema_of, defaults=defaults, relation_of=relation_of)
        return Routing(sql[: explain.end()] + inner.sql, inner.calls)
    key = (sql, tuple(sorted(defaults.items())))
    with _CACHE_LOCK:
        hit = _CACHE.get(key)
        if hit is not None:
            _CACHE.move_to_end(key)
    lookups = {"table": schema_of, "relation": relation_of or (lambda _: None)}
    if hit is not None and all(lookups[kind](name) == was for (kind, name), was in hit[0]):
        return hit[1]  # the same text over tables of the same schemas: the same routing
    looked: dict[tuple[str, str], pa.Schema | None] = {}

    def recorder(kind: str) -> Callable[[str], pa.Schema | None]:
        def lookup(name: str) -> pa.Schema | None:
            looked[kind, name] = lookups[kind](name)
            return looked[kind, name]

        return lookup

    routed = _route(sql, recorder("table"), recorder("relation"), defaults)
    with _CACHE_LOCK:
        _CACHE[key] = (tuple(looked.items()), routed)
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return routed


#: Recent routings by (SQL text, defaults): reading a query costs milliseconds (sqlglot parses in
#: Python), checking that its tables still have the same schemas costs microseconds.
_CACHE: OrderedDict[
    tuple[str, tuple[tuple[str, pa.DataType], ...]],
    tuple[tuple[tuple[tuple[str, str], pa.Schema | None], ...], Routing],
] = OrderedDict()
_CACHE_LOCK = threading.Lock()
_CACHE_SIZE = 512


def _route(
    sql: str,
    schema_of: Callable[[str], pa.Schema | None],
    relation_of: Callable[[str], pa.Schema | None],
    defaults: Mapping[str, pa.DataType],
) -> Routing:
    import sqlglot

    dialect = _dialect()
    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except sqlglot.errors.SqlglotError:
        return Routing(sql, ())
    typed, tags = _annotated(tree, schema_of, relation_of, dialect)
    found: list[tuple[exp.Expr, UDF, tuple[pa.DataType, ...]]] = []
    known: dict[int, pa.DataType] = {}  # id(node) -> the type a catalog call returns
    for node in _post_order(typed):
        udf = _catalog_call(node)
        if udf is None:
            continue
        args = _call_args(node)
        if not udf.min_args <= len(args) <= udf.max_args:
            continue  # the UDF itself reports the count; no signature fits
        types = tuple(
            defaults[p.kind]
            if p.kind in OPTION_KINDS
            else (_type_of(a, tags, known) or defaults[p.kind])
            for p, a in zip(udf.params, args, strict=False)
        )
        known[id(node)] = udf.returns
        found.append((node, udf, types))
    calls: dict[tuple[str, tuple[pa.DataType, ...]], str] = {}
    per_function: dict[str, int] = {}
    renames: list[tuple[int, int, str]] = []
    for node, udf, types in found:
        key = (udf.name, types)
        if key not in calls:
            k = per_function.get(udf.name, 0) + 1
            per_function[udf.name] = k
            calls[key] = udf.name if k == 1 else f"{udf.name}__{k}"
        name = calls[key]
        if name != udf.name:
            span = _name_span(node)
            if span is None:
                continue  # parsed as a known function without positions: keep its first signature
            renames.append((*span, name))
    text = sql
    for start, end, name in sorted(renames, reverse=True):
        text = text[:start] + name + text[end + 1 :]
    return Routing(
        text,
        tuple(Call(name, fn, types) for (fn, types), name in calls.items()),
    )


@functools.cache
def _dialect() -> type:
    """DIALECT, reading every catalog name as a plain call (``dot_product`` is a built-in there).

    Plain calls keep the position of their name, which a rename needs.
    """
    from sqlglot.dialects.dialect import Dialect

    base: Any = Dialect.get_or_raise(DIALECT).__class__

    class Parser(base.Parser):
        FUNCTIONS: ClassVar[dict[str, Any]] = {
            k: v for k, v in base.Parser.FUNCTIONS.items() if k.lower() not in BY_NAME
        }

    return type("TensorhouseSQL", (base,), {"Parser": Parser})


def _annotated(
    tree: exp.Expr,
    schema_of: Callable[[str], pa.Schema | None],
    relation_of: Callable[[str], pa.Schema | None],
    dialect: type,
) -> tuple[exp.Expr, list[pa.DataType]]:
    """A copy of ``tree`` whose columns carry ``th_type_<i>`` types (``tags[i]`` is the Arrow type)."""
    from sqlglot import exp
    from sqlglot.optimizer.annotate_types import annotate_types
    from sqlglot.optimizer.qualify import qualify
    from sqlglot.schema import MappingSchema

    copy = tree.copy()
    ctes = {c.alias_or_name.lower() for c in copy.find_all(exp.CTE)}
    mapping: dict[str, object] = {}
    tags: list[pa.DataType] = []
    for k, table in enumerate(list(copy.find_all(exp.Table))):
        ident = table.this
        if isinstance(ident, exp.Func):  # a table function: a named stand-in with its columns
            schema = relation_of(ident.sql(dialect=dialect, normalize_functions=False))
            name = f"__th_relation_{k}"
            table.set("this", exp.to_identifier(name))
        else:
            name = table.name
            if not isinstance(ident, exp.Identifier) or not ident.quoted:
                name = name.lower()  # as DataFusion (and sqlglot's qualify) fold unquoted names
            if not name or name.lower() in ctes or name in mapping:
                continue
            schema = schema_of(".".join(p for p in (table.db, name) if p))
        if schema is None:
            continue
        cols: dict[str, exp.DataType] = {}
        for f in schema:
            # Built, not parsed: sqlglot would parse a type string per column of every table.
            tag = exp.to_identifier(f"{_TAG}{len(tags)}")
            cols[f.name] = exp.DataType(this=exp.DataType.Type.USERDEFINED, kind=tag)
            tags.append(f.type)
        mapping[name] = cols
    for arr in list(copy.find_all(exp.Array)):
        # Only the depth of a number literal matters here: typing a 128-number query vector
        # element by element would be most of the time spent reading the query.
        if len(arr.expressions) > 1 and _literal_depth(arr) is not None:
            arr.set("expressions", arr.expressions[:1])
    if not mapping:
        return copy, tags
    try:
        schema = MappingSchema(mapping, dialect=dialect, normalize=False)
        copy = qualify(
            copy,
            schema=schema,
            dialect=dialect,
            validate_qualify_columns=False,
            identify=False,
        )
        copy = annotate_types(copy, schema=schema, dialect=dialect)
    except Exception:  # sqlglot cannot qualify every query; its calls then get default types
        return tree.copy(), []
    return copy, tags


def _post_order(tree: exp.Expr) -> list[exp.Expr]:

    out: list[exp.Expr] = []

    def visit(node: exp.Expr) -> None:
        for child in node.iter_expressions():
            visit(child)
        out.append(node)

    visit(tree)
    return out


def _catalog_call(node: exp.Expr) -> UDF | None:
    from sqlglot import exp

    if isinstance(node, exp.Anonymous):
        return BY_NAME.get(str(node.name).lower())
    if isinstance(node, exp.Func):
        return BY_NAME.get(node.sql_name().lower())
    return None


def _call_args(node: exp.Expr) -> list[exp.Expr]:
    from sqlglot import exp

    if isinstance(node, exp.Anonymous):
        return list(node.expressions)
    args: list[exp.Expr] = []
    for key in node.arg_types:
        value = node.args.get(key)
        if isinstance(value, list):
            args.extend(value)
        elif value is not None:
            args.append(value)
    return args


def _name_span(node: exp.Expr) -> tuple[int, int] | None:
    from sqlglot import exp

    if not isinstance(node, exp.Anonymous):
        return None
    meta = node.meta
    if "start" not in meta or "end" not in meta:
        return None
    return int(meta["start"]), int(meta["end"])


def _type_of(
    node: exp.Expr, tags: list[pa.DataType], known: dict[int, pa.DataType]
) -> pa.DataType | None:
    from sqlglot import exp

    if id(node) in known:
        return known[id(node)]
    if isinstance(node, exp.Paren):
        return _type_of(node.this, tags, known)
    if isinstance(node, exp.Column):
        t = node.type
        label = t.sql() if t is not None else ""
        if label.startswith(_TAG) and label[len(_TAG) :].isdigit():
            found = tags[int(label[len(_TAG) :])]
            return found.storage_type if isinstance(found, pa.BaseExtensionType) else found
        return None
    if isinstance(node, exp.Array):
        depth = _literal_depth(node)
        if depth is None:
            return None
        out: pa.DataType = pa.float64()
        for _ in range(depth):
            out = pa.list_(out)
        return out
    if isinstance(node, exp.Bracket) and len(node.expressions) == 1:
        index = node.expressions[0]
        if isinstance(index, exp.Slice):
            return None
        base = _type_of(node.this, tags, known)
        if base is not None and (
            pa.types.is_list(base)
            or pa.types.is_large_list(base)
            or pa.types.is_fixed_size_list(base)
        ):
            return base.value_type
    return None


def _literal_depth(node: exp.Expr) -> int | None:
    """Nesting depth of an array literal of numbers (None if it holds anything else)."""
    from sqlglot import exp

    if isinstance(node, exp.Array):
        depths = {_literal_depth(e) for e in node.expressions}
        if not depths:
            return 1
        if len(depths) != 1 or None in depths:
            return None
        inner = depths.pop()
        return None if inner is None else inner + 1
    if isinstance(node, exp.Neg):
        return _literal_depth(node.this)
    if isinstance(node, exp.Literal) and not node.is_string:
        return 0
    if isinstance(node, exp.Boolean):
        return 0
    return None


__all__ = ["DIALECT", "Call", "Routing", "mentions_udfs", "route"]
