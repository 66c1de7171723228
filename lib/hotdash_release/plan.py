"""The deployment plan's sections, in plan order, and the notebook that runs each.

Staging and production run the same notebooks with another `environment`
parameter, so a section is a notebook plus the parameters that make it that step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .errors import UsageError


@dataclass(frozen=True)
class Section:
    key: str  # names the step everywhere: results, timing budget, archive files
    notebook: str  # in runbooks/
    title: str  # the plan's words
    environment: str | None = None
    budget_key: str | None = None  # row of the plan's timeline, if the plan budgets this step
    parameters: dict = field(default_factory=dict)

    def notebook_parameters(self) -> dict:
        params = dict(self.parameters)
        if self.environment:
            params["environment"] = self.environment
        return params


PLAN: tuple[Section, ...] = (
    Section("preflight", "preflight.ipynb", "Pre-deployment checklist"),
    Section("verify_secrets", "verify_secrets.ipynb", "Step 1: Verify secrets", budget_key="verify_secrets"),
    Section("deploy_staging", "deploy.ipynb", "Step 2: Deploy to staging first", "staging", "deploy_staging"),
    Section("staging_smoke", "smoke_test.ipynb", "Step 3: Quick staging smoke test", "staging", "staging_smoke"),
    Section("go_no_go", "go_no_go.ipynb", "Go/No-Go decision"),
    Section("deploy_production", "deploy.ipynb", "Step 4: Deploy to production", "production", "deploy_production"),
    Section("production_smoke", "smoke_test.ipynb", "Step 5: Production smoke test", "production", "production_smoke"),
    Section("notify", "notify.ipynb", "Step 6: Notify the CEO", budget_key="notify"),
    # The plan's post-deployment actions: not in its timeline (the watch's window is its own budget).
    Section("watch", "watch.ipynb", "Post-deployment: watch production during CEO testing", "production"),
)
#: The watch, also run alone later by `runbook watch <release id>`.
WATCH = PLAN[-1]
#: Runs only when production deploy or smoke test fails.
ROLLBACK = Section("rollback", "rollback.ipynb", "Rollback plan", "production")
#: A failure in these sections leaves production changed: the rollback runbook runs.
PRODUCTION_CHANGING = ("deploy_production", "production_smoke")

ALL_SECTIONS: dict[str, Section] = {s.key: s for s in PLAN + (ROLLBACK,)}


def section_for(kind: str, environment: str | None = None) -> Section:
    """The section a notebook is running as: `kind` is the notebook's stem."""
    for section in ALL_SECTIONS.values():
        if section.notebook == f"{kind}.ipynb" and section.environment in (None, environment):
            return section
    raise UsageError(f"environment: {environment!r} is not allowed for runbook {kind!r}; allowed: staging, production")


def get_section(key: str) -> Section:
    if key not in ALL_SECTIONS:
        raise UsageError(f"section: {key!r} is unknown; allowed: {', '.join(ALL_SECTIONS)}")
    return ALL_SECTIONS[key]
