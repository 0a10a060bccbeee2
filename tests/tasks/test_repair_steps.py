"""Pure parts of the repair steps: nearest engineer by great-circle distance (REP-2),
VIP to a senior first (ASSIGN-1), warranty from the purchase date (REP-1)."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest

from models.entities import Customer, Engineer, Skill
from tasks.repair import candidates_for, nearest_engineer, warranty_until

NOW = datetime(2026, 11, 23, tzinfo=UTC)
SHANGHAI = Customer(
    id="c", name="n", phone="13800000000", city="上海", lat=31.2304, lon=121.4737, created_at=NOW
)


def eng(id_: str, city: str, lat: float, lon: float, senior: bool = False) -> Engineer:
    return Engineer(
        id=id_, name=id_, skill=Skill.HARDWARE, city=city, lat=lat, lon=lon, senior=senior
    )


ENGINEERS = [
    eng("suzhou", "苏州", 31.2990, 120.5853),
    eng("pudong", "上海", 31.2397, 121.4998),
    eng("hangzhou", "杭州", 30.2460, 120.2100, senior=True),
]


def test_nearest_engineer_by_great_circle_distance_REP_2() -> None:
    best, km = nearest_engineer(SHANGHAI, ENGINEERS)
    assert best is not None and best.id == "pudong"
    assert km == pytest.approx(2.7, abs=0.2)


def test_no_engineer_available_gives_none_REP_2() -> None:
    assert nearest_engineer(SHANGHAI, []) == (None, None)


def test_vip_goes_to_a_senior_in_the_same_city_first_ASSIGN_1() -> None:
    vip = SHANGHAI.model_copy(update={"vip": True})
    # the only senior is in another city: seniority never costs the same-city limit
    best, _ = nearest_engineer(vip, candidates_for(vip, ENGINEERS, "上海"))
    assert best is not None and best.id == "pudong"
    senior_local = eng("xuhui-senior", "上海", 31.1880, 121.4365, senior=True)
    best, _ = nearest_engineer(vip, candidates_for(vip, [*ENGINEERS, senior_local], "上海"))
    assert best is not None and best.id == "xuhui-senior"
    # an ordinary customer gets the nearest, senior or not
    best, _ = nearest_engineer(
        SHANGHAI, candidates_for(SHANGHAI, [*ENGINEERS, senior_local], "上海")
    )
    assert best is not None and best.id == "pudong"


@pytest.mark.parametrize(
    ("purchase", "months", "until"),
    [
        (date(2026, 3, 1), 12, date(2027, 3, 1)),
        (date(2024, 2, 29), 12, date(2025, 2, 28)),
        (None, 12, None),
    ],
)
def test_warranty_runs_from_the_purchase_date_REP_1(
    purchase: date | None, months: int, until: date | None
) -> None:
    assert warranty_until(purchase, months) == until
