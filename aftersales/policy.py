"""Deadlines as data: policy profiles of rule id -> duration, unit, clause, actions.

A profile is a YAML file. ``default`` and ``work-instruction`` ship in
``aftersales/policies``; an operator selects one by name
(``AFTERSALES_POLICY_PROFILE``) or loads their own file
(``AFTERSALES_POLICY_FILE`` / ``--profile path.yaml``). A profile may
``extends:`` another and override rules by id. A bad profile is rejected with
an error naming the rule and the field.

Rule ids are clause ids from ../shared/sop-spec.md, with ``:variant`` where a
clause has several limits (``REP-2:same-city``, ``INQ-CH-EMAIL:urgent``).
"""

from __future__ import annotations

import re
from datetime import datetime, timedelta
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from aftersales.calendar import Unit, WorkCalendar
from aftersales.settings import ROLES

RULE_ID = re.compile(r"^(?P<clause>[A-Z]{2,6}(?:-[A-Z0-9]+)+)(?::(?P<variant>[a-z0-9-]+))?$")
Kind = Literal["response", "resolution", "step", "repeat", "reminder", "policy", "trigger"]
#: kinds of rule that arm a clock (a row in ``sla_clock``)
TIMED_KINDS = ("response", "resolution", "step", "repeat")
Role = Literal[ROLES]  # type: ignore[valid-type]  # the recipient roles of settings.ROLES
#: ``escalate_to: next-level`` on an escalation's own clock: the role above the one
#: the escalation went to (team lead -> supervisor -> CS manager -> operations director)
EscalateTo = Literal[(*ROLES, "next-level")]  # type: ignore[valid-type]
BreachAction = Literal["escalate", "notify", "resume", "none"]
#: where a clock's start is counted from: the step that armed it, the ticket's
#: submission ("resolution clocks count from submission"), or the earliest
#: first-response deadline of the ticket (ESC-NORMAL: 30 min after it)
Anchor = Literal["step", "submission", "first-response-due"]
#: a condition: a list of alternatives (OR), each a mapping fact -> value or list of
#: values (AND); empty = always. Facts are the ticket's (aftersales.steps.Facts) and the
#: fields of the form of the step that arms the clock.
Condition = list[dict[str, Any]]
#: the fields an extending profile may override: only the numbers (spec, "Readings")
OVERRIDABLE = ("id", "duration", "unit", "note")


# libyaml's safe loader when built in (faster for a cold CLI), else the pure-Python one
_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class PolicyError(ValueError):
    """A profile that cannot be used; the message names the rule and the field."""


class UnknownRuleError(KeyError):
    def __str__(self) -> str:  # KeyError quotes its message otherwise
        return str(self.args[0])


class Rule(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    duration: float | None = None
    unit: Unit | None = None
    kind: Kind
    # Step references (``intake``, ``inquiry.first-response``, ``repair.arrival`` …),
    # validated against the SOP step catalogue when the profile loads.
    starts: list[str] = Field(default_factory=list)
    stops: list[str] = Field(default_factory=list)
    # policy rules (no clock): the steps that carry the clause out
    by: list[str] = Field(default_factory=list)
    when: Condition = Field(default_factory=list)
    anchor: Anchor = "step"
    # arming a rule of a group supersedes an active clock of another rule of the group
    # (a grade changed at classification re-arms the resolution clocks from submission)
    group: str | None = None
    # a target that waiting on the customer pauses (never a hard limit, never an
    # escalation clock: spec, "Readings", Pauses)
    pausable: bool = False
    # a hard limit: never paused; its breach escalates
    hard: bool = False
    # Which REM-1 reminder applies before the breach: "response" (30 min),
    # "resolution" (1 h) or none.
    remind: Literal["response", "resolution"] | None = None
    remind_to: list[Role] = Field(default_factory=lambda: ["handler", "supervisor"])
    on_breach: BreachAction = "none"
    escalate_to: EscalateTo | None = None
    level: Literal["normal", "important", "urgent"] | None = None
    # For on_breach == "resume": the input the clock resumes the waiting run with.
    resume_input: dict[str, Any] | None = None
    template: str | None = None
    note: str = ""

    @property
    def clause(self) -> str:
        m = RULE_ID.match(self.id)
        assert m is not None  # validated
        return m.group("clause")

    @field_validator("id")
    @classmethod
    def _id_is_clause(cls, v: str) -> str:
        if not RULE_ID.match(v):
            raise ValueError(
                "must be a clause id like REP-2 or REP-2:same-city (upper-case clause, "
                "lower-case variant)"
            )
        return v

    @field_validator("duration")
    @classmethod
    def _non_negative(cls, v: float | None) -> float | None:
        if v is not None and v < 0:
            raise ValueError("must be >= 0")
        return v

    @field_validator("starts", "stops", "by", mode="before")
    @classmethod
    def _listify(cls, v: Any) -> Any:
        return [v] if isinstance(v, str) else v

    @field_validator("when", mode="before")
    @classmethod
    def _alternatives(cls, v: Any) -> Any:
        return [v] if isinstance(v, dict) else v

    @model_validator(mode="after")
    def _consistent(self) -> Rule:
        timed = self.kind not in ("policy", "trigger")
        if timed and (self.duration is None or self.unit is None):
            raise ValueError(f"a {self.kind} rule needs both duration and unit")
        if not timed and (self.duration is not None or self.unit is not None):
            raise ValueError(f"a {self.kind} rule has no duration or unit")
        if self.kind in TIMED_KINDS and not self.starts:
            raise ValueError(f"a {self.kind} rule needs starts: the step(s) that arm it")
        if self.kind == "trigger" and (
            not self.starts or self.escalate_to is None or self.level is None
        ):
            raise ValueError("a trigger needs starts, escalate_to and level")
        if self.on_breach == "escalate" and (self.escalate_to is None or self.level is None):
            raise ValueError("on_breach: escalate needs escalate_to and level")
        if self.on_breach == "resume" and not self.resume_input:
            raise ValueError("on_breach: resume needs resume_input")
        if self.hard and self.on_breach != "escalate":
            raise ValueError("a hard limit escalates at its breach (on_breach: escalate)")
        if self.hard and self.pausable:
            raise ValueError("a hard limit is never paused (pausable: false)")
        return self

    @property
    def arms_clock(self) -> bool:
        return self.kind in TIMED_KINDS

    def natural_delta(self, working_day_hours: float = 9.0) -> timedelta:
        """Natural-time length, working units approximated (used for time compression only)."""
        if self.duration is None or self.unit is None:
            raise PolicyError(f"rule {self.id}: field duration: a policy rule has no duration")
        per = {
            Unit.SECONDS: 1,
            Unit.MINUTES: 60,
            Unit.HOURS: 3600,
            Unit.DAYS: 86400,
            Unit.WORKING_HOURS: 3600,
            Unit.WORKING_DAYS: working_day_hours * 3600,
        }[self.unit]
        return timedelta(seconds=self.duration * per)


class Targets(BaseModel):
    """QA-3 / SPD-2 targets (fractions 0-1, scores 0-10 unless named otherwise)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    response_compliance: float = 0.95
    satisfaction_avg: float = 8.5
    commendation_satisfaction: float = 9.5
    fault_resolution_days: float = 30
    inquiry_response_seconds: float = 30
    speed_first_response_hours: float = 2.0
    speed_over_limit_share: float = 0.10
    speed_response_limit_hours: float = 4.0
    first_contact_resolution: float = 0.80
    speed_satisfaction_5: float = 4.2


class Reminders(BaseModel):
    """REM-1: how long before a breach the owner and supervisor are reminded."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    response_minutes: float = 30
    resolution_minutes: float = 60


class Escalations(BaseModel):
    """ESC-IMPORTANT's triggers (spec, "Readings"): an amount over the limit, or a
    customer's second complaint within the window."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    amount_limit_cny: float = 1000
    complaint_window_days: float = 30


class Complaints(BaseModel):
    """CMP-4: a theme with at least this many complaints in a month is recurring and
    goes into the service improvement report."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    recurring_threshold: int = Field(default=2, ge=2)


class Callbacks(BaseModel):
    """CB-2: a customer not reached is called again on the next working day, at most
    ``max_attempts`` times, then recorded unreachable; an online survey link lasts
    ``survey_days``."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    max_attempts: int = Field(default=3, ge=1, le=10)
    survey_days: float = Field(default=7, gt=0)


class Profile(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    description: str = ""
    reminders: Reminders = Reminders()
    targets: Targets = Targets()
    escalations: Escalations = Escalations()
    complaints: Complaints = Complaints()
    callbacks: Callbacks = Callbacks()
    rules: dict[str, Rule]

    def rule(self, rule_id: str) -> Rule:
        try:
            return self.rules[rule_id]
        except KeyError:
            raise UnknownRuleError(
                f"unknown rule {rule_id!r} in profile {self.name!r}; known rules: "
                + ", ".join(sorted(self.rules))
            ) from None

    def remind_before(self, rule: Rule) -> timedelta | None:
        if rule.remind == "response":
            return timedelta(minutes=self.reminders.response_minutes)
        if rule.remind == "resolution":
            return timedelta(minutes=self.reminders.resolution_minutes)
        return None

    def due(
        self, rule_id: str, start: datetime, calendar: WorkCalendar, time_scale: float = 1.0
    ) -> datetime:
        rule = self.rule(rule_id)
        if rule.duration is None or rule.unit is None:
            raise PolicyError(f"rule {rule_id}: field duration: a policy rule has no deadline")
        if time_scale != 1.0:
            hours = calendar.working_day_seconds() / 3600
            return start + rule.natural_delta(hours) / time_scale
        return calendar.add(start, rule.duration, rule.unit)

    def clauses(self) -> set[str]:
        return {r.clause for r in self.rules.values()}

    def started_by(self, ref: str) -> list[Rule]:
        """Rules (clocks and triggers) a step reference starts, in profile order."""
        return [r for r in self.rules.values() if ref in r.starts]

    def stopped_by(self, ref: str) -> list[Rule]:
        return [r for r in self.rules.values() if ref in r.stops]


#: the sections an extending profile merges into its base's, key by key
SECTIONS = ("targets", "reminders", "escalations", "complaints", "callbacks")


def _packaged(name: str) -> Path | None:
    ref = resources.files("aftersales") / "policies" / f"{name}.yaml"
    return Path(str(ref)) if ref.is_file() else None


def available_profiles() -> list[str]:
    folder = resources.files("aftersales") / "policies"
    return sorted(
        p.name.removesuffix(".yaml") for p in folder.iterdir() if p.name.endswith(".yaml")
    )


def _read(path: Path) -> dict[str, Any]:
    try:
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=_YAML_LOADER)
    except yaml.YAMLError as exc:
        raise PolicyError(f"profile file {path}: not valid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise PolicyError(f"profile file {path}: the top level must be a mapping")
    return data


def _raw(name_or_path: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    if name_or_path in seen:
        raise PolicyError(f"profile {name_or_path!r}: field extends: cycle {' -> '.join(seen)}")
    path = Path(name_or_path)
    if not (path.suffix in (".yaml", ".yml") and path.is_file()):
        packaged = _packaged(name_or_path)
        if packaged is None:
            raise PolicyError(
                f"unknown profile {name_or_path!r}: not a packaged profile "
                f"({', '.join(available_profiles())}) nor a readable .yaml file"
            )
        path = packaged
    data = _read(path)
    rules_list = data.get("rules", [])
    if not isinstance(rules_list, list):
        raise PolicyError(f"profile {name_or_path!r}: field rules: must be a list of rules")
    rules: dict[str, Any] = {}
    for i, raw in enumerate(rules_list):
        if not isinstance(raw, dict) or "id" not in raw:
            raise PolicyError(f"profile {name_or_path!r}: rules[{i}]: field id: is required")
        if not isinstance(raw["id"], str):  # fuzzing: a list id was a TypeError
            raise PolicyError(
                f"profile {name_or_path!r}: rules[{i}]: field id: must be a clause id text"
            )
        if raw["id"] in rules:
            raise PolicyError(f"profile {name_or_path!r}: rule {raw['id']}: field id: duplicate")
        rules[raw["id"]] = raw
    base_name = data.get("extends")
    if base_name:
        base = _raw(str(base_name), (*seen, name_or_path))
        merged_rules = dict(base["rules"])
        for rid, raw in rules.items():
            if rid not in merged_rules:
                raise PolicyError(
                    f"profile {name_or_path!r}: rule {rid}: field id: an extending profile "
                    f"cannot add a rule (only change the numbers of {base_name!r}'s rules)"
                )
            for key in raw:
                if key not in OVERRIDABLE:
                    raise PolicyError(
                        f"profile {name_or_path!r}: rule {rid}: field {key}: an extending "
                        f"profile may change only {', '.join(OVERRIDABLE[1:])}"
                    )
            merged_rules[rid] = {**merged_rules[rid], **raw}
        # a what-if profile (aftersales replay) may drop a rule: that clock is not armed
        remove = data.get("remove", []) or []
        if not isinstance(remove, list):  # fuzzing: a number here was a TypeError
            raise PolicyError(f"profile {name_or_path!r}: field remove: must be a list of rule ids")
        for section in SECTIONS:  # fuzzing: a list here was a TypeError
            if not isinstance(data.get(section, {}), dict):
                raise PolicyError(f"profile {name_or_path!r}: field {section}: must be a mapping")
        for rid in remove:
            if isinstance(rid, str):
                merged_rules.pop(rid, None)
        data = {
            **base,
            **{k: v for k, v in data.items() if k not in ("rules", "extends", "remove")},
            "rules": merged_rules,
            "targets": {**base.get("targets", {}), **data.get("targets", {})},
            "reminders": {**base.get("reminders", {}), **data.get("reminders", {})},
            "escalations": {**base.get("escalations", {}), **data.get("escalations", {})},
            "complaints": {**base.get("complaints", {}), **data.get("complaints", {})},
            "callbacks": {**base.get("callbacks", {}), **data.get("callbacks", {})},
        }
    else:
        data = {**data, "rules": rules}
    data.setdefault("name", path.stem)
    return data


def load_profile(name_or_path: str, *, check_steps: bool = True) -> Profile:
    """Load a packaged profile by name or an operator's YAML file by path. With
    ``check_steps`` the rules' step references, conditions and ends are checked against
    the SOP step catalogue (:func:`aftersales.steps.check_profile`)."""
    data = _raw(name_or_path)
    try:
        profile = Profile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = [str(x) for x in err["loc"]]
        if len(loc) >= 2 and loc[0] == "rules":
            where = f"rule {loc[1]}: field {'.'.join(loc[2:]) or '(rule)'}"
        else:
            where = f"field {'.'.join(loc)}"
        raise PolicyError(
            f"profile {data.get('name', name_or_path)!r}: {where}: {err['msg']}"
        ) from exc
    if check_steps:
        from aftersales.steps import check_profile

        problems = check_profile(profile)
        if problems:
            raise PolicyError(f"profile {profile.name!r}: " + "; ".join(map(str, problems)))
    return profile


@lru_cache(maxsize=16)
def get_profile(name_or_path: str) -> Profile:
    return load_profile(name_or_path)
