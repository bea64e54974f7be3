"""Ingest WebDataset tar shards.

A shard is a tar file whose members are grouped into samples by key: the
member's path up to the first dot of its file name (``train/0001.jpg`` and
``train/0001.cls`` are sample ``train/0001`` with fields ``jpg`` and ``cls``).
Shards are read in sorted order, each streamed once with the standard
``tarfile`` module (plain or compressed), which is simpler and faster than
going through the ``webdataset`` package's pipeline.

One column per field, named after its extension (``seg.png`` becomes
``seg_png``), plus ``key`` (Text) with the sample key. Types are inferred
from the extensions of the first ``infer_samples`` samples, overridable with
``types=``:

| extension                | type                          | value                                |
|--------------------------|-------------------------------|--------------------------------------|
| ``jpg``, ``jpeg``        | ``Image("jpeg")``             | the bytes, as they are               |
| ``png``                  | ``Image("png")``              | the bytes, as they are               |
| ``cls``, ``cls2``, ``label``, ``index`` | ``int64``      | the integer in the member's text     |
| ``txt``, ``text``, ``caption`` | ``Text()``              | UTF-8 text                           |
| ``json``                 | ``Json()``                    | the parsed document                  |
| ``npy``                  | ``Tensor(dtype, (None,) * ndim)`` of the first one | ``np.load`` (no pickles) |
| anything else            | ``Binary()``                  | the bytes                            |

A sample missing a field gets a null there. A sample with a field that
cannot be decoded (a corrupt image, ``cls`` that is not an integer) is
skipped with a warning (``strict=True``: IngestError), as is the rest of a
shard that turns out to be a damaged tar. A field never seen while inferring
is an error that says to declare it with ``types=``.

Example:
    >>> import io, os, tarfile, tempfile, tensorhouse as th
    >>> shard = os.path.join(tempfile.mkdtemp(), "shard-000.tar")
    >>> with tarfile.open(shard, "w") as tar:
    ...     for name, data in [("a.cls", b"3"), ("a.txt", b"a cat"), ("b.cls", b"5"), ("b.txt", b"a dog")]:
    ...         info = tarfile.TarInfo(name); info.size = len(data)
    ...         tar.addfile(info, io.BytesIO(data))
    >>> _ = th.ingest.webdataset(shard, "memory://doc-wds", progress=False)
    >>> ds = th.open("memory://doc-wds")
    >>> ds.columns, ds.take([1])["txt"]
    (['key', 'cls', 'txt'], ['a dog'])
"""

from __future__ import annotations

import io
import json
import os
import posixpath
import re
import tarfile
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from itertools import chain, islice
from typing import Any

import numpy as np

from tensorhouse.errors import CodecError, DatasetNotFoundError
from tensorhouse.format.dataset import open as open_dataset
from tensorhouse.ingest.arrow_source import TypesArg, column_type, expand_paths
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
from tensorhouse.ingest.images import Validate, map_slices, prepare_image
from tensorhouse.types import (
    BBox,
    Binary,
    ClassLabel,
    ColumnType,
    Embedding,
    Image,
    Json,
    Scalar,
    Schema,
    Tensor,
    Text,
)

KEY_COLUMN = "key"
_INT_EXTS = ("cls", "cls2", "label", "index")
_TEXT_EXTS = ("txt", "text", "caption")


class Sample:
    """One sample of a shard: its key and field -> raw bytes (or, for a damaged shard, the reason)."""

    __slots__ = ("error", "fields", "key", "shard")

    def __init__(
        self, shard: str, key: str, fields: dict[str, bytes], error: str | None = None
    ) -> None:
        self.shard, self.key, self.fields, self.error = shard, key, fields, error

    @property
    def nbytes(self) -> int:
        return sum(len(v) for v in self.fields.values())


def column_name(ext: str) -> str:
    """The column of a field: its extension with other characters as '_' (``seg.png`` -> ``seg_png``)."""
    name = re.sub(r"[^0-9A-Za-z_]", "_", ext.lower())
    if not name or not name[0].isalpha():
        name = "f_" + name
    return name + "_" if name == KEY_COLUMN else name


def iter_samples(paths: Sequence[str]) -> Iterator[Sample]:
    """Samples of the shards in order; members of one sample must be adjacent (as WebDataset writes them)."""
    for shard in paths:
        key: str | None = None
        fields: dict[str, bytes] = {}
        try:
            with tarfile.open(shard, "r|*") as tar:
                for m in tar:
                    if not m.isfile():
                        continue
                    dirname, base = posixpath.split(m.name)
                    if base.startswith(".") or "." not in base:
                        continue  # hidden files and members without an extension are not fields
                    prefix, ext = base.split(".", 1)
                    k = posixpath.join(dirname, prefix)
                    f = tar.extractfile(m)
                    data = f.read() if f is not None else b""
                    if k != key:
                        if key is not None:
                            yield Sample(shard, key, fields)
                        key, fields = k, {}
                    fields[ext.lower()] = data
        except (tarfile.TarError, OSError, EOFError) as err:
            if key is not None:
                yield Sample(shard, key, fields)
                key = None
            yield Sample(
                shard, "", {}, f"{shard}: unreadable tar, rest of the shard skipped: {err}"
            )
        if key is not None:
            yield Sample(shard, key, fields)


def infer_type(ext: str, sample: bytes) -> ColumnType:
    """The column type for a field, from its extension (and, for ``npy``, its first value)."""
    if ext in ("jpg", "jpeg"):
        return Image("jpeg")
    if ext == "png":
        return Image("png")
    if ext in _INT_EXTS:
        return Scalar("int64")
    if ext in _TEXT_EXTS:
        return Text()
    if ext == "json":
        return Json()
    if ext == "npy":
        try:
            a = np.load(io.BytesIO(sample), allow_pickle=False)
            return Tensor(a.dtype.name, (None,) * a.ndim)
        except Exception:
            return Binary()
    return Binary()


def _decode(ctype: ColumnType, data: bytes, validate: Validate) -> Any:
    """A field's bytes as the value its column takes; raises ValueError/CodecError when they do not decode."""
    if isinstance(ctype, Image) and ctype.compression is not None:
        return prepare_image(data, ctype.compression, validate=validate, quality=ctype.quality)
    if isinstance(ctype, Json):
        return json.loads(data)
    if isinstance(ctype, Text):
        return data.decode("utf-8")
    if isinstance(ctype, Binary):
        return data
    if isinstance(ctype, Scalar | ClassLabel):
        text = data.decode("ascii").strip()
        dtype = np.dtype(ctype.storage_dtype)
        if dtype.kind == "f":
            return float(text)
        if dtype.kind == "b":
            return text.lower() in ("1", "true", "yes")
        return int(text)
    if isinstance(ctype, Tensor | Embedding | BBox | Image):
        return np.load(io.BytesIO(data), allow_pickle=False)
    return data


def _load(
    samples: list[Sample],
    schema: Schema,
    ext_of: Mapping[str, str],
    validate: Validate,
    pool: ThreadPoolExecutor,
) -> Loaded:
    columns = [n for n in schema.names if n != KEY_COLUMN]

    def one(s: Sample) -> tuple[list[Any] | None, str | None]:
        if s.error is not None:
            return None, s.error
        unknown = [e for e in s.fields if column_name(e) not in ext_of]
        if unknown:
            raise IngestError(
                f"{s.shard}: sample {s.key!r} has field(s) {unknown} that the dataset has no "
                f"column for (columns: {schema.names}); declare them with types="
            )
        values: list[Any] = []
        for name in columns:
            ext = ext_of[name]
            data = s.fields.get(ext)
            if data is None:
                data = next((v for e, v in s.fields.items() if column_name(e) == name), None)
            if data is None:
                values.append(None)
                continue
            try:
                values.append(_decode(schema[name], data, validate))
            except (CodecError, ValueError, UnicodeDecodeError) as err:
                return None, f"{s.shard}: {s.key}.{ext}: {err}"
        return values, None

    results = map_slices(one, samples, pool)
    keep = [i for i, r in enumerate(results) if r[0] is not None]
    cols: dict[str, Any] = (
        {KEY_COLUMN: [samples[i].key for i in keep]} if KEY_COLUMN in schema else {}
    )
    for j, name in enumerate(columns):
        cols[name] = [results[i][0][j] for i in keep]  # type: ignore[index]
    errors = [r[1] for r in results if r[1] is not None]
    return Loaded(cols, len(keep), sum(s.nbytes for s in samples), errors)


def _batches(
    samples: Iterator[Sample], batch_rows: int, batch_bytes: int
) -> Iterator[list[Sample]]:
    batch: list[Sample] = []
    size = 0
    for s in samples:
        if batch and (len(batch) >= batch_rows or size + s.nbytes > batch_bytes):
            yield batch
            batch, size = [], 0
        batch.append(s)
        size += s.nbytes
    if batch:
        yield batch


def webdataset(
    shards: str | Sequence[str],
    uri: str,
    *,
    types: TypesArg = None,
    validate: Validate = "header",
    infer_samples: int = 1000,
    batch_rows: int = BATCH_ROWS,
    batch_bytes: int = BATCH_BYTES,
    strict: bool = False,
    progress: bool | None = None,
    workers: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> IngestReport:
    """Ingest WebDataset shards (a path, a glob, ``shard-{000000..000099}.tar``, or a list) into ``uri``.

    Columns are named after the fields' extensions, plus ``key``; ``types``
    overrides inferred types by column name (``{"npy": th.Embedding(512)}``)
    or declares fields that the first ``infer_samples`` samples lack.
    Appending to an existing dataset uses its schema.

    Example:
        >>> import io, tarfile, tempfile, tensorhouse as th
        >>> root = tempfile.mkdtemp()
        >>> for shard in range(2):  # shards/train-000000.tar, -000001.tar: <key>.cls, <key>.txt per sample
        ...     with tarfile.open(f"{root}/train-{shard:06d}.tar", "w") as tar:
        ...         for i in range(3):
        ...             for ext, data in (("cls", str(i % 2)), ("txt", f"sample {shard}-{i}")):
        ...                 info = tarfile.TarInfo(f"{shard}{i:04d}.{ext}")
        ...                 info.size = len(data)
        ...                 tar.addfile(info, io.BytesIO(data.encode()))
        >>> th.ingest.webdataset(root + "/train-{000000..000001}.tar", f"{root}/train", progress=False).rows
        6
    """
    check_batch_limits(batch_rows, batch_bytes)
    if infer_samples <= 0:
        raise ValueError(f"infer_samples must be positive, got {infer_samples}")
    paths = expand_paths(shards)
    samples = iter_samples(paths)
    head = list(islice(samples, infer_samples))
    given = {name: column_type(t) for name, t in (types or {}).items()}
    ext_of: dict[str, str] = {}  # column -> extension
    inferred: dict[str, ColumnType] = {}
    for s in head:
        for ext, data in s.fields.items():
            name = column_name(ext)
            if name not in ext_of:
                ext_of[name] = ext
                inferred[name] = given.get(name) or infer_type(ext, data)
    for name, t in given.items():
        if name != KEY_COLUMN and name not in inferred:
            ext_of[name], inferred[name] = name, t
    try:
        schema = open_dataset(uri, storage_options=storage_options).schema
        for name in schema.names:
            ext_of.setdefault(name, name)
    except DatasetNotFoundError:
        if not inferred:
            raise IngestError(f"no samples with fields in {shards!r}") from None
        schema = Schema.of({KEY_COLUMN: Text(), **inferred})
    fp = fingerprint("webdataset", 1, [(os.path.abspath(p), os.path.getsize(p)) for p in paths])

    def plan() -> Iterator[PlannedBatch]:
        for batch in _batches(chain(head, samples), batch_rows, batch_bytes):
            yield PlannedBatch(partial(_load, batch, schema, ext_of, validate), len(batch))

    return run_batches(
        uri,
        schema,
        plan(),
        kind="webdataset",
        fingerprint=fp,
        batching=(batch_rows, batch_bytes),
        strict=strict,
        progress=progress,
        workers=workers,
        storage_options=storage_options,
    )
