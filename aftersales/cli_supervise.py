"""``aftersales supervise``: the run supervisor (issue 11 §1), beside ``aftersales clock
run``. Long-lived by default (a pass every ``AFTERSALES_RECONCILE_SECONDS``); ``--once``
makes one pass and prints what it repaired."""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Annotated

import typer


def supervise(
    once: Annotated[bool, typer.Option("--once", help="one pass, print it, exit")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="with --once: one JSON object")] = False,
) -> None:
    """Keep exactly one progressing run per open ticket and SOP: create lost starts,
    restart crashed runs, replace stuck ones, cancel duplicates, deliver stored step
    submissions. Exit code 1 for --once when Prefect did not answer."""
    from aftersales.reconciler import Reconciler
    from models.db import init_db

    init_db()
    sup = Reconciler()
    if not once:
        sup.run_forever()
        return
    report = sup.reconcile_once()
    if as_json:
        data = asdict(report)
        data["at"] = report.at.isoformat()
        typer.echo(json.dumps(data, ensure_ascii=False))
    else:
        for r in report.repairs:
            esc = f" escalation {r.instance}" if r.instance else ""
            typer.echo(
                f"{r.ticket_id} {r.sop}{esc}: {r.action} ({r.reason}) {r.old_run or '-'} -> {r.new_run or '-'}"
            )
        for e in report.errors:
            typer.echo(f"error: {e}", err=True)
        typer.echo(report.summary())
    raise typer.Exit(1 if report.skipped and "Prefect" in report.skipped else 0)


def register(app: typer.Typer) -> None:
    app.command("supervise")(supervise)
