"""A dataset as a Polars ``LazyFrame``: ``th.polars.scan``.

A Polars IO plugin (``polars.io.plugins.register_io_source``), so Polars'
optimizer hands the scan what the query needs:

- **projection**: only the selected columns' chunks are read (a query on
  ``label`` never touches an image chunk);
- **filter**: the predicate is applied to every batch (exactly, by Polars),
  and its simple parts (comparisons of a column with a constant, ``is_in``
  of constants, ``is_null``, combined with ``&``, ``|``, ``~``) are also handed to the
  tensorhouse scan, whose chunk statistics skip the chunks and fragments they
  rule out;
- **slice**: ``head(n)``/``limit(n)`` stops reading after ``n`` rows.

Column types are those the SQL engines see (``Embedding(128)`` is
``Array(Float32, 128)``, boxes ``List(Array(Float32, 4))``, images the
encoded ``Binary``, class labels their ``Int32`` index). Polars is an
optional extra: ``pip install 'tensorhouse[polars]'``.

Example:
    >>> import numpy as np, polars as pl, tensorhouse as th
    >>> ds = th.create("memory://doc-polars", {"label": "int32", "emb": th.Embedding(2)})
    >>> _ = ds.append({"label": [0, 1, 1], "emb": np.ones((3, 2), "float32")})
    >>> th.polars.scan("memory://doc-polars").filter(pl.col("label") == 1).select("label").collect().height
    2
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping
from datetime import datetime
from typing import Any

import pyarrow.compute as pc

from tensorhouse.errors import TensorhouseError, UnsupportedError
from tensorhouse.format.dataset import Dataset


def _polars() -> Any:
    try:
        import polars
    except ImportError as err:  # pragma: no cover - polars is in the dev extra
        raise UnsupportedError("th.polars needs Polars: pip install 'tensorhouse[polars]'") from err
    return polars


_OPS = {
    "Eq": "__eq__",
    "NotEq": "__ne__",
    "Lt": "__lt__",
    "LtEq": "__le__",
    "Gt": "__gt__",
    "GtEq": "__ge__",
}
_FLIP = {"Lt": "Gt", "LtEq": "GtEq", "Gt": "Lt", "GtEq": "LtEq", "Eq": "Eq", "NotEq": "NotEq"}


def _literal(node: Any) -> tuple[bool, Any]:
    """(ok, value) of a Polars literal node of a number, string or bool."""
    if not isinstance(node, dict) or "Literal" not in node:
        return False, None
    lit = node["Literal"]
    for kind in ("Dyn", "Scalar"):
        inner = lit.get(kind) if isinstance(lit, dict) else None
        if isinstance(inner, dict) and len(inner) == 1:
            ((name, value),) = inner.items()
            if name in (
                "Int",
                "Float",
                "String",
                "Boolean",
                "Int64",
                "Int32",
                "Float64",
                "Float32",
                "UInt32",
                "UInt64",
                "Int16",
                "Int8",
                "UInt8",
                "UInt16",
            ) and isinstance(value, int | float | str | bool):
                return True, value
    return False, None


def _literal_list(node: Any) -> list[Any] | None:
    """The values of a Polars list literal (an Arrow IPC stream of one column), or None."""
    try:
        data = node["Literal"]["Scalar"]["List"]
        import pyarrow as pa

        values = pa.ipc.open_stream(bytes(data)).read_all().column(0).to_pylist()
    except (KeyError, TypeError, ValueError, OSError):
        return None
    ok = all(isinstance(v, int | float | str | bool) for v in values)
    return values if ok else None


def to_arrow_filter(node: Any, *, exact: bool = True) -> pc.Expression | None:
    """A ``pyarrow.compute`` filter for a Polars expression tree (``Expr.meta.serialize(format="json")``).

    ``exact=False`` may return a weaker filter (one side of an ``&``), which
    is enough for skipping chunks; None where nothing converts.
    """
    if not isinstance(node, dict) or len(node) != 1:
        return None
    ((kind, body),) = node.items()
    if kind == "BinaryExpr":
        op, left, right = body.get("op"), body.get("left"), body.get("right")
        if op in ("And", "LogicalAnd"):
            a, b = to_arrow_filter(left, exact=exact), to_arrow_filter(right, exact=exact)
            if a is not None and b is not None:
                return a & b
            return None if exact else (a if a is not None else b)
        if op in ("Or", "LogicalOr"):
            a, b = to_arrow_filter(left, exact=True), to_arrow_filter(right, exact=True)
            return a | b if a is not None and b is not None else None
        if op in _OPS:
            if isinstance(left, dict) and "Column" in left:
                ok, value = _literal(right)
                if ok:
                    return getattr(pc.field(left["Column"]), _OPS[op])(value)
            if isinstance(right, dict) and "Column" in right:
                ok, value = _literal(left)
                if ok:
                    return getattr(pc.field(right["Column"]), _OPS[_FLIP[op]])(value)
        return None
    if kind == "Function":
        fn, args = body.get("function"), body.get("input") or []
        boolean = fn.get("Boolean") if isinstance(fn, dict) else None
        if boolean == "Not" and len(args) == 1:
            inner = to_arrow_filter(args[0], exact=True)
            return ~inner if inner is not None else None
        if (
            isinstance(boolean, dict)
            and "IsIn" in boolean
            and len(args) == 2
            and isinstance(args[0], dict)
            and "Column" in args[0]
        ):
            values = _literal_list(args[1])
            return pc.field(args[0]["Column"]).isin(values) if values is not None else None
        if (
            boolean in ("IsNull", "IsNotNull")
            and len(args) == 1
            and isinstance(args[0], dict)
            and "Column" in args[0]
        ):
            f = pc.field(args[0]["Column"])
            return f.is_null() if boolean == "IsNull" else f.is_valid()
    return None


def scan(
    source: str | Dataset,
    *,
    version: int | None = None,
    tag: str | None = None,
    timestamp: datetime | None = None,
    branch: str | None = None,
    storage_options: Mapping[str, Any] | None = None,
    rowid: bool = False,
) -> Any:
    """A Polars ``LazyFrame`` over a dataset (URI or Dataset) at a version, tag, timestamp or branch.

    The snapshot is fixed when ``scan`` is called: every ``collect`` reads the
    same version. ``rowid=True`` adds the stable ``_rowid`` column (free: no
    chunk is read for it). Projection, filters and ``head`` are pushed down
    (see the module notes).
    """
    pl = _polars()
    from polars.io.plugins import register_io_source

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
    arrow_schema = ad.schema
    schema = pl.from_arrow(arrow_schema.empty_table()).schema

    def source_fn(
        with_columns: list[str] | None, predicate: Any, n_rows: int | None, batch_size: int | None
    ) -> Iterator[Any]:
        wanted = list(arrow_schema.names) if with_columns is None else list(with_columns)
        needed = list(wanted)
        pushed = None
        if predicate is not None:
            needed += [c for c in predicate.meta.root_names() if c not in needed]
            try:
                pushed = to_arrow_filter(
                    json.loads(predicate.meta.serialize(format="json")), exact=False
                )
            except (
                ValueError,
                TypeError,
                AttributeError,
            ):  # a form we do not read: Polars filters alone
                pushed = None
        rows = batch_size or 65536
        if n_rows is not None:
            rows = max(1, min(rows, n_rows))
        try:
            scanner = ad.scanner(columns=needed, filter=pushed, batch_size=rows)
        except (
            TensorhouseError
        ):  # the pushed filter names a type the scan cannot compare: Polars filters alone
            scanner = ad.scanner(columns=needed, batch_size=rows)
        left = n_rows
        if left is not None and left <= 0:
            return
        for batch in scanner.to_batches():
            df = pl.from_arrow(batch)
            if predicate is not None:
                df = df.filter(predicate)
            if needed != wanted:
                df = df.select(wanted)
            if left is not None:
                df = df.head(left)
                left -= df.height
            if df.height:
                yield df
            if left is not None and left <= 0:
                return

    where = f"{ad.dataset.uri} (version {ad.version})"
    return register_io_source(
        source_fn, schema=schema, is_pure=True, explain_name="tensorhouse", explain_detail=where
    )


__all__ = ["scan", "to_arrow_filter"]
