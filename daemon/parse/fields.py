"""A decoded record (JSON object, Python dict literal, tqdm postfix) → flat ECS event fields.

Key by key, in one pass (this is the hot path for JSON logs):
- ECS names stay as they are, nested objects flattened to dotted names
  (`{"log": {"logger": "x"}}` → `log.logger`); `log.level` is lower-cased and normalised.
- The usual names of logging libraries: `msg`/`message` (and structlog's `event` string) →
  `message`; `level`/`levelname`/`severity`/`loglevel` → `log.level`;
  `time`/`timestamp`/`ts`/`asctime`/`@timestamp` (ISO string or epoch s/ms/µs/ns) →
  `@timestamp`; `logger`/`logger_name` → `log.logger`; `pid` → `process.pid`;
  `hostname` → `host.name`; `exc_info`/`exception`/`stack_trace`/`traceback` →
  `error.stack_trace` (plus `error.type`/`error.message` read from it).
- The numbers ML code logs → the `ml.*` names of the design (`ML_NAMES`); a numeric string there
  becomes a float, anything else goes to `labels.<key>`.
- Any other key: a number → `ml.<key>` (so `eval_loss` is `ml.eval_loss`, a rule can use it);
  a string or bool → `labels.<key>` (ECS keywords); a list → `labels.<key>` (kept if all
  strings, else its JSON text); null is left out; an object is flattened by the same rule
  (`{"extra": {"n": 1}}` → `ml.extra.n`). Characters other than letters, digits, `_`, `-`, `.`
  in a key become `_` (`train/loss` → `ml.train_loss`).
- A scalar where ECS has an object (`"error": "boom"`, `"host": "gpu1"`) goes where it means
  (`error.message`, `host.name`, `service.name`, `process.pid`), else to `labels.<key>`, so the
  document never clashes with the ECS mapping.
"""
from __future__ import annotations

import ast
import math
import re
import warnings

import orjson

from faultwarden.daemon.parse import timestamps, traceback

# The job's numbers: common spellings → design names (units in the name).
ML_NAMES = {
    "loss": "ml.loss",
    "step": "ml.step", "global_step": "ml.step", "iteration": "ml.step", "iter": "ml.step",
    "epoch": "ml.epoch",
    "lr": "ml.learning_rate", "learning_rate": "ml.learning_rate",
    "grad_norm": "ml.grad_norm", "gradient_norm": "ml.grad_norm",
    "loss_scale": "ml.loss_scale",
    "step_time": "ml.step_time_s", "step_time_s": "ml.step_time_s",
    "samples_per_second": "ml.samples_per_s", "train_samples_per_second": "ml.samples_per_s",
    "samples_per_sec": "ml.samples_per_s", "samples_per_s": "ml.samples_per_s",
    "steps_per_second": "ml.steps_per_s", "train_steps_per_second": "ml.steps_per_s",
    "tokens_per_second": "ml.tokens_per_s", "tokens_per_sec": "ml.tokens_per_s",
    "tokens_per_s": "ml.tokens_per_s", "train_tokens_per_second": "ml.tokens_per_s",
    "latency_ms": "ml.latency_ms",
    "batch_size": "ml.batch_size",
    "rank": "ml.rank", "global_rank": "ml.rank", "local_rank": "ml.local_rank",
    "world_size": "ml.world_size",
}

# The design's numeric ml.* fields (mapped long/double in Elasticsearch): a value there that is
# not a number goes to labels.* instead, so one odd record neither fails its document nor hands
# a rule a string where it compares numbers.
NUMERIC_ML = frozenset(ML_NAMES.values()) | {
    "ml.memory.rss_bytes", "ml.memory.gpu_allocated_bytes", "ml.memory.gpu_reserved_bytes",
    "ml.checkpoint.step"}

# Roots of the ECS object fields (and ours): keys under them keep their dotted names.
ECS_ROOTS = frozenset("""
agent client cloud container data_stream destination device dll dns ecs email error event faas
file group host http interface log network observer orchestrator organization package process
registry related rule server service source span threat tls trace transaction url user
user_agent vulnerability labels ml kubernetes
""".split())

LEVELS = {"warn": "warning", "fatal": "critical", "crit": "critical", "err": "error",
          "eror": "error", "information": "info", "dbg": "debug"}

# What to do with a key: its plan, (action, name, name2), looked up once per key per line.
# Known spellings are fixed below; any other key gets a plan computed on first sight and cached
# (a log repeats its keys on every line).
(_KEEP, _UNKNOWN, _ML, _MESSAGE, _LEVEL, _TIME, _EVENT, _STACK, _TAGS, _SCALAR) = range(10)
_PLANS: dict[str, tuple] = {
    "message": (_MESSAGE, "message", None), "msg": (_MESSAGE, "message", None),
    "log.level": (_LEVEL, None, None), "level": (_LEVEL, None, None),
    "levelname": (_LEVEL, None, None), "severity": (_LEVEL, None, None),
    "loglevel": (_LEVEL, None, None), "log_level": (_LEVEL, None, None),
    "@timestamp": (_TIME, None, None), "timestamp": (_TIME, None, None),
    "time": (_TIME, None, None), "ts": (_TIME, None, None), "asctime": (_TIME, None, None),
    "exc_info": (_STACK, None, None), "exception": (_STACK, None, None),
    "exc_text": (_STACK, None, None), "stack_trace": (_STACK, None, None),
    "traceback": (_STACK, None, None), "error.stack_trace": (_STACK, None, None),
    "tags": (_TAGS, None, None),
    "event": (_EVENT, "event.", None),
    # a scalar where ECS has an object goes where it means; an object is flattened
    "logger": (_SCALAR, None, "log.logger"), "logger_name": (_SCALAR, None, "log.logger"),
    "hostname": (_SCALAR, None, "host.name"), "host": (_SCALAR, "host.", "host.name"),
    "service": (_SCALAR, "service.", "service.name"), "error": (_SCALAR, "error.", "error.message"),
    "exc_type": (_SCALAR, None, "error.type"), "error_type": (_SCALAR, None, "error.type"),
    "pid": (_SCALAR, None, "process.pid"), "process": (_SCALAR, "process.", "process.pid"),
}
for _key, _name in ML_NAMES.items():
    _PLANS[_key] = (_ML, _name, "labels." + _key)
for _name in NUMERIC_ML:
    _PLANS[_name] = (_ML, _name, "labels." + _name.replace(".", "_"))
_FIXED_PLANS = len(_PLANS)
_PLANS_MAX = _FIXED_PLANS + 10_000

_loads = orjson.loads
_JSONDecodeError = orjson.JSONDecodeError
_ODD = re.compile(r"[^\w.\-]")
_parse_iso = timestamps.parse_iso
_CANONICAL = frozenset(("trace", "debug", "info", "notice", "warning", "error", "critical"))
_levels: dict[str, str] = {name: name for name in _CANONICAL}


def level_name(text: str) -> str:
    """'WARN' → 'warning', 'Fatal' → 'critical', 'ERR' → 'error', others lower-cased."""
    try:
        return _levels[text]
    except KeyError:
        low = text.strip().lower()
        name = LEVELS.get(low, low)
        if len(_levels) < 1000:
            _levels[text] = name
        return name


def _plan_for(key: str) -> tuple:
    """The plan of a key no table knows: ECS names kept, others under ml.* or labels.*."""
    root = key.partition(".")[0]
    if root in ECS_ROOTS:
        # a scalar right at an ECS object root (`"source": "x"`) would clash with the mapping
        plan = (_KEEP, key + ".", key if "." in key else "labels." + key)
    else:
        safe = _ODD.sub("_", key)
        plan = (_UNKNOWN, "ml." + safe, "labels." + safe)
    if len(_PLANS) < _PLANS_MAX:
        _PLANS[key] = plan
    return plan


def _put(name_num: str, name_str: str, value, out: dict) -> None:
    """A leaf value of an unknown key: numbers under ml.*, strings and the rest under labels.*."""
    kind = type(value)
    if kind is float:
        out[name_num] = value
    elif kind is int:
        out[name_num] = value if -_LONG <= value < _LONG else float(value)
    elif kind is str or kind is bool:
        out[name_str] = value
    elif kind is list:
        out[name_str] = value if all(type(v) is str for v in value) else _json_text(value)
    elif kind is dict:
        for key, inner in value.items():
            safe = _ODD.sub("_", key)
            _put(f"{name_num}.{safe}", f"{name_str}.{safe}", inner, out)
    elif value is not None:
        out[name_str] = _json_text(value)


def _json_text(value) -> str:
    try:
        return orjson.dumps(value).decode()
    except TypeError:
        return repr(value)


def _flatten(prefix: str, obj: dict, out: dict) -> None:
    """ECS objects → dotted names. Two levels inline: a call per nested object is most of the
    cost of an ECS line (`log.origin.file.line` is four deep)."""
    for key, value in obj.items():
        if type(value) is dict:
            inner = prefix + key + "."
            for key2, value2 in value.items():
                if type(value2) is dict:
                    _flatten(inner + key2 + ".", value2, out)
                elif value2 is not None:
                    out[inner + key2] = value2
        elif value is not None:
            out[prefix + key] = value


def _flatten_ml(prefix: str, obj: dict, out: dict) -> None:
    """`{"ml": {...}}` (ecs-logging nests dotted names) → dotted names, the design's numeric
    fields kept numeric."""
    for key, value in obj.items():
        name = prefix + key
        kind = type(value)
        if kind is float or (kind is int and -_LONG <= value < _LONG):
            out[name] = value   # the common case, a number, first
        elif kind is dict:
            _flatten_ml(name + ".", value, out)
        elif value is not None and name not in NUMERIC_ML:
            out[name] = value
        elif value is not None:
            number = _number(value)
            if number is not None:
                out[name] = number
            else:
                label = "labels." + name.replace(".", "_")
                _put(label, label, value, out)


def _number(value):
    kind = type(value)
    if kind is float:
        return value
    if kind is int:
        return value if -_LONG <= value < _LONG else float(value)
    if kind is str:
        try:
            return float(value)
        except ValueError:
            return None
    return None


def map_record(record: dict, out: dict) -> None:
    """Map one decoded record's keys into `out` (see the module docstring)."""
    plans = _PLANS
    stamp = stamp_key = alt_message = None
    for key, value in record.items():
        action, name, name2 = plans.get(key) or _plan_for(key)
        if action == _KEEP:
            if type(value) is dict:
                if name == "ml.":
                    _flatten_ml("ml.", value, out)
                else:
                    _flatten(name, value, out)
            elif value is not None:
                out[name2] = value
        elif action == _ML:
            if type(value) is float:
                out[name] = value   # the common case first, without a call
                continue
            number = _number(value)
            if number is not None:
                out[name] = number
            elif value is not None:
                _put(name2, name2, value, out)
        elif action == _LEVEL:
            if type(value) is str:
                out["log.level"] = level_name(value)
            elif value is not None:
                name = "labels." + key.replace(".", "_")
                _put(name, name, value, out)
        elif action == _MESSAGE:
            if type(value) is str:
                out["message"] = value
            elif value is not None:
                out["labels." + key] = _json_text(value)
        elif action == _TIME:
            # `@timestamp` wins over the other spellings; otherwise the first that parses.
            # A second or unreadable time is kept, as a label.
            if stamp is None or (key == "@timestamp" and stamp_key != "@timestamp"):
                parsed = _parse_iso(value) if type(value) is str else None
                if parsed is None:
                    parsed = timestamps.parse_any(value)
                if parsed is not None:
                    if stamp_key is not None:
                        _put("labels." + stamp_key, "labels." + stamp_key, record[stamp_key], out)
                    stamp, stamp_key = parsed, key
                    continue
            name = "labels." + key.lstrip("@")
            _put(name, name, value, out)
        elif action == _UNKNOWN:
            _put(name, name2, value, out)
        elif type(value) is dict and name is not None:
            _flatten(name, value, out)
        elif action == _SCALAR:
            if type(value) is str or (name2 == "process.pid" and type(value) is int):
                out[name2] = value
            elif value is not None:
                _put("labels." + key, "labels." + key, value, out)
        elif action == _EVENT:
            if type(value) is str:
                alt_message = value  # structlog's message key
            elif value is not None:
                out["labels.event"] = _json_text(value)
        elif action == _STACK:
            if type(value) is str and value:
                out["error.stack_trace"] = value
            elif type(value) is list and value:
                out["error.stack_trace"] = "".join(map(str, value))  # format_exception()'s list
            elif value:  # `exc_info: true` and the like: kept, as a label
                _put("labels." + key, "labels." + key, value, out)
        elif action == _TAGS:
            if type(value) is list:
                out["tags"] = [str(v) for v in value]
            elif value is not None:
                out["tags"] = [str(value)]
    if stamp is not None:
        out["@timestamp"] = stamp
    if alt_message is not None:
        if "message" in out:
            out["labels.event"] = alt_message
        else:
            out["message"] = alt_message
    level = out.get("log.level")
    if type(level) is str and level not in _CANONICAL:
        out["log.level"] = level_name(level)  # came nested: {"log": {"level": "WARN"}}
    if "error.stack_trace" in out and "error.type" not in out:
        stack = out["error.stack_trace"]
        if type(stack) is str:
            error_type, error_message = traceback.exception(stack.splitlines())
            if error_type:
                out["error.type"] = error_type
            if error_message is not None:
                out.setdefault("error.message", error_message)


# --- Python dict literals (HF Trainer prints `{'loss': nan, 'grad_norm': inf, ...}`) -------------

_CONSTANTS = {"nan": math.nan, "NaN": math.nan, "inf": math.inf, "Infinity": math.inf,
              "True": True, "False": False, "None": None}
# Wrappers whose first argument is the value: numpy 2 reprs (`np.float64(0.5)`), torch tensors.
_WRAPPERS = frozenset(("float", "int", "np.float64", "np.float32", "np.float16", "np.int64",
                       "np.int32", "numpy.float64", "numpy.float32", "numpy.int64", "tensor",
                       "torch.tensor"))


# The common case, a flat dict of plain numbers, is read by two regexes; ast is ten times slower.
_NUMBER = r"-?(?:nan|inf|\d[\d.]*(?:[eE][+\-]?\d+)?|\.\d+(?:[eE][+\-]?\d+)?)"
_FLAT_DICT = re.compile(rf"\{{\s*(?:'[^'\\]*':\s*{_NUMBER}\s*(?:,\s*|(?=\}})))*\}}\s*\Z")
_FLAT_PAIR = re.compile(rf"'([^'\\]*)':\s*({_NUMBER})")


def whole_number(text: str) -> int | float:
    """A number literal: an int, as a float past 64 bits (what Elasticsearch's long holds;
    Python's int() refuses more than 4300 digits); anything else float() reads ('nan', '2e-05')."""
    if not (text[1:] if text[:1] == "-" else text).isdecimal():
        return float(text)   # no int() attempt first: a failed one costs more than a float()
    try:
        value = int(text)
    except ValueError:
        return float(text)
    return value if -_LONG <= value < _LONG else float(text)


_LONG = 1 << 63
_flat_number = whole_number


def literal(text: str):
    """The value of a Python literal, without eval: dicts, lists, tuples, strings, numbers,
    nan/inf, and number wrappers such as `np.float64(0.5)` or `tensor(1.2, device='cuda:0')`."""
    if '"' not in text and "\\" not in text:
        # Without double quotes or escapes inside, the literal of a dict of numbers and plain
        # strings is JSON once its quotes are swapped: orjson reads it ten times faster than the
        # regexes below. Whatever JSON refuses (nan, inf, True, tuples, 1_000) goes on below.
        try:
            return _loads(text.replace("'", '"'))
        except _JSONDecodeError:
            pass
    if _FLAT_DICT.match(text):
        try:
            return {key: _flat_number(value) for key, value in _FLAT_PAIR.findall(text)}
        except ValueError:
            pass  # `1.2.3`: let the parser below say what is wrong
    try:
        with warnings.catch_warnings():  # `1if` etc. warn on stderr; the line is only data
            warnings.simplefilter("ignore")
            tree = ast.parse(text.strip(), mode="eval")
    except (SyntaxError, ValueError, RecursionError, MemoryError) as e:
        raise ValueError(f"not a Python literal: {getattr(e, 'msg', None) or e}") from None
    try:
        return _value(tree.body)
    except RecursionError:
        raise ValueError("not a Python literal: nested too deeply") from None


def _dotted(node) -> str | None:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        base = _dotted(node.value)
        return base and f"{base}.{node.attr}"
    return None


def _value(node):
    if isinstance(node, ast.Constant):
        if type(node.value) is int and not -_LONG <= node.value < _LONG:
            return float(node.value) if node.value.bit_length() < 1024 else math.copysign(math.inf, node.value)
        if isinstance(node.value, (str, int, float, bool)) or node.value is None:
            return node.value
    elif isinstance(node, ast.Dict):
        if all(isinstance(k, ast.Constant) and isinstance(k.value, str) for k in node.keys):
            return {k.value: _value(v) for k, v in zip(node.keys, node.values)}
    elif isinstance(node, (ast.List, ast.Tuple)):
        return [_value(v) for v in node.elts]
    elif isinstance(node, ast.Name) and node.id in _CONSTANTS:
        return _CONSTANTS[node.id]
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        operand = _value(node.operand)
        if type(operand) in (int, float):
            return -operand if isinstance(node.op, ast.USub) else operand
    elif isinstance(node, ast.Call) and _dotted(node.func) in _WRAPPERS and node.args:
        return _value(node.args[0])
    raise ValueError(f"not a Python literal: unexpected {type(node).__name__} "
                     f"at column {getattr(node, 'col_offset', 0) + 1}")
