"""Ingest an image folder in the ImageNet layout: ``root/<class>/<file>.jpg|.jpeg|.png``.

Columns: ``image`` (``Image("jpeg")``, or ``Image("png")`` when every file is
a PNG), ``label`` (``ClassLabel`` of the sorted folder names: the same indices
as torchvision's ``ImageFolder``), ``path`` (``Text``, relative to the root,
with ``/`` separators). JPEG files are stored byte for byte; a PNG among
JPEGs is converted to JPEG q90 (see :func:`~tensorhouse.ingest.images.choose_format`).

Files may sit in sub-folders of a class folder (their label is still the
top-level folder); hidden files and other extensions are ignored. The file
codec is detected from the bytes, not the extension (ImageNet has PNGs named
``.JPEG``). Rows are in sorted path order.

Example:
    >>> import os, tempfile, numpy as np, simplejpeg, tensorhouse as th
    >>> root = tempfile.mkdtemp()
    >>> for cls in ("cat", "dog"):
    ...     os.makedirs(f"{root}/{cls}")
    ...     with open(f"{root}/{cls}/0.jpg", "wb") as f:
    ...         _ = f.write(simplejpeg.encode_jpeg(np.zeros((8, 8, 3), np.uint8)))
    >>> report = th.ingest.imagefolder(root, "memory://doc-imagefolder", progress=False)
    >>> report.rows, th.open("memory://doc-imagefolder").take([1], columns=["label", "path"])["path"]
    (2, ['dog/0.jpg'])
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import Any, Literal

import numpy as np

from tensorhouse.ingest.engine import (
    BATCH_BYTES,
    BATCH_ROWS,
    IngestError,
    IngestReport,
    Loaded,
    PlannedBatch,
    check_batch_limits,
    fingerprint,
    run_batches,
)
from tensorhouse.ingest.images import (
    IMAGE_EXTENSIONS,
    Validate,
    choose_format,
    load_images,
    recheck_images,
    split_batches,
)
from tensorhouse.types import ClassLabel, Image, Schema, Text


def scan_folder(
    src: str, extensions: tuple[str, ...] = IMAGE_EXTENSIONS
) -> tuple[list[str], list[tuple[str, int, int]]]:
    """Class names (sorted folder names) and (relative path, label, size) per image file, sorted by path."""
    if not os.path.isdir(src):
        raise IngestError(f"image folder {src!r} does not exist or is not a directory")
    with os.scandir(src) as it:
        classes = sorted(e.name for e in it if e.is_dir() and not e.name.startswith("."))
    if not classes:
        raise IngestError(
            f"{src}: no class folders (expected the layout root/<class>/<image file>)"
        )
    files: list[tuple[str, int, int]] = []

    def walk(directory: str, rel: str, label: int) -> None:
        # scandir and string joins: os.walk + relpath cost ~3x more per file on ImageNet-sized folders.
        with os.scandir(directory) as it:
            for e in it:
                if e.name.startswith("."):
                    continue
                if e.is_dir():
                    walk(e.path, f"{rel}{e.name}/", label)
                elif os.path.splitext(e.name)[1].lower() in extensions:
                    try:
                        size = e.stat().st_size
                    except OSError:
                        size = 0  # reported as unreadable when its batch reads it
                    files.append((rel + e.name, label, size))

    for label, cls in enumerate(classes):
        walk(os.path.join(src, cls), cls + "/", label)
    files.sort()
    return classes, files


def imagefolder(
    src: str,
    uri: str,
    *,
    image_format: Literal["auto", "jpeg", "png"] = "auto",
    validate: Validate = "header",
    quality: int = 90,
    batch_rows: int = BATCH_ROWS,
    batch_bytes: int = BATCH_BYTES,
    strict: bool = False,
    progress: bool | None = None,
    workers: int | None = None,
    storage_options: Mapping[str, Any] | None = None,
) -> IngestReport:
    """Ingest ``src`` (``root/<class>/<file>``) into the dataset at ``uri``, creating it if needed.

    Each batch of ``batch_rows`` files (or ~``batch_bytes``) is one idempotent
    commit, so re-running after a crash or Ctrl-C resumes where it stopped and
    never duplicates a row. An unreadable or corrupt image is skipped with a
    warning (counted in the report), or raises IngestError with ``strict=True``.
    ``image_format``: ``"auto"`` (PNG if every file is a PNG, else JPEG),
    ``"jpeg"`` or ``"png"`` (files of the other codec are converted).
    ``progress``: a tqdm bar (rows/s, MB/s); ``None`` shows it on a terminal.

    Example:
        >>> import os, tempfile, numpy as np, simplejpeg, tensorhouse as th
        >>> root = tempfile.mkdtemp()  # raw/<class>/<file>.jpg, as ImageNet's train folder
        >>> for label in ("cat", "dog"):
        ...     os.makedirs(f"{root}/raw/{label}")
        ...     with open(f"{root}/raw/{label}/0.jpg", "wb") as f:
        ...         _ = f.write(simplejpeg.encode_jpeg(np.zeros((8, 8, 3), np.uint8)))
        >>> report = th.ingest.imagefolder(f"{root}/raw", f"{root}/pets", progress=False)
        >>> report.rows, th.open(f"{root}/pets").schema["label"].classes
        (2, ('cat', 'dog'))
    """
    check_batch_limits(batch_rows, batch_bytes)
    classes, files = scan_folder(src)
    if not files:
        raise IngestError(
            f"{src}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in the class folders"
        )
    fmt = choose_format([f[0] for f in files], image_format)
    schema = Schema.of(
        {"image": Image(fmt, quality=quality), "label": ClassLabel(classes), "path": Text()}
    )
    ranges = split_batches([f[2] for f in files], batch_rows, batch_bytes)
    fp = fingerprint("imagefolder", 1, classes, files)

    def plan() -> Iterator[PlannedBatch]:
        for a, b in ranges:
            yield PlannedBatch(partial(_load, src, files[a:b], fmt, validate, quality), b - a)

    return run_batches(
        uri,
        schema,
        plan(),
        kind="imagefolder",
        fingerprint=fp,
        batching=(batch_rows, batch_bytes),
        strict=strict,
        progress=progress,
        total_rows=len(files),
        workers=workers,
        storage_options=storage_options,
    )


def _utf8(name: str) -> bool:
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _load(
    src: str,
    files: list[tuple[str, int, int]],
    fmt: Literal["jpeg", "png"],
    validate: Validate,
    quality: int,
    pool: ThreadPoolExecutor,
) -> Loaded:
    rels = [f[0] for f in files]
    paths = [os.path.join(src, r) for r in rels]
    images, errors, nbytes = load_images(
        paths,
        fmt,
        pool,
        validate=validate,
        quality=quality,
        names=rels,
        sizes=[f[2] for f in files],
        check_header=False,
    )
    # A file name that is not UTF-8 decodes (os.fsdecode) to lone surrogates, which no
    # text column can hold and SQL engines cannot read: skip the row with its reason
    # (IngestError with strict=True) rather than store a path nobody can query.
    for i, r in enumerate(rels):
        if images[i] is not None and not _utf8(r):
            images[i] = None
            errors.append(
                f"{os.fsencode(r)!r}: the file name is not valid UTF-8, so the path column cannot "
                "hold it; rename the file (e.g. with convmv) to ingest it"
            )

    def build(images: list[bytes | None], errors: list[str]) -> Loaded:
        keep = [i for i, img in enumerate(images) if img is not None]
        labels = np.fromiter((files[i][1] for i in keep), dtype=np.int32, count=len(keep))
        columns = {
            "image": [images[i] for i in keep],
            "label": labels,
            "path": [rels[i] for i in keep],
        }
        return Loaded(columns, len(keep), nbytes, errors)

    def recheck() -> Loaded:
        checked, more = recheck_images(images, rels, fmt, pool)
        return build(checked, errors + more)

    loaded = build(images, errors)
    loaded.recheck = recheck
    return loaded
