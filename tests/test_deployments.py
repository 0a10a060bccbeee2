"""prefect.yaml and deployments/serve.py declare the same SOP deployments and intake triggers."""

from __future__ import annotations

from pathlib import Path

import yaml

from deployments.serve import build_deployments

ROOT = Path(__file__).resolve().parent.parent


def test_prefect_yaml_and_served_deployments_agree_on_triggers() -> None:
    declared = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))["deployments"]
    yaml_view = {
        d["name"]: (
            d["entrypoint"].split(":")[1],
            tuple(sorted(e for t in d.get("triggers", []) for e in t["expect"])),
            tuple(
                sorted(p for t in d.get("triggers", []) for p in t.get("parameters", {}).items())
            ),
        )
        for d in declared
        if d.get("triggers")
    }
    served = {
        d.name: (
            d.entrypoint.split(":")[1] if d.entrypoint else "",
            tuple(sorted(e for t in d.triggers for e in t.expect)),
            tuple(sorted((t.parameters or {}).items() for t in d.triggers))[0]
            if d.triggers
            else (),
        )
        for d in build_deployments()
        if d.triggers
    }
    served = {k: (v[0], v[1], tuple(sorted(v[2]))) for k, v in served.items()}
    assert yaml_view == served
    assert set(served) >= {"inquiry", "repair-dispatch"}
