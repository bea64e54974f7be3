"""A query result as torch tensors (``th.to_torch``): the torch side of ``th.to_numpy``.

Here and not in ``connector/`` because only ``loader/`` imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from tensorhouse.connector.results import result_to_numpy


def result_to_torch(result: Any, columns: Sequence[str] | None = None) -> dict[str, Any]:
    """Like :func:`tensorhouse.to_numpy`, with numeric arrays as ``torch.Tensor`` (ragged columns: lists of tensors).

    Byte and string columns stay Python lists. Read-only (zero-copy) arrays are
    copied, since torch tensors are writable.

    Example:
        >>> import pyarrow as pa, tensorhouse as th
        >>> th.to_torch(pa.table({"x": pa.array([1.5, 2.5], pa.float32())}))["x"].dtype
        torch.float32
    """

    def tensor(a: np.ndarray) -> Any:
        return torch.from_numpy(a if a.flags.writeable else a.copy())

    out: dict[str, Any] = {}
    for name, col in result_to_numpy(result, columns).items():
        if isinstance(col, np.ndarray):
            out[name] = tensor(col)
        elif any(isinstance(v, np.ndarray) for v in col):
            out[name] = [None if v is None else tensor(v) for v in col]
        else:
            out[name] = col
    return out


__all__ = ["result_to_torch"]
