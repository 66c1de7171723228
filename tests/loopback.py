"""A scriptable HTTP(S) server on 127.0.0.1 for tests: Shopify app routes, Slack, Supabase, GitHub, TLS.

Routes are exact paths mapped to functions of the Request that return a Reply. The server
records what it received and counts requests in flight (the fan-out tests read both).
Use the `loopback` fixture (conftest.py) for a started server that stops after the test.
"""

from __future__ import annotations

import json
import socket
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    headers: Message
    body: bytes


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, document, status: int = 200, **headers: str) -> Reply:
        return cls(status, json.dumps(document).encode(), {"Content-Type": "application/json", **headers})

    @classmethod
    def html(cls, text: str, status: int = 200, **headers: str) -> Reply:
        return cls(status, text.encode(), {"Content-Type": "text/html; charset=utf-8", **headers})


Route = Callable[[Request], Reply]


class LoopbackServer:
    """A ThreadingHTTPServer on 127.0.0.1 whose routes are the test's script."""

    def __init__(self, *, tls: ssl.SSLContext | None = None) -> None:
        self._tls = tls
        self.routes: dict[str, Route] = {}
        self.received: list[Request] = []
        self.hits: dict[str, int] = {}
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        self._httpd = _BackloggedServer(("127.0.0.1", 0), self._handler_class())
        if tls is not None:  # HTTPS: the test's own certificate (test_tls.py)
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        # Handlers still sleeping when a test ends must not hold up the teardown.
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self._httpd.server_address[:2]
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{host}:{port}"

    def route(self, path: str) -> Callable[[Route], Route]:
        def register(handler: Route) -> Route:
            self.routes[path] = handler
            return handler

        return register

    def paths_received(self) -> list[str]:
        return [request.path for request in self.received]

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join()

    def _answer(self, request: Request) -> Reply:
        with self._lock:
            self.received.append(request)
            self.hits[request.path] = self.hits.get(request.path, 0) + 1
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            route = self.routes.get(request.path)
            return route(request) if route else Reply(404, b"not found")
        finally:
            with self._lock:
                self.in_flight -= 1

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            # Headers and body go out as separate writes: without this, Nagle's
            # algorithm and delayed ACKs add 40 ms to every answer.
            disable_nagle_algorithm = True

            def _dispatch(self) -> None:
                url = urlsplit(self.path)
                length = int(self.headers.get("Content-Length") or 0)
                request = Request(
                    method=self.command,
                    path=url.path,
                    query=dict(parse_qsl(url.query)),
                    headers=self.headers,
                    body=self.rfile.read(length),
                )
                reply = server._answer(request)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(reply.body)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up waiting, which is what some tests want

            do_GET = do_POST = do_HEAD = _dispatch

            def log_message(self, format, *args) -> None:
                pass

        return Handler

    def __enter__(self) -> LoopbackServer:
        self.start()
        return self

    def __exit__(self, *exc_info) -> None:
        self.stop()


class _BackloggedServer(ThreadingHTTPServer):
    # socketserver listens with a backlog of 5: a burst of concurrent checks overflowed it and the
    # dropped connections came again only after a second.
    request_queue_size = socket.SOMAXCONN
