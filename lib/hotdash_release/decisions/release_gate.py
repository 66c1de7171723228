"""May production change now? Read from this release's own record, wherever the runbook runs.

The runner runs the sections in plan order, but a runbook also runs under plain papermill
and in a JupyterLab session, in any order. So the production deploy asks this module, at
the point of change, whether the release's results/ folder shows what the plan requires
before production: secrets verified on both apps, staging deployed and healthy, the staging
smoke test passed (or skipped with a recorded reason), and a go/no-go decision of GO taken
after those. Anything missing is named; the deploy refuses and records why.

Files are not enough: the results counted are those the release's event log vouches for
(events.recorded_results), the release must be live (`runbook release` or `runbook lab`
holds its folder now: locks.live_release), and what the record claims of staging is checked
against the target itself (`World`). `ACTIONS` is the one table of what each action needs;
README prints it (tests/test_one_truth.py keeps the two equal).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

#: What must be recorded before production changes, in plan order: section -> what it proves.
PRECONDITIONS = (
    ("verify_secrets", "secrets verified on both apps"),
    ("deploy_staging", "staging deployed and healthy"),
    ("staging_smoke", "staging smoke test passed (or skipped with a recorded reason)"),
    ("go_no_go", "a go/no-go decision of GO"),
)


#: Every action that changes the target or speaks for the release, and what must hold first.
#: The checks live where the action happens (runbook.py's SectionRun); this table names them.
ACTIONS = (
    ("record anything (every section)", "the release is not sealed: a sealed release is read-only to every path"),
    (
        "deploy production (06)",
        "a live release: `runbook release` or `runbook lab` holds its folder now (plain papermill cannot)",
    ),
    ("", "results written by this release's run, as its event log records them (not by hand, not changed)"),
    *(("", what) for _, what in PRECONDITIONS),
    ("", "staging serves now the image this release deployed to it, and answers its health check"),
    ("", "a GO decided after the sections it judged last ran"),
    (
        "",
        "[approval] required approvals of the digest of what ships now, signed by approvers in keys/allowed_signers "
        "(or the CI run's `production` reviewers), none by the operator or who dispatched the run",
    ),
    (
        "smoke test, health check, watch (03, 07, 09)",
        "the environment was deployed in this release; its URL is the target's own (on the local platform, never "
        "a configured remote URL)",
    ),
    (
        "notify the CEO (08)",
        "production deployed and verified in this release: deploy_production and production_smoke passed",
    ),
    ("roll back (10)", "production changed in this release: deploy_production recorded what served before it"),
)


def actions_markdown() -> str:
    """ACTIONS as the Markdown table README shows."""
    rows = ["| action | what must hold first |", "|---|---|"]
    rows += [f"| {action} | {what} |" for action, what in ACTIONS]
    return "\n".join(rows)


@dataclass(frozen=True)
class World:
    """What was found outside the files, right before production changes."""

    live: bool  # a live runner or lab holds this release's folder now
    unrecorded: tuple[str, ...] = ()  # result files the event log does not vouch for
    staging_image: str | None = None  # what staging serves now
    staging_healthy: bool | None = None  # whether it answers its health check now
    staging_detail: str = ""


@dataclass(frozen=True)
class ProductionGate:
    """The preconditions missing from a release's records; none missing: production may change."""

    missing: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.missing

    def line(self) -> str:
        return "missing: " + "; ".join(self.missing)

    def as_row(self) -> dict:
        return {"ok": self.ok, "missing": list(self.missing), "detail": self.line() if self.missing else ""}


def production_gate(results: Mapping[str, dict], apps: Sequence[str], world: World | None = None) -> ProductionGate:
    """Judge ``results`` (section key -> its results/<section>.json) for a deploy to production.

    ``apps``: every app of the plan (staging and production), each of which must have had its
    secrets verified. ``world``: what was found outside the files (None: the files alone, for
    a page that explains a sealed record).
    """
    missing = []
    if world is not None and not world.live:
        missing.append(
            "a live release (no `runbook release` or `runbook lab` holds this folder now: run the release with "
            "`runbook release`, or step through it in `runbook lab`)"
        )
    if world is not None:
        missing += [f"a result of this release's own run ({line})" for line in world.unrecorded]
    for key, what in PRECONDITIONS:
        problem = _problem(key, results.get(key), apps)
        if problem:
            missing.append(f"{what} ({problem})")
    decided = (results.get("go_no_go") or {}).get("finished_at") or ""
    if decided and not missing:
        # A GO judges what was recorded when it was taken: a section run again since was not judged.
        later = [key for key, _ in PRECONDITIONS[:-1] if (results[key].get("finished_at") or "") > decided]
        if later:
            missing.append(f"a go/no-go decision taken after {', '.join(later)} (run go_no_go again)")
    if world is not None and not missing:
        deployed = ((results.get("deploy_staging") or {}).get("records") or {}).get("deployment") or {}
        recorded = deployed.get("image_ref") or ""
        if world.staging_image != recorded:
            missing.append(
                f"staging serving the image this release checked ({recorded or 'none recorded'}; it serves "
                f"{world.staging_image or 'nothing'} now: run deploy_staging and the checks again)"
            )
        elif not world.staging_healthy:
            missing.append(f"staging healthy now ({world.staging_detail or 'no answer'}: run deploy_staging again)")
    return ProductionGate(tuple(missing))


def _problem(key: str, result: dict | None, apps: Sequence[str]) -> str:
    if result is None:
        return f"{key} has no result in this release: run it"
    outcome = result.get("outcome")
    if key == "staging_smoke" and outcome == "skipped":
        override = result.get("override") or {}
        return "" if str(override.get("reason") or "").strip() else "skipped without a recorded reason"
    if outcome == "running":  # its gate cell has not run since: the friction seen in JupyterLab
        return f"{key} running: run its last cell (the gate) to finish it"
    if outcome != "passed":
        return f"{key} {outcome or 'has no outcome'}"
    records = result.get("records") or {}
    if key == "verify_secrets":
        checked = {row.get("app") for row in (records.get("secrets") or {}).get("rows") or []}
        unchecked = [app for app in apps if app not in checked]
        return f"not checked on {', '.join(unchecked)}" if unchecked else ""
    if key == "deploy_staging":
        deployed = (records.get("deployment") or {}).get("ok") and (records.get("health") or {}).get("ok")
        return "" if deployed else "no healthy deployment recorded"
    if key == "go_no_go":
        decision = (records.get("decision") or {}).get("decision")
        return "" if decision == "GO" else f"decision {decision or 'not recorded'}"
    return ""
