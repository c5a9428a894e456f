"""`faultwarden rules validate|test|list|schema`."""
from __future__ import annotations

import json

from click.testing import CliRunner

from faultwarden.daemon.cli import cli

from .helpers import faultwarden, write

WRONG_EXAMPLE = """\
rules:
  - id: disk-almost-full
    fault: disk_full
    severity: warning
    match: {message: {regex: 'disk (?:is )?9\\d% full'}}
    examples:
      fire: ["disk 95% full", "disk is 80% full"]
      quiet: ["disk 50% full"]
"""


def invoke(*args):
    return CliRunner().invoke(cli, list(args))


def test_validate_the_default_pack():
    done = invoke("rules", "validate")
    assert done.exit_code == 0, done.output
    assert "of" in done.output and "examples as expected" in done.output


def test_validate_names_the_failing_example(tmp_path):
    folder = write(tmp_path / "rules" / "disk.yaml", WRONG_EXAMPLE).parent
    done = invoke("rules", "validate", "--rules", str(folder))
    assert done.exit_code == 1
    assert (f"{folder / 'disk.yaml'}:7: rule disk-almost-full: examples.fire[1] should fire, got nothing"
            in done.output)


def test_validate_exit_2_on_a_rule_file_error_through_the_real_command(tmp_path):
    folder = write(tmp_path / "rules" / "bad.yaml", WRONG_EXAMPLE.replace("severity: warning", "severity: loud")).parent
    done = faultwarden("rules", "validate", "--rules", str(folder))
    assert done.returncode == 2
    assert done.stderr.startswith(f"faultwarden: {folder / 'bad.yaml'}:4: rules[0].severity: ")


def test_rules_test_files(tmp_path):
    tests = write(tmp_path / "t.yaml", """\
tests:
  - name: NaN then silence
    input:
      - "{'loss': 1.9, 'epoch': 0.1}"
      - |
        {"@timestamp": "2024-05-01T12:00:00Z", "step": 10, "loss": 1.8}
        {"@timestamp": "2024-05-01T12:01:00Z", "step": 11, "loss": NaN}
      - {at: 30m, line: "still here"}
    expect:
      - {rule: nan-loss, count: 1}
      - {rule: training-hang}
      - {rule: cuda-oom, count: 0}
  - name: only some rules
    rules: [cuda-oom]
    input: ["{'loss': nan}"]
    expect: [{rule: nan-loss, count: 1}]
""")
    done = invoke("rules", "test", str(tests))
    assert done.exit_code == 1, done.output
    assert f"ok   {tests}: NaN then silence" in done.output
    assert f"FAIL {tests}: only some rules" in done.output
    assert "rule nan-loss: expected 1 incident(s), got 0" in done.output

    unknown = write(tmp_path / "u.yaml", "tests:\n  - name: x\n    input: [a]\n    expect: [{rule: no-such-rule}]\n")
    done = invoke("rules", "test", str(unknown))
    assert done.exit_code == 2 and f"{unknown}:4: tests[0].expect[0]: no rule with id 'no-such-rule'" in done.output


def test_list_shows_source_and_enabled(tmp_path):
    folder = write(tmp_path / "rules" / "off.yaml", "rules:\n  - {id: loss-spike, enabled: false}\n").parent
    done = invoke("rules", "list", "--rules", str(folder))
    assert done.exit_code == 0
    line = next(x for x in done.output.splitlines() if x.startswith("loss-spike "))
    assert "loss_spike" in line and "training.yaml:" in line and line.endswith("no")
    assert next(x for x in done.output.splitlines() if x.startswith("cuda-oom ")).endswith("yes")


def test_schema_prints_the_rule_file_schema(tmp_path):
    done = invoke("rules", "schema")
    schema = json.loads(done.output)
    assert schema["title"] == "faultwarden rule file" and "Rule" in schema["$defs"]
    assert invoke("rules", "schema", "-o", str(tmp_path / "s.json")).exit_code == 0
    assert json.loads((tmp_path / "s.json").read_text()) == schema
