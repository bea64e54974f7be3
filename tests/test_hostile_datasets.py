"""Crafted datasets, one per case of issue 15: each read is a typed error, bounded, inside the dataset.

Every dataset here passes its checksums (the helpers recompute them): what
must stop it is a limit, containment, or a consistency check.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
from hostile import chunk_refs, entry_path, forged_header, rewrite_entry, run_isolated, write_entry

import tensorhouse as th
from tensorhouse import limits
from tensorhouse.errors import (
    ArgumentError,
    CorruptChunkError,
    CorruptDataError,
    CorruptLogError,
    RowNotFoundError,
    StorageError,
    TensorhouseError,
)


def make(root: Path, **kw: object) -> th.Dataset:
    # Chunk files for every column: these cases craft chunk headers (group files: test_group_files.py).
    kw.setdefault("tabular_files", "chunks")
    ds = th.create(str(root), {"id": "int64", "score": "float32", "text": th.Text()}, **kw)  # type: ignore[arg-type]
    ds.append(
        {
            "id": np.arange(10),
            "score": np.linspace(0, 1, 10, dtype="float32"),
            "text": [f"row {i}" for i in range(10)],
        }
    )
    return ds


def chunk_file(root: Path, column: str) -> Path:
    (path,) = (root / "data" / column).iterdir()
    return path


def read_everything(uri: str) -> None:
    ds = th.open(uri)
    ds.to_table()
    ds.take(list(range(len(ds))))


# -- containment ------------------------------------------------------------------------


def test_chunk_symlinked_outside_the_dataset_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    make(root)
    outside = tmp_path / "secret.bin"
    chunk = chunk_file(root, "id")
    shutil.copy(chunk, outside)  # the very bytes: only the symlink is wrong
    chunk.unlink()
    chunk.symlink_to(outside)
    with pytest.raises(StorageError, match="symbolic link"):
        read_everything(str(root))


def test_data_directory_symlinked_outside_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    make(root)
    elsewhere = tmp_path / "elsewhere"
    shutil.move(str(root / "data"), elsewhere)
    (root / "data").symlink_to(elsewhere, target_is_directory=True)
    with pytest.raises(StorageError, match="outside the dataset"):
        read_everything(str(root))
    # Writing through it is refused too: appends must not land outside the dataset.
    with pytest.raises(StorageError, match="outside the dataset"):
        th.open(str(root)).append({"id": [1], "score": [0.5], "text": ["x"]})


def test_dataset_root_may_itself_be_a_symlink(tmp_path: Path) -> None:
    real = tmp_path / "real"
    make(real)
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    assert len(th.open(str(link)).to_table()) == 10


def test_fifo_in_place_of_a_chunk_fails_fast(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    make(root)
    chunk = chunk_file(root, "id")
    chunk.unlink()
    os.mkfifo(chunk)
    # In a subprocess: were the FIFO opened blocking, the read would hang forever.
    res = run_isolated(
        f"""
        import tensorhouse as th
        try:
            th.open({str(root)!r}).take([0])
        except th.errors.StorageError as err:
            print("refused:", err)
    """,
        timeout=60,
    )
    assert "refused:" in res.stdout and "not a regular file" in res.stdout, res.stderr


def test_tag_symlinked_to_dev_zero_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    ds = make(root)
    ds.tag("good")
    (root / "_refs" / "tags" / "zero.json").symlink_to("/dev/zero")
    with pytest.raises(StorageError):
        th.open(str(root), tag="zero")
    # Listings do not follow symlinks: the link is not a tag at all.
    assert th.open(str(root)).tags == {"good": 1}


# -- sizes, before the allocation ----------------------------------------------------------


def test_huge_sparse_log_entry_is_refused_unread(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    make(root)
    path = entry_path(root, 2)
    with open(path, "wb") as f:
        f.truncate(64 << 30)  # 64 GiB, sparse: reading it whole would be a MemoryError
    tracemalloc.start()
    try:
        with pytest.raises(CorruptLogError, match="max_log_entry_bytes"):
            th.open(str(root))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


def test_deletion_vector_over_the_limit_is_refused_unread(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    ds = make(root)
    ds.delete(where="id < 3")
    (dv,) = (root / "_deletions").iterdir()
    with open(dv, "wb") as f:
        f.truncate(1 << 30)

    def claim(doc: dict) -> None:
        ref = doc["actions"][0]["replace_fragment"]["deletion"]
        ref["size"] = (
            1 << 30
        )  # (a count to match would exceed the fragment's rows: the log refuses that itself)

    rewrite_entry(root, 2, claim)
    with pytest.raises(CorruptDataError, match="max_deletion_vector_bytes"):
        read_everything(str(root))


def test_header_claiming_2_26_fixed_samples_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    make(root)
    chunk = chunk_file(root, "id")
    head = forged_header(
        n=1 << 26,
        dtype="int64",
        chunk_codec="zstd",
        raw_length=8 << 26,
        data_length=0,
        fixed_size=8,
    )
    chunk.write_bytes(head)
    rewrite_entry(
        root,
        1,
        lambda d: [
            r.update(rows=1 << 26, size=len(head), header_length=len(head))
            for r in chunk_refs(d)
            if r["path"].startswith("data/id/")
        ],
    )
    tracemalloc.start()
    try:
        with pytest.raises(TensorhouseError):
            read_everything(str(root))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 128 << 20


def test_zstd_chunk_claiming_2_gib_is_refused_before_decompressing(tmp_path: Path) -> None:
    import zstandard

    root = tmp_path / "ds"
    make(root)
    chunk = chunk_file(root, "text")
    data = zstandard.ZstdCompressor().compress(b"\0" * (1 << 20))
    raw = 10 << 28  # ten samples of 256 MiB
    head = forged_header(
        n=10,
        dtype="str",
        chunk_codec="zstd",
        raw_length=raw,
        data_length=len(data),
        fixed_size=raw // 10,
    )
    chunk.write_bytes(head + data)
    rewrite_entry(
        root,
        1,
        lambda d: [
            r.update(size=len(head) + len(data), header_length=len(head))
            for r in chunk_refs(d)
            if r["path"].startswith("data/text/")
        ],
    )
    tracemalloc.start()
    try:
        with pytest.raises(
            CorruptChunkError, match=r"max_chunk_decompressed_bytes|max_compression_ratio"
        ):
            th.open(str(root)).to_table(columns=["text"])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 64 << 20


def test_compression_ratio_limit_names_how_to_raise_it() -> None:
    from tensorhouse.format.chunks.header import check_expansion

    with pytest.raises(CorruptChunkError, match=r"max_compression_ratio.*limits\.configure"):
        check_expansion("zstd", 65 << 10, 1 << 30)
    with limits.override(max_compression_ratio=1 << 20):
        check_expansion("zstd", 65 << 10, 1 << 30)


def test_shape_product_overflow_is_refused() -> None:
    from tensorhouse.format.chunks.header import decode_header

    head = forged_header(
        n=1, dtype="uint8", ndim=4, shape=(65536,) * 4, raw_length=0, data_length=0, fixed_size=0
    )
    with pytest.raises(CorruptChunkError, match="too large"):
        decode_header(head)


def test_header_length_over_the_limit_is_refused() -> None:
    from tensorhouse.format.chunks.header import header_length_hint

    with pytest.raises(CorruptChunkError, match="max_chunk_header_bytes"):
        header_length_hint(b"THC1" + (1 << 31).to_bytes(4, "little"))


# -- consistency --------------------------------------------------------------------------


def test_log_rows_smaller_than_the_chunk_are_refused(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    make(root)

    def halve(doc: dict) -> None:
        frag = doc["actions"][0]["add_fragment"]
        frag["num_rows"] = 5
        for r in chunk_refs(doc):
            r["rows"] = 5

    rewrite_entry(root, 1, halve)
    ds = th.open(str(root))
    with pytest.raises(CorruptChunkError, match="holds 10 rows, the log says 5"):
        ds.to_table()
    with pytest.raises(CorruptChunkError, match="holds 10 rows"):
        ds.take([0])


def test_float_column_pointing_at_an_int_chunk_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    ds = th.create(str(root), {"a": "int32", "b": "float32"}, tabular_files="chunks")
    ds.append({"a": np.arange(4, dtype="int32"), "b": np.ones(4, "float32")})

    def swap(doc: dict) -> None:
        cols = doc["actions"][0]["add_fragment"]["columns"]
        cols["0"], cols["1"] = cols["1"], cols["0"]

    rewrite_entry(root, 1, swap)
    # int32 and float32 are both 4 bytes: without the dtype check the bits would be reinterpreted.
    with pytest.raises(CorruptChunkError, match=r"holds (int32|float32) samples"):
        th.open(str(root)).to_table()
    with pytest.raises(CorruptChunkError):
        th.open(str(root)).take([1])


def test_text_column_pointing_at_a_tensor_chunk_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    ds = th.create(str(root), {"t": th.Text(), "x": th.Tensor("float64", (2, 2))})
    ds.append({"t": ["a", "b"], "x": np.zeros((2, 2, 2))})

    def swap(doc: dict) -> None:
        cols = doc["actions"][0]["add_fragment"]["columns"]
        cols["0"], cols["1"] = cols["1"], cols["0"]

    rewrite_entry(root, 1, swap)
    with pytest.raises(CorruptChunkError):
        th.open(str(root)).take([0, 1])


def test_forged_statistics_are_caught_when_the_chunk_is_read(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    make(root)

    def forge(doc: dict) -> None:
        for r in chunk_refs(doc):
            if r.get("stats"):
                r["stats"]["min"] = 100
                r["stats"]["max"] = 200

    rewrite_entry(root, 1, forge)
    with pytest.raises(CorruptChunkError, match="statistics"):
        th.open(str(root)).to_table()


# -- the log, tags and paths ----------------------------------------------------------


def test_deeply_nested_log_entry_is_a_corrupt_log(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    make(root)
    rewrite_entry(
        root, 1, lambda d: d.update(message=None, extra=json.loads("[" * 900 + "]" * 900))
    )
    path = entry_path(root, 1)
    path.write_text(
        path.read_text().replace('"message":null', '"message":' + "[" * 100_000 + "]" * 100_000)
    )
    with pytest.raises(CorruptLogError, match="max_json_depth"):
        th.open(str(root))


def test_huge_integer_in_a_log_entry_is_a_corrupt_log(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    make(root)
    path = entry_path(root, 1)
    doc = json.loads(path.read_bytes())
    text = json.dumps(doc).replace(
        f'"timestamp_ms": {doc["timestamp_ms"]}', '"timestamp_ms": ' + "9" * 5000
    )
    path.write_text(text)
    with pytest.raises(CorruptLogError):
        th.open(str(root))


def test_bad_checkpoint_is_skipped(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    ds = make(root)
    ds.checkpoint()
    (cp,) = (root / "_log").glob("*.checkpoint")
    cp.write_text(
        '{"format": "tensorhouse.checkpoint", "state": ' + "[" * 50_000 + "]" * 50_000 + "}"
    )
    assert len(th.open(str(root)).to_table()) == 10


@pytest.mark.parametrize("path", ["data/id/\x00.chunk", "data/id/.tmp-0123.chunk"])
def test_nul_or_staging_name_in_a_stored_path_is_a_corrupt_log(tmp_path: Path, path: str) -> None:
    root = tmp_path / "ds"
    make(root)
    rewrite_entry(root, 1, lambda d: [r.update(path=path) for r in chunk_refs(d)[:1]])
    with pytest.raises(CorruptLogError, match="unsafe data path"):
        th.open(str(root))


def test_stray_file_in_tags_is_ignored(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    ds = make(root)
    ds.tag("v1")
    (root / "_refs" / "tags" / "bad name!.json").write_text("{}")
    assert th.open(str(root)).tags == {"v1": 1}


def test_tag_version_true_is_not_version_1(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    ds = make(root)
    ds.tag("t")
    tag = root / "_refs" / "tags" / "t.json"
    doc = json.loads(tag.read_text())
    doc["version"] = True
    tag.write_text(json.dumps(doc))
    with pytest.raises(CorruptLogError, match="malformed"):
        th.open(str(root), tag="t")


def test_deep_tag_is_a_corrupt_log(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    ds = make(root)
    ds.tag("t")
    (root / "_refs" / "tags" / "t.json").write_text("[" * 20_000 + "]" * 20_000)
    with pytest.raises(CorruptLogError):
        th.open(str(root), tag="t")


def test_unknown_rowid_and_string_version_are_typed_errors(tmp_path: Path) -> None:
    root = tmp_path / "ds"
    ds = make(root)
    with pytest.raises(RowNotFoundError, match="row id 12345"):
        ds.delete(rowids=[12345])
    with pytest.raises(KeyError):  # still a KeyError for callers that knew it as one
        ds.delete(rowids=[12345])
    with pytest.raises(ArgumentError, match="version"):
        th.open(str(root), version="1")  # type: ignore[arg-type]


def test_crafted_entry_keeps_the_right_data_when_it_passes(tmp_path: Path) -> None:
    """A rewrite that changes nothing the data depends on must still read exactly right."""
    root = tmp_path / "ds"
    make(root)
    before = th.open(str(root)).to_table()
    rewrite_entry(root, 1, lambda d: d.update(message="hello"))
    assert th.open(str(root)).to_table().equals(before)
    write_entry(entry_path(root, 1), json.loads(entry_path(root, 1).read_text()))
    assert stat.S_ISREG(os.stat(entry_path(root, 1)).st_mode)


def test_resealed_text_chunk_with_invalid_utf8_is_a_corrupt_chunk(tmp_path: Path) -> None:
    from tensorhouse.format.chunks.header import block_checksums, decode_header, encode_header

    root = tmp_path / "ds"
    ds = th.create(str(root), {"t": th.Text(compression="none")}, tabular_files="chunks")
    ds.append({"t": ["ab", "cd"]})
    chunk = chunk_file(root, "t")
    data = bytearray(chunk.read_bytes())
    h = decode_header(bytes(data))
    data[h.header_length] = (
        0xFF  # not UTF-8; then reseal the block checksums and the header, as an attacker would
    )
    body = bytes(data[h.header_length :])
    head = encode_header(
        chunk_codec="none",
        sample_codec=None,
        dtype="str",
        ndim=0,
        shapes=np.asarray(h.shapes),
        offsets=h.offsets,
        nulls=h.nulls,
        data_length=len(body),
        raw_length=len(body),
        block_size=h.block_size,
        block_crcs=block_checksums(body, h.block_size),
    )
    chunk.write_bytes(head + body)
    with pytest.raises(CorruptChunkError, match="UTF-8"):
        th.open(str(root)).take([0])
    with pytest.raises(CorruptChunkError, match="UTF-8"):
        th.open(str(root)).to_table()
