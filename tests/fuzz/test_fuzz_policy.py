"""Policy loader (issue 11 §8): random mutations of the packaged profiles (a key dropped,
a value of another type, random units and durations, unknown step references, a junk
key) either load or raise ``PolicyError`` naming the profile and the rule or field;
never KeyError/TypeError/AttributeError or another crash."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import example, given
from hypothesis import strategies as st

from aftersales.policy import PolicyError, Profile, _packaged, load_profile
from tests.fuzz import json_values

PROFILES = {n: yaml.safe_load(_packaged(n).read_text(encoding="utf-8")) for n in ("default", "work-instruction")}  # type: ignore[union-attr]  # fmt: skip
no_surrogates = json_values.filter(lambda v: "\\ud" not in repr(v))
values = st.one_of(
    no_surrogates,
    st.sampled_from(["hours", "working_days", "fortnights", "minutes", "", "days", "h"]),
    st.floats(min_value=-10, max_value=1e6),
    st.sampled_from(["inquiry.nope", "nope", "repair.arrival", "intake", "x.y.z", "beyond-authority"]),
    st.lists(st.sampled_from(["inquiry.first-response", "ghost.step", "", "repair"]), max_size=3),
)  # fmt: skip
_n = itertools.count()


@st.composite
def mutated(draw: st.DrawFn) -> dict[str, Any]:
    name = draw(st.sampled_from(sorted(PROFILES)))
    data = yaml.safe_load(yaml.safe_dump(PROFILES[name]))  # a deep copy
    for _ in range(draw(st.integers(1, 3))):
        where = draw(st.sampled_from(["top", "section", "rule", "rules"]))
        if where == "rules":
            data["rules"] = draw(values)
            continue
        if where == "rule" and isinstance(data.get("rules"), list) and data["rules"]:
            target = draw(st.sampled_from(data["rules"]))
            keys = ["id", "duration", "unit", "kind", "starts", "stops", "when", "by",
                    "on_breach", "escalate_to", "level", "hard", "anchor", "junk"]  # fmt: skip
        elif where == "section":
            sections = [k for k, v in data.items() if isinstance(v, dict)]
            if not sections:
                continue
            target = data[draw(st.sampled_from(sections))]
            keys = [*target, "junk"]
        else:
            target = data
            keys = [*data, "extends", "remove", "junk"]
        if not isinstance(target, dict):
            continue
        key = draw(st.sampled_from(keys))
        if draw(st.integers(0, 4)) == 0:
            target.pop(key, None)
        else:
            target[key] = draw(values)
    return data


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return tmp_path


@given(data=mutated())
@example(data={"name": "x", "rules": [{"id": "REP-1", "kind": "step", "duration": "2"}]})
@example(data={"name": "x", "rules": "REP-1"})
@example(data={"name": "x", "rules": [{"id": ["REP-1"]}]})
@example(data={"name": "x", "extends": "default", "rules": [{"id": "REP-1", "unit": "fortnights"}]})
@example(data={"name": "x", "extends": "default", "remove": 5, "rules": []})
@example(data={"name": "x", "extends": "default", "targets": [1], "rules": []})
def test_mutated_profiles_load_or_raise_policy_error(folder: Path, data: Any) -> None:
    path = folder / f"p{next(_n)}.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True), encoding="utf-8")
    try:
        profile = load_profile(str(path))
    except PolicyError as exc:
        msg = str(exc)
        assert msg and ("field" in msg or "rule" in msg or "profile" in msg), msg
        return
    assert isinstance(profile, Profile)
    assert all(r.id == rid for rid, r in profile.rules.items())
