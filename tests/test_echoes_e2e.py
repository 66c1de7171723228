"""Services that echo what they were sent: no part of a secret reaches the archive.

Many proxies and error pages answer a refused request with its path, query and headers. A
secret URL (the Slack webhook, a Supabase project URL) then comes back in pieces: its path
token, a token in its query string, the password of its userinfo (which the HTTP client also
sends as a basic Authorization header), and a token sent as a header (GitHub's bearer token,
Supabase's apikey). Each echo comes from a real HTTP server on 127.0.0.1 whose error body ends
with the request's path cut through by the 200 characters the release keeps of a body, and
whole releases run through the CLI: every file under the archive root is searched for every
part, in every spelling the redactor knows, and for the first characters of each (what a cut
would leave)."""

from __future__ import annotations

import secrets
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from conftest import make_rehearsal, run_cli

from hotdash_release.secrets.redact import Redactor, find_secret_values

#: What the release keeps of a service's error body (notify, supabase, feedback).
KEPT = 200


class EchoServer:
    """Answers every request 403 with what it was sent, on one line: the Authorization and apikey
    headers, then the request's path and query, placed so that the cut at KEPT goes through the
    middle of the first of `cut_through` that it holds (an error page of just that length)."""

    def __init__(self, cut_through: tuple[str, ...] = ()) -> None:
        self.cut_through = cut_through
        self.requests: list[str] = []
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05})

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self._httpd.server_address[1]}"

    def __enter__(self) -> EchoServer:
        self._thread.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def _handler(self):
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _echo(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                server.requests.append(self.path)
                said = " ".join(
                    [f"{name}={self.headers[name]}" for name in ("Authorization", "apikey") if self.headers.get(name)]
                    + [self.path]
                )
                cut = next((part for part in server.cut_through if part in said), said)
                pad = "." * max(1, KEPT - len(cut) // 2 - len("denied: ") - said.index(cut))
                body = f"denied:{pad} {said}".encode()
                self.send_response(403)
                self.send_header("Content-Type", "text/plain")
                self.send_header("X-Echo-Path", self.path)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = _echo

            def log_message(self, *args) -> None:
                pass

        return Handler


def token(prefix: str) -> str:
    return prefix + secrets.token_hex(12)


def assert_no_part_anywhere(root: Path, parts: dict[str, str]) -> int:
    """No file under root holds a part in a spelling the redactor knows, nor its first 10
    characters raw; return how many files were searched."""
    spellings = Redactor(parts, min_length=8)
    files = [p for p in root.rglob("*") if p.is_file()]
    for path in files:
        data = path.read_bytes()
        found = find_secret_values(data, spellings)
        assert not found, f"{path.relative_to(root)} holds {found}"
        for name, part in parts.items():
            assert part[:10].encode() not in data, f"{path.relative_to(root)} holds the start of {name}"
    return len(files)


def test_slack_and_github_echoes_leave_no_part_of_their_secrets_in_the_archive(tmp_path):
    """Two releases: the first notifies through the echoing webhook (the notification fails, the
    release is kept, and the watch does not run), the second, notifying by file, reads the CEO's
    issues from the echoing GitHub API during its watch."""
    parts = {
        "webhook path token": token("Wh"),
        "webhook query token": token("Qt"),
        "webhook userinfo password": token("Pw"),
        "GITHUB_TOKEN": token("ghp_"),
    }
    reason = 'hotfix <b>now</b> & "quoted"'
    with EchoServer(cut_through=(parts["GITHUB_TOKEN"], parts["webhook path token"])) as echo:
        webhook = (
            f"http://hooker:{parts['webhook userinfo password']}@{echo.address}/services/T0ABCDEFG/B0HIJKLMN/"
            f"{parts['webhook path token']}?token={parts['webhook query token']}"
        )
        environment = {
            "HOTDASH_SLACK_WEBHOOK_URL": webhook,
            "GITHUB_TOKEN": parts["GITHUB_TOKEN"],
            "HOTDASH_GITHUB_API_URL": f"http://{echo.address}",
        }
        world = make_rehearsal(tmp_path, wait_timeout_s=4, edits={"[github]": '[github]\nrepo = "hotdash/hotdash"'})
        by_file = world.config.read_text()
        world.config.write_text(by_file.replace('channel = "file"', 'channel = "slack"', 1))
        release = ("release", "--config", str(world.config), "--outputs", str(world.outputs), "--operator", "ana")
        try:
            done = run_cli(*release, "--reason", reason, extra_env=environment)
            assert done.returncode == 0, done.stdout + done.stderr
            world.config.write_text(by_file)
            again = run_cli(*release, extra_env=environment)
            assert again.returncode == 0, again.stdout + again.stderr
            # Both services were asked and echoed (the test is not vacuous), and what they said is
            # recorded with the secret's pieces as markers.
            assert any(p.startswith("/services/") for p in echo.requests)
            assert any(p.startswith("/repos/hotdash/hotdash/issues") for p in echo.requests)
            slacked, by_github = world.release_dirs()
            notify = (slacked / "results" / "notify.json").read_text()
            assert "Slack answered 403 denied:" in notify and "[redacted HOTDASH_SLACK_WEBHOOK_URL]" in notify
            watch = (by_github / "results" / "watch.json").read_text()
            assert "GitHub answered 403 denied:" in watch and "Bearer [redacted " in watch
            assert all((folder / "manifest.json").is_file() for folder in (slacked, by_github)), "left unsealed"
            assert assert_no_part_anywhere(world.outputs, parts) > 60
            # The reason as given, escaped like every value of a record.
            report = (slacked / "report.html").read_text()
            assert "hotfix &lt;b&gt;now&lt;/b&gt; &amp; &quot;quoted&quot;" in report and "<b>now</b>" not in report
            assert run_cli("verify", "--outputs", str(world.outputs)).returncode == 0
        finally:
            world.platform().stop()


def test_a_supabase_echo_leaves_no_part_of_its_url_or_key_in_the_archive(tmp_path):
    """On Fly the smoke test asks the project's Supabase Auth: staging's project echoes and refuses
    (403), the release stops before production changes (exit 3) and is sealed with what it answered."""
    from test_release_fly_e2e import STAGING, make_fly_world

    parts = {
        "project path token": token("Pj"),
        "project query token": token("Qs"),
        "project userinfo password": token("Sb"),
    }
    with EchoServer(cut_through=(parts["project path token"],)) as echo:
        world = make_fly_world(tmp_path)
        try:
            url = (
                f"http://supa:{parts['project userinfo password']}@{echo.address}/project/"
                f"{parts['project path token']}?apikey={parts['project query token']}"
            )
            values = world.values[STAGING]
            values["SUPABASE_URL"] = url
            world.fake.store_secrets(STAGING, values)
            world.env["STAGING_SUPABASE_URL"] = url
            parts["SUPABASE_ANON_KEY"] = values["SUPABASE_ANON_KEY"]
            done = world.release()
            assert done.returncode == 3, done.stdout + done.stderr
            assert any(p.startswith("/project/") for p in echo.requests)
            (folder,) = world.release_dirs()
            smoke = (folder / "results" / "staging_smoke.json").read_text()
            assert "HTTP 403: denied:" in smoke and "[redacted SUPABASE_" in smoke
            assert (folder / "manifest.json").is_file(), "the release was left unsealed"
            assert assert_no_part_anywhere(world.outputs, parts) > 10
        finally:
            world.stop()


@pytest.mark.parametrize("kept_by", ["the release's redactor", "the check alone"])
def test_the_supabase_check_hides_an_echoed_url_before_it_cuts_the_body(kept_by):
    """check_supabase against the echoing server: its result holds no part, whether the caller's
    redactor knows the URL or not (its own hider knows the URL and the key)."""
    import json

    import httpx

    from hotdash_release.checks.supabase import check_supabase

    parts = {"path token": token("Pj"), "query token": token("Qs"), "password": token("Sb"), "key": token("ey")}
    with EchoServer(cut_through=(parts["path token"],)) as echo, httpx.Client(timeout=5) as client:
        url = f"http://supa:{parts['password']}@{echo.address}/project/{parts['path token']}?apikey={parts['query token']}"
        known = Redactor({"SUPABASE_URL": url, "SUPABASE_ANON_KEY": parts["key"]}, min_length=8)
        result = check_supabase(
            client, url, parts["key"], redactor=known if kept_by.startswith("the release") else None
        )
    assert result.status_code == 403 and result.detail.startswith("HTTP 403: denied:")
    recorded = json.dumps(result.as_row()).encode()
    assert not find_secret_values(recorded, Redactor(parts, min_length=8)), result.detail
    assert not any(part[:10].encode() in recorded for part in parts.values()), result.detail


def test_a_refused_dispatch_names_no_part_of_the_token():
    """`runbook dispatch` prints GitHub's refusal: the echoed bearer token is hidden before the
    refusal is cut (the terminal and CI logs keep what it prints)."""
    import httpx

    from hotdash_release.integrations.github import DispatchError, DispatchRequest, dispatch_workflow

    secret = token("ghp_")
    with EchoServer(cut_through=(secret,)) as echo, httpx.Client(timeout=5) as client:
        request = DispatchRequest("hotdash/hotdash", "deploy-production.yml", "main", "hotfix")
        with pytest.raises(DispatchError) as refused:
            dispatch_workflow(client, request, token=secret, api_url=f"http://{echo.address}")
    said = str(refused.value)
    assert said.startswith("GitHub answered 403 (denied:") and "Bearer [redacted" in said, said
    assert secret[:10] not in said, said
