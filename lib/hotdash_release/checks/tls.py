"""One TLS context per process for every HTTP client of the library.

httpx builds a new SSL context for each Client it makes, loading the whole CA bundle: 50-60 ms
on our machines, and a release makes about eight clients (health, smoke tests, Supabase, the
local platform's health polling), each in a kernel of its own. One context, made once, verifies
the same way: it is httpx's own default (`httpx.create_ssl_context()`: the bundle named by
SSL_CERT_FILE or SSL_CERT_DIR when set, certifi's otherwise), made again if those change. The
kernel template makes it before it forks, so each kernel has it ready (execution/template_process.py).
"""

from __future__ import annotations

import os
import ssl
from functools import lru_cache


def tls_context() -> ssl.SSLContext:
    return _context_for(os.environ.get("SSL_CERT_FILE"), os.environ.get("SSL_CERT_DIR"))


@lru_cache(maxsize=4)
def _context_for(cert_file: str | None, cert_dir: str | None) -> ssl.SSLContext:
    import httpx

    return httpx.create_ssl_context()  # reads the same two variables
