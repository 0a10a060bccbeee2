"""The ``aftersales`` command line."""

from __future__ import annotations

import json
import os
import sys
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer


class _Cli(typer.Typer):
    """The console entry: an error nobody anticipated is still one line and exit 2, never
    a traceback (``AFTERSALES_DEBUG=1`` shows it)."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return super().__call__(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - the last line of defence
            if os.environ.get("AFTERSALES_DEBUG"):
                raise
            text = str(exc)
            if "no such table" in text or ("relation" in text and "does not exist" in text):
                msg = "the database has no schema yet: run `aftersales db upgrade` (or `aftersales up`)"
            else:
                msg = f"{type(exc).__name__}: {text.splitlines()[0] if text else ''}".rstrip(": ")
            typer.secho(f"error: {msg}", err=True, fg=typer.colors.RED)
            sys.exit(2)


app = _Cli(add_completion=False, no_args_is_help=True, help=__doc__, pretty_exceptions_enable=False)
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
    from aftersales.discovery import use_found_prefect
    from aftersales.privacy import install_log_masking

    install_log_masking(("aftersales", "prefect", "uvicorn"))
    use_found_prefect()  # PREFECT_API_URL, else the running `aftersales up`; never ephemeral


def _fail(msg: str, code: int = 2) -> None:
    typer.secho(f"error: {msg}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def _fail_all(problems: list[tuple[str, str]]) -> None:
    """One line per problem (``error: field: rule``), exit 2."""
    for f, r in problems:
        typer.secho(f"error: {f}: {r}", err=True, fg=typer.colors.RED)
    raise typer.Exit(2)


def _read_json_object(raw: bytes, what: str) -> dict[str, Any]:
    """A JSON object from bytes that must be UTF-8; exit 2 naming what is wrong."""
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        _fail(f"{what}: is not UTF-8 (byte {exc.start}: {exc.reason}); save it as UTF-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        _fail(f"{what}: not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})")
    if not isinstance(data, dict):
        _fail(f"{what}: must be a JSON object, got {type(data).__name__}")
    return data


def _post_to_server(
    path: str, data: dict[str, Any], timeout: float = 30
) -> tuple[int, dict[str, Any]] | None:
    """POST to the running ``aftersales up`` (found by its server.json): (status, JSON
    body), or None when there is none (the command then does the work itself). Plain
    urllib: importing an HTTP client would cost a cold command a quarter of a second."""
    import urllib.error
    import urllib.request

    from aftersales.discovery import project_api_url

    url = project_api_url()
    if url is None:
        return None
    req = urllib.request.Request(
        f"{url}{path}",
        data=json.dumps(data).encode("utf-8"),
        headers={"content-type": "application/json"},
        method="POST",
    )
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:  # noqa: S310 - our own server
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            return exc.code, json.loads(exc.read() or b"{}")
        except ValueError:
            return exc.code, {}
    except (urllib.error.URLError, OSError, ValueError):
        return None  # gone meanwhile: do it here


def _answer(answer: tuple[int, dict[str, Any]]) -> dict[str, Any]:
    """A server answer: its JSON on success; the one error shape printed and exit 2."""
    status, body = answer
    if status < 400:
        return body
    errors = body.get("errors") if isinstance(body, dict) else None
    _fail_all(
        [(e["field"], e["rule"]) for e in errors] if errors else [("server", f"HTTP {status}")]
    )
    return {}


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
    """Open a ticket from an intake (phone, online, email, social) and start its SOP.
    With `aftersales up` running, the intake goes to its endpoint (fast); otherwise it is
    stored here and its start event sent when a Prefect server is found."""
    data: dict[str, Any]
    if payload_file is not None:
        if str(payload_file) == "-":
            raw = sys.stdin.buffer.read()
        else:
            try:
                raw = payload_file.read_bytes()
            except OSError as exc:
                _fail(f"--payload: cannot read {payload_file}: {exc.strerror}")
                return
        data = _read_json_object(raw, f"--payload {payload_file}")
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
    if not no_event:
        resp = _post_to_server("/intake", data)
        if resp is not None:
            typer.echo(json.dumps(_answer(resp)))
            return
    from aftersales.clock import get_clock
    from aftersales.discovery import prefect_api_url
    from aftersales.events import send_outbox_events
    from aftersales.intake import IntakeError, accept_intake, bounded, parse_payload
    from aftersales.runtime import deadlines
    from models.db import init_db

    try:
        payload = parse_payload(data)
    except IntakeError as exc:
        _fail_all(exc.errors)
    init_db()
    send = None if no_event or prefect_api_url() is None else bounded(send_outbox_events)
    try:
        result = accept_intake(payload, ctx=deadlines(), now=get_clock().now(), send=send)
    except IntakeError as exc:
        _fail_all(exc.errors)
        return
    if send is None and result.created and not no_event:
        typer.secho(
            "note: no Prefect server found; the start event is stored and the SLA service "
            "sends it (`aftersales up`, or export PREFECT_API_URL)",
            err=True,
        )
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
    escalation: Annotated[
        int | None, typer.Option(help="which escalation, when several wait for the step")
    ] = None,
) -> None:
    """Submit a human step's form (also `aftersales step`). The form and the ticket's
    state are checked first: a bad value exits 2 naming the field. A good form is stored,
    then the waiting run resumed ("resumed"); with Prefect down or no run waiting yet it
    is "queued" and the run takes it when it asks (never lost, never a hang: Prefect is
    given at most prefect_call_timeout_seconds)."""
    data: dict[str, Any] = (
        _read_json_object(input_json.encode("utf-8", "surrogateescape"), "--input")
        if input_json
        else {}
    )
    for item in field or []:
        if "=" not in item:
            _fail(f"--set: {item!r} is not field=value")
        k, v = item.split("=", 1)
        try:
            data[k] = json.loads(v)
        except json.JSONDecodeError:
            data[k] = v
    from urllib.parse import quote

    from aftersales.settings import get_settings

    path = f"/tickets/{quote(ticket_id, safe='')}/steps/{quote(step, safe='')}" + (
        f"?escalation={escalation}" if escalation is not None else ""
    )
    # the server bounds its Prefect calls by prefect_call_timeout_seconds; so does this
    bound = get_settings().prefect_call_timeout_seconds
    resp = _post_to_server(path, data, timeout=bound + 5)
    if resp is not None:
        typer.echo(json.dumps(_answer(resp)))
        return
    from dataclasses import asdict

    from aftersales.humansteps import ResumeRefused, submit_step
    from models.db import init_db

    init_db()
    try:
        out = submit_step(ticket_id, step, data, escalation_id=escalation)
    except ResumeRefused as exc:
        _fail_all([(p.field, p.rule) for p in exc.problems])
        return
    except LookupError as exc:
        _fail(str(exc))
        return
    typer.echo(json.dumps({"ticket_id": ticket_id, "step": step, **asdict(out)}))


app.command("step", help="Submit a human step's form (the same as `aftersales resume`).")(resume)


@app.command()
def ticket(
    ticket_id: str,
    as_json: Annotated[bool, typer.Option("--json", help="one JSON object")] = False,
) -> None:
    """Show a ticket (personal data masked): the step it waits for with its form fields
    and valid choices, its clocks, escalations and notifications, in the configured zone."""
    from aftersales.clock import get_clock
    from aftersales.runtime import deadlines
    from aftersales.submissions import as_text as submissions_text
    from aftersales.submissions import views
    from aftersales.tickets import as_text, ticket_view
    from models.db import session_scope
    from models.repository import NotFoundError

    tz = deadlines().calendar.tz
    try:
        with session_scope() as s:
            view = ticket_view(s, ticket_id=ticket_id, tz=tz, now=get_clock().now())
            subs = views(s, ticket_id=ticket_id, tz=tz)  # pending, delivering, refused
    except NotFoundError as exc:
        _fail(str(exc))
        return
    if as_json:
        typer.echo(
            json.dumps(
                {**view.model_dump(), "submissions": [v.model_dump() for v in subs]},
                indent=2,
                ensure_ascii=False,
            )
        )
        return
    for line in [*as_text(view), *submissions_text(subs)]:
        typer.echo(line)


submissions_app = typer.Typer(no_args_is_help=True, help="Human-step submissions (issue 11).")
app.add_typer(submissions_app, name="submissions")


@submissions_app.command("deliver")
def submissions_deliver() -> None:
    """Resume the runs waiting for a stored (pending) submission now; the reconciler does
    the same on every loop. Prints how many were resumed."""
    from aftersales.clock import get_clock
    from aftersales.submissions import deliver_pending
    from models.db import init_db

    init_db()
    typer.echo(json.dumps({"resumed": deliver_pending(now=get_clock().now())}))


@app.command()
def queue(
    role: Annotated[
        str | None, typer.Option(help="only this role's steps (handler, engineer …)")
    ] = None,
    sop: Annotated[
        str | None, typer.Option(help="only this SOP (inquiry, repair, escalation …)")
    ] = None,
    breached: Annotated[bool, typer.Option("--breached", help="only past their deadline")] = False,
    at_risk: Annotated[bool, typer.Option("--at-risk", help="only reminded (REM-1)")] = False,
    limit: Annotated[int, typer.Option(min=1, help="at most this many rows")] = 500,
    as_json: Annotated[bool, typer.Option("--json", help="a JSON list")] = False,
) -> None:
    """Every ticket waiting on a person: the step, who, since when, the next due time and
    its state, soonest first (from the project database: works while Prefect is down)."""
    from aftersales.settings import ROLES
    from aftersales.steps import catalogue

    problems = []
    if breached and at_risk:
        problems.append(("--breached/--at-risk", "give one of them, not both"))
    if role is not None and role not in ROLES:
        problems.append(("--role", f"unknown role {role!r}; known: {', '.join(ROLES)}"))
    if sop is not None and sop not in catalogue():
        problems.append(("--sop", f"unknown SOP {sop!r}; known: {', '.join(catalogue())}"))
    if problems:
        _fail_all(problems)
    from aftersales.api import queue_rows
    from aftersales.queue import QueueFilter
    from aftersales.runtime import deadlines

    state = "breached" if breached else "at-risk" if at_risk else None
    rows = queue_rows(QueueFilter(role=role, sop=sop, state=state), limit)
    if as_json:
        typer.echo(json.dumps([r.model_dump() for r in rows], ensure_ascii=False))
        return
    if not rows:
        typer.echo("nobody has a step to take")
        return
    head = ("TICKET", "SOP", "STEP", "WHO", "SINCE", "NEXT DUE", "RULE", "STATE")
    body = [
        (
            r.ticket_id,
            r.sop + (f"#{r.escalation_id}" if r.escalation_id else ""),
            r.step,
            f"{r.role} ({r.person})" if r.person else r.role,
            r.since,
            r.next_due or "-",
            r.rule or "-",
            r.state,
        )
        for r in rows
    ]
    widths = [max(len(x[i]) for x in (head, *body)) for i in range(len(head))]
    for line in (head, *body):
        typer.echo("  ".join(v.ljust(w) for v, w in zip(line, widths, strict=True)).rstrip())
    typer.echo(f"({len(rows)} waiting; times in {deadlines().calendar.tz})")


# ------------------------------------------------------------------ clock / db / policy
@clock_app.command("run")
def clock_run() -> None:
    """Run the SLA clock service (reminders, breaches, escalations, notification outbox)."""
    from aftersales.sla_service import SlaService
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
    """Start everything: Prefect server (SQLite), deployments, intake endpoint, SLA clock;
    each a child process restarted when it dies. One per AFTERSALES_HOME and database."""
    from aftersales.up import run_up

    if demo:
        os.environ["AFTERSALES_TIME_SCALE"] = str(time_scale)
    raise typer.Exit(run_up(demo=demo, port=port))


@app.command("scale-out")
def scale_out(
    port: Annotated[int, typer.Option(help="first Prefect API replica's port")] = 4200,
) -> None:
    """Start the distributed topology on this machine: Prefect API replicas and services
    apart on PostgreSQL + Redis, workers, SLA services, reconcilers, intake (docs/SCALE.md)."""
    from aftersales.topology import run_scale_out

    raise typer.Exit(run_scale_out(port=port))


# the command groups of later issues, registered after the core commands above
from aftersales.cli_calendar import calendar_app  # noqa: E402  (issue 6: calendar)
from aftersales.cli_notifications import notifications_app  # noqa: E402  (issue 11: outbox)
from aftersales.cli_projects import project_app  # noqa: E402  (issue 8: installation projects)
from aftersales.cli_reports import register  # noqa: E402  (issue 3 commands)
from aftersales.cli_supervise import register as register_supervise  # noqa: E402  (issue 11)

register(app)
register_supervise(app)
app.add_typer(calendar_app, name="calendar")
app.add_typer(project_app, name="project")
app.add_typer(notifications_app, name="notifications")

if __name__ == "__main__":
    app()
