"""One release, one truth: every action follows from the release's own record (issue 24).

Each test is one of the observations, tried as an operator or an adversary would: hand-written
results under plain papermill, papermill and the notification aimed at a sealed release, a
notification that fails before the watch, a resume of a release whose results are no longer
true, a runner killed after production's deploy began. In-process, as a JupyterLab kernel runs
the cells: sections run out of order never probe a configured remote URL and never tell the CEO
"deployed"; decisions are appended, never overwritten.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import make_rehearsal, run_cli, write_config
from test_lifecycle import Runner, starting

from hotdash_release.decisions.release_gate import ACTIONS, actions_markdown
from hotdash_release.errors import DeployRefused, Refused, UsageError
from hotdash_release.locks import live_holder, live_release
from hotdash_release.paths import RUNBOOKS_DIR
from hotdash_release.record import events
from hotdash_release.results import read_section_result, results_path, write_json_atomic

PRODUCTION = "hotdash-production"
STAGING = "hotdash-staging"
APPS = (STAGING, PRODUCTION)
README = Path(__file__).resolve().parents[1] / "README.md"


def manifest_of(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A platform with a good release in production and staging, sealed in its archive."""
    world = make_rehearsal(tmp_path_factory.mktemp("truth"), wait_timeout_s=6)
    done = world.release()
    assert done.returncode == 0, done.stdout + done.stderr
    yield world
    world.platform().stop()


def papermill_deploy(world, release_dir: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """The command line an operator (or an adversary) would type."""
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "papermill",
            str(RUNBOOKS_DIR / "deploy.ipynb"),
            str(out),
            "-p",
            "environment",
            "production",
            "-p",
            "release_dir",
            str(release_dir),
            *extra,
        ],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "HOTDASH_CONFIG": str(world.config), "HOTDASH_OUTPUTS": str(world.outputs)},
    )


def hand_written_results(world, folder: Path) -> None:
    """The four files the gate reads, each "passed", as the observed bypass wrote them."""
    platform = world.platform()
    staging = platform.status(STAGING)
    files = {
        "verify_secrets": {"records": {"secrets": {"rows": [{"app": app} for app in APPS]}}},
        "deploy_staging": {
            "records": {"deployment": {"ok": True, "image_ref": staging.image_ref}, "health": {"ok": True}}
        },
        "staging_smoke": {"records": {}},
        "go_no_go": {"records": {"decision": {"decision": "GO"}}},
    }
    for number, (key, result) in enumerate(files.items()):
        write_json_atomic(
            results_path(folder, key),
            {"outcome": "passed", "finished_at": f"2026-12-05T10:00:0{number}.000Z", **result},
        )


def test_hand_written_results_do_not_open_the_production_gate(world, tmp_path):
    folder = tmp_path / "forged"
    hand_written_results(world, folder)
    before = world.platform().releases(PRODUCTION)
    done = papermill_deploy(world, folder, tmp_path / "o.ipynb", "-p", "rehearsal_defect", "wrong_api_key")
    assert done.returncode != 0
    assert "refused, nothing deployed" in done.stderr
    assert "was not recorded by this release (written by hand or changed)" in done.stderr
    assert world.platform().releases(PRODUCTION) == before


def test_results_vouched_for_by_the_log_still_need_a_live_release(world, tmp_path):
    """Even a log that vouches for every file (as if copied from a real run) does not make plain
    papermill a release: nothing live holds the folder."""
    folder = tmp_path / "copied"
    hand_written_results(world, folder)
    for key in ("verify_secrets", "deploy_staging", "staging_smoke", "go_no_go"):
        events.note_result(folder, key, by="mallory", outcome="passed")
    before = world.platform().releases(PRODUCTION)
    done = papermill_deploy(world, folder, tmp_path / "o.ipynb")
    assert done.returncode != 0
    assert "a live release (no `runbook release` or `runbook lab` holds this folder now" in done.stderr
    assert world.platform().releases(PRODUCTION) == before


def test_a_sealed_release_is_read_only_to_papermill(world, tmp_path):
    sealed = world.release_dirs()[0]
    files = {p: p.read_bytes() for p in sealed.rglob("*") if p.is_file()}
    before = world.platform().releases(PRODUCTION)
    done = papermill_deploy(world, sealed, tmp_path / "o.ipynb")
    assert done.returncode != 0
    assert f"is the sealed release {sealed.name}: it is read-only" in done.stderr
    assert {p: p.read_bytes() for p in sealed.rglob("*") if p.is_file()} == files
    assert world.platform().releases(PRODUCTION) == before
    assert world.runbook("verify", "--outputs", str(world.outputs)).returncode == 0


@pytest.mark.parametrize("name", ["report.html", "manifest.json"])
def test_a_notification_file_inside_a_release_folder_is_refused_at_load(world, tmp_path, name):
    sealed = world.release_dirs()[0]
    config = write_config(
        tmp_path / "config",
        state_dir=world.state_dir,
        edits={'file = "notifications.log"': f'file = "{PRODUCTION}/{sealed.name}/{name}"'},
    )
    done = run_cli("release", "--config", str(config), "--outputs", str(world.outputs))
    assert done.returncode == 2
    [line] = done.stderr.strip().splitlines()
    assert "notification.file" in line and "outside the archive's release folders" in line
    assert world.runbook("verify", "--outputs", str(world.outputs)).returncode == 0


def test_the_notification_refuses_a_path_inside_a_release_folder(tmp_path):
    from hotdash_release.config import load_config
    from hotdash_release.integrations.notify import send_notification

    notification = load_config(RUNBOOKS_DIR / "hotdash.toml").notification
    release = tmp_path / "elsewhere" / "20261205T000000Z-abcdef"
    release.mkdir(parents=True)
    (release / "manifest.json").write_text("{}")
    import dataclasses

    inside = dataclasses.replace(notification, file="elsewhere/20261205T000000Z-abcdef/report.html")
    result = send_notification(inside, "hello", inbox_dir=tmp_path)
    assert not result.ok and "inside the release folder" in result.detail
    assert not (release / "report.html").exists()


def test_a_failed_notification_does_not_skip_the_watch(tmp_path):
    """The CEO's channel fails; production changed, so the watch runs all the same and catches
    the build that degrades after its smoke test: rolled back (exit 4), not "released"."""
    world = make_rehearsal(tmp_path, wait_timeout_s=8, watch_minutes=0.1, watch_interval_s=0.5)
    try:
        (world.outputs).mkdir(parents=True)
        (world.outputs / "notifications.log").mkdir()  # the inbox cannot be written: the channel fails
        done = run_cli(
            "release",
            "--config",
            str(world.config),
            "--outputs",
            str(world.outputs),
            "--break",
            "production:degrades_after",
            extra_env={"HOTDASH_DEGRADE_AFTER_SECONDS": "1.5"},
        )
        assert done.returncode == 5 or done.returncode == 4, done.stdout + done.stderr
        assert "the watch runs all the same" in done.stdout
        sections = {s["key"]: s["outcome"] for s in manifest_of(world.release_dirs()[-1])["sections"]}
        assert sections["notify"] == "failed" and sections["watch"] == "failed" and "rollback" in sections
    finally:
        world.platform().stop()


def test_a_resume_refuses_when_production_no_longer_serves_what_it_verified(world):
    """The observed sequence: an older release stopped after production was verified; a newer
    one was killed in its smoke test with a broken build serving. Resuming the older one reused
    its smoke result and ended RELEASED on the broken build."""
    older = Runner(world)
    older.wait_for_line(starting("[8/9]"))  # production verified; the CEO is about to be told
    os.kill(older.proc.pid, signal.SIGTERM)
    out, err = older.finish()
    assert older.proc.returncode == 130, out + err
    newer = Runner(world, "--break", "production:wrong_api_key")
    newer.wait_for_line(starting("[7/9]"))
    os.kill(newer.proc.pid, signal.SIGKILL)
    newer.finish()
    broken = world.platform().status(PRODUCTION).image_ref
    sealed = world.runbook("seal", "--abandoned", newer.release_id, "--outputs", str(world.outputs))
    assert sealed.returncode == 5, sealed.stdout + sealed.stderr
    count = len(world.release_dirs())
    resumed = world.runbook("release", "--resume", older.release_id, "--outputs", str(world.outputs))
    assert resumed.returncode == 2, resumed.stdout + resumed.stderr
    [line] = resumed.stderr.strip().splitlines()
    assert f"production no longer serves what release {older.release_id} verified" in line and broken in line
    assert len(world.release_dirs()) == count, "nothing written"
    assert world.platform().status(PRODUCTION).image_ref == broken, "nothing deployed"
    # Put the good build back for the tests after this one.
    assert world.release().returncode == 0


def test_a_runner_killed_after_production_changed_is_sealed_as_needing_a_person_and_resume_restores_the_good_build(
    tmp_path,
):
    world = make_rehearsal(tmp_path, wait_timeout_s=4)
    try:
        assert world.release().returncode == 0
        good = world.platform().status(PRODUCTION).image_ref
        runner = Runner(world, "--break", "production:wrong_api_key")
        runner.wait_for_line(starting("[7/9]"))  # the broken build serves; its smoke test runs
        os.kill(runner.proc.pid, signal.SIGKILL)
        runner.finish()
        killed = runner.release_id
        broken = world.platform().status(PRODUCTION).image_ref
        assert broken != good
        sealed = world.runbook("seal", "--abandoned", killed, "--outputs", str(world.outputs))
        assert sealed.returncode == 5, sealed.stdout + sealed.stderr
        manifest = manifest_of(world.outputs / PRODUCTION / killed)
        assert "it may serve the failed build" in manifest["reason"] and "a person must act" in manifest["reason"]
        assert good in manifest["reason"]
        resumed = world.runbook("release", "--resume", killed, "--outputs", str(world.outputs))
        assert resumed.returncode == 4, resumed.stdout + resumed.stderr
        newest = world.release_dirs()[-1]
        before = read_section_result(newest, "deploy_production")["records"]["serving_before"]
        assert before["image_ref"] == good, "the resume carries what served before the release it resumes"
        assert world.platform().status(PRODUCTION).image_ref == good
    finally:
        world.platform().stop()


# -- in a kernel, as JupyterLab runs the cells --------------------------------------------------


def section(world, kind: str, folder: Path, **more):
    from hotdash_release.runbook import open_section

    return open_section(kind, config_path=str(world.config), release_dir=str(folder), operator="erin", **more)


def test_out_of_order_sections_never_probe_a_remote_url_nor_tell_the_ceo(world, tmp_path):
    folder = tmp_path / "session"
    with live_release(folder):
        smoke = section(world, "smoke_test", folder, environment="production")
        with pytest.raises(Refused, match="production was not deployed in this release"):
            smoke.smoke_test()
        notify = section(world, "notify", folder)
        with pytest.raises(Refused, match="refused, nothing sent: production was not deployed and verified"):
            notify.notify()
    inbox = world.outputs / "notifications.log"
    assert "session" not in (inbox.read_text() if inbox.exists() else "")
    assert read_section_result(folder, "notify")["outcome"] == "refused"
    assert "fly.dev" not in json.dumps(read_section_result(folder, "production_smoke"))


def plan_up_to_go(world, folder: Path, call: str = "Go") -> None:
    """Sections 1-5 as a person runs them in JupyterLab, with a decision recorded."""
    from hotdash_release.results import utc_now

    run = section(world, "preflight", folder)
    run.checklist(), run.readiness(), run.gate()
    run = section(world, "verify_secrets", folder)
    run.verify_secrets(), run.gate()
    run = section(world, "deploy", folder, environment="staging")
    run.deploy(), run.check_health(), run.gate()
    run = section(world, "smoke_test", folder, environment="staging")
    run.smoke_test(), run.gate()
    attestation = {"check": call, "by": "erin", "at": utc_now(), "note": f"{call} after the checks"}
    run = section(world, "go_no_go", folder, attestations=[attestation])
    run.go_no_go()
    if call == "Go":
        run.gate()


def test_an_app_the_local_platform_never_ran_is_a_refusal_never_the_configured_url(tmp_path):
    """The release's record says staging was deployed, but this local platform has never run it
    (its state was reset): the checks refuse in one line instead of falling back to the configured
    https://...fly.dev URL, which is what sent a rehearsal's requests to the real production."""
    fresh = make_rehearsal(tmp_path / "fresh")
    folder = tmp_path / "session"
    write_json_atomic(
        results_path(folder, "deploy_staging"),
        {"outcome": "passed", "records": {"deployment": {"ok": True, "image_ref": "x"}}},
    )
    events.note_result(folder, "deploy_staging", by="erin", outcome="passed")
    smoke = section(fresh, "smoke_test", folder, environment="staging")
    with pytest.raises(Refused, match="hotdash-staging is not running on the local target"):
        smoke.smoke_test()
    assert "fly.dev" not in (folder / "results" / "staging_smoke.json").read_text()


def test_a_decision_changed_after_the_deploy_never_hides_the_go_it_ran_under(world, tmp_path):
    """Go, 06 deployed, then a No-go: the record keeps both, in order, and the deploy's record and
    the report show the GO the deploy ran under."""
    from hotdash_release.archive.report import decision_timeline
    from hotdash_release.results import read_all_results, utc_now

    folder = tmp_path / "session"
    good = world.platform().status(PRODUCTION).image_ref
    try:
        with live_release(folder):
            plan_up_to_go(world, folder)
            deploy = section(world, "deploy", folder, environment="production")
            assert deploy.deploy().ok
            no_go = {"check": "No-go", "by": "erin", "at": utc_now(), "note": "changed my mind"}
            section(world, "go_no_go", folder, attestations=[no_go]).go_no_go()
        taken = events.decisions(folder)
        assert [d["decision"] for d in taken] == ["GO", "NO-GO"] and all(d["by"] == "erin" for d in taken)
        ran_under = read_section_result(folder, "deploy_production")["records"]["ran_under_decision"]
        assert ran_under["decision"] == "GO" and ran_under == taken[0]
        page = decision_timeline(folder, read_all_results(folder))
        assert "the production deploy ran under this decision" in page
        assert "recorded after production was deployed" in page and "changed my mind" in page
    finally:
        world.platform().deploy(PRODUCTION, image=good, wait_timeout_s=10)


def test_the_event_log_is_a_chain_a_changed_line_breaks(tmp_path):
    for n in range(3):
        events.append(tmp_path, "note", by="x", n=n)
    assert not events.read_events(tmp_path).problems
    lines = (tmp_path / events.EVENTS).read_text().splitlines()
    lines[1] = lines[1].replace('"n": 1', '"n": 9')
    (tmp_path / events.EVENTS).write_text("\n".join(lines) + "\n")
    assert "line 3 does not follow line 2" in events.read_events(tmp_path).problems[0]


def test_the_log_refuses_a_sealed_release(tmp_path):
    (tmp_path / "manifest.json").write_text("{}")
    with pytest.raises(UsageError, match="read-only"):
        events.append(tmp_path, "note", by="x")


def test_a_live_release_is_one_a_process_holds_now(tmp_path):
    assert live_holder(tmp_path) is None
    with live_release(tmp_path):
        assert live_holder(tmp_path) == os.getpid()
    assert live_holder(tmp_path) is None


def test_readme_shows_the_precondition_table_from_the_code():
    assert actions_markdown() in README.read_text()
    assert len(ACTIONS) >= 5


def test_a_deploy_refusal_is_one_line_naming_what_to_run(world, tmp_path):
    folder = tmp_path / "empty"
    with live_release(folder):
        run = section(world, "deploy", folder, environment="production")
        with pytest.raises(DeployRefused) as refused:
            run.deploy()
    assert "\n" not in str(refused.value) and "verify_secrets has no result in this release: run it" in str(
        refused.value
    )


def test_a_notebook_cut_off_by_the_runners_death_is_kept_and_the_release_still_sealed(world):
    """A runner killed while papermill was saving its notebook leaves a file that is not JSON;
    the seal keeps it byte for byte beside the record (and says so) instead of failing."""
    runner = Runner(world)
    runner.wait_for_line(starting("[3/9]"))
    os.kill(runner.proc.pid, signal.SIGKILL)
    runner.finish()
    folder = world.outputs / PRODUCTION / runner.release_id
    notebook = folder / "03-deploy_staging.ipynb"
    notebook.write_text('{"cells": [{"cell_type": "code", "sou')  # as a write cut off mid-way leaves it
    sealed = world.runbook("seal", "--abandoned", runner.release_id, "--outputs", str(world.outputs))
    assert sealed.returncode == 0, sealed.stdout + sealed.stderr
    manifest = manifest_of(folder)
    assert manifest["outcome"] == "aborted" and "03-deploy_staging.ipynb.partial" in manifest["reason"]
    assert (folder / "03-deploy_staging.ipynb.partial").read_text().endswith('"sou')
    assert world.runbook("verify", "--outputs", str(world.outputs)).returncode == 0


def test_the_ceo_is_not_told_again_after_a_deploy_its_smoke_test_did_not_follow(world, tmp_path):
    """Found by the model test: deploy, smoke test, notify; deploy production again; notify again
    told the CEO "deployed" about a build no smoke test had checked."""
    folder = tmp_path / "session"
    good = world.platform().status(PRODUCTION).image_ref
    try:
        with live_release(folder):
            plan_up_to_go(world, folder)
            for _ in range(2):  # the deploy, then the deploy run again after the CEO was told
                deploy = section(world, "deploy", folder, environment="production")
                deploy.deploy(), deploy.check_health(), deploy.gate()
                if not (folder / "results" / "notify.json").exists():
                    smoke = section(world, "smoke_test", folder, environment="production")
                    smoke.smoke_test(), smoke.gate()
                    assert section(world, "notify", folder).notify().ok
            with pytest.raises(Refused, match="production_smoke ran before the last deploy_production"):
                section(world, "notify", folder).notify()
    finally:
        world.platform().deploy(PRODUCTION, image=good, wait_timeout_s=10)


# -- the report says one thing per outcome ---------------------------------------------------------------


def test_the_report_never_headlines_a_go_its_gate_did_not_pass_and_calls_a_refusal_refused():
    """Observed: report.html headlined "Go/No-Go decision GO" on a BLOCKED release (the GO was
    recorded, the gate never passed) and listed the production deploy as FAILED in one table and
    REFUSED in another."""
    from hotdash_release.archive.report import deployments_section, go_no_go_section

    decided = {"decision": "GO", "ok": True, "explanation": "Go by alice"}
    undecided_gate = {"go_no_go": {"outcome": "running", "records": {"decision": decided}}}
    headline = go_no_go_section(undecided_gate)
    assert "badge go'" not in headline and "badge nogo'" in headline and ">RUNNING<" in headline
    assert "did not pass" in headline
    assert "did not pass" not in go_no_go_section({"go_no_go": {"outcome": "passed", "records": {"decision": decided}}})

    refused = {
        "deploy_production": {
            "title": "Deploy production",
            "outcome": "refused",
            "records": {"preconditions": {"ok": False, "detail": "no standing GO"}},
        }
    }
    table = deployments_section(refused)
    assert ">REFUSED<" in table and ">FAILED<" not in table
