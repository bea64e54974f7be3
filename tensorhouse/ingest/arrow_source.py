"""Ingest Parquet files, CSV files and any Arrow source (table, record-batch reader, C stream).

Column types come from ``types=`` (``{"img": th.Image("jpeg"), "emb":
th.Embedding(128)}``; values may also be dtype names or stored type dicts),
then from tensorhouse metadata in the Arrow schema (a file written from a
tensorhouse query keeps its types), else they are inferred with
:func:`tensorhouse.types.infer_from_arrow`. Appending to an existing dataset
uses its schema.

An ``Image`` column accepts, per row: encoded bytes (``binary``), a Hugging
Face style ``struct<bytes, path>``, or a file path (``string``, relative to
``base_dir``: by default the directory of the Parquet/CSV file, or the
working directory for :func:`arrow`). A row whose image is unreadable or
corrupt is skipped with a warning (``strict=True``: IngestError).

Rows are re-batched into commits of ``batch_rows`` rows or ~``batch_bytes``
(whichever comes first), so batch ``i`` is the same rows on every run and
re-running after an interruption resumes where it stopped.

Example:
    >>> import os, tempfile, pyarrow as pa, pyarrow.parquet as pq, tensorhouse as th
    >>> path = os.path.join(tempfile.mkdtemp(), "part-0.parquet")
    >>> pq.write_table(pa.table({"label": [0, 1], "emb": [[0.5, 1.0], [1.5, 2.0]]}), path)
    >>> _ = th.ingest.parquet(path, "memory://doc-parquet", types={"emb": th.Embedding(2)}, progress=False)
    >>> th.open("memory://doc-parquet").take([1])["emb"]
    array([[1.5, 2. ]], dtype=float32)
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from itertools import chain
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from tensorhouse.errors import CodecError, DatasetNotFoundError, SchemaError
from tensorhouse.format.dataset import open as open_dataset
from tensorhouse.ingest.engine import (
    BATCH_BYTES,
    BATCH_ROWS,
    IngestError,
    IngestReport,
    Loaded,
    PlannedBatch,
    check_batch_limits,
    fingerprint,
    run_batches,
)
from tensorhouse.ingest.images import Validate, map_slices, prepare_image, read_file
from tensorhouse.types import ColumnType, Image, Schema, TypeLike, as_type

#: Tabular rows are small: the byte limit usually decides a batch, this caps the count.
#: A batch is one commit and one chunk per column: bigger batches compress better and
#: cost fewer files and fsyncs (65,536 rows made TPC-H's lineitem 1,500 chunk files at SF1).
ARROW_BATCH_ROWS = 1 << 20

TypesArg = Mapping[str, TypeLike | Mapping[str, Any]] | None


def column_type(value: TypeLike | Mapping[str, Any]) -> ColumnType:
    """A ColumnType from a ColumnType, a dtype name (``"int64"``) or a stored type dict."""
    if isinstance(value, Mapping):
        return ColumnType.from_dict(value)
    return as_type(value)


def expand_paths(path_or_glob: str | Sequence[str]) -> list[str]:
    """Sorted files matching a path, a glob (``data/*.parquet``, ``**`` recursive) or ``{a,b}``/``{000..009}``."""
    patterns = [path_or_glob] if isinstance(path_or_glob, str) else list(path_or_glob)
    out: set[str] = set()
    for pattern in patterns:
        for p in expand_braces(pattern):
            matches = (
                glob.glob(p, recursive=True)
                if glob.has_magic(p)
                else ([p] if os.path.exists(p) else [])
            )
            out.update(m for m in matches if os.path.isfile(m))
    if not out:
        raise IngestError(f"no files match {path_or_glob!r}")
    return sorted(out)


_RANGE = re.compile(r"\{(\d+)\.\.(\d+)\}")
_ALTERNATIVES = re.compile(r"\{([^{}]*,[^{}]*)\}")


def expand_braces(pattern: str) -> list[str]:
    """WebDataset-style brace expansion: ``shard-{000..002}.tar`` and ``{train,val}.tar``."""
    m = _RANGE.search(pattern)
    if m:
        a, b = m.group(1), m.group(2)
        width = len(a)
        return [
            x
            for i in range(int(a), int(b) + 1)
            for x in expand_braces(pattern[: m.start()] + str(i).zfill(width) + pattern[m.end() :])
        ]
    m = _ALTERNATIVES.search(pattern)
    if m:
        return [
            x
            for alt in m.group(1).split(",")
            for x in expand_braces(pattern[: m.start()] + alt + pattern[m.end() :])
        ]
    return [pattern]


def resolve_schema(arrow_schema: pa.Schema, types: TypesArg) -> Schema:
    """The dataset schema for an Arrow source: ``types`` first, then field metadata, then inference."""
    given = {name: column_type(t) for name, t in (types or {}).items()}
    unknown = [n for n in given if n not in arrow_schema.names]
    if unknown:
        raise SchemaError(
            f"types= names column(s) {unknown} that the source does not have; it has "
            f"{arrow_schema.names}"
        )
    cols: dict[str, ColumnType] = {}
    for f in arrow_schema:
        if f.name in given:
            cols[f.name] = given[f.name]
            continue
        try:
            cols[f.name] = ColumnType.from_arrow_field(f)
        except SchemaError as err:
            raise SchemaError(f"{err} (e.g. types={{{f.name!r}: th.Binary()}})") from None
    return Schema.of(cols)


def _existing_schema(uri: str, storage_options: Mapping[str, Any] | None) -> Schema | None:
    try:
        return open_dataset(uri, storage_options=storage_options).schema
    except DatasetNotFoundError:
        return None


def rebatch(
    tables: Iterable[pa.RecordBatch | pa.Table], batch_rows: int, batch_bytes: int
) -> Iterator[pa.Table]:
    """Regroup a stream of batches into tables of ``batch_rows`` rows or about ``batch_bytes``."""
    parts: list[pa.Table] = []
    rows = size = 0
    for t in tables:
        table = t if isinstance(t, pa.Table) else pa.Table.from_batches([t])
        start = 0
        while start < table.num_rows:
            take = min(table.num_rows - start, batch_rows - rows)
            piece = table.slice(start, take)
            parts.append(piece)
            rows += take
            size += piece.nbytes
            start += take
            if rows >= batch_rows or size >= batch_bytes:
                yield pa.concat_tables(parts)
                parts, rows, size = [], 0, 0
    if parts:
        yield pa.concat_tables(parts)


def _image_values(col: pa.ChunkedArray, name: str, base_dir: str | None) -> list[Any]:
    """Per row: encoded bytes, a path to read, or None; from binary, string or struct<bytes, path>."""
    t = col.type
    if pa.types.is_binary(t) or pa.types.is_large_binary(t):
        return col.to_pylist()
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return [
            None if p is None else ("path", p if base_dir is None else os.path.join(base_dir, p))
            for p in col.to_pylist()
        ]
    if pa.types.is_struct(t) and t.get_field_index("bytes") >= 0:
        out: list[Any] = []
        for row in col.to_pylist():
            if row is None:
                out.append(None)
            elif row.get("bytes") is not None:
                out.append(row["bytes"])
            elif row.get("path"):
                out.append(
                    (
                        "path",
                        row["path"] if base_dir is None else os.path.join(base_dir, row["path"]),
                    )
                )
            else:
                out.append(None)
        return out
    raise SchemaError(
        f"column {name!r}: an Image column takes binary (encoded files), string (file paths) or "
        f"struct<bytes, path> values, not {t}"
    )


def prepare_table(
    table: pa.Table,
    schema: Schema,
    first_row: int,
    pool: ThreadPoolExecutor,
    *,
    validate: Validate = "header",
    base_dir: str | None = None,
) -> Loaded:
    """Columns ready to append: images read/validated on ``pool``, rows with a bad image left out."""
    missing = [n for n in schema.names if n not in table.column_names]
    if missing:
        raise SchemaError(f"the source has no column(s) {missing} of the dataset's {schema.names}")
    images: dict[str, list[Any]] = {}
    bad: dict[int, str] = {}
    nbytes = table.select(schema.names).nbytes
    for name, ctype in schema.items():
        if not (isinstance(ctype, Image) and ctype.compression is not None):
            continue
        codec = ctype.compression
        values = _image_values(table.column(name), name, base_dir)

        def one(
            v: Any, codec: Any = codec, quality: int = ctype.quality
        ) -> tuple[bytes | None, str | None, int]:
            if v is None:
                return None, None, 0
            read = 0  # bytes read from files (encoded bytes in the table are already counted)
            if isinstance(v, tuple):
                try:
                    v = read_file(v[1])
                except OSError as err:
                    return None, f"cannot read {v[1]}: {err.strerror or err}", 0
                read = len(v)
            try:
                return prepare_image(v, codec, validate=validate, quality=quality), None, read
            except CodecError as err:
                return None, str(err), read

        results = map_slices(one, values, pool)
        images[name] = [r[0] for r in results]
        for i, r in enumerate(results):
            if r[1] is not None:
                bad.setdefault(i, f"row {first_row + i}, column {name!r}: {r[1]}")
            nbytes += r[2]
    keep = [i for i in range(table.num_rows) if i not in bad]
    if bad:
        table = table.take(pa.array(keep, pa.int64()))
    columns: dict[str, Any] = {}
    for name in schema.names:
        if name in images:
            columns[name] = [images[name][i] for i in keep] if bad else images[name]
        else:
            columns[name] = table.column(name)
    return Loaded(columns, len(keep), nbytes, [bad[i] for i in sorted(bad)])


def _schema_and_rows(
    uri: str,
    arrow_schema: pa.Schema,
    types: TypesArg,
    batch_rows: int | None,
    storage_options: Mapping[str, Any] | None,
) -> tuple[Schema, int]:
    """The target schema (the existing dataset's, else resolved) and the batch row limit.

    Without an explicit ``batch_rows``: tabular rows are small, so the byte
    limit decides, capped at ARROW_BATCH_ROWS rows; with an image column the
    images may be file paths (a few bytes in the table, kilobytes once read),
    so the image sources' BATCH_ROWS applies.
    """
    existing = _existing_schema(uri, storage_options)
    schema = existing if existing is not None else resolve_schema(arrow_schema, types)
    if batch_rows is None:
        batch_rows = (
            BATCH_ROWS if any(isinstance(t, Image) for t in schema.values()) else ARROW_BATCH_ROWS
        )
    check_batch_limits(batch_rows, 1)
    return schema, batch_rows


def _ingest_tables(
    uri: str,
    tables: Iterator[pa.Table],
    schema: Schema,
    *,
    kind: str,
    fp: str,
    batching: tuple[int, int],
    validate: Validate,
    base_dir: str | None,
    strict: bool,
    progress: bool | None,
    total_rows: int | None,
    workers: int | None,
    storage_options: Mapping[str, Any] | None,
) -> IngestReport:
    def plan() -> Iterator[PlannedBatch]:
        first = 0
        for t in tables:
            yield PlannedBatch(
                partial(prepare_table, t, schema, first, validate=validate, base_dir=base_dir),
                t.num_rows,
            )
            first += t.num_rows

    return run_batches(
        uri,
        schema,
        plan(),
        kind=kind,
        fingerprint=fp,
        batching=batching,
        strict=strict,
        progress=progress,
        total_rows=total_rows,
        workers=workers,
        storage_options=storage_options,
    )


def _sizes(paths: Sequence[str]) -> list[tuple[str, int]]:
    return [(os.path.abspath(p), os.path.getsize(p)) for p in paths]


def _with_base(
    batches: Iterable[pa.RecordBatch], path_columns: Sequence[str], base: str
) -> Iterator[pa.RecordBatch]:
    """Make relative image paths of one file absolute against its directory, before files are mixed in a batch."""
    for b in batches:
        if path_columns:
            arrays = list(b.columns)
            for name in path_columns:
                i = b.schema.get_field_index(name)
                col = arrays[i]
                joined = pc.binary_join_element_wise(pa.scalar(base, col.type), col, os.sep)
                arrays[i] = pc.if_else(pc.starts_with(col, os.sep), col, joined)
            b = pa.RecordBatch.from_arrays(arrays, schema=b.schema)
        yield b


def _path_columns(arrow_schema: pa.Schema, types: TypesArg) -> list[str]:
    out = []
    for name, t in (types or {}).items():
        if isinstance(column_type(t), Image) and name in arrow_schema.names:
            ft = arrow_schema.field(name).type
            if pa.types.is_string(ft) or pa.types.is_large_string(ft):
                out.append(name)
    return out


def parquet(
    path_or_glob: str | Sequence[str],
    uri: str,
    *,
    types: TypesArg = None,
    columns: Sequence[str] | None = None,
    validate: Validate = "header",
    batch_rows: int | None = None,
    batch_bytes: int = BATCH_BYTES,
    strict: bool = False,
    progress: bool | None = None,
    workers: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> IngestReport:
    """Ingest Parquet files (a path, a glob such as ``data/*.parquet``, or a list) into ``uri``, in sorted order.

    ``types`` maps column -> tensorhouse type where inference is not enough,
    e.g. ``{"img": th.Image("jpeg"), "emb": th.Embedding(128)}``; ``columns``
    picks a subset. Files are streamed batch by batch (constant memory).

    Example (``types={"image": th.Image("jpeg")}`` stores a column of JPEG bytes as images):
        >>> import tempfile, pyarrow as pa, pyarrow.parquet as pq, tensorhouse as th
        >>> tmp = tempfile.mkdtemp()
        >>> for k in range(2):
        ...     pq.write_table(pa.table({"label": [k, k], "caption": ["a", "b"]}), f"{tmp}/part-{k}.parquet")
        >>> report = th.ingest.parquet(f"{tmp}/*.parquet", f"{tmp}/pets", types={"label": "int16"}, progress=False)
        >>> report.rows, th.open(f"{tmp}/pets").schema["label"]
        (4, Scalar(dtype='int16'))
    """
    import pyarrow.parquet as pq

    check_batch_limits(batch_rows or 1, batch_bytes)
    paths = expand_paths(path_or_glob)
    try:
        files = [pq.ParquetFile(p) for p in paths]
    except (pa.ArrowInvalid, OSError) as err:
        raise IngestError(f"cannot read Parquet file: {err}") from err
    arrow_schema = files[0].schema_arrow
    if columns is not None:
        arrow_schema = pa.schema([arrow_schema.field(c) for c in columns])
    for p, f in zip(paths[1:], files[1:], strict=True):
        names = f.schema_arrow.names
        if any(n not in names for n in arrow_schema.names):
            raise IngestError(
                f"{p} does not have the columns of {paths[0]}: {names} vs {arrow_schema.names}"
            )
    path_cols = _path_columns(arrow_schema, types)
    schema, rows = _schema_and_rows(uri, arrow_schema, types, batch_rows, storage_options)

    def batches() -> Iterator[pa.RecordBatch]:
        for p, f in zip(paths, files, strict=True):
            it = f.iter_batches(batch_size=min(rows, 65536), columns=arrow_schema.names)
            yield from _with_base(it, path_cols, os.path.dirname(os.path.abspath(p)))

    fp = fingerprint("parquet", 1, _sizes(paths), arrow_schema.names)
    total = sum(f.metadata.num_rows for f in files)
    return _ingest_tables(
        uri,
        rebatch(batches(), rows, batch_bytes),
        schema,
        kind="parquet",
        fp=fp,
        batching=(rows, batch_bytes),
        validate=validate,
        base_dir=None,
        strict=strict,
        progress=progress,
        total_rows=total,
        workers=workers,
        storage_options=storage_options,
    )


def csv(
    path_or_glob: str | Sequence[str],
    uri: str,
    *,
    types: TypesArg = None,
    delimiter: str = ",",
    validate: Validate = "header",
    batch_rows: int | None = None,
    batch_bytes: int = BATCH_BYTES,
    strict: bool = False,
    progress: bool | None = None,
    workers: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> IngestReport:
    """Ingest CSV files (with a header row) into ``uri``, streamed, in sorted file order.

    ``types`` fixes column types (the CSV reader then parses those columns as
    such instead of guessing per block); a column typed ``th.Image(...)``
    holds image file paths, relative to the CSV file's directory.

    Example (``types={"file": th.Image("jpeg")}`` reads the JPEG files a column names):
        >>> import tempfile, tensorhouse as th
        >>> tmp = tempfile.mkdtemp()
        >>> with open(f"{tmp}/labels.csv", "w") as f:
        ...     _ = f.write("name,label\\ncat,0\\ndog,1\\n")
        >>> report = th.ingest.csv(f"{tmp}/labels.csv", f"{tmp}/pets", types={"label": "int64"}, progress=False)
        >>> th.open(f"{tmp}/pets").to_table().to_pylist()
        [{'name': 'cat', 'label': 0}, {'name': 'dog', 'label': 1}]
    """
    import pyarrow.csv as pacsv

    check_batch_limits(batch_rows or 1, batch_bytes)
    paths = expand_paths(path_or_glob)
    given = {n: column_type(t) for n, t in (types or {}).items()}
    column_types: dict[str, pa.DataType] = {}
    for n, t in given.items():
        if t.is_scalar:
            column_types[n] = t.arrow_type()
        elif t.storage_dtype == "str" or isinstance(t, Image):
            column_types[n] = pa.string()
    parse = pacsv.ParseOptions(delimiter=delimiter)
    convert = pacsv.ConvertOptions(column_types=column_types)

    def reader(p: str) -> pa.RecordBatchReader:
        try:
            return pacsv.open_csv(p, parse_options=parse, convert_options=convert)
        except (pa.ArrowInvalid, OSError) as err:
            raise IngestError(f"cannot read CSV file {p}: {err}") from err

    first = reader(paths[0])
    arrow_schema = first.schema
    path_cols = _path_columns(arrow_schema, types)
    schema, rows = _schema_and_rows(uri, arrow_schema, types, batch_rows, storage_options)

    def batches() -> Iterator[pa.RecordBatch]:
        for i, p in enumerate(paths):
            r = first if i == 0 else reader(p)
            if r.schema.names != arrow_schema.names:
                raise IngestError(
                    f"{p} has columns {r.schema.names}, {paths[0]} has {arrow_schema.names}"
                )
            try:
                yield from _with_base(r, path_cols, os.path.dirname(os.path.abspath(p)))
            except pa.ArrowInvalid as err:
                raise IngestError(f"{p}: {err}") from err

    fp = fingerprint("csv", 1, _sizes(paths), delimiter)
    return _ingest_tables(
        uri,
        rebatch(batches(), rows, batch_bytes),
        schema,
        kind="csv",
        fp=fp,
        batching=(rows, batch_bytes),
        validate=validate,
        base_dir=None,
        strict=strict,
        progress=progress,
        total_rows=None,
        workers=workers,
        storage_options=storage_options,
    )


def _digest(table: pa.Table) -> str:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)
    return hashlib.sha256(memoryview(sink.getvalue())).hexdigest()


def arrow(
    source: Any,
    uri: str,
    *,
    types: TypesArg = None,
    source_id: str | None = None,
    validate: Validate = "header",
    base_dir: str | None = None,
    batch_rows: int | None = None,
    batch_bytes: int = BATCH_BYTES,
    strict: bool = False,
    progress: bool | None = None,
    workers: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> IngestReport:
    """Ingest an Arrow table, RecordBatch, RecordBatchReader, list of batches, or anything with ``__arrow_c_stream__``.

    Resuming needs to recognise the source: ``source_id`` names it; without
    it the id is derived from the schema, the row count (tables) and the
    content of the first batch, so pass ``source_id`` for a stream whose first
    rows could repeat across different sources. Image columns given as file
    paths are relative to ``base_dir`` (default: the working directory).

    Example:
        >>> import pyarrow as pa, tensorhouse as th
        >>> th.ingest.arrow(pa.table({"x": [1, 2]}), "memory://doc-arrow", progress=False).rows
        2
    """
    check_batch_limits(batch_rows or 1, batch_bytes)
    total: int | None = None
    stream: Iterable[pa.RecordBatch | pa.Table]
    if isinstance(source, pa.Table | pa.RecordBatch):
        arrow_schema, total, stream = source.schema, source.num_rows, [source]
    elif isinstance(source, pa.RecordBatchReader):
        arrow_schema, stream = source.schema, source
    elif hasattr(source, "__arrow_c_stream__"):
        r = pa.RecordBatchReader.from_stream(source)
        arrow_schema, stream = r.schema, r
    elif (
        isinstance(source, list | tuple)
        and source
        and all(isinstance(b, pa.RecordBatch) for b in source)
    ):
        arrow_schema, total, stream = source[0].schema, sum(b.num_rows for b in source), source
    else:
        raise TypeError(
            f"cannot ingest {type(source).__name__}: pass a pyarrow Table, RecordBatch, "
            "RecordBatchReader, a list of RecordBatches, or an object with __arrow_c_stream__"
        )
    schema, rows = _schema_and_rows(uri, arrow_schema, types, batch_rows, storage_options)
    tables = rebatch(stream, rows, batch_bytes)
    first = next(tables, None)
    if source_id is None:
        # A prefix that does not depend on the batch limits, so that other limits are recognised.
        head = _digest(first.slice(0, 256)) if first is not None else ""
        source_id = fingerprint(arrow_schema.to_string(), total, head)
    fp = fingerprint("arrow", 1, source_id)
    all_tables = chain([first], tables) if first is not None else iter(())
    return _ingest_tables(
        uri,
        all_tables,
        schema,
        kind="arrow",
        fp=fp,
        batching=(rows, batch_bytes),
        validate=validate,
        base_dir=base_dir or os.getcwd(),
        strict=strict,
        progress=progress,
        total_rows=total,
        workers=workers,
        storage_options=storage_options,
    )
