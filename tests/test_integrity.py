"""`runbook verify` detects every kind of tampering with a real, signed archive: each file kind
(results/*.json, notebooks, section pages, report.html, manifest.json, SHA256SUMS, both
signatures, the checkpoint) changed, removed or added; damaged manifests; a forged history
signed by another key; releases or a whole app removed; manifests out of place. Each case is
one row of TAMPERING, checked through the real CLI on a copy of two real releases.

An auditor's standard tools (sha256sum, openssl, ssh-keygen) check the same release."""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from conftest import make_rehearsal, run_cli
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hotdash_release.archive.integrity import GENESIS, MANIFEST, sha256_file, verify_archive, verify_release
from hotdash_release.archive.signing import (
    CHECKPOINT,
    SIGNATURE,
    SSH_SIGNATURE,
    SUMS,
    Signer,
    allowed_signers_line,
    parse_sums,
    public_pem,
    rehearsal_key_path,
    sign_release,
    write_checkpoint,
)
from hotdash_release.plan import PLAN

APP = "hotdash-production"


@pytest.fixture(scope="module")
def archive_and_head(tmp_path_factory):
    """Two real releases of the same app, and the chain head the second one printed."""
    world = make_rehearsal(tmp_path_factory.mktemp("integrity"))
    runs = []
    try:
        for _ in range(2):
            done = world.release()
            assert done.returncode == 0, done.stdout + done.stderr
            runs.append(done)
    finally:
        world.platform().stop()
    return world.outputs, runs[-1].stdout


@pytest.fixture
def copy(archive_and_head, tmp_path):
    outputs, _ = archive_and_head
    target = tmp_path / "outputs"
    shutil.copytree(outputs, target)
    first, second = sorted(p for p in (target / APP).iterdir() if p.is_dir())
    return target, first, second


def verify(outputs, *args, extra_env=None):
    return run_cli("verify", *args, "--outputs", str(outputs), extra_env=extra_env)


def head_of(folder: Path) -> str:
    return f"{APP}:{sha256_file(folder / MANIFEST)}"


# -- tampering, as an adversary with disk access would --------------------------------------


def edit_json(path: Path, change) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data, indent=1))


def edit_text(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text, f"{old!r} not in {path.name}"
    path.write_text(text.replace(old, new, 1))


def flip_bit(path: Path, offset: int = 0, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


ATTACKER = Signer(Ed25519PrivateKey.generate(), "environment")


def forge_history(outputs: Path, first: Path, second: Path) -> None:
    """Rewrite every manifest (a different operator), every chain hash, SHA256SUMS, both
    signatures and the checkpoint, all consistent: signed by a key nobody trusts."""
    previous = GENESIS
    for folder in (first, second):
        manifest = json.loads((folder / MANIFEST).read_text())
        manifest.update(operator="mallory", previous_manifest_sha256=previous, signing_key=ATTACKER.key_id)
        (folder / MANIFEST).write_text(json.dumps(manifest))
        files = {**manifest["files"], MANIFEST: sha256_file(folder / MANIFEST)}
        sign_release(folder, files, ATTACKER)
        previous = sha256_file(folder / MANIFEST)
    write_checkpoint(
        outputs / APP, releases=2, head_release_id=second.name, head_sha256=previous, signer=ATTACKER, at="now"
    )


def rehash_sums(folder: Path) -> None:
    """Modify a page, then make SHA256SUMS and the manifest agree with it (only the signature can tell)."""
    edit_text(folder / "report.html", "RELEASED", "RELEASD")
    edit_json(folder / MANIFEST, lambda m: m["files"].update({"report.html": sha256_file(folder / "report.html")}))
    files = {**json.loads((folder / MANIFEST).read_text())["files"], MANIFEST: sha256_file(folder / MANIFEST)}
    (folder / SUMS).write_text("".join(f"{d}  {p}\n" for p, d in sorted(files.items())))


def resign_older_manifest(outputs: Path, first: Path, second: Path) -> None:
    """A holder of the trusted key edits an older release and signs it again: the newer
    release still links to the manifest as it was."""
    from hotdash_release.archive.signing import rehearsal_signer

    edit_json(first / MANIFEST, lambda m: m.update(operator="someone-else"))
    manifest = json.loads((first / MANIFEST).read_text())
    sign_release(first, {**manifest["files"], MANIFEST: sha256_file(first / MANIFEST)}, rehearsal_signer(create=False))


def first_results_file(folder: Path) -> Path:
    return sorted((folder / "results").glob("*.json"))[0]


def reorder_history(outputs: Path, first: Path, second: Path) -> None:
    """A holder of the trusted key moves the newest release's start before the one it follows,
    and signs it and the checkpoint again: every signature and hash agrees, only time runs back."""
    from hotdash_release.archive.signing import rehearsal_signer

    signer = rehearsal_signer(create=False)
    before = json.loads((first / MANIFEST).read_text())["started_at"]
    edit_json(second / MANIFEST, lambda m: m.update(started_at="2000-01-01T00:00:00+00:00"))
    assert "2000-01-01T00:00:00+00:00" < before
    manifest = json.loads((second / MANIFEST).read_text())
    sign_release(second, {**manifest["files"], MANIFEST: sha256_file(second / MANIFEST)}, signer)
    write_checkpoint(
        outputs / APP,
        releases=2,
        head_release_id=second.name,
        head_sha256=sha256_file(second / MANIFEST),
        signer=signer,
        at="now",
    )


def list_a_path_twice(folder: Path) -> None:
    """SHA256SUMS with one path on two lines, signed again by the trusted key."""
    from hotdash_release.archive.signing import rehearsal_signer, ssh_signature

    signer = rehearsal_signer(create=False)
    sums = (folder / SUMS).read_bytes()
    line = next(line for line in sums.splitlines(keepends=True) if line.endswith(b"  report.html\n"))
    sums += line
    (folder / SUMS).write_bytes(sums)
    (folder / SIGNATURE).write_bytes(signer.sign(sums))
    (folder / SSH_SIGNATURE).write_text(ssh_signature(signer, sums), encoding="ascii")


# (id, what the adversary does (outputs, first, second), extra verify args, expected finding)
TAMPERING = [
    (
        "results_json_modified",
        lambda o, f, s: edit_text(first_results_file(f), '"passed"', '"failed"'),
        (),
        "modified file results/",
    ),
    (
        "notebook_modified",
        lambda o, f, s: edit_text(s / "05-go_no_go.ipynb", "go_no_go", "go_no_gone"),
        (),
        "modified file 05-go_no_go.ipynb",
    ),
    (
        "section_page_modified",
        lambda o, f, s: edit_text(f / "03-deploy_staging.html", "</body>", "<p>fine</p></body>"),
        (),
        "modified file 03-deploy_staging.html",
    ),
    (
        "report_modified",
        lambda o, f, s: edit_text(f / "report.html", "RELEASED", "RELEASD"),
        (),
        "modified file report.html",
    ),
    (
        "newest_manifest_outcome_edited",
        lambda o, f, s: edit_json(s / MANIFEST, lambda m: m.update(outcome="rolled back")),
        (),
        ("manifest.json changed since it was signed", "checkpoint.json: the manifest of 2"),
    ),
    (
        "newest_manifest_operator_edited",
        lambda o, f, s: edit_json(s / MANIFEST, lambda m: m.update(operator="someone-else")),
        (),
        "manifest.json changed since it was signed",
    ),
    (
        "newest_manifest_exit_code_edited",
        lambda o, f, s: edit_json(s / MANIFEST, lambda m: m.update(exit_code=4)),
        (),
        "manifest.json changed since it was signed",
    ),
    ("manifest_bit_flipped", lambda o, f, s: flip_bit(s / MANIFEST), (), "manifest.json is not valid JSON"),
    (
        "manifest_not_utf8",
        lambda o, f, s: flip_bit(s / MANIFEST, offset=1, bit=7),
        (),
        "manifest.json is not valid JSON (UnicodeDecodeError)",
    ),
    ("manifest_is_empty_list", lambda o, f, s: (s / MANIFEST).write_text("[]"), (), "manifest.json is a list"),
    (
        "manifest_files_as_list",
        lambda o, f, s: edit_json(s / MANIFEST, lambda m: m.update(files=sorted(m["files"]))),
        (),
        "files must be an object of path -> sha256, got a list",
    ),
    (
        "manifest_wrong_type",
        lambda o, f, s: edit_json(f / MANIFEST, lambda m: m.update(exit_code="0")),
        (),
        "exit_code must be an integer, got a string",
    ),
    (
        "manifest_field_removed",
        lambda o, f, s: edit_json(f / MANIFEST, lambda m: m.pop("signing_key")),
        (),
        "manifest.json has no signing_key",
    ),
    (
        "manifest_added_under_results",
        lambda o, f, s: shutil.copy(f / MANIFEST, f / "results" / MANIFEST),
        (),
        "results/manifest.json: a manifest inside a release",
    ),
    (
        "manifest_added_at_app_level",
        lambda o, f, s: shutil.copy(f / MANIFEST, o / APP / MANIFEST),
        (),
        "a manifest outside a release folder",
    ),
    (
        "sums_line_edited",
        lambda o, f, s: edit_text(s / SUMS, "  report.html", "  report.htm"),
        (),
        "SHA256SUMS.sig: not a signature of SHA256SUMS",
    ),
    ("sums_rehashed_after_a_change", lambda o, f, s: rehash_sums(f), (), "SHA256SUMS.sig: not a signature"),
    (
        "sums_damaged",
        lambda o, f, s: (f / SUMS).write_text("not a checksum line\n"),
        (),
        ("SHA256SUMS.sig: not a signature", "SHA256SUMS is damaged: line 1 is not `<sha256>  <path>`"),
    ),
    ("sums_deleted", lambda o, f, s: (f / SUMS).unlink(), (), "no SHA256SUMS: the release is not signed"),
    ("signature_deleted", lambda o, f, s: (s / SIGNATURE).unlink(), (), "no SHA256SUMS.sig"),
    (
        "signature_bit_flipped",
        lambda o, f, s: flip_bit(s / SIGNATURE, offset=10),
        (),
        "SHA256SUMS.sig: not a signature",
    ),
    (
        "ssh_signature_changed",
        lambda o, f, s: edit_text(f / SSH_SIGNATURE, "\n-----END", "A\n-----END"),
        (),
        "SHA256SUMS.sshsig: not an SSH signature",
    ),
    ("ssh_signature_deleted", lambda o, f, s: (f / SSH_SIGNATURE).unlink(), (), "no SHA256SUMS.sshsig"),
    (
        "older_manifest_edited_and_signed_again",
        resign_older_manifest,
        (),
        "chain broken: the manifest of 2",
    ),
    (
        "forged_history_other_key",
        forge_history,
        (),
        (f"signed by key {ATTACKER.key_id}, which is not trusted", f"checkpoint.json signed by key {ATTACKER.key_id}"),
    ),
    ("newest_release_deleted", lambda o, f, s: shutil.rmtree(s), (), "as the newest release, and it is gone"),
    (
        "newest_release_and_checkpoint_deleted_with_pinned_head",
        lambda o, f, s: (shutil.rmtree(s), (o / APP / CHECKPOINT).unlink()),
        ("--expect-head", "PIN"),
        "is not in the chain: a release was removed or rewritten",
    ),
    ("checkpoint_deleted", lambda o, f, s: (o / APP / CHECKPOINT).unlink(), (), "no checkpoint.json"),
    (
        "checkpoint_count_edited",
        lambda o, f, s: edit_json(o / APP / CHECKPOINT, lambda c: c.update(releases=3)),
        (),
        "checkpoint.json: the signature does not match",
    ),
    ("checkpoint_is_a_list", lambda o, f, s: (o / APP / CHECKPOINT).write_text("[]"), (), "checkpoint.json is a list"),
    (
        "oldest_release_deleted",
        lambda o, f, s: shutil.rmtree(f),
        (),
        ("links to '", "checkpoint.json counts 2 release(s) up to"),
    ),
    (
        "release_copied_as_newer",
        lambda o, f, s: shutil.copytree(s, s.parent / "29991231T000000Z-000000"),
        (),
        ("manifest names release", "release 29991231T000000Z-000000 is newer than the checkpoint's head"),
    ),
    (
        "checkpoint_field_wrong_type",
        lambda o, f, s: edit_json(o / APP / CHECKPOINT, lambda c: c.update(releases="2")),
        (),
        "checkpoint.json: releases must be an integer, got a string",
    ),
    (
        "checkpoint_of_another_app",
        lambda o, f, s: edit_json(o / APP / CHECKPOINT, lambda c: c.update(app="hotdash-staging")),
        (),
        "checkpoint.json: the signature does not match",
    ),
    ("file_removed", lambda o, f, s: (s / "05-go_no_go.html").unlink(), (), "missing file 05-go_no_go.html"),
    (
        "file_added",
        lambda o, f, s: (f / "results" / "extra.json").write_text("{}"),
        (),
        "added file results/extra.json",
    ),
    (
        "page_planted",
        lambda o, f, s: (s / "99-fake.html").write_text("<html><body>all green</body></html>"),
        (),
        "added file 99-fake.html (not in the manifest)",
    ),
    (
        "history_reordered_and_signed_again",
        reorder_history,
        (),
        "history reordered: started 2000-01-01T00:00:00+00:00, before ",
    ),
    (
        "sums_lists_a_path_twice_signed_again",
        lambda o, f, s: list_a_path_twice(f),
        (),
        "SHA256SUMS is damaged: line ",
    ),
    (
        "release_folder_renamed",
        lambda o, f, s: f.rename(f.parent / ("20000101T000000Z-" + f.name.split("-")[1])),
        (),
        "manifest names release",
    ),
    (
        "app_folder_renamed",
        lambda o, f, s: (o / APP).rename(o / "hotdash-prod"),
        (),
        ("manifest names app", "checkpoint.json is app 'hotdash-production''s"),
    ),
    (
        "app_folder_renamed_expected_by_name",
        lambda o, f, s: (o / APP).rename(o / ".hotdash-production"),
        ("--expect-app", APP),
        f"{APP}: missing",
    ),
    (
        "app_folder_deleted_head_pinned",
        lambda o, f, s: shutil.rmtree(o / APP),
        ("--expect-head", "PIN"),
        f"{APP}: missing",
    ),
]


@pytest.mark.parametrize(("tamper", "args", "finding"), [t[1:] for t in TAMPERING], ids=[t[0] for t in TAMPERING])
def test_tampering_is_found(copy, tamper, args, finding):
    outputs, first, second = copy
    pin = head_of(second)
    args = tuple(pin if a == "PIN" else a for a in args)
    tamper(outputs, first, second)
    done = verify(outputs, *args)
    assert done.returncode == 1, done.stdout + done.stderr
    for expected in (finding,) if isinstance(finding, str) else finding:
        assert expected in done.stdout, done.stdout
    assert "Traceback" not in done.stdout + done.stderr
    assert all(line.startswith(("verify: FAILED: ", "  also: ")) for line in done.stdout.splitlines())


def test_every_table_argument_passes_on_the_untouched_archive(copy):
    """What fails in each case is the tampering, not the arguments verify was given."""
    outputs, _, second = copy
    for args in sorted({t[2] for t in TAMPERING}):
        args = tuple(head_of(second) if a == "PIN" else a for a in args)
        done = verify(outputs, *args)
        assert done.returncode == 0, (args, done.stdout)


def test_the_table_covers_every_file_kind_and_enough_cases():
    assert len(TAMPERING) >= 20
    kinds = " ".join(t[0] for t in TAMPERING)
    for kind in ("results_json", "notebook", "section_page", "report", "manifest", "sums", "signature", "checkpoint"):
        assert kind in kinds


@pytest.mark.parametrize("section", [s.key for s in PLAN])
def test_every_results_file_is_checked_not_only_the_first(copy, section):
    _, first, _ = copy
    results = first / "results" / f"{section}.json"
    flip_bit(results, offset=results.stat().st_size - 2)
    problems = [p.what for p in verify_release(first)]
    assert problems == [
        f"modified file results/{section}.json (sha256 differs from the manifest)",
        f"results/{section}.json was not recorded by this release (written by hand or changed)",  # the event log
    ]


def test_a_release_lists_a_results_file_for_every_section(copy):
    """What the test above goes through is every results file a released release has."""
    _, first, _ = copy
    assert sorted(p.stem for p in (first / "results").glob("*.json")) == sorted(s.key for s in PLAN)


def test_a_re_signed_history_that_goes_back_in_time_is_its_only_finding(copy):
    outputs, first, second = copy
    reorder_history(outputs, first, second)
    assert [str(p) for p in verify_archive(outputs).problems] == [
        f"{APP}/{second.name}: history reordered: started 2000-01-01T00:00:00+00:00, before {first.name} "
        f"({json.loads((first / MANIFEST).read_text())['started_at']})"
    ]


def test_a_sums_file_listing_a_path_twice_is_refused():
    digest = "a" * 64
    text = f"{digest}  report.html\n{'b' * 64}  manifest.json\n{digest}  report.html\n"
    with pytest.raises(ValueError, match=r"line 3 lists report\.html twice"):
        parse_sums(text)
    with pytest.raises(ValueError, match=r"line 2 lists report\.html twice"):
        parse_sums(f"{digest}  report.html\n{'c' * 64}  report.html\n")  # another digest the second time


# -- what an untouched archive proves, and with which key -----------------------------------


def test_an_untouched_archive_verifies_signed_chained_and_anchored(copy, archive_and_head):
    outputs, first, second = copy
    _, printed = archive_and_head
    pin = head_of(second)
    # The run printed the head to keep outside the archive, as --expect-head takes it.
    assert f"chain head: {pin} (2 release(s), signed by ed25519:" in printed
    assert f"runbook verify --expect-head {pin}" in printed
    done = verify(outputs, "--expect-head", pin, "--expect-app", APP)
    assert done.returncode == 0, done.stdout
    assert "ok: 2 release(s)" in done.stdout
    assert "this machine's rehearsal key (not in keys/trusted.toml)" in done.stdout
    assert f"pinned head found: {APP} at release {second.name} (2 of 2)" in done.stdout
    assert json.loads((first / MANIFEST).read_text())["previous_manifest_sha256"] == GENESIS
    link = json.loads((second / MANIFEST).read_text())
    assert link["previous_release_id"] == first.name
    assert link["previous_manifest_sha256"] == sha256_file(first / MANIFEST)
    checkpoint = json.loads((outputs / APP / CHECKPOINT).read_text())
    assert checkpoint["releases"] == 2 and checkpoint["head_release_id"] == second.name


def test_an_older_pinned_head_still_verifies_after_later_releases(copy):
    outputs, first, _ = copy
    done = verify(outputs, "--expect-head", head_of(first))
    assert done.returncode == 0 and f"at release {first.name} (1 of 2)" in done.stdout


def test_a_rehearsal_archive_elsewhere_needs_its_key_given(copy, tmp_path):
    """On another machine (no rehearsal key) the signatures are not trusted, until the
    rehearsal's public key is given with --trust-key."""
    outputs, _, _ = copy
    elsewhere = {"XDG_CONFIG_HOME": str(tmp_path / "other-machine")}
    done = verify(outputs, extra_env=elsewhere)
    assert done.returncode == 1 and "which is not trusted" in done.stdout
    public = rehearsal_key_path().with_name("rehearsal-signing-key.pub.pem")
    done = verify(outputs, "--trust-key", str(public), extra_env=elsewhere)
    assert done.returncode == 0 and f"given with --trust-key {public}" in done.stdout


@pytest.mark.parametrize("pin", ["hotdash-production", "hotdash-production:abc", ":" + "0" * 64, "x:" + "A" * 64])
def test_expect_head_must_be_app_and_sha256(copy, pin):
    outputs, _, _ = copy
    done = verify(outputs, "--expect-head", pin)
    assert done.returncode == 2 and "--expect-head" in done.stderr and len(done.stderr.splitlines()) == 1


def test_verify_archive_reports_every_problem_not_only_the_first(copy):
    outputs, first, second = copy
    (first / "report.html").write_text("x")
    edit_json(second / MANIFEST, lambda m: m.update(operator="x"))
    problems = [str(p) for p in verify_archive(outputs).problems]
    assert f"{APP}/{first.name}: modified file report.html (sha256 differs from the manifest)" in problems
    assert any(p.startswith(f"{APP}/{second.name}: manifest.json changed since it was signed") for p in problems)


def test_unsealed_release_is_reported(copy):
    outputs, first, _ = copy
    (first / MANIFEST).unlink()
    done = verify(outputs, first.name)
    assert done.returncode == 1 and "never sealed" in done.stdout


@pytest.mark.parametrize("release_id", ["../etc", "a/b", "20261125T190512Z-a1b2c", "..", "x" * 300])
def test_verify_rejects_malformed_release_ids(copy, release_id):
    done = verify(copy[0], release_id)
    assert done.returncode == 2 and "release id" in done.stderr and len(done.stderr.splitlines()) == 1


# -- an auditor without this tool ------------------------------------------------------------


def rehearsal_public_pem() -> Path:
    return rehearsal_key_path().with_name("rehearsal-signing-key.pub.pem")


def test_sha256sum_checks_a_release(copy):
    _, first, _ = copy
    done = subprocess.run(["sha256sum", "--strict", "-c", SUMS], cwd=first, capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "manifest.json: OK" in done.stdout and "report.html: OK" in done.stdout
    edit_text(first / "results" / first_results_file(first).name, '"passed"', '"failed"')
    done = subprocess.run(["sha256sum", "-c", SUMS], cwd=first, capture_output=True, text=True)
    assert done.returncode == 1 and "FAILED" in done.stdout


def test_openssl_checks_the_signature(copy):
    _, _, second = copy
    command = ["openssl", "pkeyutl", "-verify", "-pubin", "-inkey", str(rehearsal_public_pem()), "-rawin"]
    command += ["-in", SUMS, "-sigfile", SIGNATURE]
    done = subprocess.run(command, cwd=second, capture_output=True, text=True)
    assert done.returncode == 0 and "Signature Verified Successfully" in done.stdout, done.stdout + done.stderr
    edit_text(second / SUMS, "  report.html", "  report.htm")
    done = subprocess.run(command, cwd=second, capture_output=True, text=True)
    assert done.returncode != 0 and "Signature Verification Failure" in done.stdout + done.stderr


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="ssh-keygen is not installed")
def test_ssh_keygen_checks_the_signature(copy, tmp_path):
    from cryptography.hazmat.primitives import serialization

    _, first, _ = copy
    public = serialization.load_pem_public_key(rehearsal_public_pem().read_bytes())
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(allowed_signers_line(public) + "\n")
    command = ["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", "hotdash", "-n", "hotdash-release"]
    command += ["-s", SSH_SIGNATURE]
    done = subprocess.run(command, cwd=first, stdin=(first / SUMS).open("rb"), capture_output=True)
    assert done.returncode == 0, done.stdout + done.stderr
    assert b"Good" in done.stdout
    changed = (first / SUMS).read_bytes().replace(b"  report.html", b"  report.htm")
    done = subprocess.run(command, cwd=first, input=changed, capture_output=True)
    assert done.returncode != 0


def test_committed_trusted_keys_match_their_pem_files():
    """keys/trusted.toml's PEM copies (what openssl is given) are the keys verify trusts."""
    import tomllib

    from hotdash_release.archive.signing import TRUSTED_KEYS, committed_keys

    entries = tomllib.loads(TRUSTED_KEYS.read_text())["key"]
    keys = committed_keys()
    assert keys and len(keys) == len(entries)
    for entry, key in zip(entries, keys, strict=True):
        assert (TRUSTED_KEYS.parent / entry["pem"]).read_bytes() == public_pem(key.public_key)
        assert base64.b64decode(entry["public_key"]) and key.holder


def test_no_process_of_a_release_but_the_runner_holds_the_signing_key(tmp_path):
    """A key from $HOTDASH_SIGNING_KEY signs a rehearsal too; the runner takes it out of its
    environment before the kernel template starts, so no kernel, app or tool it starts can read
    it, not even in /proc/<pid>/environ (which a forked kernel shares with its template)."""
    import os
    import time

    import psutil
    from conftest import RUNBOOK_COMMAND
    from cryptography.hazmat.primitives import serialization

    key = Ed25519PrivateKey.generate()
    raw = key.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption())
    world = make_rehearsal(tmp_path)
    command = [*RUNBOOK_COMMAND, "release", "--config", str(world.config), "--outputs", str(world.outputs)]
    # The archive store's secret credential too (archive/store.py): taken out the same way.
    secret_names = {"HOTDASH_SIGNING_KEY", "AWS_SECRET_ACCESS_KEY"}
    env = {
        **os.environ,
        "HOTDASH_SIGNING_KEY": base64.b64encode(raw).decode(),
        "AWS_SECRET_ACCESS_KEY": "store-secret-ABCDEFGHIJKLMNOPQRSTUVWXYZ012345",
    }
    holders, seen = set(), set()
    runner = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.monotonic() + 240
        runner_cmdline = psutil.Process(runner.pid).cmdline()
        while runner.poll() is None and time.monotonic() < deadline:
            for child in psutil.Process(runner.pid).children(recursive=True):
                try:
                    if child.cmdline() == runner_cmdline:
                        # Forked and not yet exec'd (subprocess): /proc shows the runner's own
                        # first environment until the exec, which gets the scrubbed one.
                        continue
                    seen.add(child.pid)
                    if secret_names & set(child.environ()):
                        holders.add(" ".join(child.cmdline()[:4]))
                except psutil.Error:
                    continue  # ended meanwhile
            time.sleep(0.02)
        output = runner.communicate(timeout=60)[0]
    finally:
        runner.kill()
        world.platform().stop()
    assert runner.returncode == 0, output
    assert len(seen) >= 3 and not holders, holders
    folder = world.release_dirs()[-1]
    assert json.loads((folder / MANIFEST).read_text())["signing_key"] == Signer(key, "environment").key_id
    public = tmp_path / "key.pub.pem"
    public.write_bytes(public_pem(key.public_key()))
    done = verify(world.outputs, "--trust-key", str(public))
    assert done.returncode == 0 and "given with --trust-key" in done.stdout, done.stdout


def test_a_trusted_key_entry_whose_id_is_not_its_fingerprint_is_refused(tmp_path):
    from hotdash_release.archive.signing import TRUSTED_KEYS, committed_keys
    from hotdash_release.errors import UsageError

    wrong = tmp_path / "trusted.toml"
    wrong.write_text(TRUSTED_KEYS.read_text().replace('id = "ed25519:', 'id = "ed25519:0', 1))
    with pytest.raises(UsageError, match=r"key #1: id ed25519:0\w+ is not this key's fingerprint"):
        committed_keys(wrong)


def test_the_report_footer_gives_the_standard_tools_commands(copy):
    from cryptography.hazmat.primitives import serialization

    _, _, second = copy
    report = (second / "report.html").read_text()
    public = serialization.load_pem_public_key(rehearsal_public_pem().read_bytes())
    signing_key = json.loads((second / MANIFEST).read_text())["signing_key"]
    assert f"<h2>Checking this release</h2><p>Signed with key {signing_key}." in report
    for command in (
        "sha256sum -c SHA256SUMS",
        "openssl pkeyutl -verify -pubin -inkey KEY.pem -rawin -in SHA256SUMS -sigfile SHA256SUMS.sig",
        "ssh-keygen -Y verify -f allowed_signers -I hotdash -n hotdash-release -s SHA256SUMS.sshsig &lt; SHA256SUMS",
        allowed_signers_line(public).replace('"', "&quot;"),
    ):
        assert command in report, command
