"""Faults, locks, resume and overrides, each through the real CLI: the exit code, the state
of the archive, and no process left behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from conftest import assert_canonical_notebooks, make_rehearsal, run_cli, with_database

from hotdash_release.archive.integrity import verify_release
from hotdash_release.locks import lock_paths, release_lock
from hotdash_release.secrets.required import rehearsal_secret_values


def manifest_of(folder):
    return json.loads((folder / "manifest.json").read_text())


def result_of(folder, key):
    return json.loads((folder / "results" / f"{key}.json").read_text())


@pytest.fixture
def world(tmp_path):
    world = make_rehearsal(tmp_path, wait_timeout_s=4)
    yield world
    world.platform().stop()


@pytest.fixture(scope="module")
def released(tmp_path_factory):
    """A platform with one good release, for faults that need something to roll back to."""
    world = make_rehearsal(tmp_path_factory.mktemp("faults"), wait_timeout_s=4)
    done = world.release()
    assert done.returncode == 0, done.stdout + done.stderr
    yield world
    world.platform().stop()


# -- one release at a time ---------------------------------------------------------------


def test_second_release_of_the_same_app_fails_fast_naming_the_holder(world):
    lock_dir = world.platform().release_lock_dir
    with release_lock(lock_dir, "hotdash-production", release_id="20261125T000000Z-abcdef", operator="alice"):
        done = world.release()
    assert done.returncode == 6, done.stdout + done.stderr
    assert "alice" in done.stderr and "20261125T000000Z-abcdef" in done.stderr and "since" in done.stderr
    assert world.platform().releases("hotdash-staging") == []
    assert not lock_paths(lock_dir, "hotdash-production")[1].exists()


def test_a_lock_left_by_a_runner_that_died_is_taken_over_and_recorded(world):
    lock_dir = world.platform().release_lock_dir
    lock_dir.mkdir(parents=True)
    lock_paths(lock_dir, "hotdash-production")[1].write_text(
        json.dumps(
            {
                "pid": 999999,
                "host": os.uname().nodename,
                "operator": "bob",
                "release_id": "20261125T000000Z-dead00",
                "since": "2026-11-25T00:00:00Z",
            }
        )
    )
    done = world.release()
    assert done.returncode == 0, done.stdout + done.stderr
    assert "took over the release lock" in done.stdout
    folder = world.release_dirs()[0]
    assert manifest_of(folder)["lock"]["taken_over_from"]["operator"] == "bob"
    assert not lock_paths(lock_dir, "hotdash-production")[1].exists()


# -- resume ----------------------------------------------------------------------------------


def test_resume_continues_from_the_failed_section_reusing_recorded_results(world):
    platform = world.platform()
    for app in ("hotdash-staging", "hotdash-production"):
        values = rehearsal_secret_values(app)
        if app == "hotdash-production":
            values.pop("SCOPES")
        platform.set_secrets(app, with_database(platform, app, values))
    blocked = world.release()
    assert blocked.returncode == 3
    first = world.release_dirs()[0]

    platform.set_secrets("hotdash-production", {"SCOPES": "read_products"})
    resumed = world.runbook("release", "--resume", first.name, "--outputs", str(world.outputs))
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    second = world.release_dirs()[-1]
    manifest = manifest_of(second)
    assert manifest["resumed_from"] == first.name and manifest["outcome"] == "released"
    reused = {s["key"]: s["reused_from"] for s in manifest["sections"]}
    assert reused["preflight"] == first.name and reused["verify_secrets"] is None
    assert (second / "01-preflight.html").read_bytes() == (first / "01-preflight.html").read_bytes()
    assert not verify_release(second)


def test_resume_is_refused_when_the_configuration_changed(world):
    world.platform().set_secrets("hotdash-production", {"SCOPES": "x" * 8})  # others missing: blocked
    assert world.release().returncode == 3
    first = world.release_dirs()[0]
    world.config.write_text(world.config.read_text() + "\n# a change after the release\n")
    done = world.runbook("release", "--resume", first.name, "--outputs", str(world.outputs))
    assert done.returncode == 2 and "changed since release" in done.stderr


def test_resume_is_refused_for_a_released_release_and_with_conflicting_flags(released):
    first = released.release_dirs()[0]
    done = released.runbook("release", "--resume", first.name, "--outputs", str(released.outputs))
    assert done.returncode == 2 and "nothing to resume" in done.stderr
    done = released.release("--resume", first.name)
    assert done.returncode == 2 and "drop --config" in done.stderr
    done = released.runbook("release", "--resume", "20991231T000000Z-000000", "--outputs", str(released.outputs))
    assert done.returncode == 2 and "no release" in done.stderr


# -- faults --------------------------------------------------------------------------------


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_during_a_release_aborts_kills_children_and_archives_where(world, sig):
    # A slow staging build answers its health check after 2.5 s, so the signal surely comes
    # while the deploy waits for it (a good build deploys in well under a second).
    command = [
        sys.executable,
        "-m",
        "hotdash_release.cli",
        "release",
        "--config",
        str(world.config),
        "--outputs",
        str(world.outputs),
        "--break",
        "staging:slow",
    ]
    runner = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    children = []
    deadline = time.monotonic() + 120
    for line in runner.stdout:
        if line.startswith("[3/9]") and line.rstrip().endswith("..."):
            time.sleep(0.5)
            # The runner's own processes (kernel template, kernels, export worker). An app the
            # deploy started belongs to the platform and outlives releases, as on Fly.
            children = [
                child
                for child in psutil.Process(runner.pid).children(recursive=True)
                if str(world.state_dir) not in _command_line(child)
            ]
            runner.send_signal(sig)
            break
        assert time.monotonic() < deadline
    out, err = runner.communicate(timeout=60)
    assert runner.returncode == 130, out + err
    assert children, "the section's kernel was running when the signal came"
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"children left running: {alive}"
    folder = world.release_dirs()[0]
    manifest = manifest_of(folder)
    assert manifest["outcome"] == "aborted"
    assert sig.name in manifest["reason"] and "Deploy to staging" in manifest["reason"]
    assert not lock_paths(world.platform().release_lock_dir, "hotdash-production")[1].exists()
    assert (folder / "report.html").is_file() and not verify_release(folder)
    assert_canonical_notebooks(folder)  # the aborted section's notebook too


def test_a_kernel_that_dies_stops_the_release_with_an_archive(world, tmp_path):
    """A kernelspec whose kernel exits the moment a cell asks it to deploy."""
    kernels = tmp_path / "jupyter" / "kernels" / "dies-on-deploy"
    kernels.mkdir(parents=True)
    die_on_deploy = (
        "get_ipython().events.register('pre_run_cell', "
        "lambda info: os._exit(9) if 'run.deploy(' in info.raw_cell else None)"
    )
    (kernels / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [
                    sys.executable,
                    "-m",
                    "ipykernel_launcher",
                    "-f",
                    "{connection_file}",
                    "--IPKernelApp.exec_lines=import os",
                    f"--IPKernelApp.exec_lines={die_on_deploy}",
                ],
                "display_name": "dies when asked to deploy",
                "language": "python",
            }
        )
    )
    done = run_cli(
        "release",
        "--config",
        str(world.config),
        "--outputs",
        str(world.outputs),
        "--kernel",
        "dies-on-deploy",
        extra_env={"JUPYTER_PATH": str(tmp_path / "jupyter")},
        timeout=120,
    )
    # A kernel that dies is not a gate's decision: an internal error (exit 1), sealed all the same.
    assert done.returncode == 1, done.stdout + done.stderr
    folder = world.release_dirs()[0]
    manifest = manifest_of(folder)
    assert manifest["outcome"] == "error"
    assert [s["outcome"] for s in manifest["sections"]] == ["passed", "passed", "error"]
    assert "DeadKernelError" in manifest["sections"][2]["error"]
    assert "Deploy to staging" in manifest["reason"]
    assert (folder / "03-deploy_staging.html").is_file() and not verify_release(folder)
    assert_canonical_notebooks(folder)
    # The notebook says what the manifest says: the deploy cell failed, nothing after it ran.
    notebook = json.loads((folder / "03-deploy_staging.ipynb").read_text())
    assert notebook["metadata"]["papermill"]["exception"] is True
    code = [c for c in notebook["cells"] if c["cell_type"] == "code"]
    dying = next(i for i, c in enumerate(code) if "run.deploy(" in "".join(c["source"]))
    assert code[dying]["metadata"]["papermill"]["status"] == "failed"
    assert code[dying]["outputs"][-1]["ename"] == "DeadKernelError"
    assert {c["metadata"]["papermill"]["status"] for c in code[dying + 1 :]} == {"pending"}
    assert "DeadKernelError" in (folder / "03-deploy_staging.html").read_text()
    assert world.platform().releases("hotdash-staging") == []


def test_notification_endpoint_down_is_reported_without_undoing_the_release(tmp_path):
    world = make_rehearsal(tmp_path, edits={'channel = "file"': 'channel = "slack"'})
    try:
        done = run_cli(
            "release",
            "--config",
            str(world.config),
            "--outputs",
            str(world.outputs),
            extra_env={"HOTDASH_SLACK_WEBHOOK_URL": "http://127.0.0.1:9/hooks/closed"},
        )
        assert done.returncode == 0, done.stdout + done.stderr
        folder = world.release_dirs()[0]
        assert "notification failed" in manifest_of(folder)["reason"]
        notification = result_of(folder, "notify")["records"]["notification"]
        assert notification["ok"] is False and "unreachable" in notification["detail"]
        assert "127.0.0.1:9" not in (folder / "report.html").read_text()
    finally:
        world.platform().stop()


@pytest.mark.parametrize(
    "defect,evidence",
    [
        ("health_malformed", "malformed JSON"),
        ("health_stale", "s old (max 120 s)"),
        ("health_flapping", "Health contract"),
    ],
)
def test_health_faults_in_production_roll_back(released, defect, evidence):
    done = released.release("--break", f"production:{defect}")
    assert done.returncode == 4, done.stdout + done.stderr
    folder = released.release_dirs()[-1]
    failures = " ".join(f for s in manifest_of(folder)["sections"] for f in s["failures"])
    assert evidence in failures
    if defect == "health_flapping":
        # The health check rode out the flap by retrying; the smoke test then caught it.
        assert result_of(folder, "deploy_production")["records"]["health"]["attempts"] >= 2


def test_skipping_the_staging_check_needs_a_reason_and_is_shown_as_an_override(released):
    done = released.release("--skip-staging-check")
    assert done.returncode == 2 and "--reason" in done.stderr
    done = released.release("--skip-staging-check", "--reason", "hotfix for checkout outage")
    assert done.returncode == 0, done.stdout + done.stderr
    folder = released.release_dirs()[-1]
    sections = {s["key"]: s["outcome"] for s in manifest_of(folder)["sections"]}
    assert sections["staging_smoke"] == "skipped"
    criteria = result_of(folder, "go_no_go")["records"]["criteria"]["rows"]
    smoke = next(c for c in criteria if c["criterion"].startswith("Core functionality"))
    assert smoke["verdict"] == "overridden" and "hotfix for checkout outage" in smoke["override"]


def _command_line(process: psutil.Process) -> str:
    try:
        return " ".join(process.cmdline())
    except psutil.Error:  # gone, or a zombie waiting to be reaped
        return ""


def test_a_release_runs_with_a_temp_folder_too_long_for_socket_paths(world, tmp_path):
    """Kernel sockets once lived under $TMPDIR, and a long one (over ~66 characters) stopped
    every release with 'File name too long'."""
    long_tmp = tmp_path / ("temp-" * 20)
    long_tmp.mkdir()
    done = run_cli(
        "release",
        "--config",
        str(world.config),
        "--outputs",
        str(world.outputs),
        extra_env={"TMPDIR": str(long_tmp)},
        timeout=120,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "forked from a kernel template" in manifest_of(world.release_dirs()[0])["kernels"]
