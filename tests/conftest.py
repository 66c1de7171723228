"""Shared fixtures: a release configuration of our own in a temporary folder, the CLI run as
a real subprocess, and a guard that no process started by a test outlives the suite."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from hotdash_release.paths import RUNBOOKS_DIR
from hotdash_release.targets.local import LocalPlatform

CLI_TIMEOUT_S = 300

# Rehearsals sign with this machine's rehearsal key (archive/signing.py), kept in the user's
# config folder: the tests make theirs in a folder of their own, which every CLI run and
# kernel they start inherits. A signing key from the environment is not the tests' to use.
os.environ["XDG_CONFIG_HOME"] = tempfile.mkdtemp(prefix="hotdash-test-config-")
os.environ.pop("HOTDASH_SIGNING_KEY", None)


@dataclass
class Rehearsal:
    """One isolated rehearsal world: its config, platform state and archive root."""

    root: Path
    config: Path
    state_dir: Path
    outputs: Path

    def platform(self) -> LocalPlatform:
        return LocalPlatform(self.state_dir)

    def runbook(self, *args: str, timeout: float = CLI_TIMEOUT_S) -> subprocess.CompletedProcess:
        return run_cli(*args, timeout=timeout)

    def release(self, *args: str) -> subprocess.CompletedProcess:
        return self.runbook(
            "release",
            "--config",
            str(self.config),
            "--outputs",
            str(self.outputs),
            "--operator",
            "test-operator",
            *args,
        )

    def release_dirs(self) -> list[Path]:
        return sorted(p for p in (self.outputs / "hotdash-production").glob("*") if p.is_dir())


#: The `runbook` command as installed (launch.py), as people and CI run it.
RUNBOOK_COMMAND = (
    [str(Path(sys.executable).parent / "runbook")]
    if (Path(sys.executable).parent / "runbook").is_file()
    else [sys.executable, "-m", "hotdash_release.cli"]
)


def run_cli(
    *args: str, timeout: float = CLI_TIMEOUT_S, stdin: str | None = None, extra_env: dict[str, str] | None = None
) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONUNBUFFERED": "1", **(extra_env or {})}
    return subprocess.run(
        [*RUNBOOK_COMMAND, *args], capture_output=True, text=True, timeout=timeout, env=env, input=stdin
    )


def write_config(
    folder: Path,
    *,
    state_dir: Path,
    readiness: Path | None = None,
    wait_timeout_s: int = 15,
    health_deadline_s: int = 4,
    watch_minutes: float = 0.01,
    watch_interval_s: float = 0.3,  # a healthy app answers at once (deploys wait for health); faults wait this out
    edits: dict[str, str] | None = None,
) -> Path:
    """A copy of runbooks/hotdash.toml pointing at our own state, with short timeouts."""
    folder.mkdir(parents=True, exist_ok=True)
    for name in ("fly.toml", "fly.production.toml"):
        shutil.copy(RUNBOOKS_DIR / name, folder / name)
    text = (RUNBOOKS_DIR / "hotdash.toml").read_text()
    text = text.replace('state_dir = "../.rehearsal"', f'state_dir = "{state_dir}"')
    text = text.replace(
        'readiness_file = "readiness.csv"', f'readiness_file = "{readiness or RUNBOOKS_DIR / "readiness.csv"}"'
    )
    text = re.sub(r"(\[targets\.local\][^\[]*?wait_timeout_s = )\d+", rf"\g<1>{wait_timeout_s}", text, flags=re.S)
    text = re.sub(r"(\[health\][^\[]*?deadline_s = )\d+", rf"\g<1>{health_deadline_s}", text, flags=re.S)
    # The post-deployment watch, on either target: two measurements, 0.3 s apart (test_watch*.py
    # set their own), not Fly's half hour.
    text = re.sub(
        r"(\[watch\.local\][^\[]*?minutes = )[\d.]+(\s*\ninterval_s = )[\d.]+",
        rf"\g<1>{watch_minutes}\g<2>{watch_interval_s}",
        text,
        flags=re.S,
    )
    text = text.replace(
        "[watch.local]", f"[watch.fly]\nminutes = {watch_minutes}\ninterval_s = {watch_interval_s}\n\n[watch.local]", 1
    )
    for old, new in (edits or {}).items():
        assert old in text, f"test edit does not apply: {old!r}"
        text = text.replace(old, new)
    path = folder / "hotdash.toml"
    path.write_text(text)
    return path


def make_rehearsal(root: Path, **config_options) -> Rehearsal:
    state_dir = root / "state"
    config = write_config(root / "config", state_dir=state_dir, **config_options)
    return Rehearsal(root, config, state_dir, root / "outputs")


def with_database(platform: LocalPlatform, app: str, values: dict[str, str]) -> dict[str, str]:
    """A test's secret values for an app, with DATABASE_URL a real database of the app's own on
    the platform's PostgreSQL (the app connects when it starts; the preflight checks it). The
    password stays the one the test chose (a canary, an awkward one), so scans still look for it."""
    from urllib.parse import urlsplit

    chosen = urlsplit(values["DATABASE_URL"]).password if "DATABASE_URL" in values else None
    return {**values, "DATABASE_URL": platform.provision_database(app, password=chosen)}


def assert_canonical_notebooks(folder: Path) -> None:
    """Every archived notebook is written as nbformat writes it: validated, indented, sorted
    (the runner saves compact JSON while cells run, and must leave the canonical file)."""
    import nbformat

    notebooks = sorted(folder.glob("*.ipynb"))
    assert notebooks
    for path in notebooks:
        text = path.read_text(encoding="utf-8")
        node = nbformat.reads(text, as_version=4)
        nbformat.validate(node)
        assert text == nbformat.writes(node), f"{path.name} is not nbformat's canonical layout"


#: A `runbook lab` session's notebooks, in plan order: what the tests expect it to hold.
SESSION = [
    "01-preflight",
    "02-verify_secrets",
    "03-deploy_staging",
    "04-staging_smoke",
    "05-go_no_go",
    "06-deploy_production",
    "07-production_smoke",
    "08-notify",
    "09-watch",
]


def wait_for(condition, timeout_s: float = 5.0) -> bool:
    """Poll a condition every 50 ms until it holds (True) or the time is up (False)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@pytest.fixture
def rehearsal(tmp_path):
    world = make_rehearsal(tmp_path)
    yield world
    world.platform().stop()


@pytest.fixture(scope="session", autouse=True)
def no_process_outlives_the_suite(tmp_path_factory):
    """Every app process a test starts lives under the session's temporary folder."""
    base = str(tmp_path_factory.getbasetemp())
    yield
    leftovers = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if base in cmdline and int(proc.name) != os.getpid():
            leftovers.append(f"{proc.name}: {cmdline}")
    assert not leftovers, "processes left running by tests:\n" + "\n".join(leftovers)


@pytest.fixture(scope="session")
def archive_world(tmp_path_factory):
    """Two real releases (a good one; a hostile, rolled back one) shared by the archive, index
    and browser tests: see archive_world.py."""
    from archive_world import build_archive_world

    world = build_archive_world(tmp_path_factory.mktemp("archive"))
    yield world
    world.rehearsal.platform().stop()


@pytest.fixture
def loopback():
    """A started LoopbackServer (loopback.py) with no routes yet; stopped after the test."""
    from loopback import LoopbackServer

    with LoopbackServer() as server:
        yield server
