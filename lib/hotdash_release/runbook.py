"""What runbook cells call: one object per running section of the plan.

A cell reads like a line of the plan (`run.deploy()`, `run.check_health()`); this
module does the work, shows results as tables, records them (redacted) under
<release dir>/results/, and `run.gate()` decides whether the release goes on.

What only a person can confirm (the manual smoke checks, the go/no-go call) is recorded
the same way, as attestations (attest.py): ticked in JupyterLab widgets (widgets.py) or
given as the runbook's `attestations` parameter in a headless run.
"""

from __future__ import annotations

import base64
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .archive.seal import deployed_image, watched_release
from .checks import http as checks
from .checks.database import DatabaseResult, check_database
from .checks.supabase import SupabaseResult, check_supabase
from .checks.watch import MachineWatch, NewLogLines, WatchResult, check_watch_minutes, watch_production
from .config import ReleaseConfig, load_config
from .decisions import approval, attest
from .decisions.gonogo import Decision, collect_measures, decide, person_required, with_person_decision
from .decisions.readiness import read_readiness
from .decisions.release_gate import World, production_gate
from .errors import DeployRefused, GateFailed, Refused, ReleaseError, SecretError, TargetError, UsageError
from .integrations.feedback import FeedbackResult, issues_opened_since
from .integrations.notify import (
    NotificationResult,
    compose_message,
    compose_watch_closing,
    compose_watch_opening,
    send_notification,
)
from .interactive import recorded
from .interactive.session import default_release_dir, is_session
from .interactive.widgets import DecisionPanel, ManualChecksPanel, RecordView, evidence_by_check
from .paths import RUNBOOKS_DIR
from .plan import PLAN, Section, section_for
from .record import events
from .record.events import recorded_results, refuse_if_sealed
from .results import (
    default_operator,
    read_all_results,
    read_section_result,
    results_path,
    utc_now,
    write_json_atomic,
)
from .secrets.required import (
    SUPABASE_SECRETS,
    redactor_for,
    require_values,
    smoke_secret_names,
    verify_required_secrets,
)
from .tables import Message, ResultTable, ShowsAsRecord, Table, html_table, pandas, record_rows
from .targets import make_target, secret_source_for
from .targets.base import Release, Target, machines_on_image, nothing_to_roll_back_to, released_image, serving

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class CheckItem(ShowsAsRecord):
    """One line of the pre-deployment checklist."""

    item: str
    ok: bool
    detail: str
    checked: str = "automatic"  # automatic | later section | not checked here

    def as_row(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class DeploymentResult(ShowsAsRecord):
    app: str
    ok: bool
    version: int | None
    status: str
    image_ref: str
    previous_image: str
    url: str
    detail: str

    def as_row(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class RollbackResult(ShowsAsRecord):
    app: str
    ok: bool
    from_image: str
    to_version: int | None
    to_image: str
    new_version: int | None
    detail: str

    def as_row(self) -> dict:
        return asdict(self)


def open_section(
    kind: str,
    *,
    environment: str = "",
    target: str = "",
    config_path: str = "",
    release_dir: str = "",
    operator: str = "",
    attestations: Sequence = (),
    watching: str = "",
    watch_minutes: float = 0.0,
) -> SectionRun:
    """Start a section: load and validate the configuration, connect to the target.

    release_dir "": the JupyterLab session folder the kernel runs in, else outputs/interactive/<date>.
    watching: a later watch's sealed release folder (`runbook watch`); watch_minutes > 0: its window.
    """
    config = load_config(_config_file(config_path))
    section = section_for(kind, environment or None)
    target_name = target or config.default_target
    folder = Path(release_dir) if release_dir else default_release_dir()
    return SectionRun(
        config,
        section,
        target_name,
        folder,
        operator or default_operator(),
        attestations=attestations,
        watching=watched_release(watching) if watching else None,
        watch_minutes=watch_minutes,
    )


def _config_file(config_path: str) -> Path | None:
    """ "": the default ($HOTDASH_CONFIG or runbooks/hotdash.toml); a relative path that is not
    found where the kernel runs (a session folder, papermill's cwd) is taken from runbooks/."""
    if not config_path:
        return None
    path = Path(config_path)
    return path if path.is_absolute() or path.exists() else RUNBOOKS_DIR / path


class SectionRun:
    """One section of one release: what it checked, and whether the release may go on."""

    def __init__(
        self,
        config: ReleaseConfig,
        section: Section,
        target_name: str,
        release_dir: Path,
        operator: str,
        *,
        attestations: Sequence = (),
        watching: Path | None = None,
        watch_minutes: float = 0.0,
    ) -> None:
        refuse_if_sealed(release_dir)  # a sealed release is read-only to every path, papermill's too
        self.config = config
        self.watching = watching  # a later watch: the sealed release it follows
        self.watch_minutes = check_watch_minutes(watch_minutes)
        self.section = section
        self.environment = config.environment(section.environment) if section.environment else None
        self.target_name = target_name
        self.target: Target = make_target(config, target_name)
        self.release_dir = release_dir
        self.release_id = release_dir.name
        self.operator = operator
        self.started_at = utc_now()
        self._records: dict[str, Any] = {}
        self._measures: dict[str, Any] = {}
        self._failures: list[str] = []
        self._warnings: list[str] = []
        self._advisory: set[str] = set()  # records that inform, never fail the gate (feedback, alert-only watch)
        self._decision: Decision | None = None
        self._refusal = ""  # why this section refused to change production, if it did
        self._views: list[RecordView | ManualChecksPanel | DecisionPanel] = []  # redrawn after each change
        self._saved: tuple[str, list[str]] = ("running", [])  # the outcome and failures last recorded
        self._gated = False  # the gate cell has run: later attestations and decisions re-run it
        self._traceback: list[str] = []  # of the error the gate cell raised, kept out of its output
        # What production served before this release first deployed it: a section run again
        # (a lab session) keeps the first record, so that a rollback restores what was there.
        # Only what this release's log vouches for: a hand-edited result brings nothing back.
        earlier_result = recorded_results(release_dir)[0].get(section.key) or {}
        earlier = earlier_result.get("records") or {}
        if earlier.get("serving_before"):
            self._records["serving_before"] = earlier["serving_before"]
            made = [*(earlier.get("earlier_deployments") or []), earlier.get("deployment") or {}]
            self._records["earlier_deployments"] = [d for d in made if d.get("version") is not None]
        self._secret_source = secret_source_for(config, target_name, self.target)
        self.redactor = redactor_for(config, self._secret_source)
        redact_tracebacks(self.redactor, keep=self._keep_traceback)
        self._ledger = attest.Ledger(attest.required_for(section.key, config.manual_checks))
        # A person's attestations stand until that person withdraws them: a re-run of the
        # section (Run All, a restarted kernel) shows them again instead of erasing them.
        for row in earlier_result.get("attestations") or []:
            if row.get("source") == "widget":
                self._ledger.add(attest.Attestation(**{k: row[k] for k in ("check", "by", "at", "note", "source")}))
        for given in attest.from_parameters(attestations, section_key=section.key, manual_checks=config.manual_checks):
            self._ledger.add(replace(given, note=self.redactor.redact(given.note)))
        self._measures.update(attest.measures_for(section.key, section.environment, self._ledger))
        self._save("running")

    # -- identity -------------------------------------------------------------------------
    @property
    def app(self) -> str:
        env = self.environment or self.config.environment("production")
        return env.app

    def _repr_html_(self) -> str:
        rows = {
            "section": self.section.title,
            "release": self.release_id,
            "environment": self.section.environment or "staging and production",
            "app": self.app,
            "target": self.target_name,
            "operator": self.operator,
            "configuration": str(self.config.path),
            "started": self.started_at,
        }
        return html_table(record_rows(rows))

    # -- pre-deployment checklist ---------------------------------------------------------
    def checklist(self) -> ResultTable:
        items = [
            CheckItem(
                "Release configuration valid",
                True,
                f"{self.config.path.name}: "
                f"{len(self.config.smoke_checks)} smoke checks, {len(self.config.criteria)} criteria",
            )
        ]
        production_ready = True
        for env in self.config.environments.values():
            item = self._fly_config_item(env)
            items.append(item)
            production_ready &= item.ok or env.name != "production"
        items.append(self._archive_item())
        items.append(self._target_item())
        databases = [self._check_database(env) for env in self.config.environments.values()]
        items += [CheckItem(f"Database connected (Supabase): {db.app}", db.ok, db.detail) for db in databases]
        self._record("databases", {"title": "Databases", "rows": [db.as_row() for db in databases]})
        later = [
            ("Core functionality working (Shopify OAuth, dashboard, routes)", "staging smoke test"),
            ("Health checks operational (/health endpoint)", "health check after each deploy"),
        ]
        items += [CheckItem(name, True, f"checked by: {where}", "later section") for name, where in later]
        self._measures["production_config_ready"] = production_ready
        return self._record("checklist", ResultTable.of("Pre-deployment checklist", items))

    def _fly_config_item(self, env) -> CheckItem:
        """The environment's fly.toml: right app, a check on the health endpoint, a valid strategy."""
        import tomllib

        from .targets.fly import deploy_strategy, fly_config_problems

        name = f"{env.name.capitalize()} config exists ({env.fly_config})"
        path = self.config.base_dir / env.fly_config
        if not path.is_file():
            return CheckItem(name, False, f"{path} not found")
        try:
            fly = tomllib.loads(path.read_text(encoding="utf-8"))
        except tomllib.TOMLDecodeError as exc:
            return CheckItem(name, False, f"not valid TOML: {exc}")
        problems = fly_config_problems(fly, app=env.app, health_path=self.config.health.path)
        return CheckItem(
            name,
            not problems,
            "; ".join(problems)
            or f"app {env.app}, health check {self.config.health.path}, strategy {deploy_strategy(fly)}",
        )

    def _archive_item(self) -> CheckItem:
        try:
            self.release_dir.mkdir(parents=True, exist_ok=True)
            probe = self.release_dir / ".write-probe"
            probe.write_text("ok")
            probe.unlink()
        except OSError as exc:
            return CheckItem("Archive folder writable", False, f"{self.release_dir}: {exc.strerror}")
        return CheckItem("Archive folder writable", True, str(self.release_dir))

    def _target_item(self) -> CheckItem:
        """The target answers for every app; on Fly, the token is also good (`fly auth whoami`)."""
        from .targets.fly import FlyTarget

        rows = []
        try:
            if isinstance(self.target, FlyTarget):
                rows.append(f"fly auth whoami: {self.target.whoami()}")
            for env in self.config.environments.values():
                status = self.target.status(env.app)
                rows.append(f"{env.app}: {status.state}" + (f" v{status.version}" if status.version else ""))
        except ReleaseError as exc:
            return CheckItem(f"Deployment target ready ({self.target_name})", False, self.redactor.redact(str(exc)))
        return CheckItem(f"Deployment target ready ({self.target_name})", True, "; ".join(rows))

    def _check_database(self, env, *, connect_timeout_s: int = 5) -> DatabaseResult:
        """The app's DATABASE_URL, resolved here (never a parameter): connect, select 1, identify.
        On Fly from the runner with <ENV>_DATABASE_URL, TLS required (targets.fly.database_sslmode)."""
        local = self.target_name == "local"
        secret = "DATABASE_URL" if local else f"{env.name.upper()}_DATABASE_URL"
        try:
            url = require_values(self._secret_source, env.app, ("DATABASE_URL",))["DATABASE_URL"]
        except SecretError:
            return DatabaseResult(env.app, secret, False, f"{secret}: no value available for {env.app}")
        sslmode = None if local else self.config.target_settings(self.target_name).database_sslmode
        return check_database(
            url,
            app=env.app,
            secret=secret,
            sslmode=sslmode,
            connect_timeout_s=connect_timeout_s,
            redactor=self.redactor,
        )

    def _schema_version(self, env) -> int | None:
        """The schema version the app's migrations recorded; None when it cannot be read."""
        result = self._check_database(env, connect_timeout_s=2)
        return result.schema_version if result.ok else None

    def readiness(self) -> ResultTable:
        readiness = read_readiness(self.config.readiness_file)
        self._measures.update(readiness.measures())
        table = ResultTable.of(
            f"Workstream readiness: {readiness.summary()}",
            readiness.workstreams,
            ok=readiness.blocking_in_progress == 0,
        )
        if not table.ok:
            self._warnings.append(readiness.summary())
        # Readiness informs the go/no-go criteria; it does not stop preflight by itself.
        self._records["readiness"] = {
            "summary": readiness.summary(),
            "rows": list(table.rows),
            "blocking_in_progress": readiness.blocking_in_progress,
        }
        self._save("running")
        return table

    # -- step 1: verify secrets -------------------------------------------------------------
    def verify_secrets(self) -> ResultTable:
        """Required secret names on every app of the plan: set, staged or missing (never values)."""
        from .secrets.required import find_shared_values, mark_shared_values

        rows = []
        for env in self._environments():
            try:
                rows += verify_required_secrets(self.target, env.app, self.config.required_secrets)
            except ReleaseError as exc:
                self._failures.append(f"{env.app}: cannot list secrets: {self.redactor.redact(str(exc))}")
        # Equal digests on staging and production: e.g. production on the staging database.
        shared = find_shared_values(rows, self.config.secrets_must_differ)
        rows = mark_shared_values(rows, shared)
        self._failures += [value.describe() for value in shared if value.blocking]
        if "DATABASE_URL" in self.config.secrets_must_differ and not self.environment:
            self._compare_database_identities(shared)
        self._warnings += [value.describe() for value in shared if not value.blocking]
        table = ResultTable.of("Required secrets", rows)
        self._measures["required_secrets_present"] = table.ok and bool(rows)
        return self._record("secrets", table)

    def _compare_database_identities(self, shared) -> None:
        """must_differ by what the URLs reach, not by their text: two URLs that differ (another
        host name, user or option) but open one database are one database."""
        from .secrets.required import same_databases

        if any(value.name == "DATABASE_URL" for value in shared):
            return  # equal values: already named
        databases = [self._check_database(env) for env in self.config.environments.values()]
        self._record(
            "database_identities",
            {
                "title": "Database identities",
                "rows": [
                    {k: db.as_row()[k] for k in ("app", "secret", "ok", "database", "system_identifier", "detail")}
                    for db in databases
                ],
            },
        )
        self._failures += same_databases(databases)

    # -- steps 2 and 4: deploy -------------------------------------------------------------
    def deploy(self, defect: str = "") -> DeploymentResult:
        """`flyctl deploy --config <fly config> --app <app>` on this section's target.

        Production first: this release's records must show what the plan requires before
        production changes (else DeployRefused, nothing deployed), and what production serves
        is recorded before anything changes. Then the machines must serve the new image."""
        env = self._require_environment()
        settings = self.config.target_settings(self.target_name)
        if defect and self.target_name != "local":
            raise UsageError(
                f"rehearsal_defect: only the local target ships rehearsal defects, not {self.target_name!r}"
            )
        if env.name == "production":
            self._refuse_unless_production_may_change()
        previous = ""
        schema_before = None
        try:
            status = self.target.status(env.app)
            previous = status.image_ref or ""
            if env.name == "production" and "serving_before" not in self._records:
                self._record("serving_before", {**serving(status), "recorded_at": utc_now()})
            schema_before = self._schema_version(env)
            release = self.target.deploy(
                env.app,
                config_file=str(self.config.base_dir / env.fly_config),
                build_args={"HOTDASH_DEFECT": defect} if defect else {},
                strategy=settings.strategy,
                wait_timeout_s=settings.wait_timeout_s,
                reason=f"release {self.release_id}",
                user=self.operator,
                on_output=self._print_output,
            )
            wrong = self._verify_machines(env.app, release.image_ref)
            result = DeploymentResult(
                env.app, not wrong, release.version, release.status, release.image_ref, previous, self._url(), wrong
            )
        except TargetError as exc:  # a DeployError carries the failed release, when one was made
            failed = getattr(exc, "release", None)
            result = DeploymentResult(
                env.app,
                False,
                failed.version if failed else None,
                failed.status if failed else "not started",
                failed.image_ref if failed else "",
                previous,
                self._url(),
                self.redactor.redact(str(exc)),
            )
        self._measures[f"{env.name}_deploy_complete"] = result.ok
        self._event(
            "deploy_verified" if result.ok else "deploy_failed",
            app=env.app,
            version=result.version,
            image_ref=result.image_ref,
            previous_image=previous,
        )
        # Migrations run when the new build starts: the schema before and after, for the report.
        self._record("schema", {"app": env.app, "before": schema_before, "after": self._schema_version(env)})
        return self._record("deployment", result)

    def _refuse_unless_production_may_change(self) -> None:
        """Guard at the point of change: the runner's order is a convenience, this is the gate.
        It reads the release's own record (what its log vouches for), asks whether the release is
        live, and checks what the record says of staging against staging itself."""
        from .locks import live_holder

        apps = [env.app for env in self.config.environments.values()]
        results, unrecorded = recorded_results(self.release_dir)
        world = World(live_holder(self.release_dir) is not None, tuple(unrecorded))
        if not unrecorded:
            world = self._staging_now(world)
        verdict = production_gate(results, apps, world)
        self._record("preconditions", verdict)
        if verdict.ok and self.config.approval.required:
            self._refuse_unless_approved(results, world)
        if verdict.ok:
            # The GO this deploy runs under, kept with it: a later change of mind never hides it.
            taken = events.decisions(self.release_dir)
            self._record("ran_under_decision", taken[-1] if taken else {})
            self._event("deploy_requested", app=self._require_environment().app)
            return
        self._refuse(f"{self.section.title}: refused, nothing deployed: {verdict.line()}", DeployRefused)

    # -- approvals: a second person signs what ships ---------------------------------------------
    def _shipping_digest(self, results: Mapping[str, dict], staging_image: str) -> tuple[dict, str]:
        """What ships, as approval.shipping_payload names it, and its digest."""
        decided = (results.get("go_no_go") or {}).get("records") or {}
        payload = approval.shipping_payload(
            release_id=self.release_id,
            app=self.config.environment("production").app,
            image=staging_image,
            config_path=self.config.path,
            runbooks=RUNBOOKS_DIR,
            decision=decided.get("decision") or {},
            criteria=(decided.get("criteria") or {}).get("rows") or [],
        )
        return payload, approval.digest_of(payload)

    def _approval_request(self) -> None:
        """At a GO: what must be approved, by whom, and the command to give them (shown and recorded)."""
        policy = self.config.approval
        if not policy.required or self._decision is None or not self._decision.go:
            if self._records.pop("approval_request", None) is not None:
                self._save("running")
            return
        own = {self.section.key: {"records": self._records}}
        results = {**recorded_results(self.release_dir)[0], **own}
        staging = ((results.get("deploy_staging") or {}).get("records") or {}).get("deployment") or {}
        payload, digest = self._shipping_digest(results, staging.get("image_ref") or "")
        verdict = approval.judge(policy, [], digest=digest, release_id=self.release_id, operator=self.operator)
        request = {
            "digest": digest,
            "payload": payload,
            "required": policy.required,
            "prevent_self_approval": policy.prevent_self_approval,
            "who_may_approve": verdict.who_may_approve(),
            "command": f"runbook approve {self.release_id} --reason '...'",
        }
        if (self._records.get("approval_request") or {}).get("digest") != digest:
            self._event("approval_requested", digest=digest, required=policy.required)
        self._record("approval_request", request)

    def _refuse_unless_approved(self, results: Mapping[str, dict], world: World) -> None:
        """Approvals of the digest of what ships now (staging's image as the target serves it, the
        configuration and runbooks on disk, the recorded decision): waits up to [approval]
        wait_minutes for them, then refuses naming who may approve and the command."""
        import os

        from .integrations.github import CiRun

        policy = self.config.approval
        ci = CiRun.from_environ(os.environ)
        # Read once: GitHub's environment reviewers approved before this job could start.
        reviews = self._github_reviews(ci) if ci else []
        archive_root = self.release_dir.parent.parent
        deadline = time.monotonic() + policy.wait_minutes * 60
        said = ""
        while True:
            # Computed again on every look: what ships may change while the deploy waits.
            _, digest = self._shipping_digest(results, world.staging_image or "")
            found, unreadable = approval.read_approvals(archive_root, self.release_id)
            found += [
                approval.Approval(self.release_id, digest, r.login, utc_now(), r.comment, "", source="github")
                for r in reviews
            ]
            verdict = approval.judge(
                policy,
                found,
                digest=digest,
                release_id=self.release_id,
                operator=self.operator,
                dispatched_by=ci.actor if ci else "",
            )
            if verdict.ok or time.monotonic() >= deadline:
                break
            line = f"waiting for approval: {verdict.line(self.release_id)}"
            if line != said:
                self._print_output(line)
                said = line
            time.sleep(2)  # approvals arrive from another person's machine: nothing to wait on but the folder
        signers = policy.allowed_signers.read_text() if policy.allowed_signers else ""
        self._record(
            "approvals", {**verdict.as_row(), "digest": digest, "unreadable": unreadable, "allowed_signers": signers}
        )
        if not verdict.ok:
            self._refuse(
                f"{self.section.title}: refused, nothing deployed: missing: {verdict.line(self.release_id)}",
                DeployRefused,
            )
        for given in verdict.accepted:
            self._event(
                "approval_accepted",
                approver=given["approver"],
                fingerprint=given.get("fingerprint", ""),
                digest=digest,
                source=given.get("source", "ssh"),
            )

    def _github_reviews(self, ci) -> list:
        """In GitHub Actions: the run's approved reviews of the production environment (GitHub's
        reviewer approved this run, which deploys what ships); none when they cannot be read."""
        import os

        from .errors import DispatchError

        try:
            return ci.production_approvers(os.environ)
        except (DispatchError, UsageError) as exc:
            self._warnings.append(f"GitHub run approvals not read: {self.redactor.redact(str(exc))}")
            return []

    def _staging_now(self, world: World) -> World:
        """What staging serves now, and whether it answers its health check (one look)."""
        staging = self.config.environment("staging")
        try:
            image = self.target.status(staging.app).image_ref or ""
            url = self.target.url(staging.app) if self.target_name == "local" else staging.base_url
        except TargetError as exc:
            return replace(
                world, staging_image="", staging_healthy=False, staging_detail=self.redactor.redact(str(exc))
            )
        if not url:
            return replace(world, staging_image=image, staging_healthy=False, staging_detail="staging is not running")
        health = self._health_at(url, min(self.config.health.deadline_s, 10.0))
        return replace(world, staging_image=image, staging_healthy=health.ok, staging_detail=health.detail)

    def _refuse(self, line: str, error: type[Refused] = Refused) -> None:
        """One line naming what is missing and what to run; recorded, nothing done."""
        self._refusal = line
        self._event("refused", line=line)
        self._save("refused", [line])
        raise error(line, section=self.section.key, findings=[line])

    def _verify_machines(self, app: str, image_ref: str) -> str:
        """Record each machine's image against the one deployed; "" when all serve it, else why not."""
        rows = machines_on_image(self.target.status(app), image_ref)
        self._record("machines", {"title": f"Machines of {app}: deployed vs serving image", "rows": rows})
        wrong = [row for row in rows if not row["ok"]]
        return "; ".join(
            f"machine {row['machine']} ({row['state']}) serves {row['serving_image'] or 'nothing'}, not {image_ref}"
            for row in wrong
        )

    def app_url(self) -> str:
        """The URL this release deployed its environment to, and nothing else: on the local
        platform the platform's own URL (never the configured remote one); refused (one line)
        when this release did not deploy the environment, or it is not running."""
        env = self._require_environment()
        missing = self._not_deployed_here(env)
        if missing:
            self._refuse(f"{self.section.title}: refused, nothing checked: {missing}")
        url = self._url()
        if not url:
            self._refuse(
                f"{self.section.title}: refused, nothing checked: {env.app} is not running on the {self.target_name} "
                f"target (run deploy_{env.name} first)"
            )
        return url

    def _url(self) -> str:
        """The environment's URL on the target; "" when the local platform does not run it."""
        env = self._require_environment()
        if self.target_name == "local":
            return self.target.url(env.app) or ""
        return env.base_url

    def _not_deployed_here(self, env) -> str:
        """ "" when this release deployed (or rolled back) the environment, or a later watch follows
        a sealed release that did; else what is missing and what to run."""
        if self.watching is not None or self._records.get("deployment") or self._records.get("rollback"):
            return ""
        recorded, _ = recorded_results(self.release_dir)
        deployed = ((recorded.get(f"deploy_{env.name}") or {}).get("records") or {}).get("deployment")
        if deployed:
            return ""
        return f"{env.name} was not deployed in this release (no recorded deploy_{env.name}: run it first)"

    def check_health(self) -> checks.HealthResult:
        """`curl <app>/health`, expecting {"status":"ok","timestamp":"..."}, retried up to a deadline."""
        env = self._require_environment()
        spec = self.config.health
        change = self._records.get("deployment") or self._records.get("rollback")
        # After a failed deploy or rollback one look is enough to record whether the app answers at all.
        deadline = spec.deadline_s if not change or change["ok"] else 1.0
        result = self._health_at(self.app_url(), deadline)
        self._measures[f"{env.name}_health_ok"] = result.ok
        return self._record("health", result)

    def _health_at(self, url: str, deadline_s: float) -> checks.HealthResult:
        spec = self.config.health
        with checks.make_client() as client:
            return checks.check_health(
                client,
                url + spec.path,
                deadline_s=deadline_s,
                max_age_s=spec.max_age_s,
                expected_status=spec.expected_status,
                redactor=self.redactor,
            )

    def releases(self, limit: int = 10) -> Table:
        """`flyctl releases --app <app>`: the newest releases, for the record (`.frame()`: pandas)."""
        env = self._require_environment()
        return Table.of(f"Releases of {env.app}, newest first", self.target.releases(env.app)[:limit])

    def logs(self, limit: int = 20) -> Table:
        """`flyctl logs --app <app>`: the current release's last lines, redacted."""
        env = self._require_environment()
        lines = [self.redactor.redact(line) for line in self.target.logs(env.app, limit=limit)]
        return Table(f"Last {len(lines)} log lines of {env.app}", tuple({"log": line} for line in lines))

    # -- steps 3 and 5: smoke tests ---------------------------------------------------------
    def smoke_test(self) -> ResultTable:
        """The plan's smoke test, headless: each check proves one thing over HTTP, concurrently."""
        env = self._require_environment()
        try:
            values, have_values = require_values(self._secret_source, env.app, smoke_secret_names(self.config)), True
        except SecretError as exc:
            self._failures.append(str(exc))
            values, have_values = {}, False
        shop = self.config.shop
        handle = shop.split(".")[0]
        context = {
            **values,
            "shop": shop,
            "shop_handle": handle,
            "host": base64.b64encode(f"admin.shopify.com/store/{handle}".encode()).decode().rstrip("="),
        }
        with checks.make_client() as client:
            results = checks.run_smoke_checks(
                client, self.app_url(), self.config.smoke_checks, context=context, redactor=self.redactor
            )
        table = ResultTable.of(f"Smoke test {env.app}", results)
        self._measures[f"{env.name}_smoke_passed"] = table.ok and have_values
        return self._record("smoke", table)

    def check_supabase(self):
        """Database connected (Supabase): GET {SUPABASE_URL}/auth/v1/health with the anon key."""
        env = self._require_environment()
        if self.target_name == "local":
            # A rehearsal has no Supabase project to ask; say so rather than pretend.
            result = SupabaseResult(True, None, None, "not checked: a local rehearsal has no Supabase project")
            return self._record("supabase", result)
        try:
            values = require_values(self._secret_source, env.app, SUPABASE_SECRETS)
        except SecretError as exc:
            result = SupabaseResult(False, None, None, str(exc))
        else:
            with checks.make_client() as client:
                result = check_supabase(
                    client, values["SUPABASE_URL"], values["SUPABASE_ANON_KEY"], redactor=self.redactor
                )
        return self._record("supabase", result)

    def manual_checks(self) -> ManualChecksPanel:
        """What only a person in a browser can confirm (the plan's manual steps), next to the
        headless evidence for each: in JupyterLab a checkbox and a note per check; headless,
        the `attestations` parameter. Each attestation is recorded with who and when."""
        self._require_environment()
        descriptions = {check.name: check.description for check in self.config.smoke_checks}
        evidence = evidence_by_check(
            self.config.manual_checks, (self._records.get("smoke") or {}).get("rows", []), descriptions
        )
        url = self.app_url()
        self._record("manual_checks", {"title": f"Manual checks on {url}", "evidence": list(evidence.items())})
        return self._view(
            ManualChecksPanel(
                f"Manual checks on {url}",
                evidence,
                self._ledger,
                url=url,
                render=self._drawn("manual_checks"),
                section=self.section.key,
                on_attest=self._attest,
                on_withdraw=self._withdraw,
            )
        )

    # -- go/no-go ------------------------------------------------------------------------------
    def go_no_go(self) -> RecordView:
        """Judge the plan's criteria from what the earlier sections measured and people attested;
        shown as recorded, and again after every decision (`.decision` is the Decision itself)."""
        self._judge()
        return self._view(
            RecordView("Go/No-Go decision", render=self._drawn("decision"), view="decision", section=self.section.key)
        )

    @property
    def decision(self) -> Decision | None:
        """The go/no-go decision as judged last (None before go_no_go())."""
        return self._decision

    def attest_decision(self) -> DecisionPanel:
        """The call itself, made by a person: Go or No-go with a reason. A No-go stops the
        release whatever the criteria say; a Go cannot lift a blocking criterion."""
        if self.section.key != "go_no_go":
            raise UsageError(f"attest_decision: only the go/no-go section decides, not {self.section.key!r}")
        return self._view(
            DecisionPanel(
                self._ledger, on_decide=self._attest, render=self._drawn("decision_panel"), section=self.section.key
            )
        )

    def _judge(self) -> Decision:
        own = {self.section.key: {"measures": self._measures}}
        measures = collect_measures({**recorded_results(self.release_dir)[0], **own})
        criteria = self.config.criteria
        if is_session(self.release_dir):  # a person is at the keyboard: no GO before they decide
            criteria = person_required(criteria)
        decision = with_person_decision(decide(criteria, measures), self._ledger.decision)
        self._decision = decision
        criteria_ok = all(c.ok for c in decision.criteria)
        self._record("criteria", ResultTable.of("Go/No-Go criteria", decision.criteria, ok=criteria_ok))
        row = decision.as_row()
        taken = events.decisions(self.release_dir)
        if not taken or {k: taken[-1].get(k) for k in row} != row:  # appended, never overwritten
            self._event("decision_recorded", **row)
        self._record("decision", decision)
        self._approval_request()
        return decision

    def criteria_table(self) -> RecordView:
        """Each criterion: measured value, threshold, met / not met (acceptable) / blocking; shown
        as recorded, and again after every decision."""
        if self._decision is None:
            raise UsageError("criteria_table: run go_no_go() first")
        return self._view(
            RecordView("Go/No-Go criteria", render=self._drawn("criteria"), view="criteria", section=self.section.key)
        )

    # -- step 6: notify ------------------------------------------------------------------------
    def notify(self) -> NotificationResult:
        """Tell the CEO production is deployed: only when this release deployed and verified it."""
        production = self.config.environment("production")
        recorded, _ = recorded_results(self.release_dir)
        unverified = [
            f"{key} {(recorded.get(key) or {}).get('outcome') or 'not run'}"
            for key in ("deploy_production", "production_smoke")
            if (recorded.get(key) or {}).get("outcome") != "passed"
        ]
        deployed_at = (recorded.get("deploy_production") or {}).get("finished_at") or ""
        smoked_at = (recorded.get("production_smoke") or {}).get("finished_at") or ""
        if not unverified and smoked_at < deployed_at:  # found by the model test: a deploy run again since
            unverified = ["production_smoke ran before the last deploy_production"]
        if unverified:
            self._refuse(
                f"{self.section.title}: refused, nothing sent: production was not deployed and verified in this "
                f"release ({'; '.join(unverified)}): run deploy_production and production_smoke first"
            )
        status = self.target.status(production.app)
        message = compose_message(
            self.config.notification,
            release_id=self.release_id,
            operator=self.operator,
            image_ref=status.image_ref,
            served_at=status.url if self.target_name == "local" else None,
            watched_until=_clock_in(self.config.watch_settings(self.target_name).window_s),
        )
        result = send_notification(
            self.config.notification, self.redactor.redact(message), inbox_dir=self.release_dir.parent.parent
        )
        self._event("notification_sent" if result.ok else "notification_failed", channel=result.channel)
        return self._record("notification", result)

    # -- post-deployment: the watch during CEO testing ------------------------------------------
    def watch(self) -> WatchResult:
        """Production measured at an interval for the window: /health and its latency, new error
        lines in its logs, machines not running. A signal to the runner ends it early."""
        env = self._require_environment()
        settings = self._watch_settings()
        if self.watching is not None:
            # Which release this later watch follows, and whether production still serves it.
            self._record("watched_release", self._watched_release(env.app))
            self._advisory.add("opening_notification")
            opening = compose_watch_opening(
                self.config.notification, release_id=self.watching.name, watched_until=_clock_in(settings.window_s)
            )
            self._record("opening_notification", self._send(opening))
        print(
            f"watching {env.app} for {settings.window_s:g} s (until about {_clock_in(settings.window_s)}), "
            f"a measurement every {settings.interval_s:g} s",
            flush=True,
        )
        new_lines = NewLogLines(lambda: self.target.logs(env.app, limit=500))
        machines = MachineWatch(
            lambda: self.target.status(env.app).machines, lambda: [c.status for c in self.target.checks(env.app)]
        )

        def show(m) -> None:
            state = "ok" if m.ok else m.detail
            print(f"  +{m.elapsed_s:6.1f} s  HTTP {m.status_code}  {m.latency_ms} ms  {state}", flush=True)

        with checks.make_client() as client:
            result = watch_production(
                client,
                self.app_url() + self.config.health.path,
                settings,
                read_new_logs=new_lines,
                machines=machines,
                max_age_s=self.config.health.max_age_s,
                redactor=self.redactor,
                progress=show,
            )
        self._measures["production_watch_ok"] = result.ok
        if not result.ok and settings.on_breach == "alert":
            # Alert only: recorded and told, production stays as it is.
            self._advisory.add("watch")
            self._warnings.append(f"watch breached (on_breach = alert): {result.summary()}")
        return self._record("watch", result)

    def feedback_issues(self) -> Table:
        """The plan's "track CEO-reported issues": GitHub issues opened since the release started
        ([github] repo, GITHUB_TOKEN); informative, never a reason to roll back."""
        import os

        self._advisory.add("feedback")
        repo, token = self.config.github.repo, os.environ.get("GITHUB_TOKEN", "")
        since = _release_started(self.watching or self.release_dir, self.started_at)
        if not repo or not token:
            why = "no [github] repo configured" if not repo else "no GITHUB_TOKEN in the environment"
            result = FeedbackResult(False, repo or "", since, (), f"not checked: {why}")
        else:
            from .integrations.github import API_URL_ENV, DEFAULT_API_URL

            with checks.make_client() as client:
                result = issues_opened_since(
                    client,
                    repo,
                    since,
                    token=token,
                    api_url=os.environ.get(API_URL_ENV) or DEFAULT_API_URL,
                    labels=self.config.github.feedback_labels,
                    redactor=self.redactor,
                )
        self._record("feedback", result)
        title = f"Issues opened on {result.repo or 'GitHub'} since {since}" + (
            f" ({result.detail})" if result.detail else ""
        )
        return Table(title, tuple(issue.as_row() for issue in result.issues))

    def close_watch(self) -> NotificationResult:
        """The second, short message to the CEO: the watch is over, and how it went."""
        self._advisory.add("closing_notification")
        watched = self._records.get("watch") or {}
        outcome = watched.get("summary") or "the watch did not run"
        if watched.get("ok") is False:
            settings = self._watch_settings()
            outcome += " - production is being rolled back" if settings.on_breach == "rollback" else " - please hold"
        watched = self.watching.name if self.watching is not None else self.release_id
        message = compose_watch_closing(self.config.notification, release_id=watched, outcome=outcome)
        return self._record("closing_notification", self._send(message))

    def _send(self, message: str) -> NotificationResult:
        return send_notification(
            self.config.notification, self.redactor.redact(message), inbox_dir=self.release_dir.parent.parent
        )

    # -- rollback ------------------------------------------------------------------------------
    def rollback_candidate(self) -> Table:
        """`flyctl releases`, with what runs now and what a rollback restores: the image production
        served before this release's production deploy, as recorded then (never a guess from the list)."""
        env = self._require_environment()
        current = self.target.status(env.app).image_ref
        before = self._served_before() or {}
        restores = before.get("image_ref") or None
        rows = [
            dict(r.as_row(), current=r.image_ref == current, restores=restores is not None and r.image_ref == restores)
            for r in self.target.releases(env.app)[:10]
        ]
        what = f"v{before.get('version')} ({restores})" if restores else "nothing (no record of what was serving)"
        return Table(f"Releases of {env.app}: a rollback restores {what}", tuple(rows))

    def roll_back(self) -> RollbackResult:
        """Restore exactly what production served before this release's production deploy.

        If that image still serves (a build, release command or deploy that failed before
        rollout leaves the machines on it), nothing is redeployed: the later steps verify it.
        Without a record of what was serving there is nothing known to restore: refuse. When no
        complete release had what was serving (a first release) there is nothing to roll back to."""
        env = self._require_environment()
        schema_before = self._schema_version(env)
        current = self.target.status(env.app).image_ref or ""
        before = self._served_before()
        image = (before or {}).get("image_ref") or ""
        version = (before or {}).get("version")
        if before is None:
            result = RollbackResult(
                env.app,
                False,
                current,
                None,
                "",
                None,
                "refused: this release recorded no production deploy (results/deploy_production.json has no "
                "serving_before), so what production served before it is unknown; restore by hand",
            )
        elif not released_image(self.target.releases(env.app), image):
            # A first release: production served nothing, or an image no release had.
            result = RollbackResult(env.app, False, current, None, "", None, nothing_to_roll_back_to(env.app, image))
            image = ""
        elif not self._verify_machines(env.app, image):
            result = RollbackResult(
                env.app,
                True,
                current,
                version,
                image,
                None,
                f"v{version}'s image still serves: verified, nothing redeployed",
            )
        else:
            result = self._redeploy(env.app, current, version, image)
        self._note_schema_after_rollback(env, schema_before, restored=result.ok, image=image)
        self._event("rollback", app=env.app, ok=result.ok, to_image=result.to_image, detail=result.detail)
        return self._record("rollback", result)

    def _note_schema_after_rollback(self, env, schema_before: int | None, *, restored: bool, image: str) -> None:
        """A rollback redeploys an image; the database keeps every migration the failed build ran."""
        after = self._schema_version(env)
        self._record("schema", {"app": env.app, "before": schema_before, "after": after})
        if not image:
            return  # nothing was served before: no earlier image to read the schema
        deployed = recorded_results(self.release_dir)[0].get("deploy_production") or {}
        served_with = ((deployed.get("records") or {}).get("schema") or {}).get("before")
        if served_with is None or after is None or after <= served_with:
            return
        note = (
            f"the database schema is at v{after}, it was v{served_with} before this release's production deploy: "
            "migrations are not undone by a rollback"
        )
        if restored:
            self._warnings.append(note)
        else:
            self._failures.append(
                note + "; the restored image cannot use the migrated database, production needs a person"
            )

    def _served_before(self) -> dict | None:
        """This release's record of what production served before its production deploy; for a
        later watch (`watching`), the watched release's record: what was there before it."""
        recorded = recorded_results(self.release_dir)[0].get("deploy_production")
        if recorded is None and self.watching is not None:
            recorded = read_section_result(self.watching, "deploy_production")
        return ((recorded or {}).get("records") or {}).get("serving_before")

    def _watch_settings(self):
        settings = self.config.watch_settings(self.target_name)
        if not self.watch_minutes:
            return settings
        settings = replace(settings, minutes=self.watch_minutes)
        if settings.interval_s > settings.window_s:
            raise UsageError(
                f"watch_minutes: {self.watch_minutes:g} min is shorter than one interval ({settings.interval_s:g} s)"
            )
        return settings

    def _watched_release(self, app: str) -> dict:
        """The release a later watch follows: the image its production deploy verified, and what serves now."""
        image = deployed_image(self.watching)
        serving = self.target.status(app).image_ref
        row = {"release_id": self.watching.name, "image_ref": image, "serving_now": serving}
        if image != serving:
            # Not a breach to roll back from: what serves is another release's, not this one's.
            self._record("watched_release", row)
            raise UsageError(
                f"watching: production no longer serves release {self.watching.name} ({image}); it serves {serving}"
            )
        return row

    def _redeploy(self, app: str, current: str, version: int | None, image: str) -> RollbackResult:
        known = [r for r in self.target.releases(app) if r.image_ref == image]
        to = next((r for r in known if r.version == version), None) or Release(version or 0, "complete", image, "", "")
        try:
            release = self.target.rollback(
                app,
                to=to,
                wait_timeout_s=self.config.target_settings(self.target_name).wait_timeout_s,
                user=self.operator,
                reason=f"rollback of release {self.release_id}",
                on_output=self._print_output,
            )
        except ReleaseError as exc:
            return RollbackResult(
                app,
                False,
                current,
                version,
                image,
                getattr(getattr(exc, "release", None), "version", None),
                self.redactor.redact(str(exc)),
            )
        wrong = self._verify_machines(app, image)
        return RollbackResult(app, not wrong, current, version, image, release.version, wrong)

    def compare_secrets(self) -> ResultTable:
        """Each required secret's digest on this app against what the last good release recorded.

        Secrets are not part of an image: one changed since the last good release is still
        changed after a rollback, and only a person can say which value is right."""
        env = self._require_environment()
        from .archive.catalog import load_catalog

        root = self.release_dir.parent.parent
        try:
            good = load_catalog(root, write_cache=False).select(
                app=self.config.environment("production").app, outcome="released"
            )
        except (OSError, ValueError):
            good = []
        good = [r for r in good if r.target == self.target_name]
        recorded = read_section_result(root / good[0].folder, "verify_secrets") if good else None
        rows_then = ((recorded or {}).get("records") or {}).get("secrets", {}).get("rows") or []
        then = {row["name"]: row.get("digest") for row in rows_then if row.get("app") == env.app}
        if not then:
            where = (
                f"release {good[0].release_id} recorded no digests for {env.app}"
                if good
                else (
                    f"no earlier release of {self.config.environment('production').app} on {self.target_name} "
                    f"was released in {root}"
                )
            )
            table = ResultTable(f"Secrets of {env.app}: not compared ({where})", (), True)
            return self._record("secrets_since_last_good", table)
        now = {
            row.name: row.digest for row in verify_required_secrets(self.target, env.app, self.config.required_secrets)
        }
        rows = [
            {
                "name": name,
                "last_good_digest": then.get(name, ""),
                "digest_now": now.get(name, ""),
                "ok": then.get(name) == now.get(name),
            }
            for name in self.config.required_secrets
        ]
        changed = [row["name"] for row in rows if not row["ok"]]
        if changed:
            self._failures.append(
                f"{', '.join(changed)} changed since the last good release {good[0].release_id}: "
                "a rollback by image cannot restore a secret; production needs a person"
            )
        table = ResultTable(f"Secrets of {env.app} against release {good[0].release_id}", tuple(rows), not changed)
        return self._record("secrets_since_last_good", table)

    # -- the gate --------------------------------------------------------------------------------
    def gate(self) -> Message:
        """Decide: passed, or raise GateFailed (the release stops here) with the findings."""
        if self._refusal:
            self._save("refused", [self._refusal])
            raise DeployRefused(self._refusal, section=self.section.key, findings=[self._refusal])
        self._gated = True
        failures = self._gate_findings()
        self._save("failed" if failures else "passed", failures)
        if failures:
            raise GateFailed(
                f"{self.section.title}: gate not met: " + " | ".join(failures),
                section=self.section.key,
                findings=failures,
            )
        return Message(f"{self.section.title}: passed")

    def _gate_findings(self) -> list[str]:
        """What stops the release, from this section's records: empty when it may go on."""
        return self._failures + [
            f"{name}: {_why(value)}"
            for name, value in self._records.items()
            if isinstance(value, dict)
            and value.get("ok") is False
            and name != "secrets_since_last_good"
            and name not in self._advisory
        ]

    # -- attestations (widget callbacks) ------------------------------------------------------------
    def _attest(self, check: str, note: str) -> None:
        """A tick or a decision in JupyterLab, by this section's operator, now."""
        attestation = attest.Attestation(
            check, self.operator, utc_now(), self.redactor.redact(note.strip())[: attest.NOTE_MAX_CHARS], "widget"
        )
        attest.require_reason(attestation)
        refuse_if_sealed(self.release_dir)
        self._ledger.add(attestation)
        self._attestations_changed()

    def _withdraw(self, check: str) -> None:
        refuse_if_sealed(self.release_dir)
        self._ledger.withdraw(check)
        self._attestations_changed()

    def _keep_traceback(self, lines: list[str]) -> None:
        """The traceback of an error a cell of this section showed as one line: kept in its record."""
        self._traceback = lines
        try:
            self._save(*self._saved)
        except ReleaseError:  # a sealed session: its record stays as archived
            pass

    def _view(self, view):
        self._views.append(view)
        return view

    def _drawn(self, view: str):
        """A view of this section's results as written to disk (what the archive will show)."""
        return lambda: recorded.VIEWS[view](read_section_result(self.release_dir, self.section.key) or {})

    def _attestations_changed(self) -> None:
        """Measures follow the attestations; a decision taken is taken again; a gate that has run
        decides again at once (the record never waits for a cell to be re-run by hand)."""
        self._measures.update(attest.measures_for(self.section.key, self.section.environment, self._ledger))
        if self._decision is not None:
            self._judge()
        if self._gated and not self._refusal:
            failures = self._gate_findings()
            self._save("failed" if failures else "passed", failures)
        else:
            self._save("running")
        for view in self._views:
            view.refresh()

    # -- plumbing --------------------------------------------------------------------------------
    def _record(self, name: str, value):
        self._records[name] = self.redactor.redact_obj(_jsonable(value))
        self._save("running")
        return value

    def _save(self, outcome: str, failures: list[str] | None = None) -> None:
        refuse_if_sealed(self.release_dir)  # the one writer of results: a sealed session stays as archived
        self._saved = (outcome, list(failures or []))
        write_json_atomic(
            results_path(self.release_dir, self.section.key),
            {
                "section": self.section.key,
                "title": self.section.title,
                "environment": self.section.environment,
                "target": self.target_name,
                "app": self.app,
                "operator": self.operator,
                "release_id": self.release_id,
                "config_path": str(self.config.path),
                "attestations": self._ledger.rows(),
                "started_at": self.started_at,
                "finished_at": utc_now(),
                "outcome": outcome,
                "failures": failures or [],
                "warnings": self._warnings,
                "measures": self._measures,
                "records": self._records,
            }
            | ({"traceback": self._traceback} if self._traceback else {}),
        )
        events.note_result(self.release_dir, self.section.key, by=self.operator, outcome=outcome)

    def _event(self, kind: str, **data) -> None:
        events.append(self.release_dir, kind, by=self.operator, section=self.section.key, **data)

    def _print_output(self, line: str) -> None:
        print(self.redactor.redact(line), flush=True)

    def _require_environment(self):
        if self.environment is None:
            raise UsageError(f"environment: section {self.section.key!r} has no environment")
        return self.environment

    def _environments(self):
        return [self.environment] if self.environment else list(self.config.environments.values())


def _clock_in(seconds: float) -> str:
    """The UTC time of day `seconds` from now, as a person reads it."""
    from datetime import UTC, datetime, timedelta

    return f"{datetime.now(UTC) + timedelta(seconds=seconds):%H:%M} UTC"


def _release_started(release_dir: Path, fallback: str) -> str:
    """When this release started: the earliest start its sections recorded (ISO 8601, UTC)."""
    starts = [r.get("started_at") for r in read_all_results(release_dir).values() if r.get("started_at")]
    return min(starts, default=fallback)


def redact_tracebacks(redactor, *, keep: Callable[[list[str]], None] | None = None) -> None:
    """Errors a cell raises are shown in the notebook, and so archived: redact them too.

    IPython hands such errors to the handler, which must show them itself: it redacts the
    exception's message in place (the kernel's error reply reads it afterwards) and every
    traceback line, then shows them as IPython would. An error of this package's family
    (a gate that stopped the release, a refusal, a bad parameter) says everything on its one
    line: it is shown alone, and its traceback goes to `keep` (the section's record).
    """
    try:
        from IPython import get_ipython
    except ImportError:
        return
    shell = get_ipython()
    if shell is None or not redactor:
        return

    def show_redacted(shell, etype, evalue, tb, tb_offset=None):
        evalue.args = (redactor.redact(str(evalue)),)
        lines = shell.InteractiveTB.structured_traceback(etype, evalue, tb, tb_offset=tb_offset)
        lines = [redactor.redact(line) for line in lines]
        if isinstance(evalue, ReleaseError):
            if keep is not None:
                keep([_ANSI.sub("", line) for line in lines])
            lines = [f"\x1b[1;31m{etype.__name__}\x1b[0m: {evalue}"]
        shell._showtraceback(etype, evalue, lines)
        return lines

    shell.set_custom_exc((Exception,), show_redacted)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _jsonable(value: Any) -> Any:
    if isinstance(value, ResultTable):
        return {"title": value.title, "rows": list(value.rows), "ok": value.ok}
    if isinstance(value, Decision):
        return {**value.as_row(), "ok": value.go}
    if hasattr(value, "as_row"):
        return {**value.as_row(), "ok": getattr(value, "ok", True)}
    return value


def _why(record: dict) -> str:
    if "rows" in record:
        bad = [
            r
            for r in record["rows"]
            if r.get("ok") is False or r.get("blocking") is True or r.get("verdict") == "blocking"
        ]
        names = [_named(r) for r in bad]
        return f"{len(bad)} failed: " + ", ".join(names) if bad else record.get("title", "failed")
    if record.get("breaches"):  # the watch: what breached, in its words
        return "; ".join(str(b.get("what")) for b in record["breaches"])
    return str(record.get("detail") or record.get("explanation") or "failed")


def _named(row: dict) -> str:
    """A failed row by name, with the first line of its detail: a failing target check shows
    the tool's own message (already redacted), not only "Deployment target ready (fly)"."""
    name = str(row.get("name") or row.get("item") or row.get("criterion") or row)
    detail = str(row.get("detail") or "").strip().splitlines()
    return f"{name} ({detail[0][:200]})" if detail and "item" in row else name


def describe_plan() -> pd.DataFrame:
    """The plan's sections in order, with their notebooks (for README and --help)."""
    return pandas().DataFrame(
        [{"section": s.key, "title": s.title, "notebook": s.notebook, "environment": s.environment or ""} for s in PLAN]
    )


__all__ = ["SectionRun", "default_operator", "describe_plan", "open_section"]
