"""Step 6, notify the CEO: the message the plan asks for, through a file or a Slack webhook.

The webhook is a loopback server answering as Slack's incoming webhooks do (external
contracts, "Slack incoming webhook"): 200 with body `ok`, or a plain-text error code.
A failed notification is a result, never an exception, and the webhook URL (a
credential) appears in no result.
"""

from __future__ import annotations

import dataclasses
import json
import socket

import httpx
import pytest
from loopback import Reply

from hotdash_release.config import load_config
from hotdash_release.integrations.notify import compose_message, send_notification
from hotdash_release.paths import RUNBOOKS_DIR

WEBHOOK_PATH = "/services/T0HOTDASH/B0RELEASE/s3cretWebhookToken"
WEBHOOK_SECRET_PART = "s3cretWebhookToken"
WEBHOOK_ENV = "HOTDASH_SLACK_WEBHOOK_URL"
PLAN = load_config(RUNBOOKS_DIR / "hotdash.toml").notification
SLACK = dataclasses.replace(PLAN, channel="slack")
MESSAGE = compose_message(
    PLAN,
    release_id="20261125T190512Z-a1b2c3",
    operator="octocat",
    image_ref="registry.fly.io/hotdash-production:deployment-01JDEXAMPLE",
)


def slack_says(status: int, body: str) -> Reply:
    return Reply(status, body.encode(), {"Content-Type": "text/plain; charset=utf-8"})


@pytest.fixture
def slack(loopback):
    return loopback


@pytest.fixture
def client():
    with httpx.Client(timeout=5.0) as http:
        yield http


def send_to(url: str, client: httpx.Client | None = None):
    return send_notification(SLACK, MESSAGE, inbox_dir="/nonexistent", client=client, environ={WEBHOOK_ENV: url})


def assert_no_webhook_url(result) -> None:
    shown = json.dumps(result.as_row())
    assert WEBHOOK_SECRET_PART not in shown and "/services/" not in shown


# --------------------------------------------------------------------------- the message


def test_message_carries_what_the_plan_tells_the_ceo():
    lines = MESSAGE.splitlines()
    assert lines[0] == "CEO: HotDash is deployed to production and ready for testing."
    assert "Production URL: https://hotdash-production.fly.dev" in lines
    assert "Expected functionality: Shopify integration, dashboard, basic navigation" in lines
    assert (
        "Known limitations: Browser notifications (in progress); Performance testing (in progress); "
        "Some monitoring dashboards may be incomplete; Documentation still being finalized"
    ) in lines
    assert "Feedback channel: Log issues via GitHub Issues or direct communication" in lines
    assert "registry.fly.io/hotdash-production:deployment-01JDEXAMPLE" in lines[-1] and "octocat" in lines[-1]


def test_a_rehearsal_says_where_it_really_serves_production():
    message = compose_message(PLAN, release_id="r", operator="o", image_ref=None, served_at="http://127.0.0.1:8123/")
    assert (
        "Production URL: https://hotdash-production.fly.dev (this rehearsal serves it at http://127.0.0.1:8123/)"
        in message
    )
    assert "image unknown" in message


# --------------------------------------------------------------------------- Slack


def test_slack_200_ok_is_success_and_gets_the_message_as_json(slack, client):
    slack.route(WEBHOOK_PATH)(lambda request: slack_says(200, "ok"))
    result = send_to(slack.base_url + WEBHOOK_PATH, client)

    assert result.ok and result.channel == "slack" and result.detail == "Slack answered 200 ok"
    [request] = slack.received
    assert request.method == "POST" and request.headers["Content-Type"] == "application/json"
    assert json.loads(request.body) == {"text": MESSAGE}
    assert_no_webhook_url(result)


def test_slack_without_a_given_client_uses_its_own(slack):
    slack.route(WEBHOOK_PATH)(lambda request: slack_says(200, "ok"))
    assert send_to(slack.base_url + WEBHOOK_PATH).ok


SLACK_ERRORS = [
    (400, "invalid_payload"),
    (403, "action_prohibited"),
    (404, "channel_not_found"),
    (410, "channel_is_archived"),
    (500, "rollup_error"),
]


@pytest.mark.parametrize("status,body", SLACK_ERRORS, ids=[body for _, body in SLACK_ERRORS])
def test_slack_errors_are_reported_with_their_body(slack, client, status, body):
    slack.route(WEBHOOK_PATH)(lambda request: slack_says(status, body))
    result = send_to(slack.base_url + WEBHOOK_PATH, client)
    assert not result.ok
    assert result.detail == f"Slack answered {status} {body}"
    assert result.message == MESSAGE  # the report still shows what would have been said
    assert_no_webhook_url(result)


def test_an_unreachable_webhook_is_reported_without_its_url(client):
    with socket.socket() as sock:  # bound but not listening: connections are refused
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        result = send_to(f"http://127.0.0.1:{port}{WEBHOOK_PATH}", client)
    assert not result.ok and result.detail == "webhook unreachable: ConnectError"
    assert_no_webhook_url(result)
    assert str(port) not in result.detail


@pytest.mark.parametrize("host", ["[::1", "a" * 64 + ".example"], ids=["unclosed bracket", "over-long label"])
def test_a_malformed_webhook_url_is_a_failed_result_not_an_exception(client, host):
    result = send_to(f"https://{host}{WEBHOOK_PATH}", client)
    assert not result.ok and result.detail.startswith("webhook unreachable:")
    assert_no_webhook_url(result)


def test_a_missing_webhook_variable_names_the_variable():
    result = send_notification(SLACK, MESSAGE, inbox_dir="/nonexistent", environ={})
    assert not result.ok and result.detail == f"environment variable {WEBHOOK_ENV} is not set"


# --------------------------------------------------------------------------- file channel


def test_file_channel_appends_one_json_line_per_notification(tmp_path):
    first = send_notification(PLAN, MESSAGE, inbox_dir=tmp_path)
    second = send_notification(PLAN, "second message", inbox_dir=tmp_path)

    assert first.ok and second.ok and first.channel == "file"
    entries = [json.loads(line) for line in (tmp_path / PLAN.file).read_text().splitlines()]
    assert [entry["text"] for entry in entries] == [MESSAGE, "second message"]
    assert all(entry["to"] == "CEO" and entry["at"] for entry in entries)


def test_file_channel_reports_an_unwritable_inbox(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = send_notification(PLAN, MESSAGE, inbox_dir=blocker / "inbox")
    assert not result.ok and result.detail.startswith("cannot write")
