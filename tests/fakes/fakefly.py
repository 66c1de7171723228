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
    machines/      the LocalPlatform state: processes, logs, secret values (file 0600)
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Mapping
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path

from hotdash_release.targets.base import Release
from hotdash_release.targets.local import LocalPlatform

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
FAULT_KINDS = ("error", "exit", "hang", "defect", "revert", "release_command_failed")


class Machines(LocalPlatform):
    """LocalPlatform, each app on the port apps.json gives it, as Fly gives an app its hostname.

    Tests write that port into the release configuration's base_url before anything runs.
    """

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


def install_flyctl(bin_dir: Path, names: tuple[str, ...] = ("fly", "flyctl")) -> Path:
    """Put the stand-in on a PATH directory under flyctl's names."""
    bin_dir.mkdir(parents=True, exist_ok=True)
    for name in names:
        link = bin_dir / name
        if not link.exists():
            link.symlink_to(FLYCTL)
    return bin_dir
