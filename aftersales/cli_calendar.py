"""``aftersales calendar``: the working-day calendar of a year and where each day came from."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

calendar_app = typer.Typer(
    no_args_is_help=True,
    help="The working-day calendar: holidays, make-up workdays (调休) and their sources.",
)


def _fail(msg: str, code: int = 2) -> None:
    typer.secho(f"error: {msg}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


@calendar_app.command("show")
def show(
    year: Annotated[int, typer.Argument(help="e.g. 2027", min=1, max=9998)],
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
    all_days: Annotated[
        bool, typer.Option("--all", help="every day, not only holidays and make-up workdays")
    ] = False,
    files: Annotated[
        list[Path] | None,
        typer.Option(
            "--file",
            help="a calendar file (or directory) to load besides AFTERSALES_CALENDAR_FILES, "
            "e.g. to check one before configuring it",
        ),
    ] = None,
) -> None:
    """List a year's holidays and make-up workdays with the source of each
    (file:<path>, chinese-calendar, holidays-package, weekend)."""
    from aftersales.calendar import CalendarFileError, CalendarYearNotCovered, WorkCalendar
    from aftersales.settings import get_settings

    try:
        cal = WorkCalendar.from_settings(get_settings(), extra_files=files or ())
    except CalendarFileError as exc:
        _fail(str(exc))
        return
    try:
        year_source = cal.year_source(year)
        days = cal.days_of_year(year, include_ordinary=all_days)
    except CalendarYearNotCovered as exc:
        _fail(str(exc))
        return
    if as_json:
        out = {**year_source.to_dict(), "days": [d.to_dict() for d in days]}
        typer.echo(json.dumps(out, ensure_ascii=False))
        return
    # an uncovered year's warning is logged once by the calendar (stderr)
    known = "known" if year_source.make_up_workdays_known else "UNKNOWN"
    typer.echo(f"{year}: {year_source.source} ({year_source.reference}); make-up workdays {known}")
    for d in days:
        working = "work" if d.working else "off"
        typer.echo(
            f"{d.date.isoformat()} {d.date.strftime('%a')}  {working:<4}  {d.kind.value:<15}  "
            f"{d.name or '-':<40}  {d.source}"
        )
