"""Bad input stops `runbook` with one line and exit 2, before anything is written or deployed:
one case per input (issue 19 item 5, and item 3's checks of free text and short secrets)."""

from __future__ import annotations

import pytest
from conftest import make_rehearsal, run_cli, with_database

APPS = ("hotdash-staging", "hotdash-production")
SECRET = "s3cr3t-database-password"


def one_line(stderr: str) -> str:
    """The command's own message: one line, no traceback. (A kernel the pool had started may add
    asyncio's "Task was destroyed" warnings as it exits under load: not the command's output,
    reported separately; they are not counted here.)"""
    own = [line for line in stderr.splitlines() if line.startswith("runbook")]
    assert len(own) == 1 and stderr.startswith(own[0]) and "Traceback" not in stderr, stderr
    return own[0]


def good_values(app: str) -> dict[str, str]:
    tag = app.split("-")[1]
    return {
        "DATABASE_URL": f"postgresql://hotdash:{SECRET}-{tag}@127.0.0.1/hotdash",
        "SHOPIFY_API_KEY": f"apikey{tag}0123456789",
        "SHOPIFY_API_SECRET": f"shpss_{tag}_0123456789abcdef",
        "SHOPIFY_APP_URL": f"https://{app}.rehearsal.invalid",
        "SCOPES": "read_products",  # public: any length
        "SUPABASE_URL": f"https://{tag}project.supabase.co",
        "SUPABASE_ANON_KEY": f"eyJhbGciOiJIUzI1NiJ9.anon-{tag}",
    }


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = make_rehearsal(tmp_path_factory.mktemp("inputs"), wait_timeout_s=4)
    yield world
    world.platform().stop()


@pytest.fixture
def planted(world):
    platform = world.platform()
    for app in APPS:
        platform.set_secrets(app, with_database(platform, app, good_values(app)))
    return world


DB_STAGING = f"postgresql://hotdash:{SECRET}-staging@127.0.0.1/hotdash"
#: (id, release arguments, extra environment, secrets changed first, what the one line says)
RELEASE_CASES = [
    ("operator newline", ["--operator", "alice\n"], {}, {}, "--operator: use letters"),
    ("operator markup", ["--operator", "<svg onload=1>"], {}, {}, "--operator: use letters"),
    ("HOTDASH_OPERATOR newline", [], {"HOTDASH_OPERATOR": "alice\nbob"}, {}, "HOTDASH_OPERATOR: use letters"),
    ("HOTDASH_OPERATOR too long", [], {"HOTDASH_OPERATOR": "a" * 65}, {}, "HOTDASH_OPERATOR: use letters"),
    ("HOTDASH_OPERATOR markup", [], {"HOTDASH_OPERATOR": '"><script>'}, {}, "HOTDASH_OPERATOR: use letters"),
    ("resume id with newline", ["--resume", "20261125T190512Z-a1b2c3\n"], {}, {}, "release id:"),
    (
        "reason holds a secret",
        ["--reason", f"because {DB_STAGING} works"],
        {},
        {},
        "--reason: holds the value of DATABASE_URL@staging",
    ),
    (
        "reason holds one line of a multi-line secret",
        ["--reason", "see second-line-of-the-key"],
        {},
        {"hotdash-staging": {"SHOPIFY_API_SECRET": "first-line-of-the-key\nsecond-line-of-the-key"}},
        "--reason: holds the value of SHOPIFY_API_SECRET@staging",
    ),
    (
        "attest note holds a secret",
        ["--attest", f'go_no_go:Go:ok "{DB_STAGING}"'],
        {},
        {},
        "--attest: holds the value of DATABASE_URL@staging",
    ),
    (
        "HOTDASH_OPERATOR holds a secret",
        [],
        {"HOTDASH_OPERATOR": "abcdefgh12"},
        {"hotdash-staging": {"SUPABASE_ANON_KEY": "abcdefgh12"}},
        "HOTDASH_OPERATOR: holds the value of SUPABASE_ANON_KEY@staging",
    ),
    (
        "operator holds a secret",
        ["--operator", "abcdefgh12"],
        {},
        {"hotdash-staging": {"SUPABASE_ANON_KEY": "abcdefgh12"}},
        "--operator: holds the value of SUPABASE_ANON_KEY@staging",
    ),
    (
        "short sensitive secret",
        [],
        {},
        {"hotdash-production": {"SHOPIFY_API_SECRET": "ok"}},
        "secret SHOPIFY_API_SECRET on hotdash-production: shorter than secrets.min_length (8",
    ),
    (
        "7-character sensitive secret",
        [],
        {},
        {"hotdash-staging": {"DATABASE_URL": "abc1234"}},
        "secret DATABASE_URL on hotdash-staging: shorter than secrets.min_length",
    ),
]


@pytest.mark.parametrize("args,env,secrets,message", [c[1:] for c in RELEASE_CASES], ids=[c[0] for c in RELEASE_CASES])
def test_bad_release_input_stops_with_one_line_and_nothing_written(planted, tmp_path, args, env, secrets, message):
    world = planted
    outputs = tmp_path / "outputs"
    platform = world.platform()
    for app, values in secrets.items():
        platform.set_secrets(app, values)
    # The database is real: its URL as stored, with the password the test chose (with_database).
    args = [arg.replace(DB_STAGING, platform.secret_values("hotdash-staging")["DATABASE_URL"]) for arg in args]
    operator = [] if "--operator" in args or env.get("HOTDASH_OPERATOR") else ["--operator", "test-operator"]
    done = run_cli("release", "--config", str(world.config), "--outputs", str(outputs), *operator, *args, extra_env=env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in one_line(done.stderr), done.stderr
    assert done.stdout == ""
    assert not (outputs / "hotdash-production").exists()
    assert all(platform.releases(app) == [] for app in APPS)
    # Never the value itself: only the secret's name.
    for values in [good_values(app) for app in APPS] + list(secrets.values()):
        for name, value in values.items():
            if len(value) >= 8 and name not in ("SHOPIFY_APP_URL", "SCOPES", "SHOPIFY_API_KEY"):
                assert value not in done.stderr


CONFIG_CASES = [
    ("deadline_s = 4\n", "deadline_s = nan\n", "health.deadline_s: must be a finite number, got nan"),
    ("max_latency_ms = 1500", "max_latency_ms = inf", "smoke.max_latency_ms: must be a finite number, got inf"),
    ("notify = 5", "notify = -inf", "timeline.notify: must be a finite number"),
    ("at_least = 0.85", "at_least = nan", "go_no_go.criteria[0].at_least: must be a finite number"),
    ("wait_timeout_s = 4", "wait_timeout_s = inf", "targets.local.wait_timeout_s: must be a finite number"),
    ("max_age_s = 120", "max_age_s = -120", "health.max_age_s: must be a positive number, got -120"),
    ('file = "notifications.log"', 'file = "../../../../tmp/x"', "notification.file: '../../../../tmp/x' must be"),
]


@pytest.mark.parametrize("old,new,message", CONFIG_CASES, ids=[c[1] for c in CONFIG_CASES])
def test_bad_configuration_stops_the_release_with_one_line(tmp_path, old, new, message):
    world = make_rehearsal(tmp_path, wait_timeout_s=4, edits={old: new})
    done = world.release()
    assert done.returncode == 2, done.stdout + done.stderr
    assert message in one_line(done.stderr), done.stderr
    assert not world.outputs.exists() or not any(world.outputs.iterdir())


@pytest.mark.parametrize("where", ["state", "state/archive", "."])
def test_outputs_may_not_meet_the_platform_state(tmp_path, where):
    world = make_rehearsal(tmp_path, wait_timeout_s=4)
    outputs = tmp_path / where
    done = run_cli(
        "release", "--config", str(world.config), "--operator", "t", extra_env={"HOTDASH_OUTPUTS": str(outputs)}
    )
    assert done.returncode == 2, done.stdout + done.stderr
    line = one_line(done.stderr)
    assert "outputs:" in line and "state folder" in line
    assert not (outputs / "hotdash-production").exists()


@pytest.mark.parametrize("release_id", ["20261125T190512Z-a1b2c3\n", "20261125T190512Z-a1b2c3 ", "x"])
def test_verify_refuses_a_release_id_that_is_not_one(tmp_path, release_id):
    done = run_cli("verify", release_id, "--outputs", str(tmp_path))
    assert done.returncode == 2 and "release id:" in one_line(done.stderr)
