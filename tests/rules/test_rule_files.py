"""Rule files: validation errors that name file, line and field; layering; reload."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from faultwarden.detectors.rules import RuleSet, RuleWatcher, json_schema
from faultwarden.detectors.yamlfile import FileError

from .helpers import write

GOOD = """\
rules:
  - id: my-oom
    fault: cuda_oom
    severity: critical
    match: {message: {regex: 'CUDA out of memory'}}
"""


def load_error(tmp_path, text: str) -> FileError:
    path = write(tmp_path / "rules" / "mine.yaml", text)
    with pytest.raises(FileError) as info:
        RuleSet.load([str(path.parent)], include_default=False)
    return info.value


def test_a_broken_rule_names_file_line_and_field(tmp_path):
    err = load_error(tmp_path, """\
rules:
  - id: a
    fault: cuda_oom
    severity: critical
    match: {message: {regex: 'x'}}
  - id: b
    fault: nan_inf
    severity: error
    match:
      any:
        - message: {regex: 'loss is (nan'}
""")
    assert err.path.endswith("mine.yaml") and err.line == 11
    assert err.field == "rules[1].match.any[0].message.regex"
    assert "not a valid regex" in err.message
    assert str(err).startswith(f"{err.path}:11: rules[1].match.any[0].message.regex: ")


@pytest.mark.parametrize("pattern", [r"(a+)+$", r"(.*)*x", r"(\w+\s?)*$"])
def test_a_catastrophic_regex_is_refused(tmp_path, pattern):
    err = load_error(tmp_path, f"""\
rules:
  - id: slow
    fault: data_error
    severity: error
    match:
      message: {{regex: '{pattern}'}}
""")
    assert (err.line, err.field) == (6, "rules[0].match.message.regex")
    assert "nested unbounded quantifiers" in err.message


@pytest.mark.parametrize("body, line, field, words", [
    ("    fault: anomaly\n    severity: error\n    match: {message: {regex: x}}\n", 3, "rules[0].fault", "isolation forest"),
    ("    fault: cuda_oom\n    severity: urgent\n    match: {message: {regex: x}}\n", 4, "rules[0].severity", "urgent"),
    ("    fault: cuda_oom\n    severity: error\n", 2, "rules[0]", "exactly one condition"),
    ("    fault: cuda_oom\n    severity: error\n    match: {message: {regex: x}}\n    spike: {field: ml.loss}\n",
     2, "rules[0]", "match and spike"),
    ("    fault: cuda_oom\n    severity: error\n    threshold: {field: ml.loss, agg: max, above: 1}\n", 5,
     "rules[0].threshold", "window"),
    ("    fault: cuda_oom\n    severity: error\n    flatline: {field: ml.step, for: ten minutes}\n", 5,
     "rules[0].flatline.for", "duration"),
    ("    fault: cuda_oom\n    severity: error\n    match: {ml.loss: {above: 3}}\n", 5,
     "rules[0].match.ml.loss.above", "unknown key"),
    ("    fault: cuda_oom\n    severity: error\n    match: {message: {regex: x}}\n    actions: [reboot]\n", 6,
     "rules[0].actions[0]", "reboot"),
])
def test_rule_errors(tmp_path, body, line, field, words):
    err = load_error(tmp_path, "rules:\n  - id: bad\n" + body)
    assert (err.line, err.field) == (line, field), str(err)
    assert words in err.message


def test_not_a_rule_file(tmp_path):
    assert "`rules:` list" in load_error(tmp_path, "- id: x\n").message
    assert "duplicate id" in load_error(tmp_path, GOOD + GOOD.split("\n", 1)[1]).message


def test_folders_layer_and_a_later_rule_needs_override(tmp_path):
    base = write(tmp_path / "team" / "a.yaml", GOOD)
    later = write(tmp_path / "mine" / "b.yaml", GOOD.replace("critical", "warning"))
    with pytest.raises(FileError) as info:
        RuleSet.load([str(base.parent), str(later.parent)], include_default=False)
    assert str(later) in str(info.value) and f"{base}:2" in str(info.value)
    assert "override: true" in str(info.value)

    later.write_text(GOOD.replace("critical", "warning").replace("    fault:", "    override: true\n    fault:", 1))
    rs = RuleSet.load([str(base.parent), str(later.parent)], include_default=False)
    (entry,) = rs.entries
    assert entry.rule.severity == "warning" and entry.path == str(later)


def test_enabled_false_turns_a_default_rule_off(tmp_path):
    folder = write(tmp_path / "mine" / "off.yaml", "rules:\n  - {id: cuda-oom, enabled: false}\n").parent
    rs = RuleSet.load([str(folder)])
    entry = rs.get("cuda-oom")
    assert not entry.enabled and entry.switched_by.endswith("off.yaml:2")
    assert "cuda-oom" not in [r.id for r in rs.rules]
    assert entry.path.endswith("memory.yaml")  # still shown where it is defined
    write(tmp_path / "typo" / "off.yaml", "rules:\n  - {id: cuda-om, enabled: false}\n")
    with pytest.raises(FileError, match="no earlier rule 'cuda-om'"):
        RuleSet.load([str(tmp_path / "typo")])


def test_a_missing_rule_folder_is_an_error(tmp_path):
    with pytest.raises(FileError, match="no such rule folder"):
        RuleSet.load([str(tmp_path / "nope")])


def test_the_watcher_reloads_edits_and_keeps_the_last_good_rules(tmp_path):
    path = write(tmp_path / "rules" / "mine.yaml", GOOD)
    watcher = RuleWatcher([str(path.parent)], include_default=False)
    assert watcher.poll() is None  # nothing changed since it started

    path.write_text(GOOD + "  - id: broken\n    fault: nope\n")
    broken = watcher.poll()
    assert isinstance(broken, FileError) and broken.line == 7 and broken.field == "rules[1].fault"
    assert watcher.poll() is None  # reported once; the caller keeps running the old rules

    path.write_text(GOOD + "  - id: second\n    fault: disk_full\n    severity: error\n"
                           "    match: {message: {regex: 'No space left'}}\n")
    fixed = watcher.poll()
    assert isinstance(fixed, RuleSet) and [e.id for e in fixed.entries] == ["my-oom", "second"]

    write(tmp_path / "rules" / "more.yaml", GOOD.replace("my-oom", "third"))
    assert [e.id for e in watcher.poll().entries] == ["my-oom", "second", "third"]  # files by name
    os.remove(tmp_path / "rules" / "more.yaml")
    assert [e.id for e in watcher.poll().entries] == ["my-oom", "second"]


def test_the_committed_json_schema_is_the_models_own():
    committed = Path(__file__).resolve().parents[2] / "docs" / "rule-file.schema.json"
    assert json.loads(committed.read_text()) == json.loads(json.dumps(json_schema())), \
        "regenerate: faultwarden rules schema -o docs/rule-file.schema.json"
    rule = json_schema()["$defs"]["Rule"]
    assert rule["additionalProperties"] is False and "for" in rule["properties"]


def test_the_literal_screen_agrees_with_plain_substring_search():
    from faultwarden.detectors.rules.regex import required_literals, screen

    words = ["CUDA error: ", "CUDA out of memory", "CUBLAS_STATUS_", "oom-kill", "oom_kill_process", "[Errno 28]", "a.b"]
    find = screen(words).search
    texts = ["CUDA error: x", "CUDA out", "xx oom_kill_process", "oom-kil", "[Errno 28] No space", "axb", "a.b",
             "CUBLAS_STATUS", "plain line", ""]
    assert [find(t) is not None for t in texts] == [any(w in t for w in words) for t in texts]
    assert required_literals(r"CUDA out of memory|torch\.(?:cuda\.)?OutOfMemoryError") == (
        frozenset({"CUDA out of memory", "OutOfMemoryError"}), False)
    assert required_literals(r"(?i)loss (is|became) nan") == (frozenset({"loss "}), True)
    assert required_literals(r"a.*b") is None  # nothing required: the rule meets every event
