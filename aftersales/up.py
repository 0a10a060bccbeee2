"""``aftersales up``: the whole system on one machine with the embedded defaults.

Starts (or reuses) a Prefect server on SQLite, migrates the project database,
runs the intake endpoint and the SLA clock service in threads, and serves the SOP
deployments. ``--demo`` adds a local notification sink that prints what it
receives and a script that plays the people with compressed time.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx

from aftersales import discovery


def _server_healthy(api: str) -> bool:
    try:
        return httpx.get(f"{api}/health", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def start_prefect_server(port: int) -> subprocess.Popen[bytes] | None:
    api = f"http://127.0.0.1:{port}/api"
    os.environ["PREFECT_API_URL"] = api  # this process and its children use this server
    os.environ.setdefault("PREFECT_UI_API_URL", api)
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")
    if _server_healthy(api):
        print(f"Prefect server already running at {api}")
        return None
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
        ],
        env=dict(os.environ),
    )
    for _ in range(120):
        if _server_healthy(api):
            print(f"Prefect server up: UI at http://127.0.0.1:{port}")
            return proc
        if proc.poll() is not None:
            raise SystemExit(f"prefect server exited with {proc.returncode}")
        time.sleep(1)
    proc.terminate()
    raise SystemExit("prefect server did not become healthy in 120 s")


class _PrintSink(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            msg = json.loads(body)
            print(f"[notify {self.path.strip('/')}] {msg.get('title')}: {msg.get('message')}")
        except ValueError:
            print(f"[notify {self.path}] {body[:200]!r}")
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        return


def start_demo_sink() -> int:
    srv = ThreadingHTTPServer(("127.0.0.1", 0), _PrintSink)
    threading.Thread(target=srv.serve_forever, daemon=True).start()
    port = srv.server_address[1]
    from aftersales.settings import ROLES

    for role in ROLES:
        os.environ.setdefault(
            f"AFTERSALES_NOTIFY_{role.upper()}", f"json://127.0.0.1:{port}/{role}"
        )
    return port


def run_up(demo: bool, port: int) -> None:
    from aftersales.settings import reset_settings

    if demo:
        start_demo_sink()
    server = start_prefect_server(port)
    reset_settings()

    import uvicorn

    from aftersales.api import create_app
    from aftersales.demo import run_demo_script, seed_reference_data
    from aftersales.runtime import SlaService
    from aftersales.settings import get_settings
    from deployments.serve import serve_all
    from models.db import init_db

    s = get_settings()
    init_db()
    seed_reference_data()
    SlaService().start_thread()
    config = uvicorn.Config(
        create_app(), host=s.intake_host, port=s.intake_port, log_level="warning"
    )
    threading.Thread(target=uvicorn.Server(config).run, daemon=True).start()
    print(f"Intake endpoint: http://{s.intake_host}:{s.intake_port}/intake  (SLA clock running)")
    info = discovery.ServerInfo(
        pid=os.getpid(),
        prefect_api_url=os.environ["PREFECT_API_URL"],
        api_url=f"http://{s.intake_host}:{s.intake_port}",
        database_url=s.resolved_database_url,
    )
    print(f"Commands find this system through {discovery.write(info)}")
    atexit.register(discovery.remove, os.getpid())
    if demo:

        def _demo() -> None:
            time.sleep(8)  # let serve() register the deployments and their triggers
            run_demo_script()

        threading.Thread(target=_demo, daemon=True).start()
    try:
        serve_all()
    finally:
        discovery.remove(os.getpid())
        if server is not None:
            server.terminate()
