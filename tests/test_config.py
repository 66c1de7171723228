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
