"""A real S3 HTTP API on loopback for the archive-store tests: moto's server mode
(`moto.server.ThreadedMotoServer`) on 127.0.0.1 and a free port, one per test module, with a
plain bucket and one with Object Lock enabled; and a fault-injecting HTTP proxy in front of
it that answers 503 to PUTs of chosen keys (a store failing mid-upload, deterministically).

What moto 5.2.5 enforces (probed; test_store.py pins each): If-None-Match: * on PutObject
(412), If-Match on PutObject and DeleteObject (412), Object Lock retention on a version's
delete (governance without the bypass header, and compliance: AccessDenied), retention mode
and date reported by HeadObject. Missing: GetObjectRetention answers 500, and moto does not
check the credentials (any key id and secret pass), so the tests cannot show an IAM refusal.
"""

from __future__ import annotations

import http.client
import socket
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

#: Credentials the tests give the store: moto accepts any; the secret is long enough to be
#: redacted and scanned for (secrets.min_length), and must never reach a record.
ACCESS_KEY_ID = "AKIATESTHOTDASHSTORE"
SECRET_ACCESS_KEY = "hotdash-test-secret/ABCDEFGHIJKLMNOPQRSTUV+wxyz"
REGION = "us-east-1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class MotoS3:
    endpoint: str
    server: object
    buckets: list[str] = field(default_factory=list)

    def env(self, endpoint: str | None = None) -> dict[str, str]:
        return {
            "AWS_ENDPOINT_URL": endpoint or self.endpoint,
            "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
            "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
            "AWS_DEFAULT_REGION": REGION,
        }

    def client(self, endpoint: str | None = None):
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=endpoint or self.endpoint,
            region_name=REGION,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
        )

    def bucket(self, name: str, *, object_lock: bool = False) -> str:
        kwargs = {"ObjectLockEnabledForBucket": True} if object_lock else {}
        self.client().create_bucket(Bucket=name, **kwargs)
        self.buckets.append(name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return [item["Key"] for page in pages for item in page.get("Contents", ())]


def start_moto() -> MotoS3:
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return MotoS3(f"http://127.0.0.1:{port}", server)


class FaultyProxy:
    """HTTP on loopback in front of the store: forwards every request, except PUTs whose path
    contains one of `fail_puts` and DELETEs whose path contains one of `fail_deletes`, answered
    503 SlowDown (boto3 retries, then gives up)."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream.removeprefix("http://")
        self.fail_puts: tuple[str, ...] = ()
        self.fail_deletes: tuple[str, ...] = ()
        self.refused: list[str] = []
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args) -> None:
                pass

            def _forward(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                failing = {"PUT": proxy.fail_puts, "DELETE": proxy.fail_deletes}.get(self.command, ())
                if any(part in self.path for part in failing):
                    proxy.refused.append(self.path)
                    payload = b"<Error><Code>SlowDown</Code><Message>injected fault</Message></Error>"
                    self.send_response(503)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                    return
                upstream = http.client.HTTPConnection(proxy.upstream, timeout=30)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                upstream.request(self.command, self.path, body=body, headers=headers)
                answer = upstream.getresponse()
                data = answer.read()
                self.send_response(answer.status)
                for key, value in answer.getheaders():
                    if key.lower() not in ("content-length", "connection", "transfer-encoding", "server", "date"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                upstream.close()

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _forward

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True, name="faulty-proxy")
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
