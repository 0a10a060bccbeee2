"""The ``aftersales`` command line."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__)
clock_app = typer.Typer(no_args_is_help=True, help="The durable SLA clock.")
db_app = typer.Typer(no_args_is_help=True, help="Database schema (Alembic).")
policy_app = typer.Typer(no_args_is_help=True, help="Policy profiles.")
app.add_typer(clock_app, name="clock")
app.add_typer(db_app, name="db")
app.add_typer(policy_app, name="policy")
privacy_app = typer.Typer(no_args_is_help=True, help="Personal data (PRIV-1/PRIV-2).")
app.add_typer(privacy_app, name="privacy")


@app.callback()
def _main() -> None:
    """After-sales service SOPs on Prefect."""
    from aftersales.privacy import install_log_masking

    install_log_masking(("aftersales", "prefect", "uvicorn"))


def _fail(msg: str, code: int = 2) -> None:
    typer.secho(f"error: {msg}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


# ------------------------------------------------------------------ deadline
@app.command()
def deadline(
    rule: Annotated[str, typer.Argument(help="rule id, e.g. REP-2:same-city")],
    start: Annotated[str, typer.Option(help="ISO 8601 start with offset")],
    profile: Annotated[str | None, typer.Option(help="profile name or YAML file")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """Explain a deadline: due time and how it was computed."""
    from aftersales.calendar import CalendarFileError, CalendarYearNotCovered, WorkCalendar
    from aftersales.policy import PolicyError, UnknownRuleError, get_profile
    from aftersales.settings import get_settings

    settings = get_settings()
    try:
        prof = get_profile(profile or settings.policy_profile)
        r = prof.rule(rule)
    except (PolicyError, UnknownRuleError) as exc:
        _fail(str(exc))
        return
    if r.duration is None or r.unit is None:
        _fail(f"rule {rule} ({r.kind}) has no deadline: {r.note}")
        return
    try:
        t0 = datetime.fromisoformat(start)
    except ValueError:
        _fail(f"--start: {start!r} is not ISO 8601 (e.g. 2026-11-23T10:00:00+08:00)")
        return
    if t0.tzinfo is None:
        _fail("--start: needs a UTC offset, e.g. 2026-11-23T10:00:00+08:00")
    cal = WorkCalendar.from_settings(settings)
    try:
        exp = cal.explain(t0, r.duration, r.unit)
    except (CalendarYearNotCovered, CalendarFileError) as exc:
        _fail(str(exc))
        return
    remind = prof.remind_before(r)
    if as_json:
        out = {
            "rule": r.id,
            "clause": r.clause,
            "profile": prof.name,
            **exp.to_dict(),
            "remind_at": (exp.due - remind).isoformat() if remind else None,
            "on_breach": r.on_breach,
            "escalate_to": r.escalate_to,
        }
        out["start"] = exp.start.isoformat()
        out["due"] = exp.due.isoformat()
        typer.echo(json.dumps(out, ensure_ascii=False))
        return
    typer.echo(f"{r.id} ({prof.name}): {r.duration:g} {r.unit} — {r.starts} → {r.stops}")
    typer.echo(f"start  {exp.start.isoformat()}")
    typer.echo(f"due    {exp.due.isoformat()}")
    if remind:
        typer.echo(f"remind {(exp.due - remind).isoformat()} (REM-1)")
    for line in exp.lines():
        typer.echo(f"  {line}")


# ------------------------------------------------------------------ intake
@app.command()
def intake(
    channel: Annotated[str | None, typer.Option(help="phone | online | email | social")] = None,
    name: Annotated[str | None, typer.Option(help="customer name")] = None,
    contact: Annotated[str | None, typer.Option(help="phone or email")] = None,
    description: Annotated[str | None, typer.Option(help="the problem")] = None,
    intake_id: Annotated[str | None, typer.Option(help="call/chat/mail/post id")] = None,
    customer_id: Annotated[str | None, typer.Option()] = None,
    product_model: Annotated[str, typer.Option()] = "",
    purchase_date: Annotated[str | None, typer.Option(help="YYYY-MM-DD")] = None,
    sop: Annotated[str, typer.Option(help="inquiry | repair")] = "inquiry",
    email_grade: Annotated[str | None, typer.Option(help="urgent | important | normal")] = None,
    public: Annotated[bool, typer.Option("--public", help="public social post")] = False,
    safety_risk: Annotated[bool, typer.Option("--safety-risk")] = False,
    payload_file: Annotated[
        Path | None, typer.Option("--payload", help="JSON payload file ('-' for stdin)")
    ] = None,
    no_event: Annotated[
        bool, typer.Option("--no-event", help="store only; the SLA service sends the start event")
    ] = False,
) -> None:
    """Open a ticket from an intake (phone, online, email, social) and start its SOP."""
    from aftersales.clock import get_clock
    from aftersales.intake import IntakeError, accept_intake, parse_payload
    from aftersales.runtime import deadlines, send_outbox_events
    from models.db import init_db

    data: dict[str, Any]
    if payload_file is not None:
        raw = sys.stdin.read() if str(payload_file) == "-" else payload_file.read_text()
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as exc:
            _fail(f"--payload: not JSON ({exc})")
            return
    else:
        data = {
            k: v
            for k, v in {
                "channel": channel,
                "customer_name": name,
                "contact": contact,
                "description": description,
                "intake_id": intake_id,
                "customer_id": customer_id,
                "product_model": product_model,
                "purchase_date": purchase_date,
                "sop": sop,
                "email_grade": email_grade,
                "is_public": public,
                "safety_risk": safety_risk,
            }.items()
            if v is not None
        }
    try:
        payload = parse_payload(data)
    except IntakeError as exc:
        for f, r in exc.errors:
            typer.secho(f"error: {f}: {r}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    init_db()
    try:
        result = accept_intake(
            payload,
            ctx=deadlines(),
            now=get_clock().now(),
            send=None if no_event else send_outbox_events,
        )
    except IntakeError as exc:
        for f, r in exc.errors:
            typer.secho(f"error: {f}: {r}", err=True, fg=typer.colors.RED)
        raise typer.Exit(2) from None
    typer.echo(json.dumps(result.model_dump()))


# ------------------------------------------------------------------ human steps
@app.command()
def resume(
    ticket_id: str,
    step: Annotated[str, typer.Argument(help="e.g. first-response, review, arrival")],
    field: Annotated[
        list[str] | None, typer.Option("--set", help="field=value (JSON values allowed)")
    ] = None,
    input_json: Annotated[str | None, typer.Option("--input", help="the form as JSON")] = None,
) -> None:
    """Submit a human step's form and resume the ticket's waiting run."""
    from aftersales.humansteps import resume_step
    from aftersales.steps import StepError

    data: dict[str, Any] = json.loads(input_json) if input_json else {}
    for item in field or []:
        if "=" not in item:
            _fail(f"--set: {item!r} is not field=value")
        k, v = item.split("=", 1)
        try:
            data[k] = json.loads(v)
        except json.JSONDecodeError:
            data[k] = v
    try:
        run_id = resume_step(ticket_id, step, data)
    except (StepError, LookupError) as exc:
        _fail(str(exc))
        return
    typer.echo(json.dumps({"ticket_id": ticket_id, "step": step, "flow_run_id": run_id}))


@app.command()
def ticket(ticket_id: str) -> None:
    """Show a ticket (personal data masked), its clocks and what it waits for."""
    from models.db import session_scope
    from models.entities import SlaClockPublic, TicketPublic
    from models.repository import NotFoundError, clocks_for, get_ticket

    try:
        with session_scope() as s:
            t = TicketPublic.model_validate(
                get_ticket(s, ticket_id=ticket_id), from_attributes=True
            )
            clocks = [
                SlaClockPublic.model_validate(c, from_attributes=True)
                for c in clocks_for(s, ticket_id=ticket_id)
            ]
    except NotFoundError as exc:
        _fail(str(exc))
        return
    typer.echo(t.model_dump_json(indent=2))
    for c in clocks:
        typer.echo(f"  {c.rule_id:<28} {c.state:<9} due {c.due_at}")


# ------------------------------------------------------------------ clock / db / policy
@clock_app.command("run")
def clock_run() -> None:
    """Run the SLA clock service (reminders, breaches, escalations, notification outbox)."""
    from aftersales.runtime import SlaService
    from models.db import init_db

    init_db()
    SlaService().run_forever()


@clock_app.command("pause")
def clock_pause(ticket_id: str, rule: Annotated[list[str] | None, typer.Option()] = None) -> None:
    """Pause a ticket's running clocks (remaining time kept), e.g. while waiting on the customer."""
    from aftersales import sla
    from aftersales.clock import get_clock
    from aftersales.runtime import deadlines
    from models.db import session_scope

    with session_scope() as s:
        done = sla.pause(
            s,
            ctx=deadlines(),
            ticket_id=ticket_id,
            at=get_clock().now(),
            rule_ids=rule or None,
            match_clause=True,
        )
        typer.echo(json.dumps([c.rule_id for c in done]))


@clock_app.command("resume")
def clock_resume(ticket_id: str, rule: Annotated[list[str] | None, typer.Option()] = None) -> None:
    """Resume a ticket's paused clocks with the time they had left."""
    from aftersales import sla
    from aftersales.clock import get_clock
    from aftersales.runtime import deadlines
    from models.db import session_scope

    with session_scope() as s:
        done = sla.resume(
            s,
            ctx=deadlines(),
            ticket_id=ticket_id,
            at=get_clock().now(),
            rule_ids=rule or None,
            match_clause=True,
        )
        typer.echo(json.dumps([c.rule_id for c in done]))


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Create or upgrade the schema to the newest migration."""
    from models.db import init_db

    init_db()
    typer.echo("database at head")


@policy_app.command("check")
def policy_check(profile: str) -> None:
    """Validate a profile (name or YAML file); a bad one names the rule and the field."""
    from aftersales.policy import PolicyError, load_profile

    try:
        p = load_profile(profile)
    except PolicyError as exc:
        _fail(str(exc))
        return
    typer.echo(f"profile {p.name}: {len(p.rules)} rules, clauses {', '.join(sorted(p.clauses()))}")


@policy_app.command("show")
def policy_show(profile: Annotated[str, typer.Argument()] = "default") -> None:
    """Print the profile's rules as a table."""
    from aftersales.policy import PolicyError, load_profile

    try:
        p = load_profile(profile)
    except PolicyError as exc:
        _fail(str(exc))
        return
    for r in p.rules.values():
        dur = f"{r.duration:g} {r.unit}" if r.duration is not None else "-"
        typer.echo(f"{r.id:<32} {dur:<18} {r.kind:<10} breach: {r.on_breach} {r.escalate_to or ''}")


@privacy_app.command("erase")
def privacy_erase(
    customer_id: Annotated[str | None, typer.Option(help="registered customer")] = None,
    contact: Annotated[str | None, typer.Option(help="phone or email on tickets")] = None,
    reason: Annotated[str, typer.Option(help="why (kept in the record)")] = "",
    by: Annotated[str, typer.Option("--by", help="who asked / who carries it out")] = "",
) -> None:
    """PRIV-2: erase a customer's personal data on request, recording who, why and when;
    statistics (tickets, times, ratings) stay."""
    from aftersales.clock import get_clock
    from aftersales.erasure import ErasureError, erase_customer
    from models.db import init_db, session_scope

    init_db()
    try:
        with session_scope() as s:
            rec = erase_customer(
                s,
                customer_id=customer_id,
                contact=contact,
                reason=reason,
                requested_by=by,
                now=get_clock().now(),
            )
            out = rec.model_dump(mode="json")
    except ErasureError as exc:
        _fail(str(exc))
        return
    typer.echo(json.dumps(out, ensure_ascii=False))


# ------------------------------------------------------------------ serving
@app.command()
def serve() -> None:
    """Serve the SOP deployments (flow runs start on intake events)."""
    from deployments.serve import serve_all

    serve_all()


@app.command()
def api(
    host: Annotated[str | None, typer.Option()] = None,
    port: Annotated[int | None, typer.Option()] = None,
) -> None:
    """Run the HTTP intake endpoint."""
    import uvicorn

    from aftersales.api import create_app
    from aftersales.settings import get_settings
    from models.db import init_db

    s = get_settings()
    init_db()
    uvicorn.run(create_app(), host=host or s.intake_host, port=port or s.intake_port)


@app.command()
def seed() -> None:
    """Load sample customers and engineers (the demo's)."""
    from aftersales.demo import seed_reference_data
    from models.db import init_db

    init_db()
    n = seed_reference_data()
    typer.echo(f"seeded {n} rows")


@app.command()
def up(
    demo: Annotated[
        bool, typer.Option("--demo", help="feed sample tickets with compressed time")
    ] = False,
    port: Annotated[int, typer.Option(help="Prefect server port")] = 4200,
    time_scale: Annotated[float, typer.Option(help="with --demo: time compression")] = 120.0,
) -> None:
    """Start everything: Prefect server (SQLite), deployments, intake endpoint, SLA clock."""
    from aftersales.up import run_up

    if demo:
        os.environ["AFTERSALES_TIME_SCALE"] = str(time_scale)
    run_up(demo=demo, port=port)


from aftersales.cli_reports import register  # noqa: E402  (issue 3 commands)

register(app)
from aftersales.cli_calendar import calendar_app  # noqa: E402  (issue 6: calendar)

app.add_typer(calendar_app, name="calendar")


if __name__ == "__main__":
    app()
