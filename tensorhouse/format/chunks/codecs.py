"""Codecs: chunk-level (none, lz4, zstd) and sample-level (jpeg, png).

The chunk codecs compress a chunk's whole data section. The sample codecs
encode each image on its own so that one image can be read with one range
read. Decoders used here release the GIL (simplejpeg, lz4, zstd), so callers
run them on threads.

Example:
    >>> from tensorhouse.format.chunks.codecs import compress, decompress
    >>> decompress("zstd", compress("zstd", b"abc" * 100), 300)[:6]
    b'abcabc'
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np

from tensorhouse.errors import CodecError, CorruptChunkError

CHUNK_CODECS = ("none", "lz4", "zstd")
SAMPLE_CODECS = (None, "jpeg", "png")

_zstd_c: Any = None
_zstd_d: Any = None


def compress(codec: str, data: bytes | memoryview, *, level: int = 3) -> bytes:
    """Compress a chunk's data section (``level``: zstd's; 1 is ~2x faster for a few percent)."""
    if codec == "none":
        return bytes(data)
    if codec == "lz4":
        import lz4.block

        return bytes(lz4.block.compress(data, store_size=False))
    if codec == "zstd":
        import zstandard

        # A fresh compressor per call: zstandard objects are not thread-safe.
        return bytes(zstandard.ZstdCompressor(level=level).compress(data))
    raise CodecError(f"unknown chunk codec {codec!r}")


def decompress(codec: str, data: bytes | memoryview, raw_length: int) -> bytes | memoryview:
    """Decompress a data section; its size must equal ``raw_length`` exactly.

    ``raw_length`` comes from a stranger's header: it is checked against the
    limits (absolute, and relative to the stored size) before any allocation.
    """
    from tensorhouse.format.chunks.header import check_expansion

    check_expansion(codec, len(data), raw_length)
    try:
        if codec == "none":
            out: bytes | memoryview = data
        elif codec == "lz4":
            import lz4.block

            out = lz4.block.decompress(data, uncompressed_size=raw_length)
        elif codec == "zstd":
            import zstandard

            out = zstandard.ZstdDecompressor().decompress(data, max_output_size=raw_length)
        else:
            raise CorruptChunkError(f"unknown chunk codec {codec!r}")
    except CorruptChunkError:
        raise
    except Exception as err:  # each library has its own error type
        raise CorruptChunkError(f"{codec} data section does not decompress: {err}") from err
    if len(out) != raw_length:
        raise CorruptChunkError(
            f"{codec} data section decompressed to {len(out)} bytes, header says {raw_length}"
        )
    return out


# -- images ------------------------------------------------------------------
JPEG_MAGIC = b"\xff\xd8\xff"
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def encode_image(codec: str, img: np.ndarray, quality: int = 90) -> bytes:
    """Encode a uint8 HxWxC image (C in 1, 3, 4; 4 only for png)."""
    if codec == "jpeg":
        import simplejpeg

        c = img.shape[2]
        if c not in (1, 3):
            raise CodecError(f"jpeg stores 1 or 3 channels, got {c}; use Image('png') for alpha")
        colorspace = "GRAY" if c == 1 else "RGB"
        return bytes(
            simplejpeg.encode_jpeg(
                np.ascontiguousarray(img),
                quality=quality,
                colorspace=colorspace,
                colorsubsampling="420",
            )
        )
    if codec == "png":
        from PIL import Image as PILImage

        c = img.shape[2]
        mode = {1: "L", 3: "RGB", 4: "RGBA"}.get(c)
        if mode is None:
            raise CodecError(f"png stores 1, 3 or 4 channels, got {c}")
        arr = img[:, :, 0] if c == 1 else img
        buf = io.BytesIO()
        # compress_level 1: PNG's zlib at default levels is ~10x slower to
        # write for a few percent of size on photographic content.
        PILImage.fromarray(np.ascontiguousarray(arr), mode=mode).save(
            buf, format="PNG", compress_level=1
        )
        return buf.getvalue()
    raise CodecError(f"unknown image codec {codec!r}")


def image_header_shape(codec: str, data: bytes | bytearray | memoryview) -> tuple[int, int, int]:
    """Shape (H, W, C) of an encoded image, reading only its header; CodecError if it is not one."""
    head = bytes(data[:8])
    if codec == "jpeg":
        if not head.startswith(JPEG_MAGIC):
            raise CodecError("not a JPEG file (bad magic bytes)")
        import simplejpeg

        try:
            h, w, _cs, _sub = simplejpeg.decode_jpeg_header(data)
        except Exception as err:
            raise CodecError(f"unreadable JPEG header: {err}") from err
        # decode_jpeg_header does not report the channel count reliably for
        # grayscale; decode as RGB unless the stream is single-component.
        channels = 1 if _cs == "Gray" else 3
        return int(h), int(w), channels
    if codec == "png":
        if not head.startswith(PNG_MAGIC):
            raise CodecError("not a PNG file (bad magic bytes)")
        from PIL import Image as PILImage

        try:
            with PILImage.open(io.BytesIO(data)) as im:
                w, h = im.size
                mode = im.mode
        except Exception as err:
            raise CodecError(f"unreadable PNG header: {err}") from err
        png_channels = {"L": 1, "RGB": 3, "RGBA": 4, "P": 3, "LA": 4}.get(mode)
        if png_channels is None:
            raise CodecError(f"unsupported PNG mode {mode!r}")
        return int(h), int(w), png_channels
    raise CodecError(f"unknown image codec {codec!r}")


def decode_image(codec: str, data: bytes | memoryview, out: np.ndarray | None = None) -> np.ndarray:
    """Decode an encoded image to uint8 HxWxC, into ``out`` when given (must match the shape).

    An image whose header claims more than ``max_image_pixels`` (tensorhouse.limits)
    is refused before decoding: a stored image of a stranger's dataset can claim any size.
    """
    if out is None:
        from tensorhouse import limits

        h, w, _c = image_header_shape(codec, data)
        limits.check(
            "max_image_pixels", h * w, what=f"{codec} image of {h}x{w} pixels", error=CodecError
        )
    if codec == "jpeg":
        import simplejpeg

        try:
            _h, _w, cs, _ = simplejpeg.decode_jpeg_header(data)
            colorspace = "GRAY" if cs == "Gray" else "RGB"
            if out is not None:
                img = simplejpeg.decode_jpeg(data, colorspace=colorspace, buffer=out)
            else:
                img = simplejpeg.decode_jpeg(data, colorspace=colorspace)
        except Exception as err:
            raise CodecError(f"JPEG does not decode: {err}") from err
        return img if img.ndim == 3 else img[:, :, None]
    if codec == "png":
        from PIL import Image as PILImage

        try:
            with PILImage.open(io.BytesIO(data)) as im:
                converted = {"P": "RGB", "LA": "RGBA"}.get(im.mode)
                arr = np.asarray(im.convert(converted) if converted else im)
        except Exception as err:
            raise CodecError(f"PNG does not decode: {err}") from err
        if arr.ndim == 2:
            arr = arr[:, :, None]
        if arr.dtype != np.uint8:
            raise CodecError(f"PNG of {arr.dtype} pixels is not a uint8 image")
        if out is not None:
            out[...] = arr
            return out
        return arr
    raise CodecError(f"unknown image codec {codec!r}")
