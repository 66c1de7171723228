"""Is the app's Supabase project reachable with the anon key the app was given?

The plan's checklist says "Database connected (Supabase)". The app's own /health does not
prove it, and a release must not write to the database to find out, so this asks the one
endpoint Supabase documents as side-effect free (external contracts, "Supabase"):
`GET {SUPABASE_URL}/auth/v1/health` with header `apikey: <anon key>`, which answers 200
`{"version", "name": "GoTrue", "description"}`. (`/rest/v1/` refuses the anon key on
current projects, so it proves nothing.)

Like the checks in http.py it takes its client and returns a result row; it never
raises, and the anon key never reaches the result, which ends up in the audit archive.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

import httpx

from ..secrets.redact import Redactor
from ..tables import ShowsAsRecord
from .http import describe_transport_error

HEALTH_PATH = "/auth/v1/health"
EXPECTED_NAME = "GoTrue"


@dataclass(frozen=True)
class SupabaseResult(ShowsAsRecord):
    """One probe of Supabase Auth's health endpoint."""

    ok: bool
    status_code: int | None
    latency_ms: float | None
    detail: str
    version: str = ""  # GoTrue's, when it answered

    def as_row(self) -> dict:
        return asdict(self)


def check_supabase(
    client: httpx.Client,
    supabase_url: str,
    anon_key: str,
    *,
    redactor: Redactor | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> SupabaseResult:
    """GET {supabase_url}/auth/v1/health with the anon key; ok when GoTrue answers 200."""
    hide = _hider(redactor, anon_key, supabase_url)
    if not supabase_url.strip():
        return SupabaseResult(False, None, None, "SUPABASE_URL is empty")
    if not anon_key:
        return SupabaseResult(False, None, None, "SUPABASE_ANON_KEY is empty")

    started = clock()
    try:
        response = client.get(supabase_url.rstrip("/") + HEALTH_PATH, headers={"apikey": anon_key})
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:
        # ValueError: text httpx cannot encode, such as a non-ASCII key or an over-long host name.
        problem = describe_transport_error(exc, waited="the client's timeout")
        return SupabaseResult(False, None, _elapsed_ms(clock, started), hide(problem))
    latency_ms = _elapsed_ms(clock, started)

    problem, version = _health_problem(response, hide)
    detail = problem or f"{EXPECTED_NAME} {version or '(no version)'} answered"
    return SupabaseResult(problem is None, response.status_code, latency_ms, hide(detail), hide(version))


def _elapsed_ms(clock: Callable[[], float], started: float) -> float:
    return round((clock() - started) * 1000, 1)


def _hider(redactor: Redactor | None, anon_key: str, supabase_url: str) -> Callable[[str], str]:
    """The caller's redactor (every known secret), then the anon key's and the URL's own (with
    the URL's secret parts): credentials, hidden even when the caller's redactor does not know them."""
    known = redactor or Redactor.empty()
    own = Redactor({"SUPABASE_ANON_KEY": anon_key, "SUPABASE_URL": supabase_url})
    return lambda text: own.redact(known.redact(text))


def _health_problem(response: httpx.Response, hide: Callable[[str], str]) -> tuple[str | None, str]:
    """What is wrong with the answer (None when GoTrue answered), and GoTrue's version."""
    if response.status_code != 200:
        # Hidden before it is cut: an echoed key or URL cut in two would be found by neither.
        return f"HTTP {response.status_code}: {hide(response.text.strip())[:200]}", ""
    try:
        document = response.json()
    except ValueError:
        return "answer is not JSON", ""
    if not isinstance(document, dict):
        return f"JSON {type(document).__name__}, expected an object", ""
    version = str(document.get("version") or "")
    if document.get("name") != EXPECTED_NAME:
        return f"name {document.get('name')!r}, expected {EXPECTED_NAME!r}: not Supabase Auth", version
    return None, version
