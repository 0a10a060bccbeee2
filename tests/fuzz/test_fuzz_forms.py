"""Every step form (issue 11 §8): a random dict over the form's field names plus junk
keys, values from a broad JSON strategy, gives a model or a pydantic ``ValidationError``
naming fields, never another exception; an accepted form round-trips through its JSON."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, ValidationError

from aftersales.steps import catalogue
from tests.fuzz import examples, json_values, nasty_text


def _forms() -> dict[str, type[BaseModel]]:
    seen: dict[str, type[BaseModel]] = {}
    for spec in catalogue().values():
        for step in spec.steps:
            if step.form is not None:
                seen.setdefault(step.form.__name__, step.form)
    return dict(sorted(seen.items()))


FORMS = _forms()


def test_every_sop_has_forms_to_fuzz() -> None:
    assert len(FORMS) >= 20, sorted(FORMS)


@pytest.mark.parametrize("name", list(FORMS))
def test_random_dicts_give_a_model_or_a_validation_error(name: str) -> None:
    form = FORMS[name]
    keys = st.sampled_from(list(form.model_fields)) | nasty_text

    @settings(max_examples=examples(12))
    @given(data=st.dictionaries(keys, json_values, max_size=len(form.model_fields) + 2))
    def check(data: dict[str, Any]) -> None:
        try:
            model = form.model_validate(data)
        except ValidationError as exc:
            assert exc.errors(), exc
            return
        again = form.model_validate_json(model.model_dump_json())
        assert again == model

    check()
