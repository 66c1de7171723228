"""Bad input gets one line naming the flag or key and what is allowed, exit code 2, and
nothing is deployed or written."""

from __future__ import annotations

import pytest
from conftest import run_cli


def test_help_leads_to_the_release_flow_in_two_hops():
    top = run_cli("--help")
    assert top.returncode == 0 and "release" in top.stdout and "runbook release --help" in top.stdout
    release = run_cli("release", "--help")
    assert release.returncode == 0
    for words in ("deploy_staging", "go_no_go", "rollback", "exit codes", "report.html", "--break"):
        assert words in release.stdout


BAD_ARGUMENTS = [
    (["release", "--break", "production:meltdown"], "--break"),
    (["release", "--break", "qa:slow"], "--break"),
    (["release", "--target", "heroku"], "--target"),
    (["release", "--operator", "rm -rf /;"], "--operator"),
    (["release", "--unknown-flag"], "unrecognized arguments"),
    (["release", "--config", "/nonexistent/hotdash.toml"], "config"),
    (["platform", "--config", "/nonexistent/hotdash.toml", "status"], "config"),
    (["nonsense"], "invalid choice"),
]


@pytest.mark.parametrize("args,names", BAD_ARGUMENTS, ids=[" ".join(a) for a, _ in BAD_ARGUMENTS])
def test_bad_arguments_fail_with_one_line_and_exit_2(rehearsal, args, names):
    done = run_cli(*args[:1], *(["--outputs", str(rehearsal.outputs)] if args[0] == "release" else []), *args[1:])
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and names in lines[0] and "Traceback" not in done.stderr
    assert not rehearsal.outputs.exists() or not any(rehearsal.outputs.rglob("*"))


def test_invalid_configuration_stops_before_anything_is_deployed(rehearsal):
    rehearsal.config.write_text(rehearsal.config.read_text().replace("verify_secrets = 2", "verify_secrets = 0"))
    done = rehearsal.release()
    assert done.returncode == 2
    assert "timeline.verify_secrets: must be a positive number" in done.stderr
    assert not rehearsal.outputs.exists()
    assert rehearsal.platform().releases("hotdash-staging") == []


def test_unwritable_archive_is_caught_before_any_deploy(rehearsal, tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("a file where the archive should be")
    done = run_cli("release", "--config", str(rehearsal.config), "--outputs", str(blocker / "outputs"))
    assert done.returncode == 2 and "--outputs" in done.stderr
    assert rehearsal.platform().releases("hotdash-staging") == []


def test_secret_values_come_from_stdin_never_argv(rehearsal):
    done = run_cli(
        "platform",
        "--config",
        str(rehearsal.config),
        "set-secret",
        "hotdash-staging",
        "SCOPES",
        stdin="read_products\n",
    )
    assert done.returncode == 0, done.stderr
    assert rehearsal.platform().secret_values("hotdash-staging") == {"SCOPES": "read_products"}
    listed = run_cli("platform", "--config", str(rehearsal.config), "secrets", "hotdash-staging")
    assert "SCOPES" in listed.stdout and "read_products" not in listed.stdout


# -- the bad-input table: configuration through the CLI, and notebook parameters ------------

from test_config import BAD_CONFIGS  # noqa: E402


@pytest.mark.parametrize("old,new,key,allowed", BAD_CONFIGS, ids=[c[2] for c in BAD_CONFIGS])
def test_bad_configuration_through_the_cli_exits_2_before_anything_runs(rehearsal, old, new, key, allowed):
    rehearsal.config.write_text(rehearsal.config.read_text().replace(old, new, 1))
    done = rehearsal.release()
    assert done.returncode == 2, done.stdout + done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and key in lines[0] and "Traceback" not in done.stderr
    assert not rehearsal.outputs.exists() and not rehearsal.state_dir.exists()


BAD_PARAMETERS = [
    ("deploy.ipynb", {"environment": "qa"}, "environment"),
    ("smoke_test.ipynb", {"environment": "prod"}, "environment"),
    ("deploy.ipynb", {"environment": "staging", "target": "heroku"}, "target"),
    ("deploy.ipynb", {"environment": "staging", "rehearsal_defect": "meltdown"}, "HOTDASH_DEFECT"),
]


@pytest.mark.parametrize("notebook,parameters,field", BAD_PARAMETERS, ids=[f"{n}:{f}" for n, _, f in BAD_PARAMETERS])
def test_bad_notebook_parameters_stop_with_a_named_usage_error(rehearsal, tmp_path, notebook, parameters, field):
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from hotdash_release.paths import RUNBOOKS_DIR

    with pytest.raises(PapermillExecutionError) as failed:
        papermill.execute_notebook(
            str(RUNBOOKS_DIR / notebook),
            str(tmp_path / "out.ipynb"),
            progress_bar=False,
            parameters={"config_path": str(rehearsal.config), "release_dir": str(tmp_path / "release"), **parameters},
        )
    assert failed.value.ename in ("UsageError", "ConfigError")
    assert field in failed.value.evalue and "allowed" in failed.value.evalue
    assert rehearsal.platform().releases("hotdash-staging") == []


def test_bad_input_to_release_leaves_no_kernel_template_or_export_worker_behind(tmp_path):
    """`runbook release` starts the kernel template and the HTML export worker before it reads
    its input; after a usage error nothing of them may still run, and nothing was written."""
    import uuid

    import psutil

    # Our command's children are told apart from other runners' (parallel tests) by a mark in
    # the environment they inherit.
    mark = uuid.uuid4().hex
    done = run_cli(
        "release",
        "--config",
        str(tmp_path / "missing.toml"),
        "--outputs",
        str(tmp_path / "out"),
        extra_env={"HOTDASH_TEST_MARK": mark},
    )
    assert done.returncode == 2 and "missing.toml" in done.stderr

    def ours(process: psutil.Process) -> bool:
        try:
            return process.environ().get("HOTDASH_TEST_MARK") == mark
        except psutil.Error:
            return False

    left = [
        process
        for process in psutil.process_iter(["cmdline"])
        if {"hotdash_release.execution.template_process", "hotdash_release.archive.htmlexport"}
        & set(process.info["cmdline"] or [])
        and ours(process)
    ]
    assert not left
    assert not (tmp_path / "out").exists()
