"""`faultwarden diagnose`: a report of what went wrong in past logs, where, and what to do."""
from __future__ import annotations

import sys
import time

import click

from faultwarden.daemon.commands.common import config_option, fail, load_config, not_yet
from faultwarden.daemon.commands.rules import load_rules, rules_option

SEVERITY_CHOICES = ("info", "warning", "error", "critical")
PROGRESS_BYTES = 64 << 20  # inputs smaller than this finish before progress would help
EXIT_FAULTS = 1


@click.command("diagnose")
@config_option
@rules_option
@click.option("--format", "fmt", type=click.Choice(["text", "json", "markdown", "html"]), default="text",
              show_default=True, help="Report format; json is the documented incident shape.")
@click.option("--output", "-o", type=click.Path(dir_okay=False), help="Write the report here instead of stdout.")
@click.option("--fail-on", type=click.Choice(SEVERITY_CHOICES),
              help="Exit 1 when an incident of this severity or worse is found.")
@click.option("--act", is_flag=True, help="Also take the rules' actions (not yet available).")
@click.argument("paths", nargs=-1, required=True)
def command(config_path, rule_dirs, fmt, output, fail_on, act, paths) -> None:
    """Run past logs through the daemon's parsers, rules and incident book, and report.

    PATHS are files, folders (read recursively), globs, plain or gzip. Files are merged by
    event time; the end of the input is not a hang, a gap inside it is.

    Exit 0: done (no incident at or above --fail-on); 1: such an incident was found;
    2: a path, config or rule file error.
    """
    if act:
        not_yet("diagnose --act")
    from faultwarden.daemon import report
    from faultwarden.daemon.diagnose import InputError, diagnose, expand

    config = load_config(config_path)
    ruleset = load_rules(config, rule_dirs)
    try:
        files = expand(paths)
    except InputError as exc:
        fail(str(exc))
    progress = _Progress(files) if sys.stderr.isatty() else None
    try:
        result = diagnose(files, ruleset, config, on_event=progress)
    except InputError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{getattr(exc, 'filename', None) or 'input'}: cannot read: {exc.strerror or exc}")
    finally:
        if progress is not None:
            progress.done()
    rendered = report.render(result, fmt)
    if output:
        with open(output, "w", encoding="utf-8") as f:
            f.write(rendered)
    else:
        click.echo(rendered, nl=False)
    if fail_on is not None and report.worst(result) >= SEVERITY_CHOICES.index(fail_on):
        sys.exit(EXIT_FAULTS)


class _Progress:
    """A one-line progress note on a terminal, for inputs large enough to wait for."""

    def __init__(self, files: list[str]):
        import os

        self.total = sum(os.path.getsize(f) for f in files)
        self.active = self.total >= PROGRESS_BYTES
        self.events = 0
        self.offsets: dict[str, int] = {}
        self.last = 0.0

    def __call__(self, event) -> None:
        self.events += 1
        if not self.active or self.events & 0x3FFF:
            return
        self.offsets[event.get("log.file.path")] = event.get("log.offset") or 0
        now = time.monotonic()
        if now - self.last >= 0.5:
            self.last = now
            read = sum(self.offsets.values())
            click.echo(f"\rdiagnose: {self.events:,} events, {read / 1e6:,.0f} MB read "
                       f"of {self.total / 1e6:,.0f} MB on disk", err=True, nl=False)

    def done(self) -> None:
        if self.active and self.last:
            click.echo("\r\033[K", err=True, nl=False)
