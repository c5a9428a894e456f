"""`faultwarden anomaly fit|score`: the isolation-forest model, fitted on healthy logs and used
to score others. Reading logs is the daemon's (parse, merge by time); windows, features and
the model are `faultwarden.detectors.anomaly`'s."""
from __future__ import annotations

import json
import re
from pathlib import Path

import click

from faultwarden.daemon.commands.common import config_option, fail, load_config

EXIT_ANOMALIES = 0  # scoring reports; `diagnose --fail-on` is the gate for scripts


@click.group("anomaly")
def command() -> None:
    """The isolation forest: fit a model on healthy logs, score other logs with it.

    \b
    faultwarden anomaly fit --output run.model --group-by labels.run_id healthy/*.log
    faultwarden anomaly score --model run.model suspect.log
    Point `detectors.anomaly.model` in the config at the file to use it in `run` and `diagnose`.
    """


def _files(paths) -> list[str]:
    from faultwarden.daemon.diagnose import InputError, expand

    try:
        return expand(paths)
    except InputError as exc:
        fail(str(exc))


@command.command("fit")
@config_option
@click.option("--output", "-o", required=True, type=click.Path(dir_okay=False),
              help="The model file to write (one skops file).")
@click.option("--name", help="Model name; findings carry rule `anomaly:<name>` (default: the file's stem).")
@click.option("--session-regex", help=r"Sessions keyed by every id this regex finds in a message "
                                      r"(e.g. 'blk_-?\d+'); a line joins every session it names.")
@click.option("--group-by", "group_by", multiple=True, metavar="FIELD",
              help="One series per value of this event field (repeatable), e.g. labels.run_id.")
@click.option("--window-events", type=click.IntRange(min=1),
              help="Close a window after this many events (default 100 when nothing else cuts windows).")
@click.option("--window-seconds", type=click.FloatRange(min=0, min_open=True),
              help="Close a window this long after its first event.")
@click.option("--idle-seconds", type=click.FloatRange(min=0, min_open=True),
              help="Close a window after this long without an event (session end).")
@click.option("--min-events", type=click.IntRange(min=1),
              help="Do not score windows with fewer events (default: a quarter of --window-events "
                   "for count windows, else 1).")
@click.option("--quantile", type=click.FloatRange(0, 1, min_open=True),
              help="Threshold at this quantile of the training windows' scores [default: 0.995].")
@click.option("--contamination", type=click.FloatRange(0, 1, max_open=True),
              help="The share of training windows allowed above the threshold (= 1 - quantile).")
@click.option("--range-margin", type=click.FloatRange(min=0), default=3.0, show_default=True,
              help="Beyond the training range by this many training std is anomalous ('inf': off).")
@click.option("--range-floor", type=click.FloatRange(min=0), default=0.5, show_default=True,
              help="...and, for an ml.* metric, beyond it by this share of its size at least (0: off).")
@click.option("--tfidf", is_flag=True, help="Weight template counts by idf over training windows (loglizer).")
@click.option("--trees", type=click.IntRange(min=1), default=100, show_default=True)
@click.option("--seed", type=int, default=0, show_default=True, help="The forest's random_state.")
@click.argument("paths", nargs=-1, required=True)
def fit_command(config_path, output, name, session_regex, group_by, window_events, window_seconds,
                idle_seconds, min_events, quantile, contamination, range_margin, range_floor, tfidf,
                trees, seed, paths) -> None:
    """Fit a model on healthy logs (files, folders, globs; plain or gzip).

    The threshold comes from the training windows alone: about 1 - quantile of them (or the
    contamination share) score above it.
    """
    from faultwarden.daemon.diagnose import events_of
    from faultwarden.detectors.anomaly import FitError, ModelSpec, SpecError, fit, save

    if quantile is not None and contamination is not None:
        fail("give --quantile or --contamination, not both")
    if contamination is not None:
        quantile = 1.0 - contamination
    config = load_config(config_path)
    files = _files(paths)
    options = {"name": name or _name_of(output), "group_by": tuple(group_by), "session_regex": session_regex,
               "window_events": window_events, "window_seconds": window_seconds,
               "idle_seconds": idle_seconds, "min_events": min_events, "range_margin": range_margin,
               "range_floor": range_floor, "tfidf": tfidf, "trees": trees, "seed": seed}
    if quantile is not None:
        options["quantile"] = quantile
    try:
        spec = ModelSpec(**options)
    except SpecError as exc:
        fail(f"--{exc.field.replace('_', '-')}: {str(exc).split(': ', 1)[1]}")
    try:
        model = fit(lambda: events_of(files, config), spec)
        save(model, output)
    except FitError as exc:
        fail(str(exc))
    except OSError as exc:
        fail(f"{exc.filename or output}: {exc.strerror or exc}")
    t = model.training
    click.echo(f"fitted model {model.name!r} on {t['events']} events from {len(files)} file(s): "
               f"{t['windows']} windows, {t['templates']} templates, {t['features']} features")
    if t["too_short"] or t["unkeyed"]:
        click.echo(f"  not used: {t['too_short']} window(s) shorter than {model.spec.min_events} events, "
                   f"{t['unkeyed']} event(s) naming no session")
    click.echo(f"  threshold {model.threshold:.4f}: {_rule(model)}; {t['above_threshold']} training "
               f"window(s) above it, {t['beyond_range']} beyond the training range")
    click.echo(f"  saved to {output}")


@command.command("score")
@config_option
@click.option("--model", "model_path", type=click.Path(dir_okay=False),
              help="A model file from `anomaly fit` (default: detectors.anomaly.model in the config).")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
@click.argument("paths", nargs=-1, required=True)
def score_command(config_path, model_path, fmt, paths) -> None:
    """Score logs with a model; print the anomalous windows and why."""
    from faultwarden.daemon.diagnose import events_of
    from faultwarden.detectors.anomaly import AnomalyDetector, ModelFileError, load

    config = load_config(config_path)
    model_path = model_path or config.detectors.anomaly.model
    if not model_path:
        fail("no model: give --model, or set detectors.anomaly.model in the config")
    files = _files(paths)
    try:
        model = load(model_path)
    except ModelFileError as exc:
        fail(str(exc))
    detector = AnomalyDetector(model)
    try:
        findings = list(detector.scan(events_of(files, config)))
    except OSError as exc:
        fail(f"{exc.filename or ''}: {exc.strerror or exc}")
    if fmt == "json":
        click.echo(json.dumps({
            "model": {"path": str(model_path), "name": model.name, "rule": model.rule,
                      "threshold": model.threshold, "threshold_rule": _rule(model)},
            "files": len(files), "windows": detector.windows_scored,
            "anomalies": [_finding_json(f) for f in findings],
        }, indent=2, default=str))
        return
    click.echo(f"model {model.name!r} ({model_path}): {detector.windows_scored} window(s) scored, "
               f"{len(findings)} anomalous; threshold {model.threshold:.4f} ({_rule(model)})")
    for f in findings:
        where = f"{f.source.path}:{f.source.line}" if f.source.path else "?"
        group = " ".join(f"{k}={v}" for k, v in f.group.items())
        click.echo(f"\n{where}{'  [' + group + ']' if group else ''}\n  {f.message}")
        for feat in f.explanation.get("features", []):
            low, high = feat["training_range"]
            mark = "  beyond training range" if feat["beyond_training_range"] else ""
            click.echo(f"    {feat['feature']} = {feat['value']:.4g} (training mean {feat['training_mean']:.4g}, "
                       f"range {low:.4g}..{high:.4g}, z {feat['z']:+.1f}){mark}")
        for line in f.evidence[:4]:
            click.echo(f"    | {line}")


def _finding_json(f) -> dict:
    return {"rule": f.rule, "fault": f.fault, "severity": f.severity, "group": dict(f.group), "time": f.time,
            "source": {"path": f.source.path, "line": f.source.line, "offset": f.source.offset},
            "message": f.message, "advice": f.advice, "evidence": list(f.evidence),
            "explanation": f.explanation}


def _rule(model) -> str:
    from faultwarden.detectors.anomaly.spec import threshold_rule

    return threshold_rule(model.spec)


def _name_of(output: str) -> str:
    stem = Path(output).name.split(".")[0]
    return re.sub(r"[^A-Za-z0-9_.\-]+", "-", stem).strip("-") or "default"
