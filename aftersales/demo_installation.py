"""The demo's installation project (``aftersales up --demo``), also the tests' sample:
2 racks, 6 devices (4 servers whose serials the delivery note names, 2 I/O terminals),
2 trays, 4 cables, a plan with a date for every phase, and a valid submission for every
step; :func:`play` plays the people, with one ground value that fails and is measured
again."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from models.installation import Phase

SERVERS = ["SRV-001", "SRV-002", "SRV-003", "SRV-004"]
TERMINALS = ["IO-001", "IO-002"]
DEVICES = SERVERS + TERMINALS
RACK_OF = {"SRV-001": "R1", "SRV-002": "R1", "IO-001": "R1",
           "SRV-003": "R2", "SRV-004": "R2", "IO-002": "R2"}  # fmt: skip
CABLES = [
    {"code": "PW-R1", "kind": "power", "end_a": "R1 PDU-A", "end_b": "SRV-001 PSU1"},
    {"code": "PW-R2", "kind": "power", "end_a": "R2 PDU-A", "end_b": "SRV-003 PSU1"},
    {"code": "NET-1", "kind": "signal", "end_a": "SRV-001 eth0", "end_b": "SRV-003 eth0"},
    {"code": "PCM-1", "kind": "signal", "end_a": "IO-001 com1", "end_b": "SRV-002 com1"},
]


def plan(t0: datetime, step: timedelta = timedelta(days=1)) -> dict[str, str]:
    return {ph.value: (t0 + step * (i + 1)).isoformat() for i, ph in enumerate(Phase)}


def project(
    pid: str, t0: datetime, step: timedelta = timedelta(days=1), serials: list[str] = SERVERS
) -> dict[str, Any]:
    return {
        "id": pid,
        "name": "数据中心扩容一期",
        "customer": "上海某某科技有限公司",
        "customer_contact": "张伟 13812345678",
        "site": "上海市浦东新区张江数据中心 3F 机房",
        "city": "上海",
        "project_manager": "项目经理-刘",
        "tech_support": "王工",
        "service_centre": "客服中心-周",
        "plan": plan(t0, step),
        "equipment": [
            {
                "line_no": 1,
                "model": "X200",
                "description": "服务器",
                "quantity": 4,
                "unit": "台",
                "serials": serials,
            },  # fmt: skip
            {
                "line_no": 2,
                "model": "T10",
                "description": "I/O终端",
                "quantity": 2,
                "unit": "台",
                "kind": "io_terminal",
            },  # fmt: skip
        ],
    }


def unboxing(**change: Any) -> dict[str, Any]:
    units = [{"line_no": 1, "serial": s, "condition": "ok"} for s in SERVERS]
    units += [{"line_no": 2, "serial": s, "condition": "ok"} for s in TERMINALS]
    return {
        "delivery_note_boxes": 6,
        "boxes_counted": 6,
        "packaging": "外观完好，包装无破损",
        "units": units,
        "customer_signer": "张伟",
        "engineer_signer": "王工",
        "third_party_signer": "物流-顺达 赵师傅",
        "by": "王工",
        **change,
    }


def install() -> dict[str, Any]:
    return {
        "racks": [
            {"code": "R1", "location": "3F 机房 A 排 01", "anti_vibration": True},
            {"code": "R2", "location": "3F 机房 A 排 02", "anti_vibration": True},
        ],
        "trays": [{"code": "TP1", "kind": "power"}, {"code": "TS1", "kind": "signal"}],
        "devices": [
            {"serial": s, "rack": RACK_OF[s], "position": f"U{10 + 2 * i}-U{11 + 2 * i}"}
            for i, s in enumerate(DEVICES)
        ],
        "cables": CABLES,
        "per_design": True,
        "by": "王工",
    }


def cabling(**change: Any) -> dict[str, Any]:
    tray = {"power": "TP1", "signal": "TS1"}
    return {
        "cables": [
            {
                "cable": c["code"],
                "tray": tray[c["kind"]],
                "neat": True,
                "bundled_with_other_kind": False,
            }  # fmt: skip
            for c in CABLES
        ],
        "per_standard": True,
        "by": "王工",
        **change,
    }


def grounding(values: dict[str, float] | None = None) -> dict[str, Any]:
    ohms = {d: 0.3 + 0.05 * i for i, d in enumerate(DEVICES)}
    ohms.update(values or {})
    return {
        "measurements": [{"device": d, "ohms": v} for d, v in ohms.items()],
        "instrument": "接地电阻测试仪 ETCR2000",
        "by": "王工",
    }


def labels() -> dict[str, Any]:
    return {
        "racks": [{"code": "R1", "labelled": True}, {"code": "R2", "labelled": True}],
        "devices": [{"code": d, "labelled": True} for d in DEVICES],
        "cables": [{"cable": c["code"], "end_a": True, "end_b": True} for c in CABLES],
        "clear_correct_firm": True,
        "by": "王工",
    }


def system() -> dict[str, Any]:
    return {
        "software": "操作系统 V3.2，监控平台 2.1",
        "tests": [
            {"item": "网络连通性", "result": "全部节点互通", "passed": True},
            {"item": "存储挂载", "result": "正常", "passed": True},
        ],
        "commissioning_summary": "系统按《安装调试计划》完成安装调试，运行正常。",
        "per_plan": True,
        "by": "王工",
    }


def power_on() -> dict[str, Any]:
    return {"results": [{"device": d, "passed": True, "note": "正常"} for d in DEVICES],
            "by": "王工"}  # fmt: skip


def parts() -> dict[str, Any]:
    return {
        "issues": [{"model": "X200", "kind": "broken", "note": "导轨螺丝缺 2 颗"}],
        "by": "王工",
    }


def leftover() -> dict[str, Any]:
    return {
        "movements": [
            {
                "direction": "in",
                "item": "超五类网线",
                "quantity": 100,
                "unit": "米",
                "on": "2026-11-24",
                "by": "王工",
            },  # fmt: skip
            {
                "direction": "out",
                "item": "超五类网线",
                "quantity": 70,
                "unit": "米",
                "on": "2026-11-26",
                "by": "王工",
            },  # fmt: skip
            {
                "direction": "in",
                "item": "备用风扇",
                "quantity": 2,
                "unit": "个",
                "on": "2026-11-24",
                "by": "王工",
            },  # fmt: skip
        ],
        "leftover": [
            {"item": "超五类网线", "quantity": 30, "unit": "米"},
            {"item": "备用风扇", "quantity": 2, "unit": "个"},
        ],
        "by": "王工",
    }


def cleaning() -> dict[str, Any]:
    return {"racks_dust_free": True, "room_tidy": True, "no_leftovers": True, "by": "王工"}


def tools() -> dict[str, Any]:
    return {
        "tools": [
            {
                "tool": "接地电阻测试仪",
                "user": "王工",
                "taken_on": "2026-11-24",
                "returned_on": "2026-11-27",
            },  # fmt: skip
            {
                "tool": "压线钳",
                "user": "李工",
                "taken_on": "2026-11-24",
                "returned_on": "2026-11-26",
            },
        ],
        "by": "王工",
    }


def acceptance(**change: Any) -> dict[str, Any]:
    return {
        "accepted": True,
        "customer_signer": "张伟",
        "engineer_signer": "王工",
        "project_manager_signer": "项目经理-刘",
        "handed_over_to": "张伟",
        "remarks": "验收合格",
        "by": "项目经理-刘",
        **change,
    }


def play(
    say: Callable[[str], None],
    do: Callable[[str, str, dict[str, Any], Callable[[str], None]], None],
    now: datetime,
) -> str:
    """Create the project (phases every 5 minutes from now) and play the people through
    every step; ``do(project, step, form, say)`` waits for the run and submits the form."""
    from aftersales.api_projects import create_project
    from models.installation import ProjectCreate

    pid = f"P-DEMO-{int(time.time()) % 100000:05d}"
    create_project(ProjectCreate.model_validate(project(pid, now, timedelta(minutes=5))))
    say(f"[demo] installation project {pid}: run install-{pid}, 2 racks, 6 devices")
    do(pid, "unboxing", unboxing(), say)
    do(pid, "install", install(), say)
    do(pid, "site-work", {"labels": labels(), "cabling": cabling(),
                          "grounding": grounding({"SRV-003": 1.6})}, say)  # fmt: skip
    say(f"[demo] {pid}: SRV-003 measured 1.6 Ω (>= 1 Ω): refused, recorded as a defect; "
        "measured again after fixing the earth")  # fmt: skip
    do(pid, "site-work-2", {"grounding": grounding({"SRV-003": 0.6})}, say)
    do(pid, "system", system(), say)
    do(pid, "power-on", power_on(), say)
    do(pid, "close-out", {"parts": parts(), "leftover": leftover(), "cleaning": cleaning(),
                          "tools": tools()}, say)  # fmt: skip
    do(pid, "acceptance", acceptance(), say)
    say(f"[demo] {pid} accepted: see its progress table and documents in the run's artifacts")
    return pid
