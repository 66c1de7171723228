"""Release machinery benchmark: what a fresh kernel per section costs, and the budgets of
the issue "Speed: a fresh kernel per section".

    .venv/bin/python bench/bench_release.py [--runs 5] [--out bench/results/release-<date>.json]

Measures, on an isolated rehearsal platform in a temporary folder:
  runner      the standard rehearsal through `run_release` (papermill, a fresh kernel per section
              forked from a kernel template, the next one starting while the current section runs),
              by a runner that keeps its kernel pool (template and a spare kernel) and HTML
              export worker for all its releases, as the plain script keeps its imports
  runner_own_helpers  the same, each release starting (and ending) its own pool and worker
  runner_spawned  the same with kernels started as new interpreters, as many ahead (the pool alone)
  runner_cold the same with kernels started as new interpreters, each when its section begins
  script      the same runbook cells executed in-process, no kernel (the lower bound)
  runner_cli / script_cli   the same two as commands a person runs: `runbook release`, and
              `python` on the plain script; each pays for starting Python and its imports
  cli_loop    a loop of `papermill` CLI calls, one per section (what a user would write by hand)
  overhead    (runner - script) / sections: the runner's machinery per section
  fan_out     50 smoke checks against a loopback server answering each in 200 ms
  rollback    from a failed production smoke check to the previous image verified healthy
  archive     bytes of HTML per release
Results are printed and written as JSON so runs can be compared. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from hotdash_release.archive.seal import ExportWorker  # noqa: E402
from hotdash_release.checks import http as checks  # noqa: E402
from hotdash_release.errors import GateFailed  # noqa: E402
from hotdash_release.execution.pool import KERNELS_AHEAD, start_kernel_pool  # noqa: E402
from hotdash_release.paths import RUNBOOKS_DIR  # noqa: E402
from hotdash_release.plan import PLAN, ROLLBACK  # noqa: E402
from hotdash_release.runner import ReleaseOptions, new_release_id, run_release  # noqa: E402


def spread(samples: list[float]) -> dict:
    return {
        "min": round(min(samples), 3),
        "median": round(statistics.median(samples), 3),
        "max": round(max(samples), 3),
        "runs": len(samples),
    }


class KeptHelpers:
    """What a runner that runs many releases keeps between them: the kernel pool (its template
    and a spare kernel) and the HTML export worker (the `runbook` command starts both for
    its one release)."""

    def __init__(self) -> None:
        self.pool = start_kernel_pool()
        self.worker = ExportWorker()

    def close(self) -> None:
        self.pool.close()
        self.worker.close()


def time_runner(world, defects=None, *, ahead=KERNELS_AHEAD, fork=True, helpers=None) -> tuple[float, Path]:
    seconds, record = run_once(world, defects, ahead=ahead, fork=fork, helpers=helpers)
    return seconds, record.release_dir


def run_once(world, defects=None, *, ahead=KERNELS_AHEAD, fork=True, helpers: KeptHelpers | None = None):
    options = ReleaseOptions(
        config_path=world.config,
        outputs=world.outputs,
        operator="bench",
        defects=defects or {},
        kernels_ahead=ahead,
        fork_kernels=fork,
    )
    started = time.perf_counter()
    record = run_release(
        options,
        progress=lambda line: None,
        kernel_pool=helpers.pool if helpers else None,
        export_worker=helpers.worker if helpers else None,
    )
    return time.perf_counter() - started, record


def runner_cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def code_cells(notebook: Path) -> list[str]:
    cells = json.loads(notebook.read_text())["cells"]
    return ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]


def run_as_script(world) -> float:
    """Every section's cells in this process, parameters set as papermill would: no kernel."""
    return run_cells(world.config, world.outputs)


def run_cells(config: Path, outputs: Path) -> float:
    release_dir = outputs / "hotdash-production" / new_release_id()
    started = time.perf_counter()
    for section in PLAN:
        cells = code_cells(RUNBOOKS_DIR / section.notebook)
        namespace: dict = {}
        exec(cells[0], namespace)
        namespace.update(
            {
                "config_path": str(config),
                "release_dir": str(release_dir),
                "operator": "bench",
                **section.notebook_parameters(),
            }
        )
        try:
            for source in cells[1:]:
                exec(compile(source, section.notebook, "exec"), namespace)
        except GateFailed:
            break
    return time.perf_counter() - started


def time_command(args: list[str]) -> float:
    started = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - started


def runner_command(world) -> list[str]:
    return [
        str(ROOT / ".venv" / "bin" / "runbook"),
        "release",
        "--config",
        str(world.config),
        "--outputs",
        str(world.outputs),
        "--operator",
        "bench",
    ]


def script_command(world) -> list[str]:
    """The plain script as its own process: Python starts, imports the library, runs the cells."""
    return [sys.executable, str(Path(__file__).resolve()), "--cells-of", str(world.config), str(world.outputs)]


def run_cli_loop(world) -> float:
    release_dir = world.outputs / "hotdash-production" / new_release_id()
    release_dir.mkdir(parents=True)
    started = time.perf_counter()
    for index, section in enumerate(PLAN, start=1):
        params = {
            "config_path": str(world.config),
            "release_dir": str(release_dir),
            "operator": "bench",
            **section.notebook_parameters(),
        }
        args = [
            str(ROOT / ".venv" / "bin" / "papermill"),
            str(RUNBOOKS_DIR / section.notebook),
            str(release_dir / f"{index:02d}-{section.key}.ipynb"),
            "--cwd",
            str(RUNBOOKS_DIR),
        ]
        for name, value in params.items():
            args += ["-p", name, str(value)]
        subprocess.run(args, check=True, capture_output=True)
    return time.perf_counter() - started


class _Slow(BaseHTTPRequestHandler):
    def do_GET(self):
        time.sleep(0.2)
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


class _BackloggedServer(ThreadingHTTPServer):
    # The default listen backlog (5) would make most of 50 simultaneous connects wait for a SYN retry.
    request_queue_size = 128


def fan_out(count: int = 50) -> dict:
    server = _BackloggedServer(("127.0.0.1", 0), _Slow)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        probes = tuple(checks.SmokeCheck(name=f"check {i}", path=f"/page/{i}", expect_status=200) for i in range(count))
        base = f"http://127.0.0.1:{server.server_address[1]}"
        with checks.make_client() as client:
            started = time.perf_counter()
            results = checks.run_smoke_checks(client, base, probes, context={}, max_workers=count)
            total = time.perf_counter() - started
    finally:
        server.shutdown()
    slowest = max(r.latency_ms for r in results) / 1000
    return {
        "checks": count,
        "total_s": round(total, 3),
        "slowest_single_s": round(slowest, 3),
        "ratio": round(total / slowest, 2),
        "all_passed": all(r.ok for r in results),
    }


def rollback_latency(world, helpers: KeptHelpers) -> dict:
    """Failed production smoke check -> previous image healthy, read from the archive's clocks."""
    _, release_dir = time_runner(world, {"production": "wrong_api_key"}, helpers=helpers)
    results = release_dir / "results"
    smoke = json.loads((results / "production_smoke.json").read_text())
    rollback = json.loads((results / "rollback.json").read_text())
    healthy_at = rollback["records"]["health"]["checked_at"]
    failed_at = smoke["finished_at"]
    seconds = (_parse(healthy_at) - _parse(failed_at)).total_seconds()
    return {"seconds": round(seconds, 3), "rolled_back_ok": rollback["outcome"] == "passed"}


def _parse(stamp: str) -> datetime:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00"))


def per_section(runs: list[float], script: list[float], sections: int) -> int:
    return round((statistics.median(runs) - statistics.median(script)) / sections * 1000)


def html_bytes(release_dir: Path) -> int:
    return sum(p.stat().st_size for p in release_dir.glob("*.html"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--cells-of", nargs=2, type=Path, metavar=("CONFIG", "OUTPUTS"), help=argparse.SUPPRESS
    )  # script_command: the plain script, in a process of its own
    args = parser.parse_args()
    if args.cells_of:
        run_cells(*args.cells_of)
        return
    from conftest import make_rehearsal  # the tests' isolated rehearsal world (imports pytest)

    with tempfile.TemporaryDirectory(prefix="hotdash-bench-") as tmp:
        world = make_rehearsal(Path(tmp), wait_timeout_s=10)
        helpers = KeptHelpers()
        try:
            time_runner(world, helpers=helpers)  # warm-up: first deploys, first imports, page cache
            runner, own_helpers, spawned, cold, one_ahead, script, cli_loop, archive = [], [], [], [], [], [], [], 0
            in_sections, runner_cpu, runner_cli, script_cli = [], [], [], []
            for _ in range(args.runs):
                cpu_before = runner_cpu_seconds()
                seconds, record = run_once(world, helpers=helpers)
                runner_cpu.append(runner_cpu_seconds() - cpu_before)
                runner.append(seconds)
                in_sections.append(sum(s.duration_s for s in record.sections))
                archive = html_bytes(record.release_dir)
                own_helpers.append(time_runner(world)[0])
                spawned.append(time_runner(world, fork=False)[0])
                cold.append(time_runner(world, ahead=0, fork=False)[0])
                one_ahead.append(time_runner(world, ahead=1)[0])
                script.append(run_as_script(world))
                runner_cli.append(time_command(runner_command(world)))
                script_cli.append(time_command(script_command(world)))
            for _ in range(max(1, args.runs // 2)):
                cli_loop.append(run_cli_loop(world))
            rollback = rollback_latency(world, helpers)
        finally:
            helpers.close()
            world.platform().stop()
    sections = len(PLAN)
    result = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_average_1m": round(os.getloadavg()[0], 2),
        },
        "sections": sections,
        "runner_s": spread(runner),
        "runner_sections_s": spread(in_sections),  # the sections' own clocks, kernel wait included
        "runner_cpu_s": spread(runner_cpu),  # the runner process only, not kernels or workers
        "runner_own_helpers_s": spread(own_helpers),
        "runner_spawned_s": spread(spawned),
        "runner_cold_kernels_s": spread(cold),
        "runner_one_ahead_s": spread(one_ahead),
        "script_s": spread(script),
        "runner_cli_s": spread(runner_cli),
        "script_cli_s": spread(script_cli),
        "cli_loop_s": spread(cli_loop),
        "overhead_per_section_ms": per_section(runner, script, sections),
        "overhead_per_section_own_helpers_ms": per_section(own_helpers, script, sections),
        "overhead_per_section_as_commands_ms": per_section(runner_cli, script_cli, sections),
        "overhead_per_section_spawned_ms": per_section(spawned, script, sections),
        "overhead_per_section_cold_ms": per_section(cold, script, sections),
        "fan_out": fan_out(),
        "rollback": rollback,
        "archive_html_bytes": archive,
        "rollback_section": ROLLBACK.key,
    }
    out = args.out or ROOT / "bench" / "results" / f"release-{datetime.now():%Y%m%d-%H%M%S}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    print(f"written to {out}")


if __name__ == "__main__":
    main()
