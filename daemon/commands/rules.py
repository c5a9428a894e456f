"""`faultwarden rules validate|test|list|schema`: is a rule right, before the daemon runs it?"""
from __future__ import annotations

import sys

import click

from faultwarden.daemon.commands.common import config_option, fail, load_config

EXIT_FAILED = 1

rules_option = click.option(
    "--rules", "rule_dirs", multiple=True, type=click.Path(),
    help="A rule folder (or file), layered after the config's; repeatable.")


def load_rules(config, rule_dirs: tuple[str, ...]):
    """The rule set the daemon would run with this config (its folders, then --rules), or
    exit 2 naming the file, line and field."""
    from faultwarden.detectors.rules import RuleSet
    from faultwarden.detectors.yamlfile import FileError

    try:
        return RuleSet.load([*config.detectors.rules, *rule_dirs], config.detectors.default_rules)
    except FileError as exc:
        fail(str(exc))


@click.group("rules")
def command() -> None:
    """Check, test and list rule files.

    \b
    Rules come from the default pack, then each folder of the config's `detectors.rules`, then
    each --rules folder; a later rule of the same id needs `override: true`.
    """


@command.command("validate")
@config_option
@rules_option
@click.argument("paths", nargs=-1, type=click.Path())
def validate(config_path, rule_dirs, paths) -> None:
    """Load every rule and run its examples through the real parser.

    PATHS are rule folders or files to check, layered after the default pack, the config's
    folders and --rules, as the daemon would run them (so a rule may override or switch off
    a default one). A file that is already loaded (`rules validate rules/` over the default
    pack's own folder) is read once.

    Exit 0: all good; 1: an example does not fire (or stays not quiet); 2: a rule file error.
    """
    from faultwarden.daemon.rulecheck import check_examples

    ruleset = load_rules(load_config(config_path), (*rule_dirs, *paths))
    results = check_examples(ruleset)
    failed = [r for r in results if not r.ok]
    for r in failed:
        click.echo(r.describe(), err=True)
    enabled = sum(1 for e in ruleset.entries if e.enabled)
    summary = (f"{len(ruleset)} rules ({enabled} enabled) from {len(ruleset.files)} files; "
               f"{len(results) - len(failed)} of {len(results)} examples as expected")
    click.echo(summary)
    without = [e.id for e in ruleset.entries if not (e.rule.examples.fire and e.rule.examples.quiet)]
    if without:
        click.echo(f"rules without both fire and quiet examples: {', '.join(without)}", err=True)
    sys.exit(EXIT_FAILED if failed else 0)


@command.command("test")
@config_option
@rules_option
@click.argument("files", nargs=-1, required=True, type=click.Path())
def test(config_path, rule_dirs, files) -> None:
    """Run test files: log lines in, expected incidents by rule out.

    \b
    tests:
      - name: a NaN loss opens one incident
        input:
          - "{'loss': 0.9, 'epoch': 0.1}"
          - {at: 10m, line: "{'loss': nan, 'epoch': 0.2}"}
        expect:
          - {rule: nan-loss, count: 1}

    Exit 0: every case passes; 1: a case fails; 2: a test or rule file error.
    """
    from faultwarden.daemon.rulecheck import run_test_file
    from faultwarden.detectors.yamlfile import FileError

    ruleset = load_rules(load_config(config_path), rule_dirs)
    failed = total = 0
    for path in files:
        try:
            results = run_test_file(path, ruleset)
        except FileError as exc:
            fail(str(exc))
        for r in results:
            total += 1
            click.echo(f"{'ok  ' if r.ok else 'FAIL'} {path}: {r.name}")
            for why in r.failures:
                click.echo(f"       {why}")
            failed += not r.ok
    click.echo(f"{total - failed} of {total} cases passed")
    sys.exit(EXIT_FAILED if failed else 0)


@command.command("list")
@config_option
@rules_option
def list_rules(config_path, rule_dirs) -> None:
    """The rules that would run: id, fault, severity, source file, enabled."""
    ruleset = load_rules(load_config(config_path), rule_dirs)
    rows = [("ID", "FAULT", "SEVERITY", "SOURCE", "ENABLED")]
    for e in ruleset.entries:
        source = e.origin + (f" (switched at {e.switched_by})" if e.switched_by else "")
        rows.append((e.id, e.rule.fault, e.rule.severity, source, "yes" if e.enabled else "no"))
    widths = [max(len(r[i]) for r in rows) for i in range(4)]
    for r in rows:
        click.echo("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[4])


@command.command("schema")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write to this file instead of stdout.")
def schema(output) -> None:
    """Print the JSON Schema of a rule file, for editors (docs/rule-file.schema.json)."""
    import json

    from faultwarden.detectors.rules import json_schema

    text = json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
    if output:
        with open(output, "w", encoding="utf-8") as f:
            f.write(text)
    else:
        click.echo(text, nl=False)
