"""Hugging Face ``datasets``: ``th.to_huggingface`` and ``th.ingest.huggingface``, types kept both ways.

| tensorhouse | ``datasets`` feature |
|---|---|
| ``Image("jpeg"/"png")`` | ``Image()`` (the encoded bytes, decoded by ``datasets`` on access) |
| ``ClassLabel(names)`` | ``ClassLabel(names=names)`` |
| ``Embedding(n)`` | ``List(Value("float32"), length=n)`` |
| ``Tensor(dtype, (n,))`` / ``(a, b)`` ... ``(a, b, c, d, e)`` | ``List(..., length=n)`` / ``Array2D`` ... ``Array5D`` |
| ``Tensor(dtype, (None, ...))`` | ``List(Value(dtype))`` (1-d) or ``Array2D..5D`` with a ``None`` first dim |
| ``BBox()`` | ``List(List(Value("float32"), length=4))`` |
| ``Text()`` / ``Json()`` / ``Binary()`` / numbers | ``Value("string")`` / ``Json()`` / ``Value("binary")`` / ``Value(dtype)`` |

Back from ``datasets``, the same table read the other way; a box format
other than ``xyxy`` and raw (unencoded) images do not survive (``Image()``
holds encoded files: raw images are encoded as PNG on the way out). The
``datasets`` package is an optional extra: ``pip install
'tensorhouse[huggingface]'``; nothing is downloaded.

Example:
    >>> import numpy as np, tensorhouse as th
    >>> ds = th.create("memory://doc-hf", {"label": th.ClassLabel(["cat", "dog"]), "emb": th.Embedding(2)})
    >>> _ = ds.append({"label": [1, 0], "emb": np.ones((2, 2), "float32")})
    >>> hf = th.to_huggingface(ds)
    >>> hf.features["label"].names, hf[0]["label"]
    (['cat', 'dog'], 1)
    >>> report = th.ingest.huggingface(hf, "memory://doc-hf-back", progress=False)
    >>> th.open("memory://doc-hf-back").schema == ds.schema
    True
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import pyarrow as pa

from tensorhouse.errors import SchemaError, UnsupportedError
from tensorhouse.format.dataset import Dataset
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
    infer_from_arrow,
)


def _datasets() -> Any:
    try:
        import datasets
    except ImportError as err:  # pragma: no cover - datasets is in the dev extra
        raise UnsupportedError(
            "Hugging Face interop needs datasets: pip install 'tensorhouse[huggingface]'"
        ) from err
    return datasets


# -- tensorhouse -> datasets ----------------------------------------------------------------
def feature_for(ctype: ColumnType, name: str = "?") -> Any:
    """The ``datasets`` feature of a tensorhouse column type."""
    hf = _datasets()
    if isinstance(ctype, Image):
        return hf.Image()
    if isinstance(ctype, ClassLabel):
        return hf.ClassLabel(names=list(ctype.classes)) if ctype.classes else hf.Value("int32")
    if isinstance(ctype, Json):
        return hf.Json()
    if isinstance(ctype, Text):
        return hf.Value("string")
    if isinstance(ctype, Binary):
        return hf.Value("binary")
    if isinstance(ctype, Scalar):
        return hf.Value(ctype.dtype)
    if isinstance(ctype, BBox):
        return hf.List(hf.List(hf.Value("float32"), length=4))
    if isinstance(ctype, Embedding):
        return hf.List(hf.Value(ctype.dtype), length=ctype.dim)
    if isinstance(ctype, Tensor):
        shape, dtype = ctype.shape, ctype.dtype
        arrays = {2: hf.Array2D, 3: hf.Array3D, 4: hf.Array4D, 5: hf.Array5D}
        if len(shape) in arrays and all(d is not None for d in shape[1:]):
            return arrays[len(shape)](shape=tuple(shape), dtype=dtype)
        feature = hf.Value(dtype)
        for d in reversed(shape):
            feature = hf.List(feature) if d is None else hf.List(feature, length=d)
        return feature
    raise UnsupportedError(f"column {name!r}: no Hugging Face feature for {ctype!r}")


def features_for(schema: Schema) -> Any:
    """The ``datasets.Features`` of a tensorhouse schema."""
    return _datasets().Features({n: feature_for(t, n) for n, t in schema.columns})


def _hf_column(arr: pa.Array, ctype: ColumnType) -> pa.Array:
    """One column of our Arrow layout in the layout ``datasets`` casts to its feature."""
    if isinstance(ctype, Image):
        if ctype.compression is None:  # raw pixels: datasets' Image holds encoded files
            from tensorhouse.format.chunks.codecs import encode_image

            values = arr.to_pylist()
            data = [
                None
                if v is None
                else encode_image("png", np.asarray(v["data"], np.uint8).reshape(v["shape"]))
                for v in values
            ]
            arr = pa.array(data, pa.binary())
        return pa.StructArray.from_arrays(
            [arr, pa.nulls(len(arr), pa.string())], names=["bytes", "path"], mask=arr.is_null()
        )
    if (
        isinstance(ctype, Tensor) and not ctype.is_fixed_shape
    ):  # struct<data, shape> -> nested lists
        rows = [
            None if v is None else np.asarray(v["data"]).reshape(v["shape"]).tolist()
            for v in arr.to_pylist()
        ]
        return pa.array(rows)
    return arr


def _hf_table(batch: pa.RecordBatch | pa.Table, schema: Schema, features: Any) -> pa.Table:
    from datasets.table import table_cast

    table = pa.Table.from_batches([batch]) if isinstance(batch, pa.RecordBatch) else batch
    cols = {n: _hf_column(table.column(n).combine_chunks(), schema[n]) for n in table.column_names}
    return table_cast(pa.table(cols), features.arrow_schema)


def to_huggingface(
    source: str | Dataset,
    columns: Sequence[str] | None = None,
    *,
    version: int | None = None,
    tag: str | None = None,
    branch: str | None = None,
    streaming: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> Any:
    """A ``datasets.Dataset`` (in memory) of a tensorhouse dataset, with real features (see the module notes).

    ``streaming=True`` returns a ``datasets.IterableDataset`` that reads the
    dataset batch by batch as it is iterated (for data bigger than memory).
    """
    hf = _datasets()
    from tensorhouse.connector.arrow_dataset import arrow_dataset

    ad = arrow_dataset(
        source,
        version=version,
        tag=tag,
        branch=branch,
        storage_options=storage_options,
        rowid=False,
    )
    schema = ad.dataset.schema
    names = list(schema.names if columns is None else columns)
    sub = Schema(tuple((n, schema[n]) for n in names))
    features = features_for(sub)
    if streaming:
        # datasets pickles the generator and its arguments (to fingerprint them): pass what reopens the snapshot.
        ds = ad.dataset
        # A list in gen_kwargs would be split into shards by datasets: the names go as a tuple.
        kwargs = {
            "uri": ds.uri,
            "version": ds.version,
            "branch": ds.branch_name,
            "names": tuple(names),
            "storage_options": ds.storage_options,
        }
        return hf.IterableDataset.from_generator(_stream_rows, features=features, gen_kwargs=kwargs)
    table = ad.scanner(columns=names).to_table()
    return hf.Dataset(_hf_table(table, sub, features), info=hf.DatasetInfo(features=features))


def _stream_rows(
    uri: str, version: int, branch: str, names: tuple[str, ...], storage_options: dict[str, Any]
) -> Iterator[dict[str, Any]]:
    from tensorhouse.connector.arrow_dataset import arrow_dataset

    ad = arrow_dataset(
        uri, version=version, branch=branch, storage_options=storage_options, rowid=False
    )
    sub = Schema(tuple((n, ad.dataset.schema[n]) for n in names))
    features = features_for(sub)
    for batch in ad.scanner(columns=list(names)).to_batches():
        yield from _hf_table(batch, sub, features).to_pylist()


# -- datasets -> tensorhouse ----------------------------------------------------------------
def type_for(feature: Any, name: str = "?") -> ColumnType | None:
    """The tensorhouse type of a ``datasets`` feature; None for an Image (its codec is read from the data)."""
    hf = _datasets()
    if isinstance(feature, hf.Image):
        return None
    if isinstance(feature, hf.ClassLabel):
        return ClassLabel(list(feature.names))
    if isinstance(feature, hf.Json):
        return Json()
    if isinstance(feature, hf.Array2D | hf.Array3D | hf.Array4D | hf.Array5D):
        return Tensor(feature.dtype, tuple(feature.shape))
    if isinstance(feature, hf.Value):
        if feature.dtype in ("string", "large_string"):
            return Text()
        if feature.dtype in ("binary", "large_binary"):
            return Binary()
    try:
        return infer_from_arrow(hf.Features({name: feature}).arrow_schema.field(name).type, name)
    except SchemaError as err:
        raise SchemaError(
            f"column {name!r}: no tensorhouse type for the Hugging Face feature {feature}; "
            "pass types={...}"
        ) from err


def _sniff_codec(data: Any) -> str:
    head = bytes(data[:4])
    return "jpeg" if head.startswith(b"\xff\xd8") else "png"


def _array_xd(storage: pa.Array, shape: Sequence[int | None]) -> pa.Array:
    """An ArrayXD's storage (nested lists) as fixed-size lists, the first dim kept as a list where it is None."""
    flat = storage
    while (
        pa.types.is_list(flat.type)
        or pa.types.is_large_list(flat.type)
        or pa.types.is_fixed_size_list(flat.type)
    ):
        flat = flat.flatten()
    inner = flat
    for d in reversed(shape[1:]):
        inner = pa.FixedSizeListArray.from_arrays(inner, int(d))  # type: ignore[arg-type]
    mask = storage.is_null()
    if shape[0] is None:
        offsets = storage.offsets
        return pa.ListArray.from_arrays(offsets, inner, mask=mask if storage.null_count else None)
    return pa.FixedSizeListArray.from_arrays(
        inner, int(shape[0]), mask=mask if storage.null_count else None
    )


def _plain(table: pa.Table) -> pa.Table:
    # ArrayXD columns are extension arrays of datasets' own: hand the writer typed fixed-size lists.
    cols = {}
    for name in table.column_names:
        col = table.column(name)
        if isinstance(col.type, pa.BaseExtensionType) and col.type.extension_name.startswith(
            "datasets."
        ):
            shape = getattr(col.type, "shape", None)
            chunks = [c.storage for c in col.chunks]
            if shape is not None:
                chunks = [_array_xd(c, shape) for c in chunks]
            col = (
                pa.chunked_array(chunks) if chunks else pa.chunked_array([], col.type.storage_type)
            )
        cols[name] = col
    return pa.table(cols)


def ingest_huggingface(
    hf_dataset: Any,
    uri: str,
    *,
    types: Mapping[str, Any] | None = None,
    batch_rows: int = 4096,
    progress: bool | None = None,
    strict: bool = False,
    storage_options: Mapping[str, Any] | None = None,
) -> Any:
    """Ingest a ``datasets.Dataset`` or ``IterableDataset`` into the dataset at ``uri``, types kept.

    Features map back as in the module notes (``Image`` columns keep their
    encoded JPEG/PNG bytes; a row given as a file path is read from it).
    ``types=`` overrides the type of any column. Batching, resuming and the
    report are those of ``th.ingest.arrow``.
    """
    _datasets()
    from tensorhouse.ingest.arrow_source import arrow as ingest_arrow

    features = hf_dataset.features
    if features is None:
        raise SchemaError(
            "this IterableDataset has no features; resolve them first (ds._resolve_features()) "
            "or pass types= for every column"
        )
    given = dict(types or {})
    batches = (_plain(t) for t in _arrow_batches(hf_dataset, features, batch_rows))
    first = next(batches, None)
    if first is None:
        raise SchemaError("the Hugging Face dataset has no rows: nothing to ingest")
    out: dict[str, Any] = {}
    for name, feature in features.items():
        if name in given:
            out[name] = given[name]
            continue
        t = type_for(feature, name)
        if t is None:  # an Image: JPEG bytes stay JPEG, anything else is stored as PNG
            col = first.column(name)
            sample = next(
                (r["bytes"] for r in col.to_pylist() if r is not None and r.get("bytes")), None
            )
            t = Image("jpeg" if sample is not None and _sniff_codec(sample) == "jpeg" else "png")
        out[name] = t

    def stream() -> Iterator[pa.RecordBatch]:
        for table in _chain(first, batches):
            yield from table.to_batches()

    reader = pa.RecordBatchReader.from_batches(first.schema, stream())
    return ingest_arrow(
        reader,
        uri,
        types=out,
        batch_rows=batch_rows,
        progress=progress,
        strict=strict,
        storage_options=storage_options,
    )


def _arrow_batches(hf_dataset: Any, features: Any, batch_rows: int) -> Iterator[pa.Table]:
    """Arrow tables of ``features``' types: a Dataset's own table slices; an IterableDataset's rows
    encoded by its features (its Arrow format types each batch from its values, so a batch of
    nulls would be ``null``, and mixing such batches fails inside ``datasets``)."""
    hf = _datasets()
    from datasets.table import table_cast

    schema = features.arrow_schema
    if not isinstance(hf_dataset, hf.IterableDataset):
        yield from (
            table_cast(t, schema)
            for t in hf_dataset.with_format("arrow").iter(batch_size=batch_rows)
        )
        return
    for name, f in features.items():
        if isinstance(f, hf.Image):  # the encoded bytes, not PIL images
            hf_dataset = hf_dataset.cast_column(name, hf.Image(decode=False))
    for batch in hf_dataset.iter(batch_size=batch_rows):
        encoded = features.encode_batch(batch)
        yield table_cast(pa.table({n: pa.array(encoded[n]) for n in features}), schema)


def _chain(first: pa.Table, rest: Iterator[pa.Table]) -> Iterator[pa.Table]:
    yield first
    yield from rest


__all__ = ["feature_for", "features_for", "ingest_huggingface", "to_huggingface", "type_for"]
