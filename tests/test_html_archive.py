"""Archived HTML stands alone and cannot run anything: small, offline, inert.

The policy (htmlexport.clean_html) is tested on fragments, the exporter on a notebook
made here with every kind of live output, and both on real releases (archive_world):
the standard release's HTML stays within its size budget, and the hostile release's
payloads are in its pages as text only. tests/test_browser.py proves the same in Chromium.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest

from hotdash_release.archive.htmlexport import clean_html, export_notebook_html

#: The whole release's HTML (8 section pages and the report); the lab template made ~2.4 MB.
RELEASE_HTML_BUDGET = 400 * 1024
PAYLOADS_LIVE = ("<script>window.__pwned", "<img src=x onerror", "<svg onload")
PAYLOADS_AS_TEXT = ("&lt;script&gt;window.__pwned", "&lt;img src=x onerror", "&lt;svg onload")
#: What would make a page fetch something: a resource URL, a stylesheet link, CSS imports or urls.
NETWORK_REFERENCES = re.compile(
    r"""<(script|img|iframe|link|source|video|audio|embed|object)\b[^>]*\b(src|href|data)\s*=\s*["']?(https?:)?//|@import|url\(""",
    re.IGNORECASE,
)
#: Live hostile markup as the test notebook carries it.
HOSTILE_HTML = (
    "<p>ok</p><script>window.__pwned='html';document.title='PWNED'</script>"
    "<img src=x onerror=\"window.__pwned='img'\"><style>body{background:url(http://x.invalid/a.png)}</style>"
)


def html_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.html"))


# -- the policy on fragments ---------------------------------------------------------------


def test_clean_html_keeps_pandas_tables_and_escapes_everything_live():
    import pandas as pd

    frame = pd.DataFrame({"evidence": ["<script>alert(1)</script>"], "n": [1]})
    cleaned = clean_html(frame._repr_html_() + HOSTILE_HTML)
    assert '<table class="dataframe">' in cleaned and "<th>evidence</th>" in cleaned and "<td>1</td>" in cleaned
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in cleaned  # pandas' escaping survives, not undone
    assert "&lt;script&gt;window.__pwned" in cleaned and "&lt;img src=" in cleaned
    assert "<script" not in cleaned and "<img" not in cleaned and "<style" not in cleaned
    assert "url(" not in cleaned  # style elements go whole: CSS can fetch URLs


def test_clean_html_refuses_script_urls_and_event_attributes():
    cleaned = clean_html('<a href="javascript:alert(1)" onclick="x()">a</a><div style="background:url(//x)">b</div>')
    assert "javascript:" not in cleaned and "onclick" not in cleaned and "style=" not in cleaned
    assert ">a</a>" in cleaned and ">b</div>" in cleaned


# -- the exporter on a notebook with every kind of live output -----------------------------------


def live_outputs_notebook() -> nbformat.NotebookNode:
    """A notebook whose outputs would run script in nbconvert's default page."""
    nb = nbformat.v4.new_notebook()
    code = nbformat.v4.new_code_cell("show()", execution_count=1)
    code.outputs = [
        nbformat.v4.new_output("display_data", data={"text/html": HOSTILE_HTML, "text/plain": "html"}),
        nbformat.v4.new_output(
            "display_data", data={"application/javascript": "window.__pwned='js'", "text/plain": "js"}
        ),
        nbformat.v4.new_output("display_data", data={"text/markdown": "**md** <script>window.__pwned='md'</script>"}),
        nbformat.v4.new_output(
            "display_data",
            data={
                "application/vnd.jupyter.widget-view+json": {"model_id": "x", "version_major": 2, "version_minor": 0},
                "text/plain": "widget",
            },
        ),
        nbformat.v4.new_output("stream", name="stdout", text="<script>window.__pwned='stream'</script>\n"),
    ]
    markdown = nbformat.v4.new_markdown_cell(
        "# Title\n`<app>` stays code <img src=x onerror=\"window.__pwned='mdcell'\">"
    )
    nb.cells = [markdown, code]
    return nb


@pytest.fixture(scope="module")
def live_outputs_page(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("page") / "20261125T000000Z-abcdef"
    folder.mkdir()
    notebook = folder / "03-deploy_staging.ipynb"
    nbformat.write(live_outputs_notebook(), notebook)
    return export_notebook_html(notebook)


def test_exported_page_keeps_no_live_output(live_outputs_page):
    html = live_outputs_page.read_text()
    assert "<script" not in html, "no script element of any kind, ours or the notebook's"
    for live in ("<img src=x", "onerror=", "application/javascript", "widget-view"):
        assert live not in html.replace("&lt;img src=x onerror=", ""), live
    # Shown, as text (a quote may be written as &#39;: the same text to a browser).
    assert re.search(r"&lt;script&gt;window\.__pwned=(?:'|&#39;)html", html)
    assert re.search(r"&lt;script&gt;window\.__pwned=(?:'|&#39;)stream", html)
    assert "<code>&lt;app&gt;</code>" in html, "markdown code spans render as code, not double-escaped"
    assert "<strong>md</strong>" in html
    assert not NETWORK_REFERENCES.search(html)


def test_exported_page_folds_code_and_names_the_section(live_outputs_page):
    html = live_outputs_page.read_text()
    assert '<details class="source">' in html and "<summary>show()</summary>" in html
    assert "<title>Step 2: Deploy to staging first · release 20261125T000000Z-abcdef</title>" in html
    assert 'href="report.html"' in html and 'href="03-deploy_staging.ipynb"' in html


def test_an_image_output_gets_alt_text_and_stays_an_inline_image(tmp_path):
    nb = nbformat.v4.new_notebook()
    chart = nbformat.v4.new_code_cell("chart()", execution_count=1)
    pixel = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg=="
    chart.outputs = [nbformat.v4.new_output("display_data", data={"image/png": pixel, "text/plain": "chart"})]
    nb.cells = [chart]
    notebook = tmp_path / "20261125T000000Z-abcdef" / "07-production_smoke.ipynb"
    notebook.parent.mkdir()
    nbformat.write(nb, notebook)
    html = export_notebook_html(notebook).read_text()
    images = re.findall(r"<img [^>]*>", html)
    assert len(images) == 1 and f'src="data:image/png;base64,{pixel}"' in images[0]
    assert 'alt="No description has been provided for this image"' in images[0]


# -- real releases ----------------------------------------------------------------------------------


def test_standard_release_html_fits_the_budget(archive_world):
    pages = html_files(archive_world.good)
    assert len(pages) == 10  # 9 sections and the report
    total = sum(p.stat().st_size for p in pages)
    assert total <= RELEASE_HTML_BUDGET, f"{total} bytes of HTML, budget {RELEASE_HTML_BUDGET}"


def test_every_archived_page_is_self_contained(archive_world):
    for page in html_files(archive_world.good) + html_files(archive_world.hostile):
        html = page.read_text()
        assert "<style>" in html, f"{page.name}: the archive stylesheet is inlined"
        assert "<script" not in html, f"{page.name}: archived release pages carry no script"
        assert not NETWORK_REFERENCES.search(html), f"{page.name}: {NETWORK_REFERENCES.search(html)}"


def test_section_pages_keep_pandas_tables_and_fold_inputs(archive_world):
    html = (archive_world.good / "07-production_smoke.html").read_text()
    assert html.count('<table class="dataframe">') >= 2 and "<th>evidence</th>" in html
    assert "Webhook correctly signed accepted" in html
    assert html.count('<details class="source"') >= 4
    assert re.search(
        r'<details class="source" open(?:="")?>\s*<summary>Parameters of this run \(injected by papermill\)', html
    ), "the parameters a section ran with stay in view"


def test_hostile_payloads_are_archived_as_inert_text(archive_world):
    """The app answered with script in bodies, a header, JSON and log lines: each page that
    shows that evidence shows it escaped, and none carries it live."""
    shown = set()
    for page in html_files(archive_world.hostile):
        html = page.read_text()
        for live in PAYLOADS_LIVE:
            assert live not in html, f"{page.name} carries {live!r} live"
        shown |= {(page.name, text) for text in PAYLOADS_AS_TEXT if text in html}
    names = {name for name, _ in shown}
    assert {"03-deploy_staging.html", "04-staging_smoke.html", "report.html"} <= names, shown
    assert {text for _, text in shown} == set(PAYLOADS_AS_TEXT), "every payload kind reached the archive"
