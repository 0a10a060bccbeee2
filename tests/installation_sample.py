"""The tests' installation project: the demo's data (:mod:`aftersales.demo_installation`)
and helpers that drive the steps through ``aftersales.steps.complete``."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from aftersales.demo_installation import *  # noqa: F403
from aftersales.demo_installation import (
    acceptance,
    cabling,
    cleaning,
    grounding,
    install,
    labels,
    leftover,
    parts,
    power_on,
    project,
    system,
    tools,
    unboxing,
)
from models.installation import ProjectCreate


def project_create(pid: str, t0: datetime, step: timedelta = timedelta(days=1)) -> ProjectCreate:
    return ProjectCreate.model_validate(project(pid, t0, step))


def complete(ctx: Any, pid: str, step: str, at: datetime, data: dict[str, Any] | None = None,
             key: str | None = None) -> Any:  # fmt: skip
    """Complete one step through the step model (``aftersales.steps.complete``)."""
    from aftersales import steps
    from models.db import session_scope

    sop = "installation"
    if step in {st.id for st in steps.catalogue()["install-checklist"].steps}:
        sop = "install-checklist"
    spec = steps.catalogue()[sop].step(step)
    form = spec.form.model_validate(data) if spec.form is not None and data is not None else None
    with session_scope() as s:
        return steps.complete(s, deadlines=ctx, sop=sop, step=step, ticket_id=pid,
                              now=at, form=form, key=key)  # fmt: skip


def open_and_plan(
    ctx: Any, pid: str, t0: datetime, step: timedelta = timedelta(days=1), **change: Any
) -> str:
    from models.db import session_scope
    from tasks.installation import open_project

    data = ProjectCreate.model_validate(project(pid, t0, step, **change))
    with session_scope() as s:
        open_project(s, data=data, deadlines=ctx, now=t0)
    assert complete(ctx, pid, "plan", t0).done
    return pid


def run_to_acceptance(ctx: Any, pid: str, t0: datetime) -> None:
    """Every phase, one refused ground value re-measured, the acceptance signed."""
    at = t0 + timedelta(hours=3)
    assert complete(ctx, pid, "unboxing", at, unboxing()).done
    assert complete(ctx, pid, "install", at, install()).done
    r = complete(ctx, pid, "site-work", at, {"cabling": cabling(), "labels": labels(),
                 "grounding": grounding({"SRV-003": 1.2})}, key="site-work")  # fmt: skip
    assert not r.done and "SRV-003 (X200): 1.2 Ω" in r.reason
    site = {"grounding": grounding({"SRV-003": 0.7})}
    assert complete(ctx, pid, "site-work", at, site, key="site-work-2").done
    assert complete(ctx, pid, "system", at, system()).done
    assert complete(ctx, pid, "power-on", at, power_on()).done
    assert complete(ctx, pid, "close-out", at, {"parts": parts(), "leftover": leftover(),
                    "cleaning": cleaning(), "tools": tools()}).done  # fmt: skip
    assert complete(ctx, pid, "acceptance", at, acceptance()).done
