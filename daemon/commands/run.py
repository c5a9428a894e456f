"""`faultwarden run`: the daemon, alone (service mode) or around one job (`-- CMD...`)."""
from __future__ import annotations

import sys

import click

from faultwarden.daemon.commands.common import config_option, load_config, verbose_option


@click.command("run", context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@config_option
@click.option("--check", is_flag=True, help="Validate the config and print it (secrets masked), then exit.")
@click.option("--dry-run", is_flag=True, help="Detect and notify, but restart and restore nothing.")
@verbose_option
@click.argument("cmd", nargs=-1, type=click.UNPROCESSED)
def command(config_path, check, dry_run, verbose, cmd) -> None:
    """Tail the configured sources, ship, detect and act.

    With `-- CMD ARGS...` the job is started as a child and supervised: its output becomes a
    source, a fault it shows stops it, restores the last healthy checkpoint and starts it
    again with back-off. The job's final exit code is `run`'s own.
    """
    config = load_config(config_path)
    from faultwarden.daemon import logs

    logs.configure(config.logging.level, config.logging.format, verbose)
    if verbose:
        logs.get().info("config loaded", path=config.path or "(defaults)")
    if check:
        import yaml

        from faultwarden.daemon.config import masked

        click.echo(f"# effective config from {config.path or '(defaults)'}")
        click.echo(yaml.safe_dump(masked(config), sort_keys=False), nl=False)
        return
    from faultwarden.daemon.service import serve

    sys.exit(serve(config, list(cmd), dry_run=dry_run))
