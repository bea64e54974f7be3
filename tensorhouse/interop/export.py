"""Export a dataset, or any query result, to Parquet, Arrow IPC or CSV files: ``th.export``.

Rows stream through in batches (memory stays bounded by a few batches); a
file is written under a temporary name and renamed into place when it is
complete, so a failure (a bad column, a full disk, Ctrl-C) leaves no partial
file behind, and an output format is checked against the columns before
anything is written (CSV holds no tensor, list or binary column). On object
storage a directory of files is renamed file by file (copy and delete), so a
reader may see part of it until the export returns; a failure still removes
what it wrote.

Types travel with the data: every field of a Parquet or Arrow file carries
its tensorhouse type in its metadata (``tensorhouse.type``), so
``th.ingest.parquet``/``th.ingest.arrow`` and ``th.write`` restore
``Image``, ``ClassLabel`` (with its names), ``BBox``, ``Embedding`` and
tensors as they were.

``partition_by=["label"]`` writes a Hive-partitioned directory
(``label=0/part-0.parquet``) with ``pyarrow.dataset.write_dataset``; a
destination ending in ``.parquet``/``.arrow``/``.csv`` without partitioning
is one file; any other destination is a directory of files.

Example:
    >>> import numpy as np, tempfile, os, tensorhouse as th
    >>> ds = th.create("memory://doc-export", {"label": th.ClassLabel(["a", "b"]), "emb": th.Embedding(2)})
    >>> _ = ds.append({"label": [0, 1, 1], "emb": np.ones((3, 2), "float32")})
    >>> out = os.path.join(tempfile.mkdtemp(), "pets.parquet")
    >>> th.export(ds, out).rows
    3
    >>> report = th.ingest.parquet(out, "memory://doc-export-back", progress=False)
    >>> th.open("memory://doc-export-back").schema
    Schema(label: ClassLabel(classes=('a', 'b')), emb: Embedding(dim=2, dtype='float32'))
"""

from __future__ import annotations

import io
import os
import shutil
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc

from tensorhouse.errors import SchemaError, TensorhouseError, UnsupportedError
from tensorhouse.format.dataset import Dataset

Format = Literal["parquet", "arrow", "csv"]
#: File extensions of each format (the first is what directories of files use).
EXTENSIONS: dict[str, tuple[str, ...]] = {
    "parquet": (".parquet", ".pq"),
    "arrow": (".arrow", ".feather", ".ipc", ".arrows"),
    "csv": (".csv",),
}
#: Extensions of file formats we do not write: a destination ending so is refused, not made a dataset.
REFUSED_EXTENSIONS = (
    ".json",
    ".jsonl",
    ".ndjson",
    ".txt",
    ".tsv",
    ".xlsx",
    ".xls",
    ".orc",
    ".avro",
    ".npy",
    ".npz",
    ".pkl",
    ".pickle",
    ".h5",
    ".hdf5",
    ".zip",
    ".tar",
    ".gz",
)


@dataclass(frozen=True)
class ExportReport:
    """What :func:`export` wrote."""

    dest: str
    format: str
    rows: int
    files: int

    def __str__(self) -> str:
        return f"wrote {self.rows:,} rows to {self.dest} ({self.files} {self.format} file{'s' * (self.files != 1)})"


def format_of(dest: str) -> str | None:
    """The file format a destination's extension names, or None (a dataset URI or a directory)."""
    lower = dest.lower().rstrip("/")
    for fmt, exts in EXTENSIONS.items():
        if lower.endswith(exts):
            return fmt
    if lower.endswith(REFUSED_EXTENSIONS):
        ext = os.path.splitext(lower)[1]
        raise UnsupportedError(
            f"cannot write {ext} files ({dest}); write .parquet, .arrow or .csv, or give a "
            "dataset URI (a path without a file extension)"
        )
    return None


def check_format(schema: pa.Schema, fmt: str) -> None:
    """Raise before writing anything when ``fmt`` cannot hold a column of ``schema``."""
    if fmt not in EXTENSIONS:
        raise ValueError(f"format must be one of {sorted(EXTENSIONS)}, got {fmt!r}")
    if fmt != "csv":
        return
    bad = [
        f
        for f in schema
        if pa.types.is_nested(f.type)
        or pa.types.is_binary(f.type)
        or pa.types.is_large_binary(f.type)
        or pa.types.is_binary_view(f.type)
    ]
    if bad:
        cols = ", ".join(f"{f.name} ({f.type})" for f in bad)
        raise UnsupportedError(
            f"CSV cannot hold the column(s) {cols}: tensors, lists, images and bytes need "
            ".parquet or .arrow; or leave them out (SELECT * EXCLUDE (...), columns=[...])"
        )
    import pyarrow.csv as pacsv

    pacsv.CSVWriter(
        io.BytesIO(), schema
    ).close()  # anything else the CSV writer refuses, refused now


def _fs(dest: str, storage_options: Mapping[str, Any] | None) -> tuple[Any, str, bool]:
    """(pyarrow filesystem, path, is_local) for a destination URI."""
    import fsspec
    import pyarrow.fs as pafs

    fs, path = fsspec.core.url_to_fs(dest, **dict(storage_options or {}))
    local = "file" in (fs.protocol if isinstance(fs.protocol, tuple) else (fs.protocol,))
    if local:
        return pafs.LocalFileSystem(), os.path.abspath(path), True
    return pafs.PyFileSystem(pafs.FSSpecHandler(fs)), path, False


def write_file(
    reader: pa.RecordBatchReader,
    dest: str,
    *,
    format: Format | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> int:
    """Stream ``reader`` into one file at ``dest``; returns the rows written.

    Written under a temporary name and renamed when complete: a failure leaves nothing at ``dest``.
    """
    fmt = format or format_of(dest)
    if fmt is None:
        raise ValueError(f"{dest}: name a file ending in .parquet, .arrow or .csv, or pass format=")
    check_format(reader.schema, fmt)
    fs, path, _ = _fs(dest, storage_options)
    parent = os.path.dirname(path)
    if parent:
        fs.create_dir(parent, recursive=True)
    tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
    rows = 0
    try:
        with fs.open_output_stream(tmp) as sink:
            writer = _writer(sink, reader.schema, fmt)
            try:
                for batch in reader:
                    writer.write_batch(batch)
                    rows += batch.num_rows
            finally:
                writer.close()
        fs.move(tmp, path)
    except BaseException:
        _remove(fs, tmp)
        raise
    return rows


def _writer(sink: Any, schema: pa.Schema, fmt: str) -> Any:
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return pq.ParquetWriter(sink, schema)
    if fmt == "arrow":
        return pa.ipc.new_file(sink, schema)
    import pyarrow.csv as pacsv

    return pacsv.CSVWriter(sink, schema)


def _remove(fs: Any, path: str) -> None:
    import pyarrow.fs as pafs

    try:
        info = fs.get_file_info(path)
        if info.type == pafs.FileType.Directory:
            fs.delete_dir(path)
        elif info.type == pafs.FileType.File:
            fs.delete_file(path)
    except OSError:  # best effort: the original error is what the caller needs to see
        pass


def export(
    source: str | Dataset,
    dest: str,
    *,
    format: Format | None = None,
    columns: Sequence[str] | None = None,
    filter: pc.Expression | None = None,
    version: int | None = None,
    tag: str | None = None,
    branch: str | None = None,
    partition_by: Sequence[str] | None = None,
    storage_options: Mapping[str, Any] | None = None,
    dest_storage_options: Mapping[str, Any] | None = None,
    overwrite: bool = False,
    max_rows_per_file: int | None = None,
) -> ExportReport:
    """Write a dataset (URI or Dataset, at a version/tag/branch) to Parquet, Arrow IPC or CSV at ``dest``.

    ``columns``/``filter`` (a ``pyarrow.compute`` expression) are pushed into the
    scan: only the named columns' chunks are read. ``partition_by``: Hive
    partitioning by those columns (a directory). ``format``: from ``dest``'s
    extension when not given (a directory without one: Parquet).
    ``overwrite``: replace what is at ``dest``; otherwise an existing file or
    a non-empty directory is an error. ``_rowid`` is exported only when named
    in ``columns``. See the module notes for what the files keep.
    """
    from tensorhouse.connector.arrow_dataset import arrow_dataset

    fmt = format or format_of(dest) or "parquet"
    if fmt not in EXTENSIONS:
        raise ValueError(f"format must be one of {sorted(EXTENSIONS)}, got {fmt!r}")
    rowid = columns is not None and "_rowid" in columns
    ad = arrow_dataset(
        source,
        version=version,
        tag=tag,
        branch=branch,
        storage_options=storage_options,
        rowid=rowid,
    )
    scanner = ad.scanner(columns=None if columns is None else list(columns), filter=filter)
    schema = scanner.projected_schema
    check_format(schema, fmt)
    if partition_by:
        missing = [c for c in partition_by if c not in schema.names]
        if missing:
            raise SchemaError(
                f"partition_by names column(s) {missing} that the export does not have: {schema.names}"
            )
    fs, path, _ = _fs(dest, dest_storage_options)
    single = not partition_by and format_of(dest) is not None
    existing = fs.get_file_info(path)
    import pyarrow.fs as pafs

    if existing.type != pafs.FileType.NotFound and not overwrite:
        taken = (
            existing.type == pafs.FileType.File or fs.get_file_info(pafs.FileSelector(path)) != []
        )
        if taken:
            raise TensorhouseError(
                f"{dest} already exists; pass overwrite=True (--overwrite) to replace it"
            )
    if single:
        rows = write_file(
            scanner.to_reader(),
            dest,
            format=fmt,  # type: ignore[arg-type]
            storage_options=dest_storage_options,
        )
        return ExportReport(dest, fmt, rows, 1)
    return _write_directory(
        scanner.to_reader(), fs, path, dest, fmt, partition_by, overwrite, max_rows_per_file
    )


def _write_directory(
    reader: pa.RecordBatchReader,
    fs: Any,
    path: str,
    dest: str,
    fmt: str,
    partition_by: Sequence[str] | None,
    overwrite: bool,
    max_rows_per_file: int | None,
) -> ExportReport:
    import pyarrow.dataset as pads

    counted = 0

    def counting() -> Iterator[pa.RecordBatch]:
        nonlocal counted
        for b in reader:
            counted += b.num_rows
            yield b

    written: list[str] = []
    tmp = f"{path.rstrip('/')}.tmp-{uuid.uuid4().hex[:8]}"
    file_format = {"parquet": "parquet", "arrow": "ipc", "csv": "csv"}[fmt]
    try:
        pads.write_dataset(
            pa.RecordBatchReader.from_batches(reader.schema, counting()),
            tmp,
            filesystem=fs,
            format=file_format,
            partitioning=list(partition_by) if partition_by else None,
            partitioning_flavor="hive" if partition_by else None,
            basename_template="part-{i}" + EXTENSIONS[fmt][0],
            max_rows_per_file=max_rows_per_file or 0,
            max_rows_per_group=min(max_rows_per_file or (1 << 20), 1 << 20),
            file_visitor=lambda f: written.append(f.path),
        )
        if overwrite:
            _remove(fs, path)
        if not written:  # nothing matched: still an (empty) directory, as a query with no rows
            fs.create_dir(tmp, recursive=True)
        _move_dir(fs, tmp, path)
    except BaseException:
        _remove(fs, tmp)
        raise
    return ExportReport(dest, fmt, counted, len(written))


def _move_dir(fs: Any, src: str, dst: str) -> None:
    import pyarrow.fs as pafs

    if isinstance(fs, pafs.LocalFileSystem):
        if os.path.isdir(dst) and not os.listdir(dst):
            os.rmdir(dst)
        shutil.move(src, dst)
        return
    # Object stores have no directories to rename: move the files one by one (a copy and a delete each).
    files = [
        i.path
        for i in fs.get_file_info(pafs.FileSelector(src, recursive=True))
        if i.type == pafs.FileType.File
    ]
    for path in files:
        fs.move(path, dst.rstrip("/") + path[len(src.rstrip("/")) :])
    _remove(fs, src)


__all__ = [
    "EXTENSIONS",
    "ExportReport",
    "Format",
    "check_format",
    "export",
    "format_of",
    "write_file",
]
