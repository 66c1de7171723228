"""Keep secret values out of everything the release archives.

Executed runbooks, smoke-check evidence and the HTML audit archive are kept for good,
so a secret value that reaches one of them stays leaked. Values are replaced by a
marker that names the secret (``[redacted SHOPIFY_API_KEY]``): a reader still sees
which secret was there, and that it had the expected place in a URL or a page.

Secrets show up in other spellings than their raw value: percent-encoded in query
strings and Location headers, HTML-escaped in rendered pages, JSON-escaped in notebooks
and results (a quote or a backslash gains a backslash), as Python's repr in errors,
base64-encoded in headers and data URLs. A multi-line value (a PEM key) also shows up one
line at a time (an HTTP library complaining about an "illegal header line"). A URL that is a
secret (a Slack webhook, a database URL) also shows up in parts: a server's error page echoes
the request's path, a log line the query string, an HTTP client sends the userinfo as a basic
Authorization header; so its secret-bearing parts (`url_secret_parts`) are secrets of their
own name too. The Redactor replaces all of those, and ``find_secret_values`` scans bytes about
to be archived for any of them, as the last check before anything is written.
"""

from __future__ import annotations

import base64
import html
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, unquote, urlsplit

#: Values shorter than this are too likely to occur by chance ("prod", "1234"):
#: replacing them inside other text would mangle it. A release refuses sensitive secrets
#: shorter than its configured minimum (secrets.min_length) before anything runs.
MIN_SUBSTRING_LENGTH = 6


def _marker(name: str) -> str:
    return f"[redacted {name}]"


def _escaped(text: str) -> set[str]:
    """How text is spelled inside JSON strings (both ASCII-only and not) and Python reprs."""
    return {json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1], repr(text)[1:-1]}


def _base64_cores(text: str) -> set[str]:
    """The part of text's base64 encoding that is the same wherever the text sits in the encoded
    data: one per byte alignment (0, 1, 2 bytes before it), in both base64 alphabets."""
    data = text.encode("utf-8")
    cores = set()
    for offset in range(3):
        start, end = -(-8 * offset // 6), 8 * (offset + len(data)) // 6
        for encode in (base64.b64encode, base64.urlsafe_b64encode):
            core = encode(b"\0" * offset + data).decode("ascii")[start:end]
            if len(core) >= MIN_SUBSTRING_LENGTH:
                cores.add(core)
    return cores


#: Query parameters whose value is a credential whatever it looks like.
_SECRET_KEYS = re.compile(r"token|key|secret|sig|signature|pass|auth|code|credential|session", re.IGNORECASE)
#: A plain word or a name made of them ("services", "hotdash_production", "read-only"): a path
#: segment or query value that names something, not a credential.
_WORDS = re.compile(r"[A-Za-z]+(?:[-_.][A-Za-z]+)*")


def url_secret_parts(value: str, min_length: int = MIN_SUBSTRING_LENGTH) -> set[str]:
    """The parts of a URL that carry its secret when it is shown in pieces: the userinfo's
    password (and a user name that is not a word), every path segment, query value and fragment
    that is not a plain word, and every value of a query parameter named like a credential
    (token, key, sig ...); each raw and percent-decoded, when at least min_length long.
    Words and names are left out: a database URL's database name or a webhook's `/services/`
    would otherwise be redacted in every text that names them. Not a URL: no parts."""
    if "://" not in value:
        return set()
    try:
        url = urlsplit(value.strip())
        password, user = url.password, url.username
    except ValueError:
        return set()
    if not url.netloc:
        return set()

    def token_like(piece: str) -> bool:
        return not _WORDS.fullmatch(piece)

    parts = {password or ""}
    if user and token_like(unquote(user)):
        parts.add(user)
    parts |= {segment for segment in url.path.split("/") if token_like(unquote(segment))}
    for key, item in parse_qsl(url.query, keep_blank_values=True):
        if _SECRET_KEYS.search(key) or token_like(item):
            parts.add(item)
    if url.fragment and token_like(unquote(url.fragment)):
        parts.add(url.fragment)
    found = parts | {unquote(part) for part in parts}
    return {part for part in found if len(part) >= min_length and part != value}


def _spellings(value: str, min_length: int = MIN_SUBSTRING_LENGTH) -> set[str]:
    """The forms a value takes in URLs, HTML, JSON, reprs and base64, besides itself; for a
    multi-line value, also each of its lines long enough to be recognised alone."""
    pieces = {value} | {line for line in re.split(r"\r\n|\r|\n", value) if len(line.strip()) >= min_length}
    found: set[str] = set()
    for piece in pieces:
        plain = {
            piece,
            quote(piece, safe=""),
            quote_plus(piece),
            html.escape(piece),
            html.escape(piece, quote=False),
        }
        for form in plain:
            escaped = _escaped(form)
            # Twice: a repr or a JSON text inside a notebook or a results file is escaped again.
            found |= {form} | escaped | {json.dumps(once)[1:-1] for once in escaped}
        found |= _base64_cores(piece)
    return {form for form in found if form}


class Redactor:
    """Replaces known secret values, in any of their spellings, by a marker naming the secret.

    ``weak_names`` lists the secrets whose values are too short (under ``min_length``) to
    replace inside other text; such a value is still replaced when a whole string equals it.
    Keys of dicts are never changed: a record's shape does not depend on secret values.
    """

    def __init__(self, secrets: Mapping[str, str], *, min_length: int = MIN_SUBSTRING_LENGTH) -> None:
        self._strong: dict[str, str] = {}
        self._weak: dict[str, str] = {}
        for name, value in sorted(secrets.items()):
            value = value or ""
            if len(value) >= min_length:
                self._strong[name] = value
            else:
                self._weak[name] = value
        self.weak_names: tuple[str, ...] = tuple(self._weak)

        self._spellings_by_name = {
            name: set().union(
                *(_spellings(piece, min_length) for piece in {value, *url_secret_parts(value, min_length)})
            )
            for name, value in self._strong.items()
        }
        marker_for_spelling: dict[str, str] = {}
        for name, spellings in self._spellings_by_name.items():
            for spelling in spellings:
                marker_for_spelling.setdefault(spelling, _marker(name))
        self._marker_for_spelling = marker_for_spelling
        # One pass with the longest spellings first: where one secret contains another,
        # the longer one wins, and markers already written are never matched again.
        longest_first = sorted(marker_for_spelling, key=len, reverse=True)
        self._pattern = (
            re.compile("|".join(re.escape(spelling) for spelling in longest_first)) if longest_first else None
        )
        self._marker_for_whole_weak_value = {value: _marker(name) for name, value in self._weak.items() if value}

    @classmethod
    def empty(cls) -> Redactor:
        """A redactor that knows no secrets and returns text unchanged."""
        return cls({})

    @property
    def values(self) -> tuple[str, ...]:
        """The raw values replaced inside text, longest first (for scanning files)."""
        return tuple(sorted(self._strong.values(), key=len, reverse=True))

    def __bool__(self) -> bool:
        return bool(self._strong or self._marker_for_whole_weak_value)

    def __repr__(self) -> str:
        # Names only: a repr lands in logs and tracebacks.
        return f"Redactor(names={sorted(self._strong) + list(self.weak_names)})"

    def redact(self, text: str) -> str:
        if text in self._marker_for_whole_weak_value:
            return self._marker_for_whole_weak_value[text]
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(lambda match: self._marker_for_spelling[match.group(0)], text)

    def redact_obj(self, obj: Any) -> Any:
        """Redact every string value inside dicts, lists and tuples; keys and other values stay."""
        if isinstance(obj, str):
            return self.redact(obj)
        if isinstance(obj, dict):
            # Never keys: renaming one would break the readers of the record, and would tell
            # which secret equals that key.
            return {key: self.redact_obj(value) for key, value in obj.items()}
        if isinstance(obj, list):
            return [self.redact_obj(item) for item in obj]
        if isinstance(obj, tuple):
            return tuple(self.redact_obj(item) for item in obj)
        return obj

    def names_in(self, texts: Iterable[str]) -> list[str]:
        """The secrets whose value, in any spelling, occurs in one of these texts."""
        data = "\0".join(texts)
        return [name for name, spellings in self._spellings_by_name.items() if any(s in data for s in spellings)]


def find_secret_values(data: bytes, redactor: Redactor) -> list[str]:
    """Names of the secrets whose value occurs in ``data`` in any spelling the Redactor knows
    (raw, URL-encoded, HTML-escaped, JSON-escaped, repr, base64; each line of a multi-line one).

    Only values long enough to be redacted are looked for: a short value would be
    found by chance in almost any file.
    """
    return [
        name
        for name, spellings in redactor._spellings_by_name.items()
        if any(spelling.encode("utf-8") in data for spelling in spellings)
    ]
