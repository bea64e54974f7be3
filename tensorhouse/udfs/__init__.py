"""Tensor UDFs for DuckDB and DataFusion: slicing, reductions, images, similarity, boxes.

``register(con_or_ctx)`` installs every function of :mod:`tensorhouse.udfs.catalog`
on a DuckDB connection or a DataFusion SessionContext, with the same names
and semantics in both. DataFusion gives a Python function one argument type
per name, so there the functions are typed for each query's columns by
``th.datafusion.context()`` (whose ``ctx.sql`` does it) or
``th.datafusion.sql(ctx, query)`` (:mod:`tensorhouse.udfs.routing`). The
kernels work on plain Arrow arrays and can be called from Python too.
Engines are imported only when ``register`` needs one.

Example:
    >>> import duckdb, tensorhouse as th
    >>> con = duckdb.connect()
    >>> _ = th.udfs.register(con)
    >>> con.sql("SELECT round(cosine_similarity([1, 0]::FLOAT[2], [1, 1]::FLOAT[2]), 4) AS c").fetchall()
    [(0.7071,)]
    >>> import pyarrow as pa
    >>> th.udfs.tensor_shape(pa.array([[1, 2, 3]], pa.list_(pa.int64()))).to_pylist()
    [[3]]
"""

from __future__ import annotations

from typing import Any

from tensorhouse.engines import engine_of
from tensorhouse.udfs.catalog import BY_NAME, CATALOG, UDF
from tensorhouse.udfs.kernels.boxes import (
    box_area,
    box_iou,
    max_iou,
    mean_iou,
    normalize_boxes,
    num_boxes,
)
from tensorhouse.udfs.kernels.errors import UDFArgumentError
from tensorhouse.udfs.kernels.images import decode_image, image_resize, image_to_gray
from tensorhouse.udfs.kernels.reductions import (
    tensor_ndim,
    tensor_reduce,
    tensor_reduce_axis,
    tensor_shape,
    tensor_size,
)
from tensorhouse.udfs.kernels.similarity import similarity
from tensorhouse.udfs.kernels.slicing import parse_slice, tensor_slice
from tensorhouse.udfs.kernels.tensors import IMAGE, RAGGED_F64, TensorBatch, to_tensors


def register(con_or_ctx: Any) -> list[str]:
    """Install every tensor UDF on a DuckDB connection or a DataFusion SessionContext.

    Returns the registered names. Raises TypeError for anything else.

    Example:
        >>> import datafusion, tensorhouse as th
        >>> ctx = datafusion.SessionContext()
        >>> "tensor_slice" in th.udfs.register(ctx)
        True
    """
    module = engine_of(con_or_ctx)
    if module == "duckdb":
        from tensorhouse.udfs import duckdb as duck

        return duck.register(con_or_ctx)
    if module == "datafusion":
        from tensorhouse.udfs import datafusion as df

        return df.register(con_or_ctx)
    raise TypeError(
        f"register() takes a duckdb connection or a datafusion SessionContext, got {type(con_or_ctx).__name__}"
    )


__all__ = [
    "BY_NAME",
    "CATALOG",
    "IMAGE",
    "RAGGED_F64",
    "UDF",
    "TensorBatch",
    "UDFArgumentError",
    "box_area",
    "box_iou",
    "decode_image",
    "image_resize",
    "image_to_gray",
    "max_iou",
    "mean_iou",
    "normalize_boxes",
    "num_boxes",
    "parse_slice",
    "register",
    "similarity",
    "tensor_ndim",
    "tensor_reduce",
    "tensor_reduce_axis",
    "tensor_shape",
    "tensor_size",
    "tensor_slice",
    "to_tensors",
]
