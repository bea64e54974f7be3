"""A store on the local file system, with plain ``os`` calls.

fsspec's local file system adds a layer of Python per call and hides the
primitives we need for safe commits (``os.link``, ``fsync``); plain ``os`` is
both faster and simpler here.

Containment: a dataset may come from a stranger (an unpacked archive, a
shared folder). Every file the store opens must be a regular file inside the
root: the last path component is opened with ``O_NOFOLLOW`` (a symlinked
chunk is refused), the opened file's real path must lie under the root's real
path (a symlinked ``data/`` directory is refused), and ``fstat`` must say
"regular file" (a FIFO, socket or device is refused, and ``O_NONBLOCK`` keeps
opening a FIFO from blocking). Listings do not follow symlinks either.
"""

from __future__ import annotations

import builtins
import contextlib
import mmap
import os
import stat
import uuid
from collections.abc import Iterator, Sequence

from tensorhouse.errors import ObjectExistsError, ObjectNotFoundError, StorageError
from tensorhouse.storage.base import ObjectInfo, Store, check_key

#: Name prefix of staged files; listings never show them and keys may not use it.
TMP_PREFIX = ".tmp-"

# Windows cannot open a directory to fsync it; elsewhere the fsync makes a new
# directory entry (a rename or link) survive a crash.
_FSYNC_DIRS = os.name == "posix"
_O_READ = (
    os.O_RDONLY
    | getattr(os, "O_NOFOLLOW", 0)
    | getattr(os, "O_NONBLOCK", 0)
    | getattr(os, "O_CLOEXEC", 0)
)
#: Linux names an open file's real path here: one readlink, no race with a swapped symlink.
_PROC_FD = "/proc/self/fd/" if os.path.isdir("/proc/self/fd") else None
_POSIX = os.sep == "/"


def check_range(start: int, length: int) -> None:
    """Reject negative ranges, which no backend agrees on how to read."""
    if start < 0 or length < 0:
        raise ValueError(f"invalid byte range: start={start}, length={length}")


def pread_exact(fd: int, start: int, length: int) -> bytes:
    """Read ``length`` bytes at ``start``; fewer only when the file ends first.

    ``os.pread`` may return less than asked (signals, the 2 GiB per-call limit
    on Linux), so loop until the range is filled or the file ends.
    """
    first = os.pread(fd, length, start)
    if len(first) == length or not first:
        return first
    parts = [first]
    got = len(first)
    while got < length:
        part = os.pread(fd, length - got, start + got)
        if not part:
            break
        parts.append(part)
        got += len(part)
    return b"".join(parts)


def fsync_dir(path: str) -> None:
    """Make the entries of directory ``path`` durable."""
    if not _FSYNC_DIRS:
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalStore(Store):
    """Objects as files under a root directory.

    Writes go to a staged ``.tmp-<uuid>`` file in the target directory that is
    fsynced and then renamed (``put``) or hard-linked (``put_if_absent``) into
    place, so readers never see a torn object and exactly one of several
    concurrent ``put_if_absent`` calls wins, across threads and processes.

    Example:
        >>> import tempfile
        >>> from tensorhouse.storage import LocalStore
        >>> store = LocalStore(tempfile.mkdtemp())
        >>> store.put_if_absent("_log/00000000000000000000.json", b"{}")
        >>> [info.key for info in store.list("_log/")]
        ['_log/00000000000000000000.json']
    """

    is_local = True
    supports_conditional_put = True

    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.uri = os.fspath(root)
        path = self.uri[len("file://") :] if self.uri.startswith("file://") else self.uri
        self.root = os.path.abspath(path)
        # The real root, resolved once: a dataset root that is itself a symlink is fine.
        self._real_root = os.path.realpath(self.root)
        self._root_slash = self.root.rstrip("/") + "/"

    # -- helpers ---------------------------------------------------------------
    def _path(self, key: str) -> str:
        check_key(key)
        if key.rsplit("/", 1)[-1].startswith(TMP_PREFIX):
            raise ValueError(f"invalid store key {key!r}: {TMP_PREFIX!r} names are reserved")
        # A checked key is relative with no empty segment: joining by hand is os.path.join's result.
        return f"{self._root_slash}{key}" if _POSIX else os.path.join(self.root, *key.split("/"))

    def _inside(self, real: str) -> bool:
        return real == self._real_root or real.startswith(self._real_root.rstrip(os.sep) + os.sep)

    def _escape(self, key: str, why: str) -> StorageError:
        return StorageError(
            f"refusing to read {key!r} in {self.uri!r}: {why} (a dataset's files must be "
            "regular files inside its folder; see SECURITY.md)"
        )

    def _open(self, key: str) -> tuple[int, int]:
        """An fd of ``key`` checked to be a regular file inside the root, and its size."""
        path = self._path(
            key
        )  # ValueError for an invalid key (the log's parsers refuse those first)
        try:
            fd = os.open(path, _O_READ)
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as err:
            raise self._not_found(key) from err
        except OSError as err:
            if os.path.islink(path):  # ELOOP from O_NOFOLLOW
                raise self._escape(key, "it is a symbolic link") from err
            raise self._failed("read", key, err) from err
        try:
            st = os.fstat(fd)
            if stat.S_ISDIR(st.st_mode):
                raise self._not_found(key)
            if not stat.S_ISREG(st.st_mode):
                raise self._escape(key, "it is not a regular file (a FIFO, socket or device)")
            real = os.readlink(f"{_PROC_FD}{fd}") if _PROC_FD else os.path.realpath(path)
            if not self._inside(real):
                raise self._escape(key, f"it resolves to {real!r}, outside the dataset")
        except BaseException:
            os.close(fd)
            raise
        return fd, st.st_size

    def _check_dir(self, directory: str, key: str) -> None:
        """Refuse to write or delete through a symlinked directory that leaves the root."""
        real = os.path.realpath(directory)
        if not self._inside(real):
            raise StorageError(
                f"refusing to write {key!r} in {self.uri!r}: its folder resolves to {real!r}, "
                "outside the dataset"
            )

    def _not_found(self, key: str) -> ObjectNotFoundError:
        return ObjectNotFoundError(f"no object {key!r} in {self.uri!r}")

    def _failed(self, action: str, key: str, err: OSError) -> StorageError:
        return StorageError(f"cannot {action} {key!r} in {self.uri!r}: {err}")

    def _stage(
        self, path: str, parts: Sequence[bytes | bytearray | memoryview], *, durable: bool = True
    ) -> str:
        """Write ``parts``, in turn, durably (unless not ``durable``) to a fresh temp file beside ``path``; return its name."""
        directory = os.path.dirname(path)
        os.makedirs(directory, exist_ok=True)
        self._check_dir(directory, os.path.relpath(path, self.root))
        tmp = os.path.join(directory, TMP_PREFIX + uuid.uuid4().hex)
        try:
            with open(tmp, "xb") as f:
                for part in parts:  # big parts bypass the file's buffer: no copy
                    f.write(part)
                f.flush()
                if durable:
                    os.fsync(f.fileno())
        except BaseException:
            unlink_missing_ok(tmp)
            raise
        return tmp

    # -- reads -----------------------------------------------------------------
    def get(self, key: str) -> bytes:
        fd, size = self._open(key)
        try:
            return pread_exact(fd, 0, size)
        except OSError as err:
            raise self._failed("read", key, err) from err
        finally:
            os.close(fd)

    def local_path(self, key: str) -> str | None:
        """The real path of ``key``, checked as every read is: a regular file inside the dataset."""
        fd, _ = self._open(key)
        try:
            return os.readlink(f"{_PROC_FD}{fd}") if _PROC_FD else os.path.realpath(self._path(key))
        finally:
            os.close(fd)

    def map(self, key: str) -> memoryview | None:
        fd, size = self._open(key)
        try:
            if size == 0:
                return memoryview(b"")
            # The mapping outlives the fd (and a later unlink): Linux keeps the pages.
            return memoryview(mmap.mmap(fd, 0, access=mmap.ACCESS_READ))
        except OSError as err:
            raise self._failed("map", key, err) from err
        finally:
            os.close(fd)

    def get_range(self, key: str, start: int, length: int) -> bytes:
        return self.get_ranges(key, [(start, length)])[0]

    def get_ranges(self, key: str, ranges: Sequence[tuple[int, int]]) -> list[bytes]:
        for start, length in ranges:
            check_range(start, length)
        fd, size = self._open(key)
        try:
            # Clamped to the file's size: a range far past the end allocates nothing.
            return [
                pread_exact(fd, start, max(0, min(length, size - start)))
                for start, length in ranges
            ]
        except OSError as err:
            raise self._failed("read", key, err) from err
        finally:
            os.close(fd)

    def exists(self, key: str) -> bool:
        try:
            st = os.lstat(self._path(key))
        except OSError:
            return False
        return stat.S_ISREG(st.st_mode)

    def size(self, key: str) -> int:
        fd, size = self._open(key)
        os.close(fd)
        return size

    def get_bounded(self, key: str, limit: int) -> tuple[bytes, int]:
        # One open: the fstat that checks the file also gives its size, so nothing over the limit is read.
        fd, size = self._open(key)
        try:
            return (b"", size) if size > limit else (pread_exact(fd, 0, size), size)
        except OSError as err:
            raise self._failed("read", key, err) from err
        finally:
            os.close(fd)

    def list(self, prefix: str = "") -> list[ObjectInfo]:
        # Start the walk at the deepest directory the prefix names; the rest of
        # the prefix (possibly half a file name) filters that directory's entries.
        directory, _, partial = prefix.rpartition("/")
        if directory:
            check_key(directory)
            base = os.path.join(self.root, *directory.split("/"))
        else:
            base = self.root
        if partial == "..":
            raise ValueError(f"invalid store prefix {prefix!r}")
        key_base = directory + "/" if directory else ""
        return sorted(_walk(base, key_base, partial), key=lambda info: info.key)

    def list_keys(self, prefix: str = "") -> builtins.list[str]:
        # No stat per entry: opening a log of 10,000 entries lists their names only.
        directory, _, partial = prefix.rpartition("/")
        if directory:
            check_key(directory)
        if partial == "..":
            raise ValueError(f"invalid store prefix {prefix!r}")
        base = os.path.join(self.root, *directory.split("/")) if directory else self.root
        return sorted(_walk_names(base, directory + "/" if directory else "", partial))

    def list_staged(self, prefix: str = "") -> builtins.list[ObjectInfo]:
        """Staged ``.tmp-*`` files left under ``prefix`` (a folder) by writes that crashed before their rename."""
        directory = prefix.rstrip("/")
        if directory:
            check_key(directory)
        base = os.path.join(self.root, *directory.split("/")) if directory else self.root
        return sorted(
            _walk_staged(base, directory + "/" if directory else ""), key=lambda info: info.key
        )

    def delete_staged(self, key: str) -> None:
        check_key(key)
        if not key.rsplit("/", 1)[-1].startswith(TMP_PREFIX):
            raise ValueError(f"{key!r} is not a staged file")
        unlink_missing_ok(os.path.join(self.root, *key.split("/")))

    # -- writes ----------------------------------------------------------------
    def put(self, key: str, data: bytes | bytearray | memoryview) -> None:
        self.put_parts(key, (data,))

    def put_parts(self, key: str, parts: Sequence[bytes | bytearray | memoryview]) -> None:
        path = self._path(key)
        try:
            tmp = self._stage(path, parts)
            try:
                os.replace(tmp, path)
            except BaseException:
                unlink_missing_ok(tmp)
                raise
            # The new name must survive a crash as well: a commit written next
            # may already refer to this object.
            fsync_dir(os.path.dirname(path))
        except OSError as err:
            raise self._failed("write", key, err) from err

    def put_volatile(self, key: str, data: bytes | bytearray | memoryview) -> None:
        # No fsync of the file or its folder: after a crash the object may be missing or torn
        # (readers of such objects check a checksum), never another object's bytes.
        path = self._path(key)
        try:
            tmp = self._stage(path, (data,), durable=False)
            try:
                os.replace(tmp, path)
            except BaseException:
                unlink_missing_ok(tmp)
                raise
        except OSError as err:
            raise self._failed("write", key, err) from err

    def put_if_absent(self, key: str, data: bytes | bytearray | memoryview) -> None:
        path = self._path(key)
        try:
            tmp = self._stage(path, (data,))
            try:
                # link() fails if the name is taken, atomically: the staged file
                # is complete before anyone can see it under the final name.
                os.link(tmp, path)
            except FileExistsError as err:
                raise ObjectExistsError(f"object {key!r} already exists in {self.uri!r}") from err
            finally:
                unlink_missing_ok(tmp)
            fsync_dir(os.path.dirname(path))
        except ObjectExistsError:
            raise
        except OSError as err:
            raise self._failed("write", key, err) from err

    def delete(self, key: str) -> None:
        path = self._path(key)
        self._check_dir(os.path.dirname(path), key)
        try:
            os.remove(path)
        # A missing key or a "directory" (no object either) is nothing to delete.
        except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
            return
        except OSError as err:
            raise self._failed("delete", key, err) from err


def _walk(directory: str, key_base: str, partial: str) -> Iterator[ObjectInfo]:
    """Yield every file below ``directory`` whose first-level name starts with ``partial``."""
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if not entry.name.startswith(partial) or entry.name.startswith(TMP_PREFIX):
            continue
        key = key_base + entry.name
        try:
            # Symlinks are not followed: they are neither listed nor walked into.
            if entry.is_dir(follow_symlinks=False):
                yield from _walk(entry.path, key + "/", "")
            elif entry.is_file(follow_symlinks=False):
                st = entry.stat(follow_symlinks=False)
                yield ObjectInfo(key, st.st_size, st.st_mtime)
        except FileNotFoundError:  # deleted while we listed
            continue


def _walk_names(directory: str, key_base: str, partial: str) -> Iterator[str]:
    """Like ``_walk``, names only: the directory entry's type, no stat."""
    try:
        with os.scandir(directory) as it:
            # Filter by name first, in one comprehension: a log folder holds 10,000s of entries.
            entries = [
                e for e in it if e.name.startswith(partial) and not e.name.startswith(TMP_PREFIX)
            ]
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        try:
            if entry.is_file():
                yield key_base + entry.name
            elif entry.is_dir():
                yield from _walk_names(entry.path, key_base + entry.name + "/", "")
        except FileNotFoundError:  # deleted while we listed
            continue


def _walk_staged(directory: str, key_base: str) -> Iterator[ObjectInfo]:
    try:
        entries = list(os.scandir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        key = key_base + entry.name
        try:
            if entry.is_dir():
                yield from _walk_staged(entry.path, key + "/")
            elif entry.name.startswith(TMP_PREFIX) and entry.is_file():
                st = entry.stat()
                yield ObjectInfo(key, st.st_size, st.st_mtime)
        except FileNotFoundError:  # renamed into place or removed while we listed
            continue


def unlink_missing_ok(path: str) -> None:
    """Remove a file that may already be gone."""
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
