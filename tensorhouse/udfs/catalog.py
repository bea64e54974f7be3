"""Every tensor UDF, once: name, arguments, return type, documentation and implementation.

Both engine modules register from :data:`CATALOG`, so a function has the
same name, arguments and results in DuckDB and DataFusion. Each entry's
implementation takes the engine's Arrow arrays (one per argument, one value
per row) and returns one Arrow array of the declared type:

- NULL in any argument gives NULL for that row.
- Arguments of kind ``text``, ``int`` and ``format`` are options (a slice
  string, an axis, a size, a box format) and must be the same on every row;
  they are read once per batch.
- Bad input raises :class:`~tensorhouse.udfs.kernels.errors.UDFArgumentError`
  naming the function and the argument; the engine shows its message.

Return types are fixed per function, never dependent on the data: tensor
results are ``struct<data: list<double>, shape: list<int32>>`` (exact for
every integer type up to 2**53 and for float32), images are uint8.

Example:
    >>> import pyarrow as pa
    >>> udf = BY_NAME["tensor_sum"]
    >>> udf(pa.array([[1, 2], [3, 4]], pa.list_(pa.int32(), 2))).to_pylist()
    [3.0, 7.0]
    >>> [p.name for p in BY_NAME["box_iou"].params]
    ['a', 'b', 'format']
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tensorhouse.udfs.kernels import boxes, images, reductions, similarity, slicing
from tensorhouse.udfs.kernels.errors import UDFArgumentError, arg_error
from tensorhouse.udfs.kernels.tensors import IMAGE, RAGGED_F64, plain, validity

ArgKind = Literal[
    "tensor",
    "image",
    "blob",
    "vector",
    "binvector",
    "box",
    "boxes",
    "frame",
    "text",
    "int",
    "format",
]
#: Kinds whose argument is one option value for the whole call, not per-row data.
OPTION_KINDS = frozenset({"text", "int", "format"})

#: What each kind of argument accepts (the legend under the docs table).
KIND_DOCS: dict[str, str] = {
    "tensor": "a tensor: FLOAT[2][3] (any depth, any number type), a list, or STRUCT(data, shape)",
    "image": "an image: a BLOB (JPEG/PNG file) or a decoded HxWxC tensor",
    "blob": "a BLOB holding a JPEG or PNG file",
    "vector": "a vector: FLOAT[n] or a list of numbers",
    "binvector": "a binary vector: BOOLEAN[n] or 0/1 numbers",
    "box": "one box: FLOAT[4] or a list of 4 numbers",
    "boxes": "a set of boxes: FLOAT[4][] (a BBox column)",
    "frame": "a frame [x, y, width, height]",
    "text": "a string constant",
    "int": "an integer constant",
    "format": "'xyxy' (default) or 'xywh', or the column's tensorhouse type JSON",
}


@dataclass(frozen=True)
class Param:
    """One argument of a UDF; ``optional`` ones may be left off the end of the call."""

    name: str
    kind: ArgKind
    optional: bool = False


@dataclass(frozen=True)
class UDF:
    """One SQL function: call it with Arrow arrays (one per argument) to evaluate it."""

    name: str
    params: tuple[Param, ...]
    returns: pa.DataType
    summary: str
    example: str
    impl: Callable[..., pa.Array]

    @property
    def min_args(self) -> int:
        return sum(1 for p in self.params if not p.optional)

    @property
    def max_args(self) -> int:
        return len(self.params)

    def signature(self) -> str:
        """``name(a, b [, format])`` for docs and error messages."""
        req = ", ".join(p.name for p in self.params if not p.optional)
        opt = "".join(f" [, {p.name}]" for p in self.params if p.optional)
        return f"{self.name}({req}{opt})"

    def __call__(self, *args: pa.Array | pa.ChunkedArray) -> pa.Array:
        if not self.min_args <= len(args) <= self.max_args:
            want = (
                str(self.min_args)
                if self.min_args == self.max_args
                else f"{self.min_args} to {self.max_args}"
            )
            noun = "argument" if want == "1" else "arguments"
            hint = (
                f"; over one axis use {self.name}_axis(t, axis)"
                if f"{self.name}_axis" in _AXIS_NAMES
                else ""
            )
            raise UDFArgumentError(
                f"{self.name}: takes {want} {noun}, got {len(args)}: {self.signature()}{hint}"
            )
        arrays = [plain(a) for a in args]
        n = len(arrays[0]) if arrays else 0
        option_valid = np.ones(n, dtype=bool)
        for p, a in zip(self.params, arrays, strict=False):
            if p.kind in OPTION_KINDS and a.null_count:
                option_valid &= validity(a)
        if n and not option_valid.any():
            return pa.nulls(n, self.returns)
        result = self.impl(*arrays)
        if not option_valid.all():
            result = pc.if_else(pa.array(option_valid), result, pa.nulls(n, self.returns))
        return result


def option(arr: pa.Array, fn: str, pos: int) -> Any:
    """The one value of an option argument (the first non-NULL); it must not vary between rows."""
    valid = validity(arr)
    if not valid.any():
        return None
    first = arr[int(np.argmax(valid))]
    if len(arr) > 1 and not pc.all(pc.equal(arr, first)).as_py():
        raise arg_error(fn, pos, first.as_py(), "must be the same on every row (a constant)")
    return first.as_py()


# -- adapters: engine arrays -> kernels ----------------------------------------------
def _slice(t: pa.Array, spec: pa.Array) -> pa.Array:
    text = option(spec, "tensor_slice", 2)
    return slicing.slice_tensor_batch(t, slicing.parse_slice(text), text)


def _reduce(op: reductions.Reduction, t: pa.Array) -> pa.Array:
    return reductions.tensor_reduce(t, op)


def _reduce_axis(op: reductions.Reduction, t: pa.Array, axis: pa.Array) -> pa.Array:
    return reductions.tensor_reduce_axis(t, op, option(axis, f"tensor_{op}_axis", 2))


def _resize(img: pa.Array, h: pa.Array, w: pa.Array) -> pa.Array:
    return images.image_resize(img, option(h, "image_resize", 2), option(w, "image_resize", 3))


def _similar(metric: similarity.Metric, a: pa.Array, b: pa.Array) -> pa.Array:
    return similarity.similarity(a, b, metric)


def _fmt(fn: str, pos: int, fmt: pa.Array | None) -> str:
    return "xyxy" if fmt is None else boxes.box_format(option(fmt, fn, pos), fn, pos)


def _box_iou(a: pa.Array, b: pa.Array, fmt: pa.Array | None = None) -> pa.Array:
    return boxes.box_iou(a, b, fmt=_fmt("box_iou", 3, fmt))


def _max_iou(bs: pa.Array, b: pa.Array, fmt: pa.Array | None = None) -> pa.Array:
    return boxes.max_iou(bs, b, fmt=_fmt("max_iou", 3, fmt))


def _mean_iou(a: pa.Array, b: pa.Array, fmt: pa.Array | None = None) -> pa.Array:
    return boxes.mean_iou(a, b, fmt=_fmt("mean_iou", 3, fmt))


def _normalize(bs: pa.Array, frame: pa.Array, fmt: pa.Array | None = None) -> pa.Array:
    return boxes.normalize_boxes(bs, frame, fmt=_fmt("normalize_boxes", 3, fmt))


def _area(bs: pa.Array, fmt: pa.Array | None = None) -> pa.Array:
    return boxes.box_area(bs, fmt=_fmt("box_area", 2, fmt))


# -- the table --------------------------------------------------------------------
_T = Param("t", "tensor")
_AXIS_NAMES = frozenset(f"tensor_{op}_axis" for op in reductions.REDUCTIONS)
_REDUCE_DOC = {
    "sum": "Sum of all elements (0 for an empty tensor)",
    "mean": "Mean of all elements (NULL for an empty tensor)",
    "min": "Smallest element (NULL for an empty tensor)",
    "max": "Largest element (NULL for an empty tensor)",
    "std": "Population standard deviation, ddof=0 (NULL for an empty tensor)",
}
_SIM_DOC: dict[similarity.Metric, tuple[str, str]] = {
    "cosine": ("cosine_similarity", "a.b / (|a| |b|); NULL if either norm is 0"),
    "dot": ("dot_product", "a.b"),
    "l2": ("l2_distance", "Euclidean distance |a - b|"),
    "l1": ("l1_distance", "sum |a - b|"),
    "linf": ("linf_distance", "max |a - b| (0 for empty vectors)"),
}

CATALOG: tuple[UDF, ...] = (
    UDF(
        "tensor_slice",
        (_T, Param("slice", "text")),
        RAGGED_F64,
        "numpy basic indexing (ints, negative ints, start:stop:step, ':', '...'); "
        "the result is a tensor struct<data: DOUBLE[], shape: INTEGER[]>",
        "SELECT tensor_slice(decode_image(image), '[100:500, 100:500, 0:2]') FROM photos",
        _slice,
    ),
    UDF(
        "tensor_shape",
        (_T,),
        pa.list_(pa.int32()),
        "The shape, as INTEGER[]",
        "SELECT tensor_shape(depth) FROM scans  -- [480, 640]",
        reductions.tensor_shape,
    ),
    UDF(
        "tensor_ndim",
        (_T,),
        pa.int32(),
        "Number of dimensions",
        "SELECT tensor_ndim(mask) FROM scans  -- 2",
        reductions.tensor_ndim,
    ),
    UDF(
        "tensor_size",
        (_T,),
        pa.int64(),
        "Number of elements",
        "SELECT tensor_size(mask) FROM scans  -- 16",
        reductions.tensor_size,
    ),
    *(
        UDF(
            f"tensor_{op}",
            (_T,),
            pa.float64(),
            _REDUCE_DOC[op],
            f"SELECT tensor_{op}(depth) FROM scans",
            partial(_reduce, op),
        )
        for op in reductions.REDUCTIONS
    ),
    *(
        UDF(
            f"tensor_{op}_axis",
            (_T, Param("axis", "int")),
            RAGGED_F64,
            f"tensor_{op} over one axis (negative counts from the end); a tensor of one less dimension",
            f"SELECT tensor_{op}_axis(depth, 0) FROM scans",
            partial(_reduce_axis, op),
        )
        for op in reductions.REDUCTIONS
    ),
    UDF(
        "decode_image",
        (Param("blob", "blob"),),
        IMAGE,
        "Decode a JPEG/PNG file to a uint8 HxWxC tensor (struct<data: UTINYINT[], shape: INTEGER[3]>)",
        "SELECT tensor_shape(decode_image(image)) FROM photos  -- [480, 640, 3]",
        images.decode_image,
    ),
    UDF(
        "image_resize",
        (Param("img", "image"), Param("height", "int"), Param("width", "int")),
        IMAGE,
        "Bilinear resize (half-pixel centres, no antialias) to a uint8 image",
        "SELECT image_resize(image, 224, 224) FROM photos",
        _resize,
    ),
    UDF(
        "image_to_gray",
        (Param("img", "image"),),
        IMAGE,
        "Luma (ITU-R 601-2, as Pillow's convert('L')) as a 1-channel uint8 image",
        "SELECT tensor_mean(image_to_gray(image)) FROM photos",
        images.image_to_gray,
    ),
    *(
        UDF(
            name,
            (Param("a", "vector"), Param("b", "vector")),
            pa.float64(),
            doc,
            f"SELECT id, {name}(embedding, [0.1, 0.2, 0.3]) AS s FROM docs ORDER BY s LIMIT 10",
            partial(_similar, metric),
        )
        for metric, (name, doc) in _SIM_DOC.items()
    ),
    UDF(
        "hamming_distance",
        (Param("a", "binvector"), Param("b", "binvector")),
        pa.int64(),
        "Positions where two binary vectors (booleans or 0/1) differ",
        "SELECT hamming_distance(code, [1, 0, 1, 1]) FROM hashes",
        partial(_similar, "hamming"),
    ),
    UDF(
        "box_iou",
        (Param("a", "box"), Param("b", "box"), Param("format", "format", True)),
        pa.float64(),
        "Intersection over union of two boxes; NULL if both have zero area",
        "SELECT box_iou(boxes[1], [0, 0, 10, 10]) FROM pets",
        _box_iou,
    ),
    UDF(
        "max_iou",
        (Param("boxes", "boxes"), Param("box", "box"), Param("format", "format", True)),
        pa.float64(),
        "Best IoU of one box among a row's boxes (0.0 when there are none)",
        "SELECT id FROM pets WHERE max_iou(boxes, [0, 0, 50, 50]) > 0.5",
        _max_iou,
    ),
    UDF(
        "mean_iou",
        (Param("a", "boxes"), Param("b", "boxes"), Param("format", "format", True)),
        pa.float64(),
        "Greedy one-to-one matching by IoU; sum of matched IoUs / max(len(a), len(b)); "
        "NULL if both are empty",
        "SELECT avg(mean_iou(pred, truth)) FROM detections",
        _mean_iou,
    ),
    UDF(
        "normalize_boxes",
        (Param("boxes", "boxes"), Param("frame", "frame"), Param("format", "format", True)),
        boxes.BOXES,
        "Boxes relative to a frame [x, y, w, h], clipped to [0, 1], same format (FLOAT[4][])",
        "SELECT normalize_boxes(boxes, [0, 0, 640, 480]) FROM pets",
        _normalize,
    ),
    UDF(
        "box_area",
        (Param("boxes", "boxes"), Param("format", "format", True)),
        pa.list_(pa.float64()),
        "Area of each box (DOUBLE[]); negative sizes count as 0",
        "SELECT list_sum(box_area(boxes, 'xywh')) FROM pets",
        _area,
    ),
    UDF(
        "num_boxes",
        (Param("boxes", "boxes"),),
        pa.int64(),
        "Number of boxes in the row",
        "SELECT num_boxes(boxes) FROM pets",
        boxes.num_boxes,
    ),
)

BY_NAME: dict[str, UDF] = {u.name: u for u in CATALOG}


def markdown_table(returns_sql: Callable[[pa.DataType], str] | None = None) -> str:
    """The catalog as a markdown table (name | arguments | returns | example), then the argument kinds."""

    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    def ret(t: pa.DataType) -> str:
        if t == RAGGED_F64:
            return "tensor"
        if t == IMAGE:
            return "image (uint8)"
        return returns_sql(t) if returns_sql else str(t)

    rows = ["| name | arguments | returns | example |", "|---|---|---|---|"]
    for u in CATALOG:
        args = ", ".join(f"{p.name}{'?' if p.optional else ''}: *{p.kind}*" for p in u.params)
        rows.append(
            f"| `{u.name}` | {args} | {cell(ret(u.returns))}: {cell(u.summary)} | `{cell(u.example)}` |"
        )
    rows += ["", "Argument kinds (`?`: optional, may be left off the end):", ""]
    rows += [f"- *{k}*: {v}" for k, v in KIND_DOCS.items()]
    return "\n".join(rows) + "\n"


__all__ = [
    "BY_NAME",
    "CATALOG",
    "KIND_DOCS",
    "OPTION_KINDS",
    "UDF",
    "ArgKind",
    "Param",
    "markdown_table",
    "option",
]
