"""The release report: the one page an auditor reads first (report.html in the release folder).

It leads with the outcome and the go/no-go explanation (every criterion with its measured
value, threshold and verdict; overrides with who gave them and why), then the timing
table (planned vs actual), this release against the p50 and p95 of earlier ones, what
changed since the last good release, smoke outcomes with evidence, deployments,
rollbacks, attestations, the notification, and links to each section's executed notebook.

Self-contained like every archive page (htmlpage.py): inline style, no script, no
network. Every value is escaped: responses of the app under test are shown as inert text.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..plan import ALL_SECTIONS
from ..record.events import decisions
from ..results import read_all_results
from .catalog import ReleaseSummary, SectionTiming, load_catalog, seconds_between
from .charts import line_chart
from .databases import database_section
from .htmlpage import Html, badge, facts, link, page, seconds, table, text
from .metrics import TOTAL, baselines, comparison, measured_duration, step_duration
from .signing import NAMESPACE, allowed_signers_line

SMOKE_SECTIONS = ("staging_smoke", "production_smoke")
DEPLOY_SECTIONS = ("deploy_staging", "deploy_production", "rollback")
#: Parameters that differ in every release by construction: not a change worth showing.
ALWAYS_DIFFERENT = ("release_dir",)


@dataclass
class LastGood:
    """The newest earlier release of the same app and target that was released, as archived."""

    summary: ReleaseSummary
    manifest: dict
    results: dict[str, dict]


@dataclass
class History:
    """Earlier releases of the same app and target, newest first."""

    earlier: list[ReleaseSummary] = field(default_factory=list)
    last_good: LastGood | None = None


def write_report(record, results: dict[str, dict]) -> Path:
    path = record.release_dir / "report.html"
    path.write_text(render_report(record, results, history_for(record)), encoding="utf-8")
    return path


def history_for(record) -> History:
    """Read the archive around this release; a missing or odd archive gives an empty history."""
    root = record.release_dir.parent.parent
    app = record.config.environment("production").app
    try:
        catalog = load_catalog(root)
    except Exception:  # an odd archive elsewhere must not cost this release its report
        return History()
    earlier = [
        r
        for r in catalog.select(app=app, before=record.started_at)
        if r.target == record.target_name and r.release_id != record.release_id
    ]
    good = next((r for r in earlier if r.outcome == "released"), None)
    return History(earlier, load_last_good(root, good) if good else None)


def load_last_good(root: Path, summary: ReleaseSummary) -> LastGood | None:
    folder = root / summary.folder
    try:
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        return LastGood(summary, manifest, read_all_results(folder))
    except (OSError, ValueError):
        return None


def render_report(record, results: dict[str, dict], history: History | None = None) -> str:
    history = history or History()
    this = summary_of(record)
    title = f"HotDash release {record.release_id}: {record.outcome}"
    body = [
        f"<nav>{link('../../index.html', 'all releases (archive index)')}</nav>",
        f"<h1>HotDash release {text(record.release_id)} {badge(record.outcome)}</h1>",
        f"<p class=lead><b>{text(record.reason)}</b></p>",
        watched_release_line(record),
        lead_callouts(results, this, history),
        go_no_go_section(results),
        decision_timeline(record.release_dir, results),
        approvals_section(results),
        facts_section(record),
        timing_section(record),
        history_section(this, history),
        changes_section(record, results, this, history.last_good),
        smoke_section(results),
        deployments_section(results),
        database_section(results),
        rollback_section(results.get("rollback")),
        attestations_section(results),
        notification_section(results.get("notify")),
        watch_section(results.get("watch")),
        sections_section(record),
        checking_section(record),
    ]
    return page(title, body)


def watched_release_line(record) -> str:
    """A later watch (`runbook watch`) names the sealed release it watched, and links to its report.
    That release's own report is sealed and cannot link back: the archive index lists both."""
    watched = getattr(getattr(record, "options", None), "watch_of", None)
    if not watched:
        return ""
    return (
        f"<p>A later watch of release {link(f'../{watched}/report.html', watched)}, sealed before this "
        "record; this record runs the watch runbook alone (and the rollback runbook on a breach).</p>"
    )


def summary_of(record) -> ReleaseSummary:
    """This release in the catalog's terms, so it compares with earlier ones the same way."""
    sections = tuple(
        SectionTiming(s.section.key, s.outcome, s.duration_s, s.started_at, bool(getattr(s, "reused_from", None)))
        for s in record.sections
    )
    return ReleaseSummary(
        record.config.environment("production").app,
        record.release_id,
        record.outcome,
        record.started_at,
        record.finished_at,
        record.operator,
        record.target_name,
        record.reason,
        None,
        None,
        None,
        seconds_between(record.started_at, record.finished_at),
        sections,
        True,
    )


# -- the lead ---------------------------------------------------------------------------------


def lead_callouts(results: dict[str, dict], this: ReleaseSummary, history: History) -> str:
    """What an auditor must not miss, before any table: overrides, and steps slower than usual."""
    parts = []
    for override in overrides(results):
        parts.append(
            f'<div class="callout warn"><b>Override:</b> {text(override["section"])} skipped by '
            f"{text(override['by'])} at {text(override['at'])}: {text(override['reason'])}</div>"
        )
    slow = slow_steps(this, history)
    if slow:
        parts.append('<div class="callout warn"><b>Slower than usual:</b> ' + text("; ".join(slow)) + "</div>")
    return "\n".join(parts)


def overrides(results: dict[str, dict]) -> list[dict]:
    """Every section a person chose not to run, with who and why (results' "override")."""
    found = []
    for key, result in results.items():
        override = result.get("override")
        if isinstance(override, dict):
            found.append(
                {
                    "section": result.get("title") or key,
                    "by": override.get("by", "?"),
                    "reason": override.get("reason", ""),
                    "at": override.get("at", ""),
                }
            )
    return found


def slow_steps(this: ReleaseSummary, history: History) -> list[str]:
    keys = [s.key for s in this.sections] + [TOTAL]
    stats = baselines(history.earlier, keys)
    slow = []
    for key in keys:
        value = step_duration(this, key)
        if stats[key].is_slow(value):
            slow.append(
                f"{_step_title(key)} took {seconds(value)}, p95 of {stats[key].n} earlier releases "
                f"{seconds(stats[key].p95)}"
            )
    return slow


def _step_title(key: str) -> str:
    return ALL_SECTIONS[key].title if key in ALL_SECTIONS else "Whole release"


# -- go/no-go ---------------------------------------------------------------------------------


def go_no_go_section(results: dict[str, dict]) -> str:
    result = results.get("go_no_go")
    if not result:
        return "<h2>Go/No-Go decision</h2><p class=muted>Not reached: the release stopped earlier.</p>"
    records = result.get("records", {})
    decision = records.get("decision", {})
    rows = [
        (
            c.get("criterion"),
            _shown(c.get("measured")),
            c.get("threshold"),
            badge(c.get("verdict", "?")),
            c.get("source"),
            c.get("override", ""),
        )
        for c in records.get("criteria", {}).get("rows", [])
    ]
    # The headline is the section's outcome as recorded, never a GO its gate did not pass.
    outcome = result.get("outcome") or "not run"
    verdict = "go" if decision.get("ok") and outcome == "passed" else "nogo"
    gate = (
        ""
        if outcome == "passed"
        else f"<p><b>The go/no-go section did not pass</b> {badge(outcome)}: the decision shown did not open "
        "the production gate.</p>"
    )
    return (
        f"<h2>Go/No-Go decision <span class='badge {verdict}'>{text(decision.get('decision', '?'))}</span></h2>"
        + gate
        + f"<p>{text(decision.get('explanation', ''))}</p>"
        + table(("Criterion", "Measured", "Threshold", "Verdict", "Measured in", "Override"), rows)
        + overrides_table(results)
    )


def decision_timeline(folder: Path, results: dict[str, dict]) -> str:
    """Every go/no-go decision of the release, oldest first, from its event log: a decision
    changed after production was deployed is shown as such, next to the GO the deploy ran under."""
    taken = decisions(folder)
    if not taken:
        return ""
    ran_under = ((results.get("deploy_production") or {}).get("records") or {}).get("ran_under_decision") or {}
    deployed_at = ran_under.get("at") or ""
    rows = [
        (
            d.get("at"),
            d.get("by"),
            badge(d.get("decision", "?")),
            d.get("explanation", ""),
            "the production deploy ran under this decision"
            if deployed_at and d.get("at") == deployed_at
            else ("recorded after production was deployed" if deployed_at and d.get("at", "") > deployed_at else ""),
        )
        for d in taken
    ]
    return "<h2>Decision timeline</h2>" + table(("When", "Who", "Decision", "Why", ""), rows)


def approvals_section(results: dict[str, dict]) -> str:
    """Who approved what shipped ([approval]): each accepted approval with its key, and each one
    the deploy did not count, with why. Nothing when the release needed none."""
    records = (results.get("deploy_production") or {}).get("records") or {}
    given = records.get("approvals")
    requested = ((results.get("go_no_go") or {}).get("records") or {}).get("approval_request")
    if not given and not requested:
        return ""
    if not given:
        return (
            "<h2>Approvals</h2><p>Requested at the GO (digest "
            f"{text(str(requested.get('digest')))}), never checked: the production deploy did not get that far.</p>"
        )
    rows = [
        (a.get("approver"), a.get("source"), a.get("fingerprint") or "", a.get("at"), a.get("reason"))
        for a in given.get("accepted") or []
    ]
    verdict = badge("passed" if given.get("ok") else "refused")
    return (
        f"<h2>Approvals {verdict}</h2>"
        f"<p>{len(rows)} of {int(given.get('required') or 0)} required approvals of digest "
        f"{text(str(given.get('digest')))} (what shipped: image, configuration, runbooks, decision and "
        "measurements); the release's operator "
        f"{'may not' if given.get('prevent_self_approval', True) else 'may'} approve it.</p>"
        + table(("Approver", "How", "Key", "At", "Reason"), rows)
        + (
            "<h3>Not counted</h3><ul>" + "".join(f"<li>{text(r)}</li>" for r in given.get("rejected") or []) + "</ul>"
            if given.get("rejected")
            else ""
        )
    )


def overrides_table(results: dict[str, dict]) -> str:
    found = overrides(results)
    if not found:
        return ""
    return "<h3>Overrides</h3>" + table(
        ("Section", "Given by", "At", "Reason"), [(o["section"], o["by"], o["at"], o["reason"]) for o in found]
    )


def _shown(value: Any) -> str:
    if isinstance(value, bool):
        return str(value).lower()
    return "not measured" if value is None else str(value)


# -- facts and timing ---------------------------------------------------------------------------


def facts_section(record) -> str:
    rows = [
        ("Application", record.config.environment("production").app),
        ("Target", record.target_name),
        ("Operator", record.operator),
        # --reason as the operator gave it (text: escaped like every value of a record).
        ("Reason given", getattr(getattr(record, "options", None), "reason", "") or "none given"),
        ("Started", record.started_at),
        ("Finished", record.finished_at),
        ("Rehearsal defects", ", ".join(f"{k}: {v}" for k, v in record.options.defects.items()) or "none"),
        ("Configuration", _config_shown(record.config.path)),
        ("Runbooks commit", _commit_text()),
    ]
    kernels = getattr(getattr(record, "kernels", None), "mode", None)
    if kernels:
        rows.append(("Kernels", f"a new one per section, {kernels}"))
    if getattr(record, "resumed_from", None):
        rows.append(("Resumed from", link(f"../{record.resumed_from}/report.html", record.resumed_from)))
    rows.append(("Integrity", "sha256 of every file, and of the previous release's manifest, in manifest.json"))
    return "<h2>Release</h2>" + facts(rows)


def _config_shown(path: Path) -> str:
    """The configuration as an auditor finds it: relative to the repository (nothing about the
    runner's machine); a file outside the repository keeps its absolute path."""
    from ..paths import PROJECT_ROOT

    try:
        return Path(path).resolve().relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return str(path)


def _commit_text() -> str:
    from ..paths import RUNBOOKS_DIR
    from .provenance import git_commit

    try:
        commit = git_commit(RUNBOOKS_DIR)
    except OSError:  # no git on this machine
        return "unknown (git not available)"
    if not commit.get("commit"):
        return "not in git"
    return commit["commit"] + (" with uncommitted changes to runbooks/ or lib/" if commit.get("dirty") else "")


def timing_section(record) -> str:
    rows, planned_total, actual_total = [], 0.0, 0.0
    for s in record.sections:
        budget = s.budget_minutes(record.config)
        actual_total += s.duration_s
        planned_total += budget or 0.0
        over = budget is not None and s.duration_s > budget * 60
        within = Html('<span class="over">over budget</span>') if over else ("within" if budget else "not budgeted")
        rows.append(
            (
                s.section.title,
                "" if budget is None else f"{budget:g} min",
                f"{s.duration_s:.1f} s",
                f"{planned_total:g} min",
                f"{actual_total:.1f} s",
                within,
                badge(s.outcome),
            )
        )
    return (
        "<h2>Timing: planned vs actual</h2>"
        "<p class=muted>Planned minutes from the plan's Deployment Timeline; actual is the wall time of each "
        "section's papermill run, kernel start included.</p>"
        + table(
            ("Step", "Planned", "Actual", "Cumulative planned", "Cumulative actual", "Budget", "Outcome"),
            rows,
            numeric=(1, 2, 3, 4),
        )
    )


def history_section(this: ReleaseSummary, history: History) -> str:
    keys = [s.key for s in this.sections] + [TOTAL]
    stats = baselines(history.earlier, keys)
    rows = []
    for key in keys:
        base, verdict = stats[key], comparison(this, key, stats[key])
        slow = base.is_slow(step_duration(this, key))
        rows.append(
            (
                _step_title(key),
                seconds(measured_duration(this, key)) or "not measured",
                seconds(base.p50),
                seconds(base.p95),
                base.n,
                Html(f'<span class="slow">{verdict}</span>') if slow else verdict,
            )
        )
    return (
        "<h2>Compared with earlier releases</h2>"
        f"<p class=muted>{len(history.earlier)} earlier releases of this app on this target in the archive; "
        "each step against the p50 and p95 of its passed runs in up to 100 of them.</p>"
        + table(
            ("Step", "This release", "p50 earlier", "p95 earlier", "Earlier samples", "Verdict"),
            rows,
            numeric=(1, 2, 3, 4),
        )
    )


# -- changes since the last good release -----------------------------------------------------------


def changes_section(record, results: dict[str, dict], this: ReleaseSummary, last_good: LastGood | None) -> str:
    if last_good is None:
        return (
            "<h2>Changes since the last good release</h2>"
            "<p class=muted>No earlier release of this app on this target was released.</p>"
        )
    good_id = last_good.summary.release_id
    facts_compared = (
        parameter_changes(record, last_good.manifest)
        + image_changes(results, last_good.results)
        + smoke_changes(results, last_good.results)
    )
    changed = [r for r in facts_compared if r[3] == "changed"]
    intro = (
        f"<p>Against {link(f'../{good_id}/report.html', good_id)} (released {text(last_good.summary.started_at)}): "
        f"{len(changed)} of {len(facts_compared)} parameters, images and smoke outcomes differ"
        + ("; the others are the same." if changed else ".")
        + "</p>"
    )
    # Durations always differ a little: all of them are shown, with the change.
    rows = changed + timing_changes(this, last_good.summary)
    return (
        "<h2>Changes since the last good release</h2>"
        + intro
        + table(("What", "Last good release", "This release", "Change"), rows)
    )


def _row(what: str, before: Any, after: Any, change: str = "") -> tuple:
    before, after = _shown(before), _shown(after)
    return (what, before, after, change or ("same" if before == after else "changed"))


def parameter_changes(record, manifest: dict) -> list[tuple]:
    rows = []
    before = manifest.get("parameters") or {}
    for name in sorted(set(before) | set(record.parameters)):
        if name not in ALWAYS_DIFFERENT:
            rows.append(_row(f"parameter {name}", before.get(name), record.parameters.get(name)))
    rows.append(
        _row("rehearsal defects", _defects(manifest.get("rehearsal_defects")), _defects(record.options.defects))
    )
    inputs = getattr(record, "inputs", None) or {}
    for name in sorted(set(inputs) | set(manifest.get("inputs") or {})):
        rows.append(
            _row(name.replace("_sha256", " (sha256)"), (manifest.get("inputs") or {}).get(name), inputs.get(name))
        )
    return rows


def _defects(defects: dict | None) -> str:
    return ", ".join(f"{k}: {v}" for k, v in sorted((defects or {}).items())) or "none"


def image_changes(results: dict[str, dict], before: dict[str, dict]) -> list[tuple]:
    rows = []
    for key in ("deploy_staging", "deploy_production"):
        old, new = _deployed_image(before.get(key)), _deployed_image(results.get(key))
        if old or new:
            rows.append(_row(f"image, {_step_title(key)}", old or "not deployed", new or "not deployed"))
    return rows


def _deployed_image(result: dict | None) -> str:
    return ((result or {}).get("records", {}).get("deployment") or {}).get("image_ref") or ""


def timing_changes(this: ReleaseSummary, good: ReleaseSummary) -> list[tuple]:
    rows = []
    for key in [s.key for s in this.sections] + [TOTAL]:
        old, new = step_duration(good, key), step_duration(this, key)
        if old is None and new is None:
            continue
        change = f"{new - old:+.1f} s ({(new - old) / old:+.0%})" if old and new is not None else "changed"
        rows.append(
            (f"duration, {_step_title(key)}", seconds(old) or "not measured", seconds(new) or "not measured", change)
        )
    return rows


def smoke_changes(results: dict[str, dict], before: dict[str, dict]) -> list[tuple]:
    rows = []
    for key in SMOKE_SECTIONS:
        old, new = _smoke_outcomes(before.get(key)), _smoke_outcomes(results.get(key))
        for name in dict.fromkeys([*old, *new]):
            rows.append(_row(f"{_step_title(key)}: {name}", old.get(name, "not run"), new.get(name, "not run")))
    return rows


def _smoke_outcomes(result: dict | None) -> dict[str, str]:
    rows = ((result or {}).get("records", {}).get("smoke") or {}).get("rows", [])
    return {r.get("name", "?"): f"{'passed' if r.get('ok') else 'failed'} ({r.get('status_code')})" for r in rows}


# -- evidence -------------------------------------------------------------------------------------


def smoke_section(results: dict[str, dict]) -> str:
    parts = ["<h2>Smoke tests</h2>"]
    for key in SMOKE_SECTIONS:
        result = results.get(key)
        if not result:
            continue
        if result.get("outcome") == "skipped":
            parts.append(f"<h3>{text(result.get('title', key))}</h3><p>Skipped (see the override above).</p>")
            continue
        smoke = result.get("records", {}).get("smoke", {})
        rows = [smoke_row(r) for r in smoke.get("rows", [])]
        parts.append(
            f"<h3>{text(result.get('title', key))} ({text(result.get('app', ''))})</h3>"
            + table(
                ("Check", "Outcome", "Request", "Status", "Latency", "Evidence", "Detail"),
                rows,
                numeric=(3, 4),
                css="wide",
            )
            + supabase_line(result.get("records", {}).get("supabase"))
        )
    if len(parts) == 1:
        parts.append("<p class=muted>No smoke test ran.</p>")
    return "\n".join(parts)


def supabase_line(supabase: dict | None) -> str:
    """The smoke test's "Database connected (Supabase)" probe, as recorded (checks.supabase)."""
    if not isinstance(supabase, dict):
        return "<p class=muted>Database connected (Supabase): not checked.</p>"
    latency = supabase.get("latency_ms")
    measured = ", ".join(
        part
        for part in (
            f"HTTP {supabase['status_code']}" if supabase.get("status_code") is not None else "",
            f"{latency:.0f} ms" if isinstance(latency, (int, float)) else "",
            f"GoTrue {supabase['version']}" if supabase.get("version") else "",
        )
        if part
    )
    return (
        f"<p>Database connected (Supabase) {badge('passed' if supabase.get('ok') else 'failed')} "
        f"{text(measured)}{': ' if measured and supabase.get('detail') else ''}{text(supabase.get('detail', ''))}</p>"
    )


def smoke_row(row: dict) -> tuple:
    """One check as recorded (checks.SmokeResult); a section that crashed may have left less."""
    latency = row.get("latency_ms")
    return (
        row.get("name"),
        badge("passed" if row.get("ok") else "failed"),
        f"{row.get('method', '')} {row.get('path', '')}",
        row.get("status_code"),
        f"{latency:.0f} ms" if isinstance(latency, (int, float)) else "",
        row.get("evidence"),
        row.get("detail"),
    )


def deployments_section(results: dict[str, dict]) -> str:
    rows = []
    for key in DEPLOY_SECTIONS:
        result = results.get(key)
        if not result:
            continue
        records = result.get("records", {})
        deploy = records.get("deployment") or records.get("rollback") or records.get("preconditions") or {}
        health = records.get("health") or {}
        rows.append(
            (
                result.get("title", key),
                deploy.get("version") or deploy.get("new_version"),
                deploy.get("image_ref") or deploy.get("to_image"),
                # One word per outcome: a refused deploy is "refused" here as in every other table.
                badge("refused" if result.get("outcome") == "refused" else "passed" if deploy.get("ok") else "failed"),
                badge("passed" if health.get("ok") else "failed") if health else "not checked",
                health.get("attempts"),
                health.get("detail") or deploy.get("detail"),
            )
        )
    if not rows:
        return "<h2>Deployments and health</h2><p class=muted>Nothing was deployed.</p>"
    return "<h2>Deployments and health</h2>" + table(
        ("Step", "Version", "Image", "Deploy", "Health", "Health attempts", "Detail"), rows
    )


def rollback_section(result: dict | None) -> str:
    if not result:
        return "<h2>Rollback</h2><p class=muted>No rollback was needed.</p>"
    records = result.get("records", {})
    rollback = list(records.get("rollback", {}).items())
    # What verified the rollback besides /health: the smoke test and the secrets' digests.
    if "smoke" in records:
        rollback.append(("smoke test", "passed" if records["smoke"].get("ok") else "failed"))
    if "secrets_since_last_good" in records:
        rollback.append(("secrets", records["secrets_since_last_good"].get("title", "")))
    rollback += [("failure", line) for line in result.get("failures") or []]
    return f"<h2>Rollback {badge(result.get('outcome', '?'))}</h2>" + facts(rollback)


def attestations_section(results: dict[str, dict]) -> str:
    """What people attested (results' "attestations" lists), whatever fields they recorded."""
    rows = [
        {"section": result.get("title") or key, **item}
        for key, result in results.items()
        for item in result.get("attestations") or []
        if isinstance(item, dict)
    ]
    if not rows:
        return (
            "<h2>Attestations</h2><p class=muted>None recorded: the manual steps of the smoke tests are "
            "listed with their headless evidence in the smoke test notebooks.</p>"
        )
    columns = list(dict.fromkeys(name for row in rows for name in row))
    return "<h2>Attestations</h2>" + table(
        [c.replace("_", " ") for c in columns], [[_shown(row.get(c, "")) for c in columns] for row in rows]
    )


def notification_section(result: dict | None) -> str:
    if not result:
        return "<h2>Notification</h2><p class=muted>Not sent: the release did not reach step 6.</p>"
    note = result.get("records", {}).get("notification", {})
    if not note:
        why = "; ".join(result.get("failures") or []) or result.get("outcome", "")
        return f"<h2>Notification {badge(result.get('outcome', '?'))}</h2><p>Not sent: {text(why)}</p>"
    return (
        f"<h2>Notification to {text(note.get('recipient', ''))} {badge('passed' if note.get('ok') else 'failed')}</h2>"
        f"<p>{text(note.get('channel', ''))}: {text(note.get('detail', ''))}</p>"
        f"<pre>{text(note.get('message', ''))}</pre>"
    )


def watch_section(result: dict | None) -> str:
    """The post-deployment watch: its figures, what breached and when, what was done, a chart of
    latency and availability over the window, and the CEO's issues opened since the release."""
    head = "<h2>Post-deployment watch</h2>"
    records = (result or {}).get("records", {})
    watch = records.get("watch")
    if not watch:
        return head + "<p class=muted>Not run: the release did not reach the watch.</p>"
    settings = watch.get("settings") or {}
    figures = [
        (
            "Window",
            f"{seconds(watch.get('watched_s'))} of {seconds(watch.get('planned_s'))}"
            + (f", ended early ({watch['ended_early']})" if watch.get("ended_early") else ""),
        ),
        ("Measurements", f"{len(watch.get('measurements') or [])}, every {settings.get('interval_s')} s"),
        ("Availability", "n/a" if watch.get("availability_pct") is None else f"{watch['availability_pct']:g}%"),
        (
            "Latency p50 / p95 / p99",
            " / ".join("n/a" if watch.get(k) is None else f"{watch[k]:g} ms" for k in ("p50_ms", "p95_ms", "p99_ms")),
        ),
        ("Error lines", str(watch.get("error_lines"))),
        ("Machines down (most at once)", str(watch.get("machines_down"))),
        ("Critical health checks (most at once)", str(watch.get("critical_checks", "not recorded"))),
        ("Machine restarts", str(watch.get("restarts", "not recorded"))),
        ("On a breach", str(settings.get("on_breach", ""))),
    ]
    rows = [(b.get("at"), b.get("elapsed_s"), b.get("what")) for b in watch.get("breaches") or []]
    breaches = (
        table(("at", "seconds in", "what breached"), rows) if rows else "<p>No breach: every condition was met.</p>"
    )
    measurements = watch.get("measurements") or []
    chart = line_chart(
        {
            "latency (ms)": [m.get("latency_ms") if m.get("health_ok") else None for m in measurements],
            "availability so far (%)": [
                round(100 * sum(1 for x in measurements[: i + 1] if x.get("health_ok")) / (i + 1), 1)
                for i in range(len(measurements))
            ],
        },
        [f"+{m.get('elapsed_s', 0):g}s" for m in measurements],
        title="Latency and availability over the window",
        unit="",
    )
    samples = watch.get("error_samples") or []
    feedback = records.get("feedback") or {}
    issues = feedback.get("issues") or []
    feedback_html = (
        table(
            ("number", "title", "author", "labels", "created"),
            [(i.get("number"), i.get("title"), i.get("author"), i.get("labels"), i.get("created_at")) for i in issues],
        )
        if issues
        else f"<p class=muted>{text(feedback.get('detail') or 'No issues opened since the release.')}</p>"
    )
    return (
        f"{head}<p>{badge('passed' if watch.get('ok') else 'failed')} {text(watch.get('summary', ''))}</p>"
        + facts(figures)
        + breaches
        + chart
        + ("<h3>Error lines seen</h3><pre>" + text("\n".join(samples)) + "</pre>" if samples else "")
        + "<h3>CEO-reported issues (GitHub)</h3>"
        + feedback_html
    )


def sections_section(record) -> str:
    rows = []
    for s in record.sections:
        rows.append((s.index, s.section.title, badge(s.outcome), _section_links(s), "; ".join(s.failures) or s.error))
    return "<h2>Sections</h2>" + table(("#", "Section", "Outcome", "Record", "Why it failed"), rows)


def checking_section(record) -> str:
    """The footer: how an auditor checks this folder with standard tools, without this one."""
    signer = getattr(record, "signer", None)
    if signer is None:
        return ""
    app = record.config.environment("production").app
    commands = "\n".join(
        (
            "sha256sum -c SHA256SUMS",
            "openssl pkeyutl -verify -pubin -inkey KEY.pem -rawin -in SHA256SUMS -sigfile SHA256SUMS.sig",
            f"echo '{allowed_signers_line(signer.public_key)}' > allowed_signers",
            f"ssh-keygen -Y verify -f allowed_signers -I hotdash -n {NAMESPACE} -s SHA256SUMS.sshsig < SHA256SUMS",
        )
    )
    where = (
        "on the machine that ran this rehearsal, ~/.config/hotdash/rehearsal-signing-key.pub.pem"
        if signer.source == "rehearsal"
        else "the repository's keys/trusted.toml (PEM files in keys/)"
    )
    return (
        "<h2>Checking this release</h2>"
        f"<p>Signed with key {text(signer.key_id)}. In this folder, with standard tools (KEY.pem: the public "
        f"key with that id, from {text(where)}; compare the key below with it, not with this page):</p>"
        f"<pre>{text(commands)}</pre>"
        f"<p>With this tool: <code>runbook verify --expect-head {text(app)}:SHA256</code>, SHA256 being the "
        "chain head printed after the release (and in the workflow's job summary).</p>"
    )


def _section_links(s) -> Html:
    if not s.notebook:
        return Html("not run")
    page_link = link(Path(s.notebook).with_suffix(".html").name, "executed notebook")
    links = f"{page_link} · {link(s.notebook, '.ipynb')}"
    reused = getattr(s, "reused_from", None)
    if reused:
        links += f" · reused from {link(f'../{reused}/report.html', reused)}"
    return Html(links)


__all__: Sequence[str] = ("History", "LastGood", "history_for", "render_report", "write_report")
