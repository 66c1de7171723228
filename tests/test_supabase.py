"""Supabase reachability against a loopback server playing a Supabase project.

A healthy project answers `GET /auth/v1/health` (with the `apikey` header) 200
`{"version", "name": "GoTrue", "description"}`, as the external contracts say. The other
routes play broken set-ups: a wrong key refused, something that is not Supabase Auth,
a gateway error, a proxy that echoes the key, no answer at all. The probe never raises,
sends one GET and nothing else, and its result never holds the anon key.
"""

from __future__ import annotations

import json
import socket
import time

import httpx
import pytest
from loopback import Reply, Request

from hotdash_release.checks.supabase import SupabaseResult, check_supabase
from hotdash_release.secrets.redact import Redactor

ANON_KEY = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYW5vbiJ9.c2lnbmF0dXJlLW9mLXRoZS1hbm9uLWtleQ"
HEALTH_PATH = "/auth/v1/health"
GOTRUE = {
    "version": "v2.170.0",
    "name": "GoTrue",
    "description": "GoTrue is a user registration and authentication API",
}


@pytest.fixture
def supabase(loopback):
    return loopback


@pytest.fixture
def client():
    with httpx.Client(timeout=2.0) as http:
        yield http


def healthy_project(request: Request) -> Reply:
    if request.headers.get("apikey") != ANON_KEY:
        return Reply.json({"message": "no valid apikey"}, status=401)
    return Reply.json(GOTRUE)


def assert_key_hidden(result: SupabaseResult) -> None:
    assert ANON_KEY not in json.dumps(result.as_row())


def test_a_healthy_project_is_ok_after_one_side_effect_free_get(supabase, client):
    supabase.route(HEALTH_PATH)(healthy_project)
    result = check_supabase(client, supabase.base_url + "/", ANON_KEY)  # a trailing slash is fine

    assert result.ok and result.status_code == 200 and result.version == "v2.170.0"
    assert result.detail == "GoTrue v2.170.0 answered"
    assert result.latency_ms is not None and result.latency_ms >= 0
    [request] = supabase.received
    assert (request.method, request.path, request.headers["apikey"]) == ("GET", HEALTH_PATH, ANON_KEY)
    assert_key_hidden(result)
    assert set(result.as_row()) == {"ok", "status_code", "latency_ms", "detail", "version"}


def test_the_result_is_a_frozen_value(supabase, client):
    supabase.route(HEALTH_PATH)(healthy_project)
    result = check_supabase(client, supabase.base_url, ANON_KEY)
    with pytest.raises(AttributeError):
        result.ok = False


BROKEN = [
    ("wrong key refused", lambda request: Reply.json({"message": "no valid apikey"}, status=401), 401, "HTTP 401"),
    ("not Supabase Auth", lambda request: Reply.json({"status": "ok"}), 200, "expected 'GoTrue': not Supabase Auth"),
    ("not JSON", lambda request: Reply.html("<h1>Welcome</h1>"), 200, "answer is not JSON"),
    ("JSON but not an object", lambda request: Reply.json(["GoTrue"]), 200, "JSON list, expected an object"),
    ("gateway error", lambda request: Reply(503, b"upstream connect error"), 503, "HTTP 503: upstream connect error"),
]


@pytest.mark.parametrize("answer,status,detail", [b[1:] for b in BROKEN], ids=[b[0] for b in BROKEN])
def test_broken_answers_are_not_ok_and_say_why(supabase, client, answer, status, detail):
    supabase.route(HEALTH_PATH)(answer)
    result = check_supabase(client, supabase.base_url, ANON_KEY)
    assert not result.ok and result.status_code == status
    assert detail in result.detail
    assert_key_hidden(result)


def test_a_key_echoed_back_is_redacted_even_without_a_redactor(supabase, client):
    supabase.route(HEALTH_PATH)(lambda request: Reply(403, f"key {request.headers['apikey']} is not allowed".encode()))
    result = check_supabase(client, supabase.base_url, ANON_KEY)
    assert not result.ok and result.detail == "HTTP 403: key [redacted SUPABASE_ANON_KEY] is not allowed"


def test_the_callers_redactor_hides_the_other_secrets(supabase, client):
    url = supabase.base_url
    supabase.route(HEALTH_PATH)(lambda request: Reply(404, f"no project at {url}".encode()))
    result = check_supabase(client, url, ANON_KEY, redactor=Redactor({"SUPABASE_URL@production": url}))
    assert result.detail == "HTTP 404: no project at [redacted SUPABASE_URL@production]"


def test_an_unreachable_project_is_a_result_not_an_exception(client):
    with socket.socket() as sock:  # bound but not listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        result = check_supabase(client, f"http://127.0.0.1:{sock.getsockname()[1]}", ANON_KEY)
    assert not result.ok and result.status_code is None and result.detail == "connection refused"


def test_a_project_that_does_not_answer_in_time_is_not_ok(supabase):
    def slow(request: Request) -> Reply:
        time.sleep(1.0)
        return Reply.json(GOTRUE)

    supabase.route(HEALTH_PATH)(slow)
    with httpx.Client(timeout=0.2) as impatient:
        result = check_supabase(impatient, supabase.base_url, ANON_KEY)
    assert not result.ok and result.status_code is None and result.detail.startswith("no answer within")


ODD_INPUTS = [
    ("empty URL", "", ANON_KEY, "SUPABASE_URL is empty"),
    ("empty key", "https://project.supabase.co", "", "SUPABASE_ANON_KEY is empty"),
    ("unclosed IPv6 bracket", "http://[::1", ANON_KEY, "InvalidURL"),
    ("over-long host label", "https://" + "a" * 64 + ".supabase.co", ANON_KEY, "UnicodeError"),
    ("non-ASCII key", "http://127.0.0.1:9", ANON_KEY + "é", "UnicodeEncodeError"),
]


@pytest.mark.parametrize("url,key,detail", [o[1:] for o in ODD_INPUTS], ids=[o[0] for o in ODD_INPUTS])
def test_odd_inputs_never_raise(client, url, key, detail):
    result = check_supabase(client, url, key)
    assert not result.ok and detail in result.detail
    assert ANON_KEY not in result.detail


def test_a_multi_line_key_is_hidden_in_the_error_it_causes(supabase, client):
    """httpx refuses a header value with a newline and quotes it in its error: no line of the
    key reaches the result (test_redact.py shows each line redacted alone)."""
    supabase.route(HEALTH_PATH)(healthy_project)
    key = "first-line-of-the-anon-key\nsecond-line-of-the-anon-key"
    redactor = Redactor({"SUPABASE_ANON_KEY@staging": key}, min_length=8)
    result = check_supabase(client, supabase.base_url, key, redactor=redactor)
    assert not result.ok and result.detail
    shown = json.dumps(result.as_row())
    assert "first-line-of-the-anon-key" not in shown and "second-line-of-the-anon-key" not in shown
