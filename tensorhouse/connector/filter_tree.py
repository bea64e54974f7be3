"""A pushed-down filter as a typed tree, read through public interfaces only.

DuckDB, DataFusion, Ray and users hand the scanner a
``pyarrow.compute.Expression`` (SQL ``where=`` strings become one in
:mod:`tensorhouse.format.predicate`). pyarrow has no call that walks an
expression, so :func:`from_arrow` reads it into a small tree of frozen
dataclasses (:class:`Field`, :class:`Literal`, :class:`Call`): pickling an
expression yields Arrow's own serialization, an Arrow IPC file whose schema
metadata lists the tree in prefix order (``call``, ``field_ref``,
``literal``, ``options``, ``end``) and whose single row holds the literals
and function options as typed Arrow scalars. ``nanoarrow`` reads that
metadata in order (pyarrow's ``Schema.metadata`` is a dict and drops the
repeated keys).

The layout is Arrow's, not a documented format, so it is read here and
nowhere else; ``tests/test_pruning.py`` pins it for every node kind the
engines push (a new pyarrow that changes it fails there, loudly), and an
expression this module cannot read raises :class:`UnreadableExpression`, on
which callers read every column and prune nothing (still exact). Substrait
(``Expression.to_substrait``) is the documented alternative, but decoding it
needs ``substrait-protobuf`` (protobuf < 7, which Ray's protobuf 7 excludes),
and it cannot name an unknown column (serializing needs the schema first).

Example:
    >>> import pyarrow as pa, pyarrow.compute as pc
    >>> tree = from_arrow((pc.field("a") > 1) & pc.field("img").is_valid())
    >>> tree.function, sorted(columns_of(tree))
    ('and_kleene', ['a', 'img'])
    >>> unknown_columns(from_arrow(pc.field("ghost") == 1), pa.schema([("a", pa.int64())]))
    ['ghost']
"""

from __future__ import annotations

import pickle
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

_ARROW_ERRORS = (pa.ArrowInvalid, pa.ArrowNotImplementedError, pa.ArrowTypeError, pa.ArrowKeyError)


# -- the tree ----------------------------------------------------------------------
@dataclass(frozen=True)
class Field:
    """A column reference: ``path[0]`` is the column, the rest a path into a struct."""

    path: tuple[str, ...]

    @property
    def name(self) -> str:
        return self.path[0]


@dataclass(frozen=True)
class Literal:
    """A typed constant (an Arrow scalar, so ``1`` as int64 and as int8 differ)."""

    value: pa.Scalar


@dataclass(frozen=True)
class Call:
    """A call of an Arrow compute function; ``options`` as Arrow serialized them (a struct scalar)."""

    function: str
    args: tuple[Node, ...]
    options: pa.StructScalar | None = None

    def option(self, name: str) -> Any:
        """One option's value as Python, None when absent."""
        if self.options is None or self.options.type.get_field_index(name) < 0:
            return None
        return self.options[name].as_py()


Node = Field | Literal | Call


class UnreadableExpression(ValueError):
    """An expression :func:`from_arrow` cannot read (callers then read everything and prune nothing)."""


def _serialized(expr: pc.Expression) -> tuple[Any, bytes]:
    """Arrow's serialization of ``expr`` (what pickling it yields), and its bytes."""
    try:
        payload = expr.__reduce__()[1][0]
        return payload, (payload.to_pybytes() if isinstance(payload, pa.Buffer) else bytes(payload))
    except (*_ARROW_ERRORS, TypeError, IndexError, pickle.PicklingError) as err:
        # Arrow serializes only name references (pc.field(0) is refused).
        raise UnreadableExpression(f"cannot serialize {expr}: {err}") from err


def expression_key(expr: pc.Expression) -> bytes | None:
    """Bytes equal exactly when two expressions are the same (literal types included); None if unknown."""
    try:
        return _serialized(expr)[1]
    except UnreadableExpression:
        return None


def from_arrow(expr: pc.Expression) -> Node:
    """The tree of an Arrow expression; :class:`UnreadableExpression` when it cannot be read.

    Cached by the expression's serialized bytes: every scan of a query asks again.
    """
    payload, key = _serialized(expr)
    hit = _TREES.get(key)
    if hit is not None:
        return hit
    tree = _decode(payload)
    if len(_TREES) >= 4096:
        _TREES.clear()
    _TREES[key] = tree
    return tree


_TREES: dict[bytes, Node] = {}


def clear_cache() -> None:
    """Forget the trees read so far (benchmarks time a first read)."""
    _TREES.clear()


def _decode(payload: Any) -> Node:
    import nanoarrow

    try:
        batch = pa.ipc.open_file(payload).get_batch(0)
        pairs = [
            (k.decode(), v.decode()) for k, v in nanoarrow.c_schema(batch.schema).metadata.items()
        ]
    except (*_ARROW_ERRORS, OSError, UnicodeDecodeError, TypeError, ValueError) as err:
        raise UnreadableExpression(f"cannot read a serialized expression: {err}") from err
    pos = 0

    def scalar(index: str) -> pa.Scalar:
        return batch.column(int(index))[0]

    def node() -> Node:
        nonlocal pos
        key, value = pairs[pos]
        pos += 1
        if key == "literal":
            return Literal(scalar(value))
        if key == "field_ref":
            return Field((value,))
        if key == "nested_field_ref":
            names = pairs[pos : pos + int(value)]
            if len(names) != int(value) or any(k != "field_ref" for k, _ in names):
                raise UnreadableExpression(f"unexpected nested reference {names}")
            pos += int(value)
            return Field(tuple(v for _, v in names))
        if key == "call":
            args: list[Node] = []
            options = None
            while pairs[pos][0] != "end":
                if pairs[pos][0] == "options":
                    options = scalar(pairs[pos][1])
                    pos += 1
                else:
                    args.append(node())
            if pairs[pos][1] != value:
                raise UnreadableExpression(f"call {value!r} ends as {pairs[pos][1]!r}")
            pos += 1
            return Call(value, tuple(args), options)
        raise UnreadableExpression(f"unknown serialized node {key!r}")

    try:
        tree = node()
    except RecursionError as err:  # a chain of thousands of unbalanced ANDs: read everything
        raise UnreadableExpression("the expression nests deeper than Python's stack") from err
    except (IndexError, ValueError) as err:
        raise UnreadableExpression(f"cannot read a serialized expression: {err}") from err
    if pos != len(pairs):
        raise UnreadableExpression(f"{len(pairs) - pos} serialized entries left over")
    return tree


def fields_of(tree: Node) -> list[Field]:
    """Every column reference in the tree, in prefix order (iterative: trees may be deep)."""
    out: list[Field] = []
    stack: list[Node] = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, Field):
            out.append(node)
        elif isinstance(node, Call):
            stack.extend(reversed(node.args))
    return out


def columns_of(tree: Node) -> set[str]:
    """The columns the tree reads."""
    return {f.name for f in fields_of(tree)}


def unknown_columns(tree: Node, schema: pa.Schema) -> list[str]:
    """Column references of the tree that ``schema`` lacks (a struct path names each missing step)."""
    out: list[str] = []
    for f in fields_of(tree):
        if f.name not in schema.names:
            out.append(f.name)
            continue
        t = schema.field(f.name).type
        for depth, step in enumerate(f.path[1:], start=1):
            if not pa.types.is_struct(t) or t.get_field_index(step) < 0:
                out.append(".".join(f.path[: depth + 1]))
                break
            t = t.field(step).type
    return list(dict.fromkeys(out))
