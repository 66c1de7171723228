"""Secrets through a whole release (real CLI, papermill, kernels, app processes): awkward values
never reach an archived file in any form, a planted one leaves the release unsealed, and free
text holding one, or a value too short to redact, stops the release before anything runs."""

from __future__ import annotations

import base64
import html
import json
from urllib.parse import quote, quote_plus

import pytest
from conftest import make_rehearsal, run_cli, with_database

from hotdash_release.paths import RUNBOOKS_DIR

APPS = ("hotdash-staging", "hotdash-production")
#: The test's configuration: SHOPIFY_API_KEY sensitive (the app echoes it in every App Bridge
#: page and redirect), and three more required secrets to hold more awkward values.
EDITS = {
    'public = ["SHOPIFY_APP_URL", "SCOPES", "SHOPIFY_API_KEY"]': 'public = ["SHOPIFY_APP_URL", "SCOPES"]',
    '    "SUPABASE_ANON_KEY",\n]': '    "SUPABASE_ANON_KEY",\n    "EXTRA_ONE",\n    "EXTRA_TWO",\n    "EXTRA_THREE",\n]',
}
PUBLIC = {
    "SHOPIFY_APP_URL": "https://{app}.rehearsal.invalid",
    # A public value may be anything, even a word every record holds: it is neither redacted
    # (no record key renamed, no KeyError) nor scanned for.
    "SCOPES": "ok",
}
#: 20 sensitive values: quotes and backslashes, multi-line, unicode, common words, values that
#: are substrings of each other (and of another app's), the API keys the app echoes.
AWKWARD = {
    "hotdash-staging": {
        "DATABASE_URL": 'postgresql://u:pa"ss\\word@db:5432/stg',
        "SHOPIFY_API_KEY": "stgkey0123456789",
        "SHOPIFY_API_SECRET": "first-line-of-secret\nsecond-line-of-secret",
        "SUPABASE_URL": "https://ключ-база.supabase.co",
        "SUPABASE_ANON_KEY": "password",
        "EXTRA_ONE": "abcdefgh",
        "EXTRA_TWO": "abcdefghijkl",
        "EXTRA_THREE": "letmein1",
    },
    "hotdash-production": {
        "DATABASE_URL": "postgresql://prod:'single'&<amp>@db/prod",
        "SHOPIFY_API_KEY": "prodkey0123456789",
        "SHOPIFY_API_SECRET": "-----BEGIN TEST KEY-----\nMIIBOgIBAAJBAKj34GkxFhD90vcN\n-----END TEST KEY-----\n",
        "SUPABASE_URL": "https://abcdefghijklmn.supabase.co",
        "SUPABASE_ANON_KEY": "changeme",
        "EXTRA_ONE": "tab\tand  spaces",
        "EXTRA_TWO": "😀 emoji secret 😀",
        "EXTRA_THREE": '{"json": "se\\u0041cret"}',
    },
}


def forms(value: str) -> dict[str, str]:
    """Raw, URL-encoded, HTML-escaped, JSON-escaped and base64 forms of a value, and of each of
    its lines long enough to be a secret on its own (8, secrets.min_length)."""
    found = {}
    for piece in {value, *(line for line in value.splitlines() if len(line.strip()) >= 8)}:
        found |= {
            f"raw {piece!r}": piece,
            f"url {piece!r}": quote(piece, safe=""),
            f"url+ {piece!r}": quote_plus(piece),
            f"html {piece!r}": html.escape(piece),
            f"json {piece!r}": json.dumps(piece)[1:-1],
            f"json-unicode {piece!r}": json.dumps(piece, ensure_ascii=False)[1:-1],
            f"base64 {piece!r}": base64.b64encode(piece.encode()).decode(),
        }
    return found


def plant(world, values: dict[str, dict[str, str]]) -> None:
    platform = world.platform()
    for app in APPS:
        planted = {**{k: v.format(app=app) for k, v in PUBLIC.items()}, **values[app]}
        platform.set_secrets(app, with_database(platform, app, planted) if "DATABASE_URL" in planted else planted)


@pytest.fixture(scope="module")
def awkward_world(tmp_path_factory):
    world = make_rehearsal(tmp_path_factory.mktemp("secrets"), wait_timeout_s=4, edits=EDITS)
    plant(world, AWKWARD)
    yield world
    world.platform().stop()


def test_awkward_secret_values_reach_no_archived_file_in_any_form(awkward_world):
    world = awkward_world
    done = world.release()
    assert done.returncode == 0, done.stdout + done.stderr
    (folder,) = world.release_dirs()
    assert (folder / "manifest.json").is_file(), "the release was left unsealed"
    values = [value for app in APPS for value in AWKWARD[app].values()]
    # The databases are real: each URL as stored (the awkward password inside it, URL-encoded).
    values += [world.platform().secret_values(app)["DATABASE_URL"] for app in APPS]
    assert len(values) >= 15
    files = [p for p in world.outputs.rglob("*") if p.is_file()]
    assert len(files) > 30
    searched = 0
    for path in files:
        data = path.read_bytes().decode("utf-8", errors="replace")
        for value in values:
            for form, spelling in forms(value).items():
                searched += 1
                assert spelling not in data, f"{path.relative_to(world.outputs)} holds {form}"
    assert searched > 15 * 5 * len(files)
    # The app echoed the API keys (App Bridge, the install redirect): redacted, not missing.
    archived = "".join(p.read_text(errors="replace") for p in folder.glob("*.ipynb"))
    assert "[redacted SHOPIFY_API_KEY@staging]" in archived
    assert "[redacted SHOPIFY_API_KEY@production]" in archived
    verified = world.runbook("verify", "--outputs", str(world.outputs))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_a_planted_secret_leaves_the_release_unsealed(tmp_path):
    """A secret that gets past redaction (here pasted into the readiness file, which the
    preflight shows as it is) is found by the seal's scan, in any form: no manifest, exit 1."""
    secret = AWKWARD["hotdash-production"]["SHOPIFY_API_SECRET"]
    rows = (RUNBOOKS_DIR / "readiness.csv").read_text().splitlines()
    planted = base64.b64encode(secret.encode()).decode()
    rows[1] = rows[1].replace("DATA-024: Production Data Pipeline Monitoring", f"DATA-024: token {planted}")
    readiness = tmp_path / "readiness.csv"
    readiness.write_text("\n".join(rows) + "\n")
    world = make_rehearsal(tmp_path / "world", readiness=readiness, wait_timeout_s=4, edits=EDITS)
    try:
        plant(world, AWKWARD)
        done = world.release()
        assert done.returncode == 1, done.stdout + done.stderr
        assert "secret values found in" in done.stdout and "SHOPIFY_API_SECRET@production" in done.stdout
        (folder,) = world.release_dirs()
        assert not (folder / "manifest.json").exists()
    finally:
        world.platform().stop()


#: Values that are the release's own text: a word every record holds (an outcome), a name from a
#: runbook's code (every executed notebook and page shows the cell).
OWN_TEXT = {"a record's word": "released", "a runbook's code": "rehearsal_defect"}


@pytest.mark.parametrize("value", OWN_TEXT.values(), ids=OWN_TEXT.keys())
def test_a_secret_that_is_the_releases_own_text_is_refused_before_anything_changes(tmp_path, value):
    """Such a value cannot be redacted (every record would be garbled) nor archived: found only
    by the seal's scan, production has changed by then and the release stays unsealed (exit 1).
    Refused up front instead: exit 2, naming the secret, never the value; nothing deployed."""
    from hotdash_release.secrets.required import rehearsal_secret_values

    world = make_rehearsal(tmp_path, wait_timeout_s=4)
    platform = world.platform()
    try:
        for app in APPS:
            values = rehearsal_secret_values(app)
            if app == "hotdash-production":
                values["SUPABASE_ANON_KEY"] = value
            platform.set_secrets(app, with_database(platform, app, values))
        done = world.release()
        assert done.returncode == 2, done.stdout + done.stderr
        assert "SUPABASE_ANON_KEY@production" in done.stderr and value not in done.stderr + done.stdout
        assert not world.release_dirs(), "nothing is written"
        assert all(not platform.releases(app) for app in APPS), "nothing is deployed"
    finally:
        platform.stop()


def test_a_planted_piece_of_the_webhook_url_leaves_the_release_unsealed(tmp_path):
    """The Slack webhook URL is a credential of the release's environment, not of an app: the
    seal's scan knows it, and its parts (the path's token here) as well as the whole."""
    token = "Wh" + base64.b16encode(b"planted-token!").decode()
    webhook = f"https://hooks.slack.com/services/T0ABCDEFG/B0HIJKLMN/{token}"
    rows = (RUNBOOKS_DIR / "readiness.csv").read_text().splitlines()
    rows[1] = rows[1].replace("DATA-024: Production Data Pipeline Monitoring", f"DATA-024: hook {token}")
    readiness = tmp_path / "readiness.csv"
    readiness.write_text("\n".join(rows) + "\n")
    world = make_rehearsal(tmp_path / "world", readiness=readiness, wait_timeout_s=4)
    try:
        done = run_cli(
            *("release", "--config", str(world.config), "--outputs", str(world.outputs)),
            extra_env={"HOTDASH_SLACK_WEBHOOK_URL": webhook},
        )
        assert done.returncode == 1, done.stdout + done.stderr
        assert "secret values found in" in done.stdout and "HOTDASH_SLACK_WEBHOOK_URL" in done.stdout
        assert token not in done.stdout + done.stderr
        (folder,) = world.release_dirs()
        assert not (folder / "manifest.json").exists()
    finally:
        world.platform().stop()
