"""The archive in a real browser: headless Chromium with the network cut.

Every page is opened from file:// with every other request refused and recorded, and
with the browser's console watched. A release whose app answered with <script>,
<img onerror> and <svg onload> payloads leaves no script run in any archived page; the
index and a report load with no console error and no network request, their links
resolve, and the index's filters work. A control page with a live script proves the
harness would notice. Screenshots go to each test's tmp folder.

playwright drives the system's Chromium (its own browser download is not used):
HOTDASH_CHROMIUM names another executable; without one these tests skip.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

CHROMIUM = Path(os.environ.get("HOTDASH_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM} (set HOTDASH_CHROMIUM)")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'")


@dataclass
class Visit:
    """What one page did while it loaded."""

    page: object
    console_errors: list[str] = field(default_factory=list)
    refused_requests: list[str] = field(default_factory=list)

    def pwned(self):
        return self.page.evaluate("window.__pwned")

    def assert_quiet(self, name: str) -> None:
        assert not self.refused_requests, f"{name} asked the network for {self.refused_requests}"
        assert not self.console_errors, f"{name} logged errors: {self.console_errors}"


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


@contextmanager
def offline(browser):
    """A browser context with the network cut: file:// loads, anything else is refused and recorded."""
    context = browser.new_context(offline=True, viewport={"width": 1280, "height": 900})
    refused: list[str] = []

    def only_files(route):
        if route.request.url.startswith("file://"):
            route.continue_()
        else:
            refused.append(route.request.url)
            route.abort()

    context.route("**/*", only_files)
    try:
        yield context, refused
    finally:
        context.close()


def visit(context, refused: list[str], path: Path) -> Visit:
    page = context.new_page()
    result = Visit(page, refused_requests=refused)
    page.on("console", lambda message: message.type == "error" and result.console_errors.append(message.text))
    page.on("pageerror", lambda error: result.console_errors.append(str(error)))
    page.goto(path.as_uri(), wait_until="load")
    return result


def relative_links(page) -> list[str]:
    return page.eval_on_selector_all("a[href]", "links => links.map(a => a.href)")


def assert_links_resolve(page, name: str) -> int:
    """Every link of the page points at a file or folder that exists (no link leaves the archive)."""
    links = relative_links(page)
    for href in links:
        parts = urlsplit(href)
        assert parts.scheme == "file", f"{name} links out of the archive: {href}"
        assert Path(unquote(parts.path)).exists(), f"{name}: broken link {href}"
    return len(links)


# -- the harness notices what it must ---------------------------------------------------------


def test_the_harness_sees_a_live_script_and_a_network_request(browser, tmp_path):
    control = tmp_path / "control.html"
    control.write_text(
        "<!DOCTYPE html><title>t</title><script>window.__pwned='control'</script>"
        '<img src="https://cdn.example.invalid/x.png">'
    )
    with offline(browser) as (context, refused):
        page = visit(context, refused, control)
        assert page.pwned() == "control"
        assert refused == ["https://cdn.example.invalid/x.png"]


# -- hostile content stays inert -----------------------------------------------------------------


def test_no_page_of_a_hostile_release_runs_its_payloads(browser, archive_world):
    pages = sorted(archive_world.hostile.glob("*.html"))
    assert len(pages) == 9
    with offline(browser) as (context, refused):
        for path in pages:
            page = visit(context, refused, path)
            assert page.pwned() is None, f"{path.name}: a payload ran ({page.pwned()!r})"
            assert "PWNED" not in page.page.title(), path.name
            page.assert_quiet(path.name)
            page.page.close()
        smoke = visit(context, refused, archive_world.hostile / "04-staging_smoke.html")
        text = smoke.page.inner_text("body")
        assert "<script>window.__pwned='script'" in text and "<img src=x onerror=" in text, (
            "the payloads are shown to the auditor, as text"
        )


def test_a_notebook_with_live_outputs_is_inert_when_archived(browser, tmp_path):
    import nbformat
    from test_html_archive import live_outputs_notebook

    from hotdash_release.archive.htmlexport import export_notebook_html

    folder = tmp_path / "20261125T000000Z-abcdef"
    folder.mkdir()
    nbformat.write(live_outputs_notebook(), folder / "03-deploy_staging.ipynb")
    page_path = export_notebook_html(folder / "03-deploy_staging.ipynb")
    with offline(browser) as (context, refused):
        page = visit(context, refused, page_path)
        assert page.pwned() is None
        page.assert_quiet(page_path.name)
        page.page.screenshot(path=str(tmp_path / "live-outputs.png"), full_page=True)


# -- the index and the report ---------------------------------------------------------------------


def visible_rows(page) -> int:
    return page.eval_on_selector_all("#releases tbody tr", "rows => rows.filter(r => !r.hidden).length")


def test_index_loads_offline_links_resolve_and_filters_work(browser, archive_world, tmp_path):
    index = archive_world.outputs / "index.html"
    with offline(browser) as (context, refused):
        visit_ = visit(context, refused, index)
        page = visit_.page
        visit_.assert_quiet("index.html")
        assert assert_links_resolve(page, "index.html") >= 6
        assert page.inner_text("#f-count") == "2 of 2 releases"
        page.select_option("#f-outcome", "rolled back")
        assert visible_rows(page) == 1 and page.inner_text("#f-count") == "1 of 2 releases"
        assert archive_world.hostile.name in page.inner_text("#releases tbody tr:not([hidden])")
        page.select_option("#f-outcome", "released")
        assert archive_world.good.name in page.inner_text("#releases tbody tr:not([hidden])")
        page.select_option("#f-app", "hotdash-production")
        page.select_option("#f-outcome", "")
        assert visible_rows(page) == 2
        assert page.locator("svg.chart").count() >= 1, "the step history chart is drawn"
        page.screenshot(path=str(tmp_path / "index.png"), full_page=True)
        visit_.assert_quiet("index.html after filtering")


def test_report_loads_offline_and_links_to_every_section_page(browser, archive_world, tmp_path):
    report = archive_world.hostile / "report.html"
    with offline(browser) as (context, refused):
        visit_ = visit(context, refused, report)
        page = visit_.page
        visit_.assert_quiet("report.html")
        assert assert_links_resolve(page, "report.html") >= 16  # 8 pages and notebooks, index, last good
        headings = page.eval_on_selector_all("h2", "hs => hs.map(h => h.textContent)")
        assert headings[0].startswith("Go/No-Go decision"), "the report leads with the decision"
        page.screenshot(path=str(tmp_path / "report.png"), full_page=True)
        page.click("text=executed notebook >> nth=0")
        page.wait_for_load_state("load")
        assert page.title().startswith("Pre-deployment checklist")
        visit_.assert_quiet("the first section page")


def test_plan_page_loads_offline(browser, rehearsal, tmp_path):
    from hotdash_release.cli import main

    out = tmp_path / "plan.html"
    assert main(["plan", "--config", str(rehearsal.config), "--out", str(out)]) == 0
    with offline(browser) as (context, refused):
        page = visit(context, refused, out)
        page.assert_quiet("plan.html")
        assert "Steps, in order" in page.page.inner_text("body")
        page.page.screenshot(path=str(tmp_path / "plan.png"), full_page=True)
