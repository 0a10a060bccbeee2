"""How a command finds the running system without anything exported.

``aftersales up`` writes ``<AFTERSALES_HOME>/server.json`` (the Prefect API URL, the
project's HTTP API URL, its database and its pid) and removes it when it stops. A
command then finds, in this order:

* the Prefect API: ``PREFECT_API_URL`` (environment, or Prefect's own settings when
  Prefect is already imported), else the file's URL while its process lives;
* the project's HTTP API: the file's URL, used only when that server works on the same
  database as the command (so ``AFTERSALES_DATABASE_URL=… aftersales intake`` never
  writes into another system's tickets).

Nothing here imports Prefect or connects at import time; :func:`read` costs one small
file read and one ``kill(pid, 0)``.
"""

from __future__ import annotations

import json
import os
import sys
from dataclasses import asdict, dataclass
from pathlib import Path

FILE_NAME = "server.json"


@dataclass(frozen=True)
class ServerInfo:
    """What ``aftersales up`` tells the other commands."""

    pid: int
    prefect_api_url: str
    api_url: str  # the project's HTTP API (intake, steps, queue)
    database_url: str
    started_at: str = ""  # ISO 8601, when that ``aftersales up`` started (the refusal names it)

    def describe(self) -> str:
        """One line naming the running system (pid, since when, URLs)."""
        since = f" since {self.started_at}" if self.started_at else ""
        return f"pid {self.pid}{since}; Prefect API {self.prefect_api_url}; intake {self.api_url}"


def info_path(home: Path | None = None) -> Path:
    if home is None:
        from aftersales.settings import get_settings

        home = get_settings().home
    return home / FILE_NAME


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def write(info: ServerInfo, home: Path | None = None) -> Path:
    path = info_path(home)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(asdict(info)))
    tmp.replace(path)
    return path


def remove(pid: int, home: Path | None = None) -> None:
    """Remove the file if it is still this process's."""
    found = read(home, check_alive=False)
    if found is not None and found.pid == pid:
        info_path(home).unlink(missing_ok=True)


def read(home: Path | None = None, *, check_alive: bool = True) -> ServerInfo | None:
    """The running system's file, or None (no file, unreadable, or its process is gone)."""
    try:
        data = json.loads(info_path(home).read_text())
        info = ServerInfo(**{k: data[k] for k in ServerInfo.__dataclass_fields__ if k in data})
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if check_alive and not _alive(info.pid):
        return None
    return info


def prefect_api_url() -> str | None:
    """The Prefect API to use, or None: then nothing may talk to Prefect (a command
    never starts Prefect's ephemeral server, whose SQLite lock fights the real one)."""
    url = os.environ.get("PREFECT_API_URL")
    if url:
        return url.rstrip("/")
    if "prefect.settings" in sys.modules:  # a test harness or a Prefect profile
        from prefect.settings import PREFECT_API_URL

        value = PREFECT_API_URL.value()
        if value:
            return str(value).rstrip("/")
    info = read()
    return info.prefect_api_url.rstrip("/") if info else None


def project_api_url() -> str | None:
    """The running ``aftersales up``'s HTTP API, when it uses this command's database."""
    from aftersales.settings import get_settings

    info = read()
    if info is None:
        return None
    mine = get_settings().resolved_database_url
    return info.api_url.rstrip("/") if info.database_url == mine else None


def use_found_prefect() -> str | None:
    """Export the found Prefect API for this process (Prefect reads it at import), and
    forbid Prefect's ephemeral server when there is none."""
    url = prefect_api_url()
    if url:
        os.environ.setdefault("PREFECT_API_URL", url)
    else:
        os.environ.setdefault("PREFECT_SERVER_ALLOW_EPHEMERAL_MODE", "false")
    return url
