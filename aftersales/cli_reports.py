"""CLI commands of issues 3 and 12: ``import``, ``report quality``, ``report speed``, ``replay``.

Registered on the main ``aftersales`` app by :func:`register` (see aftersales/cli.py).
Exit codes: 0 success; 1 ``import`` rejected some rows (the good ones were
imported) or ``--input`` had bad rows (skipped); 2 a usage or file error.

Over the stored tickets the reports are computed by the database; the schema is
brought up to date only when it is older than the report queries need (a cold
``report quality --json`` loads neither Alembic, pandas nor matplotlib). With
``--json`` the report files are written only when ``--out`` is given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

report_app = typer.Typer(
    no_args_is_help=True, help="Quality (QA-1..4) and speed (SPD-1/2) reports."
)


def _fail(msg: str, code: int = 2) -> None:
    typer.secho(f"error: {msg}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def _print_row_errors(errors: list[Any], limit: int = 200) -> None:
    for e in errors[:limit]:
        typer.secho(str(e), err=True, fg=typer.colors.YELLOW)
    if len(errors) > limit:
        typer.secho(f"... and {len(errors) - limit} more", err=True, fg=typer.colors.YELLOW)


def _frame_or_database(
    input_file: Path | None, mapping: Path | None, scale: int | None
) -> tuple[Any, list[Any]]:
    """``--input FILE``: the file's good rows as a frame and its bad rows (printed), nothing
    stored; without it: (None, []) — the stored tickets, the schema brought up to date."""
    if input_file is not None:
        frame, errors = _read_input(input_file, mapping, scale)
        _print_row_errors(errors)
        return frame, errors
    _ensure_schema()
    return None, []


def _ensure_schema() -> None:
    """Run the migrations only when the database is older than the report queries need."""
    from aftersales.report_sql import schema_ready
    from models.db import get_engine, init_db

    if not schema_ready(get_engine()):
        init_db()


def _out_dir(out: Path | None, as_json: bool) -> Path | None:
    """Where the report files go: ``--out``; else the reports folder, unless ``--json``."""
    if out is not None:
        return out
    if as_json:
        return None
    from aftersales.settings import get_settings

    return get_settings().reports_dir


def _profile(name: str | None) -> Any:
    """The profile whose durations and targets a report uses. Its step references are
    not checked against the SOP step catalogue (that is the flows' business, and it
    would load the whole step model into a report command)."""
    from aftersales.policy import PolicyError, load_profile
    from aftersales.settings import get_settings

    s = get_settings()
    try:
        if name:
            return load_profile(name, check_steps=False)
        return load_profile(
            str(s.policy_file) if s.policy_file else s.policy_profile, check_steps=False
        )
    except PolicyError as exc:
        _fail(str(exc))
        raise


def _read_input(path: Path, mapping: Path | None, scale: int | None) -> tuple[Any, list[Any]]:
    from aftersales.history import HistoryFileError, Mapping, load_input

    try:
        return load_input(path, mapping=Mapping.load(mapping), scale=scale)
    except HistoryFileError as exc:
        _fail(str(exc))
        raise


# ------------------------------------------------------------------ import
def import_cmd(
    file: Annotated[
        Path, typer.Argument(help="CSV, XLSX or Parquet export with the canonical columns")
    ],
    mapping: Annotated[
        Path | None, typer.Option("--mapping", help="YAML: canonical column -> source column")
    ] = None,
    scale: Annotated[
        int | None, typer.Option("--scale", help="satisfaction scale of the file: 10 or 5 (x2)")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """Import ticket history (CSV/XLSX/Parquet), streamed in chunks. Bad rows are listed
    with their line; the good rows are stored in one transaction; the same file twice
    adds nothing. A progress bar shows on a terminal.
    Exit 0 all rows good, 1 some rows rejected, 2 the file could not be used."""
    import sys

    from aftersales.clock import get_clock
    from aftersales.history import HistoryFileError, Mapping, import_file
    from models.db import init_db

    if scale not in (None, 5, 10):
        _fail("--scale must be 5 or 10")
    init_db()
    # the bar goes to stderr, and only when stdout is a terminal (never into piped output)
    with typer.progressbar(
        length=1,
        label=f"importing {file.name}",
        file=sys.stderr,
        hidden=not sys.stdout.isatty(),
        show_percent=True,
    ) as bar:

        def progress(done: int, total: int) -> None:
            bar.length = max(total, 1)
            bar.update(done - bar.pos)

        try:
            res = import_file(
                file,
                mapping=Mapping.load(mapping),
                scale=scale,
                now=get_clock().now(),
                progress=progress,
            )
        except HistoryFileError as exc:
            _fail(str(exc))
            return
    if as_json:
        typer.echo(json.dumps(res.to_dict(), ensure_ascii=False))
    else:
        _print_row_errors(res.errors)
        if res.errors_total > len(res.errors):
            typer.secho(
                f"... {res.errors_total - len(res.errors)} more row errors not listed "
                "(AFTERSALES_IMPORT_MAX_ERRORS)",
                err=True,
                fg=typer.colors.YELLOW,
            )
        if res.already_imported:
            typer.echo(f"{file.name}: already imported (sha256 {res.sha256[:12]}); nothing added")
        else:
            typer.echo(
                f"{file.name}: {res.rows_read} rows read, {res.imported} imported, "
                f"{res.skipped_existing} already stored, {res.rejected} rejected"
            )
    if res.rejected:
        raise typer.Exit(1)


def register(app: typer.Typer) -> None:
    """Add the issue-3 commands to the main CLI app."""
    app.command("import")(import_cmd)
    app.add_typer(report_app, name="report")
    app.command("replay")(replay_cmd)


# ------------------------------------------------------------------ report quality
@report_app.command("quality")
def report_quality(
    month: Annotated[
        str | None, typer.Option(help="YYYY-MM (Asia/Shanghai); default: the previous month")
    ] = None,
    input_file: Annotated[
        Path | None, typer.Option("--input", help="compute over this CSV/XLSX without storing it")
    ] = None,
    mapping: Annotated[Path | None, typer.Option("--mapping", help="column mapping YAML")] = None,
    scale: Annotated[int | None, typer.Option("--scale", help="satisfaction scale 10 or 5")] = None,
    profile: Annotated[str | None, typer.Option(help="policy profile name or YAML file")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="reports folder")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """Monthly quality evaluation (QA-1..4): metrics, misses, commendations, CSV + HTML + charts."""
    from aftersales.clock import get_clock
    from aftersales.quality import fmt_num, fmt_pct, parse_month, previous_month, quality_report
    from aftersales.settings import get_settings

    settings = get_settings()
    month = month or previous_month(get_clock().now(), settings.timezone)
    try:
        parse_month(month)
    except ValueError as exc:
        _fail(f"--month: {exc}")
    prof = _profile(profile)
    frame, errors = _frame_or_database(input_file, mapping, scale)
    data = quality_report(month, profile=prof, frame=frame, out_dir=_out_dir(out, as_json))
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False))
    else:
        typer.echo(f"Service quality {month} ({data['tickets']} tickets, profile {prof.name})")
        t = data["targets"]
        typer.echo(
            f"  response compliance   {fmt_pct(data['response_compliance']):>7}  "
            f"(target ≥ {fmt_pct(t['response_compliance'])})"
        )
        typer.echo(f"  fault resolution rate {fmt_pct(data['fault_resolution_rate']):>7}")
        typer.echo(f"  complaint on-time     {fmt_pct(data['complaint_on_time_rate']):>7}")
        typer.echo(
            f"  satisfaction          {fmt_num(data['satisfaction_avg']):>7}  "
            f"(target ≥ {t['satisfaction_avg']:g})"
        )
        for m in data["misses"]:
            top = ", ".join(
                f"{dim} {lst[0]['name']} ({lst[0]['failing']})"
                for dim, lst in m["contributors"].items()
                if lst
            )
            typer.echo(f"  MISS {m['metric']}: largest contributors {top}")
        for c in data["commendations"]["teams"]:
            typer.echo(f"  commend team {c['team']} ({fmt_num(c['satisfaction_avg'])})")
        for c in data["commendations"]["handlers"]:
            typer.echo(f"  commend handler {c['handler']} ({fmt_num(c['satisfaction_avg'])})")
        if "files" in data:
            typer.echo(f"  report: {data['files']['html']}")
    if errors:
        raise typer.Exit(1)


# ------------------------------------------------------------------ report speed
@report_app.command("speed")
def report_speed(
    months: Annotated[int, typer.Option(help="how many months back (SPD-1: 3)")] = 3,
    end: Annotated[
        str | None, typer.Option(help="last month YYYY-MM (default: the previous month)")
    ] = None,
    input_file: Annotated[
        Path | None, typer.Option("--input", help="compute over this CSV/XLSX without storing it")
    ] = None,
    mapping: Annotated[Path | None, typer.Option("--mapping", help="column mapping YAML")] = None,
    scale: Annotated[int | None, typer.Option("--scale", help="satisfaction scale 10 or 5")] = None,
    limit_hours: Annotated[
        float | None, typer.Option(help="response limit in hours (default: the profile's, 4)")
    ] = None,
    profile: Annotated[str | None, typer.Option(help="policy profile name or YAML file")] = None,
    out: Annotated[Path | None, typer.Option("--out", help="reports folder")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """Response-speed diagnosis (SPD-1/2): averages, over-limit share, top-3 types, weekly chart."""
    from aftersales.report_model import fmt_num, fmt_pct, parse_month
    from aftersales.speed import speed_report

    if months < 1:
        _fail("--months must be >= 1")
    if end is not None:
        try:
            parse_month(end)
        except ValueError as exc:
            _fail(f"--end: {exc}")
    if limit_hours is not None and limit_hours <= 0:
        _fail("--limit-hours must be > 0")
    prof = _profile(profile)
    frame, errors = _frame_or_database(input_file, mapping, scale)
    data = speed_report(
        profile=prof,
        months=months,
        end=end,
        limit_hours=limit_hours,
        frame=frame,
        out_dir=_out_dir(out, as_json),
    )
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False))
    else:
        typer.echo(
            f"Response speed {data['first_month']}..{data['end']} ({data['tickets']} tickets, "
            f"profile {prof.name})"
        )
        typer.echo(f"  avg first response  {fmt_num(data['avg_first_response_hours'])} h")
        typer.echo(f"  avg resolution      {fmt_num(data['avg_resolution_hours'])} h")
        typer.echo(f"  over {data['limit_hours']:g} h          {fmt_pct(data['over_limit_share'])}")
        for c in data["top_categories"]:
            typer.echo(f"  top type {c['category']}: {c['tickets']} tickets")
        for c in data["comparisons"]:
            state = {True: "met", False: "MISSED", None: "n/a"}[c["met"]]
            typer.echo(f"  SPD-2 {c['metric']}: {state} (target {c['target']:g})")
        if "files" in data:
            typer.echo(f"  report: {data['files']['html']}")
    if errors:
        raise typer.Exit(1)


# ------------------------------------------------------------------ replay
def replay_cmd(
    profile: Annotated[str, typer.Option("--profile", help="profile B: the changed policy")],
    against: Annotated[
        str | None, typer.Option("--against", help="profile A (default: the current profile)")
    ] = None,
    input_file: Annotated[
        Path | None, typer.Option("--input", help="replay this CSV/XLSX instead of stored tickets")
    ] = None,
    mapping: Annotated[Path | None, typer.Option("--mapping", help="column mapping YAML")] = None,
    month: Annotated[
        str | None, typer.Option(help="only tickets created in this month (YYYY-MM)")
    ] = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="ISO 8601 instant for unstopped clocks (default: now)"),
    ] = None,
    out: Annotated[Path | None, typer.Option("--out", help="reports folder")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """What-if: replay stored or imported tickets against profile B (and A); nothing is changed."""
    from datetime import datetime

    from aftersales.calendar import WorkCalendar
    from aftersales.clock import get_clock
    from aftersales.replay import replay_report
    from aftersales.report_model import fmt_pct, parse_month
    from aftersales.settings import get_settings

    settings = get_settings()
    prof_b = _profile(profile)
    prof_a = _profile(against)
    if as_of is None:
        when = get_clock().now()
    else:
        try:
            when = datetime.fromisoformat(as_of)
        except ValueError:
            _fail(f"--as-of: {as_of!r} is not ISO 8601")
            return
        if when.tzinfo is None:
            _fail("--as-of: needs a UTC offset, e.g. 2026-11-01T00:00:00+08:00")
    if month is not None:
        try:
            parse_month(month)
        except ValueError as exc:
            _fail(f"--month: {exc}")
    errors: list[Any] = []
    frame = None
    if input_file is not None:
        frame, errors = _read_input(input_file, mapping, None)
        _print_row_errors(errors)
    else:
        _ensure_schema()
    data = replay_report(
        profile_a=prof_a,
        profile_b=prof_b,
        as_of=when,
        calendar=WorkCalendar.from_settings(settings),
        frame=frame,
        month=month,
        tz=settings.timezone,
        out_dir=_out_dir(out, as_json),
    )
    if as_json:
        typer.echo(json.dumps(data, ensure_ascii=False))
    else:
        typer.echo(
            f"Replay of {data['tickets']} tickets: A = {data['profile_a']}, "
            f"B = {data['profile_b']} (as of {data['as_of']})"
        )
        typer.echo(
            f"{'rule':<26} {'A limit':<16} {'B limit':<16} {'A breach':>8} {'B breach':>8}"
            f" {'A ok':>7} {'B ok':>7}"
        )
        for r in data["rules"]:
            typer.echo(
                f"{r['rule']:<26} {r['limit_a']:<16} {r['limit_b']:<16} {r['breached_a']:>8} "
                f"{r['breached_b']:>8} {fmt_pct(r['compliance_a']):>7} "
                f"{fmt_pct(r['compliance_b']):>7}"
            )
        typer.echo(
            f"tickets with a breach: A {data['tickets_breached_a']}, "
            f"B {data['tickets_breached_b']}; changed: {data['tickets_changed']}"
        )
        if "files" in data:
            typer.echo(f"report: {data['files']['html']}")
    if errors:
        raise typer.Exit(1)
