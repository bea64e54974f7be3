"""Which keys of a dataset the format writes once and never rewrites.

The storage layer's disk cache (:class:`tensorhouse.storage.CachedStore`)
needs this rule but must not know the format's key layout, so the format
hands it in (``open_store(..., cacheable=is_immutable)``).

Example:
    >>> from tensorhouse.format.layout import is_immutable
    >>> is_immutable("data/image/0f3a.chunk"), is_immutable("_log/_last_checkpoint")
    (True, False)
"""

from __future__ import annotations

import re

# Data files, deletion files, numbered log entries and checkpoints are written
# once under a fresh name; pointers that move (_last_checkpoint, _refs/) are not.
_IMMUTABLE = re.compile(
    r"(?:_branches/[^/]+/)*"  # a branch's folder holds the same layout
    r"(?:data/.+|_deletions/.+|_log/\d{20}\.json|(?:[^/]+/)*[^/]+\.checkpoint)"
)


def is_immutable(key: str) -> bool:
    """Whether the format never rewrites ``key`` (so a cached copy can never be stale)."""
    return _IMMUTABLE.fullmatch(key) is not None and "_refs" not in key.split("/")


__all__ = ["is_immutable"]
