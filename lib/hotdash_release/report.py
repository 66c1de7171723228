"""The release report: one self-contained HTML page an auditor reads first.

It leads with the outcome and the go/no-go explanation, then the timing table (planned
vs actual), smoke outcomes with evidence, deployments, rollback and links to every
section's executed notebook. No scripts, no network: it must open offline, years later.
Every value is escaped: responses of the app under test are shown as inert text.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import Any, Iterable, Sequence

_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:2rem auto;max-width:72rem;color:#1b1f24;padding:0 1rem}
h1{font-size:1.5rem;margin-bottom:.2rem}h2{font-size:1.15rem;margin-top:2rem;border-bottom:1px solid #d0d7de;padding-bottom:.2rem}
table{border-collapse:collapse;width:100%;margin:.5rem 0}th,td{border:1px solid #d0d7de;padding:.3rem .5rem;text-align:left;vertical-align:top;overflow-wrap:anywhere}
th{background:#f6f8fa}td.num{text-align:right;font-variant-numeric:tabular-nums}code,.mono{font-family:ui-monospace,monospace;font-size:12.5px;word-break:break-all}
.badge{display:inline-block;padding:.15rem .6rem;border-radius:1rem;font-weight:600;color:#fff}
.released,.passed,.met,.go{background:#1a7f37}.blocked,.nogo{background:#9a6700}.failed,.error,.blocking,.rollback-failed,.aborted{background:#cf222e}
.rolled-back,.acceptable{background:#8250df}.over{color:#cf222e;font-weight:600}.muted{color:#57606a}
"""


def write_report(record, results: dict[str, dict]) -> Path:
    path = record.release_dir / "report.html"
    path.write_text(render_report(record, results), encoding="utf-8")
    return path


def render_report(record, results: dict[str, dict]) -> str:
    production = record.config.environment("production").app
    parts = [
        f"<h1>HotDash release {escape(record.release_id)} {_badge(record.outcome)}</h1>",
        f"<p><b>{escape(record.reason)}</b></p>",
        _facts(record, production),
        _go_no_go(results.get("go_no_go")),
        _timing(record),
        _smoke(results),
        _health_and_deploys(results),
        _rollback(results.get("rollback")),
        _notification(results.get("notify")),
        _sections(record),
    ]
    return ("<!DOCTYPE html><html lang=en><head><meta charset=utf-8>"
            f"<title>HotDash release {escape(record.release_id)}: {escape(record.outcome)}</title>"
            f"<style>{_STYLE}</style></head><body>" + "\n".join(parts) + "</body></html>\n")


def _badge(text: str) -> str:
    css = text.lower().replace(" ", "-").replace("(", "").replace(")", "")
    if css.startswith("not-met"):
        css = "acceptable"
    return f'<span class="badge {escape(css)}">{escape(text.upper())}</span>'


def _table(headers: Sequence[str], rows: Iterable[Sequence[Any]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = []
        for i, cell in enumerate(row):
            text = cell if isinstance(cell, _Html) else escape("" if cell is None else str(cell))
            cells.append(f'<td class="num">{text}</td>' if i in numeric else f"<td>{text}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


class _Html(str):
    """Markup built here (badges, links), not text from outside: not escaped again."""


def _facts(record, production: str) -> str:
    rows = [("Application", production), ("Target", record.target_name), ("Operator", record.operator),
            ("Started", record.started_at), ("Finished", record.finished_at),
            ("Rehearsal defects", ", ".join(f"{k}: {v}" for k, v in record.options.defects.items()) or "none"),
            ("Configuration", str(record.config.path)), ("Integrity", "sha256 of every file in manifest.json")]
    return _table(("", ""), rows)


def _go_no_go(result: dict | None) -> str:
    if not result:
        return "<h2>Go/No-Go decision</h2><p class=muted>Not reached: the release stopped earlier.</p>"
    decision = result["records"].get("decision", {})
    criteria = result["records"].get("criteria", {}).get("rows", [])
    rows = [(c["criterion"], c["measured"], c["threshold"], _Html(_badge(c["verdict"])), c["source"])
            for c in criteria]
    verdict = "go" if decision.get("ok") else "nogo"
    return (f"<h2>Go/No-Go decision <span class='badge {verdict}'>{escape(decision.get('decision', '?'))}</span></h2>"
            f"<p>{escape(decision.get('explanation', ''))}</p>"
            + _table(("Criterion", "Measured", "Threshold", "Verdict", "Measured in"), rows))


def _timing(record) -> str:
    rows, planned_total, actual_total = [], 0.0, 0.0
    for s in record.sections:
        budget = s.budget_minutes(record.config)
        actual_total += s.duration_s
        if budget is not None:
            planned_total += budget
        over = budget is not None and s.duration_s > budget * 60
        rows.append((s.section.title, "" if budget is None else f"{budget:g} min",
                     f"{s.duration_s:.1f} s", f"{planned_total:g} min", f"{actual_total:.1f} s",
                     _Html('<span class="over">over budget</span>' if over else ("within" if budget else "not budgeted")),
                     _Html(_badge(s.outcome))))
    return ("<h2>Timing: planned vs actual</h2>"
            "<p class=muted>Planned minutes from the plan's Deployment Timeline; actual is the wall time of each "
            "section's papermill run, kernel start included.</p>"
            + _table(("Step", "Planned", "Actual", "Cumulative planned", "Cumulative actual", "Budget", "Outcome"),
                     rows, numeric=(1, 2, 3, 4)))


def _smoke(results: dict[str, dict]) -> str:
    parts = ["<h2>Smoke tests</h2>"]
    for key in ("staging_smoke", "production_smoke"):
        result = results.get(key)
        if not result:
            continue
        smoke = result["records"].get("smoke", {})
        rows = [(r["name"], _Html(_badge("passed" if r["ok"] else "failed")), f"{r['method']} {r['path']}",
                 r["status_code"], f"{r['latency_ms']:.0f} ms" if r.get("latency_ms") is not None else "",
                 r["evidence"], r["detail"]) for r in smoke.get("rows", [])]
        parts.append(f"<h3>{escape(result['title'])} ({escape(result['app'])})</h3>"
                     + _table(("Check", "Outcome", "Request", "Status", "Latency", "Evidence", "Detail"), rows,
                              numeric=(3, 4)))
    if len(parts) == 1:
        parts.append("<p class=muted>No smoke test ran.</p>")
    return "\n".join(parts)


def _health_and_deploys(results: dict[str, dict]) -> str:
    rows = []
    for key in ("deploy_staging", "deploy_production", "rollback"):
        result = results.get(key)
        if not result:
            continue
        deploy = result["records"].get("deployment") or result["records"].get("rollback") or {}
        health = result["records"].get("health") or {}
        rows.append((result["title"], deploy.get("version") or deploy.get("new_version"),
                     deploy.get("image_ref") or deploy.get("to_image"), _Html(_badge("passed" if deploy.get("ok") else "failed")),
                     _Html(_badge("passed" if health.get("ok") else "failed")) if health else "not checked",
                     health.get("attempts"), health.get("detail") or deploy.get("detail")))
    if not rows:
        return "<h2>Deployments and health</h2><p class=muted>Nothing was deployed.</p>"
    return "<h2>Deployments and health</h2>" + _table(
        ("Step", "Version", "Image", "Deploy", "Health", "Health attempts", "Detail"), rows)


def _rollback(result: dict | None) -> str:
    if not result:
        return "<h2>Rollback</h2><p class=muted>No rollback was needed.</p>"
    rollback = result["records"].get("rollback", {})
    rows = [(k, v) for k, v in rollback.items()]
    return f"<h2>Rollback {_badge(result['outcome'])}</h2>" + _table(("", ""), rows)


def _notification(result: dict | None) -> str:
    if not result:
        return "<h2>Notification</h2><p class=muted>Not sent: the release did not reach step 6.</p>"
    note = result["records"].get("notification", {})
    return (f"<h2>Notification to {escape(note.get('recipient', ''))} {_badge('passed' if note.get('ok') else 'failed')}</h2>"
            f"<p>{escape(note.get('channel', ''))}: {escape(note.get('detail', ''))}</p>"
            f"<pre>{escape(note.get('message', ''))}</pre>")


def _sections(record) -> str:
    rows = []
    for s in record.sections:
        html_name = Path(s.notebook).with_suffix(".html").name
        links = _Html(f'<a href="{escape(html_name)}">executed notebook</a> · '
                      f'<a href="{escape(s.notebook)}">.ipynb</a>')
        rows.append((s.index, s.section.title, _Html(_badge(s.outcome)), links,
                     "; ".join(s.failures) or s.error))
    return "<h2>Sections</h2>" + _table(("#", "Section", "Outcome", "Record", "Why it failed"), rows)
