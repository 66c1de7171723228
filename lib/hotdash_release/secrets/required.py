"""Secret names in, findings out: values are resolved here and never become parameters.

Papermill writes every parameter into the executed notebook and its HTML, so runbooks
pass secret *names*; this module asks the target which names are set (digests only)
and resolves values, where a check needs one, from a source outside the archive.
"""

from __future__ import annotations

import os
import secrets as _random
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Protocol

from ..errors import ReleaseError, SecretError, UsageError
from ..targets.base import Target


@dataclass(frozen=True)
class SecretPresence:
    """One required secret on one app, as the platform reports it."""

    app: str
    name: str
    present: bool
    status: str
    digest: str
    finding: str  # "" when fine, else why it blocks or warns
    blocking: bool

    @property
    def ok(self) -> bool:
        return not self.blocking

    def as_row(self) -> dict:
        return asdict(self)


def verify_required_secrets(target: Target, app: str, required: Sequence[str]) -> list[SecretPresence]:
    """Each required name: set or missing; a Staged secret is set but not yet on the running app."""
    listed = {s.name.upper(): s for s in target.secrets(app)}
    rows = []
    for name in required:
        info = listed.get(name.upper())
        if info is None:
            rows.append(SecretPresence(app, name, False, "missing", "", "not set: the app cannot start", True))
        elif not info.usable:
            rows.append(
                SecretPresence(
                    app,
                    name,
                    True,
                    info.status,
                    info.digest,
                    "staged: not on the running app yet; this deploy applies it",
                    False,
                )
            )
        else:
            rows.append(SecretPresence(app, name, True, info.status, info.digest, "", False))
    return rows


@dataclass(frozen=True)
class SharedValue:
    """One secret whose digest, hence whose value, is the same on two or more apps."""

    name: str
    apps: tuple[str, ...]  # in the order the rows listed them: staging before production
    blocking: bool

    def describe(self) -> str:
        text = f"{self.name} has the same value on {' and '.join(self.apps)} (equal digests)"
        return text + ("; it must differ between environments" if self.blocking else "")


def find_shared_values(rows: Sequence[SecretPresence], must_differ: Collection[str]) -> list[SharedValue]:
    """Equal digests for one name on different apps: production may be using staging's value.

    Platforms list digests, never values, and equal digests mean equal values. For the names
    in ``must_differ`` (the databases) that blocks; for the others it is worth a look only.
    """
    apps_by_value: dict[tuple[str, str], list[str]] = {}
    for row in rows:
        if row.present and row.digest:
            apps_by_value.setdefault((row.name, row.digest), []).append(row.app)
    return [
        SharedValue(name, tuple(dict.fromkeys(apps)), name in must_differ)
        for (name, _), apps in apps_by_value.items()
        if len(set(apps)) > 1
    ]


def mark_shared_values(rows: Sequence[SecretPresence], shared: Sequence[SharedValue]) -> list[SecretPresence]:
    """Note each shared value on the rows of the later apps, so that a gate names it once."""
    later = {(value.name, app): value for value in shared for app in value.apps[1:]}
    marked = []
    for row in rows:
        value = later.get((row.name, row.app))
        if value is None:
            marked.append(row)
            continue
        finding = f"same value as on {value.apps[0]}" + (": must differ" if value.blocking else "")
        marked.append(
            replace(
                row, finding="; ".join(f for f in (row.finding, finding) if f), blocking=row.blocking or value.blocking
            )
        )
    return marked


def same_databases(results: Sequence) -> list[str]:
    """must_differ for DATABASE_URL by identity (checks.database.DatabaseResult.identity: the
    cluster's system identifier and the database name): one line per database that two apps'
    URLs reach, and per URL whose database cannot be identified (then it is not shown to differ)."""
    apps_by_identity: dict[tuple[str, str], list[str]] = {}
    lines = []
    for result in results:
        if result.identity is None:
            lines.append(f"DATABASE_URL on {result.app}: cannot tell which database it reaches ({result.detail})")
        else:
            apps_by_identity.setdefault(result.identity, []).append(result.app)
    lines += [
        f"DATABASE_URL on {' and '.join(apps)} reaches one database ({name} on the server with system identifier "
        f"{system}), though the URLs differ; it must differ between environments"
        for (system, name), apps in apps_by_identity.items()
        if len(apps) > 1
    ]
    return lines


class SecretSource(Protocol):
    """Where a check gets a value it needs (e.g. the API key a smoke test expects)."""

    def values(self, app: str, names: Sequence[str]) -> dict[str, str]: ...


class PlatformStoreSecrets:
    """Local rehearsals: the rehearsal platform's own store (outside outputs/ and git)."""

    def __init__(self, platform) -> None:
        self.platform = platform

    def values(self, app: str, names: Sequence[str]) -> dict[str, str]:
        stored = self.platform.secret_values(app)
        return {name: stored[name] for name in names if name in stored}


class EnvironmentSecrets:
    """CI and Fly: values from environment variables, `<PREFIX><NAME>` first, then `<NAME>`."""

    def __init__(self, prefixes: Mapping[str, str], environ: Mapping[str, str] | None = None) -> None:
        self.prefixes = dict(prefixes)
        self.environ = os.environ if environ is None else environ

    def values(self, app: str, names: Sequence[str]) -> dict[str, str]:
        prefix = self.prefixes.get(app, "")
        found = {}
        for name in names:
            value = self.environ.get(prefix + name) or self.environ.get(name)
            if value:
                found[name] = value
        return found


#: What the Supabase check needs on a target with a real Supabase project (not a local rehearsal).
SUPABASE_SECRETS = ("SUPABASE_URL", "SUPABASE_ANON_KEY")


def smoke_secret_names(config) -> tuple[str, ...]:
    """The secret values the smoke checks compare each app against: the required secrets their
    paths, bodies and headers name as placeholders, and SHOPIFY_API_SECRET when one signs a
    webhook. On Fly the release reads each as STAGING_<NAME> / PRODUCTION_<NAME>."""
    import string

    names = []
    for check in config.smoke_checks:
        texts = [
            check.path,
            *check.body_contains,
            *check.body_not_contains,
            *check.header_equals.values(),
            *check.header_contains.values(),
        ]
        names += [
            field_name
            for text in texts
            for _, field_name, _, _ in string.Formatter().parse(text)
            if field_name in config.required_secrets
        ]
        if check.webhook_hmac == "valid":
            names.append("SHOPIFY_API_SECRET")
    return tuple(dict.fromkeys(names))


def secret_names_needed(config, target_name: str) -> tuple[str, ...]:
    """Every secret value the checks read from the release's environment on this target."""
    # The preflight's database check connects with DATABASE_URL from the runner on Fly too.
    supabase = (*SUPABASE_SECRETS, "DATABASE_URL") if target_name != "local" else ()
    return tuple(dict.fromkeys(smoke_secret_names(config) + supabase))


def require_values(source: SecretSource, app: str, names: Sequence[str]) -> dict[str, str]:
    values = source.values(app, names)
    missing = [n for n in names if n not in values]
    if missing:
        raise SecretError(f"{app}: no value available for {', '.join(missing)}", name=missing[0], app=app)
    return values


def rehearsal_secret_values(app: str) -> dict[str, str]:
    """Distinct, random values for a rehearsal app, shaped like the real ones."""
    token = _random.token_hex
    return {
        "DATABASE_URL": f"postgresql://hotdash:{token(12)}@127.0.0.1:54322/{app.replace('-', '_')}",
        "SHOPIFY_API_KEY": token(16),
        "SHOPIFY_API_SECRET": f"shpss_{token(16)}",
        "SHOPIFY_APP_URL": f"https://{app}-{token(4)}.rehearsal.invalid",
        "SCOPES": "read_products,read_orders,read_inventory",
        "SUPABASE_URL": f"https://{token(10)}.supabase.co",
        "SUPABASE_ANON_KEY": f"eyJhbGciOiJIUzI1NiJ9.{token(24)}",
    }


def seed_rehearsal_secrets(platform, apps: Sequence[str]) -> list[str]:
    """Start the platform's database, then give apps that have no secrets at all a rehearsal
    set whose DATABASE_URL is a database of their own on it; return the apps seeded.

    An app that has some secrets is left alone, so a rehearsal of a missing secret stays missing.
    """
    platform.start_database()
    seeded = []
    for app in apps:
        if not platform.secrets(app):
            platform.set_secrets(app, rehearsal_secret_values(app) | {"DATABASE_URL": platform.provision_database(app)})
            seeded.append(app)
    return seeded


def redactor_for(config, source: SecretSource):
    """A redactor that knows every sensitive secret value of every app of the plan.

    Public secrets (secrets.public) are left as they are. A sensitive value shorter than
    secrets.min_length stops here (UsageError): it would occur by chance in other text, so
    it can be neither redacted inside text nor scanned for."""
    from .redact import Redactor

    known = {}
    for env in config.environments.values():
        try:
            values = source.values(env.app, config.sensitive_secrets)
        except ReleaseError:
            continue  # a source that cannot answer has no values to leak either
        for name, value in values.items():
            if len(value) < config.secret_min_length:
                raise UsageError(
                    f"secret {name} on {env.app}: shorter than secrets.min_length ({config.secret_min_length} "
                    "characters), it cannot be redacted safely; set a longer value, or list it in "
                    "secrets.public if it is not a secret"
                )
            known[f"{name}@{env.name}"] = value
    from ..archive.store import secret_credential_values

    # The archive store's credentials (AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN): never in a record either.
    known.update(secret_credential_values())
    known.update(environment_credentials(config))
    return Redactor(known, min_length=config.secret_min_length)


#: Credentials for services outside the target that the release reads from its environment
#: (besides [notification] webhook_env, the Slack webhook URL).
ENVIRONMENT_CREDENTIALS = ("GITHUB_TOKEN", "GH_TOKEN", "FLY_API_TOKEN", "FLY_ACCESS_TOKEN")


def environment_credentials(config, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """{variable: value} of the credentials in the environment that a service may echo back (a
    webhook's error page, an API's error body): the redactor hides them, the seal scans for them."""
    environ = os.environ if environ is None else environ
    names = (config.notification.webhook_env, *ENVIRONMENT_CREDENTIALS)
    return {name: value for name in dict.fromkeys(names) if (value := environ.get(name, "").strip())}


def refuse_secrets_in(redactor, texts: Mapping[str, str | Iterable[str]]) -> None:
    """Free text a person typed (a reason, a name, a note) is recorded as it is: refuse it,
    naming the field and the secret (never the value), when it holds a secret value."""
    for field_name, text in texts.items():
        names = redactor.names_in([text] if isinstance(text, str) else list(text))
        if names:
            raise UsageError(
                f"{field_name}: holds the value of {', '.join(names)}; it would be recorded in the archive, "
                "leave the secret out"
            )


#: The text every release writes as it is, which redaction cannot touch without garbling the
#: record: the runbooks' cells (in every executed notebook and page), the report's and pages'
#: wording and styles, the names and keys of records and the manifest (outcomes such as
#: "released", section titles, fields). Relative to the package; the configuration is added.
FIXED_TEXT = (
    "runbook.py",
    "results.py",
    "tables.py",
    "plan.py",
    "archive/report.py",
    "archive/htmlpage.py",
    "archive/htmlexport.py",
    "archive/databases.py",
    "archive/charts.py",
    "archive/catalog.py",
    "archive/seal.py",
    "archive/integrity.py",
    "archive/archive.css",
    "archive/templates/archive_notebook.html.j2",
)


def fixed_texts(config) -> dict[str, str]:
    """{where: text} of the release's own fixed text: FIXED_TEXT, the runbooks, the configuration."""
    from pathlib import Path

    from ..paths import RUNBOOKS_DIR

    package = Path(__file__).resolve().parents[1]
    files = [package / name for name in FIXED_TEXT] + sorted(RUNBOOKS_DIR.glob("*.ipynb")) + [Path(config.path)]
    return {path.name: path.read_text(encoding="utf-8", errors="replace") for path in files if path.is_file()}


def refuse_secrets_in_fixed_text(redactor, texts: Mapping[str, str]) -> None:
    """A sensitive value that occurs in the release's own text (a common word such as "released",
    a runbook's code, the configuration) would be in every record, where it can be neither
    redacted nor left: refused before anything changes, naming the secret and where, never the value."""
    found: dict[str, list[str]] = {}
    for where, text in texts.items():
        for name in redactor.names_in([text]):
            found.setdefault(name, []).append(where)
    if found:
        places = sorted({where for wheres in found.values() for where in wheres})
        raise UsageError(
            f"secret {', '.join(found)}: its value occurs in the release's own text ({', '.join(places[:3])}"
            f"{' ...' if len(places) > 3 else ''}), which every record holds as it is; it can be neither "
            "redacted nor archived: set another value"
        )


def attestation_texts(attestations: Mapping[str, Sequence[Mapping]]) -> list[str]:
    """Every string of the --attest parameters (checks, names, notes, the call and its reason)."""
    return [
        value for given in attestations.values() for item in given for value in item.values() if isinstance(value, str)
    ]
