"""Reading and validating image files for ingestion, in parallel.

Files are read and checked on a thread pool: the read waits on the OS, and
the checks (simplejpeg's header parser, PIL's PNG header) are cheap. A JPEG
going into an ``Image("jpeg")`` column is stored as the very bytes of the file
(no decode, no re-encode); only an image of the other codec is decoded and
re-encoded. ``validate="decode"`` also decodes every image, to catch files
whose header is fine but whose data is truncated or damaged (~4x slower).

Example:
    >>> import numpy as np
    >>> from tensorhouse.format.chunks.codecs import encode_image
    >>> from tensorhouse.ingest.images import prepare_image, sniff
    >>> png = encode_image("png", np.zeros((4, 4, 3), np.uint8))
    >>> sniff(png), sniff(prepare_image(png, "jpeg"))
    ('png', 'jpeg')
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, TypeVar

import numpy as np

from tensorhouse.errors import CodecError
from tensorhouse.format.chunks.codecs import (
    JPEG_MAGIC,
    PNG_MAGIC,
    decode_image,
    encode_image,
    image_header_shape,
)

ImageFormat = Literal["jpeg", "png"]
Validate = Literal["header", "decode"]
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")

T = TypeVar("T")
R = TypeVar("R")


def sniff(data: bytes | memoryview) -> ImageFormat | None:
    """The image codec of encoded bytes, from their magic number (not the file name)."""
    head = bytes(data[:8])
    if head.startswith(JPEG_MAGIC):
        return "jpeg"
    if head.startswith(PNG_MAGIC):
        return "png"
    return None


def prepare_image(
    data: bytes,
    target: ImageFormat,
    *,
    validate: Validate = "header",
    quality: int = 90,
    check_header: bool = True,
) -> bytes:
    """The bytes to store for an encoded image in an ``Image(target)`` column; CodecError if it is not one.

    Same codec: returned as they are after a header check (skipped with
    ``check_header=False``, for callers the format's own check will cover),
    and a full decode with ``validate="decode"``. Other codec: decoded and
    re-encoded; alpha is dropped when a PNG becomes a JPEG (JPEG has none).
    """
    codec = sniff(data)
    if codec is None:
        raise CodecError("not a JPEG or PNG file (unknown magic bytes)")
    if codec == target:
        if validate == "decode":
            decode_image(codec, data)
        elif check_header:
            image_header_shape(codec, data)
        return data
    img = decode_image(codec, data)
    if target == "jpeg" and img.shape[2] == 4:
        img = np.ascontiguousarray(img[:, :, :3])
    return encode_image(target, img, quality)


def read_file(path: str, size: int | None = None) -> bytes:
    """The whole file. With its ``size`` (from an earlier stat) one ``read`` call does it, ~20% less CPU than ``open().read()``."""
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_BINARY", 0))
    try:
        if size is None:
            size = os.fstat(fd).st_size
        data = os.read(fd, size + 1)  # one byte more: tells a file that grew since it was listed
        if len(data) <= size:
            return data
        parts = [data]
        while chunk := os.read(fd, 1 << 20):
            parts.append(chunk)
        return b"".join(parts)
    finally:
        os.close(fd)


def load_images(
    paths: Sequence[str],
    target: ImageFormat,
    pool: ThreadPoolExecutor,
    *,
    validate: Validate = "header",
    quality: int = 90,
    names: Sequence[str] | None = None,
    sizes: Sequence[int] | None = None,
    check_header: bool = True,
) -> tuple[list[bytes | None], list[str], int]:
    """Read and check ``paths`` on ``pool``: (bytes or None per path, "name: reason" per failure, bytes read).

    ``sizes`` (from listing the files) saves a stat per file. With
    ``check_header=False`` a file of the target codec is only checked for its
    magic bytes: ``Dataset.append`` parses every header anyway, and a second
    parse here would cost ~12 us per image; see :func:`recheck_images`.
    """
    labels = names if names is not None else paths

    def one(i: int) -> tuple[bytes | None, str | None, int]:
        try:
            data = read_file(paths[i], sizes[i] if sizes is not None else None)
        except OSError as err:
            return None, f"{labels[i]}: cannot read: {err.strerror or err}", 0
        try:
            return (
                prepare_image(
                    data, target, validate=validate, quality=quality, check_header=check_header
                ),
                None,
                len(data),
            )
        except CodecError as err:
            return None, f"{labels[i]}: {err}", len(data)

    results = map_slices(one, list(range(len(paths))), pool)
    images = [r[0] for r in results]
    errors = [r[1] for r in results if r[1] is not None]
    return images, errors, sum(r[2] for r in results)


def recheck_images(
    images: Sequence[bytes | None],
    names: Sequence[str],
    target: ImageFormat,
    pool: ThreadPoolExecutor,
) -> tuple[list[bytes | None], list[str]]:
    """Header-check images that were passed on unchecked: (images with failures as None, "name: reason")."""

    def one(i: int) -> str | None:
        data = images[i]
        if data is None:
            return None
        try:
            image_header_shape(target, data)
        except CodecError as err:
            return f"{names[i]}: {err}"
        return None

    errors = map_slices(one, list(range(len(images))), pool)
    return [None if e is not None else img for img, e in zip(images, errors, strict=True)], [
        e for e in errors if e is not None
    ]


def map_slices(
    fn: Callable[[T], R], items: Sequence[T], pool: ThreadPoolExecutor, *, min_slice: int = 16
) -> list[R]:
    """``[fn(x) for x in items]`` on the pool, one task per contiguous slice.

    A future per item costs ~10-20 us of Python; a few slices per worker keep
    that off the per-file path while still balancing the load.
    """
    n = len(items)
    workers = max(1, pool._max_workers)
    if n <= min_slice or workers == 1:
        return [fn(x) for x in items]
    size = max(min_slice, -(-n // (workers * 2)))
    slices = [items[a : a + size] for a in range(0, n, size)]
    out: list[R] = []
    for part in pool.map(lambda s: [fn(x) for x in s], slices):
        out.extend(part)
    return out


def choose_format(
    file_names: Sequence[str], image_format: Literal["auto", "jpeg", "png"]
) -> ImageFormat:
    """``auto``: PNG when every file is a ``.png`` (stored losslessly, as is), else JPEG.

    A PNG among JPEGs is converted to JPEG (quality 90) rather than all the
    JPEGs to PNG: the JPEGs are kept byte for byte, and a PNG column of
    re-encoded JPEGs would be several times larger and slower to decode.
    """
    if image_format in ("jpeg", "png"):
        return image_format
    if image_format != "auto":
        raise ValueError(f"image_format must be 'auto', 'jpeg' or 'png', got {image_format!r}")
    if file_names and all(os.path.splitext(n)[1].lower() == ".png" for n in file_names):
        return "png"
    return "jpeg"


def file_size(path: str) -> int:
    """Size of a file, 0 when it cannot be stat'ed (it is then reported when read)."""
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def split_batches(sizes: Sequence[int], batch_rows: int, batch_bytes: int) -> list[tuple[int, int]]:
    """Contiguous ``[start, stop)`` ranges of at most ``batch_rows`` items and about ``batch_bytes``.

    Deterministic for the same sizes and limits, which is what lets a re-run
    recognise batches committed before.
    """
    out = []
    start = 0
    acc = 0
    for i, s in enumerate(sizes):
        if i > start and (i - start >= batch_rows or acc + s > batch_bytes):
            out.append((start, i))
            start, acc = i, 0
        acc += s
    if start < len(sizes):
        out.append((start, len(sizes)))
    return out
