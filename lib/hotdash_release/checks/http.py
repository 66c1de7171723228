"""HTTP checks that prove a deployed Shopify app answers the way a healthy release does.

Each check takes its ``httpx.Client`` (tests hand in one pointed at a local server) and
returns a result record that renders as a table row. A failing server is an outcome,
not an exception: whether a failure stops the release is the gate's decision.

The checks speak to the app as Shopify's own library expects (see the "Shopify embedded
app" section of the external contracts): a browser User-Agent, because the app answers
bots with 410; redirects never followed, because the redirect itself (its Location and
the client_id in it) is what proves the configuration; webhooks signed like Shopify signs
them. Everything a result carries passes through a Redactor, since results end up in
the audit archive.

Smoke checks run in threads, not asyncio: runbooks execute inside Jupyter kernels,
where an event loop is already running.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import string
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx

from ..errors import ConfigError
from ..secrets.redact import Redactor
from ..tables import ShowsAsRecord
from .tls import tls_context

#: A current desktop Chrome: Shopify's app library answers bot User-Agents with 410.
BROWSER_USER_AGENT = (
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/142.0.0.0 Safari/537.36"
)
BOT_USER_AGENT = "curl/8.5.0"
USER_AGENTS = {"browser": BROWSER_USER_AGENT, "bot": BOT_USER_AGENT}

SMOKE_METHODS = ("GET", "POST", "HEAD")
WEBHOOK_HMAC_MODES = ("missing", "wrong", "valid")
WEBHOOK_TOPIC = "app/uninstalled"
WEBHOOK_API_VERSION = "2025-10"

BODY_EXCERPT_CHARS = 300
EVIDENCE_MAX_CHARS = 200
SNIPPET_MARGIN_CHARS = 40


def make_client(*, timeout_s: float = 5.0) -> httpx.Client:
    """A client that looks like a browser and never follows redirects."""
    return httpx.Client(
        follow_redirects=False,
        headers={"User-Agent": BROWSER_USER_AGENT},
        timeout=timeout_s,
        verify=tls_context(),
    )


def _utc_now() -> datetime:
    return datetime.now(UTC)


def describe_transport_error(exc: Exception, *, waited: str) -> str:
    """One line for an httpx failure that produced no response."""
    if isinstance(exc, httpx.TimeoutException):
        return f"no answer within {waited}"
    cause: BaseException | None = exc
    while cause is not None:
        if isinstance(cause, ConnectionRefusedError):
            return "connection refused"
        cause = cause.__cause__ or cause.__context__
    if isinstance(exc, httpx.ConnectError):
        return f"cannot connect: {exc}"
    return f"{type(exc).__name__}: {exc}"


def _media_type(response: httpx.Response) -> str | None:
    content_type = response.headers.get("content-type")
    if content_type is None:
        return None
    return content_type.split(";", 1)[0].strip().lower()


def _quoted(text: str) -> str:
    # Not repr(): repr escapes backslashes and quotes, and an escaped secret would
    # no longer match the redactor's spellings of it.
    return f"'{text}'"


def _shown(value: Any) -> str:
    return _quoted(value) if isinstance(value, str) else repr(value)


# --------------------------------------------------------------------------- health


@dataclass(frozen=True)
class HealthResult(ShowsAsRecord):
    """The outcome of polling a health endpoint until it answered well or time ran out."""

    url: str
    ok: bool
    attempts: int
    status_code: int | None
    latency_ms: float | None
    detail: str
    body_excerpt: str
    checked_at: str  # ISO 8601, UTC

    def as_row(self) -> dict:
        return asdict(self)


#: Probes in a row answered with a status that cannot get better before a wait for health ends early.
HOPELESS_AFTER = 3
#: 5xx answers that waiting can change: 503 is an app's own "starting" / "not ready" (the stand-in
#: answers it while its database is not usable), 502 and 504 come from a proxy in front of an app
#: that does not listen or answer yet (Fly's proxy while a machine boots).
RECOVERABLE_5XX = frozenset({502, 503, 504})


def hopeless_health(status_codes: Sequence[int | None], *, limit: int = HOPELESS_AFTER) -> str:
    """Why waiting longer for a health endpoint is pointless, or "" while it may still come good.

    ``status_codes``: each probe's HTTP status so far, oldest first (None: no answer at all).
    The rule, the same for every wait (check_health; the local platform's deploy): the last
    ``limit`` probes were all answered with a 5xx other than 502, 503 and 504 (500, 501, 505...).
    An answer proves the process is up and serving; its own health route failing the same way
    probe after probe is the build's code, which no amount of waiting changes. Everything else
    waits until the deadline: no answer (connection refused, a timeout: still starting), 503,
    502 and 504 (RECOVERABLE_5XX), any answer between two 5xx (a streak starts again), and a 2xx
    with a wrong body or a 4xx (not this rule's: the deadline judges them). So an app must answer
    503, not 500, while it is starting, as the /health contract's stand-in does."""
    recent = list(status_codes)[-limit:]
    if limit < 1 or len(recent) < limit:
        return ""
    if not all(code is not None and 500 <= code <= 599 and code not in RECOVERABLE_5XX for code in recent):
        return ""
    shown = ", ".join(str(code) for code in recent)
    return f"HTTP {shown} on {limit} probes in a row: the app answers and fails, waiting will not change it"


def _health_problem(response: httpx.Response, *, expected_status: str, max_age_s: float) -> str | None:
    """What is wrong with a health answer, or None when it proves a live, fresh app."""
    if response.status_code != 200:
        return f"HTTP {response.status_code}"
    media_type = _media_type(response)
    if media_type != "application/json":
        return f"content-type {media_type or 'missing'}, expected application/json"
    try:
        document = json.loads(response.content)
    except ValueError:
        return "malformed JSON"
    if not isinstance(document, dict):
        return f"JSON {type(document).__name__}, expected an object"
    if document.get("status") != expected_status:
        found = _shown(document["status"]) if "status" in document else "missing"
        return f"status {found}, expected {_quoted(expected_status)}"
    stamp = document.get("timestamp")
    if not isinstance(stamp, str):
        return "timestamp missing" if stamp is None else f"timestamp {stamp!r} is not a string"
    try:
        moment = datetime.fromisoformat(stamp)
    except ValueError:
        return f"timestamp {_quoted(stamp)} is not ISO 8601"
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)  # the contract says UTC
    age_s = (_utc_now() - moment).total_seconds()
    if age_s > max_age_s:
        return f"timestamp {stamp} is {age_s:.0f} s old (max {max_age_s:g} s)"
    if -age_s > max_age_s:
        return f"timestamp {stamp} is {-age_s:.0f} s in the future (max {max_age_s:g} s)"
    return None


def _timeout_within(client_timeout: httpx.Timeout, remaining_s: float) -> httpx.Timeout:
    def bounded(limit: float | None) -> float:
        return remaining_s if limit is None else min(limit, remaining_s)

    return httpx.Timeout(
        connect=bounded(client_timeout.connect),
        read=bounded(client_timeout.read),
        write=bounded(client_timeout.write),
        pool=bounded(client_timeout.pool),
    )


def check_health(
    client: httpx.Client,
    url: str,
    *,
    deadline_s: float = 30.0,
    max_age_s: float = 120.0,
    initial_backoff_s: float = 0.25,
    max_backoff_s: float = 2.0,
    expected_status: str = "ok",
    redactor: Redactor | None = None,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> HealthResult:
    """GET ``url`` until it answers 200 with fresh ``{"status": "ok", "timestamp": ...}``.

    Retries with exponential backoff (capped at ``max_backoff_s``) until ``deadline_s``;
    no request may outlive the deadline, and answers that cannot get better end it early
    (hopeless_health: 500s on three probes in a row). The result describes the last attempt.
    """
    if deadline_s <= 0:
        raise ConfigError("deadline_s", f"must be a positive number of seconds, got {deadline_s}")
    redactor = redactor if redactor is not None else Redactor.empty()
    deadline = clock() + deadline_s
    backoff_s = initial_backoff_s
    attempts = 0
    answers: list[int | None] = []
    while True:
        attempts += 1
        remaining_s = deadline - clock()
        timeout = _timeout_within(client.timeout, remaining_s)
        waited = f"deadline {deadline_s:g} s" if timeout.read == remaining_s else f"{timeout.read:g} s"
        started = clock()
        status_code = None
        body = ""
        try:
            response = client.get(url, timeout=timeout)
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            problem = describe_transport_error(exc, waited=waited)
        else:
            status_code = response.status_code
            body = response.text
            problem = _health_problem(response, expected_status=expected_status, max_age_s=max_age_s)
        latency_ms = round((clock() - started) * 1000, 1)

        if problem is None:
            break
        answers.append(status_code)
        hopeless = hopeless_health(answers)
        if hopeless:  # a status that cannot get better: fail now, not at the deadline
            problem = f"{problem}; gave up before the {deadline_s:g} s deadline: {hopeless}"
            break
        # Stop when backing off would reach the deadline: no attempt could follow.
        remaining_s = deadline - clock()
        if remaining_s <= backoff_s:
            break
        sleep(backoff_s)
        backoff_s = min(backoff_s * 2, max_backoff_s)

    return HealthResult(
        url=redactor.redact(url),
        ok=problem is None,
        attempts=attempts,
        status_code=status_code,
        latency_ms=latency_ms,
        detail=redactor.redact(problem or ""),
        # Redact the whole body before cutting, so no partial value survives at the cut.
        body_excerpt=redactor.redact(body)[:BODY_EXCERPT_CHARS],
        checked_at=_utc_now().isoformat(timespec="milliseconds"),  # rollback latency is sub-second
    )


# --------------------------------------------------------------------------- smoke


@dataclass(frozen=True, kw_only=True)
class SmokeCheck:
    """One request to the deployed app and what its answer must show.

    ``path``, ``body_contains``, ``body_not_contains`` and the values of
    ``header_equals``/``header_contains`` are templates filled from the run's context
    (``{SHOPIFY_API_KEY}``, ``{shop}``, ``{shop_handle}``); literal braces are doubled.

    ``webhook_hmac`` makes the request a Shopify ``app/uninstalled`` webhook whose
    signature is missing, made with another key, or valid (keyed with
    ``context["SHOPIFY_API_SECRET"]``). A valid one runs the app's uninstall handler
    for ``context["shop"]``: point it at a shop with no installation.
    """

    name: str
    path: str
    method: str = "GET"
    expect_status: int
    body_contains: tuple[str, ...] = ()
    body_not_contains: tuple[str, ...] = ()
    header_equals: dict[str, str] = field(default_factory=dict)
    header_contains: dict[str, str] = field(default_factory=dict)
    header_absent: tuple[str, ...] = ()
    json_equals: dict[str, Any] = field(default_factory=dict)
    user_agent: str = "browser"
    webhook_hmac: str | None = None
    max_latency_ms: int | None = None
    description: str = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, key: str) -> SmokeCheck:
        """Build a check from a TOML table; ``key`` names the table in error messages."""
        return _smoke_check_from_dict(data, key=key)


_SMOKE_FIELDS = (
    "name",
    "path",
    "method",
    "expect_status",
    "body_contains",
    "body_not_contains",
    "header_equals",
    "header_contains",
    "header_absent",
    "json_equals",
    "user_agent",
    "webhook_hmac",
    "max_latency_ms",
    "description",
)
_REQUIRED_SMOKE_FIELDS = ("name", "path", "expect_status")
_TEMPLATED_LIST_FIELDS = ("body_contains", "body_not_contains")
_TEMPLATED_TABLE_FIELDS = ("header_equals", "header_contains")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)  # TOML true is not 1


def _require_string(value: Any, where: str) -> str:
    if not isinstance(value, str):
        raise ConfigError(where, f"must be a string, got {type(value).__name__}")
    return value


def _require_string_list(value: Any, where: str) -> tuple[str, ...]:
    # A bare string would otherwise be taken as a list of its characters.
    if not isinstance(value, (list, tuple)) or not all(isinstance(item, str) for item in value):
        raise ConfigError(where, f"must be a list of strings, got {type(value).__name__}")
    return tuple(value)


def _require_string_table(value: Any, where: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise ConfigError(where, f"must be a table of strings, got {type(value).__name__}")
    for name, item in value.items():
        if not isinstance(item, str):
            raise ConfigError(f"{where}.{name}", f"must be a string, got {type(item).__name__}")
    return dict(value)


def _require_choice(value: Any, where: str, allowed: Sequence[str]) -> str:
    if value not in allowed:
        raise ConfigError(where, f"must be one of {', '.join(allowed)}, got {value!r}")
    return value


def _require_template(template: str, where: str) -> None:
    try:
        placeholders = [name for _, name, _, _ in string.Formatter().parse(template) if name is not None]
    except ValueError as exc:
        raise ConfigError(where, f"bad placeholder syntax ({exc}); write literal braces as {{{{ and }}}}") from None
    if "" in placeholders:
        raise ConfigError(where, "empty placeholder {}; name a context key, e.g. {shop}")


def _smoke_check_from_dict(data: Mapping[str, Any], *, key: str) -> SmokeCheck:
    if not isinstance(data, Mapping):
        raise ConfigError(key, f"must be a table, got {type(data).__name__}")
    for field_name in data:
        if field_name not in _SMOKE_FIELDS:
            raise ConfigError(f"{key}.{field_name}", f"unknown field; allowed: {', '.join(_SMOKE_FIELDS)}")
    for field_name in _REQUIRED_SMOKE_FIELDS:
        if field_name not in data:
            raise ConfigError(f"{key}.{field_name}", "required")

    def where(field_name: str) -> str:
        return f"{key}.{field_name}"

    values: dict[str, Any] = {}
    for field_name in ("name", "path", "description"):
        if field_name in data:
            values[field_name] = _require_string(data[field_name], where(field_name))
    if not values["name"].strip():
        raise ConfigError(where("name"), "must not be empty")
    if not values["path"].startswith("/"):
        raise ConfigError(where("path"), f"must start with '/', got {values['path']!r}")

    expect_status = data["expect_status"]
    if not _is_int(expect_status):
        raise ConfigError(where("expect_status"), f"must be an integer, got {type(expect_status).__name__}")
    if not 100 <= expect_status <= 599:
        raise ConfigError(where("expect_status"), f"must be an HTTP status 100..599, got {expect_status}")
    values["expect_status"] = expect_status

    for field_name in ("body_contains", "body_not_contains", "header_absent"):
        if field_name in data:
            values[field_name] = _require_string_list(data[field_name], where(field_name))
    for field_name in ("header_equals", "header_contains"):
        if field_name in data:
            values[field_name] = _require_string_table(data[field_name], where(field_name))
    if "json_equals" in data:
        if not isinstance(data["json_equals"], Mapping):
            raise ConfigError(where("json_equals"), f"must be a table, got {type(data['json_equals']).__name__}")
        values["json_equals"] = dict(data["json_equals"])

    if "user_agent" in data:
        values["user_agent"] = _require_choice(data["user_agent"], where("user_agent"), tuple(USER_AGENTS))
    if "webhook_hmac" in data:
        values["webhook_hmac"] = _require_choice(data["webhook_hmac"], where("webhook_hmac"), WEBHOOK_HMAC_MODES)
    if "method" in data:
        method = _require_string(data["method"], where("method")).upper()
        values["method"] = _require_choice(method, where("method"), SMOKE_METHODS)
    elif "webhook_hmac" in values:
        values["method"] = "POST"  # a webhook is a POST; saying so again adds nothing
    if "webhook_hmac" in values and values["method"] != "POST":
        raise ConfigError(where("method"), f"must be POST when webhook_hmac is set, got {values['method']}")

    if "max_latency_ms" in data:
        limit = data["max_latency_ms"]
        if not _is_int(limit):
            raise ConfigError(where("max_latency_ms"), f"must be an integer, got {type(limit).__name__}")
        if limit <= 0:
            raise ConfigError(where("max_latency_ms"), f"must be positive, got {limit}")
        values["max_latency_ms"] = limit

    _require_template(values["path"], where("path"))
    for field_name in _TEMPLATED_LIST_FIELDS:
        for template in values.get(field_name, ()):
            _require_template(template, where(field_name))
    for field_name in _TEMPLATED_TABLE_FIELDS:
        for header, template in values.get(field_name, {}).items():
            _require_template(template, f"{where(field_name)}.{header}")

    return SmokeCheck(**values)


@dataclass(frozen=True)
class SmokeResult:
    """What one smoke check observed; every text field is already redacted."""

    name: str
    ok: bool
    method: str
    path: str
    status_code: int | None
    latency_ms: float | None
    detail: str  # "" when ok, else every failed expectation joined with "; "
    evidence: str  # what was observed, short enough for a table cell
    description: str

    def as_row(self) -> dict:
        return asdict(self)


class _CannotSend(Exception):
    """A check whose request cannot be built from the context it was given."""

    def __init__(self, problem: str) -> None:
        self.problem = problem
        super().__init__(problem)


@dataclass(frozen=True)
class _FilledCheck:
    """A SmokeCheck with its templates filled from the context."""

    path: str
    body_contains: tuple[str, ...]
    body_not_contains: tuple[str, ...]
    header_equals: dict[str, str]
    header_contains: dict[str, str]


def _fill(template: str, context: Mapping[str, Any], where: str) -> str:
    try:
        return template.format_map(context)
    except KeyError as exc:
        known = ", ".join(sorted(context)) or "none"
        raise _CannotSend(f"unknown placeholder {{{exc.args[0]}}} in {where}; known: {known}") from None
    except (ValueError, IndexError, AttributeError) as exc:
        raise _CannotSend(f"cannot fill {where}: {exc}") from None


def _fill_check(check: SmokeCheck, context: Mapping[str, Any]) -> _FilledCheck:
    return _FilledCheck(
        path=_fill(check.path, context, "path"),
        body_contains=tuple(_fill(text, context, "body_contains") for text in check.body_contains),
        body_not_contains=tuple(_fill(text, context, "body_not_contains") for text in check.body_not_contains),
        header_equals={
            header: _fill(value, context, f"header_equals.{header}") for header, value in check.header_equals.items()
        },
        header_contains={
            header: _fill(value, context, f"header_contains.{header}")
            for header, value in check.header_contains.items()
        },
    )


def _webhook_request(mode: str, context: Mapping[str, Any]) -> tuple[bytes, dict[str, str]]:
    """The body and headers of an ``app/uninstalled`` delivery as Shopify sends it."""
    shop = context.get("shop")
    if not shop:
        raise _CannotSend("webhook needs context['shop'] for X-Shopify-Shop-Domain")
    secret = context.get("SHOPIFY_API_SECRET")
    if mode == "valid" and not secret:
        raise _CannotSend("webhook_hmac 'valid' needs context['SHOPIFY_API_SECRET']")
    body = json.dumps({"id": 1, "name": "hotdash smoke check", "domain": shop}).encode()
    headers = {
        "Content-Type": "application/json",
        "X-Shopify-Topic": WEBHOOK_TOPIC,
        "X-Shopify-Shop-Domain": str(shop),
        "X-Shopify-API-Version": WEBHOOK_API_VERSION,
        "X-Shopify-Webhook-Id": str(uuid.uuid4()),
    }
    if mode != "missing":
        # "wrong" signs with a key that cannot be the app's secret.
        key = secret if mode == "valid" else f"not the app secret {secret or ''}"
        digest = hmac.new(str(key).encode(), body, hashlib.sha256).digest()
        headers["X-Shopify-Hmac-Sha256"] = base64.b64encode(digest).decode()
    return body, headers


def _failed_expectations(
    check: SmokeCheck, filled: _FilledCheck, response: httpx.Response, latency_ms: float
) -> list[str]:
    failures = []
    if response.status_code != check.expect_status:
        failures.append(f"status {response.status_code}, expected {check.expect_status}")
    body = response.text
    for text in filled.body_contains:
        if text not in body:
            failures.append(f"body lacks {_quoted(text)}")
    for text in filled.body_not_contains:
        if text in body:
            failures.append(f"body contains {_quoted(text)}")
    for header, expected in filled.header_equals.items():
        actual = response.headers.get(header)
        if actual is None:
            failures.append(f"header {header} missing, expected {_quoted(expected)}")
        elif actual != expected:
            failures.append(f"header {header} is {_quoted(actual)}, expected {_quoted(expected)}")
    for header, expected in filled.header_contains.items():
        actual = response.headers.get(header)
        if actual is None:
            failures.append(f"header {header} missing, expected to contain {_quoted(expected)}")
        elif expected not in actual:
            failures.append(f"header {header} {_quoted(actual)} lacks {_quoted(expected)}")
    for header in check.header_absent:
        if header in response.headers:
            failures.append(f"header {header} present: {_quoted(response.headers[header])}")
    if check.json_equals:
        failures.extend(_json_failures(check.json_equals, response))
    if check.max_latency_ms is not None and latency_ms > check.max_latency_ms:
        failures.append(f"latency {latency_ms:.0f} ms over {check.max_latency_ms} ms")
    return failures


def _json_failures(expected: Mapping[str, Any], response: httpx.Response) -> list[str]:
    try:
        document = json.loads(response.content)
    except ValueError:
        return ["body is not JSON"]
    if not isinstance(document, dict):
        return [f"JSON {type(document).__name__}, expected an object"]
    failures = []
    for key, value in expected.items():
        if key not in document:
            failures.append(f"JSON {key} missing, expected {_shown(value)}")
        elif document[key] != value:
            failures.append(f"JSON {key} is {_shown(document[key])}, expected {_shown(value)}")
    return failures


def _snippet(text: str, needle: str) -> str | None:
    """``needle`` with a little of the text around it, or None when it is not there."""
    at = text.find(needle)
    if at < 0:
        return None
    start = max(at - SNIPPET_MARGIN_CHARS, 0)
    end = at + len(needle) + SNIPPET_MARGIN_CHARS
    return ("…" if start else "") + text[start:end] + ("…" if end < len(text) else "")


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _evidence(check: SmokeCheck, filled: _FilledCheck, response: httpx.Response, redactor: Redactor) -> str:
    """A short line of what the answer showed, redacted before it is cut to length."""
    # Each text is redacted whole and only then cut: a cut through a secret value
    # would leave a part that the redactor no longer recognises.
    parts = []
    location = response.headers.get("location")
    if location is not None:
        parts.append(f"Location: {redactor.redact(location)}")
    named_headers = dict.fromkeys([*filled.header_equals, *filled.header_contains, *check.header_absent])
    for header in named_headers:
        if header.lower() != "location" and header in response.headers:
            parts.append(f"{header}: {redactor.redact(response.headers[header])}")

    body = _one_line(redactor.redact(response.text))
    if body:
        # Show where the first forbidden text was found, else the first expected text,
        # else how the body begins.
        wanted = [text for text in filled.body_not_contains if text in response.text]
        wanted += [text for text in filled.body_contains if text in response.text]
        snippets = (_snippet(body, _one_line(redactor.redact(text))) for text in wanted)
        parts.append(next((s for s in snippets if s), body[: SNIPPET_MARGIN_CHARS * 2]))

    evidence = " ".join([str(response.status_code), " | ".join(parts)]).strip()
    if len(evidence) > EVIDENCE_MAX_CHARS:
        evidence = evidence[: EVIDENCE_MAX_CHARS - 1] + "…"
    return evidence


def _run_smoke_check(
    client: httpx.Client,
    base_url: str,
    check: SmokeCheck,
    context: Mapping[str, Any],
    redactor: Redactor,
) -> SmokeResult:
    def result(
        *,
        path: str,
        detail: str,
        evidence: str,
        status_code: int | None = None,
        latency_ms: float | None = None,
    ) -> SmokeResult:
        return SmokeResult(
            name=redactor.redact(check.name),
            ok=not detail,
            method=check.method,
            path=redactor.redact(path),
            status_code=status_code,
            latency_ms=latency_ms,
            detail=redactor.redact(detail),
            evidence=redactor.redact(evidence),
            description=redactor.redact(check.description),
        )

    try:
        filled = _fill_check(check, context)
        body, headers = _webhook_request(check.webhook_hmac, context) if check.webhook_hmac else (None, {})
    except _CannotSend as exc:
        return result(path=check.path, detail=exc.problem, evidence="not sent")
    headers["User-Agent"] = USER_AGENTS[check.user_agent]

    started = time.perf_counter()
    try:
        response = client.request(check.method, base_url.rstrip("/") + filled.path, headers=headers, content=body)
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        latency_ms = round((time.perf_counter() - started) * 1000, 1)
        read_timeout = client.timeout.read
        waited = f"{read_timeout:g} s" if read_timeout is not None else "the client's timeout"
        problem = describe_transport_error(exc, waited=waited)
        return result(path=filled.path, detail=problem, evidence="no response", latency_ms=latency_ms)
    latency_ms = round((time.perf_counter() - started) * 1000, 1)

    return result(
        path=filled.path,
        detail="; ".join(_failed_expectations(check, filled, response, latency_ms)),
        evidence=_evidence(check, filled, response, redactor),
        status_code=response.status_code,
        latency_ms=latency_ms,
    )


def run_smoke_checks(
    client: httpx.Client,
    base_url: str,
    checks: Sequence[SmokeCheck],
    *,
    context: Mapping[str, Any],
    redactor: Redactor | None = None,
    max_workers: int = 8,
) -> list[SmokeResult]:
    """Run the checks concurrently against ``base_url``; results come in the checks' order.

    ``context`` fills the checks' placeholders and may hold secret values: pass a
    ``redactor`` that knows them, or they can appear in the results.
    """
    redactor = redactor if redactor is not None else Redactor.empty()
    if not checks:
        return []
    with ThreadPoolExecutor(max_workers=min(max_workers, len(checks))) as pool:
        return list(
            pool.map(
                lambda check: _run_smoke_check(client, base_url, check, context, redactor),
                checks,
            )
        )


def summarize(results: Iterable[HealthResult | SmokeResult]) -> dict[str, int]:
    """Counts for a report headline: total, passed, failed."""
    outcomes = [result.ok for result in results]
    passed = sum(outcomes)
    return {"total": len(outcomes), "passed": passed, "failed": len(outcomes) - passed}
