"""May production change now? Read from this release's own records, wherever the runbook runs.

The runner runs the sections in plan order, but a runbook also runs under plain papermill
and in a JupyterLab session, in any order. So the production deploy asks this module, at
the point of change, whether the release's results/ folder shows what the plan requires
before production: secrets verified on both apps, staging deployed and healthy, the staging
smoke test passed (or skipped with a recorded reason), and a go/no-go decision of GO taken
after those. Anything missing is named; the deploy refuses and records why.
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


def production_gate(results: Mapping[str, dict], apps: Sequence[str]) -> ProductionGate:
    """Judge ``results`` (section key -> its results/<section>.json) for a deploy to production.

    ``apps``: every app of the plan (staging and production), each of which must have had its
    secrets verified.
    """
    missing = []
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
    return ProductionGate(tuple(missing))


def _problem(key: str, result: dict | None, apps: Sequence[str]) -> str:
    if result is None:
        return f"{key} has no result in this release"
    outcome = result.get("outcome")
    if key == "staging_smoke" and outcome == "skipped":
        override = result.get("override") or {}
        return "" if str(override.get("reason") or "").strip() else "skipped without a recorded reason"
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
