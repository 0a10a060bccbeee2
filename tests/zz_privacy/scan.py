"""The session-wide personal-data scan (issue 11 §9, PRIV-1).

``REGISTRY`` collects, while the session runs:

* the personal values the tests submitted (*secrets*): read from the record tables
  (``ticket``, ``customer``, ``installation_project``) of every project database just
  before its fixture drops it, from the rows the test process writes into those tables
  (mapper events: an erasure test removes its values before the teardown could read
  them), and the fixed demo data (``aftersales.demo.CUSTOMERS``);
* the text of every place a leak can reach in those databases (every other table's
  string and JSON columns).

At the end ``tests/zz_privacy/test_personal_data_scan.py`` adds the sink archive, the
Prefect server's logs, artifacts, flow/task runs, run inputs, variables and events,
Prefect's result storage and every file the session wrote under its temporary
directories, and asks for the findings: every place that holds a submitted phone, e-mail,
ID number, bank card or street address unmasked, or a submitted name in a group channel
(``sync_group``) or a report file. A finding shows the value masked, never raw.

Collection is off unless the scan module is part of the session (``configure``), so a
run of other tests alone pays nothing.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import threading
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from aftersales import privacy

Kind = Literal["phone", "email", "id_number", "bank_card", "address", "name"]

# The project's record of the customer holds the raw values (spec §8): not scanned.
RECORD_TABLES = frozenset({"ticket", "customer", "installation_project"})
# Rows read per table for the scan (history imports of a benchmark can hold millions of
# rows of statistics and no free text worth the time; every e2e table is far smaller).
MAX_ROWS_PER_TABLE = 50_000
# Groups: the sink paths of a group channel, where a customer's name must not appear.
GROUP_PATHS = ("/sync_group",)
# Files read as text; ``.yaml``/``.yml`` are inputs the tests wrote (project files), not
# outputs, and ``.db`` files are project databases (scanned by SQL, record tables apart).
TEXT_SUFFIXES = frozenset(
    {".csv", ".html", ".htm", ".md", ".txt", ".json", ".jsonl", ".log", ".svg", ".xml", ".tsv"}
)
SQLITE_SUFFIXES = frozenset({".db", ".sqlite", ".sqlite3"})


@dataclass(frozen=True)
class Secret:
    """A personal value the session submitted; ``value`` is never printed."""

    kind: Kind
    value: str = field(repr=False)
    source: str = ""

    @property
    def preview(self) -> str:
        return _mask(self.kind, self.value)


@dataclass(frozen=True)
class Place:
    """A piece of text a leak could reach; ``names`` when a customer's name is a leak there
    (a group channel, a report)."""

    where: str
    text: str = field(repr=False)
    names: bool = False


@dataclass(frozen=True)
class Finding:
    where: str
    kind: Kind
    preview: str  # the value masked
    context: str  # the text around it, every submitted value in it masked

    def __str__(self) -> str:
        return f"{self.where}: {self.kind} {self.preview!r} in …{self.context}…"


def _mask(kind: Kind, value: str) -> str:
    if kind == "phone":
        return privacy.mask_phone(value)
    if kind == "email":
        return privacy.mask_email(value)
    if kind == "id_number":
        return privacy.mask_id_number(value)
    if kind == "bank_card":
        return privacy.mask_bank_card(value)
    if kind == "name":
        return privacy.mask_name(value)
    return privacy.mask_address(value)


_DIGITS = re.compile(r"\d")
_ROAD = re.compile(
    r"[\u3400-\u9fff]{2}(?:路|街|大道|大街|巷|弄|胡同)\s*\d+(?:-\d+)?\s*号"
    r"|\b\d{1,6}[A-Za-z]?\s+(?:[A-Z][A-Za-z]*\.?\s+){1,4}"
    r"(?:Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Boulevard|Blvd|Way|Court|Ct)\b"
)
_CN_MOBILE = re.compile(r"(?:86)?(1[3-9]\d{9})")
_CJK = re.compile(r"[\u3400-\u9fff]")


DIGIT_KINDS = frozenset({"phone", "id_number", "bank_card"})
_BETWEEN_DIGITS = re.compile(r"(?<=\d)[ -](?=[\dXx])")


def _collapse(text: str) -> str:
    """Digits written with spaces or dashes between them, written without: a phone
    ``138-1234-5678`` is then found as ``13812345678``."""
    return _BETWEEN_DIGITS.sub("", text)


def _needles(secret: Secret) -> list[str]:
    """The literal strings that are the secret's sensitive part as a leak would hold it
    (digits are looked for in ``_collapse``d text, e-mails in lower case)."""
    value = secret.value.strip()
    if secret.kind in DIGIT_KINDS:
        digits = "".join(_DIGITS.findall(value))
        if secret.kind == "id_number" and value.upper().endswith("X"):
            return [digits + "X", digits + "x"] if len(digits) >= 9 else []
        if secret.kind == "phone" and (m := _CN_MOBILE.fullmatch(digits)):
            digits = m.group(1)
        return [digits] if len(digits) >= 7 else []
    if secret.kind == "email":
        return [value.lower()] if "@" in value else []
    if secret.kind == "address":
        kept = privacy.mask_address(value).removesuffix("***").strip()
        rest = value[len(kept) :].strip() if value.startswith(kept) else value
        parts = {rest} if len(rest) >= 4 else set()
        parts |= {m.group(0) for m in _ROAD.finditer(value)}
        return sorted(parts, key=len, reverse=True)
    # a name: two CJK characters or four letters at least, else too common to tell
    if (_CJK.search(value) and len(value) >= 2) or len(value) >= 4:
        return [value]
    return []


def _find(hay: str, needle: str, kind: str) -> int:
    """Where ``needle`` stands in ``hay`` as a value of its own (a phone's digits not inside
    a longer number, but after a glued ``86``), or -1."""
    start = hay.find(needle)
    while start != -1:
        end = start + len(needle)
        if kind not in DIGIT_KINDS:
            return start
        before = start
        if kind == "phone" and hay[max(0, start - 2) : start] == "86":
            before = start - 2
        if not (before > 0 and hay[before - 1].isdigit()) and not (
            end < len(hay) and hay[end].isdigit()
        ):
            return start
        start = hay.find(needle, start + 1)
    return -1


def secrets_in_text(text: str, source: str) -> Iterator[Secret]:
    """The personal values inside free text, as ``aftersales.privacy`` finds them."""
    for m in privacy._PII.finditer(text):  # the project's own detector of free-text PII
        value = m.group(0)
        if privacy._mask_match(m) == value:
            continue  # an order number or similar the masker leaves alone
        kind = m.lastgroup
        yield Secret(
            "id_number" if kind == "id" else "bank_card" if kind == "card" else kind,  # type: ignore[arg-type]
            value,
            source,
        )


_EMAIL_ONLY = re.compile(privacy._EMAIL)
_PHONE_ONLY = re.compile(r"[+\d][\d\s()+-]{5,}\d")


def secrets_in_field(column: str, value: str, source: str) -> Iterator[Secret]:
    """A record column's value: classified by column name, else by its shape; any personal
    data inside free text too."""
    value = value.strip()
    if not value or value == "[erased]" or privacy.MASK in value:
        return
    col = column.lower()
    if col in ("name", "customer_name", "signer", "contact_name"):
        yield Secret("name", value, source)
        return
    kind = privacy._key_kind(column)
    if kind == "phone" and _EMAIL_ONLY.fullmatch(value):
        kind = "email"
    if kind == "phone" and not (
        _PHONE_ONLY.fullmatch(value) and 7 <= sum(c.isdigit() for c in value) <= 15
    ):
        kind = None  # a "contact" that holds a name or a handle (E.164: at most 15 digits)
    if kind in ("phone", "email", "id_number", "bank_card", "address"):
        yield Secret(kind, value, source)  # type: ignore[arg-type]
    yield from secrets_in_text(value, source)


@dataclass
class Registry:
    enabled: bool = False
    # (never in a repr: an assertion message must not print a raw value)
    secrets: dict[tuple[str, str], Secret] = field(default_factory=dict, repr=False)
    # (text, names) -> where
    places: dict[tuple[str, bool], str] = field(default_factory=dict, repr=False)
    databases: list[str] = field(default_factory=list)  # labels of the databases harvested
    errors: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    # -- collecting ------------------------------------------------------------------------
    def add_secret(self, secret: Secret) -> None:
        with self._lock:
            self.secrets.setdefault((secret.kind, secret.value.strip()), secret)

    def add_secrets(self, secrets: Iterable[Secret]) -> None:
        for s in secrets:
            self.add_secret(s)

    def add_place(self, where: str, text: str, *, names: bool = False) -> None:
        if not text or len(text) < 4:
            return
        with self._lock:
            self.places.setdefault((text, names), where)

    def add_record(self, table: str, row: dict[str, Any], source: str) -> None:
        for column, value in row.items():
            if isinstance(value, str):
                self.add_secrets(secrets_in_field(column, value, f"{source} {table}.{column}"))

    def harvest_database(self, url: str, label: str) -> None:
        """Read the submitted values from the record tables and the text of every other
        table of one project database (called before the fixture drops it)."""
        if not self.enabled or url in self.databases:
            return
        self.databases.append(url)
        try:
            _harvest(self, url, label)
        except Exception as exc:  # noqa: BLE001 - a database that cannot be read is reported
            self.errors.append(f"{label} ({url.split('@')[-1]}): {type(exc).__name__}: {exc}")

    # -- matching --------------------------------------------------------------------------
    def findings(self, extra: Iterable[Place] = ()) -> list[Finding]:
        """Every place holding a submitted value unmasked: one finding per value and place."""
        needles = [(n, s) for s in self.secrets.values() for n in _needles(s)]
        needles.sort(key=lambda ns: len(ns[0]), reverse=True)
        out: list[Finding] = []
        places = [Place(w, t, n) for (t, n), w in self.places.items()] + list(extra)
        for place in places:
            hays = {"text": place.text}
            found: set[tuple[str, str]] = set()
            for needle, secret in needles:
                if secret.kind == "name" and not place.names:
                    continue
                key = (
                    "digits"
                    if secret.kind in DIGIT_KINDS
                    else "lower"
                    if secret.kind == "email"
                    else "text"
                )
                if key not in hays:
                    hays[key] = _collapse(place.text) if key == "digits" else place.text.lower()
                hay = hays[key]
                at = _find(hay, needle, secret.kind)
                if at < 0 or (secret.kind, secret.preview) in found:
                    continue
                found.add((secret.kind, secret.preview))
                lo, hi = max(0, at - 40), min(len(hay), at + len(needle) + 40)
                context = (
                    self._masked(hay[lo:at], needles)
                    + f"[{secret.preview}]"
                    + self._masked(hay[at + len(needle) : hi], needles)
                )
                out.append(
                    Finding(place.where, secret.kind, secret.preview, context.replace("\n", " "))
                )
        return out

    @staticmethod
    def _masked(text: str, needles: list[tuple[str, Secret]]) -> str:
        """``text`` with every submitted value in it masked, then ``mask_text``."""
        for needle, secret in needles:
            if needle in text:
                text = text.replace(needle, secret.preview)
        return privacy.mask_text(text)


REGISTRY = Registry()


# ------------------------------------------------------------------ project databases
def _engine(url: str) -> Any:
    from sqlalchemy import create_engine

    if url.startswith("postgresql"):
        url = url.replace("postgresql://", "postgresql+psycopg://", 1)
        return create_engine(url, connect_args={"connect_timeout": 10}, poolclass=_null_pool())
    return create_engine(url, connect_args={"timeout": 10}, poolclass=_null_pool())


def _null_pool() -> Any:
    from sqlalchemy.pool import NullPool

    return NullPool


def _texts(value: Any) -> str | None:
    if value is None or isinstance(value, bool | int | float):
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, dict | list):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, bytes):
        return value.decode("utf-8", errors="replace")
    return None  # dates, decimals: no personal data


def _harvest(reg: Registry, url: str, label: str) -> None:
    from sqlalchemy import MetaData, select

    engine = _engine(url)
    try:
        meta = MetaData()
        meta.reflect(bind=engine)
        with engine.connect() as conn:
            for table in meta.sorted_tables:
                if table.name == "alembic_version":
                    continue
                pk = [c.name for c in table.primary_key.columns]
                rows = conn.execute(select(table).limit(MAX_ROWS_PER_TABLE)).mappings()
                for row in rows:
                    ident = ",".join(str(row[c]) for c in pk) or "?"
                    if table.name in RECORD_TABLES:
                        reg.add_record(table.name, dict(row), f"{label} row {ident}")
                        continue
                    for column, value in row.items():
                        text = _texts(value)
                        if text:
                            reg.add_place(f"db {label}: {table.name}.{column} [{ident}]", text)
    finally:
        engine.dispose()


def watch_record_writes() -> None:
    """Record the personal values of every customer/ticket row this process writes (an
    erasure replaces them before the fixture's teardown could read them)."""
    from sqlalchemy import event

    from models.entities import Customer, Ticket

    def on_write(_mapper: Any, _conn: Any, target: Any) -> None:
        table = type(target).__tablename__
        row = {c: getattr(target, c, None) for c in ("name", "phone", "id_number", "address")}
        row |= {c: getattr(target, c, None) for c in ("customer_name", "contact", "description")}
        REGISTRY.add_record(str(table), row, "written by the test process")

    for model in (Customer, Ticket):
        if not event.contains(model, "before_insert", on_write):
            event.listen(model, "before_insert", on_write)
            event.listen(model, "before_update", on_write)


def demo_secrets() -> list[Secret]:
    from aftersales.demo import CUSTOMERS

    out: list[Secret] = []
    for c in CUSTOMERS:
        for column in ("name", "phone", "id_number", "address"):
            value = getattr(c, column)
            if value:
                out.extend(secrets_in_field(column, value, f"aftersales.demo {c.id}"))
    return out


# ------------------------------------------------------------------ the sink archive
def sink_places() -> list[Place]:
    from tests.sink import ARCHIVE

    places = []
    for address, req in list(ARCHIVE):
        group = any(req.path.endswith(p) for p in GROUP_PATHS)
        text = req.body if isinstance(req.body, str) else json.dumps(req.body, ensure_ascii=False)
        places.append(Place(f"sink {address}{req.path} ({req.method} {req.status})", text, group))
    return places


# ------------------------------------------------------------------ Prefect's database
PAGE = 200  # the server's default page limit (PREFECT_API_DEFAULT_LIMIT)


def prefect_places(api_url: str, timeout: float = 30.0) -> list[Place]:
    """Every log, artifact, flow run (name, parameters, state message, tags), task run,
    flow-run input, variable and event the session's Prefect server holds."""
    import httpx

    places: list[Place] = []
    with httpx.Client(base_url=api_url.rstrip("/") + "/", timeout=timeout) as http:

        def paged(path: str, sort: str) -> Iterator[dict[str, Any]]:
            offset = 0
            while True:
                resp = http.post(path, json={"limit": PAGE, "offset": offset, "sort": sort})
                resp.raise_for_status()
                batch = resp.json()
                yield from batch
                if len(batch) < PAGE:
                    return
                offset += PAGE

        def add(kind: str, item: dict[str, Any], *, key: str = "id") -> None:
            text = json.dumps(item, ensure_ascii=False, default=str)
            places.append(Place(f"prefect {kind} {item.get(key)}", text))

        for log in paged("logs/filter", "TIMESTAMP_ASC"):
            add(f"log (flow run {log.get('flow_run_id')})", log)
        for art in paged("artifacts/filter", "ID_DESC"):
            add(f"artifact {art.get('key')}", art)
        run_ids = []
        for run in paged("flow_runs/filter", "ID_DESC"):
            run_ids.append(run["id"])
            add(f"flow run {run.get('name')}", run)
        for task in paged("task_runs/filter", "ID_DESC"):
            add("task run", task)
        for var in paged("variables/filter", "NAME_ASC"):
            add("variable", var, key="name")
        for run_id in run_ids:
            resp = http.post(
                f"flow_runs/{run_id}/input/filter",
                json={"prefix": "", "limit": 1000, "exclude_keys": []},
            )
            resp.raise_for_status()
            for item in resp.json():
                add(f"flow run input {item.get('key')} (run {run_id})", item)
        resp = http.post(
            "events/filter",
            json={
                "filter": {"occurred": {"since": "2000-01-01T00:00:00Z"}, "order": "ASC"},
                "limit": 50,
            },
        )
        while True:
            resp.raise_for_status()
            page = resp.json()
            for event in page.get("events", []):
                add(f"event {event.get('event')}", event)
            if not page.get("next_page"):
                break
            resp = http.get(page["next_page"])
    return places


def result_storage_places(root: Path) -> list[Place]:
    """Prefect's persisted results: a JSON record whose ``result`` is the serialised value
    (base64 of a pickle or JSON); strings inside a pickle are UTF-8, so decoding the bytes
    finds them."""
    places = []
    if not root.is_dir():
        return places
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        raw = path.read_bytes()
        texts = [raw.decode("utf-8", errors="replace")]
        try:
            record = json.loads(raw)
        except ValueError:
            record = None
        if isinstance(record, dict) and isinstance(record.get("result"), str):
            try:
                texts.append(base64.b64decode(record["result"]).decode("utf-8", errors="replace"))
            except (binascii.Error, ValueError):
                pass
        places.append(Place(f"prefect result {path}", "\n".join(texts)))
    return places


# ------------------------------------------------------------------ files
def pdf_text(path: Path) -> str:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    try:
        return "\n".join(page.get_textpage().get_text_range() for page in pdf)
    finally:
        pdf.close()


def _is_project_document(path: Path) -> bool:
    from aftersales.documents import BY_KEY

    return any(path.stem.endswith(f"-{key}") for key in BY_KEY)


def file_places(roots: Sequence[Path], skip: Iterable[Path] = ()) -> tuple[list[Place], list[Path]]:
    """Every report and log file under ``roots`` (names count in all of them but logs), and
    the SQLite files found there (project databases to harvest)."""
    skipped = [s.resolve() for s in skip]
    places: list[Place] = []
    databases: list[Path] = []
    seen: set[Path] = set()
    for root in roots:
        if not root.is_dir():
            continue
        for path in sorted(p for p in root.rglob("*") if p.is_file()):
            real = path.resolve()
            if real in seen or any(real.is_relative_to(s) for s in skipped):
                continue
            seen.add(real)
            suffix = path.suffix.lower()
            if suffix in SQLITE_SUFFIXES:
                databases.append(path)
            elif suffix == ".pdf":
                # an installation project's documents (aftersales/documents.py: the
                # acceptance report and the others the customer signs) name the customer's
                # people by design; their phones, ID numbers and addresses are still checked
                names = not _is_project_document(path)
                places.append(Place(f"report {path}", pdf_text(path), names=names))
            elif suffix in TEXT_SUFFIXES:
                text = path.read_text(encoding="utf-8", errors="replace")
                places.append(Place(f"file {path}", text, names=suffix != ".log"))
    return places, databases
