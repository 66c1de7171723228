"""DORA metrics and timing baselines, on release summaries made here with known answers."""

from __future__ import annotations

import csv
import json
from datetime import UTC, datetime, timedelta

import pytest

from hotdash_release.archive.catalog import ReleaseSummary, SectionTiming
from hotdash_release.archive.metrics import (
    MIN_BASELINE,
    TOTAL,
    Baseline,
    baselines,
    comparison,
    dora,
    dora_by_app,
    percentile,
    slow_releases,
    write_metrics,
)

T0 = datetime(2026, 1, 5, 12, 0, tzinfo=UTC)
PLAN_KEYS = (
    "preflight",
    "verify_secrets",
    "deploy_staging",
    "staging_smoke",
    "go_no_go",
    "deploy_production",
    "production_smoke",
    "notify",
)


def iso(moment: datetime) -> str:
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def release(
    n: int,
    outcome: str = "released",
    *,
    start: datetime | None = None,
    step_s: float = 10.0,
    target: str = "fly",
    app: str = "hotdash-production",
    keys=PLAN_KEYS,
    failed: str = "",
    rollback_s: float | None = None,
    committed_at: str | None = None,
    dirty: bool = False,
    slow_step: tuple[str, float] | None = None,
) -> ReleaseSummary:
    """A release whose steps take `step_s` each, one after another."""
    start = start or T0 + timedelta(hours=n)
    sections, clock = [], start
    for key in keys:
        duration = slow_step[1] if slow_step and slow_step[0] == key else step_s
        sections.append(SectionTiming(key, "failed" if key == failed else "passed", duration, iso(clock), False))
        clock += timedelta(seconds=duration)
    if rollback_s is not None:
        sections.append(
            SectionTiming("rollback", "passed" if outcome == "rolled back" else "failed", rollback_s, iso(clock), False)
        )
        clock += timedelta(seconds=rollback_s)
    return ReleaseSummary(
        app,
        f"{start:%Y%m%dT%H%M%SZ}-{n:06x}",
        outcome,
        iso(start),
        iso(clock),
        "ana",
        target,
        "",
        "c0ffee",
        dirty,
        committed_at,
        (clock - start).total_seconds(),
        tuple(sections),
        True,
    )


def test_percentile_interpolates_like_numpy():
    values = [1.0, 2.0, 3.0, 4.0, 10.0]
    assert percentile(values, 50) == 3.0
    assert percentile(values, 95) == pytest.approx(8.8)
    assert percentile([7.0], 95) == 7.0 and percentile([], 50) is None


def test_a_baseline_needs_enough_history_before_it_judges():
    assert Baseline.of([1.0] * (MIN_BASELINE - 1)).verdict(100.0).startswith("not enough history")
    base = Baseline.of([1.0, 1.1, 1.2, 1.3, 1.4, 1.5])
    assert base.n == 6 and base.is_slow(2.0) and base.verdict(2.0) == "slower than p95"
    assert base.verdict(1.2) == "within p95"


def test_baselines_use_passed_steps_of_earlier_releases_only():
    earlier = [release(i) for i in range(6)] + [
        release(9, "blocked", keys=PLAN_KEYS[:4], failed="staging_smoke", slow_step=("staging_smoke", 999.0))
    ]
    stats = baselines(earlier, ["staging_smoke", TOTAL])
    assert stats["staging_smoke"].n == 6 and stats["staging_smoke"].p95 == 10.0, "a failed step is no sample"
    assert stats[TOTAL].n == 6, "only released releases measure the whole"


def test_a_failed_step_is_measured_but_not_compared():
    this = release(1, "rolled back", failed="production_smoke", rollback_s=5)
    stats = baselines([release(i) for i in range(6)], ["production_smoke", TOTAL])
    assert comparison(this, "production_smoke", stats["production_smoke"]) == "not compared: the step did not pass"
    assert comparison(this, TOTAL, stats[TOTAL]) == "not compared: the release was not released"


def test_slow_releases_are_flagged_against_the_releases_before_them():
    history = [release(i) for i in range(8)] + [release(8, slow_step=("deploy_production", 60.0)), release(9)]
    flagged = slow_releases(history)
    assert flagged == {history[8].folder}
    assert not slow_releases(history[:3] + [release(3, slow_step=("notify", 600.0))]), "too little history to judge"


def test_change_failure_rate_counts_production_changes_only():
    releases = [
        release(0),
        release(1, "blocked", keys=PLAN_KEYS[:5], failed="go_no_go"),
        release(2, "rolled back", keys=PLAN_KEYS[:7], failed="production_smoke", rollback_s=30),
        release(3),
        release(4),
    ]
    metrics = dora("hotdash-production", "fly", releases, now=T0 + timedelta(days=2))
    assert metrics.deployments == 4 and metrics.successful_deployments == 3 and metrics.failed_deployments == 1
    assert metrics.change_failure_rate == 0.25
    assert metrics.deployments_last_30_days == 3
    assert metrics.deployments_per_week == 3.0, "a rate over less than a week is per the week"


def test_time_to_restore_runs_from_the_production_deploy_to_the_end_of_the_rollback():
    failed = release(1, "rolled back", keys=PLAN_KEYS[:7], failed="production_smoke", rollback_s=30)
    metrics = dora("hotdash-production", "fly", [release(0), failed], now=T0)
    # deploy_production (10 s) + production_smoke (10 s) + rollback (30 s)
    assert metrics.restores == 1 and metrics.time_to_restore_median_s == 50.0


def test_a_failed_rollback_is_restored_by_the_next_good_release_or_stays_open():
    broken = release(1, "rollback failed", keys=PLAN_KEYS[:7], failed="production_smoke", rollback_s=5)
    still_open = dora("hotdash-production", "fly", [release(0), broken], now=T0)
    assert still_open.restores == 0 and still_open.open_incidents == 1
    fixed = release(2, start=T0 + timedelta(hours=3))
    restored = dora("hotdash-production", "fly", [release(0), broken, fixed], now=T0)
    # broken's production deploy began at T0+1h+50s; the fix's production smoke test ended at T0+3h+70s.
    assert restored.restores == 1 and restored.time_to_restore_median_s == pytest.approx(2 * 3600 + 20)


def test_lead_time_needs_a_known_commit_time_and_a_clean_tree():
    committed = iso(T0 - timedelta(hours=2))
    releases = [release(0, committed_at=committed), release(1, committed_at=committed, dirty=True), release(2)]
    metrics = dora("hotdash-production", "fly", releases, now=T0)
    assert metrics.lead_times == 1
    assert metrics.lead_time_median_s == 2 * 3600 + 70.0  # to the end of the production smoke test


def test_rehearsals_and_fly_deployments_are_never_mixed(tmp_path):
    releases = [release(0), release(1, target="local"), release(2, app="hotdash-eu")]
    groups = {(d.app, d.target): d for d in dora_by_app(releases, now=T0)}
    assert set(groups) == {("hotdash-production", "fly"), ("hotdash-production", "local"), ("hotdash-eu", "fly")}
    json_path, csv_path = write_metrics(tmp_path, list(groups.values()), generated_at=iso(T0), releases=3)
    document = json.loads(json_path.read_text())
    assert len(document["apps"]) == 3 and "change_failure_rate" in document["definitions"]
    rows = list(csv.DictReader(csv_path.open()))
    assert [r["target"] for r in rows if r["app"] == "hotdash-production"] == ["fly", "local"]
    assert rows[0]["deployments"] == "1"


def test_a_refused_production_deploy_is_no_deployment():
    """The archive index counted a production deploy its gate refused as a deployment (issue 24)."""
    from hotdash_release.archive.catalog import SectionTiming
    from hotdash_release.archive.metrics import is_deployment

    def with_deploy(outcome: str) -> ReleaseSummary:
        deploy = SectionTiming("deploy_production", outcome, 0.1, "2026-12-05T10:00:00.000Z", False)
        return ReleaseSummary(
            "hotdash-production",
            "20261205T100000Z-abcdef",
            "blocked",
            "",
            "",
            "ops",
            "local",
            "",
            None,
            None,
            None,
            None,
            (deploy,),
            True,
        )

    assert not is_deployment(with_deploy("refused"))
    assert is_deployment(with_deploy("failed")) and is_deployment(with_deploy("passed"))
