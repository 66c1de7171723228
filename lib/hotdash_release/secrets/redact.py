"""Keep secret values out of everything the release archives.

Executed runbooks, smoke-check evidence and the HTML audit archive are kept for good,
so a secret value that reaches one of them stays leaked. Values are replaced by a
marker that names the secret (``[redacted SHOPIFY_API_KEY]``): a reader still sees
which secret was there, and that it had the expected place in a URL or a page.

Secrets show up in other spellings than their raw value: percent-encoded in query
strings and Location headers, HTML-escaped in rendered pages. The Redactor replaces
those forms too, and ``find_secret_values`` scans bytes about to be archived for any
of them, as the last check before anything is written.
"""

from __future__ import annotations

import html
import re
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, quote_plus

#: Values shorter than this are too likely to occur by chance ("prod", "1234"):
#: replacing them inside other text would mangle it.
MIN_SUBSTRING_LENGTH = 6


def _marker(name: str) -> str:
    return f"[redacted {name}]"


def _spellings(value: str) -> set[str]:
    """The forms a value takes in URLs and HTML, besides itself."""
    return {
        value,
        quote(value, safe=""),
        quote_plus(value),
        html.escape(value),
        html.escape(value, quote=False),
    }


class Redactor:
    """Replaces known secret values, in any of their spellings, by a marker naming the secret.

    ``weak_names`` lists the secrets whose values are too short to replace inside other
    text; such a value is still replaced when a whole string equals it.
    """

    def __init__(self, secrets: Mapping[str, str]) -> None:
        self._strong: dict[str, str] = {}
        self._weak: dict[str, str] = {}
        for name, value in sorted(secrets.items()):
            value = value or ""
            if len(value) >= MIN_SUBSTRING_LENGTH:
                self._strong[name] = value
            else:
                self._weak[name] = value
        self.weak_names: tuple[str, ...] = tuple(self._weak)

        marker_for_spelling: dict[str, str] = {}
        for name, value in self._strong.items():
            for spelling in _spellings(value):
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
        """Redact every string inside dicts, lists and tuples (keys too); other values stay."""
        if isinstance(obj, str):
            return self.redact(obj)
        if isinstance(obj, dict):
            return {self.redact_obj(key): self.redact_obj(value) for key, value in obj.items()}
        if isinstance(obj, list):
            return [self.redact_obj(item) for item in obj]
        if isinstance(obj, tuple):
            return tuple(self.redact_obj(item) for item in obj)
        return obj


def find_secret_values(data: bytes, redactor: Redactor) -> list[str]:
    """Names of the secrets whose value occurs in ``data`` raw, URL-encoded or HTML-escaped.

    Only values long enough to be redacted are looked for: a short value would be
    found by chance in almost any file.
    """
    return [
        name
        for name, value in redactor._strong.items()
        if any(spelling.encode("utf-8") in data for spelling in _spellings(value))
    ]
