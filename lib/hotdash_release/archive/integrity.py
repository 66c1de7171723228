"""Tamper evidence: every manifest lists the sha256 of each file of its release and the
hash of the previous release's manifest for the same app, so the releases of an app form
a hash chain. Each release's SHA256SUMS (which holds the manifest's sha256) is signed, and
so is each app's checkpoint naming its chain head (signing.py). `verify` checks all of it
and reports every problem it meets, each on one line; a damaged record is a finding, never
a traceback.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from ..decisions import approval
from ..record.events import EVENTS, recorded_results
from .signing import (
    CHECKPOINT,
    SIGNATURE,
    SSH_SIGNATURE,
    SUMS,
    UNLISTED,
    TrustedKey,
    checkpoint_payload,
    parse_sums,
    ssh_signature_verifies,
    trusted_keys,
)

MANIFEST = "manifest.json"
#: The first release of an app links to this instead of a previous manifest.
GENESIS = "0" * 64
_SHA256 = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class Problem:
    release: str  # "<app>/<release id>"
    what: str

    def __str__(self) -> str:
        return f"{self.release}: {self.what}"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 16), b""):
            digest.update(block)
    return digest.hexdigest()


def sealed_releases(app_dir: Path) -> list[Path]:
    """Release folders of one app that carry a manifest, oldest first (ids sort by time)."""
    return sorted(p for p in app_dir.iterdir() if p.is_dir() and (p / MANIFEST).is_file())


def chain_link(app_dir: Path, release_id: str) -> dict:
    """The link a new manifest carries: the newest sealed release before it, and its hash."""
    earlier = [p for p in sealed_releases(app_dir) if p.name < release_id] if app_dir.is_dir() else []
    if not earlier:
        return {"previous_release_id": None, "previous_manifest_sha256": GENESIS}
    previous = earlier[-1]
    return {"previous_release_id": previous.name, "previous_manifest_sha256": sha256_file(previous / MANIFEST)}


def _type_name(value) -> str:
    return {
        dict: "an object",
        list: "a list",
        str: "a string",
        int: "an integer",
        type(None): "null",
        bool: "a boolean",
    }.get(type(value), type(value).__name__)


def _is_sha256(value) -> bool:
    return isinstance(value, str) and bool(_SHA256.fullmatch(value))


#: What verify reads from a manifest, and what each field must be.
_MANIFEST_FIELDS = {
    "release_id": (lambda v: isinstance(v, str), "a string"),
    "app": (lambda v: isinstance(v, str), "a string"),
    "outcome": (lambda v: isinstance(v, str), "a string"),
    "exit_code": (lambda v: isinstance(v, int) and not isinstance(v, bool), "an integer"),
    "started_at": (lambda v: isinstance(v, str), "a string"),
    "previous_release_id": (lambda v: v is None or isinstance(v, str), "a string or null"),
    "previous_manifest_sha256": (_is_sha256, "a sha256 (64 lowercase hex digits)"),
    "signing_key": (lambda v: isinstance(v, str), "a key id string"),
    "files": (
        lambda v: isinstance(v, dict) and all(isinstance(k, str) and _is_sha256(d) for k, d in v.items()),
        "an object of path -> sha256",
    ),
}


def manifest_damage(manifest) -> str | None:
    """What is wrong with a parsed manifest's shape, on one line; None if verify can read it."""
    if not isinstance(manifest, dict):
        return f"manifest.json is {_type_name(manifest)}, not an object"
    for key, (valid, allowed) in _MANIFEST_FIELDS.items():
        if key not in manifest:
            return f"manifest.json has no {key}"
        if not valid(manifest[key]):
            return f"manifest.json: {key} must be {allowed}, got {_type_name(manifest[key])}"
    return None


def load_manifest(folder: Path) -> tuple[dict | None, str | None]:
    """(manifest, None), or (None, why it cannot be used) for a missing or damaged one."""
    path = folder / MANIFEST
    if not path.is_file():
        return None, "no manifest.json: the release was never sealed"
    try:
        manifest = json.loads(path.read_bytes().decode("utf-8"))
    except ValueError as exc:  # UnicodeDecodeError too: a flipped bit
        return None, f"manifest.json is not valid JSON ({type(exc).__name__})"
    damage = manifest_damage(manifest)
    return (None, damage) if damage else (manifest, None)


def stray_manifests(folder: Path) -> list[Path]:
    """manifest.json files below a release's root: a manifest belongs only at the root."""
    return sorted(p for p in folder.rglob(MANIFEST) if p.parent != folder)


def verify_signature(folder: Path, manifest: dict, trust: dict[str, TrustedKey]) -> tuple[list[str], str | None]:
    """SHA256SUMS and both its signatures by a trusted key; (problems, the key id that signed)."""
    sums_path = folder / SUMS
    if not sums_path.is_file():
        return [f"no {SUMS}: the release is not signed"], None
    sums = sums_path.read_bytes()
    signature = (folder / SIGNATURE).read_bytes() if (folder / SIGNATURE).is_file() else None
    if signature is None:
        return [f"no {SIGNATURE}: the release is not signed"], None
    named = manifest["signing_key"]
    key = trust.get(named)
    if key is None:
        return [f"signed by key {named}, which is not trusted (keys/trusted.toml, --trust-key)"], None
    if not key.verifies(signature, sums):
        return [f"{SIGNATURE}: not a signature of {SUMS} by {named} (either was changed)"], None
    problems = []
    ssh = folder / SSH_SIGNATURE
    if not ssh.is_file():
        problems.append(f"no {SSH_SIGNATURE}")
    elif not ssh_signature_verifies(ssh.read_bytes(), sums, key):
        problems.append(f"{SSH_SIGNATURE}: not an SSH signature of {SUMS} by {named}")
    return problems, named


def verify_release(folder: Path, trust: dict[str, TrustedKey] | None = None) -> list[Problem]:
    """The release's files against its signed SHA256SUMS and its manifest: modified, missing or
    added files, a changed manifest, a missing or foreign signature, a manifest out of place."""
    trust = trusted_keys() if trust is None else trust
    name = f"{folder.parent.name}/{folder.name}"
    problems = [
        Problem(name, f"{p.relative_to(folder)}: a manifest inside a release (only its root holds one)")
        for p in stray_manifests(folder)
    ]
    manifest, damage = load_manifest(folder)
    if damage:
        return problems + [Problem(name, damage)]
    if manifest["release_id"] != folder.name:
        problems.append(Problem(name, f"manifest names release {manifest['release_id']!r}"))
    if manifest["app"] != folder.parent.name:
        problems.append(Problem(name, f"manifest names app {manifest['app']!r}: the app folder was renamed"))
    signature_problems, _signed_by = verify_signature(folder, manifest, trust)
    problems += [Problem(name, what) for what in signature_problems]
    listed = manifest["files"]
    on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file()}
    on_disk -= {MANIFEST, *UNLISTED}
    for missing in sorted(set(listed) - on_disk):
        problems.append(Problem(name, f"missing file {missing}"))
    for added in sorted(on_disk - set(listed)):
        problems.append(Problem(name, f"added file {added} (not in the manifest)"))
    for path in sorted(set(listed) & on_disk):
        if sha256_file(folder / path) != listed[path]:
            problems.append(Problem(name, f"modified file {path} (sha256 differs from the manifest)"))
    problems += [Problem(name, what) for what in _sums_problems(folder)]
    if (folder / EVENTS).is_file():  # releases sealed before the event log have none
        results, unvouched = recorded_results(folder)
        problems += [Problem(name, what) for what in unvouched]
        deploy = results.get("deploy_production") or {}
        problems += [Problem(name, what) for what in approval.record_problems(deploy)]
    return problems


def _sums_problems(folder: Path) -> list[str]:
    """SHA256SUMS must be readable and hold the manifest's sha256: the signature covers the
    manifest through it (the files are checked against the manifest)."""
    if not (folder / SUMS).is_file():
        return []  # reported with the signature
    try:
        sums = parse_sums((folder / SUMS).read_bytes().decode("utf-8"))
    except ValueError as exc:
        return [f"{SUMS} is damaged: {exc}"]
    problems = []
    if sums.get(MANIFEST) != sha256_file(folder / MANIFEST):
        problems.append(f"manifest.json changed since it was signed (sha256 differs from {SUMS})")
    return problems


def chain_time(manifest: dict) -> str:
    """When a release took its place in the chain: when it started, or for a sealed interactive
    session, which draws its release id only when sealed, when it was sealed."""
    session = manifest.get("session") if manifest.get("interactive") else None
    sealed_at = session.get("sealed_at") if isinstance(session, dict) else None
    return str(sealed_at or manifest.get("started_at") or "")


def verify_chain(app_dir: Path) -> list[Problem]:
    """Each manifest must link to the one before it, by id and by hash, in time order."""
    problems = []
    previous_id, previous_hash, previous_start = None, GENESIS, ""
    for folder in sealed_releases(app_dir):
        name = f"{app_dir.name}/{folder.name}"
        manifest, damage = load_manifest(folder)
        if damage:  # reported by verify_release; the next link is checked against what is on disk
            manifest = {}
        elif manifest.get("previous_release_id") != previous_id:
            problems.append(
                Problem(
                    name,
                    f"chain broken: links to {manifest.get('previous_release_id')!r}, "
                    f"the release before it is {previous_id!r}",
                )
            )
        elif manifest.get("previous_manifest_sha256") != previous_hash:
            problems.append(
                Problem(name, f"chain broken: the manifest of {previous_id} changed since this release linked to it")
            )
        started = chain_time(manifest)
        if started and started < previous_start:
            problems.append(
                Problem(name, f"history reordered: started {started}, before {previous_id} ({previous_start})")
            )
        previous_id, previous_hash = folder.name, sha256_file(folder / MANIFEST)
        previous_start = started or previous_start
    return problems


_CHECKPOINT_FIELDS = {
    "app": str,
    "releases": int,
    "head_release_id": str,
    "head_manifest_sha256": str,
    "written_at": str,
    "key_id": str,
    "signature": str,
}


def verify_checkpoint(app_dir: Path, trust: dict[str, TrustedKey]) -> list[Problem]:
    """The app's signed checkpoint must name its newest release, that manifest's sha256 and the
    number of releases: a newest release removed (with its checkpoint left) is found here."""
    releases = sealed_releases(app_dir)
    path = app_dir / CHECKPOINT
    name = app_dir.name
    if not path.is_file():
        return [Problem(name, f"no {CHECKPOINT}: the chain head is not anchored")] if releases else []
    try:
        checkpoint = json.loads(path.read_bytes().decode("utf-8"))
    except ValueError as exc:
        return [Problem(name, f"{CHECKPOINT} is not valid JSON ({type(exc).__name__})")]
    if not isinstance(checkpoint, dict):
        return [Problem(name, f"{CHECKPOINT} is {_type_name(checkpoint)}, not an object")]
    for key, kind in _CHECKPOINT_FIELDS.items():
        value = checkpoint.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            return [Problem(name, f"{CHECKPOINT}: {key} must be {_type_name(kind())}, got {_type_name(value)}")]
    key = trust.get(checkpoint["key_id"])
    if key is None:
        return [Problem(name, f"{CHECKPOINT} signed by key {checkpoint['key_id']}, which is not trusted")]
    try:
        signature = base64.b64decode(checkpoint["signature"], validate=True)
    except binascii.Error:
        signature = b""
    if not key.verifies(signature, checkpoint_payload(checkpoint)):
        return [Problem(name, f"{CHECKPOINT}: the signature does not match its content (it was changed)")]
    if checkpoint["app"] != name:
        return [Problem(name, f"{CHECKPOINT} is app {checkpoint['app']!r}'s: the app folder was renamed")]
    ids = [p.name for p in releases]
    head = checkpoint["head_release_id"]
    if head not in ids:
        return [Problem(name, f"{CHECKPOINT} names {head} as the newest release, and it is gone (removed?)")]
    problems = []
    if sha256_file(app_dir / head / MANIFEST) != checkpoint["head_manifest_sha256"]:
        problems.append(Problem(name, f"{CHECKPOINT}: the manifest of {head} changed since the checkpoint"))
    if ids.index(head) + 1 != checkpoint["releases"]:
        problems.append(
            Problem(
                name,
                f"{CHECKPOINT} counts {checkpoint['releases']} release(s) up to {head}, the archive has {ids.index(head) + 1}",
            )
        )
    if ids[-1] != head:
        problems.append(Problem(name, f"release {ids[-1]} is newer than the checkpoint's head {head}"))
    return problems


def manifest_hashes(app_dir: Path) -> list[str]:
    return [sha256_file(p / MANIFEST) for p in sealed_releases(app_dir)]


@dataclass
class Verification:
    checked: int = 0
    problems: list[Problem] = field(default_factory=list)
    signers: dict[str, str] = field(default_factory=dict)  # key id -> who holds it
    pinned: list[str] = field(default_factory=list)  # "APP at release X (k of n)"


def verify_archive(
    outputs: Path,
    release_id: str | None = None,
    *,
    expect_apps: list[str] = (),
    expect_heads: dict[str, str] | None = None,
    trust_keys: list[Path] = (),
    app_checks: tuple[Callable[[Path], list[Problem]], ...] = (),
) -> Verification:
    """Check one release (by id) or every release under outputs/.

    expect_apps: apps that must be there (a deleted or renamed app folder is otherwise
    invisible); expect_heads: {app: manifest sha256} kept outside the archive (a pinned head):
    that manifest must still be in the app's chain, which proves nothing before it was removed
    or rewritten. trust_keys: public key files to trust besides keys/trusted.toml. app_checks: more
    checks of each app folder when the whole archive is verified (the store's summaries: given by
    the caller, since the summary module reads the catalog, which reads this one)."""
    outputs = Path(outputs)
    trust = trusted_keys(list(trust_keys))
    expect_heads = expect_heads or {}
    result = Verification()
    result.problems += [
        Problem(str(p.relative_to(outputs)), "a manifest outside a release folder (only a release's root holds one)")
        for p in [outputs / MANIFEST, *outputs.glob(f"*/{MANIFEST}")]
        if p.is_file()
    ]
    app_dirs = sorted(p for p in outputs.iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    app_dirs = [d for d in app_dirs if d.name != "interactive"]
    present = {d.name for d in app_dirs if sealed_releases(d)}
    for app in sorted({*expect_apps, *expect_heads} - present):
        result.problems.append(Problem(app, "missing: no sealed release of this app (deleted or renamed?)"))
    for app_dir in app_dirs:
        folders = sorted(p for p in app_dir.iterdir() if p.is_dir())
        if release_id:
            folders = [f for f in folders if f.name == release_id]
        for folder in folders:
            result.checked += 1
            result.problems += verify_release(folder, trust)
            manifest, _ = load_manifest(folder)
            if manifest and manifest["signing_key"] in trust:
                result.signers[manifest["signing_key"]] = trust[manifest["signing_key"]].holder
        if not release_id:
            result.problems += verify_chain(app_dir) + verify_checkpoint(app_dir, trust)
            for check in app_checks:
                result.problems += check(app_dir)
        elif folders:
            result.problems += [p for p in verify_chain(app_dir) if p.release.endswith("/" + release_id)]
    for app, pinned in sorted(expect_heads.items()):
        if app not in present:
            continue
        hashes = manifest_hashes(outputs / app)
        if pinned not in hashes:
            result.problems.append(
                Problem(
                    app, f"the pinned head {pinned[:16]}... is not in the chain: a release was removed or rewritten"
                )
            )
        else:
            position = hashes.index(pinned) + 1
            release = sealed_releases(outputs / app)[position - 1].name
            result.pinned.append(f"{app} at release {release} ({position} of {len(hashes)})")
    return result
