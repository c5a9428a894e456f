"""`faultwarden version`: this version and those of the libraries it leans on."""
from __future__ import annotations

import click

LIBRARIES = ("elasticsearch", "structlog", "pydantic", "tenacity", "watchdog", "scikit-learn",
             "drain3", "skops", "orjson", "torch", "transformers")


@click.command("version")
def command() -> None:
    """Print the version of faultwarden and of its key libraries."""
    from importlib.metadata import PackageNotFoundError, version

    click.echo(f"faultwarden {version('faultwarden')}")
    for name in LIBRARIES:
        try:
            click.echo(f"  {name} {version(name)}")
        except PackageNotFoundError:
            click.echo(f"  {name} (not installed)")
