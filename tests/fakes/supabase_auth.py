"""A stand-in for Supabase Auth's health endpoint, for the projects of a test world.

Supabase cannot be reached from here. This answers exactly what the external contracts
document: `GET {SUPABASE_URL}/auth/v1/health` with header `apikey: <anon key>` -> 200
`{"version", "name": "GoTrue", "description"}`; a wrong or missing key -> 401.
Each project is a path prefix: SUPABASE_URL = http://127.0.0.1:<port>/<project>.
"""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class FakeSupabaseAuth:
    def __init__(self) -> None:
        self.anon_keys: dict[str, str] = {}  # project -> anon key
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._httpd.daemon_threads = True
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def project_url(self, project: str, anon_key: str) -> str:
        self.anon_keys[project] = anon_key
        return f"http://127.0.0.1:{self._httpd.server_address[1]}/{project}"

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def _handler(self):
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self):
                project, _, rest = self.path.lstrip("/").partition("/")
                if rest != "auth/v1/health" or project not in fake.anon_keys:
                    return self._answer(404, {"message": "no route"})
                if self.headers.get("apikey") != fake.anon_keys[project]:
                    return self._answer(401, {"message": "Invalid API key"})
                return self._answer(
                    200,
                    {
                        "version": "v2.170.0",
                        "name": "GoTrue",
                        "description": "GoTrue is a user registration and authentication API",
                    },
                )

            def _answer(self, status: int, payload: dict) -> None:
                body = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args) -> None:
                pass

        return Handler
