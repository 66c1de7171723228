"""The CEO's feedback channel: GitHub Issues opened since a release (the plan's "track
CEO-reported issues"), read through GitHub's REST API for the watch's record.

`GET /repos/{owner}/{repo}/issues?state=all&since=...&labels=...` lists issues *and* pull
requests updated since a time, newest first; pull requests carry a `pull_request` key and are
left out, and so are issues created before the release (updated since, but older).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import httpx

from ..secrets.redact import Redactor
from ..tables import ShowsAsRecord

#: One page is enough for a watch window; more would say the release has bigger problems.
PER_PAGE = 100


@dataclass(frozen=True)
class FeedbackIssue:
    number: int
    title: str
    state: str
    author: str
    labels: tuple[str, ...]
    created_at: str
    url: str

    def as_row(self) -> dict:
        row = asdict(self)
        row["labels"] = ", ".join(self.labels)
        return row


@dataclass(frozen=True)
class FeedbackResult(ShowsAsRecord):
    ok: bool
    repo: str
    since: str
    issues: tuple[FeedbackIssue, ...]
    detail: str = ""

    def as_row(self) -> dict:
        return {
            "ok": self.ok,
            "repo": self.repo,
            "since": self.since,
            "detail": self.detail,
            "issues": [issue.as_row() for issue in self.issues],
        }


def issues_opened_since(
    client: httpx.Client,
    repo: str,
    since: str,
    *,
    token: str,
    api_url: str = "https://api.github.com",
    labels: Sequence[str] = (),
    redactor: Redactor | None = None,
) -> FeedbackResult:
    """Issues of `repo` created at or after `since` (ISO 8601, UTC), optionally with all `labels`.
    A failure to ask is an outcome (ok False, detail), not an exception: the watch goes on."""
    hide = _Hiding(redactor, token)
    params = {"state": "all", "since": since, "per_page": str(PER_PAGE), "sort": "created", "direction": "desc"}
    if labels:
        params["labels"] = ",".join(labels)
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/vnd.github+json",
        "X-GitHub-Api-Version": "2022-11-28",
    }
    try:
        response = client.get(f"{api_url.rstrip('/')}/repos/{repo}/issues", params=params, headers=headers)
    except httpx.HTTPError as exc:
        return FeedbackResult(False, repo, since, (), hide.redact(f"cannot reach GitHub: {type(exc).__name__}: {exc}"))
    if response.status_code != 200:
        # Hidden before it is cut: an echoed token cut in two would be found by no redactor.
        said = (hide.redact(response.text.strip()).splitlines() or [""])[0][:200]
        return FeedbackResult(False, repo, since, (), f"GitHub answered {response.status_code} {said}".strip())
    try:
        documents = response.json()
    except ValueError:
        return FeedbackResult(False, repo, since, (), "GitHub's answer is not JSON")
    if not isinstance(documents, list):
        return FeedbackResult(False, repo, since, (), "GitHub's answer is not a list of issues")
    issues = []
    for item in documents:
        if not isinstance(item, dict) or "pull_request" in item:
            continue
        created = str(item.get("created_at") or "")
        if created < since[:19]:  # both ISO 8601 UTC: the string order is the time order
            continue
        issues.append(
            FeedbackIssue(
                number=int(item.get("number") or 0),
                # Every text GitHub answered, hidden as the rest of the record is.
                title=hide.redact(str(item.get("title") or "")),
                state=hide.redact(str(item.get("state") or "")),
                author=hide.redact(str((item.get("user") or {}).get("login") or "")),
                labels=tuple(
                    hide.redact(str(label.get("name"))) for label in item.get("labels") or () if isinstance(label, dict)
                ),
                created_at=hide.redact(created),
                url=hide.redact(str(item.get("html_url") or "")),
            )
        )
    return FeedbackResult(True, repo, since, tuple(issues))


class _Hiding:
    """The release's redactor, and the token, which is not one of the release's secrets."""

    def __init__(self, redactor: Redactor | None, token: str) -> None:
        # The token in every spelling (an echoed basic or bearer header, URL-encoded, base64).
        self._redactor, self._token = redactor, Redactor({"GITHUB_TOKEN": token}) if token else None

    def redact(self, text: str) -> str:
        text = self._redactor.redact(text) if self._redactor is not None else text
        return self._token.redact(text) if self._token is not None else text
