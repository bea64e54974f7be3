"""Register the tensor UDFs on a DataFusion SessionContext, typed for each query.

How DataFusion 55's Python scalar UDFs behave (measured, and read in
datafusion-python's ``PythonFunctionScalarUDF``), and what we do:

- A UDF has one exact signature (``Signature::exact``): a list of argument
  types, no optional arguments, no ANY type. Registering a name again
  replaces it. The only other way in is a compiled FFI UDF
  (``__datafusion_scalar_udf__``), which can declare its own coercion.
- DataFusion coerces an argument to the declared type only within a list
  depth (``FLOAT[3][7][6]`` fits ``DOUBLE[][][]`` but never ``DOUBLE[]``),
  never between two struct types (a ragged tensor, a decoded image), and
  "any type to a string" fails when the cast runs for lists and structs.
  So no single declared type takes every tensor layout.
- :func:`sql` (and ``th.datafusion.context()``, whose ``ctx.sql`` calls it)
  therefore reads each query first (:mod:`tensorhouse.udfs.routing`),
  works out the argument types of every tensor-UDF call from the tables'
  schemas, and registers each function for exactly those types before
  DataFusion plans the query. A plan keeps the function it was planned
  with, so re-registering for the next query does not change earlier
  DataFrames. Plain ``ctx.sql`` on another context sees the registration
  of :func:`register`: :data:`DEFAULT_TYPES`, or ``types=`` per kind.
- Each call gets one ``pa.Array`` per argument (a batch of up to 8192 rows);
  constants arrive repeated on every row; NULLs do reach the function (the
  catalog turns them into NULL results). The result must have exactly the
  declared type.
- Field metadata does not reach the function, but SQL can read it:
  ``box_area(boxes, arrow_metadata(boxes, 'tensorhouse.type'))`` passes the
  column's box format.
- An exception surfaces as ``Exception: DataFusion error: Execution error:
  PyErr { type: <class '...UDFArgumentError'>, value: UDFArgumentError("<our
  message>"), ... }``.

Example:
    >>> import datafusion, pyarrow as pa
    >>> ctx = datafusion.SessionContext()
    >>> _ = register(ctx)
    >>> ctx.sql("SELECT cosine_similarity([1.0, 0.0], [1.0, 0.0]) AS c").to_pydict()
    {'c': [1.0]}
    >>> ctx.from_pydict({"m": [[[1, 2], [3, 4]]]}, name="t").schema().field("m").type
    ListType(list<item: list<item: int64>>)
    >>> sql(ctx, "SELECT tensor_sum(m) AS s, tensor_shape(m) AS shape FROM t").to_pydict()
    {'s': [10.0], 'shape': [[2, 2]]}
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

import datafusion
import pyarrow as pa

from tensorhouse.udfs import routing
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
    _register_as(ctx, name, udf, tuple(types))


def _register_as(
    ctx: datafusion.SessionContext, name: str, udf: UDF, types: tuple[pa.DataType, ...]
) -> None:
    ctx.register_udf(datafusion.udf(_wrap(udf), list(types), udf.returns, "immutable", name))
    _state(ctx).signatures[name] = types


class _State:
    """Per context: what each name is registered for, and a lock so routing and planning pair up."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.signatures: dict[str, tuple[pa.DataType, ...]] = {}


_STATES: weakref.WeakKeyDictionary[Any, _State] = weakref.WeakKeyDictionary()
_STATES_LOCK = threading.Lock()


def _state(ctx: datafusion.SessionContext) -> _State:
    with _STATES_LOCK:
        state = _STATES.get(ctx)
        if state is None:
            state = _STATES[ctx] = _State()
        return state


def _schema_of(ctx: datafusion.SessionContext) -> Callable[[str], pa.Schema | None]:
    def schema(name: str) -> pa.Schema | None:
        try:
            return ctx.table(name).schema()
        except Exception:  # not a table here (a CTE, a table function): its columns stay untyped
            return None

    return schema


def _relation_of(ctx: datafusion.SessionContext) -> Callable[[str], pa.Schema | None]:
    def schema(call: str) -> pa.Schema | None:
        try:  # the base method: this is no query of the user's to route
            return datafusion.SessionContext.sql(ctx, f"SELECT * FROM {call}").schema()
        except Exception:  # not a table function DataFusion can plan: its columns stay untyped
            return None

    return schema


def prepare(ctx: datafusion.SessionContext, query: str) -> routing.Routing:
    """Register every tensor UDF ``query`` calls for its argument types; returns the routing.

    ``.sql`` is the SQL to plan: ``query`` unchanged unless it calls one
    function with two different argument types, whose later calls are then
    renamed (``tensor_sum__2``). Plan it while holding :func:`planning_lock`,
    so that another thread's query cannot re-register a name in between;
    :func:`plan` does both.

    Example:
        >>> import datafusion
        >>> ctx = datafusion.SessionContext()
        >>> prepare(ctx, "SELECT tensor_sum([[1, 2], [3, 4]]) + tensor_sum([5]) AS s").sql
        'SELECT tensor_sum([[1, 2], [3, 4]]) + tensor_sum__2([5]) AS s'
        >>> ctx.sql(_).to_pydict()
        {'s': [15.0]}
    """
    routed = routing.route(
        query, _schema_of(ctx), defaults=DEFAULT_TYPES, relation_of=_relation_of(ctx)
    )
    state = _state(ctx)
    for call in routed.calls:
        if state.signatures.get(call.name) != call.arg_types:
            _register_as(ctx, call.name, BY_NAME[call.function], call.arg_types)
    return routed


def planning_lock(ctx: datafusion.SessionContext) -> threading.RLock:
    """Hold this while calling :func:`prepare` and planning its SQL on ``ctx``."""
    return _state(ctx).lock


def plan(
    ctx: datafusion.SessionContext, query: str, run: Callable[[str], datafusion.DataFrame]
) -> datafusion.DataFrame:
    """``run(sql)`` for the prepared ``query``, output columns named as ``query`` names them."""
    with planning_lock(ctx):
        routed = prepare(ctx, query)
        df = run(routed.sql)
    renamed = {c.name: c.function for c in routed.calls if c.name != c.function}
    if not renamed:
        return df
    names = df.schema().names
    fixed = [_unrename(n, renamed) for n in names]
    if fixed == names:
        return df
    return df.select(*[datafusion.col(n).alias(f) for n, f in zip(names, fixed, strict=True)])


def _unrename(label: str, renamed: Mapping[str, str]) -> str:
    # DataFusion labels an unaliased expression with its text; say the name the user wrote.
    for hidden, name in renamed.items():
        label = label.replace(f"{hidden}(", f"{name}(")
    return label


def sql(ctx: datafusion.SessionContext, query: str, **kwargs: Any) -> datafusion.DataFrame:
    """``ctx.sql(query, **kwargs)`` with every tensor UDF typed for its arguments (see the module notes).

    Example:
        >>> import datafusion, pyarrow as pa
        >>> ctx = datafusion.SessionContext()
        >>> _ = register(ctx)
        >>> boxes = pa.array([[[0, 0, 2, 2], [1, 1, 3, 3]]], pa.list_(pa.list_(pa.float32(), 4)))
        >>> _ = ctx.from_arrow(pa.table({"boxes": boxes}), name="pets")
        >>> sql(ctx, "SELECT num_boxes(boxes) AS n, box_iou(boxes[1], boxes[2], 'xyxy') AS iou FROM pets").to_pydict()
        {'n': [2], 'iou': [0.14285714285714285]}
    """
    # The base method: a routing context (connector.datafusion) would route the SQL again.
    return plan(ctx, query, lambda q: datafusion.SessionContext.sql(ctx, q, **kwargs))


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


__all__ = ["DEFAULT_TYPES", "plan", "planning_lock", "prepare", "register", "specialize", "sql"]
