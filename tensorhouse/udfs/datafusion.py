"""Register the tensor UDFs on a DataFusion SessionContext.

How DataFusion 55's Python scalar UDFs behave (measured), and what we do:

- A UDF has one exact signature: a list of argument types, no optional
  arguments, no ANY type. Registering a name again replaces it. DataFusion
  coerces an argument when Arrow can cast it implicitly: ``FLOAT[n]`` and
  lists of any number type to ``list<float>``, ``INT`` to ``BIGINT``,
  nested fixed-size lists to nested lists of the same depth; a struct (a
  ragged tensor, a decoded image) only matches exactly the same struct.
- So each function is registered for one default type per argument kind
  (:data:`DEFAULT_TYPES`), without its optional arguments. For other types
  or the optional box format, re-register the function for them:
  ``register(ctx, types={"tensor": ...})`` for every tensor function, or
  ``specialize(ctx, "box_iou", [box_t, box_t, pa.string()])`` for one.
  Names and semantics stay the same as in DuckDB.
- Each call gets one ``pa.Array`` per argument (a batch of up to 8192 rows);
  constants arrive repeated on every row; NULLs do reach the function (the
  catalog turns them into NULL results). The result must have exactly the
  declared type.
- Field metadata does not reach the function, but SQL can read it:
  ``box_area(boxes, arrow_metadata(boxes, 'tensorhouse.type'))`` passes the
  column's box format (after ``specialize`` for the 2-argument form).
- An exception surfaces as ``Exception: DataFusion error: Execution error:
  PyErr { type: <class '...UDFArgumentError'>, value: UDFArgumentError("<our
  message>"), ... }``.

Example:
    >>> import datafusion, pyarrow as pa
    >>> ctx = datafusion.SessionContext()
    >>> _ = register(ctx)
    >>> ctx.sql("SELECT cosine_similarity([1.0, 0.0], [1.0, 0.0]) AS c").to_pydict()
    {'c': [1.0]}
    >>> specialize(ctx, "tensor_sum", [pa.list_(pa.list_(pa.float64()))])
    >>> ctx.sql("SELECT tensor_sum([[1.0, 2.0], [3.0, 4.0]]) AS s").to_pydict()
    {'s': [10.0]}
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence

import datafusion
import pyarrow as pa

from tensorhouse.udfs.catalog import BY_NAME, CATALOG, UDF
from tensorhouse.udfs.kernels.boxes import BOXES
from tensorhouse.udfs.kernels.errors import UDFArgumentError
from tensorhouse.udfs.kernels.tensors import IMAGE

#: The Arrow type each argument kind is registered for unless told otherwise. Tensor
#: functions default to decoded images (what decode_image returns), so that
#: ``tensor_slice(decode_image(image), '[0:64, 0:64, :]')`` works out of the box.
DEFAULT_TYPES: dict[str, pa.DataType] = {
    "tensor": IMAGE,
    "image": pa.binary(),
    "blob": pa.binary(),
    "vector": pa.list_(pa.float32()),
    "binvector": pa.list_(pa.float64()),
    "box": pa.list_(pa.float64()),
    "boxes": BOXES,
    "frame": pa.list_(pa.float64()),
    "text": pa.string(),
    "int": pa.int64(),
    "format": pa.string(),
}


def _wrap(udf: UDF) -> Callable[..., pa.Array]:
    def call(*args: pa.Array) -> pa.Array:
        return udf(*args)

    call.__name__ = udf.name
    call.__doc__ = f"{udf.signature()}: {udf.summary}"
    return call


def specialize(
    ctx: datafusion.SessionContext, name: str, arg_types: Sequence[pa.DataType | pa.Field]
) -> None:
    """(Re-)register UDF ``name`` for exactly these argument types (and so this many arguments).

    Example:
        >>> import datafusion, pyarrow as pa
        >>> from tensorhouse.udfs.kernels.boxes import BOXES
        >>> ctx = datafusion.SessionContext()
        >>> specialize(ctx, "box_area", [BOXES, pa.string()])
        >>> ctx.sql("SELECT box_area(arrow_cast([[0.0, 0.0, 2.0, 3.0]], 'List(FixedSizeList(4, Float32))'), 'xywh') AS a").to_pydict()
        {'a': [[6.0]]}
    """
    udf = BY_NAME.get(name)
    if udf is None:
        raise UDFArgumentError(f"no tensor UDF named {name!r}; see tensorhouse.udfs.catalog")
    if not udf.min_args <= len(arg_types) <= udf.max_args:
        raise UDFArgumentError(
            f"{name}: takes {udf.min_args} to {udf.max_args} arguments, "
            f"got {len(arg_types)} types: {udf.signature()}"
        )
    types = [t.type if isinstance(t, pa.Field) else t for t in arg_types]
    ctx.register_udf(datafusion.udf(_wrap(udf), types, udf.returns, "immutable", name))


def register(
    ctx: datafusion.SessionContext,
    *,
    types: Mapping[str, pa.DataType] | None = None,
    names: Iterable[str] | None = None,
) -> list[str]:
    """Install the tensor UDFs (all, or ``names``) for the default argument types, or ``types`` per kind.

    ``types`` maps an argument kind (``"tensor"``, ``"vector"``, ``"image"``,
    ...; see :data:`DEFAULT_TYPES`) to the Arrow type to accept, e.g.
    ``{"tensor": schema.field("depth").type}``. Returns the names registered.

    Example:
        >>> import datafusion, pyarrow as pa
        >>> ctx = datafusion.SessionContext()
        >>> _ = register(ctx, types={"tensor": pa.list_(pa.int64())}, names=["tensor_max"])
        >>> ctx.sql("SELECT tensor_max([3, 9, 4]) AS m").to_pydict()
        {'m': [9.0]}
    """
    chosen = {**DEFAULT_TYPES, **(types or {})}
    unknown = set(types or {}) - set(DEFAULT_TYPES)
    if unknown:
        raise UDFArgumentError(
            f"unknown argument kinds {sorted(unknown)}; expected some of {sorted(DEFAULT_TYPES)}"
        )
    wanted = set(names) if names is not None else None
    done: list[str] = []
    for udf in CATALOG:
        if wanted is not None and udf.name not in wanted:
            continue
        specialize(ctx, udf.name, [chosen[p.kind] for p in udf.params if not p.optional])
        done.append(udf.name)
    return done


__all__ = ["DEFAULT_TYPES", "register", "specialize"]
