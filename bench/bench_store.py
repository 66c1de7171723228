"""Benchmark: the archive store (archive/store.py, storesync.py) against a local S3 server.

Why: with an archive store a release also uploads every sealed object and advances the chain
head, and `runbook index` reads the catalog from the store. This starts moto's S3 server
(`moto_server`, a process of its own on 127.0.0.1) and measures:

- release: `runbook release` as a command, the same rehearsal world, alternately into the local
  folder and into the store (`--runs` each, interleaved), wall seconds; and, for the last
  store release, the upload alone (its sealed folder pushed again into a fresh prefix) and
  the pull a fresh runner does before a release;
- index: `--releases` synthetic manifests (bench_index.py's generator: 3 apps, realistic
  outcomes) put directly into the store with a head per app, then `runbook index`'s work
  (pull what is new into a local copy, rebuild, write index.html back) cold (an empty local
  copy) and warm (nothing new), and incremental (10 new releases).

Targets (issue 13): a release into the store at most 1.2x the local one; a warm index at most
1 s. Results go to bench/results/store-<time>.json. A benchmark, never a timed test.

    .venv/bin/python bench/bench_store.py [--runs 3] [--releases 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from bench_index import APPS, generate

from hotdash_release.archive.index import rebuild_index
from hotdash_release.archive.store import S3Store
from hotdash_release.archive.storesync import publish_index, pull_catalog, upload_release

RESULTS_DIR = Path(__file__).resolve().parent / "results"
BUCKET = "bench-archive"
CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "AKIABENCHHOTDASH",
    "AWS_SECRET_ACCESS_KEY": "bench-secret-ABCDEFGHIJKLMNOPQRSTUVWXYZ0123",
    "AWS_DEFAULT_REGION": "us-east-1",
}


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def start_moto_server() -> tuple[subprocess.Popen, str]:
    port = free_port()
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "moto_server"), "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:  # bounded: the server answers within a second or two
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return server, endpoint
        except OSError:
            time.sleep(0.1)
    server.kill()
    raise SystemExit("moto_server did not start")


def client(endpoint: str):
    import boto3
    from botocore.config import Config

    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        region_name=CREDENTIALS["AWS_DEFAULT_REGION"],
        aws_access_key_id=CREDENTIALS["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=CREDENTIALS["AWS_SECRET_ACCESS_KEY"],
        config=Config(max_pool_connections=16),
    )


def runbook(*args: str, env: dict) -> float:
    started = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "runbook"), *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=600,
    )
    if done.returncode != 0:
        raise SystemExit(f"runbook {' '.join(args)} exited {done.returncode}:\n{done.stdout}\n{done.stderr}")
    return time.perf_counter() - started


def bench_release(root: Path, endpoint: str, runs: int) -> dict:
    from conftest import make_rehearsal

    world = make_rehearsal(root / "world")
    env = {**CREDENTIALS, "AWS_ENDPOINT_URL": endpoint, "XDG_CONFIG_HOME": str(root / "xdg")}
    base = ["release", "--config", str(world.config), "--operator", "bench"]
    local_out, store_out = root / "local", root / "store"
    url = f"s3://{BUCKET}/release"
    try:
        runbook(*base, "--outputs", str(local_out), env=env)  # warm-up: apps deployed once, caches filled
        local, store = [], []
        for _ in range(runs):
            local.append(runbook(*base, "--outputs", str(local_out), env=env))
            store.append(runbook(*base, "--outputs", str(store_out), "--archive", url, env=env))
        s3 = S3Store(BUCKET, "release", client=client(endpoint))
        newest = sorted((store_out / "hotdash-production").glob("2*"))[-1]
        again = S3Store(BUCKET, "upload-again", client=client(endpoint))
        objects = sum(1 for p in newest.rglob("*") if p.is_file())
        size = sum(p.stat().st_size for p in newest.rglob("*") if p.is_file())
        # The upload alone: the last release's sealed objects again, into a fresh prefix.
        started = time.perf_counter()
        upload_release(again, store_out, "hotdash-production", newest.name)
        upload_s = time.perf_counter() - started
        started = time.perf_counter()
        pull_catalog(s3, root / "fresh-runner")
        pull_s = time.perf_counter() - started
    finally:
        world.platform().stop()
    return {
        "runs": runs,
        "local_release_s": [round(x, 2) for x in local],
        "store_release_s": [round(x, 2) for x in store],
        "local_median_s": round(statistics.median(local), 2),
        "store_median_s": round(statistics.median(store), 2),
        "ratio": round(statistics.median(store) / statistics.median(local), 3),
        "upload_alone_s": round(upload_s, 3),
        "upload_objects": objects,
        "upload_bytes": size,
        "fresh_runner_pull_s": round(pull_s, 3),
    }


def chain(folders: list[Path], after: dict[str, str] | None = None) -> None:
    """Link each app's synthetic manifests in time order, as releases are (readers follow the chain)."""
    previous = dict(after or {})
    for folder in sorted(folders, key=lambda f: f.name):
        path = folder / "manifest.json"
        manifest = json.loads(path.read_text())
        manifest["previous_release_id"] = previous.get(folder.parent.name)
        path.write_text(json.dumps(manifest, indent=2, sort_keys=True))
        previous[folder.parent.name] = folder.name


def put_synthetic(store: S3Store, root: Path, count: int) -> float:
    """Manifests straight into the store (no release ran), then one head per app."""
    folders = generate(root, count)
    chain(folders)
    started = time.perf_counter()

    def put(folder: Path) -> None:
        store.put(f"{folder.parent.name}/{folder.name}/manifest.json", (folder / "manifest.json").read_bytes())

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(put, folders))
    for app in sorted({f.parent.name for f in folders}):
        newest = max(f.name for f in folders if f.parent.name == app)
        head = {"app": app, "head_release_id": newest, "releases": count, "written_at": newest}
        store.put(f"{app}/checkpoint.json", json.dumps(head).encode())
    return time.perf_counter() - started


def bench_index(root: Path, endpoint: str, count: int) -> dict:
    store = S3Store(BUCKET, "index", client=client(endpoint))
    put_s = put_synthetic(store, root / "generated", count)
    local = root / "index-copy"
    results = {"releases": count, "put_into_store_s": round(put_s, 1)}
    started = time.perf_counter()
    build = publish_index(store, local, rebuild_index)
    results["cold"] = {"seconds": round(time.perf_counter() - started, 3), "releases": build.releases}
    started = time.perf_counter()
    build = publish_index(store, local, rebuild_index)  # nothing new: nothing to do
    results["warm"] = {"seconds": round(time.perf_counter() - started, 3), "rebuilt": build is not None}
    started = time.perf_counter()
    build = publish_index(store, local, rebuild_index, force=True)  # `runbook index --no-cache`'s work, cache kept
    results["warm_rebuilt"] = {"seconds": round(time.perf_counter() - started, 3), "releases": build.releases}
    later = datetime(2031, 1, 1, tzinfo=UTC)
    put_synthetic_more = generate(root / "more", 10, seed=count + 1, start=later)
    heads = {app: json.loads(store.get(f"{app}/checkpoint.json")[0])["head_release_id"] for app in APPS}
    chain(put_synthetic_more, heads)
    for folder in put_synthetic_more:
        store.put(f"{folder.parent.name}/{folder.name}/manifest.json", (folder / "manifest.json").read_bytes())
    for app in sorted({f.parent.name for f in put_synthetic_more}):
        newest = max(f.name for f in put_synthetic_more if f.parent.name == app)
        store.put(f"{app}/checkpoint.json", json.dumps({"app": app, "head_release_id": newest}).encode())
    started = time.perf_counter()
    build = publish_index(store, local, rebuild_index)
    results["incremental"] = {"seconds": round(time.perf_counter() - started, 3), "releases": build.releases}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3, help="releases of each kind (default 3)")
    parser.add_argument("--releases", type=int, default=10_000, help="synthetic releases for the index")
    parser.add_argument("--skip-release", action="store_true", help="only the index part")
    args = parser.parse_args()
    if not 1 <= args.runs <= 10 or not 1 <= args.releases <= 20_000:
        raise SystemExit("--runs 1..10, --releases 1..20000")
    server, endpoint = start_moto_server()
    root = Path(tempfile.mkdtemp(prefix="hotdash-bench-store-"))
    try:
        client(endpoint).create_bucket(Bucket=BUCKET)
        report = {"benchmark": "store", "endpoint": "moto_server on 127.0.0.1"}
        if not args.skip_release:
            report["release"] = bench_release(root, endpoint, args.runs)
        report["index"] = bench_index(root, endpoint, args.releases)
    finally:
        server.terminate()
        server.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)
    report["targets"] = {"store_over_local_ratio": 1.2, "warm_index_s": 1.0}
    report["machine"] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "load_average_1min": round(os.getloadavg()[0], 2),
    }
    report["at"] = datetime.now(UTC).isoformat(timespec="seconds")
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    out = RESULTS_DIR / f"store-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    if "release" in report:
        r = report["release"]
        print(
            f"release: local {r['local_median_s']} s, store {r['store_median_s']} s (median of {r['runs']}; "
            f"ratio {r['ratio']}); upload alone {r['upload_alone_s']} s for {r['upload_objects']} objects "
            f"({r['upload_bytes'] / 2**20:.1f} MB); a fresh runner's pull {r['fresh_runner_pull_s']} s"
        )
    i = report["index"]
    print(
        f"index of {i['releases']} releases from the store: cold {i['cold']['seconds']} s, warm "
        f"{i['warm']['seconds']} s (nothing new: not rebuilt), warm rebuilt anyway {i['warm_rebuilt']['seconds']} s, "
        f"10 new {i['incremental']['seconds']} s (put into the store in {i['put_into_store_s']} s)"
    )
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
