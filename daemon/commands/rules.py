"""`faultwarden rules`."""
from __future__ import annotations

import click

from faultwarden.daemon.commands.common import not_yet


@click.command("rules", context_settings={"ignore_unknown_options": True})
@click.argument("args", nargs=-1, type=click.UNPROCESSED)
def command(args) -> None:
    """(not yet available)"""
    not_yet("rules")
