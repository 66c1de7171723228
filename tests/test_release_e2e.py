"""Whole releases through the real CLI, real papermill and kernels, real app processes.

Scenarios are named for what they prove: a good release, broken production builds that
roll back, a first release that has nothing to roll back to, a missing secret, a no-go.
"""

from __future__ import annotations

import json
import re

import pytest
from conftest import assert_canonical_notebooks, make_rehearsal, with_database

from hotdash_release.archive.seal import read_manifest, sha256_file
from hotdash_release.paths import RUNBOOKS_DIR
from hotdash_release.plan import PLAN
from hotdash_release.results import read_section_result

SECTION_FILES = [f"{i:02d}-{s.key}" for i, s in enumerate(PLAN, start=1)]


def only_release(world):
    dirs = world.release_dirs()
    assert len(dirs) == 1, dirs
    return dirs[0]


def newest_release(world):
    return world.release_dirs()[-1]


def assert_sealed(folder):
    """The manifest lists every file with its sha256, and nothing else is there but the
    manifest, SHA256SUMS and its signatures."""
    manifest = read_manifest(folder)
    on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    assert {"manifest.json", "SHA256SUMS", "SHA256SUMS.sig", "SHA256SUMS.sshsig"} <= on_disk
    on_disk -= {"manifest.json", "SHA256SUMS", "SHA256SUMS.sig", "SHA256SUMS.sshsig"}
    assert set(manifest["files"]) == on_disk
    for name, digest in manifest["files"].items():
        assert sha256_file(folder / name) == digest, name
    return manifest


def canary_values(app: str) -> dict[str, str]:
    """Distinctive secret values: if any of them shows up in the archive, redaction failed."""
    tag = app.split("-")[1].upper()
    return {
        "DATABASE_URL": f"postgresql://hotdash:CANARY-DB-{tag}-pw@127.0.0.1:54322/hotdash",
        "SHOPIFY_API_KEY": f"canaryapikey{tag.lower()}0123456789",
        "SHOPIFY_API_SECRET": f"shpss_CANARY_SECRET_{tag}_abcdef",
        "SHOPIFY_APP_URL": f"https://canary-{tag.lower()}.rehearsal.invalid",
        "SCOPES": f"read_products,read_canary_{tag.lower()}",
        "SUPABASE_URL": f"https://canary{tag.lower()}project.supabase.co",
        "SUPABASE_ANON_KEY": f"eyJhbGciOiJIUzI1NiJ9.CANARY-ANON-{tag}",
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """One rehearsal platform shared by the scenarios that build on a first good release,
    with canary secrets planted before anything runs."""
    world = make_rehearsal(tmp_path_factory.mktemp("release"), wait_timeout_s=4)
    platform = world.platform()
    for app in ("hotdash-staging", "hotdash-production"):
        platform.set_secrets(app, with_database(platform, app, canary_values(app)))
    yield world
    platform.stop()


@pytest.fixture(scope="module")
def good_release(world):
    done = world.release()
    return done, newest_release(world)


def test_good_release_is_all_green_and_archived(world, good_release):
    done, folder = good_release
    assert done.returncode == 0, done.stdout + done.stderr
    assert "RELEASED (exit 0)" in done.stdout
    for name in SECTION_FILES:
        assert (folder / f"{name}.ipynb").is_file() and (folder / f"{name}.html").is_file(), name
    assert not (folder / "10-rollback.ipynb").exists()
    manifest = assert_sealed(folder)
    assert manifest["outcome"] == "released" and manifest["exit_code"] == 0
    assert manifest["operator"] == "test-operator"
    assert [s["outcome"] for s in manifest["sections"]] == ["passed"] * len(PLAN)
    assert manifest["tools"]["papermill"] and manifest["tools"]["nbconvert"]
    assert set(manifest["parameters"]) == {"target", "config_path", "operator", "release_dir"}
    assert manifest["kernels"] == "forked from a kernel template"  # on Linux; README "Release flow"

    report = (folder / "report.html").read_text()
    assert "Timing: planned vs actual" in report
    for planned in ("2 min", "5 min"):
        assert planned in report
    assert "Shopify OAuth: install redirect" in report and "Webhook correctly signed accepted" in report
    assert report.count('class="badge passed"') >= 11  # every smoke check of production, at least
    assert "GO" in report and "not met (acceptable)" in report.lower()
    assert "a new one per section, forked from a kernel template" in report

    platform = world.platform()
    for app in ("hotdash-staging", "hotdash-production"):
        status = platform.status(app)
        assert status.state == "started"
        assert platform.releases(app)[0].status == "complete"
    inbox = (world.outputs / "notifications.log").read_text()
    assert "https://hotdash-production.fly.dev" in inbox and "Known limitations" in inbox


def test_executed_notebooks_record_papermill_timings_and_no_secret_parameters(good_release):
    _, folder = good_release
    notebook = json.loads((folder / "03-deploy_staging.ipynb").read_text())
    assert notebook["metadata"]["papermill"]["parameters"]["environment"] == "staging"
    assert notebook["metadata"]["papermill"]["duration"] > 0
    assert_canonical_notebooks(folder)
    injected = [c for c in notebook["cells"] if "injected-parameters" in c["metadata"].get("tags", [])]
    assert len(injected) == 1
    assert not re.search(r"SECRET|API_KEY\s*=|DATABASE_URL\s*=", "".join(injected[0]["source"]))


@pytest.mark.parametrize("defect", ["wrong_api_key", "crash_at_start", "health_failing", "slow"])
def test_broken_production_build_rolls_back_to_the_previous_image(world, good_release, defect):
    platform = world.platform()
    before = platform.status("hotdash-production")
    done = world.release("--break", f"production:{defect}")
    assert done.returncode == 4, done.stdout + done.stderr
    assert "ROLLED BACK (exit 4)" in done.stdout
    folder = newest_release(world)
    manifest = assert_sealed(folder)
    keys = [s["key"] for s in manifest["sections"]]
    assert keys[-1] == "rollback" and manifest["sections"][-1]["outcome"] == "passed"
    assert "notify" not in keys
    failed = [s for s in manifest["sections"] if s["outcome"] != "passed"]
    assert [s["key"] for s in failed] in (["deploy_production"], ["production_smoke"])

    after = platform.status("hotdash-production")
    assert after.state == "started"
    assert after.image_ref == before.image_ref, "production runs the previous image again"
    assert after.version > before.version + 1, "the rollback is a new release, as on Fly"
    newest = platform.releases("hotdash-production")[0]
    assert newest.description.startswith("Rollback to v") and newest.status == "complete"
    report = (folder / "report.html").read_text()
    assert "Rollback" in report and "No rollback was needed" not in report
    assert_canonical_notebooks(folder)  # failed cells: papermill's error path wrote them


def test_first_release_broken_has_nothing_to_roll_back_to(rehearsal):
    done = rehearsal.release("--break", "production:wrong_api_key")
    assert done.returncode == 5, done.stdout + done.stderr
    manifest = assert_sealed(only_release(rehearsal))
    assert manifest["outcome"] == "rollback failed"
    assert "nothing to roll back to: production served nothing before this release" in manifest["reason"]
    assert "nothing redeployed" in manifest["reason"]
    assert len(rehearsal.platform().releases("hotdash-production")) == 1, "only the broken build: no rollback deploy"
    compared = read_section_result(only_release(rehearsal), "rollback")["records"]["secrets_since_last_good"]
    assert compared["rows"] == [] and "not compared (no earlier release of hotdash-production" in compared["title"]


def test_missing_secret_blocks_before_any_deploy(rehearsal):
    platform = rehearsal.platform()
    from hotdash_release.secrets.required import rehearsal_secret_values

    for app in ("hotdash-staging", "hotdash-production"):
        values = rehearsal_secret_values(app)
        if app == "hotdash-production":
            del values["SUPABASE_ANON_KEY"]
        platform.set_secrets(app, with_database(platform, app, values))
    done = rehearsal.release()
    assert done.returncode == 3, done.stdout + done.stderr
    assert "SUPABASE_ANON_KEY" in done.stdout
    manifest = assert_sealed(only_release(rehearsal))
    assert [s["key"] for s in manifest["sections"]] == ["preflight", "verify_secrets"]
    assert manifest["outcome"] == "blocked"
    assert platform.releases("hotdash-staging") == [] and platform.releases("hotdash-production") == []


def test_no_go_blocks_production_but_archives_the_decision(tmp_path):
    readiness = tmp_path / "readiness.csv"
    rows = (RUNBOOKS_DIR / "readiness.csv").read_text().splitlines()
    # QA's performance testing becomes blocking: the plan's criteria say no-go.
    readiness.write_text("\n".join(r.replace(",in progress,15,no", ",in progress,15,yes") for r in rows) + "\n")
    world = make_rehearsal(tmp_path / "world", readiness=readiness)
    try:
        done = world.release()
        assert done.returncode == 3, done.stdout + done.stderr
        manifest = assert_sealed(only_release(world))
        assert manifest["sections"][-1]["key"] == "go_no_go"
        assert manifest["sections"][-1]["outcome"] == "failed"
        assert world.platform().releases("hotdash-production") == []
        report = (only_release(world) / "report.html").read_text()
        assert "NO-GO" in report and "No blocking workstream still in progress" in report
    finally:
        world.platform().stop()


def test_no_secret_value_reaches_any_archived_file(world, good_release):
    """Runs after the good and the broken releases of this module: scan everything they archived
    for the sensitive secrets; the public ones (secrets.public) are shown as they are."""
    from urllib.parse import quote, quote_plus

    from hotdash_release.config import load_config

    config = load_config(world.config)
    platform = world.platform()
    stored = {app: platform.secret_values(app) for app in ("hotdash-staging", "hotdash-production")}
    values = [
        v for app, app_values in stored.items() for name, v in app_values.items() if name in config.sensitive_secrets
    ]
    # The databases: each app's URL as stored, its password alone, and the server's superuser's.
    assert all(
        f"CANARY-DB-{tag}-pw" in stored[f"hotdash-{tag.lower()}"]["DATABASE_URL"] for tag in ("STAGING", "PRODUCTION")
    )
    values += ["CANARY-DB-STAGING-pw", "CANARY-DB-PRODUCTION-pw"]
    values.append(json.loads((world.state_dir / "secrets" / "postgres.json").read_text())["password"])
    forms = {form for v in values for form in (v, quote(v, safe=""), quote_plus(v))}
    files = [p for p in world.outputs.rglob("*") if p.is_file()]
    assert len(files) > 40
    for path in files:
        data = path.read_text(errors="replace")
        leaked = [form for form in forms if form in data]
        assert not leaked, f"{path} holds secret values {leaked}"
    # A public value is not redacted: the install redirect's client_id shows the API key itself.
    api_key = canary_values("hotdash-production")["SHOPIFY_API_KEY"]
    assert any(f"client_id={api_key}" in p.read_text(errors="replace") for p in files)
    assert not any("[redacted SHOPIFY_API_KEY" in p.read_text(errors="replace") for p in files)
