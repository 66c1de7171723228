"""outputs/index.html: the auditor's way into the archive, metrics.json / metrics.csv, and
`runbook history`, the same list in a terminal.

Every release of every app, newest first (outcome, start, duration, operator, commit,
links to its report and manifest), filterable by app and outcome; DORA's four
keys per app and target; each step's duration across recent releases as an inline SVG
chart, with the newest release against the p50 and p95 of the ones before it.

The page follows the archive's rules (htmlpage.py): one file, inline style, no network.
Its only script is the filter, inline and optional: without it every release is listed.
Rebuilt after every release (runner) and by `runbook index`, from the catalog's cached
manifest summaries, so a rebuild costs a directory scan plus the new manifests.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from functools import lru_cache
from html import escape
from pathlib import Path

from ..execution.terminal import shown as _shown
from ..plan import ALL_SECTIONS
from ..results import utc_now
from .catalog import OUTCOMES, Catalog, ReleaseSummary, bulk_allocation, load_catalog
from .charts import line_chart
from .htmlpage import Html, css_class, link, page, seconds, table, text
from .metrics import (
    BASELINE_WINDOW,
    TOTAL,
    Dora,
    baselines,
    comparison,
    dora_by_app,
    group_by_app_and_target,
    measured_duration,
    slow_releases,
    step_duration,
    write_metrics,
)

INDEX_FILE = "index.html"
#: Releases per history chart: enough to see a trend, few enough to read each point.
CHART_RELEASES = 60
STEP_KEYS = tuple(ALL_SECTIONS)

FILTER_SCRIPT = """(function(){
var app=document.getElementById('f-app'),outcome=document.getElementById('f-outcome'),
count=document.getElementById('f-count'),rows=document.querySelectorAll('#releases tbody tr');
function apply(){var shown=0;for(var i=0;i<rows.length;i++){var r=rows[i];
var show=(!app.value||r.dataset.app===app.value)&&(!outcome.value||r.dataset.outcome===outcome.value);
r.hidden=!show;if(show)shown++;}
count.textContent=shown+' of '+rows.length+' releases';}
app.addEventListener('change',apply);outcome.addEventListener('change',apply);apply();})();"""


@dataclass(frozen=True)
class IndexBuild:
    """What a rebuild wrote and what it cost."""

    index: Path
    metrics_json: Path
    metrics_csv: Path
    releases: int
    parsed: int
    cached: int
    seconds: float


def rebuild_index(root: Path, *, use_cache: bool = True, now: datetime | None = None) -> IndexBuild:
    """Write index.html, metrics.json and metrics.csv at the archive root."""
    started = time.perf_counter()
    root = Path(root)
    with bulk_allocation():
        catalog = load_catalog(root, use_cache=use_cache)
        doras = dora_by_app(catalog.releases, now=now)
        generated_at = utc_now()
        metrics_json, metrics_csv = write_metrics(
            root, doras, generated_at=generated_at, releases=len(catalog.releases)
        )
        index = root / INDEX_FILE
        _write_atomic(index, render_index(catalog, doras, generated_at))
    return IndexBuild(
        index,
        metrics_json,
        metrics_csv,
        len(catalog.releases),
        catalog.parsed,
        catalog.cached,
        time.perf_counter() - started,
    )


def rebuild_after_release(root: Path, progress: Callable[[str], None] = print, *, store=None) -> IndexBuild | None:
    """The runner's hook: a failed index rebuild is reported, never a failed release.
    store: the archive's store (archive/store.py), whose catalog the index shows and which gets it."""
    try:
        if store is not None:
            from .storesync import publish_index

            build = publish_index(store, root, rebuild_index)
            if build is None:
                progress(f"  archive index: {store.key_url(INDEX_FILE)} is current (nothing new in the store)")
                return None
        else:
            build = rebuild_index(root)
    except Exception as exc:  # the release is sealed already; the index can be rebuilt later
        progress(f"archive index not rebuilt ({type(exc).__name__}: {exc}); run: runbook index")
        return None
    progress(f"  archive index: {build.index} ({build.releases} release{'' if build.releases == 1 else 's'})")
    return build


def _write_atomic(path: Path, content: str) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(content, encoding="utf-8")
    os.replace(tmp, path)


# -- the page ------------------------------------------------------------------------------


def render_index(catalog: Catalog, doras: Sequence[Dora], generated_at: str) -> str:
    releases = catalog.releases
    body = [
        "<h1>HotDash release archive</h1>",
        f"<p class=muted>{len(releases)} releases of {len(catalog.apps())} app(s); generated {text(generated_at)}. "
        f"Metrics as {link('metrics.json', 'metrics.json')} and {link('metrics.csv', 'metrics.csv')}.</p>",
        dora_section(doras),
        history_section(releases),
        releases_section(catalog),
    ]
    return page("HotDash release archive", body, script=FILTER_SCRIPT)


def dora_section(doras: Sequence[Dora]) -> str:
    rows = [
        (
            d.app,
            d.target or "?",
            d.deployments,
            _number(d.deployments_per_week),
            d.deployments_last_30_days,
            _percent(d.change_failure_rate),
            _restore(d),
            _lead(d),
        )
        for d in doras
    ]
    return (
        "<h2>Delivery metrics (DORA)</h2>"
        "<p class=muted>Per app and target: rehearsals on the local platform are not Fly deployments. "
        "A deployment is a release whose production deploy ran; definitions in metrics.json.</p>"
        + table(
            (
                "App",
                "Target",
                "Deployments",
                "Per week",
                "Last 30 days",
                "Change failure rate",
                "Time to restore (median)",
                "Lead time (median)",
            ),
            rows,
            numeric=(2, 3, 4, 5),
        )
    )


def _number(value: float | None) -> str:
    return "" if value is None else f"{value:g}"


def _percent(value: float | None) -> str:
    return "no deployments" if value is None else f"{value:.0%}"


def _restore(d: Dora) -> str:
    if not d.restores and not d.open_incidents:
        return "no failed deployment"
    open_note = f", {d.open_incidents} still open" if d.open_incidents else ""
    return f"{seconds(d.time_to_restore_median_s)} over {d.restores}{open_note}"


def _lead(d: Dora) -> str:
    return (
        f"{seconds(d.lead_time_median_s)} over {d.lead_times}"
        if d.lead_times
        else "none: no clean commit with a known time"
    )


def history_section(releases: Sequence[ReleaseSummary]) -> str:
    parts = [
        "<h2>Step durations across releases</h2>",
        f"<p class=muted>Passed steps only, last {CHART_RELEASES} releases per app and target. The newest "
        f"release is compared with the p50 and p95 of up to {BASELINE_WINDOW} earlier ones.</p>",
    ]
    for (app, target), group in group_by_app_and_target(releases).items():
        newest_first = [r for r in group if r.sections]
        if not newest_first:
            continue
        parts.append(f"<h3>{text(app)} via {text(target or '?')}</h3>")
        parts.append(step_chart(list(reversed(newest_first[:CHART_RELEASES])), f"{app} via {target}"))
        parts.append(newest_vs_baseline(newest_first[0], newest_first[1:]))
    return "\n".join(parts)


def step_chart(oldest_first: Sequence[ReleaseSummary], title: str) -> Html:
    series = {ALL_SECTIONS[key].title: [step_duration(r, key) for r in oldest_first] for key in STEP_KEYS}
    series = {name: points for name, points in series.items() if any(p is not None for p in points)}
    labels = [r.started_at[:16].replace("T", " ") for r in oldest_first]
    return line_chart(series, labels, title=f"Step durations, {title}")


def newest_vs_baseline(newest: ReleaseSummary, earlier: Sequence[ReleaseSummary]) -> Html:
    keys = [s.key for s in newest.sections] + [TOTAL]
    stats = baselines(earlier, keys)
    rows = []
    for key in keys:
        base, verdict = stats[key], comparison(newest, key, stats[key])
        slow = base.is_slow(step_duration(newest, key))
        rows.append(
            (
                ALL_SECTIONS[key].title if key in ALL_SECTIONS else "Whole release",
                seconds(measured_duration(newest, key)) or "not measured",
                seconds(base.p50),
                seconds(base.p95),
                base.n,
                Html(f'<span class="slow">{verdict}</span>') if slow else verdict,
            )
        )
    return Html(
        f"<p>Newest release {link(newest.folder + '/report.html', newest.release_id)} "
        f"({text(newest.outcome)}):</p>"
        + table(
            ("Step", "This release", "p50 earlier", "p95 earlier", "Earlier releases", "Verdict"),
            rows,
            numeric=(1, 2, 3, 4),
        )
    )


def releases_section(catalog: Catalog) -> str:
    apps = "".join(f"<option>{text(a)}</option>" for a in catalog.apps())
    present = {r.outcome for r in catalog.releases}
    outcomes = "".join(f"<option>{text(o)}</option>" for o in OUTCOMES if o in present)
    filters = (
        f'<div class="filters"><label>App <select id="f-app"><option value="">all</option>{apps}</select>'
        f'</label><label>Outcome <select id="f-outcome"><option value="">all</option>{outcomes}</select>'
        f'</label><span id="f-count" class="muted">{len(catalog.releases)} releases</span></div>'
    )
    head = "".join(
        f"<th>{h}</th>"
        for h in ("Release", "App", "Outcome", "Started (UTC)", "Duration", "Operator", "Commit", "Manifest")
    )
    rows = release_rows(catalog.releases, slow_releases(catalog.releases))
    return (
        f"<h2>Releases, newest first</h2>{filters}<table id=releases class=wide><thead><tr>{head}</tr></thead>"
        f"<tbody>{rows}</tbody></table>"
    )


def release_rows(releases: Sequence[ReleaseSummary], slow: set[str]) -> str:
    """One <tr> per release. Written out by hand rather than with htmlpage.table: the index
    of a large archive has 10,000 of them, and values repeat, so their escaped form is cached."""
    esc = lru_cache(maxsize=4096)(escape)
    rows = []
    for r in releases:
        folder = f"{esc(r.app)}/{esc(r.release_id)}"
        name = f'<a href="{folder}/report.html">{esc(r.release_id)}</a>' if r.has_report else esc(r.release_id)
        duration = seconds(r.duration_s)
        if r.folder in slow:
            duration = f'<span class=slow title="slower than p95 of earlier releases">{duration} ▲</span>'
        commit = esc((r.commit or "")[:10]) + (" (dirty)" if r.commit_dirty else "")
        manifest = (
            f'<a href="{folder}/manifest.json">manifest</a>'
            if r.outcome != "unsealed"
            else f'<a href="{folder}/">folder</a>'
        )
        outcome = esc(r.outcome)
        rows.append(
            f'<tr data-app="{esc(r.app)}" data-outcome="{outcome}"><td>{name}</td><td>{esc(r.app)}</td>'
            f'<td><span class="badge {esc(css_class(r.outcome))}">{outcome.upper()}</span></td>'
            f"<td>{esc(r.started_at[:19].replace('T', ' '))}</td><td class=num>{duration}</td>"
            f"<td>{esc(r.operator)}</td><td>{commit}</td><td>{manifest}</td></tr>"
        )
    return "".join(rows)


# -- the terminal view (`runbook history`) --------------------------------------------------------


def history_lines(
    catalog: Catalog, *, app: str | None = None, outcome: str | None = None, limit: int | None = 20
) -> list[str]:
    """Releases newest first as aligned lines (with why, when not released); ▲ marks one slower
    than the p95 of the ones before it."""
    chosen = catalog.select(app=app, outcome=outcome, limit=limit)
    if not chosen:
        return [
            "no releases match"
            + (
                f" (of {len(catalog.releases)} in {catalog.root})"
                if catalog.releases
                else f": no releases in {catalog.root}"
            )
        ]
    slow = slow_releases(catalog.releases)
    lines = [
        f"{'started (UTC)':19}  {'release':23}  {'app':20}  {'outcome':15}  {'duration':>14}  {'operator':14}  commit"
    ]
    for r in chosen:
        duration = seconds(r.duration_s) + (" ▲" if r.folder in slow else "  ")
        commit = (r.commit or "")[:10] + ("+dirty" if r.commit_dirty else "")
        lines.append(
            f"{_shown(r.started_at[:19].replace('T', ' ')):19}  {_shown(r.release_id):23}  {_shown(r.app):20}  "
            f"{_shown(r.outcome):15}  {duration:>14}  {_shown(r.operator[:14]):14}  {_shown(commit)}"
        )
        if r.outcome != "released" and r.reason:
            lines.append(f"{'':21}why: {_shown(r.reason)}")  # what happened, e.g. "runner died during ..."
    shown = f"{len(chosen)} of {len(catalog.select(app=app, outcome=outcome))}"
    lines.append(f"{shown} releases; ▲ slower than the p95 of earlier releases of the app")
    return lines
