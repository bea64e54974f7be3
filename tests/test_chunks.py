"""The chunk format: round trips for every type and codec, random access, corruption."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

import tensorhouse as th
from tensorhouse.format.chunks import ChunkReader, encode_chunk, normalize, split_points
from tensorhouse.format.chunks.codecs import decode_image, encode_image
from tensorhouse.format.chunks.header import decode_header
from tensorhouse.format.convert import batch_to_values, to_arrow
from tensorhouse.storage import MemoryStore
from tensorhouse.synth import scene
from tensorhouse.types import ColumnType

_seq = iter(range(10**9))


def _store() -> MemoryStore:
    return MemoryStore(f"chunks-{next(_seq)}")


def _write(store: MemoryStore, values: object, ctype: ColumnType) -> tuple[str, int, int]:
    chunk = encode_chunk(normalize(values, ctype, "c"), ctype)
    path = f"data/c/{next(_seq)}.chunk"
    store.put(path, chunk.data)
    return path, chunk.header_length, len(chunk.data)


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return 99.0 if mse == 0 else 10 * np.log10(255**2 / mse)


@pytest.mark.parametrize("codec", ["none", "lz4", "zstd"])
@pytest.mark.parametrize(
    "dtype", ["uint8", "int16", "int64", "float16", "float32", "float64", "bool"]
)
def test_fixed_tensor_round_trip(codec: str, dtype: str) -> None:
    rng = np.random.default_rng(1)
    t = th.Tensor(dtype, (3, 5), compression=codec)  # type: ignore[arg-type]
    arr = (rng.random((40, 3, 5)) * 100).astype(dtype)
    store = _store()
    path, hl, size = _write(store, arr, t)
    reader = ChunkReader(store)
    got = batch_to_values(reader.read_all(path, size), t)
    assert isinstance(got, np.ndarray) and got.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(got, arr)
    rows = [39, 0, 7, 7, 12]
    np.testing.assert_array_equal(
        batch_to_values(reader.read_rows(path, rows, header_length=hl, size=size), t), arr[rows]
    )


def test_uncompressed_fixed_shape_decodes_zero_copy() -> None:
    t = th.Embedding(16)
    store = _store()
    path, _, size = _write(store, np.ones((100, 16), np.float32), t)
    batch = ChunkReader(store).read_all(path, size)
    got = batch_to_values(batch, t)
    assert isinstance(got, np.ndarray)
    assert not got.flags.owndata  # a view of the chunk's bytes, not a copy
    assert np.shares_memory(got, np.frombuffer(batch.data, np.uint8))


@settings(max_examples=40, deadline=None)
@given(
    shapes=st.lists(st.tuples(st.integers(0, 6), st.integers(0, 5)), min_size=0, max_size=12),
    codec=st.sampled_from(["none", "lz4", "zstd"]),
    dtype=st.sampled_from(["int32", "float32", "uint8"]),
)
def test_ragged_round_trip_property(shapes: list[tuple[int, int]], codec: str, dtype: str) -> None:
    rng = np.random.default_rng(len(shapes))
    t = th.Tensor(dtype, (None, None), compression=codec)  # type: ignore[arg-type]
    values = [(rng.random(s) * 50).astype(dtype) for s in shapes]
    store = _store()
    path, _hl, size = _write(store, values, t)
    got = batch_to_values(ChunkReader(store).read_all(path, size), t)
    assert len(got) == len(values)
    for a, b in zip(got, values, strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_array_equal(a, b)
    arrow = to_arrow(ChunkReader(store).read_all(path, size), t)
    arrow.validate(full=True)
    assert [r["shape"] for r in arrow.to_pylist()] == [list(s) for s in shapes]


@settings(max_examples=30, deadline=None)
@given(st.lists(st.one_of(st.none(), st.text(max_size=30)), max_size=20))
def test_unicode_text_round_trip(values: list[str | None]) -> None:
    t = th.Text()
    store = _store()
    path, _hl, size = _write(store, values, t)
    assert batch_to_values(ChunkReader(store).read_all(path, size), t) == values
    assert to_arrow(ChunkReader(store).read_all(path, size), t).to_pylist() == values


def test_json_binary_scalars_zero_d_and_empty() -> None:
    store = _store()
    cases: list[tuple[ColumnType, list[object]]] = [
        (th.Json(), [{"a": [1, 2]}, None, "x", 3.5, []]),
        (th.Binary(), [b"", b"\x00\xff", None]),
        (th.Tensor("float64", ()), [1.5, 2.0, -3.0]),
        (th.Tensor("int32", (0,)), [np.zeros(0, np.int32)] * 3),
        (th.BBox(), [np.zeros((0, 4)), np.ones((2, 4)), None]),
    ]
    for t, values in cases:
        path, _hl, size = _write(store, values, t)
        got = batch_to_values(ChunkReader(store).read_all(path, size), t)
        for a, b in zip(got, values, strict=True):
            if b is None:
                assert a is None
            elif isinstance(b, np.ndarray | float | list) and not isinstance(t, th.Json):
                np.testing.assert_array_equal(a, np.asarray(b, dtype=t.storage_dtype))
            else:
                assert a == b


def test_png_is_bit_exact_and_jpeg_within_psnr() -> None:
    rng = np.random.default_rng(0)
    imgs = [scene(rng, int(rng.integers(20, 90)), int(rng.integers(20, 90)))[0] for _ in range(12)]
    gray = scene(rng, 30, 40)[0][:, :, :1]
    rgba = np.concatenate([imgs[0], np.full((*imgs[0].shape[:2], 1), 200, np.uint8)], axis=2)
    store = _store()
    t = th.Image("png")
    path, hl, size = _write(store, [*imgs, gray, rgba], t)
    got = batch_to_values(ChunkReader(store).read_all(path, size), t)
    for a, b in zip(got, [*imgs, gray, rgba], strict=True):
        np.testing.assert_array_equal(a, b)
    t = th.Image("jpeg", quality=90)
    path, hl, size = _write(store, [*imgs, gray], t)
    got = batch_to_values(
        ChunkReader(store).read_rows(path, [12, 3], header_length=hl, size=size), t
    )
    assert got[0].shape == gray.shape and got[1].shape == imgs[3].shape
    assert _psnr(got[1], imgs[3]) > 30 and _psnr(got[0], gray) > 30


def test_encoded_jpeg_bytes_are_stored_as_is() -> None:
    img = scene(np.random.default_rng(3), 64, 48)[0]
    blob = encode_image("jpeg", img, 75)
    store = _store()
    t = th.Image("jpeg")
    path, _hl, size = _write(store, [blob], t)
    assert batch_to_values(ChunkReader(store).read_all(path, size), t, decode=False) == [blob]
    assert decode_image("jpeg", blob).shape == (64, 48, 3)


@pytest.mark.parametrize(
    ("ctype", "values", "match"),
    [
        (th.Image("jpeg"), [b"not an image"], "row 0: bytes are not a jpeg image"),
        (th.Image("jpeg"), [np.zeros((4, 4, 3), np.float32)], "uint8"),
        (th.Image("jpeg"), [np.zeros((4, 4, 2), np.uint8)], "channels|HxWxC"),
        (th.Embedding(4), np.zeros((2, 5), np.float32), "shape"),
        (th.Embedding(4), [np.zeros(4), np.zeros(3)], "row 1: expected shape"),
        (th.Tensor("int8", (2,)), [[1, 300]], "do not fit int8"),
        (th.Tensor("int32", (2,)), [[1.5, 2.0]], "cannot store float64"),
        (th.Tensor("float32", (None,)), [["a", "b"]], "expected float32"),
        (th.BBox(), [np.zeros((2, 5))], "shape"),
        (th.ClassLabel(["a", "b"]), [0, 2], "row 1: label 2"),
        (th.ClassLabel(["a", "b"]), ["a", "z"], "unknown class 'z'"),
        (th.Text(), [b"bytes"], "expected str"),
        (th.Json(), [{1, 2}], "JSON"),
    ],
)
def test_bad_values_raise_schema_error_naming_column_and_row(
    ctype: ColumnType, values: object, match: str
) -> None:
    with pytest.raises(th.SchemaError, match=match) as err:
        normalize(values, ctype, "col")
    assert "column 'col'" in str(err.value)


def test_big_sample_gets_its_own_chunk() -> None:
    t = th.Tensor("uint8", (None,))
    values = [np.ones(10, np.uint8), np.ones(5000, np.uint8), np.ones(10, np.uint8)]
    batch = normalize(values, t, "c")
    ranges = split_points(batch, 1024)
    assert ranges == [(0, 1), (1, 2), (2, 3)]
    sizes = split_points(
        normalize(np.ones((100, 100), np.uint8), th.Tensor("uint8", (100,)), "c"), 1000
    )
    assert all(b - a == 10 for a, b in sizes) and sizes[-1][1] == 100


def _corrupt(store: MemoryStore, path: str, offset: int) -> None:
    data = bytearray(store.get(path))
    data[offset] ^= 0x5A
    store.put(path, bytes(data))


@pytest.mark.parametrize("codec", ["none", "zstd"])
def test_every_corrupt_byte_is_detected(codec: str) -> None:
    t = th.Tensor("int32", (None,), compression=codec)  # type: ignore[arg-type]
    values = [np.arange(i, dtype=np.int32) for i in range(1, 40)]
    store = _store()
    path, _hl, size = _write(store, values, t)
    clean = store.get(path)
    for offset in range(len(clean)):
        store.put(path, clean)
        _corrupt(store, path, offset)
        reader = ChunkReader(store, headers=type(ChunkReader(store).headers)())
        with pytest.raises(th.CorruptChunkError):
            reader.read_all(path, size)
    store.put(path, clean)


def test_corrupt_sample_detected_on_range_read() -> None:
    t = th.Embedding(1024)
    arr = np.random.default_rng(0).random((64, 1024)).astype(np.float32)
    store = _store()
    path, hl, size = _write(store, arr, t)
    reader = ChunkReader(store, headers=type(ChunkReader(store).headers)())
    reader.read_rows(path, [5], header_length=hl, size=size)  # caches the header
    _corrupt(store, path, hl + 5 * 4096 + 100)
    with pytest.raises(th.CorruptChunkError, match="checksum"):
        reader.read_rows(path, [5], header_length=hl, size=size)
    np.testing.assert_array_equal(
        batch_to_values(reader.read_rows(path, [40], header_length=hl, size=size), t)[0], arr[40]
    )


def test_truncated_and_foreign_files_are_rejected() -> None:
    store = _store()
    t = th.Embedding(4)
    path, hl, size = _write(store, np.ones((10, 4), np.float32), t)
    data = store.get(path)
    for bad in [data[: hl - 1], data[:-1], b"PK\x03\x04" + data[4:], b""]:
        store.put(path, bad)
        with pytest.raises(th.CorruptChunkError):
            ChunkReader(store, headers=type(ChunkReader(store).headers)()).read_all(path, size)
    with pytest.raises(th.CorruptChunkError):
        decode_header(data[:hl], file_length=size + 1)


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(np.uint8, st.integers(0, 300)))
def test_random_bytes_never_crash_the_header_parser(blob: np.ndarray) -> None:
    data = b"THC1" + blob.tobytes()
    with pytest.raises(th.CorruptChunkError):
        decode_header(data)


def test_fixed_size_samples_store_no_offsets() -> None:
    t = th.Scalar("int32")
    chunk = encode_chunk(normalize(np.arange(100_000, dtype=np.int32), t, "c"), t)
    assert (
        len(chunk.data) < 100_000 * 4 * 1.01
    )  # ~ the values; format 1 spent 8 bytes of offset per sample
    h = decode_header(chunk.data[: chunk.header_length], file_length=len(chunk.data))
    assert h.offsets[-1] == 400_000 and h.offsets[7] == 28
