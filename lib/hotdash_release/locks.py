"""One release of an app on a target at a time: a folder lock on one machine, a lease in the
archive's store across machines.

**The folder lock** is an operating-system lock (flock, through the `filelock` package) on
`<lock folder>/<app>.release.lock`, held for the release's whole lifetime. The kernel releases
it when its process ends, however it ends: there is no stale lock to detect, renew or race for,
and of two takers exactly one wins. The lock folder belongs to what is being released: the
local platform's state folder (so two archives on one platform exclude each other), else the
archive's app folder. Beside the lock, `<app>.release.json` names the holder (pid, its start
time and boot, host, operator, release, its folder, since when), only for the message a second
release prints. A holder file found by whoever gets the lock was left by a process the kernel
has seen end: the new holder reports it as taken over, and the release it names is sealed as
abandoned (runner.seal_abandoned).

**The store lock is a lease** (`StoreLease`), as etcd's leases (a TTL kept alive by the holder)
and the DynamoDB lock client (a lease duration, a heartbeat, a record version a taker watches)
do it. The lock object `<app>/release.lock.json` is created create-only (If-None-Match), so of
two takers one wins. Its holder:

- renews it every third of its lifetime (`lock_minutes`) from a heartbeat thread, each time a
  conditional write (If-Match the ETag it wrote last): a renewal that finds another version
  (taken over, broken) loses the lease at once and never writes again;
- trusts it until the start of its last successful renewal plus one lifetime (its own monotonic
  clock, less a tenth for drift), and before a production-changing action confirms it with one
  more renewal (`check`): a runner that lost it, or cannot renew, stops before it changes
  anything (runner.py);
- gives it back on every way out with a conditional delete (If-Match its own last ETag), so a
  lock another runner took over is never deleted by its former holder.

A taker decides that the holder is gone only from an expired lease: the record's expiry has
passed on the taker's clock *and* the taker then watches the record for one full lifetime
without seeing it change (the DynamoDB lock client's rule: no trust in the holder's clock);
then it takes it with If-Match on the version it watched. The one shortcut: a holder on this
host (and this boot) whose process is checked dead for real (`pid_alive`: signal 0 and the
process's start time in /proc, so a reused pid is not taken for the holder) is gone at once.
A live pid on this host with an expired lease is taken over too (it was paused or starved past
its lease): it loses the lease, and it stops before changing production when it runs again.

`runbook lock show` prints either lock; `runbook lock break --reason ...` removes a store lock
(conditionally, on the version shown) after writing who broke it, when and why to
`_locks/<app>/broken-<time>.json` in the store. A folder lock is not broken: it ends with its
process.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from filelock import Timeout, UnixFileLock

from .errors import ReleaseError
from .results import utc_now, write_json_atomic

LOCK_SUFFIX = ".release.lock"
HOLDER_SUFFIX = ".release.json"
RENEWALS_PER_LEASE = 3  # the holder renews every lifetime/3: two renewals may fail before it expires
DRIFT = 0.1  # the holder trusts its lease for 90% of a lifetime after its last renewal began


class ReleaseLocked(ReleaseError):
    """Another release of the same app holds the lock."""

    def __init__(self, message: str, *, holder: dict) -> None:
        self.holder = holder
        super().__init__(message)


class LeaseLost(ReleaseLocked):
    """This runner's store lease is no longer its own (taken over, broken, or not renewed in time)."""


# -- the holder's process, checked for real ---------------------------------------------------


def _proc_stat(pid: int) -> tuple[str, str] | None:
    """(state, start time in clock ticks since boot) of a process, from /proc; None without /proc."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # the command name may hold spaces and parentheses
    return fields[0], fields[19]


def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def process_identity(pid: int | None = None) -> dict:
    """What names a process beyond its pid: host, boot and start time (a pid is reused)."""
    pid = pid or os.getpid()
    stat = _proc_stat(pid)
    return {"pid": pid, "host": socket.gethostname(), "boot_id": _boot_id(), "pid_start": stat[1] if stat else None}


def pid_alive(holder: dict) -> bool | None:
    """Whether the process a holder record names still runs: None when this host cannot tell
    (another host, no pid); False when it is gone: no such pid, a zombie, another boot, or
    another process under the same pid (its start time differs)."""
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0 or holder.get("host") != socket.gethostname():
        return None
    if holder.get("boot_id") and _boot_id() and holder["boot_id"] != _boot_id():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it exists, as another user
    stat = _proc_stat(pid)
    if stat is None:
        return True  # no /proc: signal 0 is all there is
    state, started = stat
    if state in ("Z", "X"):
        return False
    return not (holder.get("pid_start") and started != holder["pid_start"])


def process_text(holder: dict) -> str:
    """The holder's process as checked now, for a message."""
    alive = pid_alive(holder)
    if alive is None:
        return f"pid {holder.get('pid')} on {holder.get('host')}, not checkable from here"
    return f"pid {holder.get('pid')} {'still runs' if alive else 'is gone'} on this host (checked)"


# -- the folder lock --------------------------------------------------------------------------


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
    return {**process_identity(), "operator": operator, "release_id": release_id, "since": utc_now(), **details}


def describe_holder(holder: dict | None) -> str:
    if not holder or "unreadable" in holder:
        return "a release whose holder details are not written (or unreadable)"
    return (
        f"{holder.get('operator', '?')} (release {holder.get('release_id')}, pid {holder.get('pid')} "
        f"on {holder.get('host')}) since {holder.get('since')}"
    )


def flock_holder_pid(lock_path: Path) -> int | None:
    """The pid holding an flock on this file, from /proc/locks (read only: no race with a taker);
    None when nobody holds it (or /proc/locks cannot be read)."""
    try:
        inode = os.stat(lock_path).st_ino
        lines = Path("/proc/locks").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        parts = line.split()
        # "1: FLOCK  ADVISORY  WRITE 1234 08:01:5678 0 EOF" (a blocked waiter's line has "->")
        if len(parts) >= 6 and parts[1] == "FLOCK" and "->" not in parts:
            if int(parts[5].rsplit(":", 1)[-1]) == inode:
                return int(parts[4])
    return None


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
        if left is not None and "unreadable" not in left:
            left["gone"] = f"pid {left.get('pid')} is gone (the kernel released its lock)"
        write_json_atomic(holder_path, _holder_record(operator, release_id, **details))
        yield left
    finally:
        holder_path.unlink(missing_ok=True)
        lock.release()


# -- the live-release lock ---------------------------------------------------------------------


def live_lock_path(release_dir: Path) -> Path:
    """Where a release folder's live lock is: outside the folder (the seal signs all it holds),
    named by the folder's resolved path, in the machine's temporary folder that kernels share."""
    import hashlib
    import tempfile

    key = hashlib.sha256(str(Path(release_dir).resolve()).encode()).hexdigest()[:32]
    return Path(tempfile.gettempdir()) / "hotdash-live" / f"{key}.lock"


@contextmanager
def live_release(release_dir: Path) -> Iterator[None]:
    """Held by `runbook release` for its release folder and by `runbook lab` for its session
    folder, for their whole life: what makes a release live. Production changes only in a live
    release (decisions/release_gate.py); the kernel lets go of it when the holder ends."""
    path = live_lock_path(release_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = UnixFileLock(path, blocking=False, thread_local=False, fallback_to_soft=False)
    try:
        lock.acquire()
    except Timeout:
        raise ReleaseLocked(f"{release_dir} is already being run by pid {flock_holder_pid(path)}", holder={}) from None
    try:
        yield
    finally:
        lock.release()


def live_holder(release_dir: Path) -> int | None:
    """The pid of the live process holding this release folder now; None if none."""
    pid = flock_holder_pid(live_lock_path(release_dir))
    if pid is None:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return pid


# -- the store lease --------------------------------------------------------------------------


def _holder_of(found) -> dict:
    if found is None:
        return {}
    try:
        holder = json.loads(found[0])
    except ValueError:
        holder = None
    return holder if isinstance(holder, dict) else {"unreadable": "not a holder record"}


def _parse_time(text) -> datetime | None:
    try:
        when = datetime.fromisoformat(str(text))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=UTC)


def _stamp(when: datetime) -> str:
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z"


class StoreLease:
    """An app's release lock in the archive's store, held as a lease (see the module docstring).

    acquire() takes it (or raises ReleaseLocked), start() starts the heartbeat, check(action)
    confirms it before production changes (raises LeaseLost), release() gives it back if it is
    still this runner's. `clock` is monotonic seconds; `sleep` waits while a taker watches."""

    def __init__(
        self,
        store,
        key: str,
        app: str,
        *,
        lifetime_s: float,
        holder: dict,
        progress: Callable[[str], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.store, self.key, self.app = store, key, app
        self.lifetime_s = float(lifetime_s)
        self.holder = {**holder, "token": secrets.token_hex(8), "lease_s": self.lifetime_s}
        self.progress = progress or (lambda line: None)
        self.clock, self.sleep = clock, sleep
        self.etag: str | None = None
        self.valid_until = 0.0  # on self.clock
        self.lost: str | None = None  # why it is no longer this runner's
        self.taken = False  # lost to another holder (or broken): the app and its chain are not ours
        self.renewals = 0
        self.left: dict | None = None  # the holder taken over (acquire)
        self.last_error = ""
        self._mutex = threading.Lock()  # one conditional write at a time (heartbeat and check)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return self.store.key_url(self.key)

    def _record(self) -> bytes:
        now = datetime.now(UTC)
        record = {
            **self.holder,
            "renewed_at": _stamp(now),
            "expires_at": _stamp(now + timedelta(seconds=self.lifetime_s)),
        }
        return json.dumps(record, indent=1).encode()

    # -- taking it

    def acquire(self) -> dict | None:
        """Take the lock: free, or its holder gone (an expired lease, watched for one lifetime; or a
        dead pid on this host). Returns the holder taken over (with "gone": why), None when it was
        free. Raises ReleaseLocked naming the holder when it is live."""
        from .errors import StoreConflict

        started = self.clock()
        try:
            self.etag = self.store.put(self.key, self._record(), create_only=True)
        except StoreConflict:
            pass
        else:
            self.valid_until = started + self.lifetime_s
            return None
        found = self.store.get(self.key)
        if found is None:  # given back since: one more create-only try
            return self._take(None, {})
        holder = _holder_of(found)
        alive = pid_alive(holder)
        expires = _parse_time(holder.get("expires_at"))
        if alive is False:
            gone = f"{process_text(holder)}: its lease is not waited for"
        elif expires is not None and expires > datetime.now(UTC):
            raise ReleaseLocked(
                f"{self.app} is being released by {describe_holder(holder)}; store lock {self.url} "
                f"until {holder.get('expires_at')} (renewed every {_seconds(holder) / RENEWALS_PER_LEASE:g} s)",
                holder=holder,
            )
        else:
            gone = self._watch(found, holder)
        return self._take(found, {**holder, "gone": gone})

    def _watch(self, found: tuple[bytes, str], holder: dict) -> str:
        """An expired lease (on this clock): watch its version for one full lifetime; a change is a
        holder that still renews (ReleaseLocked). Returns why the holder counts as gone."""
        lifetime = _seconds(holder) or self.lifetime_s
        self.progress(
            f"store lock {self.url}: the lease of release {holder.get('release_id')} expired at "
            f"{holder.get('expires_at', '?')}; watching it {lifetime:g} s for a renewal before taking it over"
        )
        until = self.clock() + lifetime
        step = max(min(lifetime / 10, 5.0), 0.05)
        while self.clock() < until:
            self.sleep(min(step, max(until - self.clock(), 0.0)))
            now = self.store.etag(self.key)
            if now != found[1]:
                current = _holder_of(self.store.get(self.key)) if now else {}
                if now is None:
                    return "its lock was given back while watched"
                raise ReleaseLocked(
                    f"{self.app} is being released by {describe_holder(current)}; store lock {self.url}: "
                    f"renewed or taken while its expiry was watched",
                    holder=current,
                )
        alive = pid_alive(holder)
        checked = f"; {process_text(holder)}: it stops before changing production" if alive else ""
        return f"its lease expired at {holder.get('expires_at', '?')} and was not renewed in {lifetime:g} s{checked}"

    def _take(self, found: tuple[bytes, str] | None, left: dict) -> dict | None:
        from .errors import StoreConflict

        started = self.clock()
        try:
            if found is None:
                self.etag = self.store.put(self.key, self._record(), create_only=True)
            else:
                self.etag = self.store.put(self.key, self._record(), if_match=found[1])
        except (StoreConflict, FileNotFoundError):
            holder = _holder_of(self.store.get(self.key))
            raise ReleaseLocked(
                f"{self.app} is being released by {describe_holder(holder)}; store lock {self.url}", holder=holder
            ) from None
        self.valid_until = started + self.lifetime_s
        return left or None

    # -- holding it

    def start(self) -> None:
        """The heartbeat: a renewal every lifetime/3 until released or lost."""
        interval = self.lifetime_s / RENEWALS_PER_LEASE

        def beat() -> None:
            while not self._stop.wait(interval):
                if not self.renew():
                    if self.lost:
                        return

        self._thread = threading.Thread(target=beat, daemon=True, name="store-lease")
        self._thread.start()

    def renew(self) -> bool:
        """One conditional write of the record (If-Match the last ETag). False when it failed:
        `lost` says why when the lease is gone (another version there, or no renewal in time)."""
        from .errors import StoreConflict, StoreError

        with self._mutex:
            if self.lost:
                return False
            started = self.clock()
            if started >= self.valid_until:  # as an etcd lease: once expired it cannot be kept alive
                self.lost = f"expired: not renewed within its {self.lifetime_s:g} s lifetime" + (
                    f" ({self.last_error})" if self.last_error else ""
                )
                return False
            try:
                etag = self.store.put(self.key, self._record(), if_match=self.etag)
            except (StoreConflict, FileNotFoundError):
                holder = _holder_of(self.store_get_quietly())
                self.lost = f"taken over by {describe_holder(holder)}" if holder else "removed from the store (broken?)"
                self.taken = True
                return False
            except StoreError as exc:
                self.last_error = str(exc)
                if self.clock() >= self.valid_until:
                    self.lost = f"not renewed within its {self.lifetime_s:g} s lifetime ({exc})"
                return False
            self.etag, self.valid_until = etag, started + self.lifetime_s
            self.renewals += 1
            return True

    def store_get_quietly(self):
        from .errors import StoreError

        try:
            return self.store.get(self.key)
        except StoreError:
            return None

    def check(self, action: str, *, strict: bool = True) -> None:
        """Before a production-changing action: the lease must be this runner's now. One renewal
        confirms it; strict (a deploy): a renewal that fails for any reason stops it; not strict (a
        rollback of production this runner changed): a store that cannot be reached is tolerated
        while the lease is still valid on this runner's clock. Raises LeaseLost."""
        renewed = self.renew()
        valid = self.clock() < self.valid_until - DRIFT * self.lifetime_s
        if self.lost or not valid or (strict and not renewed):
            why = self.lost or (
                f"not renewed within its {self.lifetime_s:g} s lifetime"
                if not valid
                else f"cannot renew: {self.last_error}"
            )
            raise LeaseLost(
                f"{action} refused: the release lock {self.url} is no longer this runner's: {why}", holder={}
            )

    def release(self) -> None:
        """Give it back, only if it is still this runner's (conditional delete on its own ETag)."""
        from .errors import StoreConflict, StoreError

        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=60)
        with self._mutex:
            if self.lost or self.etag is None:
                return  # another runner's now, or never ours: never deleted by us
            self.lost = "given back"
            try:
                self.store.delete(self.key, if_match=self.etag)  # after an expiry it may be another's
            except (StoreConflict, FileNotFoundError):
                pass  # taken over after it expired (or broken): it is not ours to delete
            except StoreError:  # a store without conditional deletes: delete it if it is still ours
                try:
                    found = self.store.get(self.key)
                    if found is not None and found[1] == self.etag:
                        self.store.delete(self.key)
                except StoreError:
                    pass  # the store is down: its expiry frees it, or `runbook archive push` gives it back


def _seconds(holder: dict) -> float:
    value = holder.get("lease_s")
    return float(value) if isinstance(value, int | float) and value > 0 else 0.0


@contextmanager
def store_release_lock(
    store,
    key: str,
    app: str,
    *,
    release_id: str,
    operator: str,
    minutes: float,
    progress: Callable[[str], None] | None = None,
    **details,
) -> Iterator[StoreLease]:
    """Hold the app's release lease in the store for the block (heartbeat running); yields the
    StoreLease (`.left`: the holder taken over, or None). Raises ReleaseLocked naming the holder."""
    holder = _holder_record(operator, release_id, run=os.environ.get("GITHUB_RUN_ID"), **details)
    lease = StoreLease(store, key, app, lifetime_s=minutes * 60, holder=holder, progress=progress)
    lease.left = lease.acquire()
    try:
        lease.start()
        yield lease
    finally:
        lease.release()


# -- after the release: `runbook archive push`, `runbook lock show / break` ---------------------


def give_back(store, key: str, release_id: str) -> str | None:
    """`runbook archive push`: the lock its release's runner could not give back (the store was
    down as it ended), removed if it still names that release and its process is not running
    here (conditional delete on the version read). Returns what was done, or None."""
    from .errors import StoreConflict

    found = store.get(key)
    holder = _holder_of(found)
    if found is None or holder.get("release_id") != release_id:
        return None
    if pid_alive(holder):
        return f"the release lock stays: its runner ({process_text(holder)}) gives it back itself"
    try:
        store.delete(key, if_match=found[1])
    except (StoreConflict, FileNotFoundError):
        return None  # taken over meanwhile: another runner's
    return f"the release lock of release {release_id} ({store.key_url(key)}) is given back"


def break_key(app: str, when: datetime) -> str:
    return f"_locks/{app}/broken-{when:%Y%m%dT%H%M%SZ}-{secrets.token_hex(3)}.json"


def describe_store_lock(store, key: str) -> tuple[str, tuple[bytes, str] | None]:
    """A store lock as `runbook lock show` prints it, and the object read."""
    found = store.get(key)
    if found is None:
        return f"{store.key_url(key)}: free", None
    holder = _holder_of(found)
    expires = _parse_time(holder.get("expires_at"))
    state = "unreadable" if expires is None else ("live" if expires > datetime.now(UTC) else "EXPIRED")
    lines = [
        f"{store.key_url(key)}: held ({state}) by {describe_holder(holder)}",
        f"  lease {_seconds(holder) or '?'} s, renewed at {holder.get('renewed_at', '?')}, "
        f"expires at {holder.get('expires_at', '?')}; version {found[1]}",
        f"  process: {process_text(holder)}",
    ]
    if holder.get("run"):
        lines.append(f"  CI run: {holder['run']}")
    return "\n".join(lines), found


def break_store_lock(store, key: str, app: str, *, reason: str, operator: str) -> str:
    """Remove a store lock a person judged stale: the break is recorded first (who, when, why, the
    lock as it was) in `_locks/<app>/`, then the lock is deleted If-Match the version read (a holder
    that renewed meanwhile keeps it), and the record says whether it was removed. Returns what was
    done; raises ReleaseLocked when the lock changed."""
    from .errors import StoreConflict, UsageError

    if not reason.strip():
        raise UsageError("lock break: --reason is required (it is recorded in the store)")
    found = store.get(key)
    if found is None:
        return f"{store.key_url(key)}: free; nothing to break"
    holder = _holder_of(found)
    now = datetime.now(UTC)
    record_key = break_key(app, now)
    record = {
        "broken_at": _stamp(now),
        "broken_by": operator,
        "reason": reason,
        **{f"by_{k}": v for k, v in process_identity().items() if k in ("host", "pid")},
        "lock_key": key,
        "lock_version": found[1],
        "lock": holder,
    }
    written = store.put(record_key, json.dumps({**record, "removed": None}).encode(), create_only=True)
    try:
        store.delete(key, if_match=found[1])
    except (StoreConflict, FileNotFoundError):
        store.put(record_key, json.dumps({**record, "removed": False}, indent=1).encode(), if_match=written)
        current = _holder_of(store.get(key))
        raise ReleaseLocked(
            f"lock break: {store.key_url(key)} changed while it was being broken (renewed or taken: "
            f"{describe_holder(current) if current else 'now free'}); nothing removed; the attempt is recorded "
            f"in {store.key_url(record_key)}",
            holder=current,
        ) from None
    store.put(record_key, json.dumps({**record, "removed": True}, indent=1).encode(), if_match=written)
    return (
        f"{store.key_url(key)}: broken (it was held by {describe_holder(holder)}); "
        f"recorded in {store.key_url(record_key)}"
    )


def read_breaks(store, app: str) -> list[dict]:
    """The recorded breaks of an app's store lock, oldest first."""
    out = []
    for obj in store.list(f"_locks/{app}/"):
        found = store.get(obj.key)
        if found is not None:
            out.append({"key": obj.key, **_holder_of(found)})
    return out
