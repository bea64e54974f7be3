"""The Store contract, run against every backend, plus each backend's own behaviour."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import pickle
import queue
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from tensorhouse.errors import ObjectExistsError, ObjectNotFoundError, StorageError
from tensorhouse.format.layout import is_immutable
from tensorhouse.storage import (
    CachedStore,
    FsspecStore,
    LocalStore,
    MemoryStore,
    ObjectInfo,
    PrefixedStore,
    Store,
    open_store,
)

S3Uri = tuple[str, dict[str, Any]]

# fork starts the racing processes fastest; spawn where there is no fork.
_MP = (
    multiprocessing.get_context("fork")
    if "fork" in multiprocessing.get_all_start_methods()
    else multiprocessing.get_context("spawn")
)

LOG0 = "_log/00000000000000000000.json"
LOG1 = "_log/00000000000000000001.json"
LOG10 = "_log/00000000000000000010.json"
CKPT10 = "_log/00000000000000000010.checkpoint"


class CountingStore(Store):
    """Passes every call to ``inner`` and counts them by method name."""

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.uri = inner.uri
        self.supports_conditional_put = inner.supports_conditional_put
        self.is_local = inner.is_local
        self.calls: Counter[str] = Counter()

    def reads(self) -> int:
        return sum(self.calls[name] for name in ("get", "get_range", "get_ranges", "size"))

    def get(self, key: str) -> bytes:
        self.calls["get"] += 1
        return self.inner.get(key)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        self.calls["get_range"] += 1
        return self.inner.get_range(key, start, length)

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        self.calls["get_ranges"] += 1
        return self.inner.get_ranges(key, ranges)

    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        self.calls["put"] += 1
        self.inner.put(key, data)

    def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> None:
        self.calls["put_if_absent"] += 1
        self.inner.put_if_absent(key, data)

    def exists(self, key: str) -> bool:
        self.calls["exists"] += 1
        return self.inner.exists(key)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        self.calls["list"] += 1
        return self.inner.list(prefix)

    def delete(self, key: str) -> None:
        self.calls["delete"] += 1
        self.inner.delete(key)

    def size(self, key: str) -> int:
        self.calls["size"] += 1
        return self.inner.size(key)


def _race_threads(store: Store, keys: list[str], writers: int) -> dict[str, list[int]]:
    """``writers`` threads race ``put_if_absent`` on each key; return the winners per key."""
    barrier = threading.Barrier(writers)
    winners: dict[str, list[int]] = {key: [] for key in keys}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def run(me: int) -> None:
        for key in keys:
            barrier.wait(timeout=30)  # start each key's race together
            try:
                store.put_if_absent(key, f"writer {me}".encode())
            except ObjectExistsError:
                continue
            except BaseException as err:
                errors.append(err)
                continue
            with lock:
                winners[key].append(me)

    threads = [threading.Thread(target=run, args=(me,)) for me in range(writers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return winners


def _race_process(root: str, keys: list[str], me: int, barrier: Any, out: Any) -> None:
    """One process of the cross-process race (module level so that spawn can import it)."""
    store = LocalStore(root)
    won = []
    for key in keys:
        barrier.wait(timeout=30)
        try:
            store.put_if_absent(key, f"writer {me}".encode())
        except ObjectExistsError:
            continue
        won.append(key)
    out.put((me, won))


def _read_in_child(store: Store, key: str, out: Any) -> None:
    out.put(store.get(key))


class StoreContract:
    """What every Store must do; each backend's test class provides ``store``."""

    #: How many keys each concurrency test races for.
    race_keys: ClassVar[int] = 20
    race_writers: ClassVar[int] = 8

    @pytest.mark.parametrize(
        "data",
        [b"hello world", bytearray(b"\x00\x01\xff"), memoryview(b"view bytes"), b""],
        ids=["bytes", "bytearray", "memoryview", "empty"],
    )
    def test_round_trip(self, store: Store, data: bytes | bytearray | memoryview) -> None:
        store.put("a/b.bin", data)
        assert store.get("a/b.bin") == bytes(data)
        assert store.size("a/b.bin") == len(bytes(data))

    def test_put_parts(self, store: Store) -> None:
        # A chunk's header and data section go in as two parts, one possibly a numpy view.
        view = np.frombuffer(b"\x00data section", np.uint8).data[1:]
        store.put_parts("a/c.chunk", (b"header|", view, b""))
        assert store.get("a/c.chunk") == b"header|data section"
        store.put_parts("a/c.chunk", (b"v2",))  # replaces, as put does
        assert store.get("a/c.chunk") == b"v2"

    def test_put_copies_mutable_buffers(self, store: Store) -> None:
        data = bytearray(b"before")
        store.put("k", data)
        data[:] = b"after!"
        assert store.get("k") == b"before"

    def test_overwrite(self, store: Store) -> None:
        store.put("k", b"first version")
        store.put("k", b"v2")
        assert store.get("k") == b"v2"
        assert [(i.key, i.size) for i in store.list()] == [("k", 2)]

    def test_missing_key(self, store: Store) -> None:
        with pytest.raises(ObjectNotFoundError, match=r"nope/x\.bin") as info:
            store.get("nope/x.bin")
        assert isinstance(info.value, FileNotFoundError)
        with pytest.raises(ObjectNotFoundError):
            store.get_range("nope/x.bin", 0, 4)
        with pytest.raises(ObjectNotFoundError):
            store.get_range("nope/x.bin", 0, 0)
        with pytest.raises(ObjectNotFoundError):
            store.get_ranges("nope/x.bin", [(0, 1), (2, 3)])
        with pytest.raises(ObjectNotFoundError):
            store.size("nope/x.bin")

    def test_folder_is_not_an_object(self, store: Store) -> None:
        store.put("dir/file", b"x")
        assert not store.exists("dir")
        with pytest.raises(ObjectNotFoundError):
            store.get("dir")
        store.delete("dir")  # nothing to delete, and no error
        assert store.get("dir/file") == b"x"

    @pytest.mark.parametrize(
        ("start", "length", "expected"),
        [
            (2, 3, b"234"),
            (0, 10, b"0123456789"),
            (7, 3, b"789"),
            (8, 5, b"89"),
            (10, 4, b""),
            (25, 1, b""),
            (3, 0, b""),
        ],
    )
    def test_get_range(self, store: Store, start: int, length: int, expected: bytes) -> None:
        store.put("r", b"0123456789")
        assert store.get_range("r", start, length) == expected

    def test_get_bounded(self, store: Store) -> None:
        store.put("b/k", b"0123456789")
        assert store.get_bounded("b/k", 10) == (b"0123456789", 10)
        assert store.get_bounded("b/k", 100) == (b"0123456789", 10)
        data, size = store.get_bounded(
            "b/k", 4
        )  # over the limit: refused by its size, read at most 5
        assert size > 4 and len(data) <= 5 and b"0123456789".startswith(data)
        with pytest.raises(ObjectNotFoundError):
            store.get_bounded("b/missing", 4)

    def test_get_range_of_empty_object(self, store: Store) -> None:
        store.put("empty", b"")
        assert store.get_range("empty", 0, 10) == b""

    def test_negative_range(self, store: Store) -> None:
        store.put("r", b"0123456789")
        with pytest.raises(ValueError):
            store.get_range("r", -1, 2)
        with pytest.raises(ValueError):
            store.get_range("r", 1, -2)
        with pytest.raises(ValueError):
            store.get_ranges("r", [(0, 1), (-5, 1)])

    def test_get_ranges_keeps_order(self, store: Store) -> None:
        store.put("r", b"0123456789")
        ranges = [(5, 2), (0, 2), (9, 5), (20, 1), (3, 0), (5, 2)]
        assert store.get_ranges("r", ranges) == [b"56", b"01", b"9", b"", b"", b"56"]
        assert store.get_ranges("r", []) == []

    def test_put_if_absent(self, store: Store) -> None:
        store.put_if_absent(LOG0, b"first")
        with pytest.raises(ObjectExistsError, match="00000000000000000000") as info:
            store.put_if_absent(LOG0, b"second")
        assert isinstance(info.value, FileExistsError)
        assert store.get(LOG0) == b"first"
        assert [i.key for i in store.list()] == [LOG0]  # no staged file left behind

    def test_exists(self, store: Store) -> None:
        assert not store.exists("x/y")
        store.put("x/y", b"1")
        assert store.exists("x/y")
        store.delete("x/y")
        assert not store.exists("x/y")

    def test_list(self, store: Store) -> None:
        objects = {
            LOG0: b"{}",
            LOG1: b"{1}",
            LOG10: b"{10}",
            CKPT10: b"checkpoint",
            "_last_checkpoint": b"10",
            "data/a/1.bin": b"a1",
            "data/b.bin": b"bbb",
            "datax": b"x",
        }
        for key, data in objects.items():
            store.put(key, data)

        def keys(prefix: str) -> list[str]:
            return [info.key for info in store.list(prefix)]

        everything = store.list()
        assert [i.key for i in everything] == sorted(objects)
        assert {i.key: i.size for i in everything} == {k: len(v) for k, v in objects.items()}
        for info in everything:
            assert info.mtime is None or abs(info.mtime - time.time()) < 3600
        assert keys("_log/") == [LOG0, LOG1, CKPT10, LOG10]
        assert keys("_log/0000000000000000000") == [LOG0, LOG1]  # ends mid-name
        assert keys("_log/00000000000000000010.") == [CKPT10, LOG10]
        assert keys("data/") == ["data/a/1.bin", "data/b.bin"]
        assert keys("data") == ["data/a/1.bin", "data/b.bin", "datax"]
        assert keys("data/a") == ["data/a/1.bin"]
        assert keys("_last_checkpoint") == ["_last_checkpoint"]
        assert keys("missing/") == []
        assert keys("missing") == []

    def test_delete(self, store: Store) -> None:
        store.put("d/1", b"1")
        store.put("d/2", b"2")
        store.delete("d/1")
        with pytest.raises(ObjectNotFoundError):
            store.get("d/1")
        assert [i.key for i in store.list()] == ["d/2"]
        store.delete("d/1")  # already gone: fine
        store.delete("never/was")

    @pytest.mark.parametrize("key", ["../x", "/abs", "a//b", "a/../b", "./a", ""])
    def test_invalid_keys(self, store: Store, key: str) -> None:
        calls = [
            lambda: store.get(key),
            lambda: store.get_range(key, 0, 1),
            lambda: store.get_ranges(key, [(0, 1)]),
            lambda: store.put(key, b"x"),
            lambda: store.put_if_absent(key, b"x"),
            lambda: store.exists(key),
            lambda: store.delete(key),
            lambda: store.size(key),
        ]
        for call in calls:
            with pytest.raises(ValueError):
                call()

    def test_child(self, store: Store) -> None:
        child = store.child("_branches/dev")
        child.put(LOG0, b"branch")
        assert store.get("_branches/dev/" + LOG0) == b"branch"
        assert [i.key for i in child.list("_log/")] == [LOG0]
        assert child.uri.endswith("_branches/dev")

    def test_concurrent_put_if_absent(self, store: Store) -> None:
        if not store.supports_conditional_put:
            pytest.skip("put_if_absent is not atomic on this store")
        keys = [f"_log/{n:020d}.json" for n in range(self.race_keys)]
        winners = _race_threads(store, keys, writers=self.race_writers)
        for key, won in winners.items():
            assert len(won) == 1, f"{key}: winners {won}"
            assert store.get(key) == f"writer {won[0]}".encode()
        assert [i.key for i in store.list()] == keys


# -- the backends --------------------------------------------------------------


class TestLocalStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> LocalStore:
        return LocalStore(str(tmp_path / "ds"))

    def test_concurrent_put_if_absent_across_processes(self, store: LocalStore) -> None:
        keys = [f"_log/{n:020d}.json" for n in range(20)]
        writers = 4
        barrier = _MP.Barrier(writers)
        out = _MP.Queue()
        procs = [
            _MP.Process(target=_race_process, args=(store.root, keys, me, barrier, out))
            for me in range(writers)
        ]
        for p in procs:
            p.start()
        results = [out.get(timeout=60) for _ in procs]
        for p in procs:
            p.join(timeout=30)
            assert p.exitcode == 0
        claimed = Counter(key for _, won in results for key in won)
        assert claimed == Counter(keys)  # every key won exactly once
        for me, won in results:
            for key in won:
                assert store.get(key) == f"writer {me}".encode()

    def test_no_temp_files_left(self, store: LocalStore) -> None:
        store.put("a/k", b"1")
        store.put("a/k", b"2")
        store.put_if_absent("a/j", b"1")
        with pytest.raises(ObjectExistsError):
            store.put_if_absent("a/j", b"2")
        assert sorted(os.listdir(os.path.join(store.root, "a"))) == ["j", "k"]

    def test_staged_files_are_hidden_and_reserved(self, store: LocalStore) -> None:
        store.put("_log/" + "0" * 20 + ".json", b"{}")
        Path(store.root, "_log", ".tmp-deadbeef").write_bytes(b"half written")
        assert [i.key for i in store.list()] == ["_log/" + "0" * 20 + ".json"]
        with pytest.raises(ValueError, match="reserved"):
            store.put("_log/.tmp-x", b"")

    def test_uris(self, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        assert LocalStore(f"file://{tmp_path}").root == str(tmp_path)
        monkeypatch.chdir(tmp_path)
        store = LocalStore("relative/ds")
        assert store.root == str(tmp_path / "relative" / "ds")
        assert store.uri == "relative/ds"
        store.put("k", b"v")
        assert (tmp_path / "relative" / "ds" / "k").read_bytes() == b"v"
        assert pickle.loads(pickle.dumps(store)).get("k") == b"v"


class TestMemoryStore(StoreContract):
    @pytest.fixture
    def store(self) -> Iterator[MemoryStore]:
        yield MemoryStore(f"test-{uuid.uuid4().hex}")
        MemoryStore.clear_all()

    def test_shared_by_name(self, store: MemoryStore) -> None:
        store.put("sub/k", b"v")
        assert MemoryStore(store.name).get("sub/k") == b"v"
        assert open_store(store.uri).get("sub/k") == b"v"
        assert MemoryStore(store.name + "/sub").get("k") == b"v"
        assert not MemoryStore(store.name + "-other").exists("sub/k")
        MemoryStore.clear_all()
        assert not store.exists("sub/k")

    def test_needs_a_name(self) -> None:
        with pytest.raises(ValueError):
            MemoryStore("memory://")


class TestS3Store(StoreContract):
    """FsspecStore on a real S3 protocol server (moto)."""

    pytestmark = pytest.mark.s3
    # moto checks and writes a conditional PUT without a lock, so it can tell two
    # racing writers that both won (seen once in a full run with 8): modest contention
    # here; high contention is proven on the local store (os.link) instead.
    race_keys = 5
    race_writers = 3

    @pytest.fixture
    def store(self, s3_uri: S3Uri) -> FsspecStore:
        uri, options = s3_uri
        return FsspecStore(uri, options)

    def test_is_conditional(self, store: FsspecStore) -> None:
        assert store.supports_conditional_put
        assert not store.is_local

    def test_put_if_absent_of_identical_bytes_succeeds(self, store: FsspecStore) -> None:
        # A retried PUT whose first attempt landed is refused with 412; reading
        # back identical bytes proves the object is ours.
        store.put_if_absent(LOG0, b"same")
        store.put_if_absent(LOG0, b"same")
        with pytest.raises(ObjectExistsError):
            store.put_if_absent(LOG0, b"different")

    def test_listing_sees_other_writers(self, store: FsspecStore, s3_uri: S3Uri) -> None:
        store.put("a", b"1")
        assert [i.key for i in store.list()] == ["a"]
        FsspecStore(*s3_uri).put("b", b"2")
        assert [i.key for i in store.list()] == ["a", "b"]
        assert store.exists("b")

    def test_forked_and_pickled_copies_work(self, store: FsspecStore) -> None:
        store.put("k", b"v")
        assert store.get("k") == b"v"  # opens the file system in this process first
        out = _MP.Queue()
        proc = _MP.Process(target=_read_in_child, args=(store, "k", out))
        proc.start()
        assert out.get(timeout=60) == b"v"
        proc.join(timeout=30)
        assert proc.exitcode == 0
        assert pickle.loads(pickle.dumps(store)).get("k") == b"v"

    def test_missing_bucket(self, s3_uri: S3Uri) -> None:
        store = FsspecStore("s3://no-such-bucket-here/ds", s3_uri[1])
        with pytest.raises(ObjectNotFoundError, match="no-such-bucket-here"):
            store.get("k")


class TestFsspecMemoryStore(StoreContract):
    """FsspecStore on a protocol without conditional PUT (fsspec's memory file system)."""

    @pytest.fixture
    def store(self) -> Iterator[FsspecStore]:
        store = FsspecStore(f"memory://th-test-{uuid.uuid4().hex}/ds")
        yield store
        with contextlib.suppress(FileNotFoundError):
            store.fs.rm(store.root, recursive=True)

    def test_is_not_conditional(self, store: FsspecStore) -> None:
        assert not store.supports_conditional_put


class TestCachedS3Store(StoreContract):
    pytestmark = pytest.mark.s3
    race_keys = 5
    race_writers = 3  # see TestS3Store

    @pytest.fixture
    def store(self, s3_uri: S3Uri, tmp_path: Path) -> CachedStore:
        return CachedStore(FsspecStore(*s3_uri), str(tmp_path / "cache"), cacheable=is_immutable)


class TestCachedLocalStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> CachedStore:
        return CachedStore(
            LocalStore(str(tmp_path / "ds")), str(tmp_path / "cache"), cacheable=is_immutable
        )


class TestPrefixedLocalStore(StoreContract):
    @pytest.fixture
    def store(self, tmp_path: Path) -> PrefixedStore:
        parent = LocalStore(str(tmp_path / "ds"))
        parent.put("outside", b"not in the child")
        return PrefixedStore(parent, "_branches/feature")


# -- the cache's own behaviour ----------------------------------------------------


@pytest.mark.parametrize(
    ("key", "cached"),
    [
        ("data/abc.chunk", True),
        ("data/col/part-0001.bin", True),
        ("_deletions/abc.bin", True),
        (LOG0, True),
        (CKPT10, True),
        ("_branches/dev/" + LOG1, True),
        ("_branches/dev/data/x.chunk", True),
        ("_last_checkpoint", False),
        ("_branches/dev/_last_checkpoint", False),
        ("_refs/tags/v1", False),
        ("_refs/tags/v1.checkpoint", False),
        ("_log/1.json", False),
        ("_log/00000000000000000001.json.tmp", False),
        ("_log/_commit_lock", False),
        ("other.bin", False),
    ],
)
def test_what_is_cached(key: str, cached: bool) -> None:
    assert is_immutable(key) is cached


class TestCachedStoreBehaviour:
    @pytest.fixture
    def remote(self, tmp_path: Path) -> CountingStore:
        return CountingStore(LocalStore(str(tmp_path / "remote")))

    @pytest.fixture
    def cache_dir(self, tmp_path: Path) -> Path:
        return tmp_path / "cache"

    @pytest.fixture
    def store(self, remote: CountingStore, cache_dir: Path) -> CachedStore:
        return CachedStore(remote, str(cache_dir), max_bytes=1000, cacheable=is_immutable)

    def test_immutable_objects_are_read_once(
        self, store: CachedStore, remote: CountingStore
    ) -> None:
        remote.inner.put("data/x.chunk", b"0123456789")
        assert store.get("data/x.chunk") == b"0123456789"
        assert remote.reads() == 1
        assert store.get("data/x.chunk") == b"0123456789"
        assert store.get_range("data/x.chunk", 2, 3) == b"234"
        assert store.get_ranges("data/x.chunk", [(8, 5), (0, 1)]) == [b"89", b"0"]
        assert store.size("data/x.chunk") == 10
        assert remote.reads() == 1

    def test_ranges_of_uncached_objects_pass_through(
        self, store: CachedStore, remote: CountingStore
    ) -> None:
        remote.inner.put("data/big.chunk", b"header" + bytes(500))
        assert store.get_range("data/big.chunk", 0, 6) == b"header"
        assert store.get_range("data/big.chunk", 0, 6) == b"header"
        assert remote.calls["get_ranges"] == 2  # not cached: no whole-object download
        assert remote.calls["get"] == 0

    def test_moving_pointers_are_never_stale(
        self, store: CachedStore, remote: CountingStore
    ) -> None:
        for key in ("_last_checkpoint", "_refs/heads/main", "_branches/dev/_last_checkpoint"):
            remote.inner.put(key, b"1")
            assert store.get(key) == b"1"
            remote.inner.put(key, b"2")  # another process moves the pointer
            assert store.get(key) == b"2"
            assert store.get_range(key, 0, 1) == b"2"

    def test_listings_and_exists_are_never_cached(
        self, store: CachedStore, remote: CountingStore
    ) -> None:
        assert not store.exists(LOG1)
        assert store.list("_log/") == []
        remote.inner.put(LOG1, b"{}")
        assert store.exists(LOG1)
        assert [i.key for i in store.list("_log/")] == [LOG1]

    def test_missing_objects_are_not_cached(
        self, store: CachedStore, remote: CountingStore
    ) -> None:
        with pytest.raises(ObjectNotFoundError):
            store.get(LOG1)
        remote.inner.put(LOG1, b"{}")
        assert store.get(LOG1) == b"{}"

    def test_writes_drop_cached_copies(self, store: CachedStore, remote: CountingStore) -> None:
        store.put("data/x", b"old")
        assert store.get("data/x") == b"old"
        store.put("data/x", b"new")
        assert store.get("data/x") == b"new"
        store.delete("data/x")
        with pytest.raises(ObjectNotFoundError):
            store.get("data/x")

    def test_eviction_keeps_the_cache_under_its_limit(
        self, store: CachedStore, remote: CountingStore, cache_dir: Path
    ) -> None:
        for n in range(10):
            remote.inner.put(f"data/{n}", bytes([n]) * 300)
            assert store.get(f"data/{n}") == bytes([n]) * 300
            cached = [p for p in cache_dir.rglob("*") if p.is_file()]
            assert sum(p.stat().st_size for p in cached) <= 1000
        assert len(cached) == 3
        before = remote.reads()
        assert store.get("data/9") == bytes([9]) * 300  # most recent: still cached
        assert remote.reads() == before
        assert store.get("data/0") == bytes([0]) * 300  # evicted: read again
        assert remote.reads() == before + 1

    def test_recently_read_survives_eviction(
        self, store: CachedStore, remote: CountingStore
    ) -> None:
        for n in range(3):
            remote.inner.put(f"data/{n}", bytes(300))
            store.get(f"data/{n}")
        store.get("data/0")  # now the most recently used
        remote.inner.put("data/3", bytes(300))
        store.get("data/3")  # evicts data/1, the least recently used
        before = remote.reads()
        store.get("data/0")
        assert remote.reads() == before
        store.get("data/1")
        assert remote.reads() == before + 1

    def test_objects_larger_than_the_cache_pass_through(
        self, store: CachedStore, remote: CountingStore, cache_dir: Path
    ) -> None:
        remote.inner.put("data/huge", bytes(5000))
        assert store.get("data/huge") == bytes(5000)
        assert store.get("data/huge") == bytes(5000)
        assert remote.reads() == 2
        assert not [p for p in cache_dir.rglob("*") if p.is_file()]

    def test_a_new_store_reuses_and_bounds_existing_files(
        self, store: CachedStore, remote: CountingStore, cache_dir: Path
    ) -> None:
        for n in range(3):
            remote.inner.put(f"data/{n}", bytes(300))
            store.get(f"data/{n}")
        again = CachedStore(remote, str(cache_dir), max_bytes=700, cacheable=is_immutable)
        before = remote.reads()
        assert again.get("data/2") == bytes(300)
        assert remote.reads() == before
        assert sum(p.stat().st_size for p in cache_dir.rglob("*") if p.is_file()) <= 700

    def test_concurrent_readers(self, store: CachedStore, remote: CountingStore) -> None:
        for n in range(4):
            remote.inner.put(f"data/{n}", bytes([n]) * 200)
        failures: queue.Queue[str] = queue.Queue()

        def read() -> None:
            for _ in range(25):
                for n in range(4):
                    if store.get(f"data/{n}") != bytes([n]) * 200:
                        failures.put(f"data/{n}")

        threads = [threading.Thread(target=read) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert failures.empty()

    def test_pickles(self, store: CachedStore, remote: CountingStore) -> None:
        remote.inner.put("data/x", b"x")
        copy = pickle.loads(
            pickle.dumps(CachedStore(remote.inner, store.cache_dir, cacheable=is_immutable))
        )
        assert copy.get("data/x") == b"x"


# -- open_store ------------------------------------------------------------------


class TestOpenStore:
    def test_local(self, tmp_path: Path) -> None:
        assert isinstance(open_store(str(tmp_path)), LocalStore)
        assert isinstance(open_store(f"file://{tmp_path}"), LocalStore)
        # Local reads gain nothing from a cache.
        assert isinstance(open_store(str(tmp_path), cache_dir=str(tmp_path / "c")), LocalStore)

    def test_memory(self) -> None:
        name = f"memory://open-{uuid.uuid4().hex}"
        open_store(name).put("k", b"v")
        assert isinstance(open_store(name), MemoryStore)
        assert open_store(name).get("k") == b"v"
        MemoryStore.clear_all()

    def test_options_for_a_local_store_are_an_error(self, tmp_path: Path) -> None:
        with pytest.raises(ValueError, match="endpoint_url"):
            open_store(str(tmp_path), {"endpoint_url": "http://x"})

    @pytest.mark.s3
    def test_s3_and_cache_dir(self, s3_uri: S3Uri, tmp_path: Path) -> None:
        uri, options = s3_uri
        plain = open_store(uri, options)
        assert isinstance(plain, FsspecStore)
        with pytest.raises(ValueError, match="needs cacheable="):
            open_store(uri, {**options, "cache_dir": str(tmp_path / "c0")})
        cached = open_store(
            uri, {**options, "cache_dir": str(tmp_path / "c1")}, cacheable=is_immutable
        )
        assert isinstance(cached, CachedStore)
        assert isinstance(cached.inner, FsspecStore)
        assert cached.cache_dir == str(tmp_path / "c1")
        by_keyword = open_store(
            uri, options, cache_dir=str(tmp_path / "c2"), cacheable=is_immutable
        )
        assert isinstance(by_keyword, CachedStore)
        cached.put("data/x", b"1")
        assert by_keyword.get("data/x") == b"1"

    def test_unknown_protocol(self) -> None:
        with pytest.raises(StorageError, match="unknown storage protocol 'nosuchproto'"):
            open_store("nosuchproto://bucket/ds")

    def test_missing_backend_says_what_to_install(self) -> None:
        pytest.importorskip("fsspec")
        try:
            import gcsfs  # noqa: F401
        except ImportError:
            with pytest.raises(StorageError, match="gcsfs"):
                open_store("gcs://bucket/ds")
        else:
            pytest.skip("gcsfs is installed")

    def test_import_is_cheap(self) -> None:
        code = (
            "import sys, tensorhouse.storage; "
            "heavy = [m for m in ('fsspec', 's3fs', 'botocore') if m in sys.modules]; "
            "print(heavy); sys.exit(bool(heavy))"
        )
        result = subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            cwd=Path(__file__).resolve().parents[1],
        )
        assert result.returncode == 0, result.stdout + result.stderr
