"""`faultwarden ship [--config F] [--setup] PATH...`: send log files to Elasticsearch.

Re-running on the same files ships nothing new: document ids come from where each record was
read, and Elasticsearch answers "already there" (409) for every one of them.
"""
from __future__ import annotations

import click

from faultwarden.daemon.commands.common import EXIT_USAGE, config_option, fail, load_config


@click.command("ship")
@config_option
@click.option("--setup", "do_setup", is_flag=True,
              help="Install the index templates, the incidents index and (where the cluster has "
                   "ILM) the retention policy. Idempotent.")
@click.option("--timeout", "timeout_s", type=float, default=300.0, show_default=True,
              help="Seconds to wait for Elasticsearch to take everything before giving up.")
@click.argument("paths", nargs=-1, type=click.Path(dir_okay=False))
def command(config_path, do_setup, timeout_s, paths) -> None:
    """Ship log files (JSON lines or text) to Elasticsearch and print what happened:
    shipped, already there, dead-lettered (refused for good, with the reason, in
    <state_dir>/dead-letter.ndjson). Exit 1 if anything was dead-lettered or not delivered."""
    if not do_setup and not paths:
        fail("nothing to do: give log files to ship, or --setup", EXIT_USAGE)
    config = load_config(config_path)
    settings = config.elasticsearch
    from faultwarden.daemon import logs

    # Warnings only (held-up retries, refused documents) on stderr; the summary is on stdout.
    logs.configure("warning", config.logging.format)
    from faultwarden.daemon.ship import explain

    client, hosts = es_client(settings)
    try:
        _preflight(client)  # fail now, in one line, rather than retrying in the background
        if do_setup:
            from faultwarden.daemon.ship import setup

            report = setup(client, settings.index_prefix)
            extras = [f"ILM policy {report.ilm_policy}" if report.ilm_policy else "no ILM on this cluster"]
            if report.incidents_index_created:
                extras.append(f"created index {settings.index_prefix}-incidents")
            click.echo(f"templates {', '.join(report.templates)} installed at {hosts} ({'; '.join(extras)})")
    except Exception as exc:
        fail(explain(exc, hosts), 1)
    if paths:
        _ship(config, client, hosts, paths, timeout_s, ensure_setup=not do_setup)
    client.close()


def es_client(settings):
    """A client for the configured cluster and the hosts it names, or exit 2 saying what is
    missing from the config."""
    from faultwarden.daemon.ship import ShipError, connect
    from faultwarden.daemon.ship.client import hosts_of

    try:
        client = connect(settings)
    except ShipError as exc:
        fail(str(exc))
    return client, hosts_of(client)


def _preflight(client) -> None:
    """Reachable, and the credentials accepted. A user allowed to write but not to read the
    cluster's health (403) is fine for shipping."""
    from elasticsearch import AuthorizationException

    try:
        client.cluster.health()
    except AuthorizationException:
        pass


def _ship(config, client, hosts, paths, timeout_s, ensure_setup) -> None:
    from faultwarden.daemon.diagnose import source_for
    from faultwarden.daemon.parse import read_file
    from faultwarden.daemon.ship import ElasticsearchSink, ship_files

    sink = ElasticsearchSink(config.elasticsearch, state_dir=config.state_dir, client=client,
                             ensure_setup=ensure_setup)
    # Each file parsed as its configured source says (format, run id, labels, redaction), as
    # `diagnose` and the daemon parse it.
    report = ship_files(sink, paths, read=lambda path: read_file(path, source_for(path, config)))
    delivered = sink.close(timeout=timeout_s)
    s = sink.stats
    for entry in report.files:
        if entry.error:
            click.echo(f"faultwarden: cannot read {entry.error}", err=True)
    click.echo(f"{report.events} events from {len(report.files)} file(s) to {hosts}: "
               f"{s.shipped} shipped, {s.already_there} already there, {s.dead_lettered} dead-lettered")
    if s.dead_lettered:
        click.echo(f"refused documents and why: {sink.dead_letter.path}", err=True)
    if not delivered:
        click.echo(f"faultwarden: {sink.outstanding} events not delivered within {timeout_s:.0f} s", err=True)
    if s.dead_lettered or not delivered or any(e.error for e in report.files):
        raise SystemExit(1)
