"""A stand-in for the HotDash Shopify app, for release rehearsals on loopback.

The local rehearsal platform deploys this file as a real process (it copies it into
an image directory as ``app.py`` and runs ``python app.py``), so the release runbooks
exercise real secrets, real ports, real HTTP and real process lifecycles without Fly.io
or a Shopify store. It answers requests the way the real app (built on
``@shopify/shopify-app-react-router``) answers them without a merchant session: see
the "Shopify embedded app" table in the shared external-contracts reference.

A build can carry a deliberate defect so a rehearsal proves that the gates catch a
broken release. The defect comes from the build's ``build.json``.

The database: at start the app connects with DATABASE_URL, as HotDash does, and applies its
migrations (versions recorded in ``hotdash_schema_migrations``); /health reports the server
version, the database name and the schema version, never the URL. A database newer than this
build understands (a later build migrated it, and a rollback does not undo migrations) makes
/health answer 503: the build cannot read it. A database that cannot be reached at start is
reported in /health (``connected: false``) while the app keeps answering; the release's own
database checks are what stop a release on it.

It must stay a single file that imports only the standard library, and psycopg (the
platform's Python has it) for the database.

Environment
    PORT                 required, the TCP port to listen on
    HOST                 optional, default 127.0.0.1
    DATABASE_URL, SHOPIFY_API_KEY, SHOPIFY_API_SECRET, SHOPIFY_APP_URL, SCOPES,
    SUPABASE_URL, SUPABASE_ANON_KEY
                         required secrets; values are never printed
    HOTDASH_BUILD_INFO   optional path to {"defect": "", "version": "...", "built_at": "..."}
    HOTDASH_SLOW_SECONDS delay of the "slow" defect, default 2.5
    HOTDASH_DEGRADE_AFTER_SECONDS  when "degrades_after" and "error_logs" start, default 6

Defects: "" (good build), "health_failing", "slow", "crash_at_start", "wrong_api_key",
"hostile_content" (script and event-handler markup in bodies, a header and log lines);
"migration_incompatible" (migrates the schema to v2, renaming a column the previous build
reads, and its own dashboard query fails: the smoke test catches it, the rollback cannot undo it);
and two that pass the smoke test and go wrong later, for the post-deployment watch:
"degrades_after" (/health fails from HOTDASH_DEGRADE_AFTER_SECONDS after the start) and
"error_logs" (from then on, an error line in the log every half second).

Exit codes
    0  stopped by SIGTERM or SIGINT
    1  a required secret is missing or empty, or the port cannot be bound
    2  bad configuration: PORT, build info, unknown defect, HOTDASH_SLOW_SECONDS,
       HOTDASH_DEGRADE_AFTER_SECONDS
    3  the crash_at_start defect
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import html
import itertools
import json
import math
import os
import re
import signal
import socket
import sys
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, parse_qsl, urlencode

#: The secrets of the deployment plan; the app refuses to start without any of them.
REQUIRED_SECRETS = (
    "DATABASE_URL",
    "SHOPIFY_API_KEY",
    "SHOPIFY_API_SECRET",
    "SHOPIFY_APP_URL",
    "SCOPES",
    "SUPABASE_URL",
    "SUPABASE_ANON_KEY",
)
#: Values of build.json "defect"; "" is a good build.
DEFECTS = (
    "",
    "health_failing",
    "slow",
    "crash_at_start",
    "wrong_api_key",
    "health_malformed",
    "health_stale",
    "health_flapping",
    "hostile_content",
    "degrades_after",
    "error_logs",
    "migration_incompatible",
)
#: The defects that wait before they show: the smoke test passes, the watch must catch them.
LATE_DEFECTS = ("degrades_after", "error_logs")
DEFAULT_DEGRADE_AFTER_SECONDS = 6.0
DEFAULT_HOST = "127.0.0.1"
DEFAULT_SLOW_SECONDS = 2.5
MAX_BODY_BYTES = 1024 * 1024

APP_BRIDGE_SRC = "https://cdn.shopify.com/shopifycloud/app-bridge.js"
BOT_RESPONSE = b"<div>Handling response</div>"
#: Substrings of a User-Agent (lower-cased) that mark a bot.
BOT_MARKERS = ("curl", "python-httpx", "python-requests", "wget", "bot")
#: Routes where shopify-app-js answers bots with 410 (plus everything under /app/).
BOT_GUARDED_PATHS = ("/app", "/auth", "/auth/session-token")
FRAME_ANCESTORS = (
    "https://admin.shopify.com",
    "https://*.spin.dev",
    "https://admin.myshopify.io",
    "https://admin.shop.dev",
)
#: Headers shopify-api requires on a webhook besides the HMAC (missing -> 400).
WEBHOOK_HEADERS = (
    "X-Shopify-Topic",
    "X-Shopify-Shop-Domain",
    "X-Shopify-API-Version",
    "X-Shopify-Webhook-Id",
)

SHOP_RE = re.compile(r"[a-z0-9][a-z0-9-]*\.myshopify\.com")
ADMIN_HOST_RE = re.compile(r"admin\.shopify\.com/store/[a-z0-9][a-z0-9-]*|[a-z0-9][a-z0-9-]*\.myshopify\.com/admin")

_LOG_LOCK = threading.Lock()

#: The schema, as migrations by version. A good build knows 1; the migration_incompatible build
#: also applies 2, which renames the column every build's dashboard query reads.
MIGRATIONS = {
    1: (
        "create table hotdash_orders (id bigserial primary key, shop text not null,"
        " total_cents bigint not null default 0, created_at timestamptz not null default now())",
    ),
    2: ("alter table hotdash_orders rename column total_cents to amount_cents",),
}
SCHEMA_TABLE = "hotdash_schema_migrations"
DATABASE_CONNECT_TIMEOUT_S = 3


def schema_version_for(defect: str) -> int:
    """The newest schema this build knows: it migrates up to it and reads nothing newer."""
    return 2 if defect == "migration_incompatible" else 1


class StartupError(Exception):
    """The app cannot start; the message is safe to print (names, never values)."""

    def __init__(self, message: str, *, exit_code: int) -> None:
        self.exit_code = exit_code
        super().__init__(message)


@dataclass(frozen=True)
class Config:
    """What the app runs with. ``api_key`` is the key the app shows (the defect may change it)."""

    host: str
    port: int
    api_key: str
    api_secret: str = field(repr=False)
    defect: str = ""
    version: str = "unknown"
    slow_seconds: float = 0.0
    degrade_after_s: float = DEFAULT_DEGRADE_AFTER_SECONDS
    database_url: str = field(default="", repr=False)
    database: object = field(default=None, repr=False, compare=False)  # a Database once run() connects
    started: float = field(default_factory=time.monotonic)

    def degraded(self) -> bool:
        """A late defect shows from degrade_after_s after the start."""
        return self.defect in LATE_DEFECTS and time.monotonic() - self.started >= self.degrade_after_s


@dataclass(frozen=True)
class Request:
    method: str  # HEAD is routed as GET
    path: str
    query: str
    user_agent: str
    headers: object  # email.message.Message: case-insensitive .get()
    body: bytes

    def param(self, name: str) -> str | None:
        values = parse_qs(self.query, keep_blank_values=True).get(name)
        return values[0] if values else None


@dataclass
class Response:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)


# --- configuration -----------------------------------------------------------------


def load_config(environ) -> Config:
    """Read the environment and build info; raise StartupError when the app must not start."""
    build = read_build_info(environ.get("HOTDASH_BUILD_INFO", ""))
    defect = build["defect"]
    port = parse_port(environ.get("PORT"))
    missing = [name for name in REQUIRED_SECRETS if not environ.get(name, "").strip()]
    if missing:
        raise StartupError("missing required secret(s): " + ", ".join(missing), exit_code=1)
    slow = parse_slow_seconds(environ.get("HOTDASH_SLOW_SECONDS")) if defect == "slow" else 0.0
    degrade_after = parse_seconds(
        environ.get("HOTDASH_DEGRADE_AFTER_SECONDS"), "HOTDASH_DEGRADE_AFTER_SECONDS", DEFAULT_DEGRADE_AFTER_SECONDS
    )
    return Config(
        host=environ.get("HOST") or DEFAULT_HOST,
        port=port,
        api_key=effective_api_key(environ["SHOPIFY_API_KEY"], defect),
        api_secret=environ["SHOPIFY_API_SECRET"],
        defect=defect,
        version=build["version"],
        slow_seconds=slow,
        degrade_after_s=degrade_after,
        database_url=environ["DATABASE_URL"],
    )


def read_build_info(path: str) -> dict:
    """Return {"defect", "version"} from build.json; no path means a good build."""
    if not path:
        return {"defect": "", "version": "unknown"}
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except (OSError, ValueError) as exc:
        raise StartupError(f"cannot read build info {path}: {exc}", exit_code=2) from exc
    if not isinstance(data, dict):
        raise StartupError(f"build info {path} is not a JSON object", exit_code=2)
    defect = data.get("defect") or ""
    if defect not in DEFECTS:
        allowed = ", ".join(repr(d) for d in DEFECTS)
        raise StartupError(
            f"unknown defect {defect!r} in build info {path} (expected one of {allowed})",
            exit_code=2,
        )
    return {"defect": defect, "version": str(data.get("version") or "unknown")}


def parse_port(value: str | None) -> int:
    try:
        port = int(value or "")
    except ValueError:
        raise StartupError(f"PORT must be an integer, got {value!r}", exit_code=2) from None
    if not 0 <= port <= 65535:
        raise StartupError(f"PORT must be between 0 and 65535, got {port}", exit_code=2)
    return port


def parse_slow_seconds(value: str | None) -> float:
    return parse_seconds(value, "HOTDASH_SLOW_SECONDS", DEFAULT_SLOW_SECONDS)


def parse_seconds(value: str | None, name: str, default: float) -> float:
    if not value:
        return default
    try:
        seconds = float(value)
    except ValueError:
        seconds = -1.0
    if not (math.isfinite(seconds) and seconds >= 0):
        raise StartupError(f"{name} must be a finite number >= 0, got {value!r}", exit_code=2)
    return seconds


def effective_api_key(configured: str, defect: str) -> str:
    """The key the app shows: the configured one, or a different one for wrong_api_key."""
    if defect != "wrong_api_key":
        return configured
    wrong = configured[::-1]
    if wrong == configured:
        wrong = "0" * 32 if configured != "0" * 32 else "1" * 32
    return wrong


# --- small helpers -------------------------------------------------------------------


def utc_timestamp() -> str:
    """Now as ISO 8601 UTC with milliseconds and Z, like JavaScript's toISOString()."""
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def is_bot(user_agent: str) -> bool:
    agent = user_agent.lower()
    return any(marker in agent for marker in BOT_MARKERS)


def is_bot_guarded(path: str) -> bool:
    return path in BOT_GUARDED_PATHS or path.startswith("/app/")


def is_valid_shop(value: str | None) -> bool:
    return value is not None and SHOP_RE.fullmatch(value) is not None


def normalize_shop(raw: str) -> str | None:
    """The login input ("x", "x.myshopify.com", "https://x.myshopify.com/") as a shop domain."""
    shop = raw.strip().lower()
    shop = re.sub(r"^https?://", "", shop).rstrip("/")
    if "." not in shop:
        shop += ".myshopify.com"
    return shop if is_valid_shop(shop) else None


def store_handle(shop: str) -> str:
    return shop[: -len(".myshopify.com")]


def decode_host(value: str | None) -> str | None:
    """The admin host carried base64-encoded in ?host=, or None when it is not one."""
    if not value:
        return None
    padded = value + "=" * (-len(value) % 4)
    try:
        raw = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
        decoded = raw.decode("ascii")
    except (binascii.Error, ValueError):
        return None
    return decoded if ADMIN_HOST_RE.fullmatch(decoded) else None


def webhook_signature(secret: str, body: bytes) -> str:
    """Base64 HMAC-SHA256 of the raw body, as Shopify sends in X-Shopify-Hmac-Sha256."""
    digest = hmac.new(secret.encode("utf-8"), body, hashlib.sha256).digest()
    return base64.b64encode(digest).decode("ascii")


def frame_ancestors(shop: str) -> str:
    return "frame-ancestors " + " ".join((f"https://{shop}",) + FRAME_ANCESTORS) + ";"


# --- the database ------------------------------------------------------------------------


#: PostgreSQL's error codes the app tells apart (SQLSTATE), in words.
SQLSTATE_WORDS = {
    "28P01": "authentication failed",
    "28000": "authentication failed",
    "3D000": "the database does not exist",
    "42501": "permission denied",
    "42703": "a column the query reads does not exist",
    "42P01": "a table the query reads does not exist",
}


def describe_database_error(exc: BaseException) -> str:
    """What went wrong, in words that name no host, user or password (the URL is a secret)."""
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate in SQLSTATE_WORDS:
        return SQLSTATE_WORDS[sqlstate]
    text = str(exc).lower()
    for needle, words in (
        ("password authentication failed", "authentication failed"),
        ("connection refused", "connection refused"),
        ("timeout", "timed out"),
        ("could not translate host name", "host name not found"),
        ("invalid dsn", "DATABASE_URL is not a connection URL"),
        ("missing", "DATABASE_URL is not a connection URL"),
    ):
        if needle in text:
            return words
    return type(exc).__name__ + (f" (SQLSTATE {sqlstate})" if sqlstate else "")


class Database:
    """The app's one connection; thread-safe (psycopg serialises its use), autocommit."""

    def __init__(self, url: str, known_version: int) -> None:
        self.url = url
        self.known_version = known_version
        self.conn = None
        self.error = ""
        self.server_version = ""
        self.name = ""

    def connect_and_migrate(self) -> None:
        """Connect, then bring the schema up to the build's version (never down)."""
        try:
            import psycopg

            self.conn = psycopg.connect(self.url, autocommit=True, connect_timeout=DATABASE_CONNECT_TIMEOUT_S)
            self.server_version = self.conn.info.parameter_status("server_version") or ""
            self.name = self.conn.info.dbname
            self._migrate()
        except Exception as exc:  # any failure: reported, never a crash or a leaked URL
            self.error = describe_database_error(exc)
            log_line(f"database unavailable: {self.error}")
            return
        log_line(
            f"database: PostgreSQL {self.server_version}, database {self.name}, "
            f"schema v{self.schema_version()} (this build reads up to v{self.known_version})"
        )

    def _migrate(self) -> None:
        with self.conn.transaction():
            # One migrator at a time, whatever else connects.
            self.conn.execute("select pg_advisory_xact_lock(727274)")
            self.conn.execute(
                f"create table if not exists {SCHEMA_TABLE} (version integer primary key,"
                " applied_at timestamptz not null default now(), build text not null)"
            )
            current = self.schema_version()
            for version in range(current + 1, self.known_version + 1):
                for statement in MIGRATIONS[version]:
                    self.conn.execute(statement)
                self.conn.execute(f"insert into {SCHEMA_TABLE} (version, build) values (%s, %s)", (version, "standin"))
                log_line(f"database: applied migration v{version}")

    def schema_version(self) -> int:
        row = self.conn.execute(f"select coalesce(max(version), 0) from {SCHEMA_TABLE}").fetchone()
        return int(row[0])

    def report(self) -> dict:
        """What /health says: names and versions only. ``ok`` False when the build cannot read it."""
        if self.conn is None:
            return {"connected": False, "ok": True, "error": self.error}
        try:
            version = self.schema_version()
        except Exception as exc:
            return {"connected": False, "ok": True, "error": describe_database_error(exc)}
        report = {
            "connected": True,
            "ok": version <= self.known_version,
            "server_version": self.server_version,
            "database": self.name,
            "schema_version": version,
            "build_schema_version": self.known_version,
        }
        if not report["ok"]:
            report["error"] = (
                f"schema v{version} is newer than this build reads (v{self.known_version}): "
                "a later build migrated it, and migrations are not undone by a rollback"
            )
        return report

    def dashboard_totals(self) -> tuple[int, int] | None:
        """What the dashboard shows: orders and revenue. Raises when the schema lacks the column."""
        if self.conn is None:
            return None
        row = self.conn.execute("select count(*), coalesce(sum(total_cents), 0) from hotdash_orders").fetchone()
        return int(row[0]), int(row[1])


# --- responses -------------------------------------------------------------------------


def html_response(markup: str, *, shop: str | None = None) -> Response:
    """A rendered 200 page; it may be framed by the admin only when the URL names a valid shop."""
    headers = [("Content-Type", "text/html; charset=utf-8")]
    if is_valid_shop(shop):
        headers.append(("Content-Security-Policy", frame_ancestors(shop)))
    return Response(200, markup.encode("utf-8"), headers)


def json_response(status: int, payload: dict) -> Response:
    body = json.dumps(payload, separators=(",", ":")).encode("utf-8")
    headers = [("Content-Type", "application/json"), ("Cache-Control", "no-store")]
    return Response(status, body, headers)


def text_response(status: int, text: str) -> Response:
    return Response(status, text.encode("utf-8"), [("Content-Type", "text/plain; charset=utf-8")])


def redirect(location: str) -> Response:
    return Response(302, b"", [("Location", location)])


def bot_refusal() -> Response:
    return Response(410, BOT_RESPONSE, [("Content-Type", "text/html; charset=utf-8")])


# --- pages ---------------------------------------------------------------------------


def app_bridge_tag(api_key: str) -> str:
    return f'<script src="{APP_BRIDGE_SRC}" data-api-key="{html.escape(api_key)}"></script>'


def page(title: str, head: str, body: str) -> str:
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n'
        f'<head><meta charset="utf-8"><title>{title}</title>{head}</head>\n'
        f"<body>\n{body}\n</body>\n"
        "</html>\n"
    )


def login_form(error: str = "") -> str:
    message = f'<p class="error">{html.escape(error)}</p>\n' if error else ""
    return (
        f"{message}"
        '<form method="post" action="/auth/login">\n'
        '<label>Shop domain <input type="text" name="shop" '
        'placeholder="example.myshopify.com" autocomplete="on"></label>\n'
        '<button type="submit">Log in</button>\n'
        "</form>"
    )


def landing_page() -> str:
    body = "<h1>HotDash</h1>\n<p>Sales and inventory dashboard for your Shopify store.</p>\n"
    return page("HotDash", "", body + login_form())


def login_page(error: str = "") -> str:
    return page("Log in - HotDash", "", "<h1>Log in</h1>\n" + login_form(error))


def app_bridge_page(api_key: str) -> str:
    body = "<h1>HotDash dashboard</h1>\n<p>Sales, inventory and orders at a glance.</p>"
    return page("HotDash", app_bridge_tag(api_key), body)


# --- routes --------------------------------------------------------------------------


#: /health requests answered so far: the flapping defect fails every odd-numbered one.
_health_requests = itertools.count(1)
#: How old the stale defect's timestamp is: a cached or stuck answer.
STALE_HEALTH_AGE = timedelta(hours=1)


def health(config: Config, request: Request) -> Response:
    database = config.database.report() if config.database is not None else None
    if database is not None and not database["ok"]:
        return json_response(503, {"status": "error", "timestamp": utc_timestamp(), "database": database})
    response = health_answer(config)
    if database is not None and response.status == 200 and config.defect != "health_malformed":
        payload = json.loads(response.body)
        response = json_response(200, {**payload, "database": database})
    return response


def health_answer(config: Config) -> Response:
    if config.defect == "degrades_after" and config.degraded():
        return json_response(503, {"status": "degraded", "timestamp": utc_timestamp()})
    if config.defect == "health_failing":
        return json_response(500, {"status": "error", "timestamp": utc_timestamp()})
    if config.defect == "health_flapping" and next(_health_requests) % 2 == 1:
        return json_response(503, {"status": "error", "timestamp": utc_timestamp()})
    if config.defect == "health_malformed":
        return Response(
            200,
            b'{"status": "ok", "timestamp": ',
            [("Content-Type", "application/json"), ("Cache-Control", "no-store")],
        )
    if config.defect == "health_stale":
        stale = (datetime.now(UTC) - STALE_HEALTH_AGE).isoformat(timespec="milliseconds")
        return json_response(200, {"status": "ok", "timestamp": stale.replace("+00:00", "Z")})
    return json_response(200, {"status": "ok", "timestamp": utc_timestamp()})


def landing(config: Config, request: Request) -> Response:
    if request.param("shop"):
        query = urlencode(parse_qsl(request.query, keep_blank_values=True))
        return redirect(f"/app?{query}")
    return html_response(landing_page())


def login(config: Config, request: Request) -> Response:
    shop = request.param("shop")
    if shop is None and request.method == "POST":
        form = parse_qs(request.body.decode("utf-8", "replace"), keep_blank_values=True)
        shop = (form.get("shop") or [None])[0]
    if shop is None:
        return html_response(login_page())
    if not shop.strip():
        return html_response(login_page("Please enter your shop domain to log in"))
    normalized = normalize_shop(shop)
    if normalized is None:
        return html_response(login_page("Please enter a valid shop domain to log in"))
    store = store_handle(normalized)
    return redirect(f"https://admin.shopify.com/store/{store}/oauth/install?client_id={config.api_key}")


def app(config: Config, request: Request) -> Response:
    shop, host = request.param("shop"), request.param("host")
    if shop is None and host is None:
        try:
            if config.database is not None:
                config.database.dashboard_totals()
        except Exception as exc:
            log_line(f"ERROR dashboard query failed: {describe_database_error(exc)}: {exc.__class__.__name__}")
            return text_response(500, "Internal Server Error\n")
        return html_response(app_bridge_page(config.api_key))
    admin_host = decode_host(host)
    if not is_valid_shop(shop) or admin_host is None:
        return redirect("/auth/login")
    if request.param("embedded") == "1":
        return redirect(bounce_location(request))
    return redirect(f"https://{admin_host}/apps/{config.api_key}")


def bounce_location(request: Request) -> str:
    """Where an embedded request without a session token goes to fetch one."""
    pairs = parse_qsl(request.query, keep_blank_values=True)
    params = [(name, value) for name, value in pairs if name != "id_token"]
    reload_path = f"{request.path}?{urlencode(params)}"
    return "/auth/session-token?" + urlencode(params + [("shopify-reload", reload_path)])


def auth(config: Config, request: Request) -> Response:
    shop = request.param("shop")
    if not is_valid_shop(shop):
        return redirect("/auth/login")
    return html_response(app_bridge_page(config.api_key), shop=shop)


def session_token(config: Config, request: Request) -> Response:
    return html_response(app_bridge_tag(config.api_key), shop=request.param("shop"))


def webhook(config: Config, request: Request) -> Response:
    if request.method != "POST":
        return Response(400)
    received = request.headers.get("X-Shopify-Hmac-Sha256")
    if not received:
        return Response(400)
    expected = webhook_signature(config.api_secret, request.body)
    if not hmac.compare_digest(expected.encode("ascii"), received.encode("latin-1")):
        return Response(401)
    if any(not request.headers.get(name) for name in WEBHOOK_HEADERS):
        return Response(400)
    return Response(200)


ROUTES = {
    ("GET", "/health"): health,
    ("GET", "/"): landing,
    ("GET", "/auth/login"): login,
    ("POST", "/auth/login"): login,
    ("GET", "/app"): app,
    ("GET", "/auth"): auth,
    ("GET", "/auth/session-token"): session_token,
}


#: What the hostile_content defect answers with: markup that would run if an archive page
#: rendered it live. Each payload sets window.__pwned and the page title (see htmlexport.py).
HOSTILE_SCRIPT = "<script>window.__pwned='script';document.title='PWNED'</script>"
HOSTILE_IMG = "<img src=x onerror=\"window.__pwned='img';document.title='PWNED'\">"
HOSTILE_SVG = "<svg onload=\"window.__pwned='svg';document.title='PWNED'\">"


def with_hostile_content(response: Response) -> Response:
    """Payloads in the body, the CSP header and the JSON, where checks do not look but evidence does."""
    headers = [
        (name, f"{HOSTILE_SVG} {value}" if name == "Content-Security-Policy" else value)
        for name, value in response.headers
    ]
    if ("Content-Type", "application/json") in headers:
        body = json.dumps({"note": HOSTILE_SCRIPT, **json.loads(response.body)}).encode("utf-8")
    else:
        body = (HOSTILE_IMG + HOSTILE_SCRIPT).encode("utf-8") + response.body
    return Response(response.status, body, headers)


def route(config: Config, request: Request) -> Response:
    """The response the real app would give this request without a merchant session."""
    response = route_request(config, request)
    return with_hostile_content(response) if config.defect == "hostile_content" else response


def route_request(config: Config, request: Request) -> Response:
    if request.path.startswith("/webhooks/"):
        return webhook(config, request)
    if is_bot_guarded(request.path) and is_bot(request.user_agent):
        return bot_refusal()
    path = "/app" if request.path.startswith("/app/") else request.path
    handler = ROUTES.get((request.method, path))
    if handler is None:
        return text_response(404, "Not Found\n")
    return handler(config, request)


# --- HTTP server -----------------------------------------------------------------------


def log_line(line: str) -> None:
    with _LOG_LOCK:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()


class StandinHandler(BaseHTTPRequestHandler):
    """Reads a request, sleeps for the slow defect, writes what route() decided, logs one line."""

    server_version = "HotDashStandin/1"

    def version_string(self) -> str:
        return self.server_version

    def parse_request(self) -> bool:
        self._started = time.monotonic()
        return super().parse_request()

    def do_GET(self) -> None:
        self._handle()

    do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = do_OPTIONS = do_GET

    def _handle(self) -> None:
        body = self._read_body()
        if body is None:
            return
        config: Config = self.server.config
        if config.slow_seconds:
            time.sleep(config.slow_seconds)
        path, _, query = self.path.partition("?")
        request = Request(
            method="GET" if self.command == "HEAD" else self.command,
            path=path,
            query=query,
            user_agent=self.headers.get("User-Agent", ""),
            headers=self.headers,
            body=body,
        )
        self._write(route(config, request))

    def _read_body(self) -> bytes | None:
        length = self.headers.get("Content-Length")
        if not length:
            return b""
        try:
            size = int(length)
        except ValueError:
            size = -1
        if size < 0:
            self._write(text_response(400, "Bad Content-Length\n"))
            return None
        if size > MAX_BODY_BYTES:
            self._write(text_response(413, "Payload Too Large\n"))
            return None
        return self.rfile.read(size)

    def _write(self, response: Response) -> None:
        self.send_response(response.status)
        for name, value in response.headers:
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)

    def log_request(self, code="-", size="-") -> None:
        # Called by send_response, also for errors http.server answers itself.
        started = getattr(self, "_started", time.monotonic())
        millis = (time.monotonic() - started) * 1000
        path = (getattr(self, "path", "") or "-").split("?", 1)[0].split("#", 1)[0]
        status = int(code) if isinstance(code, int) else code
        log_line(f"{utc_timestamp()} {self.command or '-'} {path} {status} {millis:.1f}ms")

    def log_message(self, format, *args) -> None:
        pass  # silence the default stderr access log


class StandinServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver listens with a backlog of 5: the smoke test's eight concurrent connections
    # overflowed it whenever the app was slow to accept, and a dropped SYN is sent again only
    # after a second (smoke tests of 0.1 s took 1.1 s, and recorded that latency).
    request_queue_size = socket.SOMAXCONN

    def __init__(self, config: Config) -> None:
        self.config = config
        super().__init__((config.host, config.port), StandinHandler)

    def handle_error(self, request, client_address) -> None:
        exc = sys.exc_info()[1]
        print(f"error handling a request: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)


def stop_on_signals(server: StandinServer) -> None:
    """SIGTERM and SIGINT stop serve_forever; shutdown() must run outside the serving thread."""

    def stop(signum, frame) -> None:
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)


def run(environ) -> int:
    """Start, serve until a stop signal, and return the exit code."""
    try:
        config = load_config(environ)
    except StartupError as exc:
        print(f"hotdash standin: {exc}", file=sys.stderr, flush=True)
        return exc.exit_code
    if config.defect == "crash_at_start":
        print("fatal: boot failed (rehearsal defect crash_at_start)", file=sys.stderr, flush=True)
        return 3
    database = Database(config.database_url, schema_version_for(config.defect))
    database.connect_and_migrate()
    # The late defects count from when the app serves, not from before its migrations.
    config = replace(config, database=database, started=time.monotonic())
    try:
        server = StandinServer(config)
    except OSError as exc:
        print(
            f"hotdash standin: cannot listen on {config.host}:{config.port}: {exc.strerror or exc}",
            file=sys.stderr,
            flush=True,
        )
        return 1
    stop_on_signals(server)
    host, port = server.server_address[:2]
    defect = config.defect or "none"
    log_line(f"listening on http://{host}:{port} (build {config.version}, defect {defect})")
    if config.defect == "hostile_content":
        log_line(f"{HOSTILE_SCRIPT} {HOSTILE_IMG} request from {HOSTILE_SVG}")
    if config.defect == "error_logs":
        threading.Thread(target=log_errors_when_degraded, args=(config,), daemon=True).start()
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
    log_line("stopped")
    return 0


def log_errors_when_degraded(config: Config) -> None:
    """The error_logs defect: the app keeps answering, but its log fills with errors."""
    time.sleep(config.degrade_after_s)
    while True:
        log_line("ERROR unhandled exception in GET /app/orders: KeyError 'shop' (rehearsal defect error_logs)")
        time.sleep(0.5)


def main() -> None:
    sys.exit(run(os.environ))


if __name__ == "__main__":
    main()
