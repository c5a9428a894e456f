"""A table of broken rule files: each must be refused with the message a person can act on, at
the file, line and field where the mistake is. Loaded as the daemon loads them (RuleSet.load);
a few go through the real `faultwarden rules validate` too (exit 2, one line on stderr)."""
from __future__ import annotations

from dataclasses import dataclass

import pytest

from faultwarden.detectors.rules import RuleSet
from faultwarden.detectors.yamlfile import FileError

from .helpers import faultwarden

HEAD = "rules:\n  - id: bad\n    fault: cuda_oom\n    severity: error\n"  # lines 1-4; a body starts on 5
MATCH = "    match: {message: {regex: 'CUDA out of memory'}}\n"


@dataclass(frozen=True)
class Broken:
    name: str
    files: dict[str, str]  # file name → text, loaded in name order from one folder
    file: str  # where the error is
    line: int | None
    field: str | None
    message: str  # a part of the message that says what is wrong (and how to fix it)
    names_rule: bool = True  # the message ends with the rule's id (not when the YAML itself is broken)


def one(name: str, text: str, line: int | None, field: str | None, message: str, names_rule: bool = True) -> Broken:
    return Broken(name, {"mine.yaml": text}, "mine.yaml", line, field, message, names_rule)


def body(name: str, text: str, line: int | None, field: str | None, message: str) -> Broken:
    """A rule with a valid id, fault and severity, and `text` as the rest."""
    return one(name, HEAD + text, line, field, message)


TABLE = [
    # --- the file itself -------------------------------------------------------------------
    one("not-yaml", "rules:\n  - id: a\n    fault: [cuda_oom\n    severity: error\n", 4, None,
        "not valid YAML: expected ',' or ']'"),
    one("tab-indent", "rules:\n  - id: a\n\tfault: x\n", 3, None, "not valid YAML: found character '\\t'"),
    one("a-list-not-a-mapping", "- id: a\n  fault: cuda_oom\n", 1, None, "expected a mapping with a `rules:` list"),
    one("unknown-top-key", "rules: []\nrule: []\n", 2, "rule", "unknown key (a rule file holds `rules:` only)"),
    one("rules-not-a-list", "rules:\n  id: a\n", 1, "rules", "expected a list of rules"),
    one("rule-not-a-mapping", "rules:\n  - cuda-oom\n", 2, "rules[0]", "expected a rule (a mapping)"),
    one("duplicate-yaml-key", HEAD + "    severity: warning\n" + MATCH, 5, "rules[0].severity", "duplicate key",
        names_rule=False),
    one("duplicate-id", HEAD + MATCH + HEAD.split("\n", 1)[1] + MATCH, 6, "rules[1].id",
        "duplicate id 'bad', first at line 2 of this file"),
    # --- id, fault, severity ---------------------------------------------------------------
    one("missing-id", "rules:\n  - fault: cuda_oom\n    severity: error\n" + MATCH, 2, "rules[0].id", "Field required"),
    one("id-with-capitals", "rules:\n  - id: CUDA OOM\n    fault: cuda_oom\n    severity: error\n" + MATCH, 2,
        "rules[0].id", "String should match pattern"),
    one("missing-fault", "rules:\n  - id: bad\n    severity: error\n" + MATCH, 2, "rules[0].fault", "Field required"),
    one("unknown-fault", "rules:\n  - id: bad\n    fault: oom\n    severity: error\n" + MATCH, 3, "rules[0].fault",
        "Input should be 'cuda_oom', 'nan_inf'"),
    one("anomaly-is-not-a-rule-fault", "rules:\n  - id: bad\n    fault: anomaly\n    severity: error\n" + MATCH, 3,
        "rules[0].fault", "`anomaly` is raised by the isolation forest, not by rules"),
    one("unknown-severity", "rules:\n  - id: bad\n    fault: cuda_oom\n    severity: urgent\n" + MATCH, 4,
        "rules[0].severity", "Input should be 'info', 'warning', 'error' or 'critical', got 'urgent'"),
    # --- the rule's keys -------------------------------------------------------------------
    body("no-condition", "    advice: lower the batch size\n", 2, "rules[0]",
         "a rule needs exactly one condition (match, not_finite, threshold, spike, flatline, change, outlier), got none"),
    body("two-conditions", MATCH + "    not_finite: {field: ml.loss}\n", 2, "rules[0]",
         "got match and not_finite"),
    body("misspelt-condition", "    threshhold: {field: ml.loss, agg: max, window: 5m, above: 10}\n", 5,
         "rules[0].threshhold", "unknown key; did you mean `threshold`?"),
    body("misspelt-group-by", MATCH + "    group-by: [host.name]\n", 6, "rules[0].group-by",
         "unknown key; did you mean `group_by`?"),
    body("group-by-not-a-list", MATCH + "    group_by: host.name\n", 6, "rules[0].group_by", "Input should be a valid list"),
    body("group-by-bad-field-name", MATCH + "    group_by: [run id]\n", 6, "rules[0].group_by[0]",
         "String should match pattern"),
    body("description-not-text", MATCH + "    description: [a, b]\n", 6, "rules[0].description",
         "Input should be a valid string"),
    body("rule-for-not-a-duration", MATCH + "    for: soon\n", 6, "rules[0].for",
         "expected a duration such as 30s, 10m or 1h, got 'soon'"),
    body("rule-for-zero", MATCH + "    for: 0s\n", 6, "rules[0].for", "a duration must be positive, got '0s'"),
    body("realert-negative", MATCH + "    realert: -5\n", 6, "rules[0].realert", "a duration must be positive, got -5"),
    body("labels-not-text", MATCH + "    labels: {team: [ml, infra]}\n", 6, "rules[0].labels.team",
         "Input should be a valid string"),
    body("unknown-action", MATCH + "    actions: [notify, reboot]\n", 6, "rules[0].actions[1]",
         "Input should be 'restart', 'restore' or 'notify', got 'reboot'"),
    body("action-twice", MATCH + "    actions: [notify, notify]\n", 6, "rules[0].actions", "an action is listed twice"),
    body("enabled-not-a-bool", MATCH + "    enabled: maybe\n", 6, "rules[0].enabled", "Input should be a valid boolean"),
    body("examples-a-string", MATCH + "    examples:\n      fire: CUDA out of memory\n", 7, "rules[0].examples.fire",
         "Input should be a valid list"),
    body("examples-misspelt", MATCH + "    examples:\n      fires: [CUDA out of memory]\n", 7,
         "rules[0].examples.fires", "unknown key; did you mean `fire`?"),
    # --- match -----------------------------------------------------------------------------
    body("empty-match", "    match: {}\n", 5, "rules[0].match", "an empty match; give a field test, message, all, any or not"),
    body("misspelt-message", "    match:\n      mesage: {regex: 'CUDA out of memory'}\n", 6, "rules[0].match.mesage",
         "'mesage' is not a match key (all, any, message, not) nor an event field"),
    body("bare-field-name", "    match:\n      all:\n        - level: {equals: error}\n", 7, "rules[0].match.all[0].level",
         "did you mean `log.level`?"),
    body("misspelt-any", "    match:\n      anyy:\n        - message: {regex: x}\n", 6, "rules[0].match.anyy",
         "did you mean `any`?"),
    body("operator-from-another-language", "    match:\n      ml.loss: {above: 3}\n", 6, "rules[0].match.ml.loss.above",
         "unknown key; did you mean `gt`?"),
    body("field-test-without-a-test", "    match:\n      ml.loss: {}\n", 6, "rules[0].match.ml.loss",
         "needs a test: equals, in, regex, exists, finite, gt, gte, lt or lte"),
    body("field-test-not-a-mapping", "    match:\n      log.level: error\n", 6, "rules[0].match.log.level",
         "Input should be a valid dictionary or instance of FieldTest"),
    body("bad-regex", "    match:\n      any:\n        - message: {regex: 'loss is (nan'}\n", 7,
         "rules[0].match.any[0].message.regex", "not a valid regex: missing ), unterminated subpattern"),
    body("catastrophic-regex", "    match:\n      message: {regex: '(\\w+\\s?)*$'}\n", 6, "rules[0].match.message.regex",
         "nested unbounded quantifiers"),
    body("in-empty-list", "    match:\n      log.level: {in: []}\n", 6, "rules[0].match.log.level.in",
         "List should have at least 1 item"),
    body("exists-not-a-bool", "    match:\n      error.type: {exists: perhaps}\n", 6, "rules[0].match.error.type.exists",
         "Input should be a valid boolean"),
    body("gt-not-a-number", "    match:\n      ml.loss: {gt: high}\n", 6, "rules[0].match.ml.loss.gt",
         "Input should be a number, got 'high'"),
    body("any-empty", "    match:\n      any: []\n", 6, "rules[0].match.any", "List should have at least 1 item"),
    body("not-a-list", "    match:\n      not:\n        - message: {regex: x}\n", 6, "rules[0].match.not",
         "Input should be a valid dictionary or instance of Match"),
    # --- the other conditions ----------------------------------------------------------------
    body("not-finite-field-with-space", "    not_finite: {field: ml loss}\n", 5, "rules[0].not_finite.field",
         "String should match pattern"),
    body("threshold-without-window", "    threshold: {field: ml.latency_ms, agg: p99, above: 500}\n", 5,
         "rules[0].threshold", "give exactly one of window (a duration) or window_events (a count)"),
    body("threshold-above-and-below", "    threshold: {field: ml.loss, agg: max, window: 5m, above: 9, below: 1}\n", 5,
         "rules[0].threshold", "give exactly one of above or below"),
    body("threshold-mean-without-field", "    threshold: {agg: mean, window: 5m, above: 1,\n"
                                         "                where: {log.level: {equals: error}}}\n", 5,
         "rules[0].threshold", "agg mean needs a field"),
    body("threshold-count-of-nothing", "    threshold: {agg: count, window: 5m, above: 20}\n", 5, "rules[0].threshold",
         "count needs a field to count, or a where to select events"),
    body("threshold-unknown-agg", "    threshold: {field: ml.latency_ms, agg: median, window: 5m, above: 500}\n", 5,
         "rules[0].threshold.agg", "Input should be 'count', 'mean', 'max', 'min', 'p95', 'p99' or 'sum', got 'median'"),
    body("threshold-zero-events", "    threshold: {field: ml.loss, agg: max, window_events: 0, above: 9}\n", 5,
         "rules[0].threshold.window_events", "Input should be greater than or equal to 1"),
    body("threshold-where-misspelt", "    threshold:\n      agg: count\n      window: 5m\n      above: 20\n"
                                     "      where: {log.level: {inn: [error]}}\n", 9, "rules[0].threshold.where.log.level.inn",
         "unknown key; did you mean `in`?"),
    body("spike-warmup-too-long", "    spike: {field: ml.loss, window_events: 10, warmup: 20}\n", 5, "rules[0].spike",
         "warmup (20) cannot exceed window_events (10)"),
    body("spike-negative-z", "    spike: {field: ml.loss, z: -3}\n", 5, "rules[0].spike.z", "Input should be greater than 0"),
    body("spike-direction", "    spike: {field: ml.loss, direction: sideways}\n", 5, "rules[0].spike.direction",
         "Input should be 'up', 'down' or 'both', got 'sideways'"),
    body("flatline-for-in-words", "    flatline: {field: ml.step, for: ten minutes}\n", 5, "rules[0].flatline.for",
         "expected a duration such as 30s, 10m or 1h, got 'ten minutes'"),
    body("flatline-without-for", "    flatline: {field: ml.step}\n", 5, "rules[0].flatline.for", "Field required"),
    body("flatline-and-rule-for", "    flatline: {field: ml.step, for: 10m}\n    for: 5m\n", 2, "rules[0]",
         "flatline has its own `for`; the rule-level `for` does not apply"),
    body("flatline-until-misspelt", "    flatline:\n      field: ml.step\n      for: 10m\n      untill: {message: {regex: done}}\n",
         8, "rules[0].flatline.untill", "unknown key; did you mean `until`?"),
    body("change-direction", "    change: {field: ml.world_size, direction: sideways}\n", 5, "rules[0].change.direction",
         "Input should be 'up', 'down' or 'any', got 'sideways'"),
    body("outlier-two-members", "    outlier: {field: ml.step_time_s, across: ml.rank, min_members: 2}\n", 5,
         "rules[0].outlier.min_members", "Input should be greater than or equal to 3"),
    body("outlier-without-across", "    outlier: {field: ml.step_time_s}\n", 5, "rules[0].outlier.across", "Field required"),
    # --- layering: several files -------------------------------------------------------------
    Broken("same-id-without-override", {"a.yaml": HEAD + MATCH, "b.yaml": HEAD.replace("error", "warning") + MATCH},
           "b.yaml", 2, "rules[0].id", "rule 'bad' is already defined at {dir}/a.yaml:2; set `override: true` to replace it"),
    Broken("switch-for-an-unknown-rule", {"a.yaml": HEAD + MATCH, "b.yaml": "rules:\n  - {id: bda, enabled: false}\n"},
           "b.yaml", 2, "rules[0].id", "no earlier rule 'bda' to turn off; did you mean 'bad'?"),
    Broken("not-utf8", {"a.yaml": HEAD + MATCH, "b.yaml": "rules:\n  - id: caf\xe9\n"}, "b.yaml", None, None,
           "cannot read: 'utf-8' codec can't decode byte 0xe9"),
]


def write_case(tmp_path, case: Broken):
    folder = tmp_path / "rules"
    folder.mkdir()
    for name, text in case.files.items():
        data = text.encode("latin-1") if case.name == "not-utf8" else text.encode()
        (folder / name).write_bytes(data)
    return folder


def test_the_table_is_large_enough():
    assert len(TABLE) >= 40 and len({c.name for c in TABLE}) == len(TABLE)


@pytest.mark.parametrize("case", TABLE, ids=lambda c: c.name)
def test_a_broken_rule_file_is_refused_where_the_mistake_is(tmp_path, case):
    folder = write_case(tmp_path, case)
    with pytest.raises(FileError) as info:
        RuleSet.load([str(folder)], include_default=False)
    err = info.value
    path = str(folder / case.file)
    assert (err.path, err.line, err.field) == (path, case.line, case.field), str(err)
    assert case.message.format(dir=folder) in err.message, str(err)
    where = f"{path}:{case.line}" if case.line else path
    assert str(err).startswith(f"{where}: {case.field}: " if case.field else f"{where}: "), str(err)
    if case.names_rule and case.files[case.file].startswith(HEAD) and case.field and case.field.startswith("rules[0]"):
        assert err.message.endswith("(rule bad)")  # which rule, in a long file


@pytest.mark.parametrize("name", ["unknown-fault", "misspelt-message", "catastrophic-regex", "same-id-without-override"])
def test_validate_exits_2_with_the_location_on_stderr(tmp_path, name):
    case = next(c for c in TABLE if c.name == name)
    folder = write_case(tmp_path, case)
    done = faultwarden("rules", "validate", str(folder))
    assert done.returncode == 2 and done.stdout == ""
    (line,) = done.stderr.splitlines()
    assert line.startswith(f"faultwarden: {folder / case.file}:{case.line}: {case.field}: ")
    assert case.message.format(dir=folder) in line
