"""Ingest a COCO detection dataset: an annotation JSON plus its image folder.

One row per image (in the JSON's order), with columns:

| column       | type                          | from                                                   |
|--------------|-------------------------------|--------------------------------------------------------|
| ``image``    | ``Image("jpeg")`` (``"png"`` if every file is a PNG) | ``images_dir/<file_name>``, bytes as they are |
| ``boxes``    | ``BBox("xywh")``, float32 [n, 4] | each annotation's ``bbox`` (COCO's x, y, width, height) |
| ``categories`` | ``Tensor("int32", (None,))`` | each annotation's ``category_id``, aligned with ``boxes`` |
| ``image_id`` | ``int64``                     | the image's ``id``                                     |
| ``meta``     | ``Json``                      | the image entry's other keys (``file_name``, ``width``, ``height``, ...) and ``annotations``: per box, every key but ``image_id``, ``category_id`` and ``bbox`` (``id``, ``area``, ``iscrowd``, ``segmentation``, ...) |

Categories stay COCO's own (sparse, 1..90) ids rather than a ClassLabel;
their names are in the annotation file's ``categories`` (repeating them in
every row would be waste). The JSON is validated before anything is
written; an error names the entry and what is wrong with it.

Example:
    >>> import json, os, tempfile, numpy as np, simplejpeg, tensorhouse as th
    >>> d = tempfile.mkdtemp()
    >>> with open(f"{d}/a.jpg", "wb") as f:
    ...     _ = f.write(simplejpeg.encode_jpeg(np.zeros((8, 8, 3), np.uint8)))
    >>> doc = {"images": [{"id": 7, "file_name": "a.jpg", "width": 8, "height": 8}],
    ...        "categories": [{"id": 3, "name": "cat"}],
    ...        "annotations": [{"id": 1, "image_id": 7, "category_id": 3, "bbox": [1, 2, 3, 4], "area": 12}]}
    >>> with open(f"{d}/ann.json", "w") as f:
    ...     json.dump(doc, f)
    >>> _ = th.ingest.coco(f"{d}/ann.json", d, "memory://doc-coco", progress=False)
    >>> row = th.open("memory://doc-coco")[0]
    >>> row["boxes"].tolist(), row["categories"].tolist(), row["meta"]["annotations"]
    ([[1.0, 2.0, 3.0, 4.0]], [3], [{'id': 1, 'area': 12}])
"""

from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
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
    Validate,
    choose_format,
    file_size,
    load_images,
    recheck_images,
    split_batches,
)
from tensorhouse.types import BBox, Image, Json, Schema, Tensor

_ANN_COLUMNS = ("image_id", "category_id", "bbox")


@dataclass(frozen=True)
class CocoImage:
    """One validated image entry and its annotations, in file order."""

    image_id: int
    file_name: str
    boxes: np.ndarray  # float32 [n, 4], xywh
    categories: np.ndarray  # int32 [n]
    meta: dict[str, Any]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _where(kind: str, i: int, entry: Mapping[str, Any]) -> str:
    ident = entry.get("id") if isinstance(entry, Mapping) else None
    return f"{kind}[{i}]" + (f" (id {ident})" if ident is not None else "")


def parse_coco(doc: Any, source: str = "annotations") -> list[CocoImage]:
    """Validate a COCO detection document and group its annotations by image.

    Raises IngestError naming the problem: a missing key, an annotation that
    refers to an unknown image or category, a bbox that is not 4 numbers, a
    duplicate id.
    """

    def fail(msg: str) -> IngestError:
        return IngestError(f"{source}: malformed COCO file: {msg}")

    if not isinstance(doc, Mapping):
        raise fail(f"expected a JSON object at the top level, got {type(doc).__name__}")
    images = doc.get("images")
    if not isinstance(images, list):
        raise fail(
            "missing key 'images' (a list of {id, file_name, width, height})"
            if images is None
            else f"'images' must be a list, got {type(images).__name__}"
        )
    anns = doc.get("annotations", [])  # test splits have no annotations
    if not isinstance(anns, list):
        raise fail(f"'annotations' must be a list, got {type(anns).__name__}")
    cats = doc.get("categories")
    if cats is None and anns:
        raise fail("missing key 'categories' (a list of {id, name}), needed by the annotations")
    if cats is not None and not isinstance(cats, list):
        raise fail(f"'categories' must be a list, got {type(cats).__name__}")
    cat_ids = set()
    for i, c in enumerate(cats or []):
        if not isinstance(c, Mapping) or "id" not in c:
            raise fail(f"categories[{i}] has no 'id'")
        if not _is_int(c["id"]):
            raise fail(f"categories[{i}]: 'id' must be an integer, got {c['id']!r}")
        cat_ids.add(c["id"])
    by_id: dict[int, int] = {}
    for i, im in enumerate(images):
        if not isinstance(im, Mapping):
            raise fail(f"images[{i}] must be an object, got {type(im).__name__}")
        for key in ("id", "file_name"):
            if key not in im:
                raise fail(f"{_where('images', i, im)} has no {key!r}")
        if not _is_int(im["id"]):
            raise fail(f"images[{i}]: 'id' must be an integer, got {im['id']!r}")
        if not isinstance(im["file_name"], str) or not im["file_name"]:
            raise fail(f"{_where('images', i, im)}: 'file_name' must be a non-empty string")
        if im["id"] in by_id:
            raise fail(
                f"images[{i}]: duplicate image id {im['id']} (also images[{by_id[im['id']]}])"
            )
        by_id[im["id"]] = i
    boxes: list[list[list[float]]] = [[] for _ in images]
    categories: list[list[int]] = [[] for _ in images]
    extras: list[list[dict[str, Any]]] = [[] for _ in images]
    for j, a in enumerate(anns):
        if not isinstance(a, Mapping):
            raise fail(f"annotations[{j}] must be an object, got {type(a).__name__}")
        where = _where("annotations", j, a)
        for key in _ANN_COLUMNS:
            if key not in a:
                raise fail(f"{where} has no {key!r}")
        if a["image_id"] not in by_id:
            raise fail(f"{where} refers to unknown image_id {a['image_id']!r}")
        if a["category_id"] not in cat_ids:
            raise fail(f"{where} refers to unknown category_id {a['category_id']!r}")
        bbox = a["bbox"]
        if not (
            isinstance(bbox, list)
            and len(bbox) == 4
            and all(
                isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v)
                for v in bbox
            )
        ):
            raise fail(
                f"{where}: bbox must be 4 finite numbers [x, y, width, height], got {bbox!r}"
            )
        if bbox[2] < 0 or bbox[3] < 0:
            raise fail(f"{where}: bbox width and height must be >= 0, got {bbox!r}")
        k = by_id[a["image_id"]]
        boxes[k].append(bbox)
        categories[k].append(a["category_id"])
        extras[k].append({key: v for key, v in a.items() if key not in _ANN_COLUMNS})
    out = []
    for k, im in enumerate(images):
        meta = {key: v for key, v in im.items() if key != "id"}
        meta["annotations"] = extras[k]
        out.append(
            CocoImage(
                im["id"],
                im["file_name"],
                np.asarray(boxes[k], np.float32).reshape(-1, 4),
                np.asarray(categories[k], np.int32),
                meta,
            )
        )
    return out


def read_coco(path: str) -> tuple[list[CocoImage], str]:
    """Parse and validate the annotation file at ``path``; also return the digest of its bytes."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as err:
        raise IngestError(
            f"cannot read COCO annotation file {path!r}: {err.strerror or err}"
        ) from err
    try:
        doc = json.loads(raw)
    except ValueError as err:
        raise IngestError(f"{path}: malformed COCO file: not valid JSON: {err}") from err
    return parse_coco(doc, path), hashlib.sha256(raw).hexdigest()


def coco(
    annotations: str,
    images_dir: str,
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
    """Ingest COCO detections (``annotations`` JSON + ``images_dir``) into the dataset at ``uri``.

    The JSON is validated first (IngestError naming the problem). Images are
    read in batches, each one idempotent commit (re-running resumes), on a
    thread pool; an unreadable or missing image file is skipped with a warning,
    or raises IngestError with ``strict=True``.

    Example:
        >>> import json, os, tempfile, numpy as np, simplejpeg, tensorhouse as th
        >>> root = tempfile.mkdtemp()  # as coco/annotations/instances_val2017.json + coco/val2017/
        >>> os.makedirs(f"{root}/images")
        >>> with open(f"{root}/images/1.jpg", "wb") as f:
        ...     _ = f.write(simplejpeg.encode_jpeg(np.zeros((16, 16, 3), np.uint8)))
        >>> with open(f"{root}/instances.json", "w") as f:
        ...     json.dump({"images": [{"id": 1, "file_name": "1.jpg", "width": 16, "height": 16}],
        ...                "annotations": [{"id": 7, "image_id": 1, "category_id": 3, "bbox": [1, 2, 5, 5]}],
        ...                "categories": [{"id": 3, "name": "cat"}]}, f)
        >>> th.ingest.coco(f"{root}/instances.json", f"{root}/images", f"{root}/coco", progress=False).rows
        1
    """
    check_batch_limits(batch_rows, batch_bytes)
    entries, digest = read_coco(annotations)
    if not entries:
        raise IngestError(f"{annotations}: the COCO file lists no images")
    fmt = choose_format([e.file_name for e in entries], image_format)
    schema = Schema.of(
        {
            "image": Image(fmt, quality=quality),
            "boxes": BBox("xywh"),
            "categories": Tensor("int32", (None,)),
            "image_id": "int64",
            "meta": Json(),
        }
    )
    paths = [os.path.join(images_dir, e.file_name) for e in entries]
    sizes = [file_size(p) for p in paths]
    ranges = split_batches(sizes, batch_rows, batch_bytes)
    fp = fingerprint("coco", 1, digest, sizes)

    def plan() -> Iterator[PlannedBatch]:
        for a, b in ranges:
            yield PlannedBatch(
                partial(_load, entries[a:b], paths[a:b], fmt, validate, quality), b - a
            )

    return run_batches(
        uri,
        schema,
        plan(),
        kind="coco",
        fingerprint=fp,
        batching=(batch_rows, batch_bytes),
        strict=strict,
        progress=progress,
        total_rows=len(entries),
        workers=workers,
        storage_options=storage_options,
    )


def _load(
    entries: Sequence[CocoImage],
    paths: list[str],
    fmt: Literal["jpeg", "png"],
    validate: Validate,
    quality: int,
    pool: ThreadPoolExecutor,
) -> Loaded:
    names = [e.file_name for e in entries]
    images, errors, nbytes = load_images(
        paths, fmt, pool, validate=validate, quality=quality, names=names, check_header=False
    )

    def build(images: list[bytes | None], errors: list[str]) -> Loaded:
        keep = [i for i, img in enumerate(images) if img is not None]
        columns = {
            "image": [images[i] for i in keep],
            "boxes": [entries[i].boxes for i in keep],
            "categories": [entries[i].categories for i in keep],
            "image_id": np.fromiter(
                (entries[i].image_id for i in keep), dtype=np.int64, count=len(keep)
            ),
            "meta": [entries[i].meta for i in keep],
        }
        return Loaded(columns, len(keep), nbytes, errors)

    def recheck() -> Loaded:
        checked, more = recheck_images(images, names, fmt, pool)
        return build(checked, errors + more)

    loaded = build(images, errors)
    loaded.recheck = recheck
    return loaded
