"""Every size limit tensorhouse enforces on untrusted input, in one place.

Datasets, predicates and viewer requests can come from strangers. Each limit
below guards one allocation and is checked *before* that allocation, so a
small crafted file cannot make a reader allocate gigabytes, recurse until the
interpreter dies, or read forever. A failure raises the typed error of its
context (:class:`~tensorhouse.errors.CorruptChunkError` for a chunk,
:class:`~tensorhouse.errors.CorruptLogError` for the log,
:class:`~tensorhouse.errors.SchemaError` for an append, ...) with a message
that names the limit and how to raise it.

The defaults admit every dataset tensorhouse itself writes; raise one when
real data needs more (a 100-megapixel slide scan is real: ``max_image_pixels``
admits 268 million pixels by default):

- process-wide: ``th.limits.configure(max_image_pixels=1 << 30)``
- for one block of code on one thread: ``with th.limits.override(max_image_pixels=1 << 30): ...``

Example:
    >>> from tensorhouse import limits
    >>> limits.current().max_image_pixels
    268435456
    >>> with limits.override(max_image_pixels=100):
    ...     limits.current().max_image_pixels
    100
    >>> limits.check("max_image_pixels", 10 * 10, what="image of 10x10 pixels")
    >>> try:
    ...     limits.check("max_image_pixels", 1 << 40, what="an image")
    ... except limits.LimitExceededError as err:
    ...     print(str(err).split(";")[0])
    an image: 1099511627776 exceeds the limit max_image_pixels = 268435456
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from tensorhouse.errors import TensorhouseError

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30


@dataclass(frozen=True)
class Limits:
    """The limits in force (all sizes in bytes unless the name says otherwise)."""

    #: One commit log entry (a JSON document of one commit's actions).
    max_log_entry_bytes: int = 256 * MiB
    #: One checkpoint (the whole replayed state of a version).
    max_checkpoint_bytes: int = 1 * GiB
    #: One tag or branch document (a few dozen bytes when tensorhouse writes it).
    max_ref_bytes: int = 64 * KiB
    #: One deletion vector file (4 bytes per deleted row: 64 MiB is 16 million rows).
    max_deletion_vector_bytes: int = 256 * MiB
    #: One chunk header (shapes, offsets and checksums of the chunk's samples).
    max_chunk_header_bytes: int = 256 * MiB
    #: Samples in one chunk (the reader builds 8 bytes of offsets per sample; the writer never exceeds 2^24).
    max_chunk_samples: int = 1 << 24
    #: One chunk's data section after decompression.
    max_chunk_decompressed_bytes: int = 2 * GiB - 1
    #: Decompressed / stored size of a chunk, once the decompressed size is over
    #: ``compression_ratio_floor`` (below it, any ratio: all-zero masks compress 30000x).
    max_compression_ratio: int = 1024
    compression_ratio_floor: int = 64 * MiB
    #: Pixels (height x width) of one decoded image, at append and at decode.
    max_image_pixels: int = 1 << 28
    #: One stored value (a sample). Arrow's binary arrays address 2 GiB, so a
    #: bigger value could be written but never scanned.
    max_value_bytes: int = 1 * GiB
    #: Characters of a ``where=`` predicate.
    max_predicate_chars: int = 1 * MiB
    #: Nesting depth of a predicate (parentheses, NOT, arithmetic).
    max_predicate_depth: int = 64
    #: AND/OR operators in one predicate (equalities on one column ORed together count once).
    max_predicate_terms: int = 2048
    #: Nesting depth of a JSON document (log entries, tags, checkpoints, Json values).
    max_json_depth: int = 200
    #: Bytes one tensor UDF call may return (decode_image, image_resize, ...).
    max_udf_output_bytes: int = 4 * GiB
    #: The viewer's own, stricter UDF output limit (one HTTP GET from a stranger).
    viewer_max_udf_output_bytes: int = 256 * MiB
    #: The viewer's DuckDB memory limit and thread count.
    viewer_memory_limit_bytes: int = 2 * GiB
    viewer_threads: int = 2

    def replace(self, **changes: int) -> Limits:
        unknown = set(changes) - {f.name for f in dataclasses.fields(self)}
        if unknown:
            raise TypeError(
                f"unknown limit(s) {sorted(unknown)}; known: {sorted(f.name for f in dataclasses.fields(self))}"
            )
        for name, value in changes.items():
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise TypeError(f"limit {name} must be a non-negative int, got {value!r}")
        return dataclasses.replace(self, **changes)


class LimitExceededError(TensorhouseError):
    """Input exceeds one of the limits of :class:`Limits` (the message names it).

    The error actually raised also derives from the typed error of its context
    (a corrupt chunk, a bad append, a bad predicate), so callers can catch either.
    """

    def __init__(self, message: str, *, limit: str = "", value: int = 0) -> None:
        super().__init__(message)
        self.limit = limit
        self.value = value


_GLOBAL = Limits()
_LOCAL = threading.local()
_LOCK = threading.Lock()


def current() -> Limits:
    """The limits in force on this thread."""
    return getattr(_LOCAL, "limits", None) or _GLOBAL


def configure(**changes: int) -> Limits:
    """Change limits process-wide; returns the previous limits (pass them to :func:`restore`)."""
    global _GLOBAL
    with _LOCK:
        previous = _GLOBAL
        _GLOBAL = _GLOBAL.replace(**changes)
    return previous


def restore(limits: Limits) -> None:
    """Put back limits returned by :func:`configure`."""
    global _GLOBAL
    with _LOCK:
        _GLOBAL = limits


@contextlib.contextmanager
def override(**changes: int) -> Iterator[Limits]:
    """Change limits for this thread inside a ``with`` block."""
    previous = getattr(_LOCAL, "limits", None)
    _LOCAL.limits = current().replace(**changes)
    try:
        yield _LOCAL.limits
    finally:
        _LOCAL.limits = previous


_ERROR_CLASSES: dict[type[Exception], type[Exception]] = {}


def error_class(base: type[Exception]) -> type[Exception]:
    """``base`` combined with :class:`LimitExceededError` (one class per base, cached)."""
    if base is LimitExceededError or issubclass(base, LimitExceededError):
        return base
    cls = _ERROR_CLASSES.get(base)
    if cls is None:
        cls = type(base.__name__, (base, LimitExceededError), {"__module__": base.__module__})
        _ERROR_CLASSES[base] = cls
    return cls


def exceeded(
    name: str, value: int, *, what: str, error: type[Exception] = LimitExceededError
) -> Exception:
    """The error for ``value`` over limit ``name``: names the limit and how to raise it."""
    limit = getattr(current(), name)
    message = (
        f"{what}: {value} exceeds the limit {name} = {limit}; if this input is trusted, raise it "
        f"with tensorhouse.limits.configure({name}=...) or tensorhouse.limits.override({name}=...)"
    )
    cls = error_class(error)
    err = cls(message)
    if isinstance(err, LimitExceededError):
        err.limit, err.value = name, value
    return err


def check(name: str, value: int, *, what: str, error: type[Exception] = LimitExceededError) -> None:
    """Raise :func:`exceeded` when ``value`` is over limit ``name``."""
    if value > getattr(current(), name):
        raise exceeded(name, value, what=what, error=error)


# -- bounded reads ------------------------------------------------------------------


def read_bounded(store: Any, key: str, limit: str, *, what: str, error: type[Exception]) -> bytes:
    """``store.get(key)``, refused when the object is over limit ``limit``, never reading more.

    One request (:meth:`Store.get_bounded`): a local file's size comes from
    the same open (a 64 GiB sparse file costs nothing), elsewhere one range
    read of ``limit + 1`` bytes (at most the limit in memory); a local file
    is read up to the size its open reported, so one that grows meanwhile
    still gives at most the limit.
    """
    cap = getattr(current(), limit)
    data, size = store.get_bounded(key, cap)
    check(
        limit,
        size,
        what=f"{store.uri}/{key}: {what} of {size}{'+' if len(data) > cap else ''} bytes",
        error=error,
    )
    return bytes(data)


# -- JSON -----------------------------------------------------------------------------


#: Up to this many opening brackets, their count is the bound (below every sane ``max_json_depth``).
SMALL_BRACKETS = 64


def json_depth_upper_bound(raw: bytes | str) -> int:
    """The deepest bracket nesting of ``raw``, counting brackets inside strings too.

    Brackets inside strings can only make this larger than the true depth, so
    a result within the limit proves the document is within it. Vectorised:
    a 100 MB document takes well under a second.
    """
    import numpy as np

    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    # The count of opening brackets bounds the depth too: for a small document (a log entry,
    # a hint) two byte counts answer without numpy's per-call cost.
    opening = data.count(b"[") + data.count(b"{")
    if opening <= SMALL_BRACKETS:
        return opening
    arr = np.frombuffer(data, dtype=np.uint8)
    if not len(arr):
        return 0
    step = (arr == 0x5B).astype(np.int8) + (arr == 0x7B)  # [ {
    step -= (arr == 0x5D).astype(np.int8) + (arr == 0x7D)  # ] }
    return int(np.cumsum(step, dtype=np.int64).max())


def value_depth(value: Any, limit: int) -> int:
    """Nesting depth of a parsed JSON-like value, iteratively; stops counting past ``limit``."""
    deepest = 0
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            children: Any = v.values()
        elif isinstance(v, list | tuple):
            children = v
        else:
            continue
        deepest = max(deepest, d)
        if deepest > limit:
            return deepest
        stack.extend((c, d + 1) for c in children)
    return deepest


def parse_json(
    raw: bytes | str,
    *,
    where: str,
    what: str,
    error: type[Exception],
    size_limit: str | None = None,
) -> Any:
    """``json.loads`` for untrusted documents: size and depth limits, typed errors only.

    Every failure (bad UTF-8, bad JSON, nesting over ``max_json_depth``, an
    integer of more digits than Python converts, a document over
    ``size_limit``) raises ``error`` naming ``where``.
    """
    if size_limit is not None:
        check(size_limit, len(raw), what=f"{where}: {what} of {len(raw)} bytes", error=error)
    depth_limit = current().max_json_depth
    if json_depth_upper_bound(raw) > depth_limit:
        # Brackets in strings may have inflated the bound: parse and measure exactly.
        doc = _loads(raw, where, what, error)
        depth = value_depth(doc, depth_limit)
        if depth > depth_limit:
            raise exceeded("max_json_depth", depth, what=f"{where}: {what} nested", error=error)
        return doc
    return _loads(raw, where, what, error)


def _loads(raw: bytes | str, where: str, what: str, error: type[Exception]) -> Any:
    try:
        return json.loads(raw)
    except RecursionError as err:
        raise exceeded(
            "max_json_depth",
            current().max_json_depth + 1,
            what=f"{where}: {what} nested",
            error=error,
        ) from err
    except (UnicodeDecodeError, ValueError) as err:  # JSONDecodeError, and int of too many digits
        raise error(f"{where}: unreadable {what}: {err}") from err


def check_json_value(value: Any, *, what: str, error: type[Exception]) -> None:
    """A Python value about to be stored as JSON: within ``max_json_depth``."""
    limit = current().max_json_depth
    depth = value_depth(value, limit)
    if depth > limit:
        raise exceeded("max_json_depth", depth, what=f"{what} nested", error=error)


__all__ = [
    "LimitExceededError",
    "Limits",
    "check",
    "check_json_value",
    "configure",
    "current",
    "exceeded",
    "override",
    "parse_json",
    "read_bounded",
    "restore",
]
