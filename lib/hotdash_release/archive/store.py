"""Where the archive lives: a local folder (the default, as always) or an S3-compatible object
store (`HOTDASH_ARCHIVE=s3://bucket/prefix`, or `[archive] url`), with the same layout in both.

One small interface, `Store`: list, get, put (create-only, or If-Match an ETag, with an Object
Lock retention date), delete. Two implementations: `FolderStore` (a folder; create-only is
O_EXCL, If-Match compares the md5 under a lock) and `S3Store`.

Why boto3 and not fsspec/s3fs (which papermill uses): the archive's guarantees are conditional
writes and Object Lock, and boto3's `put_object` takes them as parameters (`IfNoneMatch="*"`,
`IfMatch=etag`, `ObjectLockMode`, `ObjectLockRetainUntilDate`) and reports a lost condition as
HTTP 412 PreconditionFailed. s3fs is a file system view: it hides ETags and preconditions
behind open/write and has no place for a retention date. boto3 is AWS's own client, reads the
standard AWS_* variables and `AWS_ENDPOINT_URL` (MinIO, R2, moto), and retries by itself.

Credentials (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN) are never recorded:
`take_credentials_from_environment` moves the secret ones out of os.environ before any kernel
starts (as the signing key), the client gets them explicitly, and the redactor knows their
values (secrets/required.py: redactor_for), so the seal's scan refuses any record holding one.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from ..errors import StoreConflict, StoreError, UsageError

ARCHIVE_ENV = "HOTDASH_ARCHIVE"
#: The secret ones are taken out of the environment; the key id goes with them (it names the account).
CREDENTIAL_VARIABLES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
SECRET_CREDENTIALS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
RETENTION_MODES = ("governance", "compliance")
_S3_URL = re.compile(r"s3://([a-z0-9][a-z0-9.-]{1,61}[a-z0-9])(/[A-Za-z0-9._/-]*)?\Z")
URL_ALLOWED = "s3://BUCKET or s3://BUCKET/PREFIX (bucket: 3-63 of a-z 0-9 . -), or empty for the local folder"

_credentials: dict[str, str] = {}


def take_credentials_from_environment() -> None:
    """Move the store's credentials out of os.environ, before the kernel template starts: the
    runbooks never need them, and a kernel cannot leak what it never had."""
    for name in CREDENTIAL_VARIABLES:
        value = os.environ.pop(name, None)
        if value:
            _credentials[name] = value


def credential(name: str) -> str | None:
    return _credentials.get(name) or os.environ.get(name)


def secret_credential_values() -> dict[str, str]:
    """{variable: value} of the secret credentials this process holds: what the redactor hides."""
    return {name: value for name in SECRET_CREDENTIALS if (value := credential(name))}


@dataclass(frozen=True)
class StoredObject:
    key: str  # relative to the store's root (its prefix), with forward slashes
    etag: str
    size: int


@dataclass(frozen=True)
class Retention:
    """Object Lock for sealed objects: kept `days` from the upload, in `mode`. Compliance by
    default: no one (the bucket owner's root user included) can delete the version or shorten
    its date until it passes. Governance only stops those without `s3:BypassGovernanceRetention`
    (README, "Object Lock")."""

    days: int
    mode: str = "compliance"

    def until(self, now: datetime | None = None) -> datetime:
        return (now or datetime.now(UTC)) + timedelta(days=self.days)


@dataclass(frozen=True)
class ObjectRetention:
    """What the store says of one object's Object Lock: mode ("COMPLIANCE", "GOVERNANCE", or
    None: no retention) and its retain-until date; modified: when that version was written."""

    mode: str | None
    until: datetime | None
    modified: datetime | None


@dataclass(frozen=True)
class LockConfiguration:
    """A bucket's Object Lock: enabled or not, and its default retention (mode, days) if any."""

    enabled: bool
    mode: str | None = None
    days: int | None = None


class Store:
    """The archive's storage. Keys are paths relative to the archive root ("app/id/file")."""

    url: str
    local = False  # a folder the runner can work in directly (the default archive)

    def list(self, prefix: str = "", *, start_after: str = "") -> Iterator[StoredObject]:
        """Every object under prefix, in key order, after start_after."""
        raise NotImplementedError

    def folders(self, prefix: str = "") -> list[str]:
        """The names of the 'folders' directly under prefix (which ends with / or is empty)."""
        raise NotImplementedError

    def get(self, key: str) -> tuple[bytes, str] | None:
        """(content, etag), or None when there is no such object."""
        raise NotImplementedError

    def etag(self, key: str) -> str | None:
        """The object's etag without reading it; None when there is none."""
        raise NotImplementedError

    def put(
        self, key: str, data: bytes, *, create_only: bool = False, if_match: str | None = None, retain: bool = False
    ) -> str:
        """Write an object; its new etag. create_only: refused (StoreConflict) if it exists;
        if_match: refused unless the object's etag is this one; retain: the store's retention."""
        raise NotImplementedError

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        raise NotImplementedError

    def get_retained(self, key: str) -> tuple[bytes, str, ObjectRetention | None] | None:
        """get(), with the object's retention as the same answer reports it (None: this store
        has no Object Lock)."""
        found = self.get(key)
        return (*found, None) if found else None

    def lock_configuration(self) -> LockConfiguration | None:
        """The bucket's Object Lock configuration; None where there is no such thing (a folder)."""
        return None

    def key_url(self, key: str) -> str:
        return f"{self.url.rstrip('/')}/{key}"


class FolderStore(Store):
    """A local folder (today's archive). Conditional writes hold an flock on a lock file beside
    the object, so that the check and the write are one step for every process on this machine."""

    local = True

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.url = str(self.root)

    def _path(self, key: str) -> Path:
        path = (self.root / key).resolve()
        if self.root.resolve() not in path.parents:
            raise StoreError(f"store key {key!r} leaves the archive folder", key=key)
        return path

    def list(self, prefix: str = "", *, start_after: str = "") -> Iterator[StoredObject]:
        if not self.root.is_dir():
            return
        found = []
        for path in self.root.rglob("*"):
            key = path.relative_to(self.root).as_posix()
            if path.is_file() and key.startswith(prefix) and key > start_after and not key.endswith(".flock"):
                found.append(key)
        for key in sorted(found):
            data = (self.root / key).read_bytes()
            yield StoredObject(key, hashlib.md5(data).hexdigest(), len(data))

    def folders(self, prefix: str = "") -> list[str]:
        base = self.root / prefix
        return sorted(p.name for p in base.iterdir() if p.is_dir()) if base.is_dir() else []

    def get(self, key: str) -> tuple[bytes, str] | None:
        try:
            data = self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            return None
        return data, hashlib.md5(data).hexdigest()

    def etag(self, key: str) -> str | None:
        found = self.get(key)
        return found[1] if found else None

    def put(
        self, key: str, data: bytes, *, create_only: bool = False, if_match: str | None = None, retain: bool = False
    ) -> str:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path.with_name(path.name + ".flock"), "w") as guard:
            fcntl.flock(guard, fcntl.LOCK_EX)
            current = self.get(key)
            if create_only and current is not None:
                raise StoreConflict(f"{self.key_url(key)} exists: sealed objects are never overwritten", key=key)
            if if_match is not None and (current is None or current[1] != if_match):
                raise StoreConflict(f"{self.key_url(key)} changed since it was read", key=key)
            tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        return hashlib.md5(data).hexdigest()

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        path = self._path(key)
        current = self.get(key)
        if if_match is not None and (current is None or current[1] != if_match):
            raise StoreConflict(f"{self.key_url(key)} changed since it was read", key=key)
        path.unlink(missing_ok=True)


class S3Store(Store):
    """A bucket (and a prefix in it) of an S3-compatible store, through boto3."""

    def __init__(self, bucket: str, prefix: str = "", *, retention: Retention | None = None, client=None) -> None:
        self.bucket, self.prefix = bucket, prefix.strip("/")
        self.url = f"s3://{bucket}" + (f"/{self.prefix}" if self.prefix else "")
        self.retention = retention
        self.client = client or s3_client()

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _relative(self, full: str) -> str:
        return full[len(self.prefix) + 1 :] if self.prefix else full

    def _call(self, what: str, key: str, method, **kwargs):
        """One request; a foreign error becomes a StoreError naming the object, on one line."""
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return method(Bucket=self.bucket, **kwargs)
        except ClientError as exc:
            error = exc.response.get("Error", {})
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            code = error.get("Code", "")
            if code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412):
                raise StoreConflict(
                    f"{what} {self.key_url(key)}: {code or status} (a condition did not hold)", key=key
                ) from None
            if code in ("NoSuchKey", "404", "NotFound"):
                raise FileNotFoundError(key) from None
            raise StoreError(
                f"{what} {self.key_url(key)}: {code or status} {error.get('Message', '')}".rstrip(), key=key
            ) from None
        except BotoCoreError as exc:
            raise StoreError(f"{what} {self.key_url(key)}: {exc}", key=key) from None

    def list(self, prefix: str = "", *, start_after: str = "") -> Iterator[StoredObject]:
        kwargs = {"Prefix": self._key(prefix)}
        if start_after:
            kwargs["StartAfter"] = self._key(start_after)
        while True:
            page = self._call("list", prefix, self.client.list_objects_v2, **kwargs)
            for item in page.get("Contents", ()):
                yield StoredObject(self._relative(item["Key"]), item["ETag"].strip('"'), item["Size"])
            if not page.get("IsTruncated"):
                return
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def folders(self, prefix: str = "") -> list[str]:
        kwargs = {"Prefix": self._key(prefix), "Delimiter": "/"}
        names = []
        while True:
            page = self._call("list", prefix, self.client.list_objects_v2, **kwargs)
            names += [p["Prefix"].rstrip("/").rsplit("/", 1)[-1] for p in page.get("CommonPrefixes", ())]
            if not page.get("IsTruncated"):
                return names
            kwargs["ContinuationToken"] = page["NextContinuationToken"]

    def get(self, key: str) -> tuple[bytes, str] | None:
        try:
            answer = self._call("read", key, self.client.get_object, Key=self._key(key))
        except FileNotFoundError:
            return None
        return answer["Body"].read(), answer["ETag"].strip('"')

    def get_retained(self, key: str) -> tuple[bytes, str, ObjectRetention | None] | None:
        """GetObject answers with the version's x-amz-object-lock-mode and -retain-until-date
        (for a caller allowed s3:GetObjectRetention): verify learns each sealed object's
        retention from the read it makes anyway. (moto answers GetObjectRetention itself with 500.)"""
        try:
            answer = self._call("read", key, self.client.get_object, Key=self._key(key))
        except FileNotFoundError:
            return None
        retention = ObjectRetention(
            answer.get("ObjectLockMode"), answer.get("ObjectLockRetainUntilDate"), answer.get("LastModified")
        )
        return answer["Body"].read(), answer["ETag"].strip('"'), retention

    def lock_configuration(self) -> LockConfiguration:
        try:
            answer = self._call("read the Object Lock of", "", self.client.get_object_lock_configuration)
        except FileNotFoundError:
            return LockConfiguration(False)
        except StoreError as exc:
            if "ObjectLockConfigurationNotFound" in str(exc):
                return LockConfiguration(False)
            raise
        config = answer.get("ObjectLockConfiguration") or {}
        rule = (config.get("Rule") or {}).get("DefaultRetention") or {}
        days = rule.get("Days") or (rule["Years"] * 365 if rule.get("Years") else None)
        return LockConfiguration(config.get("ObjectLockEnabled") == "Enabled", rule.get("Mode"), days)

    def etag(self, key: str) -> str | None:
        try:
            return self._call("read", key, self.client.head_object, Key=self._key(key))["ETag"].strip('"')
        except FileNotFoundError:
            return None

    def put(
        self, key: str, data: bytes, *, create_only: bool = False, if_match: str | None = None, retain: bool = False
    ) -> str:
        kwargs = {"Key": self._key(key), "Body": data}
        if create_only:
            kwargs["IfNoneMatch"] = "*"
        if if_match is not None:
            kwargs["IfMatch"] = f'"{if_match}"'
        if retain and self.retention:
            kwargs["ObjectLockMode"] = self.retention.mode.upper()
            kwargs["ObjectLockRetainUntilDate"] = self.retention.until()
        answer = self._call("write", key, self.client.put_object, **kwargs)
        return answer["ETag"].strip('"')

    def delete(self, key: str, *, if_match: str | None = None) -> None:
        kwargs = {"Key": self._key(key)}
        if if_match is not None:
            kwargs["IfMatch"] = f'"{if_match}"'
        self._call("delete", key, self.client.delete_object, **kwargs)


_prepared: dict = {}  # the client being built ahead (prepare_client): {"thread": ..., "client": ...}


def prepare_client() -> None:
    """Build the S3 client in a thread, now: boto3's imports and its S3 model take about a second,
    which `runbook release` overlaps with the kernel template's imports (launch.py) instead of
    spending it before the release lock. Only when a store is likely (credentials given)."""
    if _prepared or not (credential("AWS_ACCESS_KEY_ID") or os.environ.get(ARCHIVE_ENV)):
        return

    def build() -> None:
        try:
            _prepared["client"] = _new_client()
        except Exception:
            pass

    _prepared["thread"] = threading.Thread(target=build, daemon=True, name="s3-client")
    _prepared["thread"].start()


def s3_client():
    """The S3 client: the one prepare_client built, else a new one."""
    if _prepared:
        _prepared["thread"].join(timeout=30)
        client = _prepared.pop("client", None)
        if client is not None:
            return client
    return _new_client()


def _new_client():
    """A boto3 S3 client from the standard variables (region, AWS_ENDPOINT_URL) and the
    credentials taken out of the environment; bounded timeouts and boto3's standard retries."""
    import boto3
    from botocore.config import Config

    return boto3.session.Session(
        aws_access_key_id=credential("AWS_ACCESS_KEY_ID"),
        aws_secret_access_key=credential("AWS_SECRET_ACCESS_KEY"),
        aws_session_token=credential("AWS_SESSION_TOKEN"),
        region_name=os.environ.get("AWS_DEFAULT_REGION") or os.environ.get("AWS_REGION") or "us-east-1",
    ).client(
        "s3",
        endpoint_url=os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or None,
        config=Config(
            connect_timeout=5,
            read_timeout=30,
            retries={"mode": "standard", "max_attempts": 3},
            max_pool_connections=16,
        ),
    )


def check_archive_url(value: str, field: str) -> str:
    """An archive address: s3://bucket[/prefix], or empty (the local folder)."""
    value = value.strip()
    if value and not _S3_URL.match(value):
        raise UsageError(f"{field}: {value!r} is not allowed; allowed: {URL_ALLOWED}")
    return value.rstrip("/")


def archive_url(config_url: str = "", flag: str | None = None) -> str:
    """The archive's address: --archive, else $HOTDASH_ARCHIVE, else [archive] url; "" is the folder."""
    if flag is not None:  # given, it must name a store: an empty value (an unset CI variable) is refused
        if not flag.strip():
            raise UsageError(f"--archive: '' is not allowed; allowed: {URL_ALLOWED.split(', or')[0]}")
        return check_archive_url(flag, "--archive")
    if os.environ.get(ARCHIVE_ENV):
        return check_archive_url(os.environ[ARCHIVE_ENV], ARCHIVE_ENV)
    return config_url


def open_store(url: str, outputs: Path, *, retention: Retention | None = None, client=None) -> Store:
    """The store at url (s3://...), or the local folder `outputs` when url is empty."""
    if not url:
        return FolderStore(outputs)
    match = _S3_URL.match(url)
    if not match:
        raise UsageError(f"archive: {url!r} is not allowed; allowed: {URL_ALLOWED}")
    return S3Store(match.group(1), (match.group(2) or "").strip("/"), retention=retention, client=client)
