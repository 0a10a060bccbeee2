"""PNG charts and the HTML page of the reports (matplotlib, no display needed).

Charts are drawn on ``matplotlib.figure.Figure`` objects (Agg canvas), never
through pyplot's global state, so flows and tests can draw from any thread.
They take plain rows (the report's JSON rows), not DataFrames.
"""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def _save(fig: Figure, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    return path


def _none_to_nan(values: Iterable[Any]) -> list[float]:
    return [float("nan") if v is None else float(v) for v in values]


def _col(rows: Sequence[Mapping[str, Any]], key: str) -> list[Any]:
    return [r[key] for r in rows]


def quality_trend(
    trend: Sequence[Mapping[str, Any]], targets: Mapping[str, float], path: Path
) -> Path:
    """Response compliance and satisfaction per month, with their targets."""
    fig = Figure(figsize=(8, 4))
    ax = fig.add_subplot(1, 1, 1)
    months = _col(trend, "month")
    x = range(len(months))
    for col, label in (
        ("response_compliance", "response compliance"),
        ("fault_resolution_rate", "fault resolution rate"),
        ("complaint_on_time_rate", "complaint on-time rate"),
    ):
        ax.plot(x, [v * 100 for v in _none_to_nan(_col(trend, col))], marker="o", label=label)
    ax.axhline(
        targets["response_compliance"] * 100, ls="--", c="grey", lw=1, label="response target"
    )
    ax.set_ylabel("%")
    ax.set_ylim(0, 105)
    ax.set_xticks(list(x), months)
    ax.set_xlim(-0.5, len(months) - 0.5)
    ax2 = ax.twinx()
    ax2.plot(
        x,
        _none_to_nan(_col(trend, "satisfaction_avg")),
        marker="s",
        c="tab:purple",
        label="satisfaction (0-10)",
    )
    ax2.axhline(targets["satisfaction_avg"], ls=":", c="tab:purple", lw=1)
    ax2.set_ylim(0, 10.5)
    ax2.set_ylabel("satisfaction")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="lower left", fontsize=7)
    ax.set_title("Monthly quality trend (QA-2)")
    return _save(fig, path)


def compliance_vs_target(
    names: Sequence[str], values: Sequence[float | None], target: float, path: Path, title: str
) -> Path:
    """Horizontal bars (percent) per group with the target line; misses in red."""
    fig = Figure(figsize=(8, max(2.5, 0.35 * len(names) + 1)))
    ax = fig.add_subplot(1, 1, 1)
    vals = _none_to_nan(values)
    colors = ["tab:red" if v == v and v < target else "tab:green" for v in vals]
    ax.barh(list(names), [v * 100 if v == v else 0 for v in vals], color=colors)
    ax.axvline(target * 100, ls="--", c="black", lw=1, label=f"target {target * 100:g}%")
    ax.set_xlim(0, 105)
    ax.set_xlabel("%")
    ax.invert_yaxis()
    ax.legend(fontsize=7)
    ax.set_title(title)
    return _save(fig, path)


def top_bars(
    counts: Sequence[tuple[str, int]], path: Path, title: str, xlabel: str = "tickets"
) -> Path:
    """Horizontal bars of (name, count) pairs, first on top."""
    fig = Figure(figsize=(8, max(2.5, 0.35 * len(counts) + 1)))
    ax = fig.add_subplot(1, 1, 1)
    ax.barh([str(n) for n, _ in counts], [v for _, v in counts], color="tab:blue")
    ax.invert_yaxis()
    ax.set_xlabel(xlabel)
    ax.set_title(title)
    return _save(fig, path)


def weekly_speed(
    weekly: Sequence[Mapping[str, Any]], target_hours: float, limit_share: float, path: Path
) -> Path:
    """Average first response (h) and over-limit share per week."""
    fig = Figure(figsize=(9, 4))
    ax = fig.add_subplot(1, 1, 1)
    x = range(len(weekly))
    ax.plot(
        x,
        _none_to_nan(_col(weekly, "avg_first_response_hours")),
        marker="o",
        label="avg first response (h)",
    )
    ax.plot(
        x,
        _none_to_nan(_col(weekly, "avg_resolution_hours")),
        marker=".",
        alpha=0.6,
        label="avg resolution (h)",
    )
    ax.axhline(target_hours, ls="--", c="grey", lw=1, label=f"target {target_hours:g} h")
    ax.set_ylabel("hours")
    ax.set_xticks(list(x), _col(weekly, "week"), rotation=60, fontsize=7)
    ax2 = ax.twinx()
    ax2.bar(
        x,
        [v * 100 for v in _none_to_nan(_col(weekly, "over_limit_share"))],
        alpha=0.25,
        color="tab:red",
        label="over limit (%)",
    )
    ax2.axhline(limit_share * 100, ls=":", c="tab:red", lw=1)
    ax2.set_ylabel("over limit %")
    h1, l1 = ax.get_legend_handles_labels()
    h2, l2 = ax2.get_legend_handles_labels()
    ax.legend(h1 + h2, l1 + l2, loc="upper left", fontsize=7)
    ax.set_title("Weekly response speed (SPD-1)")
    return _save(fig, path)


def replay_breaches(
    per_rule: Sequence[Mapping[str, Any]], label_a: str, label_b: str, path: Path
) -> Path:
    """Grouped bars: breaches per rule under profile A and B."""
    fig = Figure(figsize=(9, max(3, 0.35 * len(per_rule) + 1)))
    ax = fig.add_subplot(1, 1, 1)
    y = list(range(len(per_rule)))
    ax.barh([i - 0.2 for i in y], _col(per_rule, "breached_a"), height=0.4, label=f"A: {label_a}")
    ax.barh([i + 0.2 for i in y], _col(per_rule, "breached_b"), height=0.4, label=f"B: {label_b}")
    ax.set_yticks(y, _col(per_rule, "rule"), fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("breached tickets")
    ax.legend(fontsize=7)
    ax.set_title("What-if replay: breaches per rule")
    return _save(fig, path)


# ------------------------------------------------------------------ HTML
def img_tag(path: Path, alt: str) -> str:
    data = base64.b64encode(Path(path).read_bytes()).decode("ascii")
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def table_html(rows: list[dict[str, Any]], fmt: dict[str, Any] | None = None) -> str:
    if not rows:
        return "<p><em>nothing to show</em></p>"
    fmt = fmt or {}
    cols = list(rows[0])
    head = "".join(f"<th>{html.escape(str(c))}</th>" for c in cols)
    body = []
    for r in rows:
        cells = []
        for c in cols:
            v = r[c]
            s = fmt[c](v) if c in fmt else ("-" if v is None else str(v))
            cells.append(f"<td>{html.escape(s)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def page(title: str, sections: list[tuple[str, str]]) -> str:
    parts = [
        "<!doctype html><html><head><meta charset='utf-8'>",
        f"<title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}"
        "table{border-collapse:collapse;margin:.5em 0}td,th{border:1px solid #ccc;"
        "padding:2px 8px;font-size:13px}th{background:#f3f3f3}img{max-width:100%}"
        ".miss{color:#b00}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for heading, content in sections:
        parts.append(f"<h2>{html.escape(heading)}</h2>{content}")
    parts.append("</body></html>")
    return "\n".join(parts)
