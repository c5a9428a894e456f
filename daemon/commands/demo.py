"""`faultwarden demo`."""
from __future__ import annotations

import click

from faultwarden.daemon.commands.common import not_yet


@click.command("demo", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(args) -> None:
    """(not yet available)"""
    not_yet("demo")
