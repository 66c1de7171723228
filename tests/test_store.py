"""The archive's store (archive/store.py, storesync.py; the store lock: test_leases.py) against a real S3
HTTP API on loopback (moto's server mode, started by this module) and the local folder store:
conditional writes, the chain head, the store lock, Object Lock retention, a store that fails
mid-upload, and the local cache of summaries. Releases here are small sealed folders written by
the test (the whole releases are in test_store_e2e.py)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from s3_world import SECRET_ACCESS_KEY, FaultyProxy, start_moto

from hotdash_release.archive.store import FolderStore, Retention, S3Store, open_store
from hotdash_release.archive.storesync import (
    HeadMoved,
    advance_head,
    pull_all,
    pull_catalog,
    push_release,
    read_head,
    upload_release,
)
from hotdash_release.errors import StoreConflict, StoreError, UsageError

APP = "hotdash-production"


@pytest.fixture(scope="module")
def moto():
    server = start_moto()
    server.bucket("plain-archive")
    server.bucket("locked-archive", object_lock=True)
    yield server
    server.server.stop()


_buckets = iter(range(1000))


@pytest.fixture
def s3(moto):
    """A fresh prefix of the plain bucket for each test."""
    return S3Store("plain-archive", f"t{next(_buckets)}", client=moto.client())


@pytest.fixture(params=["folder", "s3"])
def any_store(request, tmp_path, moto):
    if request.param == "folder":
        return FolderStore(tmp_path / "store")
    return S3Store("plain-archive", f"t{next(_buckets)}", client=moto.client())


def seal_fake(root: Path, release_id: str, *, previous: str | None, count: int, outcome: str = "released") -> Path:
    """A sealed release as the runner leaves it, small: files, manifest, signatures, checkpoint."""
    folder = root / APP / release_id
    (folder / "results").mkdir(parents=True)
    (folder / "report.html").write_text(f"<p>{release_id}</p>")
    (folder / "results" / "verify_secrets.json").write_text(json.dumps({"release": release_id}))
    started = datetime.strptime(release_id[:16], "%Y%m%dT%H%M%SZ").strftime("%Y-%m-%dT%H:%M:%SZ")
    manifest = {
        "release_id": release_id,
        "app": APP,
        "outcome": outcome,
        "target": "local",
        "started_at": started,
        "finished_at": started,
        "previous_release_id": previous,
        "sections": [],
    }
    (folder / "manifest.json").write_text(json.dumps(manifest))
    (folder / "SHA256SUMS").write_text(f"sums of {release_id}\n")
    (folder / "SHA256SUMS.sig").write_bytes(b"sig")
    (folder / "SHA256SUMS.sshsig").write_bytes(b"sshsig")
    checkpoint = {"app": APP, "head_release_id": release_id, "releases": count, "written_at": started}
    (root / APP / "checkpoint.json").write_text(json.dumps(checkpoint))
    return folder


IDS = [f"2026112{i}T100000Z-00000{i}" for i in range(1, 8)]


def test_create_only_and_if_match_hold_in_both_stores(any_store):
    etag = any_store.put("a/object", b"one", create_only=True)
    with pytest.raises(StoreConflict):
        any_store.put("a/object", b"two", create_only=True)
    with pytest.raises(StoreConflict):
        any_store.put("a/object", b"two", if_match="0" * 32)
    assert any_store.get("a/object") == (b"one", etag)
    new = any_store.put("a/object", b"two", if_match=etag)
    with pytest.raises(StoreConflict):
        any_store.delete("a/object", if_match=etag)
    any_store.delete("a/object", if_match=new)
    assert any_store.get("a/object") is None


def test_the_head_advances_only_from_the_release_it_links_to(any_store, tmp_path):
    """Two runners read the same head, both seal the next release: one appends, the other is
    refused naming the release that holds the position; the store's chain never forks."""
    a, b = tmp_path / "runner-a", tmp_path / "runner-b"
    seal_fake(a, IDS[0], previous=None, count=1)
    push_release(any_store, a, APP, IDS[0], expected=None)
    pull_catalog(any_store, b)
    head = read_head(any_store, APP)
    seal_fake(a, IDS[1], previous=IDS[0], count=2)
    seal_fake(b, IDS[2], previous=IDS[0], count=2)
    push_release(any_store, a, APP, IDS[1], expected=head[0])
    with pytest.raises(HeadMoved) as lost:
        push_release(any_store, b, APP, IDS[2], expected=head[0])
    assert lost.value.holder == IDS[1]
    assert f"chain head is release {IDS[1]}" in str(lost.value)
    assert read_head(any_store, APP)[1]["head_release_id"] == IDS[1]
    # The loser's objects went in before its head write failed: readers leave them out of the chain.
    from hotdash_release.archive.storesync import set_aside_unchained

    assert f"{APP}/{IDS[2]}/manifest.json" in [o.key for o in any_store.list(APP)]
    assert pull_catalog(any_store, tmp_path / "reader").releases == 2
    assert not (tmp_path / "reader" / APP / IDS[2]).exists()
    pull_all(any_store, tmp_path / "mirror")
    assert set_aside_unchained(tmp_path / "mirror") == [f"{APP}/{IDS[2]}"]
    assert sorted(p.name for p in (tmp_path / "mirror" / APP).iterdir() if p.is_dir()) == IDS[:2]


def test_a_lost_race_at_the_conditional_write_itself_is_refused(any_store, tmp_path):
    """Both pass the check of the head; the If-Match write decides (the guard at the change)."""
    a = tmp_path / "a"
    seal_fake(a, IDS[0], previous=None, count=1)
    push_release(any_store, a, APP, IDS[0])
    stale = read_head(any_store, APP)[0]
    any_store.put(f"{APP}/checkpoint.json", b'{"head_release_id": "' + IDS[0].encode() + b'", "x": 1}', if_match=stale)
    seal_fake(a, IDS[1], previous=IDS[0], count=2)
    upload_release(any_store, a, APP, IDS[1])
    with pytest.raises(HeadMoved):
        advance_head(any_store, a, APP, IDS[1], expected=stale)


class HeadReadThen:
    """The store as one runner sees it, while another runner appends right after this one read
    the head: the interleaving that only the conditional write itself can catch."""

    def __init__(self, inner, after_head_read) -> None:
        self.inner, self.after_head_read = inner, after_head_read

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def get(self, key):
        found = self.inner.get(key)
        if key.endswith("checkpoint.json") and self.after_head_read:
            then, self.after_head_read = self.after_head_read, None
            then()
        return found


def two_runners_on_the_first_release(store, tmp_path: Path) -> tuple[Path, Path]:
    """Runner a pushed the first release and runner b pulled it; each has sealed a second one
    on top of it, not pushed yet."""
    a, b = tmp_path / "a", tmp_path / "b"
    seal_fake(a, IDS[0], previous=None, count=1)
    push_release(store, a, APP, IDS[0])
    pull_catalog(store, b)
    seal_fake(a, IDS[1], previous=IDS[0], count=2)
    seal_fake(b, IDS[2], previous=IDS[0], count=2)
    return a, b


def test_the_if_match_write_refuses_a_head_that_moved_after_it_was_read(any_store, tmp_path):
    a, b = two_runners_on_the_first_release(any_store, tmp_path)
    racing = HeadReadThen(any_store, lambda: push_release(any_store, a, APP, IDS[1]))
    with pytest.raises(HeadMoved, match=f"moved to release {IDS[1]}"):
        push_release(racing, b, APP, IDS[2])
    assert read_head(any_store, APP)[1]["head_release_id"] == IDS[1]


def test_sealed_objects_are_never_overwritten_and_a_push_resumes(s3, tmp_path):
    root = tmp_path / "r"
    folder = seal_fake(root, IDS[0], previous=None, count=1)
    assert upload_release(s3, root, APP, IDS[0]) == 6
    assert upload_release(s3, root, APP, IDS[0]) == 0  # all there with the same bytes
    (folder / "report.html").write_text("rewritten")
    with pytest.raises(StoreConflict, match="never overwritten"):
        upload_release(s3, root, APP, IDS[0])
    assert s3.get(f"{APP}/{IDS[0]}/report.html")[0] == f"<p>{IDS[0]}</p>".encode()


def test_a_fresh_runner_reads_manifests_heads_and_the_last_good_results_then_only_what_is_new(s3, tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    for i in range(3):
        seal_fake(
            a, IDS[i], previous=IDS[i - 1] if i else None, count=i + 1, outcome="blocked" if i == 2 else "released"
        )
        push_release(s3, a, APP, IDS[i])
    pulled = pull_catalog(s3, b)
    assert (pulled.manifests, pulled.releases) == (3, 3)
    assert sorted(p.name for p in (b / APP).iterdir() if p.is_dir()) == IDS[:3]
    assert (b / APP / IDS[1] / "results" / "verify_secrets.json").is_file()  # the last good one
    assert not (b / APP / IDS[0] / "results").exists()
    assert not (b / APP / IDS[0] / "report.html").exists()  # pages stay in the store
    assert json.loads((b / APP / "checkpoint.json").read_text())["head_release_id"] == IDS[2]
    assert pull_catalog(s3, b).manifests == 0  # warm: one head per app, nothing else
    seal_fake(a, IDS[3], previous=IDS[2], count=4)
    push_release(s3, a, APP, IDS[3])
    assert pull_catalog(s3, b).manifests == 1


def test_a_half_uploaded_release_is_not_part_of_the_archive(moto, tmp_path):
    """The store fails mid-upload (an injected 503 on SHA256SUMS, after the pages went in): the
    manifest (last) and the head are not written, a reader sees no such release, and a later
    push completes it: every object, the head advanced, readable by another runner."""
    proxy = FaultyProxy(moto.endpoint)
    try:
        broken = S3Store("plain-archive", f"t{next(_buckets)}", client=moto.client(proxy.endpoint))
        good = S3Store("plain-archive", broken.prefix, client=moto.client())
        root = tmp_path / "runner"
        seal_fake(root, IDS[0], previous=None, count=1)
        proxy.fail_puts = ("SHA256SUMS",)
        with pytest.raises(StoreError, match="SlowDown"):
            push_release(broken, root, APP, IDS[0], expected=None)
        assert proxy.refused
        keys = [o.key for o in good.list()]
        assert f"{APP}/{IDS[0]}/report.html" in keys and f"{APP}/{IDS[0]}/manifest.json" not in keys
        assert read_head(good, APP) is None
        assert pull_catalog(good, tmp_path / "reader").releases == 0
        assert pull_catalog(good, root, apps=[APP]).pending == {APP: [IDS[0]]}  # the runner knows what is owed
        push_release(good, root, APP, IDS[0])
        assert read_head(good, APP)[1]["head_release_id"] == IDS[0]
        assert pull_catalog(good, tmp_path / "reader").releases == 1
    finally:
        proxy.close()


def test_object_lock_retention_on_every_sealed_object_and_a_delete_is_refused(moto, tmp_path):
    """In a bucket with Object Lock each sealed object gets a retention date; deleting its version
    is refused (AccessDenied), in governance mode too without the bypass permission. The head
    and the lock are replaced and removed: they get none."""
    from botocore.exceptions import ClientError

    client = moto.client()
    store = S3Store("locked-archive", f"t{next(_buckets)}", retention=Retention(30, "governance"), client=client)
    root = tmp_path / "r"
    seal_fake(root, IDS[0], previous=None, count=1)
    push_release(store, root, APP, IDS[0])
    key = f"{store.prefix}/{APP}/{IDS[0]}/manifest.json"
    head = client.head_object(Bucket="locked-archive", Key=key)
    assert head["ObjectLockMode"] == "GOVERNANCE"
    assert head["ObjectLockRetainUntilDate"] > datetime.now(UTC) + timedelta(days=29)
    for sealed in moto.keys("locked-archive", f"{store.prefix}/{APP}/{IDS[0]}/"):
        assert client.head_object(Bucket="locked-archive", Key=sealed).get("ObjectLockMode") == "GOVERNANCE"
    assert "ObjectLockMode" not in client.head_object(
        Bucket="locked-archive", Key=f"{store.prefix}/{APP}/checkpoint.json"
    )
    with pytest.raises(ClientError, match="AccessDenied"):
        client.delete_object(Bucket="locked-archive", Key=key, VersionId=head["VersionId"])
    with pytest.raises(StoreConflict):  # and the runner's own writes never overwrite it
        store.put(f"{APP}/{IDS[0]}/manifest.json", b"{}", create_only=True)
    assert client.get_object(Bucket="locked-archive", Key=key, VersionId=head["VersionId"])["Body"].read()


def test_compliance_mode_refuses_even_a_governance_bypass(moto, tmp_path):
    from botocore.exceptions import ClientError

    client = moto.client()
    store = S3Store("locked-archive", f"t{next(_buckets)}", retention=Retention(1, "compliance"), client=client)
    store.put("x/sealed", b"kept", create_only=True, retain=True)
    version = client.head_object(Bucket="locked-archive", Key=f"{store.prefix}/x/sealed")["VersionId"]
    with pytest.raises(ClientError, match="AccessDenied"):
        client.delete_object(
            Bucket="locked-archive", Key=f"{store.prefix}/x/sealed", VersionId=version, BypassGovernanceRetention=True
        )


def test_pull_all_mirrors_exactly_the_store(s3, tmp_path):
    root = tmp_path / "r"
    seal_fake(root, IDS[0], previous=None, count=1)
    push_release(s3, root, APP, IDS[0])
    assert pull_all(s3, tmp_path / "mirror") == 7  # six files and the head
    assert (tmp_path / "mirror" / APP / IDS[0] / "report.html").read_text() == f"<p>{IDS[0]}</p>"


def test_archive_addresses_are_validated_naming_the_field(tmp_path, monkeypatch):
    from conftest import write_config

    from hotdash_release.config import load_config
    from hotdash_release.errors import ConfigError

    with pytest.raises(UsageError, match=r"^archive: 'http://x' is not allowed; allowed: s3://BUCKET"):
        open_store("http://x", tmp_path)
    config = write_config(tmp_path / "c", state_dir=tmp_path / "s")
    config.write_text(config.read_text() + '\n[archive]\nurl = "s3://Bad_Bucket"\n')
    with pytest.raises(ConfigError, match=r"archive\.url: 's3://Bad_Bucket' is not allowed; allowed: s3://BUCKET"):
        load_config(config)
    config.write_text(config.read_text().replace("s3://Bad_Bucket", "s3://good-bucket/pre") + "retention_days = 0\n")
    with pytest.raises(ConfigError, match=r"archive\.retention_days: must be a positive number of days, got 0"):
        load_config(config)
    config.write_text(config.read_text().replace("retention_days = 0", 'retention_mode = "forever"'))
    with pytest.raises(ConfigError, match=r"archive\.retention_mode: 'forever' is not allowed; allowed: governance"):
        load_config(config)
    from hotdash_release.archive.store import archive_url

    monkeypatch.setenv("HOTDASH_ARCHIVE", "s3:/nope")
    with pytest.raises(UsageError, match=r"^HOTDASH_ARCHIVE: 's3:/nope' is not allowed"):
        archive_url("s3://good-bucket")


def test_the_store_secret_is_taken_from_the_environment_and_redacted(monkeypatch):
    from hotdash_release.archive import store
    from hotdash_release.config import load_config
    from hotdash_release.secrets.redact import find_secret_values
    from hotdash_release.secrets.required import EnvironmentSecrets, redactor_for

    monkeypatch.setattr(store, "_credentials", {})
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
    store.take_credentials_from_environment()
    import os

    assert "AWS_SECRET_ACCESS_KEY" not in os.environ
    redactor = redactor_for(load_config(), EnvironmentSecrets({}, environ={}))
    assert SECRET_ACCESS_KEY not in redactor.redact(f"key={SECRET_ACCESS_KEY}")
    assert find_secret_values(json.dumps({"k": SECRET_ACCESS_KEY}).encode(), redactor)


def fake_record(store, outputs: Path):
    from types import SimpleNamespace

    config = SimpleNamespace(environment=lambda name: SimpleNamespace(app=APP))
    return SimpleNamespace(store=store, options=SimpleNamespace(outputs=outputs), config=config, store_head=None)


def test_before_a_release_an_owed_upload_is_refused_and_a_lost_position_set_aside(s3, tmp_path):
    """A release sealed here whose upload failed must be pushed first (it still fits the chain);
    one that lost its position to another runner can never be appended: it is set aside, so
    the next release links to the store's head, not to it."""
    from hotdash_release.archive.storesync import NOT_APPENDED, before_release

    a, b = two_runners_on_the_first_release(s3, tmp_path)
    push_release(s3, a, APP, IDS[1])
    with pytest.raises(HeadMoved):
        push_release(s3, b, APP, IDS[2])
    lines = []
    record = fake_record(s3, b)
    before_release(record, lines.append)
    assert (b / NOT_APPENDED / APP / IDS[2] / "manifest.json").is_file() and not (b / APP / IDS[2]).exists()
    assert "lost its chain position" in lines[0]
    assert record.store_head[1]["head_release_id"] == IDS[1]
    from hotdash_release.archive.integrity import chain_link

    assert chain_link(b / APP, IDS[3])["previous_release_id"] == IDS[1]
    seal_fake(a, IDS[3], previous=IDS[1], count=3)  # sealed, upload failed
    with pytest.raises(UsageError, match=rf"run `runbook archive push {IDS[3]}` first"):
        before_release(fake_record(s3, a), lines.append)


def test_the_index_is_rebuilt_when_a_head_moved_and_only_then(s3, tmp_path):
    from hotdash_release.archive.index import rebuild_index
    from hotdash_release.archive.storesync import publish_index

    root = tmp_path / "runner"
    seal_fake(root, IDS[0], previous=None, count=1)
    push_release(s3, root, APP, IDS[0])
    assert publish_index(s3, root, rebuild_index).releases == 1
    assert publish_index(s3, root, rebuild_index) is None  # nothing new: the store's page is current
    seal_fake(root, IDS[1], previous=IDS[0], count=2)  # this runner's own next release
    push_release(s3, root, APP, IDS[1])
    assert publish_index(s3, root, rebuild_index).releases == 2
    s3.put("index.html", b"someone else's page")  # another runner wrote it: ours is not current
    assert publish_index(s3, root, rebuild_index).releases == 2
