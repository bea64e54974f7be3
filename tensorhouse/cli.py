"""The ``tensorhouse`` command.

Example:
    $ tensorhouse demo
    $ tensorhouse info data/demo
    $ tensorhouse log data/demo
"""

from __future__ import annotations

import sys

import click

import tensorhouse as th


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(th.__version__, prog_name="tensorhouse")
def cli() -> None:
    """tensorhouse: a lakehouse for deep-learning data."""


@cli.command()
@click.option("--path", default="data/demo", show_default=True, help="Where to build the demo dataset.")
@click.option("--rows", default=512, show_default=True, help="How many generated scenes.")
def demo(path: str, rows: int) -> None:
    """Build a small generated detection dataset and show its schema, versions and rows.

    Example: tensorhouse demo --path data/demo --rows 512
    """
    from tensorhouse.demo import run

    run(path, rows=rows)


@cli.command()
@click.argument("uri")
@click.option("--version", "version", type=int, default=None, help="Show this version instead of the latest.")
def info(uri: str, version: int | None) -> None:
    """Show a dataset's schema, row count, size and versions.

    Example: tensorhouse info data/demo
    """
    ds = th.open(uri, version=version)
    size = sum(info.size for info in ds.store.list("data/"))
    click.echo(f"{ds.uri}  version {ds.version} of {ds.latest_version()}  rows {len(ds)}  data {size / 1e6:.1f} MB")
    for name, t in ds.schema.items():
        click.echo(f"  {name:<16} {t!r}")


@cli.command()
@click.argument("uri")
def log(uri: str) -> None:
    """Show a dataset's history: version, time, operation, rows, message.

    Example: tensorhouse log data/demo
    """
    ds = th.open(uri)
    for h in ds.history():
        click.echo(f"v{h.version:<5} {h.timestamp:%Y-%m-%d %H:%M:%S}  {h.operation:<10} rows={h.num_rows:<8} {h.message or ''}")


def main() -> None:
    """Entry point: errors of ours become one line on stderr and exit code 1."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except th.TensorhouseError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(1)
