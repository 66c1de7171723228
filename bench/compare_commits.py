"""Two commits' release machinery, measured back to back on this machine.

    .venv/bin/python bench/compare_commits.py BASE [NEW] [--rounds 4] [--releases 3] [--as-commands]

These 2-core VMs drift by a quarter within an hour, so two `bench_release.py` runs taken at
different moments cannot tell a 10% change from noise. This checks out each commit into a
temporary git worktree and alternates between them (BASE, NEW, NEW, BASE, ...); each turn is
a fresh process on a fresh rehearsal world that warms up with one release, then runs
--releases releases through the runner and as many plain scripts (the lower bound), as in
bench_release.py. NEW defaults to the working tree as committed (HEAD). Every worktree uses
this checkout's .venv: the commits must not differ in dependencies.

Prints, per commit, the medians and the machinery per section = (runner - script) / 8, both
as the difference of medians and as the median of per-release differences.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = 8

#: Run inside one worktree (its lib/ first on sys.path): warm up, then runner and script in turns.
TURN = """
import json, sys, tempfile
from pathlib import Path
root, releases, as_commands = Path(sys.argv[1]), int(sys.argv[2]), sys.argv[3] == "1"
sys.path[:0] = [str(root / "tests"), str(root / "bench")]
import hotdash_release, bench_release as b
assert hotdash_release.__file__.startswith(str(root)), hotdash_release.__file__
from conftest import make_rehearsal
with tempfile.TemporaryDirectory() as tmp:
    world = make_rehearsal(Path(tmp), wait_timeout_s=10)
    helpers = b.KeptHelpers() if hasattr(b, "KeptHelpers") and not as_commands else None
    kept = {"helpers": helpers} if helpers else {}
    try:
        if as_commands:
            runner = lambda: b.time_command(b.runner_command(world))
            script = lambda: b.time_command(b.script_command(world))
        else:
            runner = lambda: b.time_runner(world, **kept)[0]
            script = lambda: b.run_as_script(world)
        runner()
        times = {"runner": [], "script": []}
        for _ in range(releases):
            times["runner"].append(runner())
            times["script"].append(script())
        print("TIMES " + json.dumps(times))
    finally:
        if helpers:
            helpers.close()
        world.platform().stop()
"""


def worktree(commit: str, into: Path) -> Path:
    folder = into / commit.replace("/", "_")
    subprocess.run(
        ["git", "-C", str(ROOT), "worktree", "add", "--detach", "-f", str(folder), commit],
        check=True,
        capture_output=True,
    )
    (folder / ".venv").symlink_to(ROOT / ".venv")  # bench_release runs .venv/bin/runbook of its root
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", str(folder / "lib")],
        check=True,
        capture_output=True,
        env={**os.environ, "PYTHONDONTWRITEBYTECODE": ""},
    )
    return folder


def turn(folder: Path, releases: int, as_commands: bool) -> dict:
    env = {**os.environ, "PYTHONPATH": str(folder / "lib")}
    done = subprocess.run(
        [sys.executable, "-c", TURN, str(folder), str(releases), "1" if as_commands else "0"],
        env=env,
        capture_output=True,
        text=True,
        cwd=folder,
    )
    lines = [line for line in done.stdout.splitlines() if line.startswith("TIMES ")]
    if done.returncode or not lines:
        sys.exit(f"{folder.name}: the measuring process failed:\n{done.stderr[-3000:]}")
    return json.loads(lines[-1][len("TIMES ") :])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("base", help="the commit to compare against")
    parser.add_argument("new", nargs="?", default="HEAD")
    parser.add_argument("--rounds", type=int, default=4, help="turns per commit (default 4)")
    parser.add_argument("--releases", type=int, default=3, help="releases per turn (default 3)")
    parser.add_argument(
        "--as-commands",
        action="store_true",
        help="`runbook release` and `python` on the plain script instead of in-process",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="hotdash-compare-") as tmp:
        folders = {name: worktree(name, Path(tmp)) for name in (args.base, args.new)}
        try:
            times = {name: {"runner": [], "script": []} for name in folders}
            for index in range(args.rounds):
                order = list(folders) if index % 2 == 0 else list(reversed(folders))
                for name in order:
                    for key, values in turn(folders[name], args.releases, args.as_commands).items():
                        times[name][key] += values
                    print(f"round {index + 1}/{args.rounds}: {name} done", file=sys.stderr)
        finally:
            for folder in folders.values():
                subprocess.run(
                    ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(folder)], capture_output=True
                )
    for name, measured in times.items():
        runner, script = measured["runner"], measured["script"]
        per_section = (statistics.median(runner) - statistics.median(script)) / SECTIONS * 1000
        paired = statistics.median(r - s for r, s in zip(runner, script, strict=False)) / SECTIONS * 1000
        print(
            f"{name}: runner {statistics.median(runner):.2f} s (min {min(runner):.2f}), script "
            f"{statistics.median(script):.2f} s, machinery {per_section:.0f} ms a section "
            f"(paired {paired:.0f} ms), {len(runner)} releases"
        )


if __name__ == "__main__":
    main()
