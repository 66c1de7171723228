"""The post-deployment watch's own CPU over a window (goal: under 1% of one core at a 5 s interval).

    .venv/bin/python bench/bench_watch.py                  # 60 s window, a measurement every 5 s
    .venv/bin/python bench/bench_watch.py --seconds 20 --interval 1

Production is the stand-in app, started as a real process on 127.0.0.1 (its CPU is not counted);
the watch runs here as the runbook runs it (checks.watch.watch_production with the library's
HTTP client and a log reader), and this process's CPU time over the window is what it costs.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "lib"))

from hotdash_release.checks import http as checks  # noqa: E402
from hotdash_release.checks.watch import NewLogLines, WatchSettings, watch_production  # noqa: E402
from hotdash_release.targets.local import STANDIN_APP  # noqa: E402


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=60.0, help="the window (default 60)")
    parser.add_argument("--interval", type=float, default=5.0, help="seconds between measurements (default 5)")
    args = parser.parse_args()
    port = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        log = Path(tmp) / "app.log"
        env = {
            "PATH": os.environ.get("PATH", ""),
            "PORT": str(port),
            "SHOPIFY_API_KEY": "bench-api-key-0001",
            "SHOPIFY_API_SECRET": "bench-api-secret-0001",
            "SHOPIFY_APP_URL": f"http://127.0.0.1:{port}",
            "SCOPES": "read_orders",
            "DATABASE_URL": "postgresql://bench:bench@127.0.0.1:5432/bench",
            "SUPABASE_URL": "http://127.0.0.1:9",
            "SUPABASE_ANON_KEY": "bench-anon-key-0001",
            "PYTHONUNBUFFERED": "1",
        }
        with log.open("w") as out:
            app = subprocess.Popen([sys.executable, str(STANDIN_APP)], env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            url = f"http://127.0.0.1:{port}/health"
            with checks.make_client() as client:
                deadline = time.monotonic() + 20
                while time.monotonic() < deadline:
                    try:
                        if client.get(url).status_code == 200:
                            break
                    except Exception:
                        time.sleep(0.1)
                settings = WatchSettings(minutes=args.seconds / 60, interval_s=args.interval)
                tail = NewLogLines(lambda: log.read_text().splitlines()[-500:])
                cpu, wall = time.process_time(), time.monotonic()
                result = watch_production(client, url, settings, read_new_logs=tail)
                cpu, wall = time.process_time() - cpu, time.monotonic() - wall
        finally:
            app.terminate()
            app.wait(timeout=10)
    report = {
        "window_s": args.seconds,
        "interval_s": args.interval,
        "measurements": len(result.measurements),
        "wall_s": round(wall, 2),
        "cpu_s": round(cpu, 4),
        "cpu_percent_of_one_core": round(100 * cpu / wall, 3),
        "ok": result.ok,
    }
    print(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
