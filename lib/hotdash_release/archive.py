"""Sealing a release folder: HTML of every executed notebook, the report, a secret scan,
and manifest.json with the sha256 of every file.

Sealing runs whatever happened before (a failed gate, a crashed kernel, an abort), so
an auditor always finds a complete folder that says where and why a release stopped.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
from importlib import metadata
from pathlib import Path

from .integrity import MANIFEST, chain_link, sha256_file
from .redact import Redactor, find_secret_values
from .paths import RUNBOOKS_DIR
from .results import read_all_results, write_json_atomic

_TOOLS = ("hotdash-release", "papermill", "nbconvert", "nbclient", "nbformat", "ipykernel", "httpx", "pandas")

def export_html(notebook_path: Path) -> Path:
    """NN-section.html next to the executed notebook: offline, inert, small (see htmlexport.py)."""
    from .htmlexport import export_notebook_html

    return export_notebook_html(notebook_path)


class HtmlExports:
    """Section pages written by a worker process while the next sections run.

    Exporting a page is ~100 ms of CPU (templates, sanitizing, highlighting); in a thread of
    the runner it would hold the GIL that nbclient needs to talk to the running kernel. The
    worker starts with the first page, so its imports do not delay the first kernel. It is
    only a head start: the seal exports in the runner whatever the worker did not finish.
    """

    def __init__(self) -> None:
        self._worker: subprocess.Popen | None = None

    def submit(self, notebook: Path) -> None:
        if not notebook.is_file():
            return
        try:
            if self._worker is None:
                self._worker = subprocess.Popen(
                    [sys.executable, "-m", "hotdash_release.htmlexport"], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE, text=True, start_new_session=True)
            self._worker.stdin.write(f"{notebook}\n")
            self._worker.stdin.flush()
        except OSError:
            pass  # a worker that went away leaves its pages to the seal

    def finish(self) -> set[str]:
        """Wait for the worker to end; the names of the notebooks it wrote pages for."""
        if self._worker is None:
            return set()
        try:
            replies, _ = self._worker.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            self._worker.kill()
            self._worker.communicate()
            return set()
        finally:
            self._worker = None
        done = set()
        for line in replies.splitlines():
            try:
                reply = json.loads(line)
            except ValueError:
                continue  # not a reply: something in the worker printed
            if isinstance(reply, dict) and reply.get("ok"):
                done.add(reply["notebook"])
        return done


def seal_release(record, redactor: Redactor, exports: HtmlExports | None = None) -> None:
    """Write HTML, report and manifest; record (not raise) what went wrong while sealing."""
    from .report import write_report

    folder = record.release_dir
    exported = exports.finish() if exports else set()
    for section in record.sections:
        notebook = folder / section.notebook
        # A resumed release keeps the reused sections' HTML exactly as it was archived.
        if notebook.is_file() and not section.reused_from and notebook.name not in exported:
            try:
                export_html(notebook)
            except Exception as exc:  # an unexportable notebook must not lose the rest of the archive
                record.archive_problems.append(f"HTML export of {notebook.name} failed: {type(exc).__name__}")
    write_report(record, read_all_results(folder))
    leaks = scan_for_secrets(folder, redactor)
    if leaks:
        record.archive_problems.append("secret values found in " + ", ".join(leaks) + ": archive not sealed")
        # Leave the files for investigation, but no manifest: the folder is visibly unsealed.
        return
    write_manifest(record)


def scan_for_secrets(folder: Path, redactor: Redactor) -> list[str]:
    """Files (relative names) that hold any known secret value, raw or encoded."""
    hits = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        names = find_secret_values(path.read_bytes(), redactor)
        if names:
            hits.append(f"{path.relative_to(folder)} ({', '.join(sorted(names))})")
    return hits


def write_manifest(record) -> Path:
    folder = record.release_dir
    files = {str(p.relative_to(folder)): sha256_file(p)
             for p in sorted(folder.rglob("*")) if p.is_file() and p.name != MANIFEST}
    manifest = {
        "release_id": record.release_id,
        "app": record.config.environment("production").app,
        "outcome": record.outcome,
        "exit_code": record.exit_code,
        "reason": record.reason,
        "release_reason": record.options.reason,
        "operator": record.operator,
        "target": record.target_name,
        "started_at": record.started_at,
        "finished_at": record.finished_at,
        "parameters": record.parameters,
        "rehearsal_defects": record.options.defects,
        "runbooks_commit": git_commit(RUNBOOKS_DIR),
        "tools": tool_versions(),
        "inputs": record.inputs,
        "lock": record.lock_note,
        "resumed_from": record.resumed_from,
        # How the sections' kernels were started: forked from the kernel template, or spawned.
        "kernels": getattr(getattr(record, "kernels", None), "mode", None),
        # A session a person ran in JupyterLab and sealed (interactive.py), or a headless run.
        "interactive": getattr(record, "interactive", False),
        "session": getattr(record, "session", None),
        "sections": [{"key": s.section.key, "title": s.section.title, "outcome": s.outcome,
                      "started_at": s.started_at, "duration_s": round(s.duration_s, 3),
                      "budget_minutes": s.budget_minutes(record.config), "notebook": s.notebook,
                      "error": s.error, "failures": s.failures, "reused_from": s.reused_from}
                     for s in record.sections],
        **chain_link(folder.parent, record.release_id),
        "files": files,
    }
    path = folder / MANIFEST
    write_json_atomic(path, manifest)
    return path


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


def read_manifest(folder: Path) -> dict:
    return json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))
