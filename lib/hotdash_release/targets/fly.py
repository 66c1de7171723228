"""The Fly.io target: each operation is one flyctl command, read through its documented JSON.

Fly.io cannot be reached from where this is developed, so the module follows the flyctl
contract (flags, JSON shapes, exit codes in shared/reference/external-contracts.md) to the
letter, and its tests drive a stand-in flyctl that speaks exactly that contract. Why it is
built the way it is:

- The token comes only from FLY_API_TOKEN / FLY_ACCESS_TOKEN in the environment: a
  ``--access-token`` flag would show in every process listing, and a notebook parameter
  would be archived for good. Text that flyctl prints is scrubbed of the token anyway.
- Secret values reach flyctl on standard input (``NAME=-``). The contract documents stdin
  for one value per command, so there is one command per value, each with ``--stage`` so
  that setting seven secrets does not restart the machines seven times: the next deploy
  applies them, as on the local rehearsal platform.
- Every flyctl runs in a process group of its own under a deadline, and the whole group is
  killed when the deadline passes: `fly deploy` starts helpers that would outlive it.
- `fly deploy` has no JSON output. Its lines go to the caller as they come, and what it did
  is read afterwards from `fly releases --json`.
- Rollback is a deploy of an earlier release's image (``--image``, ``--strategy immediate``):
  Fly has no rollback command.
- Keys are read case-insensitively where flyctl versions disagree (`fly secrets list`), and
  what the runbooks rely on (versions, statuses, image references) is checked strictly.
- Each machine of `fly status --json` keeps its `events` (machine_events): flyd's record of
  starts, stops, updates and exits is what the watch counts restarts from; `updated_at`
  moves on with any change of the machine and is no restart counter.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import shutil
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

from ..errors import DeployError, RollbackError, TargetError, UsageError
from .base import SECRET_STATUSES, AppStatus, MachineCheck, OutputSink, Release, SecretInfo

#: Executable names tried on PATH, in this order, when no path is configured.
FLYCTL_NAMES = ("fly", "flyctl")
#: Where flyctl finds a token; the contract gives FLY_ACCESS_TOKEN precedence.
TOKEN_VARIABLES = ("FLY_ACCESS_TOKEN", "FLY_API_TOKEN")
#: Keep flyctl's output free of update notices and colour codes, so it parses.
QUIET_ENV = {"FLY_NO_UPDATE_CHECK": "1", "NO_COLOR": "1"}
STRATEGIES = ("canary", "rolling", "bluegreen", "immediate")
INSTALL_HINT = (
    "flyctl not found (looked for fly, then flyctl, on PATH): install it "
    "(https://fly.io/docs/flyctl/install/) or set [targets.fly] flyctl to its path"
)

#: flyctl's exit codes besides 0 (success) and 1 (an error, explained on stderr).
EXIT_PANIC = 3
EXIT_DEADLINE_EXCEEDED = 126
EXIT_CANCELLED = 127

#: After SIGTERM, how long flyctl gets to clean up before its group is killed.
_KILL_GRACE_S = 3.0
_READ_CHUNK = 65536
_APP_NAME = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
_SECRET_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


# -- records the Target interface does not have ------------------------------------------


@dataclass(frozen=True)
class _Finished:
    """How one flyctl command ended (or was ended)."""

    argv: tuple[str, ...]
    returncode: int | None  # None: killed at the deadline
    stdout: str
    stderr: str
    timeout_s: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


# -- the target ----------------------------------------------------------------------------


class FlyTarget:
    """A Target that drives Fly.io through flyctl subprocesses."""

    name = "fly"

    def __init__(
        self,
        *,
        flyctl: str = "",
        config_files: Mapping[str, str | Path] | None = None,
        deploy_timeout_s: float = 900.0,
        command_timeout_s: float = 60.0,
        logs_timeout_s: float = 10.0,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        """``flyctl``: path or name of the executable (empty: fly, then flyctl, on PATH).
        ``config_files``: each app's fly.toml, used when a call does not name one (rollback).
        ``environ``: where the token and PATH come from (default: this process's environment).
        """
        self.flyctl = flyctl
        self.config_files = {app: str(path) for app, path in (config_files or {}).items()}
        self.deploy_timeout_s = deploy_timeout_s
        self.command_timeout_s = command_timeout_s
        self.logs_timeout_s = logs_timeout_s
        self.environ = os.environ if environ is None else environ

    # -- identity ------------------------------------------------------------------------

    def whoami(self) -> str:
        """The e-mail of the account the token belongs to (`fly auth whoami --json`)."""
        return self._parsed(parse_whoami, "auth", "whoami", "--json")

    # -- secrets -------------------------------------------------------------------------

    def secrets(self, app: str) -> list[SecretInfo]:
        """Names, digests and statuses, sorted by name; flyctl never returns values."""
        _check_app(app)
        return self._parsed(parse_secrets, "secrets", "list", "--app", app, "--json", app=app)

    def set_secrets(self, app: str, values: Mapping[str, str]) -> None:
        """Stage values, one `fly secrets set NAME=- --stage` per value, the value on stdin."""
        _check_app(app)
        for name, value in values.items():
            _check_secret(name, value)
        for name, value in values.items():
            self._call("secrets", "set", f"{name}=-", "--app", app, "--stage", stdin=value, app=app)

    def unset_secrets(self, app: str, names: Sequence[str]) -> None:
        """`fly secrets unset NAME ... --app A`; on a deployed app Fly restarts its machines."""
        _check_app(app)
        if isinstance(names, str):
            raise UsageError("names: give a list of secret names, not one string")
        if names:
            self._call("secrets", "unset", *names, "--app", app, app=app)

    # -- deploy and rollback -------------------------------------------------------------

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
        """`fly deploy`, its output streamed to ``on_output``; return the release it made.

        ``reason`` and ``user`` are not sent: Fly records the token's user and has no field
        for a reason. Raises DeployError, carrying the new release when Fly recorded one.
        """
        _check_deploy_request(app, image, build_args, strategy, wait_timeout_s)
        args = ["deploy", *self._config_args(app, config_file), "--app", app]
        if image:
            args += ["--image", image]
        args += ["--strategy", strategy, "--wait-timeout", str(max(1, round(wait_timeout_s))), "--yes"]
        for key, value in (build_args or {}).items():
            args += ["--build-arg", f"{key}={value}"]
        return self._deploy(app, args, on_output or _ignore)

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
        """Redeploy ``to.image_ref`` with the immediate strategy, as Fly's rollback guide says,
        waiting as long as any deploy (``--wait-timeout``).

        This makes a new, higher release; database migrations are not undone.
        """
        _check_deploy_request(app, to.image_ref or None, None, "immediate", wait_timeout_s)
        if not to.image_ref:
            raise UsageError(f"to: release v{to.version} has no image reference to redeploy")
        args = [
            "deploy",
            *self._config_args(app, None),
            "--app",
            app,
            "--image",
            to.image_ref,
            "--strategy",
            "immediate",
            "--wait-timeout",
            str(max(1, round(wait_timeout_s))),
            "--yes",
        ]
        try:
            return self._deploy(app, args, on_output or _ignore)
        except DeployError as err:
            raise RollbackError(
                f"rollback of {app} to v{to.version} failed: {err}", app=app, release=err.release
            ) from err

    def _deploy(self, app: str, args: list[str], say: OutputSink) -> Release:
        try:
            before = self._newest_version(app)
        except TargetError as err:
            raise DeployError(f"{app}: cannot deploy: {err}", app=app) from err
        finished = self._execute(args, timeout_s=self.deploy_timeout_s, on_line=say)
        if not finished.ok:
            message, cause = self._failure(finished)
            failed = self._release_made_since(app, before)
            raise DeployError(f"{app}: {message}{self._critical_checks(app)}", app=app, release=failed) from cause
        made = self._release_made_since(app, before)
        if made is None:
            raise DeployError(f"{app}: fly deploy succeeded but `fly releases` lists no new release", app=app)
        return made

    def _newest_version(self, app: str) -> int:
        releases = self.releases(app)
        return releases[0].version if releases else 0

    def _release_made_since(self, app: str, before: int) -> Release | None:
        """The newest release if it is newer than ``before``: a failed build makes none."""
        try:
            releases = self.releases(app)
        except TargetError:
            return None  # the deploy's own outcome is the news; this is only detail
        return releases[0] if releases and releases[0].version > before else None

    def _critical_checks(self, app: str) -> str:
        """After a failed deploy, the failing health checks, which usually say why."""
        try:
            failing = [c for c in self.checks(app) if c.status == "critical"]
        except TargetError:
            return ""
        return "".join(f"; check {c.name} on machine {c.machine}: {c.status} ({c.output})" for c in failing)

    def _config_args(self, app: str, config_file: str | None) -> list[str]:
        config = config_file or self.config_files.get(app)
        return ["--config", str(config)] if config else []

    # -- what is there -------------------------------------------------------------------

    def releases(self, app: str) -> list[Release]:
        """The last 25 releases, newest first (`fly releases --json`)."""
        _check_app(app)
        return self._parsed(parse_releases, "releases", "--app", app, "--json", app=app)

    def status(self, app: str) -> AppStatus:
        _check_app(app)
        return self._parsed(partial(parse_status, app), "status", "--app", app, "--json", app=app)

    def checks(self, app: str) -> list[MachineCheck]:
        """Every machine's health checks (`fly checks list --json`)."""
        _check_app(app)
        return self._parsed(parse_checks, "checks", "list", "--app", app, "--json", app=app)

    def logs(self, app: str, *, version: int | None = None, limit: int = 200) -> list[str]:
        """The last ``limit`` log lines; of one release's machines when ``version`` is given.

        `fly logs --no-tail` may keep polling until a batch arrives, so it is stopped after
        ``logs_timeout_s`` and the entries that arrived by then are the answer.
        """
        _check_app(app)
        finished = self._execute(["logs", "--app", app, "--no-tail", "--json"], timeout_s=self.logs_timeout_s)
        if not finished.ok and not finished.timed_out:
            message, cause = self._failure(finished)
            raise TargetError(message, app=app) from cause
        entries = parse_log_stream(finished.stdout)
        if version is not None:
            machines = {m["id"] for m in self.status(app).machines if m["release_version"] == version}
            entries = [e for e in entries if e.get("instance") in machines]
        lines = [format_log_entry(entry) for entry in entries]
        return lines[-limit:] if limit > 0 else []

    # -- running flyctl ------------------------------------------------------------------

    def _parsed(self, parse, *args: str, app: str | None = None):
        """Run a --json command and turn its answer into records, or say what was wrong."""
        finished = self._call(*args, app=app)
        try:
            return parse(json.loads(finished.stdout))
        except (KeyError, TypeError, ValueError) as err:
            raise TargetError(f"{_label(args)} --json: not the documented answer: {err}", app=app) from err

    def _call(self, *args: str, stdin: str | None = None, app: str | None = None) -> _Finished:
        finished = self._execute(list(args), timeout_s=self.command_timeout_s, stdin=stdin)
        if not finished.ok:
            message, cause = self._failure(finished)
            raise TargetError(message, app=app) from cause
        return finished

    def _execute(
        self, args: list[str], *, timeout_s: float, stdin: str | None = None, on_line: OutputSink | None = None
    ) -> _Finished:
        argv = [self._executable(), *args]
        env = self._environment()
        try:
            process = subprocess.Popen(
                argv,
                env=env,
                stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,  # its own group, so a deadline can kill all of it
            )
        except OSError as err:
            raise TargetError(f"cannot run flyctl ({argv[0]}): {err.strerror}") from err
        emit = (lambda line: on_line(self._scrub(line))) if on_line else None
        with process:
            try:
                stdout, stderr, done = _communicate(process, (stdin or "").encode(), timeout_s, emit)
            except BaseException:
                _kill_group(process)  # interrupted (Ctrl-C in a notebook): flyctl must not run on unseen
                raise
            if not done:
                _kill_group(process)
        return _Finished(
            tuple(args), process.returncode if done else None, self._scrub(stdout), self._scrub(stderr), timeout_s
        )

    def _failure(self, finished: _Finished) -> tuple[str, BaseException]:
        """What went wrong, in one line for a person, and the foreign error behind it."""
        label = _label(finished.argv)
        if finished.timed_out:
            cause = subprocess.TimeoutExpired(
                _label(finished.argv), finished.timeout_s, finished.stdout, finished.stderr
            )
            return (f"{label} did not finish within {finished.timeout_s:g} s; its process group was killed"), cause
        cause = subprocess.CalledProcessError(
            finished.returncode, _label(finished.argv), finished.stdout, finished.stderr
        )
        return f"{label}: {explain_exit(finished.returncode, finished.stderr)}", cause

    def _executable(self) -> str:
        path = self.environ.get("PATH", os.defpath)
        for name in [self.flyctl] if self.flyctl else FLYCTL_NAMES:
            found = shutil.which(name, path=path)
            if found:
                return found
        raise TargetError(INSTALL_HINT) from FileNotFoundError(self.flyctl or FLYCTL_NAMES[0])

    def _environment(self) -> dict[str, str]:
        if not any(self.environ.get(name) for name in TOKEN_VARIABLES):
            raise TargetError(
                "no Fly.io token: set FLY_API_TOKEN or FLY_ACCESS_TOKEN in the "
                "environment of the release (it is never passed as a flag)"
            )
        return {**self.environ, **QUIET_ENV}

    def _scrub(self, text: str) -> str:
        """flyctl should never print the token; if it does, it goes no further than here."""
        for name in TOKEN_VARIABLES:
            token = self.environ.get(name)
            if token:
                text = text.replace(token, f"[redacted {name}]")
        return text


# -- flyctl's answers ----------------------------------------------------------------------


def explain_exit(code: int, stderr: str) -> str:
    """flyctl's exit codes as a sentence: 1 carries an `Error:` line; 3, 126, 127 are fixed."""
    error = _error_line(stderr)
    if code == 1:
        return error or "failed (exit 1) without an Error: line"
    known = {
        EXIT_PANIC: "flyctl panicked (exit 3)",
        EXIT_DEADLINE_EXCEEDED: "deadline exceeded (exit 126)",
        EXIT_CANCELLED: "cancelled (exit 127)",
    }
    text = known.get(code, f"exited with code {code}")
    detail = error or (_panic_line(stderr) if code == EXIT_PANIC else _last_line(stderr))
    return f"{text}: {detail}" if detail else text


def parse_whoami(data: Any) -> str:
    """`fly auth whoami --json`: {"email": "..."}."""
    email = _lower_keys(data, "whoami").get("email")
    if not isinstance(email, str) or not email:
        raise ValueError("no email in the answer")
    return email


def parse_secrets(data: Any) -> list[SecretInfo]:
    """All three shapes of `fly secrets list --json`, keys in any case.

    v0.4.6+: name, digest, status (status absent on apps with over 100 machines);
    v0.3.178 to v0.4.5: name, digest, updated_at, created_at; GraphQL era: Name, Digest,
    CreatedAt. Without a status nobody can tell whether the value is on the machines:
    "Unknown", which counts as usable (only "Staged" is known not to be).
    """
    secrets = []
    for item in _array(data, "secrets list"):
        fields = _lower_keys(item, "secret")
        secrets.append(
            SecretInfo(
                _required_text(fields, "name"), _required_text(fields, "digest"), _secret_status(fields.get("status"))
            )
        )
    return sorted(secrets, key=lambda s: s.name)


def parse_releases(data: Any) -> list[Release]:
    """`fly releases --json`: capitalised Go field names; newest first by version."""
    releases = []
    for item in _array(data, "releases"):
        fields = _lower_keys(item, "release")
        version = fields.get("version")
        if not isinstance(version, int) or isinstance(version, bool):
            raise ValueError(f"release Version {version!r} is not an integer")
        releases.append(
            Release(
                version=version,
                status=str(fields.get("status") or "").lower(),
                image_ref=str(fields.get("imageref") or ""),
                created_at=str(fields.get("createdat") or ""),
                user=_user(fields.get("user")),
                description=str(fields.get("description") or ""),
                reason=str(fields.get("reason") or ""),
                stable=bool(fields.get("stable")),
            )
        )
    return sorted(releases, key=lambda r: r.version, reverse=True)


def parse_status(app: str, data: Any) -> AppStatus:
    """`fly status --json`: what runs is the image of the newest started machine."""
    fields = _lower_keys(data, "status")
    machines = tuple(_machine(m) for m in fields.get("machines") or [])
    current = _current_machine(machines)
    version = fields.get("version")
    return AppStatus(
        app=app,
        deployed=bool(fields.get("deployed")),
        state=current["state"] if current else "not-deployed",
        version=version if isinstance(version, int) and version > 0 else None,
        image_ref=current["image_ref"] if current else None,
        url=_app_url(fields),
        machines=machines,
    )


def parse_checks(data: Any) -> list[MachineCheck]:
    """`fly checks list --json`: {machine id: [{name, status, output, updated_at}]}."""
    if data is None:
        return []  # Go writes a nil map as null
    if not isinstance(data, dict):
        raise ValueError("expected an object of machine ids")
    checks = []
    for machine, items in data.items():
        for item in items or []:
            fields = _lower_keys(item, "check")
            checks.append(
                MachineCheck(
                    str(machine),
                    str(fields.get("name") or ""),
                    str(fields.get("status") or ""),
                    str(fields.get("output") or ""),
                    str(fields.get("updated_at") or ""),
                )
            )
    return checks


def parse_log_stream(text: str) -> list[dict]:
    """`fly logs --json` writes pretty-printed objects one after another, not JSON lines.

    A stream cut at the deadline may end inside an object: that tail is dropped. Text that
    is not JSON (a notice between objects) is skipped up to the next line opening an object.
    """
    decoder = json.JSONDecoder()
    entries: list[dict] = []
    position = 0
    while True:
        position = _skip_whitespace(text, position)
        if position >= len(text):
            return entries
        try:
            entry, position = decoder.raw_decode(text, position)
        except ValueError:
            position = text.find("\n{", position)
            if position < 0:
                return entries  # a truncated last object
            continue
        if isinstance(entry, dict):
            entries.append(entry)


def format_log_entry(entry: Mapping[str, Any]) -> str:
    """One entry as flyctl prints it without --json: time, instance, region, level, message."""
    fields = {k.lower(): v for k, v in entry.items()}
    return (
        f"{fields.get('timestamp', '')} app[{fields.get('instance', '')}] "
        f"{fields.get('region', '')} [{fields.get('level', '')}] {fields.get('message', '')}"
    )


# -- fly.toml ------------------------------------------------------------------------------


def fly_config_problems(fly: Mapping[str, Any], *, app: str, health_path: str) -> list[str]:
    """What in a parsed fly.toml would deploy the wrong app or skip the health endpoint."""
    problems = []
    if fly.get("app") != app:
        problems.append(f"app is {fly.get('app')!r}, expected {app!r}")
    paths = http_check_paths(fly)
    if health_path not in paths:
        problems.append(f"no HTTP check on {health_path} (found {paths or 'none'})")
    strategy = deploy_strategy(fly)
    if strategy not in STRATEGIES:
        problems.append(f"[deploy] strategy {strategy!r} is not one of {', '.join(STRATEGIES)}")
    elif strategy == "bluegreen" and not has_health_check(fly):
        problems.append("[deploy] strategy bluegreen needs a health check")
    return problems


def deploy_strategy(fly: Mapping[str, Any]) -> str:
    """[deploy] strategy; flyctl's default when it is not set is rolling."""
    deploy = fly.get("deploy")
    return deploy.get("strategy", "rolling") if isinstance(deploy, dict) else "rolling"


def http_check_paths(fly: Mapping[str, Any]) -> list[str]:
    """Paths of [[http_service.checks]], [[services.http_checks]] and http [checks.<name>]."""
    checks = _tables(_table(fly, "http_service").get("checks"))
    for service in _tables(fly.get("services")):
        checks += _tables(service.get("http_checks"))
    checks += [c for c in _tables(list(_table(fly, "checks").values())) if c.get("type") == "http"]
    return [c["path"] for c in checks if isinstance(c.get("path"), str)]


def has_health_check(fly: Mapping[str, Any]) -> bool:
    return bool(http_check_paths(fly) or _table(fly, "checks"))


# -- helpers -------------------------------------------------------------------------------


def _communicate(
    process: subprocess.Popen, stdin: bytes, timeout_s: float, on_line: OutputSink | None
) -> tuple[str, str, bool]:
    """Feed stdin, collect stdout and stderr, pass each output line on as it arrives.

    Returns (stdout, stderr, finished); finished is False when the deadline passed first.
    One thread and a selector: ``on_line`` runs in the caller's thread, which is where a
    notebook cell's output must be printed.
    """
    deadline = time.monotonic() + timeout_s
    captured = {process.stdout: bytearray(), process.stderr: bytearray()}
    pending = {process.stdout: b"", process.stderr: b""}
    with selectors.DefaultSelector() as selector:
        for pipe in captured:
            selector.register(pipe, selectors.EVENT_READ)
        if process.stdin is not None:
            selector.register(process.stdin, selectors.EVENT_WRITE)
        to_write = memoryview(stdin)
        while selector.get_map():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return _decode(captured[process.stdout]), _decode(captured[process.stderr]), False
            for key, _ in selector.select(remaining):
                pipe = key.fileobj
                if pipe is process.stdin:
                    to_write = _write_some(selector, pipe, to_write)
                    continue
                chunk = os.read(key.fd, _READ_CHUNK)
                if not chunk:
                    selector.unregister(pipe)
                    if pending[pipe]:  # a last line without a newline
                        _emit_lines(pending[pipe] + b"\n", on_line)
                    continue
                captured[pipe] += chunk
                pending[pipe] = _emit_lines(pending[pipe] + chunk, on_line)
    try:
        process.wait(max(0.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return _decode(captured[process.stdout]), _decode(captured[process.stderr]), False
    return _decode(captured[process.stdout]), _decode(captured[process.stderr]), True


def _write_some(selector: selectors.BaseSelector, pipe, data: memoryview) -> memoryview:
    """Write what the pipe takes now; close it when all is written (or flyctl stopped reading)."""
    try:
        written = os.write(pipe.fileno(), data[:_READ_CHUNK]) if data else 0
    except BrokenPipeError:
        written = len(data)
    data = data[written:]
    if not data:
        selector.unregister(pipe)
        pipe.close()
    return data


def _emit_lines(buffer: bytes, on_line: OutputSink | None) -> bytes:
    """Pass on every complete line of ``buffer``; return the unfinished rest."""
    *lines, rest = buffer.split(b"\n")
    if on_line:
        for line in lines:
            on_line(_decode(line).rstrip("\r"))
    return rest


def _kill_group(process: subprocess.Popen) -> None:
    """SIGTERM the whole group (flyctl cancels cleanly), then SIGKILL whatever is left."""
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(_KILL_GRACE_S)
    except subprocess.TimeoutExpired:
        pass
    # The group outlives its leader while any helper is left in it.
    with suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _decode(data: bytes) -> str:
    return data.decode("utf-8", errors="replace")


def _label(args: Sequence[str]) -> str:
    """`fly secrets list` for ["secrets", "list", "--app", ...]: the command, never its values."""
    words = []
    for arg in args:
        if arg.startswith("-") or "=" in arg:
            break
        words.append(arg)
    return " ".join(["fly", *words])


def _error_line(stderr: str) -> str:
    # "Error:" with its colon: deploy output also has lines like "Error release_command failed ...".
    return next((line.strip() for line in stderr.splitlines() if line.strip().startswith("Error:")), "")


def _panic_line(stderr: str) -> str:
    return next((line.strip() for line in stderr.splitlines() if line.startswith("panic:")), "")


def _last_line(stderr: str) -> str:
    lines = [line.strip() for line in stderr.splitlines() if line.strip()]
    return lines[-1] if lines else ""


def _array(data: Any, what: str) -> list:
    if data is None:
        return []  # Go writes a nil slice as null
    if not isinstance(data, list):
        raise ValueError(f"{what}: expected a JSON array, got {type(data).__name__}")
    return data


def _lower_keys(item: Any, what: str) -> dict:
    if not isinstance(item, dict):
        raise ValueError(f"{what}: expected a JSON object, got {type(item).__name__}")
    return {str(key).lower(): value for key, value in item.items()}


def _required_text(fields: Mapping[str, Any], key: str) -> str:
    value = fields.get(key)
    if not isinstance(value, str) or not value:
        raise ValueError(f"secret without a {key}")
    return value


def _secret_status(raw: Any) -> str:
    if not raw:
        return "Unknown"
    known = {status.lower(): status for status in SECRET_STATUSES}
    return known.get(str(raw).lower(), str(raw))


def _user(raw: Any) -> str:
    if not isinstance(raw, dict):
        return ""
    fields = {k.lower(): v for k, v in raw.items()}
    return str(fields.get("email") or fields.get("name") or "")


def _machine(raw: Any) -> dict:
    fields = _lower_keys(raw, "machine")
    metadata = _table(_table(fields, "config"), "metadata")
    release_version = metadata.get("fly_release_version")
    return {
        "id": str(fields.get("id") or ""),
        "name": str(fields.get("name") or ""),
        "state": str(fields.get("state") or ""),
        "region": str(fields.get("region") or ""),
        "image_ref": image_reference(fields.get("image_ref")),
        "release_version": int(release_version) if str(release_version or "").isdigit() else None,
        # Moves on with any change of the machine (and with some flyctl at every call): never a restart count.
        "updated_at": str(fields.get("updated_at") or ""),
        "events": machine_events(fields.get("events")),  # what flyd recorded: the watch's restarts
    }


#: The fields of an exit event (fly-go's MachineExitEvent); Go leaves out zeros and false (omitempty).
EXIT_EVENT_FIELDS = (
    "exit_code",
    "guest_exit_code",
    "guest_signal",
    "signal",
    "oom_killed",
    "requested_stop",
    "restarting",
    "exited_at",
)


def machine_events(raw: Any) -> list[dict]:
    """A machine's `events` (flyd's record, newest first): type, status, source, timestamp (ms
    since the epoch, checked strictly: the watch orders and dedupes by it) and, for an `exit`,
    ``exit``: its exit_event, found under request.exit_event or request.MonitorEvent.exit_event
    (both occur; fly-go reads MonitorEvent first), with the fields Go left out read as 0 or
    false; None for an event without one. request.restart_count is kept as ``restart_count``."""
    events = []
    for item in _array(raw, "machine events"):
        fields = _lower_keys(item, "machine event")
        stamp = fields.get("timestamp")
        if not isinstance(stamp, int) or isinstance(stamp, bool):
            raise ValueError(f"machine event timestamp {stamp!r} is not an integer (ms since the epoch)")
        request = {str(k).lower(): v for k, v in _table(fields, "request").items()}
        monitor = _lower_table(request, "monitorevent")
        exited = next((e for e in (monitor.get("exit_event"), request.get("exit_event")) if isinstance(e, dict)), None)
        events.append(
            {
                "type": str(fields.get("type") or ""),
                "status": str(fields.get("status") or ""),
                "source": str(fields.get("source") or ""),
                "timestamp": stamp,
                "exit": _exit_event(exited) if exited is not None else None,
                "restart_count": request.get("restart_count") or 0,
            }
        )
    return events


def _exit_event(raw: Mapping[str, Any]) -> dict:
    fields = {str(k).lower(): v for k, v in raw.items()}
    exited = {}
    for name in EXIT_EVENT_FIELDS:
        value = fields.get(name)
        if name == "exited_at":
            exited[name] = str(value or "")
        elif name in ("oom_killed", "requested_stop", "restarting"):
            exited[name] = value is True
        else:
            exited[name] = value if isinstance(value, int) and not isinstance(value, bool) else 0
    return exited


def _lower_table(data: Mapping[str, Any], key: str) -> dict:
    return {str(k).lower(): v for k, v in _table(data, key).items()}


def image_reference(raw: Any) -> str:
    """A machine's image_ref object as the releases' ImageRef spells it.

    Releases name the tag (registry.fly.io/<app>:deployment-<ULID>), so the tag form is
    preferred; an image without a tag is named by its digest.
    """
    if isinstance(raw, str):
        return raw
    if not isinstance(raw, dict):
        return ""
    fields = {k.lower(): v for k, v in raw.items()}
    name = f"{fields.get('registry', '')}/{fields.get('repository', '')}".strip("/")
    if fields.get("tag"):
        return f"{name}:{fields['tag']}"
    if fields.get("digest"):
        return f"{name}@{fields['digest']}"
    return name


def _current_machine(machines: Sequence[dict]) -> dict | None:
    """The started machine of the newest release (after a failed rolling deploy, images mix)."""
    if not machines:
        return None
    started = [m for m in machines if m["state"] == "started"] or list(machines)
    return max(started, key=lambda m: m["release_version"] or 0)


def _app_url(fields: Mapping[str, Any]) -> str | None:
    if fields.get("appurl"):
        return str(fields["appurl"]).rstrip("/")
    return f"https://{fields['hostname']}" if fields.get("hostname") else None


def _table(data: Mapping[str, Any], key: str) -> dict:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _tables(value: Any) -> list[dict]:
    return [item for item in value if isinstance(item, dict)] if isinstance(value, list) else []


def _skip_whitespace(text: str, position: int) -> int:
    while position < len(text) and text[position].isspace():
        position += 1
    return position


def _ignore(line: str) -> None:
    """The output sink when the caller gives none."""


def _check_app(app: str) -> None:
    # The configuration's rule; it also keeps a flag from passing as an app name.
    if not isinstance(app, str) or not _APP_NAME.match(app):
        raise UsageError(f"app: {app!r} must match {_APP_NAME.pattern}")


def _check_secret(name: str, value: str) -> None:
    if not isinstance(name, str) or not _SECRET_NAME.match(name):
        raise UsageError(f"secret name: {name!r} is not a valid environment variable name")
    if not isinstance(value, str) or not value:
        raise UsageError(f"secret {name}: the value must be a non-empty string")


def _check_deploy_request(
    app: str, image: str | None, build_args: Mapping[str, str] | None, strategy: str, wait_timeout_s: float
) -> None:
    _check_app(app)
    if strategy not in STRATEGIES:
        raise UsageError(f"strategy: {strategy!r} is not one of {', '.join(STRATEGIES)}")
    if not wait_timeout_s > 0:
        raise UsageError(f"wait_timeout_s: must be positive, got {wait_timeout_s!r}")
    if image and build_args:
        raise UsageError("build_args: not used when deploying an existing image")
    if image and image.startswith("-"):
        raise UsageError(f"image: {image!r} is not an image reference")
