"""A store on any fsspec file system: S3, GCS, Azure, HTTP, ...

fsspec stays behind this class: nothing else in tensorhouse imports it, and it
is imported only when a remote store is opened.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from tensorhouse.errors import ObjectExistsError, ObjectNotFoundError, StorageError
from tensorhouse.storage.base import ObjectInfo, Store, check_key
from tensorhouse.storage.local import check_range

#: Protocols whose backend honours S3's conditional PUT (If-None-Match: *).
_CONDITIONAL_PUT_PROTOCOLS = frozenset({"s3", "s3a"})
#: Install hints for the optional dependencies of tensorhouse itself.
_EXTRAS = {"s3": "s3", "s3a": "s3"}


def _protocol(uri: str) -> str:
    scheme, sep, _ = uri.partition("://")
    return scheme.lower() if sep else "file"


def _import_backend(protocol: str) -> Any:
    """Return fsspec's file-system class for ``protocol``, or a StorageError saying what to install."""
    import fsspec
    from fsspec.registry import known_implementations

    try:
        return fsspec.get_filesystem_class(protocol)
    except ImportError as err:
        extra = _EXTRAS.get(protocol)
        if extra is not None:
            hint = f"pip install 'tensorhouse[{extra}]'"
        else:
            hint = known_implementations.get(protocol, {}).get("err") or str(err)
        raise StorageError(f"cannot open {protocol}:// storage: {hint}") from err
    except ValueError as err:
        known = ", ".join(sorted(known_implementations))
        raise StorageError(
            f"unknown storage protocol {protocol!r}; use a local path, memory://, or a protocol "
            f"fsspec knows ({known}) after installing the package that provides it"
        ) from err


def _mtime(info: Mapping[str, Any]) -> float | None:
    """Seconds since the epoch from whichever field the backend fills in."""
    for field in ("LastModified", "mtime", "last_modified", "updated", "created"):
        value = info.get(field)
        if isinstance(value, dt.datetime):
            return value.timestamp()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str) and value:
            try:
                return dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
            except ValueError:
                continue
    return None


class FsspecStore(Store):
    """Objects in any file system fsspec can open.

    On S3 ``put_if_absent`` is a conditional PUT (``If-None-Match: *``) and so
    atomic. Elsewhere it is an existence check and a write, and
    ``supports_conditional_put`` is False so that callers can refuse to commit
    concurrently.

    Because the S3 client retries failed requests, a conditional PUT that
    succeeded but whose reply was lost is retried and refused with 412. So
    that this success is not reported as a conflict, ``put_if_absent`` reads
    the object back on a refusal and returns normally when it holds exactly
    the bytes given.

    fsspec's listings cache is always off: other processes write concurrently,
    and a cached listing would hide their objects (and a cached size would
    mis-split a later read). Stores with the same options share one fsspec
    file system per process, so the client is set up once. The store can be
    used in forked worker processes: each process opens its own file system.

    Example:
        >>> from tensorhouse.storage import FsspecStore
        >>> store = FsspecStore("memory://fsspec-example/ds")
        >>> store.put("data/a.bin", b"abc")
        >>> store.get_range("data/a.bin", 1, 5)
        b'bc'
    """

    is_local = False

    def __init__(self, uri: str, storage_options: Mapping[str, Any] | None = None) -> None:
        self.uri = uri
        self.protocol = _protocol(uri)
        self.supports_conditional_put = self.protocol in _CONDITIONAL_PUT_PROTOCOLS
        self._fs_class = _import_backend(self.protocol)
        self._options: dict[str, Any] = {
            **self._fs_class._get_kwargs_from_urls(uri),  # e.g. host and user of sftp://
            **(storage_options or {}),
            "use_listings_cache": False,
        }
        self._pid = -1
        self._fs_instance: Any = None
        self._failures: tuple[type[BaseException], ...] = (OSError,)
        if self.protocol in _CONDITIONAL_PUT_PROTOCOLS:
            # s3fs translates most botocore errors, but not all (a wrong endpoint
            # gives EndpointConnectionError, missing credentials NoCredentialsError).
            from botocore.exceptions import BotoCoreError, ClientError

            self._failures = (OSError, BotoCoreError, ClientError)
        self.root = self._fs_class._strip_protocol(uri).rstrip("/")

    @property
    def fs(self) -> Any:
        """The fsspec file system, opened anew in each process.

        fsspec's async file systems (s3fs, gcsfs) refuse to run in a forked child,
        e.g. a DataLoader worker, so a child opens its own.
        """
        if self._pid != os.getpid():
            # fsspec's instance cache is keyed by the options and the process id, so
            # stores on one account share a client (creating one takes ~0.1 s)
            # and a forked child gets its own.
            self._fs_instance = self._fs_class(**self._options)
            self._pid = os.getpid()
        return self._fs_instance

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_fs_instance"] = None
        state["_pid"] = -1
        return state

    def _path(self, key: str) -> str:
        return f"{self.root}/{check_key(key)}"

    @contextmanager
    def _errors(self, action: str, key: str) -> Iterator[None]:
        """Translate fsspec's and the clients' errors into ours."""
        try:
            yield
        except (ObjectNotFoundError, ObjectExistsError):
            raise
        except FileNotFoundError as err:
            raise ObjectNotFoundError(f"no object {key!r} in {self.uri!r} ({err})") from err
        except FileExistsError as err:
            raise ObjectExistsError(f"object {key!r} already exists in {self.uri!r}") from err
        except StorageError:
            raise
        except self._failures as err:
            raise StorageError(f"cannot {action} {key!r} in {self.uri!r}: {err}") from err

    def _info(self, key: str) -> dict[str, Any]:
        """The backend's description of a key, which must be an object (not a folder)."""
        with self._errors("stat", key):
            info: dict[str, Any] = self.fs.info(self._path(key))
        if info.get("type") != "file":
            raise ObjectNotFoundError(f"no object {key!r} in {self.uri!r}")
        return info

    # -- reads -----------------------------------------------------------------
    def get(self, key: str) -> bytes:
        with self._errors("read", key):
            if self.protocol in _CONDITIONAL_PUT_PROTOCOLS:
                # s3fs otherwise sends a HEAD before every whole-object GET, to decide on
                # a concurrent download that only pays above 50 MB (chunks are 8-16 MiB).
                return bytes(self.fs.cat_file(self._path(key), max_concurrency=1))
            return bytes(self.fs.cat_file(self._path(key)))

    def get_range(self, key: str, start: int, length: int) -> bytes:
        check_range(start, length)
        if length == 0:
            self._info(key)  # still report a missing key
            return b""
        with self._errors("read", key):
            try:
                return bytes(self.fs.cat_file(self._path(key), start=start, end=start + length))
            except FileNotFoundError:
                raise
            except OSError:
                # S3 answers a range that starts at or past the end with 416,
                # which s3fs raises as a bare OSError(EINVAL).
                if start >= self.size(key):
                    return b""
                raise

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        for start, length in ranges:
            check_range(start, length)
        wanted = [i for i, (_, length) in enumerate(ranges) if length > 0]
        if not wanted:
            return [self.get_range(key, start, length) for start, length in ranges]
        path = self._path(key)
        with self._errors("read", key):
            got = self.fs.cat_ranges(
                [path] * len(wanted),
                [ranges[i][0] for i in wanted],
                [ranges[i][0] + ranges[i][1] for i in wanted],
                on_error="return",
            )
        out = [b""] * len(ranges)
        for i, result in zip(wanted, got, strict=True):
            if isinstance(result, BaseException):
                # One read path for errors, so a range past the end reads as empty
                # and a missing key raises ObjectNotFoundError, exactly as get_range.
                out[i] = self.get_range(key, *ranges[i])
            else:
                out[i] = bytes(result)
        return out

    def size(self, key: str) -> int:
        return int(self._info(key)["size"])

    def exists(self, key: str) -> bool:
        try:
            self._info(key)
        except ObjectNotFoundError:
            return False
        return True

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        directory = prefix.rpartition("/")[0]
        if directory:
            check_key(directory)
        base = f"{self.root}/{directory}" if directory else self.root
        full_prefix = f"{self.root}/{prefix}"
        partial = prefix.rpartition("/")[2]
        with self._errors("list", prefix):
            try:
                if partial and self.protocol in ("s3", "s3a"):
                    # S3 filters by key prefix on the server: listing the log from one
                    # block of versions costs one request, not one per 1,000 entries.
                    found: dict[str, dict[str, Any]] = self.fs.find(
                        base, detail=True, prefix=partial
                    )
                else:
                    found = self.fs.find(base, detail=True)
            except FileNotFoundError:
                return []
        start = len(self.root) + 1
        out = [
            ObjectInfo(name[start:], int(info.get("size") or 0), _mtime(info))
            for name, info in found.items()
            if name.startswith(full_prefix) and info.get("type", "file") == "file"
        ]
        out.sort(key=lambda info: info.key)
        return out

    # -- writes ----------------------------------------------------------------
    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        with self._errors("write", key):
            self.fs.pipe_file(self._path(key), bytes(data))

    def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> None:
        payload = bytes(data)
        if not self.supports_conditional_put:
            if self.exists(key):
                raise ObjectExistsError(f"object {key!r} already exists in {self.uri!r}")
            self.put(key, payload)
            return
        try:
            with self._errors("write", key):
                self.fs.pipe_file(self._path(key), payload, mode="create")
        except ObjectExistsError:
            try:
                ours = self.get(key) == payload
            except ObjectNotFoundError:  # deleted since: still not ours
                ours = False
            if not ours:
                raise

    def delete(self, key: str) -> None:
        with self._errors("delete", key):
            try:
                self.fs.rm_file(self._path(key))
            except FileNotFoundError:
                return
