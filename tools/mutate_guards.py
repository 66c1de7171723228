"""Remove each guard of the release record by hand, run the test that must catch it, put it back.

    .venv/bin/python tools/mutate_guards.py          # every guard (about 10 minutes)
    .venv/bin/python tools/mutate_guards.py M2 M7    # some

Each line: the guard, CAUGHT or NOT CAUGHT, and by which test. A guard no test catches is a
defect of the tests. The file is restored after each run, whatever happens.
"""

import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parents[1]
L = "lib/hotdash_release/"
T1 = "tests/test_one_truth.py"
TI = "tests/test_interactive.py"
TA = "tests/test_approvals.py"
M = [
    (
        "M1 log vouches for results",
        L + "record/events.py",
        'if saved is None or saved["data"].get("sha256") != _digest(data):',
        "if False:",
        T1 + "::test_hand_written_results_do_not_open_the_production_gate",
    ),
    (
        "M2 live release",
        L + "decisions/release_gate.py",
        "if world is not None and not world.live:",
        "if False:",
        T1 + "::test_results_vouched_for_by_the_log_still_need_a_live_release",
    ),
    (
        "M3 sealed read-only",
        L + "record/events.py",
        "    if not release:\n        return\n    if (Path(folder) / MANIFEST)",
        "    if True:\n        return\n    if (Path(folder) / MANIFEST)",
        T1 + "::test_a_sealed_release_is_read_only_to_papermill",
    ),
    (
        "M4 notification file at load",
        L + "config.py",
        'if notification.channel == "file" and first in',
        "if False and first in",
        T1 + "::test_a_notification_file_inside_a_release_folder_is_refused_at_load",
    ),
    (
        "M5 notification file at write",
        L + "integrations/notify.py",
        "if inside is not None:",
        "if False:",
        T1 + "::test_the_notification_refuses_a_path_inside_a_release_folder",
    ),
    (
        "M6 watch after a failed notify",
        L + "runner.py",
        'progress(f"  {record.notify_failed}: the watch runs all the same")\n            continue',
        'record.outcome, record.reason = "released", "x"\n            return',
        T1 + "::test_a_failed_notification_does_not_skip_the_watch",
    ),
    (
        "M7 resume re-checks production",
        L + "runner.py",
        "    if serving != verified:",
        "    if False:",
        T1 + "::test_a_resume_refuses_when_production_no_longer_serves_what_it_verified",
    ),
    (
        "M8 abandoned needs a person",
        L + "runner.py",
        "if before and not verified and not rolled_back:",
        "if False:",
        T1
        + "::test_a_runner_killed_after_production_changed_is_sealed_as_needing_a_person_and_resume_restores_the_good_build",
    ),
    (
        "M9 resume carries serving_before",
        L + "runner.py",
        "    _carry_serving_before(record, old_folder, start)\n",
        "",
        T1
        + "::test_a_runner_killed_after_production_changed_is_sealed_as_needing_a_person_and_resume_restores_the_good_build",
    ),
    (
        "M10 no configured URL on local",
        L + "runbook.py",
        'return self.target.url(env.app) or ""',
        "return self.target.url(env.app) or env.base_url",
        T1 + "::test_an_app_the_local_platform_never_ran_is_a_refusal_never_the_configured_url",
    ),
    (
        "M11 notify only after verified",
        L + "runbook.py",
        "        if unverified:",
        "        if False:",
        T1 + "::test_out_of_order_sections_never_probe_a_remote_url_nor_tell_the_ceo",
    ),
    (
        "M12 checks only where deployed here",
        L + "runbook.py",
        'return f"{env.name} was not deployed in this release',
        'return "" and f"{env.name} was not deployed in this release',
        T1 + "::test_out_of_order_sections_never_probe_a_remote_url_nor_tell_the_ceo",
    ),
    (
        "M13 staging checked against the target",
        L + "decisions/release_gate.py",
        "        if world.staging_image != recorded:",
        "        if False:",
        "tests/test_release_gates.py::test_the_runner_treats_a_refused_production_deploy_as_blocked_without_a_rollback",
    ),
    (
        "M14 decisions appended",
        L + "runbook.py",
        '            self._event("decision_recorded", **row)',
        "            pass",
        T1 + "::test_a_decision_changed_after_the_deploy_never_hides_the_go_it_ran_under",
    ),
    (
        "M15 verify reads the log",
        L + "archive/integrity.py",
        "    if (folder / EVENTS).is_file():",
        "    if False:",
        "tests/test_integrity.py::test_every_results_file_is_checked_not_only_the_first",
    ),
    (
        "M16 resume verifies its source",
        L + "runner.py",
        "    if damaged:  # a record that does not verify is no ground to reuse anything from",
        "    if False:",
        "tests/test_release_gates.py::test_a_resume_of_a_release_whose_record_was_changed_is_refused",
    ),
    (
        "M17 refused deploy is no deployment",
        L + "archive/metrics.py",
        'return deploy is not None and deploy.outcome != "refused"',
        "return deploy is not None",
        "tests/test_metrics.py::test_a_refused_production_deploy_is_no_deployment",
    ),
    (
        "M18 event log chain",
        L + "record/events.py",
        'if event.get("prev", "") != (_digest(previous) if previous else ""):',
        "if False:",
        T1 + "::test_the_event_log_is_a_chain_a_changed_line_breaks",
    ),
    (
        "M19 notify only after the last deploy was smoke-tested",
        L + "runbook.py",
        "        if not unverified and smoked_at < deployed_at:",
        "        if False:",
        T1 + "::test_the_ceo_is_not_told_again_after_a_deploy_its_smoke_test_did_not_follow",
    ),
    (
        "M20 a decision re-runs a gate that has run",
        L + "runbook.py",
        "        if self._gated and not self._refusal:",
        "        if False:",
        TI + "::test_a_decision_after_the_gate_decides_again_and_the_archive_shows_the_record_not_the_stale_error",
    ),
    (
        "M21 the archive shows the record, not a superseded gate output",
        L + "interactive/recorded.py",
        "        if superseded is not None:",
        "        if False:",
        TI + "::test_a_decision_after_the_gate_decides_again_and_the_archive_shows_the_record_not_the_stale_error",
    ),
    (
        "M22 the report's go/no-go headline follows the gate",
        L + "archive/report.py",
        'verdict = "go" if decision.get("ok") and outcome == "passed" else "nogo"',
        'verdict = "go" if decision.get("ok") else "nogo"',
        T1 + "::test_the_report_never_headlines_a_go_its_gate_did_not_pass_and_calls_a_refusal_refused",
    ),
    (
        "M23 a refused deploy is REFUSED in the deployments table",
        L + "archive/report.py",
        'badge("refused" if result.get("outcome") == "refused" else',
        "badge(",
        T1 + "::test_the_report_never_headlines_a_go_its_gate_did_not_pass_and_calls_a_refusal_refused",
    ),
    (
        "M24 production waits for approvals",
        L + "runbook.py",
        "        if verdict.ok and self.config.approval.required:",
        "        if False:",
        TA + "::test_without_an_approval_production_is_refused_naming_who_may_approve",
    ),
    (
        "M25 an approval is for what ships now",
        L + "decisions/approval.py",
        "        elif a.digest != digest:",
        "        elif False:",
        TA + "::test_forged_replayed_and_stale_approvals_do_not_count",
    ),
    (
        "M26 an approval's signature is checked",
        L + "decisions/approval.py",
        "            if not good:\n                rejected.append",
        "            if False:\n                rejected.append",
        TA + "::test_forged_replayed_and_stale_approvals_do_not_count",
    ),
    (
        "M27 no self-approval",
        L + "decisions/approval.py",
        "        if policy.prevent_self_approval and a.approver == operator:",
        "        if False:",
        TA + "::test_judge_refuses_self_approval_when_prevented",
    ),
    (
        "M28 the dispatcher cannot approve the run",
        L + "decisions/approval.py",
        'if policy.prevent_self_approval and a.source == "github" and dispatched_by and a.approver == dispatched_by:',
        "if False:",
        TA + "::test_in_ci_the_environment_reviewer_approves_and_the_dispatcher_cannot",
    ),
    (
        "M29 verify checks approvals",
        L + "archive/integrity.py",
        "        problems += [Problem(name, what) for what in approval.record_problems(deploy)]",
        "        pass",
        TA + "::test_verify_names_a_forged_approval_even_when_the_log_was_rewritten_to_match",
    ),
]
only = sys.argv[1:]
for name, path, old, new, test in M:
    if only and name.split()[0] not in only:
        continue
    f = ROOT / path
    text = f.read_text()
    assert text.count(old) == 1, (name, text.count(old))
    f.write_text(text.replace(old, new))
    try:
        done = subprocess.run(
            [str(ROOT / ".venv/bin/python"), "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", test],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=900,
        )
    finally:
        f.write_text(text)
    print(f"{name}: {'CAUGHT' if done.returncode != 0 else 'NOT CAUGHT'} by {test.split('::')[-1]}", flush=True)
