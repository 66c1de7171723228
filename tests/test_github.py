"""`runbook dispatch` against a loopback server that speaks GitHub's workflow-dispatch API.

The fake checks what GitHub checks (the bearer token, the path naming repository and
workflow file, a JSON body whose inputs are all strings, a ref that exists) and answers as
the external contracts say: 204, or 200 with the run's URLs when asked for run details;
401, 403, 404, 422 otherwise. The token must never show in any output.

The job summary is rendered from manifest.json files written here in the shape the
archive writes them.
"""

from __future__ import annotations

import json
import re
import socket

import httpx
import pytest
from conftest import write_config
from loopback import LoopbackServer, Reply, Request

from hotdash_release.cli import main
from hotdash_release.config import load_config
from hotdash_release.integrations.github import (
    API_URL_ENV,
    DispatchError,
    DispatchRequest,
    dispatch_release,
    dispatch_workflow,
    job_summary_markdown,
    newest_release_dir,
)
from hotdash_release.integrations.github import main as github_main
from hotdash_release.paths import RUNBOOKS_DIR

TOKEN = "ghp_T0k3nThatMustNeverBePrinted0123456789"
REPO = "acme/hotdash"
READ_ONLY_REPO = "acme/read-only"
UNKNOWN_REPO = "acme/nothing-here"
WORKFLOW = "deploy-production.yml"
BRANCHES = ("main", "release")
RUN_ID = 4242
HTML_URL = f"https://github.com/{REPO}/actions/runs/{RUN_ID}"
WORKFLOW_INPUTS = {"reason", "skip_staging_check"}


def github_error(status: int, message: str) -> Reply:
    return Reply.json(
        {"message": message, "documentation_url": "https://docs.github.com/rest", "status": str(status)}, status=status
    )


class FakeGitHub:
    """The dispatch endpoint of one account that sees REPO (and READ_ONLY_REPO, read-only)."""

    def __init__(self, server: LoopbackServer, *, run_details: bool = True) -> None:
        self.server = server
        self.run_details = run_details  # False: an older API that always answers 204
        self.dispatches: list[dict] = []

    @property
    def api_url(self) -> str:
        return self.server.base_url

    def answer(self, request: Request) -> Reply:
        if request.headers.get("Authorization") != f"Bearer {TOKEN}":
            return github_error(401, "Bad credentials")
        found = re.fullmatch(r"/repos/([^/]+/[^/]+)/actions/workflows/([^/]+)/dispatches", request.path)
        if request.method != "POST" or not found or found[1] not in (REPO, READ_ONLY_REPO) or found[2] != WORKFLOW:
            return github_error(404, "Not Found")
        if found[1] == READ_ONLY_REPO:
            return github_error(403, "Resource not accessible by personal access token")
        body = json.loads(request.body)
        problem = self._body_problem(body, request.headers.get("Content-Type", ""))
        if problem:
            return github_error(422, problem)
        self.dispatches.append(body)
        if self.run_details and body.get("return_run_details"):
            return Reply.json(
                {
                    "workflow_run_id": RUN_ID,
                    "run_url": f"{self.api_url}/repos/{REPO}/actions/runs/{RUN_ID}",
                    "html_url": HTML_URL,
                }
            )
        return Reply(204)

    @staticmethod
    def _body_problem(body: dict, content_type: str) -> str:
        if not content_type.startswith("application/json"):
            return "Problems parsing JSON"
        if body.get("ref") not in BRANCHES:
            return f"No ref found for: {body.get('ref')}"
        inputs = body.get("inputs", {})
        if set(inputs) - WORKFLOW_INPUTS:
            return f"Unexpected inputs provided: {sorted(set(inputs) - WORKFLOW_INPUTS)}"
        if not all(isinstance(value, str) for value in inputs.values()):
            return "inputs must be strings"
        if not inputs.get("reason"):
            return "Required input 'reason' not provided"
        if inputs.get("skip_staging_check", "false") not in ("true", "false"):
            return "skip_staging_check must be a boolean"
        return ""


@pytest.fixture
def server(loopback):
    return loopback


@pytest.fixture
def github(server):
    fake = FakeGitHub(server)
    # The loopback server routes exact paths: hand every path the tests use to the fake.
    for repo in (REPO, READ_ONLY_REPO, UNKNOWN_REPO):
        for workflow in (WORKFLOW, "other.yml"):
            server.route(f"/repos/{repo}/actions/workflows/{workflow}/dispatches")(fake.answer)
    return fake


@pytest.fixture
def client():
    with httpx.Client(timeout=5.0) as http:
        yield http


@pytest.fixture
def refused_url():
    with socket.socket() as sock:  # bound but not listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


def request_for(
    repo: str = REPO, *, ref: str = "main", skip: bool = False, workflow: str = WORKFLOW
) -> DispatchRequest:
    return DispatchRequest(
        repo=repo,
        workflow=workflow,
        ref=ref,
        reason="Initial production deployment for CEO testing",
        skip_staging_check=skip,
    )


# --------------------------------------------------------------------------- the API call


def test_dispatch_posts_the_documented_body_and_returns_the_run(github, server, client):
    dispatched = dispatch_workflow(client, request_for(), token=TOKEN, api_url=github.api_url)

    assert dispatched.html_url == HTML_URL and dispatched.workflow_run_id == RUN_ID
    assert dispatched.run_url.endswith(f"/repos/{REPO}/actions/runs/{RUN_ID}")
    assert HTML_URL in dispatched.describe()
    [request] = server.received
    assert request.method == "POST" and request.path == f"/repos/{REPO}/actions/workflows/{WORKFLOW}/dispatches"
    assert request.headers["Accept"] == "application/vnd.github+json"
    assert json.loads(request.body) == {
        "ref": "main",
        "inputs": {"reason": "Initial production deployment for CEO testing", "skip_staging_check": "false"},
        "return_run_details": True,
    }


def test_skipping_the_staging_check_travels_as_the_string_true(github, client):
    dispatch_workflow(client, request_for(skip=True, ref="release"), token=TOKEN, api_url=github.api_url)
    [body] = github.dispatches
    assert body["inputs"]["skip_staging_check"] == "true" and body["ref"] == "release"


def test_a_bare_204_is_a_dispatch_without_a_run_url(github, client):
    github.run_details = False
    dispatched = dispatch_workflow(client, request_for(), token=TOKEN, api_url=github.api_url)
    assert dispatched.html_url == "" and dispatched.workflow_run_id is None
    assert "dispatched deploy-production.yml on acme/hotdash@main" in dispatched.describe()
    assert "Actions tab" in dispatched.describe()


REFUSALS = [
    # (what is wrong, token, request, status, words that name the likely cause)
    ("bad token", "ghp_wrong", request_for(), 401, ["Bad credentials", "invalid or expired", "GH_TOKEN"]),
    ("no access", TOKEN, request_for(READ_ONLY_REPO), 403, ["Resource not accessible", "repo scope", READ_ONLY_REPO]),
    ("unknown repository", TOKEN, request_for(UNKNOWN_REPO), 404, ["Not Found", "not visible", "default branch"]),
    (
        "workflow not on default branch",
        TOKEN,
        request_for(workflow="other.yml"),
        404,
        ["other.yml is not on its default branch"],
    ),
    ("ref that does not exist", TOKEN, request_for(ref="nope"), 422, ["No ref found for: nope", "ref 'nope'"]),
]


@pytest.mark.parametrize("token,request_,status,words", [r[1:] for r in REFUSALS], ids=[r[0] for r in REFUSALS])
def test_refusals_name_the_likely_cause_and_never_the_token(github, client, token, request_, status, words):
    with pytest.raises(DispatchError) as refused:
        dispatch_workflow(client, request_, token=token, api_url=github.api_url)
    message = str(refused.value)
    assert refused.value.status_code == status
    assert message.startswith(f"GitHub answered {status}") and "\n" not in message
    for word in words:
        assert word in message
    assert token not in message and TOKEN not in message
    assert github.dispatches == []


def test_an_unreachable_api_is_a_dispatch_error_without_the_token(client, refused_url):
    with pytest.raises(DispatchError) as unreachable:
        dispatch_workflow(client, request_for(), token=TOKEN, api_url=refused_url)
    assert unreachable.value.status_code is None
    assert "cannot reach the GitHub API" in str(unreachable.value) and TOKEN not in str(unreachable.value)


# --------------------------------------------------------------------------- `runbook dispatch`


@pytest.fixture
def environ(monkeypatch, github):
    """The CLI's environment: the token in GITHUB_TOKEN, the API on loopback, no other GitHub settings."""
    for name in ("GH_TOKEN", "GITHUB_TOKEN", "GH_REPO"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("GITHUB_TOKEN", TOKEN)
    monkeypatch.setenv(API_URL_ENV, github.api_url)
    return monkeypatch


def run_dispatch(capsys, *args: str) -> tuple[int, str, str]:
    try:
        code = main(["dispatch", *args])
    except SystemExit as exit_:  # argparse's usage errors
        code = exit_.code
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_prints_the_run_page(environ, github, capsys):
    code, out, err = run_dispatch(capsys, "--reason", "Initial production deployment for CEO testing", "--repo", REPO)
    assert code == 0, err
    assert out.strip() == f"dispatched {WORKFLOW} on {REPO}@main: {HTML_URL}"
    assert github.dispatches[0]["inputs"] == {
        "reason": "Initial production deployment for CEO testing",
        "skip_staging_check": "false",
    }


def test_cli_passes_skip_staging_check_and_ref(environ, github, capsys):
    code, _, err = run_dispatch(
        capsys, "--reason", "hotfix", "--skip-staging-check", "--ref", "release", "--repo", REPO
    )
    assert code == 0, err
    assert github.dispatches[0]["ref"] == "release"
    assert github.dispatches[0]["inputs"]["skip_staging_check"] == "true"


def test_cli_takes_gh_token_and_gh_repo_like_gh(environ, github, capsys):
    environ.delenv("GITHUB_TOKEN")
    environ.setenv("GH_TOKEN", TOKEN)
    environ.setenv("GH_REPO", REPO)
    code, out, err = run_dispatch(capsys, "--reason", "from GH_REPO")
    assert code == 0, err
    assert HTML_URL in out


def test_cli_takes_the_repository_from_the_configuration(environ, github, capsys, tmp_path):
    config = write_config(tmp_path, state_dir=tmp_path / "state", edits={'# repo = "OWNER/NAME"': f'repo = "{REPO}"'})
    environ.setenv("GH_REPO", "someone/else")  # the configuration wins over the environment
    code, out, err = run_dispatch(capsys, "--reason", "from the configuration", "--config", str(config))
    assert code == 0, err
    assert HTML_URL in out
    assert server_paths(github) == [f"/repos/{REPO}/actions/workflows/{WORKFLOW}/dispatches"]


def server_paths(github: FakeGitHub) -> list[str]:
    return github.server.paths_received()


@pytest.mark.parametrize(
    "token,repo,status", [("ghp_wrong", REPO, 401), (TOKEN, READ_ONLY_REPO, 403), (TOKEN, UNKNOWN_REPO, 404)]
)
def test_cli_refusal_is_one_line_exit_1_without_the_token(environ, capsys, token, repo, status):
    environ.setenv("GITHUB_TOKEN", token)
    code, out, err = run_dispatch(capsys, "--reason", "x", "--repo", repo)
    assert code == 1
    [line] = err.strip().splitlines()
    assert line.startswith(f"runbook: DispatchError: GitHub answered {status}")
    assert token not in out + err and TOKEN not in out + err


def test_cli_bad_ref_is_exit_1_naming_the_ref(environ, capsys):
    code, _, err = run_dispatch(capsys, "--reason", "x", "--repo", REPO, "--ref", "no-such-branch")
    assert code == 1 and "422" in err and "'no-such-branch'" in err


MISSING = [
    ("no token", ["GITHUB_TOKEN"], ["--repo", REPO], ["GH_TOKEN", "GITHUB_TOKEN"]),
    ("no repository", [], [], ["--repo", "[github] repo", "GH_REPO"]),
    ("repository not OWNER/NAME", [], ["--repo", "just-a-name"], ["OWNER/NAME"]),
    ("blank reason", [], ["--repo", REPO, "--reason", "  "], ["--reason"]),
]


@pytest.mark.parametrize("unset,args,words", [m[1:] for m in MISSING], ids=[m[0] for m in MISSING])
def test_cli_usage_errors_exit_2_naming_what_to_set(environ, github, capsys, unset, args, words):
    for name in unset:
        environ.delenv(name)
    if "--reason" not in args:
        args = [*args, "--reason", "x"]
    code, _, err = run_dispatch(capsys, *args)
    assert code == 2
    [line] = err.strip().splitlines()
    assert line.startswith("runbook: error:")
    for word in words:
        assert word in line
    assert server_paths(github) == [] and TOKEN not in err


def test_cli_requires_a_reason(environ, capsys):
    code, _, err = run_dispatch(capsys, "--repo", REPO)
    assert code == 2 and "--reason" in err


def test_dispatch_release_uses_the_configured_workflow_and_ref(github, client):
    config = load_config(RUNBOOKS_DIR / "hotdash.toml")
    dispatched = dispatch_release(
        config, reason="r", repo=REPO, client=client, environ={"GH_TOKEN": TOKEN, API_URL_ENV: github.api_url}
    )
    assert dispatched.request.workflow == config.github.workflow == WORKFLOW
    assert dispatched.request.ref == config.github.ref


# --------------------------------------------------------------------------- job summary


def write_manifest(
    outputs,
    release_id: str,
    *,
    outcome: str = "released",
    exit_code: int = 0,
    reason: str = "all sections passed",
    app: str = "hotdash-production",
    sections=None,
):
    folder = outputs / app / release_id
    folder.mkdir(parents=True)
    manifest = {
        "release_id": release_id,
        "app": app,
        "outcome": outcome,
        "exit_code": exit_code,
        "reason": reason,
        "operator": "octocat",
        "target": "fly",
        "sections": sections if sections is not None else SECTIONS,
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    return folder


SECTIONS = [
    {
        "key": "preflight",
        "title": "Pre-deployment checklist",
        "outcome": "passed",
        "duration_s": 2.1,
        "budget_minutes": None,
    },
    {
        "key": "verify_secrets",
        "title": "Step 1: Verify secrets",
        "outcome": "passed",
        "duration_s": 95.0,
        "budget_minutes": 2.0,
    },
    {
        "key": "deploy_staging",
        "title": "Step 2: Deploy to staging first",
        "outcome": "failed",
        "duration_s": 400.5,
        "budget_minutes": 5.0,
    },
]


def test_job_summary_shows_outcome_and_timing_table(tmp_path):
    folder = write_manifest(
        tmp_path,
        "20261125T190512Z-a1b2c3",
        outcome="blocked",
        exit_code=3,
        reason="stopped before production changed: Step 2: /health | HTTP 503",
    )
    markdown = job_summary_markdown(folder)
    lines = markdown.splitlines()
    assert lines[0] == "## HotDash release 20261125T190512Z-a1b2c3: BLOCKED (exit 3)"
    assert "stopped before production changed: Step 2: /health \\| HTTP 503" in markdown  # a pipe cannot split a cell
    assert "Operator: octocat, target: fly" in markdown
    assert "| # | Section | Outcome | Actual | Planned |" in lines
    assert "| 1 | Pre-deployment checklist | passed | 2.1 s |  |" in lines
    assert "| 2 | Step 1: Verify secrets | passed | 95.0 s | 2 min |" in lines
    assert "| 3 | Step 2: Deploy to staging first | failed | 400.5 s | 5 min **over** |" in lines
    assert "| | **Total** | | **497.6 s** | **7 min** |" in lines


def test_summary_command_picks_the_newest_release(tmp_path, capsys):
    write_manifest(tmp_path, "20261125T090000Z-aaaaaa", outcome="rolled back", exit_code=4)
    write_manifest(tmp_path, "20261125T100000Z-bbbbbb")
    (tmp_path / "interactive" / "2026-11-25").mkdir(parents=True)  # runbooks run by hand: not a release
    assert newest_release_dir(tmp_path).name == "20261125T100000Z-bbbbbb"
    assert github_main(["summary", str(tmp_path)]) == 0
    assert capsys.readouterr().out.startswith("## HotDash release 20261125T100000Z-bbbbbb: RELEASED (exit 0)")


def test_summary_says_so_when_the_newest_release_is_unsealed(tmp_path, capsys):
    write_manifest(tmp_path, "20261125T090000Z-aaaaaa")
    (tmp_path / "hotdash-production" / "20261125T100000Z-bbbbbb").mkdir()  # a secret was found: no manifest
    assert github_main(["summary", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "20261125T100000Z-bbbbbb: NOT SEALED" in out and "aaaaaa" not in out


def test_summary_without_any_release_exits_1_with_a_note(tmp_path, capsys):
    assert github_main(["summary", str(tmp_path)]) == 1
    assert "none archived" in capsys.readouterr().out


def test_summary_shows_the_signed_chain_head_of_this_release(tmp_path):
    folder = write_manifest(tmp_path, "20261125T190512Z-a1b2c3")
    head = "ab" * 32
    checkpoint = {"app": "hotdash-production", "releases": 3, "head_release_id": folder.name}
    checkpoint |= {"head_manifest_sha256": head, "key_id": "ed25519:0123456789abcdef"}
    (folder.parent / "checkpoint.json").write_text(json.dumps(checkpoint))
    markdown = job_summary_markdown(folder)
    assert f"Chain head: `hotdash-production:{head}` (3 release(s), signed by `ed25519:0123456789abcdef`)" in markdown
    assert f"`runbook verify --expect-head hotdash-production:{head}`" in markdown
    # A checkpoint whose head is another release (or none at all) is not this release's head.
    (folder.parent / "checkpoint.json").write_text(json.dumps({**checkpoint, "head_release_id": "other"}))
    assert "Chain head" not in job_summary_markdown(folder)
