"""HTTP clients share one TLS context per process (tls.py) and still verify as httpx would:
a server whose certificate the bundle does not hold is refused; one named by SSL_CERT_FILE,
set after the first client was made, is trusted."""

from __future__ import annotations

import shutil
import ssl
import subprocess

import httpx
import pytest
from loopback import LoopbackServer, Reply

from hotdash_release.checks import http as checks
from hotdash_release.checks.tls import tls_context

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")


@pytest.fixture
def https_server(tmp_path):
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1",
            "-keyout",
            str(key),
            "-out",
            str(cert),
        ],
        check=True,
        capture_output=True,
        timeout=60,
    )
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    with LoopbackServer(tls=context) as server:
        server.routes["/"] = lambda request: Reply(200, b"ok")
        yield f"{server.base_url}/", cert


def test_clients_share_one_context_and_still_refuse_an_unknown_certificate(https_server, monkeypatch):
    url, _ = https_server
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    assert tls_context() is tls_context()
    with checks.make_client() as client, pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        client.get(url)


def test_a_bundle_named_by_ssl_cert_file_is_trusted_once_named(https_server, monkeypatch):
    url, cert = https_server
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    before = tls_context()
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    assert tls_context() is not before
    with checks.make_client() as client:
        assert client.get(url).text == "ok"
