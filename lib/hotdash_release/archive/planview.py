"""`runbook plan`: what a release would do, as one HTML page a reviewer can approve.

A dry run in the literal sense: it reads and validates the configuration and the plan's
sections and renders them (targets, apps, the commands each step runs, the checks, the
budgets, the gates and what happens when one fails) without starting a kernel, touching
a target or deploying anything. The page names the exact configuration (sha256) and
runbooks commit it describes, so an approval is an approval of those.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from ..config import ReleaseConfig
from ..plan import PLAN, PRODUCTION_CHANGING, ROLLBACK, Section
from ..results import utc_now
from .htmlpage import Html, facts, page, table, text

#: What a failed gate of each kind of section means for the release (runner.py decides so).
GATE_CONSEQUENCE = {
    "before production": "stops the release before production changes (exit 3)",
    "production": "runs the rollback runbook (exit 4 when it restores what production served before "
    "this release, verified like a release; 5 when not)",
    "notify": "reported; the release stays released (exit 0)",
}


def default_plan_path(outputs: Path, now: datetime | None = None) -> Path:
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    return Path(outputs) / f"plan-{stamp}.html"


def write_plan(
    config: ReleaseConfig, target_name: str, out: Path, *, defects: dict[str, str] | None = None, archive: str = ""
) -> Path:
    """archive: where the release would be archived, as read now (the store and its chain head)."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_plan(config, target_name, defects=defects or {}, archive=archive), encoding="utf-8")
    return out


def render_plan(config: ReleaseConfig, target_name: str, *, defects: dict[str, str], archive: str = "") -> str:
    from ..paths import RUNBOOKS_DIR
    from .provenance import git_commit

    commit = git_commit(RUNBOOKS_DIR)
    body = [
        "<h1>HotDash release plan (dry run)</h1>",
        '<p class="callout warn lead">Nothing was deployed to produce this page. It shows what '
        "<code>runbook release</code> would do with this configuration and these runbooks.</p>",
        facts(
            [
                ("Configuration", str(config.path)),
                ("Configuration sha256", _sha256(config.path)),
                (
                    "Runbooks commit",
                    (commit.get("commit") or "not in git") + (" (uncommitted changes)" if commit.get("dirty") else ""),
                ),
                ("Target", target_name),
                ("Archive", archive or "the --outputs folder"),
                ("Rehearsal defects", _defects(defects)),
                ("Rendered", utc_now()),
            ]
        ),
        apps_section(config, target_name),
        steps_section(config, target_name, defects),
        criteria_section(config),
        smoke_section(config),
        budget_section(config),
        approval_section(),
    ]
    return page(f"HotDash release plan: {target_name}", body)


def _sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _defects(defects: dict[str, str]) -> str:
    return ", ".join(f"{env}: {defect}" for env, defect in defects.items()) or "none (a real release)"


def apps_section(config: ReleaseConfig, target_name: str) -> str:
    targets = [
        (
            name,
            "this release" if name == target_name else "configured",
            t.strategy,
            f"{t.wait_timeout_s:g} s",
            "rehearsal: real processes on 127.0.0.1" if name == "local" else "Fly.io",
        )
        for name, t in config.targets.items()
    ]
    apps = [
        (env.name, env.app, env.fly_config, env.base_url, env.base_url + config.health.path)
        for env in config.environments.values()
    ]
    return (
        "<h2>Targets and apps</h2>"
        + table(("Target", "Used", "Strategy", "Health wait", "What it is"), targets)
        + table(("Environment", "App", "Fly config", "URL", "Health endpoint"), apps)
        + f"<p>Required secrets (names only; values are never shown or passed as parameters): "
        f"{text(', '.join(config.required_secrets))}.</p>"
    )


def steps_section(config: ReleaseConfig, target_name: str, defects: dict[str, str]) -> str:
    rows = []
    for index, section in enumerate(PLAN, start=1):
        rows.append(step_row(str(index), section, config, target_name, defects))
    rows.append(step_row("if 6 or 7 fail", ROLLBACK, config, target_name, defects))
    local_note = (
        " On the local target the rehearsal platform does what each fly command does, on 127.0.0.1."
        if target_name == "local"
        else ""
    )
    return (
        "<h2>Steps, in order</h2><p class=muted>Each step is a notebook in runbooks/ run by papermill in a "
        f"fresh kernel; its last cell is the gate.{local_note}</p>"
        + table(
            ("#", "Step", "Notebook and parameters", "Runs", "Checks", "Budget", "If the gate fails"), rows, css="wide"
        )
    )


def step_row(number: str, section: Section, config: ReleaseConfig, target_name: str, defects: dict[str, str]) -> tuple:
    parameters = section.notebook_parameters()
    if section.environment in defects and section.notebook == "deploy.ipynb":
        parameters["rehearsal_defect"] = defects[section.environment]
    params = ", ".join(f"{k}={v}" for k, v in parameters.items())
    budget = config.timeline_minutes.get(section.budget_key or section.key)
    return (
        number,
        section.title,
        Html(f"<code>{text(section.notebook)}</code> {text(params)}"),
        _lines(section_commands(section, config, target_name), code=True),
        _lines(section_checks(section, config), code=False),
        "" if budget is None else f"{budget:g} min",
        gate_consequence(section),
    )


def _lines(lines: Sequence[str], *, code: bool) -> Html:
    return Html("<br>".join(f"<code>{text(line)}</code>" if code else text(line) for line in lines))


def section_commands(section: Section, config: ReleaseConfig, target_name: str) -> list[str]:
    """The commands a step runs, in the plan's (Fly) words; the local target does the same on 127.0.0.1."""
    settings = config.target_settings(target_name)
    env = config.environment(section.environment) if section.environment else None
    apps = [e.app for e in config.environments.values()]
    if section.key == "preflight":
        return [
            f"cat {config.readiness_file.name} " + " ".join(e.fly_config for e in config.environments.values()),
            *(f"fly status --app {app}" for app in apps),
        ]
    if section.key == "verify_secrets":
        return [f"fly secrets list --app {app} --json" for app in apps]
    if section.key.startswith("deploy_"):
        return [
            f"fly deploy --config {env.fly_config} --app {env.app} --strategy {settings.strategy} "
            f"--wait-timeout {settings.wait_timeout_s:g} --yes",
            f"curl {env.base_url}{config.health.path}",
            f"fly releases --app {env.app} --json",
            f"fly logs --app {env.app} --no-tail",
        ]
    if section.key.endswith("_smoke"):
        return [f"against {env.base_url}:"] + [f"{c.method} {c.path}" for c in config.smoke_checks]
    if section.key == "go_no_go":
        return []  # judges the measures of the steps above; runs nothing
    if section.key == "notify":
        n = config.notification
        return [f"{n.channel}: message to {n.recipient}"]
    if section.key == "rollback":
        return [
            f"fly releases --app {env.app} --json",
            f"fly deploy --app {env.app} --image <the image production served before step 4, as recorded> "
            f"--strategy immediate --wait-timeout {settings.wait_timeout_s:g} --yes (nothing when it still serves)",
            f"curl {env.base_url}{config.health.path}",
            "the production smoke test; every required secret's digest against the last good release",
        ]
    if section.key == "watch":
        w = config.watch_settings(target_name)
        return [
            f"every {w.interval_s:g} s for {w.window_s:g} s: curl {env.base_url}{config.health.path}",
            f"fly logs --app {env.app} --no-tail --json (new lines matching {w.error_pattern})",
            f"fly status --app {env.app} --json (machines not running)",
            "GitHub issues opened since the release ([github] repo, GITHUB_TOKEN)",
        ]
    return []


def section_checks(section: Section, config: ReleaseConfig) -> list[str]:
    health = config.health
    if section.key == "preflight":
        return [
            "fly configs name the right apps and check " + health.path,
            "archive folder writable",
            "target reachable",
            "workstream readiness recorded (judged at go/no-go)",
        ]
    if section.key == "verify_secrets":
        differ = ", ".join(getattr(config, "secrets_must_differ", ()) or ()) or "none"
        return [
            f"{len(config.required_secrets)} required secrets set on both apps",
            f"must differ between staging and production: {differ}",
            "public (neither redacted nor scanned): " + (", ".join(getattr(config, "public_secrets", ())) or "none"),
            f"every other value redacted and scanned for; shorter than {getattr(config, 'secret_min_length', 8)} "
            "characters stops the release",
        ]
    if section.key.startswith("deploy_") or section.key == "rollback":
        return [
            f"deploy completes; {health.path} answers status {health.expected_status!r} with a timestamp "
            f"under {health.max_age_s:g} s old, within {health.deadline_s:g} s"
        ]
    if section.key.endswith("_smoke"):
        return [f"{len(config.smoke_checks)} smoke checks (below), each under {config.max_latency_ms} ms"]
    if section.key == "go_no_go":
        blocking = sum(c.when_not_met == "blocking" for c in config.criteria)
        return [f"{len(config.criteria)} criteria (below), {blocking} blocking"]
    if section.key == "notify":
        return [
            "the message names the production URL, expected functionality, known limitations and "
            "feedback channel, and is delivered"
        ]
    if section.key == "watch":
        w = config.watch.get("fly") or next(iter(config.watch.values()), None)
        if w is None:
            return []
        return [
            f"availability >= {w.min_availability_pct:g}%, p95 <= {w.max_p95_ms:g} ms, "
            f"error lines <= {w.max_error_lines}; {w.failure_limit} failed measurements in a row breach",
            f"on a breach: {w.on_breach}",
        ]
    return []


def gate_consequence(section: Section) -> str:
    if section.key == "rollback":
        return "exit 5: production needs a person now"
    if section.key == "notify":
        return GATE_CONSEQUENCE["notify"]
    if section.key in PRODUCTION_CHANGING or section.key == "watch":
        return GATE_CONSEQUENCE["production"]
    return GATE_CONSEQUENCE["before production"]


def criteria_section(config: ReleaseConfig) -> str:
    rows = [(c.name, c.measure, c.threshold_text(), c.when_not_met) for c in config.criteria]
    return (
        "<h2>Go/No-Go criteria</h2><p class=muted>A blocking criterion not met is a no-go; an acceptable "
        "one is recorded as not met (but acceptable).</p>"
        + table(("Criterion", "Measure", "Threshold", "When not met"), rows)
    )


def smoke_section(config: ReleaseConfig) -> str:
    rows = [
        (c.name, f"{c.method} {c.path}", expectation(c), c.max_latency_ms, c.description) for c in config.smoke_checks
    ]
    return (
        "<h2>Smoke checks (staging, then production)</h2>"
        f"<p class=muted>Sent with a browser User-Agent, redirects not followed; test shop {text(config.shop)}."
        "</p>" + table(("Check", "Request", "Expects", "Max ms", "Plan step"), rows, numeric=(3,))
    )


def expectation(check) -> str:
    parts = [f"status {check.expect_status}"]
    parts += [f"body has {t!r}" for t in check.body_contains]
    parts += [f"body lacks {t!r}" for t in check.body_not_contains]
    parts += [f"{h} = {v!r}" for h, v in check.header_equals.items()]
    parts += [f"{h} has {v!r}" for h, v in check.header_contains.items()]
    parts += [f"no {h}" for h in check.header_absent]
    parts += [f"JSON {k} = {v!r}" for k, v in check.json_equals.items()]
    if check.webhook_hmac:
        parts.append(f"webhook signed: {check.webhook_hmac}")
    if check.user_agent != "browser":
        parts.append(f"User-Agent: {check.user_agent}")
    return "; ".join(parts)


def budget_section(config: ReleaseConfig) -> str:
    rows = [(key.replace("_", " "), f"{minutes:g} min") for key, minutes in config.timeline_minutes.items()]
    total = sum(config.timeline_minutes.values())
    return (
        "<h2>Budgets</h2><p class=muted>From the plan's Deployment Timeline; the report flags any step over "
        "its budget.</p>" + table(("Step", "Budget"), rows + [("total", f"{total:g} min")], numeric=(1,))
    )


def approval_section() -> str:
    return (
        "<h2>Approval</h2><p>I reviewed the steps, checks, budgets and gates above for the configuration "
        "and runbooks commit named at the top.</p>"
        + facts([("Reviewer", ""), ("Date", ""), ("Decision", "approve / request changes")])
    )
