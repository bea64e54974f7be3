"""The ``tensorhouse ingest ...`` commands (loaded by :mod:`tensorhouse.cli` only when used; CLI layer, above ingest/).

Example:
    $ tensorhouse ingest imagefolder ~/imagenet/train data/imagenet-train
    $ tensorhouse ingest coco instances_val2017.json val2017 data/coco-val
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import Any

import click

import tensorhouse as th
from tensorhouse.cli import parse_types, storage_option
from tensorhouse.ingest.arrow_source import csv, parquet
from tensorhouse.ingest.coco import coco
from tensorhouse.ingest.engine import IngestInterrupted, IngestReport
from tensorhouse.ingest.imagefolder import imagefolder
from tensorhouse.ingest.webdataset import webdataset


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def ingest() -> None:
    """Load an image folder, COCO, Parquet, CSV or WebDataset shards into a dataset.

    Every batch is one commit; an interrupted ingest (Ctrl-C, crash) resumes
    where it stopped when run again with the same arguments, and never
    duplicates rows. Unreadable images are skipped with a warning
    (--strict: stop with exit code 1).
    """


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    """Options every ingest command takes."""
    options = [
        click.option(
            "--batch-rows",
            type=int,
            default=None,
            help="Rows per commit (default: 1024 for images, 65536 for tables).",
        ),
        click.option(
            "--batch-mb",
            type=float,
            default=64.0,
            show_default=True,
            help="About this many MB per commit.",
        ),
        click.option(
            "--strict", is_flag=True, help="Stop (exit 1) at the first unreadable or corrupt image."
        ),
        click.option(
            "--validate",
            type=click.Choice(["header", "decode"]),
            default="header",
            show_default=True,
            help="Check each image's header, or fully decode it (catches truncated files; slower).",
        ),
        click.option(
            "--workers",
            type=int,
            default=None,
            help="Reader threads (default: 2 per core, 4 to 32).",
        ),
        click.option(
            "--progress/--no-progress",
            default=None,
            help="Progress bar (default: when on a terminal).",
        ),
    ]
    for opt in reversed(options):
        f = opt(f)
    return storage_option(f)  # the destination dataset's --storage-option KEY=VALUE


def _run_ingest(
    uri: str,
    fn: Callable[..., Any],
    *args: Any,
    batch_rows: int | None,
    batch_mb: float,
    **kwargs: Any,
) -> None:
    if batch_rows is not None:
        kwargs["batch_rows"] = batch_rows
    kwargs["batch_bytes"] = max(1, int(batch_mb * (1 << 20)))
    try:
        report: IngestReport = fn(*args, uri, **kwargs)
    except KeyboardInterrupt as err:
        version = err.version if isinstance(err, IngestInterrupted) else None
        if version is None:
            try:
                version = th.open(uri).version
            except (th.TensorhouseError, OSError):
                version = None
        where = f"dataset at version {version}" if version is not None else "no dataset created yet"
        click.echo(f"\ninterrupted: {where}; re-run to resume", err=True)
        sys.exit(130)
    click.echo(str(report))
    if report.skipped:
        click.echo(
            f"warning: skipped {report.skipped} unreadable item(s); --strict makes that an error",
            err=True,
        )


def _image_format() -> Callable[..., Any]:
    return click.option(
        "--image-format",
        type=click.Choice(["auto", "jpeg", "png"]),
        default="auto",
        show_default=True,
        help="Image column codec; auto: png if every file is a PNG, else jpeg "
        "(other files are converted).",
    )


@ingest.command("imagefolder")
@click.argument("src", type=click.Path(exists=True, file_okay=False))
@click.argument("uri")
@_image_format()
@_common
def ingest_imagefolder(src: str, uri: str, image_format: str, **kw: Any) -> None:
    """Ingest SRC in the ImageNet layout (SRC/<class>/<file>.jpg|.jpeg|.png) into URI.

    Columns: image (the JPEG bytes as they are), label (class index of the
    sorted folder names, as torchvision's ImageFolder), path (relative).

    \b
    Example:
      tensorhouse ingest imagefolder ~/imagenet/train data/imagenet-train
    """
    _run_ingest(uri, imagefolder, src, image_format=image_format, **kw)


@ingest.command("coco")
@click.argument("annotations", type=click.Path(exists=True, dir_okay=False))
@click.argument("images_dir", type=click.Path(exists=True, file_okay=False))
@click.argument("uri")
@_image_format()
@_common
def ingest_coco(annotations: str, images_dir: str, uri: str, image_format: str, **kw: Any) -> None:
    """Ingest COCO detections (ANNOTATIONS json + IMAGES_DIR) into URI, one row per image.

    Columns: image, boxes (bbox:xywh), categories (category id per box),
    image_id, meta (file_name, width, height, per-box area, iscrowd, ...).
    A malformed annotation file stops with an error naming the problem.

    \b
    Example:
      tensorhouse ingest coco coco/annotations/instances_val2017.json coco/val2017 data/coco-val
    """
    _run_ingest(uri, coco, annotations, images_dir, image_format=image_format, **kw)


_TYPES_HELP = 'Column types as JSON, e.g. \'{"img": "image:jpeg", "emb": "embedding:128"}\'; others are inferred.'


@ingest.command("parquet")
@click.argument("path")
@click.argument("uri")
@click.option("--types", "types_json", metavar="JSON", default=None, help=_TYPES_HELP)
@click.option("--columns", default=None, help="Comma-separated columns to ingest (default: all).")
@_common
def ingest_parquet(
    path: str, uri: str, types_json: str | None, columns: str | None, **kw: Any
) -> None:
    """Ingest Parquet files (PATH: a file, or a quoted glob like 'data/*.parquet') into URI.

    An image column given as binary is stored as it is (after a header check);
    one given as file paths (strings) is read from the files.

    \b
    Example:
      tensorhouse ingest parquet 'pets/*.parquet' data/pets --types '{"image": "image:jpeg"}'
    """
    cols = [c.strip() for c in columns.split(",")] if columns else None
    _run_ingest(uri, parquet, path, types=parse_types(types_json), columns=cols, **kw)


@ingest.command("csv")
@click.argument("path")
@click.argument("uri")
@click.option("--types", "types_json", metavar="JSON", default=None, help=_TYPES_HELP)
@click.option("--delimiter", default=",", show_default=True)
@_common
def ingest_csv(path: str, uri: str, types_json: str | None, delimiter: str, **kw: Any) -> None:
    """Ingest CSV files with a header row (PATH: a file or a quoted glob) into URI.

    A column typed image holds file paths, relative to the CSV file's folder.

    \b
    Example:
      tensorhouse ingest csv labels.csv data/pets --types '{"file": "image:jpeg", "label": "int64"}'
    """
    _run_ingest(uri, csv, path, types=parse_types(types_json), delimiter=delimiter, **kw)


@ingest.command("webdataset")
@click.argument("shards")
@click.argument("uri")
@click.option(
    "--types",
    "types_json",
    metavar="JSON",
    default=None,
    help='Column types by field extension, e.g. \'{"npy": "embedding:512"}\'; others are inferred.',
)
@_common
def ingest_webdataset(shards: str, uri: str, types_json: str | None, **kw: Any) -> None:
    """Ingest WebDataset tar shards (a file, a quoted glob, or 'train-{000000..000099}.tar') into URI.

    One column per field extension (jpg, png -> image; cls -> int64; txt ->
    text; json -> json; npy -> tensor; others binary) plus key.

    \b
    Example:
      tensorhouse ingest webdataset 'shards/train-{000000..000146}.tar' data/train
    """
    _run_ingest(uri, webdataset, shards, types=parse_types(types_json), **kw)
