"""One release of an app at a time.

The lock is a file created exclusively under outputs/<app>/; it names its holder (pid,
host, operator, release, since when). A second release fails fast naming the holder. A
lock whose holder process is gone is taken over, and the takeover is recorded.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import ReleaseError
from .execution.procs import proc_stat
from .results import utc_now

LOCK_NAME = ".release.lock"


class ReleaseLocked(ReleaseError):
    """Another release of the same app holds the lock."""

    def __init__(self, message: str, *, holder: dict) -> None:
        self.holder = holder
        super().__init__(message)


def _holder_alive(holder: dict) -> bool:
    if holder.get("host") != socket.gethostname():
        return True  # cannot see another machine's processes: assume it still runs
    try:
        pid = int(holder["pid"])
        os.kill(pid, 0)
    except (KeyError, ValueError, ProcessLookupError):
        return False
    except PermissionError:
        return True
    # A recycled pid is not our holder: compare the process start time recorded at locking.
    return _start_time(pid) == holder.get("start_time")


def _start_time(pid: int) -> int | None:
    stat = proc_stat(pid)
    return stat[1] if stat else None


def _write_exclusive(path: Path, holder: dict) -> bool:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    except FileExistsError:
        return False
    with os.fdopen(fd, "w") as handle:
        json.dump(holder, handle)
    return True


@contextmanager
def release_lock(app_dir: Path, *, release_id: str, operator: str) -> Iterator[dict | None]:
    """Hold the app's release lock; yields the stale holder taken over, if any."""
    app_dir.mkdir(parents=True, exist_ok=True)
    path = app_dir / LOCK_NAME
    me = {
        "pid": os.getpid(),
        "start_time": _start_time(os.getpid()),
        "host": socket.gethostname(),
        "operator": operator,
        "release_id": release_id,
        "since": utc_now(),
    }
    taken_over = None
    if not _write_exclusive(path, me):
        try:
            holder = json.loads(path.read_text())
        except (OSError, ValueError):
            holder = {"release_id": "unknown (unreadable lock)", "pid": None}
        if _holder_alive(holder):
            raise ReleaseLocked(
                f"{app_dir.name} is being released by {holder.get('operator', '?')} "
                f"(release {holder.get('release_id')}, pid {holder.get('pid')} on {holder.get('host')}) "
                f"since {holder.get('since')}; lock file {path}",
                holder=holder,
            )
        path.unlink(missing_ok=True)
        if not _write_exclusive(path, me):
            raise ReleaseLocked(f"{app_dir.name}: another release took the lock just now ({path})", holder={})
        taken_over = holder
    try:
        yield taken_over
    finally:
        path.unlink(missing_ok=True)
