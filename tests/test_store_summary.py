"""Each app's summary in the store (archive/summary.py, storesync.write_summary): a runner with
an empty folder builds the catalog from one object per app; a summary that does not describe the
chain head exactly is not used (each manifest is read, as before); the head's runner replaces it
only while its release is the head; and verify finds a summary that hides or misstates a release.
Against moto's S3 server on loopback (s3_world.py), with small signed releases (signed_releases.py)."""

from __future__ import annotations

import json
from itertools import count

import pytest
from conftest import run_cli
from s3_world import start_moto
from signed_releases import APP, release_ids, seal_signed, trust_key_file

from hotdash_release.archive.catalog import load_catalog
from hotdash_release.archive.integrity import chain_link
from hotdash_release.archive.store import S3Store
from hotdash_release.archive.storesync import advance_head, pull_catalog, push_release, upload_release, write_summary
from hotdash_release.archive.summary import summary_key

BUCKET = "summary-archive"
_prefixes = count()


@pytest.fixture(scope="module")
def moto():
    server = start_moto()
    server.bucket(BUCKET)
    yield server
    server.server.stop()


@pytest.fixture
def store(moto):
    return S3Store(BUCKET, f"s{next(_prefixes)}", client=moto.client())


class Counting:
    """The store, counting the objects read (by the last part of their key)."""

    def __init__(self, inner) -> None:
        self.inner, self.reads = inner, []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def get(self, key):
        self.reads.append(key.rsplit("/", 1)[-1])
        return self.inner.get(key)


def released(store, root, ids, *, outcomes=None) -> None:
    for i, rid in enumerate(ids):
        seal_signed(root, rid, outcome=(outcomes or {}).get(i, "released"))
        push_release(store, root, APP, rid)


def catalog_rows(root) -> list:
    return [r.to_json() for r in load_catalog(root, write_cache=False).releases]


def edit_summary(store, change) -> None:
    summary = json.loads(store.get(summary_key(APP))[0])
    change(summary)
    store.put(summary_key(APP), json.dumps(summary).encode())


def test_a_runner_with_an_empty_folder_reads_one_summary_per_app(store, tmp_path):
    """30 releases (two of them blocked): a fresh copy reads the head and the summary, no
    manifest, and its catalog is the one the runner that read every manifest has."""
    ids = release_ids(30)
    released(store, tmp_path / "runner", ids, outcomes={4: "blocked", 17: "blocked"})
    counting = Counting(store)
    pulled = pull_catalog(counting, tmp_path / "fresh")
    assert sorted(counting.reads) == ["checkpoint.json", "summary.json"]
    assert (pulled.summaries, pulled.manifests, pulled.releases) == (1, 0, 30)
    assert catalog_rows(tmp_path / "fresh") == catalog_rows(tmp_path / "runner")
    assert [r.outcome for r in load_catalog(tmp_path / "fresh").select(outcome="blocked")] == ["blocked"] * 2
    counting.reads.clear()
    assert pull_catalog(counting, tmp_path / "fresh").summaries == 0  # warm: the head only
    assert counting.reads == ["checkpoint.json"]


def test_a_summary_is_used_only_as_far_as_it_matches_the_signed_head(store, tmp_path):
    """None (removed): the reader reads every manifest. One of an earlier head (the writer died
    between the head and the summary): the reader reads the one manifest after it and its
    catalog is complete; `archive push` of that release writes the summary. One with a row taken
    out and the rest relinked (the signed count differs): not used, every manifest read. One
    whose rows do not link: its rows are not used; the reader rebuilds them from the manifests
    (up to SUMMARY_WALK of them, read back from the head). The catalog is complete each time."""
    runner = tmp_path / "runner"
    ids = release_ids(6)
    released(store, runner, ids[:5])

    def reader(name: str):
        counting = Counting(store)
        pulled = pull_catalog(counting, tmp_path / name)
        return pulled.summaries, counting.reads.count("manifest.json"), catalog_rows(tmp_path / name)

    store.delete(summary_key(APP))
    assert reader("none") == (0, 5, catalog_rows(runner))

    push_release(store, runner, APP, ids[4])  # `runbook archive push` of the head's release writes it again
    seal_signed(runner, ids[5])  # the sixth release: objects in, head advanced, then its runner died
    upload_release(store, runner, APP, ids[5])
    advance_head(store, runner, APP, ids[5])
    assert reader("stale") == (1, 1, catalog_rows(runner))
    push_release(store, runner, APP, ids[5])
    assert reader("repaired") == (1, 0, catalog_rows(runner))

    def drop_second(summary):
        del summary["rows"][1]
        summary["rows"][1][2:4] = summary["rows"][0][:2]

    edit_summary(store, drop_second)
    assert reader("dropped") == (0, 6, catalog_rows(runner))

    store.delete(summary_key(APP))
    push_release(store, runner, APP, ids[5])  # a valid one again
    edit_summary(store, lambda s: s["rows"][3].__setitem__(3, "f" * 64))
    assert reader("unlinked") == (1, 6, catalog_rows(runner))


def test_only_the_heads_runner_replaces_the_summary(store, tmp_path):
    """Runner a's release became the head, then a paused before writing the summary; runner b
    appended after it and wrote its own. When a resumes it finds the head moved on and leaves the
    summary alone; and when b's release overtakes a between a's read of the summary and its
    conditional write (If-Match), a's write is refused and a stops. Either way the summary in
    the store is the head's, and a fresh reader uses it."""
    a, b = tmp_path / "a", tmp_path / "b"
    ids = release_ids(4)
    released(store, a, ids[:1])
    seal_signed(a, ids[1])
    upload_release(store, a, APP, ids[1])
    advance_head(store, a, APP, ids[1])  # a is the head; its summary not written yet
    pull_catalog(store, b, apps=[APP])
    seal_signed(b, ids[2])
    push_release(store, b, APP, ids[2])
    assert write_summary(store, a, APP, ids[1]) is False
    pulled = pull_catalog(store, tmp_path / "reader-1")
    assert (pulled.summaries, pulled.releases) == (1, 3)

    pull_catalog(store, a, apps=[APP])
    seal_signed(b, ids[3])
    upload_release(store, b, APP, ids[3])
    advance_head(store, b, APP, ids[3])  # b's fourth release is the head, its summary not yet written

    class OvertakenAfterTheHeadRead:
        """The store as runner b sees it while it writes the summary, with runner a's release
        appended right after b read the head: the interleaving only If-Match catches."""

        def __init__(self, inner, then) -> None:
            self.inner, self.then = inner, then

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def get(self, key):
            found = self.inner.get(key)
            if key.endswith("checkpoint.json") and self.then:
                then, self.then = self.then, None
                then()
            return found

    later = release_ids(1, day=2)[0]

    def a_appends() -> None:
        pull_catalog(store, a, apps=[APP])
        seal_signed(a, later)
        push_release(store, a, APP, later)

    assert write_summary(OvertakenAfterTheHeadRead(store, a_appends), b, APP, ids[3]) is False
    assert json.loads(store.get(summary_key(APP))[0])["head_release_id"] == later
    pulled = pull_catalog(store, tmp_path / "reader-2")
    assert (pulled.summaries, pulled.releases) == (1, 5)


def test_a_release_after_a_summary_pull_reads_the_manifests_it_links_to(store, tmp_path):
    """A copy built from the summary holds no manifest; before a release of that app the pull
    brings them (the seal links to the newest and counts the chain), and the catalog is the same."""
    ids = release_ids(4)
    released(store, tmp_path / "runner", ids[:3])
    copy = tmp_path / "copy"
    assert pull_catalog(store, copy).summaries == 1
    assert not (copy / APP / ids[2]).exists()
    before = catalog_rows(copy)
    pulled = pull_catalog(store, copy, apps=[APP])
    assert pulled.manifests == 3
    assert chain_link(copy / APP, ids[3])["previous_release_id"] == ids[2]
    assert catalog_rows(copy) == before


def verify(moto, store, tmp_path):
    return run_cli(
        "verify",
        "--archive",
        store.url,
        "--outputs",
        str(tmp_path / "copy"),
        "--trust-key",
        str(trust_key_file(tmp_path)),
        extra_env=moto.env(),
    )


def test_verify_finds_a_summary_that_hides_or_misstates_a_release(moto, store, tmp_path):
    """A summary edited so that a reader still uses it (it matches the head, its rows link, its
    count is right) can show the index another history: one release replaced by a made-up id (so
    the index does not show it) and another's outcome changed. The reader takes it; verify, which
    reads every object, reports both, and passes the untouched store."""
    ids = release_ids(5)
    released(store, tmp_path / "runner", ids, outcomes={2: "blocked"})
    done = verify(moto, store, tmp_path / "clean")
    assert done.returncode == 0, done.stdout + done.stderr
    fake = release_ids(1, day=9)[0]

    def tamper(summary):
        rows = summary["rows"]
        rows[1][0] = fake
        rows[1][4][1] = fake
        rows[2][2] = fake
        rows[2][4][2] = "released"
        rows[3][4][2] = "rolled back"

    edit_summary(store, tamper)
    reader = tmp_path / "reader"
    assert pull_catalog(store, reader).summaries == 1
    shown = {r.release_id: r.outcome for r in load_catalog(reader).releases}
    assert ids[1] not in shown and shown[ids[2]] == "released"
    done = verify(moto, store, tmp_path / "tampered")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{APP}/summary.json: leaves out release {ids[1]}: an index read from the store would not show it" in (
        done.stdout
    )
    assert f"{APP}/summary.json: lists release {fake}, which is not in the chain" in done.stdout
    assert f"{APP}/summary.json: release {ids[2]}: its manifest's sha256 or link differs" in done.stdout
    assert f"{APP}/summary.json: release {ids[3]}: the summary's facts differ from its manifest" in done.stdout
