"""The auditor's archive: the index and metrics the runner rebuilds after each release, the
catalog's incremental cache, the release report's comparisons, `runbook index`, `history`
and `plan`.

Real releases come from the session's archive_world (a good release, then a hostile one
that rolled back); the cache and the report's rarer records use manifests and records
made here.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest
from conftest import run_cli

from hotdash_release.archive.catalog import CACHE_FILE, load_catalog
from hotdash_release.archive.report import render_report
from hotdash_release.cli import main
from hotdash_release.config import load_config
from hotdash_release.plan import ALL_SECTIONS
from hotdash_release.runner import ReleaseOptions, ReleaseRecord, SectionRecord


def write_manifest(
    root: Path, release_id: str, *, app: str = "hotdash-production", outcome: str = "released", operator: str = "ana"
) -> Path:
    folder = root / app / release_id
    folder.mkdir(parents=True, exist_ok=True)
    stamp = f"{release_id[:4]}-{release_id[4:6]}-{release_id[6:8]}T{release_id[9:11]}:{release_id[11:13]}:00.000Z"
    manifest = {
        "release_id": release_id,
        "app": app,
        "outcome": outcome,
        "operator": operator,
        "target": "fly",
        "started_at": stamp,
        "finished_at": stamp.replace(":00.000Z", ":42.000Z"),
        "reason": "",
        "runbooks_commit": {"commit": None, "dirty": None},
        "sections": [
            {
                "key": "preflight",
                "title": "Pre-deployment checklist",
                "outcome": "passed",
                "started_at": stamp,
                "duration_s": 2.0,
            }
        ],
        "files": {"report.html": "0" * 64},
    }
    path = folder / "manifest.json"
    path.write_text(json.dumps(manifest), encoding="utf-8")
    return path


# -- the runner's hook and what it wrote -------------------------------------------------------


def test_the_runner_rebuilds_index_and_metrics_after_each_release(archive_world):
    assert "archive index:" in archive_world.good_run.stdout and "(2 releases)" in archive_world.hostile_run.stdout
    index = (archive_world.outputs / "index.html").read_text()
    for folder in (archive_world.good, archive_world.hostile):
        assert f'href="hotdash-production/{folder.name}/report.html"' in index
    assert index.index(archive_world.hostile.name) < index.index(archive_world.good.name), "newest first"
    metrics = json.loads((archive_world.outputs / "metrics.json").read_text())
    [local] = metrics["apps"]
    assert (local["app"], local["target"]) == ("hotdash-production", "local")
    assert local["deployments"] == 2 and local["failed_deployments"] == 1 and local["change_failure_rate"] == 0.5
    assert local["restores"] == 1 and local["time_to_restore_median_s"] > 0
    header = (archive_world.outputs / "metrics.csv").read_text().splitlines()[0]
    assert header.startswith("app,target,releases,deployments")


def test_report_leads_with_the_outcome_and_compares_with_the_last_good_release(archive_world):
    report = (archive_world.hostile / "report.html").read_text()
    headings = re.findall(r"<h2>(.*?)</h2>|<h2 ?[^>]*>(.*?)<", report)
    first = next(h for pair in headings for h in pair if h)
    assert first.startswith("Go/No-Go decision"), first
    assert report.index("ROLLED BACK") < report.index("Go/No-Go decision")
    assert f'href="../{archive_world.good.name}/report.html"' in report
    assert "Changes since the last good release" in report and "Compared with earlier releases" in report
    changed = re.search(r"<td>rehearsal defects</td><td>none</td><td>([^<]*)</td><td>changed</td>", report)
    assert changed and "production: wrong_api_key" in changed.group(1)
    assert "image, Step 4: Deploy to production" in report
    assert re.search(
        r"Step 5: Production smoke test: Shopify OAuth: install redirect</td><td>passed \(302\)</td>"
        r"<td>failed \(302\)</td><td>changed",
        report,
    )
    assert "No rollback was needed" not in report and "10-rollback.html" in report


def minimal_record(tmp_path: Path) -> ReleaseRecord:
    config = load_config()
    release_id = "20261125T120000Z-abcdef"
    folder = tmp_path / "hotdash-production" / release_id
    folder.mkdir(parents=True)
    record = ReleaseRecord(
        release_id,
        folder,
        config,
        ReleaseOptions(outputs=tmp_path),
        "local",
        "ana",
        "2026-11-25T12:00:00.000Z",
        {"target": "local"},
        finished_at="2026-11-25T12:00:30.000Z",
        outcome="released",
        reason="all sections passed (staging check skipped by ana: hotfix)",
    )
    for index, key in enumerate(("preflight", "staging_smoke"), start=1):
        skipped = key == "staging_smoke"
        record.sections.append(
            SectionRecord(
                index,
                ALL_SECTIONS[key],
                "skipped" if skipped else "passed",
                "2026-11-25T12:00:00.000Z",
                0.0 if skipped else 3.0,
                "" if skipped else f"{index:02d}-{key}.ipynb",
            )
        )
    return record


def test_report_renders_overrides_and_attestations_as_text(tmp_path):
    override = {"by": "ana", "reason": "hotfix <b>now</b>", "at": "2026-11-25T12:00:05Z"}
    results = {
        "staging_smoke": {
            "title": "Step 3: Quick staging smoke test",
            "outcome": "skipped",
            "override": override,
            "records": {},
        },
        "go_no_go": {
            "title": "Go/No-Go decision",
            "records": {
                "decision": {"decision": "GO", "explanation": "GO: all 7 blocking criteria met", "ok": True},
                "criteria": {
                    "rows": [
                        {
                            "criterion": "Core functionality working",
                            "measured": None,
                            "threshold": "= true",
                            "verdict": "overridden",
                            "source": "staging_smoke",
                            "override": "skipped by ana: hotfix <b>now</b>",
                        }
                    ]
                },
            },
        },
        "production_smoke": {
            "title": "Step 5: Production smoke test",
            "records": {},
            "attestations": [
                {
                    "step": "Check dashboard loads",
                    "by": "ceo@hotdash",
                    "at": "2026-11-25T12:01:00Z",
                    "statement": "<script>window.__pwned=1</script>looks right",
                }
            ],
        },
    }
    report = render_report(minimal_record(tmp_path), results)
    assert report.index("Override:") < report.index("Go/No-Go decision"), "an override is the first thing read"
    assert "OVERRIDDEN" in report and "skipped by ana: hotfix &lt;b&gt;now&lt;/b&gt;" in report
    assert "<h3>Overrides</h3>" in report and "2026-11-25T12:00:05Z" in report
    assert "ceo@hotdash" in report and "&lt;script&gt;window.__pwned=1&lt;/script&gt;looks right" in report
    assert "<script" not in report
    assert "not run" in report, "a skipped section has no notebook to link"


# -- the catalog's cache ----------------------------------------------------------------------------


def test_the_catalog_reads_only_new_or_changed_manifests(tmp_path):
    ids = [f"2026010{d}T1{h}0000Z-00000{h}" for d in range(1, 4) for h in range(3)]
    for release_id in ids:
        write_manifest(tmp_path, release_id)
    first = load_catalog(tmp_path)
    assert (first.parsed, first.cached) == (9, 0) and (tmp_path / CACHE_FILE).is_file()
    again = load_catalog(tmp_path)
    assert (again.parsed, again.cached) == (0, 9)
    assert again.releases == first.releases and again.releases[0].release_id == ids[-1]

    changed = write_manifest(tmp_path, ids[0], outcome="rolled back", operator="ben")
    os.utime(changed, ns=(1, 1))  # a rewrite within the same clock tick is still a change
    write_manifest(tmp_path, "20260105T100000Z-0000ff")
    third = load_catalog(tmp_path)
    assert (third.parsed, third.cached) == (2, 8)
    assert third.select(outcome="rolled back")[0].operator == "ben"


def test_unsealed_and_unreadable_releases_are_listed_not_hidden(tmp_path):
    write_manifest(tmp_path, "20260101T100000Z-000001")
    (tmp_path / "hotdash-production" / "20260102T100000Z-000002").mkdir()
    broken = write_manifest(tmp_path, "20260103T100000Z-000003")
    broken.write_text("{not json")
    (tmp_path / "hotdash-production" / "not-a-release").mkdir()
    (tmp_path / "interactive" / "2026-01-01").mkdir(parents=True)
    outcomes = {r.release_id: r.outcome for r in load_catalog(tmp_path).releases}
    assert outcomes == {
        "20260101T100000Z-000001": "released",
        "20260102T100000Z-000002": "unsealed",
        "20260103T100000Z-000003": "unreadable",
    }


# -- the CLI verbs ------------------------------------------------------------------------------------


def test_runbook_index_and_history_list_the_archive(archive_world, capsys):
    outputs = str(archive_world.outputs)
    done = run_cli("index", "--outputs", outputs)
    assert done.returncode == 0, done.stderr
    assert "2 releases (0 manifests read, 2 from the cache)" in done.stdout

    def history(*args: str) -> list[str]:
        assert main(["history", "--outputs", outputs, *args]) == 0
        return capsys.readouterr().out.splitlines()

    lines = history()
    assert lines[0].startswith("started (UTC)")
    assert archive_world.hostile.name in lines[1] and "rolled back" in lines[1] and "test-operator" in lines[1]
    assert lines[2].lstrip().startswith("why: ") and "rolled back" in lines[2]
    assert archive_world.good.name in lines[3] and lines[-1].startswith("2 of 2 releases")
    only = history("--outcome", "released", "--limit", "1")
    assert len(only) == 3 and archive_world.good.name in only[1]
    assert history("--app", "nope")[0].startswith("no releases match")
    with pytest.raises(SystemExit) as refused:
        main(["history", "--outputs", outputs, "--outcome", "great"])
    assert refused.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_runbook_plan_renders_what_a_release_would_do_and_deploys_nothing(rehearsal, tmp_path, capsys):
    out = tmp_path / "plan.html"
    done = run_cli("plan", "--config", str(rehearsal.config), "--out", str(out), "--break", "production:slow")
    assert done.returncode == 0, done.stderr
    assert "nothing was deployed" in done.stdout
    page = out.read_text()
    for expected in (
        "fly deploy --config fly.production.toml --app hotdash-production",
        "Go/No-Go criteria",
        "Webhook correctly signed accepted",
        "rehearsal_defect=slow",
        "runs the rollback runbook",
        "Configuration sha256",
        "Reviewer",
    ):
        assert expected in page, expected
    assert "<script" not in page
    platform = rehearsal.platform()
    assert platform.releases("hotdash-staging") == [] and platform.releases("hotdash-production") == []
    assert main(["plan", "--config", str(rehearsal.config), "--target", "fly", "--break", "production:slow"]) == 2
    assert "--target local" in capsys.readouterr().err


def test_history_shows_control_characters_of_a_record_as_escapes(tmp_path):
    """A manifest edited to hold terminal escape sequences cannot rewrite the operator's screen."""
    from hotdash_release.archive.index import history_lines

    write_manifest(tmp_path, "20261125T190512Z-a1b2c3", operator="ana\x1b[2J\x1b]0;owned\x07", outcome="released\r")
    lines = history_lines(load_catalog(tmp_path, write_cache=False))
    assert not any(c in "\n".join(lines) for c in "\x1b\x07\r")
    assert "ana\\x1b[2J\\x1b" in lines[1] and "released\\r" in lines[1]
