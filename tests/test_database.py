"""The rehearsal database (targets/database.py) and the database check (checks/database.py),
against a real PostgreSQL server on loopback: one per module, shared by its tests."""

from __future__ import annotations

import os
import pwd
import re
import socket
import stat
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import wait_for

from hotdash_release.checks.database import SCHEMA_TABLE, check_database
from hotdash_release.secrets.required import same_databases
from hotdash_release.targets import standin_app
from hotdash_release.targets.database import RehearsalDatabase
from hotdash_release.targets.local import LocalPlatform

STAGING, PRODUCTION = "hotdash-staging", "hotdash-production"
BROWSER = {"User-Agent": "Mozilla/5.0 (X11; Linux x86_64) Chrome/126.0 Safari/537.36"}


@pytest.fixture(scope="module")
def platform(tmp_path_factory):
    state = tmp_path_factory.mktemp("db-platform")
    platform = LocalPlatform(state)
    urls = {app: platform.provision_database(app) for app in (STAGING, PRODUCTION)}
    for app, url in urls.items():
        platform.set_secrets(app, {"DATABASE_URL": url})
    yield platform
    platform.stop()


def url_of(platform, app: str) -> str:
    return platform.secret_values(app)["DATABASE_URL"]


def password_of(url: str) -> str:
    return urlsplit(url).password


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]  # closed again when the probe is


def test_the_check_reports_server_version_schema_latency_and_identity(platform):
    result = check_database(url_of(platform, STAGING), app=STAGING)
    assert result.ok, result.detail
    assert result.server_version.startswith("18.") and result.database == "hotdash_staging"
    assert result.schema_version == 0  # nothing migrated it yet
    assert result.latency_ms is not None and result.latency_ms >= 0
    assert re.fullmatch(r"\d+", result.system_identifier)
    assert result.detail.startswith("DATABASE_URL: PostgreSQL 18.") and "schema v0" in result.detail
    assert password_of(url_of(platform, STAGING)) not in repr(result)


def bad_urls(platform) -> dict[str, tuple[str, str]]:
    """Each bad input: the URL, and the words its one line must say."""
    good = url_of(platform, STAGING)
    parts = urlsplit(good)
    return {
        "unreachable": (good.replace(f":{parts.port}/", f":{closed_port()}/"), "unreachable (connection refused)"),
        "wrong password": (good.replace(parts.password, "not-the-password-9f8e"), "wrong password"),
        "no database name": (good[: good.rindex("/")], "names no database"),
        "not a URL": (f"host=127.0.0.1 port={parts.port} dbname", "is not a PostgreSQL connection URL"),
        "no such database": (good[: good.rindex("/")] + "/hotdash_nowhere", "does not exist"),
    }


@pytest.mark.parametrize("case", ["unreachable", "wrong password", "no database name", "not a URL", "no such database"])
def test_bad_input_is_one_line_naming_the_secret_never_its_value(platform, case):
    url, words = bad_urls(platform)[case]
    result = check_database(url, app=PRODUCTION, secret="PRODUCTION_DATABASE_URL", connect_timeout_s=2)
    assert not result.ok
    assert "\n" not in result.detail and words in result.detail, result.detail
    assert result.detail.startswith("PRODUCTION_DATABASE_URL")
    # Nothing of the URL: not the value, its password, its host and port, or its user.
    parts = urlsplit(url_of(platform, STAGING))
    for fragment in (url, parts.password, f"{parts.port}", "hotdash_staging", "127.0.0.1"):
        assert fragment not in result.detail, fragment


def test_tls_required_against_a_server_without_tls_fails_in_words(platform):
    result = check_database(url_of(platform, STAGING), app=STAGING, sslmode="require")
    assert not result.ok
    assert (
        result.detail
        == "DATABASE_URL: cannot use the database: the server does not offer TLS, which this target requires"
    )


def test_fly_requires_tls_for_the_database_check_unless_configured():
    from hotdash_release.config import load_config
    from hotdash_release.paths import RUNBOOKS_DIR

    assert load_config(RUNBOOKS_DIR / "hotdash.toml").target_settings("fly").database_sslmode == "require"


def test_two_urls_reaching_one_database_have_one_identity(platform):
    url = url_of(platform, STAGING)
    other_text = url.replace("@127.0.0.1:", "@localhost:") + "?application_name=hotdash"
    assert other_text != url
    staging = check_database(url, app=STAGING)
    shared = check_database(other_text, app=PRODUCTION)
    production = check_database(url_of(platform, PRODUCTION), app=PRODUCTION)
    assert staging.identity == shared.identity != production.identity
    assert staging.identity[0] == production.identity[0]  # one server, two databases
    assert same_databases([staging, production]) == []
    [line] = same_databases([staging, shared])
    assert line.startswith(f"DATABASE_URL on {STAGING} and {PRODUCTION} reaches one database (hotdash_staging")
    unreachable = check_database(bad_urls(platform)["unreachable"][0], app=PRODUCTION)
    assert same_databases([staging, unreachable]) == [
        f"DATABASE_URL on {PRODUCTION}: cannot tell which database it reaches ({unreachable.detail})"
    ]


def test_staging_credentials_do_not_open_production_database(platform):
    staging = url_of(platform, STAGING)
    crossed = staging[: staging.rindex("/")] + "/hotdash_production"
    result = check_database(crossed, app=STAGING)
    assert result.detail == (
        "DATABASE_URL: cannot use the database: permission denied (this user may not connect to that database)"
    )


def test_the_server_starts_once_and_keeps_its_port_across_a_stop(platform):
    database = platform.database
    first = database.ensure_running()
    assert not first.started  # the fixture started it: reused, not started again
    assert platform.stop() == ["postgres"] and not database.running()
    again = database.ensure_running()
    assert again.started and again.port == first.port  # the apps' URLs still hold
    assert check_database(url_of(platform, STAGING), app=STAGING).ok


def test_a_new_state_copies_the_pristine_cluster_and_gets_its_own_superuser_password(platform):
    import json

    import psycopg

    from hotdash_release.targets.database import _template_cluster

    _, template_password = _template_cluster()
    own = json.loads((platform.state_dir / "secrets" / "postgres.json").read_text())
    assert own == {"user": "postgres", "password": own["password"]} and own["password"] != template_password
    port = platform.database.ensure_running().port
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(host="127.0.0.1", port=port, user="postgres", password=template_password, dbname="postgres")


@pytest.mark.skipif(os.geteuid() != 0, reason="the root path: PostgreSQL refuses to run as root")
def test_as_root_the_server_runs_unprivileged_and_nothing_on_the_machine_changes(tmp_path):
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    before = {p: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path, *tmp_path.parents)}
    users_before = {entry.pw_name for entry in pwd.getpwall()}
    database = RehearsalDatabase(state)
    try:
        database.ensure_running()
        pid = int((database.data_dir / "postmaster.pid").read_text().split()[0])
        # Inside its user namespace the server is nobody; outside, its files stay root's.
        inside = (database.data_dir / "PG_VERSION").stat()
        assert inside.st_uid == 0 and stat.S_IMODE(database.data_dir.stat().st_mode) == 0o700
        assert os.readlink(f"/proc/{pid}/ns/user") != os.readlink("/proc/self/ns/user")
    finally:
        database.stop()
    assert {p: stat.S_IMODE(p.stat().st_mode) for p in before} == before  # no folder opened up
    assert {entry.pw_name for entry in pwd.getpwall()} == users_before  # no user added
    secrets = state / "secrets" / "postgres.json"
    assert stat.S_IMODE(secrets.stat().st_mode) == 0o600


def test_the_standin_migrates_reports_and_refuses_a_schema_newer_than_it_reads(platform):
    """A good build migrates to v1; the migration_incompatible build to v2; the good image
    redeployed then cannot read the database: its /health answers 503 and says why."""
    app = STAGING
    platform.set_secrets(app, {**_standin_secrets(), "DATABASE_URL": url_of(platform, app)})
    good = platform.deploy(app, wait_timeout_s=10)
    with httpx.Client(base_url=platform.url(app), headers=BROWSER) as client:
        health = client.get("/health").json()
        assert health["database"] == {
            "connected": True,
            "ok": True,
            "server_version": health["database"]["server_version"],
            "database": "hotdash_staging",
            "schema_version": 1,
            "build_schema_version": 1,
        }
        assert client.get("/app").status_code == 200  # the dashboard reads the v1 schema
        platform.deploy(app, build_args={"HOTDASH_DEFECT": "migration_incompatible"}, wait_timeout_s=10)
        assert client.get("/health").json()["database"]["schema_version"] == 2
        assert client.get("/app").status_code == 500  # its own dashboard query fails
        assert check_database(url_of(platform, app), app=app).schema_version == 2
        with pytest.raises(Exception, match="did not pass GET /health"):
            platform.rollback(app, to=good, wait_timeout_s=2)
        answer = client.get("/health")
        assert answer.status_code == 503
        assert answer.json()["database"]["error"] == (
            "schema v2 is newer than this build reads (v1): a later build migrated it, "
            "and migrations are not undone by a rollback"
        )
    assert wait_for(lambda: any("ERROR dashboard query failed" in line for line in platform.logs(app, version=2)))
    assert not [
        line for v in (1, 2, 3) for line in platform.logs(app, version=v) if password_of(url_of(platform, app)) in line
    ]
    platform.stop(app)


def test_the_standin_and_the_check_agree_on_the_schema_table():
    assert standin_app.SCHEMA_TABLE == SCHEMA_TABLE


def _standin_secrets() -> dict[str, str]:
    from hotdash_release.secrets.required import rehearsal_secret_values

    return rehearsal_secret_values(STAGING)
