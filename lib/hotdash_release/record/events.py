"""The release's own record: an append-only event log, <release dir>/events.jsonl.

Every path that acts on a release (the runner, plain papermill, a JupyterLab kernel) appends
here what it did: a section's result saved (with the digest of the file it wrote), a decision
recorded, a deploy refused or verified, a notification, a rollback, a reuse on resume. Each
line names who, when and which process, and carries the SHA-256 of the line before it, so a
line removed, changed or inserted breaks the chain; the seal signs the file with the rest.

The per-section files under results/ are views written with the log: a result counts for a
gate only when its bytes are the ones the log's last `result_saved` event for that section
names (`recorded_results`). Hand-written or hand-edited result files are not the release's.

A sealed release (a manifest, or a lab session marked sealed) is read-only to every path:
`append` refuses, and so does every writer that calls `refuse_if_sealed`.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import UsageError
from ..results import RESULTS_DIR, results_path, utc_now

EVENTS = "events.jsonl"
MANIFEST = "manifest.json"
SESSION_MARKER = ".hotdash-session.json"


def sealed_as(folder: Path) -> str | None:
    """The release id a folder was sealed as; None while it is open. A release folder is
    sealed once its manifest exists; a lab session once its marker names the release."""
    folder = Path(folder)
    if (folder / MANIFEST).is_file():
        return folder.name
    marker = folder / SESSION_MARKER
    if marker.is_file():
        try:
            return json.loads(marker.read_text(encoding="utf-8")).get("sealed_as") or None
        except (OSError, ValueError):
            return None
    return None


def refuse_if_sealed(folder: Path) -> None:
    """Nothing writes inside a sealed release but the seal: one line, nothing written."""
    release = sealed_as(folder)
    if not release:
        return
    if (Path(folder) / MANIFEST).is_file():
        raise UsageError(
            f"release_dir: {Path(folder)} is the sealed release {release}: it is read-only, nothing is "
            "recorded; start a new release (runbook release) to change anything"
        )
    raise UsageError(
        f"session {Path(folder).name} was sealed as release {release}: it is read-only, nothing is "
        "recorded; start a new session (make lab) to change anything"
    )


def _digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def append(folder: Path, kind: str, *, by: str, section: str = "", **data) -> dict:
    """Append one event; return it. Refuses (UsageError) when the release is sealed.

    The file is locked (flock on the log itself, held only for the append) so that two writers
    never take the same place in the chain; no separate lock file, which the seal would sign."""
    folder = Path(folder)
    refuse_if_sealed(folder)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / EVENTS, "a+b") as log:
        fcntl.flock(log, fcntl.LOCK_EX)
        log.seek(0)
        lines = log.read().splitlines()
        event = {
            "seq": len(lines) + 1,
            "at": utc_now(),
            "by": by,
            "pid": os.getpid(),
            "kind": kind,
            "section": section,
            "data": data,
            "prev": _digest(lines[-1]) if lines else "",
        }
        log.write(json.dumps(event, sort_keys=True, default=str).encode() + b"\n")
        log.flush()
        os.fsync(log.fileno())
    return event


@dataclass
class EventLog:
    events: list[dict] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)  # a broken chain: lines changed, removed or inserted

    def of(self, kind: str, section: str | None = None) -> list[dict]:
        return [e for e in self.events if e["kind"] == kind and (section is None or e["section"] == section)]

    def last(self, kind: str, section: str | None = None) -> dict | None:
        found = self.of(kind, section)
        return found[-1] if found else None


def read_events(folder: Path) -> EventLog:
    """The log as written, with whatever breaks its chain named."""
    path = Path(folder) / EVENTS
    if not path.is_file():
        return EventLog()
    log = EventLog()
    previous = b""
    for number, line in enumerate(path.read_bytes().splitlines(), start=1):
        try:
            event = json.loads(line)
            ok = isinstance(event, dict) and event.get("seq") == number
        except ValueError:
            event, ok = None, False
        if not ok:
            log.problems.append(f"{EVENTS} line {number} is not an event of this log")
            break
        if event.get("prev", "") != (_digest(previous) if previous else ""):
            log.problems.append(f"{EVENTS} line {number} does not follow line {number - 1} (changed or inserted)")
            break
        log.events.append(event)
        previous = line
    return log


def note_result(folder: Path, section: str, *, by: str, outcome: str, **data) -> None:
    """After a section's result file is written: its digest, so the file is known as this release's."""
    digest = _digest(results_path(folder, section).read_bytes())
    append(folder, "result_saved", by=by, section=section, outcome=outcome, sha256=digest, **data)


def recorded_results(folder: Path) -> tuple[dict[str, dict], list[str]]:
    """The section results this release's log vouches for (section -> result), and one line for
    each result file it does not (written by hand, changed since, or a broken log)."""
    folder = Path(folder)
    log = read_events(folder)
    results: dict[str, dict] = {}
    problems = list(log.problems)
    for path in sorted((folder / RESULTS_DIR).glob("*.json")):
        saved = None if log.problems else log.last("result_saved", path.stem)
        data = path.read_bytes()
        if saved is None or saved["data"].get("sha256") != _digest(data):
            problems.append(f"{RESULTS_DIR}/{path.name} was not recorded by this release (written by hand or changed)")
            continue
        results[path.stem] = json.loads(data)
    return results, problems


def decisions(folder: Path) -> list[dict]:
    """Every go/no-go decision recorded in this release, oldest first: who, when, what, why."""
    return [{"at": e["at"], "by": e["by"], **e["data"]} for e in read_events(folder).of("decision_recorded")]
