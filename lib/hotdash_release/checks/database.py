"""Is the app's database there, and which one is it? The checklist's "Database connected".

HotDash keeps its data in Supabase's PostgreSQL, reached with the DATABASE_URL secret. This
connects with that URL (psycopg, read only: nothing is written), runs ``select 1`` and
records the server version, the round-trip latency, the schema version the app's
migrations recorded, and the database's identity: the cluster's system identifier
(``pg_control_system()``, unique per initdb) with the database name. Two URLs that differ
as text but reach one database have one identity, which is what `must_differ` must catch.

Like the other checks it returns a result row and never raises. The URL is a secret: a
result names the secret (``DATABASE_URL``, ``PRODUCTION_DATABASE_URL``), never its value,
host, user or password, and every text still passes the caller's redactor.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass

from ..secrets.redact import Redactor

#: Where the app records its migrations (the stand-in app's SCHEMA_TABLE; HotDash's migrator).
SCHEMA_TABLE = "hotdash_schema_migrations"
#: libpq's sslmode values a Fly release may use: TLS required ("disable" only for a test
#: world whose loopback server has no TLS; the record shows which was used).
SSLMODES = ("require", "verify-ca", "verify-full", "disable")
DEFAULT_CONNECT_TIMEOUT_S = 5

#: PostgreSQL error codes (SQLSTATE) told apart, in words.
_SQLSTATE_WORDS = {
    "28P01": "wrong password (authentication failed)",
    "28000": "authentication failed",
    "3D000": "the database it names does not exist",
    "42501": "permission denied",
    "53300": "too many connections",
    "57P03": "the server is starting up or shutting down",
}


@dataclass(frozen=True)
class DatabaseResult:
    """One connection to one app's database."""

    app: str
    secret: str  # the name the URL came from, never its value
    ok: bool
    detail: str
    database: str = ""
    server_version: str = ""
    latency_ms: float | None = None  # select 1, round trip, on an open connection
    schema_version: int | None = None  # 0: no migrations recorded; None: not read
    system_identifier: str = ""
    sslmode: str = ""

    @property
    def identity(self) -> tuple[str, str] | None:
        """(system identifier, database name): equal for two URLs reaching one database."""
        return (self.system_identifier, self.database) if self.system_identifier and self.database else None

    def as_row(self) -> dict:
        return asdict(self)


def check_database(
    url: str,
    *,
    app: str,
    secret: str = "DATABASE_URL",
    sslmode: str | None = None,
    connect_timeout_s: int = DEFAULT_CONNECT_TIMEOUT_S,
    redactor: Redactor | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> DatabaseResult:
    """Connect with ``url`` (``sslmode`` overrides the URL's), ``select 1``, identify, read the schema version."""
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    hide = (redactor or Redactor.empty()).redact
    if sslmode is not None and sslmode not in SSLMODES:
        return DatabaseResult(app, secret, False, f"sslmode {sslmode!r} is not allowed; allowed: {', '.join(SSLMODES)}")
    if not url.strip():
        return DatabaseResult(app, secret, False, f"{secret} is empty")
    try:
        params = conninfo_to_dict(url)
    except psycopg.Error:
        # psycopg's message quotes the text: say only what is wrong with it.
        return DatabaseResult(app, secret, False, f"{secret} is not a PostgreSQL connection URL")
    if not params.get("dbname"):
        return DatabaseResult(
            app, secret, False, f"{secret} names no database (postgresql://USER:PASSWORD@HOST:PORT/DATABASE)"
        )
    overrides = {"connect_timeout": max(2, int(connect_timeout_s)), "application_name": "hotdash-release-check"}
    if sslmode is not None:
        overrides["sslmode"] = sslmode
    try:
        with psycopg.connect(url, autocommit=True, **overrides) as conn:
            conn.read_only = True
            started = clock()
            conn.execute("select 1").fetchone()
            latency_ms = round((clock() - started) * 1000, 2)
            identifier = conn.execute("select system_identifier from pg_control_system()").fetchone()[0]
            schema = _schema_version(conn)
            used_ssl = conn.pgconn.ssl_in_use
            result = DatabaseResult(
                app,
                secret,
                True,
                "",
                database=conn.info.dbname,
                server_version=conn.info.parameter_status("server_version") or "",
                latency_ms=latency_ms,
                schema_version=schema,
                system_identifier=str(identifier),
                sslmode=(sslmode or params.get("sslmode") or "default") + (" (TLS)" if used_ssl else " (no TLS)"),
            )
    except psycopg.Error as exc:
        return DatabaseResult(app, secret, False, hide(f"{secret}: cannot use the database: {describe_error(exc)}"))
    schema_text = f"schema v{schema}" if schema else "schema v0 (no migrations recorded)"
    detail = (
        f"{secret}: PostgreSQL {result.server_version}, database {result.database}, {schema_text}, "
        f"select 1 in {latency_ms:g} ms"
    )
    return DatabaseResult(**{**asdict(result), "detail": hide(detail)})


def schema_version(url: str, *, sslmode: str | None = None) -> int | None:
    """The schema version the app's migrations recorded, or None when it cannot be read."""
    result = check_database(url, app="", sslmode=sslmode, connect_timeout_s=2)
    return result.schema_version if result.ok else None


def _schema_version(conn) -> int:
    if conn.execute("select to_regclass(%s)", (SCHEMA_TABLE,)).fetchone()[0] is None:
        return 0
    row = conn.execute(f"select max(version) from {SCHEMA_TABLE}").fetchone()
    return 0 if row[0] is None else int(row[0])


def describe_error(exc: BaseException) -> str:
    """What went wrong, in words that quote nothing of the URL (psycopg's messages name the
    host, the port and the user)."""
    sqlstate = getattr(exc, "sqlstate", None)
    if sqlstate in _SQLSTATE_WORDS:
        return _SQLSTATE_WORDS[sqlstate]
    text = str(exc).lower()
    for needle, words in (
        ("password authentication failed", "wrong password (authentication failed)"),
        ("permission denied for database", "permission denied (this user may not connect to that database)"),
        ("does not exist", "the database it names does not exist"),
        ("no password supplied", "no password given"),
        ("connection refused", "unreachable (connection refused)"),
        ("timeout expired", "unreachable (timed out)"),
        ("could not translate host name", "unreachable (host name not found)"),
        ("server does not support ssl", "the server does not offer TLS, which this target requires"),
        ("ssl", "TLS handshake failed"),
    ):
        if needle in text:
            return words
    return type(exc).__name__ + (f" (SQLSTATE {sqlstate})" if sqlstate else "")
