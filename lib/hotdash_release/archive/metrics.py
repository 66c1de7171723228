"""What the archive says about delivery as a whole: DORA's four keys and timing baselines.

Pure functions of catalog summaries (catalog.py), so the index, the release report,
`runbook history` and the tests compute them the same way. Definitions, per app and
target (rehearsals on the local platform are not production deployments of Fly, so
they are never mixed):

- a *deployment* is a release whose production deploy section ran;
- *deployment frequency*: successful deployments (outcome released) per week between
  the first and the newest release (at least one week), and how many in the last 30 days;
- *change failure rate*: deployments rolled back or whose rollback failed, over deployments;
- *time to restore*: from the failed deployment's production deploy start to the end
  of its rollback; when the rollback failed, to the end of the next good release's
  production smoke test (still open if there is none);
- *lead time for changes*: from the runbooks commit to the end of the production smoke
  test, for released releases whose commit time is known and whose tree was clean.

Timing baselines compare a duration with the p50 and p95 of the same step in up to
BASELINE_WINDOW earlier releases of the same app and target (passed, not reused by a
resume); fewer than MIN_BASELINE earlier samples give no verdict.
"""

from __future__ import annotations

import bisect
import csv
import io
from collections import defaultdict, deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from statistics import median

from ..results import write_json_atomic
from .catalog import ReleaseSummary, parse_time

BASELINE_WINDOW = 100
MIN_BASELINE = 5
TOTAL = "total"  # the baseline key of a whole release's duration
METRICS_JSON = "metrics.json"
METRICS_CSV = "metrics.csv"
FAILED_CHANGE = ("rolled back", "rollback failed")
#: Written into metrics.json so the numbers carry their meaning with them.
DEFINITIONS = {
    "deployment": "a release whose production deploy section ran",
    "deployment_frequency": "successful deployments per week between the first and the newest release "
    "(over at least one week)",
    "change_failure_rate": "deployments rolled back or whose rollback failed, over deployments",
    "time_to_restore": "failed deployment's production deploy start to the end of its rollback, or of the "
    "next good release's production smoke test when the rollback failed",
    "lead_time": "runbooks commit to the end of the production smoke test (released, clean tree, known commit time)",
    "grouping": "per app and target: rehearsals on the local platform are not mixed with Fly deployments",
}


def percentile(sorted_values: Sequence[float], q: float) -> float | None:
    """The q-th percentile (0-100) with linear interpolation, as numpy's default."""
    if not sorted_values:
        return None
    rank = (len(sorted_values) - 1) * q / 100
    low = int(rank)
    high = min(low + 1, len(sorted_values) - 1)
    return sorted_values[low] + (sorted_values[high] - sorted_values[low]) * (rank - low)


# -- timing baselines ----------------------------------------------------------------------


@dataclass(frozen=True)
class Baseline:
    """p50 and p95 of up to BASELINE_WINDOW earlier durations of one step."""

    n: int
    p50: float | None
    p95: float | None

    @classmethod
    def of(cls, samples: Iterable[float]) -> Baseline:
        values = sorted(samples)
        return cls(len(values), percentile(values, 50), percentile(values, 95))

    def is_slow(self, value: float | None) -> bool:
        return value is not None and self.n >= MIN_BASELINE and value > (self.p95 or 0.0)

    def verdict(self, value: float | None) -> str:
        if value is None:
            return ""
        if self.n < MIN_BASELINE:
            return f"not enough history ({self.n} earlier)"
        return "slower than p95" if self.is_slow(value) else "within p95"


def step_duration(release: ReleaseSummary, key: str) -> float | None:
    """A step's duration when it is a fair sample: the step passed and was measured in this release."""
    if key == TOTAL:
        return release.duration_s if release.outcome == "released" else None
    section = release.section(key)
    if section is None or section.outcome != "passed" or section.reused:
        return None
    return section.duration_s


def measured_duration(release: ReleaseSummary, key: str) -> float | None:
    """What a release measured for a step, passed or not (None when not run here, or reused)."""
    if key == TOTAL:
        return release.duration_s
    section = release.section(key)
    return None if section is None or section.reused else section.duration_s


def comparison(release: ReleaseSummary, key: str, baseline: Baseline) -> str:
    """The verdict of a step against its baseline, or why there is none."""
    if step_duration(release, key) is not None:
        return baseline.verdict(step_duration(release, key))
    if measured_duration(release, key) is None:
        return ""
    return "not compared: the release was not released" if key == TOTAL else "not compared: the step did not pass"


def baselines(earlier: Sequence[ReleaseSummary], keys: Iterable[str]) -> dict[str, Baseline]:
    """Per step key (and TOTAL), the baseline of `earlier` releases given newest first."""
    result = {}
    for key in keys:
        samples = []
        for release in earlier:
            value = step_duration(release, key)
            if value is not None:
                samples.append(value)
                if len(samples) == BASELINE_WINDOW:
                    break
        result[key] = Baseline.of(samples)
    return result


def slow_releases(releases: Iterable[ReleaseSummary]) -> set[str]:
    """Folders of released releases that took longer than the p95 of the ones before them.

    One pass per app and target, oldest first, with a sorted window of earlier totals.
    """
    flagged = set()
    for group in group_by_app_and_target(releases).values():
        window: deque[float] = deque()
        ordered: list[float] = []
        for release in sorted(group, key=lambda r: (r.started_at, r.release_id)):
            duration = step_duration(release, TOTAL)
            if duration is None:
                continue
            if len(ordered) >= MIN_BASELINE and duration > percentile(ordered, 95):
                flagged.add(release.folder)
            window.append(duration)
            bisect.insort(ordered, duration)
            if len(window) > BASELINE_WINDOW:
                ordered.pop(bisect.bisect_left(ordered, window.popleft()))
    return flagged


#: What the catalog gives a folder without a readable manifest: no target, no sections, no facts.
NOT_SEALED = ("unsealed", "unreadable")


def group_by_app_and_target(releases: Iterable[ReleaseSummary]) -> dict[tuple[str, str], list[ReleaseSummary]]:
    """Sealed releases by app and target; a folder not (yet) sealed says nothing to measure, and
    grouping it would make a phantom group with target "" (a dead runner's release is sealed as
    aborted by the next release, and counted then)."""
    groups: dict[tuple[str, str], list[ReleaseSummary]] = defaultdict(list)
    for release in releases:
        if release.outcome not in NOT_SEALED:
            groups[(release.app, release.target)].append(release)
    return dict(sorted(groups.items()))


# -- DORA ------------------------------------------------------------------------------------


@dataclass
class Dora:
    app: str
    target: str
    releases: int = 0
    deployments: int = 0
    successful_deployments: int = 0
    failed_deployments: int = 0
    change_failure_rate: float | None = None
    deployments_per_week: float | None = None
    deployments_last_30_days: int = 0
    restores: int = 0
    open_incidents: int = 0
    time_to_restore_median_s: float | None = None
    time_to_restore_max_s: float | None = None
    lead_times: int = 0
    lead_time_median_s: float | None = None
    first_release: str = ""
    last_release: str = ""
    restore_times_s: list[float] = field(default_factory=list, repr=False)

    def row(self) -> dict:
        data = asdict(self)
        data.pop("restore_times_s")
        return data


def is_deployment(release: ReleaseSummary) -> bool:
    """A release whose production deploy ran: one its gate refused changed nothing, and is none."""
    deploy = release.section("deploy_production")
    return deploy is not None and deploy.outcome != "refused"


def section_end(release: ReleaseSummary, key: str) -> datetime | None:
    section = release.section(key)
    start = parse_time(section.started_at) if section else None
    return start + timedelta(seconds=section.duration_s) if start else None


def production_verified_at(release: ReleaseSummary) -> datetime | None:
    """When production was known good: the end of its smoke test, else the release's end."""
    return section_end(release, "production_smoke") or parse_time(release.finished_at)


def incident_start(release: ReleaseSummary) -> datetime | None:
    deploy = release.section("deploy_production")
    return parse_time(deploy.started_at if deploy else "") or parse_time(release.started_at)


def restore_times(oldest_first: Sequence[ReleaseSummary]) -> tuple[list[float], int]:
    """Seconds to restore each failed deployment, and how many are still open."""
    times, open_incidents = [], 0
    for index, release in enumerate(oldest_first):
        if release.outcome not in FAILED_CHANGE or not is_deployment(release):
            continue
        start = incident_start(release)
        if release.outcome == "rolled back":
            restored = section_end(release, "rollback")
        else:
            later_good = next((r for r in oldest_first[index + 1 :] if r.outcome == "released"), None)
            restored = production_verified_at(later_good) if later_good else None
        if start and restored:
            times.append(max((restored - start).total_seconds(), 0.0))
        else:
            open_incidents += 1
    return times, open_incidents


def lead_times(releases: Iterable[ReleaseSummary]) -> list[float]:
    result = []
    for release in releases:
        if release.outcome != "released" or release.commit_dirty or not release.committed_at:
            continue
        committed, live = parse_time(release.committed_at), production_verified_at(release)
        if committed and live:
            result.append(max((live - committed).total_seconds(), 0.0))
    return result


def dora(app: str, target: str, releases: Sequence[ReleaseSummary], *, now: datetime) -> Dora:
    """The four keys for one app and target, from its releases (any order)."""
    oldest_first = sorted(releases, key=lambda r: (r.started_at, r.release_id))
    result = Dora(app, target, releases=len(oldest_first))
    if not oldest_first:
        return result
    result.first_release, result.last_release = oldest_first[0].started_at, oldest_first[-1].started_at
    deployments = [r for r in oldest_first if is_deployment(r)]
    successful = [r for r in deployments if r.outcome == "released"]
    result.deployments, result.successful_deployments = len(deployments), len(successful)
    result.failed_deployments = sum(r.outcome in FAILED_CHANGE for r in deployments)
    if deployments:
        result.change_failure_rate = round(result.failed_deployments / len(deployments), 4)
    first, last = parse_time(result.first_release), parse_time(result.last_release)
    if first and last:
        weeks = max((last - first).total_seconds() / (7 * 86400), 1.0)  # a rate over less than a week misleads
        result.deployments_per_week = round(len(successful) / weeks, 3)
    month_ago = now - timedelta(days=30)
    result.deployments_last_30_days = sum(1 for r in successful if (parse_time(r.started_at) or now) >= month_ago)
    result.restore_times_s, result.open_incidents = restore_times(oldest_first)
    result.restores = len(result.restore_times_s)
    if result.restore_times_s:
        result.time_to_restore_median_s = round(median(result.restore_times_s), 3)
        result.time_to_restore_max_s = round(max(result.restore_times_s), 3)
    leads = lead_times(successful)
    result.lead_times = len(leads)
    if leads:
        result.lead_time_median_s = round(median(leads), 3)
    return result


def dora_by_app(releases: Sequence[ReleaseSummary], *, now: datetime | None = None) -> list[Dora]:
    now = now or datetime.now(UTC)
    return [dora(app, target, group, now=now) for (app, target), group in group_by_app_and_target(releases).items()]


# -- metrics.json and metrics.csv -------------------------------------------------------------


def metrics_document(doras: Sequence[Dora], *, generated_at: str, releases: int) -> dict:
    return {
        "generated_at": generated_at,
        "releases": releases,
        "definitions": DEFINITIONS,
        "apps": [d.row() for d in doras],
    }


def metrics_csv(doras: Sequence[Dora]) -> str:
    out = io.StringIO()
    fields = list(Dora("", "").row())
    writer = csv.DictWriter(out, fieldnames=fields, lineterminator="\n")
    writer.writeheader()
    for d in doras:
        writer.writerow(d.row())
    return out.getvalue()


def write_metrics(root: Path, doras: Sequence[Dora], *, generated_at: str, releases: int) -> tuple[Path, Path]:
    json_path, csv_path = Path(root) / METRICS_JSON, Path(root) / METRICS_CSV
    write_json_atomic(json_path, metrics_document(doras, generated_at=generated_at, releases=releases))
    tmp = csv_path.with_suffix(".csv.tmp")
    tmp.write_text(metrics_csv(doras), encoding="utf-8")
    tmp.replace(csv_path)
    return json_path, csv_path
