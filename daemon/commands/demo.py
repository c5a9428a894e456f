"""`faultwarden demo`: the whole loop on a tiny real training job, in a few seconds.

A small MLP trains on the CPU (faultwarden.model.demo_job), saving a checkpoint every 20 steps;
its loss turns NaN at step 57 on the first attempt. faultwarden supervises it with the default
rules: the NaN is detected, the job stopped, the newest healthy checkpoint before the fault
restored, the job restarted with back-off, and it completes. The story is printed as it happens.
"""
from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import click

STEPS, SAVE_EVERY, NAN_AT = 120, 20, 57


class Narrator:
    """Prints each step of the supervised run's story, with times since the start."""

    def __init__(self, echo=click.echo):
        self.echo = echo
        self.t0 = time.time()
        self.story: list[tuple[str, dict]] = []

    def __call__(self, what: str, d: dict) -> None:
        self.story.append((what, d))
        line = getattr(self, f"_{what}", None)
        if line is not None:
            text = line(d)
            if text:
                self.echo(f"{d['t'] - self.t0:7.2f} s  {text}")

    def _started(self, d):
        return f"job started (attempt {d['attempt']}, pid {d['pid']}); output in {d['log']}"

    def _incident(self, d):
        where = f" at step {d['step']}" if d.get("step") is not None else ""
        return f"incident {d['id'][:8]}: {d['fault']} ({d['rule']}, {d['severity']}){where}: {d['message']}"

    def _stopped(self, d):
        return f"job stopped (exit status {d['exit_code']})"

    def _restored(self, d):
        if d.get("checkpoint") is None:
            return "no healthy checkpoint before the fault: the job starts from scratch"
        aside = d.get("quarantined") or []
        return (f"restored checkpoint step {d['step']} ({d['checkpoint']})"
                + (f"; set aside: {', '.join(Path(p).name for p in aside)}" if aside else ""))

    def _restarted(self, d):
        return f"restarted after {d['delay_s']:.2f} s back-off (attempt {d['attempt']}) with {' '.join(d['resume']) or 'no resume arguments'}"

    def _gave_up(self, d):
        return f"gave up: {d['reason']}"

    def _exited(self, d):
        return f"job {'completed' if d['exit_code'] == 0 else 'exited'} (attempt {d['attempt']}, exit status {d['exit_code']})"


@click.command("demo")
@click.option("--es-url", help="An Elasticsearch URL to ship the demo's events to (e.g. http://127.0.0.1:9200).")
@click.option("--dir", "workdir", type=click.Path(file_okay=False), help="Where the demo keeps its state, "
              "checkpoints and logs (default: a new temporary folder, kept afterwards).")
@click.option("--steps", type=click.IntRange(2), default=STEPS, show_default=True, help="Training steps.")
@click.option("--save-every", type=click.IntRange(1), default=SAVE_EVERY, show_default=True,
              help="A checkpoint every this many steps.")
@click.option("--nan-at-step", type=click.IntRange(1), default=NAN_AT, show_default=True,
              help="The step whose loss turns NaN (first attempt only).")
def command(es_url, workdir, steps, save_every, nan_at_step) -> None:
    """Watch faultwarden catch a NaN loss in a tiny PyTorch training run, roll it back to the
    last healthy checkpoint and restart it (seconds, CPU only; numpy stands in without torch)."""
    from faultwarden.daemon import logs
    from faultwarden.daemon.config import Config
    from faultwarden.daemon.supervised import run_supervised

    logs.configure("warning", "console")  # the narrative is the output; warnings still show
    root = Path(workdir or tempfile.mkdtemp(prefix="faultwarden-demo."))
    checkpoints = root / "checkpoints"
    config = Config.model_validate({
        "state_dir": str(root / "state"),
        "elasticsearch": {"hosts": [es_url] if es_url else []},
        "actions": {"restart": {"max_restarts": 3, "backoff_initial_s": 1.0, "backoff_max_s": 10.0,
                                "grace_period_s": 5.0},
                    "restore": {"checkpoint_dirs": [str(checkpoints)]}},
    })
    cmd = [sys.executable, "-m", "faultwarden.model.demo_job", "--output-dir", str(checkpoints),
           "--steps", str(steps), "--save-every", str(save_every), "--nan-at-step", str(nan_at_step)]
    click.echo(f"faultwarden demo: a small MLP trains for {steps} steps on the CPU, saving a checkpoint "
               f"every {save_every} steps;\nits loss turns NaN at step {nan_at_step} on the first attempt. "
               f"Default rules; state in {root}\n")
    narrator = Narrator()
    status = run_supervised(config, cmd, dry_run=False, observer=narrator)
    click.echo("")
    click.echo(summary(narrator, status))
    click.echo("")
    click.echo(incident_and_report(config, root))
    sys.exit(status)


def incident_and_report(config, root: Path) -> str:
    """The incident as the book keeps it, and an HTML report of the run's logs beside it."""
    from faultwarden.daemon import report
    from faultwarden.daemon.diagnose import diagnose
    from faultwarden.daemon.incidents import IncidentBook
    from faultwarden.detectors.rules import RuleSet

    book = IncidentBook(Path(config.state_dir) / "incidents.json")
    lines = []
    for inc in book.listing(include_closed=True):
        lines += [f"incident {inc.id}: {inc.fault} ({inc.severity}, {inc.status}) at "
                  f"{inc.source['path']}:{inc.source['line']}", f"  {inc.message}", f"  advice: {inc.advice}"]
        lines += [f"  action {a['action']}: {a['outcome']}" for a in inc.actions]
    logs = sorted(str(p) for p in (Path(config.state_dir) / "runs").glob("*/*") if p.stat().st_size)
    html = root / "report.html"
    html.write_text(report.render(diagnose(logs, RuleSet.load([])), "html"))
    lines.append(f"report: {html}  (also: faultwarden diagnose {' '.join(logs)})")
    return "\n".join(lines)


def summary(narrator: Narrator, status: int) -> str:
    story = narrator.story
    first = lambda what: next((d for w, d in story if w == what), None)  # noqa: E731
    incident, stopped, restarted = first("incident"), first("stopped"), first("restarted")
    lines = [f"exit status {status}"]
    if incident and stopped:
        lines.append(f"fault line read → job stopped: {1000 * (stopped['t'] - incident['t']):.0f} ms")
    if incident and restarted:
        lines.append(f"fault line read → job running again: {restarted['t'] - incident['t']:.2f} s "
                     f"(of which back-off {restarted['delay_s']:.2f} s)")
    lines.append(f"total: {story[-1][1]['t'] - narrator.t0:.1f} s" if story else "")
    return "\n".join(filter(None, lines))
