"""Limits every appended value must meet, checked before anything is written.

A value that is accepted must be one every later read can serve: Arrow's
binary arrays address 2 GiB, so a bigger value could be written but would
make every scan of its column fail. An encoded image is checked by its
header, so a 634-byte JPEG claiming 65000x65000 pixels is refused here rather
than at the first ``take``, which would try to allocate 11.8 GiB. The limits
are those of :mod:`tensorhouse.limits`.

Example:
    >>> import numpy as np
    >>> from tensorhouse.format.chunks.samples import normalize
    >>> from tensorhouse.types import Binary
    >>> from tensorhouse import limits
    >>> batch = normalize([b"abc", b"defgh"], Binary(), "blob")
    >>> check_batch(batch, Binary(), "blob")
    >>> with limits.override(max_value_bytes=4):
    ...     try:
    ...         check_batch(batch, Binary(), "blob")
    ...     except limits.LimitExceededError as err:
    ...         print(str(err).split(":")[0])
    column 'blob', row 1
"""

from __future__ import annotations

import numpy as np

from tensorhouse import limits
from tensorhouse.errors import SchemaError
from tensorhouse.format.chunks.samples import SampleBatch
from tensorhouse.types import ColumnType


def check_batch(batch: SampleBatch, ctype: ColumnType, column: str) -> None:
    """Raise SchemaError (naming the column, row and limit) for a value no read could serve."""
    if not len(batch):
        return
    lim = limits.current()
    sizes = np.diff(batch.offsets)
    big = np.flatnonzero(sizes > lim.max_value_bytes)
    if len(big):
        row = int(big[0])
        raise limits.exceeded(
            "max_value_bytes",
            int(sizes[row]),
            what=f"column {column!r}, row {row}: a value of {int(sizes[row])} bytes",
            error=SchemaError,
        )
    if ctype.sample_codec is not None and batch.shapes.shape[1] >= 2:
        # Encoded images: shapes come from their headers (H, W, C); decoding allocates H*W*C bytes.
        shapes = np.asarray(batch.shapes, dtype=np.float64)
        pixels = shapes[:, 0] * shapes[:, 1]
        over = np.flatnonzero(pixels > lim.max_image_pixels)
        if len(over):
            row = int(over[0])
            h, w = int(shapes[row, 0]), int(shapes[row, 1])
            raise limits.exceeded(
                "max_image_pixels",
                h * w,
                what=f"column {column!r}, row {row}: an image whose header claims {h}x{w} pixels",
                error=SchemaError,
            )
