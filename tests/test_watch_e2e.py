"""The post-deployment watch in whole releases on the local platform: a good release's watch
passes and its report shows the chart; builds that pass the smoke test and go wrong later
(degrades_after, error_logs) are caught and rolled back; on_breach = "alert" only tells; a
signal during the watch keeps a complete, sealed record; GitHub issues opened since the release
come from a loopback GitHub API."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import time

import pytest
from conftest import RUNBOOK_COMMAND, make_rehearsal, run_cli, wait_for
from loopback import LoopbackServer, Reply
from test_release_fly_e2e import PRODUCTION as FLY_PRODUCTION
from test_release_fly_e2e import make_fly_world, release_with_production_deploy_fault

#: Long enough for the late defects to show (they wait DEGRADE_AFTER seconds after the app starts).
WATCH = {"watch_minutes": 0.1, "watch_interval_s": 0.5}
DEGRADE_AFTER = "1.5"


def manifest_of(folder):
    return json.loads((folder / "manifest.json").read_text())


def result_of(folder, key):
    return json.loads((folder / "results" / f"{key}.json").read_text())


def release(world, *args, env=None):
    return run_cli(
        "release",
        "--config",
        str(world.config),
        "--outputs",
        str(world.outputs),
        *args,
        extra_env={"HOTDASH_DEGRADE_AFTER_SECONDS": DEGRADE_AFTER, **(env or {})},
    )


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    world = make_rehearsal(tmp_path_factory.mktemp("watch"), wait_timeout_s=8, **WATCH)
    done = release(world)
    assert done.returncode == 0, done.stdout + done.stderr
    yield world
    world.platform().stop()


def test_a_good_release_is_watched_and_the_report_shows_it(released):
    folder = released.release_dirs()[0]
    assert [s["key"] for s in manifest_of(folder)["sections"]][-1] == "watch"
    watch = result_of(folder, "watch")["records"]["watch"]
    assert watch["ok"] and watch["availability_pct"] == 100 and len(watch["measurements"]) == 12
    report = (folder / "report.html").read_text()
    assert "<h2>Post-deployment watch</h2>" in report and "<svg" in report.split("Post-deployment watch")[1]
    inbox = (released.outputs / "notifications.log").read_text()
    assert "Production is watched until" in inbox and "the watch of release" in inbox and "conditions met" in inbox


def caught_by_the_watch_and_rolled_back(done, world) -> tuple:
    """A release whose build passed its smoke test, failed the watch and was rolled back (exit
    4): the assertions both targets share; its folder and the watch's record, for the rest."""
    assert done.returncode == 4, done.stdout + done.stderr
    folder = world.release_dirs()[-1]
    sections = {s["key"]: s["outcome"] for s in manifest_of(folder)["sections"]}
    assert sections["production_smoke"] == "passed" and sections["watch"] == "failed"
    assert sections["rollback"] == "passed"
    return folder, result_of(folder, "watch")["records"]["watch"]


@pytest.mark.parametrize(
    ("defect", "evidence"),
    [("degrades_after", "HTTP 503"), ("error_logs", "error lines")],
)
def test_a_build_that_goes_wrong_after_the_smoke_test_is_caught_and_rolled_back(released, defect, evidence):
    good_image = released.platform().status("hotdash-production").image_ref
    done = release(released, "--break", f"production:{defect}")
    folder, watch = caught_by_the_watch_and_rolled_back(done, released)
    assert not watch["ok"] and any(evidence in b["what"] for b in watch["breaches"])
    assert released.platform().status("hotdash-production").image_ref == good_image
    assert "rolled back" in manifest_of(folder)["reason"]
    closing = (released.outputs / "notifications.log").read_text().splitlines()[-1]
    assert "production is being rolled back" in closing


def watch_again(world, release_id, *args):
    return run_cli("watch", release_id, "--config", str(world.config), "--outputs", str(world.outputs), *args)


def test_a_sealed_release_is_watched_again_as_a_record_of_its_own(released):
    first = released.release_dirs()[0]
    done = watch_again(released, first.name, "--minutes", "0.02")
    assert done.returncode == 0, done.stdout + done.stderr
    folder = released.release_dirs()[-1]
    manifest = manifest_of(folder)
    assert manifest["watched_release"] == first.name and manifest["outcome"] == "watched"
    assert [(s["key"], s["outcome"]) for s in manifest["sections"]] == [("watch", "passed")]
    records = result_of(folder, "watch")["records"]
    assert records["watched_release"]["release_id"] == first.name
    assert records["watch"]["ok"] and records["watch"]["planned_s"] == pytest.approx(1.2)
    assert f'href="../{first.name}/report.html"' in (folder / "report.html").read_text()
    # Sealed and chained after the releases before it; the index lists it beside the release.
    assert manifest["previous_release_id"] == released.release_dirs()[-2].name
    assert run_cli("verify", "--outputs", str(released.outputs)).returncode == 0
    assert folder.name in (released.outputs / "index.html").read_text()
    assert "WATCHED (exit 0)" in done.stdout
    inbox = (released.outputs / "notifications.log").read_text().splitlines()[-2:]
    assert f"production is watched again for release {first.name} until about" in inbox[0]
    assert f"the watch of release {first.name} is over" in inbox[1] and "conditions met" in inbox[1]


@pytest.mark.parametrize(
    ("which", "args", "message"),
    [
        ("20990101T000000Z-abcdef", (), "is not a sealed release"),
        ("rolled back", (), "only a released release can be watched"),
        ("first", ("--minutes", "-1"), "watch_minutes: must be between 0"),
        ("first", ("--minutes", "nan"), "watch_minutes: must be a number"),
        ("first", ("--minutes", "1441"), "watch_minutes: must be between 0 (the configured window) and 1440"),
        ("not-an-id", (), "release id"),
    ],
)
def test_watching_what_cannot_be_watched_is_refused_in_one_line_and_writes_nothing(released, which, args, message):
    folders = released.release_dirs()
    if which == "first":
        which = folders[0].name
    elif which == "rolled back":
        which = next(f.name for f in folders if manifest_of(f)["outcome"] == "rolled back")
    done = watch_again(released, which, *args)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in done.stderr and len(done.stderr.strip().splitlines()) == 1
    assert released.release_dirs() == folders


def test_a_release_production_no_longer_serves_is_not_watched(released):
    first = released.release_dirs()[0]
    platform = released.platform()
    serving = platform.status("hotdash-production").image_ref
    other = platform.deploy("hotdash-production", build_args={"HOTDASH_VERSION": "hand-made"}, wait_timeout_s=20)
    folders = released.release_dirs()
    try:
        assert other.image_ref != serving
        done = watch_again(released, first.name)
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"production no longer serves release {first.name}" in done.stderr
        assert released.release_dirs() == folders
    finally:
        platform.deploy("hotdash-production", image=serving, wait_timeout_s=20)


def test_a_tampered_release_is_not_watched(released, tmp_path):
    # A copy of the archive in which the first release's production deploy names another image.
    outputs = tmp_path / "outputs"
    shutil.copytree(released.outputs, outputs)
    folders = sorted(p for p in (outputs / "hotdash-production").iterdir() if p.is_dir())
    recorded = folders[0] / "results" / "deploy_production.json"
    result = json.loads(recorded.read_text())
    result["records"]["deployment"]["image_ref"] = "rehearsal.local/hotdash@sha256:" + "0" * 64
    recorded.write_text(json.dumps(result))
    done = run_cli("watch", folders[0].name, "--config", str(released.config), "--outputs", str(outputs))
    assert done.returncode == 2, done.stdout + done.stderr
    assert "does not verify (modified file results/deploy_production.json" in done.stderr
    assert sorted(p for p in (outputs / "hotdash-production").iterdir() if p.is_dir()) == folders


def test_a_signal_during_a_later_watch_keeps_a_sealed_record_of_it(released):
    first, before = released.release_dirs()[0], set(released.release_dirs())
    runner = subprocess.Popen(
        [*RUNBOOK_COMMAND, "watch", first.name, "--minutes", "5"]
        + ["--config", str(released.config), "--outputs", str(released.outputs)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    # This watch's own folder: earlier tests' later watches left theirs.
    assert wait_for(
        lambda: any(p.parent not in before for p in (released.outputs / "hotdash-production").glob("*/01-watch.ipynb")),
        timeout_s=60,
    )
    time.sleep(1.5)  # a few measurements into a five-minute window
    runner.send_signal(signal.SIGTERM)
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == 130, out + err
    (folder,) = set(released.release_dirs()) - before
    watch = result_of(folder, "watch")["records"]["watch"]
    assert watch["ended_early"] == "interrupted" and watch["measurements"]
    assert manifest_of(folder)["watched_release"] == first.name
    assert run_cli("verify", "--outputs", str(released.outputs)).returncode == 0


def test_a_later_watch_that_finds_production_down_rolls_back_to_what_served_before_it(released):
    before = released.platform().status("hotdash-production").image_ref
    assert release(released).returncode == 0
    second = released.release_dirs()[-1]
    # Production's machine dies during the second round of testing (the same build: one image).
    os.kill(released.platform().status("hotdash-production").machines[0]["pid"], signal.SIGKILL)
    done = watch_again(released, second.name, "--minutes", "0.05")
    assert done.returncode == 4, done.stdout + done.stderr
    folder = released.release_dirs()[-1]
    assert [(s["key"], s["outcome"]) for s in manifest_of(folder)["sections"]] == [
        ("watch", "failed"),
        ("rollback", "passed"),
    ]
    restored = released.platform().status("hotdash-production")
    assert restored.state == "started" and restored.image_ref == before
    rollback = result_of(folder, "rollback")["records"]["rollback"]
    assert rollback["ok"] and rollback["to_image"] == before and rollback["new_version"] is not None
    assert manifest_of(folder)["watched_release"] == second.name


def test_on_fly_a_build_that_degrades_is_caught_by_the_watch_and_rolled_back(tmp_path):
    # The fly target against the stand-in flyctl: health from /health, error lines from
    # `fly logs --json`, machines from `fly status --json`, checks from `fly checks list --json`.
    # flyctl's round trips make a deploy slower than on the local target: the build degrades later.
    world = make_fly_world(tmp_path, watch_minutes=0.2, watch_interval_s=0.5)
    world.env["HOTDASH_DEGRADE_AFTER_SECONDS"] = "6"
    try:
        good = world.release()
        assert good.returncode == 0, good.stdout + good.stderr
        good_image = world.target().status(FLY_PRODUCTION).image_ref
        watched = result_of(world.release_dirs()[-1], "watch")["records"]["watch"]
        assert watched["ok"] and watched["restarts"] == 0 and watched["critical_checks"] == 0

        done = release_with_production_deploy_fault(world, "defect:degrades_after")
        _, watch = caught_by_the_watch_and_rolled_back(done, world)
        failed = [m for m in watch["measurements"] if not m["ok"]]
        # Our /health request and the platform's own check (the stand-in probes /health as Fly
        # does, a moment later in each measurement) both saw it.
        assert any("HTTP 503" in m["detail"] for m in failed)
        assert watch["critical_checks"] >= 1 and "health checks critical" in failed[-1]["detail"]
        commands = [c["argv"][:2] for c in world.fake.calls()]
        assert ["checks", "list"] in commands and ["logs", "--app"] in commands
        assert world.target().status(FLY_PRODUCTION).image_ref == good_image
    finally:
        world.stop()


def test_on_breach_alert_tells_and_keeps_the_release(tmp_path):
    world = make_rehearsal(tmp_path, wait_timeout_s=8, edits={'on_breach = "rollback"': 'on_breach = "alert"'}, **WATCH)
    try:
        assert release(world).returncode == 0
        done = release(world, "--break", "production:error_logs")
        assert done.returncode == 0, done.stdout + done.stderr
        folder = world.release_dirs()[-1]
        result = result_of(folder, "watch")
        assert result["outcome"] == "passed" and not result["records"]["watch"]["ok"]
        assert any("watch breached (on_breach = alert)" in w for w in result["warnings"])
        assert "rollback" not in {s["key"] for s in manifest_of(folder)["sections"]}
        assert "please hold" in (world.outputs / "notifications.log").read_text().splitlines()[-1]
    finally:
        world.platform().stop()


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_a_signal_during_the_watch_ends_it_early_and_keeps_a_sealed_record(tmp_path, signum):
    world = make_rehearsal(tmp_path, wait_timeout_s=8, watch_minutes=5, watch_interval_s=0.5)
    try:
        runner = subprocess.Popen(
            [*RUNBOOK_COMMAND, "release", "--config", str(world.config), "--outputs", str(world.outputs)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        watching = world.outputs / "hotdash-production"
        assert wait_for(lambda: any(watching.glob("*/09-watch.ipynb")), timeout_s=60)
        time.sleep(1.5)  # a few measurements into a five-minute window
        runner.send_signal(signum)
        out, err = runner.communicate(timeout=60)
        assert runner.returncode == 130, out + err
        assert len(err.strip().splitlines()) == 1, err
        folder = world.release_dirs()[0]
        watch = result_of(folder, "watch")["records"]["watch"]
        assert watch["ended_early"] == "interrupted" and watch["measurements"] and watch["watched_s"] < 60
        assert manifest_of(folder)["signals"][0]["during"].startswith("Post-deployment")
        assert run_cli("verify", "--outputs", str(world.outputs)).returncode == 0
    finally:
        world.platform().stop()


def test_issues_opened_on_github_since_the_release_are_in_the_record_and_the_report(tmp_path):
    with LoopbackServer() as github:
        github.routes["/repos/hotdash/hotdash/issues"] = lambda request: Reply.json(
            [
                {
                    "number": 41,
                    "title": "Dashboard shows no orders",
                    "state": "open",
                    "user": {"login": "ceo"},
                    "labels": [{"name": "ceo-feedback"}],
                    "created_at": "2999-01-01T00:00:00Z",
                    "html_url": "https://github.com/hotdash/hotdash/issues/41",
                }
            ]
        )
        world = make_rehearsal(tmp_path, wait_timeout_s=8, **WATCH)
        text = world.config.read_text()
        world.config.write_text(
            text.replace("[github]", '[github]\nrepo = "hotdash/hotdash"\nfeedback_labels = ["ceo-feedback"]', 1)
        )
        try:
            done = release(
                world, env={"GITHUB_TOKEN": "ghp_feedbacktoken123", "HOTDASH_GITHUB_API_URL": github.base_url}
            )
            assert done.returncode == 0, done.stdout + done.stderr
            folder = world.release_dirs()[0]
            feedback = result_of(folder, "watch")["records"]["feedback"]
            assert feedback["ok"] and [i["number"] for i in feedback["issues"]] == [41]
            assert github.received[0].query["labels"] == "ceo-feedback"
            assert "Dashboard shows no orders" in (folder / "report.html").read_text()
            assert "ghp_feedbacktoken123" not in "".join(
                p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file()
            )
        finally:
            world.platform().stop()
