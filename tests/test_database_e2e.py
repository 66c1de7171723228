"""Whole releases with the rehearsal's real PostgreSQL (real CLI, kernels, app processes).

One platform for the module, in this order: a good release; production's DATABASE_URL
pointed at staging's database by another spelling (caught by identity); production's
database unreachable (blocked at the preflight); and last, because it leaves production's
schema migrated, a build whose migration the previous image cannot read (exit 5).
"""

from __future__ import annotations

import json
import re
import socket
from urllib.parse import urlsplit

import pytest
from conftest import make_rehearsal

from hotdash_release.results import read_section_result

STAGING, PRODUCTION = "hotdash-staging", "hotdash-production"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    # A short wait: the rollback's redeploy of an image that cannot read the schema never gets healthy.
    world = make_rehearsal(tmp_path_factory.mktemp("database"), wait_timeout_s=4)
    yield world
    world.platform().stop()


@pytest.fixture(scope="module")
def good_release(world):
    done = world.release()
    assert done.returncode == 0, done.stdout + done.stderr
    return world.release_dirs()[-1]


def archived_text(folder) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


def test_good_release_reports_server_and_schema_version_per_app(world, good_release):
    folder = good_release
    rows = read_section_result(folder, "preflight")["records"]["databases"]["rows"]
    assert [(r["app"], r["ok"], r["database"], r["schema_version"]) for r in rows] == [
        (STAGING, True, "hotdash_staging", 0),
        (PRODUCTION, True, "hotdash_production", 0),
    ]
    assert all(r["server_version"].startswith("18.") for r in rows)
    checklist = read_section_result(folder, "preflight")["records"]["checklist"]["rows"]
    items = {r["item"]: r for r in checklist}
    assert items[f"Database connected (Supabase): {PRODUCTION}"]["ok"]
    for key, app in (("deploy_staging", STAGING), ("deploy_production", PRODUCTION)):
        assert read_section_result(folder, key)["records"]["schema"] == {"app": app, "before": 0, "after": 1}
    report = (folder / "report.html").read_text()
    section = report[report.index("<h2>Databases</h2>") : report.index("<h2>Rollback")]
    assert section.count("<td>18.") == 2 and "hotdash_production" in section
    assert re.search(r"Step 4: Deploy to production</td><td>hotdash-production</td><td>v0</td><td>v1</td>", section)


def test_no_database_password_in_any_archived_file(world, good_release):
    stored = [world.platform().secret_values(app)["DATABASE_URL"] for app in (STAGING, PRODUCTION)]
    superuser = json.loads((world.state_dir / "secrets" / "postgres.json").read_text())["password"]
    secrets = [*stored, *(urlsplit(url).password for url in stored), superuser]
    text = archived_text(world.outputs)
    leaked = [i for i, secret in enumerate(secrets) if secret in text]
    assert not leaked, f"database secrets {leaked} found in the archive"


def test_two_urls_reaching_one_database_are_caught_by_identity(world, good_release):
    platform = world.platform()
    production_url = platform.secret_values(PRODUCTION)["DATABASE_URL"]
    staging_url = platform.secret_values(STAGING)["DATABASE_URL"]
    same_database = staging_url.replace("@127.0.0.1:", "@localhost:")  # another text, one database
    releases_before = platform.releases(PRODUCTION)
    platform.set_secrets(PRODUCTION, {"DATABASE_URL": same_database})
    try:
        done = world.release()
    finally:
        platform.set_secrets(PRODUCTION, {"DATABASE_URL": production_url})
    assert done.returncode == 3, done.stdout + done.stderr
    folder = world.release_dirs()[-1]
    result = read_section_result(folder, "verify_secrets")
    assert result["outcome"] == "failed"
    assert result["failures"][0].startswith(
        f"DATABASE_URL on {STAGING} and {PRODUCTION} reaches one database (hotdash_staging on the server"
    )
    assert platform.releases(PRODUCTION) == releases_before  # nothing deployed
    assert not (folder / "03-deploy_staging.ipynb").exists()


def test_database_unreachable_at_preflight_blocks_before_anything_deploys(world, good_release):
    platform = world.platform()
    production_url = platform.secret_values(PRODUCTION)["DATABASE_URL"]
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        down = probe.getsockname()[1]  # nothing listens there once the probe closes
    port = urlsplit(production_url).port
    releases_before = {app: platform.releases(app) for app in (STAGING, PRODUCTION)}
    platform.set_secrets(PRODUCTION, {"DATABASE_URL": production_url.replace(f":{port}/", f":{down}/")})
    try:
        done = world.release()
    finally:
        platform.set_secrets(PRODUCTION, {"DATABASE_URL": production_url})
    assert done.returncode == 3, done.stdout + done.stderr
    assert "[1/9] Pre-deployment checklist: failed" in done.stdout
    line = f"Database connected (Supabase): {PRODUCTION} (DATABASE_URL: cannot use the database: unreachable (connection refused))"
    assert line in done.stdout
    folder = world.release_dirs()[-1]
    assert [p.name for p in folder.glob("*.ipynb")] == ["01-preflight.ipynb"]
    assert {app: platform.releases(app) for app in (STAGING, PRODUCTION)} == releases_before
    assert str(down) not in archived_text(folder)  # the URL's parts, not only its whole value


def test_a_migration_the_previous_image_cannot_read_ends_in_exit_5(world, good_release):
    done = world.release("--break", "production:migration_incompatible")
    assert done.returncode == 5, done.stdout + done.stderr
    assert "smoke: 1 failed: Dashboard: App Bridge key" in done.stdout
    assert "migrations are not undone by a rollback" in done.stdout
    folder = world.release_dirs()[-1]
    deployed = read_section_result(folder, "deploy_production")["records"]["schema"]
    assert deployed == {"app": PRODUCTION, "before": 1, "after": 2}
    rollback = read_section_result(folder, "rollback")
    assert rollback["records"]["schema"] == {"app": PRODUCTION, "before": 2, "after": 2}
    assert rollback["records"]["rollback"]["ok"] is False  # its /health: the schema is newer than it reads
    assert rollback["failures"][0] == (
        "the database schema is at v2, it was v1 before this release's production deploy: migrations are not "
        "undone by a rollback; the restored image cannot use the migrated database, production needs a person"
    )
    report = (folder / "report.html").read_text()
    assert "migrations are not undone by a rollback" in report
    assert re.search(r"Rollback plan</td><td>hotdash-production</td><td>v2</td><td>v2</td>", report)
