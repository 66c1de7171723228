"""Who sealed a release: Ed25519 signatures that standard tools check too.

Each sealed release carries, next to manifest.json:

- SHA256SUMS: the sha256 of every file of the release, manifest.json included, in the format
  `sha256sum -c SHA256SUMS` checks;
- SHA256SUMS.sig: the raw Ed25519 signature of SHA256SUMS (`openssl pkeyutl -verify -rawin`);
- SHA256SUMS.sshsig: the same statement as an SSH signature (`ssh-keygen -Y verify`, namespace
  NAMESPACE).

The manifest is signed through SHA256SUMS (which holds its sha256). After each release the app's
chain head (its newest manifest's sha256 and the number of releases) is signed as
outputs/<app>/checkpoint.json, to be kept outside the archive and pinned with
`runbook verify --expect-head APP:SHA256`.

Keys: in CI the private key comes from $HOTDASH_SIGNING_KEY (PEM PKCS#8, or the base64 of the
32-byte raw key); a rehearsal (--target local) without it uses this machine's rehearsal key,
made on first use in the user's config folder (~/.config/hotdash/, $XDG_CONFIG_HOME), outside
outputs/ and git. The public keys to trust are committed in keys/trusted.toml, with who holds
each. The variable is taken out of the environment before any kernel starts, and no key value
is ever written to the archive: only the key's id (a fingerprint of the public key).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import struct
import tomllib
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError
from ..paths import PROJECT_ROOT

SIGNING_KEY_ENV = "HOTDASH_SIGNING_KEY"
SUMS = "SHA256SUMS"
SIGNATURE = "SHA256SUMS.sig"
SSH_SIGNATURE = "SHA256SUMS.sshsig"
CHECKPOINT = "checkpoint.json"
#: Files of a release that SHA256SUMS cannot list: itself and its signatures.
UNLISTED = frozenset({SUMS, SIGNATURE, SSH_SIGNATURE})
#: ssh-keygen -Y's namespace: a signature made for one purpose is not valid for another.
NAMESPACE = "hotdash-release"
TRUSTED_KEYS = PROJECT_ROOT / "keys" / "trusted.toml"
REHEARSAL_KEY_NAME = "rehearsal-signing-key.pem"

# The variable's value, taken out of os.environ (take_key_from_environment) so kernels never see it.
_key_from_environment: str | None = None


def take_key_from_environment() -> None:
    """Move $HOTDASH_SIGNING_KEY out of the environment, before any kernel or child starts."""
    global _key_from_environment
    value = os.environ.pop(SIGNING_KEY_ENV, None)
    if value:
        _key_from_environment = value


def rehearsal_key_path() -> Path:
    from platformdirs import user_config_dir

    return Path(user_config_dir("hotdash")) / REHEARSAL_KEY_NAME


def key_id(public_key) -> str:
    """A short fingerprint of a public key, the name the manifest and checkpoint record."""
    return "ed25519:" + hashlib.sha256(raw_public(public_key)).hexdigest()[:16]


def raw_public(public_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_pem(public_key) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return public_key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


@dataclass(frozen=True)
class Signer:
    private_key: object  # cryptography's Ed25519PrivateKey; never printed, never archived
    source: str  # "environment" ($HOTDASH_SIGNING_KEY) or "rehearsal" (this machine's key file)

    def __repr__(self) -> str:
        return f"Signer({self.key_id}, {self.source})"

    @property
    def public_key(self):
        return self.private_key.public_key()

    @property
    def key_id(self) -> str:
        return key_id(self.public_key)

    def sign(self, data: bytes) -> bytes:
        return self.private_key.sign(data)


def parse_private_key(text: str, *, where: str):
    """An Ed25519 private key from PEM (PKCS#8) or the base64 of its 32 raw bytes. Errors name
    where the key came from, never its value."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    text = text.strip()
    try:
        if text.startswith("-----BEGIN"):
            key = serialization.load_pem_private_key(text.encode(), password=None)
        else:
            key = Ed25519PrivateKey.from_private_bytes(base64.b64decode(text, validate=True))
    except (ValueError, TypeError, binascii.Error):
        raise UsageError(f"{where}: not an Ed25519 private key (PEM PKCS#8, or base64 of 32 raw bytes)") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise UsageError(f"{where}: the key is not an Ed25519 key")
    return key


def rehearsal_signer(*, create: bool = True) -> Signer | None:
    """This machine's rehearsal key, made (mode 0600) on first use."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    path = rehearsal_key_path()
    if not path.is_file():
        if not create:
            return None
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            pem = Ed25519PrivateKey.generate().private_bytes(
                serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
            )
            # O_EXCL: two first rehearsals at once keep one key, the other reads it.
            handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(handle, "wb") as out:
                out.write(pem)
            path.with_name(path.stem + ".pub.pem").write_bytes(
                public_pem(serialization.load_pem_private_key(pem, None).public_key())
            )
        except FileExistsError:
            pass
        except OSError as exc:
            raise UsageError(f"rehearsal signing key: cannot write {path} ({exc.strerror})") from None
    return Signer(parse_private_key(path.read_text(encoding="utf-8"), where=str(path)), "rehearsal")


def signer_for(target_name: str) -> Signer:
    """The key that signs a release to this target: $HOTDASH_SIGNING_KEY if set; else, for a
    rehearsal only, this machine's rehearsal key. A release to a real platform without the key
    is refused before anything runs."""
    take_key_from_environment()
    if _key_from_environment:
        return Signer(parse_private_key(_key_from_environment, where=SIGNING_KEY_ENV), "environment")
    if target_name == "local":
        return rehearsal_signer()
    raise UsageError(
        f"{SIGNING_KEY_ENV}: not set; a release to {target_name!r} is signed with a key listed in "
        "keys/trusted.toml (PEM or base64 of the raw Ed25519 key)"
    )


# -- what verify trusts ----------------------------------------------------------------------


@dataclass(frozen=True)
class TrustedKey:
    key_id: str
    public_key: object  # Ed25519PublicKey
    holder: str  # who holds the private half, or where verify found this key

    def verifies(self, signature: bytes, data: bytes) -> bool:
        from cryptography.exceptions import InvalidSignature

        try:
            self.public_key.verify(signature, data)
        except InvalidSignature:
            return False
        return True


def load_public_key(data: bytes, *, where: str):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

    try:
        if data.lstrip().startswith(b"-----BEGIN"):
            key = serialization.load_pem_public_key(data)
        else:
            key = Ed25519PublicKey.from_public_bytes(base64.b64decode(data.strip(), validate=True))
    except (ValueError, TypeError, binascii.Error):
        raise UsageError(f"{where}: not an Ed25519 public key (PEM, or base64 of 32 raw bytes)") from None
    if not isinstance(key, Ed25519PublicKey):
        raise UsageError(f"{where}: not an Ed25519 public key")
    return key


def committed_keys(path: Path = TRUSTED_KEYS) -> list[TrustedKey]:
    """keys/trusted.toml: [[key]] tables with public_key (base64 of the 32 raw bytes), id, holder."""
    try:
        entries = tomllib.loads(path.read_text(encoding="utf-8")).get("key", [])
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise UsageError(f"{path}: cannot read the trusted keys ({exc})") from None
    keys = []
    for number, entry in enumerate(entries, start=1):
        where = f"{path}: key #{number}"
        if not isinstance(entry, dict) or not all(
            isinstance(entry.get(f), str) for f in ("id", "public_key", "holder")
        ):
            raise UsageError(f"{where}: needs id, public_key and holder (strings)")
        public = load_public_key(entry["public_key"].encode(), where=where)
        if key_id(public) != entry["id"]:
            raise UsageError(f"{where}: id {entry['id']} is not this key's fingerprint ({key_id(public)})")
        keys.append(TrustedKey(entry["id"], public, entry["holder"]))
    return keys


def trusted_keys(extra: list[Path] = ()) -> dict[str, TrustedKey]:
    """The keys verify accepts: the committed ones, this machine's rehearsal key if it has one
    (a rehearsal archive is checked where it was made), and public keys given with --trust-key."""
    keys = {k.key_id: k for k in committed_keys()}
    rehearsal = rehearsal_signer(create=False)
    if rehearsal and rehearsal.key_id not in keys:
        keys[rehearsal.key_id] = TrustedKey(
            rehearsal.key_id, rehearsal.public_key, "this machine's rehearsal key (not in keys/trusted.toml)"
        )
    for path in extra:
        try:
            public = load_public_key(Path(path).read_bytes(), where=f"--trust-key {path}")
        except OSError as exc:
            raise UsageError(f"--trust-key: cannot read {path} ({exc.strerror})") from None
        keys.setdefault(key_id(public), TrustedKey(key_id(public), public, f"given with --trust-key {path}"))
    return keys


# -- SHA256SUMS and its signatures -----------------------------------------------------------


def sums_text(files: dict[str, str]) -> str:
    """sha256sum's format: `<hex>  <path>` per line, sorted by path."""
    return "".join(f"{digest}  {path}\n" for path, digest in sorted(files.items()))


def parse_sums(text: str) -> dict[str, str]:
    """SHA256SUMS back into {path: sha256}; ValueError on any line not in sha256sum's format."""
    files = {}
    for number, line in enumerate(text.splitlines(), start=1):
        digest, sep, path = line.partition("  ")
        if not sep or len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest) or not path:
            raise ValueError(f"line {number} is not `<sha256>  <path>`")
        if path in files:
            raise ValueError(f"line {number} lists {path} twice")
        files[path] = digest
    return files


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _ssh_public_blob(public_key) -> bytes:
    return _ssh_string(b"ssh-ed25519") + _ssh_string(raw_public(public_key))


def _sshsig_signed_data(message: bytes) -> bytes:
    # PROTOCOL.sshsig: what the key signs is the preamble, namespace, reserved, hash algorithm, H(message).
    return (
        b"SSHSIG"
        + _ssh_string(NAMESPACE.encode())
        + _ssh_string(b"")
        + _ssh_string(b"sha512")
        + _ssh_string(hashlib.sha512(message).digest())
    )


def _sshsig_blob(public_key, signature: bytes) -> bytes:
    return (
        b"SSHSIG"
        + struct.pack(">I", 1)
        + _ssh_string(_ssh_public_blob(public_key))
        + _ssh_string(NAMESPACE.encode())
        + _ssh_string(b"")
        + _ssh_string(b"sha512")
        + _ssh_string(_ssh_string(b"ssh-ed25519") + _ssh_string(signature))
    )


def ssh_signature(signer: Signer, message: bytes) -> str:
    """An armored SSH signature of message, as `ssh-keygen -Y sign -n NAMESPACE` writes it."""
    blob = base64.b64encode(_sshsig_blob(signer.public_key, signer.sign(_sshsig_signed_data(message)))).decode()
    lines = [blob[i : i + 70] for i in range(0, len(blob), 70)]
    return "-----BEGIN SSH SIGNATURE-----\n" + "\n".join(lines) + "\n-----END SSH SIGNATURE-----\n"


def ssh_signature_verifies(armored: bytes, message: bytes, key: TrustedKey) -> bool:
    text = armored.decode("ascii", "replace").strip().splitlines()
    if len(text) < 3 or text[0] != "-----BEGIN SSH SIGNATURE-----" or text[-1] != "-----END SSH SIGNATURE-----":
        return False
    try:
        blob = base64.b64decode("".join(text[1:-1]), validate=True)
    except binascii.Error:
        return False
    signature = blob[-64:]
    return blob == _sshsig_blob(key.public_key, signature) and key.verifies(signature, _sshsig_signed_data(message))


def allowed_signers_line(public_key, identity: str = "hotdash") -> str:
    """A line of an ssh-keygen allowed_signers file for this key and NAMESPACE."""
    return f'{identity} namespaces="{NAMESPACE}" ssh-ed25519 {base64.b64encode(_ssh_public_blob(public_key)).decode()}'


def sign_release(folder: Path, files: dict[str, str], signer: Signer) -> None:
    """SHA256SUMS of files (every file of the release but these three) and its two signatures."""
    sums = sums_text(files).encode()
    (folder / SUMS).write_bytes(sums)
    (folder / SIGNATURE).write_bytes(signer.sign(sums))
    (folder / SSH_SIGNATURE).write_text(ssh_signature(signer, sums), encoding="ascii")


# -- the checkpoint --------------------------------------------------------------------------


def checkpoint_payload(checkpoint: dict) -> bytes:
    """The bytes a checkpoint's signature covers: every field but the signature, canonical JSON."""
    body = {k: v for k, v in checkpoint.items() if k != "signature"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def write_checkpoint(
    app_dir: Path, *, releases: int, head_release_id: str, head_sha256: str, signer: Signer, at: str
) -> dict:
    from ..results import write_json_atomic

    checkpoint = {
        "app": app_dir.name,
        "releases": releases,
        "head_release_id": head_release_id,
        "head_manifest_sha256": head_sha256,
        "written_at": at,
        "key_id": signer.key_id,
    }
    checkpoint["signature"] = base64.b64encode(signer.sign(checkpoint_payload(checkpoint))).decode()
    write_json_atomic(app_dir / CHECKPOINT, checkpoint)
    return checkpoint


def head_pin(checkpoint: dict) -> str:
    """What to keep outside the archive: `APP:SHA256` for `runbook verify --expect-head`."""
    return f"{checkpoint['app']}:{checkpoint['head_manifest_sha256']}"
