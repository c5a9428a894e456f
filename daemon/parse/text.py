"""Plain text lines: the leading timestamp / level / logger header, glog lines, tqdm bars.

Each function takes one line (already without its line end) and fills a flat dict of event
fields; the message returned is the line without the header it recognised.
"""
from __future__ import annotations

import re

from faultwarden.daemon.parse import timestamps
from faultwarden.daemon.parse.fields import level_name, map_record

_LEVEL_ANY = r"(?P<level>(?i:trace|debug|info|notice|warning|warn|error|err|critical|fatal))(?!\w)"
_LEVEL_UP = r"(?P<level>TRACE|DEBUG|INFO|NOTICE|WARNING|WARN|ERROR|ERR|CRITICAL|FATAL)(?!\w)"
_ISO = r"(?P<ts>\d{4}[-/]\d\d[-/]\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:\s?(?:Z|UTC|[+-]\d\d(?::?\d\d)?))?)"
_US = r"(?P<us>\d\d/\d\d/\d{4} \d\d:\d\d:\d\d(?:[.,]\d+)?)"

# `2024-05-01 12:00:00,123`, `[2024-05-01T12:00:00Z]`, `05/01/2024 12:00:00` at the start
_TIME = re.compile(rf"\[?(?:{_ISO}|{_US})\]?")
# after the time: ` - LEVEL - logger - msg` (HF example scripts)
_LEVEL_LOGGER = re.compile(rf"\s*-\s+{_LEVEL_ANY}\s+-\s+(?P<logger>[\w.\-]+)\s+-\s")
# after the time: ` - logger - LEVEL - msg` (logging's classic format), `[logger][LEVEL] - msg` (hydra)
_LOGGER_LEVEL = re.compile(
    rf"\s*(?:-\s+|\[|\|\s*)(?P<logger>[^\s\[\]|]+?)\]?\s*(?:-\s+|\[|\|\s*){_LEVEL_ANY}\]?\s*(?:[-:|]\s?)?")
# after the time: ` WARNING msg`, ` [INFO] msg`, ` | INFO     | msg` (loguru), ` [info     ] msg`
# (structlog's console renderer pads the level inside the brackets)
_LEVEL = re.compile(rf"\s*(?:[-|:]\s*)?\[?{_LEVEL_ANY}\s*\]?(?:\s*[-:|]\s?|\s+|\Z)")
# no time first: `INFO:root:msg` (logging.basicConfig)
_BASIC = re.compile(rf"{_LEVEL_UP}:(?P<logger>[\w.\-<>]*):")
# no time first: `[INFO] msg`, `ERROR: msg`, `WARNING msg`, `Error: msg`
_LEVEL_FIRST = re.compile(
    rf"(?:\[(?P<l1>(?i:trace|debug|info|notice|warning|warn|error|err|critical|fatal))\s*\]\s*(?:[-:|]\s?)?"
    r"|(?P<l2>TRACE|DEBUG|INFO|NOTICE|WARNING|WARN|ERROR|ERR|CRITICAL|FATAL)(?::\s*|\s+|\Z)"
    r"|(?P<l3>Trace|Debug|Info|Notice|Warning|Warn|Error|Critical|Fatal):\s)")
# `[INFO|trainer.py:2048] 2024-05-01 12:00:00,123 >> msg` (transformers' explicit format)
_HF_EXPLICIT = re.compile(rf"\[{_LEVEL_UP}\|(?P<logger>[^\]]+)\]\s+{_ISO}\s*>>\s?")
# glog and PyTorch's c10 logging: `E0501 12:00:00.123456 1234 file.cc:42] msg`, the bracketed
# `[W1105 12:00:00.588478 ProcessGroupNCCL.cpp:4115] msg` (c10 prints month*100+day, so May 1
# is `[E501 ...`), and `[W socket.cpp:663] msg`
_GLOG = re.compile(
    r"\[?(?P<g>[IWEF])(?P<md>[01]?\d[0-3]\d) (?P<clock>\d\d:\d\d:\d\d(?:\.\d+)?)(?:\s+(?P<pid>\d+))?"
    r"\s+(?P<origin>[^\]\s:]+)(?::(?P<oline>\d+))?\]\s?")
# vLLM: `INFO 05-01 12:00:00 llm_engine.py:161] msg`, from v0.6 on `... [api_server.py:1034] msg`
_VLLM = re.compile(
    rf"{_LEVEL_UP} (?P<md>[01]\d-[0-3]\d) (?P<clock>\d\d:\d\d:\d\d(?:\.\d+)?) "
    r"\[?(?P<origin>[^\]\s:]+):(?P<oline>\d+)\]\s?")
# after the time: TensorFlow's `2024-05-01 12:00:00.123456: W tensorflow/core/x.cc:182] msg`
_TIME_GLOG = re.compile(r":?\s(?P<g>[IWEF]) (?P<origin>[^\]\s:]+):(?P<oline>\d+)\]\s?")
_MON = r"(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
# syslog (RFC 3164), as /var/log/syslog and kern.log hold it: `May  1 12:00:00 host prog[pid]: msg`
_SYSLOG = re.compile(
    rf"{_MON} (?P<day>[ \d]\d) "
    r"(?P<clock>\d\d:\d\d:\d\d) (?P<host>[\w.\-]+) (?P<prog>[^\s:\[]+)(?:\[(?P<pid>\d+)\])?: ")
# `dmesg -T`: `[Tue May  1 12:00:00 2024] msg`
_DMESG_TIME = re.compile(
    rf"\[(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun) {_MON} "
    r"(?P<day>[ \d]\d) (?P<clock>\d\d:\d\d:\d\d) (?P<year>\d{4})\]\s?")
_WEEKDAYS = frozenset(("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"))
_MONTHS = {m: i for i, m in enumerate("Jan Feb Mar Apr May Jun Jul Aug Sep Oct Nov Dec".split(), 1)}
_MONTH_LETTERS = frozenset(m[0] for m in _MONTHS)
# after an ISO time, journalctl's short-iso kernel lines: `2024-05-01T12:00:00+0000 host kernel: msg`
_KERNEL = re.compile(r"\s+(?P<host>[\w.\-]+) (?P<prog>kernel): ")
# NVIDIA's driver: `NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, name=python, GPU has fallen off the bus.`
_XID = re.compile(r"NVRM: Xid \((?:PCI:)?(?P<pci>[^)]*)\): (?P<xid>\d+)")
# An HTTP access line (uvicorn: `127.0.0.1:54321 - "POST /v1/completions HTTP/1.1" 200 OK`;
# the combined log format of nginx and gunicorn has the same quoted request and status)
_REQUEST = re.compile(
    r'"(?P<method>[A-Z]{3,7}) (?P<url>\S+) HTTP/(?P<version>\d(?:\.\d)?)" (?P<status>[1-5]\d\d)\b')
_CLIENT = re.compile(r'(?P<address>[^\s"]+):(?P<port>\d+) - "')
_GLOG_NO_TIME = re.compile(r"\[(?P<g>[IWEF]) (?P<origin>[^\]\s:]+):(?P<oline>\d+)\]\s?")
_GLOG_LEVELS = {"I": "info", "W": "warning", "E": "error", "F": "critical"}
_GLOG_LETTERS = frozenset(_GLOG_LEVELS)
# NCCL's debug output: `gpu01:1234:5678 [0] NCCL WARN msg` (the message is kept whole: rules
# are written against what people see, `NCCL WARN ...`)
# NCCL's WARN carries its source location: `host:pid:tid [dev] transport/net_ib.cc:1295 NCCL WARN ...`
_NCCL = re.compile(r"[\w.\-]+:(?P<pid>\d+):\d+ \[(?P<device>\d+)\] (?:[\w./\-]+:\d+ )?"
                   r"NCCL (?P<level>INFO|WARN|ERROR|TRACE)\b")
# Last resort: an upper-case level word among the first words of a line in a format not known
# here (HDFS `081109 203615 148 INFO dfs.DataNode: ...`, log4j `12:00:00 [main] WARN x - ...`)
_LEVEL_WORD = re.compile(r"(?<![\w.\-])(TRACE|DEBUG|INFO|NOTICE|WARNING|WARN|ERROR|CRITICAL|FATAL)(?![\w.\-])")
_LEVEL_WORD_WITHIN = 120
# Python's warnings module: `/path/x.py:12: FutureWarning: msg` (also kept whole)
_PY_WARNING = re.compile(r"(?P<file>[^:\s][^:]*):(?P<line>\d+): (?P<category>[A-Z]\w*Warning): ")

# tqdm: ` 45%|████▌     | 450/1000 [00:10<00:12, 44.10it/s, loss=0.1]`, `2.28s/it`, `?it/s`
# (searched for; what comes before is the description)
_TQDM = re.compile(
    r"(?P<pct>\d{1,3})%\|[^|]*\|\s*(?P<n>[\d.]+[kMGT]?)/(?P<total>[\d.]+[kMGT]?|\?)"
    r"\s*\[(?P<elapsed>[^<,\]]*)(?:<(?P<remaining>[^,\]]*))?"
    r"(?:,\s*(?P<rate>[\d.]+|\?)\s*(?P<unit>[^\s,\]/]*)/(?P<per>s|it)\b)?(?P<post>[^\]]*)\]")
_POSTFIX = re.compile(r"\s*([\w.\-/]+)=([^,\]]*)")
_EPOCH = re.compile(r"\bEpoch[ :]+(\d+)\b", re.I)
_SCALE = {"k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}


def _glog(m: re.Match, fields: dict, now: float) -> None:
    if "g" in m.re.groupindex:
        fields["log.level"] = _GLOG_LEVELS[m.group("g")]
    fields["log.origin.file.name"] = m.group("origin")
    if m.group("oline"):
        fields["log.origin.file.line"] = int(m.group("oline"))
    if "clock" in m.re.groupindex:
        stamp = timestamps.parse_glog(m.group("md"), m.group("clock"), now)
        if stamp is not None:
            fields["@timestamp"] = stamp
        if "pid" in m.re.groupindex and m.group("pid"):
            fields["process.pid"] = int(m.group("pid"))


def _program(m: re.Match, fields: dict) -> None:
    """syslog's `host prog[pid]:` (the record's own host; a configured host still wins)."""
    fields["host.name"] = m.group("host")
    fields["process.name"] = m.group("prog")
    if "pid" in m.re.groupindex and m.group("pid"):
        fields["process.pid"] = int(m.group("pid"))


def _time(m: re.Match, fields: dict) -> None:
    stamp = timestamps.parse_iso(m.group("ts")) if m.group("ts") else timestamps.parse_us(m.group("us"))
    if stamp is not None:
        fields["@timestamp"] = stamp


def header(line: str, fields: dict, now: float) -> str:
    """Recognise a leading time / level / logger; fill `fields`, return the message. Then the
    few things worth knowing inside a message: an NVIDIA Xid, an HTTP request and its status."""
    message = _header(line, fields, now)
    if "NVRM: Xid" in message:
        m = _XID.search(message)
        if m:
            fields["labels.gpu_xid"] = m.group("xid")
            fields["labels.gpu_pci"] = m.group("pci")
            fields.setdefault("log.level", "error")
    if " HTTP/" in message:
        m = _REQUEST.search(message)
        if m:
            fields["http.request.method"] = m.group("method")
            fields["url.original"] = m.group("url")
            fields["http.version"] = m.group("version")
            fields["http.response.status_code"] = int(m.group("status"))
            c = _CLIENT.match(message)
            if c:
                fields["client.address"] = c.group("address")
                fields["client.port"] = int(c.group("port"))
    return message


def _header(line: str, fields: dict, now: float) -> str:
    first = line[:1]
    if not (first.isdigit() or first == "[" or first.isupper()):
        return _unheaded(line, fields)  # no header starts otherwise: skip the regex work
    # Each format is tried only where its first characters allow it (a failed match costs too).
    bracket = first == "["
    if bracket and line[1:4] in _WEEKDAYS:
        m = _DMESG_TIME.match(line)
        if m:
            stamp = timestamps.parse_iso(f"{m.group('year')}-{_MONTHS[m.group('mon')]:02d}-"
                                         f"{m.group('day').strip():0>2} {m.group('clock')}")
            if stamp is not None:
                fields["@timestamp"] = stamp
            return line[m.end():]
    if bracket and line[1:2].isupper():
        m = _HF_EXPLICIT.match(line)
        if m:
            fields["log.level"] = level_name(m.group("level"))
            fields["log.logger"] = m.group("logger")
            _time(m, fields)
            return line[m.end():]
    if (first in _GLOG_LETTERS and line[1:2].isdigit()) or (bracket and line[1:2] in _GLOG_LETTERS):
        m = _GLOG.match(line) or _GLOG_NO_TIME.match(line)
        if m:
            _glog(m, fields, now)
            return line[m.end():]
    m = _TIME.match(line) if bracket or first.isdigit() else None
    if m:
        _time(m, fields)
        rest = line[m.end():]
        m = _LEVEL_LOGGER.match(rest) or _LOGGER_LEVEL.match(rest)
        if m:
            fields["log.level"] = level_name(m.group("level"))
            fields["log.logger"] = m.group("logger")
            return rest[m.end():]
        m = _LEVEL.match(rest)
        if m:
            fields["log.level"] = level_name(m.group("level"))
            return rest[m.end():]
        m = _TIME_GLOG.match(rest)
        if m:
            _glog(m, fields, now)
            return rest[m.end():]
        m = _KERNEL.match(rest)
        if m:
            _program(m, fields)
            return rest[m.end():]
        return rest.lstrip(" \t-|:")
    if first.isupper():
        m = _BASIC.match(line)
        if m:
            fields["log.level"] = level_name(m.group("level"))
            if m.group("logger"):
                fields["log.logger"] = m.group("logger")
            return line[m.end():]
        m = _VLLM.match(line)
        if m:
            fields["log.level"] = level_name(m.group("level"))
            _glog(m, fields, now)
            return line[m.end():]
    m = _SYSLOG.match(line) if first in _MONTH_LETTERS else None
    if m:
        stamp = timestamps.parse_glog(f"{_MONTHS[m.group('mon')]:02d}{m.group('day').strip():0>2}",
                                      m.group("clock"), now)
        if stamp is not None:
            fields["@timestamp"] = stamp
        _program(m, fields)
        return line[m.end():]
    m = _LEVEL_FIRST.match(line)
    if m:
        fields["log.level"] = level_name(m.group("l1") or m.group("l2") or m.group("l3"))
        rest = line[m.end():]
        t = _TIME.match(rest)  # `INFO 2024-05-01 12:00:00 msg`
        if t:
            _time(t, fields)
            rest = rest[t.end():].lstrip(" \t-|:")
        return rest
    return _unheaded(line, fields)


def _unheaded(line: str, fields: dict) -> str:
    """Lines without a header that still say how bad they are; the message stays whole."""
    if " NCCL " in line:
        m = _NCCL.match(line)
        if m:
            fields["log.level"] = level_name(m.group("level"))
            fields["log.logger"] = "NCCL"
            fields["process.pid"] = int(m.group("pid"))
            fields["labels.cuda_device"] = m.group("device")
    elif "Assertion `" in line and line.endswith("` failed."):
        fields["log.level"] = "error"   # a CUDA device-side assert (or C assert())
    elif "Warning: " in line:
        m = _PY_WARNING.match(line)
        if m:
            fields["log.level"] = "warning"
            fields["log.origin.file.name"] = m.group("file")
            fields["log.origin.file.line"] = int(m.group("line"))
    if "log.level" not in fields:
        m = _LEVEL_WORD.search(line, 0, _LEVEL_WORD_WITHIN)
        if m:
            fields["log.level"] = level_name(m.group(1))
    return line


def _count(text: str) -> float:
    scale = _SCALE.get(text[-1])
    return float(text[:-1]) * scale if scale else float(text)


def progress(line: str, fields: dict) -> bool:
    """A tqdm progress bar: `ml.step` = iterations done, `ml.progress.total`,
    `ml.progress.percent`, `ml.steps_per_s` (tqdm's `it/s`, or 1/x for `s/it`; other units go to
    `ml.progress.rate_per_s` with `labels.progress_unit`), `key=value` postfix numbers mapped like
    JSON keys (`loss=0.1` → `ml.loss`), `Epoch N` in the description → `ml.epoch`."""
    m = _TQDM.search(line)
    if m is None:
        return False
    n = _count(m.group("n"))
    fields["ml.step"] = int(n) if n.is_integer() else n
    if m.group("total") != "?":
        fields["ml.progress.total"] = _count(m.group("total"))
    fields["ml.progress.percent"] = int(m.group("pct"))
    rate = m.group("rate")
    if rate and rate != "?" and float(rate) > 0:
        value = float(rate) if m.group("per") == "s" else 1.0 / float(rate)
        unit = m.group("unit") if m.group("per") == "s" else (m.group("unit") == "s" and "it")
        if unit == "it":
            fields["ml.steps_per_s"] = value
        else:
            fields["ml.progress.rate_per_s"] = value
            fields["labels.progress_unit"] = m.group("unit") or "it"
    epoch = _EPOCH.search(line, 0, m.start())
    if epoch:
        fields["ml.epoch"] = int(epoch.group(1))
    post = m.group("post")
    if post:
        values = {}
        for key, raw in _POSTFIX.findall(post):
            try:
                values[key] = float(raw)
            except ValueError:
                values[key] = raw.strip()
        map_record(values, fields)
    return True
