"""One release of an app on a target at a time.

The lock is an operating-system lock (flock, through the `filelock` package) on
`<lock folder>/<app>.release.lock`, held for the release's whole lifetime. The kernel
releases it when its process ends, however it ends: there is no stale lock to detect or
race for, and of two takers exactly one wins. The lock folder belongs to what is being
released: the local platform's state folder (so two archives on one platform exclude each
other), else the archive's app folder (Fly: a GitHub concurrency group serialises the
workflow; this covers the rest).

Beside the lock, `<app>.release.json` names the holder (pid, host, operator, release, its
folder, since when), only for the message a second release prints. A holder file found by
whoever gets the lock was left by a runner that died (or is empty or unreadable, if it died
writing it): the new holder reports it as taken over, and the release it names is sealed as
abandoned (runner.seal_abandoned).
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from filelock import Timeout, UnixFileLock

from .errors import ReleaseError
from .results import utc_now, write_json_atomic

LOCK_SUFFIX = ".release.lock"
HOLDER_SUFFIX = ".release.json"


class ReleaseLocked(ReleaseError):
    """Another release of the same app holds the lock."""

    def __init__(self, message: str, *, holder: dict) -> None:
        self.holder = holder
        super().__init__(message)


def lock_paths(lock_dir: Path, app: str) -> tuple[Path, Path]:
    """The lock file and the holder file of an app's release lock."""
    return Path(lock_dir) / f"{app}{LOCK_SUFFIX}", Path(lock_dir) / f"{app}{HOLDER_SUFFIX}"


def read_holder(path: Path) -> dict | None:
    """The holder file's details; None when there is none; {"unreadable": why} when it is
    empty or not a holder (a runner that died while writing it)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as exc:
        return {"unreadable": exc.strerror or type(exc).__name__}
    try:
        holder = json.loads(text)
    except ValueError:
        holder = None
    if not isinstance(holder, dict):
        return {"unreadable": "empty" if not text.strip() else "not a holder record"}
    return holder


def _holder_record(operator: str, release_id: str, **details) -> dict:
    """Who holds a release lock (a folder's or the store's), as describe_holder reads it."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "operator": operator,
        "release_id": release_id,
        "since": utc_now(),
        **details,
    }


def describe_holder(holder: dict | None) -> str:
    if not holder or "unreadable" in holder:
        return "a release whose holder details are not written (or unreadable)"
    return (
        f"{holder.get('operator', '?')} (release {holder.get('release_id')}, pid {holder.get('pid')} "
        f"on {holder.get('host')}) since {holder.get('since')}"
    )


@contextmanager
def release_lock(lock_dir: Path, app: str, *, release_id: str, operator: str, **details) -> Iterator[dict | None]:
    """Hold the app's release lock for the block; yield the holder left behind by a runner
    that died (its details, or {"unreadable": ...}), None when the lock was free and clean.

    details: more facts written beside the lock (e.g. release_dir), for whoever finds it left.
    Raises ReleaseLocked, naming the holder, when another process holds it."""
    lock_dir = Path(lock_dir)
    lock_dir.mkdir(parents=True, exist_ok=True)
    lock_path, holder_path = lock_paths(lock_dir, app)
    # fallback_to_soft=False: a folder without flock must fail, not quietly get a file-exists lock.
    lock = UnixFileLock(lock_path, blocking=False, thread_local=False, fallback_to_soft=False, preserve_lock_file=True)
    try:
        lock.acquire()
    except Timeout:
        holder = read_holder(holder_path)
        raise ReleaseLocked(
            f"{app} is being released by {describe_holder(holder)}; lock {lock_path}", holder=holder or {}
        ) from None
    try:
        left = read_holder(holder_path)
        write_json_atomic(holder_path, _holder_record(operator, release_id, **details))
        yield left
    finally:
        holder_path.unlink(missing_ok=True)
        lock.release()


@contextmanager
def store_release_lock(
    store, key: str, app: str, *, release_id: str, operator: str, minutes: float, **details
) -> Iterator[dict | None]:
    """The app's release lock as an object in the archive's store (archive/store.py), for runners
    that share no machine: created create-only (If-None-Match), so of two takers one wins; it
    names its holder and expires `minutes` after it was taken (a runner that dies leaves it; the
    next release after the expiry takes it over, with If-Match, and says so). Yields the
    expired holder taken over, or None. Raises ReleaseLocked naming the holder."""
    from .errors import StoreConflict, StoreError

    now = datetime.now(UTC)
    me = _holder_record(
        operator,
        release_id,
        expires_at=(now + timedelta(minutes=minutes)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        # In CI the runner's run, so that the message points at the job holding the lock.
        run=os.environ.get("GITHUB_RUN_ID"),
        **details,
    )
    data = json.dumps(me, indent=1).encode()
    left = None
    try:
        etag = store.put(key, data, create_only=True)
    except StoreConflict:
        found = store.get(key)
        holder = _holder_of(found)
        if found is not None and holder.get("expires_at", "") > now.strftime("%Y-%m-%dT%H:%M:%SZ"):
            raise ReleaseLocked(
                f"{app} is being released by {describe_holder(holder)}; store lock {store.key_url(key)} "
                f"until {holder.get('expires_at')}",
                holder=holder,
            ) from None
        try:  # expired (its runner died), or gone since: take it, if nobody else did meanwhile
            etag = store.put(key, data, if_match=found[1]) if found else store.put(key, data, create_only=True)
        except StoreConflict:
            holder = _holder_of(store.get(key))
            raise ReleaseLocked(
                f"{app} is being released by {describe_holder(holder)}; store lock {store.key_url(key)}",
                holder=holder,
            ) from None
        left = holder if found else None
    try:
        yield left
    finally:
        try:
            store.delete(key, if_match=etag)  # only our own lock: after an expiry it may be another's
        except StoreConflict:
            pass  # taken over after it expired: it is another runner's now
        except StoreError:  # a store without conditional deletes: delete it if it is still ours
            try:
                found = store.get(key)
                if found is not None and found[1] == etag:
                    store.delete(key)
            except StoreError:
                pass  # the store is down: the expiry frees it


def _holder_of(found) -> dict:
    if found is None:
        return {}
    try:
        holder = json.loads(found[0])
    except ValueError:
        holder = None
    return holder if isinstance(holder, dict) else {"unreadable": "not a holder record"}
