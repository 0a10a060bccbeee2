"""The Resume dialog as an operator sees it (issue 10), in headless Chromium against a
real Prefect server with its UI (``prefect server start`` on a free port; the test
harness serves no UI): a repair run suspended at ``arrival`` shows the step and its
deadline in the dialog; a wrong engineer is submitted through the UI, the run asks
again (``arrival-2``) with the reason; the right engineer moves it on to
``diagnosis``. Screenshots: ``tests/artifacts/resume-*.png`` (git-ignored)."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = Path("/usr/bin/chromium")
ARTIFACTS = ROOT / "tests" / "artifacts"
ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]  # fmt: skip

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.skipif(
        not CHROMIUM.exists(),
        reason="needs /usr/bin/chromium (apt-get install -y chromium); not preinstalled",
    ),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait(predicate: Any, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            if predicate():
                return
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(0.5)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


class UiServer:
    """A real Prefect server with its UI, the SOP runner against it, a project database."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.api = f"http://127.0.0.1:{self.port}/api"
        self.ui = f"http://127.0.0.1:{self.port}"
        self.tmp = tmp
        self.procs: list[subprocess.Popen[bytes]] = []

    def env(self) -> dict[str, str]:
        return {
            **os.environ,
            "PREFECT_HOME": str(self.tmp / "prefect"),
            "PREFECT_API_URL": self.api,
            "PREFECT_UI_API_URL": self.api,
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "DO_NOT_TRACK": "1",
            "PREFECT_RUNNER_POLL_FREQUENCY": "1",
        }

    def start(self, name: str, args: list[str]) -> None:
        log = open(self.tmp / f"{name}.log", "ab")  # noqa: SIM115
        self.procs.append(
            subprocess.Popen(
                args, cwd=ROOT, env=self.env(), stdout=log, stderr=log, start_new_session=True
            )  # fmt: skip
        )

    def stop(self) -> None:
        for p in reversed(self.procs):
            p.terminate()
            try:
                p.wait(timeout=20)
            except subprocess.TimeoutExpired:
                p.kill()


@pytest.fixture
def ui_server(sqlite_db: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[UiServer]:
    import httpx
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from aftersales.demo import seed_reference_data

    seed_reference_data()
    srv = UiServer(Path(tempfile.mkdtemp(prefix="aftersales-ui-")))
    srv.start("server", [sys.executable, "-m", "prefect", "server", "start",
                         "--host", "127.0.0.1", "--port", str(srv.port)])  # fmt: skip
    try:
        wait(lambda: httpx.get(f"{srv.api}/health", timeout=2).status_code == 200, 120,
             "the Prefect server")  # fmt: skip
        srv.start("runner", [sys.executable, "-m", "deployments.serve"])
        # as `aftersales up` runs them: the SLA service (its courier sends the start events
        # an intake left) and the run supervisor
        srv.start("clock", [sys.executable, "-m", "aftersales.cli", "clock", "run"])
        srv.start("supervisor", [sys.executable, "-m", "aftersales.cli", "supervise"])
        monkeypatch.setenv("PREFECT_API_URL", srv.api)
        with temporary_settings({PREFECT_API_URL: srv.api}):

            def served() -> bool:
                autos = httpx.post(f"{srv.api}/automations/filter", json={}, timeout=5).json()
                return any(a["name"].startswith("start on aftersales.repair") for a in autos)

            wait(served, 120, "the deployments and their triggers")
            yield srv
    finally:
        srv.stop()
        shutil.rmtree(srv.tmp, ignore_errors=True)


def waiting_for(ticket_id: str) -> set[str]:
    from aftersales.humansteps import waiting_step

    return {step for _, step in waiting_step(ticket_id)}


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"resume-{name}.png"), full_page=True)


def open_resume_dialog(page: Any, ui: str, run_id: str, name: str) -> Any:
    """The run's page, its Resume button, the dialog."""
    page.goto(f"{ui}/runs/flow-run/{run_id}", wait_until="domcontentloaded")
    button = page.get_by_role("button", name=re.compile(r"^\s*Resume\s*$"))
    button.wait_for(state="visible", timeout=90_000)  # the UI takes its time to render
    shot(page, f"{name}-run")
    button.click()
    dialog = page.get_by_role("dialog")
    dialog.wait_for(state="visible", timeout=30_000)
    page.wait_for_timeout(1_500)
    shot(page, f"{name}-dialog")
    return dialog


def submit_engineer(page: Any, dialog: Any, engineer_id: str, name: str) -> None:
    field = dialog.get_by_role("textbox").first  # "Engineer Id", the form's first field
    field.fill(engineer_id)
    shot(page, f"{name}-filled")
    dialog.get_by_role("button", name=re.compile(r"Submit|Resume")).last.click()
    dialog.wait_for(state="hidden", timeout=30_000)


def test_the_resume_dialog_shows_step_and_deadline_and_a_wrong_engineer_is_asked_again(
    ui_server: UiServer,
) -> None:
    from fastapi.testclient import TestClient
    from playwright.sync_api import sync_playwright

    from aftersales.api import create_app
    from aftersales.humansteps import resume_step, waiting
    from models.db import session_scope
    from models.repository import get_work_order

    api = TestClient(create_app())
    resp = api.post("/intake", json={
        "channel": "phone", "sop": "repair", "customer_id": "C-1001", "customer_name": "张伟",
        "contact": "13812345678", "description": "X200 will not power on",
        "intake_id": f"ui-{uuid.uuid4().hex[:8]}",
    })  # fmt: skip
    assert resp.status_code == 201, resp.text
    tid = resp.json()["ticket_id"]
    wait(lambda: "review" in waiting_for(tid), 180, "the repair run to ask for review")
    resume_step(tid, "review", {"reviewer": "调度-孙", "approved": True, "skill": "hardware"})
    wait(lambda: "arrival" in waiting_for(tid), 120, "the repair run to ask for arrival")
    with session_scope() as s:
        wo = get_work_order(s, ticket_id=tid)
        assert wo is not None and wo.engineer_id == "E-01"
    (run,) = [w for w in waiting(tid) if w.sop == "repair"]

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        page = browser.new_page(
            viewport={"width": 1400, "height": 1000}, timezone_id="Asia/Shanghai"
        )  # the operator's browser shows the configured zone
        try:
            dialog = open_resume_dialog(page, ui_server.ui, run.flow_run_id, "1-arrival")
            text = dialog.inner_text()
            assert f"Ticket {tid}" in text and "repair.arrival" in text, text
            assert re.search(r"REP-2:same-city due 2\d{3}-\d\d-\d\dT\d\d:\d\d\+08:00", text), text
            assert "E-01" in text and "王工" in text, text  # the valid choice, from data
            submit_engineer(page, dialog, "E-02", "1-arrival")
            wait(lambda: "arrival-2" in waiting_for(tid), 120, "arrival asked again")

            dialog = open_resume_dialog(page, ui_server.ui, run.flow_run_id, "2-arrival-again")
            text = dialog.inner_text()
            assert "refused" in text and "'E-02' is not the engineer" in text, text
            submit_engineer(page, dialog, "E-01", "2-arrival-again")
            wait(lambda: "diagnosis" in waiting_for(tid), 120, "the run to move on to diagnosis")
            page.goto(f"{ui_server.ui}/runs/flow-run/{run.flow_run_id}")
            page.wait_for_timeout(3_000)
            shot(page, "3-moved-on")
        finally:
            browser.close()
    with session_scope() as s:
        wo = get_work_order(s, ticket_id=tid)
        assert wo is not None and wo.arrived_at is not None


def test_the_supervisor_approves_a_complaint_solution_in_the_resume_dialog_CMP_3(
    ui_server: UiServer,
) -> None:
    """CMP-3 through the UI: the approval form (supervisor, approved, reason) in the dialog;
    approving moves the complaint on to informing the customer."""
    from fastapi.testclient import TestClient
    from playwright.sync_api import sync_playwright

    from aftersales.api import create_app
    from aftersales.humansteps import resume_step, waiting
    from models.db import session_scope
    from models.entities import Complaint

    api = TestClient(create_app())
    resp = api.post("/intake", json={
        "channel": "phone", "sop": "complaint", "customer_id": "C-1002", "customer_name": "李娜",
        "contact": "13987654321", "description": "the engineer was rude",
        "intake_id": f"ui-cmp-{uuid.uuid4().hex[:8]}",
    })  # fmt: skip
    assert resp.status_code == 201, resp.text
    tid = resp.json()["ticket_id"]
    for step, form in (
        ("accept", {"agent": "小周", "cause": "rude engineer", "expected_outcome": "apology"}),
        ("investigate", {"investigator": "主管-孙", "service_records": "WO-17",
                         "cross_department": False}),
        ("resolve", {"by": "小周", "kind": "apology", "details": "a phone call"}),
    ):  # fmt: skip
        wait(lambda s=step: s in waiting_for(tid), 180, f"the complaint run to ask for {step}")
        resume_step(tid, step, form)
    wait(lambda: "approve" in waiting_for(tid), 120, "the complaint run to ask for approval")
    (run,) = [w for w in waiting(tid) if w.sop == "complaint"]

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=ARGS, headless=True)
        page = browser.new_page(
            viewport={"width": 1400, "height": 1000}, timezone_id="Asia/Shanghai"
        )
        try:
            dialog = open_resume_dialog(page, ui_server.ui, run.flow_run_id, "4-approve")
            text = dialog.inner_text()
            assert f"Ticket {tid}" in text and "complaint.approve" in text, text
            assert "supervisor" in text.lower(), text  # who takes the step
            dialog.get_by_role("textbox").first.fill("主管-孙")
            dialog.get_by_role("switch").or_(dialog.get_by_role("checkbox")).first.click()
            shot(page, "4-approve-filled")
            dialog.get_by_role("button", name=re.compile(r"Submit|Resume")).last.click()
            dialog.wait_for(state="hidden", timeout=30_000)
            wait(lambda: "inform" in waiting_for(tid), 120, "the run to move on to inform")
        finally:
            browser.close()
    with session_scope() as s:
        from sqlmodel import select

        c = s.exec(select(Complaint).where(Complaint.ticket_id == tid)).one()
    assert c.approved_by == "主管-孙" and c.approved_at is not None
