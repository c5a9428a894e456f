"""The default rule pack: every rule's examples, through the real parser, fire or stay quiet."""
from __future__ import annotations

import re
from re import _constants as sre_c
from re import _parser as sre_parse

import pytest

from faultwarden.daemon.rulecheck import check_examples
from faultwarden.detectors.finding import FAULTS
from faultwarden.detectors.rules import RuleSet

PACK = RuleSet.load([])
RESULTS = {(r.rule, r.expect, r.index): r for r in check_examples(PACK)}


@pytest.mark.parametrize("key", sorted(RESULTS), ids=lambda k: f"{k[0]}-{k[1]}{k[2]}")
def test_example(key):
    result = RESULTS[key]
    assert result.ok, result.describe()


@pytest.mark.parametrize("entry", PACK.entries, ids=lambda e: e.id)
def test_every_rule_has_fire_and_quiet_examples_and_advice(entry):
    assert entry.rule.examples.fire and entry.rule.examples.quiet
    assert entry.rule.description and len(entry.rule.advice) > 40


def test_the_pack_covers_every_fault_a_rule_may_raise():
    assert {e.rule.fault for e in PACK.entries} == set(FAULTS) - {"anomaly"}


def _regexes(match) -> list[str]:
    if match is None:
        return []
    out = [t.regex for t in [match.message, *match.fields.values()] if t is not None and t.regex]
    for sub in [*(match.all or []), *(match.any or []), *([match.not_] if match.not_ else [])]:
        out += _regexes(sub)
    return out


def _ops(parsed):
    for op, av in parsed:
        yield op
        subs = []
        if op in (sre_c.MAX_REPEAT, sre_c.MIN_REPEAT):
            subs = [av[2]]
        elif op == sre_c.SUBPATTERN:
            subs = [av[3]]
        elif op == sre_c.BRANCH:
            subs = av[1]
        for sub in subs:
            yield from _ops(sub)


def test_pack_regexes_also_run_under_re2():
    """No lookaround or backreference: installing google-re2 must not break the pack."""
    banned = {sre_c.ASSERT, sre_c.ASSERT_NOT, sre_c.GROUPREF, sre_c.GROUPREF_EXISTS}
    for entry in PACK.entries:
        conds = [getattr(entry.rule, "match"), getattr(entry.rule.threshold, "where", None),
                 getattr(entry.rule.flatline, "until", None)]
        for pattern in (p for c in conds for p in _regexes(c)):
            assert not banned & set(_ops(sre_parse.parse(pattern))), f"{entry.id}: {pattern}"
            re.compile(pattern)


def test_validate_the_pack_folder_through_the_real_command():
    """`faultwarden rules validate rules/` from a checkout: the pack's own folder is the default
    pack (read once, not clashing with itself), and its examples are many."""
    import re as _re
    from pathlib import Path

    from .helpers import faultwarden

    folder = Path(__file__).resolve().parents[2] / "rules"
    done = faultwarden("rules", "validate", str(folder))
    assert done.returncode == 0, done.stdout + done.stderr
    m = _re.search(r"(\d+) rules \(\1 enabled\) from 6 files; (\d+) of (\d+) examples as expected", done.stdout)
    assert m and m.group(2) == m.group(3) and int(m.group(3)) >= 150, done.stdout
    assert done.stderr == ""  # every rule has fire and quiet examples


ENGINE_RULES = PACK.rules
FIRE = [(e.id, i) for e in PACK.entries for i in range(len(e.rule.examples.fire))]


@pytest.mark.parametrize("rule_id, index", FIRE, ids=[f"{r}-fire{i}" for r, i in FIRE])
def test_a_fire_example_raises_its_own_rule_and_no_other_with_the_whole_pack(rule_id, index):
    """With every rule loaded (the index and literal screen deciding who sees a line), the
    example opens its rule's incident, and no other rule claims the same root cause."""
    from faultwarden.daemon.rulecheck import incidents_by_rule, parse_text

    text = PACK.get(rule_id).rule.examples.fire[index]
    got = incidents_by_rule(ENGINE_RULES, parse_text(((line, None) for line in text.splitlines()), "x.log"))
    assert dict(got) == {rule_id: 1}
