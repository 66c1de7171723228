"""What a section's results record, as its cells show it: the manual checks and who attested
them, the go/no-go call, the decision and its criteria.

Each view is drawn from the section's results dict (results/<section>.json as written), never
from a widget's memory, so every place that shows it agrees with the record: the panel in
JupyterLab (redrawn after each change, also after a page reload, when the view is a live
widget again), the notebook's saved output, and the archived page. An output that shows a
view carries its name in its metadata (`hotdash_recorded`); sealing a session draws those
outputs again from the results being archived (`redraw_outputs`), so a page saved before the
last change (a reload loses the display ids that updates follow) still shows the record.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping

from ..decisions.attest import DECISIONS
from ..tables import html_table

#: Output metadata key: {"view": one of VIEWS, "section": the section whose results it shows}.
RECORDED = "hotdash_recorded"


def manual_checks_html(result: Mapping) -> str:
    """Each manual check with its headless evidence and, when attested, by whom, when and the note."""
    shown = (result.get("records") or {}).get("manual_checks") or {}
    # A list of pairs, not a dict: results/ keeps JSON keys sorted, and the checks go in plan order.
    evidence = dict(shown.get("evidence") or [])
    given = {a.get("check"): a for a in result.get("attestations") or [] if a.get("check") not in DECISIONS}
    rows = [
        {"manual check": check, "headless evidence": text, **_attested_columns(given.get(check))}
        for check, text in evidence.items()
    ]
    missing = [check for check in evidence if check not in given]
    verdict = (
        "all attested"
        if not missing
        else "none attested yet"
        if len(missing) == len(evidence)
        else f"{len(missing)} of {len(evidence)} not attested yet"
    )
    title = html.escape(shown.get("title") or "Manual checks")
    return f"<p><b>Recorded</b> ({title}): {verdict}</p>" + html_table(rows) + gate_html(result)


def decision_panel_html(result: Mapping) -> str:
    """The person's Go or No-go with its reason, and where the decision stands."""
    given = next((a for a in result.get("attestations") or [] if a.get("check") in DECISIONS), None)
    rows = [{"decision": given["check"] if given else "none recorded", **_attested_columns(given)}]
    explanation = ((result.get("records") or {}).get("decision") or {}).get("explanation") or "criteria not judged yet"
    return (
        "<p><b>Recorded</b> (Go/No-Go decision attested by a person)</p>"
        + html_table(rows)
        + f"<p>{html.escape(explanation)}</p>"
        + gate_html(result)
    )


#: What a section's recorded outcome means for the person at the keyboard.
GATE_WORDS = {
    "passed": "passed: the release may go on to the next section",
    "failed": "failed: the release stops here",
    "refused": "refused: nothing changed",
    "running": "not decided yet: run the gate cell (the last cell of this section)",
}


def gate_html(result: Mapping) -> str:
    """The section's outcome as recorded last, with what stops it: a gate that has run decides
    again after each attestation or decision, so this line is the gate's current answer."""
    outcome = str(result.get("outcome") or "not run")
    failures = "".join(f"<li>{html.escape(str(f))}</li>" for f in result.get("failures") or [])
    return (
        f"<p class=gate><b>This section</b>: {html.escape(GATE_WORDS.get(outcome, outcome))}"
        f" <span class=muted>(recorded {html.escape(str(result.get('finished_at') or ''))})</span></p>"
        + (f"<ul>{failures}</ul>" if failures else "")
    )


def decision_html(result: Mapping) -> str:
    """The decision as judged last: GO or NO-GO and why; under a GO, the approvals it needs."""
    decision = (result.get("records") or {}).get("decision")
    if not decision:
        return "<p><b>Decision</b>: not judged yet</p>"
    return (
        f"<p><b>Decision</b>: {html.escape(str(decision.get('decision', '?')))}</p>"
        f"<p>{html.escape(str(decision.get('explanation', '')))}</p>"
    ) + approval_request_html(result)


def approval_request_html(result: Mapping) -> str:
    """Who must approve what ships, and the command to give them ([approval] in hotdash.toml)."""
    request = (result.get("records") or {}).get("approval_request")
    if not request:
        return ""
    who = ", ".join(request.get("who_may_approve") or []) or "nobody: keys/allowed_signers names no other approver"
    return (
        f"<p><b>Approval needed before production</b>: {int(request.get('required') or 0)} of {html.escape(who)}. "
        f"Each approver runs, on their own machine:</p><pre>{html.escape(str(request.get('command')))}</pre>"
        f"<p class=muted>They sign digest {html.escape(str(request.get('digest')))} of what ships (image "
        f"{html.escape(str((request.get('payload') or {}).get('image')))}, the configuration, the runbooks, this "
        "decision and its measurements); 06-deploy_production waits for it. A change to any of them voids it.</p>"
    )


#: A criterion's columns in reading order (results/ keeps JSON keys sorted).
CRITERIA_COLUMNS = ("criterion", "measured", "threshold", "verdict", "source", "override")


def criteria_html(result: Mapping) -> str:
    """Each criterion: measured value, threshold, verdict, where it was measured."""
    criteria = (result.get("records") or {}).get("criteria")
    if not criteria:
        return "<p><b>Go/No-Go criteria</b>: not judged yet</p>"
    verdict = "all met or acceptable" if criteria.get("ok") else "a blocking criterion is not met"
    rows = [
        {name: row.get(name) for name in CRITERIA_COLUMNS if name != "override" or row.get(name)}
        for row in criteria.get("rows") or []
    ]
    return f"<p><b>{html.escape(criteria.get('title', 'Go/No-Go criteria'))}</b>: {verdict}</p>" + html_table(rows)


VIEWS: dict[str, Callable[[Mapping], str]] = {
    "manual_checks": manual_checks_html,
    "decision_panel": decision_panel_html,
    "decision": decision_html,
    "criteria": criteria_html,
    "gate": gate_html,
}


def _attested_columns(attestation: Mapping | None) -> dict:
    if not attestation:
        return {"attested by": "", "at": "", "note": "", "source": "not attested"}
    return {
        "attested by": attestation.get("by", ""),
        "at": attestation.get("at", ""),
        "note": attestation.get("note", ""),
        "source": attestation.get("source", ""),
    }


def output_metadata(view: str, section: str) -> dict:
    return {RECORDED: {"view": view, "section": section}}


def redraw_outputs(notebook, results: Mapping[str, Mapping], section: str | None = None) -> int:
    """Draw every output that shows a view again from `results` (section key -> results dict);
    return how many were drawn. The gate cell's output of a run the record has since superseded
    (a decision or attestation given after it) is replaced by the gate's recorded answer."""
    drawn = 0
    for cell in notebook.cells:
        superseded = _superseded_gate(cell, results.get(section)) if section else None
        if superseded is not None:
            cell["outputs"] = [superseded]
            drawn += 1
            continue
        for output in cell.get("outputs") or []:
            shows = (output.get("metadata") or {}).get(RECORDED) or {}
            if shows.get("view") in VIEWS and "data" in output:
                output["data"]["text/html"] = VIEWS[shows["view"]](results.get(shows.get("section")) or {})
                drawn += 1
    return drawn


#: The cell every section ends with (tools/make_notebooks.py writes it).
GATE_CELL = "run.gate()"


def _superseded_gate(cell, result: Mapping | None) -> dict | None:
    """A gate cell whose shown answer (an error, or ": passed") differs from its section's recorded
    outcome: the output to show instead, drawn from the record; None when the cell agrees."""
    if cell.get("cell_type") != "code" or cell.get("source", "").strip() != GATE_CELL:
        return None
    outputs = cell.get("outputs") or []
    shown = "failed" if any(o.get("output_type") == "error" for o in outputs) else "passed" if outputs else None
    recorded_outcome = (result or {}).get("outcome")
    if (
        shown is None
        or result is None
        or recorded_outcome in (None, shown)
        or (shown == "failed" and recorded_outcome == "refused")
    ):
        return None
    import nbformat

    return nbformat.v4.new_output(
        "display_data",
        metadata=output_metadata("gate", str(result.get("section"))),
        data={
            "text/plain": f"superseded: the record says {recorded_outcome}",
            "text/html": "<p class=muted>This cell showed an earlier run of the gate; the record has "
            "changed since (a decision or attestation given after it). The gate's recorded answer:</p>"
            + gate_html(result),
        },
    )
