"""PRIV-1 / issue 11 §9: after the end-to-end and chaos suites, no place the session wrote
holds a personal value it submitted, unmasked.

Submitted values: the phones, e-mails, ID numbers, bank cards and street addresses (and
names) in the record tables (``ticket``, ``customer``, ``installation_project``) of every
project database the session used, read before each was dropped, plus the demo data.
Places: every other table of those databases, every message any test sink received,
the Prefect server's logs, artifacts, flow runs (names, parameters, state messages),
task runs, run inputs, variables and events, Prefect's result storage, and every report
and log file under the session's temporary directories (PDFs through PDFium). Names count
where they reach a group channel (``sync_group``) or a report file.

The first tests check the scanner itself finds what it must (a scan that cannot fail
proves nothing); the last one is the scan, and it must find 0."""

from __future__ import annotations

import json
import time
from collections import Counter
from pathlib import Path

import pytest

from tests.conftest import _TMP
from tests.sink import HttpSink
from tests.zz_privacy.scan import (
    REGISTRY,
    Place,
    Registry,
    demo_secrets,
    file_places,
    prefect_places,
    result_storage_places,
    sink_places,
)

RAW = {
    "phone": "13911112222",
    "email": "zhao.min@example.org",
    "id": "11010519900307123X",
    "address": "杭州市西湖区文三路478号2单元",
    "name": "赵敏",
}


def planted() -> Registry:
    reg = Registry(enabled=True)
    reg.add_record(
        "ticket",
        {
            "customer_name": RAW["name"],
            "contact": RAW["phone"],
            "description": f"ID {RAW['id']}, lives at {RAW['address']}, mail {RAW['email']}",
        },
        "planted",
    )
    return reg


def test_the_scanner_finds_each_kind_of_value_however_written_and_never_prints_it() -> None:
    reg = planted()
    assert {s.kind for s in reg.secrets.values()} == {
        "name", "phone", "id_number", "address", "email"
    }  # fmt: skip
    reg.add_place("log a", "call +86 139-1111-2222 now")  # separators, country code
    reg.add_place("log b", "mail ZHAO.MIN@example.org")  # case
    reg.add_place("log c", "id 11010519900307123x ok")
    reg.add_place("log d", "visit 文三路478号 today")  # the street without the district
    reg.add_place("log e", f"customer {RAW['name']} called")  # a name in a log: not a leak
    extra = [Place("sink /sync_group", f"客户 {RAW['name']} 来电", names=True)]
    found = reg.findings(extra)
    assert sorted((f.where, f.kind) for f in found) == [
        ("log a", "phone"),
        ("log b", "email"),
        ("log c", "id_number"),
        ("log d", "address"),
        ("sink /sync_group", "name"),
    ]
    shown = "\n".join(str(f) for f in found)
    for raw in ("13911112222", "11111", "zhao.min", "11010519900307123", "文三路478号", "赵敏"):
        assert raw not in shown.lower(), raw


def test_masked_values_and_longer_numbers_are_not_findings() -> None:
    reg = planted()
    reg.add_place("log", "call 139****2222, mail z***@example.org, id 110***********123X")
    reg.add_place("order", "order 9913911112222001 shipped")  # the digits inside a longer number
    reg.add_place("addr", "杭州市西湖区*** 赵* (a log: names are not looked for)")
    assert reg.findings() == []


def test_every_message_a_sink_receives_is_archived_for_the_scan() -> None:
    import httpx

    from tests.sink import ARCHIVE

    before = len(ARCHIVE)
    with HttpSink() as sink:
        httpx.post(
            f"http://{sink.host}:{sink.port}/sync_group",
            json={"title": "t", "message": f"客户 {RAW['name']}"},
            timeout=5,
        )
    assert len(ARCHIVE) == before + 1  # kept after the sink closed
    place = sink_places()[-1]
    assert place.names and place.where.endswith("/sync_group (POST 200)")
    assert [f.kind for f in planted().findings([place])] == ["name"]


def test_the_scan_reads_flow_run_parameters_and_logs_from_the_prefect_server(
    prefect_server: str,
) -> None:
    from uuid import uuid4

    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import LogCreate
    from prefect.types._datetime import now

    @flow(name="privacy-scan-probe")
    def probe(contact: str) -> None: ...

    with get_client(sync_client=True) as client:
        run = client.create_flow_run(probe, parameters={"contact": RAW["phone"]})
        client.create_logs(
            [
                LogCreate(
                    name="probe",
                    level=20,
                    message=f"mail {RAW['email']}",
                    timestamp=now("UTC"),
                    flow_run_id=run.id,
                )
            ]
        )
    marker = str(uuid4())  # nothing else: the probe's own places only
    found = planted().findings(
        [p for p in prefect_places(prefect_server) if str(run.id) in p.text]
        + [Place(marker, marker)]
    )
    kinds = sorted((f.kind, f.where.split()[1]) for f in found)
    assert ("email", "log") in kinds and ("phone", "flow") in kinds, kinds


def _category(where: str) -> str:
    words = where.split()
    return " ".join(words[:2]) if words[0] == "prefect" else words[0]


def _event_flush_seconds() -> float:
    from prefect.settings import get_current_settings

    return float(get_current_settings().server.services.event_persister.flush_interval)


def test_the_session_left_no_personal_data_unmasked_on_sqlite_or_postgres_PRIV_1(
    prefect_server: str, tmp_path_factory: pytest.TempPathFactory
) -> None:
    from prefect.settings import get_current_settings

    assert REGISTRY.enabled, "tests/conftest.py enables the registry when this module runs"
    REGISTRY.add_secrets(demo_secrets())
    storage = Path(get_current_settings().results.local_storage_path)
    roots = [tmp_path_factory.getbasetemp(), _TMP]
    files, databases = file_places(roots, skip=[storage])
    for db in databases:  # SQLite files the fixtures did not hand over (a test's own)
        REGISTRY.harvest_database(f"sqlite:///{db}", f"sqlite file {db.name}")
    time.sleep(_event_flush_seconds() + 1)  # events the runs emitted reach the database
    places = sink_places() + prefect_places(prefect_server) + result_storage_places(storage) + files
    findings = REGISTRY.findings(places)

    summary = {
        "databases": len(REGISTRY.databases),
        "submitted values": len(REGISTRY.secrets),
        "database texts": len(REGISTRY.places),
        "other places": len(places),
        "by kind": dict(Counter(_category(p.where) for p in places)),
        "findings": len(findings),
    }
    print("personal-data scan:", json.dumps(summary))
    assert not REGISTRY.errors, "databases the scan could not read:\n" + "\n".join(REGISTRY.errors)
    if not REGISTRY.places and not places:
        pytest.skip(
            "nothing in this session to scan (run it with the suites, or all of tests/zz_privacy)"
        )
    assert not findings, f"{len(findings)} unmasked personal values (shown masked):\n" + "\n".join(
        str(f) for f in findings[:300]
    )
