"""JupyterLab as a release engineer meets it, measured in the real UI (Chromium, Playwright):

    .venv/bin/python bench/bench_lab.py [--before ../main] [--runs 2] [--out bench/results/lab-<date>.json]

For each checkout (this one, and with --before another, e.g. main before a change), on an
isolated rehearsal world in a temporary folder, `runbook lab` of that checkout's library
(PYTHONPATH=<checkout>/lib) from the lab venv (.venv-lab: `make lab` or `make test` builds it):

  lab_start_s     from starting `runbook lab` to its page served (HTTP 200 for /lab), the first and
                  the second start (a second session; the stamp check of `make lab` adds ~20 ms);
                  lab_second_start_cpu_s: the CPU seconds the command and JupyterLab spent until then
                  (a loaded machine stretches the wall time, hardly the CPU time)
  open_to_kernel_ready_s  per notebook: from the double-click in the file browser to its kernel
                  indicator showing idle after the kernel started, connected and answered
  shown_to_kernel_ready_s  the same from the notebook's cells being on the page (JupyterLab
                  fetches and renders the notebook before it asks for a kernel)
  run_all_s       per notebook, a second after its kernel is ready (as a person reads it first):
                  from the pointer releasing Run > Run All Cells to every cell's prompt showing
                  its execution count (its reply and outputs in)
  run_all_to_indicator_idle_s  the same to the toolbar's kernel indicator idle too, which
                  JupyterLab delays by 150 ms after the last cell on purpose
  All UI times are the page's own clock (performance.now(), events seen in the capture phase,
  conditions checked at every animation frame): Playwright's own work is not in them.
  zz-seven-empty-cells  the same for a notebook of seven cells that do nothing (`pass`), as many
                  code cells as 04: what a Run All costs in JupyterLab whatever the kernel does
  headless_s      the same sections' durations in releases of this checkout (their manifests; at
                  least 3), for the ratios of run_all_s to their median and to the fastest

The checkouts are measured in turns (before, after, before, after ...) so both see the same
load. Not a test: it measures, prints and writes JSON; it never fails on a number.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import httpx
import psutil

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from conftest import make_rehearsal  # noqa: E402

LAB_PYTHON = ROOT / ".venv-lab" / "bin" / "python"
CHROMIUM = Path(os.environ.get("HOTDASH_CHROMIUM", "/usr/bin/chromium"))
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--disable-background-networking"]
#: The sections a person walks before any decision is asked of them.
NOTEBOOKS = ("01-preflight", "02-verify_secrets", "03-deploy_staging", "04-staging_smoke")
#: JupyterLab's own share of a Run All: a notebook of seven code cells (as many as 04) that do
#: nothing, on the session's kernel, written into the bench's session and walked last.
FLOOR = "zz-seven-empty-cells"
WAIT_MS = 120_000
#: A person reads a notebook before running it. Clicked at once, Run All waits 60-80 ms behind what
#: JupyterLab asks a kernel as it connects (history, comm info, debugger info, widget state).
READ_S = 1.0


def spread(samples: list[float]) -> dict:
    return {
        "min": round(min(samples), 3),
        "median": round(statistics.median(samples), 3),
        "max": round(max(samples), 3),
        "runs": len(samples),
    }


class Lab:
    """`runbook lab` of one checkout on the bench's world, until stopped."""

    def __init__(self, checkout: Path, world, port: int, scratch: Path) -> None:
        env = {
            **os.environ,
            "PYTHONPATH": str(checkout / "lib"),
            "JUPYTER_RUNTIME_DIR": str(scratch / "runtime"),
            "JUPYTER_CONFIG_DIR": str(scratch / "jupyter-config"),
        }
        command = [str(LAB_PYTHON), "-m", "hotdash_release.cli", "lab", "--no-browser", "--port", str(port)]
        command += ["--config", str(world.config), "--outputs", str(world.outputs), "--operator", "bench"]
        self.started = time.perf_counter()
        self.log = (scratch / f"server-{port}.log").open("w")
        self.process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=self.log, text=True, env=env, start_new_session=True
        )
        self.url = ""
        for line in self.process.stdout:
            if line.startswith("session: "):
                self.folder = Path(line.split(": ", 1)[1].strip())
            if line.startswith("URL: "):
                self.url = line.split(": ", 1)[1].strip()
                break
        if not self.url:
            raise RuntimeError(f"runbook lab printed no URL (see {self.log.name})")

    def served(self) -> tuple[float, float]:
        """Seconds from the command's start to /lab answering 200, and the CPU seconds that the
        command and JupyterLab spent until then (not the kernel template's, which imports beside)."""
        deadline = time.monotonic() + WAIT_MS / 1000
        while time.monotonic() < deadline:
            try:
                if httpx.get(self.url, timeout=5).status_code == 200:
                    return time.perf_counter() - self.started, self.cpu_seconds()
            except httpx.TransportError:
                pass
            time.sleep(0.01)
        raise RuntimeError("JupyterLab did not serve its page in time")

    def cpu_seconds(self) -> float:
        command = psutil.Process(self.process.pid)
        lab = [command, *(p for p in command.children() if "template_process" not in " ".join(p.cmdline()))]
        return sum(sum(p.cpu_times()[:2]) for p in lab)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.log.close()


#: The notebook in the main area's current tab.
CURRENT_PANEL = """() => {
  for (const tab of document.querySelectorAll('#jp-main-dock-panel .lm-TabBar-tab.lm-mod-current')) {
    const widget = document.getElementById(tab.dataset.id);
    if (widget && widget.classList.contains('jp-NotebookPanel')) return widget;
  }
  return null;
}"""
#: Records every change of a notebook's kernel indicator (its panel, the time, the status), and
#: when the person's last double-click and pointer release happened (the page's own clock).
WATCH_KERNELS = """() => {
  window.__statuses = [];
  window.__input = {};
  for (const type of ['dblclick', 'pointerup'])
    document.addEventListener(type, () => { window.__input[type] = performance.now(); }, true);
  new MutationObserver(changes => {
    for (const change of changes) {
      const panel = change.target.closest('.jp-NotebookPanel');
      if (panel && change.target.classList.contains('jp-Notebook-ExecutionIndicator'))
        window.__statuses.push([panel.id, performance.now(), change.target.getAttribute('data-status')]);
    }
  }).observe(document.body, {subtree: true, attributes: true, attributeFilter: ['data-status']});
}"""
#: Once the current notebook's kernel is ready: [shown, ready] in ms since the double-click that
#: opened it. Shown: its cells are on the page (a notebook still loading shows one empty cell);
#: ready: its indicator is idle after the kernel started and answered (before that it shows idle
#: too, for a notebook with no kernel yet).
KERNEL_READY = f"""() => {{
  const panel = ({CURRENT_PANEL})();
  const since = window.__input.dblclick;
  if (!panel || !since) return false;
  if (!window.__shown && panel.querySelectorAll('.jp-Cell').length > 1) window.__shown = performance.now();
  const seen = window.__statuses.filter(s => s[0] === panel.id && s[1] >= since);
  const busy = seen.findIndex(s => s[2] !== 'idle');
  const ready = seen.findIndex((s, i) => i > busy && busy >= 0 && s[2] === 'idle');
  if (ready < 0 || !window.__shown) return false;
  return [window.__shown - since, seen[ready][1] - since];
}}"""
#: Once the current notebook has run, in ms since the pointer released Run All Cells:
#: [ran, indicator idle]. Ran: every code cell's prompt shows its execution count (a cell's count
#: is set once its reply and outputs are in; none is left queued or running). Indicator idle: the
#: toolbar's kernel indicator too, which JupyterLab turns idle 150 ms after the last cell, on
#: purpose (ExecutionIndicator's _scheduleSwitchToIdle).
RAN_ALL = f"""() => {{
  const panel = ({CURRENT_PANEL})();
  const start = window.__input.pointerup;
  if (!panel || !start) return false;
  const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputArea-prompt')].map(p => p.textContent.trim());
  if (!prompts.length || !prompts.every(p => /^\\[\\d+\\]:$/.test(p))) return false;
  window.__ran = window.__ran || performance.now();
  if (!panel.querySelector('.jp-Notebook-ExecutionIndicator[data-status="idle"]')) return false;
  return [window.__ran - start, performance.now() - start];
}}"""


def write_floor_notebook(folder: Path) -> None:
    import nbformat

    from hotdash_release.execution.labkernels import NOTEBOOK_KERNELSPEC

    notebook = nbformat.v4.new_notebook(metadata={"kernelspec": dict(NOTEBOOK_KERNELSPEC)})
    notebook.cells = [nbformat.v4.new_code_cell("pass") for _ in range(7)]
    nbformat.write(notebook, str(folder / f"{FLOOR}.ipynb"))


def walk(browser, lab: Lab, scratch: Path) -> dict:
    """Open each notebook, wait for its kernel, Run All; the UI's times."""
    write_floor_notebook(lab.folder)
    page = browser.new_page(viewport={"width": 1400, "height": 900})
    page.set_default_timeout(WAIT_MS)
    page.goto(lab.url)
    page.locator(".jp-DirListing-item", has_text=f"{NOTEBOOKS[0]}.ipynb").wait_for()
    page.evaluate(WATCH_KERNELS)
    times: dict[str, dict] = {}
    for name in (*NOTEBOOKS, FLOOR):
        try:
            page.evaluate("() => { window.__shown = 0; window.__input = {}; }")
            page.locator(".jp-DirListing-item", has_text=f"{name}.ipynb").dblclick()
            shown, ready = page.wait_for_function(KERNEL_READY, polling="raf").json_value()
            time.sleep(READ_S)
            page.locator(".lm-MenuBar-itemLabel", has_text="Run").first.click()
            menu_item = page.locator(".lm-Menu-itemLabel", has_text="Run All Cells").first
            menu_item.wait_for()
            page.evaluate("() => { window.__ran = 0; window.__input = {}; }")  # the menu bar's click is not Run All's
            menu_item.click()
            ran, indicator_idle = page.wait_for_function(RAN_ALL, polling="raf").json_value()
        except Exception as exc:
            page.screenshot(path=str(scratch / f"{name}-failed.png"))
            print(f"{name}: not measured ({type(exc).__name__}); screenshot in {scratch}", flush=True)
            continue
        times[name] = {
            "open_to_kernel_ready_s": round(ready / 1000, 3),
            "shown_to_kernel_ready_s": round((ready - shown) / 1000, 3),
            "run_all_s": round(ran / 1000, 3),
            "run_all_to_indicator_idle_s": round(indicator_idle / 1000, 3),
        }
    page.close()
    return times


def headless_durations(world, runs: int) -> dict[str, list[float]]:
    """The sections' durations in `runs` releases of this checkout (their manifests): one release
    varies too much (a section of 0.1 s took 0.4 s in the next)."""
    env = {**os.environ, "PYTHONPATH": str(ROOT / "lib")}
    samples: dict[str, list[float]] = {}
    for _ in range(runs):
        subprocess.run(
            [sys.executable, "-m", "hotdash_release.cli", "release", "--config", str(world.config)]
            + ["--outputs", str(world.outputs), "--operator", "bench"],
            env=env,
            capture_output=True,
            timeout=600,
        )
        manifest = sorted((world.outputs / "hotdash-production").glob("*/manifest.json"))[-1]
        for i, section in enumerate(json.loads(manifest.read_text())["sections"], 1):
            samples.setdefault(f"{i:02d}-{section['key']}", []).append(section["duration_s"])
    return samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", type=Path, help="another checkout to measure the same way (e.g. ../main)")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()
    from playwright.sync_api import sync_playwright

    checkouts = {"after": ROOT, **({"before": args.before.resolve()} if args.before else {})}
    samples = {label: {"first_start": [], "second_start": [], "second_start_cpu": [], "ui": {}} for label in checkouts}
    with tempfile.TemporaryDirectory(prefix="bench-lab-") as tmp:
        world = make_rehearsal(Path(tmp) / "world", wait_timeout_s=8)
        try:
            headless = headless_durations(world, max(3, args.runs))
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
                for run in range(args.runs):
                    for label, checkout in reversed(checkouts.items()):  # before first, then after
                        scratch = Path(tmp) / f"{label}-{run}"
                        scratch.mkdir()
                        first = Lab(checkout, world, 8960, scratch)
                        samples[label]["first_start"].append(first.served()[0])
                        first.stop()
                        lab = Lab(checkout, world, 8961, scratch)
                        seconds, cpu = lab.served()
                        samples[label]["second_start"].append(seconds)
                        samples[label]["second_start_cpu"].append(cpu)
                        time.sleep(3)  # the server's own start-up work settles, as a person reads the page
                        try:
                            for name, measured in walk(browser, lab, scratch).items():
                                for key, value in measured.items():
                                    samples[label]["ui"].setdefault(key, {}).setdefault(name, []).append(value)
                        finally:
                            lab.stop()
                        print(f"run {run + 1} {label}: done", flush=True)
                browser.close()
        finally:
            world.platform().stop()
    results = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average": os.getloadavg(),
        },
        "checkouts": {label: str(path) for label, path in checkouts.items()},
        "headless_s": {name: spread(headless[name]) for name in NOTEBOOKS if name in headless},
    }
    for label, s in samples.items():
        results[label] = {
            "lab_first_start_s": spread(s["first_start"]),
            "lab_second_start_s": spread(s["second_start"]),
            "lab_second_start_cpu_s": spread(s["second_start_cpu"]),
            **{key: {name: spread(v) for name, v in by_name.items()} for key, by_name in s["ui"].items()},
            "run_all_over_headless": {
                name: round(statistics.median(v) / statistics.median(headless[name]), 2)
                for name, v in s["ui"].get("run_all_s", {}).items()
                if headless.get(name)
            },
            # The first section's headless time may include waiting for the kernel template,
            # which a lab has long had ready: against the fastest release too.
            "run_all_over_fastest_headless": {
                name: round(statistics.median(v) / min(headless[name]), 2)
                for name, v in s["ui"].get("run_all_s", {}).items()
                if headless.get(name)
            },
        }
    text = json.dumps(results, indent=2)
    print(text)
    out = args.out or ROOT / "bench" / "results" / f"lab-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(text + "\n")
    print(f"written to {out}")


if __name__ == "__main__":
    main()
