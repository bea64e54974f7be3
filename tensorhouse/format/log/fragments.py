"""Fragment lists stored columnar: the body of a checkpoint, validated and read without a Python loop.

A checkpoint of 10,000 fragments holds 10,000 rows here, one per fragment,
with its chunks in a list column. Opening a dataset needs only the fragment
ids and row counts (for ``len`` and row addressing), so :class:`FragmentColumns`
keeps the Arrow arrays and builds a :class:`Fragment` value only when one is
asked for. Validation runs over whole arrays (numpy and Arrow compute), not
field by field. Commits replayed after the checkpoint become an overlay
(id -> new value, or None for removed) over the same arrays.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import overload

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tensorhouse.errors import CorruptLogError
from tensorhouse.format.log.actions import (
    MAX_FRAGMENT_ROWS,
    ChunkRef,
    DeletionRef,
    Fragment,
    GroupPart,
    load_json,
)

CHUNK_TYPE = pa.struct(
    [
        ("field", pa.int64()),
        ("path", pa.string()),
        ("rows", pa.int64()),
        ("header_length", pa.int64()),
        ("size", pa.int64()),
        ("stats", pa.string()),
        # A group file's chunk: its GroupPart as JSON (null for a chunk file).
        ("part", pa.string()),
    ]
)
#: Chunks as checkpoints wrote them before group files (no "part"): still read.
LEGACY_CHUNK_TYPE = pa.struct([f for f in CHUNK_TYPE if f.name != "part"])
SCHEMA = pa.schema(
    [
        ("id", pa.int64()),
        ("num_rows", pa.int64()),
        ("deletion_path", pa.string()),
        ("deletion_count", pa.int64()),
        ("deletion_size", pa.int64()),
        ("chunks", pa.list_(CHUNK_TYPE)),
    ]
)
MAX_FRAGMENT_ID = (1 << 31) - 1


def to_table(fragments: Sequence[Fragment]) -> pa.Table:
    """The columnar form of ``fragments`` (in their order)."""
    if isinstance(fragments, FragmentColumns):
        return fragments.to_table()
    ids, rows, dpath, dcount, dsize, chunks = [], [], [], [], [], []
    for f in fragments:
        ids.append(f.id)
        rows.append(f.num_rows)
        d = f.deletion
        dpath.append(d.path if d else None)
        dcount.append(d.count if d else 0)
        dsize.append(d.size if d else 0)
        chunks.append(
            [
                {
                    "field": fid,
                    "path": c.path,
                    "rows": c.rows,
                    "header_length": c.header_length,
                    "size": c.size,
                    "stats": None
                    if c.stats is None
                    else json.dumps(c.stats, separators=(",", ":")),
                    "part": None
                    if c.part is None
                    else json.dumps(c.part.to_dict(), separators=(",", ":")),
                }
                for fid, refs in f.columns.items()
                for c in refs
            ]
        )
    return pa.table([ids, rows, dpath, dcount, dsize, chunks], schema=SCHEMA)


def by_id(table: pa.Table) -> pa.Table:
    """``table`` (a fragment table) sorted by id, in one chunk; no sort when it already is."""
    ids = table.column("id").to_numpy()
    if ids.size > 1 and not (ids[1:] > ids[:-1]).all():
        table = table.take(pc.sort_indices(table, [("id", "ascending")]))
    return table.combine_chunks()


def upgraded(table: pa.Table) -> pa.Table:
    """A checkpoint's fragment table written before group files, with a null "part" for every chunk (else unchanged)."""
    legacy = pa.list_(LEGACY_CHUNK_TYPE)
    i = table.schema.get_field_index("chunks")
    if i < 0 or table.schema.field(i).type != legacy:
        return table
    col = table.column(i).combine_chunks() if table.num_rows else pa.array([], legacy)
    values = col.values
    parts = pa.nulls(len(values), pa.string())
    new_values = pa.StructArray.from_arrays(
        [*values.flatten(), parts], fields=list(CHUNK_TYPE), mask=values.is_null()
    )
    new = pa.ListArray.from_arrays(col.offsets, new_values, mask=col.is_null())
    return table.set_column(i, pa.field("chunks", pa.list_(CHUNK_TYPE)), new)


def _ints(col: pa.Array | pa.ChunkedArray, name: str, lo: int, hi: int) -> np.ndarray:
    """``col`` as int64 numpy, refused when it has nulls or a value outside [lo, hi]."""
    if col.null_count:
        raise CorruptLogError(f"checkpoint column {name!r} has nulls")
    arr = col.to_numpy()
    if arr.size and (arr.min() < lo or arr.max() > hi):
        raise CorruptLogError(f"checkpoint column {name!r} is out of range [{lo}, {hi}]")
    return arr


def _valid(arr: pa.Array) -> np.ndarray:
    """Which entries of ``arr`` are not null, as bools (no bitmap unpacking when all or none are)."""
    nulls = arr.null_count
    if nulls == 0:
        return np.ones(len(arr), dtype=bool)
    if nulls == len(arr):
        return np.zeros(len(arr), dtype=bool)
    return arr.is_valid().to_numpy(zero_copy_only=False)


def _unsafe_paths(paths: pa.Array) -> None:
    """Raise CorruptLogError if any stored path is absolute, has an empty, "." or ".." segment, or a backslash.

    Checked over the strings' shared byte buffer (a regex over 20,000 paths
    cost 17 ms). No path may start or end with "/", so a "/" in the buffer is
    followed by a byte of its own path: only a "/" followed by "/" or ".",
    or a path starting with ".", can start a bad segment, and only the paths
    holding one (rare) are looked at one by one.
    """
    if paths.null_count:
        raise CorruptLogError("a stored path is null")
    n = len(paths)
    if n == 0:
        return
    width = np.int64 if paths.type == pa.large_string() else np.int32
    offsets = np.frombuffer(paths.buffers()[1], width)[paths.offset : paths.offset + n + 1].astype(
        np.int64
    )
    data = paths.buffers()[2]
    raw = (
        np.frombuffer(data, np.uint8)[offsets[0] : offsets[-1]]
        if data is not None
        else np.zeros(0, np.uint8)
    )
    starts, ends = offsets[:-1] - offsets[0], offsets[1:] - offsets[0]
    if not (ends > starts).all():
        raise CorruptLogError("a stored path is empty or has a backslash or a NUL")
    blob = raw.tobytes()  # bytes' own search (memchr) is several times faster than a numpy pass
    if b"\\" in blob or b"\x00" in blob:
        raise CorruptLogError("a stored path is empty or has a backslash or a NUL")
    first = raw[starts]
    if (first == ord("/")).any() or (raw[ends - 1] == ord("/")).any():
        raise CorruptLogError("a stored path is absolute or ends with '/'")
    slashes = np.flatnonzero(raw == ord("/"))
    after = raw[slashes + 1]  # in bounds: the last byte is no "/"
    pairs = slashes[(after == ord("/")) | (after == ord("."))]
    suspects = set(np.searchsorted(ends, pairs, side="right").tolist())
    suspects.update(np.flatnonzero(first == ord(".")).tolist())
    for i in sorted(suspects):
        path = paths[i].as_py()
        # ".tmp-" names are stores' staged writes (every such name is a suspect: it follows "/" or starts the path).
        if any(part in ("", ".", "..") for part in path.split("/")) or path.rsplit("/", 1)[
            -1
        ].startswith(".tmp-"):
            raise CorruptLogError(f"unsafe data path {path!r} in a checkpoint")


class _Columns:
    """The validated arrays of one checkpoint, shared by every view over them."""

    def __init__(
        self, table: pa.Table, next_fragment_id: int, next_field_id: int | None = None
    ) -> None:
        table = upgraded(table)
        if not table.schema.equals(SCHEMA):
            raise CorruptLogError(
                f"checkpoint fragments have schema {table.schema}, expected {SCHEMA}"
            )
        table = table.combine_chunks()
        self.table = table
        # One chunk per column after combine_chunks (none for an empty table): work on plain arrays.
        id_, num_rows, dpath, dcount, dsize, chunks = (
            c.chunk(0) if c.num_chunks else pa.array([], c.type) for c in table.columns
        )
        self.ids = _ints(id_, "id", 0, min(MAX_FRAGMENT_ID, next_fragment_id - 1))
        if self.ids.size > 1 and not (self.ids[1:] > self.ids[:-1]).all():
            raise CorruptLogError("checkpoint fragments are not unique and ordered")
        self.num_rows = _ints(num_rows, "num_rows", 0, MAX_FRAGMENT_ROWS)
        self.has_deletion = _valid(dpath)
        counts = _ints(dcount, "deletion_count", 0, MAX_FRAGMENT_ROWS)
        _ints(dsize, "deletion_size", 0, 1 << 62)
        if dpath.null_count == len(dpath):  # no deletions: nothing to check
            self.num_deleted = np.zeros(len(dpath), dtype=np.int64)
        else:
            self.num_deleted = np.where(self.has_deletion, counts, 0)
            if (
                self.has_deletion & ((self.num_deleted < 1) | (self.num_deleted > self.num_rows))
            ).any():
                raise CorruptLogError(
                    "checkpoint has a deletion count outside [1, rows of its fragment]"
                )
            _unsafe_paths(dpath.drop_null())
        if chunks.null_count:
            raise CorruptLogError("checkpoint column 'chunks' has nulls")
        self.offsets = chunks.offsets.to_numpy()
        values: pa.StructArray = chunks.values
        base = int(self.offsets[0]) if self.offsets.size else 0
        values = values.slice(base, int(self.offsets[-1]) - base) if self.offsets.size else values
        self.offsets = self.offsets - base
        self.values = values
        field, path, rows_, header_, size_, _, part = values.flatten()
        # Field ids are handed out below next_field_id: a higher one would read as a column of nulls.
        top = (1 << 31) - 1 if next_field_id is None else next_field_id - 1
        fields = _ints(field, "field", 0, top)
        rows = _ints(rows_, "rows", 0, MAX_FRAGMENT_ROWS)
        size = _ints(size_, "size", 0, 1 << 62)
        header = _ints(header_, "header_length", 0, 1 << 62)
        in_group = _valid(part)
        if (header > size).any() or (np.where(in_group, header != 0, header < 44)).any():
            raise CorruptLogError("checkpoint has a chunk whose header is longer than the chunk")
        if path.null_count:
            raise CorruptLogError("checkpoint column 'path' has nulls")
        _unsafe_paths(path)
        if len(values):
            self._check_coverage(fields, rows)
        self._chunk_refs: list[ChunkRef] | None = None
        self._fields: list[int] = []
        self._dpath: list[str | None] = []
        self._dsize: list[int] = []

    def _check_coverage(self, fields: np.ndarray, rows: np.ndarray) -> None:
        """Every column of a fragment covers its rows exactly: the chunk rows summed per (fragment, field)."""
        owner = np.repeat(np.arange(len(self.ids)), np.diff(self.offsets))
        width = int(fields.max()) + 1
        key = owner * width + fields
        if (key[1:] >= key[:-1]).all():
            # Chunks are written fragment by fragment, a column's chunks together: sum each run, no sort.
            starts = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
            sums, owners = np.add.reduceat(rows, starts), owner[starts]
        else:
            groups, inverse = np.unique(key, return_inverse=True)
            sums, owners = np.bincount(inverse, weights=rows.astype(np.float64)), groups // width
        bad = np.flatnonzero(sums != self.num_rows[owners])
        if bad.size:
            raise CorruptLogError(
                f"checkpoint fragment {int(self.ids[owners[bad[0]]])}: chunks do not cover its rows"
            )

    def _refs(self) -> list[ChunkRef]:
        """Every chunk as a ChunkRef, built in one pass the first time any fragment is asked for."""
        if self._chunk_refs is None:
            v = self.values
            raw_stats = v.field("stats").to_pylist()
            # One JSON parse for every chunk's stats, not one per chunk.
            stats = load_json(
                "[" + ",".join(x if x is not None else "null" for x in raw_stats) + "]",
                "checkpoint chunk stats",
            )
            if not all(x is None or isinstance(x, Mapping) for x in stats):
                raise CorruptLogError("checkpoint chunk stats must be objects")
            sizes = v.field("size").to_pylist()
            parts = [
                None
                if raw is None
                else GroupPart.from_dict(load_json(raw, "checkpoint chunk part"), size)
                for raw, size in zip(v.field("part").to_pylist(), sizes, strict=True)
            ]
            self._fields = v.field("field").to_pylist()
            self._chunk_refs = [
                ChunkRef(*args)
                for args in zip(
                    v.field("path").to_pylist(),
                    v.field("rows").to_pylist(),
                    v.field("header_length").to_pylist(),
                    sizes,
                    stats,
                    parts,
                    strict=True,
                )
            ]
            self._dpath = self.table.column("deletion_path").to_pylist()
            self._dsize = self.table.column("deletion_size").to_pylist()
        return self._chunk_refs

    def fragment(self, pos: int) -> Fragment:
        refs = self._refs()
        cols: dict[int, list[ChunkRef]] = {}
        for j in range(int(self.offsets[pos]), int(self.offsets[pos + 1])):
            cols.setdefault(self._fields[j], []).append(refs[j])
        deletion = None
        if self.has_deletion[pos]:
            deletion = DeletionRef(
                str(self._dpath[pos]), int(self.num_deleted[pos]), self._dsize[pos]
            )
        return Fragment(
            int(self.ids[pos]),
            int(self.num_rows[pos]),
            {k: tuple(v) for k, v in cols.items()},
            deletion,
        )


class FragmentColumns(Sequence[Fragment]):
    """Fragments in id order: a checkpoint's arrays, plus an overlay of later changes."""

    def __init__(
        self, cols: _Columns, overlay: Mapping[int, Fragment | None] | None = None
    ) -> None:
        self._cols = cols
        self._overlay = dict(overlay or {})
        self._cache: dict[int, Fragment] = {}
        self._rows: np.ndarray | None = None
        self._deleted: np.ndarray | None = None
        if not self._overlay:
            self._ids = cols.ids
            self._src = np.arange(len(cols.ids))
        else:
            extra = np.array(
                sorted(k for k, v in self._overlay.items() if v is not None), dtype=np.int64
            )
            n = len(cols.ids)
            if len(extra) == len(self._overlay) and (not n or extra[0] > cols.ids[-1]):
                # Only appends since the arrays were built (the usual case): no lookup, no sort.
                self._ids = np.concatenate([cols.ids, extra])
                self._src = np.concatenate([np.arange(n), np.full(len(extra), -1)])
                return
            changed = np.fromiter(self._overlay, np.int64, len(self._overlay))
            keep = ~np.isin(cols.ids, changed)
            ids = np.concatenate([cols.ids[keep], extra])
            src = np.concatenate([np.flatnonzero(keep), np.full(len(extra), -1)])
            order = np.argsort(ids, kind="stable")
            self._ids, self._src = ids[order], src[order]

    @staticmethod
    def from_table(
        table: pa.Table, *, next_fragment_id: int, next_field_id: int | None = None
    ) -> FragmentColumns:
        """Validate a checkpoint's fragment table (vectorised) and wrap it; raises CorruptLogError.

        With ``next_field_id``, every chunk's field id must be below it.
        """
        return FragmentColumns(_Columns(table, next_fragment_id, next_field_id))

    @staticmethod
    def of(fragments: Sequence[Fragment], *, next_fragment_id: int) -> FragmentColumns:
        """``fragments`` (in id order) in columnar form: what a created or replayed handle starts from."""
        if isinstance(fragments, FragmentColumns):
            return fragments
        return FragmentColumns(_Columns(to_table(fragments), max(next_fragment_id, 1)))

    @property
    def overlay_size(self) -> int:
        """How many fragments changed since the arrays were built."""
        return len(self._overlay)

    def compacted(self, *, next_fragment_id: int) -> FragmentColumns:
        """The same fragments with the overlay folded into new arrays (vectorised, no fragment is built)."""
        if not self._overlay:
            return self
        out = FragmentColumns(_Columns(self.to_table(), max(next_fragment_id, 1)))
        # The changed fragments are built already: keep them, so nothing asks the new arrays for them.
        for fid, f in self._overlay.items():
            if f is not None:
                out._cache[int(np.searchsorted(out._ids, fid))] = f
        return out

    @property
    def table(self) -> pa.Table:
        return self._cols.table

    @property
    def has_overlay(self) -> bool:
        return bool(self._overlay)

    def to_table(self) -> pa.Table:
        """The columnar form: the checkpoint's rows that did not change, plus the changed ones, in id order."""
        if not self._overlay:
            return self._cols.table
        return self.table_without(np.empty(0, np.int64))

    def ids(self) -> np.ndarray:
        return self._ids

    def table_without(self, exclude: np.ndarray) -> pa.Table:
        """The columnar form of the live fragments whose ids are not in ``exclude``, in id order.

        The arrays' rows are taken as they are; only changed fragments outside
        ``exclude`` (rare: changes older than what the caller tracks) are encoded.
        """
        keep = ~np.isin(self._ids, exclude) if exclude.size else np.ones(len(self._ids), bool)
        table = self._cols.table.take(pa.array(self._src[keep & (self._src >= 0)]))
        others = [self[int(i)] for i in np.flatnonzero(keep & (self._src < 0))]
        return by_id(pa.concat_tables([table, to_table(others)])) if others else table

    def chunk_count(self) -> int:
        """How many chunks the live fragments hold (vectorised over the arrays' rows)."""
        src = self._src[self._src >= 0]
        n = int(np.diff(self._cols.offsets)[src].sum()) if src.size else 0
        return n + sum(
            len(refs)
            for f in self._overlay.values()
            if f is not None
            for refs in f.columns.values()
        )

    def row_counts(self) -> np.ndarray:
        if self._rows is None:
            self._rows = self._gather(self._cols.num_rows, lambda f: f.num_rows)
        return self._rows

    def deleted_counts(self) -> np.ndarray:
        if self._deleted is None:
            self._deleted = self._gather(self._cols.num_deleted, lambda f: f.num_deleted)
        return self._deleted

    def _gather(self, column: np.ndarray, value: Callable[[Fragment], int]) -> np.ndarray:
        out = np.zeros(len(self._ids), dtype=np.int64)
        base = self._src >= 0
        out[base] = column[self._src[base]]
        for i in np.flatnonzero(~base):
            out[i] = value(self[int(i)])
        return out

    def lookup(self, fid: int) -> Fragment | None:
        """The live fragment with id ``fid``, or None."""
        if fid in self._overlay:
            return self._overlay[fid]
        i = int(np.searchsorted(self._ids, fid))
        return self[i] if i < len(self._ids) and self._ids[i] == fid else None

    def with_overlay(self, changes: Mapping[int, Fragment | None]) -> FragmentColumns:
        """These fragments after ``changes`` (id -> new value, None: removed)."""
        return FragmentColumns(self._cols, {**self._overlay, **changes})

    def __len__(self) -> int:
        return len(self._ids)

    @overload
    def __getitem__(self, i: int) -> Fragment: ...
    @overload
    def __getitem__(self, i: slice) -> Sequence[Fragment]: ...
    def __getitem__(self, i: int | slice) -> Fragment | Sequence[Fragment]:
        if isinstance(i, slice):
            return tuple(self[j] for j in range(*i.indices(len(self))))
        n = len(self._ids)
        if not -n <= i < n:
            raise IndexError(f"fragment position {i} out of range for {n}")
        i = i + n if i < 0 else i
        f = self._cache.get(i)
        if f is None:
            src = int(self._src[i])
            f = self._cols.fragment(src) if src >= 0 else self._overlay[int(self._ids[i])]
            assert f is not None
            self._cache[i] = f
        return f

    def __iter__(self) -> Iterator[Fragment]:
        return (self[i] for i in range(len(self)))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Sequence):
            return NotImplemented
        return len(self) == len(other) and all(a == b for a, b in zip(self, other, strict=True))

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"<FragmentColumns {len(self)} fragments ({len(self._overlay)} changed since the checkpoint)>"


def fragment_arrays(fragments: Sequence[Fragment]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(ids, row counts, deleted row counts) of fragments, without building them from a checkpoint."""
    if isinstance(fragments, FragmentColumns):
        return fragments.ids(), fragments.row_counts(), fragments.deleted_counts()
    return (
        np.array([f.id for f in fragments], dtype=np.int64),
        np.array([f.num_rows for f in fragments], dtype=np.int64),
        np.array([f.num_deleted for f in fragments], dtype=np.int64),
    )
