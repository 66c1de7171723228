"""What the release's event log costs: an append, and reading back the results it vouches for.

    .venv/bin/python bench/bench_event_log.py                 # 60 events (a rehearsal writes ~50), 9 results
    .venv/bin/python bench/bench_event_log.py --events 2000   # a long lab session

Every write of a section's result appends one event (record/events.py: flock, read the log,
hash its last line, append, fsync), and every gate reads the log back to know which result
files are the release's. Both are timed in a temporary folder on this machine's disk.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from hotdash_release.record import events  # noqa: E402
from hotdash_release.results import results_path, write_json_atomic  # noqa: E402

SECTIONS = (
    "preflight",
    "verify_secrets",
    "deploy_staging",
    "staging_smoke",
    "go_no_go",
    "deploy_production",
    "production_smoke",
    "notify",
    "watch",
)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=60, help="events in the log (default 60)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=ROOT / "outputs" if (ROOT / "outputs").is_dir() else None) as tmp:
        folder = Path(tmp)
        appends = []
        for n in range(args.events):
            key = SECTIONS[n % len(SECTIONS)]
            write_json_atomic(results_path(folder, key), {"section": key, "outcome": "passed", "n": n})
            started = time.perf_counter()
            events.note_result(folder, key, by="bench", outcome="passed")
            appends.append(time.perf_counter() - started)
        reads = []
        for _ in range(20):
            started = time.perf_counter()
            results, problems = events.recorded_results(folder)
            reads.append(time.perf_counter() - started)
        assert len(results) == len(SECTIONS) and not problems
        size = (folder / events.EVENTS).stat().st_size
    figures = {
        "benchmark": "event_log",
        "events": args.events,
        "log_bytes": size,
        "append_ms": {"median": statistics.median(appends) * 1e3, "max": max(appends) * 1e3},
        "recorded_results_ms": {"median": statistics.median(reads) * 1e3, "max": max(reads) * 1e3},
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "loadavg": os.getloadavg(),
    }
    out = ROOT / "bench" / "results" / f"event_log-{args.events}.json"
    out.write_text(json.dumps(figures, indent=2) + "\n")
    print(
        f"{args.events} events ({size} bytes): append median {figures['append_ms']['median']:.2f} ms "
        f"(max {figures['append_ms']['max']:.2f}); recorded_results median "
        f"{figures['recorded_results_ms']['median']:.2f} ms (max {figures['recorded_results_ms']['max']:.2f}); "
        f"written to {out.relative_to(ROOT)}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
