"""``aftersales project``: installation projects (spec §6, issue 8).

``aftersales project create --project project.yaml --equipment list.csv`` stores the
project (customer, site, the three roles, the plan's date of each phase) and its
contract equipment list, and starts its run ``install-<id>``. A bad equipment row is
reported as ``line N: column: reason`` (every one of them) and nothing is stored.

Exit codes: 0 created; 1 rows of the equipment list are bad (nothing stored); 2 a file
cannot be read, the project is invalid or already exists (nothing stored).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer

project_app = typer.Typer(no_args_is_help=True, help="Installation projects (spec §6).")


def _fail(lines: list[str], code: int) -> None:
    for line in lines:
        typer.secho(f"error: {line}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)


def _header(path: Path) -> dict[str, Any]:
    import yaml

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        _fail([f"--project: {path.resolve()}: no such file"], 2)
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        _fail([f"--project: {path.resolve()}: not YAML/JSON: {exc}"], 2)
    if not isinstance(data, dict):
        _fail([f"--project: {path.resolve()}: the top level must be a mapping"], 2)
    return data


@project_app.command("create")
def create(
    project: Annotated[
        Path, typer.Option("--project", help="YAML/JSON: id, name, customer, site, roles, plan")
    ],
    equipment: Annotated[
        Path, typer.Option("--equipment", help="the contract equipment list (CSV or XLSX)")
    ],
) -> None:
    """Create a project from its header and its contract equipment list; start its run."""
    from pydantic import ValidationError

    from aftersales.api_projects import create_project, validation_errors
    from aftersales.equipment_list import EquipmentFileError, read_equipment
    from models.db import init_db
    from models.installation import ProjectCreate
    from tasks.installation import ProjectError

    head = _header(project)
    if "equipment" in head:
        _fail(["--project: the equipment list comes from --equipment, not the project file"], 2)
    try:
        listed = read_equipment(equipment)
    except EquipmentFileError as exc:
        _fail([f"--equipment: {exc}"], 2)
        return
    if listed.errors:
        _fail([str(e) for e in listed.errors] + [f"{equipment}: nothing stored"], 1)
    try:
        data = ProjectCreate.model_validate({**head, "equipment": listed.lines})
    except ValidationError as exc:
        _fail([f"{f}: {r}" for f, r in validation_errors(exc)] + ["nothing stored"], 2)
        return
    init_db()
    try:
        tid = create_project(data)
    except ProjectError as exc:
        _fail([str(exc)], 2)
        return
    lines = len(data.equipment)
    units = sum(ln.quantity for ln in data.equipment)
    typer.echo(
        json.dumps(
            {
                "project": data.id,
                "ticket_id": tid,
                "lines": lines,
                "units": units,
                "run": f"install-{data.id}",
            },
            ensure_ascii=False,
        )  # fmt: skip
    )


@project_app.command("show")
def show(project_id: str) -> None:
    """The project's progress: each phase, its planned date, state and who signed."""
    from aftersales.api_projects import project_view
    from models.repository import NotFoundError

    try:
        view = project_view(project_id)
    except NotFoundError as exc:
        _fail([str(exc)], 2)
        return
    p = view.project
    typer.echo(f"{p.id} {p.name} · {p.customer} · {p.site}")
    for r in view.progress:
        typer.echo(
            f"  {r.clause:<7} {r.phase:<11} planned {r.planned:<17} {r.state:<10} {r.signed_by}"
        )
    for name in view.documents:
        typer.echo(f"  document: {name}")
