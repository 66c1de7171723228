"""Every page is inert whatever the records say (issue 19 item 4): a script payload planted in
every string field of a manifest and of each results file (and in the configuration's texts)
runs in no page, and makes no page ask the network, in headless Chromium.

Records can be edited by anyone with disk access, so each value is escaped where it becomes
HTML: the index, the report, the plan, the step history and the section pages.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
from test_browser import CHROMIUM, CHROMIUM_ARGS, offline, visit

pytestmark = pytest.mark.skipif(not CHROMIUM.is_file(), reason=f"no Chromium at {CHROMIUM} (set HOTDASH_CHROMIUM)")
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'")


def payload(label: str) -> str:
    """Breaks out of text and of a quoted attribute; its first 15 characters alone still ask the
    network (a page that shows started_at[:19] or [:16] unescaped)."""
    return (
        f"<img src=http:x>'\"><script>window.__pwned='{label}'</script>"
        f"<img src=https://evil.invalid/{label}.png onerror=\"window.__pwned='{label}'\">"
        f"<svg onload=\"window.__pwned='{label}'\">"
    )


def poison(value, label: str, keep: frozenset = frozenset()):
    """Every string value (never a key) replaced by a payload naming where it was."""
    if isinstance(value, str):
        return payload(label)
    if isinstance(value, dict):
        return {k: v if k in keep else poison(v, f"{label}.{k}", keep) for k, v in value.items()}
    if isinstance(value, list):
        return [poison(v, f"{label}[{i}]", keep) for i, v in enumerate(value)]
    return value


def poisoned_copy(source: Path, dest: Path, keep: frozenset = frozenset()) -> dict:
    """The release folder copied, its manifest and results poisoned; the original manifest back."""
    shutil.copytree(source, dest)
    original = json.loads((dest / "manifest.json").read_text())
    (dest / "manifest.json").write_text(json.dumps(poison(original, "manifest", keep)))
    for path in (dest / "results").glob("*.json"):
        data = json.loads(path.read_text())
        path.write_text(json.dumps(poison(data, f"results/{path.stem}")))
    return original


def record_from(original: dict, folder: Path, config):
    """What the report is rendered from, with the poisoned manifest's values: a resumed release
    reads its earlier sections from there."""
    from hotdash_release.plan import ALL_SECTIONS

    manifest = json.loads((folder / "manifest.json").read_text())
    sections = [
        SimpleNamespace(
            index=i,
            section=ALL_SECTIONS[kept["key"]],
            outcome=s["outcome"],
            started_at=s["started_at"],
            duration_s=kept["duration_s"],
            notebook=s["notebook"],
            error=s["error"],
            failures=s["failures"],
            reused_from=s["reused_from"] or s["started_at"],
            budget_minutes=lambda cfg, key=kept["key"]: cfg.timeline_minutes.get(key),
        )
        for i, (s, kept) in enumerate(zip(manifest["sections"], original["sections"], strict=True), start=1)
    ]
    return SimpleNamespace(
        release_id=folder.name,
        release_dir=folder,
        config=config,
        outcome=manifest["outcome"],
        reason=manifest["reason"],
        operator=manifest["operator"],
        target_name=manifest["target"],
        started_at=manifest["started_at"],
        finished_at=manifest["finished_at"],
        parameters=manifest["parameters"],
        options=SimpleNamespace(defects={"production": manifest["outcome"]}, reason=manifest["release_reason"]),
        inputs=manifest["inputs"],
        sections=sections,
        resumed_from=manifest["release_id"],
        kernels=SimpleNamespace(mode=manifest["kernels"]),
    )


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def test_payloads_in_every_record_field_run_in_no_page(browser, archive_world, tmp_path):
    from conftest import write_config

    from hotdash_release.archive.htmlexport import export_notebook_html
    from hotdash_release.archive.index import rebuild_index
    from hotdash_release.archive.planview import write_plan
    from hotdash_release.archive.report import write_report
    from hotdash_release.config import load_config
    from hotdash_release.results import read_all_results

    outputs = tmp_path / "outputs"
    app = outputs / "hotdash-production"
    # The last good release keeps its outcome and target (so the report compares with it);
    # the newest has every string poisoned.
    poisoned_copy(archive_world.good, app / archive_world.good.name, keep=frozenset({"outcome", "target"}))
    original = poisoned_copy(archive_world.hostile, app / archive_world.hostile.name)
    newest = app / archive_world.hostile.name

    texts = {
        'product = "HotDash"': f"product = {json.dumps(payload('config.product'))}",
        'recipient = "CEO"': f"recipient = {json.dumps(payload('config.recipient'))}",
        'description = "Bot user agents get 410 on the embedded app"': (
            f"description = {json.dumps(payload('config.check'))}"
        ),
        'name = "All workstreams at 100%"': f"name = {json.dumps(payload('config.criterion'))}",
    }
    config = load_config(write_config(tmp_path / "config", state_dir=tmp_path / "state", edits=texts))

    record = record_from(original, newest, config)
    pages = [write_report(record, read_all_results(newest))]
    pages += [export_notebook_html(notebook) for notebook in sorted(newest.glob("*.ipynb"))]
    pages.append(rebuild_index(outputs, use_cache=False).index)
    pages.append(write_plan(config, "local", tmp_path / "plan.html"))
    pages.append(write_plan(config, "fly", tmp_path / "plan-fly.html"))
    assert len(pages) >= 12

    report_text = pages[0].read_text()
    assert "&lt;script&gt;window.__pwned=&#x27;results/smoke" in report_text.replace("production_smoke", "smoke")
    with offline(browser) as (context, refused):
        for path in pages:
            page = visit(context, refused, path)
            assert page.pwned() is None, f"{path.name}: a payload ran ({page.pwned()!r})"
            assert not refused, f"{path.name} asked the network for {refused}"
            assert not page.console_errors, f"{path.name}: {page.console_errors}"
            page.page.close()
        # The payloads are there, as text an auditor can read.
        index = visit(context, refused, outputs / "index.html")
        assert "<img src=http:x>'\"><script>window.__pwned='manifest.operator'" in index.page.inner_text("#releases")
        index.page.close()
