"""LocalPlatform against real processes and real HTTP on 127.0.0.1.

Most tests deploy tests/fixtures/tiny_app.py, which starts in milliseconds; one deploys
the real stand-in app when it exists. No test leaves a process behind: the fixture stops
every app at teardown and checks that no recorded pid and no process started from the
state directory still runs.
"""

from __future__ import annotations

import getpass
import hashlib
import json
import os
import re
import shutil
import signal
import stat
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from conftest import wait_for

from hotdash_release.errors import DeployError, RollbackError, UsageError
from hotdash_release.targets.base import AppStatus, Target, machines_on_image
from hotdash_release.targets.local import STANDIN_APP, LocalPlatform

TINY_APP = Path(__file__).parent / "fixtures" / "tiny_app.py"
APP = "hotdash-staging"
DATABASE_URL = "postgres://rehearsal:not-a-real-password@127.0.0.1:5432/hotdash"


# -- helpers and fixtures ------------------------------------------------------------


def get(url: str) -> httpx.Response:
    return httpx.get(url, timeout=5, trust_env=False)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()[:16]


def is_running(pid: int) -> bool:
    """True unless the process is gone or a zombie (exited, not yet reaped)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return text[text.rindex(")") + 2] not in "ZX"


def processes_running_from(directory: Path) -> list[int]:
    """Pids of live processes whose working directory is under ``directory`` (an image dir)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cwd = Path(os.readlink(entry / "cwd"))
        except OSError:
            continue  # not a process, not ours, or a zombie without a cwd
        if cwd.is_relative_to(directory):
            found.append(int(entry.name))
    return found


def deploy(platform: LocalPlatform, version: str = "1.0.0", **build_args: str):
    return platform.deploy(APP, build_args={"HOTDASH_VERSION": version, **build_args}, wait_timeout_s=10)


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


@pytest.fixture
def open_platform(state_dir: Path):
    """Make LocalPlatforms on one state dir; at teardown stop all and prove nothing runs."""
    yield lambda app_source=TINY_APP: LocalPlatform(state_dir, app_source=app_source)
    survey = LocalPlatform(state_dir)
    recorded = [m["pid"] for app in survey.apps() for m in survey.status(app).machines]
    survey.stop()
    assert [pid for pid in recorded if is_running(pid)] == []
    assert processes_running_from(state_dir) == []


@pytest.fixture
def platform(open_platform) -> LocalPlatform:
    return open_platform()


@pytest.fixture
def staging(platform: LocalPlatform) -> LocalPlatform:
    """A platform where the app has the one secret tiny_app requires."""
    platform.set_secrets(APP, {"DATABASE_URL": DATABASE_URL})
    return platform


# -- deploy --------------------------------------------------------------------------


def test_is_a_target(platform):
    assert isinstance(platform, Target)
    assert platform.name == "local"


def test_first_deploy_makes_complete_v1_that_serves_health(staging):
    release = deploy(staging)

    assert (release.version, release.status, release.stable) == (1, "complete", True)
    assert re.fullmatch(r"rehearsal\.local/hotdash@sha256:[0-9a-f]{64}", release.image_ref)
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", release.created_at)
    assert release.user == getpass.getuser()
    assert staging.releases(APP) == [release]
    response = get(staging.url(APP) + "/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"


def test_build_json_is_canonical_and_the_image_id_is_its_sha256(staging, state_dir):
    release = deploy(staging, "1.0.0", NODE_ENV="production")

    image_dir = state_dir / "images" / release.image_ref.rsplit(":", 1)[1]
    build_json = (image_dir / "build.json").read_bytes()
    assert json.loads(build_json) == {"defect": "", "version": "1.0.0", "build_args": {"NODE_ENV": "production"}}
    assert hashlib.sha256(TINY_APP.read_bytes() + build_json).hexdigest() == image_dir.name


def test_other_build_args_make_v2_with_another_image_on_the_same_port(staging):
    v1 = deploy(staging, "1.0.0")
    url = staging.url(APP)
    v2 = deploy(staging, "1.1.0")

    assert v2.version == 2
    assert v2.image_ref != v1.image_ref
    assert staging.url(APP) == url
    assert get(url + "/build").json()["version"] == "1.1.0"
    assert [r.version for r in staging.releases(APP)] == [2, 1]


def test_same_source_and_build_args_reuse_the_image(staging, state_dir):
    v1 = deploy(staging, "1.0.0")
    v2 = deploy(staging, "1.0.0")

    assert v2.version == 2
    assert v2.image_ref == v1.image_ref
    assert len(list((state_dir / "images").iterdir())) == 1


def test_progress_lines_read_like_flyctl(staging):
    lines: list[str] = []
    release = staging.deploy(APP, strategy="rolling", wait_timeout_s=10, on_output=lines.append)

    url = staging.url(APP)
    assert lines == [
        "==> Building image",
        "--> Building image done",
        f"image: {release.image_ref}",
        f"==> Release v1 (rolling) starting on {url.removeprefix('http://')}",
        "--> v1 deployed successfully",
        f"Visit your newly deployed app at {url}/",
    ]


def test_releases_survive_a_new_platform_which_can_stop_the_old_processes(staging, open_platform):
    v1 = deploy(staging)
    pid = staging.status(APP).machines[0]["pid"]

    later = open_platform()
    assert later.releases(APP) == [v1]
    assert later.status(APP).state == "started"
    assert [s.status for s in later.secrets(APP)] == ["Deployed"]
    assert later.stop() == [APP]
    assert not is_running(pid)
    assert staging.status(APP).state == "stopped"


def test_crash_at_start_fails_the_release_and_keeps_its_log(staging):
    with pytest.raises(DeployError) as caught:
        deploy(staging, HOTDASH_DEFECT="crash_at_start")

    failed = caught.value.release
    assert (failed.version, failed.status, failed.stable) == (1, "failed", False)
    assert "exited with code 3" in str(caught.value)
    assert "crashing at start" in str(caught.value)  # the last log lines
    assert staging.releases(APP) == [failed]
    assert any("crashing at start" in line for line in staging.logs(APP, version=1))
    assert staging.status(APP).state == "crashed"


def test_a_health_check_answering_500_fails_the_deploy_within_a_few_probes_and_leaves_the_process_running(staging):
    started = time.monotonic()
    with pytest.raises(DeployError) as caught:
        staging.deploy(APP, build_args={"HOTDASH_DEFECT": "health_failing"}, wait_timeout_s=30)

    assert time.monotonic() - started < 10, "three 500s in a row, not the 30 s wait"
    assert caught.value.release.status == "failed"
    assert "did not pass GET /health: HTTP 500, 500, 500 on 3 probes in a row" in str(caught.value)
    assert "gave up before the 30s deadline" in str(caught.value)
    status = staging.status(APP)
    assert (status.state, status.version) == ("started", 1)
    assert get(status.url + "/health").status_code == 500


def test_a_health_check_answering_503_waits_until_the_deadline_and_leaves_the_process_running(staging):
    # tiny_app's degrades_after: /health answers 503 "degraded" from the start, a status that may change.
    started = time.monotonic()
    with pytest.raises(DeployError) as caught:
        staging.deploy(APP, build_args={"HOTDASH_DEFECT": "degrades_after"}, wait_timeout_s=1.5)

    assert 1.5 <= time.monotonic() - started < 5
    assert caught.value.release.status == "failed"
    assert "did not pass GET /health within 1.5s" in str(caught.value)
    status = staging.status(APP)
    assert (status.state, status.version) == ("started", 1)
    assert get(status.url + "/health").status_code == 503


def test_deploying_an_unknown_image_fails_before_making_a_release(staging):
    with pytest.raises(DeployError, match=r"image rehearsal\.local/hotdash@sha256:0+ not found"):
        staging.deploy(APP, image="rehearsal.local/hotdash@sha256:" + "0" * 64)
    assert staging.releases(APP) == []


def test_a_release_left_running_by_a_dead_runner_becomes_interrupted(staging, state_dir):
    deploy(staging)
    state_path = state_dir / "apps" / APP / "state.json"
    state = json.loads(state_path.read_text())
    state["releases"][0]["status"] = "running"  # as if the runner died mid-deploy
    state_path.write_text(json.dumps(state))

    deploy(staging)

    assert [r.status for r in staging.releases(APP)] == ["complete", "interrupted"]


def test_an_app_started_by_a_deploy_killed_before_recording_it_is_found_and_stopped(staging, state_dir):
    """A kernel stopped by an aborted release can die between starting the app's process and
    saving its pid. That process still holds the app's port; the next deploy must stop it."""
    deploy(staging)
    script = f"""
import os, signal, subprocess
from pathlib import Path
from hotdash_release.targets import local
real_popen = subprocess.Popen
def popen_then_die(*args, **kwargs):
    real_popen(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)  # the pid is never saved
local.subprocess.Popen = popen_then_die
platform = local.LocalPlatform(Path({str(state_dir)!r}), app_source=Path({str(TINY_APP)!r}))
platform.deploy({APP!r}, build_args={{"HOTDASH_VERSION": "2.0.0"}}, wait_timeout_s=10)
"""
    killed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    state = json.loads((state_dir / "apps" / APP / "state.json").read_text())
    assert state["process"] is None and state.get("launching"), "the old process was stopped, the new one not recorded"
    orphans = processes_running_from(state_dir / "images")
    assert orphans, "the app process the killed deploy started still runs"

    release = deploy(staging, "3.0.0")

    assert release.status == "complete" and get(staging.url(APP) + "/health").status_code == 200
    assert wait_for(lambda: not any(is_running(pid) for pid in orphans))
    assert "launching" not in json.loads((state_dir / "apps" / APP / "state.json").read_text())


# -- rollback ------------------------------------------------------------------------


def test_rollback_after_a_bad_release_makes_v3_with_the_v1_image(staging):
    good = deploy(staging, "1.0.0")
    with pytest.raises(DeployError):
        deploy(staging, "1.1.0", HOTDASH_DEFECT="crash_at_start")
    assert [row["ok"] for row in machines_on_image(staging.status(APP), good.image_ref)] == [False, False], (
        "a crashed machine on the v2 image, and none started"
    )

    rolled = staging.rollback(APP, to=good, reason="v2 crashed at start", wait_timeout_s=7)

    assert (rolled.version, rolled.status, rolled.image_ref) == (3, "complete", good.image_ref)
    assert (rolled.description, rolled.reason) == ("Rollback to v1", "v2 crashed at start")
    assert staging.status(APP).version == 3
    assert get(staging.url(APP) + "/build").json()["version"] == "1.0.0"
    assert [row["ok"] for row in machines_on_image(staging.status(APP), good.image_ref)] == [True]


def test_rollback_to_a_pruned_image_raises_rollback_error(staging, state_dir):
    v1 = deploy(staging, "1.0.0")
    deploy(staging, "1.1.0")
    shutil.rmtree(state_dir / "images" / v1.image_ref.rsplit(":", 1)[1])

    with pytest.raises(RollbackError, match=r"not found \(pruned\?\)"):
        staging.rollback(APP, to=v1)

    assert [r.version for r in staging.releases(APP)] == [2, 1]
    assert get(staging.url(APP) + "/build").json()["version"] == "1.1.0"


# -- secrets -------------------------------------------------------------------------


def test_secret_values_reach_the_process_and_nothing_else_from_the_runner(staging, monkeypatch):
    monkeypatch.setenv("RUNNER_ONLY_TOKEN", "must-not-reach-the-app")
    staging.set_secrets(APP, {"SHOPIFY_API_KEY": "key-123"})
    deploy(staging)

    listed = {s.name: s.digest for s in staging.secrets(APP)}
    on_process = get(staging.url(APP) + "/env-digests").json()
    assert listed == {"DATABASE_URL": digest(DATABASE_URL), "SHOPIFY_API_KEY": digest("key-123")}
    assert {name: on_process[name] for name in listed} == listed
    assert "RUNNER_ONLY_TOKEN" not in on_process
    assert staging.secret_values(APP) == {"DATABASE_URL": DATABASE_URL, "SHOPIFY_API_KEY": "key-123"}


def test_secrets_are_staged_until_the_next_deploy(staging):
    def statuses():
        return {s.name: s.status for s in staging.secrets(APP)}

    assert statuses() == {"DATABASE_URL": "Staged"}
    deploy(staging)
    assert statuses() == {"DATABASE_URL": "Deployed"}

    staging.set_secrets(APP, {"DATABASE_URL": DATABASE_URL + "?sslmode=require", "SCOPES": "read_orders"})
    assert statuses() == {"DATABASE_URL": "Staged", "SCOPES": "Staged"}
    assert not any(s.usable for s in staging.secrets(APP))

    deploy(staging)
    assert statuses() == {"DATABASE_URL": "Deployed", "SCOPES": "Deployed"}
    staging.unset_secrets(APP, ["SCOPES"])
    assert statuses() == {"DATABASE_URL": "Deployed"}


def test_secret_values_are_kept_only_in_the_private_secret_store(staging, state_dir):
    deploy(staging)

    store = state_dir / "secrets" / f"{APP}.json"
    assert stat.S_IMODE(store.stat().st_mode) == 0o600
    assert stat.S_IMODE(store.parent.stat().st_mode) == 0o700
    other_files = [p for p in state_dir.rglob("*") if p.is_file() and store.parent not in p.parents]
    assert not [p for p in other_files if DATABASE_URL.encode() in p.read_bytes()]


# -- bad input -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        ({"app": "HotDash"}, "app"),
        ({"app": "../escape"}, "app"),
        ({"strategy": "yolo"}, "strategy"),
        ({"build_args": {"HOTDASH_DEFECT": "gremlins"}}, "HOTDASH_DEFECT"),
    ],
    ids=["uppercase-app", "path-app", "strategy", "defect"],
)
def test_invalid_deploy_input_is_a_usage_error_naming_the_field(staging, request_, field):
    arguments = {"app": APP, **request_}
    with pytest.raises(UsageError, match=field):
        staging.deploy(arguments.pop("app"), **arguments)
    assert staging.apps() == []


def test_a_bad_defect_lists_the_allowed_ones(staging):
    with pytest.raises(UsageError, match=r"'crash_at_start'.*'wrong_api_key'"):
        deploy(staging, HOTDASH_DEFECT="gremlins")


def test_a_secret_cannot_shadow_what_the_platform_sets(platform):
    with pytest.raises(UsageError, match="secret name: PORT"):
        platform.set_secrets(APP, {"PORT": "80"})


# -- status and logs -----------------------------------------------------------------


def test_status_follows_the_process_through_its_states(staging):
    assert staging.status(APP) == AppStatus(app=APP, deployed=False, state="not-deployed")
    v1 = deploy(staging)

    status = staging.status(APP)
    assert (status.state, status.version, status.image_ref) == ("started", 1, v1.image_ref)
    assert status.url == staging.url(APP)
    machine = status.machines[0]
    assert (machine["state"], machine["version"]) == ("started", 1)

    os.killpg(machine["pid"], signal.SIGKILL)
    assert wait_for(lambda: staging.status(APP).state == "crashed")

    assert staging.stop(APP) == []  # nothing was running
    assert staging.status(APP).state == "stopped"


def test_logs_are_kept_per_release(staging):
    deploy(staging, "1.0.0")
    deploy(staging, "2.0.0")

    assert any("tiny_app 1.0.0 listening" in line for line in staging.logs(APP, version=1))
    current = staging.logs(APP)
    assert any("tiny_app 2.0.0 listening" in line for line in current)
    assert not any("tiny_app 1.0.0" in line for line in current)
    assert len(staging.logs(APP, limit=1)) == 1
    assert staging.logs(APP, version=9) == []
    assert staging.logs("hotdash-unknown") == []
    assert staging.releases("hotdash-unknown") == []


# -- the real stand-in app -----------------------------------------------------------


@pytest.mark.skipif(not STANDIN_APP.exists(), reason="hotdash_release/standin_app.py is not written yet")
def test_the_standin_app_deploys_and_passes_its_health_check(open_platform):
    platform = open_platform(app_source=None)  # the default: the stand-in app
    platform.set_secrets(
        APP,
        {
            "DATABASE_URL": DATABASE_URL,
            "SHOPIFY_API_KEY": "rehearsal-api-key",
            "SHOPIFY_API_SECRET": "rehearsal-api-secret",
            "SHOPIFY_APP_URL": "https://hotdash-staging.example.com",
            "SCOPES": "read_orders,read_products",
            "SUPABASE_URL": "https://rehearsal.supabase.example.com",
            "SUPABASE_ANON_KEY": "rehearsal-anon-key",
        },
    )

    release = platform.deploy(APP, build_args={"HOTDASH_VERSION": "1.0.0"}, wait_timeout_s=20)

    assert release.status == "complete"
    response = get(platform.url(APP) + "/health")
    assert response.status_code == 200
    assert response.json()["status"] == "ok"
