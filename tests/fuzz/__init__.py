"""Fuzzing (issue 11 §8): hypothesis on intake, every step form, the policy loader, the
history import and the calendar; schemathesis against the HTTP API's schema.

Invariants: no 5xx, no traceback (only the module's own refusal, naming the field and
the rule), nothing stored for a rejected input, every accepted input round-trips.

Profiles (``HYPOTHESIS_PROFILE``): ``ci`` (the default: bounded and derandomized, so CI
is repeatable and the whole package stays under 3 minutes on a busy box) and ``long``
(a long run by hand: ``HYPOTHESIS_PROFILE=long pytest tests/fuzz``). The tests share one
database per test across examples on purpose (a rejected input must leave the row count
unchanged, whatever the earlier examples stored), hence the function-scoped-fixture
health check is off.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

_SUPPRESS = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]

settings.register_profile(
    "ci",
    max_examples=30,
    deadline=None,
    derandomize=True,
    database=None,
    print_blob=True,
    suppress_health_check=_SUPPRESS,
)
settings.register_profile(
    "long",
    max_examples=5_000,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SUPPRESS,
)
PROFILE = os.environ.get("HYPOTHESIS_PROFILE", "ci")
settings.load_profile(PROFILE)


def examples(ci: int) -> int:
    """``ci`` examples under the ci profile (a test with many parametrized cases runs
    fewer each), the profile's own number otherwise."""
    return ci if PROFILE == "ci" else settings.get_profile(PROFILE).max_examples


# ---------------------------------------------------------------- shared strategies
from hypothesis import strategies as st  # noqa: E402

#: text with lone surrogates, NULs, control and wide characters
nasty_text = st.text(
    alphabet=st.characters(codec=None, categories=None, exclude_categories=()), max_size=40
)
#: strings that once broke a parser: extreme or odd date-times, number-like words
odd_strings = st.sampled_from(
    [
        "",
        " ",
        "9999-12-31T23:59:59-12:00",
        "0001-01-01T00:00:00+14:00",
        "0001-01-01",
        "9999-12-31",
        "2026-02-30T09:00:00+08:00",
        "2026-11-23T09:00:00",
        "2026-11-23T09:00:00+08:00",
        "2026-11-23T25:00:00Z",
        "1970-01-01T00:00:00Z",
        "1e309",
        "-1e309",
        "Infinity",
        "NaN",
        "-0",
        "\ud800",
        "a\x00b",
        "phone",
        "email",
        "social",
        "repair",
        "urgent",
        "true",
        "null",
    ]
)
#: scalars JSON (as Python reads it) can carry, incl. huge ints and inf/nan floats
json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.just(10**400),
    st.floats(allow_nan=True, allow_infinity=True),
    nasty_text,
    odd_strings,
)
#: any JSON value (lists and objects of the above, a few levels deep)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(nasty_text, inner, max_size=4)
    ),
    max_leaves=8,
)
