"""A second person approves what ships: an SSH signature over a digest of the release.

What is approved (`shipping_payload`): the release id, the production app, the image staging
serves and this release checked, the SHA-256 of the configuration file and of each runbook, and
the go/no-go decision with every criterion's measured value. Its digest is computed twice: when
the go/no-go decides (shown to the person who must approve, with the command to run), and again
from the world right before production changes; an approval counts only for the digest of now, so
a different image, configuration, runbook or measurement after the approval voids it.

How it is signed: `runbook approve` writes the approval's statement (`statement_bytes`: the
digest, who, when, why, for which release) and signs it with `ssh-keygen -Y sign -n
hotdash-approval` with the approver's own SSH key; anyone re-checks it with `ssh-keygen -Y
verify` against the repository's `keys/allowed_signers` (the principals there are the approvers).
We call ssh-keygen rather than a Python library: it is the tool the auditor has, the format is
its own (SSHSIG), and people's keys (and agents) already work with it.

How it travels: into `<archive root>/_approvals/<release id>/<approver>.json`, outside the
release folder (which only its own run writes). The deploy reads it there, checks it, and keeps
it in its record (`records.approvals`), so the sealed release carries its approvals and
`runbook verify` checks them again.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..errors import UsageError

NAMESPACE = "hotdash-approval"
APPROVALS_DIR = "_approvals"  # beside the apps; "_" keeps verify, the index and the store sync out
_PRINCIPAL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
#: ssh-keygen -Y verify on success: Good "hotdash-approval" signature for bob with ED25519 key SHA256:...
_GOOD = re.compile(r'^Good "[^"]+" signature for (?P<who>\S+) with (?P<kind>\S+) key (?P<fingerprint>SHA256:\S+)')


@dataclass(frozen=True)
class ApprovalPolicy:
    """[approval] in hotdash.toml."""

    required: int = 0  # approvals a production deploy needs; 0: none
    prevent_self_approval: bool = True  # the release's operator cannot approve it
    allowed_signers: Path | None = None  # keys/allowed_signers: who may approve, with their keys
    wait_minutes: float = 0.0  # how long the production deploy waits for approvals before refusing

    def approvers(self) -> tuple[str, ...]:
        return allowed_principals(self.allowed_signers) if self.allowed_signers else ()


def allowed_principals(path: Path) -> tuple[str, ...]:
    """The principals of an allowed_signers file (first field of each line; comma lists split)."""
    names: list[str] = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            names += [n for n in line.split()[0].split(",") if n and n not in names]
    return tuple(names)


# -- what ships ------------------------------------------------------------------------------


def file_digest(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def runbook_digests(runbooks: Path) -> dict[str, str]:
    return {p.name: file_digest(p) for p in sorted(Path(runbooks).glob("*.ipynb"))}


def shipping_payload(
    *, release_id: str, app: str, image: str, config_path: Path, runbooks: Path, decision: Mapping, criteria: Sequence
) -> dict:
    """What an approval signs, in a canonical form (see the module's docstring)."""
    return {
        "release_id": release_id,
        "app": app,
        "image": image,
        "config_sha256": file_digest(config_path),
        "runbooks_sha256": runbook_digests(runbooks),
        "decision": str(decision.get("decision") or ""),
        "criteria": [
            {k: row.get(k) for k in ("criterion", "measured", "threshold", "verdict")} for row in criteria or ()
        ],
    }


def digest_of(payload: Mapping) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


# -- an approval -----------------------------------------------------------------------------


def statement_bytes(*, release_id: str, digest: str, approver: str, at: str, reason: str) -> bytes:
    """The exact bytes signed: everything an approval claims, so none of it can be changed."""
    return json.dumps(
        {
            "namespace": NAMESPACE,
            "release_id": release_id,
            "digest": digest,
            "approver": approver,
            "at": at,
            "reason": reason,
        },
        sort_keys=True,
        separators=(",", ":"),
    ).encode()


def check_principal(name: str) -> str:
    if not _PRINCIPAL.match(name or ""):
        raise UsageError(f"--as: {name!r} is not an approver name (letters, digits, . _ @ -, at most 64)")
    return name


def sign(statement: bytes, key: Path) -> str:
    """ssh-keygen -Y sign with the approver's key (a private key file, or its .pub with an agent)."""
    with tempfile.TemporaryDirectory(prefix="hotdash-approve-") as tmp:
        message = Path(tmp) / "statement"
        message.write_bytes(statement)
        done = subprocess.run(
            ["ssh-keygen", "-q", "-Y", "sign", "-n", NAMESPACE, "-f", str(key), str(message)],
            capture_output=True,
            text=True,
            stdin=subprocess.DEVNULL,
            timeout=60,
        )
        signature = Path(f"{message}.sig")
        if done.returncode != 0 or not signature.is_file():
            problem = (done.stderr or done.stdout).strip().splitlines()
            raise UsageError(
                f"--key: ssh-keygen could not sign with {key}: {problem[-1] if problem else 'no signature'}"
            )
        return signature.read_text()


def verify_signature(statement: bytes, signature: str, principal: str, allowed_signers: Path) -> tuple[bool, str]:
    """(True, key fingerprint) when `principal`'s key in allowed_signers signed `statement`;
    (False, why) otherwise. The same check as `ssh-keygen -Y verify` by hand (README)."""
    with tempfile.TemporaryDirectory(prefix="hotdash-verify-") as tmp:
        sig = Path(tmp) / "approval.sig"
        sig.write_text(signature)
        done = subprocess.run(
            [
                "ssh-keygen",
                "-Y",
                "verify",
                "-f",
                str(allowed_signers),
                "-I",
                principal,
                "-n",
                NAMESPACE,
                "-s",
                str(sig),
            ],
            input=statement,
            capture_output=True,
            timeout=60,
        )
    said = (done.stdout + done.stderr).decode(errors="replace").strip()
    good = _GOOD.match(said)
    if done.returncode == 0 and good and good["who"] == principal:
        return True, good["fingerprint"]
    return False, (said.splitlines() or ["signature not valid"])[-1]


@dataclass(frozen=True)
class Approval:
    release_id: str
    digest: str
    approver: str
    at: str
    reason: str
    signature: str
    source: str = "ssh"  # "ssh": signed with the approver's key; "github": an environment review

    def statement(self) -> bytes:
        return statement_bytes(
            release_id=self.release_id, digest=self.digest, approver=self.approver, at=self.at, reason=self.reason
        )

    def as_row(self) -> dict:
        return {
            "release_id": self.release_id,
            "digest": self.digest,
            "approver": self.approver,
            "at": self.at,
            "reason": self.reason,
            "signature": self.signature,
            "source": self.source,
        }


def approvals_dir(archive_root: Path, release_id: str) -> Path:
    return Path(archive_root) / APPROVALS_DIR / release_id


def write_approval(archive_root: Path, approval: Approval) -> Path:
    folder = approvals_dir(archive_root, approval.release_id)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{approval.approver}.json"
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(approval.as_row(), indent=1, sort_keys=True))
    os.replace(tmp, path)
    return path


def read_approvals(archive_root: Path, release_id: str) -> tuple[list[Approval], list[str]]:
    """The approvals waiting for a release, and the files that are not approvals at all."""
    found, problems = [], []
    folder = approvals_dir(archive_root, release_id)
    for path in sorted(folder.glob("*.json")) if folder.is_dir() else ():
        try:
            row = json.loads(path.read_text())
            found.append(Approval(**{k: str(row[k]) for k in Approval.__dataclass_fields__ if k in row}))
        except (OSError, ValueError, TypeError, KeyError) as exc:
            problems.append(f"{path.name}: not an approval ({type(exc).__name__})")
    return found, problems


# -- judging them ----------------------------------------------------------------------------


@dataclass(frozen=True)
class ApprovalVerdict:
    """Which approvals count for this digest now, and which do not and why."""

    required: int
    accepted: tuple[dict, ...]
    rejected: tuple[str, ...]
    approvers: tuple[str, ...]
    operator: str
    prevent_self_approval: bool
    dispatched_by: str = ""

    @property
    def ok(self) -> bool:
        return len(self.accepted) >= self.required

    def who_may_approve(self) -> list[str]:
        return [a for a in self.approvers if not (self.prevent_self_approval and a == self.operator)]

    def line(self, release_id: str) -> str:
        """One line: what is missing and the command to give the approvers."""
        may = ", ".join(self.who_may_approve()) or "nobody (keys/allowed_signers names no one but the operator)"
        why = f"; not counted: {'; '.join(self.rejected)}" if self.rejected else ""
        return (
            f"{self.required - len(self.accepted)} more approval(s) of what ships (have {len(self.accepted)} of "
            f"{self.required}; who may approve: {may}; each runs `runbook approve {release_id} --reason ...`){why}"
        )

    def as_row(self) -> dict:
        return {
            "ok": self.ok,
            "operator": self.operator,
            "dispatched_by": self.dispatched_by,
            "required": self.required,
            "accepted": list(self.accepted),
            "rejected": list(self.rejected),
            "approvers": list(self.approvers),
            "prevent_self_approval": self.prevent_self_approval,
        }


def judge(
    policy: ApprovalPolicy,
    approvals: Sequence[Approval],
    *,
    digest: str,
    release_id: str,
    operator: str,
    dispatched_by: str = "",
) -> ApprovalVerdict:
    """Each approval: for this release, for this digest, by an approver who is not the operator
    (when self-approval is prevented), signed by that approver's key. One approval per person.
    In CI, `dispatched_by` is the GitHub user who started the run: their own review of it is a
    self-approval too."""
    approvers = policy.approvers()
    accepted: dict[str, dict] = {}
    rejected: list[str] = []
    for a in approvals:
        # Who first (is it theirs, may they), then what (this release, what ships now).
        if policy.prevent_self_approval and a.approver == operator:
            rejected.append(f"{a.approver}: the release's own operator cannot approve it")
            continue
        if policy.prevent_self_approval and a.source == "github" and dispatched_by and a.approver == dispatched_by:
            rejected.append(f"{a.approver}: dispatched this run and cannot approve it (GitHub review)")
            continue
        if a.source == "github":
            fingerprint = ""
        elif a.approver not in approvers:
            rejected.append(f"{a.approver}: not an approver in {policy.allowed_signers}")
            continue
        else:
            good, fingerprint = verify_signature(a.statement(), a.signature, a.approver, policy.allowed_signers)
            if not good:
                rejected.append(f"{a.approver}: signature does not verify ({fingerprint})")
                continue
        if a.release_id != release_id:
            rejected.append(f"{a.approver}: for release {a.release_id}, not this one")
        elif a.digest != digest:
            rejected.append(f"{a.approver}: approved another digest (what ships changed since: approve again)")
        else:
            accepted.setdefault(a.approver, {**a.as_row(), "fingerprint": fingerprint})
    return ApprovalVerdict(
        policy.required,
        tuple(accepted.values()),
        tuple(rejected),
        approvers,
        operator,
        policy.prevent_self_approval,
        dispatched_by,
    )


# -- runbook approve ---------------------------------------------------------------------------


def give_approval(
    archive_root: Path, release_id: str, *, approver: str, reason: str, key: Path, at: str
) -> tuple[Path, dict]:
    """Sign what a waiting release will ship, as its go/no-go recorded it, and leave the approval
    where its deploy reads it. Refused (UsageError) when there is nothing to approve."""
    from ..record.events import recorded_results, sealed_as

    check_principal(approver)
    if not reason.strip():
        raise UsageError("--reason: say why you approve (it is signed and kept with the release)")
    folders = [p for p in Path(archive_root).glob(f"*/{release_id}") if p.is_dir() and p.parent.name != APPROVALS_DIR]
    if not folders:
        raise UsageError(f"approve: no release {release_id} under {archive_root}")
    folder = folders[0]
    if sealed_as(folder):
        raise UsageError(f"approve: release {release_id} is sealed; there is nothing left to approve")
    decided = (recorded_results(folder)[0].get("go_no_go") or {}).get("records") or {}
    request = decided.get("approval_request")
    if not request:
        raise UsageError(
            f"approve: release {release_id} has no GO waiting for approval (its go/no-go has not decided GO yet)"
        )
    operator = str((recorded_results(folder)[0].get("go_no_go") or {}).get("operator") or "")
    if approver == operator and request.get("prevent_self_approval", True):
        raise UsageError(f"--as: {approver} runs release {release_id}; someone else must approve it")
    given = Approval(release_id, request["digest"], approver, at, reason.strip(), "")
    given = Approval(**{**given.as_row(), "signature": sign(given.statement(), key)})
    return write_approval(archive_root, given), request


# -- runbook verify ----------------------------------------------------------------------------

#: The repository's approvers and their keys, as ssh-keygen reads them.
DEFAULT_ALLOWED_SIGNERS = Path(__file__).resolve().parents[3] / "keys" / "allowed_signers"


def record_problems(deploy_result: Mapping, allowed_signers: Path | None = None) -> list[str]:
    """A sealed production deploy's approvals, checked again: each signature by its approver's
    key (the repository's keys/allowed_signers when it names the approver, else the copy the
    deploy recorded), for this release and the digest the deploy shipped under, never by the
    release's operator when self-approval was prevented, and as many as were required."""
    given = (deploy_result.get("records") or {}).get("approvals")
    if not given:
        return []
    problems = []
    accepted = given.get("accepted") or []
    if len(accepted) < int(given.get("required") or 0) and (deploy_result.get("records") or {}).get("deployment"):
        problems.append(f"approvals: production deployed with {len(accepted)} of {given.get('required')} required")
    with tempfile.TemporaryDirectory(prefix="hotdash-verify-") as tmp:
        recorded = Path(tmp) / "allowed_signers"
        recorded.write_text(str(given.get("allowed_signers") or ""))
        for row in accepted:
            a = Approval(**{k: str(row.get(k, "")) for k in Approval.__dataclass_fields__})
            who = a.approver
            if a.release_id != deploy_result.get("release_id"):
                problems.append(f"approvals: {who}'s approval is for release {a.release_id}")
            if a.digest != given.get("digest"):
                problems.append(f"approvals: {who} approved digest {a.digest[:12]}, not the one shipped")
            if given.get("prevent_self_approval", True) and who in {
                given.get("operator") or deploy_result.get("operator"),
                given.get("dispatched_by") if a.source == "github" else None,
            }:
                problems.append(f"approvals: {who} approved their own release")
            if a.source != "ssh":
                continue
            signers = allowed_signers or DEFAULT_ALLOWED_SIGNERS
            if not (signers.is_file() and who in allowed_principals(signers)):
                signers = recorded
            good, said = verify_signature(a.statement(), a.signature, who, signers)
            if not good:
                problems.append(f"approvals: {who}'s signature does not verify ({said})")
    return problems
