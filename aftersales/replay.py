"""What-if replay of ticket history against policy profiles (issue 3 §4).

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
are not replayed. Nothing is written to the database: the replay reads tickets
into a DataFrame and computes over it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import numpy as np
import pandas as pd

from aftersales.calendar import WorkCalendar
from aftersales.policy import Profile
from aftersales.quality import VectorCalendar, rule_due

NA, MET, BREACHED, OPEN = 0, 1, 2, 3
CMP_CHAIN = "CMP-1+CMP-2"


def assignments(df: pd.DataFrame) -> pd.DataFrame:
    """One row per (ticket, rule): ``ticket_id, rule, start, stop``."""
    created, first, resolved = df["created_at"], df["first_response_at"], df["resolved_at"]
    pri = df["priority"].astype(str)
    ch = df["channel"].astype(str)
    tid = df["ticket_id"].astype(str)

    def part(mask: Any, rule: Any, start: pd.Series, stop: pd.Series) -> pd.DataFrame:
        m = np.ones(len(df), dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
        r = rule if isinstance(rule, str) else np.asarray(rule, dtype=object)[m]
        return pd.DataFrame(
            {
                "ticket_id": tid.to_numpy()[m],
                "rule": r,
                "start": start.to_numpy()[m],
                "stop": stop.to_numpy()[m],
            }
        )

    ch_rule = np.where(
        ch.eq("email"), "INQ-CH-EMAIL:" + pri, "INQ-CH-" + ch.str.upper() + ":response"
    )
    sop = df["sop"]
    parts = [
        part(None, ("PRI-" + pri.str.upper() + ":response").to_numpy(), created, first),
        part(None, ch_rule, created, first),
        part(None, ("PRI-" + pri.str.upper() + ":resolution").to_numpy(), created, resolved),
        part(None, ("ESC-TIMEOUT:" + pri).to_numpy(), created, resolved),
        part((sop == "repair").to_numpy(), "REP-1", created, first),
        part((sop == "complaint").to_numpy(), CMP_CHAIN, created, first),
        part((sop == "complaint").to_numpy(), "CMP-3", first, resolved),
    ]
    out = pd.concat(parts, ignore_index=True)
    for c in ("start", "stop"):
        out[c] = pd.to_datetime(out[c], utc=True).astype("datetime64[ns, UTC]")
    return out


def _timed(profile: Profile, rule_id: str) -> bool:
    r = profile.rules.get(rule_id)
    return r is not None and r.duration is not None and r.unit is not None


def limit_text(profile: Profile, rule_id: str) -> str:
    ids = ["CMP-1", "CMP-2"] if rule_id == CMP_CHAIN else [rule_id]
    texts = []
    for i in ids:
        r = profile.rules.get(i)
        if r is None or r.duration is None:
            return "-"
        texts.append(f"{r.duration:g} {r.unit}")
    return " + ".join(texts)


def dues(a: pd.DataFrame, profile: Profile, vcal: VectorCalendar) -> tuple[pd.Series, list[str]]:
    """Due time per assignment under ``profile`` (NaT where the rule is absent)."""
    due = pd.Series(pd.NaT, index=a.index, dtype="datetime64[ns, UTC]")
    missing: list[str] = []
    for rule_id, idx in a.groupby("rule", sort=True).groups.items():
        starts = a.loc[idx, "start"]
        if rule_id == CMP_CHAIN:
            if not (_timed(profile, "CMP-1") and _timed(profile, "CMP-2")):
                missing.append(rule_id)
                continue
            d = rule_due(profile, "CMP-2", rule_due(profile, "CMP-1", starts, vcal), vcal)
        elif _timed(profile, str(rule_id)):
            d = rule_due(profile, str(rule_id), starts, vcal)
        else:
            missing.append(str(rule_id))
            continue
        due.loc[idx] = d.astype("datetime64[ns, UTC]")
    return due, missing


def status(a: pd.DataFrame, due: pd.Series, as_of: datetime) -> np.ndarray:
    stop = a["stop"]
    has_stop = stop.notna().to_numpy()
    has_due = due.notna().to_numpy()
    late = (stop > due).to_numpy()
    past = (due <= pd.Timestamp(as_of)).to_numpy()
    out = np.full(len(a), NA, dtype=np.int8)
    out[has_due & has_stop & ~late] = MET
    out[has_due & has_stop & late] = BREACHED
    out[has_due & ~has_stop & past] = BREACHED
    out[has_due & ~has_stop & ~past] = OPEN
    return out


def replay(
    df: pd.DataFrame,
    profile_a: Profile,
    profile_b: Profile,
    *,
    as_of: datetime,
    calendar: WorkCalendar | None = None,
) -> dict[str, Any]:
    """Breaches and compliance per rule under A and B; pure (no database, no clock)."""
    vcal = VectorCalendar(calendar or WorkCalendar())
    a = assignments(df)
    due_a, miss_a = dues(a, profile_a, vcal)
    due_b, miss_b = dues(a, profile_b, vcal)
    sa, sb = status(a, due_a, as_of), status(a, due_b, as_of)
    f = pd.DataFrame(
        {
            "rule": a["rule"],
            "met_a": sa == MET,
            "breached_a": sa == BREACHED,
            "open_a": sa == OPEN,
            "met_b": sb == MET,
            "breached_b": sb == BREACHED,
            "open_b": sb == OPEN,
            "newly_breached": (sb == BREACHED) & (sa != BREACHED) & (sa != NA),
            "no_longer_breached": (sa == BREACHED) & (sb != BREACHED) & (sb != NA),
            "ticket_id": a["ticket_id"],
        }
    )
    sums = f.drop(columns="ticket_id").groupby("rule", sort=True).sum()
    rules = []
    for rule_id, r in sums.iterrows():
        ma, ba, mb, bb = (int(r[k]) for k in ("met_a", "breached_a", "met_b", "breached_b"))
        rules.append(
            {
                "rule": str(rule_id),
                "limit_a": limit_text(profile_a, str(rule_id)),
                "limit_b": limit_text(profile_b, str(rule_id)),
                "met_a": ma,
                "breached_a": ba,
                "open_a": int(r["open_a"]),
                "compliance_a": ma / (ma + ba) if ma + ba else None,
                "met_b": mb,
                "breached_b": bb,
                "open_b": int(r["open_b"]),
                "compliance_b": mb / (mb + bb) if mb + bb else None,
                "newly_breached": int(r["newly_breached"]),
                "no_longer_breached": int(r["no_longer_breached"]),
            }
        )
    any_a = f.loc[f["breached_a"], "ticket_id"].nunique()
    any_b = f.loc[f["breached_b"], "ticket_id"].nunique()
    changed = f.loc[f["newly_breached"] | f["no_longer_breached"], "ticket_id"]
    return {
        "profile_a": profile_a.name,
        "profile_b": profile_b.name,
        "as_of": pd.Timestamp(as_of).isoformat(),
        "tickets": int(len(df)),
        "tickets_breached_a": int(any_a),
        "tickets_breached_b": int(any_b),
        "breaches_a": int(f["breached_a"].sum()),
        "breaches_b": int(f["breached_b"].sum()),
        "tickets_changed": int(changed.nunique()),
        "examples_changed": sorted(changed.unique().tolist())[:10],
        "rules": rules,
        "missing_rules": {"a": sorted(miss_a), "b": sorted(miss_b)},
    }


def write_replay_report(data: dict[str, Any], out_dir: Any) -> dict[str, str]:
    from pathlib import Path

    from aftersales import charts
    from aftersales.quality import fmt_pct

    def slug(s: str) -> str:
        return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in s)

    folder = Path(out_dir) / f"replay-{slug(data['profile_a'])}-vs-{slug(data['profile_b'])}"
    folder.mkdir(parents=True, exist_ok=True)
    per_rule = pd.DataFrame(
        data["rules"],
        columns=[
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
        ],
    )
    csv = folder / f"{folder.name}.csv"
    per_rule.to_csv(csv, index=False)
    png = charts.replay_breaches(
        per_rule, data["profile_a"], data["profile_b"], folder / f"{folder.name}.png"
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
    return {"csv": str(csv), "png": str(png), "html": str(html)}
