"""GitHub Actions: start a production release there, and summarise it on the run's page.

The deploy workflow (.github/workflows/deploy-production.yml) runs `runbook release
--target fly` in the `production` environment, whose reviewers approve each run and whose
secrets stay out of reach until then. `runbook dispatch` starts that workflow through
GitHub's REST API, as the plan's `gh workflow run deploy-production.yml --field ...` does,
so nobody needs the gh CLI or the Actions tab to ask for a release.

What GitHub expects (external contracts, "GitHub Actions"): POST .../dispatches with
`{"ref", "inputs"}`; every input travels as a string (the workflow types it back);
`return_run_details` turns the bare 204 into a 200 naming the run; the token needs repo
scope or Actions: write; the workflow file must be on the default branch.

`python -m hotdash_release.integrations.github summary outputs/` renders the newest release's
manifest.json as markdown for $GITHUB_STEP_SUMMARY: the outcome and the timing table
(planned vs actual) show on the run's page without downloading the archive.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from ..checks.tls import tls_context
from ..config import GITHUB_REPO, ReleaseConfig
from ..errors import DispatchError, UsageError
from ..secrets.redact import Redactor

DEFAULT_API_URL = "https://api.github.com"
#: Tests point this at a loopback server that speaks the same API.
API_URL_ENV = "HOTDASH_GITHUB_API_URL"
#: Checked in gh's own order of precedence.
TOKEN_ENVS = ("GH_TOKEN", "GITHUB_TOKEN")
REPO_ENV = "GH_REPO"
REQUEST_TIMEOUT_S = 30.0

#: What each refusal most likely means, for the one line a person reads.
_LIKELY_CAUSE = {
    401: "the token is invalid or expired; set GH_TOKEN or GITHUB_TOKEN to a valid token",
    403: "the token may not run workflows in {repo}: it needs repo scope (or Actions: write)",
    404: "{repo} is not visible to this token, or {workflow} is not on its default branch",
    422: "GitHub refused the inputs or the ref: does ref {ref!r} exist, and does {workflow} "
    "declare the inputs reason and skip_staging_check?",
}


@dataclass(frozen=True)
class DispatchRequest:
    """One request to run the deploy workflow, shaped like `gh workflow run`'s."""

    repo: str  # OWNER/NAME
    workflow: str  # file name under .github/workflows/
    ref: str
    reason: str
    skip_staging_check: bool = False

    @property
    def path(self) -> str:
        return f"/repos/{self.repo}/actions/workflows/{self.workflow}/dispatches"

    def body(self) -> dict:
        inputs = {
            "reason": self.reason,
            # Dispatch inputs are strings on the wire; the workflow's boolean input types it back.
            "skip_staging_check": "true" if self.skip_staging_check else "false",
        }
        return {"ref": self.ref, "inputs": inputs, "return_run_details": True}


@dataclass(frozen=True)
class Dispatched:
    """GitHub accepted the dispatch. The run's URLs come only with a 200 answer."""

    request: DispatchRequest
    workflow_run_id: int | None = None
    run_url: str = ""  # the run in the REST API
    html_url: str = ""  # the run's page

    def describe(self) -> str:
        where = f"{self.request.workflow} on {self.request.repo}@{self.request.ref}"
        if self.html_url:
            return f"dispatched {where}: {self.html_url}"
        return f"dispatched {where}; GitHub named no run: see the repository's Actions tab"


def dispatch_workflow(
    client: httpx.Client, request: DispatchRequest, *, token: str, api_url: str = DEFAULT_API_URL
) -> Dispatched:
    """POST the dispatch; return what GitHub said about the run, or raise DispatchError."""
    hide_token = Redactor({"GitHub token": token})
    try:
        response = client.post(api_url.rstrip("/") + request.path, json=request.body(), headers=_request_headers(token))
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise DispatchError(
            hide_token.redact(f"cannot reach the GitHub API at {api_url}: {type(exc).__name__}: {exc}")
        ) from exc
    if response.status_code == 204:
        return Dispatched(request)
    if response.status_code == 200:
        return _with_run_details(request, response)
    raise DispatchError(_refusal(request, response, hide_token), status_code=response.status_code)


def _request_headers(token: str) -> dict[str, str]:
    return {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
    }


def _with_run_details(request: DispatchRequest, response: httpx.Response) -> Dispatched:
    details = _json_object(response)
    run_id = details.get("workflow_run_id")
    return Dispatched(
        request,
        workflow_run_id=run_id if isinstance(run_id, int) else None,
        run_url=str(details.get("run_url") or ""),
        html_url=str(details.get("html_url") or ""),
    )


def _refusal(request: DispatchRequest, response: httpx.Response, hide: Redactor) -> str:
    # Hidden before it is cut: an echoed token cut in two would be found by no redactor.
    said = hide.redact(str(_json_object(response).get("message") or response.text.strip()))[:200]
    line = f"GitHub answered {response.status_code}" + (f" ({said})" if said else "")
    cause = _LIKELY_CAUSE.get(response.status_code)
    if cause:
        line += ": " + cause.format(repo=request.repo, workflow=request.workflow, ref=request.ref)
    return line


def _json_object(response: httpx.Response) -> dict:
    try:
        document = response.json()
    except ValueError:
        return {}
    return document if isinstance(document, dict) else {}


# --------------------------------------------------------------------------- the CLI verb


def dispatch_release(
    config: ReleaseConfig,
    *,
    reason: str,
    skip_staging_check: bool = False,
    ref: str | None = None,
    repo: str | None = None,
    environ: Mapping[str, str] | None = None,
    client: httpx.Client | None = None,
) -> Dispatched:
    """`runbook dispatch`: settle repo, ref and token from flags, configuration and environment."""
    environ = os.environ if environ is None else environ
    if not reason.strip():
        raise UsageError("--reason: say why this release is wanted; the workflow requires it")
    request = DispatchRequest(
        repo=resolve_repo(repo, config, environ),
        workflow=config.github.workflow,
        ref=ref or config.github.ref,
        reason=reason,
        skip_staging_check=skip_staging_check,
    )
    token = resolve_token(environ)
    api_url = environ.get(API_URL_ENV) or DEFAULT_API_URL
    if client is not None:
        return dispatch_workflow(client, request, token=token, api_url=api_url)
    with httpx.Client(timeout=REQUEST_TIMEOUT_S, verify=tls_context()) as own_client:
        return dispatch_workflow(own_client, request, token=token, api_url=api_url)


def resolve_repo(flag: str | None, config: ReleaseConfig, environ: Mapping[str, str]) -> str:
    """--repo, else [github] repo of the configuration, else $GH_REPO."""
    repo = flag or config.github.repo or environ.get(REPO_ENV, "")
    if not repo:
        raise UsageError(
            f"no repository to dispatch in: pass --repo OWNER/NAME, set [github] repo "
            f"in {config.path.name}, or set {REPO_ENV}"
        )
    if not GITHUB_REPO.match(repo):
        raise UsageError(f"repository {repo!r} is not OWNER/NAME")
    return repo


def resolve_token(environ: Mapping[str, str]) -> str:
    for name in TOKEN_ENVS:
        if environ.get(name):
            return environ[name]
    raise UsageError(f"no GitHub token: set {' or '.join(TOKEN_ENVS)} to a token with repo scope (or Actions: write)")


# --------------------------------------------------------------------------- approvals in CI


@dataclass(frozen=True)
class RunReview:
    """One review of a workflow run's deployment (GET .../actions/runs/{run_id}/approvals):
    who, approved or rejected, with what comment, for which environments."""

    login: str
    state: str  # "approved" | "rejected"
    comment: str
    environments: tuple[str, ...]


def run_reviews(
    client: httpx.Client, repo: str, run_id: str, *, token: str, api_url: str = DEFAULT_API_URL
) -> list[RunReview]:
    """The run's review history, as GitHub keeps it for environments with required reviewers."""
    hide_token = Redactor({"GitHub token": token})
    url = f"{api_url.rstrip('/')}/repos/{repo}/actions/runs/{run_id}/approvals"
    try:
        response = client.get(url, headers=_request_headers(token))
    except (httpx.HTTPError, httpx.InvalidURL) as exc:
        raise DispatchError(
            hide_token.redact(f"cannot reach the GitHub API at {api_url}: {type(exc).__name__}")
        ) from exc
    if response.status_code != 200:
        raise DispatchError(
            hide_token.redact(f"GitHub answered {response.status_code} for the run's approvals ({url})"),
            status_code=response.status_code,
        )
    try:
        rows = response.json()
        return [
            RunReview(
                str(row["user"]["login"]),
                str(row.get("state") or ""),
                str(row.get("comment") or ""),
                tuple(str(e.get("name") or "") for e in row.get("environments") or []),
            )
            for row in rows
        ]
    except (ValueError, KeyError, TypeError) as exc:
        raise DispatchError(f"GitHub's run approvals are not the documented list ({type(exc).__name__})") from exc


@dataclass(frozen=True)
class CiRun:
    """The workflow run this process is part of, from the variables GitHub Actions sets."""

    repo: str
    run_id: str
    actor: str  # who dispatched (triggered) the run

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> CiRun | None:
        if environ.get("GITHUB_ACTIONS") != "true" or not environ.get("GITHUB_RUN_ID"):
            return None
        actor = environ.get("GITHUB_TRIGGERING_ACTOR") or environ.get("GITHUB_ACTOR") or ""
        return cls(environ.get("GITHUB_REPOSITORY", ""), environ["GITHUB_RUN_ID"], actor)

    def production_approvers(self, environ: Mapping[str, str], environment: str = "production") -> list[RunReview]:
        """Who approved this run's `environment` deployment (the environment's required reviewers)."""
        with httpx.Client(timeout=REQUEST_TIMEOUT_S, verify=tls_context()) as client:
            reviews = run_reviews(
                client,
                self.repo,
                self.run_id,
                token=resolve_token(environ),
                api_url=environ.get(API_URL_ENV, DEFAULT_API_URL),
            )
        return [r for r in reviews if r.state == "approved" and environment in r.environments]


# --------------------------------------------------------------------------- job summary


def newest_release_dir(outputs: Path) -> Path | None:
    """The newest outputs/<app>/<release id>/ folder; release ids sort by their UTC start."""
    from ..runner import validate_release_id

    def is_release(folder: Path) -> bool:
        try:
            return folder.is_dir() and bool(validate_release_id(folder.name))
        except UsageError:
            return False

    releases = [folder for folder in Path(outputs).glob("*/*") if is_release(folder)]
    return max(releases, key=lambda folder: folder.name, default=None)


def job_summary_markdown(release_dir: Path) -> str:
    """The release's outcome and timing table (planned vs actual) as GitHub-flavoured markdown."""
    from ..archive.seal import MANIFEST, read_manifest

    release_dir = Path(release_dir)
    if not (release_dir / MANIFEST).is_file():
        # The runner leaves a folder unsealed (no manifest) when it found a secret in it.
        return (
            f"## HotDash release {release_dir.name}: NOT SEALED\n\n"
            f"`{MANIFEST}` is missing: the archive was not sealed. See the job log and the archive artifact.\n"
        )
    manifest = read_manifest(release_dir)
    lines = [
        f"## HotDash release {manifest['release_id']}: {manifest['outcome'].upper()} (exit {manifest['exit_code']})",
        "",
        _cell(manifest.get("reason", "")),
        "",
    ]
    if manifest.get("release_reason"):
        lines += [f"Requested because: {_cell(manifest['release_reason'])}", ""]
    lines += [
        f"Operator: {_cell(manifest.get('operator', ''))}, target: {_cell(manifest.get('target', ''))}",
        "",
        *_timing_table(manifest.get("sections", [])),
        *_chain_head(release_dir),
    ]
    return "\n".join(lines) + "\n"


def _chain_head(release_dir: Path) -> list[str]:
    """The app's signed chain head after this release, to keep outside the archive: the job
    summary outlives the artifact's folder and anyone who can edit it."""
    from ..archive.signing import CHECKPOINT, head_pin

    try:
        checkpoint = json.loads((release_dir.parent / CHECKPOINT).read_text(encoding="utf-8"))
        if checkpoint["head_release_id"] != release_dir.name:
            return []
        pin = head_pin(checkpoint)
        count, key = int(checkpoint["releases"]), checkpoint["key_id"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    return [
        "",
        f"Chain head: `{_cell(pin)}` ({count} release(s), signed by `{_cell(key)}`). Check the archive "
        f"against it later: `runbook verify --expect-head {_cell(pin)}`",
        *_store_line(release_dir),
    ]


def _store_line(release_dir: Path) -> list[str]:
    """With an archive store: whether this release is in it (the head advanced) or still owed."""
    from ..archive.storesync import STATE_FILE

    try:
        state = json.loads((release_dir.parent.parent / STATE_FILE).read_text(encoding="utf-8"))
        url = str(state["url"])
        stored = release_dir.name in state["apps"].get(release_dir.parent.name, {}).get("releases", [])
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return []
    if stored:
        return ["", f"Archive store: `{_cell(url)}`: uploaded, and the chain head above is the store's head."]
    return [
        "",
        f"Archive store: `{_cell(url)}`: **NOT uploaded**; the artifact holds the release. "
        f"Complete it: `runbook archive push {_cell(release_dir.name)}`",
    ]


def _timing_table(sections: list[dict]) -> list[str]:
    rows = ["| # | Section | Outcome | Actual | Planned |", "|---:|---|---|---:|---:|"]
    for number, section in enumerate(sections, start=1):
        actual_s, budget = section.get("duration_s", 0.0), section.get("budget_minutes")
        over = budget is not None and actual_s > budget * 60
        planned = "" if budget is None else f"{budget:g} min" + (" **over**" if over else "")
        rows.append(
            f"| {number} | {_cell(section.get('title', ''))} | {_cell(section.get('outcome', ''))} "
            f"| {actual_s:.1f} s | {planned} |"
        )
    total_s = sum(s.get("duration_s", 0.0) for s in sections)
    total_budget = sum(s["budget_minutes"] for s in sections if s.get("budget_minutes") is not None)
    rows.append(f"| | **Total** | | **{total_s:.1f} s** | **{total_budget:g} min** |")
    return rows


def _cell(text: str) -> str:
    # A pipe or a line break inside a cell would break the table.
    return str(text).replace("|", "\\|").replace("\r", " ").replace("\n", " ")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m hotdash_release.integrations.github",
        description="GitHub Actions helpers for the release workflow.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    summary = commands.add_parser("summary", help="markdown for $GITHUB_STEP_SUMMARY from the newest release")
    summary.add_argument("outputs", type=Path, help="the archive root (outputs/)")
    args = parser.parse_args(argv)

    release_dir = newest_release_dir(args.outputs)
    if release_dir is None:
        print(
            f"## HotDash release: none archived\n\nNo release folder under `{args.outputs}`: "
            "the release stopped before it started. See the job log."
        )
        return 1
    print(job_summary_markdown(release_dir), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
