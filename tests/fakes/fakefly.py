"""The world behind the stand-in flyctl: Fly's apps, releases, secrets and machines, kept locally.

The stand-in (tests/fakes/flyctl) replaces Fly.io *behind* flyctl: its command line, JSON
and exit codes are flyctl's, as the shared external-contracts reference records them, while
the machines are LocalPlatform processes on 127.0.0.1. So `fly deploy` really starts the
stand-in HotDash app, and health checks and smoke tests over HTTP reach what it started.
Tests use this module to create apps, inject faults and read back the calls that were made;
the flyctl script uses it to keep state between calls.

State directory (FAKE_FLY_STATE):

    apps.json      apps that exist (as after `fly apps create`): port, health check path
    control.json   faults to inject, the `secrets list` JSON shape, the account e-mail
    calls.jsonl    every call: its argv and the quieting variables (argv never holds a value)
    images.json    per app and release version: Fly's image ref and the local image behind it
    events.json    per app, its machine's events as flyd records them (oldest first here; `fly
                   status --json` lists them newest first)
    machines/      the LocalPlatform state: processes, logs, secret values (file 0600)
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from hotdash_release.targets.base import Release
from hotdash_release.targets.local import LocalPlatform
from hotdash_release.targets.local import _wait_until_healthy as wait_until_healthy

FLYCTL = Path(__file__).resolve().with_name("flyctl")
STATE_VARIABLE = "FAKE_FLY_STATE"
TOKEN_VARIABLES = ("FLY_ACCESS_TOKEN", "FLY_API_TOKEN")
DEFAULT_EMAIL = "release-bot@hotdash.test"
REGION = "iad"
#: `fly secrets list --json` shapes by flyctl version (see the contract's secrets section).
SECRET_SHAPES = ("v0.4.6", "v0.4.6-many-machines", "v0.3.178", "graphql")
#: What a fault makes a command do: fail with an Error: line, exit with a code, never finish,
#: or (deploy only) build the stand-in app with a rehearsal defect, exit 0 with the machine
#: gone back to its previous image (revert), or record a failed release whose release_command
#: failed, leaving the machines on the old image (release_command_failed).
#: The digest of the image of a machine made outside any release (add_machine_outside_releases).
PLACEHOLDER_DIGEST = "sha256:" + "0" * 64
FAULT_KINDS = ("error", "exit", "hang", "defect", "revert", "release_command_failed")


class Machines(LocalPlatform):
    """LocalPlatform, each app on the port apps.json gives it, as Fly gives an app its hostname.

    Tests write that port into the release configuration's base_url before anything runs.
    A deploy waits for the health check until --wait-timeout whatever it answers, as flyctl
    waits for its machines' checks (no giving up on 500s: that is our rule, not flyctl's).
    """

    gives_up_on_hopeless_health = False

    def __init__(self, state_dir: Path, ports: Mapping[str, int], **options) -> None:
        super().__init__(state_dir, **options)
        self.ports = dict(ports)

    def _load_state(self, app: str) -> dict:
        state = super()._load_state(app)
        state["port"] = state["port"] or self.ports.get(app)
        return state

    def fail_release_command(self, app: str, *, user: str) -> Release:
        """A new release recorded as failed, its machines untouched: on Fly a failed
        release_command aborts the deploy before any machine is updated."""
        with self._lock(f"{app}.deploy"):
            state = self._load_state(app)
            release = Release(
                version=max((r["version"] for r in state["releases"]), default=0) + 1,
                status="failed",
                image_ref=state["process"]["image_ref"] if state["process"] else "",
                created_at=datetime.now(UTC).isoformat(timespec="seconds").replace("+00:00", "Z"),
                user=user,
            )
            state["releases"].append(asdict(release))
            self._save_state(app, state)
            return release

    def revert(self, app: str) -> None:
        """The machine goes back to the previous complete release's image while the new release
        stays "complete", as flyctl reported success for machines that reverted after a failed
        update (superfly/flyctl pull requests 4878 and 4921): health checks then pass on old code."""
        with self._lock(f"{app}.deploy"):
            state = self._load_state(app)
            newest_first = sorted(state["releases"], key=lambda r: -r["version"])
            previous = next(r for r in newest_first[1:] if r["status"] == "complete")
            self._stop_process(state)
            state.update(process=None, should_run=True)
            self._start_process(app, state, Release(**previous), self._find_image(app, previous["image_ref"]))

    def start_again(self, app: str) -> None:
        """The machine's process stopped and started again on the same release and image, as flyd
        restarts a machine (a crash under its restart policy, an auto-stop and auto-start, a
        config update); returns once it answers its health check, so a test can go on at once."""
        with self._lock(f"{app}.deploy"):
            state = self._load_state(app)
            process = state["process"]
            release = next(Release(**r) for r in state["releases"] if r["version"] == process["version"])
            self._stop_process(state)
            state.update(process=None, should_run=True)
            started = self._start_process(app, state, release, Path(process["image_dir"]))
        outcome = wait_until_healthy(started, self._health_url(state["port"]), 10.0)
        assert outcome == "healthy", f"{app}: the machine did not come back ({outcome})"


class FakeFly:
    """One stand-in Fly.io account, kept in ``state_dir``."""

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = Path(state_dir).resolve()

    # -- set up by tests -----------------------------------------------------------------

    def create_app(self, app: str, *, port: int) -> None:
        apps = self.apps()
        apps[app] = {"port": port, "health_path": "/health"}
        self._write("apps.json", apps)

    def set_fault(self, command: str, fault: str, *, app: str | None = None) -> None:
        """E.g. set_fault("deploy", "defect:health_failing", app="hotdash-production").

        ``command`` is flyctl's command path ("deploy", "secrets list", "auth whoami"), or
        "deploy --image" for image deploys alone (a rollback's redeploy).
        """
        kind = fault.partition(":")[0]
        assert kind in FAULT_KINDS, f"fault {fault!r}: kinds are {FAULT_KINDS}"
        control = self.control()
        control["faults"][f"{command}@{app}" if app else command] = fault
        self._write("control.json", control)

    def clear_faults(self) -> None:
        control = self.control()
        control["faults"] = {}
        self._write("control.json", control)

    def add_machine_outside_releases(self, app: str) -> str:
        """A machine of an app never deployed, made outside any release (`fly machine create`, the
        dashboard): `fly status` lists it, created, named by a digest no release has, until the
        first deploy replaces it. Returns the image reference that names it."""
        self._write("control.json", self.control() | {"machines_outside_releases": [app]})
        return f"registry.fly.io/{app}@{PLACEHOLDER_DIGEST}"

    def set_secrets_shape(self, shape: str) -> None:
        assert shape in SECRET_SHAPES, shape
        self._write("control.json", self.control() | {"secrets_shape": shape})

    def store_secrets(self, app: str, values: Mapping[str, str]) -> None:
        """Secrets an operator set earlier (staged until the next deploy), without a flyctl call."""
        self.machines().set_secrets(app, values)

    def calls(self) -> list[dict]:
        path = self.state_dir / "calls.jsonl"
        return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []

    def environment(self, bin_dir: Path, *, token: str | None, base: Mapping[str, str] | None = None) -> dict[str, str]:
        """An environment in which `fly` and `flyctl` are this stand-in.

        The script's `#!/usr/bin/env python3` finds this interpreter (which has the
        hotdash_release package) because its directory comes right after ``bin_dir``.
        """
        base = os.environ if base is None else base
        env = {k: v for k, v in base.items() if k not in TOKEN_VARIABLES + ("FLY_APP",)}
        env["PATH"] = os.pathsep.join([str(bin_dir), str(Path(sys.executable).parent), base.get("PATH", os.defpath)])
        env[STATE_VARIABLE] = str(self.state_dir)
        if token:
            env["FLY_API_TOKEN"] = token
        return env

    def stop(self) -> None:
        """Stop every machine (app process) the stand-in started."""
        self.machines().stop()

    # -- what happens to a machine between deploys (flyd, the proxy, a person) ----------------

    def crash_machine(self, app: str, *, exit_code: int = 1, oom_killed: bool = False) -> None:
        """The app's process dies on its own (a non-zero exit, or the kernel's OOM killer) and flyd
        starts it again under the restart policy (on-failure, as `fly deploy` makes machines):
        an `exit` event (not requested, restarting) and a `start`. An OOM kill's exit_event comes
        nested under request.MonitorEvent, the other nesting fly-go reads."""
        self.machines(self.apps()[app]["health_path"]).start_again(app)
        restarts = 1 + sum(1 for e in self.events(app) if e["type"] == "exit" and not _requested(e))
        exited = {"exit_code": 137 if oom_killed else exit_code, "oom_killed": oom_killed, "restarting": True}
        request = {"MonitorEvent": {"exit_event": exited}} if oom_killed else {"exit_event": exited}
        self.record_event(app, "exit", "stopped", "flyd", request={**request, "restart_count": restarts})
        self.record_event(app, "start", "started", "flyd")

    def auto_stop_and_start(self, app: str) -> None:
        """Fly's proxy stops the idle machine (auto_stop_machines) and starts it at the next
        request: a `stop`, a requested `exit` with code 0, a `start`. Not a restart."""
        self.machines(self.apps()[app]["health_path"]).start_again(app)
        self.record_event(app, "stop", "stopping", "user")
        self.record_event(app, "exit", "stopped", "flyd", request={"exit_event": {"requested_stop": True}})
        self.record_event(app, "start", "started", "user")

    def update_machine(self, app: str) -> None:
        """A config update of the machine (`fly machine update`, `fly scale`): an `update`, the
        requested stop it makes, a `start`. Not a restart."""
        self.machines(self.apps()[app]["health_path"]).start_again(app)
        self.machine_replaced(app, existed=True)

    def machine_replaced(self, app: str, *, existed: bool) -> None:
        """What a deploy records on the app's machine: `launch` and `start` for a new machine;
        `update`, a requested `exit` and `start` for one that existed."""
        if not existed:
            self.record_event(app, "launch", "created", "user")
        else:
            self.record_event(app, "update", "replacing", "user")
            self.record_event(app, "exit", "stopped", "flyd", request={"exit_event": {"requested_stop": True}})
        self.record_event(app, "start", "started", "flyd")

    def events(self, app: str) -> list[dict]:
        """The app's machine's events, oldest first, each as `fly status --json` shows it."""
        return self._read("events.json", {}).get(app, [])

    def record_event(self, app: str, kind: str, status: str, source: str, *, request: dict | None = None) -> None:
        """One event in flyd's shape: type, status, source, timestamp (ms since the epoch, one
        later than the last at least) and request; exit_event fields at zero or false are left
        out, as Go's omitempty leaves them out of fly-go's JSON."""
        everything = self._read("events.json", {})
        events = everything.setdefault(app, [])
        stamp = max(int(time.time() * 1000), events[-1]["timestamp"] + 1 if events else 0)
        event = {"type": kind, "status": status, "source": source, "timestamp": stamp}
        if request is not None:
            event["request"] = _omit_empty(request)
        events.append(event)
        self._write("events.json", everything)

    # -- used by the flyctl script -------------------------------------------------------

    def apps(self) -> dict[str, dict]:
        return self._read("apps.json", {})

    def control(self) -> dict:
        return {"faults": {}, "secrets_shape": "v0.4.6", "email": DEFAULT_EMAIL} | self._read("control.json", {})

    def fault_for(self, command: str, app: str | None) -> str | None:
        faults = self.control()["faults"]
        return faults.get(f"{command}@{app}") or faults.get(command)

    def record_call(self, argv: list[str], environ: Mapping[str, str]) -> None:
        record = {
            "argv": argv,
            "FLY_NO_UPDATE_CHECK": environ.get("FLY_NO_UPDATE_CHECK"),
            "NO_COLOR": environ.get("NO_COLOR"),
            "token_in_environment": any(environ.get(name) for name in TOKEN_VARIABLES),
            # The archive's signing key is the runner's alone: no kernel (which runs flyctl) has it.
            "signing_key_in_environment": bool(environ.get("HOTDASH_SIGNING_KEY")),
        }
        self.state_dir.mkdir(parents=True, exist_ok=True)
        with (self.state_dir / "calls.jsonl").open("a") as calls:
            calls.write(json.dumps(record) + "\n")

    def machines(self, health_path: str = "/health") -> Machines:
        ports = {app: info["port"] for app, info in self.apps().items()}
        return Machines(self.state_dir / "machines", ports, health_path=health_path)

    def remember_health_path(self, app: str, path: str) -> None:
        apps = self.apps()
        apps[app]["health_path"] = path
        self._write("apps.json", apps)

    def images(self, app: str) -> dict[str, dict]:
        """Release version (as a string) -> {"ref": Fly image ref, "local": LocalPlatform image, "id"}."""
        return self._read("images.json", {}).get(app, {})

    def remember_release(self, app: str, version: int, *, ref: str, local: str, release_id: str) -> None:
        images = self._read("images.json", {})
        images.setdefault(app, {})[str(version)] = {"ref": ref, "local": local, "id": release_id}
        self._write("images.json", images)

    def local_image(self, ref: str) -> str | None:
        """The local image behind a Fly image ref, of any app (one org shares one registry)."""
        for releases in self._read("images.json", {}).values():
            for release in releases.values():
                if release["ref"] == ref:
                    return release["local"]
        return None

    # -- files ---------------------------------------------------------------------------

    def _read(self, name: str, default):
        path = self.state_dir / name
        return json.loads(path.read_text()) if path.exists() else default

    def _write(self, name: str, data) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        temp = self.state_dir / f".{name}.tmp"
        temp.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")
        os.replace(temp, self.state_dir / name)


def _omit_empty(value):
    if isinstance(value, dict):
        return {k: _omit_empty(v) for k, v in value.items() if v not in (0, False, "", None)}
    return value


def _requested(event: dict) -> bool:
    request = event.get("request") or {}
    exited = (request.get("MonitorEvent") or {}).get("exit_event") or request.get("exit_event") or {}
    return bool(exited.get("requested_stop"))


def install_flyctl(bin_dir: Path, names: tuple[str, ...] = ("fly", "flyctl")) -> Path:
    """Put the stand-in on a PATH directory under flyctl's names."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        link = bin_dir / name
        if not link.exists():
            link.symlink_to(FLYCTL)
    return bin_dir
