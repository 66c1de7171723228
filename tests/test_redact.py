"""The Redactor keeps secret values, in every spelling, out of archived text."""

from __future__ import annotations

import html
from urllib.parse import quote, quote_plus

from hotdash_release.secrets.redact import Redactor, find_secret_values

API_KEY = "3f9c2a7be41d8e60"
# Characters that URL-encoding and HTML-escaping change, so each spelling differs.
API_SECRET = "shpss_a/b+c d&e<f>\"g'"


def make_redactor() -> Redactor:
    return Redactor({"SHOPIFY_API_KEY": API_KEY, "SHOPIFY_API_SECRET": API_SECRET})


def test_raw_value_becomes_a_marker_naming_the_secret():
    text = f'<script data-api-key="{API_KEY}" src="app-bridge.js">'
    assert make_redactor().redact(text) == ('<script data-api-key="[redacted SHOPIFY_API_KEY]" src="app-bridge.js">')


def test_url_encoded_forms_are_redacted():
    redactor = make_redactor()
    assert quote(API_SECRET, safe="") != quote_plus(API_SECRET) != API_SECRET
    for spelling in (quote(API_SECRET, safe=""), quote_plus(API_SECRET)):
        redacted = redactor.redact(f"https://x.example/cb?secret={spelling}&next=1")
        assert redacted == "https://x.example/cb?secret=[redacted SHOPIFY_API_SECRET]&next=1"


def test_html_escaped_form_is_redacted():
    redacted = make_redactor().redact(f"<p>{html.escape(API_SECRET)}</p>")
    assert redacted == "<p>[redacted SHOPIFY_API_SECRET]</p>"


def test_longest_value_wins_where_values_overlap():
    redactor = Redactor({"SHORTER": "abcdef", "LONGER": "abcdef123456"})
    assert redactor.redact("x abcdef123456 y abcdef z") == ("x [redacted LONGER] y [redacted SHORTER] z")


def test_markers_are_not_redacted_again():
    redactor = Redactor({"NAME_IN_MARKER": "redacted"})
    assert redactor.redact("redacted") == "[redacted NAME_IN_MARKER]"


def test_short_values_are_not_replaced_inside_text_but_are_listed():
    redactor = Redactor({"REGION": "iad", "EMPTY": "", "SHOPIFY_API_KEY": API_KEY})
    assert redactor.weak_names == ("EMPTY", "REGION")
    assert redactor.redact("deployed to iad, paid in full") == "deployed to iad, paid in full"
    # A whole string that is the value is still recognisable as the secret.
    assert redactor.redact("iad") == "[redacted REGION]"
    assert redactor.redact("") == ""
    assert redactor.values == (API_KEY,)


def test_redact_obj_walks_containers_and_leaves_keys_and_other_values():
    redactor = make_redactor()
    data = {
        "url": f"/auth?client_id={API_KEY}",
        "list": [1, 2.5, None, True, (API_KEY, "plain")],
        "nested": {"headers": [f"Location: {quote_plus(API_SECRET)}"]},
    }
    assert redactor.redact_obj(data) == {
        "url": "/auth?client_id=[redacted SHOPIFY_API_KEY]",
        "list": [1, 2.5, None, True, ("[redacted SHOPIFY_API_KEY]", "plain")],
        "nested": {"headers": ["Location: [redacted SHOPIFY_API_SECRET]"]},
    }


def test_redaction_never_touches_keys():
    """A secret equal to a record key ("ok", "status") must not rename it: readers would fail
    with KeyError, and the renamed key would tell which secret has that value."""
    redactor = Redactor({"SHOPIFY_API_KEY": "ok", "LONG_ONE": API_KEY})
    record = {"ok": True, "status": "fine", API_KEY: "x"}
    assert redactor.redact_obj(record) == record
    assert redactor.redact_obj({"rows": [{"ok": False}]})["rows"][0]["ok"] is False


def test_empty_redactor_changes_nothing_and_is_false():
    assert not Redactor.empty()
    assert Redactor.empty().redact(API_KEY) == API_KEY
    assert make_redactor()
    assert make_redactor().values == (API_SECRET, API_KEY)


def test_repr_names_secrets_without_values():
    text = repr(make_redactor())
    assert "SHOPIFY_API_KEY" in text
    assert API_KEY not in text and API_SECRET not in text


def test_find_secret_values_names_secrets_in_any_spelling():
    redactor = make_redactor()
    assert find_secret_values(b"nothing secret here", redactor) == []
    assert find_secret_values(f"key={API_KEY}".encode(), redactor) == ["SHOPIFY_API_KEY"]
    for spelling in (
        quote(API_SECRET, safe=""),
        quote_plus(API_SECRET),
        html.escape(API_SECRET),
        html.escape(API_SECRET, quote=False),
    ):
        data = f"<td>{spelling}</td><td>{API_KEY}</td>".encode()
        assert find_secret_values(data, redactor) == ["SHOPIFY_API_KEY", "SHOPIFY_API_SECRET"]


def test_find_secret_values_ignores_short_values():
    redactor = Redactor({"REGION": "iad"})
    assert find_secret_values(b"iad", redactor) == []


MULTI_LINE = "-----BEGIN KEY-----\nMIIEvQIBADANBgkqhkiG9w0B\nAQEFAASCBKcwggSjAgEAAoIB\n-----END KEY-----"
QUOTED = "pa\"ss\\word's-42"
UNICODE = "pässwörd-日本-ключ"


def _forms(value: str) -> dict[str, str]:
    import base64
    import json

    return {
        "raw": value,
        "url": quote(value, safe=""),
        "url_plus": quote_plus(value),
        "html": html.escape(value),
        "json": json.dumps(value)[1:-1],
        "json_unicode": json.dumps(value, ensure_ascii=False)[1:-1],
        "base64": base64.b64encode(value.encode()).decode(),
        "base64_inside": base64.b64encode(b"Basic x:" + value.encode() + b"!").decode(),
    }


def test_every_form_of_awkward_values_is_found_and_redacted():
    redactor = Redactor({"M": MULTI_LINE, "Q": QUOTED, "U": UNICODE})
    for name, value in (("M", MULTI_LINE), ("Q", QUOTED), ("U", UNICODE)):
        for form, spelling in _forms(value).items():
            text = f"before {spelling} after"
            assert find_secret_values(text.encode(), redactor) == [name], (name, form)
            redacted = redactor.redact(text)
            assert find_secret_values(redacted.encode(), redactor) == [], (name, form, redacted)
            assert f"[redacted {name}]" in redacted, (name, form)


def test_each_line_of_a_multi_line_value_is_found_alone():
    """httpx quotes a header value's second line alone ("illegal header line")."""
    redactor = Redactor({"PEM": MULTI_LINE})
    for line in MULTI_LINE.splitlines():
        assert find_secret_values(f"illegal header line: {line!r}".encode(), redactor) == ["PEM"]
        assert line not in redactor.redact(f"error: {line}")


def test_names_in_finds_a_secret_in_free_text():
    redactor = make_redactor()
    assert redactor.names_in(["ship it", "by alice"]) == []
    assert redactor.names_in([f"because {API_KEY} works"]) == ["SHOPIFY_API_KEY"]
    assert redactor.names_in([API_SECRET.replace('"', '\\"')]) == ["SHOPIFY_API_SECRET"]


def test_the_manifests_free_text_is_scanned_before_it_is_written():
    """The seal checks what the manifest takes from the record (reasons, operator, errors),
    not only the files: a secret there, in any spelling, leaves the release unsealed."""
    import json
    from types import SimpleNamespace

    from hotdash_release.archive.seal import secrets_in_record

    def record(reason: str = "", error: str = ""):
        section = SimpleNamespace(error=error, failures=[])
        return SimpleNamespace(
            reason=reason,
            options=SimpleNamespace(reason=""),
            operator="alice",
            parameters={"target": "local"},
            lock_note=None,
            sections=[section],
        )

    redactor = make_redactor()
    assert secrets_in_record(record("all sections passed"), redactor) == []
    assert secrets_in_record(record(f"skipped: {API_SECRET}"), redactor) == ["manifest.json (SHOPIFY_API_SECRET)"]
    escaped = json.dumps(API_SECRET)[1:-1]
    assert secrets_in_record(record(error=f"ValueError: {escaped}"), redactor) == ["manifest.json (SHOPIFY_API_SECRET)"]


def test_a_repr_inside_json_is_found():
    """A traceback shows repr(value); the notebook holding it escapes it again."""
    import json

    redactor = Redactor({"Q": QUOTED})
    notebook_text = json.dumps({"text": f"KeyError: {QUOTED!r}"})
    assert find_secret_values(notebook_text.encode(), redactor) == ["Q"]
    assert "[redacted Q]" in redactor.redact(notebook_text)
