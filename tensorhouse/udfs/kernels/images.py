"""Image kernels: decode, resize and grayscale over a batch of images.

An image argument is either an encoded file (``BLOB``: a JPEG or PNG, as an
``Image("jpeg"/"png")`` column stores it) or a decoded ``HxWxC`` tensor (any
tensor layout; a 2-d tensor is taken as one channel). Results are decoded
uint8 images in the ``struct<data: list<uint8>, shape: int32[3]>`` layout.

Decoding is one call per image (libjpeg-turbo / zlib release the GIL, so
batches decode on the shared thread pool). Resize and grayscale are numpy
over whole groups of equally shaped images:

- ``image_resize(img, h, w)``: bilinear with half-pixel centres and no
  antialiasing (the same as ``torch.nn.functional.interpolate(mode="bilinear",
  align_corners=False)``), rounded to the nearest integer and clipped to 0..255.
- ``image_to_gray(img)``: ITU-R 601-2 luma ``L = (19595 R + 38470 G + 7471 B
  + 2**15) >> 16``, exactly what Pillow's ``convert("L")`` computes; alpha is
  dropped; a 1-channel image is returned as is; of 2 channels (gray + alpha)
  the first is kept.

Non-uint8 tensors (e.g. ``tensor_slice`` results, which are float64) are
rounded and clipped to 0..255 first.

Example:
    >>> import numpy as np, pyarrow as pa
    >>> from tensorhouse.format.chunks.codecs import encode_image
    >>> blob = encode_image("png", np.full((4, 6, 3), 200, np.uint8))
    >>> out = image_resize(pa.array([blob], pa.binary()), 2, 3)
    >>> out.to_pylist()[0]["shape"]
    [2, 3, 3]
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from tensorhouse import limits
from tensorhouse.errors import CodecError
from tensorhouse.format.chunks import codecs
from tensorhouse.udfs.kernels.errors import UDFArgumentError, arg_error, row_error
from tensorhouse.udfs.kernels.tensors import (
    IMAGE,
    TensorBatch,
    map_groups,
    plain,
    ragged_array,
    to_tensors,
    validity,
)

MAX_SIDE = 1 << 15


def _is_binary(t: pa.DataType) -> bool:
    return pa.types.is_binary(t) or pa.types.is_large_binary(t)


def decode_batch(
    arr: pa.Array | pa.ChunkedArray, fn: str = "decode_image", pos: int = 1
) -> TensorBatch:
    """Decode a column of JPEG/PNG files into a TensorBatch of ``HxWxC`` uint8 images."""
    arr = plain(arr)
    if not _is_binary(arr.type):
        raise arg_error(fn, pos, None, f"has type {arr.type}; expected an encoded image (BLOB)")
    n = len(arr)
    valid = validity(arr)
    if n == 0:
        return TensorBatch(
            np.zeros(0, np.uint8), np.zeros(1, np.int64), np.zeros((0, 3), np.int64), valid
        )
    off_dtype = np.int64 if pa.types.is_large_binary(arr.type) else np.int32
    offsets = np.frombuffer(arr.buffers()[1], dtype=off_dtype)[arr.offset : arr.offset + n + 1]
    # pa.Buffer exports signed chars; simplejpeg wants unsigned bytes.
    data = (
        memoryview(arr.buffers()[2]).cast("B") if arr.buffers()[2] is not None else memoryview(b"")
    )

    def codec_of(i: int) -> tuple[str, memoryview]:
        blob = data[int(offsets[i]) : int(offsets[i + 1])]
        head = bytes(blob[:8])
        if head.startswith(codecs.JPEG_MAGIC):
            return "jpeg", blob
        if head.startswith(codecs.PNG_MAGIC):
            return "png", blob
        raise row_error(fn, pos, i, f"is not a JPEG or PNG image (starts with {head[:4]!r})")

    def one(i: int) -> np.ndarray:
        codec, blob = codec_of(i)
        try:
            return codecs.decode_image(codec, blob)
        except CodecError as err:
            raise row_error(fn, pos, i, f"is a corrupt {codec.upper()} image: {err}") from err

    rows = np.flatnonzero(valid).tolist()
    # Headers first (microseconds each): a 634-byte JPEG can claim 32000x32000 pixels, so the
    # decoded size is checked against the limits before anything is allocated.
    total = 0
    for i in rows:
        codec, blob = codec_of(i)
        try:
            h, w, c = codecs.image_header_shape(codec, blob)
        except CodecError as err:
            raise row_error(fn, pos, i, f"is a corrupt {codec.upper()} image: {err}") from err
        limits.check(
            "max_image_pixels",
            h * w,
            what=f"{fn}: row {i} is an image of {h}x{w} pixels",
            error=UDFArgumentError,
        )
        total += h * w * max(c, 3)
    limits.check(
        "max_udf_output_bytes",
        total,
        what=f"{fn}: bytes needed to decode {len(rows)} images",
        error=UDFArgumentError,
    )
    if len(rows) > 2:
        from tensorhouse.format.threads import pool

        # A few rows per task: small images decode in microseconds, less than a task's overhead.
        step = max(1, len(rows) // 64)
        parts = pool().map(
            lambda part: [one(i) for i in part],
            [rows[k : k + step] for k in range(0, len(rows), step)],
        )
        images = [img for part in parts for img in part]
    else:
        images = [one(i) for i in rows]
    shapes = np.zeros((n, 3), dtype=np.int64)
    sizes = np.zeros(n, dtype=np.int64)
    for i, img in zip(rows, images, strict=True):
        shapes[i] = img.shape
        sizes[i] = img.size
    offs = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(sizes, out=offs[1:])
    values = (
        np.concatenate([img.reshape(-1) for img in images]) if images else np.zeros(0, np.uint8)
    )
    return TensorBatch(values, offs, shapes, valid)


def images(arr: pa.Array | pa.ChunkedArray, fn: str, pos: int = 1) -> TensorBatch:
    """Encoded files or decoded tensors -> a TensorBatch of ``HxWxC`` images."""
    arr = plain(arr)
    if _is_binary(arr.type):
        return decode_batch(arr, fn, pos)
    tb = to_tensors(arr, fn, pos)
    if tb.ndim == 2:
        return TensorBatch(
            tb.values,
            tb.offsets,
            np.concatenate([tb.shapes, np.ones((tb.n, 1), np.int64)], 1),
            tb.valid,
        )
    if tb.ndim != 3:
        raise arg_error(
            fn, pos, None, f"is a {tb.ndim}-d tensor; expected an image (HxWxC) or an encoded file"
        )
    return tb


def _as_uint8(x: np.ndarray) -> np.ndarray:
    if x.dtype == np.uint8:
        return x
    if x.dtype == np.bool_:
        return x.astype(np.uint8) * 255
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def decode_image(blobs: pa.Array | pa.ChunkedArray) -> pa.StructArray:
    """Decode JPEG/PNG files to uint8 ``HxWxC`` tensors (``struct<data, shape>``).

    Example:
        >>> import numpy as np, pyarrow as pa
        >>> from tensorhouse.format.chunks.codecs import encode_image
        >>> blob = encode_image("png", np.zeros((2, 3, 1), np.uint8))
        >>> decode_image(pa.array([blob, None], pa.binary())).to_pylist()[0]["shape"]
        [2, 3, 1]
    """
    tb = decode_batch(blobs)
    return ragged_array(tb.values, tb.shapes, tb.valid, IMAGE, "decode_image")


def _axis(out_len: int, in_len: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    src = (np.arange(out_len, dtype=np.float64) + 0.5) * (in_len / out_len) - 0.5
    src = np.clip(src, 0, in_len - 1)
    lo = np.floor(src).astype(np.int64)
    hi = np.minimum(lo + 1, in_len - 1)
    return lo, hi, (src - lo).astype(np.float32)


def resize_stack(stack: np.ndarray, h: int, w: int) -> np.ndarray:
    """Bilinear resize of ``(k, H, W, C)`` images to ``(k, h, w, C)`` uint8."""
    _, hh, ww, _ = stack.shape
    y0, y1, wy = _axis(h, hh)
    x0, x1, wx = _axis(w, ww)
    # Gather the needed rows before converting to float: less to convert when shrinking.
    top = stack[:, y0].astype(np.float32)
    rows = top + (stack[:, y1].astype(np.float32) - top) * wy[None, :, None, None]
    left = rows[:, :, x0]
    out = left + (rows[:, :, x1] - left) * wx[None, None, :, None]
    return np.clip(np.rint(out, out=out), 0, 255, out=out).astype(np.uint8)


def _size(value: object, fn: str, pos: int) -> int:
    if (
        isinstance(value, bool)
        or not isinstance(value, int | np.integer)
        or not 1 <= int(value) <= MAX_SIDE
    ):
        raise arg_error(
            fn, pos, value, f"is not an image size: expected an integer in 1..{MAX_SIDE}"
        )
    return int(value)


def image_resize(imgs: pa.Array | pa.ChunkedArray, height: int, width: int) -> pa.StructArray:
    """Resize images (encoded or decoded) to ``height x width`` (bilinear); returns uint8 images.

    Example:
        >>> import pyarrow as pa
        >>> img = pa.array([{"data": [0, 100, 200, 255], "shape": [2, 2, 1]}],
        ...                pa.struct([("data", pa.list_(pa.uint8())), ("shape", pa.list_(pa.int32(), 3))]))
        >>> image_resize(img, 1, 1).to_pylist()
        [{'data': [139], 'shape': [1, 1, 1]}]
    """
    fn = "image_resize"
    h, w = _size(height, fn, 2), _size(width, fn, 3)
    tb = images(imgs, fn)
    # The result, and the float32 rows resizing goes through (4 bytes a value), checked before allocating.
    channels = int(tb.shapes[tb.valid, 2].sum()) if tb.n and tb.shapes.shape[1] == 3 else 0
    limits.check(
        "max_udf_output_bytes",
        5 * h * w * channels,
        what=f"{fn}: bytes needed to resize {int(tb.valid.sum())} images to {h}x{w}",
        error=UDFArgumentError,
    )

    def apply(stack: np.ndarray, shape: tuple[int, ...], first_row: int) -> np.ndarray:
        if shape[0] == 0 or shape[1] == 0:
            raise row_error(
                fn, 1, first_row, f"is an empty image of shape {list(shape)}; it cannot be resized"
            )
        return resize_stack(stack, h, w)

    values, shapes, valid = map_groups(tb, apply, np.uint8)
    return ragged_array(values, shapes, valid, IMAGE, fn)


def _gray_pixels(px: np.ndarray) -> np.ndarray:
    """``(m, C)`` uint8 pixels -> ``(m,)`` luma."""
    c = px.shape[1]
    if c < 3:
        return px[:, 0].copy()
    # In place on one uint32 array: 6x faster than converting all channels first.
    luma = px[:, 0] * np.uint32(19595)
    luma += px[:, 1] * np.uint32(38470)
    luma += px[:, 2] * np.uint32(7471)
    luma += np.uint32(0x8000)
    luma >>= np.uint32(16)
    return luma.astype(np.uint8)


def image_to_gray(imgs: pa.Array | pa.ChunkedArray) -> pa.StructArray:
    """Convert images (encoded or decoded) to 1-channel uint8 luma.

    Example:
        >>> import pyarrow as pa
        >>> img = pa.array([{"data": [255, 0, 0, 0, 0, 255], "shape": [1, 2, 3]}],
        ...                pa.struct([("data", pa.list_(pa.uint8())), ("shape", pa.list_(pa.int32(), 3))]))
        >>> image_to_gray(img).to_pylist()
        [{'data': [76, 29], 'shape': [1, 2, 1]}]
    """
    fn = "image_to_gray"
    tb = images(imgs, fn)
    rows = np.flatnonzero(tb.valid)
    channels = np.unique(tb.shapes[rows, 2])
    if len(channels) == 1 and channels[0] > 0:
        # One channel count: convert every pixel of the batch at once, whatever the image sizes.
        c = int(channels[0])
        if len(rows) == tb.n:
            flat = tb.values[int(tb.offsets[0]) : int(tb.offsets[-1])]
        else:
            sizes = tb.sizes[rows]
            starts = np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)
            flat = tb.values[
                np.arange(int(sizes.sum())) + np.repeat(tb.offsets[rows] - starts, sizes)
            ]
        gray = _gray_pixels(_as_uint8(flat).reshape(-1, c))
        shapes = tb.shapes.copy()
        shapes[:, 2] = 1
        shapes[~tb.valid] = 0
        return ragged_array(gray, shapes, tb.valid, IMAGE, fn)

    def apply(stack: np.ndarray, shape: tuple[int, ...], first_row: int) -> np.ndarray:
        k, hh, ww, c = stack.shape
        if c == 0:
            raise row_error(fn, 1, first_row, "is an image with 0 channels")
        return _gray_pixels(_as_uint8(stack).reshape(-1, c)).reshape(k, hh, ww, 1)

    values, shapes, valid = map_groups(tb, apply, np.uint8)
    return ragged_array(values, shapes, valid, IMAGE, fn)


__all__ = [
    "MAX_SIDE",
    "decode_batch",
    "decode_image",
    "image_resize",
    "image_to_gray",
    "images",
    "resize_stack",
]
