"""One family of errors for the release tooling.

    ReleaseError                  anything this package raises on purpose
    ├── UsageError                bad input from a person: CLI flag, parameter (exit code 2)
    │   └── ConfigError           the release configuration: names the key and what is allowed
    ├── SecretError               a secret value cannot be resolved (the name is given, never a value)
    ├── TargetError               the deployment platform failed or refused
    │   ├── DeployError           a deploy did not reach a complete release
    │   └── RollbackError         no release to roll back to, or the rollback failed
    ├── DispatchError             GitHub did not start the deploy workflow
    ├── KernelStartError          no kernel could be started for a section
    ├── StoreError                the archive's object store failed or refused (archive/store.py)
    │   └── StoreConflict         a conditional write lost: the object exists, or changed since read
    └── GateFailed                a gate decided that the release must stop here
        └── Refused               an action's preconditions over the release's record are not met
            └── DeployRefused     production may not change: its preconditions are not recorded

Foreign errors (subprocess, httpx, papermill) are wrapped where they enter, with the
original kept as ``__cause__``. Context is keyword-only.
"""

from __future__ import annotations


class ReleaseError(Exception):
    """Base of every error raised on purpose by hotdash_release."""


class UsageError(ReleaseError):
    """Bad input from a person; the CLI prints it on one line and exits 2."""


class ConfigError(UsageError):
    """A key of the release configuration is missing or holds a value that is not allowed."""

    def __init__(self, key: str, problem: str, *, path: str | None = None) -> None:
        self.key = key
        self.problem = problem
        self.path = path
        where = f"{path}: " if path else ""
        super().__init__(f"{where}{key}: {problem}")


class SecretError(ReleaseError):
    """A secret's value is not available from its source."""

    def __init__(self, message: str, *, name: str, app: str | None = None) -> None:
        self.name = name
        self.app = app
        super().__init__(message)


class TargetError(ReleaseError):
    """The deployment platform failed or refused an operation."""

    def __init__(self, message: str, *, app: str | None = None) -> None:
        self.app = app
        super().__init__(message)


class DeployError(TargetError):
    """A deploy ended without a complete release."""

    def __init__(self, message: str, *, app: str | None = None, release=None) -> None:
        self.release = release
        super().__init__(message, app=app)


class RollbackError(TargetError):
    """There is nothing to roll back to, or redeploying the previous image failed."""

    def __init__(self, message: str, *, app: str | None = None, release=None) -> None:
        self.release = release
        super().__init__(message, app=app)


class DispatchError(ReleaseError):
    """GitHub did not start the workflow; ``status_code`` is None when it was not reached."""

    def __init__(self, message: str, *, status_code: int | None = None) -> None:
        self.status_code = status_code
        super().__init__(message)


class KernelStartError(ReleaseError):
    """A section's kernel could not be started (the kernel template failed or went away)."""


class StoreError(ReleaseError):
    """The archive's store (a folder or an S3 bucket) could not be read or written."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        self.key = key
        super().__init__(message)


class StoreConflict(StoreError):
    """A conditional write was refused: the object already exists (create-only), or it changed
    since it was read (If-Match). Another runner got there first."""


class GateFailed(ReleaseError):
    """A gate decided that the release stops; ``section`` names where."""

    def __init__(self, message: str, *, section: str, findings: list[str] | None = None) -> None:
        self.section = section
        self.findings = list(findings or [])
        super().__init__(message)


class Refused(GateFailed):
    """An action's precondition over the release's record is not met: nothing was done
    (decisions/release_gate.py holds the table of what each action needs)."""


class DeployRefused(Refused):
    """A production deploy refused before changing anything: this release's records lack what
    the plan requires first (secrets verified, staging healthy and smoke-tested, a GO)."""
