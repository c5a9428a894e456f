"""Timestamps in log records → epoch seconds (float), cheaply.

Parsing a full ISO string with datetime costs microseconds per line; JSON logs repeat the same
second over and over, so the `YYYY-MM-DDTHH:MM:SS` part is converted once per distinct second
(cached) and the fraction and zone offset are added by hand.

A timestamp without a zone is local time (what Python's logging and most text loggers write);
`Z` or `±HH:MM` makes it absolute.
"""
from __future__ import annotations

import calendar
import math
import time
from datetime import datetime

_CACHE_MAX = 8192
_utc_seconds: dict[str, float | None] = {}
_local_seconds: dict[str, float | None] = {}


def _seconds(key: str, local: bool) -> float | None:
    """Epoch seconds of 'YYYY-MM-DD HH:MM:SS' (any of -/ and T/space), None if not a date."""
    cache = _local_seconds if local else _utc_seconds
    try:
        return cache[key]
    except KeyError:
        pass
    value = None
    if (key[4] in "-/" and key[7] == key[4] and key[10] in "Tt " and key[13] == ":"
            and key[16] == ":"):
        try:
            fields = (int(key[0:4]), int(key[5:7]), int(key[8:10]),
                      int(key[11:13]), int(key[14:16]), int(key[17:19]))
            when = datetime(*fields)  # validates ranges (month 13, Feb 30, ...)
            value = float(when.timestamp() if local else calendar.timegm(when.timetuple()))
        except ValueError:
            value = None
    if len(cache) >= _CACHE_MAX:
        cache.clear()
    cache[key] = value
    return value


def _zone(rest: str) -> tuple[str, float | None]:
    """Split '<fraction><zone>' into the fraction part and the zone offset in seconds
    (None: no zone given, local time)."""
    last = rest[-1]
    if last in "Zz":
        return rest[:-1].rstrip(), 0.0
    if len(rest) >= 3 and last.isdigit():
        # ±HH:MM, ±HHMM or ±HH at the end (the fraction is digits only, so a sign marks it)
        for width in (6, 5, 3):
            if len(rest) >= width and rest[-width] in "+-":
                zone = rest[-width + 1:].replace(":", "")
                if zone.isdigit() and len(zone) in (2, 4) and (width != 6 or rest[-3] == ":"):
                    hours, minutes = int(zone[:2]), int(zone[2:] or 0)
                    offset = hours * 3600 + minutes * 60
                    return rest[:-width].rstrip(), (-offset if rest[-width] == "-" else offset)
    if rest.endswith("UTC") or rest.endswith("GMT"):
        return rest[:-3].rstrip(), 0.0
    return rest, None


_FRACTION = (".", ",")


def parse_iso(text: str) -> float | None:
    """'2024-05-01T12:00:00.123Z', '2024-05-01 12:00:00,123', '...+02:00' → epoch seconds."""
    if len(text) < 19:
        return None
    rest = text[19:]
    if rest[-1:] == "Z" and rest[:1] == ".":  # the ECS shape, `...T12:00:00.123Z`: fast path
        digits = rest[1:-1]
        if digits.isdigit():
            base = _utc_seconds.get(text[:19])
            if base is None:
                base = _seconds(text[:19], False)
                if base is None:
                    return None
            return base + int(digits) / 10 ** len(digits)
    elif rest[:1] in _FRACTION and rest[1:].isdigit():  # no zone: Python logging's asctime
        base = _local_seconds.get(text[:19])
        if base is None:
            base = _seconds(text[:19], True)
            if base is None:
                return None
        return base + int(rest[1:]) / 10 ** (len(rest) - 1)
    fraction = 0.0
    offset = None
    if rest:
        rest, offset = _zone(rest)
        if rest:
            if rest[0] not in ".," or not rest[1:].isdigit():
                return None
            fraction = float("0." + rest[1:])
    base = _seconds(text[:19], offset is None)
    if base is None:
        return None
    return base + fraction - (offset or 0.0)


def parse_us(text: str) -> float | None:
    """'05/01/2024 12:00:00' (month first, as HF example scripts write it) → epoch seconds."""
    if len(text) < 19 or text[2] != "/" or text[5] != "/":
        return None
    return parse_iso(f"{text[6:10]}-{text[0:2]}-{text[3:5]}{text[10:]}")


def parse_glog(month_day: str, clock: str, now: float) -> float | None:
    """glog's 'MMDD HH:MM:SS.ffffff' has no year: take the year of `now`, or the year before
    when that would put the record more than a day in the future (a December log read in
    January)."""
    month_day = month_day.replace("-", "").zfill(4)   # c10 writes May 1 as `501`, vLLM `05-01`
    year = time.localtime(now if math.isfinite(now) else None).tm_year
    stamp = parse_iso(f"{year}-{month_day[:2]}-{month_day[2:]} {clock}")
    if stamp is not None and stamp > now + 86400:
        stamp = parse_iso(f"{year - 1}-{month_day[:2]}-{month_day[2:]} {clock}")
    return stamp


# Epoch seconds this side of the year 2286: a number past it (or negative) is not a time.
_LATEST = 1e10


def from_epoch(number: float) -> float | None:
    """Epoch seconds, milliseconds, microseconds or nanoseconds (told apart by magnitude);
    None for a number that is none of them (negative, non-finite, too large)."""
    if not (0 <= number < _LATEST * 1e9):  # also NaN
        return None
    unit = 1e9 if number >= 1e17 else 1e6 if number >= 1e14 else 1e3 if number >= 1e11 else 1
    if unit == 1:
        return float(number)
    if type(number) is int:  # whole seconds apart first: a float has no room for 19 digits
        seconds, rest = divmod(number, int(unit))
        return seconds + rest / unit
    return number / unit


def parse_any(value) -> float | None:
    """A timestamp field of a JSON record: ISO string, epoch number or numeric string."""
    kind = type(value)
    if kind is str:
        stamp = parse_iso(value)
        if stamp is not None:
            return stamp
        try:
            return from_epoch(float(value))
        except ValueError:
            return parse_us(value)
    if kind is float or kind is int:
        return from_epoch(value)
    return None
