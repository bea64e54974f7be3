"""Row ids out of sight: the companion table behind every registration, and the loader's rewrite.

A registered table shows exactly the dataset's columns, so ``SELECT *``,
``NATURAL JOIN``, ``USING``, ``UNION`` and ``INSERT ... SELECT *`` behave as
on a native table. Neither engine can hide a column of a Python source, so a
registration is two names:

- the **companion** ``__tensorhouse_<name>_<8 hex>``: the Arrow dataset itself,
  with ``_rowid`` (int64, ``fragment_id << 32 | offset``) as its first column;
- the **table** the user named: a view ``SELECT * EXCLUDE (_rowid) FROM
  <companion>`` (or ``SELECT *`` when registered with ``rowid=True``).

``_rowid`` first matters to DuckDB: ``count(*)`` reads the scan's column 0,
and ``_rowid`` costs no I/O where the first data column may be an image.

The companion's name is unique in the process and maps (here, weakly) to its
Arrow dataset, so the loader can tell which dataset a query reads from the
query alone: it lists the companions on the query's own connection (through
the engine's catalog) and parses the SQL with sqlglot, a real SQL parser,
never a regular expression. :func:`rowid_query` then rewrites the query to
read the companion and add ``_rowid``, dropping the heavy columns, which the
loader reads by row id, chunk by chunk.

Example:
    >>> q = rowid_query("SELECT image, label FROM pets WHERE label = 1", dialect="duckdb",
    ...                 tables={"pets": "__tensorhouse_pets_0a1b2c3d"},
    ...                 heavy={"__tensorhouse_pets_0a1b2c3d": {"image"}}, output=["image", "label"])
    >>> q.companion, q.heavy, q.light
    ('__tensorhouse_pets_0a1b2c3d', ('image',), ('label',))
    >>> print(q.sql)
    SELECT "__th_rowid" AS "_rowid", "label" FROM (SELECT image, label, "pets"."_rowid" AS "__th_rowid" FROM "__tensorhouse_pets_0a1b2c3d" AS "pets" WHERE label = 1) AS "__th_q"
"""

from __future__ import annotations

import re
import threading
import uuid
import weakref
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tensorhouse.errors import TensorhouseError
from tensorhouse.types import ROWID

#: Every companion's name starts with this.
COMPANION_PREFIX = "__tensorhouse_"
_ALIAS = "__th_rowid"
_SAFE = re.compile(
    r"[^A-Za-z0-9_]"
)  # for the readable part of a generated name, not for parsing SQL


class LateMaterializationError(TensorhouseError, ValueError):
    """The loader cannot add ``_rowid`` to this query; the message says why and what to do instead."""


@dataclass
class _Entry:
    table: weakref.ReferenceType[Any]
    owner: (
        weakref.ReferenceType[Any] | None
    )  # the SessionContext (DataFusion): where a rewrite runs
    source: str | None = None  # for a native relation: the companion (with _rowid) it stands for


_LOCK = threading.Lock()
_COMPANIONS: dict[str, _Entry] = {}


def companion_name(name: str) -> str:
    """A new process-unique companion name for a table called ``name``."""
    readable = _SAFE.sub("_", name)[:40]
    return f"{COMPANION_PREFIX}{readable}_{uuid.uuid4().hex[:8]}"


def remember(companion: str, table: Any, *, owner: Any = None, source: str | None = None) -> None:
    """Record that ``companion`` names ``table`` (and, for DataFusion, lives on ``owner``).

    ``source``: ``companion`` is a native relation (the engine's Parquet reader,
    :mod:`.native`) over the same rows, without ``_rowid``; ``source`` is the
    companion that has ``_rowid``, which a rewrite for the loader reads instead.
    """
    try:
        owner_ref = weakref.ref(owner) if owner is not None else None
    except TypeError:  # not weak-referenceable: a rewrite then needs dataset=
        owner_ref = None
    with _LOCK:
        for k in [k for k, e in _COMPANIONS.items() if e.table() is None]:
            del _COMPANIONS[k]
        _COMPANIONS[companion] = _Entry(weakref.ref(table), owner_ref, source)


def forget(companion: str) -> None:
    with _LOCK:
        _COMPANIONS.pop(companion, None)


def lookup(companion: str) -> Any | None:
    """The Arrow dataset a companion name stands for, while something still holds it."""
    with _LOCK:
        entry = _COMPANIONS.get(companion)
    return entry.table() if entry is not None else None


def rowid_source(name: str) -> str:
    """The companion with ``_rowid`` that ``name`` stands for: itself, or a native relation's companion."""
    with _LOCK:
        entry = _COMPANIONS.get(name)
    return entry.source if entry is not None and entry.source is not None else name


def owner_of(companion: str) -> Any | None:
    """The engine context a companion was registered on (DataFusion), while it lives."""
    with _LOCK:
        entry = _COMPANIONS.get(companion)
    return entry.owner() if entry is not None and entry.owner is not None else None


def is_companion(name: str) -> bool:
    return name.startswith(COMPANION_PREFIX) and lookup(name) is not None


def view_sql(companion: str, *, rowid: bool) -> str:
    """The SELECT behind the user's table name."""
    cols = "*" if rowid else f'* EXCLUDE ("{ROWID}")'
    return f'SELECT {cols} FROM "{companion}"'


def tables_in(sql: str, *, dialect: str) -> set[str]:
    """Names of the tables a statement reads (parsed, lower-cased; CTE names left out).

    For ``CREATE VIEW v AS SELECT ...``, the tables the SELECT reads.
    """
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except sqlglot.errors.ParseError:
        return set()
    if isinstance(tree, exp.Create) and tree.expression is not None:
        tree = tree.expression
    ctes = {c.alias_or_name.lower() for c in tree.find_all(exp.CTE)}
    return {
        t.name.lower() for t in tree.find_all(exp.Table) if t.name and t.name.lower() not in ctes
    }


# -- the loader's rewrite -----------------------------------------------------------------
@dataclass(frozen=True)
class RowidQuery:
    """A query rewritten to return ``_rowid`` and the light columns; ``heavy`` are read by row id."""

    sql: str
    companion: str
    heavy: tuple[str, ...]
    light: tuple[str, ...]


def _fail(why: str) -> LateMaterializationError:
    return LateMaterializationError(
        f"the loader cannot add {ROWID} to this query: {why}. Select {ROWID} yourself from a table registered "
        f"with rowid=True (SELECT {ROWID}, image, label FROM ...), or pass a plain SELECT ... FROM <table> "
        "[JOIN ...] [WHERE ...] [ORDER BY ...] [LIMIT ...] over a registered tensorhouse table"
    )


def rowid_query(
    sql: str,
    *,
    dialect: str,
    tables: Mapping[str, str],
    heavy: Mapping[str, set[str]],
    output: Sequence[str],
) -> RowidQuery:
    """Rewrite ``sql`` to read the companion of its tensorhouse table and return ``_rowid`` + light columns.

    ``tables``: lower-cased table name -> companion on this connection
    (companions map to themselves). ``heavy``: companion -> its columns read
    by row id. ``output``: the query's result column names. The rewrite
    accepts a plain SELECT (joins, WHERE, ORDER BY, LIMIT, CTEs) whose FROM
    clause names the tensorhouse table directly; aggregates, DISTINCT,
    window functions and set operations change which rows exist, so they
    are refused with :class:`LateMaterializationError`.
    """
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(sql, read=dialect)
    except sqlglot.errors.ParseError as err:
        raise _fail(f"its SQL did not parse ({err})") from None
    if not isinstance(tree, exp.Select):
        raise _fail(f"it is a {type(tree).__name__.upper()}, not a single SELECT")
    for key in ("group", "having", "distinct", "qualify"):
        if tree.args.get(key):
            raise _fail(f"it has {key.upper()}, so its rows are not rows of the dataset")
    for e in tree.expressions:
        if any(isinstance(n, exp.AggFunc | exp.Window) for n in e.walk()):
            raise _fail(f"{e.sql(dialect)} aggregates rows")
    ctes = {c.alias_or_name.lower() for c in tree.ctes}
    from_ = tree.args.get("from_")
    sources = ([from_.this] if from_ is not None else []) + [
        j.this for j in tree.args.get("joins") or []
    ]
    found: list[tuple[exp.Expression, str, str]] = []  # (node, companion, alias)
    for src in sources:
        comp = _companion_of(src, tables, ctes)
        if comp is not None:
            found.append((src, comp, src.alias_or_name))
    if not found:
        raise _fail("its FROM clause names no registered tensorhouse table")
    out = list(output)
    if len(set(out)) != len(out):
        raise _fail(f"its result has duplicate column names {out}")
    heavy_out: dict[str, int] = {}  # output name -> index into found
    has_star = False
    for e in tree.expressions:
        inner = e.unalias()
        if isinstance(inner, exp.Star) or (
            isinstance(inner, exp.Column) and isinstance(inner.this, exp.Star)
        ):
            has_star = True
            continue
        if not isinstance(inner, exp.Column) or e.alias_or_name != inner.name:
            continue
        owners = [
            i
            for i, (_, comp, alias) in enumerate(found)
            if inner.name in heavy.get(comp, set())
            and (not inner.table or inner.table.lower() == alias.lower())
        ]
        if len(owners) == 1:
            heavy_out[inner.name] = owners[0]
    if has_star:
        for name in out:
            owners = [i for i, (_, comp, _) in enumerate(found) if name in heavy.get(comp, set())]
            if name not in heavy_out and len(owners) == 1:
                heavy_out[name] = owners[0]
    targets = set(heavy_out.values())
    if len(targets) > 1:
        raise _fail("its heavy columns come from more than one tensorhouse table")
    if not targets and len(found) > 1:
        raise _fail(
            "it reads several tensorhouse tables and no heavy column says which one's rows it returns"
        )
    node, companion, alias = found[targets.pop() if targets else 0]
    new = exp.Table(this=exp.to_identifier(companion, quoted=True)).as_(
        exp.to_identifier(alias, quoted=True)
    )
    node.replace(new)
    tree.select(
        exp.column(ROWID, table=exp.to_identifier(alias, quoted=True), quoted=True).as_(
            exp.to_identifier(_ALIAS, quoted=True)
        ),
        copy=False,
    )
    heavy_names = tuple(n for n in out if n in heavy_out)
    light = tuple(n for n in out if n not in heavy_out)
    outer = exp.select(
        exp.column(_ALIAS, quoted=True).as_(exp.to_identifier(ROWID, quoted=True)),
        *[exp.column(n, quoted=True) for n in light],
    ).from_(tree.subquery(exp.to_identifier("__th_q", quoted=True)))
    return RowidQuery(outer.sql(dialect=dialect), companion, heavy_names, light)


def _companion_of(src: Any, tables: Mapping[str, str], ctes: set[str]) -> str | None:
    from sqlglot import exp

    if isinstance(src, exp.Table):
        if src.args.get("catalog") or (src.db and src.db.lower() not in ("main", "temp")):
            return None
        name = src.name.lower()
        return None if name in ctes else tables.get(name)
    if isinstance(src, exp.Subquery) and isinstance(src.this, exp.Select | exp.Union):
        # DataFusion inlines a view as (SELECT cols FROM companion) AS name; a native view as
        # (SELECT cols FROM (SELECT cols FROM file_0 UNION ALL SELECT cols FROM file_1 ...)) AS name.
        # Either stands for the companion when it reads nothing else and drops or adds no row.
        inner = src.this
        leaves = list(inner.find_all(exp.Table))
        # A WHERE on no column (file_row_index() NOT IN (...)) drops deleted rows, as the companion does.
        changes_rows = any(
            isinstance(n, exp.Join | exp.Group | exp.Having | exp.Limit | exp.Distinct)
            or (isinstance(n, exp.Where) and n.find(exp.Column) is not None)
            or (isinstance(n, exp.Union) and n.args.get("distinct"))
            for n in inner.walk()
        )
        internal = all(t.name.lower().startswith(COMPANION_PREFIX) for t in leaves)
        comps = {tables.get(t.name.lower()) for t in leaves}
        if leaves and internal and not changes_rows and len(comps) == 1:
            return comps.pop()
    return None


def rowid_loader_query(
    sql: str,
    *,
    dialect: str,
    companions: Sequence[str],
    views: Mapping[str, str],
    output: Sequence[str],
    heavy_of: Callable[[Any], set[str]],
) -> tuple[RowidQuery, Any]:
    """:func:`rowid_query` from what an engine's catalog says: ``companions`` present on the
    connection, ``views`` (view name -> its SQL). Returns the rewrite and the companion's Arrow dataset."""
    found = {c: t for c in companions if (t := lookup(c)) is not None}
    # A native relation stands for its companion: the rewrite reads the companion (it has _rowid).
    tables: dict[str, str] = {c.lower(): rowid_source(c) for c in found}
    live = {rowid_source(c): t for c, t in found.items()}
    for view, text in views.items():
        read = tables_in(text, dialect=dialect)
        hits = [c for c in found if c.lower() in read]
        if len(hits) == 1 and len(read) == 1:
            tables[view.lower()] = rowid_source(hits[0])
    q = rowid_query(
        sql,
        dialect=dialect,
        tables=tables,
        heavy={c: heavy_of(t) for c, t in live.items()},
        output=output,
    )
    return q, live[q.companion]


__all__ = [
    "COMPANION_PREFIX",
    "LateMaterializationError",
    "RowidQuery",
    "companion_name",
    "forget",
    "is_companion",
    "lookup",
    "owner_of",
    "remember",
    "rowid_loader_query",
    "rowid_query",
    "rowid_source",
    "tables_in",
    "view_sql",
]
