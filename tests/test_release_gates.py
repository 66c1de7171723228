"""Production changes only after GO, however a runbook is run; a rollback is verified like a release.

The production deploy reads this release's own records at the point of change: the rule is
tested on its own, under plain papermill (the command line an operator would type), and under
the runner with a record that says NO-GO. (JupyterLab sessions: tests/test_interactive.py.)
Then a secret changed (or unset) since the last good release, which no rollback by image can
undo; a production deploy run twice in one release, which must not move what the rollback
restores; and "rollback failed" keeping its exit code when the archive store fails too.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_rehearsal

from hotdash_release.decisions.release_gate import production_gate
from hotdash_release.locks import live_release
from hotdash_release.paths import RUNBOOKS_DIR
from hotdash_release.record import events
from hotdash_release.results import read_section_result

APPS = ("hotdash-staging", "hotdash-production")


def recorded(**changes) -> dict[str, dict]:
    """Results of sections 2-5 as a release that may deploy production records them."""
    results = {
        "verify_secrets": {
            "outcome": "passed",
            "finished_at": "2026-11-28T10:00:01.000Z",
            "records": {"secrets": {"rows": [{"app": app, "name": "SCOPES"} for app in APPS]}},
        },
        "deploy_staging": {
            "outcome": "passed",
            "finished_at": "2026-11-28T10:00:02.000Z",
            "records": {"deployment": {"ok": True}, "health": {"ok": True}},
        },
        "staging_smoke": {"outcome": "passed", "finished_at": "2026-11-28T10:00:03.000Z", "records": {}},
        "go_no_go": {
            "outcome": "passed",
            "finished_at": "2026-11-28T10:00:04.000Z",
            "records": {"decision": {"decision": "GO"}},
        },
    }
    for key, value in changes.items():
        if value is None:
            del results[key]
        else:
            results[key] = {**results[key], **value}
    return results


def test_a_release_that_recorded_everything_and_a_go_may_deploy_production():
    assert production_gate(recorded(), APPS).ok


@pytest.mark.parametrize(
    ("changes", "missing"),
    [
        ({"verify_secrets": None}, "secrets verified on both apps (verify_secrets has no result"),
        (
            {"verify_secrets": {"records": {"secrets": {"rows": [{"app": "hotdash-staging"}]}}}},
            "not checked on hotdash-production",
        ),
        ({"deploy_staging": {"outcome": "failed"}}, "staging deployed and healthy (deploy_staging failed)"),
        ({"deploy_staging": {"records": {"deployment": {"ok": True}}}}, "no healthy deployment recorded"),
        ({"staging_smoke": None}, "staging smoke test passed"),
        (
            {"staging_smoke": {"outcome": "skipped", "override": {"by": "x", "reason": " "}}},
            "without a recorded reason",
        ),
        ({"go_no_go": {"outcome": "failed", "records": {"decision": {"decision": "NO-GO"}}}}, "go_no_go failed"),
        ({"go_no_go": {"records": {"decision": {"decision": "NO-GO"}}}}, "decision NO-GO"),
        ({"go_no_go": {"outcome": "running"}}, "go_no_go running"),
        ({"deploy_staging": {"finished_at": "2026-11-28T10:00:09.000Z"}}, "taken after deploy_staging"),
    ],
    ids=[
        "no secrets check",
        "secrets of one app",
        "staging failed",
        "staging not healthy",
        "no staging smoke",
        "skipped without reason",
        "no-go recorded",
        "go_no_go passed saying NO-GO",
        "decision not gated",
        "staging redeployed after GO",
    ],
)
def test_production_may_not_change_when_a_record_is_missing(changes, missing):
    gate = production_gate(recorded(**changes), APPS)
    assert not gate.ok and missing in gate.line()


def test_a_staging_smoke_test_skipped_with_a_reason_is_enough():
    skipped = {"outcome": "skipped", "override": {"by": "ops", "reason": "staging is down, CEO approved"}}
    assert production_gate(recorded(staging_smoke=skipped), APPS).ok


def test_plain_papermill_on_an_empty_release_dir_refuses_and_deploys_nothing(rehearsal, tmp_path):
    """The observed bypass: `papermill runbooks/deploy.ipynb out.ipynb -p environment production
    -p release_dir <empty folder>` deployed production and its gate said passed."""
    release_dir = tmp_path / "empty"
    release_dir.mkdir()
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            str(RUNBOOKS_DIR / "deploy.ipynb"),
            str(tmp_path / "out.ipynb"),
            "-p",
            "environment",
            "production",
            "-p",
            "release_dir",
            str(release_dir),
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HOTDASH_CONFIG": str(rehearsal.config), "HOTDASH_OUTPUTS": str(rehearsal.outputs)},
    )
    assert done.returncode != 0
    assert "DeployRefused" in done.stderr and "refused, nothing deployed: missing: a live release" in done.stderr
    assert rehearsal.platform().releases("hotdash-production") == []
    result = read_section_result(release_dir, "deploy_production")
    assert result["outcome"] == "refused"
    [line] = result["failures"]
    for missing in (
        "a live release",
        "secrets verified on both apps",
        "staging deployed",
        "staging smoke",
        "go/no-go decision of GO",
    ):
        assert missing in line
    assert result["records"]["preconditions"]["ok"] is False
    assert "deployment" not in result["records"]


def test_the_runner_treats_a_refused_production_deploy_as_blocked_without_a_rollback(rehearsal):
    """Resuming a release at its production deploy after staging changed behind it: the runner's
    order reaches the production deploy, which checks staging against the target and refuses;
    exit 3, nothing to roll back."""
    first = rehearsal.release("--break", "production:crash_at_start")
    assert first.returncode == 5, first.stdout + first.stderr  # a first release: nothing to restore
    [folder] = rehearsal.release_dirs()
    platform = rehearsal.platform()
    platform.deploy("hotdash-staging", build_args={"HOTDASH_DEFECT": "wrong_api_key"}, wait_timeout_s=10)
    production_before = platform.releases("hotdash-production")

    resumed = rehearsal.runbook("release", "--resume", folder.name, "--outputs", str(rehearsal.outputs))
    assert resumed.returncode == 3, resumed.stdout + resumed.stderr
    assert "BLOCKED (exit 3)" in resumed.stdout and "staging serving the image this release checked" in resumed.stdout
    second = rehearsal.release_dirs()[-1]
    manifest = json.loads((second / "manifest.json").read_text())
    assert [(s["key"], s["outcome"]) for s in manifest["sections"]][-1] == ("deploy_production", "refused")
    assert "rollback" not in {s["key"] for s in manifest["sections"]}
    assert manifest["reason"].startswith("production not changed")
    assert platform.releases("hotdash-production") == production_before


def test_a_resume_of_a_release_whose_record_was_changed_is_refused(rehearsal):
    """A hand-edited result in a sealed release (the decision turned to NO-GO here) is no ground
    to reuse anything: the resume refuses before anything is written."""
    first = rehearsal.release("--break", "production:crash_at_start")
    assert first.returncode == 5, first.stdout + first.stderr
    [folder] = rehearsal.release_dirs()
    decision = folder / "results" / "go_no_go.json"
    tampered = json.loads(decision.read_text())
    tampered["records"]["decision"]["decision"] = "NO-GO"
    decision.write_text(json.dumps(tampered))
    resumed = rehearsal.runbook("release", "--resume", folder.name, "--outputs", str(rehearsal.outputs))
    assert resumed.returncode == 2, resumed.stdout + resumed.stderr
    assert "does not verify (modified file results/go_no_go.json" in resumed.stderr
    assert rehearsal.release_dirs() == [folder]


def test_a_secret_changed_since_the_last_good_release_fails_the_rollback_naming_it(tmp_path):
    world = make_rehearsal(tmp_path, wait_timeout_s=4)
    try:
        good = world.release()
        assert good.returncode == 0, good.stdout + good.stderr
        platform = world.platform()
        platform.set_secrets("hotdash-production", {"SHOPIFY_API_KEY": "a-key-nobody-released-with"})
        serving = platform.status("hotdash-production").image_ref

        done = world.release("--break", "production:wrong_api_key")
        assert done.returncode == 5, done.stdout + done.stderr
        assert "ROLLBACK FAILED (exit 5)" in done.stdout
        assert "SHOPIFY_API_KEY changed since the last good release" in done.stdout
        assert "production needs a person" in done.stdout
        folder = world.release_dirs()[-1]
        report = (folder / "report.html").read_text()
        assert (
            "SHOPIFY_API_KEY changed since the last good release" in report
            and "Secrets of hotdash-production" in report
        )
        rollback = read_section_result(folder, "rollback")
        assert rollback["records"]["rollback"]["ok"] is True, "the image was restored..."
        assert platform.status("hotdash-production").image_ref == serving
        assert rollback["records"]["smoke"]["ok"] is True, "...and passes the smoke test: the key is not in it"
        compared = {row["name"]: row["ok"] for row in rollback["records"]["secrets_since_last_good"]["rows"]}
        assert compared.pop("SHOPIFY_API_KEY") is False and all(compared.values())
        assert (
            good.stdout.split("HotDash release ", 1)[1].split(":", 1)[0]
            in rollback["records"]["secrets_since_last_good"]["title"]
        ), "names the release it compared with"
    finally:
        world.platform().stop()


def test_a_production_deploy_run_again_keeps_what_served_before_the_first(rehearsal, tmp_path):
    """In a session the production deploy can run twice; the rollback must restore what served
    before this release changed production, not the first attempt's build."""
    from hotdash_release.results import results_path, write_json_atomic
    from hotdash_release.runbook import open_section

    first = {"app": "hotdash-production", "image_ref": "rehearsal.local/hotdash@sha256:" + "a" * 64, "version": 7}
    write_json_atomic(
        results_path(tmp_path, "deploy_production"),
        {"outcome": "passed", "records": {"serving_before": first, "deployment": {"version": 8, "status": "complete"}}},
    )
    events.note_result(tmp_path, "deploy_production", by="test", outcome="passed")  # as the first run wrote it
    again = open_section(
        "deploy", environment="production", config_path=str(rehearsal.config), release_dir=str(tmp_path)
    )
    saved = read_section_result(tmp_path, "deploy_production")["records"]
    assert saved["serving_before"] == first
    assert saved["earlier_deployments"] == [{"version": 8, "status": "complete"}], "the seal still sees v8"
    assert again.rollback_candidate().title.endswith(f"a rollback restores v7 ({first['image_ref']})")


# -- what a rollback restores and what it compares, on a platform with a good release ---------

PRODUCTION = "hotdash-production"


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A rehearsal platform whose production serves a good release, sealed in its archive."""
    world = make_rehearsal(tmp_path_factory.mktemp("gates"), wait_timeout_s=4)
    done = world.release()
    assert done.returncode == 0, done.stdout + done.stderr
    yield world
    world.platform().stop()


def release_that_may_deploy_production(world, release_id: str) -> Path:
    """A release folder whose records show what production's deploy requires (sections 2-5)."""
    from hotdash_release.results import results_path, write_json_atomic

    folder = world.outputs / PRODUCTION / release_id
    staging = {"deployment": {"ok": True, "image_ref": world.platform().status("hotdash-staging").image_ref}}
    for key, result in recorded(deploy_staging={"records": {**staging, "health": {"ok": True}}}).items():
        write_json_atomic(results_path(folder, key), result)
        events.note_result(folder, key, by="test", outcome=result["outcome"])  # as the sections' runs record them
    return folder


def test_a_second_production_deploy_in_one_release_keeps_what_served_before_the_first(released):
    """The production deploy's cell run twice, then the section run again (a lab session): each
    deploy must leave `serving_before` as it was before this release first changed production,
    so the rollback restores the good release, not the first attempt's build."""
    from hotdash_release.runbook import open_section

    platform = released.platform()
    good = platform.status(PRODUCTION).image_ref
    folder = release_that_may_deploy_production(released, "20261205T000000Z-5ec0d1")
    live = live_release(folder)  # as `runbook lab` holds its session
    live.__enter__()
    try:
        section = dict(environment="production", config_path=str(released.config), release_dir=str(folder))
        run = open_section("deploy", **section)
        first = run.deploy("wrong_api_key")
        assert first.ok and first.image_ref != good
        assert run.deploy("wrong_api_key").ok  # the cell again: production now serves the first attempt
        assert open_section("deploy", **section).deploy("wrong_api_key").ok  # the section again
        assert read_section_result(folder, "deploy_production")["records"]["serving_before"]["image_ref"] == good

        restored = open_section("rollback", **section).roll_back()
        assert restored.ok and restored.to_image == good and restored.new_version is not None, restored
        assert platform.status(PRODUCTION).image_ref == good
    finally:
        live.__exit__(None, None, None)
        shutil.rmtree(folder)
        if platform.status(PRODUCTION).image_ref != good:  # the module's production as it was
            platform.deploy(PRODUCTION, image=good, wait_timeout_s=20)


def test_a_required_secret_unset_since_the_last_good_release_counts_as_changed(released):
    """Unset is a change: the rollback's comparison names it and its gate fails (the runner then
    ends "rollback failed", exit 5), never "unchanged" because there is no digest to compare."""
    from hotdash_release.errors import GateFailed
    from hotdash_release.runbook import open_section

    platform = released.platform()
    kept = platform.secret_values(PRODUCTION)["SCOPES"]
    folder = released.outputs / PRODUCTION / "20261205T000001Z-5ec0d2"
    platform.unset_secrets(PRODUCTION, ["SCOPES"])
    try:
        run = open_section(
            "rollback", environment="production", config_path=str(released.config), release_dir=str(folder)
        )
        table = run.compare_secrets()
        with pytest.raises(GateFailed, match="SCOPES changed since the last good release"):
            run.gate()
        rows = {
            row["name"]: row
            for row in read_section_result(folder, "rollback")["records"]["secrets_since_last_good"]["rows"]
        }
    finally:
        platform.set_secrets(PRODUCTION, {"SCOPES": kept})
        shutil.rmtree(folder, ignore_errors=True)
    assert not table.ok
    assert rows["SCOPES"]["ok"] is False and rows["SCOPES"]["digest_now"] == "" and rows["SCOPES"]["last_good_digest"]
    assert all(row["ok"] for name, row in rows.items() if name != "SCOPES")


@pytest.mark.parametrize(
    ("outcome", "store_failure", "code"),
    [
        ("rollback failed", "upload", 5),  # production needs a person first: 5 wins over 7
        ("rollback failed", "head", 5),  # ... and over 6
        ("error", "upload", 1),
        ("rolled back", "upload", 7),
        ("rolled back", "head", 6),
        ("released", "upload", 7),
        ("rollback failed", None, 5),
    ],
)
def test_rollback_failed_wins_over_an_archive_store_failure(tmp_path, outcome, store_failure, code):
    from hotdash_release.config import load_config
    from hotdash_release.runner import ReleaseOptions, ReleaseRecord

    record = ReleaseRecord(
        "20261205T000000Z-abcdef",
        tmp_path,
        load_config(),
        ReleaseOptions(outputs=tmp_path),
        "local",
        "ana",
        "2026-12-05T00:00:00.000Z",
        {},
        outcome=outcome,
        store_failure=(store_failure, "NOT STORED: the store refused") if store_failure else None,
    )
    assert record.exit_code == code
