"""JPEG thumbnails of image samples, made on a thread pool and kept in an in-memory LRU.

JPEGs decode at 1/2, 1/4 or 1/8 scale when that is still at least the
thumbnail's size (libjpeg-turbo's DCT scaling, through simplejpeg), which
makes a thumbnail of a large photo several times cheaper than a full decode.
Concurrent requests for the same thumbnail share one job. simplejpeg and
Pillow release the GIL, so the pool's threads decode in parallel.

Example:
    >>> import numpy as np
    >>> from tensorhouse.format.chunks.codecs import encode_image
    >>> from tensorhouse.viewer.thumbnails import ThumbnailCache, make_thumbnail
    >>> jpeg = encode_image("jpeg", np.zeros((600, 800, 3), np.uint8))
    >>> t = make_thumbnail(jpeg, "jpeg", 256)
    >>> (t.width, t.height), t.jpeg[:3] == b"\\xff\\xd8\\xff"
    ((800, 600), True)
    >>> cache = ThumbnailCache(max_bytes=1 << 20, workers=2)
    >>> cache.get(("v1", 0, "image", 64), lambda: (jpeg, "jpeg"), 64).size
    (64, 48)
    >>> cache.close()
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from tensorhouse import limits
from tensorhouse.errors import CodecError
from tensorhouse.format.chunks.codecs import decode_image

#: What a thumbnail job loads: the stored image (encoded bytes, or raw HxWxC pixels) and its codec.
ImageSource = tuple[bytes | np.ndarray, str | None]


@dataclass(frozen=True)
class Thumbnail:
    """A JPEG thumbnail and the size of the image it was made from (boxes are in those coordinates)."""

    jpeg: bytes
    width: int
    height: int
    channels: int
    size: tuple[int, int]  # the thumbnail's own (width, height)


def fit(width: int, height: int, size: int) -> tuple[int, int]:
    """The (w, h) of a thumbnail whose longer side is ``size`` (never larger than the image)."""
    scale = min(1.0, size / max(width, height, 1))
    return max(1, round(width * scale)), max(1, round(height * scale))


def _decode(data: bytes | np.ndarray, codec: str | None, tw: int, th: int) -> np.ndarray:
    if isinstance(data, np.ndarray):
        return data
    if codec == "jpeg":
        import simplejpeg

        h, w, cs, _ = simplejpeg.decode_jpeg_header(data)
        # A stranger's dataset may hold a JPEG claiming any size: refuse before decoding.
        limits.check(
            "max_image_pixels", int(h) * int(w), what=f"a JPEG of {h}x{w} pixels", error=CodecError
        )
        img = simplejpeg.decode_jpeg(
            data, colorspace="GRAY" if cs == "Gray" else "RGB", min_height=th, min_width=tw
        )
        return img if img.ndim == 3 else img[:, :, None]
    if codec is None:
        raise ValueError("an encoded image needs its codec")
    return decode_image(codec, data)


def _header_size(data: bytes | np.ndarray, codec: str | None) -> tuple[int, int, int]:
    if isinstance(data, np.ndarray):
        h, w, c = data.shape
        return int(h), int(w), int(c)
    from tensorhouse.format.chunks.codecs import image_header_shape

    assert codec is not None
    return image_header_shape(codec, data)


def make_thumbnail(
    data: bytes | np.ndarray, codec: str | None, size: int, *, quality: int = 85
) -> Thumbnail:
    """A JPEG of the image scaled to fit ``size`` x ``size`` (alpha composited over grey)."""
    import simplejpeg
    from PIL import Image as PILImage

    h, w, c = _header_size(data, codec)
    tw, th = fit(w, h, size)
    img = _decode(data, codec, tw, th)
    if img.shape[2] == 4:  # JPEG has no alpha: show transparent parts as mid grey
        alpha = img[:, :, 3:4].astype(np.float32) / 255.0
        img = (img[:, :, :3] * alpha + 128.0 * (1.0 - alpha)).astype(np.uint8)
    elif img.shape[2] == 2:
        img = img[:, :, :1]
    if img.shape[:2] != (th, tw):
        pil = PILImage.fromarray(img[:, :, 0] if img.shape[2] == 1 else img)
        img = np.asarray(pil.resize((tw, th), PILImage.Resampling.BILINEAR, reducing_gap=2.0))
        if img.ndim == 2:
            img = img[:, :, None]
    gray = img.shape[2] == 1
    jpeg = simplejpeg.encode_jpeg(
        np.ascontiguousarray(img),
        quality=quality,
        colorspace="GRAY" if gray else "RGB",
        colorsubsampling="420",
    )
    return Thumbnail(bytes(jpeg), w, h, c, (tw, th))


class ThumbnailCache:
    """Thumbnails by key (version, row, column, size): an LRU bounded in bytes, filled by a thread pool."""

    def __init__(self, *, max_bytes: int = 64 << 20, workers: int = 4) -> None:
        self.max_bytes = max_bytes
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="th-thumb")
        self._lock = threading.Lock()
        self._items: OrderedDict[Hashable, Thumbnail] = OrderedDict()
        self._pending: dict[Hashable, Future[Thumbnail]] = {}
        self._bytes = 0
        self.hits = 0
        self.misses = 0

    def get(
        self,
        key: Hashable,
        load: Callable[[], ImageSource],
        size: int,
        *,
        timeout: float | None = 60.0,
    ) -> Thumbnail:
        """The cached thumbnail, or one made now on the pool (``load`` runs there too)."""
        with self._lock:
            hit = self._items.get(key)
            if hit is not None:
                self._items.move_to_end(key)
                self.hits += 1
                return hit
            self.misses += 1
            fut = self._pending.get(key)
            if fut is None:
                fut = self._pending[key] = self._pool.submit(self._make, key, load, size)
        return fut.result(timeout)

    def _make(self, key: Hashable, load: Callable[[], ImageSource], size: int) -> Thumbnail:
        try:
            data, codec = load()
            thumb = make_thumbnail(data, codec, size)
        except BaseException:
            with self._lock:
                self._pending.pop(key, None)
            raise
        with self._lock:  # cached and no longer pending in one step: no second job can start
            self._pending.pop(key, None)
            if key not in self._items and len(thumb.jpeg) <= self.max_bytes:
                self._items[key] = thumb
                self._bytes += len(thumb.jpeg)
                while self._bytes > self.max_bytes:
                    _, old = self._items.popitem(last=False)
                    self._bytes -= len(old.jpeg)
        return thumb

    def stats(self) -> dict[str, int]:
        with self._lock:
            return {
                "entries": len(self._items),
                "bytes": self._bytes,
                "hits": self.hits,
                "misses": self.misses,
            }

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
