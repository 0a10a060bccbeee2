"""Masking of personal data (PRIV-1).

PRIV-1: never disclose personal data -- ID number, home address, bank card,
full phone number -- in notifications, logs, public replies or reports.

This module holds the single set of maskers every outbound path uses:

* field maskers for values whose meaning is known (``mask_phone``,
  ``mask_id_number``, ``mask_bank_card``, ``mask_address``, ``mask_email``);
* ``mask_text`` which finds personal data inside free text;
* ``mask_mapping`` which masks a (nested) record by key name;
* ``MaskingFilter`` / ``install_log_masking`` for the logging system.

Every masker is idempotent: masking an already masked value returns it
unchanged, so layered defences (mask the context, then the rendered text, then
the log record) never garble each other's output.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

__all__ = [
    "MaskingFilter",
    "install_log_masking",
    "luhn_valid",
    "mask_address",
    "mask_name",
    "mask_bank_card",
    "mask_email",
    "mask_id_number",
    "mask_mapping",
    "mask_phone",
    "mask_text",
    "uninstall_log_masking",
]

MASK = "*"
_CJK = re.compile(r"[\u3400-\u9fff]")


_CN_MOBILE_CC = re.compile(r"861[3-9]\d{9}")


def _digits(s: str) -> str:
    return "".join(ch for ch in s if ch.isdigit())


# --------------------------------------------------------------------------
# Field maskers
# --------------------------------------------------------------------------


def mask_phone(s: str) -> str:
    """Mask a phone number.

    A Chinese mobile number keeps its first 3 and last 4 digits
    (``13812345678`` -> ``138****5678``); a ``+86``/``0086`` prefix is kept as
    ``+86 ``. Any other number keeps at most its first 3 and last 4 digits and
    always hides at least 4 digits; very short numbers are hidden entirely.
    Values that already contain ``*`` are returned unchanged.
    """
    s = str(s).strip()
    if not s or MASK in s:
        return s
    digits = _digits(s)
    if not digits:
        return s
    international = s.startswith(("+", "00"))
    if s.startswith("00"):
        digits = digits[2:]
    if len(digits) == 13 and _CN_MOBILE_CC.fullmatch(digits):
        return "+86 " + digits[2:5] + MASK * 4 + digits[-4:]
    prefix = "+" if international else ""
    n = len(digits)
    if n < 7:
        return prefix + MASK * n
    head = min(3, max(0, n - 8))
    tail = min(4, n - head - 4)
    return prefix + digits[:head] + MASK * (n - head - tail) + digits[n - tail :]


def mask_id_number(s: str) -> str:
    """Mask an identity document number.

    An 18-character PRC resident ID (last character may be ``X``) or a 15-digit
    old-style ID keeps its first 3 and last 4 characters:
    ``11010519900307123X`` -> ``110***********123X``. Other documents
    (passports, ...) of 10+ characters keep the same 3 + 4, shorter ones keep
    only the first and last 2 characters. Already masked values are unchanged.
    """
    s = str(s).strip()
    if not s or MASK in s:
        return s
    compact = re.sub(r"[\s-]", "", s).upper()
    n = len(compact)
    if n >= 10:
        return compact[:3] + MASK * (n - 7) + compact[-4:]
    if n >= 6:
        return compact[:1] + MASK * (n - 3) + compact[-2:]
    return MASK * n


def mask_bank_card(s: str) -> str:
    """Mask a bank card number, keeping only its last 4 digits.

    ``6222 0212 3456 7890`` (spaces/dashes allowed, 12-19 digits) ->
    ``**** **** **** 7890``; the output never reveals the card's length.
    Values that are not card-like are hidden entirely; already masked values
    are unchanged.
    """
    s = str(s).strip()
    if not s or MASK in s:
        return s
    digits = _digits(s)
    if len(digits) >= 8:
        return "**** **** **** " + digits[-4:]
    return MASK * max(len(s), 4)


# Administrative levels of a Chinese address, outermost first. A level name is
# 1-10 Chinese characters that contain no other level marker; "小区", "园区",
# ... are residential compounds and parks, not districts.
_NAME = r"(?:(?![省市区县])[\u3400-\u9fff]){1,10}?"
_CN_ADMIN = re.compile(
    rf"^(?:{_NAME}(?:省|自治区|特别行政区))?"
    rf"(?:{_NAME}(?:市|自治州|地区|盟))?"
    rf"(?:{_NAME}(?:(?<![小社园校厂景营矿库])区|县|市|旗))?"
)


def mask_address(s: str) -> str:
    """Mask an address below the district/city level.

    Chinese addresses keep the province/city/district (省/市/区/县) prefix and
    replace the rest with ``***``:
    ``北京市朝阳区建国路88号1201`` -> ``北京市朝阳区***``. Other addresses keep
    their first token (unless it contains a digit, i.e. a house number) and
    replace the rest with ``***``. Idempotent.
    """
    s = str(s).strip()
    if not s:
        return s
    if _CJK.search(s):
        kept = _CN_ADMIN.match(s)
        prefix = kept.group(0) if kept else ""
        rest = s[len(prefix) :]
        return prefix + "***" if rest else prefix
    tokens = re.split(r"[\s,]+", s, maxsplit=1)
    first = tokens[0]
    rest = tokens[1] if len(tokens) > 1 else ""
    if any(ch.isdigit() for ch in first):
        return "***"
    return f"{first} ***" if rest else first


def mask_name(s: str) -> str:
    """Mask a person's name for a group channel or a report: the family name stays
    (``张伟`` -> ``张*``, ``Li Na`` -> ``L. *``)."""
    s = str(s).strip()
    if not s:
        return s
    if _CJK.search(s[0]):
        return s[0] + "*" * max(1, len(s) - 1)
    return f"{s[0]}. *"


def mask_email(s: str) -> str:
    """Mask an e-mail address: ``alice@example.com`` -> ``a***@example.com``."""
    s = str(s).strip()
    local, sep, domain = s.rpartition("@")
    if not sep:
        return mask_text(s)
    if not local or MASK in local:
        return s
    return f"{local[0]}***@{domain}"


def luhn_valid(digits: str) -> bool:
    """True when ``digits`` (digits only) passes the Luhn checksum."""
    if not digits.isdigit():
        return False
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


# --------------------------------------------------------------------------
# Free text
# --------------------------------------------------------------------------

# A number must not be glued to other ASCII letters or digits (order numbers,
# ticket ids, hashes); Chinese text around it is fine.
_L = r"(?<![0-9A-Za-z])"
_R = r"(?![0-9A-Za-z])"
_ID18 = r"[1-9]\d{5}(?:18|19|20)\d{2}(?:0[1-9]|1[0-2])(?:0[1-9]|[12]\d|3[01])\d{3}[\dXx]"
_CARD = r"\d{4}(?:[ -]?\d{4}){3}(?:[ -]?\d{1,3})?"
_MOBILE = r"(?:(?:\+|00)86[ -]?)?1[3-9]\d(?:[ -]?\d{4}){2}"
_INTL = r"\+[1-9]\d{0,2}[ -]?(?:\(\d{1,4}\)[ -]?)?\d(?:[ -]?\d){5,13}"
_LANDLINE = r"(?:\(0\d{2,3}\)[ -]?|0\d{2,3}[ -])[1-9]\d{2,3}[ -]?\d{4}"
_EMAIL = r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*\.[A-Za-z]{2,}"

# A street address inside free text: a Chinese road/street with a house number (and
# building/unit/room), or an English house number and street. Masked below the
# district/city level by mask_address, keeping the words before it.
_CN_STREET = (
    r"[\u3400-\u9fff]{0,24}?(?:路|街|大道|大街|巷|弄|胡同)\s*\d+(?:-\d+)?\s*号"
    r"(?:\s*[\dA-Za-z]+(?:-[\dA-Za-z]+)?\s*(?:号楼|栋|幢|座|单元|楼|层|室|户))*"
    r"(?:\s*\d+(?:-\d+)?(?![\d号]))?"
)
_EN_STREET = (
    r"\b\d{1,6}[A-Za-z]?\s+(?:[A-Z][A-Za-z]*\.?\s+){1,4}"
    r"(?:Street|St|Road|Rd|Avenue|Ave|Lane|Ln|Drive|Dr|Boulevard|Blvd|Way|Court|Ct)\b\.?"
)

_PII = re.compile(
    rf"(?P<address>{_CN_STREET}|{_EN_STREET})"
    rf"|(?P<email>{_EMAIL})"
    rf"|{_L}(?P<id>{_ID18}){_R}"
    rf"|{_L}(?P<card>{_CARD}){_R}"
    rf"|(?<![0-9A-Za-z+])(?P<phone>{_MOBILE}|{_INTL}|{_LANDLINE}){_R}"
)
# Words just before a number that say it is a card even when Luhn disagrees.
_CARD_CONTEXT = re.compile(
    r"(?:卡号|银行卡|信用卡|借记卡|账号|帐号|card|account|iban)[^0-9]{0,12}$", re.IGNORECASE
)


def _mask_match(m: re.Match[str]) -> str:
    kind = m.lastgroup
    value = m.group(0)
    if kind == "address":
        return mask_address(value)
    if kind == "email":
        return mask_email(value)
    if kind == "id":
        return mask_id_number(value)
    if kind == "card":
        digits = _digits(value)
        before = m.string[max(0, m.start() - 24) : m.start()]
        if luhn_valid(digits) or _CARD_CONTEXT.search(before):
            return mask_bank_card(value)
        return value  # an order number or similar, not a card
    return mask_phone(value)


def mask_text(text: str) -> str:
    """Find and mask personal data inside free text.

    Masks mobile phones (with ``+86`` prefix and space/dash separators),
    landlines with an area code, international numbers with a ``+`` prefix,
    18-character PRC IDs, bank card numbers (16-19 digits passing the Luhn
    check, or preceded by a word such as 卡号/card), e-mail addresses and street
    addresses (a Chinese road with a house number, kept down to the district; an
    English house number and street).
    A 16-19 digit number that fails Luhn (an order number) is left alone.
    Idempotent: ``mask_text(mask_text(t)) == mask_text(t)``.
    """
    if not text:
        return text
    return _PII.sub(_mask_match, text)


# --------------------------------------------------------------------------
# Records
# --------------------------------------------------------------------------

_KEY_SPLIT = re.compile(r"[^0-9A-Za-z\u3400-\u9fff]+|(?<=[a-z0-9])(?=[A-Z])")


def _key_kind(key: object) -> str | None:
    """Which masker a key name calls for, or ``None`` for free text."""
    if not isinstance(key, str):
        return None
    tokens = [t.lower() for t in _KEY_SPLIT.split(key) if t]
    joined = "".join(tokens)
    if not tokens:
        return None
    if {"email", "mail", "邮箱", "电子邮件"} & set(tokens) or joined.endswith("email"):
        return "email"
    if any(
        w in joined
        for w in (
            "bankcard",
            "cardno",
            "cardnum",
            "creditcard",
            "debitcard",
            "bankaccount",
            "accountno",
            "accountnumber",
            "iban",
            "银行卡",
            "卡号",
            "账号",
        )
    ):
        return "bank_card"
    if any(
        joined.endswith(w)
        for w in (
            "idnumber",
            "idno",
            "idcard",
            "identitycard",
            "identitynumber",
            "identityno",
            "nationalid",
            "passport",
            "passportno",
            "passportnumber",
            "certno",
            "ssn",
            "身份证",
            "身份证号",
            "证件号",
        )
    ):
        return "id_number"
    if {"address", "addr", "地址", "住址"} & set(tokens) or joined.endswith("address"):
        return "address"
    if {
        "phone",
        "mobile",
        "tel",
        "telephone",
        "cellphone",
        "msisdn",
        "contact",
        "手机",
        "电话",
        "手机号",
        "联系方式",
        "联系电话",
    } & set(tokens) or joined.endswith(("phonenumber", "mobilenumber", "phoneno")):
        return "phone"
    return None


_PHONE_LIKE = re.compile(r"[+\d][\d\s()+-]*\d")


def _mask_value(kind: str | None, value: Any) -> Any:
    if isinstance(value, Mapping):
        return mask_mapping(value)
    if isinstance(value, list | tuple | set | frozenset):
        masked = [_mask_value(kind, v) for v in value]
        return masked if isinstance(value, list) else tuple(masked)
    if kind is None:
        return mask_text(value) if isinstance(value, str) else value
    if value is None or isinstance(value, bool):
        return value
    text = str(value)
    if kind == "phone":
        # "contact" may hold a name, an e-mail or a number.
        return mask_phone(text) if _PHONE_LIKE.fullmatch(text.strip()) else mask_text(text)
    if kind == "email":
        return mask_email(text)
    if kind == "id_number":
        return mask_id_number(text)
    if kind == "bank_card":
        return mask_bank_card(text)
    return mask_address(text)


def mask_mapping(d: Mapping[Any, Any]) -> dict[Any, Any]:
    """Return a copy of ``d`` with personal data masked, recursively.

    Values are masked by key name (``phone``, ``contact``, ``mobile``,
    ``customer_phone``, ``id_number``, ``address``, ``bank_card``, ``email``,
    ...), whatever their type; every other string is run through
    ``mask_text``. Nested mappings and sequences are masked too; ``d`` itself
    is not modified.
    """
    return {k: _mask_value(_key_kind(k), v) for k, v in d.items()}


# --------------------------------------------------------------------------
# Logging
# --------------------------------------------------------------------------


class MaskingFilter(logging.Filter):
    """A logging filter that masks personal data in every record it sees.

    The message is rendered (``msg % args``), masked with ``mask_text`` and
    stored back in ``record.msg`` with empty ``args``; exception and stack
    text are pre-rendered and masked as well. It never drops a record.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        mask_record(record)
        return True


_MASKED_FLAG = "_aftersales_masked"


def mask_record(record: logging.LogRecord) -> logging.LogRecord:
    """Mask ``record`` in place (idempotent) and return it."""
    if getattr(record, _MASKED_FLAG, False):
        return record
    try:
        message = record.getMessage()
    except Exception:  # a broken format string: mask the parts instead
        message = f"{record.msg} {record.args!r}"
    record.msg = mask_text(str(message))
    record.args = ()
    if record.exc_info and not record.exc_text:
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = mask_text(record.exc_text)
    if record.stack_info:
        record.stack_info = mask_text(record.stack_info)
    setattr(record, _MASKED_FLAG, True)
    return record


class _ScopedMaskingFilter(MaskingFilter):
    """The filter ``install_log_masking`` puts on loggers and their handlers: a handler
    may be shared with the root logger (Prefect's console handler is), so it masks only
    records of the installed hierarchies and leaves other loggers' records as they are."""

    def filter(self, record: logging.LogRecord) -> bool:
        if _covered(record.name, _installed.get("prefixes", ())):
            mask_record(record)
        return True


_FILTER = _ScopedMaskingFilter()
_installed: dict[str, Any] = {}


def _covered(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def install_log_masking(logger_names: Iterable[str] = ("aftersales", "prefect")) -> MaskingFilter:
    """Make sure logs of ``logger_names`` (and their children) carry no personal data.

    Adds a ``MaskingFilter`` to each named logger and to its handlers, and wraps
    the log record factory so that records of any child logger (which bypass
    the parent's logger filters) are masked at creation and reach every handler
    -- root handlers, pytest's caplog, Prefect's API handler -- already masked.
    Safe to call repeatedly; returns the filter.
    """
    names = tuple(logger_names)
    for name in names:
        logger = logging.getLogger(name)
        if _FILTER not in logger.filters:
            logger.addFilter(_FILTER)
        for handler in logger.handlers:
            if _FILTER not in handler.filters:
                handler.addFilter(_FILTER)

    prefixes = tuple(sorted(set(names) | set(_installed.get("prefixes", ()))))
    _installed["prefixes"] = prefixes
    if "factory" not in _installed:
        previous: Callable[..., logging.LogRecord] = logging.getLogRecordFactory()

        def factory(*args: Any, **kwargs: Any) -> logging.LogRecord:
            record = previous(*args, **kwargs)
            if _covered(record.name, _installed.get("prefixes", ())):
                mask_record(record)
            return record

        _installed["factory"] = factory
        _installed["previous"] = previous
        logging.setLogRecordFactory(factory)
    return _FILTER


def uninstall_log_masking(logger_names: Iterable[str] = ("aftersales", "prefect")) -> None:
    """Undo ``install_log_masking`` (tests)."""
    for name in logger_names:
        logger = logging.getLogger(name)
        logger.removeFilter(_FILTER)
        for handler in logger.handlers:
            handler.removeFilter(_FILTER)
    factory = _installed.pop("factory", None)
    previous = _installed.pop("previous", None)
    _installed.pop("prefixes", None)
    if factory is not None and logging.getLogRecordFactory() is factory and previous is not None:
        logging.setLogRecordFactory(previous)
