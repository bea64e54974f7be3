"""Tags and branches: named pointers into the log.

- A tag is ``_refs/tags/<name>.json`` = {branch, version}, written put-if-absent
  (so two users tagging the same name cannot both win) and never rewritten;
  deleting a tag removes the file.
- A branch is ``_branches/<name>/_branch.json`` = {parent, base_version} plus
  its own log ``_branches/<name>/_log/``, whose versions continue after
  ``base_version``. Branch data files live in the dataset's shared ``data/``,
  so creating a branch copies nothing and merging moves nothing.

Tags and branch creation are not log commits: they change no data, and a
version number should mean a change of data.
"""

from __future__ import annotations

import json
import logging
import re
import time
from dataclasses import dataclass
from typing import TypeGuard

from tensorhouse import limits
from tensorhouse.errors import (
    CorruptLogError,
    ObjectExistsError,
    ObjectNotFoundError,
    RefExistsError,
    VersionNotFoundError,
)
from tensorhouse.format.log.log import Log
from tensorhouse.storage.base import Store

log = logging.getLogger("tensorhouse.refs")

MAIN = "main"
TAG_DIR = "_refs/tags/"
BRANCH_DIR = "_branches/"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")


def check_ref_name(name: str, what: str) -> str:
    if not isinstance(name, str) or not _NAME.match(name) or ".." in name:
        raise ValueError(
            f"invalid {what} name {name!r}: letters, digits, '_', '.', '-', starting with a letter or digit"
        )
    return name


@dataclass(frozen=True)
class Tag:
    name: str
    branch: str
    version: int
    created_ms: int


def _valid_int(v: object) -> TypeGuard[int]:
    """A JSON integer, not a bool (``True`` is an int to Python: ``"version": true`` is not version 1)."""
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _load(store: Store, key: str, what: str) -> dict[str, object]:
    # Bounded (a tag symlinked to /dev/zero, a huge file) and depth-limited: see tensorhouse.limits.
    raw = limits.read_bounded(store, key, "max_ref_bytes", what=what, error=CorruptLogError)
    doc = limits.parse_json(raw, where=f"{store.uri}/{key}", what=what, error=CorruptLogError)
    if not isinstance(doc, dict):
        raise CorruptLogError(f"{store.uri}/{key}: {what} is not an object")
    return doc


def create_tag(store: Store, name: str, branch: str, version: int) -> Tag:
    check_ref_name(name, "tag")
    tag = Tag(name, branch, version, int(time.time() * 1000))
    doc = {
        "format": "tensorhouse.tag",
        "format_version": 1,
        "branch": branch,
        "version": version,
        "created_ms": tag.created_ms,
    }
    try:
        store.put_if_absent(f"{TAG_DIR}{name}.json", json.dumps(doc).encode())
    except ObjectExistsError:
        raise RefExistsError(
            f"{store.uri}: tag {name!r} already exists (delete it first to move it)"
        ) from None
    return tag


def read_tag(store: Store, name: str) -> Tag:
    check_ref_name(name, "tag")
    try:
        doc = _load(store, f"{TAG_DIR}{name}.json", "tag")
    except ObjectNotFoundError:
        raise VersionNotFoundError(f"{store.uri}: no tag {name!r}") from None
    branch, version, created = doc.get("branch"), doc.get("version"), doc.get("created_ms", 0)
    if (
        not isinstance(branch, str)
        or not _NAME.match(branch)
        or ".." in branch
        or not _valid_int(version)
        or not _valid_int(created)
    ):
        raise CorruptLogError(f"{store.uri}: tag {name!r} is malformed")
    return Tag(name, branch, version, created)


def list_tags(store: Store) -> dict[str, Tag]:
    out = {}
    for info in store.list(TAG_DIR):
        name = info.key[len(TAG_DIR) :]
        if name.endswith(".json") and "/" not in name:
            if not _NAME.match(name[:-5]) or ".." in name[:-5]:
                # Not a name create_tag writes: a stray file, not a tag (and not a reason to fail).
                log.warning("%s: ignoring %r in %s: not a valid tag name", store.uri, name, TAG_DIR)
                continue
            out[name[:-5]] = read_tag(store, name[:-5])
    return out


def delete_tag(store: Store, name: str) -> None:
    read_tag(store, name)  # raises VersionNotFoundError for an unknown tag
    store.delete(f"{TAG_DIR}{name}.json")


def create_branch(store: Store, name: str, parent: str, base_version: int) -> None:
    check_ref_name(name, "branch")
    if name == MAIN:
        raise RefExistsError(f"{store.uri}: 'main' is the default branch")
    doc = {
        "format": "tensorhouse.branch",
        "format_version": 1,
        "parent": parent,
        "base_version": base_version,
        "created_ms": int(time.time() * 1000),
    }
    try:
        store.put_if_absent(f"{BRANCH_DIR}{name}/_branch.json", json.dumps(doc).encode())
    except ObjectExistsError:
        raise RefExistsError(f"{store.uri}: branch {name!r} already exists") from None


def list_branches(store: Store) -> list[str]:
    names = {
        info.key[len(BRANCH_DIR) :].split("/", 1)[0]
        for info in store.list(BRANCH_DIR)
        if info.key.endswith("/_branch.json")
    }
    return [MAIN, *sorted(names)]


def branch_log(store: Store, name: str, *, single_writer: bool = False, _depth: int = 0) -> Log:
    """The log of a branch, chained to its parents."""
    if name == MAIN:
        return Log(store, single_writer=single_writer)
    check_ref_name(name, "branch")
    if _depth > 64:
        raise CorruptLogError(f"{store.uri}: branch {name!r} has a cycle of parents")
    try:
        doc = _load(store, f"{BRANCH_DIR}{name}/_branch.json", "branch")
    except ObjectNotFoundError:
        raise VersionNotFoundError(
            f"{store.uri}: no branch {name!r} (branches: {list_branches(store)})"
        ) from None
    parent, base = doc.get("parent"), doc.get("base_version")
    if not isinstance(parent, str) or not _valid_int(base):
        raise CorruptLogError(f"{store.uri}: branch {name!r} is malformed")
    parent_log = branch_log(store, parent, single_writer=single_writer, _depth=_depth + 1)
    return Log(
        store, prefix=f"{BRANCH_DIR}{name}/", parent=(parent_log, base), single_writer=single_writer
    )
