"""`faultwarden kibana import|export`: the data views, saved searches and dashboard for Kibana."""
from __future__ import annotations

import click

from faultwarden.daemon.commands.common import EXIT_USAGE, config_option, fail, load_config


@click.group("kibana")
def command() -> None:
    """Kibana saved objects: data views for the events and incidents, saved searches, and an
    overview dashboard."""


@command.command("import")
@config_option
@click.option("--kibana-url", help="Kibana's base URL (default: kibana.url from the config).")
@click.option("--space", help="Kibana space (default: kibana.space from the config).")
@click.option("--file", "ndjson_file", type=click.Path(exists=True, dir_okay=False),
              help="Import this NDJSON instead of the objects built for the configured index prefix.")
def import_(config_path, kibana_url, space, ndjson_file) -> None:
    """Import (overwriting earlier versions) into Kibana. Credentials are the Elasticsearch
    ones from the config: elasticsearch.username + FAULTWARDEN_ES_PASSWORD, or
    FAULTWARDEN_ES_API_KEY."""
    from faultwarden.daemon.ship.kibana import KibanaError, import_objects, saved_objects, to_ndjson

    config = load_config(config_path)
    url = kibana_url or config.kibana.url
    if not url:
        fail("no Kibana URL: give --kibana-url or set kibana.url in the config", EXIT_USAGE)
    if not url.startswith(("http://", "https://")):
        fail(f"--kibana-url {url!r}: expected a URL such as http://127.0.0.1:5601", EXIT_USAGE)
    space = space or config.kibana.space
    es = config.elasticsearch
    if ndjson_file:
        with open(ndjson_file, encoding="utf-8") as fh:
            ndjson = fh.read()
    else:
        ndjson = to_ndjson(saved_objects(es.index_prefix))
    try:
        result = import_objects(
            url, ndjson, space=space, username=es.username,
            password=es.password.get_secret_value() if es.password else None,
            api_key=es.api_key.get_secret_value() if es.api_key else None, ca_certs=es.ca_certs)
    except KibanaError as exc:
        fail(str(exc), 1)
    for err in result.errors:
        click.echo(f"faultwarden: Kibana did not import {err.get('type')} {err.get('id')}: "
                   f"{(err.get('error') or {}).get('type', err.get('error'))}", err=True)
    click.echo(f"imported {result.success_count} saved object(s) into Kibana at {url} (space {space})")
    if result.errors:
        raise SystemExit(1)


@command.command("export")
@config_option
@click.option("--output", "-o", type=click.Path(dir_okay=False, writable=True),
              help="Write here instead of standard output.")
def export(config_path, output) -> None:
    """Print the saved objects as NDJSON (for Kibana's Stack Management → Saved objects → Import)."""
    from faultwarden.daemon.ship.kibana import saved_objects, to_ndjson

    prefix = load_config(config_path).elasticsearch.index_prefix
    text = to_ndjson(saved_objects(prefix))
    if output:
        with open(output, "w", encoding="utf-8") as fh:
            fh.write(text)
    else:
        click.echo(text, nl=False)
