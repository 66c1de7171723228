"""A release's life from the outside: signals at every phase, one release per app on a
platform, and releases whose runner died sealed by whoever comes next. Each through the
`runbook` command as people and CI run it, with real kernels, papermill and app processes.

Signals are sent when the runner's progress output says which phase it is in (an event),
never after a sleep."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import RUNBOOK_COMMAND, make_rehearsal, wait_for

from hotdash_release.archive.integrity import verify_release
from hotdash_release.locks import lock_paths, release_lock

PRODUCTION = "hotdash-production"
BROKEN = ("--break", "production:wrong_api_key")


def manifest_of(folder: Path) -> dict:
    return json.loads((folder / "manifest.json").read_text())


class Runner:
    """`runbook release` in a session of its own (as a terminal's foreground job would be),
    its progress read line by line."""

    def __init__(self, world, *args: str, outputs: Path | None = None, nohup: bool = False) -> None:
        command = [
            *RUNBOOK_COMMAND,
            "release",
            "--config",
            str(world.config),
            "--outputs",
            str(outputs or world.outputs),
            "--operator",
            "test-operator",
            *args,
        ]
        self.proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            start_new_session=True,
            # nohup: SIGHUP ignored from the start, as `nohup runbook release ...` starts it.
            preexec_fn=(lambda: signal.signal(signal.SIGHUP, signal.SIG_IGN)) if nohup else None,
        )
        self.lines: list[str] = []
        self.release_id = ""

    def wait_for_line(self, predicate) -> str:
        for line in self.proc.stdout:
            self.lines.append(line)
            if line.startswith("HotDash release "):
                self.release_id = line.split()[2].rstrip(":")
            if predicate(line):
                return line
        raise AssertionError("the runner ended before the awaited line:\n" + "".join(self.lines))

    def finish(self, timeout: float = 180) -> tuple[str, str]:
        out, err = self.proc.communicate(timeout=timeout)
        return "".join(self.lines) + out, err

    def hang_up(self, timeout: float = 180) -> tuple[str, str]:
        """What a closed terminal or a dropped SSH connection does: SIGHUP to the foreground
        process group, and the terminal is gone (every later line of output meets a closed pipe)."""
        os.killpg(self.proc.pid, signal.SIGHUP)
        self.proc.stdout.close()
        err = self.proc.stderr.read()
        self.proc.wait(timeout=timeout)
        return "".join(self.lines), err


def starting(prefix: str):
    return lambda line: line.startswith(prefix) and line.rstrip().endswith("...")


@pytest.fixture(scope="module")
def good(tmp_path_factory):
    """A platform with a good production release to roll back to; its image is what production
    must serve whenever a signalled broken release ends."""
    world = make_rehearsal(tmp_path_factory.mktemp("lifecycle"), wait_timeout_s=4)
    done = world.release()
    assert done.returncode == 0, done.stdout + done.stderr
    yield world
    world.platform().stop()


def assert_production_good(world, image: str) -> None:
    status = world.platform().status(PRODUCTION)
    assert status.state == "started" and status.image_ref == image, status
    assert httpx.get(f"{status.url}/health", timeout=5).status_code == 200


def assert_one_line(err: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err


# -- signals ----------------------------------------------------------------------------------

#: (phase, the progress line that says the runner is in it, outcome sealed, `during` recorded)
PHASES = [
    ("before the first section", lambda line: line.startswith("archive: "), "aborted", None),
    ("preflight", starting("[1/9]"), "aborted", None),
    ("staging", starting("[3/9]"), "aborted", "Step 2: Deploy to staging first"),
    ("deploy_production", starting("[6/9]"), "rolled back", "Step 4: Deploy to production"),
    ("production_smoke", starting("[7/9]"), "rolled back", "Step 5: Production smoke test"),
    ("rollback", starting("[rollback]"), "rolled back", "Rollback plan"),
    ("sealing", lambda line: line.startswith("[rollback]") and "passed in" in line, "rolled back", None),
]


#: SIGTERM and SIGHUP (a closed terminal: Runner.hang_up) at every phase; SIGINT as a terminal's
#: Ctrl-C sends it (to the whole foreground process group: kernels, template, worker and apps
#: must not act on it) where it matters most.
CASES = (
    [(signal.SIGTERM, *phase) for phase in PHASES]
    + [(signal.SIGHUP, *phase) for phase in PHASES]
    + [(signal.SIGINT, *phase) for phase in PHASES if phase[0] in ("preflight", "deploy_production", "rollback")]
)


@pytest.mark.parametrize(
    ("sig", "phase", "event", "outcome", "during"), CASES, ids=[f"{c[0].name}-{c[1]}" for c in CASES]
)
def test_a_signal_at_any_phase_leaves_production_verified_and_the_release_sealed(
    good, sig, phase, event, outcome, during
):
    image = good.platform().status(PRODUCTION).image_ref
    before = len(good.release_dirs())
    runner = Runner(good, *BROKEN)
    runner.wait_for_line(event)
    if sig == signal.SIGHUP:
        out, err = runner.hang_up()
    else:
        # SIGINT as a terminal's Ctrl-C sends it: to the whole foreground process group.
        os.killpg(runner.proc.pid, sig) if sig == signal.SIGINT else runner.proc.send_signal(sig)
        out, err = runner.finish()
    assert runner.proc.returncode == 130, out + err
    assert_one_line(err)
    assert sig.name in err
    assert_production_good(good, image)
    folders = good.release_dirs()
    assert len(folders) == before + 1
    folder = folders[-1]
    manifest = manifest_of(folder)
    assert manifest["outcome"] == outcome and manifest["exit_code"] == 130, manifest["reason"]
    assert not verify_release(folder)
    if during:
        first = manifest["signals"][0]
        assert first["signal"] == sig.name and first["during"] == during
        assert sig.name in manifest["reason"] and during in manifest["reason"]
    if outcome == "rolled back" and during:
        # Production changed: the phase finished, the rollback with it, though the signal came first.
        assert first["deferred"] is True
        sections = {s["key"]: s["outcome"] for s in manifest["sections"]}
        assert sections["rollback"] == "passed" and "notify" not in sections
    assert not lock_paths(good.platform().release_lock_dir, PRODUCTION)[1].exists()


def test_a_release_started_under_nohup_outlives_its_terminal(good):
    runner = Runner(good, nohup=True)
    runner.wait_for_line(starting("[1/9]"))
    out, err = runner.hang_up()
    assert runner.proc.returncode == 0 and err == "", out + err
    manifest = manifest_of(good.outputs / PRODUCTION / runner.release_id)
    assert manifest["outcome"] == "released" and not manifest["signals"], manifest["reason"]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP], ids=lambda sig: sig.name)
def test_a_signal_while_production_changes_gives_5_when_the_rollback_fails(tmp_path, sig):
    # A first release has nothing to roll back to: the rollback it needs fails.
    world = make_rehearsal(tmp_path, wait_timeout_s=4)
    try:
        runner = Runner(world, *BROKEN)
        runner.wait_for_line(starting("[6/9]"))
        if sig == signal.SIGHUP:
            out, err = runner.hang_up()
        else:
            runner.proc.send_signal(sig)
            out, err = runner.finish()
        assert runner.proc.returncode == 5, out + err
        assert_one_line(err)
        assert "production needs a person" in err
        folder = world.release_dirs()[0]
        manifest = manifest_of(folder)
        assert manifest["outcome"] == "rollback failed" and manifest["exit_code"] == 5
        assert manifest["signals"][0]["during"] == "Step 4: Deploy to production"
        assert not verify_release(folder)
    finally:
        world.platform().stop()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT, signal.SIGHUP], ids=lambda sig: sig.name)
def test_a_signal_in_the_first_moments_gives_130_and_one_line(tmp_path, sig):
    world = make_rehearsal(tmp_path, wait_timeout_s=4)
    runner = Runner(world)
    # The event: the command's first child (the kernel template, started before the CLI and
    # its imports, about 0.3 s of them): the signal lands while the command is still importing.
    command = psutil.Process(runner.proc.pid)
    assert wait_for(lambda: command.children(), timeout_s=10)
    children = command.children(recursive=True)
    runner.proc.send_signal(sig)
    out, err = runner.finish()
    assert runner.proc.returncode == 130, out + err
    assert_one_line(err)
    assert f"aborted: {sig.name}" in err
    assert not world.release_dirs() and not (world.state_dir / "apps").exists()
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert not alive, f"children left running: {alive}"


# -- one release per app on a platform ---------------------------------------------------------


def test_two_releases_of_one_app_with_different_archives_exclude_each_other(good, tmp_path):
    first = Runner(good)
    first.wait_for_line(starting("[1/9]"))
    os.kill(first.proc.pid, signal.SIGSTOP)  # it holds the lock for as long as the second tries
    try:
        second = good.runbook(
            "release", "--config", str(good.config), "--outputs", str(tmp_path / "elsewhere"), "--operator", "eve"
        )
    finally:
        os.kill(first.proc.pid, signal.SIGCONT)
    out, err = first.finish()
    assert second.returncode == 6, second.stdout + second.stderr
    assert_one_line(second.stderr)
    assert first.release_id in second.stderr and "test-operator" in second.stderr and "since" in second.stderr
    assert first.proc.returncode == 0, out + err
    assert not (tmp_path / "elsewhere" / PRODUCTION).exists() or not any(
        (tmp_path / "elsewhere" / PRODUCTION).iterdir()
    )


HOLDER = """
import sys
from pathlib import Path
from hotdash_release.locks import ReleaseLocked, release_lock
lock_dir, app, release_id = sys.argv[1:4]
sys.stdin.readline()  # "go": every taker starts at once
try:
    with release_lock(Path(lock_dir), app, release_id=release_id, operator="bob"):
        print("won", flush=True)
        sys.stdin.read()  # hold until told to stop (or killed)
except ReleaseLocked:
    print("locked", flush=True)
"""


def _taker(lock_dir: Path, release_id: str) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(lock_dir), PRODUCTION, release_id],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )


def test_a_holder_killed_with_sigkill_leaves_its_lock_to_the_next_release_which_records_it(tmp_path):
    world = make_rehearsal(tmp_path, wait_timeout_s=4)
    lock_dir = world.platform().release_lock_dir
    holder = _taker(lock_dir, "20261125T000000Z-dead00")
    holder.stdin.write("go\n")
    holder.stdin.flush()
    assert holder.stdout.readline().strip() == "won"
    holder.kill()
    holder.wait()
    try:
        done = world.release()
        assert done.returncode == 0, done.stdout + done.stderr
        assert "took over the release lock" in done.stdout and "20261125T000000Z-dead00" in done.stdout
        taken = manifest_of(world.release_dirs()[0])["lock"]["taken_over_from"]
        assert taken["operator"] == "bob" and taken["release_id"] == "20261125T000000Z-dead00"
        assert not lock_paths(lock_dir, PRODUCTION)[1].exists()
    finally:
        world.platform().stop()


def test_an_empty_holder_file_is_taken_over_and_recorded(tmp_path):
    world = make_rehearsal(tmp_path, wait_timeout_s=4)
    lock_dir = world.platform().release_lock_dir
    lock_dir.mkdir(parents=True)
    lock_paths(lock_dir, PRODUCTION)[1].write_text("")
    try:
        done = world.release()
        assert done.returncode == 0, done.stdout + done.stderr
        assert manifest_of(world.release_dirs()[0])["lock"]["taken_over_from"] == {"unreadable": "empty"}
    finally:
        world.platform().stop()


def test_of_two_takers_racing_for_a_left_lock_exactly_one_wins(tmp_path):
    lock_dir = tmp_path / "locks"
    lock_dir.mkdir()
    for round_ in range(5):
        # What a dead holder leaves: its details, as the old lock's takers raced over.
        lock_paths(lock_dir, PRODUCTION)[1].write_text(json.dumps({"pid": 1, "release_id": "gone"}))
        takers = [_taker(lock_dir, f"20261125T00000{round_}Z-00000{i}") for i in range(2)]
        for taker in takers:
            taker.stdin.write("go\n")
        for taker in takers:
            taker.stdin.flush()
        answers = sorted(taker.stdout.readline().strip() for taker in takers)
        for taker in takers:
            taker.stdin.close()
            taker.wait(timeout=10)
        assert answers == ["locked", "won"], f"round {round_}: {answers}"


def test_the_lock_message_names_who_which_release_and_since_when(tmp_path):
    with release_lock(tmp_path, PRODUCTION, release_id="20261125T000000Z-abcdef", operator="alice"):
        taker = _taker(tmp_path, "20261125T000001Z-000001")
        taker.stdin.write("go\n")
        taker.stdin.close()
        assert taker.stdout.readline().strip() == "locked"
        taker.wait(timeout=10)
        from hotdash_release.locks import ReleaseLocked

        with pytest.raises(ReleaseLocked, match=r"alice \(release 20261125T000000Z-abcdef, pid \d+ on .*\) since 20"):
            with release_lock(tmp_path, PRODUCTION, release_id="20261125T000002Z-000002", operator="bob"):
                pass


# -- releases whose runner died -----------------------------------------------------------------


def _kill_runner_during(world, event, *args) -> str:
    runner = Runner(world, *args)
    runner.wait_for_line(event)
    os.kill(runner.proc.pid, signal.SIGKILL)
    runner.finish()
    assert runner.proc.returncode == -signal.SIGKILL
    folder = world.outputs / PRODUCTION / runner.release_id
    assert folder.is_dir() and not (folder / "manifest.json").exists()
    return runner.release_id


def test_a_runner_killed_during_the_production_deploy_is_sealed_by_the_next_release(good):
    killed = _kill_runner_during(good, starting("[6/9]"))
    done = good.release()
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"sealed release {killed}" in done.stdout
    folder = good.outputs / PRODUCTION / killed
    manifest = manifest_of(folder)
    assert manifest["outcome"] == "aborted" and manifest["exit_code"] == 130
    assert manifest["reason"].startswith("runner died during Step 4: Deploy to production; production serves ")
    # What the platform showed as it was sealed (the deploy died with its kernel, maybe half done).
    production = manifest["abandoned"]["production"]
    assert production["app"] == PRODUCTION and production["state"] in ("started", "crashed")
    newest = manifest_of(good.release_dirs()[-1])
    assert newest["lock"]["sealed_abandoned"] == [killed]
    verify = good.runbook("verify", "--outputs", str(good.outputs))
    assert verify.returncode == 0, verify.stdout
    history = good.runbook("history", "--outputs", str(good.outputs))
    assert killed in history.stdout and "runner died during Step 4" in history.stdout
    metrics = json.loads((good.outputs / "metrics.json").read_text())
    assert all(row["target"] == "local" for row in metrics["apps"]), metrics["apps"]
    dora = next(row for row in metrics["apps"] if row["app"] == PRODUCTION)
    releases = [p for p in good.release_dirs() if manifest_of(p)["sections"]]
    deployed = [p for p in releases if any(s["key"] == "deploy_production" for s in manifest_of(p)["sections"])]
    assert dora["deployments"] == len(deployed)  # the dead runner's production change among them


def test_seal_abandoned_seals_a_dead_runners_release_and_resume_continues_it(tmp_path):
    world = make_rehearsal(tmp_path, wait_timeout_s=4)
    try:
        killed = _kill_runner_during(world, starting("[3/9]"))
        index = world.runbook("index", "--outputs", str(world.outputs))
        assert index.returncode == 0
        metrics = json.loads((world.outputs / "metrics.json").read_text())
        assert all(row["target"] for row in metrics["apps"]), "an unsealed folder makes no phantom row"
        sealed = world.runbook("seal", "--abandoned", killed, "--outputs", str(world.outputs), "--operator", "carol")
        assert sealed.returncode == 0, sealed.stdout + sealed.stderr
        manifest = manifest_of(world.outputs / PRODUCTION / killed)
        assert manifest["reason"].startswith("runner died during Step 2: Deploy to staging first")
        assert manifest["abandoned"]["sealed_by"] == "carol"
        assert world.runbook("verify", "--outputs", str(world.outputs)).returncode == 0
        again = world.runbook("seal", "--abandoned", killed, "--outputs", str(world.outputs))
        assert again.returncode == 2 and "sealed already" in again.stderr
        resumed = world.runbook("release", "--resume", killed, "--outputs", str(world.outputs))
        assert resumed.returncode == 0, resumed.stdout + resumed.stderr
        manifest = manifest_of(world.release_dirs()[-1])
        assert manifest["resumed_from"] == killed
        reused = {s["key"]: s["reused_from"] for s in manifest["sections"]}
        assert reused["preflight"] == killed and reused["deploy_staging"] is None
    finally:
        world.platform().stop()


def test_seal_abandoned_is_refused_while_the_runner_still_runs(tmp_path):
    world = make_rehearsal(tmp_path, wait_timeout_s=4)
    try:
        runner = Runner(world)
        runner.wait_for_line(starting("[2/9]"))
        os.kill(runner.proc.pid, signal.SIGSTOP)  # alive, holding the lock, for as long as the seal tries
        try:
            refused = world.runbook("seal", "--abandoned", runner.release_id, "--outputs", str(world.outputs))
        finally:
            os.kill(runner.proc.pid, signal.SIGCONT)
        out, err = runner.finish()
        assert refused.returncode == 6, refused.stdout + refused.stderr
        assert runner.release_id in refused.stderr
        assert runner.proc.returncode == 0, out + err
        assert manifest_of(world.release_dirs()[0])["outcome"] == "released"
    finally:
        world.platform().stop()


def _snapshot(*roots: Path) -> dict[str, bytes]:
    return {str(p): p.read_bytes() for root in roots for p in sorted(root.rglob("*")) if p.is_file()}


def test_seal_abandoned_of_an_older_release_after_a_newer_one_was_sealed_is_refused(good):
    """A dead runner's folder that a newer sealed release already follows in the chain (it came
    back from elsewhere: a copy, a CI artifact). Sealing it would put a manifest before the newer
    one's link: exit 2, naming the newer release, and nothing written anywhere."""
    newest = good.release_dirs()[-1]
    older = good.outputs / PRODUCTION / "20000101T000000Z-0dead0"
    older.mkdir()
    try:
        start = json.loads((newest / "runner.json").read_text())
        start.update(
            release_id=older.name,
            started_at="2000-01-01T00:00:00+00:00",
            section={"key": "deploy_staging", "index": 3, "started_at": "2000-01-01T00:00:01+00:00"},
        )
        (older / "runner.json").write_text(json.dumps(start))
        before = _snapshot(good.outputs, good.state_dir / "locks")
        refused = good.runbook("seal", "--abandoned", older.name, "--outputs", str(good.outputs))
        assert refused.returncode == 2, refused.stdout + refused.stderr
        assert_one_line(refused.stderr)
        first_sealed = next(p.name for p in good.release_dirs() if (p / "manifest.json").is_file())
        assert f"release {first_sealed} was sealed after {older.name} started" in refused.stderr
        assert "break the hash chain" in refused.stderr
        assert _snapshot(good.outputs, good.state_dir / "locks") == before
    finally:
        shutil.rmtree(older)  # the module's later releases would seal it as abandoned


def test_resume_runs_with_the_original_defect(good):
    first = good.release(*BROKEN)
    assert first.returncode == 4, first.stdout + first.stderr
    broken = good.release_dirs()[-1]
    resumed = good.runbook("release", "--resume", broken.name, "--outputs", str(good.outputs))
    # The defect is carried: production fails its smoke test again and is rolled back again.
    assert resumed.returncode == 4, resumed.stdout + resumed.stderr
    assert manifest_of(good.release_dirs()[-1])["rehearsal_defects"] == {"production": "wrong_api_key"}
    refused = good.runbook("release", "--resume", broken.name, "--outputs", str(good.outputs), *BROKEN)
    assert refused.returncode == 2 and "drop --break" in refused.stderr
