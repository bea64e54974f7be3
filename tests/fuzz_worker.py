"""One fuzz campaign, run in its own process by tests/test_fuzz_format.py.

    python tests/fuzz_worker.py KIND[,KIND...] MAX_EXAMPLES [--random]

KIND is a stored file kind (log_entry, checkpoint, compacted, chunk_header,
chunk_data, group_file, deletion_vector, tag) or an API input (predicate, append). For file kinds,
hypothesis mutates one file of a small dataset (bit flips, overwrites,
truncation, insertion, and for JSON and chunk headers "crafted" mutations
whose checksums are recomputed, as an attacker would) and reads the dataset
back. The property: every read returns exactly the data of the version it
reports, or raises a TensorhouseError; never another exception. The parent
runs this in a subprocess with a timeout, so a hang or a crash fails the
test instead of killing the run. Exit status 0: no counterexample.
"""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import struct
import sys
import tempfile
import uuid
import zlib
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parent))
from hostile import write_entry

import tensorhouse as th
from tensorhouse.errors import TensorhouseError
from tensorhouse.format.chunks import header as H
from tensorhouse.format.chunks.codecs import encode_image

SCHEMA = {
    "id": "int64",
    "score": "float32",
    "label": th.ClassLabel(["cat", "dog", "bird"]),
    "text": th.Text(),
    "meta": th.Json(),
    "vec": th.Tensor("float32", (None, 3), compression="zstd"),
    "img": th.Image("jpeg"),
    "blob": th.Binary(),
}


def batch(start: int, n: int) -> dict[str, Any]:
    rng = np.random.default_rng(start)
    return {
        "id": np.arange(start, start + n),
        "score": rng.random(n, dtype=np.float32),
        "label": rng.integers(0, 3, n),
        "text": [f"row {i} " + "é" * (i % 5) for i in range(start, start + n)],
        "meta": [{"i": i, "tags": ["a"] * (i % 3)} for i in range(start, start + n)],
        "vec": [rng.random((i % 4 + 1, 3), dtype=np.float32) for i in range(n)],
        "img": [encode_image("jpeg", np.full((8, 8, 3), i % 256, np.uint8)) for i in range(n)],
        "blob": [bytes([i % 256]) * (i % 7) for i in range(n)],
    }


def canonical(x: Any) -> Any:
    if isinstance(x, np.ndarray):
        return ("nd", str(x.dtype), x.shape, x.tobytes())
    if isinstance(x, dict):
        return {k: canonical(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [canonical(v) for v in x]
    return x


def read_all(uri: str, **open_kw: Any) -> tuple[int, Any]:
    """Everything a user reads: the scan path and the random-access path, images decoded."""
    ds = th.open(uri, **open_kw)
    table = ds.to_table(with_rowid=True).to_pylist()
    taken = ds.take(list(range(len(ds))))
    ds.tags  # noqa: B018 - listing tags must work too (tags are not a version's data)
    return ds.version, canonical({"table": table, "take": taken})


def build(root: Path) -> dict[int, Any]:
    ds = th.create(str(root), SCHEMA)
    ds.append(batch(0, 40))
    ds.append(batch(40, 25))
    ds.delete(where="id % 7 = 3")
    ds.tag("t1")
    ds.checkpoint()
    ds.append(batch(65, 5))
    return {v: read_all(str(root), version=v)[1] for v in th.open(str(root)).versions()}


def build_compacted(root: Path) -> dict[int, Any]:
    """A dataset with a compacted log file: checkpoints every 3 versions, so version 5's state is
    ``_log/<3>.<5>.compacted`` (whole) and opening 5 or 6 reads it instead of the checkpoint."""
    from tensorhouse.format.log import log as log_module

    saved = log_module.CHECKPOINT_INTERVAL
    log_module.CHECKPOINT_INTERVAL = 3
    try:
        ds = th.create(str(root), SCHEMA)
        ds.append(batch(0, 40))
        ds.append(batch(40, 25))
        ds.delete(where="id % 7 = 3")  # 3: checkpoint
        ds.append(batch(65, 5))
        ds.delete(where="id = 66")  # 5: compacted file
        ds.append(batch(70, 5))
    finally:
        log_module.CHECKPOINT_INTERVAL = saved
    assert list((root / "_log").glob("*.compacted")), "the template has a compacted file"
    return {v: read_all(str(root), version=v)[1] for v in th.open(str(root)).versions()}


# -- mutations -------------------------------------------------------------------------------

byte_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(0, 1 << 20), st.integers(0, 7)),
    st.tuples(st.just("set"), st.integers(0, 1 << 20), st.integers(0, 255)),
    st.tuples(st.just("truncate"), st.integers(0, 1 << 20), st.just(0)),
    st.tuples(st.just("insert"), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("overwrite"), st.integers(0, 1 << 20), st.binary(min_size=1, max_size=64)),
    st.tuples(st.just("append"), st.just(0), st.binary(min_size=1, max_size=256)),
)


def mutate_bytes(data: bytes, m: tuple[str, int, Any]) -> bytes:
    kind, pos, arg = m
    if not data:
        return bytes(arg) if isinstance(arg, bytes) else b"\0"
    pos %= len(data)
    if kind == "flip":
        return data[:pos] + bytes([data[pos] ^ (1 << arg)]) + data[pos + 1 :]
    if kind == "set":
        return data[:pos] + bytes([arg]) + data[pos + 1 :]
    if kind == "truncate":
        return data[:pos]
    if kind == "insert":
        return data[:pos] + arg + data[pos:]
    if kind == "overwrite":
        return data[:pos] + arg + data[pos + len(arg) :]
    return data + arg


HOSTILE_VALUES = st.one_of(
    st.integers(-(1 << 70), 1 << 70),
    st.sampled_from([0, -1, 1, 1 << 31, 1 << 32, 1 << 63, (1 << 64) - 1]),
    st.booleans(),
    st.none(),
    st.floats(allow_nan=False),
    st.text(max_size=20),
    st.sampled_from(
        ["../x", "/etc/passwd", "data/x/\x00.chunk", "data/x/.tmp-1.chunk", "", "a" * 5000]
    ),
    st.lists(st.integers(), max_size=5),
    st.dictionaries(st.text(max_size=5), st.integers(), max_size=3),
    st.integers(1, 3000).map(
        lambda d: f"__DEEP_{d}__"
    ),  # spliced in as d nested lists once serialised
)


def dumps(doc: Any) -> str:
    """json.dumps, with each "__DEEP_d__" string replaced by d nested lists (too deep for json.dumps)."""
    text = json.dumps(doc, separators=(",", ":"))
    return re.sub(
        r'"__DEEP_(\d+)__"', lambda m: "[" * int(m.group(1)) + "]" * int(m.group(1)), text
    )


def leaf_paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix] if prefix else []
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.extend(leaf_paths(v, (*prefix, k)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.extend(leaf_paths(v, (*prefix, i)))
    return out


def set_path(doc: Any, path: tuple[Any, ...], value: Any) -> None:
    for p in path[:-1]:
        doc = doc[p]
    doc[path[-1]] = value


json_mutation = st.one_of(
    st.tuples(st.just("bytes"), byte_mutation),
    st.tuples(st.just("crafted"), st.tuples(st.integers(0, 1 << 16), HOSTILE_VALUES)),
)


def mutate_json(path: Path, m: Any, reseal: str) -> None:
    kind, arg = m
    if kind == "bytes":
        path.write_bytes(mutate_bytes(path.read_bytes(), arg))
        return
    doc = json.loads(path.read_bytes())
    paths = leaf_paths(doc)
    where, value = arg
    set_path(doc, paths[where % len(paths)], value)
    if reseal == "commit":
        write_entry(
            path, doc
        )  # the crc covers the "__DEEP_d__" form: a deep entry also fails its checksum
        path.write_text(dumps(json.loads(path.read_text())))
    elif reseal == "checkpoint" and isinstance(doc.get("state"), dict | list):
        state = doc["state"]
        doc["sha256"] = hashlib.sha256(
            json.dumps(state, sort_keys=True, separators=(",", ":")).encode()
        ).hexdigest()
        path.write_text(dumps(doc))
    else:
        path.write_text(dumps(doc))


def mutate_checkpoint(root: Path, path: Path, m: Any, *, hint: bool = True) -> None:
    """Columnar checkpoints (an xxh3-sealed Arrow IPC file + a hint naming its size and digest).

    ``bytes``: raw damage. ``body``: damage to the Arrow IPC body, resealed (digest, length and
    hint recomputed, as an attacker would). ``crafted``: one leaf of the state JSON replaced, resealed.
    ``hint=False``: a compacted log file (same layout), which no hint describes.
    """
    import pyarrow as pa
    import xxhash

    from tensorhouse.format.log import checkpoint as ck

    kind, arg = m
    raw = path.read_bytes()
    if kind == "bytes" or raw[:8] != ck.MAGIC:
        path.write_bytes(mutate_bytes(raw, arg) if kind != "crafted" else raw)
        return
    body = raw[ck.HEADER.size :]
    if kind == "body":
        body = mutate_bytes(body, arg)
    else:
        table = pa.ipc.open_file(pa.py_buffer(body)).read_all()
        meta = dict(table.schema.metadata or {})
        state = json.loads(
            meta[ck.STATE_KEY.encode() if isinstance(ck.STATE_KEY, str) else ck.STATE_KEY]
        )
        paths = leaf_paths(state)
        where, value = arg
        if paths:
            set_path(state, paths[where % len(paths)], value)
        key = ck.STATE_KEY.encode() if isinstance(ck.STATE_KEY, str) else ck.STATE_KEY
        meta[key] = dumps(state).encode()
        sink = pa.BufferOutputStream()
        table = table.replace_schema_metadata(meta)
        with pa.ipc.new_file(sink, table.schema) as w:
            w.write_table(table)
        body = sink.getvalue().to_pybytes()
    sealed = ck.HEADER.pack(ck.MAGIC, xxhash.xxh3_64_intdigest(body), len(body)) + body
    path.write_bytes(sealed)
    if not hint:
        return
    version = int(path.name.split(".")[0])
    (root / "_log" / "_last_checkpoint").write_text(
        json.dumps(
            {"version": version, "size": len(sealed), "xxh3": xxhash.xxh3_64_intdigest(body)}
        )
    )


HEADER_FIELDS = (
    "header_length",
    "version",
    "cc",
    "sc",
    "dt",
    "ndim",
    "flags",
    "n",
    "data_length",
    "raw_length",
    "block_size",
)
header_mutation = st.one_of(
    st.tuples(st.just("bytes"), byte_mutation),
    st.tuples(
        st.just("field"),
        st.tuples(
            st.sampled_from(HEADER_FIELDS),
            st.one_of(
                st.integers(0, 255),
                st.sampled_from([0, 1, 2, 40, 44, 64, 1 << 24, 1 << 26, (1 << 32) - 1]),
                st.integers(0, (1 << 32) - 1),
            ),
        ),
    ),
)
_FIXED = struct.Struct("<4sIHBBBBBxIQQI")
_WIDTH = {
    "header_length": 32,
    "version": 16,
    "cc": 8,
    "sc": 8,
    "dt": 8,
    "ndim": 8,
    "flags": 8,
    "n": 32,
    "data_length": 64,
    "raw_length": 64,
    "block_size": 32,
}


def mutate_header(path: Path, m: Any) -> None:
    data = path.read_bytes()
    kind, arg = m
    hl = H.header_length_hint(data)
    if kind == "bytes":
        head = mutate_bytes(data[:hl], arg)
        path.write_bytes(head + data[hl:])
        return
    name, value = arg
    fields = list(_FIXED.unpack_from(data, 0))
    fields[1 + HEADER_FIELDS.index(name)] = value % (1 << _WIDTH[name])
    head = bytearray(data[:hl])
    head[: _FIXED.size] = _FIXED.pack(*fields)
    head[hl - 4 : hl] = struct.pack(
        "<I", zlib.crc32(bytes(head[: hl - 4]))
    )  # an attacker reseals the header
    path.write_bytes(bytes(head) + data[hl:])


# -- campaigns -----------------------------------------------------------------------------------


_TEMPLATES: dict[str, tuple[Path, dict[int, Any]]] = {}


class Campaign:
    """Copies of one small dataset (built once per process) for mutations, and its true contents."""

    def __init__(self, template: str = "default") -> None:
        if template not in _TEMPLATES:
            base = Path(tempfile.mkdtemp(prefix="th-fuzz-"))
            builder = build_compacted if template == "compacted" else build
            _TEMPLATES[template] = base, builder(base / "template")
        self.base, self.reference = _TEMPLATES[template]
        self.template = self.base / "template"

    def copy(self) -> Path:
        root = (
            self.base / uuid.uuid4().hex
        )  # a fresh path: the process-wide header cache is keyed by it
        shutil.copytree(self.template, root, symlinks=True)
        return root

    def check(self, root: Path, **open_kw: Any) -> None:
        try:
            version, got = read_all(str(root), **open_kw)
        except TensorhouseError:
            return
        if open_kw.get("tag") is not None:
            assert got in self.reference.values(), "a mutated tag opened data of no version"
            return
        assert got == self.reference[version], (
            f"version {version} read different data without an error"
        )


def pick(files: list[Path], i: int) -> Path:
    files = sorted(files)
    return files[i % len(files)]


def run(kind: str, max_examples: int, randomize: bool) -> None:
    c = (
        None
        if kind in ("predicate", "append")
        else Campaign("compacted" if kind == "compacted" else "default")
    )
    cfg = settings(
        max_examples=max_examples,
        deadline=None,
        database=None,
        derandomize=not randomize,
        suppress_health_check=list(HealthCheck),
    )

    if kind == "log_entry":

        @cfg
        @given(st.integers(0, 100), json_mutation)
        def prop(i: int, m: Any) -> None:
            assert c is not None
            root = c.copy()
            mutate_json(pick(list((root / "_log").glob("*.json")), i), m, "commit")
            c.check(root)
    elif kind == "checkpoint":

        @cfg
        @given(st.one_of(json_mutation, st.tuples(st.just("body"), byte_mutation)))
        def prop(m: Any) -> None:
            assert c is not None
            root = c.copy()
            mutate_checkpoint(root, pick(list((root / "_log").glob("*.checkpoint")), 0), m)
            c.check(root)
    elif kind == "compacted":

        @cfg
        @given(st.one_of(json_mutation, st.tuples(st.just("body"), byte_mutation)))
        def prop(m: Any) -> None:
            assert c is not None
            root = c.copy()
            f = pick(list((root / "_log").glob("*.compacted")), 0)
            mutate_checkpoint(root, f, m, hint=False)
            c.check(root)
    elif kind == "tag":

        @cfg
        @given(json_mutation)
        def prop(m: Any) -> None:
            assert c is not None
            root = c.copy()
            mutate_json(root / "_refs" / "tags" / "t1.json", m, "none")
            c.check(root, tag="t1")
    elif kind in ("chunk_header", "chunk_data"):

        @cfg
        @given(st.integers(0, 100), header_mutation if kind == "chunk_header" else byte_mutation)
        def prop(i: int, m: Any) -> None:
            assert c is not None
            root = c.copy()
            chunk = pick(list((root / "data").rglob("*.chunk")), i)
            if kind == "chunk_header":
                mutate_header(chunk, m)
            else:
                data = chunk.read_bytes()
                hl = H.header_length_hint(data)
                chunk.write_bytes(data[:hl] + mutate_bytes(data[hl:], m))
            c.check(root)
    elif kind == "group_file":

        @cfg
        @given(st.integers(0, 100), byte_mutation)
        def prop(i: int, m: Any) -> None:
            assert c is not None
            root = c.copy()
            f = pick(list((root / "data" / "_groups").glob("*.parquet")), i)
            f.write_bytes(mutate_bytes(f.read_bytes(), m))
            c.check(root)
    elif kind == "deletion_vector":

        @cfg
        @given(byte_mutation)
        def prop(m: Any) -> None:
            assert c is not None
            root = c.copy()
            dv = pick(list((root / "_deletions").iterdir()), 0)
            dv.write_bytes(mutate_bytes(dv.read_bytes(), m))
            c.check(root)
    elif kind == "predicate":
        ds = th.create(
            f"memory://fuzz-{uuid.uuid4().hex}",
            {"id": "int64", "score": "float32", "name": th.Text()},
        )
        ds.append(
            {
                "id": np.arange(20),
                "score": np.linspace(-1, 1, 20, dtype="float32"),
                "name": [f"n{i}" for i in range(20)],
            }
        )
        token = st.one_of(
            st.sampled_from(
                [
                    "id",
                    "score",
                    "name",
                    '"id"',
                    "nope",
                    "(",
                    ")",
                    "(",
                    ")",
                    ",",
                    "=",
                    "!=",
                    "<",
                    ">=",
                    "+",
                    "-",
                    "*",
                    "/",
                    "%",
                    "AND",
                    "OR",
                    "NOT",
                    "IN",
                    "IS",
                    "NULL",
                    "BETWEEN",
                    "TRUE",
                    "'x'",
                    "''''",
                    "1",
                    "0",
                    "-1",
                    "1.5",
                    "1e308",
                    "1e999",
                    ".5",
                    "9" * 25,
                    "@",
                    ";",
                ]
            ),
            st.integers(-(1 << 70), 1 << 70).map(str),
            st.text(max_size=3),
        )

        @cfg
        @given(st.lists(token, max_size=60), st.integers(0, 3000))
        def prop(tokens: list[str], nest: int) -> None:
            where = " ".join(tokens)
            if nest % 3 == 0:
                where = "(" * nest + where + ")" * nest
            try:
                with ds.transaction() as tx:
                    tx.matching_rowids(where)
                    raise _Rollback
            except (TensorhouseError, _Rollback):
                pass
    elif kind == "append":
        scalar = st.one_of(
            st.none(),
            st.booleans(),
            st.integers(-(1 << 70), 1 << 70),
            st.floats(),
            st.text(max_size=5),
            st.binary(max_size=8),
        )
        value = st.recursive(
            scalar,
            lambda inner: st.one_of(
                st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=3), inner, max_size=3)
            ),
            max_leaves=10,
        )
        arrays = st.builds(
            lambda shape, dt: np.zeros(shape, dtype=dt),
            st.lists(st.integers(0, 4), max_size=3).map(tuple),
            st.sampled_from(["int8", "int64", "float16", "float64", "bool", "uint8", "U3", "O"]),
        )
        column = st.one_of(st.lists(st.one_of(value, arrays), max_size=4), arrays, value)
        data = st.one_of(
            st.dictionaries(st.sampled_from([*SCHEMA, "bogus"]), column, max_size=len(SCHEMA) + 1),
            st.lists(st.dictionaries(st.sampled_from(list(SCHEMA)), value), max_size=3),
            value,
        )

        @cfg
        @given(data)
        def prop(d: Any) -> None:
            ds = th.create(f"memory://fuzz-{uuid.uuid4().hex}", SCHEMA)
            try:
                ds.append(d)
            except TensorhouseError:
                return
            # Accepted: every read must serve it.
            ds.to_table()
            ds.take(list(range(len(ds))))
    else:
        raise SystemExit(f"unknown kind {kind!r}")
    try:
        prop()
    finally:
        if c is not None:  # keep the template for the next kind, drop the copies
            for p in c.base.iterdir():
                if p.name != "template":
                    shutil.rmtree(p, ignore_errors=True)


class _Rollback(Exception):
    """Leaves a transaction without committing."""


if __name__ == "__main__":
    import logging

    logging.getLogger("tensorhouse").setLevel(
        logging.ERROR
    )  # skipped checkpoints are expected here
    for kind in sys.argv[1].split(","):
        run(kind, int(sys.argv[2]), "--random" in sys.argv[3:])
        print(kind, "ok", flush=True)
    print("ok")
