"""The report's charts: thinning keeps them small, NaN is marked, text is escaped."""
import math

from faultwarden.daemon.plot import Series, svg_chart


def test_series_thins_to_its_cap_and_keeps_the_shape():
    s = Series(cap=100)
    for i in range(100_000):
        s.add(float(i), float(i))
    assert 100 <= len(s.points) < 200
    assert s.points[0] == (0.0, 0.0) and s.points[-1][0] > 99_000


def test_chart_marks_nan_and_incidents_and_escapes_labels():
    svg = svg_chart("loss <run a>", {"ml.loss": [(0, 1.0), (1, 0.5), (2, math.nan)]}, [(2, "nan_inf & co")])
    assert svg.startswith("<svg") and "loss &lt;run a&gt;" in svg and "nan_inf &amp; co" in svg
    assert svg.count('stroke="red"') == 1 and 'stroke-dasharray' in svg
    assert svg_chart("empty", {}, []) == ""
