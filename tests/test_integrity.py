"""`runbook verify` detects every kind of tampering with a real archive: a modified,
missing or added file, a broken chain link, a reordered history."""

from __future__ import annotations

import json
import shutil

import pytest
from conftest import make_rehearsal, run_cli

from hotdash_release.archive.integrity import GENESIS, sha256_file, verify_archive


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    """Two real releases of the same app: the second links to the first."""
    world = make_rehearsal(tmp_path_factory.mktemp("integrity"))
    try:
        for _ in range(2):
            done = world.release()
            assert done.returncode == 0, done.stdout + done.stderr
    finally:
        world.platform().stop()
    return world.outputs


@pytest.fixture
def copy(archive, tmp_path):
    target = tmp_path / "outputs"
    shutil.copytree(archive, target)
    first, second = sorted((target / "hotdash-production").iterdir())
    return target, first, second


def verify(outputs, *release_id):
    return run_cli("verify", *release_id, "--outputs", str(outputs))


def test_an_untouched_archive_verifies_and_is_chained(copy):
    outputs, first, second = copy
    done = verify(outputs)
    assert done.returncode == 0 and "2 release(s)" in done.stdout
    assert json.loads((first / "manifest.json").read_text())["previous_manifest_sha256"] == GENESIS
    link = json.loads((second / "manifest.json").read_text())
    assert link["previous_release_id"] == first.name
    assert link["previous_manifest_sha256"] == sha256_file(first / "manifest.json")


def test_modified_file_is_detected(copy):
    outputs, first, _ = copy
    report = first / "report.html"
    report.write_text(report.read_text().replace("RELEASED", "RELEASD"))
    done = verify(outputs)
    assert done.returncode == 1 and "modified file report.html" in done.stdout


def test_missing_file_is_detected(copy):
    outputs, _, second = copy
    (second / "05-go_no_go.html").unlink()
    done = verify(outputs, second.name)
    assert done.returncode == 1 and "missing file 05-go_no_go.html" in done.stdout


def test_added_file_is_detected(copy):
    outputs, first, _ = copy
    (first / "results" / "extra.json").write_text("{}")
    done = verify(outputs)
    assert done.returncode == 1 and "added file results/extra.json" in done.stdout


def test_rewritten_manifest_breaks_the_chain(copy):
    """Editing a manifest (and re-hashing its files) cannot hide: the next release linked to it."""
    outputs, first, second = copy
    manifest = json.loads((first / "manifest.json").read_text())
    manifest["operator"] = "someone-else"
    (first / "manifest.json").write_text(json.dumps(manifest))
    checked, problems = verify_archive(outputs)
    assert checked == 2
    assert [str(p) for p in problems] == [
        f"hotdash-production/{second.name}: chain broken: the manifest of "
        f"{first.name} changed since this release linked to it"
    ]


def test_removed_release_breaks_the_chain(copy):
    outputs, first, _second = copy
    shutil.rmtree(first)
    done = verify(outputs)
    assert done.returncode == 1 and f"links to '{first.name}'" in done.stdout


def test_reordered_history_is_detected(copy):
    """Moving the newer release before the older one: ids, links and start times disagree."""
    outputs, first, second = copy
    earlier = first.parent / ("20000101T000000Z-" + second.name.split("-")[1])
    second.rename(earlier)
    done = verify(outputs)
    assert done.returncode == 1
    assert "manifest names release" in done.stdout or "chain broken" in done.stdout


def test_unsealed_release_is_reported(copy):
    outputs, first, _ = copy
    (first / "manifest.json").unlink()
    done = verify(outputs, first.name)
    assert done.returncode == 1 and "never sealed" in done.stdout


@pytest.mark.parametrize("release_id", ["../etc", "a/b", "20261125T190512Z-a1b2c", "..", "x" * 300])
def test_verify_rejects_malformed_release_ids(archive, release_id):
    done = verify(archive, release_id)
    assert done.returncode == 2 and "release id" in done.stderr and len(done.stderr.splitlines()) == 1
