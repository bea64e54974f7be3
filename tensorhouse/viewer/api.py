"""The viewer's JSON API, without HTTP: dataset versions, SQL pages, samples, diffs.

:class:`ViewerAPI` answers the endpoints documented in ``docs/viewer.md``
with plain dicts; :mod:`tensorhouse.viewer.server` puts them on HTTP.

Queries run in one in-memory DuckDB database whose configuration is locked
before any user SQL runs: external access (files, URLs, extensions, ATTACH,
COPY) and Python replacement scans are off, there is no temp directory
(DuckDB otherwise keeps its temp directory readable even with external access
off), memory and threads are limited (``viewer_memory_limit_bytes``,
``viewer_threads`` in :mod:`tensorhouse.limits`), and only a single
``SELECT`` is accepted. Tensor UDFs run under ``viewer_max_udf_output_bytes``:
a call that would return more (``image_resize(img, 8192, 8192)``, a JPEG
claiming 32000x32000 pixels) is refused before it allocates. Datasets are registered Arrow datasets (``th.duckdb.register``),
which still scan with external access off. Requests borrow cursors from a
pool per set of registered versions; a query past ``query_timeout_s`` is
interrupted. Pages are ``LIMIT``/``OFFSET`` over ``_rowid`` (DuckDB reads only
the columns a filter names); a page's grid values are then read by row id
from the chunks, so no page reads an image.

Example:
    >>> import numpy as np, tensorhouse as th
    >>> from tensorhouse.viewer.api import Ref, ViewerAPI
    >>> ds = th.create("memory://doc-viewer-api", {"label": th.ClassLabel(["cat", "dog"]), "score": "float32"})
    >>> _ = ds.append({"label": [0, 1, 1], "score": np.array([0.1, 0.5, 0.9], "float32")})
    >>> api = ViewerAPI("memory://doc-viewer-api", udfs=False)
    >>> page = api.rows(Ref(), where="label = 1 AND score > 0.6")
    >>> page["total"], page["rows"][0]["cells"]["label"]
    (1, {'index': 1, 'name': 'dog'})
    >>> api.close()
"""

from __future__ import annotations

import json
import logging
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from datetime import time as dtime
from decimal import Decimal
from typing import Any, Generic, Literal, TypeVar

import numpy as np

try:
    import duckdb
except ImportError as err:  # pragma: no cover - depends on the environment
    raise ImportError("the viewer needs duckdb: pip install 'tensorhouse[duckdb]'") from err

from tensorhouse import limits
from tensorhouse.errors import TensorhouseError, VersionNotFoundError
from tensorhouse.format import refs
from tensorhouse.format.chunks.codecs import image_header_shape
from tensorhouse.format.convert import batch_to_values, to_arrow
from tensorhouse.format.dataset import Dataset
from tensorhouse.format.dataset import open as open_dataset
from tensorhouse.types import (
    ROWID,
    BBox,
    Binary,
    ClassLabel,
    ColumnType,
    Embedding,
    Image,
    Json,
    Scalar,
    Text,
)
from tensorhouse.viewer.thumbnails import ImageSource

log = logging.getLogger("tensorhouse.viewer")
V = TypeVar("V")

CellKind = Literal["scalar", "label", "text", "json", "bbox", "vector", "tensor", "image", "binary"]
#: Column kinds whose values a grid page carries (read by row id; images and big tensors are not).
LIGHT_KINDS = frozenset({"scalar", "label", "text", "json", "bbox", "vector"})
MAX_LIMIT = 500
MAX_SQL_CHARS = 20_000
MAX_VECTOR = 4096  # longest 1-d tensor a grid page carries (as a sparkline)
SPARK_POINTS = 64
GRID_TEXT = 300
MAX_GRID_ITEMS = 64
DETAIL_TEXT = 20_000
DETAIL_VALUES = 1000
MAX_EXTRAS = 32

# Set once on the viewer's database, then locked: no user query can change them back.
_LOCKDOWN = (
    "SET enable_external_access = false",
    "SET python_enable_replacements = false",
    "SET autoinstall_known_extensions = false",
    "SET autoload_known_extensions = false",
    "SET allow_community_extensions = false",
    "SET lock_configuration = true",
)


class ApiError(TensorhouseError):
    """An error the API reports to the client: an HTTP status and a message."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True)
class Ref:
    """Which version to read: nothing (the server's default), a version, a tag, and/or a branch."""

    version: int | None = None
    tag: str | None = None
    branch: str | None = None

    @property
    def is_default(self) -> bool:
        return self.version is None and self.tag is None and self.branch is None


# -- JSON ---------------------------------------------------------------------------


def jsonable(x: Any, *, max_items: int = DETAIL_VALUES, max_chars: int = DETAIL_TEXT) -> Any:
    """A value JSON can carry: numpy scalars unwrapped, NaN/inf as strings, bytes as their size.

    Example:
        >>> jsonable([np.float32(1.5), float("nan"), b"abc", (1, 2)])
        [1.5, 'NaN', '<3 bytes>', [1, 2]]
    """
    if x is None or isinstance(x, bool | int):
        return x
    if isinstance(x, float):
        if math.isfinite(x):
            return x
        return "NaN" if math.isnan(x) else ("Infinity" if x > 0 else "-Infinity")
    if isinstance(x, str):
        return x if len(x) <= max_chars else x[:max_chars] + "…"
    if isinstance(x, np.generic):
        return jsonable(x.item(), max_items=max_items, max_chars=max_chars)
    if isinstance(x, np.ndarray):
        flat = x.reshape(-1)[:max_items]
        if (
            flat.dtype.kind == "f" and flat.dtype.itemsize < 8
        ):  # float32 as float32 prints, not 0.1000000015
            flat = np.array([float(f"{e:.7g}") for e in flat.tolist()])
        return jsonable(flat.tolist() if x.size > max_items else flat.reshape(x.shape).tolist())
    if isinstance(x, bytes | bytearray | memoryview):
        return f"<{len(x)} bytes>"
    if isinstance(x, list | tuple):
        return [jsonable(v, max_items=max_items, max_chars=max_chars) for v in x[:max_items]]
    if isinstance(x, dict):
        return {
            str(k): jsonable(v, max_items=max_items, max_chars=max_chars)
            for k, v in list(x.items())[:max_items]
        }
    if isinstance(x, datetime | date | dtime):
        return x.isoformat()
    if isinstance(x, Decimal):
        return jsonable(float(x))
    return str(x)


# -- column kinds and values ----------------------------------------------------------


_KINDS: tuple[tuple[type[ColumnType], CellKind], ...] = (
    (Image, "image"),
    (ClassLabel, "label"),
    (BBox, "bbox"),
    (Json, "json"),
    (Text, "text"),
    (Binary, "binary"),
    (Scalar, "scalar"),
)


def cell_kind(ctype: ColumnType) -> CellKind:
    """How the viewer shows a column (Json before Text: it subclasses it)."""
    for cls, kind in _KINDS:
        if isinstance(ctype, cls):
            return kind
    shape = ctype.sample_shape
    return (
        "vector"
        if len(shape) == 1 and shape[0] is not None and shape[0] <= MAX_VECTOR
        else "tensor"
    )


def type_label(ctype: ColumnType) -> str:
    """A short human description: ``ClassLabel(3)``, ``BBox xyxy``, ``float32[?, 4]``."""
    if isinstance(ctype, Image):
        return f"Image {ctype.compression or 'raw'}"
    if isinstance(ctype, ClassLabel):
        return f"ClassLabel({len(ctype.classes)})"
    if isinstance(ctype, BBox):
        return f"BBox {ctype.format}"
    if isinstance(ctype, Json | Text | Binary):
        return type(ctype).__name__
    if isinstance(ctype, Scalar):
        return ctype.dtype
    dims = ", ".join("?" if d is None else str(d) for d in ctype.sample_shape)
    prefix = "Embedding " if isinstance(ctype, Embedding) else ""
    return f"{prefix}{ctype.storage_dtype}[{dims}]"


def _spark(values: np.ndarray) -> list[float]:
    """At most SPARK_POINTS bin means of a 1-d vector (finite values only)."""
    v = np.nan_to_num(values.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    points = v if len(v) <= SPARK_POINTS else [b.mean() for b in np.array_split(v, SPARK_POINTS)]
    return [round(float(x), 5) for x in points]


def _stats(arr: np.ndarray) -> dict[str, Any] | None:
    if arr.size == 0 or arr.dtype.kind not in "biuf":
        return None
    a = arr.astype(np.float64)
    f = a[np.isfinite(a)]
    out: dict[str, Any] = {"nan": int(np.isnan(a).sum())}
    return out | (
        {
            k: float(g(f))
            for k, g in (("min", np.min), ("max", np.max), ("mean", np.mean), ("std", np.std))
        }
        if f.size
        else {}
    )


def _label(ctype: ClassLabel, v: Any) -> dict[str, Any]:
    i = int(v)
    return {"index": i, "name": ctype.classes[i] if 0 <= i < len(ctype.classes) else None}


def grid_cell(kind: CellKind, ctype: ColumnType, v: Any) -> Any:
    """A light value for a grid card, from a plain Python value (``to_pylist``)."""
    if v is None:
        return None
    if kind == "label":
        return _label(ctype, v)  # type: ignore[arg-type]
    if kind in ("text", "json"):
        return jsonable(v, max_chars=GRID_TEXT)
    if kind == "bbox":  # pixel coordinates: two decimals are plenty for drawing
        return {"n": len(v), "boxes": [[round(float(c), 2) for c in b] for b in v[:100]]}
    if kind == "vector":
        arr = np.asarray(v, dtype=np.float64)
        return {"n": int(arr.size), "spark": _spark(arr), **(_stats(arr) or {})}
    return jsonable(v)


def detail_value(kind: CellKind, ctype: ColumnType, v: Any) -> Any:
    """Every column of one sample, summarised: tensors by shape, dtype, stats and truncated values."""
    if kind == "label":
        return _label(ctype, v)  # type: ignore[arg-type]
    if kind == "text":
        return {"text": jsonable(v), "length": len(v), "truncated": len(v) > DETAIL_TEXT}
    if kind == "json":
        text = json.dumps(v, indent=2, ensure_ascii=False)
        return {"text": jsonable(text), "length": len(text), "truncated": len(text) > DETAIL_TEXT}
    if kind == "binary":
        b = bytes(v)
        return {"nbytes": len(b), "hex": b[:64].hex(" "), "truncated": len(b) > 64}
    if kind == "image":
        if isinstance(v, np.ndarray):
            return {"shape": list(v.shape), "codec": None, "nbytes": int(v.nbytes)}
        codec = ctype.compression  # type: ignore[attr-defined]
        try:
            return {"shape": list(image_header_shape(codec, v)), "codec": codec, "nbytes": len(v)}
        except TensorhouseError:  # shown as unknown; the thumbnail reports the error
            return {"shape": None, "codec": codec, "nbytes": len(v)}
    if kind == "scalar":
        return jsonable(v)
    arr = np.asarray(v)
    out: dict[str, Any] = {"shape": list(arr.shape), "dtype": str(arr.dtype), "stats": _stats(arr)}
    if kind == "bbox":
        out["format"] = ctype.format  # type: ignore[attr-defined]
        out["boxes"] = jsonable(arr[: DETAIL_VALUES // 4])
        return out
    out["truncated"] = arr.size > DETAIL_VALUES
    out["values"] = jsonable(arr)
    if arr.ndim == 1 and arr.size:
        out["spark"] = _spark(arr)
    return out


def schema_doc(ds: Dataset) -> list[dict[str, Any]]:
    return [
        {
            "name": name,
            "kind": cell_kind(t),
            "label": type_label(t),
            "type": t.to_dict(),
            "arrow": str(t.arrow_type()),
        }
        for name, t in ds.schema.columns
    ]


# -- SQL ------------------------------------------------------------------------------


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _truncated(name: str, sql_type: str) -> str:
    """An extra column cut, inside DuckDB, to what a grid cell shows anyway.

    Without this, ``SELECT _rowid, repeat('x', 20000000) FROM ds`` makes every
    row of a page a 20 MB Python string (measured: 9.7 GB for one request).
    """
    q = quote_ident(name)
    if sql_type == "VARCHAR":
        return f"left({q}, {GRID_TEXT + 1}) AS {q}"
    if sql_type.endswith("[]"):
        return f"{q}[1:{MAX_GRID_ITEMS}] AS {q}"
    return q


def single_select(sql: str) -> str:
    """``sql`` if it is exactly one SELECT statement (trailing ``;`` removed), else ApiError 400.

    Example:
        >>> single_select("SELECT 1;"), single_select("FROM ds")
        ('SELECT 1', 'FROM ds')
    """
    if len(sql) > MAX_SQL_CHARS or "\x00" in sql:
        raise ApiError(
            400, f"the query is longer than {MAX_SQL_CHARS} characters or holds a NUL character"
        )
    try:
        statements = duckdb.extract_statements(sql)
    except duckdb.Error as err:
        raise ApiError(400, f"SQL error: {err}") from None
    if len(statements) != 1:
        raise ApiError(
            400,
            "only one statement is allowed: ';' separates statements"
            if statements
            else "the query is empty",
        )
    kind = statements[0].type
    if kind != duckdb.StatementType.SELECT:
        raise ApiError(
            400, f"only SELECT queries are allowed, not {kind.name}: the viewer is read-only"
        )
    return sql.rstrip().rstrip(";").rstrip()


def check_where(where: str) -> str:
    """``where`` if it is one SQL expression (so it cannot close the query and start another)."""
    single_select(f"SELECT 1 WHERE {where}")  # the same limits and messages as a query
    try:
        duckdb.SQLExpression(where)
    except duckdb.Error as err:
        raise ApiError(400, f"not a SQL condition: {err}") from None
    return where


def register_limited_udfs(db: duckdb.DuckDBPyConnection, max_output_bytes: int) -> list[str]:
    """The tensor UDFs, each call run under ``max_udf_output_bytes = max_output_bytes``.

    Kernels that can expand their input (decode, resize) check the limit before
    allocating; every result is checked again after (a catch-all for the rest).
    """
    import duckdb.func

    from tensorhouse.udfs.catalog import CATALOG
    from tensorhouse.udfs.duckdb import sql_type
    from tensorhouse.udfs.kernels.errors import UDFArgumentError

    cap = min(max_output_bytes, limits.current().max_udf_output_bytes)

    def wrap(udf: Any) -> Callable[..., Any]:
        def call(*args: Any) -> Any:
            # A thread-local override: DuckDB calls Python UDFs on the thread that runs them.
            with limits.override(max_udf_output_bytes=cap):
                out = udf(*args)
            limits.check(
                "max_udf_output_bytes",
                out.nbytes,
                what=f"{udf.name}: a result of {out.nbytes} bytes",
                error=UDFArgumentError,
            )
            return out

        call.__name__ = udf.name
        return call

    names = []
    for udf in CATALOG:
        db.create_function(
            udf.name,
            wrap(udf),
            None,
            duckdb.sqltype(sql_type(udf.returns)),
            type=duckdb.func.ARROW,
            null_handling=duckdb.func.SPECIAL,
        )
        names.append(udf.name)
    return names


class _Sessions:
    """DuckDB cursors with datasets registered, pooled per set of tables, on one locked database."""

    def __init__(
        self, *, timeout_s: float, udfs: bool, max_keys: int = 8, per_key: int = 4
    ) -> None:
        # Imported at start-up, not on the first request: tensorhouse.connector takes a second to import.
        from tensorhouse.connector import duckdb as th_duckdb

        self._register = th_duckdb.register
        self.timeout_s = timeout_s
        lim = limits.current()
        # Set at connect: temp_directory '' turns spilling off, which is what removes the
        # temp directory from the directories DuckDB lets queries read with external access off.
        self._db = duckdb.connect(
            config={
                "temp_directory": "",
                "memory_limit": f"{lim.viewer_memory_limit_bytes}B",
                "threads": max(1, lim.viewer_threads),
            }
        )
        if udfs:
            try:
                register_limited_udfs(self._db, lim.viewer_max_udf_output_bytes)
            except Exception as err:  # the viewer works without them
                log.warning("tensor UDFs not available in the viewer: %s", err)
        for stmt in _LOCKDOWN:
            self._db.execute(stmt)
        self._lock = threading.Lock()
        self._idle: OrderedDict[tuple[Any, ...], list[duckdb.DuckDBPyConnection]] = OrderedDict()
        self._max_keys, self._per_key = max_keys, per_key

    @contextmanager
    def cursor(
        self, key: tuple[Any, ...], tables: Mapping[str, Dataset]
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._lock:
            idle = self._idle.get(key)
            cur = idle.pop() if idle else None
        if cur is None:
            cur = self._db.cursor()
            for name, ds in tables.items():
                self._register(cur, name, ds, rowid=True)  # the viewer pages by _rowid
        try:
            yield cur
        finally:
            closing: list[duckdb.DuckDBPyConnection] = []
            with self._lock:
                pool = self._idle.setdefault(key, [])
                self._idle.move_to_end(key)
                (pool if len(pool) < self._per_key else closing).append(cur)
                while len(self._idle) > self._max_keys:
                    closing.extend(self._idle.popitem(last=False)[1])
            for c in closing:
                c.close()

    def query(
        self, key: tuple[Any, ...], tables: Mapping[str, Dataset], sql: str
    ) -> list[tuple[Any, ...]]:
        """Run one checked SELECT; DuckDB errors become ApiError 400, a timeout interrupts it."""
        sql = single_select(sql)
        with self.cursor(key, tables) as cur:
            timer = threading.Timer(self.timeout_s, cur.interrupt)
            timer.daemon = True
            timer.start()
            try:
                return cur.execute(sql).fetchall()
            except duckdb.InterruptException:
                raise ApiError(
                    400, f"the query ran longer than {self.timeout_s:g} s and was stopped"
                ) from None
            except duckdb.Error as err:
                raise ApiError(400, str(err)) from None
            finally:
                timer.cancel()

    def columns(
        self, key: tuple[Any, ...], tables: Mapping[str, Dataset], sql: str
    ) -> list[tuple[str, str]]:
        """Names and DuckDB types of a SELECT's result, without running it."""
        sql = single_select(sql)
        with self.cursor(key, tables) as cur:
            try:
                rel = cur.sql(sql)
                return [(n, str(t)) for n, t in zip(rel.columns, rel.types, strict=True)]
            except duckdb.Error as err:
                raise ApiError(400, str(err)) from None

    def close(self) -> None:
        with self._lock:
            self._idle.clear()
        self._db.close()  # closes its cursors too


class _LRU(Generic[V]):
    """A small thread-safe LRU dict."""

    def __init__(self, size: int) -> None:
        self._d: OrderedDict[Hashable, V] = OrderedDict()
        self._size = size
        self._lock = threading.Lock()

    def get_or(self, key: Hashable, make: Callable[[], V]) -> V:
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
        value = make()  # outside the lock: may run a query
        with self._lock:
            self._d[key] = value
            while len(self._d) > self._size:
                self._d.popitem(last=False)
        return value


# -- the API --------------------------------------------------------------------------


class ViewerAPI:
    """The viewer's endpoints as methods returning JSON-ready dicts; ApiError for client errors.

    ``version``/``tag``/``branch`` pick the default version (what requests
    without their own get); without them the default follows the latest
    version of the branch each time :meth:`info` is asked for it.
    """

    def __init__(
        self,
        uri: str,
        *,
        version: int | None = None,
        tag: str | None = None,
        branch: str | None = None,
        storage_options: Mapping[str, Any] | None = None,
        query_timeout_s: float = 30.0,
        udfs: bool = True,
    ) -> None:
        self.uri = uri
        self.storage_options = dict(storage_options or {})
        self._default_ref = Ref(version, tag, branch)
        self._follow_latest = version is None and tag is None
        self._datasets: _LRU[Dataset] = _LRU(16)
        self._counts: _LRU[int] = _LRU(256)
        self._histories: _LRU[list[dict[str, Any]]] = _LRU(16)
        self._default = self._open(self._default_ref)
        self._sessions = _Sessions(timeout_s=query_timeout_s, udfs=udfs)

    # -- datasets ---------------------------------------------------------------------
    def _open(self, ref: Ref) -> Dataset:
        try:
            return open_dataset(
                self.uri,
                version=ref.version,
                tag=ref.tag,
                branch=ref.branch,
                storage_options=self.storage_options,
            )
        except VersionNotFoundError as err:
            raise ApiError(404, str(err)) from None
        except ValueError as err:
            raise ApiError(400, str(err)) from None

    def dataset(self, ref: Ref) -> Dataset:
        """The dataset at ``ref`` (opened once per branch and version)."""
        if ref.is_default:
            return self._default
        if ref.version is None:  # a tag, or the latest of a branch: look it up now
            ds = self._open(ref)
            return self._datasets.get_or((ds.branch_name, ds.version), lambda: ds)
        return self._datasets.get_or(
            (ref.branch or refs.MAIN, ref.version), lambda: self._open(ref)
        )

    def _history(self, latest: Dataset) -> list[dict[str, Any]]:
        return self._histories.get_or(
            (latest.branch_name, latest.version),
            lambda: [
                {
                    "version": h.version,
                    "timestamp": h.timestamp.isoformat(),
                    "operation": h.operation,
                    "message": h.message,
                    "rows": h.num_rows,
                }
                for h in latest.history()
            ],
        )

    # -- endpoints --------------------------------------------------------------------
    def info(self, ref: Ref) -> dict[str, Any]:
        """Schema, rows, version, the branch's history, tags and branches."""
        t0 = time.perf_counter()
        ds = self.dataset(ref)
        latest = self.dataset(Ref(branch=ds.branch_name))
        if ref.is_default and self._follow_latest:
            self._default = ds = latest
        store, history = ds.store, self._history(latest)
        tags = [
            {"name": n, "branch": t.branch, "version": t.version}
            for n, t in sorted(refs.list_tags(store).items())
        ]
        return {
            "uri": self.uri,
            "version": ds.version,
            "branch": ds.branch_name,
            "rows": len(ds),
            "latest_version": history[-1]["version"] if history else ds.version,
            "schema": schema_doc(ds),
            "history": history,
            "versions": [h["version"] for h in history],
            "tags": tags,
            "branches": refs.list_branches(store),
            "read_only": True,
            "elapsed_ms": round((time.perf_counter() - t0) * 1000, 2),
        }

    def rows(
        self,
        ref: Ref,
        *,
        where: str | None = None,
        sql: str | None = None,
        offset: int = 0,
        limit: int = 48,
    ) -> dict[str, Any]:
        """A page of rows matching a WHERE expression or returned by a full SELECT over ``ds``."""
        t0 = time.perf_counter()
        offset, limit = _page(offset, limit)
        if where and where.strip() and sql and sql.strip():
            raise ApiError(400, "give where= or sql=, not both")
        ds = self.dataset(ref)
        key, tables = ("ds", ds.branch_name, ds.version), {"ds": ds}
        extras: list[str] = []
        if sql and sql.strip():
            body = single_select(sql)
            cols = self._sessions.columns(key, tables, body)
            if ROWID not in [c for c, _ in cols]:
                raise ApiError(
                    400,
                    "the query must return the _rowid column, e.g. SELECT _rowid, label FROM ds",
                )
            # Dataset columns are shown from the dataset; BLOBs would make DuckDB read every image up to the page.
            extras = [c for c, t in cols if c != ROWID and c not in ds.schema and t != "BLOB"][
                :MAX_EXTRAS
            ]
            types = dict(cols)
            projection = ", ".join([quote_ident(ROWID), *(_truncated(c, types[c]) for c in extras)])
            page_sql = f"SELECT {projection} FROM (\n{body}\n) AS q LIMIT {limit} OFFSET {offset}"
            count_sql = f"SELECT count(*) FROM (\n{body}\n) AS q"
        else:
            cond = f" WHERE (\n{check_where(where)}\n)" if where and where.strip() else ""
            page_sql = f"SELECT _rowid FROM ds{cond} ORDER BY _rowid LIMIT {limit} OFFSET {offset}"
            count_sql = f"SELECT count(*) FROM ds{cond}"
        data = self._sessions.query(key, tables, page_sql)
        total = self._count(key, tables, count_sql)
        rowids = [r[0] for r in data]
        if any(not isinstance(r, int) for r in rowids):
            raise ApiError(400, "_rowid must be the dataset's integer row ids (not NULL)")
        cells = self._cells(ds, rowids)
        rows = [
            {
                "_rowid": r[0],
                "cells": c,
                "extra": {
                    n: jsonable(v, max_items=MAX_GRID_ITEMS, max_chars=GRID_TEXT)
                    for n, v in zip(extras, r[1:], strict=True)
                },
            }
            for r, c in zip(data, cells, strict=True)
        ]
        return {
            "version": ds.version,
            "branch": ds.branch_name,
            "offset": offset,
            "limit": limit,
            "total": total,
            "extras": extras,
            "rows": rows,
            "elapsed_ms": round((time.perf_counter() - t0) * 1000, 2),
        }

    def _count(self, key: tuple[Any, ...], tables: Mapping[str, Dataset], sql: str) -> int:
        """A count query's answer, cached: versions never change."""
        return self._counts.get_or(
            (key, sql), lambda: int(self._sessions.query(key, tables, sql)[0][0])
        )

    def _rows_of(self, ds: Dataset, rowids: list[int], status: int) -> np.ndarray:
        try:
            return ds.reader.rows_of_rowids(np.asarray(rowids, dtype=np.int64))
        except KeyError as err:
            raise ApiError(
                status, f"{err.args[0]} (version {ds.version}, branch {ds.branch_name!r})"
            ) from None

    def _cells(self, ds: Dataset, rowids: list[int]) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = [{} for _ in rowids]
        if not rowids:
            return out
        rows = self._rows_of(ds, rowids, 400)
        for name, ctype in ds.schema.columns:
            kind = cell_kind(ctype)
            if kind not in LIGHT_KINDS:
                continue
            values = to_arrow(ds.reader.read_rows(name, ctype, rows), ctype).to_pylist()
            for cell, v in zip(out, values, strict=True):
                cell[name] = grid_cell(kind, ctype, v)
        return out

    def sample(self, ref: Ref, rowid: int) -> dict[str, Any]:
        """Every column of one row, tensors summarised; ApiError 404 for an unknown row id."""
        ds = self.dataset(ref)
        rows = self._rows_of(ds, [rowid], 404)
        columns = []
        for name, ctype in ds.schema.columns:
            kind = cell_kind(ctype)
            batch = ds.reader.read_rows(name, ctype, rows)
            value = (
                None
                if batch.is_null(0)
                else detail_value(kind, ctype, batch_to_values(batch, ctype, decode=False)[0])
            )
            columns.append({"name": name, "kind": kind, "label": type_label(ctype), "value": value})
        return {
            "_rowid": rowid,
            "version": ds.version,
            "branch": ds.branch_name,
            "columns": columns,
        }

    def image_source(
        self, ref: Ref, rowid: int, column: str
    ) -> tuple[Dataset, Callable[[], ImageSource]]:
        """Check that a row has an image column now; return its dataset and a loader of the stored image."""
        ds = self.dataset(ref)
        if column not in ds.schema:
            raise ApiError(404, f"no column {column!r}; columns are {', '.join(ds.columns)}")
        ctype = ds.schema[column]
        if not isinstance(ctype, Image):
            raise ApiError(400, f"column {column!r} is {type_label(ctype)}, not an image")
        rows = self._rows_of(ds, [rowid], 404)

        def load() -> ImageSource:
            value = batch_to_values(ds.reader.read_rows(column, ctype, rows), ctype, decode=False)[
                0
            ]
            if value is None:
                raise ApiError(404, f"row {rowid} has no image in column {column!r}")
            return value, ctype.compression

        return ds, load

    def diff(
        self, a: Ref, b: Ref, *, kind: str = "added", offset: int = 0, limit: int = 48
    ) -> dict[str, Any]:
        """What changed from version ``a`` to ``b``: schema, counts, and a page of added/removed/changed rows.

        Rows pair up by ``_rowid`` (updates keep it). Changed rows differ in a
        column both versions share with the same type; image and binary
        columns are not compared (that would read every image twice).
        """
        t0 = time.perf_counter()
        if kind not in ("added", "removed", "changed"):
            raise ApiError(400, f"kind must be added, removed or changed, not {kind!r}")
        offset, limit = _page(offset, limit)
        da, db = self.dataset(a), self.dataset(b)
        key, tables = (
            ("diff", da.branch_name, da.version, db.branch_name, db.version),
            {"a": da, "b": db},
        )
        sa, sb = dict(da.schema.columns), dict(db.schema.columns)
        common = [n for n in sb if n in sa and sa[n] == sb[n]]
        compared = [n for n in common if cell_kind(sb[n]) not in ("image", "binary")]
        cond = (
            " OR ".join(f"a.{quote_ident(n)} IS DISTINCT FROM b.{quote_ident(n)}" for n in compared)
            or "false"
        )
        queries = {
            "added": "SELECT _rowid FROM b ANTI JOIN a USING (_rowid)",
            "removed": "SELECT _rowid FROM a ANTI JOIN b USING (_rowid)",
            "changed": f"SELECT _rowid FROM a JOIN b USING (_rowid) WHERE {cond}",
        }
        counts = {
            k: self._count(key, tables, f"SELECT count(*) FROM ({q}) AS d")
            for k, q in queries.items()
        }
        page = self._sessions.query(
            key,
            tables,
            f"SELECT _rowid FROM ({queries[kind]}) AS d ORDER BY _rowid "
            f"LIMIT {limit} OFFSET {offset}",
        )
        src, rowids = (da if kind == "removed" else db), [r[0] for r in page]
        rows = [
            {"_rowid": r, "cells": c, "extra": {}}
            for r, c in zip(rowids, self._cells(src, rowids), strict=True)
        ]
        return {
            "from": {"version": da.version, "branch": da.branch_name},
            "to": {"version": db.version, "branch": db.branch_name},
            "schema": {
                "added": [n for n in sb if n not in sa],
                "removed": [n for n in sa if n not in sb],
                "changed": [n for n in sb if n in sa and sa[n] != sb[n]],
            },
            "compared_columns": compared,
            "counts": counts,
            "kind": kind,
            "total": counts[kind],
            "offset": offset,
            "limit": limit,
            "rows": rows,
            "version": src.version,
            "branch": src.branch_name,
            "elapsed_ms": round((time.perf_counter() - t0) * 1000, 2),
        }

    def close(self) -> None:
        self._sessions.close()


def _page(offset: int, limit: int) -> tuple[int, int]:
    if offset < 0:
        raise ApiError(400, f"offset must be >= 0, got {offset}")
    if not 1 <= limit <= MAX_LIMIT:
        raise ApiError(400, f"limit must be 1..{MAX_LIMIT}, got {limit}")
    return offset, limit
