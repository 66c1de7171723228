"""The local rehearsal platform: each app runs as a real process on 127.0.0.1.

A rehearsal should go through what production goes through (build, deploy, health check,
a failed release, a rollback) without touching Fly.io. So this target imitates how Fly
keeps releases: images are content-addressed and stay around for rollbacks until pruned,
every deploy (a rollback too) makes a new, higher release version, a deploy that fails
its health check leaves the new process running as Fly leaves machines on the new image,
and a secret set after a deploy stays "Staged" until the next deploy puts it on the app.

Everything lives under ``state_dir`` so that a new runner (a fresh kernel, a new
LocalPlatform) sees the releases and can stop the processes an earlier one started:

    images/<sha256>/app.py, build.json   a build; its id is the sha256 of both files
    apps/<app>/state.json                port, releases, the current process
    apps/<app>/logs/v<N>.log             stdout and stderr of release N
    secrets/<app>.json                   secret values (file 0600, directory 0700)
    postgres/                            the rehearsal's PostgreSQL (database.py): one server,
                                         one database per app, started once and reused
    locks/                               flock files that serialise deploys per app, and each
                                         app's release lock (locks.py: one release at a time)

Linux only: liveness checks read /proc and locks use fcntl.
"""

from __future__ import annotations

import contextlib
import fcntl
import getpass
import hashlib
import json
import os
import re
import secrets as secrets_module
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, replace
from datetime import UTC, datetime
from pathlib import Path

import httpx

from ..checks.http import hopeless_health
from ..checks.tls import tls_context
from ..errors import DeployError, RollbackError, UsageError
from ..execution.procs import proc_stat
from .base import AppStatus, OutputSink, Release, SecretInfo
from .database import RehearsalDatabase
from .standin_app import DEFECTS as STANDIN_DEFECTS

#: The stand-in HotDash app deployed unless another source is given (it may not exist yet).
STANDIN_APP = Path(__file__).resolve().with_name("standin_app.py")
#: Defects a rehearsal build can carry, chosen with the HOTDASH_DEFECT build arg: the stand-in's own.
DEFECTS = STANDIN_DEFECTS
#: Fly's strategies; with one process per app they all behave as "immediate" here.
STRATEGIES = ("canary", "rolling", "bluegreen", "immediate")
IMAGE_PREFIX = "rehearsal.local/hotdash@sha256:"

_APP_NAME = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
_SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_IMAGE_REF = re.compile(r"^rehearsal\.local/hotdash@sha256:([0-9a-f]{64})$")
_BUILD_ARG_KEYS = {"HOTDASH_DEFECT": "defect", "HOTDASH_VERSION": "version"}
#: The platform sets these itself; a secret of the same name would be silently overridden.
_PLATFORM_ENV = ("PORT", "HOST", "HOTDASH_BUILD_INFO", "HOTDASH_LAUNCH")
#: The only variables a release inherits from the runner, so rehearsals cannot lean on it.
#: What an app process gets of the platform's environment: the basics, and the rehearsal
#: defects' timing knobs (see standin_app.py), never anything else of the runner's.
_INHERITED_ENV = ("PATH", "LANG", "HOME", "HOTDASH_SLOW_SECONDS", "HOTDASH_DEGRADE_AFTER_SECONDS")
_STOP_GRACE_S = 5.0
_HEALTH_POLL_S = 0.15
#: The check timeout of runbooks/fly.toml: a slow but healthy build deploys as on Fly,
#: and it is the latency checks' job to catch it.
_HEALTH_REQUEST_TIMEOUT_S = 5.0
_FAILURE_LOG_LINES = 5
#: Handles of the processes started from this runner, shared by all its LocalPlatforms:
#: whichever instance sees a process exit polls its handle, which reaps it (no zombie,
#: no "still running" ResourceWarning). Processes of other runners are checked via /proc.
_CHILDREN: dict[int, subprocess.Popen] = {}


class LocalPlatform:
    """A Target that runs releases as processes on 127.0.0.1, one process and port per app."""

    name = "local"
    #: A deploy whose health answers cannot get better fails at once (checks.http.hopeless_health),
    #: not at wait_timeout_s. The stand-in flyctl turns it off: flyctl waits until --wait-timeout.
    gives_up_on_hopeless_health = True

    def __init__(
        self,
        state_dir: Path,
        *,
        app_source: Path | None = None,
        python: str = sys.executable,
        health_path: str = "/health",
    ) -> None:
        # Absolute, because releases run with their image directory as working directory.
        self.state_dir = Path(state_dir).resolve()
        self.app_source = Path(app_source) if app_source is not None else STANDIN_APP
        self.python = python
        self.health_path = health_path

    @property
    def database(self) -> RehearsalDatabase:
        """The platform's PostgreSQL server (Supabase's stand-in), shared by its apps."""
        return RehearsalDatabase(self.state_dir)

    def start_database(self) -> None:
        """Start the platform's PostgreSQL unless it runs (made on first use); cheap when it runs."""
        self.database.ensure_running()

    def provision_database(self, app: str, *, password: str | None = None) -> str:
        """A database of the app's own on the platform's server; returns its DATABASE_URL, which
        belongs in the app's secrets (set_secrets), nowhere else."""
        _check_app(app)
        return self.database.provision(app, password=password)

    @property
    def release_lock_dir(self) -> Path:
        """Where the runner locks an app for a whole release: with the platform, not the archive."""
        return self.state_dir / "locks"

    # -- secrets -------------------------------------------------------------------

    def secrets(self, app: str) -> list[SecretInfo]:
        """Names and digests, sorted by name; "Deployed" if the current process got that value."""
        _check_app(app)
        process = self._load_state(app)["process"] or {}
        on_process = process.get("secret_digests", {})
        return [
            SecretInfo(name, digest, "Deployed" if on_process.get(name) == digest else "Staged")
            for name, digest in sorted(_digests(self.secret_values(app)).items())
        ]

    def secret_values(self, app: str) -> dict[str, str]:
        """The stored values; only the library's secret source for local rehearsals reads them."""
        _check_app(app)
        path = self._secrets_path(app)
        return json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}

    def set_secrets(self, app: str, values: Mapping[str, str]) -> None:
        """Store values; the running process keeps its old ones until the next deploy."""
        _check_app(app)
        for name, value in values.items():
            _check_secret(name, value)
        with self._lock(f"{app}.secrets"):
            self._write_secrets(app, self.secret_values(app) | dict(values))

    def unset_secrets(self, app: str, names: Sequence[str]) -> None:
        """Remove secrets; names that are not stored are ignored."""
        _check_app(app)
        if isinstance(names, str):
            raise UsageError("names: give a list of secret names, not one string")
        with self._lock(f"{app}.secrets"):
            kept = {k: v for k, v in self.secret_values(app).items() if k not in names}
            self._write_secrets(app, kept)

    # -- deploy and rollback -------------------------------------------------------

    def deploy(
        self,
        app: str,
        *,
        config_file: str | None = None,
        image: str | None = None,
        build_args: Mapping[str, str] | None = None,
        strategy: str = "immediate",
        wait_timeout_s: float = 300.0,
        reason: str = "",
        user: str = "",
        on_output: OutputSink | None = None,
    ) -> Release:
        """Build (unless ``image`` is given), replace the app's process, wait for its health check.

        ``config_file`` is accepted for the Target interface and not read: the health
        check path comes from the constructor. Raises DeployError carrying the failed
        release if the new process exits or is not healthy within ``wait_timeout_s``.
        """
        _check_deploy_request(app, image, build_args, strategy, wait_timeout_s)
        return self._deploy(
            app,
            image=image,
            build_args=build_args or {},
            strategy=strategy,
            wait_timeout_s=wait_timeout_s,
            reason=reason,
            user=user,
            description="",
            say=on_output or _ignore,
        )

    def rollback(
        self,
        app: str,
        *,
        to: Release,
        wait_timeout_s: float = 300.0,
        reason: str = "",
        user: str = "",
        on_output: OutputSink | None = None,
    ) -> Release:
        """Redeploy ``to.image_ref`` as a new, higher release, as Fly's rollback guide does."""
        _check_deploy_request(app, to.image_ref, None, "immediate", wait_timeout_s)
        try:
            return self._deploy(
                app,
                image=to.image_ref,
                build_args={},
                strategy="immediate",
                wait_timeout_s=wait_timeout_s,
                reason=reason,
                user=user,
                description=f"Rollback to v{to.version}",
                say=on_output or _ignore,
            )
        except DeployError as err:
            raise RollbackError(f"rollback of {app} to v{to.version} failed: {err}", app=app) from err

    def _deploy(
        self,
        app: str,
        *,
        image: str | None,
        build_args: Mapping[str, str],
        strategy: str,
        wait_timeout_s: float,
        reason: str,
        user: str,
        description: str,
        say: OutputSink,
    ) -> Release:
        with self._lock(f"{app}.deploy"):
            image_dir = self._find_image(app, image) if image else self._build(build_args, say)
            say(f"image: {IMAGE_PREFIX}{image_dir.name}")
            state = self._load_state(app)
            _interrupt_unfinished(state["releases"])
            state["port"] = port = state["port"] or _free_port()
            release = Release(
                version=max((r["version"] for r in state["releases"]), default=0) + 1,
                status="running",
                image_ref=IMAGE_PREFIX + image_dir.name,
                created_at=_now(),
                user=user or getpass.getuser(),
                description=description,
                reason=reason,
            )
            state["releases"].append(asdict(release))
            self._save_state(app, state)
            say(f"==> Release v{release.version} ({strategy}) starting on 127.0.0.1:{port}")
            self._stop_process(state)
            state.update(process=None, should_run=True)
            return self._run_release(app, state, release, image_dir, wait_timeout_s, say)

    def _run_release(
        self, app: str, state: dict, release: Release, image_dir: Path, wait_timeout_s: float, say: OutputSink
    ) -> Release:
        try:
            process = self._start_process(app, state, release, image_dir)
        except OSError as err:
            failed = self._finish(app, state, replace(release, status="failed"))
            say(f"--> v{release.version} failed to start: {err}")
            raise DeployError(f"could not start {app} v{release.version}: {err}", app=app, release=failed) from err
        outcome = _wait_until_healthy(
            process, self._health_url(state["port"]), wait_timeout_s, give_up=self.gives_up_on_hopeless_health
        )
        if outcome == "healthy":
            done = self._finish(app, state, replace(release, status="complete", stable=True))
            say(f"--> v{release.version} deployed successfully")
            say(f"Visit your newly deployed app at http://127.0.0.1:{state['port']}/")
            return done
        failed = self._finish(app, state, replace(release, status="failed"))
        message = self._failure_message(app, failed, process, outcome, wait_timeout_s)
        say(f"--> v{release.version} failed")
        for line in message.splitlines():
            say(line)
        raise DeployError(message, app=app, release=failed)

    def _failure_message(
        self, app: str, release: Release, process: subprocess.Popen, outcome: str, wait_timeout_s: float
    ) -> str:
        if outcome == "exited":
            last_lines = self.logs(app, version=release.version, limit=_FAILURE_LOG_LINES)
            return (
                f"{app} v{release.version} exited with code {process.returncode} before "
                f"passing its health check; last log lines:\n" + "\n".join(f"  {line}" for line in last_lines)
            )
        if outcome != "timeout":  # answers that cannot get better: failed before the deadline
            return (
                f"{app} v{release.version} did not pass GET {self.health_path}: {outcome}; gave up before "
                f"the {wait_timeout_s:g}s deadline; its process is left running on the new image, "
                f"as Fly leaves machines after a failed deploy"
            )
        return (
            f"{app} v{release.version} did not pass GET {self.health_path} within "
            f"{wait_timeout_s:g}s; its process is left running on the new image, "
            f"as Fly leaves machines after a failed deploy"
        )

    def _finish(self, app: str, state: dict, release: Release) -> Release:
        state["releases"][-1] = asdict(release)
        self._save_state(app, state)
        return release

    # -- images --------------------------------------------------------------------

    def _build(self, build_args: Mapping[str, str], say: OutputSink) -> Path:
        say("==> Building image")
        try:
            source = self.app_source.read_bytes()
        except FileNotFoundError as err:
            raise UsageError(f"app_source: {self.app_source} does not exist") from err
        build_info = _build_info(build_args)
        image_dir = self._images_dir() / hashlib.sha256(source + build_info).hexdigest()
        if not image_dir.exists():
            _write_image(image_dir, source, build_info)
        say("--> Building image done")
        return image_dir

    def _find_image(self, app: str, image_ref: str) -> Path:
        match = _IMAGE_REF.match(image_ref)
        image_dir = self._images_dir() / match.group(1) if match else None
        if image_dir is None or not (image_dir / "app.py").is_file():
            raise DeployError(f"image {image_ref} not found (pruned?)", app=app)
        return image_dir

    # -- processes -----------------------------------------------------------------

    def _start_process(self, app: str, state: dict, release: Release, image_dir: Path) -> subprocess.Popen:
        secrets = self.secret_values(app)
        if self.database.initialized:
            # The app connects when it starts: a `platform stop` since must not make it fail.
            self.database.ensure_running()
        env = {name: os.environ[name] for name in _INHERITED_ENV if name in os.environ}
        env |= secrets
        env |= {
            "PORT": str(state["port"]),
            "HOST": "127.0.0.1",
            "HOTDASH_BUILD_INFO": str(image_dir / "build.json"),
            # Logs are read while the process runs, so they must not sit in a buffer.
            "PYTHONUNBUFFERED": "1",
        }
        # The process is on record only once it runs and its pid is saved. A deploy killed in
        # between (its kernel stopped by an aborted release) would leave an app nobody knows
        # holding the app's port; the launch token in its environment lets _stop_process find it.
        launch = secrets_module.token_hex(8)
        env["HOTDASH_LAUNCH"] = launch
        state["launching"] = launch
        self._save_state(app, state)
        log_path = self._log_path(app, release.version)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        with log_path.open("ab") as log:
            # A new session lets the process outlive the runner and be killed as a group;
            # the absolute path in its command line tells `ps` readers which image runs.
            process = subprocess.Popen(
                [self.python, str(image_dir / "app.py")],
                cwd=image_dir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _CHILDREN[process.pid] = process
        state["process"] = {
            "pid": process.pid,
            "start_time": proc_stat(process.pid)[1],
            "image_dir": str(image_dir),
            "image_ref": release.image_ref,
            "version": release.version,
            "secret_digests": _digests(secrets),
        }
        state.pop("launching", None)
        self._save_state(app, state)
        return process

    def _stop_process(self, state: dict) -> bool:
        """Terminate the app's process group if it still runs; True if there was one.

        Also a process whose launch was never recorded (see _start_process)."""
        unrecorded = [{"pid": pid, "start_time": start} for pid, start in _launched_with(state.pop("launching", None))]
        process = state["process"]
        running = [p for p in [process, *unrecorded] if p and self._is_alive(p)]
        for process in running:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process["pid"], sig)
                if self._wait_until_gone(process, _STOP_GRACE_S):
                    break
        return bool(running)

    def _wait_until_gone(self, process: dict, timeout_s: float) -> bool:
        deadline = time.monotonic() + timeout_s
        while self._is_alive(process):
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.05)
        return True

    def _is_alive(self, process: dict) -> bool:
        """True if the recorded process runs, and is the one we started (not a reused pid)."""
        pid = process["pid"]
        child = _CHILDREN.get(pid)
        if child is not None and child.poll() is not None:
            del _CHILDREN[pid]
        stat = proc_stat(pid)
        # "Z": exited, and its parent (another runner) has not reaped it yet.
        return stat is not None and stat[1] == process["start_time"] and stat[0] not in "ZX"

    def stop(self, app: str | None = None) -> list[str]:
        """Stop the app's process (every app's, then the database's, when None) until the next
        deploy or release.

        Returns the apps whose process was running and has been stopped (and "postgres" when
        the platform's database server was).
        """
        known = self.apps()
        if app is not None:
            _check_app(app)
        stopped = []
        for name in [app] if app is not None else known:
            if name not in known:
                continue
            with self._lock(f"{name}.deploy"):
                state = self._load_state(name)
                if self._stop_process(state):
                    stopped.append(name)
                state["should_run"] = False
                self._save_state(name, state)
        if app is None and self.database.stop():
            stopped.append("postgres")
        return stopped

    # -- what is there -------------------------------------------------------------

    def apps(self) -> list[str]:
        return sorted(path.parent.name for path in (self.state_dir / "apps").glob("*/state.json"))

    def releases(self, app: str) -> list[Release]:
        _check_app(app)
        records = self._load_state(app)["releases"]
        return [Release(**record) for record in sorted(records, key=lambda r: -r["version"])]

    def status(self, app: str) -> AppStatus:
        _check_app(app)
        state = self._load_state(app)
        if not state["releases"]:
            return AppStatus(app=app, deployed=False, state="not-deployed")
        process = state["process"]
        if process and self._is_alive(process):
            machine_state = "started"
        else:
            machine_state = "crashed" if state["should_run"] else "stopped"
        machines = (
            (
                {
                    "id": f"local-{process['pid']}",
                    "pid": process["pid"],
                    "state": machine_state,
                    "version": process["version"],
                    "image_ref": process["image_ref"],
                    "updated_at": str(process["start_time"]),  # a restarted process starts anew
                },
            )
            if process
            else ()
        )
        return AppStatus(
            app=app,
            deployed=True,
            state=machine_state,
            version=process["version"] if process else None,
            image_ref=process["image_ref"] if process else None,
            url=self.url(app),
            machines=machines,
        )

    def checks(self, app: str) -> list:
        """No health checks of the platform's own: the runbooks' /health requests are the checks."""
        _check_app(app)
        return []

    def url(self, app: str) -> str | None:
        _check_app(app)
        port = self._load_state(app)["port"]
        return f"http://127.0.0.1:{port}" if port else None

    def logs(self, app: str, *, version: int | None = None, limit: int = 200) -> list[str]:
        """The last ``limit`` lines of one release's log (of the current release by default)."""
        _check_app(app)
        if version is None:
            version = self._current_version(app)
        path = self._log_path(app, version) if version is not None else None
        if path is None or not path.exists():
            return []
        with path.open(encoding="utf-8", errors="replace") as log:
            return [line.rstrip("\n") for line in deque(log, maxlen=max(limit, 0))]

    def _current_version(self, app: str) -> int | None:
        state = self._load_state(app)
        if state["process"]:
            return state["process"]["version"]
        return max((r["version"] for r in state["releases"]), default=None)

    # -- files ---------------------------------------------------------------------

    def _images_dir(self) -> Path:
        return self.state_dir / "images"

    def _state_path(self, app: str) -> Path:
        return self.state_dir / "apps" / app / "state.json"

    def _log_path(self, app: str, version: int) -> Path:
        return self.state_dir / "apps" / app / "logs" / f"v{version}.log"

    def _secrets_path(self, app: str) -> Path:
        return self.state_dir / "secrets" / f"{app}.json"

    def _health_url(self, port: int) -> str:
        return f"http://127.0.0.1:{port}{self.health_path}"

    def _load_state(self, app: str) -> dict:
        path = self._state_path(app)
        stored = json.loads(path.read_text(encoding="utf-8")) if path.exists() else {}
        return {"port": None, "releases": [], "process": None, "should_run": False} | stored

    def _save_state(self, app: str, state: dict) -> None:
        _write_json_atomically(self._state_path(app), state, mode=0o644)

    def _write_secrets(self, app: str, values: Mapping[str, str]) -> None:
        path = self._secrets_path(app)
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        path.parent.chmod(0o700)  # also when the directory existed with looser bits
        _write_json_atomically(path, dict(values), mode=0o600)

    @contextlib.contextmanager
    def _lock(self, name: str) -> Iterator[None]:
        path = self.state_dir / "locks" / f"{name}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            yield  # closing the file releases the lock


# -- validation ----------------------------------------------------------------------


def _check_app(app: str) -> None:
    # Also keeps app names from escaping state_dir, as they become path components.
    if not isinstance(app, str) or not _APP_NAME.match(app):
        raise UsageError(f"app: {app!r} must match {_APP_NAME.pattern}")


def _check_secret(name: str, value: str) -> None:
    if not isinstance(name, str) or not _SECRET_NAME.match(name):
        raise UsageError(f"secret name: {name!r} is not a valid environment variable name")
    if name in _PLATFORM_ENV:
        raise UsageError(f"secret name: {name} is set by the platform itself")
    if not isinstance(value, str):
        raise UsageError(f"secret {name}: the value must be a string")


def _check_deploy_request(
    app: str, image: str | None, build_args: Mapping[str, str] | None, strategy: str, wait_timeout_s: float
) -> None:
    _check_app(app)
    if strategy not in STRATEGIES:
        raise UsageError(f"strategy: {strategy!r} is not allowed; allowed: {', '.join(STRATEGIES)}")
    if not wait_timeout_s > 0:
        raise UsageError(f"wait_timeout_s: must be positive, got {wait_timeout_s!r}")
    if image and build_args:
        # Fly ignores build args with --image; here that would silently drop a defect.
        raise UsageError("build_args: not used when deploying an existing image")
    defect = (build_args or {}).get("HOTDASH_DEFECT", "")
    if defect not in DEFECTS:
        allowed = ", ".join(repr(d) for d in DEFECTS)
        raise UsageError(f"build_args HOTDASH_DEFECT: {defect!r} is not allowed; allowed: {allowed}")


# -- helpers -------------------------------------------------------------------------


def _ignore(line: str) -> None:
    """The output sink when the caller gives none."""


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _digests(values: Mapping[str, str]) -> dict[str, str]:
    return {name: hashlib.sha256(value.encode()).hexdigest()[:16] for name, value in values.items()}


def _build_info(build_args: Mapping[str, str]) -> bytes:
    """build.json as canonical bytes: no timestamps, so equal inputs give an equal image id."""
    info = {key: build_args.get(arg, "") for arg, key in _BUILD_ARG_KEYS.items()}
    info["build_args"] = {k: v for k, v in build_args.items() if k not in _BUILD_ARG_KEYS}
    return (json.dumps(info, sort_keys=True, indent=2) + "\n").encode()


def _write_image(image_dir: Path, source: bytes, build_info: bytes) -> None:
    # Built aside and renamed into place, so an image directory is never half written.
    image_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=image_dir.parent, prefix=".build-"))
    (staging / "app.py").write_bytes(source)
    (staging / "build.json").write_bytes(build_info)
    try:
        staging.rename(image_dir)
    except OSError:
        shutil.rmtree(staging)
        if not image_dir.exists():
            raise
        # Another app's deploy built the same content meanwhile: use theirs.


def _interrupt_unfinished(releases: list[dict]) -> None:
    # The deploy lock is held, so a release still "running" belongs to a runner that died.
    for record in releases:
        if record["status"] == "running":
            record["status"] = "interrupted"


#: Where an app's port is chosen: below the kernel's ephemeral range (32768-60999 on Linux), from
#: which every outgoing connection takes its local port. An app keeps its port across releases and
#: is stopped between them; a port from the ephemeral range could be taken by any client socket in
#: that moment ("Address already in use", seen under load), one below it only by an explicit bind.
APP_PORTS = range(20000, 32768)


def _free_port() -> int:
    """A port nobody listens on now, chosen at random outside the ephemeral range."""
    import random

    for port in random.sample(APP_PORTS, 200):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise DeployError(f"no free port on 127.0.0.1 in {APP_PORTS.start}-{APP_PORTS.stop - 1}")


def _launched_with(token: str | None) -> list[tuple[int, int]]:
    """(pid, start time) of the processes whose environment carries this launch token."""
    if not token:
        return []
    needle = f"HOTDASH_LAUNCH={token}".encode()
    found = []
    for entry in Path("/proc").glob("[0-9]*"):
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                stat = proc_stat(int(entry.name))
                if stat is not None:
                    found.append((int(entry.name), stat[1]))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return found


def _wait_until_healthy(process: subprocess.Popen, url: str, timeout_s: float, *, give_up: bool = True) -> str:
    """Poll the health URL like Fly's machine checks: "healthy", "exited", "timeout", or (with
    ``give_up``) why the answers cannot get better (checks.http.hopeless_health: 500s on three
    probes in a row end the wait at once, a 503 or no answer waits until the deadline)."""
    deadline = time.monotonic() + timeout_s
    answers: list[int | None] = []
    # trust_env=False: a proxy from the runner's environment must not intercept 127.0.0.1.
    with httpx.Client(trust_env=False, follow_redirects=False, verify=tls_context()) as client:
        while process.poll() is None:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return "timeout"
            answers.append(_status_of(client, url, min(_HEALTH_REQUEST_TIMEOUT_S, remaining)))
            if answers[-1] is not None and 200 <= answers[-1] < 300:
                return "healthy"
            hopeless = hopeless_health(answers) if give_up else ""
            if hopeless:
                return hopeless
            time.sleep(max(0.0, min(_HEALTH_POLL_S, deadline - time.monotonic())))
    return "exited"


def _status_of(client: httpx.Client, url: str, timeout_s: float) -> int | None:
    try:
        return client.get(url, timeout=timeout_s).status_code
    except httpx.HTTPError:
        return None  # not listening yet, or too slow: the next poll asks again


def _write_json_atomically(path: Path, data: object, *, mode: int) -> None:
    # Temp file + os.replace: a reader never sees half a file, even if the runner dies.
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as temp:
            os.fchmod(temp.fileno(), mode)
            json.dump(data, temp, indent=2, sort_keys=True)
            temp.write("\n")
        os.replace(temp_name, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temp_name)
        raise
