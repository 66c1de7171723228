"""Whole releases through the `runbook` command against one S3 store (moto's server mode on
loopback, a bucket with Object Lock): several runners with nothing in common but the store's
address, racing runners, three apps at once, and a store that fails mid-upload.

The module shares one store and one rehearsal platform; each "runner" is an archive folder of
its own (a fresh clone in CI: nothing of the others' on its disk)."""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import RUNBOOK_COMMAND, make_rehearsal, run_cli, write_config
from s3_world import SECRET_ACCESS_KEY, FaultyProxy, MotoS3, start_moto

BUCKET = "release-archive"
URL = f"s3://{BUCKET}/hotdash"
APP = "hotdash-production"


@dataclass
class StoreWorld:
    moto: MotoS3
    root: Path
    rehearsal: object
    config: Path
    runs: dict[str, subprocess.CompletedProcess]

    def release(self, runner: str, *extra: str, config: Path | None = None, env: dict | None = None):
        return run_cli(*self.release_args(runner, *extra, config=config), extra_env={**self.moto.env(), **(env or {})})

    def release_args(self, runner: str, *extra: str, config: Path | None = None) -> list[str]:
        return [
            "release",
            "--config",
            str(config or self.config),
            "--outputs",
            str(self.root / runner),
            "--operator",
            runner,
            *extra,
        ]

    def popen(self, runner: str, config: Path | None = None) -> subprocess.Popen:
        import os

        return subprocess.Popen(
            [*RUNBOOK_COMMAND, *self.release_args(runner, config=config)],
            env={**os.environ, "PYTHONUNBUFFERED": "1", **self.moto.env()},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def cli(self, *args: str, env: dict | None = None):
        return run_cli(*args, extra_env={**self.moto.env(), **(env or {})})

    def verify(self, runner: str = "auditor"):
        return self.cli("verify", "--archive", URL, "--outputs", str(self.root / runner))

    def sealed_ids(self, app: str = APP) -> list[str]:
        keys = self.moto.keys(BUCKET, f"hotdash/{app}/")
        return sorted(k.split("/")[2] for k in keys if k.endswith("/manifest.json"))

    def head(self, app: str = APP) -> dict:
        body = self.moto.client().get_object(Bucket=BUCKET, Key=f"hotdash/{app}/checkpoint.json")["Body"].read()
        return json.loads(body)


def release_id_of(run: subprocess.CompletedProcess) -> str:
    line = next(line for line in run.stdout.splitlines() if line.startswith("Release "))
    return line.split()[1].rstrip(":")


def with_app(world_root: Path, name: str, state_dir: Path) -> Path:
    """A configuration releasing other apps (production and staging) into the same store."""
    renames = {"hotdash-production": f"{name}-production", "hotdash-staging": f"{name}-staging"}
    config = write_config(
        world_root / f"config-{name}",
        state_dir=state_dir,
        edits={f'app = "{old}"': f'app = "{new}"' for old, new in renames.items()},
    )
    for fly in ("fly.toml", "fly.production.toml"):
        path = config.parent / fly
        text = path.read_text()
        for old, new in renames.items():
            text = text.replace(f'"{old}"', f'"{new}"')
        path.write_text(text)
    return config


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Three runners release in turn into one store; each sees only the store."""
    root = tmp_path_factory.mktemp("store-world")
    moto = start_moto()
    moto.bucket(BUCKET, object_lock=True)
    rehearsal = make_rehearsal(root)
    config = rehearsal.config
    config.write_text(config.read_text() + f'\n[archive]\nurl = "{URL}"\nretention_days = 30\n')
    world = StoreWorld(moto, root, rehearsal, config, {})
    try:
        for runner in ("runner-1", "runner-2", "runner-3"):
            run = world.release(runner)
            assert run.returncode == 0, run.stdout + run.stderr
            world.runs[runner] = run
        yield world
    finally:
        rehearsal.platform().stop()
        moto.server.stop()


def test_the_third_runner_sees_the_first_two_in_its_history_and_baselines(world):
    first, second, third = (release_id_of(world.runs[f"runner-{i}"]) for i in (1, 2, 3))
    assert world.sealed_ids() == [first, second, third]
    assert "1 new manifest(s) read" in world.runs["runner-2"].stdout
    assert "2 new manifest(s) read" in world.runs["runner-3"].stdout
    report = (world.root / "runner-3" / APP / third / "report.html").read_text()
    assert "2 earlier releases of this app on this target" in report
    assert f"../{second}/report.html" in report  # the last good release it compares with
    manifest = json.loads((world.root / "runner-3" / APP / third / "manifest.json").read_text())
    assert manifest["previous_release_id"] == second  # one chain across runners
    assert world.head()["head_release_id"] == third and world.head()["releases"] == 3
    from hotdash_release.integrations.github import job_summary_markdown

    summary = job_summary_markdown(world.root / "runner-3" / APP / third)
    assert f"Archive store: `{URL}`: uploaded, and the chain head above is the store's head" in summary


def test_a_fourth_runner_with_only_the_address_verifies_and_indexes(world):
    verify = world.verify("runner-4")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert "verify: ok: 3 release(s)" in verify.stdout
    index = world.cli("index", "--archive", URL, "--outputs", str(world.root / "runner-4"))
    assert index.returncode == 0, index.stdout + index.stderr
    page = world.moto.client().get_object(Bucket=BUCKET, Key="hotdash/index.html")["Body"].read().decode()
    assert "3 releases of 1 app(s)" in page
    history = world.cli("history", "--archive", URL, "--outputs", str(world.root / "runner-4"))
    assert history.stdout.count("released") >= 3 and "3 of 3 releases" in history.stdout
    plan = world.cli("plan", "--config", str(world.config), "--outputs", str(world.root / "runner-4"))
    assert plan.returncode == 0, plan.stderr
    page = next((world.root / "runner-4").glob("plan-*.html")).read_text()
    third = release_id_of(world.runs["runner-3"])
    assert f"{URL}; head of {APP}: {third} (3 release(s))" in page  # [archive] url of the configuration


def test_sealed_objects_are_retained_and_no_object_holds_the_store_secret(world):
    from hotdash_release.secrets.redact import Redactor, find_secret_values

    client = world.moto.client()
    redactor = Redactor({"AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY}, min_length=8)
    for key in world.moto.keys(BUCKET):
        assert not find_secret_values(client.get_object(Bucket=BUCKET, Key=key)["Body"].read(), redactor), key
        if "/manifest.json" in key or key.endswith("report.html"):
            head = client.head_object(Bucket=BUCKET, Key=key)
            assert head.get("ObjectLockMode") == "COMPLIANCE", key  # the default mode
    for runner in ("runner-1", "runner-2", "runner-3"):
        for path in (world.root / runner).rglob("*"):
            if path.is_file():
                assert not find_secret_values(path.read_bytes(), redactor), path


def test_two_runners_racing_for_one_app_one_proceeds_one_exits_6(world):
    before = world.sealed_ids()
    racers = [world.popen("runner-1"), world.popen("runner-2")]
    outs = [racer.communicate(timeout=300) for racer in racers]
    codes = sorted(racer.returncode for racer in racers)
    assert codes == [0, 6], outs
    loser = outs[[r.returncode for r in racers].index(6)]
    assert "store lock s3://release-archive/hotdash/hotdash-production/release.lock.json" in loser[1]
    assert "is being released by runner-" in loser[1]
    after = world.sealed_ids()
    assert len(after) == len(before) + 1
    assert world.verify().returncode == 0


def test_three_apps_released_at_once_keep_three_chains_and_one_index(world):
    names = ("alpha", "beta", "gamma")
    configs = {name: with_app(world.root, name, world.rehearsal.state_dir) for name in names}
    for config in configs.values():
        config.write_text(config.read_text() + f'\n[archive]\nurl = "{URL}"\n')
    runs = [world.popen(f"runner-{name}", config=configs[name]) for name in names]
    outs = [run.communicate(timeout=300) for run in runs]
    assert [run.returncode for run in runs] == [0, 0, 0], outs
    for name in names:
        assert world.head(f"{name}-production")["releases"] == 1
    verify = world.verify()
    assert verify.returncode == 0, verify.stdout
    page = world.moto.client().get_object(Bucket=BUCKET, Key="hotdash/index.html")["Body"].read().decode()
    assert "of 4 app(s)" in page  # the last index written counts every app's release
    for name in names:
        assert f"{name}-production" in page


def test_a_store_failing_mid_upload_exits_7_keeps_the_release_and_archive_push_completes_it(world):
    proxy = FaultyProxy(world.moto.endpoint)
    try:
        proxy.fail_puts = ("SHA256SUMS",)  # the pages and results go in; the signatures and manifest do not
        head_before = world.head()
        run = world.release("runner-5", env={"AWS_ENDPOINT_URL": proxy.endpoint})
        assert run.returncode == 7, run.stdout + run.stderr
        release_id = release_id_of(run)
        assert "NOT STORED" in run.stdout and f"runbook archive push {release_id}" in run.stdout
        assert release_id not in world.sealed_ids()  # nothing half visible: no manifest, head unmoved
        assert world.head() == head_before
        assert (world.root / "runner-5" / APP / release_id / "manifest.json").is_file()  # the local copy stays
        from hotdash_release.integrations.github import job_summary_markdown

        summary = job_summary_markdown(world.root / "runner-5" / APP / release_id)
        assert (
            f"**NOT uploaded**; the artifact holds the release. Complete it: `runbook archive push {release_id}`"
            in summary
        )
        # The same runner cannot start another release while one is owed to the store.
        again = world.release("runner-5")
        assert again.returncode == 2 and f"archive push {release_id}" in again.stderr
    finally:
        proxy.close()
    push = world.cli("archive", "push", release_id, "--archive", URL, "--outputs", str(world.root / "runner-5"))
    assert push.returncode == 0, push.stdout + push.stderr
    assert world.head()["head_release_id"] == release_id
    verify = world.verify()
    assert verify.returncode == 0, verify.stdout


def test_a_failed_rollback_exits_5_when_the_store_fails_too(tmp_path):
    """The first release of an app into a store of its own, its production build crashing at start:
    nothing to roll back to ("rollback failed"), and the store refuses the upload. Production
    needs a person first: exit 5, the store's failure said below it, the sealed copy kept."""
    moto = start_moto()
    proxy = FaultyProxy(moto.endpoint)
    rehearsal = make_rehearsal(tmp_path, wait_timeout_s=4)
    try:
        # A bucket of its own: moto's servers in one process share one backend (the module's world's).
        moto.bucket("rollback-archive")
        rehearsal.config.write_text(
            rehearsal.config.read_text() + '\n[archive]\nurl = "s3://rollback-archive/hotdash"\n'
        )
        proxy.fail_puts = ("SHA256SUMS",)
        run = run_cli(
            "release",
            "--config",
            str(rehearsal.config),
            "--outputs",
            str(rehearsal.outputs),
            "--break",
            "production:crash_at_start",
            extra_env={**moto.env(), "AWS_ENDPOINT_URL": proxy.endpoint},
        )
        assert run.returncode == 5, run.stdout + run.stderr
        release_id = release_id_of(run)
        assert f"Release {release_id}: ROLLBACK FAILED (exit 5)" in run.stdout
        assert "archive store: NOT STORED" in run.stdout and f"runbook archive push {release_id}" in run.stdout
        assert proxy.refused and (rehearsal.outputs / APP / release_id / "manifest.json").is_file()
    finally:
        proxy.close()
        rehearsal.platform().stop()
        moto.server.stop()


def test_a_runner_with_nothing_but_the_store_watches_a_release_again_into_the_same_chain(world):
    third = release_id_of(world.runs["runner-3"])
    before = world.sealed_ids()
    watch = world.cli(
        "watch", third, "--minutes", "0.01", "--config", str(world.config), "--outputs", str(world.root / "runner-5")
    )
    assert watch.returncode == 0, watch.stdout + watch.stderr
    (record,) = set(world.sealed_ids()) - set(before)
    assert world.head()["head_release_id"] == record
    manifest = json.loads((world.root / "runner-5" / APP / record / "manifest.json").read_text())
    assert manifest["watched_release"] == third and manifest["previous_release_id"] == before[-1]
    assert world.verify("runner-6").returncode == 0


def test_the_audit_reads_the_store_and_its_page_works_offline(world):
    """`runbook audit --archive URL` on a machine with nothing but the store's address: one row per
    production change the store holds, and the page's links resolve inside its own folder."""
    import pandas

    out = world.root / "audit-from-store"
    done = world.cli("audit", "--archive", URL, "--outputs", str(world.root / "runner-5"), "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    ids = [release_id_of(world.runs[f"runner-{i}"]) for i in (1, 2, 3)]
    table = pandas.read_csv(out / "audit.csv")
    assert set(ids) <= set(table["release_id"]) and len(table) == len(set(table["release_id"]))
    page = (out / "audit.html").read_text()
    for release_id in ids:
        assert f'href="archive/{APP}/{release_id}/report.html"' in page
        assert (out / "archive" / APP / release_id / "report.html").is_file(), "the link works offline"
