"""The release lock as a lease (locks.py): the store lock renewed by its holder's heartbeat, trusted by
a taker only once it watched it expire, a holder's process checked for real on this host, a former
holder that neither acts on nor deletes a lock taken over, and `runbook lock show / break`. Against a
real S3 HTTP API on loopback (moto's server mode) and the local folder store; real child processes."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from conftest import run_cli, wait_for, write_config
from s3_world import start_moto

from hotdash_release.archive.store import FolderStore, S3Store
from hotdash_release.archive.storesync import lock_key
from hotdash_release.locks import (
    LeaseLost,
    ReleaseLocked,
    StoreLease,
    pid_alive,
    process_identity,
    store_release_lock,
)

APP = "hotdash-production"
KEY = lock_key(APP)
IDS = [f"2026112{i}T100000Z-00000{i}" for i in range(1, 8)]


@pytest.fixture(scope="module")
def moto():
    server = start_moto()
    server.bucket("lease-archive")
    yield server
    server.server.stop()


_prefixes = iter(range(1000))


@pytest.fixture(params=["folder", "s3"])
def any_store(request, tmp_path, moto):
    if request.param == "folder":
        return FolderStore(tmp_path / "store")
    return S3Store("lease-archive", f"t{next(_prefixes)}", client=moto.client())


def lease(store, release_id: str, operator: str, *, seconds: float, **kwargs):
    return store_release_lock(store, KEY, APP, release_id=release_id, operator=operator, minutes=seconds / 60, **kwargs)


def stamp(delta_s: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=delta_s)).isoformat().replace("+00:00", "Z")


def sleeper() -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])


def test_the_holder_renews_its_lease_past_its_lifetime_and_gives_it_back(any_store):
    """Held three times as long as its lifetime, the lease is still its holder's: the heartbeat wrote
    a new version every third of it; a second runner meanwhile is refused, naming the holder and until
    when; at the end it is given back."""
    with lease(any_store, IDS[0], "ana", seconds=1.5) as held:
        assert held.left is None
        first = any_store.etag(KEY)
        started = time.monotonic()
        # three lifetimes, renewed all along (waited for: the heartbeat's pace is the scheduler's)
        assert wait_for(lambda: held.renewals >= 9 and time.monotonic() - started >= 4.5, 20), held.renewals
        assert any_store.etag(KEY) != first
        with pytest.raises(ReleaseLocked, match=rf"ana \(release {IDS[0]}.*store lock .*until .*renewed every 0.5 s"):
            with lease(any_store, IDS[1], "bo", seconds=1.5):
                pass
        held.check("the production deploy")  # still this runner's
    assert any_store.get(KEY) is None


def test_a_taker_trusts_only_a_lease_it_watched_expire(any_store):
    """A record whose expiry has passed on the taker's clock, from a holder that still renews (its clock
    is behind): watched, it changes, so it is not taken. Once it stops changing for one lease, it is."""
    record = {"release_id": IDS[2], "operator": "cy", "host": "elsewhere", "pid": 1, "lease_s": 1.0}
    record["expires_at"] = stamp(-300)
    any_store.put(KEY, json.dumps(record).encode())
    stop = threading.Event()

    def renew() -> None:
        count = 0
        while not stop.wait(0.2):
            count += 1
            any_store.put(KEY, json.dumps({**record, "renewals": count}).encode())

    renewer = threading.Thread(target=renew)
    renewer.start()
    try:
        with pytest.raises(ReleaseLocked, match=r"cy .*renewed or taken while its expiry was watched"):
            with lease(any_store, IDS[3], "di", seconds=60):
                pass
    finally:
        stop.set()
        renewer.join()
    said = []
    started = time.monotonic()
    with lease(any_store, IDS[3], "di", seconds=60, progress=said.append) as held:
        assert time.monotonic() - started >= 1.0  # one full lease of its own watching
        assert held.left["release_id"] == IDS[2] and "was not renewed in 1 s" in held.left["gone"]
        assert "watching it 1 s for a renewal before taking it over" in said[0]
        assert json.loads(any_store.get(KEY)[0])["operator"] == "di"


def test_a_holders_process_is_checked_for_real():
    """Signal 0 and /proc: a live child is alive; the same pid with another start time (a reused pid),
    another boot, a zombie and a reaped child are gone; another host cannot be told from here."""
    assert pid_alive(process_identity()) is True
    child = sleeper()
    try:
        ident = process_identity(child.pid)
        assert pid_alive(ident) is True
        assert pid_alive({**ident, "pid_start": str(int(ident["pid_start"]) + 1)}) is False
        assert pid_alive({**ident, "boot_id": "another-boot"}) is False
        assert pid_alive({**ident, "host": "elsewhere"}) is None
        child.kill()
        assert wait_for(lambda: pid_alive(ident) is False, 10)  # a zombie, not reaped yet
    finally:
        child.kill()
        child.wait()
    assert pid_alive(ident) is False


def test_a_dead_holder_on_this_host_is_gone_at_once_a_live_one_is_said_to_run(any_store):
    """A store lock naming a process of this host: live and within its lease, refused; dead (checked),
    taken at once without waiting out its lease; live but with an expired lease (paused), taken over
    after the watch, saying that it still runs (it stops before changing production)."""
    child = sleeper()
    try:
        holder = {**process_identity(child.pid), "release_id": IDS[0], "operator": "ana", "lease_s": 3600.0}
        any_store.put(KEY, json.dumps({**holder, "expires_at": stamp(3600)}).encode())
        with pytest.raises(ReleaseLocked, match="ana"):
            with lease(any_store, IDS[1], "bo", seconds=60):
                pass
    finally:
        child.kill()
        child.wait()
    said = []
    with lease(any_store, IDS[1], "bo", seconds=60, progress=said.append) as held:
        assert f"pid {child.pid} is gone on this host (checked)" in held.left["gone"]
        assert said == []  # nothing watched: the process is gone
    paused = sleeper()
    try:
        holder = {**process_identity(paused.pid), "release_id": IDS[2], "operator": "cy", "lease_s": 0.5}
        any_store.put(KEY, json.dumps({**holder, "expires_at": stamp(-1)}).encode())
        with lease(any_store, IDS[3], "di", seconds=60) as held:
            assert f"pid {paused.pid} still runs on this host (checked)" in held.left["gone"]
            assert "is gone" not in held.left["gone"]
    finally:
        paused.kill()
        paused.wait()


def test_a_lease_taken_over_is_neither_acted_on_nor_deleted_by_its_former_holder(any_store):
    """Runner A's lease is taken over by B (as after an expiry: If-Match on A's version). A's end of
    the block gives back only its own version, so B's lock stays; A's check before the production deploy
    finds B and refuses. A lease not renewed within its lifetime (A paused) is lost even if nobody
    took it: once expired it cannot be kept alive."""
    with lease(any_store, IDS[0], "ana", seconds=60) as held:
        any_store.put(KEY, json.dumps({"release_id": IDS[1], "operator": "bo"}).encode(), if_match=held.etag)
    assert any_store.get(KEY) is not None, "the former holder deleted the lock another runner took over"
    assert json.loads(any_store.get(KEY)[0])["operator"] == "bo"
    any_store.delete(KEY)
    with lease(any_store, IDS[2], "cy", seconds=60) as held:
        any_store.put(KEY, json.dumps({"release_id": IDS[3], "operator": "di"}).encode(), if_match=held.etag)
        with pytest.raises(LeaseLost, match=r"the production deploy refused: .*taken over by di"):
            held.check("the production deploy")
    assert json.loads(any_store.get(KEY)[0])["operator"] == "di"
    any_store.delete(KEY)
    now = [0.0]
    paused = StoreLease(any_store, KEY, APP, lifetime_s=10, holder={"release_id": IDS[4]}, clock=lambda: now[0])
    assert paused.acquire() is None
    now[0] = 10.5  # SIGSTOPped past its lease, nobody took it yet
    with pytest.raises(LeaseLost, match="expired: not renewed within its 10 s lifetime"):
        paused.check("the rollback", strict=False)
    paused.release()
    assert any_store.get(KEY) is not None  # not ours any more: left for a taker's expiry watch


def test_lock_show_and_a_break_with_its_reason_recorded_in_the_store(moto, tmp_path):
    """`runbook lock show` names the holder, its lease and whether its process runs; `lock break` needs a
    reason, records it (who, when, why, the lock as it was) in the store, then removes the lock; the
    next `show` lists the break."""
    store = S3Store("lease-archive", f"t{next(_prefixes)}", client=moto.client())
    url = f"s3://lease-archive/{store.prefix}"
    config = write_config(tmp_path / "config", state_dir=tmp_path / "state")
    args = ("--config", str(config), "--outputs", str(tmp_path / "outputs"), "--archive", url)
    env = moto.env()
    child = sleeper()
    try:
        holder = {**process_identity(child.pid), "release_id": IDS[0], "operator": "ana", "lease_s": 300.0}
        store.put(KEY, json.dumps({**holder, "since": stamp(-60), "expires_at": stamp(240)}).encode())
        show = run_cli("lock", "show", *args, extra_env=env)
        assert show.returncode == 0, show.stderr
        assert f"{url}/{KEY}: held (live) by ana (release {IDS[0]}, pid {child.pid}" in show.stdout
        assert f"pid {child.pid} still runs on this host (checked)" in show.stdout
        nothing = run_cli("lock", "break", *args, extra_env=env)
        assert nothing.returncode == 2 and "--reason" in nothing.stderr
        assert store.get(KEY) is not None
        broken = run_cli("lock", "break", *args, "--operator", "oscar", "--reason", "runner VM lost", extra_env=env)
        assert broken.returncode == 0, broken.stdout + broken.stderr
        assert f"{url}/{KEY}: broken (it was held by ana (release {IDS[0]}" in broken.stdout
    finally:
        child.kill()
        child.wait()
    assert store.get(KEY) is None
    (record,) = [o.key for o in store.list(f"_locks/{APP}/")]
    written = json.loads(store.get(record)[0])
    assert written["reason"] == "runner VM lost" and written["broken_by"] == "oscar" and written["removed"] is True
    assert written["lock"]["release_id"] == IDS[0]
    shown = run_cli("lock", "show", *args, extra_env=env)
    assert f"{url}/{KEY}: free" in shown.stdout
    assert "broken at " in shown.stdout and "by oscar: runner VM lost" in shown.stdout


def test_lock_show_names_the_process_holding_a_folder_lock_and_break_refuses_it(tmp_path):
    """Without a store the lock is an flock: `lock show` names the pid the kernel says holds it (from
    /proc/locks) and the holder file; `lock break` refuses (exit 2): it ends with its process."""
    config = write_config(tmp_path / "config", state_dir=tmp_path / "state")
    args = ("--config", str(config), "--outputs", str(tmp_path / "outputs"))
    env = {"HOTDASH_ARCHIVE": ""}
    assert "hotdash-production.release.lock: free" in run_cli("lock", "show", *args, extra_env=env).stdout
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time\n"
         "from hotdash_release.locks import release_lock\n"
         f"with release_lock({str(tmp_path / 'state' / 'locks')!r}, {APP!r}, release_id={IDS[0]!r}, operator='ana'):\n"
         "    print('held', flush=True); time.sleep(120)"],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline().strip() == "held"
        show = run_cli("lock", "show", *args, extra_env=env)
        assert f"release.lock: held by pid {holder.pid}; ana (release {IDS[0]}" in show.stdout, show.stdout
        broken = run_cli("lock", "break", *args, "--reason", "stale?", extra_env=env)
        assert broken.returncode == 2 and f"held by pid {holder.pid}: stop it" in broken.stderr
    finally:
        holder.kill()
        holder.wait()


class RenewedAfterRead(FolderStore):
    """A folder store where the lock's holder renews it right after someone reads it (the race a break
    must lose): the first read of the lock is followed by a new version of it."""

    def __init__(self, root) -> None:
        super().__init__(root)
        self.reads = 0

    def get(self, key):
        found = super().get(key)
        if key == KEY and found is not None and self.reads == 0:
            self.reads += 1
            super().put(KEY, found[0] + b" ", if_match=found[1])
        return found


def test_a_break_loses_to_a_holder_that_renewed_after_it_was_read(tmp_path):
    """`lock break` deletes only the version it showed (If-Match): a lock renewed meanwhile stays, the
    break says so (ReleaseLocked: exit 6) and the attempt is recorded with its reason."""
    from hotdash_release.locks import break_store_lock

    store = RenewedAfterRead(tmp_path / "store")
    store.put(KEY, json.dumps({"release_id": IDS[0], "operator": "ana", "expires_at": stamp(60)}).encode())
    with pytest.raises(ReleaseLocked, match=r"changed while it was being broken .*nothing removed"):
        break_store_lock(store, KEY, APP, reason="looked stale", operator="oscar")
    assert json.loads(store.get(KEY)[0])["operator"] == "ana"
    (record,) = [o.key for o in store.list(f"_locks/{APP}/")]
    attempt = json.loads(store.get(record)[0])
    assert attempt["reason"] == "looked stale" and attempt["removed"] is False
