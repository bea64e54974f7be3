"""The Parquet files of a version that SQL engines can read with their own readers.

A fragment's tabular columns are stored in group files: plain Parquet files
whose row groups are the fragment's chunks (see
:mod:`tensorhouse.format.chunks.group`). :func:`native_files` lists the files
holding some columns of a version, in row-id order, with what an engine needs
to read them as the dataset: the path to open, which physical column is which
dataset column, and which rows are deleted. It returns None when the columns
are not all in such files (a dataset written before group files, a tensor
column, a column added later or rewritten by an update in files of its own):
the caller then reads through the Python scan.

Example:
    >>> import tempfile, tensorhouse as th
    >>> ds = th.create(tempfile.mkdtemp() + "/t", {"id": "int64", "name": "string"})
    >>> ds.append({"id": [1, 2, 3], "name": ["a", "b", "c"]})
    1
    >>> _ = ds.delete("id = 2")
    >>> [f] = ds.native_files()
    >>> f.rows, dict(f.columns), f.deleted.tolist()
    (3, {'id': 'f0', 'name': 'f1'}, [1])
    >>> import pyarrow.parquet as pq
    >>> pq.read_table(f.path).column("f1").to_pylist()
    ['a', 'b', 'c']
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tensorhouse.errors import SchemaError
from tensorhouse.format import deletions
from tensorhouse.format.chunks import group
from tensorhouse.format.log.actions import ChunkRef, Fragment
from tensorhouse.format.log.snapshot import Snapshot
from tensorhouse.storage.base import Store


@dataclass(frozen=True, eq=False)
class NativeFile:
    """One Parquet file that engines can read directly."""

    fragment_id: int
    #: Absolute local path for a local dataset, else the store URL of the file.
    path: str
    #: Row offset of the file's first row within the fragment.
    offset: int
    #: Rows in the file.
    rows: int
    #: Dataset column name -> physical column name in the file.
    columns: Mapping[str, str]
    #: Sorted int64 row offsets *within this file* that are deleted (empty if none).
    deleted: np.ndarray

    @property
    def first_rowid(self) -> int:
        """The row id of the file's first row (``fragment_id << 32 | offset``); row ``i`` has this + ``i``."""
        return (self.fragment_id << 32) | self.offset


def native_files(
    source: Any, columns: Sequence[str] | None = None, *, store: Store | None = None
) -> tuple[NativeFile, ...] | None:
    """The files holding ``columns`` (default: all) of this version, in row-id order.

    ``source``: a Dataset (or anything with ``snapshot`` and ``store``), or a
    Snapshot with ``store=``. Returns None when any fragment holds one of those
    columns outside a single run of group files; ``()`` for a version without rows.
    """
    snap: Snapshot = source if isinstance(source, Snapshot) else source.snapshot
    store = store if store is not None else getattr(source, "store", None)
    if store is None:
        raise TypeError("native_files needs the dataset's store: pass a Dataset, or store=")
    schema = snap.metadata.schema
    names = list(schema.names) if columns is None else list(columns)
    for n in names:
        if n not in schema:
            raise SchemaError(f"native_files: no column {n!r} (columns: {list(schema.names)})")
    if not names:
        return None
    out: list[NativeFile] = []
    for frag in snap.fragments:
        if frag.num_rows == 0:
            continue
        files = _fragment_files(frag, [(n, snap.metadata.field_ids[n]) for n in names])
        if files is None:
            return None
        dead = (
            deletions.read(store, frag.deletion, frag.num_rows)
            if frag.deletion is not None
            else np.zeros(0, np.int64)
        )
        for path, offset, rows, cols, part in files:
            footer = group.read_footer(store.get_range, store.uri, path, part)
            md = footer.metadata
            if md.num_rows != rows:  # rows no chunk of the log names: engines would read them
                return None
            mine = dead[(dead >= offset) & (dead < offset + rows)] - offset
            local = store.local_path(path) if store.is_local else None
            out.append(
                NativeFile(
                    frag.id,
                    local if local is not None else f"{store.uri.rstrip('/')}/{path}",
                    offset,
                    rows,
                    cols,
                    mine.astype(np.int64),
                )
            )
    return tuple(out)


_Run = tuple[str, int, int, dict[str, str], Any]


def _fragment_files(frag: Fragment, fields: Sequence[tuple[str, int]]) -> list[_Run] | None:
    """(path, row offset, rows, {name: physical}, a part) per group file of the fragment, or None."""
    layout: list[tuple[str, int, int]] | None = None
    mapping: list[dict[str, str]] = []
    first_part: list[Any] = []
    for name, fid in fields:
        refs = [r for r in frag.columns.get(fid, ()) if r.rows]
        if not refs or any(r.part is None for r in refs):
            return None
        runs: list[list[ChunkRef]] = []
        for r in refs:
            if runs and runs[-1][0].path == r.path:
                runs[-1].append(r)
            else:
                runs.append([r])
        mine: list[tuple[str, int, int]] = []
        offset = 0
        for run in runs:
            parts = [r.part for r in run if r.part is not None]
            if [p.row_group for p in parts] != list(range(len(parts))) or len(
                {p.column for p in parts}
            ) != 1:
                return None
            rows = sum(r.rows for r in run)
            mine.append((run[0].path, offset, rows))
            offset += rows
        if len({p for p, _, _ in mine}) != len(mine):
            return None  # one file in two places of the fragment
        if layout is None:
            layout = mine
            mapping = [{} for _ in mine]
            first_part = [run[0].part for run in runs]
        elif mine != layout:
            return None
        for m, run in zip(mapping, runs, strict=True):
            part = run[0].part
            assert part is not None
            m[name] = part.column
    assert layout is not None
    return [
        (path, offset, rows, cols, part)
        for (path, offset, rows), cols, part in zip(layout, mapping, first_part, strict=True)
    ]


__all__ = ["NativeFile", "native_files"]
