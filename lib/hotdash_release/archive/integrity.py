"""Tamper evidence: every manifest lists the sha256 of each file of its release and the
hash of the previous release's manifest for the same app, so the releases of an app form
a hash chain. `verify` walks it and reports the first problem it meets.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

MANIFEST = "manifest.json"
#: The first release of an app links to this instead of a previous manifest.
GENESIS = "0" * 64


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


def verify_release(folder: Path) -> list[Problem]:
    """Files against the manifest: modified, missing or added."""
    name = f"{folder.parent.name}/{folder.name}"
    manifest_path = folder / MANIFEST
    if not manifest_path.is_file():
        return [Problem(name, "no manifest.json: the release was never sealed")]
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
        listed = manifest["files"]
    except (ValueError, KeyError):
        return [Problem(name, "manifest.json is not a valid manifest")]
    problems = []
    if manifest.get("release_id") != folder.name:
        problems.append(Problem(name, f"manifest names release {manifest.get('release_id')!r}"))
    on_disk = {str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != MANIFEST}
    for missing in sorted(set(listed) - on_disk):
        problems.append(Problem(name, f"missing file {missing}"))
    for added in sorted(on_disk - set(listed)):
        problems.append(Problem(name, f"added file {added} (not in the manifest)"))
    for path in sorted(set(listed) & on_disk):
        if sha256_file(folder / path) != listed[path]:
            problems.append(Problem(name, f"modified file {path} (sha256 differs from the manifest)"))
    return problems


def chain_time(manifest: dict) -> str:
    """When a release took its place in the chain: when it started, or for a sealed interactive
    session, which draws its release id only when sealed, when it was sealed."""
    session = manifest.get("session") if manifest.get("interactive") else None
    return (session or {}).get("sealed_at") or manifest.get("started_at") or ""


def verify_chain(app_dir: Path) -> list[Problem]:
    """Each manifest must link to the one before it, by id and by hash, in time order."""
    problems = []
    previous_id, previous_hash, previous_start = None, GENESIS, ""
    for folder in sealed_releases(app_dir):
        name = f"{app_dir.name}/{folder.name}"
        manifest = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("previous_release_id") != previous_id:
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
        if started < previous_start:
            problems.append(
                Problem(name, f"history reordered: started {started}, before {previous_id} ({previous_start})")
            )
        previous_id, previous_hash, previous_start = folder.name, sha256_file(folder / MANIFEST), started
    return problems


def verify_archive(outputs: Path, release_id: str | None = None) -> tuple[int, list[Problem]]:
    """Check one release (by id) or every release under outputs/; return (releases checked, problems)."""
    app_dirs = sorted(p for p in Path(outputs).iterdir() if p.is_dir() and not p.name.startswith(("_", ".")))
    app_dirs = [d for d in app_dirs if d.name != "interactive"]
    checked, problems = 0, []
    for app_dir in app_dirs:
        folders = sorted(p for p in app_dir.iterdir() if p.is_dir())
        if release_id:
            folders = [f for f in folders if f.name == release_id]
        for folder in folders:
            checked += 1
            problems += verify_release(folder)
        if not release_id:
            problems += verify_chain(app_dir)
        elif folders:
            problems += [p for p in verify_chain(app_dir) if p.release.endswith("/" + release_id)]
    return checked, problems
