"""Read one column's rows by row id as Arrow, keeping a few decoded chunks between calls.

An engine that reads a dataset's tabular columns from its Parquet group files
(:mod:`tensorhouse.format.native_files`) asks for a tensor column's rows by
row id, a vector of rows at a time. Consecutive calls mostly fall in the same
chunk, so :class:`RowIdReader` converts each chunk it touches to Arrow once and
keeps the last few (bounded by bytes): a call is then a slice (rows in order,
one chunk) or a ``take``, never a new decode.

Example:
    >>> import tempfile, numpy as np, tensorhouse as th
    >>> ds = th.create(tempfile.mkdtemp() + "/t", {"id": "int64", "v": th.Tensor("float32", (2,))})
    >>> ds.append({"id": [1, 2, 3], "v": np.arange(6, dtype="float32").reshape(3, 2)})
    1
    >>> r = RowIdReader(ds, "v")
    >>> first = ds.native_files(["id"])[0].first_rowid
    >>> r.read(np.array([first + 2, first]))[0].as_py()
    [4.0, 5.0]
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any

import numpy as np
import pyarrow as pa

from tensorhouse.format.convert import to_arrow

#: Bytes of decoded chunks a reader keeps (per reader); at least one chunk is always kept.
CACHE_BYTES = 64 << 20


class RowIdReader:
    """Rows of column ``name`` of ``dataset``'s version, addressed by row id, as one Arrow array.

    ``arrow_type``: the type wanted (the one the Python scan declares), cast once per chunk
    when the chunk's differs. Thread-safe; ``cache_bytes`` bounds the decoded chunks kept.
    """

    def __init__(
        self,
        dataset: Any,
        name: str,
        *,
        arrow_type: pa.DataType | None = None,
        cache_bytes: int = CACHE_BYTES,
    ) -> None:
        self._reader = dataset.reader
        self._name = name
        self._ctype = dataset.schema[name]
        self._type = arrow_type
        self._cache_bytes = cache_bytes
        self._chunks: OrderedDict[int, pa.Array] = OrderedDict()
        self._held = 0
        self._lock = threading.Lock()

    def _chunk(self, c: int) -> pa.Array:
        with self._lock:
            arr = self._chunks.get(c)
            if arr is not None:
                self._chunks.move_to_end(c)
                return arr
        arr = to_arrow(self._reader.read_chunk(self._name, self._ctype, c), self._ctype)
        if self._type is not None and arr.type != self._type:
            arr = arr.cast(self._type)
        with self._lock:
            if c not in self._chunks:
                self._chunks[c] = arr
                self._held += arr.nbytes
                while self._held > self._cache_bytes and len(self._chunks) > 1:
                    _, old = self._chunks.popitem(last=False)
                    self._held -= old.nbytes
        return arr

    def read(self, rowids: np.ndarray) -> pa.Array:
        """The rows with these ids, in this order (RowNotFoundError naming an id not in the version).

        Consecutive ids (a vector of an unfiltered scan) are slices of the cached chunks;
        others a ``take`` from them.
        """
        ids = np.asarray(rowids, dtype=np.int64)
        n = len(ids)
        idx = self._reader.index(self._name)
        if n == 0:
            return self._chunk(0).slice(0, 0) if len(idx.refs) else pa.array([], self._type)
        run = int(ids[-1]) - int(ids[0]) == n - 1 and (n == 1 or bool((np.diff(ids) == 1).all()))
        if run and not self._reader.has_deletions:
            # consecutive ids of one fragment are consecutive rows: map (and check) the ends only
            rows = self._reader.rows_of_rowids(ids[[0, -1]])
            run = int(rows[1]) - int(rows[0]) == n - 1
            if not run:
                rows = self._reader.rows_of_rowids(ids)
        else:
            rows = self._reader.rows_of_rowids(ids)
        first, last = int(rows[0]), int(rows[-1])
        if run:
            parts = []
            for c in range(idx.locate_one(first), idx.locate_one(last) + 1):
                start = int(idx.starts[c])
                lo, hi = max(first, start), min(last + 1, int(idx.starts[c + 1]))
                parts.append(self._chunk(c).slice(lo - start, hi - lo))
            return parts[0] if len(parts) == 1 else pa.concat_arrays(parts)
        cidx = idx.locate(rows)
        chunks = np.unique(cidx).tolist()
        if len(chunks) == 1:
            c = chunks[0]
            return self._chunk(c).take(pa.array(rows - idx.starts[c]))
        arrays = [self._chunk(c) for c in chunks]
        offsets = np.zeros(len(chunks), np.int64)
        offsets[1:] = np.cumsum([len(a) for a in arrays[:-1]])
        where = offsets[np.searchsorted(chunks, cidx)] + (rows - idx.starts[cidx])
        return pa.concat_arrays(arrays).take(pa.array(where))


__all__ = ["CACHE_BYTES", "RowIdReader"]
