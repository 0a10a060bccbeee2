"""``aftersales calendar show YEAR``: a year's holidays and make-up workdays with their sources.

2027 is not covered by chinese-calendar 1.11: the days come from the ``holidays``
package (see tests/test_calendar.py for the worked-out dates), unless a calendar
file gives the year.  The file written here is a made-up arrangement.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from aftersales.cli import app
from aftersales.settings import reset_settings

runner = CliRunner()

CN_2027 = """\
year: 2027
source: test arrangement, not the State Council's
holidays:
  - {date: 2027-01-01, name: New Year's Day}
  - {from: 2027-02-05, to: 2027-02-12, name: Spring Festival}
workdays:
  - {date: 2027-02-13, name: Spring Festival}
"""


@pytest.fixture(autouse=True)
def clean_settings(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for name in ("AFTERSALES_CALENDAR_FILES", "AFTERSALES_CALENDAR_UNKNOWN_YEAR"):
        monkeypatch.delenv(name, raising=False)
    reset_settings()
    yield
    reset_settings()


@pytest.fixture
def cn_2027(tmp_path: Path) -> Path:
    path = tmp_path / "cn-2027.yaml"
    path.write_text(CN_2027, encoding="utf-8")
    return path


def show(*args: str) -> tuple[int, str, str]:
    res = runner.invoke(app, ["calendar", "show", *args])
    return res.exit_code, res.stdout, res.stderr


def test_show_2027_json_lists_the_holidays_package_days() -> None:
    code, out, _ = show("2027", "--json")
    assert code == 0, out
    data = json.loads(out)
    assert (data["year"], data["source"], data["make_up_workdays_known"]) == (
        2027,
        "holidays-package",
        False,
    )
    assert data["reference"].startswith("holidays ")
    assert "make-up workdays (调休) for 2027 are unknown" in data["warning"]
    days = data["days"]
    assert days[0] == {
        "date": "2027-01-01",
        "weekday": "Fri",
        "working": False,
        "kind": "holiday",
        "name": "New Year's Day",
        "source": "holidays-package",
    }
    spring = [d["date"] for d in days if "Spring Festival" in (d["name"] or "")]
    assert spring == [f"2027-02-{n:02d}" for n in range(6, 11)]
    assert {d["source"] for d in days} == {"holidays-package"}
    assert {d["kind"] for d in days} == {"holiday"}
    assert len(days) == 19


def test_show_2027_with_a_calendar_file_takes_its_days(
    cn_2027: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AFTERSALES_CALENDAR_FILES", str(cn_2027))
    reset_settings()
    code, out, _ = show("2027", "--json")
    assert code == 0, out
    data = json.loads(out)
    label = f"file:{cn_2027.absolute()}"
    assert (data["source"], data["reference"], data["make_up_workdays_known"], data["warning"]) == (
        label,
        "test arrangement, not the State Council's",
        True,
        None,
    )
    assert [(d["date"], d["kind"], d["source"]) for d in data["days"]] == [
        ("2027-01-01", "holiday", label),
        *[(f"2027-02-{n:02d}", "holiday", label) for n in range(5, 13)],
        ("2027-02-13", "make_up_workday", label),
    ]
    saturday = data["days"][-1]
    assert (saturday["weekday"], saturday["working"], saturday["name"]) == (
        "Sat",
        True,
        "Spring Festival",
    )


def test_show_file_option_adds_a_file_to_the_configured_ones(cn_2027: Path) -> None:
    code, out, _ = show("2027", "--json", "--file", str(cn_2027))
    assert code == 0, out
    assert json.loads(out)["source"] == f"file:{cn_2027.absolute()}"


def test_show_all_lists_every_day_with_weekend_and_weekday_sources() -> None:
    code, out, _ = show("2027", "--all", "--json")
    assert code == 0, out
    days = json.loads(out)["days"]
    assert len(days) == 365
    by_source: dict[str, int] = {}
    for d in days:
        by_source[d["source"]] = by_source.get(d["source"], 0) + 1
    # 2027 has 104 weekend days; 6 of the 19 holidays fall on one (02-06/07, 05-01/02, 10-02/03)
    assert by_source == {"holidays-package": 19, "weekend": 104 - 6, "weekday": 365 - 104 - 13}
    assert days[1] == {
        "date": "2027-01-02",
        "weekday": "Sat",
        "working": False,
        "kind": "weekend",
        "name": None,
        "source": "weekend",
    }


def test_show_text_for_a_chinese_calendar_year() -> None:
    code, out, _ = show("2026")
    assert code == 0, out
    lines = out.splitlines()
    assert lines[0].startswith("2026: chinese-calendar (chinese-calendar ")
    assert lines[0].endswith("make-up workdays known")
    (saturday,) = [line for line in lines if line.startswith("2026-02-14")]
    assert saturday.split() == [
        *("2026-02-14", "Sat", "work", "make_up_workday"),
        *("Spring", "Festival", "chinese-calendar"),
    ]
    assert len(lines) == 1 + 33 + 6


def test_show_uncovered_year_in_error_mode_fails_unless_a_file_gives_it(
    cn_2027: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AFTERSALES_CALENDAR_UNKNOWN_YEAR", "error")
    reset_settings()
    code, out, err = show("2027")
    assert code == 2
    assert out == ""
    assert "no data for year 2027" in err and "AFTERSALES_CALENDAR_FILES" in err
    code, out, _ = show("2027", "--file", str(cn_2027))
    assert code == 0, out
    assert out.startswith(f"2027: file:{cn_2027.absolute()}")


def test_show_bad_calendar_file_names_file_field_and_rule(tmp_path: Path) -> None:
    bad = tmp_path / "cn-2027.yaml"
    bad.write_text(CN_2027.replace("2027-02-13", "2027-02-15"), encoding="utf-8")
    code, out, err = show("2027", "--file", str(bad))
    assert code == 2
    assert out == ""
    assert str(bad.absolute()) in err
    assert "workdays[0].date: a make-up workday must fall on a weekend" in err
    assert "2027-02-15 is a Monday" in err
