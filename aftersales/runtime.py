"""Wiring shared by the CLI, the HTTP endpoint, the SLA service and the flows: the
deadlines context from settings and run tags. Stored Prefect
events are sent by ``aftersales.events``; the SLA service is ``aftersales.sla_service``.
Built lazily; importing this module connects to nothing."""

from __future__ import annotations

import logging
from functools import lru_cache

from aftersales.calendar import WorkCalendar
from aftersales.policy import get_profile
from aftersales.settings import get_settings
from aftersales.sla import Deadlines
from models.db import session_scope

log = logging.getLogger("aftersales.runtime")


@lru_cache(maxsize=4)
def _calendar(tz: str, hours: str, unknown: str, files: tuple[str, ...]) -> WorkCalendar:
    return WorkCalendar.from_settings(get_settings())


def deadlines(profile: str | None = None) -> Deadlines:
    s = get_settings()
    name = profile or (str(s.policy_file) if s.policy_file else s.policy_profile)
    return Deadlines(
        profile=get_profile(name),
        calendar=_calendar(
            s.timezone,
            s.working_hours,
            s.calendar_unknown_year,
            tuple(str(f) for f in s.calendar_files),
        ),
        time_scale=s.time_scale,
    )


def tag_run(run_id: str, tags: list[str]) -> None:
    """Set tags on a run; a tag ``prefix:value`` replaces the run's other ``prefix:`` tag."""
    from uuid import UUID

    from prefect.client.orchestration import get_client

    prefixes = {t.split(":", 1)[0] + ":" for t in tags}
    with get_client(sync_client=True) as client:
        fr = client.read_flow_run(UUID(run_id))
        kept = [t for t in fr.tags or [] if not any(t.startswith(p) for p in prefixes)]
        client.update_flow_run(UUID(run_id), tags=sorted({*kept, *tags}))


def tag_ticket_runs(ticket_id: str, tag: str) -> None:
    """Tag every run of the ticket (its SOP runs and its escalations' runs)."""
    from sqlmodel import select

    from models.entities import Escalation, SopRun

    with session_scope() as s:
        runs = [r.flow_run_id for r in s.exec(select(SopRun).where(SopRun.ticket_id == ticket_id))]
        runs += [
            e.flow_run_id
            for e in s.exec(select(Escalation).where(Escalation.ticket_id == ticket_id))
            if e.flow_run_id
        ]
    for run_id in runs:
        tag_run(run_id, [tag])
