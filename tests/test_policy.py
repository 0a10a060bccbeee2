"""Policy profiles as data: every numbered clause of spec §1-§6 (inquiry, priority,
repair, complaint, callback, installation) has a rule, every rule a clause;
a bad profile is rejected naming the rule and the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from aftersales.calendar import Unit
from aftersales.policy import PolicyError, UnknownRuleError, available_profiles, load_profile

SPEC = Path(__file__).resolve().parents[2] / "shared" / "sop-spec.md"


def spec_clauses(sections: tuple[str, ...]) -> set[str]:
    text = SPEC.read_text(encoding="utf-8")
    ids = set(re.findall(r"^\| *([A-Z]{2,6}(?:-[A-Z0-9]+)+) *\|", text, flags=re.M))
    ids |= set(re.findall(r"^- *([A-Z]{2,6}(?:-[A-Z0-9]+)+)", text, flags=re.M))
    return {i for i in ids if i.startswith(sections)}


# §1 INQ, §2 PRI/REM/ESC/ASSIGN, §3 REP, §4 CMP, §5 CB, §6 INS
SECTIONS_1_6 = ("INQ-", "PRI-", "REM-", "ESC-", "ASSIGN-", "REP-", "CMP-", "CB-", "INS-")


@pytest.mark.skipif(not SPEC.exists(), reason=f"spec not found at {SPEC}")
@pytest.mark.parametrize("profile", ["default", "work-instruction"])
def test_every_numbered_clause_of_sections_1_to_6_has_a_rule(profile: str) -> None:
    wanted = spec_clauses(SECTIONS_1_6)
    assert {"CMP-1", "CMP-4", "CB-1", "CB-3"} <= wanted  # §4 and §5 are covered
    assert len(wanted) >= 30
    missing = wanted - load_profile(profile).clauses()
    assert not missing, f"clauses without a rule in {profile}: {sorted(missing)}"


@pytest.mark.skipif(not SPEC.exists(), reason=f"spec not found at {SPEC}")
@pytest.mark.parametrize("profile", ["default", "work-instruction"])
def test_every_rule_cites_a_clause_of_the_spec(profile: str) -> None:
    known = spec_clauses(("",))
    orphans = {r.id for r in load_profile(profile).rules.values() if r.clause not in known}
    assert not orphans, f"rules citing no spec clause: {sorted(orphans)}"


@pytest.mark.parametrize(
    ("rule", "duration", "unit"),
    [
        ("REP-1", 30, Unit.MINUTES),
        ("REP-2:same-city", 4, Unit.HOURS),
        ("REP-2:other-city", 24, Unit.HOURS),
        ("REP-3", 2, Unit.WORKING_DAYS),
        ("INQ-3", 1, Unit.HOURS),
        ("INQ-4", 2, Unit.HOURS),
        ("INQ-SYNC", 10, Unit.MINUTES),
        ("INQ-CH-PHONE:response", 10, Unit.SECONDS),
        ("INQ-CH-ONLINE:response", 30, Unit.SECONDS),
        ("INQ-CH-SOCIAL:response", 10, Unit.MINUTES),
        ("INQ-CH-EMAIL:urgent", 1, Unit.HOURS),
        ("INQ-CH-EMAIL:important", 4, Unit.HOURS),
        ("INQ-CH-EMAIL:normal", 24, Unit.HOURS),
        ("INQ-CH-EMAIL:followup", 48, Unit.HOURS),
        ("INQ-CH-EMAIL:close", 3, Unit.DAYS),
        ("PRI-URGENT:response", 15, Unit.MINUTES),
        ("PRI-URGENT:resolution", 2, Unit.HOURS),
        ("PRI-IMPORTANT:resolution", 4, Unit.HOURS),
        ("PRI-NORMAL:resolution", 24, Unit.HOURS),
        ("ESC-NORMAL", 30, Unit.MINUTES),
        ("ESC-TIMEOUT:urgent", 12, Unit.HOURS),
        ("ESC-TIMEOUT:important", 48, Unit.HOURS),
        ("ESC-URGENT:plan", 1, Unit.HOURS),
        ("CB-2:ordinary", 3, Unit.WORKING_DAYS),
    ],
)
def test_default_profile_limits_match_the_spec(rule: str, duration: float, unit: Unit) -> None:
    r = load_profile("default").rule(rule)
    assert (r.duration, r.unit) == (duration, unit)


@pytest.mark.parametrize(
    ("rule", "duration", "unit"),
    [
        ("REP-1", 2, Unit.HOURS),
        ("REP-2:same-city", 48, Unit.HOURS),
        ("PRI-NORMAL:resolution", 3, Unit.WORKING_DAYS),
        ("INQ-3", 1, Unit.HOURS),  # inherited from default
    ],
)
def test_work_instruction_profile_uses_seed_002_limits(
    rule: str, duration: float, unit: Unit
) -> None:
    r = load_profile("work-instruction").rule(rule)
    assert (r.duration, r.unit) == (duration, unit)


def test_rem_1_reminds_30_min_before_response_and_1_h_before_resolution_REM_1() -> None:
    p = load_profile("default")
    assert p.remind_before(p.rule("REP-2:same-city")).total_seconds() == 30 * 60
    assert p.remind_before(p.rule("PRI-NORMAL:resolution")).total_seconds() == 60 * 60


def test_packaged_profiles_are_listed() -> None:
    assert {"default", "work-instruction"} <= set(available_profiles())


@pytest.mark.parametrize(
    ("rule_yaml", "message"),
    [
        ("- {id: REP-1, duration: -5, unit: minutes}", "rule REP-1: field duration"),
        ("- {id: REP-1, unit: fortnights}", "rule REP-1: field unit"),
        (
            "- {id: rep-9, kind: step, starts: a, stops: b, duration: 1, unit: hours}",
            "rule rep-9: field id",
        ),
        ("- {id: REP-9, duration: 1, unit: hours}", "rule REP-9: field id: an extending"),
        ("- {id: REP-1, on_breach: escalate, escalate_to: null}", "rule REP-1: field on_breach"),
        ("- {id: REP-1, colour: red}", "rule REP-1: field colour"),
        # a profile may change only the numbers (spec, "Readings of the sources")
        ("- {id: REP-1, stops: [repair.arrival]}", "rule REP-1: field stops: an extending"),
        ("- {id: ESC-TIMEOUT:urgent, pausable: true}", "rule ESC-TIMEOUT:urgent: field pausable"),
    ],
)
def test_bad_operator_profile_is_rejected_naming_rule_and_field(
    tmp_path: Path, rule_yaml: str, message: str
) -> None:
    f = tmp_path / "mine.yaml"
    f.write_text(f"name: mine\nextends: default\nrules:\n  {rule_yaml}\n", encoding="utf-8")
    with pytest.raises(PolicyError) as err:
        load_profile(str(f))
    assert message in str(err.value)


def test_operator_profile_file_overrides_one_rule_and_keeps_the_rest(tmp_path: Path) -> None:
    f = tmp_path / "fast.yaml"
    f.write_text(
        "name: fast\nextends: default\nrules:\n  - {id: REP-1, duration: 15}\n", encoding="utf-8"
    )
    p = load_profile(str(f))
    assert p.name == "fast"
    assert p.rule("REP-1").duration == 15 and p.rule("REP-1").unit == Unit.MINUTES
    assert p.rule("REP-2:same-city").duration == 4


def test_unknown_profile_and_rule_have_clear_errors() -> None:
    with pytest.raises(PolicyError, match="unknown profile 'nope'"):
        load_profile("nope")
    with pytest.raises(UnknownRuleError, match="unknown rule 'REP-9'"):
        load_profile("default").rule("REP-9")
