"""The archive as data: one summary per release folder, read from its manifest.json.

The index, the history, the DORA metrics and the report's comparison with earlier
releases all need the same few facts of every release (app, outcome, times, operator,
commit, each section's outcome and duration), never the executed notebooks. Reading
10,000 manifests takes a second or two; so summaries are cached in
outputs/.index-cache.json, keyed by the manifest's relative path, mtime and size, and
a rebuild parses only manifests that are new or changed. The cache is a convenience:
deleting it costs one cold read, never a wrong answer.

A release folder without a manifest is listed as "unsealed" (still running, or left
unsealed because a secret was found in it); an unreadable manifest as "unreadable".
"""

from __future__ import annotations

import gc
import json
import os
import re
import subprocess
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import NamedTuple

from ..paths import RUNBOOKS_DIR
from .integrity import MANIFEST

CACHE_FILE = ".index-cache.json"
CACHE_VERSION = 2
SUMMARY = "summary.json"  # an app's summary from the archive store (archive/summary.py)
RELEASE_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}\Z")
#: Outcomes a sealed manifest can carry, plus the two the catalog gives folders it cannot read.
OUTCOMES = (
    "released",
    "watched",
    "blocked",
    "rolled back",
    "rollback failed",
    "aborted",
    "error",
    "unsealed",
    "unreadable",
)
REASON_MAX_CHARS = 300


class SectionTiming(NamedTuple):
    key: str
    outcome: str
    duration_s: float
    started_at: str
    reused: bool  # copied from an earlier release by --resume: not a measurement of this one


#: SectionTiming from its JSON list without NamedTuple._make's Python-level call: the
#: cache holds about 80,000 of them for 10,000 releases.
_section_from_list = partial(tuple.__new__, SectionTiming)


class ReleaseSummary(NamedTuple):
    """What the index, the history and the metrics know about one release.

    A named tuple: 10,000 of them are built from the cache on every index rebuild.
    """

    app: str
    release_id: str
    outcome: str
    started_at: str
    finished_at: str
    operator: str
    target: str
    reason: str
    commit: str | None
    commit_dirty: bool | None
    committed_at: str | None
    duration_s: float | None  # started_at to finished_at
    sections: tuple[SectionTiming, ...]
    has_report: bool

    @property
    def folder(self) -> str:
        """The release folder relative to the archive root, with forward slashes (a URL path too)."""
        return f"{self.app}/{self.release_id}"

    def section(self, key: str) -> SectionTiming | None:
        for section in self.sections:
            if section.key == key:
                return section
        return None

    def to_json(self) -> list:
        return [*self[:-2], [list(s) for s in self.sections], self.has_report]

    @classmethod
    def from_json(cls, row: list) -> ReleaseSummary:
        return cls(*row[:-2], tuple(map(_section_from_list, row[-2])), row[-1])


@dataclass
class Catalog:
    """Every release under one archive root, newest first."""

    root: Path
    releases: list[ReleaseSummary]
    parsed: int = 0  # manifests read this time (the rest came from the cache)
    cached: int = 0

    def apps(self) -> list[str]:
        return sorted({r.app for r in self.releases})

    def select(
        self, *, app: str | None = None, outcome: str | None = None, before: str | None = None, limit: int | None = None
    ) -> list[ReleaseSummary]:
        """Releases newest first, filtered; `before` keeps those started before that time."""
        chosen = [
            r
            for r in self.releases
            if (app is None or r.app == app)
            and (outcome is None or r.outcome == outcome)
            and (before is None or r.started_at < before)
        ]
        return chosen[:limit] if limit is not None else chosen


def parse_time(value: str | None) -> datetime | None:
    """ISO 8601 as the archive writes it (…Z or +00:00); None when absent or not a time."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def seconds_between(start: str | None, end: str | None) -> float | None:
    begun, ended = parse_time(start), parse_time(end)
    return (ended - begun).total_seconds() if begun and ended else None


def release_id_time(release_id: str) -> str:
    """20261125T185903Z-af55f4 -> 2026-11-25T18:59:03Z: when a release without a manifest began."""
    stamp = datetime.strptime(release_id[:16], "%Y%m%dT%H%M%SZ")
    return stamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def summarize_manifest(manifest: dict, app: str, release_id: str) -> ReleaseSummary:
    """The catalog's facts of one manifest. App and release id come from the folder: that is
    where the index links to, whatever the manifest says."""
    get = manifest.get
    commit = get("runbooks_commit") or {}
    started_at = get("started_at") or release_id_time(release_id)
    finished_at = get("finished_at") or ""
    return ReleaseSummary(
        app,
        release_id,
        str(get("outcome") or "error"),
        str(started_at),
        str(finished_at),
        str(get("operator") or ""),
        str(get("target") or ""),
        str(get("reason") or "")[:REASON_MAX_CHARS],
        commit.get("commit"),
        commit.get("dirty"),
        commit.get("committed_at"),
        seconds_between(started_at, finished_at),
        tuple(map(section_timing, get("sections") or ())),
        "report.html" in (get("files") or ()),
    )


def section_timing(section: dict) -> SectionTiming:
    get = section.get
    return _section_from_list(
        (
            str(get("key")),
            str(get("outcome")),
            float(get("duration_s") or 0.0),
            str(get("started_at") or ""),
            bool(get("reused_from")),
        )
    )


def unsealed_summary(app: str, release_id: str, outcome: str, reason: str) -> ReleaseSummary:
    return ReleaseSummary(
        app, release_id, outcome, release_id_time(release_id), "", "", "", reason, None, None, None, None, (), False
    )


def release_folders(root: Path) -> Iterator[tuple[str, str, str]]:
    """(app, release id, folder path) of every release folder: <root>/<app>/<release id>/."""
    try:
        app_entries = list(os.scandir(root))
    except FileNotFoundError:
        return
    for app_entry in app_entries:
        if not app_entry.is_dir() or app_entry.name.startswith((".", "_")):  # _approvals, _logs, _audit: not apps
            continue
        for entry in os.scandir(app_entry.path):
            if entry.is_dir() and RELEASE_ID.match(entry.name):
                yield app_entry.name, entry.name, entry.path


def load_catalog(root: Path, *, use_cache: bool = True, write_cache: bool = True) -> Catalog:
    """Summaries of every release under `root`, newest first; only new or changed manifests are parsed."""
    root = Path(root)
    with bulk_allocation():
        return _load_catalog(root, use_cache, write_cache)


@contextmanager
def bulk_allocation():
    """No cyclic garbage collection while 10,000 summaries are built: it would run hundreds
    of times over objects that all stay alive, and triple the time of a rebuild."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _load_catalog(root: Path, use_cache: bool, write_cache: bool) -> Catalog:
    cache = read_cache(root) if use_cache else empty_cache()
    entries, fresh_entries = cache["entries"], {}
    releases, parsed, cached = [], 0, 0
    seen = set()
    for app, release_id, folder in release_folders(root):
        key = f"{app}/{release_id}"
        seen.add(key)
        try:
            stat = os.stat(os.path.join(folder, MANIFEST))
        except FileNotFoundError:
            releases.append(
                unsealed_summary(
                    app, release_id, "unsealed", "no manifest.json: running, or left unsealed (see the folder)"
                )
            )
            continue
        stamp = [stat.st_mtime_ns, stat.st_size]
        entry = entries.get(key)
        if entry is not None and entry[0] == stamp:
            summary = ReleaseSummary.from_json(entry[1])
            cached += 1
        else:
            summary = read_summary(folder, app, release_id)
            entry = [stamp, summary.to_json()]
            parsed += 1
        fresh_entries[key] = entry
        releases.append(summary)
    releases += [r for r in store_summaries(root) if r.folder not in seen]
    known_commits = len(cache["commit_times"])
    releases = with_commit_times(releases, cache["commit_times"])
    releases.sort(key=lambda r: (r.started_at, r.release_id), reverse=True)
    changed = parsed or len(fresh_entries) != len(entries) or len(cache["commit_times"]) != known_commits
    if write_cache and changed:
        write_cache_file(
            root, {"version": CACHE_VERSION, "entries": fresh_entries, "commit_times": cache["commit_times"]}
        )
    return Catalog(root, releases, parsed, cached)


def store_summaries(root: Path) -> list[ReleaseSummary]:
    """Releases known here only from an app's summary a pull brought from the archive store
    (archive/summary.py: `<app>/summary.json`, used only when it matched the store's chain head):
    the catalog of a copy that read one object per app instead of each manifest."""
    try:
        app_dirs = [e.path for e in os.scandir(root) if e.is_dir() and not e.name.startswith(".")]
    except FileNotFoundError:
        return []
    return [r for path in app_dirs if os.path.isfile(os.path.join(path, SUMMARY)) for r in summary_releases(Path(path))]


def summary_releases(app_dir: Path) -> list[ReleaseSummary]:
    """The catalog rows of a summary a pull left in this copy (`<app>/summary.json`); [] when
    there is none or it does not parse. The app comes from the folder, as for a manifest."""
    try:
        summary = json.loads((app_dir / SUMMARY).read_bytes())
        return [
            ReleaseSummary.from_json(row[4])._replace(app=app_dir.name, release_id=row[0]) for row in summary["rows"]
        ]
    except (OSError, ValueError, KeyError, TypeError, IndexError):
        return []


def read_summary(folder: str, app: str, release_id: str) -> ReleaseSummary:
    try:
        with open(os.path.join(folder, MANIFEST), "rb", buffering=0) as handle:
            manifest = json.loads(handle.read())
        return summarize_manifest(manifest, app, release_id)
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        return unsealed_summary(app, release_id, "unreadable", f"manifest.json unreadable: {type(exc).__name__}")


# -- the cache -------------------------------------------------------------------------


def empty_cache() -> dict:
    return {"version": CACHE_VERSION, "entries": {}, "commit_times": {}}


def read_cache(root: Path) -> dict:
    try:
        data = json.loads((root / CACHE_FILE).read_bytes())
    except (OSError, ValueError):
        return empty_cache()
    if not isinstance(data, dict) or data.get("version") != CACHE_VERSION:
        return empty_cache()
    return {
        "version": CACHE_VERSION,
        "entries": data.get("entries") or {},
        "commit_times": data.get("commit_times") or {},
    }


def write_cache_file(root: Path, data: dict) -> None:
    path = root / CACHE_FILE
    tmp = path.with_name(f"{CACHE_FILE}.{os.getpid()}.tmp")
    try:
        tmp.write_text(json.dumps(data, separators=(",", ":"), check_circular=False), encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        tmp.unlink(missing_ok=True)  # a read-only archive still gets its index, only slower


# -- commit times (for lead time) ---------------------------------------------------------


def with_commit_times(releases: list[ReleaseSummary], known: dict[str, str | None]) -> list[ReleaseSummary]:
    """Fill committed_at from the runbooks' git repository where the manifest did not record it.

    `known` (the cache's) maps commit -> time or None (not in this repository); it is updated.
    """
    missing = {r.commit for r in releases if r.commit and not r.committed_at and r.commit not in known}
    if missing:
        known.update(commit_times_from_git(sorted(missing)))
    return [
        r if r.committed_at or not known.get(r.commit or "") else _replace_commit_time(r, known[r.commit])
        for r in releases
    ]


def _replace_commit_time(release: ReleaseSummary, committed_at: str) -> ReleaseSummary:
    return release._replace(committed_at=committed_at)


def commit_times_from_git(commits: Iterable[str], repo: Path = RUNBOOKS_DIR) -> dict[str, str | None]:
    """One `git log --no-walk` for all commits; commits the repository lacks map to None."""
    commits = list(commits)
    times: dict[str, str | None] = dict.fromkeys(commits)
    try:
        done = subprocess.run(
            ["git", "log", "--no-walk", "--ignore-missing", "--stdin", "--format=%H %cI"],
            cwd=repo,
            input="\n".join(commits) + "\n",
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return times
    if done.returncode == 0:
        for line in done.stdout.splitlines():
            commit, _, when = line.partition(" ")
            if commit in times:
                times[commit] = when
    return times
