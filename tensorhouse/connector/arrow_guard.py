"""A native object behind the Python Arrow dataset, so pyarrow's C++ paths fail cleanly.

``TensorhouseArrowDataset`` is a ``pyarrow.dataset.Dataset`` subclass whose
scans run in Python. pyarrow's functions that take a ``Dataset`` and go
straight to C++ (``Scanner.from_dataset``, ``UnionDataset(...)`` and so
``pads.dataset([a, b])``, ``pyarrow.acero.ScanNodeOptions``) read the C++
dataset pointer without a check; on a subclass that never ran a pyarrow
constructor that pointer is null, and the interpreter dies with a segfault.

:class:`NativeGuard` fills that pointer with a real C++ dataset of the same
schema: a ``UnionDataset`` over one ``FileSystemDataset`` whose one file lives
on a ``pyarrow.fs.PyFileSystem`` that refuses every call. A C++ scan of it
reaches our handler, which raises :class:`~tensorhouse.errors.UnsupportedError`
naming what to call instead; the error crosses C++ as itself. Only public
pyarrow API is used. What still works natively: ``schema`` and everything the
subclass overrides; ``pa.table(ad)``, ``pyarrow.dataset.write_dataset(ad,
...)`` and ``Scanner.from_batches(ad)`` go through ``__arrow_c_stream__``.

Example:
    >>> import pyarrow as pa, pyarrow.dataset as pads
    >>> class Mine(NativeGuard):
    ...     def __init__(self):
    ...         self.guard_native(pa.schema([("x", pa.int64())]), "memory://doc-guard")
    >>> try:
    ...     pads.Scanner.from_dataset(Mine()).to_table()
    ... except Exception as err:
    ...     print(type(err).__name__)
    UnsupportedError
"""

from __future__ import annotations

import atexit
import time
from typing import Any, NoReturn

import pyarrow as pa
import pyarrow.dataset as pads
import pyarrow.fs as pafs

from tensorhouse.errors import UnsupportedError

#: What the refusal says to do instead.
ALTERNATIVES = (
    "scan it with its own methods (ad.scanner(columns=..., filter=...), ad.to_batches(), "
    "ad.to_table()), read it as a stream (pa.table(ad), pa.RecordBatchReader.from_stream(ad), "
    "pyarrow.dataset.write_dataset(ad, ...)), or union and join it in DuckDB or DataFusion"
)


#: monotonic time of the last refusal, or None: read by the exit hook below.
_LAST_REFUSAL: list[float] = []


def _drain_refusals() -> None:
    """At exit, let Arrow's I/O threads finish their refused calls before the interpreter goes.

    A C++ scan calls the handler on Arrow's I/O threads. A thread still
    waiting for the GIL when the interpreter finalizes is ended from inside
    C++ frames, and the process aborts ("terminate called without an active
    exception"). Releasing the GIL briefly after the last refusal lets every
    such call run (each raises at once); processes that never refused pay nothing.
    """
    if not _LAST_REFUSAL:
        return
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline and time.monotonic() - _LAST_REFUSAL[-1] < 0.2:
        time.sleep(0.01)


atexit.register(_drain_refusals)


class _Refusing(pafs.FileSystemHandler):
    """A filesystem whose every call raises: where a C++ scan of a guarded dataset ends up."""

    def __init__(self, where: str) -> None:
        self._where = where

    def _refuse(self, *_args: Any, **_kwargs: Any) -> NoReturn:
        _LAST_REFUSAL[:] = [time.monotonic()]
        raise UnsupportedError(
            f"pyarrow's C++ dataset scanner cannot read the tensorhouse dataset {self._where} "
            f"(Scanner.from_dataset, UnionDataset, pads.dataset([...]), acero); {ALTERNATIVES}"
        )

    def get_type_name(self) -> str:
        return "tensorhouse-guard"

    def __eq__(self, other: object) -> bool:
        return self is other

    def __ne__(self, other: object) -> bool:
        return self is not other

    __hash__ = object.__hash__

    def normalize_path(self, path: str) -> str:
        return path

    get_file_info = get_file_info_selector = _refuse
    create_dir = delete_dir = delete_dir_contents = delete_root_dir_contents = delete_file = _refuse
    move = copy_file = _refuse
    open_input_stream = open_input_file = open_output_stream = open_append_stream = _refuse


class NativeGuard(pads.UnionDataset):
    """Base of Python-scanned Arrow datasets: call :meth:`guard_native` in ``__init__``."""

    def guard_native(self, schema: pa.Schema, where: str) -> None:
        """Back this object with a C++ dataset of ``schema`` that refuses to be scanned."""
        fs = pafs.PyFileSystem(_Refusing(where))
        fmt = pads.IpcFileFormat()
        child = pads.FileSystemDataset(
            [fmt.make_fragment("tensorhouse", filesystem=fs)], schema, fmt, fs
        )
        # UnionDataset's constructor is the public way to give a subclass its C++ object.
        pads.UnionDataset.__init__(self, schema, [child])

    @property
    def children(self) -> list[pads.Dataset]:
        """No child datasets: the rows come from tensorhouse, not from other Arrow datasets."""
        return []


__all__ = ["ALTERNATIVES", "NativeGuard"]
