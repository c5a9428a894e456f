"""Small inline SVG line charts for the HTML report: a run's loss or latency over time with its
incidents marked. No plotting library and no script: the report stays one self-contained file."""
from __future__ import annotations

import math
from html import escape

Point = tuple[float, float]
WIDTH, HEIGHT, PAD = 720, 220, 40
COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#9467bd")


class Series:
    """Points of one field, thinned to at most `cap` (every other point dropped when full), so a
    million-line log costs a few kilobytes."""

    def __init__(self, cap: int = 1000):
        self.cap, self.stride, self.seen, self.points = cap, 1, 0, []

    def add(self, t: float, v: float) -> None:
        self.seen += 1
        if (self.seen - 1) % self.stride:
            return
        self.points.append((t, v))
        if len(self.points) >= 2 * self.cap:
            self.points = self.points[::2]
            self.stride *= 2


def svg_chart(title: str, lines: dict[str, list[Point]], marks: list[tuple[float, str]]) -> str:
    """An SVG chart; non-finite values are drawn as red ticks on the top edge (a NaN loss is
    exactly what a reader looks for)."""
    finite = [(t, v) for pts in lines.values() for t, v in pts if math.isfinite(v)]
    times = [t for pts in lines.values() for t, _ in pts] + [t for t, _ in marks]
    if not times:
        return ""
    t0, t1 = min(times), max(times)
    v0, v1 = (min(v for _, v in finite), max(v for _, v in finite)) if finite else (0.0, 1.0)
    if v1 == v0:
        v0, v1 = v0 - 1, v1 + 1
    span = (t1 - t0) or 1.0
    x = lambda t: PAD + (t - t0) / span * (WIDTH - 2 * PAD)  # noqa: E731
    y = lambda v: HEIGHT - PAD - (v - v0) / (v1 - v0) * (HEIGHT - 2 * PAD)  # noqa: E731
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
             f'role="img" aria-label="{escape(title)}">',
             f'<text x="{PAD}" y="16" font-size="13">{escape(title)}</text>',
             f'<rect x="{PAD}" y="{PAD}" width="{WIDTH - 2 * PAD}" height="{HEIGHT - 2 * PAD}" '
             'fill="none" stroke="#ccc"/>',
             f'<text x="2" y="{PAD + 4}" font-size="10">{v1:.4g}</text>',
             f'<text x="2" y="{HEIGHT - PAD}" font-size="10">{v0:.4g}</text>']
    for (name, pts), colour in zip(lines.items(), COLOURS):
        path = " ".join(f"{x(t):.1f},{y(v):.1f}" for t, v in pts if math.isfinite(v))
        if path:
            parts.append(f'<polyline fill="none" stroke="{colour}" stroke-width="1.5" points="{path}">'
                         f'<title>{escape(name)}</title></polyline>')
        parts += [f'<line x1="{x(t):.1f}" y1="{PAD - 8}" x2="{x(t):.1f}" y2="{PAD}" stroke="red" '
                  f'stroke-width="2"><title>{escape(name)} = {v}</title></line>'
                  for t, v in pts if not math.isfinite(v)]
    for t, label in marks:
        parts.append(f'<line x1="{x(t):.1f}" y1="{PAD}" x2="{x(t):.1f}" y2="{HEIGHT - PAD}" '
                     f'stroke="#d62728" stroke-dasharray="4 3"><title>{escape(label)}</title></line>')
    parts.append("</svg>")
    return "".join(parts)
