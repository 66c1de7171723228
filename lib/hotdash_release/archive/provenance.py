"""Which runbooks and tools ran a release: the runbooks' git commit and the packages' versions,
recorded in the manifest and shown in the report and the plan page."""

from __future__ import annotations

import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from ..paths import RUNBOOKS_DIR

_TOOLS = ("hotdash-release", "papermill", "nbconvert", "nbclient", "nbformat", "ipykernel", "httpx", "pandas")


def release_provenance() -> dict:
    """Which runbooks and tools ran the release: the same for all its sections, so the runner
    asks git and the package metadata (a few subprocesses and file scans) while they run."""
    return {"runbooks_commit": git_commit(RUNBOOKS_DIR), "tools": tool_versions()}


def git_commit(folder: Path) -> dict:
    def git(*args: str) -> str:
        done = subprocess.run(["git", *args], cwd=folder, capture_output=True, text=True, timeout=10)
        return done.stdout.strip() if done.returncode == 0 else ""

    commit = git("rev-parse", "HEAD")
    committed_at = git("log", "-1", "--format=%cI", "HEAD") if commit else ""
    # Only the runbooks and the library decide what a release does; other changes do not taint it.
    dirty = bool(git("status", "--porcelain", "--", ".", "../lib")) if commit else None
    return {"commit": commit or None, "committed_at": committed_at or None, "dirty": dirty}


def tool_versions() -> dict:
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for name in _TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return versions
