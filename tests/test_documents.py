"""The installation project's documents (spec §6): built from the records a real project
entered through its steps, in Chinese, with its data and signers; every document's first
page rendered to PNG by PDFium (pypdfium2) and its title compared with the same text set
in the same font by Pillow, so a page of blank or tofu boxes fails."""

from __future__ import annotations

import zipfile
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest
from openpyxl import load_workbook
from PIL import Image, ImageDraw, ImageFont

from aftersales import documents as docs
from aftersales.runtime import deadlines
from models.db import session_scope
from models.installation import PartIssue
from tests import installation_sample as sample

T0 = datetime.fromisoformat("2026-11-23T10:00:00+08:00")
PID = "P-DOC-001"


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> docs.Records:
    """One project run through every phase on SQLite, serial SRV-004 not on the delivery
    note (the note says SRV-00X), one ground value refused and measured again."""
    from tests.conftest import _use_database

    url = f"sqlite:///{tmp_path_factory.mktemp('docs') / 'aftersales.db'}"
    _use_database(url)
    ctx = deadlines("default")
    serials = ["SRV-001", "SRV-002", "SRV-003", "SRV-00X"]
    sample.open_and_plan(ctx, PID, T0, serials=serials)
    sample.run_to_acceptance(ctx, PID, T0)
    with session_scope() as s:
        return docs.load_records(s, project_id=PID)


def ink(img: Image.Image) -> np.ndarray:
    return np.asarray(img.convert("L")) < 128


def title_band(page: np.ndarray) -> np.ndarray:
    """The first line of ink from the top of the page (the title), cropped to its ink."""
    rows = np.flatnonzero(page.any(axis=1))
    top = rows[0]
    bottom = top
    while bottom + 1 < page.shape[0] and page[bottom + 1].any():
        bottom += 1
    band = page[top : bottom + 1]
    cols = np.flatnonzero(band.any(axis=0))
    return band[:, cols[0] : cols[-1] + 1]


def pillow_text(text: str, font: Path) -> np.ndarray:
    f = ImageFont.truetype(str(font), 96)
    img = Image.new("L", (96 * (len(text) + 2), 160), 255)
    ImageDraw.Draw(img).text((20, 20), text, font=f, fill=0)
    a = ink(img)
    rows, cols = np.flatnonzero(a.any(axis=1)), np.flatnonzero(a.any(axis=0))
    return a[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]


def similarity(a: np.ndarray, b: np.ndarray, size: tuple[int, int] = (360, 40)) -> float:
    """Intersection over union of two ink masks scaled to one size."""

    def scaled(m: np.ndarray) -> np.ndarray:
        return ink(Image.fromarray(~m).resize(size, Image.Resampling.BILINEAR))

    x, y = scaled(a), scaled(b)
    return float((x & y).sum() / max((x | y).sum(), 1))


def render(pdf: Path, out: Path) -> Path:
    """The first page as PNG at 110 dpi, rendered by PDFium (the pypdfium2 wheel ships it:
    no system package, no system font)."""
    import pypdfium2 as pdfium

    doc = pdfium.PdfDocument(str(pdf))
    try:
        doc[0].render(scale=110 / 72).to_pil().save(out)
    finally:
        doc.close()
    return out


def test_every_document_is_built_with_the_project_and_its_signers(
    records: docs.Records, tmp_path: Path
) -> None:
    tz = deadlines("default").calendar.tz
    assert [d.key for d in docs.ready(records)] == [d.key for d in docs.DOCUMENTS]
    written = docs.write_documents(records, tmp_path, tz, made_at=T0)
    assert len(written) == 9
    for w in written:
        data = w.pdf.read_bytes()
        assert data.startswith(b"%PDF") and b"/FontFile3" in data and b"NotoSansSC" in data
        assert (w.xlsx is not None) == w.doc.table
    book = load_workbook(tmp_path / f"{PID}-parts.xlsx")
    cells = [str(c) for row in book.worksheets[0].iter_rows(values_only=True) for c in row if c]
    assert "序列号不符" in cells and "SRV-004" in cells  # the mismatch, as entered
    assert "签字：第三方负责人" in cells and "物流-顺达 赵师傅" in cells
    assert "上海某某科技有限公司" in cells and "张伟 138****5678" in cells  # contact masked
    installed = load_workbook(tmp_path / f"{PID}-installed.xlsx").worksheets[0]
    rows = [r for r in installed.iter_rows(values_only=True) if r and r[1] == "SRV-003"]
    assert rows and rows[0][6] == "0.7"  # the re-measured value, not the refused 1.2 Ω


def test_the_serial_mismatch_is_in_the_missing_broken_parts_report_INS_1(
    records: docs.Records,
) -> None:
    tz = deadlines("default").calendar.tz
    table = next(s for s in docs.sections("parts", records, tz) if isinstance(s, docs.Table))
    assert ["序列号不符", "X200", "SRV-004"] in [row[2:5] for row in table.rows]
    mismatch = next(r for r in table.rows if r[2] == "序列号不符")
    assert "SRV-00X" in mismatch[6]  # what the delivery note said
    assert any(isinstance(x, PartIssue) for x in records.issues)


def test_the_handover_archive_holds_every_document_INS_11(
    records: docs.Records, tmp_path: Path
) -> None:
    tz = deadlines("default").calendar.tz
    path = docs.archive(records, tmp_path, tz, made_at=T0)
    names = zipfile.ZipFile(path).namelist()
    assert sorted(n for n in names if n.endswith(".pdf")) == sorted(
        f"{PID}/{d.title}.pdf" for d in docs.DOCUMENTS
    )
    assert f"{PID}/已安装设备明细表.xlsx" in names and f"{PID}/资产明细表.xlsx" in names


@pytest.mark.parametrize("doc", docs.DOCUMENTS, ids=[d.key for d in docs.DOCUMENTS])
def test_each_document_renders_its_chinese_title_as_glyphs_not_tofu(
    records: docs.Records, doc: docs.Doc, tmp_path: Path
) -> None:
    tz = deadlines("default").calendar.tz
    [w] = docs.write_documents(records, tmp_path, tz, made_at=T0, keys=[doc.key])
    png = render(w.pdf, tmp_path / f"{doc.key}.png")
    page = ink(Image.open(png))
    assert page.mean() > 0.01  # a page with text and tables, not blank
    title = title_band(page)
    same = similarity(title, pillow_text(doc.title, docs.font_path()))
    # the controls: the title's characters as tofu (a font without CJK draws its
    # .notdef box), and another Chinese text of the same length
    import matplotlib

    dejavu = Path(matplotlib.get_data_path()) / "fonts" / "ttf" / "DejaVuSans.ttf"
    tofu = similarity(title, pillow_text(doc.title, dejavu))
    other = similarity(title, pillow_text("永和九年岁在癸丑"[: len(doc.title)], docs.font_path()))
    assert same > 0.55, (doc.key, same, tofu, other)
    assert same > tofu + 0.2 and same > other + 0.15, (doc.key, same, tofu, other)
