"""A `Diagnosis` rendered for people (text, markdown, one self-contained HTML page) or for
programs (JSON, the shape of the design brief). Rendering only: no detection happens here."""
from __future__ import annotations

import html
import json
from datetime import datetime, timezone
from typing import Any

from faultwarden.daemon.diagnose import Diagnosis, Run
from faultwarden.daemon.incidents import Incident
from faultwarden.detectors.finding import SEVERITIES, severity_rank
from faultwarden.detectors.rules.engine import json_safe

FORMATS = ("text", "json", "markdown", "html")
SHOWN_EVIDENCE = 3  # entries per incident in the human formats (JSON has them all)
SHOWN_LINES = 15  # lines per evidence entry in the human formats


def render(d: Diagnosis, fmt: str) -> str:
    return {"text": text, "json": as_json, "markdown": markdown, "html": page}[fmt](d)


def as_json(d: Diagnosis) -> str:
    return json.dumps(json_safe(d.to_json()), indent=2, ensure_ascii=False, allow_nan=False) + "\n"


# --- shared pieces ---------------------------------------------------------------------------
def when(t: float | None) -> str:
    if t is None:
        return "-"
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%d %H:%M:%SZ")


def where(inc: Incident) -> str:
    path, line = inc.source.get("path"), inc.source.get("line")
    if not path:
        return "-"
    return f"{path}:{line}" if line else str(path)


def headline(d: Diagnosis) -> str:
    errors = f", {d.parse_errors:,} unparsed" if d.parse_errors else ""
    return f"{len(d.files):,} files, {d.lines:,} lines, {d.events:,} events{errors}"


def verdict(d: Diagnosis) -> str:
    if not d.incidents:
        return "No incidents found."
    counts = {s: sum(1 for i in d.incidents if i.severity == s) for s in reversed(SEVERITIES)}
    parts = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    plural = "s" if len(d.incidents) != 1 else ""
    inhibited = sum(1 for i in d.incidents if i.status == "inhibited")
    caused = f" ({inhibited} brought about by another, inhibited)" if inhibited else ""
    return f"{len(d.incidents)} incident{plural} found: {parts}{caused}."


def evidence_lines(entry: str) -> list[str]:
    lines = entry.splitlines() or [""]
    if len(lines) > SHOWN_LINES:
        lines = lines[:SHOWN_LINES - 1] + [f"… ({len(lines) - SHOWN_LINES + 1} more lines)"]
    return lines


def actions_of(inc: Incident) -> str:
    if inc.status == "inhibited":
        return f"none: inhibited by incident {inc.inhibited_by}, whose fault came first in this run"
    done = [f"{a.get('action')}: {a.get('outcome')}" for a in inc.actions]
    if done:
        return "; ".join(done)
    return f"would {', '.join(inc.requested)} (not acted on: diagnose only reports)" if inc.requested else "none"


def runs_with_incidents(d: Diagnosis) -> list[tuple[Run, list[Incident]]]:
    by_id = {i.id: i for i in d.incidents}
    return [(r, [by_id[i] for i in r.incidents if i in by_id]) for r in d.runs]


def run_numbers(run: Run) -> str:
    """`steps reached 1,200, last loss 0.412, throughput 1,520 → 990 samples/s (-35%)`."""
    n = run.numbers()
    parts = []
    if "steps_reached" in n:
        parts.append(f"steps reached {n['steps_reached']:,}")
    if "last_loss" in n:
        parts.append(f"last loss {n['last_loss']:.4g}")
    if "throughput" in n:
        tp = n["throughput"]
        change = f" ({tp['change']:+.0%})" if tp["change"] is not None else ""
        parts.append(f"throughput {tp['start']:,.4g} → {tp['end']:,.4g} {tp['unit']}{change}")
    return ", ".join(parts)


def charts(run: Run, incidents: list[Incident]) -> str:
    """The run's loss and latency over time, its incidents marked (HTML only)."""
    from faultwarden.daemon.plot import svg_chart

    marks = [(inc.first_seen, f"{inc.fault}: {inc.message}") for inc in incidents]
    out = []
    for title, series in (("loss", run.loss), ("latency (ms)", run.latency)):
        if series.points:
            out.append(svg_chart(f"{title}, run {run.name}", {title: series.points}, marks))
    return "".join(out)


def explanation(inc: Incident) -> str:
    return ", ".join(f"{k}={v}" for k, v in inc.explanation.items())


# --- text ------------------------------------------------------------------------------------
def text(d: Diagnosis) -> str:
    out = [f"faultwarden diagnose: {headline(d)}", verdict(d)]
    for run, incidents in runs_with_incidents(d):
        out += ["", f"Run {run.name}  ({', '.join(run.files) or 'no file'}; "
                    f"{when(run.first_seen)} to {when(run.last_seen)}, {run.events:,} events)"]
        if run_numbers(run):
            out.append(f"  numbers      {run_numbers(run)}")
        if run.first_error:
            fe = run.first_error
            out.append(f"  first error  {when(fe['time'])}  {fe['path']}:{fe['line']}  {fe['message']}")
        if not incidents:
            out.append("  no incidents")
        for inc in incidents:
            out += _text_incident(inc)
    if d.incidents:
        out += ["", "By fault: " + ", ".join(f"{k} {v}" for k, v in d.by_fault().items())]
    return "\n".join(out) + "\n"


def _text_incident(inc: Incident) -> list[str]:
    out = ["", f"  {when(inc.first_seen)}  {inc.severity.upper()}  {inc.fault}  "
               f"(rule {inc.rule}, incident {inc.id})",
           f"      where     {where(inc)}",
           f"      what      {inc.message}"]
    if inc.count > 1:
        out.append(f"      seen      {inc.count} times, last {when(inc.last_seen)}")
    if inc.explanation:
        out.append(f"      numbers   {explanation(inc)}")
    for n, entry in enumerate(inc.evidence[:SHOWN_EVIDENCE]):
        for k, line in enumerate(evidence_lines(entry)):
            label = "evidence" if n == 0 and k == 0 else ""
            out.append(f"      {label:<9} | {line}")
    if len(inc.evidence) > SHOWN_EVIDENCE:
        out.append(f"                (+{len(inc.evidence) - SHOWN_EVIDENCE} more in --format json)")
    if inc.advice:
        out.append(f"      advice    {inc.advice}")
    out.append(f"      actions   {actions_of(inc)}")
    return out


# --- markdown --------------------------------------------------------------------------------
def _fence(body: str) -> str:
    ticks = "```"
    while ticks in body:
        ticks += "`"
    return f"{ticks}text\n{body}\n{ticks}"


def _md_inline(s: Any) -> str:
    """Text inside a markdown paragraph: markup characters escaped, HTML neutralised."""
    out = html.escape(str(s), quote=False)
    for ch in "\\`*_[]#|":
        out = out.replace(ch, "\\" + ch)
    return out


def markdown(d: Diagnosis) -> str:
    out = ["# faultwarden diagnose", "", f"{headline(d)}. **{verdict(d)}**"]
    for run, incidents in runs_with_incidents(d):
        out += ["", f"## Run {_md_inline(run.name)}", "",
                f"{_md_inline(', '.join(run.files) or 'no file')}; {when(run.first_seen)} to "
                f"{when(run.last_seen)}, {run.events:,} events"]
        if run_numbers(run):
            out += ["", f"Numbers: {_md_inline(run_numbers(run))}"]
        if run.first_error:
            fe = run.first_error
            out += ["", f"First error at {when(fe['time'])}, `{fe['path']}:{fe['line']}`: {_md_inline(fe['message'])}"]
        if not incidents:
            out += ["", "No incidents."]
        for inc in incidents:
            out += ["", f"### {inc.severity.upper()} {inc.fault}: {_md_inline(inc.message)}", "",
                    f"- **when**: {when(inc.first_seen)}" + (f" ({inc.count} times, last {when(inc.last_seen)})" if inc.count > 1 else ""),
                    f"- **where**: `{where(inc)}`",
                    f"- **rule**: `{inc.rule}`, incident `{inc.id}`"]
            if inc.explanation:
                out.append(f"- **numbers**: {_md_inline(explanation(inc))}")
            if inc.advice:
                out.append(f"- **advice**: {_md_inline(inc.advice)}")
            out.append(f"- **actions**: {_md_inline(actions_of(inc))}")
            for entry in inc.evidence[:SHOWN_EVIDENCE]:
                out += ["", _fence("\n".join(evidence_lines(entry)))]
    if d.incidents:
        out += ["", "## Summary", "", "| fault | incidents |", "|---|---|"]
        out += [f"| {k} | {v} |" for k, v in d.by_fault().items()]
    return "\n".join(out) + "\n"


# --- html ------------------------------------------------------------------------------------
_CSS = """
body{font:15px/1.45 system-ui,sans-serif;margin:2rem auto;max-width:70rem;padding:0 1rem;color:#1d1d1f}
h1{font-size:1.5rem}h2{font-size:1.2rem;margin-top:2rem;border-bottom:1px solid #ddd}
.inc{border-left:4px solid #888;padding:.3rem .8rem;margin:1rem 0;background:#fafafa}
.critical{border-color:#b00020}.error{border-color:#e65100}.warning{border-color:#f9a825}.info{border-color:#1565c0}
.sev{font-weight:600;text-transform:uppercase}pre{background:#f0f0f0;padding:.5rem;overflow-x:auto;white-space:pre-wrap}
dt{font-weight:600;float:left;width:6rem}dd{margin-left:6.5rem}table{border-collapse:collapse}
td,th{border:1px solid #ccc;padding:.2rem .6rem}code{background:#f0f0f0}
"""


def page(d: Diagnosis) -> str:
    e = html.escape
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           '<meta name="viewport" content="width=device-width, initial-scale=1">',
           "<title>faultwarden diagnose</title>", f"<style>{_CSS}</style></head><body>",
           "<h1>faultwarden diagnose</h1>", f"<p>{e(headline(d))}. <strong>{e(verdict(d))}</strong></p>"]
    for run, incidents in runs_with_incidents(d):
        out.append(f"<h2>Run {e(run.name)}</h2>")
        out.append(f"<p>{e(', '.join(run.files) or 'no file')}; {e(when(run.first_seen))} to "
                   f"{e(when(run.last_seen))}, {run.events:,} events</p>")
        if run_numbers(run):
            out.append(f"<p>{e(run_numbers(run))}</p>")
        out.append(charts(run, incidents))
        if run.first_error:
            fe = run.first_error
            out.append(f"<p>First error at {e(when(fe['time']))}, <code>{e(str(fe['path']))}:{e(str(fe['line']))}</code>: "
                       f"{e(str(fe['message']))}</p>")
        if not incidents:
            out.append("<p>No incidents.</p>")
        for inc in incidents:
            sev = inc.severity if inc.severity in SEVERITIES else "info"
            out.append(f'<div class="inc {sev}"><p><span class="sev">{e(inc.severity)}</span> '
                       f"<strong>{e(inc.fault)}</strong>: {e(inc.message)}</p><dl>")
            rows = [("when", when(inc.first_seen) + (f" ({inc.count} times, last {when(inc.last_seen)})" if inc.count > 1 else "")),
                    ("where", where(inc)), ("rule", f"{inc.rule} (incident {inc.id})")]
            if inc.explanation:
                rows.append(("numbers", explanation(inc)))
            if inc.advice:
                rows.append(("advice", inc.advice))
            rows.append(("actions", actions_of(inc)))
            out += [f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in rows]
            out.append("</dl>")
            for entry in inc.evidence[:SHOWN_EVIDENCE]:
                out.append(f"<pre>{e(chr(10).join(evidence_lines(entry)))}</pre>")
            out.append("</div>")
    if d.incidents:
        out.append("<h2>Summary</h2><table><tr><th>fault</th><th>incidents</th></tr>")
        out += [f"<tr><td>{e(k)}</td><td>{v}</td></tr>" for k, v in d.by_fault().items()]
        out.append("</table>")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def worst(d: Diagnosis) -> int:
    """The rank of the most severe incident (-1: none), for --fail-on."""
    return max((severity_rank(i.severity) for i in d.incidents if i.severity in SEVERITIES), default=-1)
