"""The stand-in HotDash app, run as a real process on loopback and checked over real HTTP.

Rows of the contract table ("Shopify embedded app" in the external-contracts reference)
are checked against a good build; each defect, the start-up refusals, webhook HMACs, the
frame-ancestors header, logging and SIGTERM are checked on their own processes.
"""

from __future__ import annotations

import ast
import base64
import hashlib
import hmac
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote_plus

import httpx
import pytest
from conftest import wait_for

from hotdash_release.targets import standin_app

APP_FILE = Path(standin_app.__file__)
CHROME = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 "
    "(KHTML, like Gecko) Chrome/126.0.0.0 Safari/537.36"
)
SECRETS = {
    "DATABASE_URL": "postgresql://rehearsal_user:pg-Pw-7f3c9e1b@127.0.0.1:5432/hotdash_rehearsal",
    "SHOPIFY_API_KEY": "a1b2c3d4e5f60718293a4b5c6d7e8f90",
    "SHOPIFY_API_SECRET": "shpss_rehearsal_9d8c7b6a5f4e3d2c1b0a",
    "SHOPIFY_APP_URL": "https://hotdash-rehearsal-app.example.test",
    "SCOPES": "read_products,read_orders,write_rehearsal_scope",
    "SUPABASE_URL": "https://rehearsalproj-q7x2k9.supabase.co",
    "SUPABASE_ANON_KEY": "eyJhbGciOiJIUzI1NiJ9.rehearsal-anon.Zz9Yy8Xx7",
}
KEY = SECRETS["SHOPIFY_API_KEY"]
SHOP = "x.myshopify.com"
HOST = base64.b64encode(b"admin.shopify.com/store/x").decode().rstrip("=")  # as Shopify sends it
APP_BRIDGE_TAG = f'<script src="https://cdn.shopify.com/shopifycloud/app-bridge.js" data-api-key="{KEY}"></script>'
CSP = (
    "frame-ancestors https://x.myshopify.com https://admin.shopify.com https://*.spin.dev "
    "https://admin.myshopify.io https://admin.shop.dev;"
)
BOT_AGENTS = (
    "curl/8.5.0",
    "python-httpx/0.28.1",
    "python-requests/2.32.3",
    "Wget/1.21.4",
    "Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)",
)
WEBHOOK_BODY = b'{"id":123456789,"domain":"x.myshopify.com"}'
RIGHT_HMAC = base64.b64encode(
    hmac.new(SECRETS["SHOPIFY_API_SECRET"].encode(), WEBHOOK_BODY, hashlib.sha256).digest()
).decode()
SHOPIFY_WEBHOOK_HEADERS = {
    "X-Shopify-Topic": "app/uninstalled",
    "X-Shopify-Shop-Domain": SHOP,
    "X-Shopify-API-Version": "2025-07",
    "X-Shopify-Webhook-Id": "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043",
}
START_TIMEOUT = 10.0


# --- running the app -------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_env(port: int, **overrides: str | None) -> dict[str, str]:
    """A clean environment: nothing inherited that the app reads, then the fake secrets."""
    env = {
        name: value
        for name, value in os.environ.items()
        if name not in standin_app.REQUIRED_SECRETS and name not in ("HOST", "PORT") and not name.startswith("HOTDASH_")
    }
    env.update(SECRETS, PORT=str(port))
    for name, value in overrides.items():
        if value is None:
            env.pop(name, None)
        else:
            env[name] = value
    return env


def write_build(directory: Path, defect: str, version: str = "1.4.2-rehearsal") -> str:
    path = directory / "build.json"
    build = {"defect": defect, "version": version, "built_at": "2025-01-01T00:00:00Z"}
    path.write_text(json.dumps(build))
    return str(path)


@dataclass
class RunningApp:
    proc: subprocess.Popen
    port: int
    stdout_path: Path
    stderr_path: Path
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(self, user_agent: str = CHROME) -> httpx.Client:
        client = httpx.Client(
            base_url=self.url,
            follow_redirects=False,
            timeout=5.0,
            headers={"User-Agent": user_agent},
        )
        self.clients.append(client)
        return client

    def stdout(self) -> str:
        return self.stdout_path.read_text()

    def stderr(self) -> str:
        return self.stderr_path.read_text()

    def stop(self) -> int:
        for client in self.clients:
            client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        return self.proc.returncode


def spawn(directory: Path, env: dict[str, str], script: Path = APP_FILE, *args: str) -> RunningApp:
    stdout_path, stderr_path = directory / "stdout.log", directory / "stderr.log"
    with open(stdout_path, "wb") as out, open(stderr_path, "wb") as err:
        proc = subprocess.Popen(
            [sys.executable, *args, str(script)],
            env=env,
            cwd=directory,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=err,
        )
    return RunningApp(proc, int(env["PORT"]), stdout_path, stderr_path)


def wait_until_serving(app: RunningApp) -> None:
    """Poll /health until the app answers (any status) or the bounded wait runs out."""
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if app.proc.poll() is not None:
            pytest.fail(f"app exited {app.proc.returncode} at start: {app.stderr()}")
        try:
            httpx.get(f"{app.url}/health", headers={"User-Agent": CHROME}, timeout=5.0)
            return
        except httpx.TransportError:
            time.sleep(0.05)
    pytest.fail(f"app did not answer /health within {START_TIMEOUT} s")


def run_to_exit(directory: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """For builds that must refuse to start: run and expect the process to end by itself."""
    return subprocess.run(
        [sys.executable, str(APP_FILE)],
        env=env,
        cwd=directory,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )


@pytest.fixture
def start_app(tmp_path):
    """start_app(defect=None, **env overrides) -> a serving RunningApp, stopped at teardown."""
    started: list[RunningApp] = []

    def start(defect: str | None = None, **overrides: str | None) -> RunningApp:
        directory = tmp_path / f"app{len(started)}"
        directory.mkdir()
        if defect is not None:
            overrides.setdefault("HOTDASH_BUILD_INFO", write_build(directory, defect))
        app = spawn(directory, app_env(free_port(), **overrides))
        started.append(app)
        wait_until_serving(app)
        return app

    yield start
    for app in started:
        app.stop()


@pytest.fixture(scope="module")
def good_app(tmp_path_factory):
    directory = tmp_path_factory.mktemp("good_app")
    env = app_env(free_port(), HOTDASH_BUILD_INFO=write_build(directory, ""))
    app = spawn(directory, env)
    try:
        wait_until_serving(app)
        yield app
    finally:
        app.stop()


# --- the contract table -----------------------------------------------------------------


@dataclass(frozen=True)
class Row:
    id: str
    method: str
    path: str
    status: int
    user_agent: str = CHROME
    headers: dict = field(default_factory=dict)
    content: bytes | None = None
    location: str | None = None
    body: bytes | None = None  # exact body
    contains: tuple[str, ...] = ()
    content_type: str | None = None
    csp: bool = False


BOUNCE = f"/auth/session-token?embedded=1&shop={SHOP}&host={HOST}&shopify-reload=" + quote_plus(
    f"/app?embedded=1&shop={SHOP}&host={HOST}"
)
INSTALL = f"https://admin.shopify.com/store/x/oauth/install?client_id={KEY}"
ROWS = [
    Row("health", "GET", "/health", 200, content_type="application/json"),
    Row("landing", "GET", "/", 200, contains=('action="/auth/login"', 'name="shop"')),
    Row("landing-with-shop", "GET", f"/?shop={SHOP}", 302, location=f"/app?shop={SHOP}"),
    Row("login-form", "GET", "/auth/login", 200, contains=('name="shop"',)),
    Row("login-form-curl", "GET", "/auth/login", 200, user_agent="curl/8.5.0", contains=('name="shop"',)),
    Row("login-form-httpx", "GET", "/auth/login", 200, user_agent="python-httpx/0.28.1", contains=('name="shop"',)),
    Row("login-short-shop", "GET", "/auth/login?shop=x", 302, location=INSTALL),
    Row("login-full-shop", "GET", f"/auth/login?shop={SHOP}", 302, location=INSTALL),
    Row("app-bridge", "GET", "/app", 200, contains=(APP_BRIDGE_TAG, "HotDash dashboard")),
    *[
        Row(
            f"bot-{path}-{agent.split('/')[0]}",
            "GET",
            path,
            410,
            user_agent=agent,
            body=b"<div>Handling response</div>",
        )
        for path in ("/app", "/app/additional", "/auth", "/auth/session-token")
        for agent in BOT_AGENTS
    ],
    Row(
        "app-in-admin",
        "GET",
        f"/app?shop={SHOP}&host={HOST}",
        302,
        location=f"https://admin.shopify.com/store/x/apps/{KEY}",
    ),
    Row("app-embedded-bounce", "GET", f"/app?embedded=1&shop={SHOP}&host={HOST}", 302, location=BOUNCE),
    Row("session-token", "GET", f"/auth/session-token?shop={SHOP}", 200, body=APP_BRIDGE_TAG.encode(), csp=True),
    Row("session-token-bounce", "GET", BOUNCE, 200, body=APP_BRIDGE_TAG.encode(), csp=True),
    Row("auth", "GET", f"/auth?shop={SHOP}", 200, contains=(APP_BRIDGE_TAG,), csp=True),
    Row(
        "webhook-no-hmac",
        "POST",
        "/webhooks/app/uninstalled",
        400,
        content=WEBHOOK_BODY,
        headers=SHOPIFY_WEBHOOK_HEADERS,
        body=b"",
    ),
    Row(
        "webhook-wrong-hmac",
        "POST",
        "/webhooks/app/uninstalled",
        401,
        content=WEBHOOK_BODY,
        headers={**SHOPIFY_WEBHOOK_HEADERS, "X-Shopify-Hmac-Sha256": "d3JvbmcgaG1hYw=="},
        body=b"",
    ),
    Row(
        "webhook-right-hmac",
        "POST",
        "/webhooks/app/uninstalled",
        200,
        content=WEBHOOK_BODY,
        headers={**SHOPIFY_WEBHOOK_HEADERS, "X-Shopify-Hmac-Sha256": RIGHT_HMAC},
        body=b"",
    ),
    Row("webhook-get", "GET", "/webhooks/app/uninstalled", 400, body=b""),
    Row("not-found", "GET", "/nope", 404, content_type="text/plain"),
]


@pytest.mark.parametrize("row", ROWS, ids=[row.id for row in ROWS])
def test_contract_table(good_app, row):
    response = good_app.client(row.user_agent).request(row.method, row.path, headers=row.headers, content=row.content)

    assert response.status_code == row.status
    assert response.headers.get("location") == row.location
    if row.body is not None:
        assert response.content == row.body
    for fragment in row.contains:
        assert fragment in response.text
    if row.content_type:
        assert response.headers["content-type"].startswith(row.content_type)
    if row.csp:
        assert response.headers["content-security-policy"] == CSP
    else:
        assert "content-security-policy" not in response.headers
    assert "set-cookie" not in response.headers


def test_health_body_and_headers(good_app):
    response = good_app.client().get("/health")

    assert response.status_code == 200
    assert response.headers["cache-control"] == "no-store"
    payload = response.json()
    assert set(payload) == {"status", "timestamp", "database"}
    assert payload["status"] == "ok"
    # Nothing listens at this DATABASE_URL: said in words that quote nothing of the URL.
    assert payload["database"] == {"connected": False, "ok": True, "error": "connection refused"}
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", payload["timestamp"])


@pytest.mark.parametrize(
    "path, user_agent",
    [
        (f"/health?shop={SHOP}", CHROME),  # not a rendered page
        (f"/?shop={SHOP}", CHROME),  # redirect
        (f"/auth/login?shop={SHOP}", CHROME),  # redirect
        (f"/app?shop={SHOP}&host={HOST}", CHROME),  # redirect
        (f"/auth/session-token?shop={SHOP}", "curl/8.5.0"),  # 410
        (f"/webhooks/app/uninstalled?shop={SHOP}", CHROME),  # webhook
    ],
)
def test_no_frame_ancestors_off_rendered_pages_even_with_a_shop(good_app, path, user_agent):
    response = good_app.client(user_agent).get(path)

    assert response.status_code != 200 or path.startswith("/health")
    assert "content-security-policy" not in response.headers


@pytest.mark.parametrize("shop", ["X.myshopify.com", "x.example.com", "-x.myshopify.com", ""])
def test_no_frame_ancestors_for_an_invalid_shop(good_app, shop):
    response = good_app.client().get(f"/auth/session-token?shop={shop}")

    assert response.status_code == 200
    assert "content-security-policy" not in response.headers


def test_login_form_post_redirects_to_install(good_app):
    response = good_app.client().post("/auth/login", data={"shop": "x"})

    assert response.status_code == 302
    assert response.headers["location"] == INSTALL


def test_invalid_shop_on_login_shows_the_form_again(good_app):
    response = good_app.client().get("/auth/login?shop=not a shop!")

    assert response.status_code == 200
    assert 'name="shop"' in response.text


def test_right_hmac_without_the_shopify_headers_is_refused(good_app):
    # shopify-api checks the topic, domain, version and id headers after the HMAC.
    response = good_app.client().post(
        "/webhooks/app/uninstalled",
        content=WEBHOOK_BODY,
        headers={"X-Shopify-Hmac-Sha256": RIGHT_HMAC},
    )
    assert response.status_code == 400
    assert response.content == b""


def test_hmac_of_another_body_is_refused(good_app):
    response = good_app.client().post(
        "/webhooks/app/uninstalled",
        content=WEBHOOK_BODY + b" ",
        headers={**SHOPIFY_WEBHOOK_HEADERS, "X-Shopify-Hmac-Sha256": RIGHT_HMAC},
    )
    assert response.status_code == 401


def test_access_log_has_no_secrets_and_no_query_strings(good_app):
    client = good_app.client()
    client.get(f"/auth/login?shop={SHOP}")
    client.get(f"/app?embedded=1&shop={SHOP}&host={HOST}")
    client.post(
        "/webhooks/app/uninstalled",
        content=WEBHOOK_BODY,
        headers={**SHOPIFY_WEBHOOK_HEADERS, "X-Shopify-Hmac-Sha256": RIGHT_HMAC},
    )
    client.get("/health")

    lines = good_app.stdout().splitlines()
    request_lines = [line for line in lines if not line.startswith(("listening on ", "database unavailable: "))]
    assert lines[0] == "database unavailable: connection refused"  # nothing of the URL
    assert lines[1] == (f"listening on http://127.0.0.1:{good_app.port} (build 1.4.2-rehearsal, defect none)")
    assert "GET /auth/login 302" in good_app.stdout()
    assert "GET /app 302" in good_app.stdout()
    assert "POST /webhooks/app/uninstalled 200" in good_app.stdout()
    for line in request_lines:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z [A-Z]+ /\S* \d{3} \d+\.\dms", line), line
        assert "?" not in line and "shop=" not in line
    output = good_app.stdout() + good_app.stderr()
    for name, value in SECRETS.items():
        assert value not in output, f"{name} leaked into the app's output"
    assert good_app.stderr() == ""  # the default stderr access log is silenced


# --- defects ---------------------------------------------------------------------------


def test_health_failing_defect(start_app):
    app = start_app("health_failing")
    client = app.client()

    response = client.get("/health")

    assert response.status_code == 500
    assert response.json()["status"] == "error"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", response.json()["timestamp"])
    assert client.get("/auth/login").status_code == 200
    assert "defect health_failing" in app.stdout()


def test_slow_defect_delays_every_response(start_app):
    app = start_app("slow", HOTDASH_SLOW_SECONDS="0.5")
    client = app.client()

    for path, status in (("/health", 200), ("/auth/login", 200), ("/nope", 404)):
        started = time.monotonic()
        response = client.get(path)
        assert response.status_code == status
        assert time.monotonic() - started >= 0.4


def test_degrades_after_defect_passes_at_first_and_fails_health_later(start_app):
    app = start_app("degrades_after", HOTDASH_DEGRADE_AFTER_SECONDS="1")
    client = app.client()
    assert client.get("/health").status_code == 200  # what the deploy and the smoke test see
    assert wait_for(lambda: client.get("/health").status_code == 503, timeout_s=10)
    assert client.get("/health").json()["status"] == "degraded"
    assert client.get("/auth/login").status_code == 200


def test_error_logs_defect_fills_the_log_with_errors_later(start_app):
    app = start_app("error_logs", HOTDASH_DEGRADE_AFTER_SECONDS="1")
    assert "ERROR" not in app.stdout() and app.client().get("/health").status_code == 200
    assert wait_for(lambda: app.stdout().count("ERROR unhandled exception") >= 2, timeout_s=10)
    assert app.client().get("/health").status_code == 200  # health never says so


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "soon"])
def test_a_bad_degrade_delay_stops_the_app(tmp_path, value):
    env = app_env(free_port(), HOTDASH_BUILD_INFO=write_build(tmp_path, "degrades_after"))
    result = run_to_exit(tmp_path, {**env, "HOTDASH_DEGRADE_AFTER_SECONDS": value})
    assert result.returncode == 2 and "HOTDASH_DEGRADE_AFTER_SECONDS must be a finite number" in result.stderr


def test_crash_at_start_defect(tmp_path):
    env = app_env(free_port(), HOTDASH_BUILD_INFO=write_build(tmp_path, "crash_at_start"))

    result = run_to_exit(tmp_path, env)

    assert result.returncode == 3
    assert "fatal: boot failed (rehearsal defect crash_at_start)" in result.stderr
    assert "listening" not in result.stdout


def test_wrong_api_key_defect_shows_another_key_everywhere(start_app):
    app = start_app("wrong_api_key")
    client = app.client()

    page = client.get("/app").text
    token_page = client.get(f"/auth/session-token?shop={SHOP}").text
    install = client.get("/auth/login?shop=x").headers["location"]
    admin = client.get(f"/app?shop={SHOP}&host={HOST}").headers["location"]

    shown = re.search(r'data-api-key="([^"]*)"', page).group(1)
    assert shown and shown != KEY
    assert f'data-api-key="{shown}"' in token_page
    assert install == f"https://admin.shopify.com/store/x/oauth/install?client_id={shown}"
    assert admin == f"https://admin.shopify.com/store/x/apps/{shown}"
    assert KEY not in page + token_page + install + admin


def test_unknown_defect_exits_2(tmp_path):
    env = app_env(free_port(), HOTDASH_BUILD_INFO=write_build(tmp_path, "gremlins"))

    result = run_to_exit(tmp_path, env)

    assert result.returncode == 2
    assert "gremlins" in result.stderr


# --- start-up and shutdown -----------------------------------------------------------


@pytest.mark.parametrize(
    "overrides, missing",
    [
        *[({name: None}, [name]) for name in standin_app.REQUIRED_SECRETS],
        ({"SUPABASE_ANON_KEY": ""}, ["SUPABASE_ANON_KEY"]),
        ({"SCOPES": None, "DATABASE_URL": "  "}, ["DATABASE_URL", "SCOPES"]),
    ],
    ids=lambda value: "+".join(value) if isinstance(value, list) else None,
)
def test_missing_secret_exits_1_naming_it(tmp_path, overrides, missing):
    result = run_to_exit(tmp_path, app_env(free_port(), **overrides))

    assert result.returncode == 1
    assert len(result.stderr.strip().splitlines()) == 1
    for name in missing:
        assert name in result.stderr
    present = [name for name in standin_app.REQUIRED_SECRETS if name not in missing]
    for name in present:
        assert name not in result.stderr
        assert SECRETS[name] not in result.stderr + result.stdout
    assert result.stdout == ""


def test_runs_as_a_copied_app_py_and_stops_cleanly_on_sigterm(tmp_path):
    script = tmp_path / "app.py"
    shutil.copy(APP_FILE, script)
    env = app_env(free_port(), HOTDASH_BUILD_INFO=write_build(tmp_path, ""))
    app = spawn(tmp_path, env, script, "-I")  # isolated: no site-packages, no hotdash_release
    try:
        wait_until_serving(app)
        assert app.client().get("/health").status_code == 200

        started = time.monotonic()
        app.proc.send_signal(signal.SIGTERM)
        returncode = app.proc.wait(timeout=5)
    finally:
        app.stop()

    assert returncode == 0
    assert time.monotonic() - started < 3
    assert app.stdout().splitlines()[-1] == "stopped"
    assert app.stderr() == ""


def test_module_imports_only_the_standard_library_and_psycopg():
    tree = ast.parse(APP_FILE.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "relative import"
            imported.add(node.module.split(".")[0])

    # psycopg: the database client HotDash's stand-in connects with (the platform's Python has it).
    assert imported - {"__future__", "psycopg"} <= sys.stdlib_module_names


def test_connections_that_come_while_the_app_is_busy_wait_for_it(start_app):
    """A burst of connections (the smoke test opens eight at once) waits in the listen backlog
    while the app is not accepting. socketserver's backlog of 5 dropped the rest: their SYN went
    again only after a second, and a 0.1 s smoke test took 1.1 s. Here the app is stopped
    outright (SIGSTOP) while 32 connections arrive; each must be taken at once by the kernel."""
    app = start_app()
    connections: list[socket.socket] = []
    os.kill(app.proc.pid, signal.SIGSTOP)
    try:
        for _ in range(32):
            # A dropped SYN is sent again after 1 s: 0.5 s is far more than loopback takes otherwise.
            connections.append(socket.create_connection(("127.0.0.1", app.port), timeout=0.5))
    finally:
        os.kill(app.proc.pid, signal.SIGCONT)
        for connection in connections:
            connection.close()
    assert len(connections) == 32
    assert httpx.get(f"{app.url}/health", headers={"User-Agent": CHROME}, timeout=5.0).status_code == 200
