"""FlyTarget against the stand-in flyctl (tests/fakes/flyctl), and its parsers on their own.

The stand-in speaks flyctl's documented command line, JSON and exit codes, and its
machines are real stand-in app processes on 127.0.0.1. Each test gets its own Fly world;
its teardown stops the machines and checks that no process started from it still runs.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import subprocess
import time
import tomllib
from pathlib import Path

import httpx
import pytest
from conftest import wait_for, write_config
from fakes.fakefly import SECRET_SHAPES, FakeFly, install_flyctl

from hotdash_release.checks.http import check_health, make_client
from hotdash_release.checks.watch import MachineWatch, WatchSettings, watch_production
from hotdash_release.config import load_config
from hotdash_release.errors import ConfigError, DeployError, RollbackError, TargetError, UsageError
from hotdash_release.paths import RUNBOOKS_DIR
from hotdash_release.secrets.required import (
    SecretPresence,
    find_shared_values,
    mark_shared_values,
    rehearsal_secret_values,
)
from hotdash_release.targets import make_target
from hotdash_release.targets.base import Release, Target, machines_on_image
from hotdash_release.targets.fly import (
    FlyTarget,
    explain_exit,
    fly_config_problems,
    parse_log_stream,
    parse_secrets,
    parse_status,
)

APP = "hotdash-staging"
OTHER_APP = "hotdash-production"
TOKEN = "fo1_test-token-4f9c2e7a1b"
FLY_TOML = RUNBOOKS_DIR / "fly.toml"


# -- fixtures --------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def processes_mentioning(text: str) -> list[str]:
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            state = (proc / "stat").read_text().rpartition(")")[2].split()[0]
        except (OSError, IndexError):
            continue
        if text in cmdline and state not in "ZX" and int(proc.name) != os.getpid():
            found.append(f"{proc.name}: {cmdline}")
    return found


@pytest.fixture
def fake(tmp_path):
    fly = FakeFly(tmp_path / "fly")
    for app in (APP, OTHER_APP):
        fly.create_app(app, port=free_port())
    yield fly
    fly.stop()
    assert wait_for(lambda: not processes_mentioning(str(tmp_path))), processes_mentioning(str(tmp_path))


@pytest.fixture
def bin_dir(tmp_path):
    return install_flyctl(tmp_path / "bin")


@pytest.fixture
def env(fake, bin_dir):
    return fake.environment(bin_dir, token=TOKEN)


@pytest.fixture
def target(env):
    return FlyTarget(environ=env, config_files={APP: FLY_TOML}, deploy_timeout_s=30, command_timeout_s=20)


def seed_secrets(fake: FakeFly, app: str = APP) -> dict[str, str]:
    values = rehearsal_secret_values(app)
    fake.store_secrets(app, values)
    return values


def deploy_args(fake: FakeFly) -> list[list[str]]:
    return [call["argv"] for call in fake.calls() if call["argv"][0] == "deploy"]


# -- the interface -------------------------------------------------------------------------


def test_fly_target_is_a_target(target):
    assert isinstance(target, Target) and target.name == "fly"


def test_make_target_builds_a_fly_target_from_the_configuration(tmp_path):
    config = load_config(
        write_config(
            tmp_path,
            state_dir=tmp_path / "state",
            edits={"deploy_timeout_s = 900": 'deploy_timeout_s = 600\nflyctl = "/opt/fly/bin/flyctl"'},
        )
    )
    target = make_target(config, "fly")
    assert isinstance(target, FlyTarget)
    assert target.flyctl == "/opt/fly/bin/flyctl" and target.deploy_timeout_s == 600
    assert target.config_files == {APP: str(tmp_path / "fly.toml"), OTHER_APP: str(tmp_path / "fly.production.toml")}


@pytest.mark.parametrize(
    "old, new, key",
    [
        ("deploy_timeout_s = 900", "deploy_timeout_s = 200", "targets.fly.deploy_timeout_s"),
        ('must_differ = ["DATABASE_URL", "SUPABASE_URL"]', 'must_differ = ["REDIS_URL"]', "secrets.must_differ[0]"),
    ],
)
def test_configuration_refuses_fly_settings_that_cannot_work(tmp_path, old, new, key):
    with pytest.raises(ConfigError) as err:
        load_config(write_config(tmp_path, state_dir=tmp_path / "state", edits={old: new}))
    assert err.value.key == key


# -- secrets -------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SECRET_SHAPES)
def test_secrets_list_reads_every_documented_json_shape(fake, target, shape):
    values = seed_secrets(fake)
    fake.set_secrets_shape(shape)
    listed = target.secrets(APP)
    assert [s.name for s in listed] == sorted(values)
    assert all(len(s.digest) == 16 for s in listed)
    if shape == "v0.4.6":
        # Set with --stage before any deploy: stored, but on no machine yet.
        assert {s.status for s in listed} == {"Staged"} and not any(s.usable for s in listed)
    else:
        assert {s.status for s in listed} == {"Unknown"} and all(s.usable for s in listed)


def test_parse_secrets_takes_keys_in_any_case_and_null():
    data = [{"NAME": "A", "Digest": "d1", "STATUS": "deployed"}, {"name": "B", "digest": "d2", "status": "Staged"}]
    assert [(s.name, s.digest, s.status, s.usable) for s in parse_secrets(data)] == [
        ("A", "d1", "Deployed", True),
        ("B", "d2", "Staged", False),
    ]
    assert parse_secrets(None) == []  # Go writes an empty list as null
    with pytest.raises(ValueError):
        parse_secrets([{"name": "A"}])


def test_secret_values_go_through_stdin_never_argv(fake, target):
    values = rehearsal_secret_values(APP)
    target.set_secrets(APP, values)
    sets = [call["argv"] for call in fake.calls() if call["argv"][:2] == ["secrets", "set"]]
    assert sets == [["secrets", "set", f"{name}=-", "--app", APP, "--stage"] for name in values]
    everything_passed = json.dumps(fake.calls())
    assert not [name for name, value in values.items() if value in everything_passed]
    digests = {s.name: s.digest for s in target.secrets(APP)}
    assert digests["SCOPES"] == hashlib.sha256(values["SCOPES"].encode()).hexdigest()[:16]


def test_unset_secrets(fake, target):
    seed_secrets(fake)
    target.unset_secrets(APP, ["SCOPES", "SUPABASE_URL"])
    assert {s.name for s in target.secrets(APP)} == set(rehearsal_secret_values(APP)) - {"SCOPES", "SUPABASE_URL"}
    unsets = [call["argv"] for call in fake.calls() if call["argv"][:2] == ["secrets", "unset"]]
    assert unsets == [["secrets", "unset", "SCOPES", "SUPABASE_URL", "--app", APP]]
    with pytest.raises(UsageError):
        target.unset_secrets(APP, "SCOPES")


# -- environment and token -------------------------------------------------------------------


def test_every_call_is_quiet_and_the_token_stays_in_the_environment(fake, target):
    assert target.whoami() == "release-bot@hotdash.test"
    target.status(APP)
    target.releases(APP)
    calls = fake.calls()
    assert len(calls) == 3
    for call in calls:
        assert call["FLY_NO_UPDATE_CHECK"] == "1" and call["NO_COLOR"] == "1"
        assert call["token_in_environment"] is True
        assert TOKEN not in " ".join(call["argv"])
        assert not {"-t", "--access-token"} & set(call["argv"])


def test_fly_access_token_alone_is_enough(fake, bin_dir):
    env = fake.environment(bin_dir, token=None) | {"FLY_ACCESS_TOKEN": TOKEN}
    assert FlyTarget(environ=env).whoami() == "release-bot@hotdash.test"


def test_a_missing_token_names_both_variables_and_runs_nothing(fake, bin_dir):
    target = FlyTarget(environ=fake.environment(bin_dir, token=None))
    with pytest.raises(TargetError) as err:
        target.status(APP)
    assert "FLY_API_TOKEN" in str(err.value) and "FLY_ACCESS_TOKEN" in str(err.value)
    assert fake.calls() == []


def test_a_token_that_flyctl_prints_is_scrubbed(fake, target):
    fake.set_fault("status", f"error:unauthorized: token {TOKEN} has expired")
    with pytest.raises(TargetError) as err:
        target.status(APP)
    assert TOKEN not in str(err.value) and TOKEN not in str(err.value.__cause__.stderr)
    assert "[redacted FLY_API_TOKEN]" in str(err.value)


def test_missing_flyctl_says_how_to_install_it(fake, tmp_path):
    env = fake.environment(tmp_path / "empty", token=TOKEN) | {"PATH": str(tmp_path / "empty")}
    with pytest.raises(TargetError) as err:
        FlyTarget(environ=env).status(APP)
    assert "install" in str(err.value) and "\n" not in str(err.value)
    assert isinstance(err.value.__cause__, FileNotFoundError)


def test_a_configured_flyctl_path_is_used_without_path(fake, bin_dir, tmp_path):
    env = fake.environment(bin_dir, token=TOKEN)
    env["PATH"] = env["PATH"].replace(str(bin_dir) + os.pathsep, "")
    assert FlyTarget(flyctl=str(bin_dir / "flyctl"), environ=env).whoami() == "release-bot@hotdash.test"
    with pytest.raises(TargetError, match="flyctl not found"):
        FlyTarget(environ=env | {"PATH": str(tmp_path)}).whoami()


# -- exit codes ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fault, expected",
    [
        ("error:app hotdash-staging is suspended", "fly releases: Error: app hotdash-staging is suspended"),
        ("exit:126", "fly releases: deadline exceeded (exit 126): Error: context deadline exceeded"),
        ("exit:127", "fly releases: cancelled (exit 127): Error: context canceled"),
        ("exit:3", "fly releases: flyctl panicked (exit 3): panic: runtime error: invalid memory address"),
    ],
)
def test_exit_codes_become_one_clear_line(fake, target, fault, expected):
    fake.set_fault("releases", fault)
    with pytest.raises(TargetError) as err:
        target.releases(APP)
    assert str(err.value).startswith(expected) and "\n" not in str(err.value)
    cause = err.value.__cause__
    assert isinstance(cause, subprocess.CalledProcessError)
    assert cause.returncode == int(fault.partition(":")[2]) if fault.startswith("exit") else cause.returncode == 1


def test_explain_exit_without_an_error_line():
    assert explain_exit(1, "") == "failed (exit 1) without an Error: line"
    assert explain_exit(2, "something odd\n") == "exited with code 2: something odd"


def test_answers_that_are_not_the_documented_json_are_target_errors(fake, target):
    fake.set_fault("status", "exit:0")  # exits 0 with no JSON at all
    with pytest.raises(TargetError, match="not the documented answer") as err:
        target.status(APP)
    assert isinstance(err.value.__cause__, ValueError)


# -- deploy ----------------------------------------------------------------------------------


def test_deploy_streams_output_and_returns_the_new_release(fake, target):
    seed_secrets(fake)
    lines = []
    release = target.deploy(
        APP, build_args={"HOTDASH_VERSION": "1.2.3"}, strategy="rolling", wait_timeout_s=5, on_output=lines.append
    )
    assert deploy_args(fake) == [
        [
            "deploy",
            "--config",
            str(FLY_TOML),
            "--app",
            APP,
            "--strategy",
            "rolling",
            "--wait-timeout",
            "5",
            "--yes",
            "--build-arg",
            "HOTDASH_VERSION=1.2.3",
        ]
    ]
    assert lines[0] == "==> Verifying app config" and lines[-1].startswith("Visit your newly deployed app at")
    assert release.version == 1 and release.status == "complete" and release.user == "release-bot@hotdash.test"
    assert release.image_ref.startswith(f"registry.fly.io/{APP}:deployment-")

    status = target.status(APP)
    assert (status.state, status.version, status.image_ref) == ("started", 1, release.image_ref)
    assert httpx.get(status.url + "/health", trust_env=False).json()["status"] == "ok"
    assert {s.status for s in target.secrets(APP)} == {"Deployed"}
    assert [c.status for c in target.checks(APP)] == ["passing"]
    logs = target.logs(APP, limit=2)
    assert len(logs) == 2 and all(f"app[{status.machines[0]['id']}]" in line for line in logs)
    assert target.logs(APP, version=1) and target.logs(APP, version=99) == []


def test_a_failed_deploy_carries_the_failed_release_and_the_error_line(fake, target):
    seed_secrets(fake)
    fake.set_fault("deploy", "defect:health_failing", app=APP)
    with pytest.raises(DeployError) as err:
        target.deploy(APP, wait_timeout_s=1)
    failed = err.value.release
    assert (failed.version, failed.status) == (1, "failed")
    message = str(err.value)
    assert message.startswith(f"{APP}: fly deploy: Error: ") and "did not pass GET /health" in message
    machine = target.status(APP).machines[0]["id"]
    assert message.endswith(f"; check servicecheck-00-http-3000 on machine {machine}: critical (HTTP 500)")
    assert "\n" not in message
    assert isinstance(err.value.__cause__, subprocess.CalledProcessError)


def test_a_failed_build_makes_no_release(fake, target):
    fake.set_fault("deploy", "error:failed to fetch an image or build from source: dockerfile not found")
    with pytest.raises(DeployError, match="dockerfile not found") as err:
        target.deploy(APP)
    assert err.value.release is None and target.releases(APP) == []


def test_a_hanging_deploy_is_killed_with_its_whole_process_group(fake, env, tmp_path):
    # 5 s: time enough for a loaded machine to start the fake flyctl before the deadline kills it.
    target = FlyTarget(environ=env, config_files={APP: FLY_TOML}, deploy_timeout_s=5)
    fake.set_fault("deploy", "hang")
    arrivals = []
    started = time.monotonic()
    with pytest.raises(DeployError) as err:
        target.deploy(APP, on_output=lambda line: arrivals.append((time.monotonic() - started, line)))
    assert "fly deploy did not finish within 5 s; its process group was killed" in str(err.value)
    assert isinstance(err.value.__cause__, subprocess.TimeoutExpired)
    # The first line was passed on while flyctl still ran, not after it was killed.
    assert arrivals and arrivals[0][1] == "==> Verifying app config" and arrivals[0][0] < 5
    # flyctl started a helper in its group (as its builders run): it is gone too.
    assert wait_for(lambda: not processes_mentioning("fake-flyctl-helper " + str(fake.state_dir)), 2)


def test_logs_are_bounded_when_flyctl_keeps_polling(fake, env):
    target = FlyTarget(environ=env, logs_timeout_s=1)
    fake.set_fault("logs", "hang")
    started = time.monotonic()
    assert target.logs(APP) == []
    assert time.monotonic() - started < 6
    assert wait_for(lambda: not processes_mentioning("fake-flyctl-helper " + str(fake.state_dir)), 2)


def test_deploy_refuses_requests_flyctl_would_misread(target):
    with pytest.raises(UsageError):
        target.deploy("--app", wait_timeout_s=5)
    with pytest.raises(UsageError):
        target.deploy(APP, strategy="fastest")
    with pytest.raises(UsageError):
        target.deploy(APP, image="registry.fly.io/x:y", build_args={"A": "b"})


# -- rollback --------------------------------------------------------------------------------


def test_rollback_redeploys_the_previous_image_as_a_new_release(fake, target):
    seed_secrets(fake)
    good = target.deploy(APP, wait_timeout_s=5)
    fake.set_fault("deploy", "defect:wrong_api_key", app=APP)  # healthy, but the wrong key
    bad = target.deploy(APP, wait_timeout_s=5)
    current = target.status(APP).image_ref
    assert current == bad.image_ref != good.image_ref

    lines = []
    done = target.rollback(APP, to=good, wait_timeout_s=42, on_output=lines.append)
    assert deploy_args(fake)[-1] == [
        "deploy",
        "--config",
        str(FLY_TOML),
        "--app",
        APP,
        "--image",
        good.image_ref,
        "--strategy",
        "immediate",
        "--wait-timeout",
        "42",
        "--yes",
    ]
    assert (done.version, done.status, done.image_ref) == (3, "complete", good.image_ref)
    assert target.status(APP).image_ref == good.image_ref
    assert any(line.startswith("Visit your newly deployed app") for line in lines)


def test_a_machine_that_reverted_after_deploy_exit_0_is_a_mismatch(fake, target):
    """flyctl has reported success for machines that went back to their old image (pull requests
    4878, 4921): `fly status --json` shows it, per machine."""
    seed_secrets(fake)
    good = target.deploy(APP, wait_timeout_s=5)
    fake.set_fault("deploy", "revert", app=APP)
    new = target.deploy(APP, wait_timeout_s=5)  # exit 0, a complete release...
    assert new.status == "complete" and new.image_ref != good.image_ref
    [machine] = machines_on_image(target.status(APP), new.image_ref)  # ...its machine on the old image
    assert machine["state"] == "started" and machine["serving_image"] == good.image_ref
    assert machine["ok"] is False
    assert machines_on_image(target.status(APP), good.image_ref)[0]["ok"] is True


def test_a_failed_rollback_is_a_rollback_error(fake, target):
    gone = Release(1, "complete", f"registry.fly.io/{APP}:deployment-01PRUNED0000000000000000", "", "")
    with pytest.raises(RollbackError, match="rollback of hotdash-staging to v1 failed") as err:
        target.rollback(APP, to=gone)
    assert isinstance(err.value.__cause__, DeployError)


# -- status and logs parsing -----------------------------------------------------------------


def test_status_of_an_app_never_deployed(fake, target):
    status = target.status(APP)
    assert (status.deployed, status.state, status.version, status.image_ref) == (False, "not-deployed", None, None)
    assert status.url == f"http://127.0.0.1:{fake.apps()[APP]['port']}"


def test_status_names_the_image_of_the_newest_started_machine():
    def machine(state, version, tag="", digest=""):
        return {
            "id": f"m{version}",
            "state": state,
            "region": "iad",
            "image_ref": {"registry": "registry.fly.io", "repository": "app", "tag": tag, "digest": digest},
            "config": {"metadata": {"fly_release_version": str(version)}},
        }

    data = {
        "Deployed": True,
        "Version": 7,
        "Hostname": "app.fly.dev",
        "Machines": [
            machine("started", 5, tag="deployment-OLD"),
            machine("started", 7, digest="sha256:abc"),
            machine("stopped", 8, tag="deployment-NEWER"),
        ],
    }
    status = parse_status("app", data)
    assert (status.state, status.version, status.image_ref) == ("started", 7, "registry.fly.io/app@sha256:abc")
    assert status.url == "https://app.fly.dev"
    assert parse_status("app", {"Machines": [machine("stopped", 3, tag="t")]}).state == "stopped"


def test_log_stream_parser_reads_pretty_printed_objects_one_after_another():
    entries = [
        {
            "level": "info",
            "instance": "m1",
            "message": f"line {i}",
            "region": "iad",
            "timestamp": "2025-10-23T10:00:00Z",
            "meta": {"Event": {"Provider": "app"}},
        }
        for i in range(3)
    ]
    stream = "\n".join(json.dumps(e, indent=4) for e in entries) + "\n"
    assert stream.count("\n") > 3 * 5  # multi-line objects, not JSON lines
    assert parse_log_stream(stream) == entries
    # Cut by the deadline inside the last object, with a notice between objects.
    cut = json.dumps(entries[0], indent=4) + "\nWaiting for logs...\n" + stream[: len(stream) - 40]
    assert [e["message"] for e in parse_log_stream(cut)] == ["line 0", "line 0", "line 1"]
    assert parse_log_stream("") == []


# -- preflight: fly.toml ---------------------------------------------------------------------


def fly_toml(**changes) -> dict:
    config = tomllib.loads(FLY_TOML.read_text())
    config.update(changes)
    return config


@pytest.mark.parametrize(
    "config, problem",
    [
        (fly_toml(), None),
        (fly_toml(app="hotdash-production"), "app is 'hotdash-production', expected 'hotdash-staging'"),
        (fly_toml(http_service={"internal_port": 3000}), "no HTTP check on /health (found none)"),
        (fly_toml(http_service={}, services=[{"http_checks": [{"path": "/health"}]}]), None),
        (fly_toml(http_service={}, checks={"alive": {"type": "http", "port": 3000, "path": "/health"}}), None),
        (fly_toml(deploy={"strategy": "blue-green"}), "[deploy] strategy 'blue-green' is not one of"),
        (fly_toml(deploy={"strategy": "bluegreen"}), None),
        (
            fly_toml(http_service={}, deploy={"strategy": "bluegreen"}),
            "[deploy] strategy bluegreen needs a health check",
        ),
    ],
)
def test_fly_config_problems(config, problem):
    problems = fly_config_problems(config, app=APP, health_path="/health")
    if problem is None:
        assert problems == []
    else:
        assert any(p.startswith(problem) for p in problems), problems


# -- secrets shared between staging and production -------------------------------------------


def presence(app: str, name: str, digest: str) -> SecretPresence:
    return SecretPresence(app, name, True, "Deployed", digest, "", False)


def test_equal_digests_block_for_databases_and_warn_for_the_rest():
    rows = [
        presence(APP, "DATABASE_URL", "d1"),
        presence(APP, "SCOPES", "s1"),
        presence(APP, "SHOPIFY_API_KEY", "k1"),
        presence(OTHER_APP, "DATABASE_URL", "d1"),
        presence(OTHER_APP, "SCOPES", "s1"),
        presence(OTHER_APP, "SHOPIFY_API_KEY", "k2"),
    ]
    shared = find_shared_values(rows, ["DATABASE_URL", "SUPABASE_URL"])
    assert [(s.name, s.apps, s.blocking) for s in shared] == [
        ("DATABASE_URL", (APP, OTHER_APP), True),
        ("SCOPES", (APP, OTHER_APP), False),
    ]
    marked = {(r.app, r.name): r for r in mark_shared_values(rows, shared)}
    assert marked[(OTHER_APP, "DATABASE_URL")].blocking
    assert marked[(OTHER_APP, "DATABASE_URL")].finding == f"same value as on {APP}: must differ"
    assert marked[(OTHER_APP, "SCOPES")].finding == f"same value as on {APP}" and marked[(OTHER_APP, "SCOPES")].ok
    assert not marked[(APP, "DATABASE_URL")].finding  # named once: on the later app
    # The blocking list is configuration.
    assert not any(s.blocking for s in find_shared_values(rows, ["SUPABASE_URL"]))


# -- machine events: what the watch counts as a restart --------------------------------------

#: The contract's machine keys of `fly status --json`, and of each event and exit_event.
MACHINE_KEYS = {"id", "name", "state", "region", "image_ref", "version", "created_at", "updated_at", "config"}
EVENT_KEYS = {"type", "status", "source", "timestamp", "request"}
EVENT_TYPES = {"launch", "start", "stop", "exit", "update", "restart"}
EXIT_EVENT_KEYS = {
    "exit_code",
    "guest_exit_code",
    "guest_signal",
    "signal",
    "oom_killed",
    "requested_stop",
    "restarting",
    "exited_at",
}
WATCH_FAST = dict(minutes=0.6 / 60, interval_s=0.1)  # six measurements, back to back against flyctl


def raw_machines(env) -> list[dict]:
    done = subprocess.run(
        ["fly", "status", "--app", APP, "--json"], env=env, capture_output=True, text=True, timeout=30
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)["Machines"]


def watch_app(target, fake, settings, on_measurement=lambda n: None):
    """The watch as runbook.watch() wires it on Fly: /health, `fly status` machines, `fly checks`."""
    machines = MachineWatch(lambda: target.status(APP).machines, lambda: [c.status for c in target.checks(APP)])
    taken = []

    def progress(measurement):
        taken.append(measurement)
        on_measurement(len(taken))

    with httpx.Client(timeout=5, trust_env=False) as client:
        url = f"http://127.0.0.1:{fake.apps()[APP]['port']}/health"
        return watch_production(client, url, settings, machines=machines, progress=progress)


def test_fly_status_machines_carry_events_in_the_documented_shape(fake, target, env):
    """The contract check: the stand-in's machines have the documented keys, and events newest
    first with type, status, source, a timestamp in ms and an exit's request in fly-go's shape
    (both nestings, zero fields left out); the parser reads them all."""
    seed_secrets(fake)
    target.deploy(APP, wait_timeout_s=5)
    fake.crash_machine(APP, exit_code=1)
    fake.crash_machine(APP, oom_killed=True)
    [machine] = raw_machines(env)
    assert MACHINE_KEYS <= set(machine) and isinstance(machine["events"], list)
    events = machine["events"]
    stamps = [e["timestamp"] for e in events]
    assert stamps == sorted(stamps, reverse=True), "newest first"
    assert all(isinstance(s, int) and abs(s / 1000 - time.time()) < 600 for s in stamps), "ms since the epoch"
    assert all(set(e) <= EVENT_KEYS and e["type"] in EVENT_TYPES for e in events)
    exits = [e["request"] for e in events if e["type"] == "exit"]
    oom, crash = exits[0]["MonitorEvent"]["exit_event"], exits[1]["exit_event"]
    assert set(oom) | set(crash) <= EXIT_EVENT_KEYS
    assert oom["oom_killed"] is True and crash == {"exit_code": 1, "restarting": True}  # omitempty: no false fields
    parsed = target.status(APP).machines[0]["events"]
    assert [e["type"] for e in parsed] == [e["type"] for e in events]
    assert parsed[0]["exit"] is None and parsed[1]["exit"]["oom_killed"] is True
    assert parsed[3]["exit"] == {
        "exit_code": 1,
        "guest_exit_code": 0,
        "guest_signal": 0,
        "signal": 0,
        "oom_killed": False,
        "requested_stop": False,
        "restarting": True,
        "exited_at": "",
    }


def test_parse_status_reads_exit_events_in_both_nestings_and_refuses_a_timestamp_that_is_not_ms():
    flat = {"type": "exit", "status": "stopped", "source": "flyd", "timestamp": 2, "request": {"exit_event": {}}}
    nested = {**flat, "timestamp": 3, "request": {"MonitorEvent": {"exit_event": {"requested_stop": True}}}}
    status = parse_status("app", {"Machines": [{"id": "m1", "state": "started", "events": [nested, flat]}]})
    assert [e["exit"]["requested_stop"] for e in status.machines[0]["events"]] == [True, False]
    assert parse_status("app", {"Machines": [{"id": "m1", "events": None}]}).machines[0]["events"] == []
    with pytest.raises(ValueError, match="not an integer"):
        parse_status("app", {"Machines": [{"id": "m1", "events": [{**flat, "timestamp": "2025-01-01T00:00:00Z"}]}]})


def test_a_healthy_release_watches_clean_while_updated_at_moves_on_at_every_call(fake, target):
    seed_secrets(fake)
    target.deploy(APP, wait_timeout_s=5)
    first, second = (target.status(APP).machines[0]["updated_at"] for _ in range(2))
    assert first != second, "the stand-in sets updated_at to the time of each call"
    result = watch_app(target, fake, WatchSettings(**WATCH_FAST))
    assert result.ok, result.summary()
    assert result.restarts == 0 and [m.restarts for m in result.measurements] == [0] * 6


def test_auto_stop_and_start_and_a_config_update_are_not_restarts(fake, target):
    seed_secrets(fake)
    target.deploy(APP, wait_timeout_s=5)
    between = {1: fake.auto_stop_and_start, 2: fake.update_machine, 3: fake.auto_stop_and_start}
    result = watch_app(target, fake, WatchSettings(**WATCH_FAST), lambda n: between.get(n, lambda app: None)(APP))
    assert result.ok, result.summary()
    assert result.restarts == 0
    types = [e["type"] for e in fake.events(APP)]
    assert types.count("start") == 4 and types.count("update") == 1, "the machine did stop and start again"


@pytest.mark.parametrize(
    ("crash", "why"),
    [(dict(exit_code=1), "exit code 1"), (dict(oom_killed=True), "OOM killed")],
    ids=["non-zero-exit", "oom-kill"],
)
def test_a_machine_that_crashes_and_restarts_breaches_the_watch(fake, target, crash, why):
    """Each crash is followed by flyd's start: /health answers again, only the events tell."""
    seed_secrets(fake)
    target.deploy(APP, wait_timeout_s=5)
    result = watch_app(
        target,
        fake,
        WatchSettings(minutes=1, interval_s=0.1, failure_limit=3),
        lambda n: fake.crash_machine(APP, **crash),
    )
    assert not result.ok and result.ended_early == "breach"
    assert [m.restarts for m in result.measurements] == [0, 1, 1, 1]
    assert all(m.health_ok for m in result.measurements), "the restarted machine answers /health"
    assert f"1 machines restarted (machine {target.status(APP).machines[0]['id']}: {why})" in result.breaches[0].what


def test_on_fly_the_health_check_gives_up_on_a_machine_answering_500_within_a_few_probes(fake, target):
    """flyctl waits for its checks until --wait-timeout (the stand-in too); our own /health probes,
    the same check_health on every target, stop at three 500s in a row instead of the 60 s deadline."""
    seed_secrets(fake)
    fake.set_fault("deploy", "defect:health_failing", app=APP)
    with pytest.raises(DeployError, match="did not pass GET /health within 1s"):
        target.deploy(APP, wait_timeout_s=1)
    started = time.monotonic()
    with make_client() as client:
        result = check_health(client, target.status(APP).url + "/health", deadline_s=60)
    assert time.monotonic() - started < 10
    assert not result.ok and result.attempts == 3 and result.status_code == 500
    assert "gave up before the 60 s deadline: HTTP 500, 500, 500 on 3 probes in a row" in result.detail
