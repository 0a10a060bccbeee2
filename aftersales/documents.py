"""The documents of an installation project (工程售后部作业指导书 §5, §6), built from the
records its steps entered, in Chinese, with the project's data and its signers.

=================  ==========================  ==========  ===============================
key                title                       after       content
=================  ==========================  ==========  ===============================
``unboxing``       开箱验货报告                 INS-1       boxes, every unit and serial
``parts``          缺坏件报告                   INS-1       what did not match; INS-8
``test-record``    安装测试记录                 INS-6       tests, ground values, cabling
``commissioning``  安装调试报告                 INS-7       software, summary, power-on
``acceptance``     系统安装验收报告             INS-11      phases, result, three signers
``installed``      已安装设备明细表             INS-11      each device, rack, Ω, power-on
``assets``         资产明细表                   INS-11      contract lines and serials
``tools``          工具使用记录                 INS-12      tools, users, dates
``materials``      备件、材料进出记录           INS-9       in/out records, leftover
=================  ==========================  ==========  ===============================

Each is a PDF (fpdf2, the Noto Sans SC font shipped by the ``pylopdf-fonts-zh-cn``
package, embedded as a subset: no system font is needed to read or print it); the
tables are an XLSX as well. A document is data: a list of sections (fields, a table, a
text, the signers) built by one function per document; the PDF and the XLSX writers
only lay them out. :func:`archive` zips them for the hand-over at INS-11.

No Prefect and no wall clock here: the caller gives the records and the time zone.
Personal data: the customer contact's phone number is masked (PRIV-1); the signers'
names are the point of a signed record and are shown.
"""

from __future__ import annotations

import io
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from sqlmodel import Session, select

from aftersales.privacy import mask_text
from models.installation import (
    PHASES,
    Cable,
    EquipmentLine,
    EquipmentUnit,
    GroundMeasurement,
    InstallationProject,
    MaterialRecord,
    PartIssue,
    Phase,
    Rack,
    Signature,
    SystemTest,
    ToolUse,
    Tray,
)

FONT = "noto"


def font_path() -> Path:
    """Noto Sans SC (SIL OFL 1.1), from the ``pylopdf-fonts-zh-cn`` package."""
    from pylopdf_fonts_zh_cn import sans_path

    return Path(sans_path())


# ---------------------------------------------------------------- the catalogue
@dataclass(frozen=True)
class Doc:
    key: str
    title: str
    after: Phase  # the phase whose completion makes the document
    table: bool  # also an XLSX


DOCUMENTS: tuple[Doc, ...] = (
    Doc("unboxing", "开箱验货报告", Phase.UNBOXING, False),
    Doc("parts", "缺坏件报告", Phase.UNBOXING, True),
    Doc("test-record", "安装测试记录", Phase.SYSTEM, True),
    Doc("commissioning", "安装调试报告", Phase.POWER_ON, False),
    Doc("materials", "备件、材料进出记录", Phase.LEFTOVER, True),
    Doc("tools", "工具使用记录", Phase.TOOLS, True),
    Doc("installed", "已安装设备明细表", Phase.ACCEPTANCE, True),
    Doc("assets", "资产明细表", Phase.ACCEPTANCE, True),
    Doc("acceptance", "系统安装验收报告", Phase.ACCEPTANCE, False),
)
BY_KEY = {d.key: d for d in DOCUMENTS}
ROLE_ZH = {
    "customer": "客户",
    "engineer": "负责工程师",
    "third_party": "第三方负责人",
    "project_manager": "项目经理",
    "counted_by": "清点人",
    "recorded_by": "记录人",
}
ISSUE_ZH = {
    "missing": "缺件",
    "broken": "坏件",
    "serial_mismatch": "序列号不符",
    "extra": "多发",
    "box_count": "箱数不符",
}
DIRECTION_ZH = {"in": "入", "out": "出", "leftover": "余料"}


# ---------------------------------------------------------------- the records
@dataclass
class Records:
    """Everything the documents show, read once from the database."""

    project: InstallationProject
    lines: list[EquipmentLine]
    units: list[EquipmentUnit]
    racks: list[Rack]
    trays: list[Tray]
    cables: list[Cable]
    grounds: list[GroundMeasurement]
    tests: list[SystemTest]
    issues: list[PartIssue]
    materials: list[MaterialRecord]
    tools: list[ToolUse]
    signatures: list[Signature]
    phases: list[Any] = field(default_factory=list)  # tasks.installation.PhaseProgress
    done: set[str] = field(default_factory=set)

    def signers(self, document: str) -> list[Signature]:
        return [s for s in self.signatures if s.document == document]


def load_records(session: Session, *, project_id: str) -> Records:
    from tasks.installation import done_steps, get_project, progress

    p = get_project(session, project_id=project_id)

    def rows(model: Any, *order: Any) -> list[Any]:
        q = select(model).where(model.project_id == p.id)
        return list(session.exec(q.order_by(*order) if order else q.order_by(model.id)).all())

    return Records(
        project=p,
        lines=rows(EquipmentLine, EquipmentLine.line_no),
        units=rows(EquipmentUnit, EquipmentUnit.line_no, EquipmentUnit.serial),
        racks=rows(Rack, Rack.code),
        trays=rows(Tray, Tray.code),
        cables=rows(Cable, Cable.code),
        grounds=rows(GroundMeasurement),
        tests=rows(SystemTest),
        issues=rows(PartIssue),
        materials=rows(MaterialRecord),
        tools=rows(ToolUse),
        signatures=rows(Signature),
        phases=progress(session, project_id=p.id),
        done=set(done_steps(session, p.ticket_id)),
    )


def ready(rec: Records) -> list[Doc]:
    """The documents whose phase is done."""
    return [d for d in DOCUMENTS if d.after.value in rec.done]


# ---------------------------------------------------------------- sections
@dataclass(frozen=True)
class Fields:
    rows: list[tuple[str, str]]


@dataclass(frozen=True)
class Table:
    caption: str
    header: list[str]
    rows: list[list[str]]
    widths: tuple[float, ...] | None = None  # relative column widths


@dataclass(frozen=True)
class Text:
    caption: str
    text: str


@dataclass(frozen=True)
class Signers:
    rows: list[tuple[str, str, str]]  # role, name, date


Section = Fields | Table | Text | Signers


def _t(at: datetime | None, tz: Any, fmt: str = "%Y-%m-%d %H:%M") -> str:
    return at.astimezone(tz).strftime(fmt) if at else ""


def _num(x: float) -> str:
    return f"{x:g}"


def _header(rec: Records) -> Fields:
    p = rec.project
    return Fields(
        [
            ("项目编号", p.id),
            ("工程名称", p.name),
            ("客户单位", p.customer),
            ("客户联系人", mask_text(p.customer_contact)),
            ("安装地点", p.site),
            ("项目管理部", p.project_manager),
            ("售后技术支持部", p.tech_support),
            ("客户服务中心", p.service_centre),
        ]
    )


def _signers(rec: Records, document: str, tz: Any) -> Signers:
    return Signers(
        [
            (ROLE_ZH.get(s.role, s.role), s.name, _t(s.signed_at, tz, "%Y-%m-%d"))
            for s in rec.signers(document)
        ]
    )


def _issue_rows(rec: Records, tz: Any) -> list[list[str]]:
    phase_zh = {"unboxing": "开箱验货 (INS-1)", "parts": "施工清点 (INS-8)"}
    return [
        [
            str(i + 1),
            phase_zh.get(x.phase, x.phase),
            ISSUE_ZH.get(x.kind, x.kind),
            x.model,
            x.serial,
            str(x.quantity),
            x.note,
            _t(x.recorded_at, tz, "%Y-%m-%d"),
        ]  # fmt: skip
        for i, x in enumerate(rec.issues)
    ]


def unboxing(rec: Records, tz: Any) -> list[Section]:
    p = rec.project
    rows = []
    for ln in rec.lines:
        got = [u for u in rec.units if u.line_no == ln.line_no]
        rows.append([str(ln.line_no), ln.model, ln.description, f"{ln.quantity} {ln.unit}",
                     str(len(got)), "、".join(u.serial for u in got) or "-",
                     "、".join(sorted({_condition(u.condition) for u in got})) or "缺件"])  # fmt: skip
    mismatched = sum(1 for x in rec.issues if x.phase == "unboxing")
    return [
        _header(rec),
        Fields(
            [
                ("发货单箱数", str(p.delivery_note_boxes)),
                ("清点箱数", str(p.boxes_counted)),
                ("外观与包装", p.packaging or ""),
                (
                    "验货结论",
                    "与合同设备清单相符"
                    if not mismatched
                    else f"有 {mismatched} 项不符，见《缺坏件报告》",
                ),
            ]
        ),  # fmt: skip
        Table(
            "按合同设备清单检查型号、数量、序列号",
            ["序号", "型号", "名称", "合同数量", "到货", "序列号", "状态"],
            rows,
            (1, 2, 2.5, 2, 1.3, 5, 1.5),
        ),  # fmt: skip
        _signers(rec, "unboxing", tz),
    ]


def _condition(c: str) -> str:
    return {"ok": "完好", "damaged": "损坏"}.get(c, c)


def parts(rec: Records, tz: Any) -> list[Section]:
    rows = _issue_rows(rec, tz)
    return [
        _header(rec),
        Table(
            "缺、坏件登记",
            ["序号", "发现阶段", "类别", "型号", "序列号", "数量", "说明", "日期"],
            rows or [["-", "", "无缺坏件", "", "", "", "", ""]],
            (1, 2.6, 2, 1.6, 2, 1, 4, 2),
        ),  # fmt: skip
        _signers(rec, "parts", tz),
    ]


def test_record(rec: Records, tz: Any) -> list[Section]:
    tests = [[str(i + 1), t.item, t.result, "合格" if t.passed else "不合格",
              _t(t.tested_at, tz)] for i, t in enumerate(rec.tests)]  # fmt: skip
    grounds = [[g.device, _num(g.ohms), "合格" if g.passed else "不合格（已整改复测）"
                if g.fixed_by_id else "不合格", g.measured_by, g.instrument,
                _t(g.measured_at, tz)] for g in rec.grounds]  # fmt: skip
    cables = [[c.code, "电源" if c.kind == "power" else "信号", c.end_a, c.end_b, c.tray or "",
               "是" if c.labelled_a and c.labelled_b else "否"] for c in rec.cables]  # fmt: skip
    return [
        _header(rec),
        Table(
            "系统安装测试", ["序号", "测试项目", "结果", "结论", "时间"], tests, (1, 4, 5, 1.5, 2.5)
        ),  # fmt: skip
        Table(
            "设备接地电阻（要求 < 1 Ω）",
            ["设备", "电阻 Ω", "结论", "测量人", "仪表", "时间"],
            grounds,
            (2, 1.3, 3, 1.6, 3, 2.5),
        ),  # fmt: skip
        Table(
            "综合布线与标签",
            ["线缆", "类别", "A 端", "B 端", "走线槽", "两端标签"],
            cables,
            (1.6, 1, 3, 3, 1.5, 1.5),
        ),  # fmt: skip
        _signers(rec, "test_record", tz),
    ]


def commissioning(rec: Records, tz: Any) -> list[Section]:
    p = rec.project
    power = [[u.serial, u.model, u.rack or "", "通过" if u.power_on_passed else "未测",
              u.power_on_note or "", _t(u.power_on_at, tz)]
             for u in rec.units if u.rack]  # fmt: skip
    return [
        _header(rec),
        Text("软、硬件安装内容", p.software or ""),
        Text("调试结论", p.commissioning_summary or ""),
        Table(
            "设备上电测试（INS-7）",
            ["设备", "型号", "机架", "结果", "说明", "时间"],
            power,
            (2, 1.5, 1, 1, 4, 2.5),
        ),  # fmt: skip
        _signers(rec, "commissioning", tz),
    ]


def acceptance(rec: Records, tz: Any) -> list[Section]:
    p = rec.project
    installed = sum(1 for u in rec.units if u.rack)
    phases = [[x.clause, x.title, _t(x.planned, tz, "%Y-%m-%d"), _t(x.done_at, tz, "%Y-%m-%d"),
               {"done": "完成", "done late": "完成（逾期）", "overdue": "逾期",
                "due soon": "临近", "open": "未完成"}.get(x.state, x.state)]
              for x in rec.phases]  # fmt: skip
    return [
        _header(rec),
        Table(
            "工程实施情况",
            ["条款", "阶段", "计划日期", "完成日期", "状态"],
            phases,
            (1.2, 4, 2, 2, 2),
        ),  # fmt: skip
        Fields(
            [
                (
                    "安装设备",
                    f"{installed} 台，机架 {len(rec.racks)} 个，线缆 {len(rec.cables)} 条",
                ),
                (
                    "接地电阻",
                    "全部 < 1 Ω"
                    if rec.grounds and all(g.passed or g.fixed_by_id for g in rec.grounds)
                    else "-",
                ),
                ("缺坏件", f"{len(rec.issues)} 项，见《缺坏件报告》"),
                ("验收结论", "验收合格" if p.accepted_at else "未验收"),
                ("验收日期", _t(p.accepted_at, tz, "%Y-%m-%d")),
                ("工程文档移交", p.handed_over_to or ""),
                ("备注", p.acceptance_remarks or ""),
            ]
        ),  # fmt: skip
        _signers(rec, "acceptance", tz),
    ]


def installed(rec: Records, tz: Any) -> list[Section]:
    last_ok = {g.device: g.ohms for g in rec.grounds if g.passed}
    rows = [[str(i + 1), u.serial, u.model, "I/O终端" if u.kind == "io_terminal" else "设备",
             u.rack or "", u.position or "", _num(last_ok[u.serial]) if u.serial in last_ok
             else "", "通过" if u.power_on_passed else "", "是" if u.labelled else "否"]
            for i, u in enumerate([u for u in rec.units if u.rack])]  # fmt: skip
    racks = [[r.code, r.location, "是" if r.anti_vibration else "否", "是" if r.labelled else "否"]
             for r in rec.racks]  # fmt: skip
    return [
        _header(rec),
        Table(
            "已安装设备",
            ["序号", "序列号", "型号", "类别", "机架", "位置", "接地 Ω", "上电", "标签"],
            rows,
            (1, 2.2, 1.6, 1.5, 1, 1.6, 1.4, 1.2, 1),
        ),  # fmt: skip
        Table("机架", ["机架", "位置", "防震", "标签"], racks, (1, 5, 1, 1)),
        _signers(rec, "acceptance", tz),
    ]


def assets(rec: Records, tz: Any) -> list[Section]:
    p = rec.project
    rows = []
    for ln in rec.lines:
        got = [u for u in rec.units if u.line_no == ln.line_no]
        rows.append([str(ln.line_no), ln.model, ln.description, str(ln.quantity), ln.unit,
                     str(len([u for u in got if u.rack])),
                     "、".join(u.serial for u in got) or "-", p.customer,
                     _t(p.accepted_at, tz, "%Y-%m-%d")])  # fmt: skip
    return [
        _header(rec),
        Table(
            "资产明细",
            ["序号", "型号", "名称", "数量", "单位", "已安装", "序列号", "资产归属", "验收日期"],
            rows,
            (1, 1.6, 2, 1, 1, 1.2, 4, 3, 2),
        ),  # fmt: skip
        _signers(rec, "acceptance", tz),
    ]


def tools(rec: Records, tz: Any) -> list[Section]:
    rows = [[str(i + 1), t.tool, t.user, t.taken_on.isoformat(), t.returned_on.isoformat(),
             t.condition] for i, t in enumerate(rec.tools)]  # fmt: skip
    return [
        _header(rec),
        Table(
            "工具使用",
            ["序号", "工具", "使用人", "领用日期", "归还日期", "状况"],
            rows,
            (1, 4, 2, 2, 2, 2),
        ),  # fmt: skip
        _signers(rec, "tools", tz),
    ]


def materials(rec: Records, tz: Any) -> list[Section]:
    moves = [[str(i + 1), DIRECTION_ZH[m.direction], m.item, _num(m.quantity), m.unit,
              m.on.isoformat() if m.on else "", m.by, m.note]
             for i, m in enumerate([m for m in rec.materials if m.direction != "leftover"])]  # fmt: skip
    left = [[m.item, _num(m.quantity), m.unit] for m in rec.materials if m.direction == "leftover"]
    return [
        _header(rec),
        Table(
            "备件、材料进出",
            ["序号", "进/出", "名称", "数量", "单位", "日期", "经手人", "说明"],
            moves,
            (1, 1, 3, 1.2, 1, 2, 1.6, 3),
        ),  # fmt: skip
        Table(
            "余料清点（INS-9）", ["名称", "数量", "单位"], left or [["无余料", "", ""]], (4, 1.5, 1)
        ),  # fmt: skip
        _signers(rec, "materials", tz),
    ]


BUILDERS: dict[str, Callable[[Records, Any], list[Section]]] = {
    "unboxing": unboxing,
    "parts": parts,
    "test-record": test_record,
    "commissioning": commissioning,
    "acceptance": acceptance,
    "installed": installed,
    "assets": assets,
    "tools": tools,
    "materials": materials,
}


def sections(key: str, rec: Records, tz: Any) -> list[Section]:
    return BUILDERS[key](rec, tz)


# ---------------------------------------------------------------- PDF
def render_pdf(key: str, rec: Records, tz: Any, *, made_at: datetime) -> bytes:
    """The document as a PDF (A4, Noto Sans SC embedded as a subset)."""
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    doc = BY_KEY[key]

    class Pdf(FPDF):
        def footer(self) -> None:
            self.set_y(-12)
            self.set_font(FONT, size=8)
            self.cell(0, 5, f"{doc.title} · {rec.project.id} · 第 {self.page_no()} 页 / 共 {{nb}} 页",
                      align="C")  # fmt: skip

    pdf = Pdf(format="A4")
    pdf.set_creation_date(made_at)
    pdf.set_title(f"{doc.title} {rec.project.id}")
    pdf.set_author(rec.project.tech_support)
    pdf.add_font(FONT, "", font_path())  # one face; headings are set without emphasis
    pdf.set_auto_page_break(True, margin=15)
    pdf.alias_nb_pages()
    pdf.set_margins(15, 15, 15)
    pdf.add_page()
    pdf.set_font(FONT, size=18)
    pdf.cell(0, 12, doc.title, align="C", new_x="LMARGIN", new_y="NEXT")
    pdf.set_font(FONT, size=9)
    pdf.set_text_color(90, 90, 90)
    pdf.cell(0, 6, f"{rec.project.id} · {rec.project.name} · 生成于 {_t(made_at, tz)}",
             align="C", new_x="LMARGIN", new_y="NEXT")  # fmt: skip
    pdf.set_text_color(0, 0, 0)
    pdf.ln(3)
    head = FontFace(emphasis="", fill_color=(230, 236, 244))
    for sec in sections(key, rec, tz):
        pdf.set_font(FONT, size=10)
        if isinstance(sec, Fields):
            with pdf.table(col_widths=(1, 3), first_row_as_headings=False,
                           line_height=6) as t:  # fmt: skip
                for k, v in sec.rows:
                    r = t.row()
                    r.cell(k, style=head)
                    r.cell(v)
        elif isinstance(sec, Table):
            pdf.set_font(FONT, size=11)
            pdf.cell(0, 8, sec.caption, new_x="LMARGIN", new_y="NEXT")
            pdf.set_font(FONT, size=8 if len(sec.header) > 6 else 9)
            with pdf.table(col_widths=sec.widths, headings_style=head, line_height=5) as t:
                t.row(sec.header)
                for row in sec.rows:
                    t.row(row)
        elif isinstance(sec, Text):
            pdf.set_font(FONT, size=11)
            pdf.cell(0, 8, sec.caption, new_x="LMARGIN", new_y="NEXT")
            pdf.set_font(FONT, size=10)
            pdf.multi_cell(0, 6, sec.text or "-", new_x="LMARGIN", new_y="NEXT")
        else:
            pdf.set_font(FONT, size=11)
            pdf.cell(0, 8, "签字", new_x="LMARGIN", new_y="NEXT")
            pdf.set_font(FONT, size=10)
            with pdf.table(col_widths=(2, 3, 2), headings_style=head, line_height=7) as t:
                t.row(["角色", "签字", "日期"])
                for row in sec.rows or [("", "", "")]:
                    t.row(list(row))
        pdf.ln(4)
    return bytes(pdf.output())


# ---------------------------------------------------------------- XLSX
def render_xlsx(key: str, rec: Records, tz: Any) -> bytes:
    """The document's tables as a workbook: one sheet per table, the title and the
    project's fields above it."""
    from openpyxl import Workbook
    from openpyxl.styles import Font

    doc = BY_KEY[key]
    book = Workbook()
    book.remove(book.active)
    secs = sections(key, rec, tz)
    fields = [s for s in secs if isinstance(s, Fields)]
    signers = [s for s in secs if isinstance(s, Signers)]
    for n, tab in enumerate([s for s in secs if isinstance(s, Table)]):
        ws = book.create_sheet(title=(tab.caption[:28] or f"表{n + 1}").replace("/", "、"))
        ws.append([doc.title])
        ws["A1"].font = Font(bold=True, size=14)
        for f in fields[:1]:
            for k, v in f.rows:
                ws.append([k, v])
        ws.append([])
        ws.append(tab.header)
        for cell in ws[ws.max_row]:
            cell.font = Font(bold=True)
        for row in tab.rows:
            ws.append(row)
        for sg in signers:
            ws.append([])
            for role, name, on in sg.rows:
                ws.append([f"签字：{role}", name, on])
        for i, w in enumerate(tab.widths or (), start=1):
            ws.column_dimensions[ws.cell(row=1, column=i).column_letter].width = 6 + 4 * w
    out = io.BytesIO()
    book.save(out)
    return out.getvalue()


# ---------------------------------------------------------------- files
@dataclass(frozen=True)
class Written:
    doc: Doc
    pdf: Path
    xlsx: Path | None


def write_documents(
    rec: Records, out_dir: Path, tz: Any, *, made_at: datetime, keys: list[str] | None = None
) -> list[Written]:
    """Write the documents (those whose phase is done, or ``keys``) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    docs = [BY_KEY[k] for k in keys] if keys is not None else ready(rec)
    written = []
    for d in docs:
        stem = f"{rec.project.id}-{d.key}"
        pdf = out_dir / f"{stem}.pdf"
        pdf.write_bytes(render_pdf(d.key, rec, tz, made_at=made_at))
        xlsx = None
        if d.table:
            xlsx = out_dir / f"{stem}.xlsx"
            xlsx.write_bytes(render_xlsx(d.key, rec, tz))
        written.append(Written(d, pdf, xlsx))
    return written


def archive(
    rec: Records, out_dir: Path, tz: Any, *, made_at: datetime, written: list[Written] | None = None
) -> Path:
    """INS-11: every document of the project in one ZIP (工程文档), Chinese file names;
    ``written`` are documents just written (else all are written now)."""
    if written is None:
        keys = [d.key for d in DOCUMENTS]
        written = write_documents(rec, out_dir, tz, made_at=made_at, keys=keys)
    path = out_dir / f"{rec.project.id}-工程文档.zip"
    stamp = made_at.astimezone(tz).timetuple()[:6]
    with zipfile.ZipFile(path, "w", compression=zipfile.ZIP_DEFLATED) as z:
        for w in written:
            for f in (w.pdf, w.xlsx):
                if f is None:
                    continue
                info = zipfile.ZipInfo(f"{rec.project.id}/{w.doc.title}{f.suffix}", stamp)
                info.compress_type = zipfile.ZIP_DEFLATED
                z.writestr(info, f.read_bytes())
    return path


def phase_title(phase: Phase) -> str:
    return PHASES[phase][1]
