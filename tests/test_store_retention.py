"""Retention that means what it says (issue 25): sealed objects go into the store in Object Lock's
compliance mode unless governance is asked for, and `runbook verify --archive` reports the bucket's
Object Lock and each sealed object's retention, flagging one with none, a weaker mode or a shorter
date. Against moto's S3 server on loopback (s3_world.py), a bucket of its own per test (a bucket's
default retention can only be set while it is empty, in moto).

What moto 5.2.6 enforces, probed here: deleting a locked version (AccessDenied), in compliance mode
even with BypassGovernanceRetention, and in governance mode without it; the bypass header removes a
governance version. What it does not: PutObjectRetention may shorten a compliance date or turn it
into governance (AWS refuses both: "a compliance mode retention can't be shortened or changed");
so moto cannot show that refusal, and these tests use that gap to stand for a store that was set up
otherwise, to show that verify flags the result. moto checks no credentials, so no IAM denial of
s3:BypassGovernanceRetention can be shown either: README says which permission to deny."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import count

import pytest
from botocore.exceptions import ClientError
from conftest import run_cli
from s3_world import start_moto
from signed_releases import APP, release_ids, seal_signed, trust_key_file

from hotdash_release.archive.store import Retention, S3Store
from hotdash_release.archive.storesync import archive_store, push_release
from hotdash_release.config import ArchiveSettings

_names = count()


@pytest.fixture(scope="module")
def moto():
    server = start_moto()
    yield server
    server.server.stop()


def locked_bucket(moto, *, default: tuple[str, int] | None = None) -> str:
    name = moto.bucket(f"retention-{next(_names)}", object_lock=True)
    if default:
        rule = {"DefaultRetention": {"Mode": default[0], "Days": default[1]}}
        moto.client().put_object_lock_configuration(
            Bucket=name, ObjectLockConfiguration={"ObjectLockEnabled": "Enabled", "Rule": rule}
        )
    return name


def configured_store(moto, bucket: str, settings: ArchiveSettings, tmp_path) -> S3Store:
    """The store as a runner opens it from `[archive]` (storesync.archive_store)."""
    store = archive_store(settings, tmp_path / "outputs", f"s3://{bucket}/archive")
    store.client = moto.client()
    return store


def sealed_into(store, tmp_path, n: int = 2) -> list[str]:
    root = tmp_path / "runner"
    ids = release_ids(n)
    for rid in ids:
        seal_signed(root, rid)
        push_release(store, root, APP, rid)
    return ids


def verify(moto, bucket: str, tmp_path, *, config_days: int | None = None, mode: str | None = None):
    env = moto.env()
    if config_days is not None:  # the runner's configuration, read by verify for the retention it promised
        from conftest import write_config

        config = write_config(tmp_path / "config", state_dir=tmp_path / "state")
        extra = f"\nretention_mode = {mode!r}".replace("'", '"') if mode else ""
        config.write_text(config.read_text() + f"\n[archive]\nretention_days = {config_days}{extra}\n")
        env["HOTDASH_CONFIG"] = str(config)
    return run_cli(
        "verify",
        "--archive",
        f"s3://{bucket}/archive",
        "--outputs",
        str(tmp_path / "copy"),
        "--trust-key",
        str(trust_key_file(tmp_path)),
        extra_env=env,
    )


def test_compliance_is_the_default_and_a_governance_bypass_delete_is_refused(moto, tmp_path):
    """`[archive] retention_days = 30` alone: every sealed object is in COMPLIANCE mode, and a
    delete of its version with BypassGovernanceRetention (what removed a sealed manifest under
    the old governance default) gets AccessDenied, the documented answer; the object stays."""
    assert ArchiveSettings().retention_mode == "compliance" and Retention(30).mode == "compliance"
    bucket = locked_bucket(moto)
    store = configured_store(moto, bucket, ArchiveSettings(retention_days=30), tmp_path)
    assert store.retention == Retention(30, "compliance")
    first, _ = sealed_into(store, tmp_path)
    key = f"archive/{APP}/{first}/manifest.json"
    client = moto.client()
    head = client.head_object(Bucket=bucket, Key=key)
    assert head["ObjectLockMode"] == "COMPLIANCE"
    with pytest.raises(ClientError) as refused:
        client.delete_object(Bucket=bucket, Key=key, VersionId=head["VersionId"], BypassGovernanceRetention=True)
    assert refused.value.response["Error"]["Code"] == "AccessDenied"
    assert refused.value.response["ResponseMetadata"]["HTTPStatusCode"] == 403
    assert client.head_object(Bucket=bucket, Key=key)["VersionId"] == head["VersionId"]
    done = verify(moto, bucket, tmp_path, config_days=30)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "object lock: enabled on s3://" in done.stdout
    assert "retention: 12 sealed object(s) COMPLIANCE until" in done.stdout
    assert "retention: expected at least COMPLIANCE for 30 day(s)" in done.stdout


def test_governance_yields_to_the_bypass_and_verify_reports_the_loss(moto, tmp_path):
    """Governance, asked for explicitly: a plain delete of the version is refused, the bypass
    header removes it (moto, as AWS for a caller allowed s3:BypassGovernanceRetention), and
    verify reports the manifest gone and that the objects were only in governance mode."""
    bucket = locked_bucket(moto)
    store = configured_store(moto, bucket, ArchiveSettings(retention_days=30, retention_mode="governance"), tmp_path)
    first, _ = sealed_into(store, tmp_path)
    key = f"archive/{APP}/{first}/manifest.json"
    client = moto.client()
    version = client.head_object(Bucket=bucket, Key=key)["VersionId"]
    with pytest.raises(ClientError, match="AccessDenied"):
        client.delete_object(Bucket=bucket, Key=key, VersionId=version)
    client.delete_object(Bucket=bucket, Key=key, VersionId=version, BypassGovernanceRetention=True)
    done = verify(moto, bucket, tmp_path, config_days=30, mode="governance")
    assert done.returncode == 1, done.stdout + done.stderr
    assert "retention: 11 sealed object(s) GOVERNANCE until" in done.stdout
    assert f"{APP}/{first}: no manifest.json" in done.stdout
    # The same store read by a verify that expects compliance (the default): every object is flagged.
    done = verify(moto, bucket, tmp_path / "strict", config_days=30)
    assert "are in GOVERNANCE mode, expected COMPLIANCE" in done.stdout and done.returncode == 1


def test_verify_flags_objects_with_no_weaker_or_shorter_retention(moto, tmp_path):
    """The bucket's default rule (COMPLIANCE, 30 days) is what verify expects when the
    configuration names none. Three releases: one written with the bucket default only (fine),
    one whose manifest's date was shortened to 2 days and one turned into governance (moto
    allows both; AWS refuses them for compliance, and a store set up with governance allows
    them), and the objects of one release put without any retention into a bucket without a
    default rule: each is flagged, by release, and verify fails."""
    bucket = locked_bucket(moto, default=("COMPLIANCE", 30))
    store = S3Store(bucket, "archive", client=moto.client())  # no [archive] retention: the bucket's rule applies
    first, second, third = sealed_into(store, tmp_path, 3)
    client = moto.client()
    done = verify(moto, bucket, tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"object lock: enabled on s3://{bucket}/archive, default retention COMPLIANCE 30 day(s)" in done.stdout
    assert "retention: 18 sealed object(s) COMPLIANCE" in done.stdout
    short = f"archive/{APP}/{second}/manifest.json"
    client.put_object_retention(
        Bucket=bucket,
        Key=short,
        Retention={"Mode": "COMPLIANCE", "RetainUntilDate": datetime.now(UTC) + timedelta(days=2)},
    )
    weaker = f"archive/{APP}/{third}/report.html"
    until = client.head_object(Bucket=bucket, Key=weaker)["ObjectLockRetainUntilDate"]
    client.put_object_retention(Bucket=bucket, Key=weaker, Retention={"Mode": "GOVERNANCE", "RetainUntilDate": until})
    done = verify(moto, bucket, tmp_path / "again")
    assert done.returncode == 1, done.stdout + done.stderr
    assert f"{APP}/{second}: 1 sealed object(s) are retained 2.0 day(s) after upload, expected 30" in done.stdout
    assert f"{APP}/{third}: 1 sealed object(s) are in GOVERNANCE mode, expected COMPLIANCE" in done.stdout
    assert f"{APP}/{first}:" not in done.stdout

    bare = moto.bucket(f"retention-{next(_names)}", object_lock=True)  # Object Lock, no default rule
    sealed_into(S3Store(bare, "archive", client=moto.client()), tmp_path / "bare")
    done = verify(moto, bare, tmp_path / "bare", config_days=30)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "no default retention" in done.stdout and "retention: 12 sealed object(s) none" in done.stdout
    assert "6 sealed object(s) have no Object Lock retention (they can be deleted)" in done.stdout
