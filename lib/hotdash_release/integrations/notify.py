"""Step 6 of the plan: tell the CEO the release is ready to test.

Two channels behind one call: a file (the local default, an inbox a rehearsal can read)
and a Slack incoming webhook (success is HTTP 200 with body "ok", anything else fails).
A failed notification is a recorded result, never an exception: it must not undo a
good release.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import httpx

from ..checks.tls import tls_context
from ..config import Notification
from ..results import utc_now
from ..secrets.redact import Redactor
from ..tables import ShowsAsRecord


@dataclass(frozen=True)
class NotificationResult(ShowsAsRecord):
    channel: str
    recipient: str
    ok: bool
    detail: str
    message: str

    def as_row(self) -> dict:
        return asdict(self)


def compose_message(
    notification: Notification,
    *,
    release_id: str,
    operator: str,
    image_ref: str | None,
    served_at: str | None = None,
    watched_until: str | None = None,
) -> str:
    """The plan's notification: production URL, expected functionality, known limitations, feedback."""
    url_line = f"Production URL: {notification.production_url}"
    if served_at and served_at.rstrip("/") != notification.production_url:
        url_line += f" (this rehearsal serves it at {served_at})"
    lines = [
        f"{notification.recipient}: HotDash is deployed to production and ready for testing.",
        url_line,
        "Expected functionality: " + ", ".join(notification.expected_functionality),
        "Known limitations: " + ("; ".join(notification.known_limitations) or "none"),
        f"Feedback channel: {notification.feedback_channel}",
        f"Release {release_id}, image {image_ref or 'unknown'}, shipped by {operator}.",
    ]
    if watched_until:
        lines.append(
            f"Production is watched until {watched_until} (health, latency, error logs); "
            "a short message will say how that went."
        )
    return "\n".join(lines)


def compose_watch_opening(notification: Notification, *, release_id: str, watched_until: str) -> str:
    """A later watch (`runbook watch`) tells the CEO it is on, as the release's notification does."""
    return f"{notification.recipient}: production is watched again for release {release_id} until about {watched_until}"


def compose_watch_closing(notification: Notification, *, release_id: str, outcome: str) -> str:
    """The second, short message: the watch is over, and what it found."""
    return f"{notification.recipient}: the watch of release {release_id} is over: {outcome}"


def send_notification(
    notification: Notification, message: str, *, inbox_dir: Path, client: httpx.Client | None = None, environ=None
) -> NotificationResult:
    environ = os.environ if environ is None else environ
    if notification.channel == "file":
        return _to_file(notification, message, Path(inbox_dir) / notification.file)
    return _to_slack(notification, message, environ.get(notification.webhook_env, ""), client)


def _to_file(notification: Notification, message: str, path: Path) -> NotificationResult:
    entry = {"at": utc_now(), "to": notification.recipient, "text": message}
    inside = next((p for p in path.parents if (p / "manifest.json").exists() or (p / "runner.json").exists()), None)
    if inside is not None:  # a release folder: nothing writes inside it but the seal
        return NotificationResult(
            "file", notification.recipient, False, f"refused: {path} lies inside the release folder {inside}", message
        )
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a", encoding="utf-8") as inbox:
            inbox.write(json.dumps(entry) + "\n")
    except OSError as exc:
        return NotificationResult(
            "file", notification.recipient, False, f"cannot write {path}: {exc.strerror}", message
        )
    return NotificationResult("file", notification.recipient, True, f"appended to {path}", message)


def _to_slack(
    notification: Notification, message: str, webhook_url: str, client: httpx.Client | None
) -> NotificationResult:
    if not webhook_url:
        return NotificationResult(
            "slack",
            notification.recipient,
            False,
            f"environment variable {notification.webhook_env} is not set",
            message,
        )
    own_client = client is None
    client = client or httpx.Client(timeout=10.0, verify=tls_context())
    try:
        response = client.post(webhook_url, json={"text": message})
    except (httpx.HTTPError, httpx.InvalidURL, ValueError) as exc:  # the last two: a malformed URL
        # The webhook URL is itself a credential: report the failure kind, never the URL.
        return NotificationResult(
            "slack", notification.recipient, False, f"webhook unreachable: {type(exc).__name__}", message
        )
    finally:
        if own_client:
            client.close()
    body = response.text.strip()
    if response.status_code == 200 and body == "ok":
        return NotificationResult("slack", notification.recipient, True, "Slack answered 200 ok", message)
    # An error page may echo the request (the webhook's path, its query, a basic Authorization
    # header): the URL's parts hidden before the body is cut, so no piece of one is kept.
    said = Redactor({notification.webhook_env: webhook_url}).redact(body)[:200]
    return NotificationResult(
        "slack", notification.recipient, False, f"Slack answered {response.status_code} {said}", message
    )
