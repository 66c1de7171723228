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

    def rollback(
        self, app: str, *, to: Release, reason: str = "", user: str = "", on_output: OutputSink | None = None
    ) -> Release:
        """Redeploy ``to.image_ref``; this makes a new, higher release, as on Fly."""


def choose_rollback_release(releases: Sequence[Release], current_image: str | None) -> Release | None:
    """Fly's documented rollback choice: the newest complete release whose image differs from now."""
    for release in sorted(releases, key=lambda r: r.version, reverse=True):
        if release.status == "complete" and release.image_ref and release.image_ref != current_image:
            return release
    return None
