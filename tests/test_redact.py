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


def test_redact_obj_walks_containers_and_leaves_other_values():
    redactor = make_redactor()
    data = {
        "url": f"/auth?client_id={API_KEY}",
        API_KEY: [1, 2.5, None, True, (API_KEY, "plain")],
        "nested": {"headers": [f"Location: {quote_plus(API_SECRET)}"]},
    }
    assert redactor.redact_obj(data) == {
        "url": "/auth?client_id=[redacted SHOPIFY_API_KEY]",
        "[redacted SHOPIFY_API_KEY]": [1, 2.5, None, True, ("[redacted SHOPIFY_API_KEY]", "plain")],
        "nested": {"headers": ["Location: [redacted SHOPIFY_API_SECRET]"]},
    }


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
