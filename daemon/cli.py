"""The `faultwarden` command line: a click group whose commands live in `daemon/commands/`."""
from __future__ import annotations

import sys

import click

from faultwarden.daemon.commands import (
    anomaly, checkpoints, demo, diagnose, incidents, kibana, rules, run, service, ship, version,
)

EXIT_USAGE = 2


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def cli() -> None:
    """faultwarden watches the logs of ML training and inference jobs, ships them to
    Elasticsearch, detects faults with rule files and an isolation forest, and acts on them:
    restarts with back-off, restores of the last healthy checkpoint, notifications.

    \b
    Exit codes: 0 fine; 1 faults found (diagnose --fail-on), failing rule examples, or a
    supervised job that failed for good; 2 usage, config or rule-file error.
    """


for module in (run, diagnose, rules, anomaly, ship, incidents, checkpoints, kibana, service, demo, version):
    cli.add_command(module.command)


def main() -> None:
    try:
        cli.main(standalone_mode=True)
    except KeyboardInterrupt:
        sys.exit(130)


if __name__ == "__main__":
    main()
