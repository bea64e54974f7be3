"""The engines' scan path: per-batch filtering, engine-typed chunk decoding, and what a scan keeps in memory.

Every fast path is checked against the plain Arrow computation it replaces.
"""

from __future__ import annotations

import datetime
import gc

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

import tensorhouse as th
from tensorhouse.connector.arrow_dataset import TensorhouseArrowDataset
from tensorhouse.connector.filters import apply_filter, bind_filter
from tensorhouse.errors import SchemaError
from tensorhouse.format.chunks import columnar
from tensorhouse.format.chunks import reader as chunk_reader
from tensorhouse.format.convert import to_arrow


def _batch(n: int = 100_000) -> pa.RecordBatch:
    rng = np.random.default_rng(7)
    x = rng.integers(0, 100, n)
    s = np.array(["red", "green", "blue", "cyan"])[rng.integers(0, 4, n)]
    valid = rng.random(n) > 0.1
    return pa.record_batch(
        {
            "x": pa.array(x, mask=~valid),
            "s": pa.array(s.tolist()),
            "v": pa.array(s.tolist(), pa.string_view()),
            "d": pa.array(rng.integers(0, 20_000, n).astype("int32"), pa.int32()).cast(pa.date32()),
            "f": pa.array(rng.random(n)),
        }
    )


EXPRESSIONS = [
    pc.field("x") < 50,
    (pc.field("x") < 50) & (pc.field("s") == "red"),
    pc.field("s").isin(["red", "blue"]) | pc.field("x").is_null(),
    ~(pc.field("x") >= 10),
    pc.field("v") == "cyan",
    pc.field("d") <= pa.scalar(datetime.date(1990, 1, 1)),
    pc.field("x") >= 0,  # true wherever x is not null
    pc.field("x") > 1000,  # false everywhere
    pc.field("f") > pc.field("x"),
]


@pytest.mark.parametrize("expr", EXPRESSIONS, ids=[str(e)[:40] for e in EXPRESSIONS])
def test_apply_filter_equals_arrow_filter(expr: pc.Expression) -> None:
    """The mask-then-filter path keeps exactly the rows, in order, that Arrow's own filter keeps
    (100,000 rows: more than one Acero batch, so row order across batches is checked too)."""
    batch = _batch()
    plain = pa.RecordBatch.from_arrays(
        [c.cast(pa.string()) if c.type == pa.string_view() else c for c in batch.columns],
        names=batch.schema.names,
    )
    want = plain.filter(expr)
    got = apply_filter(batch, expr)
    assert got.schema == batch.schema  # views come back as views
    assert got.num_rows == want.num_rows
    for name in batch.schema.names:
        assert got.column(name).cast(want.column(name).type).equals(want.column(name)), name


def test_apply_filter_all_rows_kept_is_no_copy() -> None:
    batch = _batch(1000).select(["s", "f"])
    out = apply_filter(batch, pc.field("f") >= 0)
    assert out.column(0).buffers()[2].address == batch.column(0).buffers()[2].address


def test_apply_filter_constant_and_errors() -> None:
    batch = _batch(100)
    assert apply_filter(batch, pc.scalar(True)).num_rows == 100
    assert apply_filter(batch, pc.scalar(False)).num_rows == 0
    with pytest.raises(SchemaError):
        apply_filter(batch, pc.field("s") > 3)


def _columnar_chunk(arr: pa.Array) -> bytes:
    data, _ = columnar.encode(arr)
    return data


@pytest.mark.parametrize("distinct", [3, 50_000])
def test_decode_wanted_string_equals_cast(distinct: int) -> None:
    """A string_view chunk wanted as string: read as a dictionary and expanded when its pages
    are dictionary-encoded, else decoded and cast; the values are the cast's either way."""
    values = [None if i % 97 == 0 else f"v{i % distinct}" for i in range(60_000)]
    arr = pa.array(values, pa.string_view())
    data = _columnar_chunk(arr)
    stored = columnar.decode(data, None, len(arr))
    assert stored.type == pa.string_view()
    got = columnar.decode(data, None, len(arr), wanted=pa.string())
    assert got.type in (pa.string(), pa.string_view())
    assert got.cast(pa.string()).equals(arr.cast(pa.string()))


def test_scan_produces_engine_types_per_chunk(tmp_path) -> None:
    """Text stored as string_view reaches the engines as string, with the same values, and a
    filter on it is applied exactly."""
    n = 5000
    labels = [f"k{i % 7}" for i in range(n)]
    ds = th.create(
        str(tmp_path / "d"),
        {"k": th.Arrow(pa.string_view()), "x": "int64"},
        chunk_bytes=8 << 10,
    )
    ds.append({"k": pa.array(labels, pa.string_view()), "x": np.arange(n)})
    ad = TensorhouseArrowDataset(ds)
    assert ad.schema.field("k").type == pa.string()
    batches = list(ad.scanner(columns=["k", "x"]).to_batches())
    assert len(batches) > 1
    assert all(b.schema.field("k").type == pa.string() for b in batches)
    t = pa.Table.from_batches(batches)
    assert t.column("k").to_pylist() == labels
    got = ad.to_table(columns=["x"], filter=pc.field("k") == "k3").column("x").to_pylist()
    assert got == [i for i in range(n) if i % 7 == 3]


def test_whole_chunk_reads_do_not_keep_files_mapped(tmp_path) -> None:
    """Compressed and columnar chunks are decoded into memory of their own: after a scan their
    files are neither in the mapping LRU nor held by a cached header."""
    ds = th.create(
        str(tmp_path / "m"), {"k": th.Arrow(pa.string()), "x": "int64"}, tabular_files="chunks"
    )
    ds.append({"k": [f"s{i % 5}" for i in range(20_000)], "x": np.arange(20_000) % 11})
    uri = ds.uri
    # Read twice: the first read parses the header, the second knows it in advance.
    for _ in range(2):
        TensorhouseArrowDataset(ds).to_table()
    gc.collect()
    mapped = [k for k in chunk_reader._MAPS if k[0] == uri]
    assert mapped == []
    headers = [
        h for k, h in chunk_reader._HEADERS._items.items() if k[0] == uri
    ]  # the cache's own arrays
    assert headers
    for h in headers:
        assert isinstance(h.block_crcs, np.ndarray)
        assert not isinstance(h.block_crcs.base, memoryview)


MORE_EXPRESSIONS = [
    pc.field("x").isin([1, 2, 3]),
    pc.field("s").isin(["red", None]),  # a NULL in the set matches NULL rows (skip_nulls=False)
    pc.starts_with(pc.field("s"), "gr"),
    pc.match_like(pc.field("s"), "%ue"),
    pc.field("x").is_valid() & ~pc.field("x").is_null(),
    (pc.field("x") < 5) | (pc.field("f") > 0.9),
    (pc.field("s") == "red") | (pc.field("s") == "cyan") | (pc.field("s") == "nope"),
    (pc.field("v") == "red") | (pc.field("v") == "blue"),
    (pc.field("x") == 1) | (pc.field("x") == 2),
]


@pytest.mark.parametrize(
    "expr",
    EXPRESSIONS + MORE_EXPRESSIONS,
    ids=[str(e)[:40] for e in EXPRESSIONS + MORE_EXPRESSIONS],
)
def test_bound_filter_direct_mask_equals_acero(expr: pc.Expression) -> None:
    """A bound filter evaluates the tree with compute calls, not Acero; its mask is Acero's, nulls
    included."""
    batch = _batch(20_000)
    s = batch.column("s").to_pylist()
    s[::13] = [None] * len(s[::13])  # NULL text too: an IN chain answers NULL there
    batch = batch.set_column(1, "s", pa.array(s))
    bound = bind_filter(expr, batch.schema)
    assert bound.direct
    plain = pa.RecordBatch.from_arrays(
        [c.cast(pa.string()) if c.type == pa.string_view() else c for c in batch.columns],
        names=batch.schema.names,
    )
    want = plain.filter(expr)
    got = bound.apply(batch)
    assert got.num_rows == want.num_rows
    for name in batch.schema.names:
        assert got.column(name).cast(want.column(name).type).equals(want.column(name)), name


def test_bound_filter_falls_back_to_acero_for_unknown_nodes() -> None:
    """A node the direct evaluator does not rebuild (a cast's options) is evaluated by Acero."""
    batch = _batch(5000).select(["x", "s", "f"])
    expr = pc.field("x").cast(pa.float64()) > 49.5
    bound = bind_filter(expr, batch.schema)
    assert not bound.direct
    assert bound.apply(batch).equals(batch.filter(expr))


def _live_rows_reference(ds: th.Dataset, name: str) -> list:
    """A column's live rows through the per-row read path (not the scan), as Python values."""
    r = ds.reader
    rows = r.physical(np.arange(len(ds)))
    ctype = ds.schema[name]
    return to_arrow(r.read_rows(name, ctype, rows), ctype).to_pylist()


def test_scan_batches_equal_per_row_reads(tmp_path) -> None:
    """Every column kind, over many chunks, with deleted rows and batches smaller than a chunk:
    the scan (one Arrow array per chunk, sliced per batch) gives what per-row reads give."""
    rng = np.random.default_rng(3)
    n = 3000
    schema = {
        "id": "int64",
        "score": "float32",
        "text": th.Text(),
        "mask": th.Tensor("uint8", (4, 4)),
        "depth": th.Tensor("float32", (None, 3)),
        "boxes": th.BBox(),
        "emb": th.Embedding(8),
        "blob": th.Binary(),
    }
    ds = th.create(str(tmp_path / "kinds"), schema, chunk_bytes=4 << 10)
    for part in range(2):
        ds.append(
            {
                "id": np.arange(part * n, (part + 1) * n),
                "score": rng.random(n).astype("float32"),
                "text": [None if i % 11 == 0 else f"t{i}" * (i % 4) for i in range(n)],
                "mask": rng.integers(0, 255, (n, 4, 4)).astype("uint8"),
                "depth": [rng.random((int(k), 3)).astype("float32") for k in rng.integers(0, 3, n)],
                "boxes": [rng.random((int(k), 4)).astype("float32") for k in rng.integers(0, 3, n)],
                "emb": rng.random((n, 8)).astype("float32"),
                "blob": [bytes([i % 256]) * (i % 5) for i in range(n)],
            }
        )
    ds.delete("id % 7 = 3")
    names = list(schema)
    got = pa.Table.from_batches(
        list(ds.reader.iter_batches([(c, ds.schema[c]) for c in names], batch_size=700))
    )
    assert got.num_rows == len(ds)
    for name in names:
        assert got.column(name).to_pylist() == _live_rows_reference(ds, name), name
    # A pushed filter on the same scan keeps the same rows of every column.
    ad = TensorhouseArrowDataset(ds)
    picked = ad.to_table(columns=names, filter=pc.field("score") < 0.25)
    keep = [s < 0.25 for s in got.column("score").to_pylist()]
    for name in names:
        want = [v for v, k in zip(got.column(name).to_pylist(), keep, strict=True) if k]
        assert picked.column(name).to_pylist() == want, name


def test_pyarrow_take_on_sliced_nested_fixed_size_list_is_still_wrong() -> None:
    """Contract: pyarrow's take/filter on a *sliced* fixed-size list of fixed-size lists ignore the
    slice offset of the inner list, so the scan converts N-d tensor chunks batch by batch. When
    this fails, pyarrow is fixed and ``scan._fixed_list_in_fixed_list`` can go."""
    values = pa.array(np.arange(160, dtype=np.uint8))
    arr = pa.FixedSizeListArray.from_arrays(pa.FixedSizeListArray.from_arrays(values, 4), 4)
    sliced = arr.slice(3, 5)
    want = [sliced.to_pylist()[i] for i in (0, 2)]
    assert sliced.take(pa.array([0, 2])).to_pylist() != want


def test_statistics_checked_once_per_chunk_not_per_file(tmp_path) -> None:
    """Stats are verified once per process per chunk: a group file holds many chunks, so a
    second chunk of the same file whose forged stats repeat the first's is still checked."""
    from hostile import chunk_refs, rewrite_entry

    from tensorhouse.errors import CorruptChunkError

    root = tmp_path / "ds"
    ds = th.create(str(root), {"x": "int64"}, chunk_bytes=1024)  # 128 rows a chunk
    ds.append({"x": np.concatenate([np.arange(128) + 1000 * i for i in range(8)])})

    def same_file(refs: list) -> tuple[int, int]:
        for i, a in enumerate(refs):
            for j in range(i + 1, len(refs)):
                if refs[j]["path"] == a["path"]:
                    return i, j
        raise AssertionError("no two chunks share a file")

    same_file([r for r in chunk_refs(json_entry(root)) if r.get("stats")])

    def forge(doc: dict) -> None:
        refs = [r for r in chunk_refs(doc) if r.get("stats")]
        i, j = same_file(refs)
        refs[j]["stats"]["min"], refs[j]["stats"]["max"] = (
            refs[i]["stats"]["min"],
            refs[i]["stats"]["max"],
        )

    rewrite_entry(root, 1, forge)
    with pytest.raises(CorruptChunkError, match="statistics"):
        th.open(str(root)).to_table()


def json_entry(root) -> dict:
    import json

    from hostile import entry_path

    return json.loads(entry_path(root, 1).read_bytes())
