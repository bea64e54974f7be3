"""The ``tensorhouse index ...`` commands (loaded by the CLI only when used; an app module like
``cli_ingest``, so the library package ``tensorhouse.index`` never imports the CLI).

Example:
    $ tensorhouse index create data/pets embedding --metric cosine --kind ivf_flat --param nprobe=32
    $ tensorhouse index list data/pets
    $ tensorhouse index drop data/pets embedding_idx
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import click

from tensorhouse.cli import storage_option
from tensorhouse.format.dataset import open as open_dataset
from tensorhouse.index.ann import KINDS
from tensorhouse.index.build import create_index, drop_index, list_indexes, optimize_indexes
from tensorhouse.index.vectors import METRICS


@click.group(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
def index() -> None:
    """Vector indexes: create, list, drop, optimize. Each change is a new version of the dataset.

    \b
    Example:
      tensorhouse index create data/pets embedding --metric cosine
    """


def _params(values: Sequence[str]) -> dict[str, int]:
    out = {}
    for v in values:
        key, sep, raw = v.partition("=")
        if not sep or not key or not raw.lstrip("-").isdigit():
            raise click.BadParameter(
                f"{v!r}: expected NAME=INTEGER, e.g. nprobe=32", param_hint="--param"
            )
        out[key] = int(raw)
    return out


@index.command("create")
@click.argument("uri")
@click.argument("column")
@click.option("--name", default=None, help="Index name (default: COLUMN_idx).")
@click.option("--metric", type=click.Choice(METRICS), default="cosine", show_default=True)
@click.option("--kind", type=click.Choice(KINDS), default="ivf_flat", show_default=True)
@click.option(
    "--param",
    "params",
    multiple=True,
    metavar="NAME=INT",
    help="Index setting, repeatable: nlist, nprobe (ivf_flat); m, ef_construction, ef_search (hnsw).",
)
@click.option("--replace", is_flag=True, help="Rebuild an index of the same name.")
@storage_option
def create(
    uri: str,
    column: str,
    name: str | None,
    metric: str,
    kind: str,
    params: Sequence[str],
    replace: bool,
    storage_options: dict[str, Any],
) -> None:
    """Build a vector index over COLUMN (an embedding) and commit it.

    \b
    Example:
      tensorhouse index create data/pets embedding --metric cosine
    """
    ds = open_dataset(uri, storage_options=storage_options)
    settings: dict[str, Any] = _params(params)
    version = create_index(
        ds, column, name=name, metric=metric, kind=kind, replace=replace, **settings
    )
    made = next(i for i in list_indexes(ds) if i.name == (name or f"{column}_idx"))
    click.echo(
        f"created index {made.name!r} on {column!r} ({made.kind}, {made.metric}, {made.num_vectors:,} "
        f"vectors, {made.size_bytes:,} bytes) as version {version}"
    )


@index.command("list")
@click.argument("uri")
@click.option(
    "--version",
    type=int,
    default=None,
    help="List the indexes of this version (default: the latest).",
)
@storage_option
def list_(uri: str, version: int | None, storage_options: dict[str, Any]) -> None:
    """List the vector indexes of a version.

    \b
    Example:
      tensorhouse index list data/pets --version 7
    """
    ds = open_dataset(uri, version=version, storage_options=storage_options)
    rows = [
        [i.name, i.column, i.metric, i.kind, f"{i.num_vectors:,}", f"{i.size_bytes:,}"]
        for i in list_indexes(ds)
    ]
    if not rows:
        click.echo(f"no indexes in version {ds.version}")
        return
    header = ["name", "column", "metric", "kind", "vectors", "bytes"]
    widths = [max(len(str(r[c])) for r in [header, *rows]) for c in range(len(header))]
    for r in [header, *rows]:
        click.echo("  ".join(str(v).ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())


@index.command("drop")
@click.argument("uri")
@click.argument("name")
@storage_option
def drop(uri: str, name: str, storage_options: dict[str, Any]) -> None:
    """Drop an index from the next version on (older versions keep it until vacuum).

    \b
    Example:
      tensorhouse index drop data/pets embedding_idx
    """
    version = drop_index(open_dataset(uri, storage_options=storage_options), name)
    click.echo(f"dropped index {name!r} as version {version}")


@index.command("optimize")
@click.argument("uri")
@click.option("--name", default=None, help="Only this index (default: all).")
@click.option("--rebuild", is_flag=True, help="Rebuild even when extending would do.")
@storage_option
def optimize(uri: str, name: str | None, rebuild: bool, storage_options: dict[str, Any]) -> None:
    """Add rows appended since an index was built, or rebuild it after compaction.

    \b
    Example:
      tensorhouse index optimize data/pets
    """
    versions = optimize_indexes(
        open_dataset(uri, storage_options=storage_options), name, rebuild=rebuild
    )
    click.echo(
        f"committed version(s) {', '.join(map(str, versions))}"
        if versions
        else "indexes are up to date"
    )


__all__ = ["index"]
