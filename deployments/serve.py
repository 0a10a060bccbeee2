"""Deployments of the SOP flows and the event triggers that start them.

``prefect.yaml`` declares the same deployments and triggers for a work-pool setup
(``prefect deploy --all``); ``tests/test_deployments.py`` checks that both agree.
``aftersales up`` and ``aftersales serve`` serve these (a Runner; each flow run is a
subprocess; a suspended run holds no process).
"""

from __future__ import annotations

from pathlib import Path

from prefect.events import DeploymentEventTrigger

from aftersales.steps import START_EVENTS
from tasks.installation import START_EVENT as INSTALLATION_STARTED

# name -> (flow import path, event that starts it, tags)
DEPLOYMENTS = {
    "inquiry": ("flows.inquiry:inquiry", START_EVENTS["inquiry"], ["sop:inquiry"]),
    "repair-dispatch": ("flows.repair:repair_dispatch", START_EVENTS["repair"], ["sop:repair"]),
    "complaint": ("flows.complaint:complaint", START_EVENTS["complaint"], ["sop:complaint"]),
    "callback": ("flows.callback:callback", START_EVENTS["callback"], ["sop:callback"]),
    "escalation": ("flows.escalation:escalation", START_EVENTS["escalation"], ["sop:escalation"]),
    # issue 8: one run per installation project, started when the project is created
    "installation": (
        "flows.installation:installation_project",
        INSTALLATION_STARTED,
        ["sop:installation"],
    ),
}
# the flow parameters each start event fills from its payload
PARAMETERS = {
    INSTALLATION_STARTED: {"project": "{{ event.payload.project }}"},
    START_EVENTS["escalation"]: {
        "ticket_id": "{{ event.payload.ticket_id }}",
        "escalation_id": "{{ event.payload.escalation_id }}",
        "level": "{{ event.payload.level }}",
    },
}

# Scheduled report deployments (issue 3): name -> (flow import path, cron, tags).
# QA-1: the quality evaluation runs before the 5th of each month for the previous month.
REPORT_TIMEZONE = "Asia/Shanghai"
SCHEDULED = {
    "quality-evaluation": ("flows.quality:quality_evaluation", "0 6 1 * *", ["report:quality"]),
    "speed-diagnosis": ("flows.quality:speed_diagnosis", "0 7 1 * *", ["report:speed"]),
    # CB-1: the month's callback plan (repairs completed last month, VIP customers)
    "callback-plan": ("flows.callback:callback_plan", "0 8 1 * *", ["sop:callback"]),
    # CMP-4: the previous month's recurring complaint themes, for the CS manager
    "service-improvement": (
        "flows.improvement:service_improvement",
        "0 6 2 * *",
        ["report:improvement"],
    ),
}


def concurrency_limit(name: str) -> int | None:
    """How many runs of a deployment may run at once: a month of callbacks is queued
    (``AFTERSALES_CALLBACK_CONCURRENCY``), never started all at once."""
    from aftersales.settings import get_settings

    return get_settings().callback_concurrency if name == "callback" else None


def trigger_for(event: str) -> DeploymentEventTrigger:
    return DeploymentEventTrigger(
        name=f"start on {event}",
        enabled=True,
        expect={event},
        match={"prefect.resource.id": "aftersales.ticket.*"},
        parameters=PARAMETERS.get(event, {"ticket_id": "{{ event.payload.ticket_id }}"}),
    )


def build_deployments() -> list:
    from importlib import import_module

    out = []
    for name, (path, event, tags) in DEPLOYMENTS.items():
        mod, attr = path.split(":")
        fl = getattr(import_module(mod), attr)
        out.append(
            fl.to_deployment(
                name=name,
                tags=tags,
                triggers=[trigger_for(event)],
                concurrency_limit=concurrency_limit(name),
            )
        )
    from prefect.schedules import Cron

    for name, (path, cron, tags) in SCHEDULED.items():
        mod, attr = path.split(":")
        fl = getattr(import_module(mod), attr)
        out.append(
            fl.to_deployment(name=name, tags=tags, schedules=[Cron(cron, timezone=REPORT_TIMEZONE)])
        )
    return out


ROOT = Path(__file__).resolve().parent.parent


def entrypoint_file(path: str) -> str:
    """``flows.inquiry:inquiry`` -> ``flows/inquiry.py:inquiry`` (prefect.yaml's form)."""
    mod, attr = path.split(":")
    return f"{mod.replace('.', '/')}.py:{attr}"


def deploy_to_pool(work_pool: str) -> list[str]:
    """Register the same deployments and triggers in a process work pool (issue 9): each
    run's code is this checkout (a ``set_working_directory`` pull step), started by the
    pool's job command (``aftersales.launch_client``: a fork of the launcher daemon).
    The same as ``prefect deploy --all`` with prefect.yaml, without the CLI."""
    from prefect import Flow
    from prefect.schedules import Cron

    names = []
    for name, (path, event, tags) in DEPLOYMENTS.items():
        fl = Flow.from_source(source=str(ROOT), entrypoint=entrypoint_file(path))
        fl.to_deployment(  # type: ignore[union-attr]
            name=name,
            tags=tags,
            triggers=[trigger_for(event)],
            concurrency_limit=concurrency_limit(name),
            work_pool_name=work_pool,
        ).apply()
        names.append(name)
    for name, (path, cron, tags) in SCHEDULED.items():
        fl = Flow.from_source(source=str(ROOT), entrypoint=entrypoint_file(path))
        fl.to_deployment(  # type: ignore[union-attr]
            name=name,
            tags=tags,
            schedules=[Cron(cron, timezone=REPORT_TIMEZONE)],
            work_pool_name=work_pool,
        ).apply()
        names.append(name)
    return names


def serve_all(limit: int | None = None) -> None:
    """Serve every deployment in this process's Runner, at most ``limit`` runs at once
    (default ``AFTERSALES_RUN_CONCURRENCY``, issue 9: a burst of intakes queues as
    Scheduled runs instead of thrashing the machine). A run that suspends for a human
    step exits its process and gives its slot back (the Runner releases it when the
    process ends), so suspended tickets never block new ones.

    Each run is Prefect's ``spawn`` of a fresh interpreter: the Runner has no command
    option for flows it serves from memory (``DirectSubprocessStarter``); the cheap start
    (a fork of the launcher daemon) is the work-pool path, ``aftersales.launcher``."""
    import os

    from aftersales.settings import get_settings

    if limit is None:
        limit = get_settings().run_concurrency

    # the project's own loggers (masked, PRIV-1) go to the run logs in the Prefect UI;
    # every flow run is a child process that reads this when it sets up logging
    os.environ.setdefault("PREFECT_LOGGING_EXTRA_LOGGERS", "aftersales")
    from prefect import serve

    serve(*build_deployments(), limit=limit, print_starting_message=True)


if __name__ == "__main__":
    serve_all()
