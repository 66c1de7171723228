"""The seam between the runbooks and a deployment platform.

A target is to the runbooks what a transport is to httpx: one small interface
(secrets, deploy, releases, status, logs, rollback) with a local rehearsal
implementation, a Fly.io implementation, and fakes that tests inject.
Records mirror the fields flyctl's JSON carries, so both targets fill them alike.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Protocol, runtime_checkable

#: Release statuses as flyctl writes them (plus "running" while a deploy is in progress).
RELEASE_STATUSES = ("complete", "failed", "interrupted", "running")
#: Secret statuses from `fly secrets list --json` (v0.4.6 and later).
SECRET_STATUSES = ("Deployed", "Staged", "Partial", "Unknown")

OutputSink = Callable[[str], None]


@dataclass(frozen=True)
class Release:
    """One release of an app, newest has the highest version."""

    version: int
    status: str
    image_ref: str
    created_at: str  # RFC 3339, UTC
    user: str
    description: str = ""
    reason: str = ""
    stable: bool = False

    def as_row(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class SecretInfo:
    """A secret as a platform lists it: a name and a digest, never the value."""

    name: str
    digest: str
    status: str = "Deployed"

    @property
    def usable(self) -> bool:
        # A Staged secret is stored but on no machine yet: the running app cannot see it.
        return self.status != "Staged"

    def as_row(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class AppStatus:
    """What is running now for an app."""

    app: str
    deployed: bool
    state: str  # started | stopped | crashed | not-deployed
    version: int | None = None
    image_ref: str | None = None
    url: str | None = None
    machines: tuple[dict, ...] = field(default_factory=tuple)

    def as_row(self) -> dict:
        return {k: v for k, v in asdict(self).items() if k != "machines"}


@dataclass(frozen=True)
class MachineCheck:
    """One health check of one machine, as the platform reports it (`fly checks list --json`)."""

    machine: str
    name: str
    status: str  # passing | warning | critical
    output: str
    updated_at: str

    @property
    def ok(self) -> bool:
        return self.status == "passing"

    def as_row(self) -> dict:
        return asdict(self)


@runtime_checkable
class Target(Protocol):
    """What the runbooks need from a deployment platform."""

    name: str

    def secrets(self, app: str) -> list[SecretInfo]:
        """Names, digests and statuses of the app's secrets (never values)."""

    def set_secrets(self, app: str, values: Mapping[str, str]) -> None:
        """Store secret values for the app (used by rehearsals and operators, not by runbooks)."""

    def unset_secrets(self, app: str, names: Sequence[str]) -> None:
        """Remove secrets from the app."""

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
        """Build (unless ``image`` is given) and deploy; return the release it made.

        Raises DeployError (carrying the failed Release when one was recorded) if the
        new version does not become healthy within ``wait_timeout_s``.
        """

    def releases(self, app: str) -> list[Release]:
        """Releases of the app, newest first."""

    def status(self, app: str) -> AppStatus:
        """What runs now, and where it is reachable."""

    def logs(self, app: str, *, version: int | None = None, limit: int = 200) -> list[str]:
        """The last ``limit`` log lines of the app (of one release when ``version`` is given)."""

    def checks(self, app: str) -> list[MachineCheck]:
        """The platform's own health checks of the app's machines (none where it has none)."""

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
        """Redeploy ``to.image_ref``; this makes a new, higher release, as on Fly.
        ``wait_timeout_s`` as for any deploy."""


def serving(status: AppStatus) -> dict:
    """What an app serves now, per machine, as a record: what a rollback restores exactly."""
    return {
        "app": status.app,
        "state": status.state,
        "version": status.version,
        "image_ref": status.image_ref or "",
        "machines": [
            {
                "machine": str(m.get("id", "")),
                "state": str(m.get("state", "")),
                "image_ref": str(m.get("image_ref", "")),
            }
            for m in status.machines
        ],
    }


def released_image(releases: Sequence[Release], image_ref: str) -> bool:
    """Whether a complete release of the app had ``image_ref``: the only images a rollback may
    redeploy. What machines served before a first release can be an image no release had (a
    machine made by hand, or a platform's placeholder, named by its digest): redeploying it
    would not restore a release. The list is the platform's (Fly keeps the last 25)."""
    return bool(image_ref) and any(r.image_ref == image_ref and r.status == "complete" for r in releases)


def nothing_to_roll_back_to(app: str, image_ref: str) -> str:
    """Why a rollback redeploys nothing, when no earlier release of the app can be restored."""
    if not image_ref:
        return (
            f"nothing to roll back to: production served nothing before this release "
            f"(the first release of {app}); nothing redeployed"
        )
    return (
        f"nothing to roll back to: what production served before this release ({image_ref}) is the image "
        f"of no complete release of {app}; nothing redeployed"
    )


def machines_on_image(status: AppStatus, image_ref: str) -> list[dict]:
    """Per machine: the image it should run against the one it runs.

    A deploy that exits 0 is not proof: flyctl has reported success for machines that went
    back to their previous image after a failed update (superfly/flyctl#4878, #4921), and
    health checks then pass against the old code. A started machine on another image, or no
    started machine at all, is a mismatch.
    """
    rows = [
        {
            "machine": str(m.get("id", "")),
            "state": str(m.get("state", "")),
            "expected_image": image_ref,
            "serving_image": str(m.get("image_ref", "")),
            "ok": m.get("image_ref") == image_ref,
        }
        for m in status.machines
    ]
    if not any(row["state"] == "started" for row in rows):
        rows.append(
            {
                "machine": "(none started)",
                "state": status.state,
                "expected_image": image_ref,
                "serving_image": "",
                "ok": False,
            }
        )
    return rows
