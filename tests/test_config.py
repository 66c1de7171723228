"""The release configuration is validated before anything runs: every bad value is a
ConfigError naming the key and what is allowed."""

from __future__ import annotations

import pytest
from conftest import write_config

from hotdash_release.config import load_config
from hotdash_release.errors import ConfigError
from hotdash_release.paths import DEFAULT_CONFIG


def test_the_committed_configuration_states_the_plan():
    config = load_config(DEFAULT_CONFIG)
    assert config.environment("staging").app == "hotdash-staging"
    assert config.environment("production").fly_config == "fly.production.toml"
    assert config.required_secrets == (
        "DATABASE_URL",
        "SHOPIFY_API_KEY",
        "SHOPIFY_API_SECRET",
        "SHOPIFY_APP_URL",
        "SCOPES",
        "SUPABASE_URL",
        "SUPABASE_ANON_KEY",
    )
    assert [
        config.timeline_minutes[k]
        for k in (
            "verify_secrets",
            "deploy_staging",
            "staging_smoke",
            "deploy_production",
            "production_smoke",
            "notify",
        )
    ] == [2, 5, 5, 5, 5, 5]
    assert config.health.path == "/health" and config.health.expected_status == "ok"
    assert config.notification.production_url == "https://hotdash-production.fly.dev"
    assert config.notification.feedback_channel.startswith("Log issues via GitHub Issues")
    assert {c.when_not_met for c in config.criteria} == {"blocking", "acceptable"}


BAD_CONFIGS = [
    # (what the test changes, the key the error must name, a phrase of what is allowed)
    ('app = "hotdash-staging"', 'app = "Hotdash Staging"', "environments.staging.app", "lower-case"),
    ('app = "hotdash-production"', 'app = "hotdash-staging"', "environments.production.app", "must differ"),
    (
        'base_url = "https://hotdash-staging.fly.dev"',
        'base_url = "hotdash-staging.fly.dev"',
        "environments.staging.base_url",
        "http(s) URL",
    ),
    ("deploy_staging = 5", "deploy_staging = -5", "timeline.deploy_staging", "positive number"),
    ("deploy_staging = 5", 'deploy_staging = "five"', "timeline.deploy_staging", "expected"),
    ("notify = 5\n", "", "timeline.notify", "missing"),
    ('default_target = "local"', 'default_target = "heroku"', "release.default_target", "allowed: local, fly"),
    ('channel = "file"', 'channel = "email"', "notification.channel", "allowed: file, slack"),
    ('    "SCOPES",\n', '    "scopes",\n', "secrets.required[4]", "secret name"),
    ('when_not_met = "acceptable"', 'when_not_met = "maybe"', "go_no_go.criteria[2].when_not_met", "allowed"),
    ('measure = "staging_smoke_passed"', 'measure = "vibes"', "go_no_go.criteria[7].measure", "allowed"),
    ("at_least = 0.85", "at_least = 0.85\nexpect = true", "go_no_go.criteria[0]", "exactly one"),
    ('expected_status = "ok"', 'expected_status = "ok"\nretries = 3', "health.retries", "unknown key"),
    ('path = "/health"\nexpected_status', 'path = "health"\nexpected_status', "health.path", "start with /"),
    ('shop = "hotdash-rehearsal.myshopify.com"', 'shop = "example.com"', "smoke.shop", "myshopify.com"),
    ("expect_status = 410", "expect_status = 999", "smoke.checks[7].expect_status", ""),
    ('user_agent = "bot"', 'user_agent = "robot"', "smoke.checks[7].user_agent", "browser"),
    ("wait_timeout_s = 15", "wait_timeout_s = true", "targets.local.wait_timeout_s", "boolean"),
    ('strategy = "immediate"', 'strategy = "yolo"', "targets.local.strategy", "canary, rolling"),
    (
        'production_url = "https://hotdash-production.fly.dev"',
        'production_url = "ftp://x"',
        "notification.production_url",
        "http(s) URL",
    ),
]


@pytest.mark.parametrize("old,new,key,allowed", BAD_CONFIGS, ids=[c[2] for c in BAD_CONFIGS])
def test_bad_configuration_names_the_key_and_what_is_allowed(tmp_path, old, new, key, allowed):
    path = write_config(tmp_path, state_dir=tmp_path / "state", edits={old: new})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == key
    message = str(caught.value)
    assert key in message and allowed in message and "\n" not in message


def test_missing_file_and_bad_toml(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(tmp_path / "nope.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("[release\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(broken)


#: Every number of the file: (the line as write_config leaves it, the key, whether it must be positive).
NUMBERS = [
    ("max_age_s = 120", "health.max_age_s", True),
    ("deadline_s = 4\n", "health.deadline_s", True),
    ("max_latency_ms = 1500", "smoke.max_latency_ms", True),
    *(
        (f"{step} = {minutes}", f"timeline.{step}", True)
        for step, minutes in (
            ("verify_secrets", 2),
            ("deploy_staging", 5),
            ("staging_smoke", 5),
            ("deploy_production", 5),
            ("production_smoke", 5),
        )
    ),
    ("notify = 5\n", "timeline.notify", True),
    ("at_least = 0.85", "go_no_go.criteria[0].at_least", False),
    ('at_most = 0\nwhen_not_met = "blocking"', "go_no_go.criteria[1].at_most", False),
    ("wait_timeout_s = 15", "targets.local.wait_timeout_s", True),
    ("wait_timeout_s = 300", "targets.fly.wait_timeout_s", True),
    ("deploy_timeout_s = 900", "targets.fly.deploy_timeout_s", True),
    ("min_length = 8", "secrets.min_length", True),
]


def _number_cases():
    for line, key, positive in NUMBERS:
        name, _, rest = line.partition(" = ")
        tail = rest.partition("\n")[2]
        tail = "\n" + tail if tail else ""
        bad = ["nan", "inf", "-inf", "+nan"] + (["0", "-1", "-0.5"] if positive else [])
        tail = tail or ("\n" if line.endswith("\n") else "")
        if key == "secrets.min_length":
            bad = ["0", "-1", "8.5", "nan", "inf", '"8"']  # an integer
        for value in bad:
            yield pytest.param(line, f"{name} = {value}{tail}", key, id=f"{key}={value}")


OPTIONAL_STEPS = [
    pytest.param("notify = 5\n", f"notify = 5\n{step} = {value}\n", f"timeline.{step}", id=f"timeline.{step}={value}")
    for step in ("preflight", "go_no_go", "rollback")
    for value in ("nan", "inf", "0", "-1")
]


@pytest.mark.parametrize("old,new,key", list(_number_cases()) + OPTIONAL_STEPS)
def test_every_number_refuses_nan_infinity_and_a_wrong_sign(tmp_path, old, new, key):
    path = write_config(tmp_path, state_dir=tmp_path / "state", edits={old: new})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert caught.value.key == key, str(caught.value)
    assert "\n" not in str(caught.value)


BAD_INPUTS = [
    ('expect = true\nwhen_not_met = "blocking"', 'expect = nan\nwhen_not_met = "blocking"', "expect", "finite"),
    ('file = "notifications.log"', 'file = "../../../../tmp/x"', "notification.file", "inside the archive"),
    ('file = "notifications.log"', 'file = "/tmp/x"', "notification.file", "inside the archive"),
    ('file = "notifications.log"', 'file = "~/x"', "notification.file", "inside the archive"),
    ('file = "notifications.log"', 'file = "logs/../../x"', "notification.file", "inside the archive"),
    ('file = "notifications.log"', 'file = "..\\\\..\\\\x"', "notification.file", "inside the archive"),
    ('public = ["SHOPIFY_APP_URL"', 'public = ["NOT_REQUIRED", "SHOPIFY_APP_URL"', "secrets.public[0]", "required"),
    ('public = ["SHOPIFY_APP_URL"', 'public = ["DATABASE_URL", "SHOPIFY_APP_URL"', "secrets.public[0]", "must_differ"),
]


@pytest.mark.parametrize("old,new,key,allowed", BAD_INPUTS, ids=[f"{c[2]}:{c[1][:30]}" for c in BAD_INPUTS])
def test_bad_input_names_the_key_and_what_is_allowed(tmp_path, old, new, key, allowed):
    path = write_config(tmp_path, state_dir=tmp_path / "state", edits={old: new})
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    assert key in caught.value.key and allowed in str(caught.value) and "\n" not in str(caught.value)


def test_public_and_sensitive_secrets(tmp_path):
    config = load_config(DEFAULT_CONFIG)
    assert config.public_secrets == ("SHOPIFY_APP_URL", "SCOPES", "SHOPIFY_API_KEY")
    assert config.sensitive_secrets == (
        "DATABASE_URL",
        "SHOPIFY_API_SECRET",
        "SUPABASE_URL",
        "SUPABASE_ANON_KEY",
    )
    assert config.secret_min_length == 8


@pytest.mark.parametrize("where", ["state", "state/outputs", "."])
def test_outputs_apart_from_the_platform_state(tmp_path, where):
    """The archive root may not be, be inside, or hold the local platform's state folder."""
    from hotdash_release.errors import UsageError

    config = load_config(write_config(tmp_path, state_dir=tmp_path / "state"))
    with pytest.raises(UsageError, match="apart from the local platform's state folder"):
        config.check_outputs(tmp_path / where)
    config.check_outputs(tmp_path / "outputs")  # apart: fine
