"""Engines read a registered dataset's tabular columns with their own Parquet readers.

The tabular columns of a fragment are one plain Parquet file
(:func:`tensorhouse.format.native_files.native_files`). When every column
of a registered version lives in such files on a local disk, the table the
user named reads them with the engine's own reader:

- **DuckDB**: a view over ``read_parquet([...])`` (physical column names
  renamed to the dataset's; a ``CAST`` only where DuckDB's Parquet type
  differs from the type the Python scan shows, so ``DESCRIBE`` is the same
  either way). Deleted rows are filtered by ``file_row_number``.
- **DataFusion**: one Parquet table over the version's files (a private
  directory of links to exactly them), registered with the Arrow schema the
  Python scan declares (so the reader produces those types and field
  metadata directly), renamed in a view. A file with deleted rows is a
  table of its own, unioned, filtered by ``file_row_index()``.

The engine then has what it has for any Parquet table: row-group
statistics, its own parallel scan with no GIL, and runtime join filters.

The companion ``__tensorhouse_*`` registration (the Python Arrow dataset
with ``_rowid``) stays: the loader's late materialization, ``dataset_behind``
and ``rowid=True`` read it. The native relation is registered under an
internal name recorded in :mod:`.rowids` as standing for that companion, so
a query over the user's table still leads to the companion without private
attributes.

The Python scan is kept, with the reason in :class:`ReadPath` (and the
``tensorhouse.native`` debug log), when:

- ``native=False``, or the environment sets ``TENSORHOUSE_NATIVE=0``;
- ``refresh=True`` (the files change with every version) or ``rowid=True``;
- a column is not in a Parquet group file (old layout, a column added later,
  a tensor column), or the store is not a local disk;
- the dataset has no rows, or more than :data:`MAX_INLINE_DELETED` deleted
  rows (the view would carry too long a ``NOT IN`` list);
- the engine's reader cannot give the same types.

Example:
    >>> import tensorhouse as th
    >>> from tensorhouse.connector.arrow_dataset import arrow_dataset
    >>> ds = th.create("memory://doc-native", {"x": "int64"})
    >>> path = choose(arrow_dataset(ds), native=False, rowid=False, refresh=False, engine="duckdb")
    >>> path.native, path.reason
    (False, 'native=False')
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import weakref
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pyarrow as pa

from tensorhouse.format.chunks.group import in_group
from tensorhouse.format.native_files import NativeFile, native_files
from tensorhouse.format.rowid_reads import RowIdReader
from tensorhouse.types import ROWID

#: ``TENSORHOUSE_NATIVE=0`` turns native reads off for every registration that does not pass ``native=True``.
ENV = "TENSORHOUSE_NATIVE"
#: Above this many deleted rows, the view would carry too long a ``NOT IN`` list: Python scan.
MAX_INLINE_DELETED = 10_000
#: Datasets with tensor columns are read natively in DuckDB too (tabular columns by
#: ``read_parquet``, tensors by row id); ``TENSORHOUSE_NATIVE_MIXED=0`` keeps them on the Python
#: scan. On bench_sql's 1M rows, queries that do not name the tensor ran at 0.3-0.6x the Python
#: scan and met every Parquet target; a full scan of the tensor (top-10 cosine) ran at 1.09x the
#: Python scan on a quiet machine, 1.5-3.2x on a loaded one (DuckDB calls the row-id function
#: per 2,048-row vector under the GIL), and 0.33-0.42x DuckDB over Parquet either way.
MIXED_ENV = "TENSORHOUSE_NATIVE_MIXED"
#: The suffix of the internal name of a native relation (after the companion's name).
NATIVE_SUFFIX = "_native"

log = logging.getLogger("tensorhouse.native")


@dataclass(frozen=True)
class ReadPath:
    """How a registered table is read: ``native`` (the engine's Parquet reader) or the Python scan, and why."""

    native: bool
    reason: str
    files: tuple[NativeFile, ...] = field(default=(), repr=False)
    #: Columns not in the files (tensors), read by row id through a function of the engine's.
    by_rowid: tuple[str, ...] = ()

    @property
    def deleted_rows(self) -> int:
        return sum(len(f.deleted) for f in self.files)


def env_enabled() -> bool:
    """False when ``TENSORHOUSE_NATIVE`` is set to 0/false/no/off."""
    return os.environ.get(ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def files_of(dataset: Any) -> tuple[NativeFile, ...] | None:
    """The native files of all columns of ``dataset``'s version, or None (the format's accessor)."""
    out = native_files(dataset)
    return None if out is None else tuple(out)


def mixed_enabled() -> bool:
    """False when ``TENSORHOUSE_NATIVE_MIXED`` is set to 0/false/no/off (on by default)."""
    return os.environ.get(MIXED_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def _local(path: str) -> bool:
    return "://" not in path and os.path.isabs(path) and os.path.isfile(path)


def choose(
    table: Any,
    *,
    native: bool | None,
    rowid: bool,
    refresh: bool,
    engine: str,
    files: Sequence[NativeFile] | None = None,
) -> ReadPath:
    """Whether ``table`` (a TensorhouseArrowDataset) can be read natively by ``engine``, and why (not).

    ``files``: the native files, when the caller already has them (else the format's accessor).
    """

    def no(reason: str) -> ReadPath:
        return ReadPath(False, reason)

    if native is False:
        return no("native=False")
    if native is None and not env_enabled():
        return no(f"{ENV}={os.environ.get(ENV)}")
    if refresh:
        return no("refresh=True reads the latest version at each query, so its files change")
    if rowid:
        return no("rowid=True reads _rowid from the Python scan")
    names = [n for n in table.schema.names if n != ROWID]
    by_rowid: tuple[str, ...] = ()
    if files is None:
        try:
            got = files_of(table.dataset)
            if got is None and engine == "duckdb" and mixed_enabled():
                # Tensor columns stay in their chunk files: the tabular ones are read natively,
                # the tensors by row id (a function of DuckDB's), only when a query names them.
                schema = table.dataset.schema
                tabular = [n for n in names if in_group(schema[n])]
                if tabular and len(tabular) < len(names):
                    got = native_files(table.dataset, tabular)
                    by_rowid = tuple(n for n in names if n not in tabular)
        except Exception as err:  # any failure of the accessor leaves the Python scan, which works
            return no(f"the native files could not be listed ({type(err).__name__}: {err})")
        if got is None:
            return no(
                "a column is not stored in a Parquet group file (old layout, added later, or a tensor)"
            )
        files = got
    files = tuple(files)
    if not files:
        return no("the dataset has no rows")
    names = [n for n in names if n not in by_rowid]
    for f in files:
        missing = [n for n in names if n not in f.columns]
        if missing:
            return no(f"{f.path} does not hold column(s) {missing}")
        if not _local(f.path):
            return no(f"{f.path} is not a file on a local disk")
    deleted = sum(len(f.deleted) for f in files)
    if deleted > MAX_INLINE_DELETED:
        return no(f"{deleted} deleted rows (more than {MAX_INLINE_DELETED} to filter in the view)")
    why = f"{len(files)} Parquet file(s)" + (
        f", {deleted} deleted row(s) filtered" if deleted else ""
    )
    if by_rowid:
        why += f", {', '.join(by_rowid)} read by row id"
    return ReadPath(True, why, files, by_rowid)


#: registration (its Arrow dataset) -> how its user-named table is read; gone with the registration.
_PATHS: weakref.WeakKeyDictionary[Any, ReadPath] = weakref.WeakKeyDictionary()


def remember_path(table: Any, path: ReadPath) -> None:
    _PATHS[table] = path


def path_of(table: Any) -> ReadPath | None:
    """How the table registered over ``table`` (a TensorhouseArrowDataset) is read, if recorded."""
    return _PATHS.get(table)


def report(name: str, engine: str, path: ReadPath) -> None:
    log.debug(
        "%s table %r: %s (%s)",
        engine,
        name,
        "native Parquet reader" if path.native else "Python scan",
        path.reason,
    )


# -- DuckDB -----------------------------------------------------------------------------
def quote(name: str) -> str:
    """A SQL identifier in double quotes."""
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def _runs(files: Sequence[NativeFile]) -> list[list[NativeFile]]:
    """Consecutive files read by one ``read_parquet``: same physical names, no deleted rows.

    A file with deleted rows is a run of its own (it needs ``file_row_number``).
    """
    out: list[list[NativeFile]] = []
    for f in files:
        prev = out[-1][-1] if out else None
        if (
            prev is not None
            and not len(f.deleted)
            and not len(prev.deleted)
            and dict(prev.columns) == dict(f.columns)
        ):
            out[-1].append(f)
            continue
        out.append([f])
    return out


def duckdb_select(
    files: Sequence[NativeFile],
    names: Sequence[str],
    casts: Mapping[str, str],
    functions: Mapping[str, str] | None = None,
) -> str:
    """The SELECT reading ``files`` with the dataset's column ``names`` (``casts``: name -> DuckDB type).

    ``functions``: column -> the DuckDB function reading it by row id (a column not in the
    files); its argument is the row id, ``first_rowid + file_row_number``.
    """
    functions = functions or {}
    parts = []
    for run in _runs(files):
        mapping = run[0].columns
        if len(run) == 1:
            first = str(run[0].first_rowid)
        else:
            # file_index: DuckDB's position of the row's file in the list (a virtual column)
            first = (
                "(CASE file_index "
                + " ".join(f"WHEN {i} THEN {f.first_rowid}" for i, f in enumerate(run))
                + " END)"
            )
        cols = ", ".join(
            (
                f"{quote(functions[n])}({first} + file_row_number)"
                if n in functions
                else f"CAST({quote(mapping[n])} AS {casts[n]})"
                if n in casts
                else quote(mapping[n])
            )
            + f" AS {quote(n)}"
            for n in names
        )
        paths = "[" + ", ".join(_literal(f.path) for f in run) + "]"
        deleted = run[0].deleted
        extra = ""
        if functions:
            extra = ", file_row_number = true"
        if len(deleted):
            rows = ", ".join(str(int(r)) for r in deleted)
            parts.append(
                f"SELECT {cols} FROM read_parquet({paths}, file_row_number = true) "
                f"WHERE file_row_number NOT IN ({rows})"
            )
        else:
            # DuckDB reads statistics from the first file of a list only, unless told: then a
            # key column is not known to hold no null (IS NOT NULL estimated at a fifth of the
            # rows) and the row count is the first file's times the files: join sides flip.
            parts.append(
                f"SELECT {cols} FROM read_parquet({paths}, maximum_files_for_stats = {len(run)}{extra})"
            )
    return " UNION ALL ".join(parts)


def function_prefix(companion: str) -> str:
    """The prefix of the names of the row-id functions of a registration (dropped with it)."""
    return companion + "_rowid_read_"


def _duckdb_functions(con: Any, companion: str, table: Any, path: ReadPath) -> dict[str, str]:
    """Register one DuckDB function per column of ``path.by_rowid``: row ids -> that column's rows."""
    import duckdb

    out: dict[str, str] = {}
    types = dict(
        con.execute(
            f"SELECT column_name, column_type FROM (DESCRIBE {quote(companion)})"
        ).fetchall()
    )
    for i, name in enumerate(path.by_rowid):
        reader = RowIdReader(table.dataset, name, arrow_type=table.schema.field(name).type)
        fname = f"{function_prefix(companion)}{i}"
        con.create_function(
            fname,
            _reading(reader),
            [duckdb.sqltype("BIGINT")],
            duckdb.sqltype(types[name]),
            type="arrow",
            side_effects=False,
        )
        out[name] = fname
    return out


def _reading(reader: RowIdReader) -> Any:
    """DuckDB's Arrow function over ``reader``: one argument, the row ids of a vector."""

    def read(ids: Any) -> pa.Array:
        if isinstance(ids, pa.ChunkedArray):
            ids = ids.combine_chunks()
        return reader.read(ids.to_numpy(zero_copy_only=False))

    return read


def drop_functions(con: Any, companion: str) -> None:
    """Remove the row-id functions registered for ``companion`` (none: nothing)."""
    prefix = function_prefix(companion)
    got = con.execute(
        "SELECT DISTINCT function_name FROM duckdb_functions() WHERE starts_with(function_name, ?)",
        [prefix],
    ).fetchall()
    for (fname,) in got:
        con.remove_function(fname)


def duckdb_view(
    con: Any, view: str, companion: str, path: ReadPath, table: Any = None
) -> str | None:
    """Create temp view ``view`` reading ``path.files`` with the companion's column types.

    ``table`` (the registration's Arrow dataset) is needed when ``path.by_rowid`` names columns.
    Returns None on success, else why the native view could not be made (nothing is left behind).
    """
    import duckdb

    functions: dict[str, str] = {}
    try:
        want = con.execute(
            f"DESCRIBE SELECT * EXCLUDE ({quote(ROWID)}) FROM {quote(companion)}"
        ).fetchall()
        names = [r[0] for r in want]
        if path.by_rowid:
            functions = _duckdb_functions(con, companion, table, path)
        raw = duckdb_select(path.files, names, {}, functions)
        got = con.execute(f"DESCRIBE {raw}").fetchall()
        casts = {w[0]: w[1] for w, g in zip(want, got, strict=True) if w[1] != g[1]}
        sql = duckdb_select(path.files, names, casts, functions) if casts else raw
        if casts:
            got = con.execute(f"DESCRIBE {sql}").fetchall()
            if [(r[0], r[1]) for r in got] != [(r[0], r[1]) for r in want]:
                raise _Mismatch(f"DuckDB reads the files as {got}, not {want}")
            # Some casts bind but fail on the first value (a Parquet INT64 duration to INTERVAL):
            # cast one row of the first file now rather than fail the user's queries.
            first = duckdb_select(path.files[:1], names, casts, functions)
            con.execute(
                f"SELECT {', '.join(quote(n) for n in casts)} FROM ({first}) LIMIT 1"
            ).fetchall()
        con.execute(f"CREATE OR REPLACE TEMP VIEW {quote(view)} AS {sql}")
    except (duckdb.Error, _Mismatch) as err:
        if functions:
            drop_functions(con, companion)
        if isinstance(err, _Mismatch):
            return str(err)
        return f"DuckDB could not read the files natively: {err}"
    return None


class _Mismatch(Exception):
    pass


# -- DataFusion -------------------------------------------------------------------------
def datafusion_view(ctx: Any, prefix: str, table: Any, path: ReadPath) -> tuple[Any, list[str]]:
    """A DataFrame reading ``path.files`` with ``table``'s declared Arrow schema (``_rowid`` left out).

    Each run of files (see :func:`_runs`) is registered as table ``<prefix>_<i>``; returns
    (the DataFrame, those names).

    datafusion-python 55 registers a Parquet table over one path only (a file or a
    directory). A union of one table per file works, but costs DataFusion its
    plan-wide view of the table (TPC-H Q12 at SF1: 1.4 s against 0.75 s for one table
    over the same files). So a run of several files is one table over a private
    directory of links to exactly those files (made here, removed with the registration):
    the version's files, never a file another version or a writer adds next to them.
    """
    names: list[str] = []
    try:
        return _datafusion_union(ctx, prefix, table, path, names), names
    except Exception:  # leave no half-registered table behind; the caller falls back
        for name in names:
            if ctx.table_exist(name):
                ctx.deregister_table(name)
        raise


def _datafusion_union(ctx: Any, prefix: str, table: Any, path: ReadPath, names: list[str]) -> Any:
    from datafusion import col

    fields = [f for f in table.schema if f.name != ROWID]
    df = None
    for i, run in enumerate(_runs(path.files)):
        where = _linked(table, run) if len(run) > 1 else None
        tables = (
            [(f"{prefix}_{i}", where, run[0])]
            if where is not None
            else [(f"{prefix}_{i}_{j}", g.path, g) for j, g in enumerate(run)]
        )
        for name, location, f in tables:
            physical = pa.schema([fl.with_name(f.columns[fl.name]) for fl in fields])
            suffix = ".parquet" if location == where else os.path.splitext(location)[1]
            ctx.register_parquet(name, location, file_extension=suffix, schema=physical)
            names.append(name)
            if len(f.deleted):
                # file_row_index() is DataFusion's row number within the file (right under
                # filters and byte-range splits, checked in tests/test_native.py).
                cols = ", ".join(
                    f"{quote(f.columns[fl.name])} AS {quote(fl.name)}" for fl in fields
                )
                rows = ", ".join(str(int(r)) for r in f.deleted)
                part = ctx.sql(
                    f"SELECT {cols} FROM {quote(name)} WHERE file_row_index() NOT IN ({rows})"
                )
            else:
                part = ctx.table(name).select(
                    *[col(f.columns[fl.name]).alias(fl.name) for fl in fields]
                )
            df = part if df is None else df.union(part)
    return df


def _linked(owner: Any, files: Sequence[NativeFile]) -> str | None:
    """A new directory of symbolic links to ``files`` (removed when ``owner`` is), or None if links fail."""
    where = tempfile.mkdtemp(prefix="tensorhouse-native-")
    try:
        for i, f in enumerate(files):
            os.symlink(f.path, os.path.join(where, f"{i:08d}.parquet"))
    except OSError as err:
        log.debug("no links for DataFusion (%s): one table per file", err)
        shutil.rmtree(where, ignore_errors=True)
        return None
    weakref.finalize(owner, shutil.rmtree, where, True)
    return where + os.sep


__all__ = [
    "ENV",
    "MAX_INLINE_DELETED",
    "MIXED_ENV",
    "NATIVE_SUFFIX",
    "ReadPath",
    "choose",
    "datafusion_view",
    "drop_functions",
    "duckdb_select",
    "duckdb_view",
    "env_enabled",
    "files_of",
    "function_prefix",
    "mixed_enabled",
    "path_of",
    "remember_path",
    "report",
]
