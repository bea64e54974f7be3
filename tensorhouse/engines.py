"""Which SQL engine an object belongs to: one helper instead of module-name checks everywhere.

``engine_of(x)`` answers ``"duckdb"`` for a DuckDB connection or relation,
``"datafusion"`` for a DataFusion SessionContext or DataFrame, and None for
anything else. It checks ``isinstance`` against the engines' public classes
and never imports an engine: an engine that is not imported yet cannot have
made ``x``.

Example:
    >>> import duckdb
    >>> from tensorhouse.engines import engine_of
    >>> engine_of(duckdb.connect()), engine_of(duckdb.sql("SELECT 1")), engine_of([1])
    ('duckdb', 'duckdb', None)
"""

from __future__ import annotations

import sys
from typing import Any, Literal

Engine = Literal["duckdb", "datafusion"]


def _classes(module: str, names: tuple[str, ...]) -> tuple[type, ...]:
    mod = sys.modules.get(module)
    if mod is None:
        return ()
    return tuple(c for n in names if isinstance(c := getattr(mod, n, None), type))


def engine_of(obj: Any) -> Engine | None:
    """``"duckdb"`` (connection or relation), ``"datafusion"`` (SessionContext or DataFrame) or None."""
    duck = _classes("duckdb", ("DuckDBPyConnection", "DuckDBPyRelation"))
    if duck and isinstance(obj, duck):
        return "duckdb"
    fusion = _classes("datafusion", ("SessionContext", "DataFrame"))
    if fusion and isinstance(obj, fusion):
        return "datafusion"
    return None


def is_connection(obj: Any) -> bool:
    """A DuckDB connection or a DataFusion SessionContext (something SQL runs on)."""
    duck = _classes("duckdb", ("DuckDBPyConnection",))
    fusion = _classes("datafusion", ("SessionContext",))
    return bool((duck and isinstance(obj, duck)) or (fusion and isinstance(obj, fusion)))


__all__ = ["Engine", "engine_of", "is_connection"]
