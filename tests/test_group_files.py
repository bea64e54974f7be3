"""Group files: a fragment's tabular columns in one plain Parquet file, and ``native_files``.

Values go through tensorhouse's reader and through readers that know nothing
of tensorhouse (pyarrow.parquet, DuckDB's read_parquet) and must agree; every
kind of damage to a group file is a typed error, never a wrong value.
"""

from __future__ import annotations

import datetime
import decimal
import json
import shutil
import struct
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from hostile import chunk_refs, rewrite_entry

import tensorhouse as th
from tensorhouse.connector.arrow_dataset import TensorhouseArrowDataset
from tensorhouse.errors import CorruptChunkError, CorruptLogError, SchemaError, TensorhouseError
from tensorhouse.format.chunks import group

D = decimal.Decimal
N = 50


def _values() -> dict[str, tuple[Any, list[Any]]]:
    """column -> (type, values with a null in row 3) for every tabular type."""
    rows = range(N)

    def nulled(xs: list[Any]) -> list[Any]:
        return [None if i == 3 else x for i, x in enumerate(xs)]

    utc = datetime.UTC
    return {
        "i8": ("int8", nulled([i % 100 - 50 for i in rows])),
        "i64": ("int64", nulled([i * 10**12 for i in rows])),
        "u64": ("uint64", nulled([2**64 - 1 - i for i in rows])),
        "f32": ("float32", nulled([i / 4 for i in rows])),
        "f64": ("float64", nulled([i / 3 for i in rows])),
        "b": ("bool", nulled([i % 2 == 0 for i in rows])),
        "label": (th.ClassLabel(["a", "b", "c"]), [i % 3 for i in rows]),
        "text": (th.Text(), nulled([f"text {i} é" for i in rows])),
        "json": (th.Json(), [{"i": i, "l": [i] * (i % 3)} for i in rows]),
        "d32": ("date32", nulled([datetime.date(2000 + i % 30, 1, 1) for i in rows])),
        "d64": ("date64", nulled([datetime.date(1990, 1, 1 + i % 28) for i in rows])),
        "t32": ("time32[s]", nulled([datetime.time(i % 24, i % 60, 1) for i in rows])),
        "t64": ("time64[ns]", nulled([datetime.time(1, 2, 3, i) for i in rows])),
        "ts_s": ("timestamp[s]", nulled([datetime.datetime(2020, 1, 1, 0, 0, i) for i in rows])),
        "ts_tz": (
            "timestamp[us, tz=UTC]",
            nulled([datetime.datetime(2021, 5, 1, 0, 0, i, tzinfo=utc) for i in rows]),
        ),
        "ts_ns": ("timestamp[ns]", nulled([datetime.datetime(2022, 1, 1, 1, i) for i in rows])),
        "dur": ("duration[ms]", nulled([datetime.timedelta(seconds=i) for i in rows])),
        "dec9": ("decimal(9,2)", nulled([D(f"{i}.25") for i in rows])),
        "dec18": ("decimal(18,4)", nulled([D(f"-{i}1234567.1234") for i in rows])),
        "dec38": ("decimal(38,10)", nulled([D(f"{i}123456789012345678.0123456789") for i in rows])),
        "dec256": ("decimal256(40,3)", nulled([D(f"{i}" + "9" * 35 + ".125") for i in rows])),
        "s": ("string", nulled([f"s{i % 7}" for i in rows])),
        "ls": ("large_string", nulled([f"large {i}" for i in rows])),
        "sv": ("string_view", nulled([f"view value number {i}" for i in rows])),
        "bv": ("binary_view", nulled([bytes([i]) * (i % 20) for i in rows])),
        "lb": ("large_binary", nulled([bytes([i]) * 3 for i in rows])),
        "dict": ("dictionary<values=string, indices=int8>", nulled([f"k{i % 4}" for i in rows])),
        "lst": ("list<int32>", nulled([list(range(i % 4)) for i in rows])),
        "llst": (
            "large_list<date32>",
            nulled([[datetime.date(2001, 1, 1)] * (i % 3) for i in rows]),
        ),
        "st": (
            "struct<a: int64, b: string>",
            nulled([{"a": i, "b": None if i % 5 == 0 else f"b{i}"} for i in rows]),
        ),
        "mp": ("map<string, int32>", nulled([[("k", i), ("z", -i)] for i in rows])),
        "f16": ("float16", nulled([np.float16(i / 8) for i in rows])),
    }


def make_all(root: Path, **kw: Any) -> tuple[th.Dataset, dict[str, list[Any]]]:
    spec = _values()
    ds = th.create(str(root), {k: t for k, (t, _) in spec.items()}, **kw)
    ds.append({k: v for k, (_, v) in spec.items()})
    return ds, {k: v for k, (_, v) in spec.items()}


def test_every_tabular_type_round_trips_through_tensorhouse_pyarrow_and_duckdb(
    tmp_path: Path,
) -> None:
    ds, _ = make_all(tmp_path / "all")
    want = make_all(tmp_path / "chunks", tabular_files="chunks")[0].to_table()
    got = ds.to_table()
    assert got.equals(want)  # the same values, types and nulls as the chunk-file layout
    taken = ds.take([3, 7, 49])
    old = th.open(str(tmp_path / "chunks")).take([3, 7, 49])
    for k in taken:
        assert json.dumps(taken[k], default=str) == json.dumps(old[k], default=str), k
    # The files are plain Parquet: pyarrow reads them without tensorhouse.
    files = ds.native_files()
    assert files is not None and len(files) == 1
    f = files[0]
    assert f.rows == N and f.offset == 0 and len(f.deleted) == 0
    assert Path(f.path).is_absolute() and f.path.endswith(".parquet")
    raw = pq.read_table(f.path)
    assert set(f.columns.values()) == set(raw.column_names)
    for name, phys in f.columns.items():
        t = ds.schema[name].arrow_type()
        assert raw.column(phys).cast(t).equals(got.column(name).cast(t)), name
    # Field ids are Parquet's own: physical names and ids agree with the log.
    meta = pq.ParquetFile(f.path).schema_arrow
    for name, phys in f.columns.items():
        fid = ds.snapshot.metadata.field_ids[name]
        assert (
            phys == f"f{fid}"
            and meta.field(phys).metadata[b"PARQUET:field_id"] == str(fid).encode()
        )
    # DuckDB's own reader gives the same values for the types it has.
    duckdb = pytest.importorskip("duckdb")
    con = duckdb.connect()
    same = ["i8", "i64", "f32", "f64", "b", "text", "d32", "ts_ns", "dec9", "dec18", "dec38"]
    same += ["s", "ls", "sv", "lst", "st"]
    cols = ", ".join(f'{f.columns[n]} AS "{n}"' for n in same)
    duck = con.sql(f"SELECT {cols} FROM read_parquet('{f.path}')").to_arrow_table()
    for n in same:
        t = ds.schema[n].arrow_type()
        mine = got.column(n).cast(th.types.Arrow(t).arrow_type())  # type: ignore[arg-type]
        assert duck.column(n).to_pylist() == mine.to_pylist(), n


def test_group_file_layout_row_groups_statistics_and_checksums(tmp_path: Path) -> None:
    ds = th.create(str(tmp_path / "l"), {"x": "int64", "s": "string"}, chunk_bytes=4096)
    ds.append({"x": np.arange(3000), "s": [f"v{i:05d}" for i in range(3000)]})
    frag = ds.snapshot.fragments[0]
    xs, ss = frag.columns[0], frag.columns[1]
    assert len(xs) == len(ss) > 1 and [r.rows for r in xs] == [r.rows for r in ss]
    assert all(r.part is not None and r.header_length == 0 for r in (*xs, *ss))
    first = [r for r in xs if r.path == xs[0].path]  # an append may be several files
    assert [r.part.row_group for r in first] == list(range(len(first)))  # type: ignore[union-attr]
    assert xs[0].stats == {
        "null_count": 0,
        "min": 0,
        "max": xs[0].rows - 1,
        "codec": xs[0].stats["codec"],
    }  # type: ignore[index]
    path = str(tmp_path / "l" / xs[0].path)
    pf = pq.ParquetFile(path)
    assert pf.metadata.num_row_groups == len(first)
    col = pf.metadata.row_group(1).column(0)
    assert col.statistics.min == xs[1].stats["min"]  # type: ignore[index]  # engines prune on these
    # Page checksums are written: pyarrow verifies them.
    assert pq.ParquetFile(path, page_checksum_verification=True).read().num_rows == sum(
        r.rows for r in first
    )
    # Chunk pruning still prunes: only the row group holding x < 10 is read.
    scan = TensorhouseArrowDataset(ds)
    assert scan.scanner(filter=pc.field("x") < 10).ranges == [(0, xs[0].rows)]


def test_rename_keeps_files_and_maps_physical_names(tmp_path: Path) -> None:
    ds = th.create(str(tmp_path / "r"), {"a": "int64", "b": "string"})
    ds.append({"a": [1, 2], "b": ["x", "y"]})
    before = ds.native_files()
    ds.alter.rename_column("a", "alpha")
    after = ds.native_files()
    assert before is not None and after is not None
    assert after[0].path == before[0].path
    assert dict(after[0].columns) == {"alpha": "f0", "b": "f1"}
    assert ds.to_table().column("alpha").to_pylist() == [1, 2]


def test_delete_update_add_column_compact_and_merge(tmp_path: Path) -> None:
    ds = th.create(
        str(tmp_path / "m"), {"id": "int64", "name": "string", "v": th.Tensor("float32", (2,))}
    )
    ds.append(
        {
            "id": np.arange(10),
            "name": [f"n{i}" for i in range(10)],
            "v": np.ones((10, 2), "float32"),
        }
    )
    ds.append(
        {
            "id": np.arange(10, 15),
            "name": [f"n{i}" for i in range(10, 15)],
            "v": np.zeros((5, 2), "float32"),
        }
    )
    # A tensor column is not in group files: all columns -> None; the tabular ones -> files.
    assert ds.native_files() is None
    files = ds.native_files(["id", "name"])
    assert files is not None and [f.rows for f in files] == [10, 5]
    assert [f.fragment_id for f in files] == [0, 1]
    ds.delete("id IN (2, 11)")
    files = ds.native_files(["id", "name"])
    assert files is not None
    assert files[0].deleted.tolist() == [2] and files[1].deleted.tolist() == [1]
    assert files[1].first_rowid == (1 << 32)
    # An update rewrites one chunk of one column in a file of its own: that column is not native.
    ds.update({"name": "changed"}, where="id = 12")
    assert ds.native_files(["id", "name"]) is None
    assert ds.native_files(["id"]) is not None
    assert ds.to_table(["name"]).column("name").to_pylist()[-3] == "changed"
    # A column added with values gets files of its own.
    ds.alter.add_column("score", "float64", np.arange(13, dtype="float64"))
    assert ds.native_files(["id", "score"]) is None
    assert ds.to_table(["score"]).column("score").to_pylist() == list(map(float, range(13)))
    want = ds.to_table(["id", "name", "score"])
    # Compaction rewrites every column of the rows into new group files: native again.
    ds.compact(target_rows=1000)
    assert ds.to_table(["id", "name", "score"]).equals(want)
    files = ds.native_files(["id", "name", "score"])
    assert files is not None and len(files) == 1 and len(files[0].deleted) == 0
    got = pq.read_table(files[0].path)
    assert got.column(files[0].columns["name"]).to_pylist() == want.column("name").to_pylist()
    # A branch's appends merge back with their group files.
    b = ds.branch("dev")
    b.append({"id": [99], "name": ["b"], "v": np.ones((1, 2), "float32"), "score": [1.5]})
    ds.merge("dev")
    ds = ds.refresh()
    assert ds.to_table(["id"]).column("id").to_pylist()[-1] == 99
    assert ds.native_files(["id", "name", "score"]) is not None


def test_native_files_edge_cases(tmp_path: Path) -> None:
    ds = th.create(str(tmp_path / "e"), {"x": "int64"})
    assert ds.native_files() == ()
    with pytest.raises(SchemaError, match="nope"):
        ds.native_files(["nope"])
    old = th.create(str(tmp_path / "old"), {"x": "int64"}, tabular_files="chunks")
    old.append({"x": [1]})
    assert old.native_files() is None  # chunk files: the Python scan reads them
    mem = th.create("memory://native-edge", {"x": "int64"})
    mem.append({"x": [1, 2]})
    files = mem.native_files()
    assert files is not None and files[0].path.startswith("memory://native-edge/data/")
    with pytest.raises(ValueError, match="tabular_files"):
        th.create(str(tmp_path / "bad"), {"x": "int64"}, tabular_files="orc")


def test_a_large_append_is_several_files_in_row_order(tmp_path: Path) -> None:
    ds = th.create(str(tmp_path / "big"), {"x": "int64"}, chunk_bytes=1024)
    ds.append({"x": np.arange(group.GROUPS_PER_FILE * 128 * 3)})
    files = ds.native_files()
    assert files is not None and len(files) == 3
    assert [f.offset for f in files] == [0, 1024, 2048] and {f.fragment_id for f in files} == {0}
    back = np.concatenate([pq.read_table(f.path).column("f0").to_numpy() for f in files])
    assert (back == np.arange(3072)).all()


def test_a_checkpoint_keeps_group_parts(tmp_path: Path) -> None:
    ds = th.create(str(tmp_path / "c"), {"x": "int64", "s": "string"})
    ds.append({"x": [1, 2], "s": ["a", None]})
    ds.checkpoint()
    again = th.open(str(tmp_path / "c"))
    assert again.snapshot.fragments[0] == ds.snapshot.fragments[0]
    assert again.to_table().equals(ds.to_table())


# -- hostile group files ------------------------------------------------------------------
def _hostile(root: Path) -> tuple[th.Dataset, Path]:
    ds = th.create(str(root), {"x": "int64", "s": "string", "d": "decimal(12,2)"}, chunk_bytes=2048)
    ds.append(
        {
            "x": np.arange(1000),
            "s": [f"value {i % 13}" for i in range(1000)],
            "d": [D(f"{i}.50") for i in range(1000)],
        }
    )
    # The file holding the text column's second row group (an append may be several files).
    return ds, root / ds.snapshot.fragments[0].columns[1][1].path


def _read(root: Path) -> None:
    ds = th.open(str(root))
    ds.to_table()
    ds.take(list(range(0, len(ds), 7)))


def test_truncated_group_file_is_a_corrupt_chunk(tmp_path: Path) -> None:
    _, path = _hostile(tmp_path / "t")
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(CorruptChunkError):
        _read(tmp_path / "t")


@pytest.mark.parametrize("where", ["data", "page_header", "footer", "footer_length"])
def test_a_flipped_byte_anywhere_read_is_a_corrupt_chunk(tmp_path: Path, where: str) -> None:
    ds, path = _hostile(tmp_path / "f")
    ref = ds.snapshot.fragments[0].columns[1][1]  # the text column's second row group
    assert ref.part is not None
    data = bytearray(path.read_bytes())
    (footer_len,) = struct.unpack("<I", data[-8:-4])
    pos = {
        "data": ref.part.offset + ref.size - 3,  # inside the last page's values
        "page_header": ref.part.offset + 2,  # the first page header (not under Parquet's CRC)
        "footer": len(data) - 8 - footer_len // 2,
        "footer_length": len(data) - 7,
    }[where]
    data[pos] ^= 0x10
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptChunkError):
        _read(tmp_path / "f")


def test_huge_footer_claim_is_refused_unread(tmp_path: Path) -> None:
    _, path = _hostile(tmp_path / "h")
    data = bytearray(path.read_bytes())
    data[-8:-4] = struct.pack("<I", (1 << 32) - 1)
    path.write_bytes(bytes(data))
    with pytest.raises(CorruptChunkError, match="footer"):
        _read(tmp_path / "h")


def test_wrong_row_counts_in_the_log_are_refused(tmp_path: Path) -> None:
    _hostile(tmp_path / "w")

    def shift(doc: dict[str, Any]) -> None:  # still sums to the fragment's rows
        refs = [r for r in chunk_refs(doc) if r["part"]["column"] == "f0"]
        refs[0]["rows"] += 1
        refs[1]["rows"] -= 1

    rewrite_entry(tmp_path / "w", 1, shift)
    with pytest.raises(CorruptChunkError, match="rows"):
        _read(tmp_path / "w")


def test_a_column_pointed_at_another_columns_chunks_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "s"
    ds = th.create(str(root), {"a": "int32", "b": "float32"})
    ds.append({"a": np.arange(4, dtype="int32"), "b": np.ones(4, "float32")})

    def swap(doc: dict[str, Any]) -> None:
        cols = doc["actions"][0]["add_fragment"]["columns"]
        cols["0"], cols["1"] = cols["1"], cols["0"]

    rewrite_entry(root, 1, swap)
    with pytest.raises(CorruptChunkError, match="holds float"):
        th.open(str(root)).to_table()
    with pytest.raises(CorruptChunkError):
        th.open(str(root)).take([1])


@pytest.mark.parametrize(
    "change",
    [
        {"offset": 10**9},
        {"file_size": 3},
        {"column": "../x"},
        {"checksum": "zz"},
        {"row_group": -1},
    ],
)
def test_bad_parts_in_the_log_are_a_corrupt_log(tmp_path: Path, change: dict[str, Any]) -> None:
    _hostile(tmp_path / "p")

    def forge(doc: dict[str, Any]) -> None:
        chunk_refs(doc)[0]["part"].update(change)

    rewrite_entry(tmp_path / "p", 1, forge)
    with pytest.raises(CorruptLogError):
        _read(tmp_path / "p")


def test_a_forged_log_cannot_read_outside_the_chunk_over_object_storage(tmp_path: Path) -> None:
    """Remote reads hand pyarrow only the chunk's bytes: a read elsewhere is refused, not served."""
    f = group.RangeFile(100, 10, b"x" * 20, "where")
    f.seek(12)
    assert f.read(5) == b"xxxxx"
    f.seek(50)
    with pytest.raises(CorruptChunkError, match="outside"):
        f.read(4)


def test_group_files_read_over_object_storage(s3_uri: tuple[str, dict[str, Any]]) -> None:
    uri, options = s3_uri
    ds = th.create(uri, {"x": "int64", "s": "string"}, chunk_bytes=1024, storage_options=options)
    ds.append({"x": np.arange(500), "s": [f"s{i}" for i in range(500)]})
    again = th.open(uri, storage_options=options)
    assert again.to_table().column("x").to_pylist() == list(range(500))
    assert again.take([499])["s"] == ["s499"]
    files = again.native_files()
    assert files is not None and files[0].path.startswith(uri + "/data/_groups/")


def test_every_error_is_typed_for_random_damage(tmp_path: Path) -> None:
    """A small deterministic sweep (the hypothesis campaign is tests/fuzz_worker.py group_file)."""
    ds, path = _hostile(tmp_path / "z")
    want = ds.to_table()
    clean = path.read_bytes()
    rng = np.random.default_rng(0)
    for k in range(25):
        data = bytearray(clean)
        pos = int(rng.integers(0, len(data)))
        data[pos] ^= 1 << int(rng.integers(0, 8))
        path.write_bytes(bytes(data))
        root = tmp_path / f"z{k}"
        shutil.copytree(tmp_path / "z", root)
        try:
            got = th.open(str(root)).to_table()
        except TensorhouseError:
            continue
        assert got.equals(want), pos


def test_reads_keep_no_mapping_and_footers_are_parsed_once(tmp_path: Path) -> None:
    import gc

    from tensorhouse.format.chunks import reader as chunk_reader

    ds = th.create(str(tmp_path / "k"), {"k": "string", "x": "int64"}, chunk_bytes=4096)
    ds.append({"k": [f"s{i % 5}" for i in range(5000)], "x": np.arange(5000)})
    before = dict(group._FOOTERS._items)
    for _ in range(2):
        TensorhouseArrowDataset(ds).to_table()
    gc.collect()
    assert [k for k in chunk_reader._MAPS if k[0] == ds.uri] == []  # decoded values are copies
    parsed = [k for k in group._FOOTERS._items if k not in before and k[0] == ds.uri]
    files = {r.path for refs in ds.snapshot.fragments[0].columns.values() for r in refs}
    assert sorted(k[1] for k in parsed) == sorted(files)  # one footer per file, kept


def test_a_log_range_other_than_the_footers_is_refused(tmp_path: Path) -> None:
    """Bytes checked against the log's checksum must be the bytes decoded: a forged log that points
    a chunk at another chunk's (valid, checksummed) range is refused."""
    _hostile(tmp_path / "o")

    def forge(doc: dict[str, Any]) -> None:
        refs = chunk_refs(doc)
        a = refs[0]
        b = next(
            r for r in refs if r["path"] == a["path"] and r["part"]["column"] != a["part"]["column"]
        )
        for key in ("offset", "checksum"):
            a["part"][key] = b["part"][key]
        a["size"] = b["size"]

    rewrite_entry(tmp_path / "o", 1, forge)
    with pytest.raises(CorruptChunkError, match="lies at"):
        _read(tmp_path / "o")


def test_encodings_chosen_for_a_whole_file_equal_each_column_alone() -> None:
    """One sample write per candidate for every column gives each column the choice it gets alone,
    including columns a candidate cannot write (float16 has no dictionary or delta encoding)."""
    import pyarrow as pa

    rng = np.random.default_rng(0)
    arrays = [
        pa.array(np.arange(20_000, dtype=np.int64) * 7),  # delta
        pa.array(rng.integers(0, 5, 20_000)),  # dictionary
        pa.array(rng.random(20_000)),  # plain
        pa.array(["the same words again"] * 20_000),  # dictionary
        pa.array(np.arange(20_000, dtype=np.float16)),
        pa.array([None] * 20_000, pa.int32()),
        pa.array([[1, 2]] * 100),
        pa.array([], pa.string()),
        pa.array([decimal.Decimal(i) for i in range(5_000)], pa.decimal128(15, 2)),
    ]
    alone = [group.choose_encodings([a])[0] for a in arrays]
    assert group.choose_encodings(arrays) == alone
    assert alone[0] == group.Encoding("delta", "none") or alone[0].encoding == "delta"
    assert alone[2].encoding == "plain"


def test_text_with_thousands_of_repeated_values_is_dictionary_encoded() -> None:
    """10,000 distinct tags look unique in a 4,096-row sample, but repeat ~100x in a 1M-row
    row group: stored PLAIN they decoded ~7x slower and DuckDB filtered value by value."""
    rng = np.random.default_rng(0)
    tags = pa.array([f"t{i:04d}" for i in rng.integers(0, 10_000, 200_000)])
    unique = pa.array([f"u{i}" for i in range(200_000)])
    tag_enc, unique_enc = group.choose_encodings([tags, unique])
    assert tag_enc.encoding == "dictionary"
    assert unique_enc.encoding == "plain"  # no repeats: a dictionary would only add a page
