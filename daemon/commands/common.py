"""Helpers every command shares: loading the config with a clear exit 2, and logging."""
from __future__ import annotations

import sys
from typing import NoReturn

import click

EXIT_USAGE = 2


def fail(message: str, code: int = EXIT_USAGE) -> NoReturn:
    click.echo(f"faultwarden: {message}", err=True)
    sys.exit(code)


def load_config(path: str | None):
    """The effective config, or exit 2 with `file:line: key: message`."""
    from faultwarden.daemon import config
    from faultwarden.detectors.yamlfile import FileError

    try:
        return config.load(path)
    except FileError as exc:
        fail(str(exc))


def not_yet(name: str) -> NoReturn:
    fail(f"`{name}` is not yet available in this version")


config_option = click.option(
    "--config", "config_path", type=click.Path(dir_okay=False),
    help="Config file (default: ./faultwarden.yaml, else /etc/faultwarden/faultwarden.yaml).")
verbose_option = click.option("-v", "--verbose", count=True, help="More log output (-vv: debug).")
