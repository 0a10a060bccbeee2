"""The contract equipment list of an installation project (INS-1), read from CSV or XLSX.

Columns (header row; English or the Chinese of a contract's list; order free):

=============  ==========  ===========================================================
column         中文         rule
=============  ==========  ===========================================================
``model``      型号          required
``quantity``   数量          required, a whole number >= 1
``line_no``    序号          optional (default: the row's order), unique
``description`` 名称 / 描述  optional
``unit``       单位          optional (default 台)
``kind``       类型          optional: ``device`` (default) or ``io_terminal`` (I/O终端)
``serials``    序列号        optional: the serial numbers the delivery note names,
                             separated by ``;``, ``,``, ``|`` or spaces; never more
                             than the quantity, never one twice in the file
=============  ==========  ===========================================================

Every row is checked; a bad one is reported as ``line N: column: reason`` (the header
is line 1), like the history import. A list with any bad row is refused as a whole:
nothing of the project is stored.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from aftersales.history import RowError
from models.installation import EquipmentLineCreate

ALIASES = {
    "line_no": ("line_no", "line", "no", "序号", "行号"),
    "model": ("model", "型号", "设备型号"),
    "description": ("description", "name", "名称", "描述", "设备名称"),
    "quantity": ("quantity", "qty", "数量"),
    "unit": ("unit", "单位"),
    "kind": ("kind", "type", "类型"),
    "serials": ("serials", "serial", "serial_numbers", "序列号"),
}
REQUIRED = ("model", "quantity")
KINDS = {
    "device": "device",
    "设备": "device",
    "io_terminal": "io_terminal",
    "I/O终端": "io_terminal",
}
_SPLIT = re.compile(r"[;,|，；\s]+")


class EquipmentFileError(ValueError):
    """The file cannot be read as an equipment list at all (format, header)."""


@dataclass(frozen=True)
class EquipmentList:
    lines: list[EquipmentLineCreate]
    errors: list[RowError]

    @property
    def ok(self) -> bool:
        return not self.errors


def _rows(path: Path) -> tuple[list[str], list[tuple[int, list[Any]]]]:
    suffix = path.suffix.lower()
    if not path.is_file():
        raise EquipmentFileError(f"{path.resolve()}: no such file")
    if suffix == ".csv":
        try:
            with path.open(encoding="utf-8-sig", newline="") as f:
                table = list(csv.reader(f))
        except UnicodeDecodeError as exc:
            raise EquipmentFileError(f"{path.resolve()}: not UTF-8 text ({exc.reason})") from None
    elif suffix in (".xlsx", ".xlsm"):
        import openpyxl

        try:
            book = openpyxl.load_workbook(path, read_only=True, data_only=True)
        except Exception as exc:  # noqa: BLE001 - openpyxl raises many kinds
            raise EquipmentFileError(f"{path.resolve()}: cannot read: {exc}") from exc
        try:
            table = [list(r) for r in book.worksheets[0].iter_rows(values_only=True)]
        finally:
            book.close()
    else:
        raise EquipmentFileError(f"{path.resolve()}: not a .csv or .xlsx file")
    if not table:
        raise EquipmentFileError(f"{path.resolve()}: empty file (a header row is required)")
    header = [str(c).strip() if c is not None else "" for c in table[0]]
    body = [(i + 2, r) for i, r in enumerate(table[1:]) if any(_text(c) for c in r)]
    return header, body


def _text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    return str(v).strip()


def _columns(header: list[str], path: Path) -> dict[str, int]:
    found: dict[str, int] = {}
    for i, name in enumerate(header):
        for canon, names in ALIASES.items():
            if name.lower() in (n.lower() for n in names):
                if canon in found:
                    raise EquipmentFileError(f"{path.resolve()}: column {canon!r} appears twice")
                found[canon] = i
    missing = [c for c in REQUIRED if c not in found]
    if missing:
        raise EquipmentFileError(
            f"{path.resolve()}: missing column {', '.join(missing)} (header: {', '.join(header)})"
        )
    return found


def read_equipment(path: Path | str) -> EquipmentList:
    """Read and check the list; ``errors`` lists every bad row (see the module docs)."""
    path = Path(path)
    header, body = _rows(path)
    cols = _columns(header, path)
    lines: list[EquipmentLineCreate] = []
    errors: list[RowError] = []
    first_line: dict[int, int] = {}
    first_serial: dict[str, int] = {}
    for n, (file_line, row) in enumerate(body, start=1):
        cell = {c: _text(row[i]) if i < len(row) else "" for c, i in cols.items()}
        raw: dict[str, Any] = {
            "line_no": cell.get("line_no") or n,
            "model": cell["model"],
            "quantity": cell["quantity"],
            "description": cell.get("description", ""),
            "unit": cell.get("unit") or "台",
            "serials": [s for s in _SPLIT.split(cell.get("serials", "")) if s],
        }
        kind = cell.get("kind", "")
        if kind:
            if kind not in KINDS:
                errors.append(RowError(file_line, "kind", f"{kind!r} is not device or io_terminal"))
                continue
            raw["kind"] = KINDS[kind]
        try:
            line = EquipmentLineCreate.model_validate(raw)
        except ValidationError as exc:
            for e in exc.errors():
                column = str(e["loc"][0]) if e["loc"] else "serials"
                msg = e["msg"].removeprefix("Value error, ")
                errors.append(RowError(file_line, column, msg))
            continue
        bad = False
        if line.line_no in first_line:
            errors.append(
                RowError(
                    file_line,
                    "line_no",
                    f"{line.line_no} repeats line {first_line[line.line_no]}",
                )
            )
            bad = True
        for s in line.serials:
            if s in first_serial:
                errors.append(
                    RowError(file_line, "serials", f"{s!r} repeats line {first_serial[s]}")
                )
                bad = True
        if bad:
            continue
        first_line[line.line_no] = file_line
        first_serial.update({s: file_line for s in line.serials})
        lines.append(line)
    if not body:
        errors.append(RowError(2, "model", "the list has no equipment line"))
    return EquipmentList(lines, sorted(errors, key=lambda e: (e.line, e.column)))
