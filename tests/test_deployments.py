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


def test_prefect_yaml_and_pool_deployments_agree_on_entrypoints_pool_and_limits() -> None:
    """``deploy_to_pool`` (``python -m aftersales.launcher pool``) registers what
    prefect.yaml declares: the same entrypoints, in the work pool of the settings, the
    same per-deployment concurrency limits."""
    from aftersales.settings import Settings
    from deployments.serve import DEPLOYMENTS, SCHEDULED, concurrency_limit, entrypoint_file

    declared = yaml.safe_load((ROOT / "prefect.yaml").read_text(encoding="utf-8"))["deployments"]
    defaults = Settings()
    yaml_view = {
        d["name"]: (d["entrypoint"], d["work_pool"]["name"], d.get("concurrency_limit"))
        for d in declared
    }
    code_view = {
        name: (entrypoint_file(path), defaults.work_pool, concurrency_limit(name))
        for name, (path, *_rest) in (DEPLOYMENTS | SCHEDULED).items()
    }
    assert yaml_view == code_view
    for entry in yaml_view.values():
        assert (ROOT / entry[0].split(":")[0]).is_file()
