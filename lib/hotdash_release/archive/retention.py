"""What the store's Object Lock actually keeps: `runbook verify --archive` reports the bucket's
Object Lock (enabled, default mode and days) and each sealed object's retention (mode,
retain-until) as the store answered the read verify makes anyway (store.get_retained), and
flags a sealed object with no retention, a weaker mode or a shorter date than expected.

Expected: the configured `[archive] retention_days` / `retention_mode`, else the bucket's default
retention rule; with neither, nothing was promised, so nothing is flagged (a line says so).
A sealed object is one under `<app>/<release id>/`: the runner writes each of them create-only
with a retention date; the head, the lock, the summary and the index pages are replaced and get none.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import timedelta

from .catalog import RELEASE_ID
from .integrity import Problem
from .store import LockConfiguration, ObjectRetention, Retention

#: A runner's clock and the store's may disagree: a date this much short of the expected one is still fine.
CLOCK_SLACK = timedelta(hours=1)
#: Object Lock's modes, weakest first: governance yields to s3:BypassGovernanceRetention, compliance to no one.
MODE_STRENGTH = {"GOVERNANCE": 1, "COMPLIANCE": 2}


@dataclass
class RetentionReport:
    lines: list[str] = field(default_factory=list)  # what verify prints, whatever the verdict
    problems: list[Problem] = field(default_factory=list)


def is_sealed(key: str) -> bool:
    parts = key.split("/")
    return len(parts) >= 3 and bool(RELEASE_ID.match(parts[1]))


def expected_retention(configured: Retention | None, lock: LockConfiguration | None) -> tuple[str, int] | None:
    """(MODE, days) a sealed object must have at least, or None when nothing was promised."""
    if configured:
        return configured.mode.upper(), configured.days
    if lock and lock.enabled and lock.mode and lock.days:
        return lock.mode.upper(), lock.days
    return None


def check_retention(
    where: str,
    lock: LockConfiguration | None,
    retentions: dict[str, ObjectRetention | None],
    configured: Retention | None,
) -> RetentionReport:
    """retentions: {key: what the store said} of every object read; only sealed ones count."""
    report = RetentionReport()
    if lock is None:
        return report  # a folder: no Object Lock to report
    if not lock.enabled:
        report.lines.append(f"object lock: not enabled on {where}: only permissions keep a sealed object")
    elif lock.mode:
        report.lines.append(f"object lock: enabled on {where}, default retention {lock.mode} {lock.days} day(s)")
    else:
        report.lines.append(f"object lock: enabled on {where}, no default retention (the runner sets each date)")
    expected = expected_retention(configured, lock)
    sealed = {key: found for key, found in retentions.items() if is_sealed(key)}
    by_mode: dict[str, list] = defaultdict(list)
    for found in sealed.values():
        by_mode[(found.mode if found else None) or "none"].append(found.until if found else None)
    for mode, dates in sorted(by_mode.items()):
        dated = sorted(d for d in dates if d)
        span = f" until {_day(dated[0])} to {_day(dated[-1])}" if dated else ""
        report.lines.append(f"retention: {len(dates)} sealed object(s) {mode}{span}")
    if expected is None:
        report.lines.append("retention: none configured ([archive] retention_days) and no bucket default: not checked")
        return report
    mode, days = expected
    report.lines.append(f"retention: expected at least {mode} for {days} day(s) from each upload")
    flagged: dict[tuple[str, str], list[str]] = defaultdict(list)
    for key, found in sorted(sealed.items()):
        app, release_id, name = key.split("/", 2)
        for why in _shortfalls(found, mode, days):
            flagged[(f"{app}/{release_id}", why)].append(name)
    for (release, why), names in flagged.items():
        shown = ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")
        report.problems.append(Problem(release, f"{len(names)} sealed object(s) {why}: {shown}"))
    return report


def _shortfalls(found: ObjectRetention | None, mode: str, days: int) -> list[str]:
    if found is None or not found.mode or not found.until:
        return ["have no Object Lock retention (they can be deleted)"]
    why = []
    if MODE_STRENGTH.get(found.mode.upper(), 0) < MODE_STRENGTH.get(mode, 0):
        why.append(f"are in {found.mode} mode, expected {mode} (s3:BypassGovernanceRetention can delete them)")
    if found.modified and found.until < found.modified + timedelta(days=days) - CLOCK_SLACK:
        kept = (found.until - found.modified).total_seconds() / 86400
        why.append(f"are retained {kept:.1f} day(s) after upload, expected {days} (shortened, or written so)")
    return why


def _day(moment) -> str:
    return moment.strftime("%Y-%m-%d")
