"""Installation project SOP (工程项目), spec §6: INS-1..12, one run per project,
``install-<project>``.

Started by ``aftersales.installation.started`` when a project is created (``aftersales
project create`` or ``POST /projects``). The steps are declared in
``tasks/installation.py``; their clocks are the policy's ``INS-*`` rules, due on the
project's planned dates. The run shows the project's progress table (each phase, its
planned date, its state, who signed) and links every document it builds; INS-11 hands
them over as one archive.

Side by side: cabling, grounding and labels (``site-work``) and the close-out records
(``close-out``) are each one suspend whose form takes any of their sections: people
submit them in any order, each section is checked and recorded on its own, and the run
asks again — naming what was refused and what is still open — until all are done. A
Prefect run waits on one input at a time, so several independent suspends are not an
option; this keeps one run per project and still lets the work come in any order.
"""

from __future__ import annotations

from prefect import flow, get_run_logger, task
from prefect.artifacts import create_link_artifact, create_table_artifact
from prefect.cache_policies import NO_CACHE
from prefect.flow_runs import suspend_flow_run
from prefect.input import RunInput

from aftersales import documents, steps
from aftersales.clock import get_clock
from aftersales.runtime import deadlines
from aftersales.settings import get_settings
from models.db import session_scope
from tasks.installation import SOP, documents_dir, progress
from tasks.steps import SopRun, complete_step, describe

#: the documents each step's completion (re)builds; acceptance builds all and the archive
DOCUMENTS_AFTER = {
    "unboxing": ["unboxing", "parts"],
    "system": ["test-record"],
    "power-on": ["commissioning"],
    "close-out": ["parts", "materials", "tools"],
}
GATES = ("site-work", "close-out")
ORDER = ("unboxing", "install", "site-work", "system", "power-on", "close-out", "acceptance")


def document_url(project: str, name: str) -> str:
    s = get_settings()
    base = getattr(s, "public_base_url", None) or f"http://{s.intake_host}:{s.intake_port}"
    return f"{base.rstrip('/')}/projects/{project}/documents/{name}"


@task(cache_policy=NO_CACHE, timeout_seconds=get_settings().prefect_call_timeout_seconds * 3)
def publish_progress(project: str) -> None:
    """The progress table artifact: each phase, its planned date, state, who signed."""
    tz = deadlines().calendar.tz
    with session_scope() as s:
        rows = [p.as_row(tz) for p in progress(s, project_id=project)]
    create_table_artifact(
        key=f"install-progress-{project.lower()}",
        table=rows,
        description=f"Installation project {project}: phases (INS-1..12), planned dates, states",
    )


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=2)
def publish_documents(project: str, keys: list[str], handover: bool = False) -> list[str]:
    """Build the documents from the project's records, write them under the project's
    folder and link each from the run; with ``handover`` also the INS-11 archive."""
    tz = deadlines().calendar.tz
    now = get_clock().now()
    with session_scope() as s:
        rec = documents.load_records(s, project_id=project)
    out = documents_dir(project)
    written = documents.write_documents(rec, out, tz, made_at=now, keys=keys)
    names = []
    for w in written:
        for f in (w.pdf, w.xlsx):
            if f is None:
                continue
            create_link_artifact(
                key=f"install-{project.lower()}-{w.doc.key}-{f.suffix[1:]}",
                link=document_url(project, f.name),
                link_text=f"{w.doc.title} ({f.suffix[1:].upper()})",
                description=f"{w.doc.title}, project {project}; file {f}",
            )
            names.append(f.name)
    if handover:
        zip_path = documents.archive(rec, out, tz, made_at=now, written=written)
        create_link_artifact(
            key=f"install-{project.lower()}-archive",
            link=document_url(project, zip_path.name),
            link_text=f"工程文档 {project} (ZIP)",
            description=f"INS-11: every document of project {project}, handed over; file {zip_path}",
        )
        names.append(zip_path.name)
    get_run_logger().info("project %s: documents %s", project, ", ".join(names))
    return names


class ProjectRun(SopRun):
    """The project's run: after every submission the progress table is refreshed, and
    after a step the documents it makes are built and linked."""

    def __init__(self, project: str) -> None:
        super().__init__(SOP, project)
        self.project = project

    def ask(self, step: str, *, round: int = 1, note: str = "") -> steps.StepResult:
        if step not in GATES:
            result = super().ask(step, round=round, note=note)
        else:
            result = self._gate(step)
        publish_progress(self.project)
        return result

    def _gate(self, step: str) -> steps.StepResult:
        """Side-by-side sections: suspend, complete what came, ask again for the rest."""
        spec = self.spec.step(step)
        assert spec.form is not None
        form_input = RunInput.subclass_from_base_model_type(spec.form)
        reason, attempt = "", 1
        while True:
            key = step if attempt == 1 else f"{step}-{attempt}"
            described = form_input.with_initial_data(
                description=describe(self.sop, spec, self.ticket_id, reason)
            )
            got = suspend_flow_run(wait_for_input=described, key=key, timeout=None)
            form = spec.form.model_validate(got.model_dump(include=set(spec.form.model_fields)))
            result = complete_step.with_options(name=f"{self.sop}.{step}")(
                self.sop, step, key, self.ticket_id, form, None
            )
            if result.done:
                return result
            publish_progress(self.project)  # the sections that were recorded show as done
            get_run_logger().warning("%s %s: %s", self.ticket_id, key, result.reason)
            reason, attempt = result.reason, attempt + 1


@flow(name="installation_project", flow_run_name="install-{project}", persist_result=True)
def installation_project(project: str) -> str:
    run = ProjectRun(project)
    if not run.claim():
        return "duplicate"
    run.auto("plan")  # INS-6: each phase's planned date is its clock
    publish_progress(project)
    for step in ORDER:  # the work instruction's order; site-work and close-out in any order
        run.ask(step)
        if step in DOCUMENTS_AFTER:
            publish_documents(project, DOCUMENTS_AFTER[step])
    # INS-11: every document from the records, and the archive handed over
    publish_documents(project, [d.key for d in documents.DOCUMENTS], handover=True)
    return "accepted"
