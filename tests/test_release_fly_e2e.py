"""Whole releases with `--target fly` through the real CLI, papermill and kernels.

Fly.io cannot be reached from here, so `fly` on PATH is the stand-in flyctl
(tests/fakes/flyctl): flyctl's flags, JSON and exit codes, with machines that are real
stand-in app processes on 127.0.0.1. Each app listens on a port fixed when the test
creates it, and the test configuration's base_url names that port, so the runbooks'
health and smoke checks go over HTTP to what `fly deploy` started, exactly as they go to
https://<app>.fly.dev in production. Secret values for the smoke checks come from
STAGING_* / PRODUCTION_* variables, as CI provides them; the token from FLY_API_TOKEN.

Scenarios are named for what they prove: a good release, a broken production deploy
that is rolled back by redeploying the previous image, production sharing staging's
database (blocked), a missing token (blocked before anything runs), and a missing or bad
signing key (refused before anything runs).
"""

from __future__ import annotations

import base64
import json
import re
import socket
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import CLI_TIMEOUT_S, RUNBOOK_COMMAND, with_database, write_config
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from fakes.fakefly import FakeFly, install_flyctl
from fakes.supabase_auth import FakeSupabaseAuth

from hotdash_release.archive.seal import read_manifest
from hotdash_release.archive.signing import key_id, public_pem
from hotdash_release.plan import PLAN
from hotdash_release.results import read_section_result
from hotdash_release.secrets.required import rehearsal_secret_values
from hotdash_release.targets.fly import FlyTarget
from hotdash_release.targets.local import LocalPlatform

STAGING, PRODUCTION = "hotdash-staging", "hotdash-production"
ENVIRONMENT_OF = {STAGING: "staging", PRODUCTION: "production"}
TOKEN = "fo1_e2e-token-93b1c0d4e5"
# The CI signing key, as the workflow hands it over ($HOTDASH_SIGNING_KEY, PEM).
SIGNING_KEY = Ed25519PrivateKey.generate()
SIGNING_PEM = SIGNING_KEY.private_bytes(
    serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
).decode()
WAIT_TIMEOUT_S = 4


@dataclass
class FlyWorld:
    """One stand-in Fly account, a release configuration that points at it, an archive root."""

    root: Path
    fake: FakeFly
    config: Path
    outputs: Path
    env: dict[str, str]
    values: dict[str, dict[str, str]]  # app -> secret values, as stored on the stand-in
    supabase: FakeSupabaseAuth  # the projects' Auth health endpoint
    database: LocalPlatform  # its PostgreSQL stands in for the projects' databases (no TLS: sslmode disable)

    def stop(self) -> None:
        self.fake.stop()
        self.supabase.stop()
        self.database.stop()

    def release(self, *args: str) -> subprocess.CompletedProcess:
        # A whole environment, not conftest.run_cli's additions to ours: a real FLY_API_TOKEN
        # of the machine running the tests must not reach the stand-in world.
        return subprocess.run(
            self.release_command(*args), capture_output=True, text=True, timeout=CLI_TIMEOUT_S, env=self.env
        )

    def release_command(self, *args: str) -> list[str]:
        # The installed `runbook` command, as the workflow runs it (its kernel pool starts first).
        return [
            *RUNBOOK_COMMAND,
            "release",
            "--target",
            "fly",
            "--config",
            str(self.config),
            "--outputs",
            str(self.outputs),
            "--operator",
            "test-operator",
            *args,
        ]

    def target(self) -> FlyTarget:
        # The test looking at the stand-in, not a release: it has no use for the signing key.
        return FlyTarget(environ={k: v for k, v in self.env.items() if k != "HOTDASH_SIGNING_KEY"})

    def release_dirs(self) -> list[Path]:
        return sorted(p for p in (self.outputs / PRODUCTION).glob("*") if p.is_dir())


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def make_fly_world(root: Path, *, token: str | None = TOKEN, **config_options) -> FlyWorld:
    """config_options: conftest.write_config's (e.g. the watch window)."""
    fake = FakeFly(root / "fly")
    ports = {app: free_port() for app in ENVIRONMENT_OF}
    for app, port in ports.items():
        fake.create_app(app, port=port)
    config = write_config(
        root / "config",
        state_dir=root / "rehearsal",
        edits={
            **{
                f'base_url = "https://{app}.fly.dev"': f'base_url = "http://127.0.0.1:{port}"'
                for app, port in ports.items()
            },
            # The test's PostgreSQL has no TLS; Fly's default (require) is tested in test_database.py.
            'database_sslmode = "require"': 'database_sslmode = "disable"',
        },
        **config_options,
    )
    text = re.sub(r"(\[targets\.fly\][^\[]*?wait_timeout_s = )\d+", rf"\g<1>{WAIT_TIMEOUT_S}", config.read_text())
    config.write_text(text)
    database = LocalPlatform(root / "databases")
    values = {app: with_database(database, app, rehearsal_secret_values(app)) for app in ENVIRONMENT_OF}
    supabase = FakeSupabaseAuth()
    for app, app_values in values.items():
        app_values["SUPABASE_URL"] = supabase.project_url(ENVIRONMENT_OF[app], app_values["SUPABASE_ANON_KEY"])
        fake.store_secrets(app, app_values)
    env = fake.environment(install_flyctl(root / "bin"), token=token) | {"PYTHONUNBUFFERED": "1"}
    env |= smoke_test_variables(values)
    env["HOTDASH_SIGNING_KEY"] = SIGNING_PEM
    return FlyWorld(root, fake, config, root / "outputs", env, values, supabase, database)


def smoke_test_variables(values: dict[str, dict[str, str]]) -> dict[str, str]:
    """STAGING_SHOPIFY_API_KEY=... and so on: where the fly target's checks read values."""
    return {
        f"{ENVIRONMENT_OF[app].upper()}_{name}": value
        for app, app_values in values.items()
        for name, value in app_values.items()
    }


def archived_text(folder: Path) -> str:
    return "\n".join(p.read_text(errors="replace") for p in folder.rglob("*") if p.is_file())


def section_keys(folder: Path) -> list[tuple[str, str]]:
    return [(s["key"], s["outcome"]) for s in read_manifest(folder)["sections"]]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = make_fly_world(tmp_path_factory.mktemp("fly-release"))
    yield world
    world.stop()


@pytest.fixture(scope="module")
def good_release(world):
    done = world.release()
    return done, world.release_dirs()[-1]


def test_good_release_on_fly_is_all_green_and_archived(world, good_release):
    done, folder = good_release
    assert done.returncode == 0, done.stdout + done.stderr
    assert "RELEASED (exit 0)" in done.stdout
    manifest = read_manifest(folder)
    assert manifest["parameters"]["target"] == "fly" and manifest["outcome"] == "released"
    assert section_keys(folder) == [(s.key, "passed") for s in PLAN]
    for key in ("staging_smoke", "production_smoke"):
        supabase = read_section_result(folder, key)["records"]["supabase"]
        assert supabase["ok"] and supabase["status_code"] == 200 and supabase["version"] == "v2.170.0"

    checklist = read_section_result(folder, "preflight")["records"]["checklist"]["rows"]
    target_row = next(r for r in checklist if r["item"] == "Deployment target ready (fly)")
    assert target_row["ok"] and "fly auth whoami: release-bot@hotdash.test" in target_row["detail"]
    # The database check ran from the runner, with the variables the workflow passes and the
    # target's sslmode (this world's PostgreSQL has no TLS; Fly's default is require).
    databases = read_section_result(folder, "preflight")["records"]["databases"]["rows"]
    assert [(r["secret"], r["ok"], r["sslmode"]) for r in databases] == [
        ("STAGING_DATABASE_URL", True, "disable (no TLS)"),
        ("PRODUCTION_DATABASE_URL", True, "disable (no TLS)"),
    ]
    assert all(r["ok"] for r in checklist)
    # Rehearsal values share SCOPES between the apps: a warning, not a stop.
    warnings = read_section_result(folder, "verify_secrets")["warnings"]
    assert warnings == [f"SCOPES has the same value on {STAGING} and {PRODUCTION} (equal digests)"]

    target = world.target()
    for app in ENVIRONMENT_OF:
        status, newest = target.status(app), target.releases(app)[0]
        assert status.state == "started" and newest.status == "complete"
        assert status.image_ref == newest.image_ref and newest.image_ref.startswith(f"registry.fly.io/{app}:")
    deploys = [c["argv"] for c in world.fake.calls() if c["argv"][0] == "deploy"]
    assert [d[d.index("--app") + 1] for d in deploys] == [STAGING, PRODUCTION]
    assert deploys[0] == [
        "deploy",
        "--config",
        str(world.config.parent / "fly.toml"),
        "--app",
        STAGING,
        "--strategy",
        "rolling",
        "--wait-timeout",
        str(WAIT_TIMEOUT_S),
        "--yes",
    ]


def test_flyctl_never_sees_the_token_or_a_secret_value_on_its_command_line(world, good_release):
    _, folder = good_release
    calls = world.fake.calls()
    assert calls and all(c["FLY_NO_UPDATE_CHECK"] == "1" and c["NO_COLOR"] == "1" for c in calls)
    command_lines = json.dumps([c["argv"] for c in calls])
    secrets = [TOKEN] + [v for app_values in world.values.values() for v in app_values.values() if len(v) > 6]
    assert not [s for s in secrets if s in command_lines]
    assert TOKEN not in archived_text(folder)


def release_with_production_deploy_fault(world, fault: str):
    """One release while production's `fly deploy` carries `fault` (fake flyctl); cleared after."""
    world.fake.set_fault("deploy", fault, app=PRODUCTION)
    try:
        return world.release()
    finally:
        world.fake.clear_faults()


def test_broken_production_deploy_on_fly_rolls_back_to_the_previous_image(world, good_release):
    target = world.target()
    before = target.status(PRODUCTION)
    done = release_with_production_deploy_fault(world, "defect:health_failing")
    assert done.returncode == 4, done.stdout + done.stderr
    assert "ROLLED BACK (exit 4)" in done.stdout
    folder = world.release_dirs()[-1]
    keys = section_keys(folder)
    assert keys[-2:] == [("deploy_production", "failed"), ("rollback", "passed")]

    # The failed release was read back from `fly releases --json` and recorded.
    deployment = read_section_result(folder, "deploy_production")["records"]["deployment"]
    assert deployment["status"] == "failed" and deployment["version"] == before.version + 1
    assert "did not pass GET /health" in deployment["detail"]

    after = target.status(PRODUCTION)
    assert after.state == "started" and after.image_ref == before.image_ref
    assert after.version == before.version + 2, "the rollback is a new release, as on Fly"
    rollback = [c["argv"] for c in world.fake.calls() if c["argv"][0] == "deploy"][-1]
    assert rollback == [
        "deploy",
        "--config",
        str(world.config.parent / "fly.production.toml"),
        "--app",
        PRODUCTION,
        "--image",
        before.image_ref,
        "--strategy",
        "immediate",
        "--wait-timeout",
        str(WAIT_TIMEOUT_S),
        "--yes",
    ]


def _production_deploys(world) -> list[list[str]]:
    return [c["argv"] for c in world.fake.calls() if c["argv"][0] == "deploy" and PRODUCTION in c["argv"]]


def test_a_deploy_that_fails_before_rollout_is_not_rolled_back_below_what_was_serving(world, good_release):
    """The downgrade: production serves a newer good image than older complete releases; a deploy
    that fails before any machine is replaced leaves it serving. The rollback must restore exactly
    that (recorded before the deploy), verify it and redeploy nothing, never pick an older image."""
    assert world.release().returncode == 0  # a newer good image on top of older complete ones
    target = world.target()
    serving = target.status(PRODUCTION)
    older = {r.image_ref for r in target.releases(PRODUCTION) if r.status == "complete"} - {serving.image_ref}
    assert older, "older complete releases with other images exist: the old rule would pick one"
    deploys_before = len(_production_deploys(world))
    done = release_with_production_deploy_fault(world, "error:failed to fetch an image or build from source")
    assert done.returncode == 4, done.stdout + done.stderr
    folder = world.release_dirs()[-1]
    assert section_keys(folder)[-2:] == [("deploy_production", "failed"), ("rollback", "passed")]
    recorded = read_section_result(folder, "deploy_production")["records"]["serving_before"]
    assert recorded["image_ref"] == serving.image_ref
    assert [m["image_ref"] for m in recorded["machines"]] == [serving.image_ref], "per machine, from fly status"
    rollback = read_section_result(folder, "rollback")["records"]
    assert rollback["rollback"]["new_version"] is None and "nothing redeployed" in rollback["rollback"]["detail"]
    assert rollback["smoke"]["ok"] is True, "verified by the production smoke test"
    assert len(_production_deploys(world)) == deploys_before + 1, "only the failed deploy: no rollback deploy"
    after = target.status(PRODUCTION)
    assert (after.image_ref, after.version) == (serving.image_ref, serving.version)


def test_a_failed_release_command_leaves_the_old_image_serving_and_nothing_is_redeployed(world, good_release):
    """On Fly a failed release_command records a failed release under a new image ref and updates no
    machine. The newest release is then a failed one with another image: a rollback that picks from
    the release list would redeploy it (or, skipping failed ones, an older image); the recorded
    serving image says there is nothing to restore."""
    target = world.target()
    serving = target.status(PRODUCTION)
    deploys_before = len(_production_deploys(world))
    done = release_with_production_deploy_fault(world, "release_command_failed")
    assert done.returncode == 4, done.stdout + done.stderr
    newest = target.releases(PRODUCTION)[0]
    assert newest.status == "failed" and newest.image_ref != serving.image_ref
    folder = world.release_dirs()[-1]
    deployment = read_section_result(folder, "deploy_production")["records"]["deployment"]
    assert (deployment["version"], deployment["status"]) == (newest.version, "failed")
    rollback = read_section_result(folder, "rollback")["records"]
    assert rollback["rollback"]["new_version"] is None and "nothing redeployed" in rollback["rollback"]["detail"]
    assert rollback["smoke"]["ok"] is True
    assert len(_production_deploys(world)) == deploys_before + 1, "no rollback deploy"
    after = target.status(PRODUCTION)
    assert (after.image_ref, after.version) == (serving.image_ref, serving.version)


def test_a_machine_back_on_its_old_image_after_deploy_exit_0_fails_the_deploy(world, good_release):
    target = world.target()
    serving = target.status(PRODUCTION)
    done = release_with_production_deploy_fault(world, "revert")
    assert done.returncode == 4, done.stdout + done.stderr
    folder = world.release_dirs()[-1]
    assert section_keys(folder)[-2:] == [("deploy_production", "failed"), ("rollback", "passed")]
    records = read_section_result(folder, "deploy_production")["records"]
    deployment = records["deployment"]
    assert deployment["status"] == "complete" and deployment["ok"] is False, "fly deploy said complete"
    assert f"serves {serving.image_ref}, not {deployment['image_ref']}" in deployment["detail"]
    [machine] = records["machines"]["rows"]
    assert (machine["expected_image"], machine["serving_image"]) == (deployment["image_ref"], serving.image_ref)
    assert target.status(PRODUCTION).image_ref == serving.image_ref


def test_a_first_ever_release_that_fails_has_nothing_to_roll_back_to_and_redeploys_nothing(tmp_path):
    """Before production's first release `fly status` lists a machine made by hand, named by a
    digest no release has. The failed first release must not "roll back" to it: nothing to roll
    back to, no `fly deploy --image`, exit 5 (production needs a person)."""
    world = make_fly_world(tmp_path)
    try:
        placeholder = world.fake.add_machine_outside_releases(PRODUCTION)
        assert world.target().status(PRODUCTION).image_ref == placeholder
        done = release_with_production_deploy_fault(world, "defect:health_failing")
        assert done.returncode == 5, done.stdout + done.stderr
        folder = world.release_dirs()[-1]
        assert section_keys(folder)[-2:] == [("deploy_production", "failed"), ("rollback", "failed")]
        rollback = read_section_result(folder, "rollback")["records"]["rollback"]
        assert rollback["detail"].startswith("nothing to roll back to: what production served before this release")
        assert placeholder in rollback["detail"] and "nothing redeployed" in rollback["detail"]
        assert rollback["new_version"] is None and rollback["to_image"] == ""
        assert "nothing to roll back to" in read_manifest(folder)["reason"]
        deploys = _production_deploys(world)
        assert len(deploys) == 1 and "--image" not in deploys[0], "only the failed deploy: no rollback deploy"
        assert [r.status for r in world.target().releases(PRODUCTION)] == ["failed"]
    finally:
        world.stop()


def test_a_required_secret_unset_during_the_release_fails_the_rollback_with_exit_5(world, good_release):
    """Someone unsets production's SCOPES (`fly secrets unset --stage`: the running machine keeps
    it) after the secrets were verified; the production deploy then fails before rollout, so the
    rollback redeploys nothing and its health check and smoke test pass on the machine as it was.
    An unset secret is a changed one: the rollback fails naming it, exit 5 (never "unchanged")."""
    target = world.target()
    serving = target.status(PRODUCTION)
    scopes = world.values[PRODUCTION]["SCOPES"]
    world.fake.set_fault("deploy", "error:failed to fetch an image or build from source", app=PRODUCTION)
    runner = subprocess.Popen(
        world.release_command(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=world.env
    )
    try:
        lines = []
        for line in runner.stdout:  # the staging deploy starts: secrets were verified on both apps
            lines.append(line)
            if line.startswith("[3/9]"):
                world.fake.machines().unset_secrets(PRODUCTION, ["SCOPES"])
                break
        out, err = runner.communicate(timeout=CLI_TIMEOUT_S)
    finally:
        world.fake.clear_faults()
        world.fake.store_secrets(PRODUCTION, {"SCOPES": scopes})  # staged again: the machine never lost it
    out = "".join(lines) + out
    assert runner.returncode == 5, out + err
    assert "ROLLBACK FAILED (exit 5)" in out and "SCOPES changed since the last good release" in out
    folder = world.release_dirs()[-1]
    assert section_keys(folder)[-2:] == [("deploy_production", "failed"), ("rollback", "failed")]
    records = read_section_result(folder, "rollback")["records"]
    assert records["rollback"]["ok"] is True and "nothing redeployed" in records["rollback"]["detail"]
    assert records["health"]["ok"] is True and records["smoke"]["ok"] is True
    compared = {row["name"]: row for row in records["secrets_since_last_good"]["rows"]}
    assert compared["SCOPES"]["ok"] is False and compared["SCOPES"]["digest_now"] == ""
    assert all(row["ok"] for name, row in compared.items() if name != "SCOPES")
    after = target.status(PRODUCTION)
    assert (after.image_ref, after.version) == (serving.image_ref, serving.version)


def test_a_rollback_whose_redeploy_exits_0_while_the_machine_serves_the_failed_build_fails(tmp_path):
    """The rollback's `fly deploy --image <what served before>` exits 0 and `fly releases` lists it
    complete, while the machine went back to the failed build (the flyctl quirk above, now on the
    rollback). The failed build only fills the log with errors, so the rollback's health check,
    smoke test and secrets all pass on it: only the machines say production was not restored."""
    world = make_fly_world(tmp_path, watch_minutes=0.05, watch_interval_s=0.25)
    world.env["HOTDASH_DEGRADE_AFTER_SECONDS"] = "0"  # error_logs: an error line every half second from its start
    try:
        good = world.release()
        assert good.returncode == 0, good.stdout + good.stderr
        good_image = world.target().status(PRODUCTION).image_ref
        world.fake.set_fault("deploy", "defect:error_logs", app=PRODUCTION)
        world.fake.set_fault("deploy --image", "revert", app=PRODUCTION)
        try:
            done = world.release()
        finally:
            world.fake.clear_faults()
        assert done.returncode == 5, done.stdout + done.stderr
        assert "ROLLBACK FAILED (exit 5)" in done.stdout
        folder = world.release_dirs()[-1]
        assert section_keys(folder)[-2:] == [("watch", "failed"), ("rollback", "failed")]
        failed_build = read_section_result(folder, "deploy_production")["records"]["deployment"]["image_ref"]
        assert failed_build != good_image
        records = read_section_result(folder, "rollback")["records"]
        rollback = records["rollback"]
        assert rollback["ok"] is False and rollback["to_image"] == good_image and rollback["new_version"] is not None
        assert f"serves {failed_build}, not {good_image}" in rollback["detail"]
        [machine] = records["machines"]["rows"]
        assert (machine["expected_image"], machine["serving_image"]) == (good_image, failed_build)
        assert records["health"]["ok"] is True and records["smoke"]["ok"] is True, "only the machines tell"
        assert world.target().status(PRODUCTION).image_ref == failed_build
    finally:
        world.stop()


def test_production_on_the_staging_database_is_blocked_before_any_deploy(tmp_path):
    world = make_fly_world(tmp_path)
    try:
        shared = world.values[STAGING]["DATABASE_URL"]
        world.fake.store_secrets(PRODUCTION, {"DATABASE_URL": shared})
        world.env["PRODUCTION_DATABASE_URL"] = shared
        done = world.release()
        assert done.returncode == 3, done.stdout + done.stderr
        assert f"DATABASE_URL has the same value on {STAGING} and {PRODUCTION}" in done.stdout
        folder = world.release_dirs()[-1]
        assert section_keys(folder) == [("preflight", "passed"), ("verify_secrets", "failed")]
        target = world.target()
        assert target.releases(STAGING) == [] and target.releases(PRODUCTION) == []
    finally:
        world.stop()


def test_a_missing_token_blocks_at_preflight_and_names_the_variables(tmp_path):
    world = make_fly_world(tmp_path, token=None)
    try:
        done = world.release()
    finally:
        world.database.stop()
    assert done.returncode == 3, done.stdout + done.stderr
    folder = world.release_dirs()[-1]
    assert section_keys(folder) == [("preflight", "failed")]
    checklist = read_section_result(folder, "preflight")["records"]["checklist"]["rows"]
    target_row = next(r for r in checklist if r["item"] == "Deployment target ready (fly)")
    assert "FLY_API_TOKEN" in target_row["detail"] and "FLY_ACCESS_TOKEN" in target_row["detail"]
    assert world.fake.calls() == []


def test_the_report_shows_the_supabase_results(world, good_release):
    _, folder = good_release
    report = (folder / "report.html").read_text()
    assert report.count('Database connected (Supabase) <span class="badge passed">PASSED</span>') == 2
    assert "GoTrue v2.170.0" in report


def test_a_failing_target_check_shows_flyctls_own_message_redacted(tmp_path):
    """`fly auth whoami` refused: the terminal and the report say what flyctl said, not only
    "Deployment target ready (fly)"; a secret value in its message is redacted."""
    world = make_fly_world(tmp_path)
    try:
        secret = world.values[PRODUCTION]["SHOPIFY_API_SECRET"]
        world.fake.set_fault("auth whoami", f"error:No access token available (token {secret} rejected)")
        done = world.release()
        assert done.returncode == 3, done.stdout + done.stderr
        line = next(line for line in done.stdout.splitlines() if line.startswith("[1/9] Pre-deployment checklist:"))
        assert "Deployment target ready (fly) (fly auth whoami: " in line
        assert "No access token available (token [redacted SHOPIFY_API_SECRET@production] rejected)" in line
        assert secret not in done.stdout + done.stderr
        folder = world.release_dirs()[-1]
        report = (folder / "report.html").read_text()
        assert "No access token available (token [redacted SHOPIFY_API_SECRET@production] rejected)" in report
        assert (folder / "manifest.json").is_file()
    finally:
        world.stop()


def test_a_public_secret_equal_to_the_apps_url_is_exported_and_the_release_is_sealed(tmp_path):
    """SHOPIFY_APP_URL is the app's URL, shown in every record: declared public in hotdash.toml,
    a workflow may export it without leaving the release unsealed (exit 1) for good."""
    from hotdash_release.config import load_config

    world = make_fly_world(tmp_path)
    try:
        config = load_config(world.config)
        for env in config.environments.values():
            world.env[f"{env.name.upper()}_SHOPIFY_APP_URL"] = env.base_url
        done = world.release()
        assert done.returncode == 0, done.stdout + done.stderr
        folder = world.release_dirs()[-1]
        assert (folder / "manifest.json").is_file()
        assert config.environment("production").base_url in archived_text(folder)  # shown, not redacted
    finally:
        world.stop()


def test_the_release_is_signed_with_the_ci_key_which_never_reaches_the_archive(world, good_release, tmp_path):
    from conftest import run_cli

    _, folder = good_release
    assert read_manifest(folder)["signing_key"] == key_id(SIGNING_KEY.public_key())
    calls = world.fake.calls()
    assert calls and not any(c["signing_key_in_environment"] for c in calls)
    raw = SIGNING_KEY.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )
    body = "".join(SIGNING_PEM.splitlines()[1:-1])
    archived = archived_text(folder) + (folder.parent / "checkpoint.json").read_text()
    for form in (body, raw.hex(), base64.b64encode(raw).decode(), *SIGNING_PEM.splitlines()[1:-1]):
        assert form not in archived
    assert not any(raw in p.read_bytes() for p in folder.rglob("*") if p.is_file())
    public = tmp_path / "ci.pub.pem"
    public.write_bytes(public_pem(SIGNING_KEY.public_key()))
    done = run_cli("verify", "--outputs", str(world.outputs), "--trust-key", str(public))
    assert done.returncode == 0, done.stdout
    assert f"signed by {key_id(SIGNING_KEY.public_key())}: given with --trust-key" in done.stdout


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (None, "HOTDASH_SIGNING_KEY: not set; a release to 'fly' is signed with a key listed in keys/trusted.toml"),
        ("bm90LWEta2V5", "HOTDASH_SIGNING_KEY: not an Ed25519 private key"),
        ("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----", "HOTDASH_SIGNING_KEY: not an Ed25519"),
    ],
    ids=["missing", "not_a_key", "bad_pem"],
)
def test_a_missing_or_bad_signing_key_refuses_the_release_before_anything_runs(tmp_path, value, message):
    world = make_fly_world(tmp_path)
    try:
        world.env.pop("HOTDASH_SIGNING_KEY")
        if value is not None:
            world.env["HOTDASH_SIGNING_KEY"] = value
        done = world.release()
        assert done.returncode == 2, done.stdout + done.stderr
        assert done.stderr.splitlines() == [f"runbook: error: {done.stderr.split('error: ', 1)[1].strip()}"]
        assert message in done.stderr and (value is None or value not in done.stderr)
        assert world.release_dirs() == [] and world.fake.calls() == []
    finally:
        world.stop()
