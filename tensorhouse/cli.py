"""The ``tensorhouse`` command (also ``python -m tensorhouse``).

Example:
    $ tensorhouse demo
    $ tensorhouse create data/pets --schema '{"image": "image:jpeg", "label": "int64"}'
    $ tensorhouse ingest imagefolder ~/imagenet/train data/imagenet-train
    $ tensorhouse info data/imagenet-train
    $ tensorhouse index create data/imagenet-train embedding --metric cosine
    $ tensorhouse sql "SELECT label, count(*) FROM t GROUP BY label" --dataset t=data/imagenet-train

Exit codes: 0 success; 1 an error of ours (no dataset at the path, a
malformed COCO file, a strict ingest that met an unreadable image, ...),
printed as one ``error: ...`` line; 2 a usage error; 130 interrupted (an
interrupted ingest keeps every batch committed so far: re-run it to resume).
"""

from __future__ import annotations

import importlib
import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from typing import Any, ClassVar

import click

import tensorhouse as th
from tensorhouse.types import BBox, ColumnType, Embedding, Image, Json, Schema, Text, as_type

CONTEXT = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class CommandError(click.ClickException):
    """An error to report as ``error: ...`` with exit code 1 (a failed query, say)."""

    exit_code = 1

    def show(self, file: Any = None) -> None:
        click.echo(f"error: {self.format_message()}", err=True)


class _Group(click.Group):
    """The top-level group; ``ingest`` and its source modules load only when that command runs."""

    lazy: ClassVar[dict[str, tuple[str, str]]] = {
        "ingest": ("tensorhouse.cli_ingest", "ingest"),
        "index": ("tensorhouse.cli_index", "index"),
    }

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted([*super().list_commands(ctx), *self.lazy])

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in self.lazy:
            module, attr = self.lazy[name]
            command: click.Command = getattr(importlib.import_module(module), attr)
            return command
        return super().get_command(ctx, name)


STORAGE_HELP = (
    "Option for the storage backend (fsspec/s3fs), as KEY=VALUE; repeatable. VALUE is read as JSON when it "
    'parses (true, 3, {"k": "v"}), else as text. Example: --storage-option endpoint_url=http://localhost:9000 '
    "--storage-option anon=false. Without options, S3 credentials come from the environment as for boto: "
    "AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE, AWS_DEFAULT_REGION (or AWS_REGION) "
    "and AWS_ENDPOINT_URL (an S3-compatible server such as MinIO)."
)


def parse_storage_options(
    values: Sequence[str], param_hint: str = "--storage-option"
) -> dict[str, Any]:
    """``["key=value", ...]`` -> ``{key: value}``; values parsed as JSON where they parse."""
    out: dict[str, Any] = {}
    for v in values:
        key, sep, raw = v.partition("=")
        key = key.strip()
        if not sep or not key:
            raise click.BadParameter(f"expected KEY=VALUE, got {v!r}", param_hint=param_hint)
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def storage_option(f: Callable[..., Any]) -> Callable[..., Any]:
    """The repeatable ``--storage-option KEY=VALUE`` option; the command receives ``storage_options: dict``."""

    def convert(ctx: click.Context, param: click.Parameter, value: Sequence[str]) -> dict[str, Any]:
        return parse_storage_options(value)

    return click.option(
        "--storage-option",
        "storage_options",
        multiple=True,
        metavar="KEY=VALUE",
        callback=convert,
        help=STORAGE_HELP,
    )(f)


@click.group(cls=_Group, context_settings=CONTEXT)
@click.version_option(th.__version__, prog_name="tensorhouse")
def cli() -> None:
    """tensorhouse: a lakehouse for deep-learning data.

    Every command takes a dataset URI: a local path, memory://name (only
    useful inside one process), or s3://bucket/prefix.

    \b
    Object storage: pass backend options with --storage-option KEY=VALUE
    (repeatable, on every command), e.g.
      --storage-option endpoint_url=http://localhost:9000 --storage-option anon=false
    Otherwise S3 credentials and settings come from the environment:
      AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, AWS_PROFILE,
      AWS_DEFAULT_REGION (or AWS_REGION), AWS_ENDPOINT_URL (MinIO, moto, ...).
    """


# -- formatting --------------------------------------------------------------------
def type_str(t: ColumnType) -> str:
    """A column type in the CLI's short notation (the same that --schema and --types accept)."""
    if isinstance(t, Image):
        return f"image:{t.compression or 'raw'}"
    if isinstance(t, th.ClassLabel):
        names = ", ".join(t.classes[:5]) + (", ..." if len(t.classes) > 5 else "")
        return f"class_label ({len(t.classes)}: {names})"
    if isinstance(t, Embedding):
        return f"embedding:{t.dim}" + ("" if t.dtype == "float32" else f" ({t.dtype})")
    if isinstance(t, BBox):
        return f"bbox:{t.format}"
    if isinstance(t, th.Tensor):
        dims = "x".join("?" if d is None else str(d) for d in t.shape)
        return f"tensor:{t.dtype}:{dims or 'scalar'}"
    if isinstance(t, th.Scalar):
        return t.dtype
    if isinstance(t, th.Arrow):
        return str(t.arrow_type())  # an Arrow type name, as --types accepts it
    return t.kind


def fmt_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1000 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"  # pragma: no cover


def cell(v: Any, width: int = 40) -> str:
    """One value as table text: binary as ``<jpeg 17.2 KB>``, long text and lists truncated."""
    if v is None:
        return "NULL"
    if isinstance(v, bytes | bytearray | memoryview):
        head = bytes(v[:8])
        kind = (
            "jpeg"
            if head.startswith(b"\xff\xd8\xff")
            else "png"
            if head.startswith(b"\x89PNG")
            else "binary"
        )
        return f"<{kind} {fmt_bytes(len(v))}>"
    if isinstance(v, float):
        s = f"{v:.6g}"
    elif isinstance(v, list):
        s = _short_list(v)
    elif isinstance(v, dict):
        s = json.dumps(v, default=str, ensure_ascii=False)
    else:
        s = str(v)
    s = s.replace("\n", " ")
    return s if len(s) <= width else s[: width - 1] + "…"


def _short_list(v: list[Any], depth: int = 0) -> str:
    """A list (embedding, boxes) with its first items at 4 significant digits and its length."""
    items = []
    for x in v[:4]:
        if isinstance(x, list):
            items.append(_short_list(x, depth + 1))
        elif isinstance(x, float):
            items.append(f"{x:.4g}")
        else:
            items.append(cell(x, 16))
    more = f", ... ({len(v)})" if len(v) > 4 else ""
    return "[" + ", ".join(items) + more + "]"


def print_table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Plain-text table with aligned columns; numbers right-aligned."""
    text = [[cell(v) for v in r] for r in rows]
    numeric = [
        all(
            (isinstance(r[i], int | float) and not isinstance(r[i], bool)) or r[i] is None
            for r in rows
        )
        for i in range(len(header))
    ]
    widths = [max([len(h), *(len(r[i]) for r in text)]) for i, h in enumerate(header)]

    def line(values: Sequence[str]) -> str:
        return "  ".join(
            v.rjust(w) if num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ).rstrip()

    click.echo(line(header))
    click.echo("  ".join("-" * w for w in widths))
    for r in text:
        click.echo(line(r))


# -- types and schemas ---------------------------------------------------------------
TYPE_FORMS = (
    "int64 (any numpy dtype), an Arrow type name (date32, timestamp[us, tz=UTC], decimal(15,2), "
    "string, list<date32>, ...), text, json, binary, image, image:jpeg, image:png, image:raw, "
    "embedding:DIM, bbox, bbox:xyxy, bbox:xywh, or a stored type dict such as "
    '{"kind": "image", "compression": "jpeg"}'
)


def parse_type(value: Any, column: str) -> ColumnType:
    """A column type from the stored type dict or the short notation of :func:`type_str`."""
    if isinstance(value, Mapping):
        return ColumnType.from_dict(value)
    if not isinstance(value, str):
        raise click.BadParameter(
            f"column {column!r}: a type is a string or an object, got {value!r}"
        )
    name, _, arg = value.strip().partition(":")
    try:
        if name == "image":
            return Image(None if arg == "raw" else (arg or "jpeg"))  # type: ignore[arg-type]
        if name == "embedding":
            return Embedding(int(arg))
        if name == "bbox":
            return BBox(arg or "xyxy")  # type: ignore[arg-type]
        simple = {"text": Text, "json": Json, "binary": th.Binary}
        if name in simple and not arg:
            return simple[name]()
        if not arg:
            return as_type(name)
    except (
        th.SchemaError,
        ValueError,
        TypeError,
    ) as err:  # numpy says TypeError for an unknown dtype
        raise click.BadParameter(f"column {column!r}: {err}; use {TYPE_FORMS}") from None
    try:  # an Arrow type name with a colon inside (struct<a: int64>)
        return as_type(value.strip())
    except th.SchemaError:
        pass
    raise click.BadParameter(f"column {column!r}: unknown type {value!r}; use {TYPE_FORMS}")


def parse_types(text: str | None, option: str = "--types") -> dict[str, ColumnType] | None:
    """``{"col": TYPE, ...}`` (JSON) -> column types; also the stored list form ``[{"name", "type"}]``."""
    if text is None:
        return None
    try:
        doc = json.loads(text)
    except ValueError as err:
        raise click.BadParameter(f"not valid JSON: {err}", param_hint=option) from None
    if isinstance(doc, list):
        try:
            return dict(Schema.from_dict(doc).columns)
        except th.SchemaError as err:
            raise click.BadParameter(str(err), param_hint=option) from None
    if not isinstance(doc, dict) or not doc:
        raise click.BadParameter("expected a JSON object of column name -> type", param_hint=option)
    return {name: parse_type(t, name) for name, t in doc.items()}


# -- dataset commands ---------------------------------------------------------------
@cli.command()
@click.option(
    "--path", default="data/demo", show_default=True, help="Where to build the demo dataset."
)
@click.option("--rows", default=512, show_default=True, help="How many generated scenes.")
def demo(path: str, rows: int) -> None:
    """Build a small generated detection dataset and show its schema, versions and rows.

    Example: tensorhouse demo --path data/demo --rows 512
    """
    from tensorhouse.demo import run

    run(path, rows=rows)


@cli.command()
@click.argument("uri")
@click.option(
    "--schema",
    "schema_json",
    required=True,
    metavar="JSON",
    help="Column name -> type, as JSON: a stored type dict or a short form (see below).",
)
@click.option(
    "--exist-ok", is_flag=True, help="Succeed if a dataset with the same schema is already there."
)
@storage_option
def create(uri: str, schema_json: str, exist_ok: bool, storage_options: dict[str, Any]) -> None:
    """Create an empty dataset at URI with the given schema.

    Types are stored type dicts ({"kind": "image", "compression": "jpeg"},
    {"kind": "class_label", "classes": ["cat", "dog"]}, {"kind": "tensor",
    "dtype": "float32", "shape": [null, 4]}, ...) or short forms: int64 (any
    numpy dtype), text, json, binary, image:jpeg, image:png, image:raw,
    embedding:DIM, bbox:xyxy, bbox:xywh.

    \b
    Example:
      tensorhouse create data/pets --schema '{"label": "int64", "image": {"kind": "image", "compression": "jpeg"}}'
    """
    types = parse_types(schema_json, "--schema")
    assert types is not None
    ds = th.create(uri, types, exist_ok=exist_ok, storage_options=storage_options)
    click.echo(f"created {ds.uri} (version {ds.version})")
    for name, t in ds.schema.items():
        click.echo(f"  {name:<16} {type_str(t)}")


def _chunk_bytes(ds: th.Dataset) -> int:
    seen: dict[tuple[str, int], int] = {}
    for frag in ds.snapshot.fragments:
        for refs in frag.columns.values():
            for ref in refs:  # a group file's chunks are byte ranges of one file
                seen[ref.path, ref.part.offset if ref.part else 0] = ref.size
    return sum(seen.values())


@cli.command()
@click.argument("uri")
@click.option(
    "--version", "version", type=int, default=None, help="Show this version instead of the latest."
)
@click.option("--branch", default=None, help="Show this branch (default: main).")
@storage_option
def info(
    uri: str, version: int | None, branch: str | None, storage_options: dict[str, Any]
) -> None:
    """Show a dataset's schema, row count, size, versions, tags and branches.

    Example: tensorhouse info data/demo
    """
    ds = th.open(uri, version=version, branch=branch, storage_options=storage_options)
    on_disk = sum(o.size for o in ds.store.list("data/"))
    versions = ds.versions()
    click.echo(
        f"dataset   {ds.uri}" + (f"  (branch {ds.branch_name})" if ds.branch_name != "main" else "")
    )
    click.echo(f"version   {ds.version} of {ds.latest_version()} ({len(versions)} versions)")
    click.echo(f"rows      {len(ds):,} in {len(ds.snapshot.fragments)} fragments")
    click.echo(
        f"size      {fmt_bytes(_chunk_bytes(ds))} in this version, {fmt_bytes(on_disk)} of data files on disk"
    )
    tags = ds.tags
    if tags:
        click.echo(
            "tags      "
            + ", ".join(f"{n} (v{v})" for n, v in sorted(tags.items(), key=lambda x: x[1]))
        )
    if len(ds.branches) > 1:
        click.echo("branches  " + ", ".join(ds.branches))
    click.echo("schema")
    width = max(len(n) for n in ds.columns)
    for name, t in ds.schema.items():
        click.echo(f"  {name:<{width}}  {type_str(t)}")


@cli.command()
@click.argument("uri")
@click.option("--branch", default=None, help="History of this branch (default: main).")
@storage_option
def log(uri: str, branch: str | None, storage_options: dict[str, Any]) -> None:
    """Show a dataset's history: version, time (UTC), operation, rows, message.

    Example: tensorhouse log data/demo
    """
    ds = th.open(uri, branch=branch, storage_options=storage_options)
    rows = [
        [h.version, f"{h.timestamp:%Y-%m-%d %H:%M:%S}", h.operation, h.num_rows, h.message or ""]
        for h in ds.history()
    ]
    print_table(["version", "time", "operation", "rows", "message"], rows)


@cli.command()
@click.argument("uri")
@click.argument("name", required=False)
@click.option("--version", type=int, default=None, help="Version to tag (default: the latest).")
@click.option("--delete", "delete", metavar="NAME", default=None, help="Delete this tag.")
@click.option("--list", "list_", is_flag=True, help="List the tags (also what no NAME does).")
@storage_option
def tag(
    uri: str,
    name: str | None,
    version: int | None,
    delete: str | None,
    list_: bool,
    storage_options: dict[str, Any],
) -> None:
    """Name a version, delete a tag, or list the tags. Tagged versions survive vacuum.

    \b
    Examples:
      tensorhouse tag data/pets v1.0              # tag the latest version
      tensorhouse tag data/pets baseline --version 3
      tensorhouse tag data/pets --delete baseline
      tensorhouse tag data/pets --list
    """
    if sum([name is not None, delete is not None, list_]) > 1:
        raise click.UsageError("give one of NAME, --delete NAME or --list")
    if version is not None and name is None:
        raise click.UsageError("--version needs a tag NAME")
    ds = th.open(uri, storage_options=storage_options)
    if name is not None:
        ds.tag(name, version)
        click.echo(f"tagged version {ds.version if version is None else version} as {name!r}")
    elif delete is not None:
        ds.delete_tag(delete)
        click.echo(f"deleted tag {delete!r}")
    else:
        from tensorhouse.format import refs

        tags = sorted(
            refs.list_tags(ds.store).values(), key=lambda t: (t.branch, t.version, t.name)
        )
        print_table(["tag", "branch", "version"], [[t.name, t.branch, t.version] for t in tags])


@cli.command()
@click.argument("uri")
@click.argument("name", required=False)
@click.option(
    "--version",
    type=int,
    default=None,
    help="Version of main to branch from (default: the latest).",
)
@click.option("--list", "list_", is_flag=True, help="List the branches (also what no NAME does).")
@storage_option
def branch(
    uri: str, name: str | None, version: int | None, list_: bool, storage_options: dict[str, Any]
) -> None:
    """Create a branch from a version of main, or list the branches.

    Writes to a branch (th.open(uri, branch=NAME)) never change main.

    \b
    Examples:
      tensorhouse branch data/pets relabel --version 4
      tensorhouse branch data/pets --list
    """
    if name is not None and list_:
        raise click.UsageError("give NAME or --list, not both")
    if version is not None and name is None:
        raise click.UsageError("--version needs a branch NAME")
    ds = th.open(uri, storage_options=storage_options)
    if name is not None:
        created = ds.branch(name, version)
        click.echo(f"created branch {name!r} at version {created.version}")
    else:
        for b in ds.branches:
            click.echo(b)


@cli.command()
@click.argument("uri")
@click.argument("version", type=int)
@storage_option
def restore(uri: str, version: int, storage_options: dict[str, Any]) -> None:
    """Commit a new version whose rows and schema equal VERSION (history is kept).

    Example: tensorhouse restore data/pets 3
    """
    ds = th.open(uri, storage_options=storage_options)
    new = ds.restore(version)
    click.echo(f"restored version {version} as version {new} ({len(ds):,} rows)")


@cli.command()
@click.argument("uri")
@click.option(
    "--retention-hours",
    type=float,
    default=168.0,
    show_default=True,
    help="Keep files that versions of the last N hours need.",
)
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@click.option(
    "--force",
    is_flag=True,
    help="Allow a retention under the safe minimum (may break concurrent readers).",
)
@storage_option
def vacuum(
    uri: str, retention_hours: float, dry_run: bool, force: bool, storage_options: dict[str, Any]
) -> None:
    """Delete data files that no retained version, tag or branch needs.

    \b
    Example:
      tensorhouse vacuum data/pets --retention-hours 24 --dry-run
    """
    ds = th.open(uri, storage_options=storage_options)
    report = ds.vacuum(timedelta(hours=retention_hours), dry_run=dry_run, force=force)
    click.echo(str(report))
    if dry_run:
        for path in report.deleted[:50]:
            click.echo(f"  {path}")
        if len(report.deleted) > 50:
            click.echo(f"  ... and {len(report.deleted) - 50} more")


@cli.command()
@click.argument("uri")
@click.option(
    "--target-rows",
    type=int,
    default=1 << 20,
    show_default=True,
    help="Merge runs of fragments smaller than this many rows.",
)
@storage_option
def compact(uri: str, target_rows: int, storage_options: dict[str, Any]) -> None:
    """Merge small fragments (e.g. from many small appends) into bigger ones, as one commit.

    Example: tensorhouse compact data/pets --target-rows 100000
    """
    ds = th.open(uri, storage_options=storage_options)
    click.echo(str(ds.compact(target_rows=target_rows)))


@cli.command()
@click.argument("uri")
@click.option(
    "--host",
    default="127.0.0.1",
    show_default=True,
    help="Interface to bind. Keep the loopback default unless you mean to share it: there is no login.",
)
@click.option(
    "--port", default=8765, show_default=True, type=int, help="Port (0 picks a free one)."
)
@click.option(
    "--version", "version", type=int, default=None, help="Open this version instead of the latest."
)
@click.option("--tag", default=None, help="Open the version with this tag.")
@click.option("--branch", default=None, help="Open this branch.")
@click.option("--open", "open_browser", is_flag=True, help="Open the page in a web browser.")
@storage_option
def serve(
    uri: str,
    host: str,
    port: int,
    version: int | None,
    tag: str | None,
    branch: str | None,
    open_browser: bool,
    storage_options: dict[str, Any],
) -> None:
    """Browse a dataset in a web page: image grid with boxes and labels, SQL filter, versions.

    The page's SQL is read-only (one SELECT; no file access). Stop with Ctrl-C.

    Example: tensorhouse serve data/pets --port 8765
    """
    from tensorhouse.viewer import serve as run_server

    run_server(
        uri,
        host=host,
        port=port,
        version=version,
        tag=tag,
        branch=branch,
        open_browser=open_browser,
        storage_options=storage_options,
    )


# -- sql ----------------------------------------------------------------------------
def _parse_datasets(values: Sequence[str]) -> list[tuple[str, str]]:
    out = []
    for v in values:
        name, sep, uri = v.partition("=")
        if not sep or not name or not uri:
            raise click.BadParameter(f"expected NAME=URI, got {v!r}", param_hint="--dataset")
        out.append((name, uri))
    return out


def check_output(output: str) -> str | None:
    """The file format of an ``--output`` (None: a dataset URI); refuses formats we cannot write, up front."""
    from tensorhouse.interop.export import format_of

    try:
        return format_of(output)
    except th.UnsupportedError as err:
        raise click.BadParameter(str(err), param_hint="--output") from None


def _write_output(result: Any, output: str, mode: str, storage_options: dict[str, Any]) -> str:
    from tensorhouse.connector.results import to_arrow_reader
    from tensorhouse.interop.export import write_file

    fmt = check_output(output)
    if fmt is not None:
        # Checked against the result's columns before a byte is written; written under a temporary name.
        rows = write_file(
            to_arrow_reader(result),
            output,
            format=fmt,  # type: ignore[arg-type]
            storage_options=storage_options,
        )
        return f"wrote {rows:,} rows to {output}"
    prior: th.Dataset | None = None
    if mode != "create":
        try:
            prior = th.open(output, storage_options=storage_options)
        except th.DatasetNotFoundError:
            prior = None
    ds = th.write(output, result, mode=mode, storage_options=storage_options)
    if prior is not None and ds.version == prior.version:
        return (
            f"wrote 0 rows to dataset {ds.uri} (the result was empty; still version {ds.version})"
        )
    if prior is None:
        return f"wrote {len(ds):,} rows to dataset {ds.uri} (version {ds.version})"
    # One commit: the rows it added are the new count less what the version before it kept.
    before = len(th.open(output, version=ds.version - 1, storage_options=storage_options))
    if mode == "append":
        added = len(ds) - before
        return f"appended {added:,} rows to dataset {ds.uri} (version {ds.version}, {len(ds):,} rows in all)"
    added = len(ds) - before + len(prior)
    return (
        f"wrote {added:,} rows to dataset {ds.uri}, replacing its {len(prior):,} rows "
        f"(version {ds.version})"
    )


@cli.command()
@click.argument("query")
@click.option(
    "--dataset",
    "-d",
    "datasets",
    multiple=True,
    metavar="NAME=URI",
    help="Register the dataset at URI as table NAME (repeatable).",
)
@click.option(
    "--engine", type=click.Choice(["duckdb", "datafusion"]), default="duckdb", show_default=True
)
@click.option(
    "--output",
    "-o",
    default=None,
    help="Write the whole result to a .parquet, .arrow or .csv file, or to a dataset URI (a path "
    "without a file extension), instead of printing. Checked before the query runs; a failed write "
    "leaves no file.",
)
@click.option(
    "--mode",
    type=click.Choice(["create", "append", "overwrite"]),
    default="create",
    show_default=True,
    help="With --output URI: create a new dataset, append to one, or overwrite its rows.",
)
@click.option("--limit", type=int, default=50, show_default=True, help="Rows to print.")
@storage_option
def sql(
    query: str,
    datasets: Sequence[str],
    engine: str,
    output: str | None,
    mode: str,
    limit: int,
    storage_options: dict[str, Any],
) -> None:
    """Run a SQL query over datasets with DuckDB or DataFusion; print it or write it out.

    Images print as <jpeg 17.2 KB>; long values are truncated.

    \b
    Examples:
      tensorhouse sql "SELECT label, count(*) AS n FROM pets GROUP BY label" --dataset pets=data/pets
      tensorhouse sql "SELECT * FROM pets WHERE label = 1" -d pets=data/pets --engine datafusion -o cats.parquet
      tensorhouse sql "SELECT image, label FROM pets WHERE score > 0.9" -d pets=data/pets -o data/pets-hard
    """
    if limit < 0:
        raise click.BadParameter("must be >= 0", param_hint="--limit")
    tables = _parse_datasets(datasets)
    if output is not None:
        check_output(output)  # before the query runs: an unknown format writes nothing
    try:
        _run_sql(query, tables, engine, output, mode, limit, storage_options)
    except (th.TensorhouseError, click.ClickException):
        raise
    except Exception as err:  # the engines' own errors: a bad query, an unknown table
        raise CommandError(f"{engine}: {err}") from err


def _run_sql(
    query: str,
    tables: Sequence[tuple[str, str]],
    engine: str,
    output: str | None,
    mode: str,
    limit: int,
    storage_options: dict[str, Any],
) -> None:
    result: Any
    limited: Callable[[int], Any]
    if engine == "duckdb":
        import duckdb

        con = duckdb.connect()
        th.udfs.register(con)  # the tensor UDFs, as in DataFusion's context below
        for name, uri in tables:
            th.duckdb.register(con, name, uri, storage_options=storage_options)
        result = con.sql(query)
        if result is None:  # a statement without a result (SET, CREATE VIEW, ...)
            click.echo("ok")
            return
        limited = result.limit
    else:
        # The table function, nearest() and the tensor UDFs, typed for each query's columns.
        ctx = th.datafusion.context(storage_options=storage_options)
        for name, uri in tables:
            th.datafusion.register(ctx, name, uri, storage_options=storage_options)
        result = ctx.sql(query)
        limited = result.limit
    if output is not None:
        click.echo(_write_output(result, output, mode, storage_options))
        return
    from tensorhouse.connector.results import to_table

    table = to_table(limited(limit + 1))
    shown = table.slice(0, limit)
    rows = [list(r.values()) for r in shown.to_pylist()]
    print_table(table.column_names, rows)
    n = shown.num_rows
    more = "; more not shown, raise --limit" if table.num_rows > limit else ""
    click.echo(f"({n} row{'s' if n != 1 else ''}{more})")


@cli.command("export")
@click.argument("uri")
@click.argument("dest")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["parquet", "arrow", "csv"]),
    default=None,
    help="File format (default: from DEST's extension; a directory: parquet).",
)
@click.option("--columns", default=None, help="Comma-separated columns to export (default: all).")
@click.option(
    "--partition-by",
    default=None,
    metavar="COLS",
    help="Comma-separated columns: a Hive-partitioned directory (label=0/part-0.parquet).",
)
@click.option(
    "--version", type=int, default=None, help="Export this version (default: the latest)."
)
@click.option("--tag", default=None, help="Export the version with this tag.")
@click.option("--branch", default=None, help="Export this branch.")
@click.option(
    "--max-rows-per-file",
    type=int,
    default=None,
    help="Split a directory's files at this many rows.",
)
@click.option("--overwrite", is_flag=True, help="Replace what is at DEST.")
@storage_option
def export_(
    uri: str,
    dest: str,
    fmt: str | None,
    columns: str | None,
    partition_by: str | None,
    version: int | None,
    tag: str | None,
    branch: str | None,
    max_rows_per_file: int | None,
    overwrite: bool,
    storage_options: dict[str, Any],
) -> None:
    """Export a dataset to Parquet, Arrow IPC or CSV files, streaming, types kept in the field metadata.

    DEST ending in .parquet, .arrow or .csv (without --partition-by) is one
    file; otherwise a directory. Files are written under a temporary name
    and renamed when complete. `tensorhouse ingest parquet` (or
    th.ingest.parquet) restores images, class labels, boxes and embeddings.
    --storage-option applies to URI and DEST.

    \b
    Examples:
      tensorhouse export data/pets pets.parquet
      tensorhouse export data/pets out/pets --partition-by label --columns label,image,boxes
      tensorhouse export data/pets labels.csv --columns label,caption --version 3
    """
    from tensorhouse.interop.export import export

    cols = [c.strip() for c in columns.split(",")] if columns else None
    parts = [c.strip() for c in partition_by.split(",")] if partition_by else None
    report = export(
        uri,
        dest,
        format=fmt,  # type: ignore[arg-type]
        columns=cols,
        partition_by=parts,
        version=version,
        tag=tag,
        branch=branch,
        storage_options=storage_options,
        dest_storage_options=storage_options,
        overwrite=overwrite,
        max_rows_per_file=max_rows_per_file,
    )
    click.echo(str(report))


def main() -> None:
    """Entry point: errors of ours become one line on stderr and exit code 1."""
    logging.basicConfig(level=logging.WARNING, format="warning: %(message)s", stream=sys.stderr)
    try:
        rv = cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except th.TensorhouseError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    except (OSError, ValueError) as err:  # a bad path, a bad argument value
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
    if isinstance(rv, int) and rv:
        sys.exit(rv)
