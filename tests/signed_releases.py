"""Small releases that `runbook verify` accepts, sealed as the runner seals them (files,
manifest with its chain link, SHA256SUMS and both signatures by the library's own sign_release,
the app's signed checkpoint) without running one: for the store tests that read and verify
hundreds of them. The key is made per test session; verify is told to trust it (--trust-key)."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from hotdash_release.archive.integrity import GENESIS, MANIFEST, sha256_file
from hotdash_release.archive.signing import Signer, public_pem, sign_release, write_checkpoint

APP = "hotdash-production"
SIGNER = Signer(Ed25519PrivateKey.generate(), "environment")


def release_ids(count: int, *, day: int = 1) -> list[str]:
    """Ids in time order, one a minute from 10:00 of 2026-11-<day>."""
    return [f"202611{day:02d}T{10 + i // 60:02d}{i % 60:02d}00Z-{i:06x}" for i in range(count)]


def trust_key_file(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "trusted.pem"
    path.write_bytes(public_pem(SIGNER.public_key))
    return path


def seal_signed(root: Path, release_id: str, *, outcome: str = "released", app: str = APP) -> Path:
    """The next release of app in root: linked to the newest sealed one there, signed, anchored."""
    app_dir = root / app
    earlier = sorted(p for p in app_dir.glob("*/") if (p / MANIFEST).is_file()) if app_dir.is_dir() else []
    previous = earlier[-1] if earlier else None
    folder = app_dir / release_id
    (folder / "results").mkdir(parents=True)
    (folder / "report.html").write_text(f"<p>{release_id}</p>")
    (folder / "results" / "verify_secrets.json").write_text(json.dumps({"release": release_id}))
    started = datetime.strptime(release_id[:16], "%Y%m%dT%H%M%SZ").strftime("%Y-%m-%dT%H:%M:%SZ")
    files = {p.relative_to(folder).as_posix(): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}
    manifest = {
        "release_id": release_id,
        "app": app,
        "outcome": outcome,
        "exit_code": 0 if outcome == "released" else 3,
        "target": "local",
        "operator": "ana",
        "started_at": started,
        "finished_at": started,
        "previous_release_id": previous.name if previous else None,
        "previous_manifest_sha256": sha256_file(previous / MANIFEST) if previous else GENESIS,
        "signing_key": SIGNER.key_id,
        "sections": [{"key": "build", "outcome": "passed", "duration_s": 1.5, "started_at": started}],
        "files": files,
    }
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    sign_release(folder, {**files, MANIFEST: sha256_file(folder / MANIFEST)}, SIGNER)
    write_checkpoint(
        app_dir,
        releases=len(earlier) + 1,
        head_release_id=release_id,
        head_sha256=sha256_file(folder / MANIFEST),
        signer=SIGNER,
        at=started,
    )
    return folder
