"""The store lock as a lease, through whole releases of the `runbook` command against one S3 store
(moto's server mode on loopback): a store outage as a release ends leaves its lock, which `runbook
archive push` gives back so the next release runs at once; a runner paused (SIGSTOP) past its lease
loses it and changes nothing when it is continued, while the runner that took the lock over releases.

Each runner is a real process. The paused runner and its taker release the same app into the same
store from two rehearsal platforms (two machines that share only the store and, here, one archive
folder: the taker must not seal the paused runner's folder as abandoned)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import RUNBOOK_COMMAND, Rehearsal, make_rehearsal, run_cli, wait_for
from s3_world import FaultyProxy, MotoS3, start_moto

BUCKET = "lease-world"
APP = "hotdash-production"


@dataclass
class World:
    moto: MotoS3
    root: Path
    rehearsal: Rehearsal

    def config(self, rehearsal: Rehearsal, url: str, *, lock_minutes: float | None = None) -> Path:
        """A copy of the rehearsal's configuration archiving to url (a store prefix of its own per test)."""
        path = rehearsal.config.with_name(f"hotdash-{url.rsplit('/', 1)[-1]}.toml")
        lease = f"lock_minutes = {lock_minutes}\n" if lock_minutes else ""
        path.write_text(rehearsal.config.read_text() + f'\n[archive]\nurl = "{url}"\n{lease}')
        return path

    def args(self, config: Path, outputs: Path, operator: str) -> list[str]:
        return ["release", "--config", str(config), "--outputs", str(outputs), "--operator", operator]

    def release(self, config: Path, outputs: Path, operator: str, env: dict | None = None):
        return run_cli(*self.args(config, outputs, operator), extra_env={**self.moto.env(), **(env or {})})

    def lock(self, prefix: str) -> dict | None:
        try:
            body = self.moto.client().get_object(Bucket=BUCKET, Key=f"{prefix}/{APP}/release.lock.json")["Body"]
        except self.moto.client().exceptions.NoSuchKey:
            return None
        return json.loads(body.read())

    def head(self, prefix: str) -> str | None:
        keys = self.moto.keys(BUCKET, f"{prefix}/{APP}/checkpoint.json")
        if not keys:
            return None
        body = self.moto.client().get_object(Bucket=BUCKET, Key=keys[0])["Body"].read()
        return json.loads(body)["head_release_id"]


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("lease-world")
    moto = start_moto()
    moto.bucket(BUCKET)
    world = World(moto, root, make_rehearsal(root / "a"))
    try:
        yield world
    finally:
        world.rehearsal.platform().stop()
        moto.server.stop()


def release_id_of(run) -> str:
    line = next(line for line in run.stdout.splitlines() if line.startswith("Release "))
    return line.split()[1].rstrip(":")


def test_a_store_outage_as_a_release_ends_then_archive_push_and_the_next_release_runs_at_once(world):
    """The store fails the release's signatures and the lock's delete (an outage at upload time): exit 7,
    the lock stays, naming the release (and the machine it ran on). `archive push` completes the upload,
    moves the head and gives the lock back, so another runner's release runs at once, not after the lease
    (the default, 5 minutes) runs out."""
    url = f"s3://{BUCKET}/outage"
    config = world.config(world.rehearsal, url)
    proxy = FaultyProxy(world.moto.endpoint)
    try:
        proxy.fail_puts, proxy.fail_deletes = ("SHA256SUMS",), ("release.lock.json",)
        run = world.release(config, world.root / "runner-1", "runner-1", env={"AWS_ENDPOINT_URL": proxy.endpoint})
        assert run.returncode == 7, run.stdout + run.stderr
    finally:
        proxy.close()
    release_id = release_id_of(run)
    left = world.lock("outage")
    assert left["release_id"] == release_id  # the runner could not give it back
    # That runner was another machine (a CI job, gone with its VM): its lock names that host, so no
    # runner here can check its pid; only the lease's expiry, or the push, frees it.
    key = f"outage/{APP}/release.lock.json"
    world.moto.client().put_object(Bucket=BUCKET, Key=key, Body=json.dumps({**left, "host": "ci-runner-17"}).encode())
    push = run_cli(
        "archive", "push", release_id, "--archive", url, "--outputs", str(world.root / "runner-1"),
        extra_env=world.moto.env(),
    )  # fmt: skip
    assert push.returncode == 0, push.stdout + push.stderr
    assert world.head("outage") == release_id
    after = world.release(config, world.root / "runner-2", "runner-2")  # at once: not 5 minutes later
    assert after.returncode == 0, after.stdout + after.stderr
    assert world.head("outage") == release_id_of(after)
    assert f"the release lock of release {release_id}" in push.stdout and "is given back" in push.stdout


def _section_of(outputs: Path) -> tuple[str, int] | None:
    """(release id, index of the section its runner is in), from the release's runner.json."""
    for started in (outputs / APP).glob("*/runner.json"):
        try:
            noted = json.loads(started.read_text())
        except ValueError:
            continue  # being replaced
        return started.parent.name, (noted.get("section") or {}).get("index", 0)
    return None


@pytest.fixture
def other(tmp_path):
    """A second rehearsal platform: the taker's machine, releasing the same app into the same store."""
    other = make_rehearsal(tmp_path / "b")
    yield other
    other.platform().stop()


def pause_past_lease_while_another_takes_over(
    world, prefix, config_a, config_b, shared, sections, *extra, b_outputs=None
):
    """Start runner A, SIGSTOP it once it is in one of `sections` (runner.json), wait for its lease to
    expire, run runner B (into `b_outputs`, else A's folder) to its end, SIGCONT A and wait for it.
    Returns (A's id, A, its output, B's run)."""
    a = subprocess.Popen(
        [*RUNBOOK_COMMAND, *world.args(config_a, shared, "runner-a"), *extra],
        env={**os.environ, "PYTHONUNBUFFERED": "1", **world.moto.env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        reached = wait_for(lambda: (_section_of(shared) or ("", 0))[1] >= min(sections), 240)
        assert reached, "runner A never reached the section to pause in"
        os.kill(a.pid, signal.SIGSTOP)
        try:
            a_id, section = _section_of(shared)
            assert section in sections, f"runner A was in section {section} when it was stopped, not {sections}"

            def expired() -> bool:
                lock = world.lock(prefix)
                return bool(lock) and datetime.fromisoformat(lock["expires_at"]) < datetime.now(UTC)

            assert wait_for(expired, 30)
            assert world.lock(prefix)["release_id"] == a_id
            b = world.release(config_b, b_outputs or shared, "runner-b")
        finally:
            os.kill(a.pid, signal.SIGCONT)
        out, err = a.communicate(timeout=300)
    finally:
        if a.poll() is None:
            a.kill()
            a.wait()
    return a_id, a, out + err, b


def test_a_runner_paused_past_its_lease_loses_it_and_changes_nothing_while_the_taker_releases(world, other):
    """Runner A (lease 6 s) is stopped in its staging deploy; its lease expires; runner B watches it for
    one lease, takes it over (saying A's pid still runs), leaves A's folder to A and releases. Continued,
    A refuses the production deploy (exit 6), deploys nothing, seals its own release as blocked and
    uploads nothing; the store's lock and chain are B's."""
    url = f"s3://{BUCKET}/paused"
    config_a = world.config(world.rehearsal, url, lock_minutes=0.1)
    config_b = world.config(other, url, lock_minutes=0.1)
    shared = world.root / "shared"
    served_before = [r.version for r in world.rehearsal.platform().releases(APP)]
    a_id, a, out, b = pause_past_lease_while_another_takes_over(world, "paused", config_a, config_b, shared, (3, 4, 5))
    assert b.returncode == 0, b.stdout + b.stderr
    assert f"the lease of release {a_id} expired" in b.stdout and "watching it 6 s for a renewal" in b.stdout
    assert f"took over the release lock of {APP} left by release {a_id}" in b.stdout
    assert f"pid {a.pid} still runs on this host (checked)" in b.stdout
    assert f"release {a_id} is left unsealed: its runner still runs" in b.stdout
    assert a.returncode == 6, out
    assert "lease lost: the production deploy refused: the release lock" in out
    assert [r.version for r in world.rehearsal.platform().releases(APP)] == served_before  # nothing deployed
    manifest = json.loads((shared / APP / a_id / "manifest.json").read_text())
    assert manifest["outcome"] == "blocked" and not manifest["abandoned"]  # sealed by A itself
    assert "deploy_production" not in [s["key"] for s in manifest["sections"]]
    assert world.head("paused") == release_id_of(b)
    assert not world.moto.keys(BUCKET, f"paused/{APP}/{a_id}/")  # nothing of A's in the store
    assert world.lock("paused") is None  # B gave it back; A deleted nothing of B's


def test_a_runner_that_lost_its_lease_after_the_production_deploy_does_not_roll_back_over_the_taker(world, other):
    """Runner A ships a broken build (wrong_api_key) and is stopped in its production deploy or smoke
    test past its lease; B takes the lock and releases. Continued, A's smoke test fails, but the rollback
    is refused (the app is B's now: redeploying what served before A could undo B's release): exit 5,
    "production needs a person", and nothing is redeployed on A's platform after its own deploy."""
    url = f"s3://{BUCKET}/rollback"
    if not world.rehearsal.platform().releases(APP):  # a rollback needs something to restore
        first = world.release(world.config(world.rehearsal, f"s3://{BUCKET}/rollback-first"), world.root / "r0", "r0")
        assert first.returncode == 0, first.stdout + first.stderr
    config_a = world.config(world.rehearsal, url, lock_minutes=0.1)
    config_b = world.config(other, url, lock_minutes=0.1)
    outputs = world.root / "rollback-a"  # B archives elsewhere: A's last good release stays its own platform's
    served_before = [r.version for r in world.rehearsal.platform().releases(APP)]
    a_id, a, out, b = pause_past_lease_while_another_takes_over(
        world, "rollback", config_a, config_b, outputs, (6, 7), "--break", "production:wrong_api_key",
        b_outputs=world.root / "rollback-b",
    )  # fmt: skip
    assert b.returncode == 0, b.stdout + b.stderr
    versions = [r.version for r in world.rehearsal.platform().releases(APP)]
    assert len(versions) == len(served_before) + 1, out  # A's own deploy, and no redeploy after it
    assert a.returncode == 5, out
    assert "lease lost: the rollback refused: the release lock" in out
    manifest = json.loads((outputs / APP / a_id / "manifest.json").read_text())
    assert manifest["outcome"] == "rollback failed" and "rollback not run" in manifest["reason"]
    assert "rollback" not in [s["key"] for s in manifest["sections"]]
