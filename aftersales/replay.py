"""What-if replay of ticket history against policy profiles (issues 3 and 12).

For every ticket the rules below get a due time under profile A and under
profile B (``Profile`` durations, working units on the ``WorkCalendar`` exactly
as the SLA clock computes them); each is then *met* (stopped at or before the
due time), *breached* (stopped later, or not stopped and the due time is before
``as_of``), *open* (not stopped, due after ``as_of``) or *n/a* (the profile has
no such timed rule, or the clock never started).

=========================  =====================  ======================
rule                       start                  stop
=========================  =====================  ======================
PRI-<PRIORITY>:response    created_at             first_response_at
INQ-CH-<CHANNEL>:response  created_at             first_response_at
INQ-CH-EMAIL:<priority>    created_at (email)     first_response_at
PRI-<PRIORITY>:resolution  created_at             resolved_at
ESC-TIMEOUT:<priority>     created_at             resolved_at
REP-1 (repairs)            created_at             first_response_at
CMP-1+CMP-2 (complaints)   created_at             first_response_at
CMP-3 (complaints)         first_response_at      resolved_at
=========================  =====================  ======================

REP-2..4 need work-order times that the canonical history does not carry and
are not replayed. Nothing is written (the working-period table, derived from
the calendar, may be extended). Over the stored tickets the database computes
the outcomes and sums them per (sop, channel, priority)
(:func:`aftersales.report_sql.replay_cells`); over a file pandas does
(:func:`aftersales.report_frame.replay_cells`); one assembly
(:func:`aftersales.report_model.assemble_replay`) makes the per-rule table.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from aftersales.calendar import WorkCalendar
from aftersales.policy import Profile
from aftersales.report_model import (
    CMP_CHAIN,
    FAMILIES,
    assemble_replay,
    family_rule,
    fmt_pct,
    limit_text,
    micros,
    month_bounds,
)

if TYPE_CHECKING:
    from datetime import datetime

    import pandas as pd

__all__ = ["CMP_CHAIN", "assignments", "limit_text", "replay", "replay_report"]


def assignments(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (ticket, rule): ``ticket_id, rule`` (which clocks a ticket runs)."""
    import pandas as pd

    rows = []
    for tid, sop, ch, pri in zip(
        df["ticket_id"].astype(str),
        df["sop"].astype(str),
        df["channel"].astype(str),
        df["priority"].astype(str),
        strict=True,
    ):
        for family, _, _ in FAMILIES:
            rule_id = family_rule(family, sop, ch, pri)
            if rule_id is not None:
                rows.append((tid, rule_id))
    return pd.DataFrame(rows, columns=["ticket_id", "rule"])


def replay(
    df: pd.DataFrame,
    profile_a: Profile,
    profile_b: Profile,
    *,
    as_of: datetime,
    calendar: WorkCalendar | None = None,
) -> dict[str, Any]:
    """Breaches and compliance per rule under A and B over a frame; pure (no database,
    no clock)."""
    from aftersales import report_frame

    calendar = calendar or WorkCalendar()
    cells, examples = report_frame.replay_cells(
        df, profile_a=profile_a, profile_b=profile_b, calendar=calendar, as_of=as_of
    )
    return assemble_replay(
        cells,
        examples,
        profile_a=profile_a,
        profile_b=profile_b,
        as_of=as_of,
        calendar=calendar,
    )


def replay_report(
    *,
    profile_a: Profile,
    profile_b: Profile,
    as_of: datetime,
    calendar: WorkCalendar,
    frame: pd.DataFrame | None = None,
    month: str | None = None,
    tz: str = "Asia/Shanghai",
    out_dir: Path | str | None = None,
    url: str | None = None,
) -> dict[str, Any]:
    """The replay over ``frame`` or the stored tickets (computed by the database),
    optionally only the tickets created in ``month``; the files when ``out_dir`` is given."""
    window = None
    if month is not None:
        start, stop = month_bounds(month, tz)
        window = (micros(start), micros(stop))
    if frame is None:
        from aftersales import report_sql
        from models.db import get_engine

        cells, examples = report_sql.replay_cells(
            get_engine(url),
            profile_a=profile_a,
            profile_b=profile_b,
            calendar=calendar,
            as_of=as_of,
            window=window,
        )
    else:
        from aftersales import report_frame

        if window is not None:
            frame = report_frame.in_window(frame, *window)
        cells, examples = report_frame.replay_cells(
            frame, profile_a=profile_a, profile_b=profile_b, calendar=calendar, as_of=as_of
        )
    data = assemble_replay(
        cells,
        examples,
        profile_a=profile_a,
        profile_b=profile_b,
        as_of=as_of,
        calendar=calendar,
    )
    if out_dir is not None:
        data["files"] = write_replay_report(data, out_dir)
    return data


def write_replay_report(data: dict[str, Any], out_dir: Path | str) -> dict[str, str]:
    import csv

    from aftersales import charts

    def slug(s: str) -> str:
        return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in s)

    folder = Path(out_dir) / f"replay-{slug(data['profile_a'])}-vs-{slug(data['profile_b'])}"
    folder.mkdir(parents=True, exist_ok=True)
    columns = [
        "rule",
        "limit_a",
        "limit_b",
        "met_a",
        "breached_a",
        "open_a",
        "compliance_a",
        "met_b",
        "breached_b",
        "open_b",
        "compliance_b",
        "newly_breached",
        "no_longer_breached",
    ]
    path = folder / f"{folder.name}.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=columns)
        w.writeheader()
        for r in data["rules"]:
            w.writerow({k: ("" if r[k] is None else r[k]) for k in columns})
    png = charts.replay_breaches(
        data["rules"], data["profile_a"], data["profile_b"], folder / f"{folder.name}.png"
    )
    summary = [
        {"": "tickets", "A": data["tickets"], "B": data["tickets"]},
        {
            "": "tickets with a breach",
            "A": data["tickets_breached_a"],
            "B": data["tickets_breached_b"],
        },
        {"": "breaches", "A": data["breaches_a"], "B": data["breaches_b"]},
    ]
    html = folder / f"{folder.name}.html"
    html.write_text(
        charts.page(
            f"What-if replay: A = {data['profile_a']}, B = {data['profile_b']} "
            f"(as of {data['as_of']})",
            [
                ("Summary", charts.table_html(summary)),
                ("Breaches per rule", charts.img_tag(png, "breaches per rule")),
                (
                    "Per rule",
                    charts.table_html(
                        data["rules"], {"compliance_a": fmt_pct, "compliance_b": fmt_pct}
                    ),
                ),
            ],
        ),
        encoding="utf-8",
    )
    return {"csv": str(path), "png": str(png), "html": str(html)}
