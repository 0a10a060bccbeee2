"""Notifications by recipient role, rendered from templates and sent through Apprise.

* ``load_templates`` reads ``aftersales/templates/messages.yaml`` (data, not
  code) and checks every template once.
* ``render`` masks the context (PRIV-1) *before* formatting and masks the
  rendered title/body again, so no notification carries a full phone number,
  ID number, bank card or street address.
* ``Notifier.send`` delivers to every Apprise URL configured for a role and
  retries failed URLs with exponential backoff; it raises ``DeliveryError``
  rather than returning a silent ``False``. ``Notifier.try_send`` makes a
  single attempt and reports instead of raising, for an outbox that schedules
  its own retries.

Bodies are never logged; failure reasons (taken from Apprise's own log lines)
are masked before they reach an exception, a report or a log.
"""

from __future__ import annotations

import copy
import fnmatch
import logging
import re
import string
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import apprise
import yaml

from aftersales.privacy import mask_mapping, mask_name, mask_text

__all__ = [
    "DeliveryError",
    "DeliveryReport",
    "NoRouteError",
    "Notifier",
    "RenderedMessage",
    "TemplateError",
    "load_templates",
    "render",
    "template_fields",
]

log = logging.getLogger("aftersales.notify")

_CLAUSE_ID = re.compile(r"^[A-Z]+(?:-[A-Z0-9]+)*(?:-\*)?$")
_FIELD_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class TemplateError(ValueError):
    """An unknown template, a malformed template, or a missing placeholder value."""

    def __init__(self, template_id: str, message: str, *, field: str | None = None) -> None:
        self.template_id = template_id
        self.field = field
        super().__init__(f"template {template_id!r}: {message}")


class DeliveryError(RuntimeError):
    """A message could not be delivered to a role after all attempts."""

    def __init__(
        self,
        role: str,
        template: str,
        attempts: int,
        reason: str,
        *,
        retryable: bool = True,
    ) -> None:
        self.role = role
        self.template = template
        self.attempts = attempts
        self.reason = mask_text(reason)
        self.retryable = retryable
        super().__init__(
            f"delivery of template {template!r} to role {role!r} failed after "
            f"{attempts} attempt(s): {self.reason}"
        )


class NoRouteError(DeliveryError):
    """No Apprise URL is configured for the role."""

    def __init__(self, role: str, template: str) -> None:
        super().__init__(
            role,
            template,
            0,
            f"no Apprise URL configured for role {role!r} (set AFTERSALES_NOTIFY_{role.upper()})",
            retryable=False,
        )


@dataclass(frozen=True)
class RenderedMessage:
    """A rendered, masked notification; ``clause`` is the spec clause it carries out."""

    template: str
    clause: str
    title: str
    body: str


@dataclass
class DeliveryReport:
    """Outcome of a delivery. ``error`` is masked; ``retryable`` is False for
    configuration problems (no route, invalid URL) that a retry cannot fix."""

    role: str
    template: str
    attempts: int
    delivered: bool
    error: str | None
    retryable: bool = True
    route: str | None = None  # "primary" | "fallback": the route that delivered


# --------------------------------------------------------------------------
# Templates
# --------------------------------------------------------------------------


def _default_templates_text() -> str:
    return (
        resources.files("aftersales")
        .joinpath("templates", "messages.yaml")
        .read_text(encoding="utf-8")
    )


def _fields(template_id: str, text: str) -> list[str]:
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        raise TemplateError(template_id, f"bad format string: {exc}") from exc
    names: list[str] = []
    for _literal, name, _spec, _conv in parsed:
        if name is None:
            continue
        if not _FIELD_NAME.match(name):
            raise TemplateError(
                template_id,
                f"placeholder {{{name}}} must be a plain name (no index, attribute or position)",
                field=name or None,
            )
        if name not in names:
            names.append(name)
    return names


#: who reads a message: named people (the name helps them), or a group channel where a
#: customer's name is personal data (PRIV-1) and is masked like a phone number
AUDIENCES = ("people", "group")
#: the context fields holding a person's name
NAME_FIELDS = frozenset({"customer_name", "signer", "name"})


def _check_templates(data: Any, source: str) -> dict[str, dict[str, Any]]:
    if not isinstance(data, Mapping):
        raise TemplateError("*", f"{source} must map template ids to templates")
    checked: dict[str, dict[str, Any]] = {}
    for template_id, spec in data.items():
        tid = str(template_id)
        if not isinstance(spec, Mapping):
            raise TemplateError(tid, "must be a mapping with clause, title and body")
        for key in ("clause", "title", "body"):
            if not isinstance(spec.get(key), str) or not spec[key].strip():
                raise TemplateError(tid, f"needs a non-empty string {key!r}", field=key)
        if not _CLAUSE_ID.match(spec["clause"]):
            raise TemplateError(
                tid, f"clause {spec['clause']!r} is not a clause id", field="clause"
            )
        levels = spec.get("clause_levels", {})
        if not isinstance(levels, Mapping):
            raise TemplateError(tid, "clause_levels must map levels to clause ids")
        for level, clause in levels.items():
            if not isinstance(clause, str) or not fnmatch.fnmatchcase(clause, spec["clause"]):
                raise TemplateError(
                    tid,
                    f"clause_levels[{level!r}] = {clause!r} is not in family {spec['clause']!r}",
                    field="clause_levels",
                )
        defaults = spec.get("defaults", {})
        if not isinstance(defaults, Mapping) or not all(
            isinstance(k, str) and _FIELD_NAME.match(k) for k in defaults
        ):
            raise TemplateError(tid, "defaults must map placeholder names to values")
        audience = spec.get("audience", "people")
        if audience not in AUDIENCES:
            raise TemplateError(
                tid, f"audience {audience!r} is not one of {', '.join(AUDIENCES)}", field="audience"
            )
        _fields(tid, spec["title"])
        _fields(tid, spec["body"])
        checked[tid] = {
            **spec, "defaults": dict(defaults), "clause_levels": dict(levels), "audience": audience
        }  # fmt: skip
    return checked


@lru_cache(maxsize=8)
def _load(path: str | None) -> dict[str, dict[str, Any]]:
    if path is None:
        text, source = _default_templates_text(), "aftersales/templates/messages.yaml"
    else:
        text, source = Path(path).read_text(encoding="utf-8"), path
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TemplateError("*", f"{source} is not valid YAML: {exc}") from exc
    return _check_templates(data, source)


def load_templates(path: Path | None = None) -> dict[str, dict[str, Any]]:
    """Return the templates (id -> {clause, title, body, ...}), validated and cached.

    ``path`` defaults to the packaged ``aftersales/templates/messages.yaml``.
    The result is a copy: changing it does not change the cache.
    """
    return copy.deepcopy(_load(None if path is None else str(Path(path).resolve())))


def template_fields(
    template_id: str, *, required_only: bool = False, path: Path | None = None
) -> list[str]:
    """Placeholder names of a template in order of first use (``clause`` included).

    With ``required_only`` only those without a default in the template's
    ``defaults`` (and other than ``clause``, which render resolves itself — except for a
    family without ``clause_levels``, whose concrete clause the context must give)."""
    spec = _get(template_id, path)
    names = _fields(template_id, spec["title"])
    for name in _fields(template_id, spec["body"]):
        if name not in names:
            names.append(name)
    if required_only:
        names = [n for n in names if n != "clause" and n not in spec["defaults"]]
        if "*" in spec["clause"] and not spec["clause_levels"]:
            names.append("clause")
    return names


def _get(template_id: str, path: Path | None) -> dict[str, Any]:
    templates = _load(None if path is None else str(Path(path).resolve()))
    try:
        return templates[template_id]
    except KeyError:
        raise TemplateError(
            template_id, f"unknown template; known: {', '.join(sorted(templates))}"
        ) from None


def _resolve_clause(template_id: str, spec: Mapping[str, Any], ctx: Mapping[str, Any]) -> str:
    """The clause a message carries out: the template's own, or for a family
    (``ESC-*``) the context's ``clause`` when it is in the family, else the
    clause mapped from the context's ``level``."""
    family = str(spec["clause"])
    if "*" not in family:
        return family
    given = ctx.get("clause")
    if isinstance(given, str) and fnmatch.fnmatchcase(given, family):
        return given
    levels: Mapping[str, str] = spec["clause_levels"]
    level = ctx.get("level")
    if isinstance(level, str) and level.lower() in levels:
        return levels[level.lower()]
    if given:
        raise TemplateError(
            template_id,
            f"clause {given!r} is not in family {family!r} and level {level!r} "
            f"is not one of {sorted(levels)}",
            field="clause",
        )
    if not levels:
        raise TemplateError(
            template_id, f"missing value for 'clause' (one in {family!r})", field="clause"
        )
    raise TemplateError(
        template_id,
        f"missing value for 'level' (one of {sorted(levels)}) or a 'clause' in {family!r}",
        field="level",
    )


@lru_cache(maxsize=256)
def _used_names(template_id: str, path: str | None) -> frozenset[str]:
    """The placeholders of a template's title and body, and what resolves its clause."""
    spec = _load(path)[template_id]
    return frozenset(
        {*_fields(template_id, spec["title"]), *_fields(template_id, spec["body"])}
        | {"clause", "level"}
    )


def render(
    template_id: str, context: Mapping[str, Any], *, path: Path | None = None
) -> RenderedMessage:
    """Render a template with ``context``; personal data is masked (PRIV-1).

    The context is masked with ``mask_mapping`` before formatting and the
    rendered title and body go through ``mask_text``. The template's
    ``defaults`` fill optional placeholders (a ``None`` value counts as
    missing). ``{clause}`` renders as
    the resolved clause id (a family such as ``ESC-*`` resolves from the
    context's ``clause`` or ``level``). Raises ``TemplateError`` for an unknown
    template or a missing placeholder, naming both.
    """
    spec = _get(template_id, path)
    used = _used_names(template_id, None if path is None else str(Path(path).resolve()))
    given = {k: v for k, v in context.items() if v is not None and k in used}
    # only the values the template shows are masked (a firing round renders thousands)
    masked = mask_mapping({**spec["defaults"], **given})
    if spec["audience"] == "group":  # PRIV-1: names too in a group channel
        masked = {
            k: mask_name(v) if k in NAME_FIELDS and str(v).strip(" -") else v
            for k, v in masked.items()
        }  # a default "-" (no name given) stays as it is
    clause = _resolve_clause(template_id, spec, masked)
    values = {**masked, "clause": clause}
    parts: dict[str, str] = {}
    for part in ("title", "body"):
        try:
            parts[part] = spec[part].format_map(values)
        except KeyError as exc:
            name = str(exc.args[0]) if exc.args else "?"
            raise TemplateError(
                template_id, f"missing value for placeholder {{{name}}} in {part}", field=name
            ) from None
        except (ValueError, TypeError, IndexError, AttributeError) as exc:
            raise TemplateError(template_id, f"cannot format {part}: {exc}") from exc
    return RenderedMessage(
        template=template_id,
        clause=clause,
        title=mask_text(parts["title"].strip()),
        body=mask_text(parts["body"].strip()),
    )


# --------------------------------------------------------------------------
# Delivery
# --------------------------------------------------------------------------


class _ThreadReasons(logging.Handler):
    """Collects WARNING+ lines Apprise logs in the current thread only.

    Like ``apprise.LogCapture`` but scoped to one thread, so concurrent sends
    (Prefect task threads) never see each other's reasons.
    """

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self._thread = threading.get_ident()
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self._thread:
            return
        try:
            self.lines.append(record.getMessage())
        except Exception:  # pragma: no cover - a broken third-party log call
            self.lines.append(str(record.msg))


def _attempt(target: apprise.Apprise, message: RenderedMessage) -> str | None:
    """One Apprise notify() call; returns ``None`` on success, else a reason."""
    apprise_logger = logging.getLogger("apprise")
    capture = _ThreadReasons()
    apprise_logger.addHandler(capture)
    try:
        result = target.notify(body=message.body, title=message.title)
    except Exception as exc:  # a plugin bug must not escape as a silent success
        return mask_text(f"{type(exc).__name__}: {exc}")
    finally:
        apprise_logger.removeHandler(capture)
    if result:
        return None
    lines = [line for line in capture.lines if not line.startswith("Retry ")]
    if lines:
        reason = lines[-1]
    elif result is None:
        reason = "Apprise sent nothing (no service matched)"
    else:
        reason = "Apprise reported a failed notification"
    return mask_text(reason)


def with_timeouts(url: str, seconds: float) -> str:
    """The Apprise URL with its connect and read timeouts stated (``cto``/``rto``),
    unless the operator's URL states its own."""
    if "cto=" in url or "rto=" in url:
        return url
    sep = "&" if "?" in url else "?"
    return f"{url}{sep}cto={seconds:g}&rto={seconds:g}"


class _TokenBucket:
    """At most ``rate`` messages per second to one target, bursts up to ``burst``.

    Sleeping here is a sub-second pacing of real I/O, never a deadline."""

    def __init__(self, rate: float, burst: float) -> None:
        self.rate = rate
        self.burst = max(1.0, burst)
        self._tokens = self.burst
        self._at = time.monotonic()
        self._lock = threading.Lock()

    def acquire(self) -> None:
        while True:
            with self._lock:
                now = time.monotonic()
                self._tokens = min(self.burst, self._tokens + (now - self._at) * self.rate)
                self._at = now
                if self._tokens >= 1.0:
                    self._tokens -= 1.0
                    return
                wait = (1.0 - self._tokens) / self.rate
            time.sleep(wait)


def _as_routes(
    routes: Callable[[str], list[str]] | Mapping[str, list[str]] | None,
) -> Callable[[str], list[str]]:
    if routes is None:
        return lambda role: []
    if isinstance(routes, Mapping):
        table = {role: list(urls) for role, urls in routes.items()}
        return lambda role: list(table.get(role, []))
    return routes


class Notifier:
    """Sends rendered messages to the Apprise URLs configured for a role.

    One ``apprise.Apprise`` object per target URL is kept per thread (built once, reused
    for every message; Apprise's ``json://`` plugin opens a connection per request, so
    there is no connection to keep). ``rate_per_target`` paces messages per target URL
    across threads (token bucket). A role may have ``fallback`` routes, which
    ``try_send(..., fallback=True)`` uses when the role's own route fails (and always
    when the role has no route of its own)."""

    def __init__(
        self,
        routes: Callable[[str], list[str]] | Mapping[str, list[str]],
        *,
        max_attempts: int = 5,
        backoff_seconds: float = 2.0,
        sleep: Callable[[float], None] = time.sleep,
        timeout_seconds: float = 4.0,
        fallback: Callable[[str], list[str]] | Mapping[str, list[str]] | None = None,
        rate_per_target: float = 0.0,
    ) -> None:
        if max_attempts < 1:
            raise ValueError("max_attempts must be >= 1")
        if backoff_seconds < 0:
            raise ValueError("backoff_seconds must be >= 0")
        if rate_per_target < 0:
            raise ValueError("rate_per_target must be >= 0")
        self._routes = _as_routes(routes)
        self._fallback = _as_routes(fallback)
        self.max_attempts = max_attempts
        self.backoff_seconds = backoff_seconds
        self._sleep = sleep
        self.timeout_seconds = timeout_seconds
        self.rate_per_target = rate_per_target
        self._local = threading.local()
        self._buckets: dict[str, _TokenBucket] = {}
        self._buckets_lock = threading.Lock()

    @classmethod
    def from_settings(
        cls, settings: Any = None, *, sleep: Callable[[float], None] = time.sleep
    ) -> Notifier:
        """A notifier using ``settings.routes`` (and ``fallback_routes``), its
        attempts/backoff, timeout and per-target rate (``get_settings()`` when
        ``settings`` is None)."""
        if settings is None:
            from aftersales.settings import get_settings

            settings = get_settings()
        return cls(
            settings.routes,
            max_attempts=settings.notify_max_attempts,
            backoff_seconds=settings.notify_backoff_seconds,
            sleep=sleep,
            timeout_seconds=settings.notify_timeout_seconds,
            fallback=getattr(settings, "fallback_routes", None),
            rate_per_target=getattr(settings, "notify_rate_per_target", 0.0),
        )

    def backoff(self, attempt: int) -> float:
        """Delay after failed attempt number ``attempt`` (1-based)."""
        return self.backoff_seconds * 2 ** (attempt - 1)

    def has_fallback(self, role: str) -> bool:
        return any(u.strip() for u in self._fallback(role))

    # ------------------------------------------------------------ targets
    def _apprise(self, url: str) -> apprise.Apprise | None:
        """The thread's cached Apprise object for ``url`` (None: not a valid URL)."""
        cache: dict[str, apprise.Apprise | None] | None = getattr(self._local, "cache", None)
        if cache is None:
            cache = self._local.cache = {}
        if url not in cache:
            target = apprise.Apprise(asset=apprise.AppriseAsset(async_mode=False))
            cache[url] = target if target.add(with_timeouts(url, self.timeout_seconds)) else None
        return cache[url]

    def _pace(self, url: str) -> None:
        if self.rate_per_target <= 0:
            return
        bucket = self._buckets.get(url)
        if bucket is None:
            with self._buckets_lock:
                bucket = self._buckets.setdefault(
                    url, _TokenBucket(self.rate_per_target, self.rate_per_target)
                )
        bucket.acquire()

    def _targets(self, role: str, message: RenderedMessage) -> list[apprise.Apprise]:
        urls = [u.strip() for u in self._routes(role) if u and u.strip()]
        if not urls:
            raise NoRouteError(role, message.template)
        targets: list[apprise.Apprise] = []
        for index, url in enumerate(urls, start=1):
            target = self._apprise(url)
            if target is None:
                # Never echo the URL: it may carry a token or password.
                raise DeliveryError(
                    role,
                    message.template,
                    0,
                    f"Apprise URL #{index} of {len(urls)} for role {role!r} is not valid",
                    retryable=False,
                )
            targets.append(target)
        return targets

    def send(self, role: str, message: RenderedMessage) -> DeliveryReport:
        """Deliver ``message`` to every URL of ``role``, retrying failed URLs.

        Up to ``max_attempts`` rounds; after failed round ``n`` it sleeps
        ``backoff_seconds * 2**(n-1)``. URLs that already succeeded are not
        sent again. Raises ``NoRouteError`` when the role has no URL and
        ``DeliveryError`` (naming role, template, attempts and the masked last
        reason) when some URL still fails after the last attempt.
        """
        pending = self._targets(role, message)
        reason = ""
        for attempt in range(1, self.max_attempts + 1):
            still: list[apprise.Apprise] = []
            for target in pending:
                failure = _attempt(target, message)
                if failure is not None:
                    reason = failure
                    still.append(target)
            pending = still
            if not pending:
                log.info(
                    "delivered %s (%s) to %s in %d attempt(s)",
                    message.template,
                    message.clause,
                    role,
                    attempt,
                )
                return DeliveryReport(role, message.template, attempt, True, None)
            log.warning(
                "attempt %d/%d of %s (%s) to %s failed: %s",
                attempt,
                self.max_attempts,
                message.template,
                message.clause,
                role,
                reason,
            )
            if attempt < self.max_attempts:
                self._sleep(self.backoff(attempt))
        raise DeliveryError(role, message.template, self.max_attempts, reason)

    def _try_urls(
        self,
        role: str,
        message: RenderedMessage,
        urls: list[str],
        kind: str,
        down: set[str] | None,
    ) -> tuple[str | None, bool]:
        """One attempt to each of ``urls``: (masked reason of the last failure or None,
        retryable). A URL in ``down`` (it did not answer earlier in this round) is not
        tried again in the round; a URL that fails is added to it."""
        reason: str | None = None
        for index, url in enumerate(urls, start=1):
            target = self._apprise(url)
            if target is None:
                return (
                    f"{kind} Apprise URL #{index} of {len(urls)} for role {role!r} is not valid",
                    False,
                )
            if down is not None and url in down:
                reason = f"{kind} URL #{index} did not answer earlier in this round"
                continue
            self._pace(url)
            failure = _attempt(target, message)
            if failure is not None:
                reason = failure
                if down is not None:
                    down.add(url)
        return reason, True

    def try_send(
        self,
        role: str,
        message: RenderedMessage,
        *,
        fallback: bool = False,
        down: set[str] | None = None,
    ) -> DeliveryReport:
        """One attempt to every URL of ``role``, no sleeping, never raises for a
        delivery problem: the report carries ``delivered=False`` and the masked
        error, and ``route`` says which route delivered ("primary" or "fallback").
        With ``fallback`` (or when the role has no route of its own) the role's
        fallback URLs are tried after its own failed. ``retryable`` is False only when
        no route could ever deliver: no route and no fallback, or an invalid URL."""
        primary = [u.strip() for u in self._routes(role) if u and u.strip()]
        backup = [u.strip() for u in self._fallback(role) if u and u.strip()]
        errors: list[tuple[str, bool]] = []
        if primary:
            reason, retryable = self._try_urls(role, message, primary, "primary", down)
            if reason is None:
                log.info("delivered %s (%s) to %s", message.template, message.clause, role)
                return DeliveryReport(role, message.template, 1, True, None, route="primary")
            errors.append((reason, retryable))
        else:
            errors.append((str(NoRouteError(role, message.template).reason), False))
        if backup and (fallback or not primary or not errors[-1][1]):
            reason, retryable = self._try_urls(role, message, backup, "fallback", down)
            if reason is None:
                log.info(
                    "delivered %s (%s) to %s by its fallback route",
                    message.template,
                    message.clause,
                    role,
                )
                return DeliveryReport(role, message.template, 1, True, None, route="fallback")
            errors.append((reason, retryable))
        retryable = any(r for _, r in errors)
        error = str(
            DeliveryError(
                role, message.template, 1, "; ".join(e for e, _ in errors), retryable=retryable
            )
        )
        log.warning("%s", error)
        attempts = 1 if retryable else 0  # an unroutable message was not sent anywhere
        return DeliveryReport(role, message.template, attempts, False, error, retryable)
