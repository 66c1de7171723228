"""The engineer in JupyterLab, in the real UI: `runbook lab` from the lab venv, driven by
Chromium through playwright, as a release engineer walks a session.

Every notebook is opened from the file browser and Run All; the manual checks are ticked;
the page is reloaded, a check unticked and ticked again (the panel's "Recorded" table must
follow, drawn from results/); the staging smoke notebook is re-run on a restarted kernel
(its attestations stay); the go/no-go refuses GO before a person decides, then a Go is
recorded and the criteria follow; everything is saved and sealed with the command the lab
printed; after the seal the widgets refuse to write. Then every archived page must agree
with the results and the report.

The test process never imports JupyterLab (its dependencies slow every nbformat import, see
the Makefile): it runs `<lab venv>/bin/runbook lab` as a subprocess on 127.0.0.1 with a token.
`make test` builds the lab venv and sets HOTDASH_REQUIRE_LAB_UI, so this test runs in CI;
elsewhere it skips without a lab venv (HOTDASH_LAB_VENV, else .venv-lab) or a Chromium.
"""

from __future__ import annotations

import html
import json
import os
import re
import signal
import subprocess
import threading
from pathlib import Path

import nbformat
import pytest
from conftest import SESSION, make_rehearsal

from hotdash_release.config import DEFAULT_MANUAL_CHECKS
from hotdash_release.interactive.session import SESSION_MARKER, WORKSPACES_DIR, free_port
from hotdash_release.paths import PROJECT_ROOT
from hotdash_release.results import read_section_result

CHROMIUM = Path(os.environ.get("HOTDASH_CHROMIUM", "/usr/bin/chromium"))
LAB_VENV = Path(os.environ.get("HOTDASH_LAB_VENV") or PROJECT_ROOT / ".venv-lab")
if not LAB_VENV.is_absolute():
    LAB_VENV = PROJECT_ROOT / LAB_VENV
LAB_RUNBOOK = LAB_VENV / "bin" / "runbook"
REQUIRED = os.environ.get("HOTDASH_REQUIRE_LAB_UI") == "1"

if not (CHROMIUM.is_file() and LAB_RUNBOOK.is_file() and (LAB_VENV / "bin" / "jupyter-lab").is_file()):
    if REQUIRED:
        pytest.fail(f"the lab UI test must run: need {CHROMIUM} and a lab venv at {LAB_VENV} (make lab)", pytrace=False)
    pytest.skip(f"needs Chromium ({CHROMIUM}) and a lab venv ({LAB_VENV}: make lab)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed: pip install -e '.[test]'")

ACTIVE = ".jp-NotebookPanel:not(.lm-mod-hidden)"
SCREENSHOTS = Path(os.environ.get("HOTDASH_SCREENSHOTS", "/tmp"))
WAIT_MS = 90_000  # any one step of the UI: a notebook's Run All, a kernel start on a busy machine
#: JupyterLab asks about its news feed in a toast that can cover the notebook: answered here.
LAB_SETTINGS = {
    "@jupyterlab/apputils-extension/notification.jupyterlab-settings": {"fetchNews": "false", "checkForUpdates": False}
}


class Lab:
    """`runbook lab` running; its output lines collected as they come."""

    def __init__(self, command: list[str], env: dict, cwd: Path) -> None:
        self.lines: list[str] = []
        self._seen = threading.Condition()
        self.process = subprocess.Popen(
            command, env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, bufsize=1
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        for line in self.process.stdout:
            with self._seen:
                self.lines.append(line.rstrip("\n"))
                self._seen.notify_all()
        with self._seen:
            self._seen.notify_all()

    def wait_for(self, pattern: str, timeout: float = WAIT_MS / 1000) -> re.Match:
        """The first output line matching pattern, waiting for it to be printed."""
        found = None

        def match():
            nonlocal found
            found = next((m for m in map(re.compile(pattern).search, self.lines) if m), None)
            return found is not None or self.process.poll() is not None

        with self._seen:
            self._seen.wait_for(match, timeout=timeout)
        assert found, f"runbook lab never printed {pattern!r}:\n" + "\n".join(self.lines)
        return found

    def stop(self) -> str:
        """SIGTERM, as a service manager stops it; returns everything it printed."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
        self.process.wait(timeout=60)
        self._reader.join(timeout=10)  # the last lines, printed as it stopped
        return "\n".join(self.lines)


# -- driving the UI ---------------------------------------------------------------------------------


def prompts(page) -> list[str]:
    return page.eval_on_selector_all(f"{ACTIVE} .jp-CodeCell .jp-InputPrompt", "ps => ps.map(p => p.textContent)")


def wait_prompts(page, numbers: list[int | None]) -> None:
    """Until the code cells' prompts read [1], [2], ... as given (None: not run)."""
    expected = [f"[{n}]:" if n else "[ ]:" for n in numbers]
    try:
        page.wait_for_function(
            """([active, expected]) => {
                const ps = [...document.querySelectorAll(active + ' .jp-CodeCell .jp-InputPrompt')];
                return ps.length === expected.length && ps.every((p, i) => p.textContent.trim() === expected[i]);
            }""",
            arg=[ACTIVE, expected],
            timeout=WAIT_MS,
        )
    except sync_api.TimeoutError:
        page.screenshot(path=str(SCREENSHOTS / "timeout.png"))
        pytest.fail(f"prompts {prompts(page)}, expected {expected}")


def open_notebook(page, folder: Path, name: str) -> int:
    """Open a notebook from the file browser and wait for its kernel; return its number of code cells."""
    # File > Open from Path: the file browser's rows move while it refreshes (results/ appears).
    menu(page, "File", "Open from Path…")
    page.locator(".jp-Dialog input").fill(f"{name}.ipynb")
    page.locator(".jp-Dialog .jp-mod-accept").click()
    page.wait_for_selector(f".lm-TabBar-tab.lm-mod-current >> text={name}.ipynb")
    # The kernel is started after the notebook shows; Run All before that asks to select a kernel.
    page.wait_for_function(
        "(title) => [...document.querySelectorAll('.jp-StatusBar-TextItem')]"
        ".some(x => x.title === title && x.textContent.endsWith('| Idle'))",
        arg=f"Change kernel for {name}.ipynb",
        timeout=WAIT_MS,
    )
    notebook = nbformat.read(folder / f"{name}.ipynb", as_version=4)
    return sum(1 for cell in notebook.cells if cell.cell_type == "code")


def menu(page, top: str, item: str) -> None:
    page.click(f"li.lm-MenuBar-item >> text={top}")
    page.click(f".lm-Menu-itemLabel >> text={item}")


def run_all(page, cells: int) -> None:
    menu(page, "Run", "Run All Cells")
    wait_prompts(page, list(range(1, cells + 1)))


def save(page) -> None:
    page.click(f"{ACTIVE} .jp-Notebook")
    page.keyboard.press("Control+s")
    page.wait_for_selector(".lm-TabBar-tab.lm-mod-current:not(.jp-mod-dirty)")


def rerun_gate(page, cells: int, count: int) -> None:
    """Click into the gate cell and Shift+Enter, as a person does (JupyterLab adds an empty cell below)."""
    page.locator(f"{ACTIVE} .jp-CodeCell .jp-InputArea-editor").nth(cells - 1).click()
    page.keyboard.press("Shift+Enter")
    page.wait_for_function(
        "([active, i, text]) => document.querySelectorAll(active + ' .jp-CodeCell .jp-InputPrompt')[i]"
        "?.textContent.trim() === text",
        arg=[ACTIVE, cells - 1, f"[{count}]:"],
        timeout=WAIT_MS,
    )


def recorded_view(page, heading: str):
    return page.locator(f"{ACTIVE} .widget-html-content", has_text=heading).first


def wait_text(locator, text: str) -> None:
    sync_api.expect(locator).to_contain_text(text, timeout=WAIT_MS)


def checkbox(page, check: str):
    return page.locator(f"{ACTIVE} .widget-checkbox", has_text=check).locator("input[type=checkbox]")


def attested(folder: Path, section: str) -> dict[str, dict]:
    return {a["check"]: a for a in read_section_result(folder, section)["attestations"]}


# -- the walk ---------------------------------------------------------------------------------------------


@pytest.mark.timeout(900)
def test_a_lab_session_in_the_real_ui_is_truthful_after_reloads_reruns_and_the_seal(tmp_path):
    world = make_rehearsal(tmp_path / "world", wait_timeout_s=4)
    jupyter = tmp_path / "jupyter"
    for name, settings in LAB_SETTINGS.items():
        path = jupyter / "settings" / name
        path.parent.mkdir(parents=True)
        path.write_text(json.dumps(settings))
    env = {
        **os.environ,
        "HOTDASH_CONFIG": str(world.config),
        "HOTDASH_OUTPUTS": str(world.outputs),
        "JUPYTER_CONFIG_DIR": str(jupyter / "config"),
        "JUPYTER_RUNTIME_DIR": str(jupyter / "runtime"),
        "JUPYTERLAB_SETTINGS_DIR": str(jupyter / "settings"),
    }
    env.pop("PYTHONPATH", None)  # the lab venv runs its own installation of this repository
    port = free_port(8990)
    lab = Lab([str(LAB_RUNBOOK), "lab", "--no-browser", "--port", str(port), "--operator", "alice"], env, PROJECT_ROOT)
    try:
        folder = Path(lab.wait_for(r"^session: (.+)$").group(1))
        url = lab.wait_for(r"^URL: (http://127\.0\.0\.1:\d+/lab\?token=\w+)$").group(1)
        seal_command = lab.wait_for(r"^when done: (.+ seal .+)$").group(1)
        lab.wait_for(r"Use Control-C to stop this server")
        with sync_api.sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=str(CHROMIUM), args=["--headless", "--no-sandbox", "--disable-gpu"]
            )
            page = browser.new_page(viewport={"width": 1400, "height": 1000})
            page.goto(url)
            page.wait_for_selector(".jp-DirListing-item", timeout=WAIT_MS)
            try:
                sealed = walk_the_session(page, folder, seal_command, env)
            except Exception:
                page.screenshot(path=str(SCREENSHOTS / "lab-ui-failed.png"))
                raise
            browser.close()
        printed = lab.stop()
    finally:
        if lab.process.poll() is None:  # a failure above: JupyterLab and its kernels go too
            lab.stop()
        world.platform().stop()
    assert "JupyterLab stopped" in printed and "keep running on 127.0.0.1" in printed
    assert f"{LAB_RUNBOOK.relative_to(PROJECT_ROOT)} platform stop" in printed, "a stop command that works"
    assert list((folder / WORKSPACES_DIR).glob("*.jupyterlab-workspace")), "the session's own workspace"
    archive_agrees_with_results_and_report(folder, sealed)


def walk_the_session(page, folder: Path, seal_command: str, env: dict) -> Path:
    cells = {}
    for name in SESSION[:4]:
        cells[name] = open_notebook(page, folder, name)
        run_all(page, cells[name])
        save(page)
    assert all(read_section_result(folder, s)["outcome"] == "passed" for s in ("preflight", "deploy_staging"))

    # 04 is open: tick every manual check with a note; the panel's table follows each tick.
    panel = recorded_view(page, "Recorded")
    wait_text(panel, "none attested yet")
    for check in DEFAULT_MANUAL_CHECKS:
        note = page.locator(f"{ACTIVE} .widget-text input").nth(DEFAULT_MANUAL_CHECKS.index(check))
        note.fill("seen in Chromium")
        note.press("Enter")
        checkbox(page, check).check()
    wait_text(panel, "all attested")
    assert set(attested(folder, "staging_smoke")) == set(DEFAULT_MANUAL_CHECKS)
    rows = panel.locator("tbody tr td:first-child").all_inner_texts()
    assert rows == list(DEFAULT_MANUAL_CHECKS), "the checks in the plan's order"
    rerun_gate(page, cells["04-staging_smoke"], cells["04-staging_smoke"] + 1)
    save(page)

    # A reload: the widgets come back from the kernel, and so does a table that still follows.
    page.reload()
    page.wait_for_selector(f"{ACTIVE} .widget-checkbox", timeout=WAIT_MS)
    panel = recorded_view(page, "Recorded")
    wait_text(panel, "all attested")
    checkbox(page, "Test navigation").uncheck()
    wait_text(panel, "1 of 5 not attested yet")
    assert "Test navigation" not in attested(folder, "staging_smoke"), "unticking withdrew it"
    # The gate ran before: it decides again at once (no cell to re-run), and the panel says its answer.
    wait_text(panel, "This section: passed")
    assert read_section_result(folder, "staging_smoke")["outcome"] == "passed", "the gate decided again"
    checkbox(page, "Test navigation").check()
    wait_text(panel, "all attested")
    assert set(attested(folder, "staging_smoke")) == set(DEFAULT_MANUAL_CHECKS)

    # Restart the kernel and Run All: the attestations a person gave stay, boxes ticked.
    given = attested(folder, "staging_smoke")
    menu(page, "Kernel", "Restart Kernel and Run All Cells…")
    page.click(".jp-Dialog .jp-mod-accept")
    wait_prompts(page, list(range(1, cells["04-staging_smoke"] + 1)) + [None])  # the empty cell Shift+Enter added
    assert attested(folder, "staging_smoke") == given
    panel = recorded_view(page, "Recorded")
    wait_text(panel, "all attested")
    assert all(checkbox(page, check).is_checked() for check in DEFAULT_MANUAL_CHECKS)
    assert read_section_result(folder, "staging_smoke")["outcome"] == "passed"
    save(page)

    # The go/no-go: no GO before a person decides; then Go with a reason, and the criteria follow.
    cells["05-go_no_go"] = open_notebook(page, folder, "05-go_no_go")
    run_all(page, cells["05-go_no_go"])
    gate = read_section_result(folder, "go_no_go")
    assert gate["outcome"] == "failed" and "Go/No-Go decision attested" in gate["failures"][0]
    error = page.locator(f"{ACTIVE} .jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").last
    assert error.inner_text().strip().startswith("GateFailed: Go/No-Go decision: gate not met")
    assert "runbook.py" not in error.inner_text() and len(error.inner_text().strip().splitlines()) == 1
    assert "Traceback" in "".join(gate["traceback"]), "the traceback is kept in the record"
    criteria = recorded_view(page, "Go/No-Go criteria")
    wait_text(criteria, "a blocking criterion is not met")
    page.locator(f"{ACTIVE} .widget-toggle-button", has_text=re.compile(r"^Go$")).click()
    page.locator(f"{ACTIVE} .widget-textarea textarea").fill("staging verified by hand")
    page.locator(f"{ACTIVE} button", has_text="Record decision").click()
    wait_text(recorded_view(page, "Recorded"), "Go by alice")
    wait_text(criteria, "all met or acceptable")
    wait_text(recorded_view(page, re.compile(r"^\s*Decision: ")), "GO: all")
    # The gate failed before the Go: the decision re-ran it, the panel says so, 06 could go now.
    wait_text(recorded_view(page, "Recorded"), "This section: passed")
    assert read_section_result(folder, "go_no_go")["outcome"] == "passed"
    rerun_gate(page, cells["05-go_no_go"], cells["05-go_no_go"] + 1)
    assert read_section_result(folder, "go_no_go")["outcome"] == "passed"
    save(page)

    for name in SESSION[5:]:
        cells[name] = open_notebook(page, folder, name)
        run_all(page, cells[name])
        save(page)
    assert all(read_section_result(folder, s)["outcome"] == "passed" for s in ("deploy_production", "watch"))

    # Seal with the command the lab printed, as a person pastes it.
    done = subprocess.run(seal_command, shell=True, env=env, cwd=PROJECT_ROOT, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "RELEASED (exit 0)" in done.stdout
    release_id = json.loads((folder / SESSION_MARKER).read_text())["sealed_as"]

    # Sealed: the widgets refuse to write, say so, and the record stays as archived.
    before = (folder / "results" / "staging_smoke.json").read_bytes()
    page.click(".lm-TabBar-tab >> text=04-staging_smoke.ipynb")
    checkbox(page, "Verify no critical errors").click()  # an untick, undone at once by the panel
    wait_text(page.locator(f"{ACTIVE} .widget-html-content", has_text="Not recorded").first, "read-only")
    assert checkbox(page, "Verify no critical errors").is_checked(), "the untick was undone"
    assert (folder / "results" / "staging_smoke.json").read_bytes() == before
    return world_release(folder, release_id)


def world_release(folder: Path, release_id: str) -> Path:
    return folder.parent.parent / "hotdash-production" / release_id


def archive_agrees_with_results_and_report(session: Path, release: Path) -> None:
    report = (release / "report.html").read_text()
    decision = read_section_result(release, "go_no_go")["records"]["decision"]
    assert decision["decision"] == "GO" and decision["explanation"] in report
    # One count: the configuration's blocking criteria and, in a session, the person's call.
    blocking = re.search(r"all (\d+) blocking criteria met", decision["explanation"]).group(1)
    config = (session.parent.parent.parent / "config" / "hotdash.toml").read_text()
    assert int(blocking) == config.count('when_not_met = "blocking"') + 1
    import papermill

    for name in SESSION:
        page = (release / f"{name}.html").read_text()
        assert f"run in JupyterLab, parameters by papermill {papermill.__version__}" in page, name
        assert "papermill ?" not in page and "notebook ?" not in page, name
        for raw in ("HealthResult(", "SupabaseResult(", "NotificationResult(", "WatchResult(", "\\n"):
            assert raw not in page, f"{name}: a raw {raw} in the archived page"
        assert not re.search(r"&#x27;[^&]*: passed&#x27;|'[^']*: passed'", page), f"{name}: a quoted gate result"
        notebook = nbformat.read(release / f"{name}.ipynb", as_version=4)
        assert all(cell.source.strip() for cell in notebook.cells), f"{name}: an empty cell was archived"
    smoke = (release / "04-staging_smoke.html").read_text()
    assert "all attested" in smoke and "none attested" not in smoke
    for given in read_section_result(release, "staging_smoke")["attestations"]:
        assert given["at"] in smoke and given["check"] in report and given["at"] in report
    go_page = (release / "05-go_no_go.html").read_text()
    assert "none recorded" not in go_page and "Go by alice" in go_page
    assert decision["explanation"] in go_page and "all met or acceptable" in go_page
    for row in read_section_result(release, "go_no_go")["records"]["criteria"]["rows"]:
        shown = re.search("<td>" + re.escape(html.escape(row["criterion"])) + r"</td>.*?</tr>", go_page).group(0)
        assert f"<td>{row['verdict']}</td>" in shown, row["criterion"]
