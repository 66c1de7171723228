"""Result tables are drawn without pandas (a display per cell, see tables.py): they must stay
escaped, complete and readable, and keep the markup the archive's sanitizer and style expect."""

from hotdash_release.archive.htmlexport import clean_html
from hotdash_release.tables import ResultTable, Table, html_table, record_rows, text_table

HOSTILE = "<script>window.__pwned=1</script>"


def test_html_table_escapes_headers_and_cells_and_survives_the_sanitizer():
    rows = [{"name": "ok", "evidence": HOSTILE}, {"name": "<b>bold</b>", "extra": 'say "hi" & go'}]
    markup = html_table(rows)
    assert "<script" not in markup and "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in markup
    assert "&lt;b&gt;bold&lt;/b&gt;" in markup and "say &quot;hi&quot; &amp; go" in markup
    cleaned = clean_html(markup)
    assert '<table class="dataframe">' in cleaned and "<th>evidence</th>" in cleaned
    assert "&lt;script&gt;window.__pwned=1&lt;/script&gt;" in cleaned  # escaping survives, not undone


def test_every_key_of_every_row_is_a_column_in_the_order_first_seen():
    markup = html_table([{"a": 1, "b": None}, {"c": 2.5, "a": 3}])
    assert markup.index("<th>a</th>") < markup.index("<th>b</th>") < markup.index("<th>c</th>")
    # row 1: a=1, b empty (None), c missing; row 2: a=3, b missing, c=2.5
    assert "<tr><td>1</td><td></td><td></td></tr><tr><td>3</td><td></td><td>2.5</td></tr>" in markup


def test_values_read_as_a_person_expects():
    assert "<td>0.123457</td>" in html_table([{"x": 0.1234567}])
    assert "<td>True</td>" in html_table([{"ok": True}])
    assert record_rows({"images": ["a", "b"], "none": None}) == [
        {"field": "images", "value": "a\nb"},
        {"field": "none", "value": ""},
    ]


def test_text_table_aligns_columns():
    lines = text_table([{"name": "health", "ok": True}, {"name": "x", "ok": False}]).splitlines()
    assert lines == ["name    ok", "health  True", "x       False"]


def test_tables_keep_their_rows_for_pandas():
    table = Table.of("Releases", [{"version": 2, "image": "b"}, {"version": 1, "image": "a"}])
    frame = table.frame()
    assert list(frame.columns) == ["version", "image"] and frame["version"].tolist() == [2, 1]
    assert len(table) == 2 and repr(table).startswith("Releases\nversion  image")
    failed = ResultTable.of("Smoke", [{"name": "health", "ok": False}], ok=False)
    assert not failed.ok and "FAILED" in failed._repr_html_() and repr(failed).startswith("Smoke (FAILED)")
