"""Health and smoke checks against real loopback servers that play a Shopify app.

Each route answers the way the external contracts say the app answers (or, for the
failure scenarios, the way a broken release does). The server counts requests in
flight, records what it received, and verifies webhook signatures itself.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import html
import json
import re
import socket
import time
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import quote, quote_plus

import pandas as pd
import pytest
from loopback import Reply, Request

from hotdash_release.checks.http import (
    BOT_USER_AGENT,
    BROWSER_USER_AGENT,
    HealthResult,
    SmokeCheck,
    SmokeResult,
    check_health,
    hopeless_health,
    make_client,
    run_smoke_checks,
    summarize,
)
from hotdash_release.errors import ConfigError
from hotdash_release.secrets.redact import Redactor

API_KEY = "3f9c2a7be41d8e6052aa17c4d9e0b3f1"
API_SECRET = "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"
SHOP_HANDLE = "hotdash-smoke"
SHOP = f"{SHOP_HANDLE}.myshopify.com"
CONTEXT = {
    "SHOPIFY_API_KEY": API_KEY,
    "SHOPIFY_API_SECRET": API_SECRET,
    "shop": SHOP,
    "shop_handle": SHOP_HANDLE,
}
REDACTOR = Redactor({"SHOPIFY_API_KEY": API_KEY, "SHOPIFY_API_SECRET": API_SECRET})
BOT_PATTERN = re.compile(r"curl|python-httpx|python-requests|bot", re.IGNORECASE)


@pytest.fixture
def server(loopback):
    return loopback


@pytest.fixture
def refused_url():
    """A URL on a port that is bound but not listening: connecting is refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/health"


@pytest.fixture
def client():
    with make_client(timeout_s=5.0) as http:
        yield http


def iso_z(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def health_document(offset: timedelta = timedelta(0), status: str = "ok") -> dict:
    return {"status": status, "timestamp": iso_z(datetime.now(UTC) + offset)}


class FakeTime:
    """A monotonic clock that only moves when the check sleeps."""

    def __init__(self) -> None:
        self.now = 100.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


# --------------------------------------------------------------------------- health


def test_make_client_looks_like_a_browser_and_stays_on_redirects():
    with make_client(timeout_s=2.5) as http:
        assert http.follow_redirects is False
        assert http.headers["User-Agent"] == BROWSER_USER_AGENT
        assert http.timeout.read == 2.5
    assert "Chrome/" in BROWSER_USER_AGENT
    assert BOT_USER_AGENT == "curl/8.5.0"


def test_health_good_answer_passes_on_first_attempt(server, client):
    server.route("/health")(lambda request: Reply.json(health_document(), **{"Cache-Control": "no-store"}))

    result = check_health(client, f"{server.base_url}/health")

    assert result.ok, result.detail
    assert (result.attempts, result.status_code, result.detail) == (1, 200, "")
    assert result.latency_ms is not None and result.latency_ms >= 0
    assert '"status": "ok"' in result.body_excerpt
    datetime.fromisoformat(result.checked_at)
    assert server.received[0].headers["User-Agent"] == BROWSER_USER_AGENT


def test_health_flapping_passes_on_third_attempt(server, client):
    @server.route("/health")
    def flapping(request):
        if server.hits["/health"] <= 2:
            return Reply.html("<h1>starting</h1>", status=503)
        return Reply.json(health_document())

    fake = FakeTime()
    result = check_health(client, f"{server.base_url}/health", clock=fake.clock, sleep=fake.sleep)

    assert result.ok, result.detail
    assert result.attempts == 3
    assert fake.sleeps == [0.25, 0.5]


def test_health_backoff_doubles_up_to_its_cap_and_stops_at_the_deadline(server, client):
    # 503: the app is not ready, which may change (a 500 that stays gives up early, below).
    server.route("/health")(lambda request: Reply(503, b"boom"))
    fake = FakeTime()

    result = check_health(
        client,
        f"{server.base_url}/health",
        deadline_s=10.0,
        max_backoff_s=1.0,
        clock=fake.clock,
        sleep=fake.sleep,
    )

    assert not result.ok
    assert result.detail == "HTTP 503"
    assert result.status_code == 503
    assert result.body_excerpt == "boom"
    assert fake.sleeps[:4] == [0.25, 0.5, 1.0, 1.0]
    assert max(fake.sleeps) == 1.0
    assert sum(fake.sleeps) <= 10.0
    assert result.attempts == len(fake.sleeps) + 1 == server.hits["/health"]


def test_health_answering_500_three_times_in_a_row_fails_at_once_not_at_the_deadline(server, client):
    server.route("/health")(
        lambda request: Reply.json({"status": "error", "timestamp": iso_z(datetime.now(UTC))}, status=500)
    )
    started = time.monotonic()

    result = check_health(client, f"{server.base_url}/health", deadline_s=60.0)

    assert time.monotonic() - started < 10, "three probes (0.75 s of backoff), not the 60 s deadline"
    assert not result.ok and (result.attempts, result.status_code) == (3, 500) == (server.hits["/health"], 500)
    assert result.detail == (
        "HTTP 500; gave up before the 60 s deadline: HTTP 500, 500, 500 on 3 probes in a row: "
        "the app answers and fails, waiting will not change it"
    )


@pytest.mark.parametrize(
    "answers",
    [[503], [502], [504], [None], [500, 500, 503], [500, 503, 500, 500, 503]],
    ids=["503-starting", "502-proxy", "504-proxy", "connection-refused", "500s-then-503", "503-breaks-each-streak"],
)
def test_health_that_may_still_come_good_waits_until_the_deadline(server, client, refused_url, answers):
    """503 (starting), 502/504 (a proxy with nothing ready behind it), no answer at all, and 500s
    that do not come three in a row: every probe until the deadline (a clock that moves only
    when the check sleeps)."""
    if answers == [None]:
        url = refused_url
    else:
        url = f"{server.base_url}/health"
        server.route("/health")(lambda request: Reply(answers[(server.hits["/health"] - 1) % len(answers)], b"no"))
    fake = FakeTime()

    result = check_health(client, url, deadline_s=60.0, max_backoff_s=2.0, clock=fake.clock, sleep=fake.sleep)

    assert not result.ok and "gave up" not in result.detail
    assert fake.now - 100.0 > 58 and result.attempts > 30


def test_health_500s_then_a_good_answer_passes(server, client):
    @server.route("/health")
    def recovering(request):
        return Reply(500, b"warming") if server.hits["/health"] <= 2 else Reply.json(health_document())

    fake = FakeTime()
    result = check_health(client, f"{server.base_url}/health", deadline_s=60.0, clock=fake.clock, sleep=fake.sleep)
    assert result.ok and result.attempts == 3


@pytest.mark.parametrize(
    ("answers", "hopeless"),
    [
        ([500, 500, 500], True),
        ([None, 503, 500, 501, 599], True),
        ([500, 500], False),
        ([500, 500, 503], False),
        ([500, None, 500, 500], False),
        ([404, 404, 404], False),
        ([502, 502, 502], False),
        ([], False),
    ],
)
def test_hopeless_health_is_three_app_5xx_in_a_row_other_than_502_503_504(answers, hopeless):
    assert bool(hopeless_health(answers)) is hopeless


def test_health_slow_server_is_cut_off_at_the_deadline(server, client):
    @server.route("/health")
    def slow(request):
        time.sleep(3.0)
        return Reply.json(health_document())

    result = check_health(client, f"{server.base_url}/health", deadline_s=1.0)

    assert not result.ok
    assert result.detail == "no answer within deadline 1 s"
    assert result.status_code is None
    assert result.attempts == 1


def test_health_connection_refused_is_a_failed_result(refused_url, client):
    fake = FakeTime()
    result = check_health(client, refused_url, deadline_s=1.0, clock=fake.clock, sleep=fake.sleep)

    assert not result.ok
    assert result.detail == "connection refused"
    assert (result.status_code, result.body_excerpt, result.attempts) == (None, "", 3)


@pytest.mark.parametrize(
    ("reply", "detail"),
    [
        (
            lambda: Reply(200, b'{"status": "ok",', {"Content-Type": "application/json"}),
            "malformed JSON",
        ),
        (
            lambda: Reply.html("<html>ok</html>"),
            "content-type text/html, expected application/json",
        ),
        (lambda: Reply(200, b"{}"), "content-type missing, expected application/json"),
        (lambda: Reply.json(["ok"]), "JSON list, expected an object"),
        (lambda: Reply.json(health_document(status="error")), "status 'error', expected 'ok'"),
        (
            lambda: Reply.json({"timestamp": iso_z(datetime.now(UTC))}),
            "status missing, expected 'ok'",
        ),
        (lambda: Reply.json({"status": "ok"}), "timestamp missing"),
        (
            lambda: Reply.json({"status": "ok", "timestamp": "yesterday"}),
            "timestamp 'yesterday' is not ISO 8601",
        ),
        (
            lambda: Reply.json({"status": "ok", "timestamp": 1767225600}),
            "timestamp 1767225600 is not a string",
        ),
    ],
    ids=[
        "malformed",
        "html",
        "no-content-type",
        "list",
        "status-error",
        "no-status",
        "no-timestamp",
        "bad-timestamp",
        "epoch-timestamp",
    ],
)
def test_health_wrong_answers_fail_with_what_was_wrong(server, client, reply, detail):
    server.route("/health")(lambda request: reply())
    fake = FakeTime()

    result = check_health(client, f"{server.base_url}/health", deadline_s=1.0, clock=fake.clock, sleep=fake.sleep)

    assert not result.ok
    assert result.detail == detail
    assert result.attempts == 3


@pytest.mark.parametrize(("offset", "direction"), [(-3600, "old"), (3600, "in the future")], ids=["stale", "future"])
def test_health_timestamp_must_be_fresh(server, client, offset, direction):
    document = health_document(timedelta(seconds=offset))
    server.route("/health")(lambda request: Reply.json(document))
    fake = FakeTime()

    result = check_health(client, f"{server.base_url}/health", deadline_s=1.0, clock=fake.clock, sleep=fake.sleep)

    assert not result.ok
    assert re.fullmatch(
        rf"timestamp {re.escape(document['timestamp'])} is 360\d s {direction} \(max 120 s\)",
        result.detail,
    ), result.detail


def test_health_accepts_offsets_and_naive_utc_timestamps(server, client):
    stamps = iter(
        [
            (datetime.now(UTC) - timedelta(seconds=30)).astimezone(timezone(timedelta(hours=-5))).isoformat(),
            datetime.now(UTC).replace(tzinfo=None).isoformat(),
        ]
    )
    server.route("/health")(lambda request: Reply.json({"status": "ok", "timestamp": next(stamps)}))

    assert check_health(client, f"{server.base_url}/health").ok
    assert check_health(client, f"{server.base_url}/health").ok


def test_health_expected_status_and_max_age_are_parameters(server, client):
    document = health_document(timedelta(seconds=-200), status="healthy")
    server.route("/health")(lambda request: Reply.json(document))

    result = check_health(client, f"{server.base_url}/health", expected_status="healthy", max_age_s=300)

    assert result.ok, result.detail


def test_health_body_excerpt_is_redacted_and_cut(server, client):
    body = f"error: key {API_KEY} rejected " + "x" * 500
    server.route("/health")(lambda request: Reply(500, body.encode()))
    fake = FakeTime()

    result = check_health(
        client,
        f"{server.base_url}/health",
        deadline_s=0.1,
        redactor=REDACTOR,
        clock=fake.clock,
        sleep=fake.sleep,
    )

    assert result.body_excerpt.startswith("error: key [redacted SHOPIFY_API_KEY] rejected")
    assert len(result.body_excerpt) == 300
    assert API_KEY not in json.dumps(result.as_row())


def test_health_deadline_must_be_positive(client):
    with pytest.raises(ConfigError, match="deadline_s"):
        check_health(client, "http://127.0.0.1:9/health", deadline_s=0)


# --------------------------------------------------------------------------- smoke


def app_bridge_page() -> str:
    return (
        "<!DOCTYPE html><html><head>"
        f'<script data-api-key="{API_KEY}" '
        'src="https://cdn.shopify.com/shopifycloud/app-bridge.js"></script>'
        "</head><body></body></html>"
    )


def verify_webhook(request: Request) -> Reply:
    """What shopify-app-js does with a webhook delivery."""
    if request.method != "POST":
        return Reply(400)
    given = request.headers.get("X-Shopify-Hmac-Sha256")
    if given is None:
        return Reply(400)
    expected = base64.b64encode(hmac.new(API_SECRET.encode(), request.body, hashlib.sha256).digest()).decode()
    if not hmac.compare_digest(given, expected):
        return Reply(401)
    required = (
        "X-Shopify-Topic",
        "X-Shopify-Shop-Domain",
        "X-Shopify-API-Version",
        "X-Shopify-Webhook-Id",
    )
    if any(request.headers.get(name) is None for name in required):
        return Reply(400)
    return Reply(200)


@pytest.fixture
def app(server):
    """The loopback server playing the deployed app."""

    server.route("/health")(lambda request: Reply.json(health_document(), **{"Cache-Control": "no-store"}))
    server.route("/")(lambda request: Reply.html('<form method="post" action="/auth/login"></form>'))
    server.route("/final")(lambda request: Reply.html("followed"))
    server.route("/redirect")(lambda request: Reply(302, headers={"Location": "/final"}))
    server.route("/webhooks/app/uninstalled")(verify_webhook)

    @server.route("/auth/login")
    def login(request):
        if "shop" in request.query:
            handle = request.query["shop"].removesuffix(".myshopify.com")
            location = f"https://admin.shopify.com/store/{handle}/oauth/install?client_id={API_KEY}"
            return Reply(302, headers={"Location": location})
        return Reply.html('<form method="post"><input name="shop" type="text"></form>')

    @server.route("/app")
    def embedded_app(request):
        if BOT_PATTERN.search(request.headers.get("User-Agent", "")):
            return Reply.html("<div>Handling response</div>", status=410)
        return Reply.html(app_bridge_page())

    @server.route("/auth/session-token")
    def session_token(request):
        csp = f"frame-ancestors https://{request.query.get('shop')} https://admin.shopify.com;"
        return Reply.html(app_bridge_page(), **{"Content-Security-Policy": csp})

    @server.route("/slow")
    def slow(request):
        time.sleep(float(request.query.get("delay", "0.2")))
        return Reply.html("slow but fine")

    @server.route("/leak")
    def leak(request):
        body = f"debug: secret={API_SECRET} encoded={quote_plus(API_SECRET)} key={html.escape(API_KEY)}"
        return Reply.html(body, status=500, **{"X-Debug-Secret": API_SECRET})

    return server


def smoke(client, app, *checks: SmokeCheck, context=CONTEXT, redactor=REDACTOR) -> list[SmokeResult]:
    return run_smoke_checks(client, app.base_url, list(checks), context=context, redactor=redactor)


PASSING_CHECKS = [
    SmokeCheck(name="status", path="/", expect_status=200),
    SmokeCheck(name="body_contains", path="/auth/login", expect_status=200, body_contains=('name="shop"',)),
    SmokeCheck(
        name="body_not_contains",
        path="/",
        expect_status=200,
        body_not_contains=("Handling response",),
    ),
    SmokeCheck(
        name="header_equals",
        path="/health",
        expect_status=200,
        header_equals={"cache-control": "no-store"},
    ),
    SmokeCheck(
        name="header_contains",
        path="/auth/session-token?shop={shop}",
        expect_status=200,
        header_contains={"Content-Security-Policy": "frame-ancestors https://{shop} https://admin.shopify.com"},
    ),
    SmokeCheck(
        name="header_absent",
        path="/",
        expect_status=200,
        header_absent=("content-security-policy",),
    ),
    SmokeCheck(name="json_equals", path="/health", expect_status=200, json_equals={"status": "ok"}),
    SmokeCheck(name="max_latency_ms", path="/", expect_status=200, max_latency_ms=5000),
    SmokeCheck(name="head", path="/health", method="HEAD", expect_status=200),
]


def test_each_expectation_passes_on_a_matching_answer(client, app):
    results = smoke(client, app, *PASSING_CHECKS)

    assert [result.name for result in results] == [check.name for check in PASSING_CHECKS]
    assert [(result.name, result.detail) for result in results if not result.ok] == []
    assert all(result.ok and result.detail == "" for result in results)


@pytest.mark.parametrize(
    ("check", "detail"),
    [
        (SmokeCheck(name="c", path="/redirect", expect_status=200), "status 302, expected 200"),
        (
            SmokeCheck(name="c", path="/", expect_status=200, body_contains=("data-api-key",)),
            "body lacks 'data-api-key'",
        ),
        (
            SmokeCheck(name="c", path="/", expect_status=200, body_not_contains=("/auth/login",)),
            "body contains '/auth/login'",
        ),
        (
            SmokeCheck(
                name="c",
                path="/health",
                expect_status=200,
                header_equals={"Cache-Control": "public"},
            ),
            "header Cache-Control is 'no-store', expected 'public'",
        ),
        (
            SmokeCheck(
                name="c",
                path="/health",
                expect_status=200,
                header_equals={"X-Frame-Options": "DENY"},
            ),
            "header X-Frame-Options missing, expected 'DENY'",
        ),
        (
            SmokeCheck(
                name="c",
                path="/auth/session-token?shop=other.myshopify.com",
                expect_status=200,
                header_contains={"content-security-policy": "https://{shop}"},
            ),
            "header content-security-policy 'frame-ancestors https://other.myshopify.com"
            f" https://admin.shopify.com;' lacks 'https://{SHOP}'",
        ),
        (
            SmokeCheck(
                name="c",
                path="/",
                expect_status=200,
                header_contains={"Content-Security-Policy": "frame"},
            ),
            "header Content-Security-Policy missing, expected to contain 'frame'",
        ),
        (
            SmokeCheck(name="c", path="/health", expect_status=200, header_absent=("cache-control",)),
            "header cache-control present: 'no-store'",
        ),
        (
            SmokeCheck(name="c", path="/health", expect_status=200, json_equals={"status": "down"}),
            "JSON status is 'ok', expected 'down'",
        ),
        (
            SmokeCheck(name="c", path="/health", expect_status=200, json_equals={"version": 3}),
            "JSON version missing, expected 3",
        ),
        (
            SmokeCheck(name="c", path="/", expect_status=200, json_equals={"status": "ok"}),
            "body is not JSON",
        ),
    ],
    ids=[
        "status",
        "body_contains",
        "body_not_contains",
        "header_equals",
        "header_equals-missing",
        "header_contains",
        "header_contains-missing",
        "header_absent",
        "json_equals",
        "json_equals-missing",
        "json_equals-not-json",
    ],
)
def test_each_expectation_fails_with_its_own_detail(client, app, check, detail):
    [result] = smoke(client, app, check)

    assert not result.ok
    assert result.detail == detail
    assert result.status_code is not None


def test_latency_limit_fails_a_slow_answer(client, app):
    [result] = smoke(
        client,
        app,
        SmokeCheck(name="c", path="/slow?delay=0.05", expect_status=200, max_latency_ms=1),
    )

    assert not result.ok
    assert re.fullmatch(r"latency \d+ ms over 1 ms", result.detail), result.detail


def test_every_failed_expectation_is_reported(client, app):
    check = SmokeCheck(
        name="c",
        path="/",
        expect_status=404,
        body_contains=("nope",),
        header_equals={"x-nope": "1"},
    )
    [result] = smoke(client, app, check)

    assert result.detail == "status 200, expected 404; body lacks 'nope'; header x-nope missing, expected '1'"


def test_redirects_are_not_followed(client, app):
    check = SmokeCheck(name="c", path="/redirect", expect_status=302, header_equals={"Location": "/final"})

    [result] = smoke(client, app, check)

    assert result.ok, result.detail
    assert result.evidence == "302 Location: /final"
    assert "/final" not in app.paths_received()


def test_bot_user_agent_is_sent_when_asked_and_gets_410(client, app):
    checks = [
        SmokeCheck(
            name="browser",
            path="/app",
            expect_status=200,
            body_contains=('data-api-key="{SHOPIFY_API_KEY}"',),
        ),
        SmokeCheck(
            name="bot",
            path="/app",
            expect_status=410,
            body_contains=("Handling response",),
            user_agent="bot",
        ),
    ]
    browser, bot = smoke(client, app, *checks)

    assert browser.ok and bot.ok, (browser.detail, bot.detail)
    assert sorted(request.headers["User-Agent"] for request in app.received) == sorted(
        [BROWSER_USER_AGENT, BOT_USER_AGENT]
    )
    assert browser.evidence.startswith("200 ")
    assert 'data-api-key="[redacted SHOPIFY_API_KEY]"' in browser.evidence
    assert bot.evidence == "410 <div>Handling response</div>"


def test_webhooks_refuse_missing_and_wrong_signatures_and_accept_a_valid_one(client, app):
    path = "/webhooks/app/uninstalled"
    checks = [
        SmokeCheck(name="missing", path=path, method="POST", expect_status=400, webhook_hmac="missing"),
        SmokeCheck(name="wrong", path=path, method="POST", expect_status=401, webhook_hmac="wrong"),
        SmokeCheck(name="valid", path=path, method="POST", expect_status=200, webhook_hmac="valid"),
        SmokeCheck(name="get", path=path, expect_status=400),
    ]
    results = smoke(client, app, *checks)

    assert [(result.name, result.ok, result.status_code) for result in results] == [
        ("missing", True, 400),
        ("wrong", True, 401),
        ("valid", True, 200),
        ("get", True, 400),
    ]
    posts = [request for request in app.received if request.method == "POST"]
    assert len(posts) == 3
    for request in posts:
        assert request.headers["X-Shopify-Topic"] == "app/uninstalled"
        assert request.headers["X-Shopify-Shop-Domain"] == SHOP
        assert request.headers["X-Shopify-API-Version"]
        assert request.headers["X-Shopify-Webhook-Id"]
        assert request.headers["Content-Type"] == "application/json"
        assert json.loads(request.body)["domain"] == SHOP
    assert len({request.headers["X-Shopify-Webhook-Id"] for request in posts}) == 3
    assert sum("X-Shopify-Hmac-Sha256" in request.headers for request in posts) == 2


def test_a_wrongly_signed_webhook_expected_to_pass_fails(client, app):
    check = SmokeCheck(
        name="c",
        path="/webhooks/app/uninstalled",
        method="POST",
        expect_status=200,
        webhook_hmac="wrong",
    )

    [result] = smoke(client, app, check)

    assert result.detail == "status 401, expected 200"


def test_a_valid_webhook_needs_the_secret_in_the_context(client, app):
    context = {key: value for key, value in CONTEXT.items() if key != "SHOPIFY_API_SECRET"}
    check = SmokeCheck(
        name="c",
        path="/webhooks/app/uninstalled",
        method="POST",
        expect_status=200,
        webhook_hmac="valid",
    )

    [result] = smoke(client, app, check, context=context)

    assert not result.ok
    assert "SHOPIFY_API_SECRET" in result.detail
    assert app.received == []


def test_placeholders_are_filled_and_the_install_redirect_carries_the_client_id(client, app):
    check = SmokeCheck(
        name="install redirect",
        path="/auth/login?shop={shop_handle}",
        expect_status=302,
        header_contains={"location": "/store/{shop_handle}/oauth/install?client_id={SHOPIFY_API_KEY}"},
        description="the install redirect carries the app's client_id",
    )
    [result] = smoke(client, app, check)

    assert result.ok, result.detail
    assert result.path == f"/auth/login?shop={SHOP_HANDLE}"
    assert result.evidence == (
        f"302 Location: https://admin.shopify.com/store/{SHOP_HANDLE}/oauth/install"
        "?client_id=[redacted SHOPIFY_API_KEY]"
    )
    assert result.description == "the install redirect carries the app's client_id"
    assert app.received[0].query == {"shop": SHOP_HANDLE}


def test_a_wrong_client_id_fails_and_names_the_expected_secret_only_by_marker(client, app):
    context = {**CONTEXT, "SHOPIFY_API_KEY": "0000aaaa1111bbbb2222cccc3333dddd"}
    redactor = Redactor({"SHOPIFY_API_KEY": context["SHOPIFY_API_KEY"]})
    check = SmokeCheck(
        name="c",
        path="/auth/login?shop={shop}",
        expect_status=302,
        header_contains={"location": "client_id={SHOPIFY_API_KEY}"},
    )
    [result] = smoke(client, app, check, context=context, redactor=redactor)

    assert not result.ok
    assert result.detail.endswith("lacks 'client_id=[redacted SHOPIFY_API_KEY]'")


@pytest.mark.parametrize(
    ("check", "detail"),
    [
        (
            SmokeCheck(name="c", path="/app?host={host}", expect_status=200),
            "unknown placeholder {host} in path",
        ),
        (
            SmokeCheck(name="c", path="/", expect_status=200, body_contains=("{api_key}",)),
            "unknown placeholder {api_key} in body_contains",
        ),
        (
            SmokeCheck(name="c", path="/", expect_status=200, header_equals={"Location": "{nowhere}"}),
            "unknown placeholder {nowhere} in header_equals.Location",
        ),
        (SmokeCheck(name="c", path="/{", expect_status=200), "cannot fill path"),
    ],
    ids=["path", "body_contains", "header_equals", "syntax"],
)
def test_an_unfillable_placeholder_fails_the_check_without_a_request(client, app, check, detail):
    [result] = smoke(client, app, check)

    assert not result.ok
    assert result.detail.startswith(detail), result.detail
    assert (result.status_code, result.evidence) == (None, "not sent")
    assert app.received == []


def test_connection_refused_and_timeouts_become_failed_results(refused_url, app):
    with make_client(timeout_s=0.3) as http:
        [refused] = run_smoke_checks(http, refused_url.removesuffix("/health"), [PASSING_CHECKS[0]], context=CONTEXT)
        [slow] = run_smoke_checks(
            http,
            app.base_url,
            [SmokeCheck(name="c", path="/slow?delay=2", expect_status=200)],
            context=CONTEXT,
        )

    assert (refused.ok, refused.detail, refused.status_code, refused.evidence) == (
        False,
        "connection refused",
        None,
        "no response",
    )
    assert (slow.ok, slow.detail, slow.status_code) == (False, "no answer within 0.3 s", None)


def test_no_secret_value_reaches_any_field_of_any_result(client, app):
    checks = [
        *PASSING_CHECKS,
        SmokeCheck(
            name="leak",
            path="/leak",
            expect_status=200,
            body_contains=("secret={SHOPIFY_API_SECRET}", "missing {SHOPIFY_API_KEY}"),
            header_equals={"X-Debug-Secret": "{SHOPIFY_API_KEY}"},
            header_absent=("X-Debug-Secret",),
        ),
        SmokeCheck(
            name="leak-forbidden",
            path="/leak",
            expect_status=500,
            body_not_contains=("{SHOPIFY_API_SECRET}",),
        ),
        SmokeCheck(
            name="{SHOPIFY_API_KEY}",
            path="/app?key={SHOPIFY_API_KEY}",
            expect_status=404,
            body_contains=('data-api-key="{SHOPIFY_API_KEY}"',),
            description=f"key {API_KEY}",
        ),
        SmokeCheck(
            name="install",
            path="/auth/login?shop={shop}",
            expect_status=200,
            header_equals={"Location": "{SHOPIFY_API_SECRET}"},
        ),
        SmokeCheck(
            name="webhook",
            path="/webhooks/app/uninstalled",
            method="POST",
            expect_status=500,
            webhook_hmac="valid",
        ),
    ]
    results = smoke(client, app, *checks)

    spellings = {
        form
        for value in (API_KEY, API_SECRET)
        for form in (value, quote(value, safe=""), quote_plus(value), html.escape(value))
    }
    for result in results:
        for name, value in result.as_row().items():
            assert not any(spelling in str(value) for spelling in spellings), (
                result.name,
                name,
                value,
            )
    leak, forbidden = results[len(PASSING_CHECKS)], results[len(PASSING_CHECKS) + 1]
    assert "[redacted SHOPIFY_API_SECRET]" in leak.evidence
    assert "body contains '[redacted SHOPIFY_API_SECRET]'" in forbidden.detail
    assert "secret=[redacted SHOPIFY_API_SECRET]" in forbidden.evidence


def test_evidence_is_short_even_for_a_long_answer(client, app):
    app.route("/long")(lambda request: Reply.html("word " * 2000, **{"Location": "/" + "x" * 500}))

    [result] = smoke(client, app, SmokeCheck(name="c", path="/long", expect_status=200))

    assert len(result.evidence) <= 200
    assert result.evidence.startswith("200 Location: /xxx")


def test_checks_run_concurrently_and_results_keep_their_order(client, app):
    checks = [SmokeCheck(name=f"slow-{index}", path="/slow?delay=0.2", expect_status=200) for index in range(10)]

    results = run_smoke_checks(client, app.base_url, checks, context=CONTEXT, max_workers=8)

    assert [result.name for result in results] == [check.name for check in checks]
    assert all(result.ok for result in results)
    assert app.max_in_flight > 1


def test_summarize_counts_and_rows_make_a_table(client, app):
    results = smoke(client, app, PASSING_CHECKS[0], SmokeCheck(name="bad", path="/", expect_status=500))

    assert summarize(results) == {"total": 2, "passed": 1, "failed": 1}
    assert summarize([]) == {"total": 0, "passed": 0, "failed": 0}
    table = pd.DataFrame([result.as_row() for result in results])
    assert list(table.columns) == [
        "name",
        "ok",
        "method",
        "path",
        "status_code",
        "latency_ms",
        "detail",
        "evidence",
        "description",
    ]
    assert list(table["ok"]) == [True, False]
    assert list(HealthResult.__dataclass_fields__) == [
        "url",
        "ok",
        "attempts",
        "status_code",
        "latency_ms",
        "detail",
        "body_excerpt",
        "checked_at",
    ]


# --------------------------------------------------------------------------- from_dict


def test_from_dict_builds_a_check_from_a_toml_table():
    check = SmokeCheck.from_dict(
        {
            "name": "app bridge",
            "path": "/app",
            "expect_status": 200,
            "body_contains": ['data-api-key="{SHOPIFY_API_KEY}"'],
            "header_equals": {"Cache-Control": "no-store"},
            "header_absent": ["Location"],
            "json_equals": {"status": "ok"},
            "user_agent": "bot",
            "max_latency_ms": 1500,
            "method": "get",
            "description": "the page carries the app's API key",
        },
        key="smoke.app_bridge",
    )

    assert check == SmokeCheck(
        name="app bridge",
        path="/app",
        method="GET",
        expect_status=200,
        body_contains=('data-api-key="{SHOPIFY_API_KEY}"',),
        header_equals={"Cache-Control": "no-store"},
        header_absent=("Location",),
        json_equals={"status": "ok"},
        user_agent="bot",
        max_latency_ms=1500,
        description="the page carries the app's API key",
    )


def test_from_dict_makes_a_webhook_check_a_post():
    check = SmokeCheck.from_dict(
        {
            "name": "w",
            "path": "/webhooks/app/uninstalled",
            "expect_status": 401,
            "webhook_hmac": "wrong",
        },
        key="k",
    )
    assert (check.method, check.webhook_hmac) == ("POST", "wrong")


VALID = {"name": "n", "path": "/", "expect_status": 200}


@pytest.mark.parametrize(
    ("data", "key", "problem"),
    [
        (
            {**VALID, "colour": "red"},
            "smoke.c.colour",
            "unknown field; allowed: name, path, method",
        ),
        ({"path": "/", "expect_status": 200}, "smoke.c.name", "required"),
        ({"name": "n", "expect_status": 200}, "smoke.c.path", "required"),
        ({"name": "n", "path": "/"}, "smoke.c.expect_status", "required"),
        ({**VALID, "name": 5}, "smoke.c.name", "must be a string, got int"),
        ({**VALID, "name": " "}, "smoke.c.name", "must not be empty"),
        ({**VALID, "path": "app"}, "smoke.c.path", "must start with '/'"),
        ({**VALID, "path": "/app?x={"}, "smoke.c.path", "bad placeholder syntax"),
        ({**VALID, "path": "/app/{}"}, "smoke.c.path", "empty placeholder"),
        ({**VALID, "expect_status": "200"}, "smoke.c.expect_status", "must be an integer, got str"),
        ({**VALID, "expect_status": True}, "smoke.c.expect_status", "must be an integer, got bool"),
        (
            {**VALID, "expect_status": 700},
            "smoke.c.expect_status",
            "must be an HTTP status 100..599",
        ),
        ({**VALID, "method": "PUT"}, "smoke.c.method", "must be one of GET, POST, HEAD"),
        ({**VALID, "method": 1}, "smoke.c.method", "must be a string"),
        ({**VALID, "user_agent": "robot"}, "smoke.c.user_agent", "must be one of browser, bot"),
        (
            {**VALID, "webhook_hmac": "maybe"},
            "smoke.c.webhook_hmac",
            "must be one of missing, wrong, valid",
        ),
        (
            {**VALID, "webhook_hmac": "valid", "method": "GET"},
            "smoke.c.method",
            "must be POST when webhook_hmac is set",
        ),
        ({**VALID, "max_latency_ms": 0}, "smoke.c.max_latency_ms", "must be positive"),
        (
            {**VALID, "max_latency_ms": 1.5},
            "smoke.c.max_latency_ms",
            "must be an integer, got float",
        ),
        (
            {**VALID, "body_contains": "ok"},
            "smoke.c.body_contains",
            "must be a list of strings, got str",
        ),
        (
            {**VALID, "body_not_contains": [1]},
            "smoke.c.body_not_contains",
            "must be a list of strings",
        ),
        ({**VALID, "body_contains": ["{"]}, "smoke.c.body_contains", "bad placeholder syntax"),
        (
            {**VALID, "header_absent": "Location"},
            "smoke.c.header_absent",
            "must be a list of strings",
        ),
        ({**VALID, "header_equals": "x"}, "smoke.c.header_equals", "must be a table of strings"),
        (
            {**VALID, "header_equals": {"Location": 3}},
            "smoke.c.header_equals.Location",
            "must be a string, got int",
        ),
        (
            {**VALID, "header_contains": {"Location": "{"}},
            "smoke.c.header_contains.Location",
            "bad placeholder",
        ),
        ({**VALID, "json_equals": ["ok"]}, "smoke.c.json_equals", "must be a table, got list"),
        ({**VALID, "description": ["why"]}, "smoke.c.description", "must be a string"),
        (["not", "a", "table"], "smoke.c", "must be a table, got list"),
    ],
)
def test_from_dict_rejects_bad_tables_naming_the_field(data, key, problem):
    with pytest.raises(ConfigError) as caught:
        SmokeCheck.from_dict(data, key="smoke.c")

    assert caught.value.key == key
    assert problem in caught.value.problem
    assert str(caught.value).startswith(f"{key}: ")
