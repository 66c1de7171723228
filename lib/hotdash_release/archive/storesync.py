"""A release against an object store: read what the release needs from the store before it
runs, work in a local folder, then upload the sealed release and advance the app's chain head.

The layout in the store is the archive's: `<app>/<release id>/...`, and `<app>/checkpoint.json`,
the signed chain head, which is the only object ever replaced, always with If-Match on the
ETag read before (or create-only for an app's first release). So two runners cannot both
append at one position of the chain: the second write is refused (412) and that runner exits 6
naming the release that holds the position. Sealed objects are written create-only (never
overwritten) and, when `[archive] retention_days` is set, with an Object Lock retention date.
`manifest.json` is each release's last object and the head moves only after every object is
in: a reader never sees half a release in the chain.

The local folder is a cache of the store: `pull_catalog` brings every release's manifest.json
(what the catalog, the history, the baselines and the chain link read) and the results of each
app's last good release (the rollback's secret comparison, the report's changes), and only
what is new: `.store-state.json` remembers each app's head ETag and the releases already read,
so a rebuild after one release reads one head per app and one new manifest. For an app no
release is about to run of here, `<app>/summary.json` stands for the manifests when it matches
the head: a copy that starts empty reads one object per app (write_summary, archive/summary.py).
"""

from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import StoreConflict, StoreError
from .catalog import RELEASE_ID
from .integrity import MANIFEST, sealed_releases
from .signing import CHECKPOINT, SIGNATURE, SSH_SIGNATURE, SUMS
from .store import Store
from .summary import SUMMARY, local_manifest, summary_for_head, summary_key

STATE_FILE = ".store-state.json"
NOT_APPENDED = ".not-appended"  # releases sealed here that lost their chain position to another runner
LOCK_NAME = "release.lock.json"
#: Written after everything else of a release, manifest last: listed, a release is complete.
LAST_OBJECTS = (SUMS, SIGNATURE, SSH_SIGNATURE, MANIFEST)
#: The archive index's pages, rebuilt from the catalog: replaced, never sealed.
INDEX_FILES = ("index.html", "metrics.json", "metrics.csv")
WORKERS = 16  # requests in flight: an S3 request is mostly waiting
#: Manifests a reader reads back from the head to bring an earlier head's summary up to date
#: (one after another); a summary further behind, and it reads every manifest, 16 at a time.
SUMMARY_WALK = 32


def head_key(app: str) -> str:
    return f"{app}/{CHECKPOINT}"


def lock_key(app: str) -> str:
    return f"{app}/{LOCK_NAME}"


@dataclass
class Pulled:
    """What a pull found: each app's head (etag, checkpoint), what it read, what is not in the store."""

    heads: dict[str, tuple[str, dict]] = field(default_factory=dict)
    manifests: int = 0  # manifests read from the store this time
    summaries: int = 0  # apps whose catalog came from their summary (one object each) this time
    releases: int = 0  # sealed releases in the store (as far as the cache knows)
    pending: dict[str, list[str]] = field(default_factory=dict)  # app (of `apps`) -> sealed here, not in the store


# -- the local state ---------------------------------------------------------------------------


def read_state(root: Path, url: str) -> dict:
    try:
        state = json.loads((Path(root) / STATE_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        state = None
    if not isinstance(state, dict) or state.get("url") != url or not isinstance(state.get("apps"), dict):
        return {"url": url, "apps": {}}
    return state


def write_state(root: Path, state: dict) -> None:
    path = Path(root) / STATE_FILE
    tmp = path.with_name(f"{STATE_FILE}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(state, separators=(",", ":")), encoding="utf-8")
    os.replace(tmp, path)


def _write_local(path: Path, data: bytes) -> None:
    if path.is_file() and path.read_bytes() == data:
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def _parallel(function, items, workers: int = WORKERS) -> list:
    items = list(items)
    if len(items) <= 1:
        return [function(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(workers, len(items)), thread_name_prefix="store") as pool:
        return list(pool.map(function, items))


# -- reading ------------------------------------------------------------------------------------


def store_apps(store: Store) -> list[str]:
    return [name for name in store.folders("") if not name.startswith((".", "_")) and name != "interactive"]


def read_head(store: Store, app: str) -> tuple[str, dict] | None:
    """(etag, checkpoint) of the app's chain head in the store; None before its first release."""
    return _parse_head(store.get(head_key(app)))


def _parse_head(found: tuple[bytes, str] | None) -> tuple[str, dict] | None:
    if found is None:
        return None
    try:
        checkpoint = json.loads(found[0])
    except ValueError:
        checkpoint = {}
    return found[1], checkpoint if isinstance(checkpoint, dict) else {}


def pull_catalog(store: Store, root: Path, *, apps: list[str] | None = None) -> Pulled:
    """Bring into `root` what the catalog reads, only what is new since the last pull: each app's
    head, then its summary (one object, archive/summary.py) when it matches the head and no
    release of the app is about to run here (`apps`); else every release's manifest and the
    results of its last good releases."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    state = read_state(root, store.url)
    pulled = Pulled()
    for app in sorted(set(store_apps(store)) | set(apps or ())):
        known = state["apps"].setdefault(app, {"head_etag": None, "releases": []})
        raw = store.get(head_key(app))
        head = _parse_head(raw)
        if head:
            pulled.heads[app] = head
        have = set(known["releases"])  # manifests in this copy
        # A release of this app is about to run: its seal links to and counts the chain's
        # manifests, so they must be here; the catalog alone can come from the summary.
        needs_manifests = app in (apps or ())
        summarized = None
        if head and head[0] != known["head_etag"] and not needs_manifests:
            summarized = _pull_summary(store, root, app, raw, pulled)
        if summarized is not None:
            have |= summarized
            known["head_etag"], known["summary"] = head[0], head[1].get("releases")
            known["releases"] = sorted(have)
            pulled.summaries += 1
        elif head and (head[0] != known["head_etag"] or (needs_manifests and known.get("summary"))):
            known["summary"] = None
            ids = [name for name in store.folders(f"{app}/") if RELEASE_ID.match(name) and name not in have]
            keys = [f"{app}/{rid}/{MANIFEST}" for rid in ids]
            # No manifest: an upload not finished (its manifest goes last), not part of the archive yet.
            fetched = {rid: found[0] for rid, found in zip(ids, _parallel(store.get, keys), strict=True) if found}
            for rid in chain_from(head[1].get("head_release_id"), fetched, have):
                _write_local(root / app / rid / MANIFEST, fetched[rid])
                have.add(rid)
                pulled.manifests += 1
            _write_local(root / app / CHECKPOINT, raw[0])
            _pull_last_good(store, root, app)
            known["head_etag"] = head[0]
            known["releases"] = sorted(have)
        elif head and app in (apps or ()):
            _pull_last_good(store, root, app)  # a local copy restored without results (a CI cache)
        pulled.releases += max(len(have), known.get("summary") or 0)
        if app in (apps or ()) and (root / app).is_dir():  # a release about to start: is one owed?
            pending = [p.name for p in sealed_releases(root / app) if p.name not in have]
            if pending:
                pulled.pending[app] = pending
    write_state(root, state)
    return pulled


def _pull_summary(store: Store, root: Path, app: str, raw_head: tuple[bytes, str], pulled: Pulled) -> set[str] | None:
    """The app's summary into this copy when it describes the store's chain head, or an earlier
    head of it that a few manifests (up to SUMMARY_WALK, read back from the head) bring up to
    date; checked against the signed head and count (summary.summary_for_head). Returns the
    releases whose manifests it read (written here too), or None: the caller reads each manifest."""
    found = store.get(summary_key(app))
    if found is None:
        return None
    read: dict[str, bytes] = {}

    def fetch(release_id: str) -> bytes | None:
        got = store.get(f"{app}/{release_id}/{MANIFEST}")
        if got is not None:
            read[release_id] = got[0]
        return got[0] if got else None

    data = summary_for_head(app, _parse_head(raw_head)[1], found[0], fetch, limit=SUMMARY_WALK)
    if data is None:
        return None
    for release_id, manifest in read.items():
        _write_local(root / app / release_id / MANIFEST, manifest)
    pulled.manifests += len(read)
    _write_local(root / app / SUMMARY, data)
    _write_local(root / app / CHECKPOINT, raw_head[0])
    return set(read)


def chain_from(head_id: str | None, manifests: dict[str, bytes], known: set[str]) -> list[str]:
    """The releases of the chain that ends at the head, back to one already known (or the first):
    followed by each manifest's previous_release_id. A release in the store that the chain does not
    reach (uploaded by a runner that then lost the head to another, or one not finished) is not
    part of the archive."""
    chain, current = [], head_id
    while current and current not in known and current in manifests and current not in chain:
        chain.append(current)
        try:
            current = json.loads(manifests[current]).get("previous_release_id")
        except (ValueError, AttributeError):
            break  # a damaged manifest: verify says so; the chain read stops here
    return chain


def set_aside_unchained(root: Path) -> list[str]:
    """In a full copy of the store (verify's), move release folders that no app's chain head
    reaches to NOT_APPENDED: they were never appended. Returns "app/id" of each."""
    aside = []
    for app_dir in sorted(p for p in Path(root).iterdir() if p.is_dir() and not p.name.startswith((".", "_"))):
        try:
            head_id = json.loads((app_dir / CHECKPOINT).read_bytes()).get("head_release_id")
        except (OSError, ValueError, AttributeError):
            continue  # no readable head: verify reports it, and checks every folder
        manifests = {
            p.name: (p / MANIFEST).read_bytes() for p in app_dir.iterdir() if p.is_dir() and (p / MANIFEST).is_file()
        }
        chained = set(chain_from(head_id, manifests, set()))
        for rid in sorted(set(manifests) - chained):
            target = Path(root) / NOT_APPENDED / app_dir.name / rid
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(app_dir / rid, target)
            aside.append(f"{app_dir.name}/{rid}")
    return aside


def _pull_last_good(store: Store, root: Path, app: str, *, look_back: int = 200) -> None:
    """results/ of the newest released release per target: what a rollback compares secrets
    with and what the report's 'changes since the last good release' reads."""
    targets_done: set[str] = set()
    for folder in reversed(sealed_releases(root / app)[-look_back:]):
        try:
            manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        target = manifest.get("target")
        if manifest.get("outcome") != "released" or target in targets_done:
            continue
        targets_done.add(target)
        if not (folder / "results").is_dir():
            objects = list(store.list(f"{app}/{folder.name}/results/"))
            for obj, found in zip(objects, _parallel(lambda o: store.get(o.key), objects), strict=True):
                if found is not None:
                    _write_local(root / obj.key, found[0])


def pull_release(store: Store, root: Path, app: str, release_id: str) -> int:
    """Every object of one release into the local copy (`runbook watch` of a release this runner
    did not make: a CI runner's copy holds manifests only). Returns the number of objects."""
    objects = list(store.list(f"{app}/{release_id}/"))
    for obj, found in zip(objects, _parallel(lambda o: store.get(o.key), objects), strict=True):
        if found is not None:
            _write_local(Path(root) / obj.key, found[0])
    return len(objects)


def pull_all(store: Store, dest: Path, *, retentions: dict | None = None) -> int:
    """Every object of the store into `dest` (for verify: exactly what the store holds). Returns
    the number of objects. retentions: filled with {key: ObjectRetention or None}, as each read
    reported it (archive/retention.py)."""
    dest = Path(dest)
    objects = [o for o in store.list("") if not o.key.endswith(LOCK_NAME) and "/" in o.key]

    def fetch(obj) -> None:
        found = store.get_retained(obj.key) if retentions is not None else store.get(obj.key)
        if found is not None:
            _write_local(dest / obj.key, found[0])
            if retentions is not None:
                retentions[obj.key] = found[2]

    _parallel(fetch, objects)
    return len(objects)


# -- writing ------------------------------------------------------------------------------------


class HeadMoved(StoreConflict):
    """The app's chain head in the store is not the release this one links to: another runner
    appended first. `holder` is the head's release id."""

    def __init__(self, message: str, *, key: str, holder: str | None) -> None:
        self.holder = holder
        super().__init__(message, key=key)


def release_objects(folder: Path) -> list[Path]:
    """The release's files in upload order: the signatures and the manifest last."""
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.endswith(".tmp"))
    last = {name: i for i, name in enumerate(LAST_OBJECTS)}
    return sorted(files, key=lambda p: (p.parent == folder and p.name in last, last.get(p.name, -1)))


def upload_release(store: Store, root: Path, app: str, release_id: str) -> int:
    """Every object of a sealed release, create-only (with retention when configured); an object
    already there with the same bytes (a push resumed) is fine, with other bytes it is refused.
    The manifest goes last. Returns the number of objects written."""
    folder = Path(root) / app / release_id
    if not (folder / MANIFEST).is_file():
        raise StoreError(f"release {release_id} of {app} is not sealed here ({folder}): nothing to upload")
    files = release_objects(folder)
    first = [p for p in files if not (p.parent == folder and p.name in LAST_OBJECTS)]
    written = _parallel(lambda p: _put_sealed(store, root, p), first)
    written += [_put_sealed(store, root, p) for p in files[len(first) :]]
    return sum(written)


def _put_sealed(store: Store, root: Path, path: Path) -> int:
    key = path.relative_to(root).as_posix()
    data = path.read_bytes()
    try:
        store.put(key, data, create_only=True, retain=True)
        return 1
    except StoreConflict:
        found = store.get(key)
        if found is not None and found[0] == data:
            return 0  # written by an earlier push of this release
        raise StoreConflict(
            f"{store.key_url(key)} exists with other content: sealed objects are never overwritten", key=key
        ) from None


def advance_head(store: Store, root: Path, app: str, release_id: str, *, expected: str | None = ...) -> dict:
    """Replace the app's chain head in the store with this release's checkpoint, if the head is
    still the release this one links to (If-Match on its ETag; create-only for a first release).
    expected: the head ETag read before the release (... : whatever it is now). Returns the checkpoint."""
    folder = Path(root) / app
    checkpoint_bytes = (folder / CHECKPOINT).read_bytes()
    checkpoint = json.loads(checkpoint_bytes)
    if checkpoint.get("head_release_id") != release_id:
        raise StoreError(
            f"{folder / CHECKPOINT} names {checkpoint.get('head_release_id')}, not {release_id}: "
            "only the newest release of an app can advance its head",
            key=head_key(app),
        )
    manifest = json.loads((folder / release_id / MANIFEST).read_text(encoding="utf-8"))
    links_to = manifest.get("previous_release_id")
    head = read_head(store, app)
    current = head[1].get("head_release_id") if head else None
    if current == release_id:
        return head[1]  # advanced by an earlier push of this release
    if current != links_to or (expected is not ... and (head[0] if head else None) != expected):
        raise HeadMoved(
            f"{app}: the store's chain head is release {current} ({_head_text(head)}); release {release_id} "
            f"links to {links_to}: another runner appended to the chain first",
            key=head_key(app),
            holder=current,
        )
    try:
        if head is None:
            store.put(head_key(app), checkpoint_bytes, create_only=True)
        else:
            store.put(head_key(app), checkpoint_bytes, if_match=head[0])
    except StoreConflict:
        now = read_head(store, app)
        holder = now[1].get("head_release_id") if now else None
        raise HeadMoved(
            f"{app}: the store's chain head moved to release {holder} ({_head_text(now)}) while release "
            f"{release_id} was uploaded: another runner appended to the chain first",
            key=head_key(app),
            holder=holder,
        ) from None
    return checkpoint


def _head_text(head: tuple[str, dict] | None) -> str:
    if not head:
        return "no release yet"
    return f"{head[1].get('releases', '?')} release(s), written {head[1].get('written_at', '?')}"


def write_summary(store: Store, root: Path, app: str, release_id: str, *, attempts: int = 3) -> bool:
    """Replace the app's summary (archive/summary.py) with that of the chain ending at this
    release, right after this release became the head. True when written.

    Why after the head and not before: a summary is only used when it matches the head, so the
    head's conditional write stays the one commit point. Written before, a runner that then lost
    the head would leave a summary of a chain that never was. The rule that keeps it consistent:
    only the runner whose release is the head at that moment replaces the summary, If-Match the
    summary it read before checking the head. A runner overtaken by a later release (the head
    moved on) stops; one whose If-Match fails reads both again. So the last summary written is
    always the current head's, whatever the interleaving; between the head's write and the
    summary's, or when a runner dies there, readers find a summary of an earlier head and read
    each manifest instead (slower, never wrong), until the next release or `runbook archive
    push` of this one writes it."""
    key = summary_key(app)
    for _ in range(attempts):
        found = store.get(key)
        head = read_head(store, app)
        if not head or head[1].get("head_release_id") != release_id:
            return False  # a later release is the head: its runner writes the summary
        data = summary_for_head(app, head[1], found[0] if found else None, local_manifest(Path(root) / app))
        if data is None:
            return False  # this copy does not hold the whole chain: readers read each manifest
        try:
            if found is None:
                store.put(key, data, create_only=True)
            else:
                store.put(key, data, if_match=found[1])
            return True
        except StoreConflict:
            continue
    return False


def push_release(store: Store, root: Path, app: str, release_id: str, *, expected: str | None = ...) -> dict:
    """Upload a sealed release, then advance its app's head, then its summary: `runbook archive
    push` and the runner's last step. Returns the head's checkpoint. A summary that cannot be
    written fails nothing: readers then read each manifest."""
    upload_release(store, root, app, release_id)
    checkpoint = advance_head(store, root, app, release_id, expected=expected)
    try:
        write_summary(store, root, app, release_id)
    except StoreError:
        pass
    state = read_state(root, store.url)
    known = state["apps"].setdefault(app, {"head_etag": None, "releases": []})
    known["releases"] = sorted({*known["releases"], release_id})
    write_state(root, state)
    return checkpoint


def upload_index(store: Store, root: Path) -> None:
    """The archive index's pages, replaced (they are rebuilt from the catalog, never sealed)."""
    for name in INDEX_FILES:
        path = Path(root) / name
        if path.is_file():
            store.put(name, path.read_bytes())


def publish_index(store: Store, root: Path, rebuild, *, attempts: int = 5, force: bool = False):
    """Rebuild the index from the store's catalog and replace the store's copy, If-Match the copy
    read before the pull: a runner whose head advanced after that pull uploads after it, so the
    last index written counts every release (a lost race pulls and rebuilds again, bounded).
    No head moved and the store's page the one this copy wrote last: nothing to do.
    rebuild(root) -> the IndexBuild. Returns it, or None when nothing was to do."""
    root = Path(root)
    for _ in range(attempts):
        before = store.etag(INDEX_FILES[0])
        pulled = pull_catalog(store, root)
        state = read_state(root, store.url)
        heads = {app: head[0] for app, head in pulled.heads.items()}
        # Current: the store's page is the one this copy wrote, from these very heads.
        current = before and before == state.get("index_etag") and heads == state.get("index_heads")
        if current and (root / INDEX_FILES[0]).is_file() and not force:
            return None
        build = rebuild(root)
        try:
            for name in INDEX_FILES[1:]:
                if (root / name).is_file():
                    store.put(name, (root / name).read_bytes())
            page = (root / INDEX_FILES[0]).read_bytes()
            if before is None:
                etag = store.put(INDEX_FILES[0], page, create_only=True)
            else:
                etag = store.put(INDEX_FILES[0], page, if_match=before)
        except StoreConflict:
            continue  # another runner wrote it since: pull what it added, rebuild
        write_state(root, {**read_state(root, store.url), "index_etag": etag, "index_heads": heads})
        return build
    raise StoreError(f"{store.key_url(INDEX_FILES[0])}: replaced by other runners {attempts} times in a row")


# -- the runner's hooks (runner.py) ------------------------------------------------------------


def archive_store(settings, outputs: Path, flag: str | None = None) -> Store | None:
    """The store a release archives to: --archive, $HOTDASH_ARCHIVE or [archive] url (settings:
    config.ArchiveSettings); None for the local folder (today's archive, nothing to upload)."""
    from .store import Retention, archive_url, open_store

    url = archive_url(settings.url, flag)
    if not url:
        return None
    retention = Retention(settings.retention_days, settings.retention_mode) if settings.retention_days else None
    return open_store(url, outputs, retention=retention)


def before_release(record, progress) -> None:
    """With the lock held, before anything is written: the app's head and the catalog from the
    store. A release sealed here and not yet in the store would fork the chain: refused (exit 2)."""
    from ..errors import UsageError

    store, root = record.store, record.options.outputs
    app = record.config.environment("production").app
    pulled = pull_catalog(store, root, apps=[app])
    record.store_head = pulled.heads.get(app)
    head = record.store_head[1].get("head_release_id") if record.store_head else None
    for waiting in pulled.pending.get(app, ()):
        links_to = json.loads((root / app / waiting / MANIFEST).read_text(encoding="utf-8")).get("previous_release_id")
        if links_to == head:  # it can still be appended: it must be, before anything else
            raise UsageError(
                f"archive: release {waiting} of {app} is sealed in {root} but not in {store.url}; "
                f"run `runbook archive push {waiting}` first (a new release would fork the chain)"
            )
        # It lost its chain position to another runner (exit 6): it can never be appended. Kept
        # aside, where neither the chain link nor the catalog reads it.
        aside = root / NOT_APPENDED / app / waiting
        aside.parent.mkdir(parents=True, exist_ok=True)
        os.replace(root / app / waiting, aside)
        progress(f"archive store: release {waiting} of {app} lost its chain position; kept aside in {aside}")
    head = head or "none yet"
    progress(
        f"archive store: {store.url} ({pulled.releases} sealed release(s); head of {app}: {head}; "
        f"{pulled.manifests} new manifest(s) read)"
    )


def after_release(record, progress) -> None:
    """Upload the sealed release and advance the head; a failure is kept on the record (the
    exit code says so: 6 when another runner took the chain position, 7 when the store failed)."""
    store, root = record.store, record.options.outputs
    app = record.config.environment("production").app
    if not (record.release_dir / MANIFEST).is_file():
        return  # left unsealed (a secret was found): nothing may leave this machine
    expected = record.store_head[0] if record.store_head else None
    try:
        push_release(store, root, app, record.release_id, expected=expected)
    except HeadMoved as exc:
        record.store_failure = ("head", f"NOT APPENDED: {exc}; the release is kept in {record.release_dir}")
    except StoreError as exc:
        record.store_failure = (
            "upload",
            f"NOT STORED: {exc}; the release is kept in {record.release_dir}: "
            f"run `runbook archive push {record.release_id}`",
        )
    else:
        progress(f"  archive store: {store.key_url(app + '/' + record.release_id)}/ uploaded; head advanced")
        return
    progress(f"  archive store: {record.store_failure[1]}")
