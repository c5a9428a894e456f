"""`faultwarden incidents list|show|ack|silence`: the incidents the daemon (or `diagnose`) raised.

By default they are read from the local incident book, `<state_dir>/incidents.json`; with `--es`
from the incidents index in Elasticsearch (`<prefix>-incidents`). Silences live in the local
book only: the daemon on this host reads them from there.
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import click

from faultwarden.daemon.commands.common import EXIT_USAGE, config_option, fail, load_config

es_option = click.option("--es", "use_es", is_flag=True,
                         help="Use the incidents index in Elasticsearch instead of the local book.")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON.")
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhdw])")
_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@click.group("incidents")
def command() -> None:
    """List, show, acknowledge and silence incidents."""


@command.command("list")
@config_option
@es_option
@json_option
@click.option("--all", "include_closed", is_flag=True, help="Also resolved and failed incidents.")
def list_(config_path, use_es, as_json, include_closed) -> None:
    """Open incidents (with --all: every one), oldest first."""
    store = _store(config_path, use_es)
    items = store.list(include_closed)
    if as_json:
        click.echo(json.dumps(items, indent=2, default=str))
        return
    if not items:
        click.echo(f"no {'' if include_closed else 'open '}incidents ({store.where})")
        return
    click.echo(f"{'ID':<16}  {'STATUS':<8}  {'SEVERITY':<8}  {'FAULT':<26}  {'COUNT':>5}  "
               f"{'FIRST SEEN (UTC)':<19}  MESSAGE")
    for inc in items:
        ack = "*" if inc.get("acknowledged") else ""
        click.echo(f"{inc['id']:<16}  {inc['status'] + ack:<8}  {inc['severity']:<8}  {inc['fault']:<26}  "
                   f"{inc['count']:>5}  {_when(inc['first_seen']):<19}  {_one_line(inc['message'], 80)}")


@command.command("show")
@config_option
@es_option
@json_option
@click.argument("incident_id")
def show(config_path, use_es, as_json, incident_id) -> None:
    """One incident in full (an unambiguous prefix of its id will do)."""
    inc = _store(config_path, use_es).get(incident_id)
    if as_json:
        click.echo(json.dumps(inc, indent=2, default=str))
        return
    lines = [f"incident {inc['id']}: {inc['fault']} ({inc['severity']}), {inc['status']}"
             + (", acknowledged" if inc.get("acknowledged") else ""),
             f"rule:       {inc['rule']}",
             f"first seen: {_when(inc['first_seen'])} UTC   last seen: {_when(inc['last_seen'])} UTC   "
             f"count: {inc['count']}",
             f"group:      {json.dumps(inc.get('group', {}), sort_keys=True)}",
             f"source:     {inc.get('source', {}).get('path')}:{inc.get('source', {}).get('line')}",
             f"message:    {inc['message']}"]
    if inc.get("inhibited_by"):
        lines.append(f"inhibited:  by incident {inc['inhibited_by']}, whose fault came first in this run")
    if inc.get("advice"):
        lines.append(f"advice:     {inc['advice']}")
    if inc.get("evidence"):
        lines.append("evidence:")
        lines += [f"  {_one_line(e, 160)}" for e in inc["evidence"]]
    for action in inc.get("actions") or []:
        lines.append(f"action:     {action.get('action')}: {action.get('outcome')}")
    click.echo("\n".join(lines))


@command.command("ack")
@config_option
@es_option
@click.argument("incident_id")
def ack(config_path, use_es, incident_id) -> None:
    """Acknowledge an incident: no more re-alerts for it while it stays open."""
    inc = _store(config_path, use_es).ack(incident_id)
    click.echo(f"acknowledged {inc['id']} ({inc['fault']}: {_one_line(inc['message'], 80)})")


@command.command("silence")
@config_option
@click.option("--rule", help="Silence incidents of this rule id.")
@click.option("--fault", help="Silence incidents of this fault class.")
@click.option("--match", "matches", multiple=True, metavar="FIELD=VALUE",
              help="Silence incidents whose group has FIELD=VALUE (e.g. labels.run_id=r7). Repeatable.")
@click.option("--for", "duration", required=True, metavar="DURATION", help="How long: 90s, 30m, 2h, 1d, 1h30m.")
@click.option("--comment", default="", help="Why, for the next person.")
def silence(config_path, rule, fault, matches, duration, comment) -> None:
    """Silence matching incidents (open ones now, new ones until it expires): they are still
    recorded, but nobody is notified."""
    matchers = {}
    if rule:
        matchers["rule"] = rule
    if fault:
        matchers["fault"] = fault
    for m in matches:
        name, sep, value = m.partition("=")
        if not sep or not name:
            fail(f"--match {m!r}: expected FIELD=VALUE", EXIT_USAGE)
        matchers[name.strip()] = value.strip()
    if not matchers:
        fail("say what to silence: --rule, --fault or --match FIELD=VALUE", EXIT_USAGE)
    seconds = parse_duration(duration)
    book = _LocalStore(load_config(config_path)).book
    before = {i.id for i in book.incidents.values() if i.status == "silenced"}
    s = book.silence(matchers, seconds, comment)
    book.save()
    now_silenced = [i.id for i in book.incidents.values() if i.status == "silenced" and i.id not in before]
    until = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(s.until))
    click.echo(f"silenced {' '.join(f'{k}={v}' for k, v in matchers.items())} until {until} UTC"
               f" ({len(now_silenced)} open incident(s) silenced now)")


def parse_duration(text: str) -> float:
    text = text.strip().lower()
    parts = _DURATION.findall(text)
    if not parts or _DURATION.sub("", text).strip():
        fail(f"--for {text!r}: expected a duration such as 90s, 30m, 2h, 1d or 1h30m", EXIT_USAGE)
    seconds = sum(float(n) * _UNITS[u] for n, u in parts)
    if seconds <= 0:
        fail(f"--for {text!r}: must be longer than zero", EXIT_USAGE)
    return seconds


# --- where incidents are kept ------------------------------------------------------------------
class _LocalStore:
    def __init__(self, config):
        from faultwarden.daemon.incidents import IncidentBook

        self.path = Path(config.state_dir) / "incidents.json"
        self.where = str(self.path)
        try:
            self.book = IncidentBook(self.path)
        except (OSError, ValueError, TypeError, KeyError) as exc:
            fail(f"{self.path}: cannot read the incident book: {exc}", 1)

    @staticmethod
    def _view(inc) -> dict:
        return {**inc.to_json(), "acknowledged": inc.acknowledged}

    def list(self, include_closed: bool) -> list[dict]:
        return [self._view(i) for i in self.book.listing(include_closed)]

    def get(self, incident_id: str) -> dict:
        return self._view(self._find(incident_id))

    def ack(self, incident_id: str) -> dict:
        inc = self.book.ack(self._find(incident_id).id)
        self.book.save()
        return self._view(inc)

    def _find(self, incident_id: str):
        try:
            return self.book.get(incident_id)
        except KeyError:
            fail(f"no incident {incident_id!r} in {self.path} (or the prefix is ambiguous)", 1)


class _EsStore:
    def __init__(self, config):
        from faultwarden.daemon.commands.ship import es_client
        from faultwarden.daemon.ship import IncidentIndex

        self.client, self.hosts = es_client(config.elasticsearch)
        self.index = IncidentIndex(self.client, config.elasticsearch.index_prefix, refresh=True)
        self.where = f"{self.index.index} at {self.hosts}"

    def _call(self, fn, *args):
        from faultwarden.daemon.ship import IncidentNotFound, explain

        try:
            return fn(*args)
        except IncidentNotFound:
            fail(f"no incident {args[0]!r} in {self.where} (or the prefix is ambiguous)", 1)
        except Exception as exc:
            fail(explain(exc, self.hosts), 1)

    def list(self, include_closed: bool) -> list[dict]:
        return list(reversed(self._call(self.index.list, include_closed)))

    def get(self, incident_id: str) -> dict:
        return self._call(self.index.get, incident_id)

    def ack(self, incident_id: str) -> dict:
        return self._call(self.index.ack, incident_id)


def _store(config_path, use_es):
    config = load_config(config_path)
    return _EsStore(config) if use_es else _LocalStore(config)


def _when(value) -> str:
    if isinstance(value, (int, float)):
        return time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(value))
    return str(value)[:19].replace("T", " ")


def _one_line(text, width: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"
