"""Sealing a release folder: HTML of every executed notebook, the report, a secret scan,
and manifest.json with the sha256 of every file.

Sealing runs whatever happened before (a failed gate, a crashed kernel, an abort), so
an auditor always finds a complete folder that says where and why a release stopped.
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..errors import UsageError
from ..results import read_all_results, read_section_result, write_json_atomic
from ..secrets.redact import Redactor, find_secret_values
from .integrity import MANIFEST, chain_link, sealed_releases, sha256_file
from .provenance import release_provenance
from .signing import UNLISTED, Signer, head_pin, sign_release, signer_for, write_checkpoint


def export_html(notebook_path: Path) -> Path:
    """NN-section.html next to the executed notebook: offline, inert, small (see htmlexport.py)."""
    from .htmlexport import export_notebook_html

    return export_notebook_html(notebook_path)


class ExportWorker:
    """The HTML export worker process (`python -m hotdash_release.archive.htmlexport`): a notebook path
    per line in, a JSON reply per page out. It starts with the first page it is given, or
    earlier (`start`, as the `runbook` command does); a runner that runs several releases
    keeps one for all of them, so nbconvert is imported once.

    Exporting a page is ~50 ms of CPU (templates, sanitizing, highlighting); in a thread of
    the runner it would hold the GIL that nbclient needs to talk to the running kernel. The
    worker runs at a lower priority than the kernels: it uses the CPU the sections leave idle.
    """

    def __init__(self) -> None:
        self._process: subprocess.Popen | None = None
        self._replies: queue.Queue = queue.Queue()
        self.lock = threading.Lock()  # held by the release whose pages it is writing

    def start(self) -> None:
        """Start the process now (it imports nbconvert), if it does not run yet."""
        if self._process is None or self._process.poll() is not None:
            self._process = subprocess.Popen(
                [sys.executable, "-m", "hotdash_release.archive.htmlexport"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                start_new_session=True,
            )
            self._replies = queue.Queue()
            threading.Thread(
                target=_read_replies,
                args=(self._process.stdout, self._replies),
                daemon=True,
                name="html-export-replies",
            ).start()

    def submit(self, notebook: Path) -> None:
        self.start()
        self._process.stdin.write(f"{notebook}\n")
        self._process.stdin.flush()

    def collect(self, notebooks: set[str], timeout: float) -> set[str]:
        """Wait for the replies about these notebooks (paths); the ones it wrote pages for."""
        done, waiting = set(), set(notebooks)
        deadline = time.monotonic() + timeout
        while waiting:
            try:
                reply = self._replies.get(timeout=max(deadline - time.monotonic(), 0))
            except queue.Empty:
                break  # a stuck or dead worker: the seal exports what is missing
            if reply is None:
                break  # the worker ended
            waiting.discard(reply.get("notebook"))
            if reply.get("ok"):
                done.add(reply.get("notebook"))
        return done

    def close(self) -> None:
        """End the process. Its pages were collected (or given up on) before: nothing to wait for,
        and after a usage error it may still be importing."""
        if self._process is None:
            return
        process, self._process = self._process, None
        process.kill()
        process.wait()
        for stream in (process.stdin, process.stdout):
            try:
                stream.close()
            except OSError:
                pass


def _read_replies(stream, replies: queue.Queue) -> None:
    for line in stream:
        try:
            reply = json.loads(line)
        except ValueError:
            continue  # not a reply: something in the worker printed
        if isinstance(reply, dict):
            replies.put(reply)
    replies.put(None)


class HtmlExports:
    """One release's section pages, written by an export worker while the next sections run.
    It is only a head start: the seal exports in the runner whatever the worker did not finish.

    worker: one kept by the caller for several releases (used if no other release holds it),
    else the release starts its own and ends it when sealed."""

    def __init__(self, worker: ExportWorker | None = None) -> None:
        if worker is not None and worker.lock.acquire(blocking=False):
            self._worker, self._own = worker, False
        else:
            self._worker, self._own = ExportWorker(), True
        self._submitted: set[str] = set()

    def submit(self, notebook: Path) -> None:
        if not notebook.is_file() or self._worker is None:
            return
        try:
            self._worker.submit(notebook)
            self._submitted.add(str(notebook))
        except OSError:
            pass  # a worker that went away leaves its pages to the seal

    def finish(self) -> set[str]:
        """Wait for this release's pages; the names of the notebooks the worker wrote pages for."""
        if self._worker is None:
            return set()
        worker, self._worker = self._worker, None
        try:
            done = worker.collect(self._submitted, timeout=120)
        finally:
            if self._own:
                worker.close()
            else:
                worker.lock.release()
        return {Path(notebook).name for notebook in done}


def seal_release(record, redactor: Redactor, exports: HtmlExports | None = None, signer: Signer | None = None) -> None:
    """Write HTML, report and manifest; record (not raise) what went wrong while sealing.
    signer: the key that signs it (default: signer_for the record's target)."""
    from .report import write_report

    signer = signer or getattr(record, "signer", None) or signer_for(record.target_name)
    record.signer = signer  # the report's footer names the key

    folder = record.release_dir
    write_report(record, read_all_results(folder))  # while the export worker writes the last pages
    exported = exports.finish() if exports else set()
    for section in record.sections:
        notebook = folder / section.notebook
        # A resumed release keeps the reused sections' HTML exactly as it was archived.
        if notebook.is_file() and not section.reused_from and notebook.name not in exported:
            try:
                export_html(notebook)
            except Exception as exc:  # an unexportable notebook must not lose the rest of the archive
                record.archive_problems.append(f"HTML export of {notebook.name} failed: {type(exc).__name__}")
    leaks = scan_for_secrets(folder, redactor) + secrets_in_record(record, redactor)
    if leaks:
        record.archive_problems.append("secret values found in " + ", ".join(leaks) + ": archive not sealed")
        # Leave the files for investigation, but no manifest: the folder is visibly unsealed.
        return
    write_manifest(record, signer)
    sign_and_anchor(record, signer)


def sign_and_anchor(record, signer: Signer) -> dict:
    """SHA256SUMS of every file (the manifest included), its signatures, and the app's signed
    checkpoint naming the new chain head; the checkpoint is also kept on the record to print."""
    folder = record.release_dir
    files = {
        str(p.relative_to(folder)): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and str(p.relative_to(folder)) not in UNLISTED
    }
    sign_release(folder, files, signer)
    releases = sealed_releases(folder.parent)
    record.checkpoint = write_checkpoint(
        folder.parent,
        releases=len(releases),
        head_release_id=releases[-1].name,
        head_sha256=sha256_file(releases[-1] / MANIFEST),
        signer=signer,
        at=record.finished_at,
    )
    record.head_pin = head_pin(record.checkpoint)
    return record.checkpoint


def scan_for_secrets(folder: Path, redactor: Redactor) -> list[str]:
    """Files (relative names) that hold any known secret value, raw or encoded."""
    hits = []
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        names = find_secret_values(path.read_bytes(), redactor)
        if names:
            hits.append(f"{path.relative_to(folder)} ({', '.join(sorted(names))})")
    return hits


def secrets_in_record(record, redactor: Redactor) -> list[str]:
    """The manifest's free text (reasons, operator, errors, parameters) holds no secret value
    either: checked before the manifest is written, as the files are."""
    texts = {
        "reason": record.reason,
        "release_reason": getattr(record.options, "reason", ""),
        "operator": record.operator,
        "parameters": record.parameters,
        "lock": record.lock_note,
        "session": getattr(record, "session", None),
        "sections": [(s.error, s.failures) for s in record.sections],
    }
    # Each text as it is, and as the manifest will spell it (JSON-escaped).
    dumped = json.dumps(texts, default=str)
    data = "\0".join(_strings(texts)) + "\0" + dumped
    names = find_secret_values(data.encode("utf-8", errors="replace"), redactor)
    return [f"{MANIFEST} ({', '.join(sorted(names))})"] if names else []


def _strings(value) -> list[str]:
    if isinstance(value, dict):
        return [text for item in value.values() for text in _strings(item)]
    if isinstance(value, (list, tuple)):
        return [text for item in value for text in _strings(item)]
    return [value] if isinstance(value, str) else [] if value is None else [str(value)]


def write_manifest(record, signer: Signer | None = None) -> Path:
    folder = record.release_dir
    files = {
        str(p.relative_to(folder)): sha256_file(p)
        for p in sorted(folder.rglob("*"))
        if p.is_file() and str(p.relative_to(folder)) not in {MANIFEST, *UNLISTED}
    }
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
        # What else shaped the run, so that --resume runs as this release did.
        "skip_staging_check": record.options.skip_staging_check,
        "attestations": record.options.attestations,
        **(record.provenance.result() if getattr(record, "provenance", None) else release_provenance()),
        "inputs": record.inputs,
        "lock": record.lock_note,
        # SIGINT/SIGTERM received (when, during what); a release sealed after its runner died.
        "signals": list(getattr(record, "signals", [])),
        "abandoned": getattr(record, "abandoned", None),
        "resumed_from": record.resumed_from,
        # A later watch (`runbook watch`): the release it watched, sealed before this record.
        "watched_release": getattr(getattr(record, "options", None), "watch_of", None),
        # How the sections' kernels were started: forked from the kernel template, or spawned.
        "kernels": getattr(getattr(record, "kernels", None), "mode", None),
        # A session a person ran in JupyterLab and sealed (interactive/session.py), or a headless run.
        "interactive": getattr(record, "interactive", False),
        "session": getattr(record, "session", None),
        "sections": [
            {
                "key": s.section.key,
                "title": s.section.title,
                "outcome": s.outcome,
                "started_at": s.started_at,
                "duration_s": round(s.duration_s, 3),
                "budget_minutes": s.budget_minutes(record.config),
                "notebook": s.notebook,
                "error": s.error,
                "failures": s.failures,
                "reused_from": s.reused_from,
            }
            for s in record.sections
        ],
        **chain_link(folder.parent, record.release_id),
        # The key whose signature of SHA256SUMS (which holds this manifest's sha256) seals it.
        "signing_key": signer.key_id if signer else None,
        "files": files,
    }
    path = folder / MANIFEST
    write_json_atomic(path, manifest)
    return path


def read_manifest(folder: Path) -> dict:
    return json.loads((Path(folder) / MANIFEST).read_text(encoding="utf-8"))


def watched_release(folder: str | Path) -> Path:
    """The sealed release a later watch follows: a release folder with a manifest that says it was
    released (a watch of a rolled-back or stopped release would watch something else)."""
    path = Path(folder)
    try:
        manifest = read_manifest(path)
    except (OSError, ValueError):
        raise UsageError(f"watching: {path} is not a sealed release (no readable manifest.json)") from None
    if manifest.get("outcome") != "released":
        raise UsageError(
            f"watching: release {path.name} ended {manifest.get('outcome')!r}; only a released release can be watched"
        )
    return path


def deployed_image(folder: Path) -> str | None:
    """The image a release's production deploy verified (what a later watch expects to serve)."""
    records = (read_section_result(folder, "deploy_production") or {}).get("records") or {}
    return (records.get("deployment") or {}).get("image_ref")
