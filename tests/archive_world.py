"""One small real archive, built once per test session, that the archive, index and browser
tests read (conftest's `archive_world` fixture).

Two releases through the real CLI, papermill and app processes:

- `good`: a standard HotDash release, all green: what the size budget is measured on;
- `hostile`: staging built with the hostile_content defect (script, img onerror and svg
  onload payloads in response bodies, a CSP header, JSON and log lines) and production
  built with a wrong API key, so the smoke test fails and the rollback runs. Its pages
  carry the payloads as evidence; its report has a last good release to compare with.
"""

from __future__ import annotations

import subprocess
from dataclasses import dataclass
from pathlib import Path

from conftest import Rehearsal, make_rehearsal


@dataclass
class ArchiveWorld:
    rehearsal: Rehearsal
    good: Path
    hostile: Path
    good_run: subprocess.CompletedProcess
    hostile_run: subprocess.CompletedProcess

    @property
    def outputs(self) -> Path:
        return self.rehearsal.outputs


def build_archive_world(root: Path) -> ArchiveWorld:
    rehearsal = make_rehearsal(root, wait_timeout_s=4)
    good_run = rehearsal.release()
    assert good_run.returncode == 0, good_run.stdout + good_run.stderr
    hostile_run = rehearsal.release("--break", "staging:hostile_content", "--break", "production:wrong_api_key")
    assert hostile_run.returncode == 4, hostile_run.stdout + hostile_run.stderr
    good, hostile = rehearsal.release_dirs()
    return ArchiveWorld(rehearsal, good, hostile, good_run, hostile_run)
