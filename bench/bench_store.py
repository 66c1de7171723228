"""Benchmark: the archive store (archive/store.py, storesync.py) against a local S3 server.

Why: with an archive store a release also uploads every sealed object and advances the chain
head, and `runbook index` reads the catalog from the store. This starts moto's S3 server
(`moto_server`, a process of its own on 127.0.0.1) and measures:

- release: `runbook release` as a command, the same rehearsal world, alternately into the local
  folder and into the store (`--runs` each, interleaved), wall seconds; and, for the last
  store release, the upload alone (its sealed folder pushed again into a fresh prefix) and
  the pull a fresh runner does before a release;
- index: `--releases` synthetic manifests (bench_index.py's generator: 3 apps, realistic
  outcomes, linked by id and sha256) put directly into the store with a head and a summary per
  app (as a release's runner writes them), then `runbook index`'s work (pull what is new into a
  local copy, rebuild, write index.html back) cold (an empty local copy), warm (nothing new),
  warm rebuilt, and incremental (10 new releases); then, with the summaries removed, cold and
  warm rebuilt into a fresh copy: every manifest read, as before the summaries (issue 25).

Targets: a release into the store at most 1.2x the local one; a warm index at most 1 s
(issue 13); a cold index of 10,000 under 3 s (issue 25). Results go to
bench/results/store-<time>.json. A benchmark, never a timed test.

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

from bench_index import generate

from hotdash_release.archive.index import rebuild_index
from hotdash_release.archive.integrity import GENESIS, sha256_bytes
from hotdash_release.archive.store import S3Store
from hotdash_release.archive.storesync import publish_index, pull_catalog, upload_release
from hotdash_release.archive.summary import local_manifest, summary_for_head, summary_key

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


def chain(folders: list[Path], after: dict[str, tuple[str, str]] | None = None) -> dict[str, tuple[str, str, int]]:
    """Link each app's synthetic manifests in time order, by id and sha256, as releases are
    (readers follow the chain). after: {app: (id, sha256)} to link the first ones to. Returns
    each app's newest (id, manifest sha256, releases added)."""
    previous = dict(after or {})
    added: dict[str, int] = {}
    for folder in sorted(folders, key=lambda f: f.name):
        app, path = folder.parent.name, folder / "manifest.json"
        manifest = json.loads(path.read_text())
        manifest["previous_release_id"], manifest["previous_manifest_sha256"] = previous.get(app, (None, GENESIS))
        data = json.dumps(manifest, indent=2, sort_keys=True).encode()
        path.write_bytes(data)
        previous[app] = (folder.name, sha256_bytes(data))
        added[app] = added.get(app, 0) + 1
    return {app: (*previous[app], n) for app, n in added.items()}


def put_heads_and_summaries(store: S3Store, root: Path, newest: dict, counts: dict[str, int]) -> None:
    """Each app's head, then its summary, as the runner of its newest release writes them
    (storesync.push_release: the head, then write_summary from the runner's copy)."""
    for app, (head_id, head_sha, _) in sorted(newest.items()):
        checkpoint = {
            "app": app,
            "head_release_id": head_id,
            "head_manifest_sha256": head_sha,
            "releases": counts[app],
            "written_at": head_id,
        }
        store.put(f"{app}/checkpoint.json", json.dumps(checkpoint).encode())
        base = store.get(summary_key(app))
        data = summary_for_head(app, checkpoint, base[0] if base else None, local_manifest(root / app))
        if data is None:
            raise SystemExit(f"no summary for {app}: the synthetic chain does not link")
        store.put(summary_key(app), data)


def put_manifests(store: S3Store, folders: list[Path]) -> float:
    started = time.perf_counter()

    def put(folder: Path) -> None:
        store.put(f"{folder.parent.name}/{folder.name}/manifest.json", (folder / "manifest.json").read_bytes())

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(put, folders))
    return time.perf_counter() - started


def timed_publish(store: S3Store, local: Path, **kwargs) -> tuple[float, object]:
    started = time.perf_counter()
    build = publish_index(store, local, rebuild_index, **kwargs)
    return round(time.perf_counter() - started, 3), build


def bench_index(root: Path, endpoint: str, count: int) -> dict:
    """cold, warm, warm rebuilt and 10 new, with each app's summary in the store; then cold and
    warm again into a fresh copy with the summaries removed: every manifest read, as before them."""
    store = S3Store(BUCKET, "index", client=client(endpoint))
    folders = generate(root / "generated", count)
    newest = chain(folders)
    counts = {app: n for app, (_, _, n) in newest.items()}
    put_s = put_manifests(store, folders)
    put_heads_and_summaries(store, root / "generated", newest, counts)
    sizes = {app: len(store.get(summary_key(app))[0]) for app in newest}
    results = {"releases": count, "put_into_store_s": round(put_s, 1), "summary_bytes": sizes}
    local = root / "index-copy"
    seconds, build = timed_publish(store, local)
    results["cold"] = {"seconds": seconds, "releases": build.releases}
    seconds, build = timed_publish(store, local)  # nothing new: nothing to do
    results["warm"] = {"seconds": seconds, "rebuilt": build is not None}
    seconds, build = timed_publish(store, local, force=True)  # `runbook index --no-cache`'s work, cache kept
    results["warm_rebuilt"] = {"seconds": seconds, "releases": build.releases}
    later = datetime(2031, 1, 1, tzinfo=UTC)
    more = generate(root / "more", 10, seed=count + 1, start=later)
    added = chain(more, {app: newest[app][:2] for app in newest})
    counts = {app: counts[app] + added.get(app, (0, 0, 0))[2] for app in counts}
    put_manifests(store, more)
    put_heads_and_summaries(store, root / "more", {**newest, **added}, counts)
    seconds, build = timed_publish(store, local)
    results["incremental"] = {"seconds": seconds, "releases": build.releases}
    for app in newest:  # before the summaries: a reader has only the manifests
        store.delete(summary_key(app))
    fresh = root / "index-copy-without-summaries"
    seconds, build = timed_publish(store, fresh)
    results["cold_without_summaries"] = {"seconds": seconds, "releases": build.releases}
    seconds, build = timed_publish(store, fresh, force=True)
    results["warm_rebuilt_without_summaries"] = {"seconds": seconds, "releases": build.releases}
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
    report["targets"] = {"store_over_local_ratio": 1.2, "warm_index_s": 1.0, "cold_index_s": 3.0}
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
        f"10 new {i['incremental']['seconds']} s (put into the store in {i['put_into_store_s']} s); "
        f"without the summaries: cold {i['cold_without_summaries']['seconds']} s, warm rebuilt "
        f"{i['warm_rebuilt_without_summaries']['seconds']} s"
    )
    print(f"-> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
