"""The release configuration (runbooks/hotdash.toml), validated before anything runs.

Every problem is a ConfigError naming the dotted key and what is allowed, so a bad
file stops a release with one line and nothing deployed.

Why hand-written checks and not a schema library (pydantic was considered, issue 19): the
values that got through (nan, inf, a notification file outside the archive) slipped past
two helpers, ``_Table.number`` and the notification's ``file``. Every number of the file
goes through ``number``, and the file the release writes to through ``relative_path``, so
fixing those two places closes the hole for every key. pydantic would refuse nan and inf
too (``allow_inf_nan=False``), but its messages ("Input should be a finite number") would
have to be translated back to today's one-line ``KEY: what is allowed`` for each key, its
models would duplicate the frozen dataclasses the rest of the package reads, and it would
add a compiled dependency (not installed today) to every kernel, which imports this module
before its first cell. Instead tests/test_config.py gives every number a nan, inf and sign
case, table-driven, so a check removed from any key fails a test.
"""

from __future__ import annotations

import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import urlsplit

from .checks.database import SSLMODES as DATABASE_SSLMODES
from .checks.http import SmokeCheck
from .checks.watch import WatchSettings, watch_settings
from .decisions.approval import ApprovalPolicy
from .errors import ConfigError, UsageError
from .paths import default_config

ENVIRONMENTS = ("staging", "production")
TARGETS = ("local", "fly")
DEPLOY_STRATEGIES = ("canary", "rolling", "bluegreen", "immediate")
NOTIFICATION_CHANNELS = ("file", "slack")
WHEN_NOT_MET = ("blocking", "acceptable")
#: The plan's timeline rows, in plan order; each must have a budget in [timeline].
TIMELINE_STEPS = (
    "verify_secrets",
    "deploy_staging",
    "staging_smoke",
    "deploy_production",
    "production_smoke",
    "notify",
)
#: What go/no-go criteria can measure (computed by gonogo.py from earlier sections).
MEASURES = (
    "workstreams_complete_ratio",
    "workstreams_in_progress",
    "blocking_workstreams_in_progress",
    "production_config_ready",
    "required_secrets_present",
    "staging_deploy_complete",
    "staging_health_ok",
    "staging_smoke_passed",
    # What people attested (attest.py): every manual check of the staging smoke test, and the call itself.
    "staging_manual_checks_attested",
    "go_no_go_decision_attested",
)

_APP_NAME = re.compile(r"^[a-z][a-z0-9-]{1,62}$")
#: GitHub's OWNER/NAME, as `gh --repo` and GH_REPO take it (without a host).
GITHUB_REPO = re.compile(r"^[A-Za-z0-9-]+/[A-Za-z0-9._-]+$")
_SECRET_NAME = re.compile(r"^[A-Z][A-Z0-9_]*$")
#: Secrets whose value on production must not equal staging's (the classic: production on the
#: staging database). An equal digest of one of these blocks; of any other secret, it warns.
DEFAULT_MUST_DIFFER = ("DATABASE_URL", "SUPABASE_URL")
#: A sensitive secret shorter than this cannot be redacted safely: it occurs by chance in text.
DEFAULT_SECRET_MIN_LENGTH = 8
#: Keys of each [targets.<name>] table; state_dir is the local platform's, flyctl Fly's.
_TARGET_KEYS = {
    "local": ("strategy", "wait_timeout_s", "state_dir"),
    "fly": ("strategy", "wait_timeout_s", "flyctl", "deploy_timeout_s", "database_sslmode"),
}
#: The plan's manual smoke test steps: what a person attests in a browser.
DEFAULT_MANUAL_CHECKS = (
    "Visit the app URL",
    "Verify Shopify OAuth works",
    "Check dashboard loads",
    "Test navigation",
    "Verify no critical errors",
)


@dataclass(frozen=True)
class Environment:
    name: str
    app: str
    fly_config: str
    base_url: str


@dataclass(frozen=True)
class HealthSpec:
    path: str
    expected_status: str
    max_age_s: float
    deadline_s: float


@dataclass(frozen=True)
class Criterion:
    name: str
    measure: str
    comparison: str  # expect | at_least | at_most
    threshold: Any
    when_not_met: str

    def threshold_text(self) -> str:
        symbol = {"expect": "=", "at_least": ">=", "at_most": "<="}[self.comparison]
        value = str(self.threshold).lower() if isinstance(self.threshold, bool) else self.threshold
        return f"{symbol} {value}"

    def is_met(self, value: Any) -> bool:
        if value is None:
            return False
        if self.comparison == "expect":
            return value == self.threshold
        if self.comparison == "at_least":
            return value >= self.threshold
        return value <= self.threshold


@dataclass(frozen=True)
class Notification:
    channel: str
    recipient: str
    production_url: str
    expected_functionality: tuple[str, ...]
    known_limitations: tuple[str, ...]
    feedback_channel: str
    file: str = "notifications.log"
    webhook_env: str = "HOTDASH_SLACK_WEBHOOK_URL"


@dataclass(frozen=True)
class GitHubSettings:
    """Where `runbook dispatch` starts the production release on GitHub Actions."""

    repo: str | None = None  # OWNER/NAME; unset: --repo or GH_REPO must name it
    workflow: str = "deploy-production.yml"
    ref: str = "main"  # the branch whose workflow runs; the file must also be on the default branch
    feedback_labels: tuple[str, ...] = ()  # the watch lists issues opened since a release with these labels


@dataclass(frozen=True)
class ArchiveSettings:
    """Where the archive lives (archive/store.py): "" is the local folder; s3://bucket/prefix a store."""

    url: str = ""
    retention_days: int | None = None  # Object Lock retention of each sealed object in the store
    retention_mode: str = "compliance"  # nobody can delete or shorten; "governance": who may bypass can (README)
    lock_minutes: float = 5.0  # the store lock's lease: renewed every third of it (locks.StoreLease)


@dataclass(frozen=True)
class TargetSettings:
    name: str
    strategy: str
    wait_timeout_s: float
    state_dir: Path | None = None
    flyctl: str = ""  # Fly: the flyctl executable (a path or a name); empty: fly, then flyctl on PATH
    deploy_timeout_s: float = 900.0  # Fly: the whole `fly deploy` (build, push, rollout) is killed after this
    database_sslmode: str = "require"  # Fly: libpq sslmode of the runner's database checks (checks/database.py)


@dataclass(frozen=True)
class ReleaseConfig:
    path: Path
    product: str
    plan: str
    default_target: str
    readiness_file: Path
    environments: dict[str, Environment]
    required_secrets: tuple[str, ...]
    health: HealthSpec
    shop: str
    max_latency_ms: int
    smoke_checks: tuple[SmokeCheck, ...]
    timeline_minutes: dict[str, float]
    criteria: tuple[Criterion, ...]
    notification: Notification
    targets: dict[str, TargetSettings] = field(default_factory=dict)
    secrets_must_differ: tuple[str, ...] = DEFAULT_MUST_DIFFER
    github: GitHubSettings = field(default_factory=GitHubSettings)
    manual_checks: tuple[str, ...] = DEFAULT_MANUAL_CHECKS
    # Required secrets whose values are public (the app's URL, its scopes, the API key every
    # App Bridge page serves): checked for presence and digest, neither redacted nor scanned.
    public_secrets: tuple[str, ...] = ()
    secret_min_length: int = DEFAULT_SECRET_MIN_LENGTH
    # [watch], per target: [watch.local] and [watch.fly] change keys of [watch] for one target.
    watch: dict[str, WatchSettings] = field(default_factory=dict)
    archive: ArchiveSettings = field(default_factory=ArchiveSettings)
    approval: ApprovalPolicy = field(default_factory=ApprovalPolicy)

    @property
    def sensitive_secrets(self) -> tuple[str, ...]:
        """The required secrets whose values must never reach a record."""
        return tuple(name for name in self.required_secrets if name not in self.public_secrets)

    def check_outputs(self, outputs: Path) -> None:
        """The archive root must be apart from the local platform's state folder, which holds
        secret values (secrets/*.json): neither inside it, nor holding it, nor the same."""
        local = self.targets.get("local")
        if local is None:
            return
        from .paths import PROJECT_ROOT

        state = (local.state_dir or PROJECT_ROOT / ".rehearsal").resolve()
        root = Path(outputs).resolve()
        if root == state or state in root.parents or root in state.parents:
            raise UsageError(
                f"outputs: {root} must be apart from the local platform's state folder {state} "
                "(it holds secret values); choose another archive root"
            )

    @property
    def base_dir(self) -> Path:
        """Relative paths in the configuration (fly configs, readiness file) start here."""
        return self.path.parent

    def environment(self, name: str) -> Environment:
        if name not in self.environments:
            raise ConfigError("environment", f"{name!r} is not allowed; allowed: {', '.join(self.environments)}")
        return self.environments[name]

    def target_settings(self, name: str) -> TargetSettings:
        if name not in self.targets:
            raise ConfigError("target", f"{name!r} is not configured; allowed: {', '.join(self.targets)}")
        return self.targets[name]

    def watch_settings(self, target: str) -> WatchSettings:
        self.target_settings(target)
        return self.watch.get(target) or WatchSettings()


class _Table:
    """A TOML table that reports problems by dotted key."""

    def __init__(self, data: Any, key: str, path: Path) -> None:
        self.key, self.path = key, path
        if not isinstance(data, dict):
            self.fail(key, "must be a table")
        self.data = data

    def fail(self, key: str, problem: str):
        raise ConfigError(key, problem, path=str(self.path))

    def sub(self, name: str) -> _Table:
        if name not in self.data:
            self.fail(self._k(name), "missing table")
        return _Table(self.data[name], self._k(name), self.path)

    def _k(self, name: str) -> str:
        return f"{self.key}.{name}" if self.key else name

    def get(self, name: str, kind: type | tuple[type, ...], default: Any = ...) -> Any:
        if name not in self.data:
            if default is ...:
                self.fail(self._k(name), f"missing; expected {_kind_name(kind)}")
            return default
        value = self.data[name]
        # TOML booleans are ints to isinstance; a number field must not accept true/false.
        if isinstance(value, bool) and bool not in _as_tuple(kind):
            self.fail(self._k(name), f"expected {_kind_name(kind)}, got a boolean")
        if not isinstance(value, kind):
            self.fail(self._k(name), f"expected {_kind_name(kind)}, got {type(value).__name__}")
        return value

    def text(self, name: str, default: Any = ...) -> str:
        value = self.get(name, str, default)
        if name in self.data and not value.strip():
            self.fail(self._k(name), "must not be empty")
        return value

    def number(self, name: str, default: Any = ..., *, positive: bool = True) -> float:
        value = self.get(name, (int, float), default)
        # TOML has nan and inf: neither is a duration, a budget or a threshold.
        if not math.isfinite(value):
            self.fail(self._k(name), f"must be a finite number, got {value}")
        if positive and value <= 0:
            self.fail(self._k(name), f"must be a positive number, got {value}")
        return value

    def choice(self, name: str, allowed: tuple[str, ...], default: Any = ...) -> str:
        value = self.get(name, str, default)
        if value not in allowed:
            self.fail(self._k(name), f"{value!r} is not allowed; allowed: {', '.join(allowed)}")
        return value

    def strings(self, name: str, default: Any = ...) -> tuple[str, ...]:
        value = self.get(name, list, default)
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.fail(f"{self._k(name)}[{i}]", "expected a non-empty string")
        return tuple(value)

    def relative_path(self, name: str, default: Any = ...) -> str:
        """A file name relative to the archive root that stays inside it (no .., not absolute)."""
        value = self.text(name, default)
        parts = PurePosixPath(value.replace("\\", "/")).parts
        if value.startswith(("/", "\\", "~")) or ".." in parts or ":" in value or "\0" in value:
            self.fail(self._k(name), f"{value!r} must be a file name inside the archive (relative, without ..)")
        return value

    def url(self, name: str) -> str:
        value = self.text(name)
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            self.fail(self._k(name), f"{value!r} is not an http(s) URL with a host")
        return value.rstrip("/")

    def reject_unknown(self, allowed: tuple[str, ...]) -> None:
        for name in self.data:
            if name not in allowed:
                self.fail(self._k(name), f"unknown key; allowed: {', '.join(allowed)}")


def _as_tuple(kind) -> tuple:
    return kind if isinstance(kind, tuple) else (kind,)


def _kind_name(kind) -> str:
    names = {
        str: "a string",
        int: "an integer",
        float: "a number",
        bool: "true or false",
        list: "a list",
        dict: "a table",
    }
    return " or ".join(dict.fromkeys(names.get(k, k.__name__) for k in _as_tuple(kind)))


def load_config(path: str | Path | None = None) -> ReleaseConfig:
    """Read and validate the release configuration; raise ConfigError on the first problem."""
    path = Path(path) if path else default_config()
    if not path.is_file():
        raise ConfigError("config", f"file {path} does not exist")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError("config", f"not valid TOML: {exc}", path=str(path)) from exc
    root = _Table(data, "", path)
    root.reject_unknown(
        (
            "release",
            "environments",
            "secrets",
            "health",
            "smoke",
            "timeline",
            "go_no_go",
            "notification",
            "targets",
            "github",
            "watch",
            "archive",
            "approval",
        )
    )
    release = root.sub("release")
    release.reject_unknown(("product", "plan", "default_target", "readiness_file"))
    targets = _targets(root.sub("targets"), path.parent)
    default_target = release.choice("default_target", TARGETS, "local")
    if default_target not in targets:
        release.fail("release.default_target", f"{default_target!r} has no [targets.{default_target}] table")
    smoke = root.sub("smoke")
    smoke.reject_unknown(("shop", "max_latency_ms", "checks", "manual_checks"))
    shop = smoke.text("shop")
    if not re.fullmatch(r"[a-z0-9][a-z0-9-]*\.myshopify\.com", shop):
        smoke.fail("smoke.shop", f"{shop!r} is not a shop domain like name.myshopify.com")
    max_latency_ms = int(smoke.number("max_latency_ms", 1500))
    environments = _environments(root.sub("environments"))
    notification = _notification(root.sub("notification"))
    # Nothing writes inside the archive's release folders but the seal: the inbox lies beside them.
    first = PurePosixPath(notification.file.replace("\\", "/")).parts[0]
    if notification.channel == "file" and first in {*(e.app for e in environments.values()), "interactive"}:
        raise ConfigError(
            "notification.file",
            f"{notification.file!r} must lie outside the archive's release folders (not under {first}/)",
            path=str(path),
        )
    return ReleaseConfig(
        path=path.resolve(),
        product=release.text("product", "HotDash"),
        plan=release.text("plan", ""),
        default_target=default_target,
        readiness_file=(path.parent / release.text("readiness_file", "readiness.csv")).resolve(),
        environments=environments,
        required_secrets=_secret_names(root.sub("secrets")),
        secrets_must_differ=_secrets_must_differ(root.sub("secrets")),
        public_secrets=_public_secrets(root.sub("secrets")),
        secret_min_length=_secret_min_length(root.sub("secrets")),
        health=_health(root.sub("health")),
        shop=shop,
        max_latency_ms=max_latency_ms,
        smoke_checks=_smoke_checks(smoke, max_latency_ms),
        timeline_minutes=_timeline(root.sub("timeline")),
        criteria=_criteria(root.sub("go_no_go")),
        notification=notification,
        targets=targets,
        github=_github(root.sub("github")) if "github" in root.data else GitHubSettings(),
        manual_checks=_manual_checks(smoke),
        watch=_watch(root.data.get("watch", {}), targets, path),
        archive=_archive(root.sub("archive")) if "archive" in root.data else ArchiveSettings(),
        approval=_approval(root.sub("approval"), path.parent) if "approval" in root.data else ApprovalPolicy(),
    )


def _approval(table: _Table, base: Path) -> ApprovalPolicy:
    table.reject_unknown(("required", "prevent_self_approval", "allowed_signers", "wait_minutes"))
    required = table.get("required", int, 0)
    if required < 0 or required > 10:
        table.fail("approval.required", f"must be a whole number from 0 to 10, got {required}")
    signers = table.text("allowed_signers", "../keys/allowed_signers")
    allowed = (base / signers).resolve()
    if required and not allowed.is_file():
        table.fail("approval.allowed_signers", f"{signers!r} is not a file (ssh-keygen's allowed_signers format)")
    policy = ApprovalPolicy(
        required=required,
        prevent_self_approval=table.get("prevent_self_approval", bool, True),
        allowed_signers=allowed,
        wait_minutes=float(table.number("wait_minutes", 0, positive=False)),
    )
    if policy.wait_minutes < 0 or policy.wait_minutes > 24 * 60:
        table.fail("approval.wait_minutes", f"must be from 0 to 1440 minutes, got {policy.wait_minutes:g}")
    if required and len([a for a in policy.approvers()]) < required:
        table.fail(
            "approval.required", f"{required} approvals, but {signers} names {len(policy.approvers())} approver(s)"
        )
    return policy


def _environments(table: _Table) -> dict[str, Environment]:
    table.reject_unknown(ENVIRONMENTS)
    environments = {}
    for name in ENVIRONMENTS:
        env = table.sub(name)
        env.reject_unknown(("app", "fly_config", "base_url"))
        app = env.text("app")
        if not _APP_NAME.match(app):
            env.fail(
                f"environments.{name}.app",
                f"{app!r} is not an app name (lower-case letters, digits and '-', 2-63 chars)",
            )
        environments[name] = Environment(name, app, env.text("fly_config"), env.url("base_url"))
    if environments["staging"].app == environments["production"].app:
        table.fail("environments.production.app", "must differ from environments.staging.app")
    return environments


def _secret_names(table: _Table) -> tuple[str, ...]:
    table.reject_unknown(("required", "must_differ", "public", "min_length"))
    names = table.strings("required")
    if not names:
        table.fail("secrets.required", "must list at least one secret name")
    for i, name in enumerate(names):
        if not _SECRET_NAME.match(name):
            table.fail(f"secrets.required[{i}]", f"{name!r} is not a secret name (A-Z, 0-9, _)")
    if len(set(names)) != len(names):
        table.fail("secrets.required", "lists a name twice")
    return names


def _secrets_must_differ(table: _Table) -> tuple[str, ...]:
    names = table.strings("must_differ", list(DEFAULT_MUST_DIFFER))
    required = table.data.get("required", [])
    for i, name in enumerate(names):
        if name not in required:
            # Only required secrets are listed and compared, so another name would never be checked.
            table.fail(f"secrets.must_differ[{i}]", f"{name!r} is not in secrets.required")
    return tuple(names)


def _public_secrets(table: _Table) -> tuple[str, ...]:
    names = table.strings("public", [])
    required = table.data.get("required", [])
    for i, name in enumerate(names):
        if name not in required:
            table.fail(f"secrets.public[{i}]", f"{name!r} is not in secrets.required")
        if name in table.data.get("must_differ", DEFAULT_MUST_DIFFER):
            # A value that must differ between environments is a credential, not a public fact.
            table.fail(f"secrets.public[{i}]", f"{name!r} is in secrets.must_differ: it cannot be public")
    return tuple(names)


def _secret_min_length(table: _Table) -> int:
    value = table.get("min_length", int, DEFAULT_SECRET_MIN_LENGTH)
    if value < 1:
        table.fail("secrets.min_length", f"must be a positive integer, got {value}")
    return value


def _health(table: _Table) -> HealthSpec:
    table.reject_unknown(("path", "expected_status", "max_age_s", "deadline_s"))
    path = table.text("path")
    if not path.startswith("/"):
        table.fail("health.path", f"{path!r} must start with /")
    return HealthSpec(
        path, table.text("expected_status", "ok"), table.number("max_age_s", 120), table.number("deadline_s", 60)
    )


def _smoke_checks(table: _Table, max_latency_ms: int) -> tuple[SmokeCheck, ...]:
    raw = table.get("checks", list)
    if not raw:
        table.fail("smoke.checks", "must define at least one check")
    checks = []
    for i, item in enumerate(raw):
        key = f"smoke.checks[{i}]"
        if not isinstance(item, dict):
            table.fail(key, "must be a table")
        try:
            check = SmokeCheck.from_dict({"max_latency_ms": max_latency_ms, **item}, key=key)
        except ConfigError as exc:
            raise ConfigError(exc.key, exc.problem, path=str(table.path)) from None
        checks.append(check)
    names = [c.name for c in checks]
    if len(set(names)) != len(names):
        table.fail("smoke.checks", "two checks share a name")
    return tuple(checks)


def _manual_checks(table: _Table) -> tuple[str, ...]:
    names = table.strings("manual_checks", list(DEFAULT_MANUAL_CHECKS))
    if not names:
        table.fail("smoke.manual_checks", "must list at least one manual check")
    if len(set(names)) != len(names):
        table.fail("smoke.manual_checks", "lists a check twice")
    for i, name in enumerate(names):
        if ":" in name:
            # `runbook release --attest ENV:CHECK[:NOTE]` splits on the colon.
            table.fail(f"smoke.manual_checks[{i}]", f"{name!r} must not contain ':'")
    return tuple(names)


def _timeline(table: _Table) -> dict[str, float]:
    table.reject_unknown(TIMELINE_STEPS + ("preflight", "go_no_go", "rollback"))
    return {step: float(table.number(step)) for step in TIMELINE_STEPS} | {
        step: float(table.number(step)) for step in ("preflight", "go_no_go", "rollback") if step in table.data
    }


def _criteria(table: _Table) -> tuple[Criterion, ...]:
    table.reject_unknown(("criteria",))
    raw = table.get("criteria", list)
    if not raw:
        table.fail("go_no_go.criteria", "must define at least one criterion")
    criteria = []
    for i, item in enumerate(raw):
        row = _Table(item, f"go_no_go.criteria[{i}]", table.path)
        row.reject_unknown(("name", "measure", "expect", "at_least", "at_most", "when_not_met"))
        comparisons = [c for c in ("expect", "at_least", "at_most") if c in row.data]
        if len(comparisons) != 1:
            row.fail(row.key, "needs exactly one of expect, at_least, at_most")
        comparison = comparisons[0]
        threshold = (
            row.get("expect", (bool, int, float)) if comparison == "expect" else row.number(comparison, positive=False)
        )
        if isinstance(threshold, float) and not math.isfinite(threshold):
            row.fail(f"{row.key}.{comparison}", f"must be true, false or a finite number, got {threshold}")
        criteria.append(
            Criterion(
                row.text("name"),
                row.choice("measure", MEASURES),
                comparison,
                threshold,
                row.choice("when_not_met", WHEN_NOT_MET),
            )
        )
    return tuple(criteria)


def _notification(table: _Table) -> Notification:
    table.reject_unknown(
        (
            "channel",
            "file",
            "webhook_env",
            "recipient",
            "production_url",
            "expected_functionality",
            "known_limitations",
            "feedback_channel",
        )
    )
    return Notification(
        channel=table.choice("channel", NOTIFICATION_CHANNELS),
        recipient=table.text("recipient"),
        production_url=table.url("production_url"),
        expected_functionality=table.strings("expected_functionality"),
        known_limitations=table.strings("known_limitations", []),
        feedback_channel=table.text("feedback_channel"),
        file=table.relative_path("file", "notifications.log"),
        webhook_env=table.text("webhook_env", "HOTDASH_SLACK_WEBHOOK_URL"),
    )


def _targets(table: _Table, base: Path) -> dict[str, TargetSettings]:
    table.reject_unknown(TARGETS)
    targets = {}
    for name in TARGETS:
        if name not in table.data:
            continue
        t = table.sub(name)
        t.reject_unknown(_TARGET_KEYS[name])
        state_dir = t.text("state_dir", "") if name == "local" else ""
        wait_timeout_s = float(t.number("wait_timeout_s", 300))
        deploy_timeout_s = float(t.number("deploy_timeout_s", 900))
        if name == "fly" and deploy_timeout_s <= wait_timeout_s:
            # fly deploy builds and pushes before it starts waiting for health checks.
            t.fail("targets.fly.deploy_timeout_s", f"must be longer than wait_timeout_s ({wait_timeout_s:g})")
        targets[name] = TargetSettings(
            name=name,
            strategy=t.choice("strategy", DEPLOY_STRATEGIES, "rolling"),
            wait_timeout_s=wait_timeout_s,
            state_dir=(base / state_dir).resolve() if state_dir else None,
            flyctl=(t.text("flyctl", None) or "") if name == "fly" else "",
            deploy_timeout_s=deploy_timeout_s,
            database_sslmode=t.choice("database_sslmode", DATABASE_SSLMODES, "require") if name == "fly" else "",
        )
    if not targets:
        table.fail("targets", f"define at least one of {', '.join(TARGETS)}")
    return targets


def _watch(data: Any, targets: dict[str, TargetSettings], path: Path) -> dict[str, WatchSettings]:
    """The post-deployment watch's window and conditions for each target."""
    if not isinstance(data, dict):
        raise ConfigError("watch", "must be a table", path=str(path))
    common = {k: v for k, v in data.items() if k not in TARGETS}
    settings = {}
    try:
        for name in targets:
            own = data.get(name, {})
            if not isinstance(own, dict):
                raise ConfigError(f"watch.{name}", "must be a table")
            settings[name] = watch_settings({**common, **own}, key=f"watch.{name}" if name in data else "watch")
    except ConfigError as exc:
        raise ConfigError(exc.key, exc.problem, path=str(path)) from None
    return settings


def _github(table: _Table) -> GitHubSettings:
    table.reject_unknown(("repo", "workflow", "ref", "feedback_labels"))
    defaults = GitHubSettings()
    repo = table.text("repo", None)
    if repo is not None and not GITHUB_REPO.match(repo):
        table.fail("github.repo", f"{repo!r} is not OWNER/NAME")
    workflow = table.text("workflow", defaults.workflow)
    if "/" in workflow or not workflow.endswith((".yml", ".yaml")):
        table.fail("github.workflow", f"{workflow!r} is not a file name under .github/workflows/ (NAME.yml)")
    return GitHubSettings(
        repo=repo,
        workflow=workflow,
        ref=table.text("ref", defaults.ref),
        feedback_labels=table.strings("feedback_labels", ()),
    )


def _archive(table: _Table) -> ArchiveSettings:
    from .archive.store import RETENTION_MODES, URL_ALLOWED, check_archive_url

    table.reject_unknown(("url", "retention_days", "retention_mode", "lock_minutes"))
    url = table.get("url", str, "")
    try:
        url = check_archive_url(url, "archive.url")
    except UsageError:
        table.fail("archive.url", f"{url!r} is not allowed; allowed: {URL_ALLOWED}")
    days = table.get("retention_days", int, None)
    if days is not None and days <= 0:
        table.fail("archive.retention_days", f"must be a positive number of days, got {days}")
    return ArchiveSettings(
        url=url,
        retention_days=days,
        retention_mode=table.choice("retention_mode", RETENTION_MODES, "compliance"),
        lock_minutes=table.number("lock_minutes", ArchiveSettings.lock_minutes),
    )
