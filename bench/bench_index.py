"""Benchmark: building the archive index from 10,000 releases.

Why: the index (outputs/index.html, metrics.json, metrics.csv) is rebuilt after every
release, and an archive only grows. This generates a synthetic archive of N releases
(manifests only, shaped like real ones: 3 apps, 2 targets, realistic outcomes, files
and sections) in a temporary folder, then measures:

- cold: no .index-cache.json, every manifest read;
- warm: the cache is current, nothing changed (a `runbook index` with nothing new);
- incremental: 10 new releases since the last build (what the runner's hook does).

Each scenario is timed without tracing, then run again under tracemalloc for its peak
Python allocation; ru_maxrss of the whole process (interpreter, pandas and all) is
reported too. Results go to bench/results/index-<time>.json. Target: under 2 s and
under 300 MB for 10,000 releases. This is a benchmark, never a timed test.

    .venv/bin/python bench/bench_index.py [--releases 10000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path

from hotdash_release.archive.catalog import CACHE_FILE
from hotdash_release.archive.index import rebuild_index
from hotdash_release.plan import PLAN, ROLLBACK

RESULTS_DIR = Path(__file__).resolve().parent / "results"
APPS = ("hotdash-production", "hotdash-eu-production", "hotdash-internal")
OUTCOMES = (("released", 85), ("blocked", 6), ("rolled back", 6), ("rollback failed", 2), ("error", 1))
OPERATORS = ("ana", "ben", "chen", "dara", "ci-bot")
NEW_RELEASES = 10


def sections_for(outcome: str, rng: random.Random) -> list[dict]:
    """The sections a release with this outcome ran, in plan order."""
    keys = [s.key for s in PLAN]
    if outcome == "blocked":
        keys = keys[: rng.randint(1, 5)]
    elif outcome in ("rolled back", "rollback failed"):
        keys = keys[: rng.choice((6, 7))] + [ROLLBACK.key]
    elif outcome == "error":
        keys = keys[: rng.randint(1, 8)]
    titles = {s.key: s.title for s in (*PLAN, ROLLBACK)}
    failed = keys[-2] if outcome in ("rolled back", "rollback failed") else keys[-1] if outcome == "blocked" else None
    result = []
    for index, key in enumerate(keys, start=1):
        verdict = (
            "failed"
            if key == failed
            else ("failed" if outcome == "rollback failed" and key == "rollback" else "passed")
        )
        result.append(
            {
                "key": key,
                "title": titles[key],
                "outcome": verdict,
                "duration_s": round(rng.gauss(2.0, 0.4) + (60 if key.startswith("deploy") else 0), 3),
                "budget_minutes": 5.0,
                "notebook": f"{index:02d}-{key}.ipynb",
                "error": "",
                "failures": [] if verdict == "passed" else ["smoke: 2 failed"],
                "reused_from": None,
            }
        )
    return result


def manifest(app: str, target: str, started: datetime, rng: random.Random, commits: list[str]) -> dict:
    outcome = rng.choices([o for o, _ in OUTCOMES], weights=[w for _, w in OUTCOMES])[0]
    release_id = f"{started:%Y%m%dT%H%M%SZ}-{rng.getrandbits(24):06x}"
    sections = sections_for(outcome, rng)
    clock = started
    for section in sections:
        section["started_at"] = clock.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        clock += timedelta(seconds=section["duration_s"])
    files = {
        f"{s['notebook'][:-6]}.{ext}": f"{rng.getrandbits(256):064x}" for s in sections for ext in ("ipynb", "html")
    }
    files.update({f"results/{s['key']}.json": f"{rng.getrandbits(256):064x}" for s in sections})
    files["report.html"] = f"{rng.getrandbits(256):064x}"
    return {
        "release_id": release_id,
        "app": app,
        "outcome": outcome,
        "exit_code": 0,
        "reason": f"synthetic: {outcome}",
        "operator": rng.choice(OPERATORS),
        "target": target,
        "started_at": started.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "finished_at": clock.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
        "parameters": {
            "target": target,
            "config_path": "/srv/hotdash/runbooks/hotdash.toml",
            "operator": "x",
            "release_dir": f"/srv/hotdash/outputs/{app}/{release_id}",
        },
        "rehearsal_defects": {},
        "runbooks_commit": {"commit": rng.choice(commits), "dirty": False},
        "tools": {"python": "3.11.7", "papermill": "2.7.0", "nbconvert": "7.17.2", "pandas": "3.1.1"},
        "inputs": {"config_sha256": f"{rng.getrandbits(256):064x}", "runbooks_sha256": f"{rng.getrandbits(256):064x}"},
        "sections": sections,
        "previous_release_id": None,
        "previous_manifest_sha256": "0" * 64,
        "files": files,
    }


def generate(root: Path, count: int, *, seed: int = 7, start: datetime | None = None) -> list[Path]:
    """`count` release folders with a manifest each, one every 1-3 hours; returns their folders."""
    rng = random.Random(seed)
    commits = [f"{rng.getrandbits(160):040x}" for _ in range(500)]
    clock = start or datetime(2024, 1, 1, tzinfo=UTC)
    folders = []
    for _ in range(count):
        clock += timedelta(minutes=rng.randint(60, 180))
        app = rng.choice(APPS)
        data = manifest(app, rng.choice(("fly", "fly", "local")), clock, rng, commits)
        folder = root / app / data["release_id"]
        folder.mkdir(parents=True)
        (folder / "manifest.json").write_text(json.dumps(data, indent=2, sort_keys=True), encoding="utf-8")
        folders.append(folder)
    return folders


def timed(root: Path) -> dict:
    started, cpu = time.perf_counter(), time.process_time()
    build = rebuild_index(root)
    return {
        "seconds": round(time.perf_counter() - started, 3),
        "cpu_seconds": round(time.process_time() - cpu, 3),
        "releases": build.releases,
        "manifests_read": build.parsed,
        "from_cache": build.cached,
    }


def traced(root: Path) -> float:
    tracemalloc.start()
    rebuild_index(root)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    return round(peak / 2**20, 1)


def max_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def measure(root: Path, count: int) -> dict:
    """In a fresh process (see main): cold, warm and incremental builds timed, the process's
    peak RSS taken, then each build again under tracemalloc from the same starting state."""
    results = {"rss_after_imports_mb": max_rss_mb()}
    later = datetime(2030, 1, 1, tzinfo=UTC)
    (root / CACHE_FILE).unlink(missing_ok=True)
    results["cold"] = timed(root)
    results["warm"] = timed(root)
    new = generate(root, NEW_RELEASES, seed=count + 1, start=later)
    results["incremental"] = timed(root)
    results["incremental"]["new_releases"] = NEW_RELEASES
    results["max_rss_mb"] = max_rss_mb()  # before tracing, which has its own overhead
    results["index_html_bytes"] = (root / "index.html").stat().st_size
    for folder in new:
        shutil.rmtree(folder)
    (root / CACHE_FILE).unlink()
    results["cold"]["peak_traced_mb"] = traced(root)
    results["warm"]["peak_traced_mb"] = traced(root)
    generate(root, NEW_RELEASES, seed=count + 1, start=later)
    results["incremental"]["peak_traced_mb"] = traced(root)
    return results


def measure_in_fresh_process(root: Path, count: int) -> dict:
    """The generator's own allocations must not count: measure in a child process."""
    done = subprocess.run(
        [sys.executable, __file__, "--measure", str(root), "--releases", str(count)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--releases", type=int, default=10_000)
    parser.add_argument("--keep", type=Path, help="build the archive here and keep it (default: a temp dir)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child process of measure_in_fresh_process
    args = parser.parse_args()
    if args.measure:
        print(json.dumps(measure(args.measure, args.releases)))
        return 0
    root = args.keep or Path(tempfile.mkdtemp(prefix="hotdash-bench-index-"))
    try:
        started = time.perf_counter()
        generate(root, args.releases)
        generated_s = time.perf_counter() - started
        results = measure_in_fresh_process(root, args.releases)
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
    report = {
        "benchmark": "index",
        "releases": args.releases,
        "generated_in_s": round(generated_s, 2),
        **results,
        "targets": {"seconds": 2.0, "memory_mb": 300},
        "machine": {
            "python": sys.version.split()[0],
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load_average_1min": round(os.getloadavg()[0], 2),
        },
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"index-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    for name in ("cold", "warm", "incremental"):
        row = results[name]
        print(
            f"{name:12} {row['seconds']:6.2f} s wall, {row['cpu_seconds']:6.2f} s CPU, peak "
            f"{row['peak_traced_mb']:6.1f} MB traced ({row['manifests_read']} manifests read, "
            f"{row['from_cache']} from cache)"
        )
    print(
        f"process RSS: {results['rss_after_imports_mb']} MB after imports, {results['max_rss_mb']} MB peak; "
        f"index.html {results['index_html_bytes'] / 2**20:.1f} MB; load average {report['machine']['load_average_1min']}"
    )
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
