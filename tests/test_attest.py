"""Attestations as values: validated parameters and --attest flags, the ledger and its
measures, a person's Go/No-go against the criteria, the widgets recording through their
callbacks, and how a sealed session's sections add up to an outcome. No kernel needed."""

from __future__ import annotations

import json
import re

import pytest

from hotdash_release.archive.integrity import MANIFEST, chain_link, verify_chain
from hotdash_release.config import DEFAULT_MANUAL_CHECKS, Criterion, load_config
from hotdash_release.decisions.attest import (
    GO,
    NO_GO,
    Attestation,
    Ledger,
    check_release_attestations,
    from_parameters,
    measures_for,
    parse_attest_flags,
    section_parameters,
)
from hotdash_release.decisions.gonogo import Measurement, decide, person_required, with_person_decision
from hotdash_release.errors import ConfigError, UsageError
from hotdash_release.interactive.recorded import decision_panel_html, manual_checks_html
from hotdash_release.interactive.session import SESSION_MARKER, default_release_dir, session_outcome
from hotdash_release.interactive.widgets import DecisionPanel, ManualChecksPanel
from hotdash_release.plan import ALL_SECTIONS
from hotdash_release.runner import SectionRecord

CHECKS = DEFAULT_MANUAL_CHECKS
AT = "2026-11-25T19:05:12Z"


def given(check: str, note: str = "", by: str = "alice") -> dict:
    return {"check": check, "by": by, "at": AT, "note": note}


# -- parameters ---------------------------------------------------------------------------------------


def test_parameter_attestations_are_recorded_with_their_source():
    [attestation] = from_parameters(
        [given("check DASHBOARD loads", "loads in 1 s")], section_key="staging_smoke", manual_checks=CHECKS
    )
    assert attestation == Attestation("Check dashboard loads", "alice", AT, "loads in 1 s", "parameter")


@pytest.mark.parametrize(
    ("item", "problem"),
    [
        (given("Check the dashboard"), "is not one of: Visit the app URL"),
        ({"check": "Test navigation", "at": AT}, "attestations[0].by: missing"),
        (given("Test navigation") | {"at": "yesterday"}, "is not an ISO 8601 time"),
        (given("Test navigation") | {"at": "2026-11-25T19:05:12"}, "has no time zone"),
        (given("Test navigation") | {"source": "widget"}, "unknown key 'source'"),
        (given("Test navigation", by="alice; rm -rf"), "is not a name"),
        ("Test navigation", "expected a dict"),
    ],
    ids=["unknown check", "no by", "no time", "naive time", "source given", "bad name", "not a dict"],
)
def test_a_malformed_attestation_is_a_usage_error_naming_the_key(item, problem):
    with pytest.raises(UsageError, match=re.escape(problem)):
        from_parameters([item], section_key="staging_smoke", manual_checks=CHECKS)


def test_a_decision_needs_a_reason_and_other_sections_take_none():
    with pytest.raises(UsageError, match="needs a reason"):
        from_parameters([given("go")], section_key="go_no_go", manual_checks=CHECKS)
    with pytest.raises(UsageError, match="takes none"):
        from_parameters([given("Test navigation")], section_key="deploy_staging", manual_checks=CHECKS)


def test_attest_flags_go_to_their_sections_by_the_operator_now():
    flags = parse_attest_flags(
        ["staging:Check dashboard loads", "go_no_go:no-go:QA found a bug: see #12"], operator="bob", at=AT
    )
    assert flags == {
        "staging_smoke": [{"check": "Check dashboard loads", "by": "bob", "at": AT, "note": ""}],
        "go_no_go": [{"check": NO_GO, "by": "bob", "at": AT, "note": "QA found a bug: see #12"}],
    }
    assert section_parameters("staging_smoke", flags) == {"attestations": flags["staging_smoke"]}
    assert section_parameters("production_smoke", flags) == {"attestations": []}
    assert section_parameters("deploy_staging", flags) == {}
    check_release_attestations(flags, CHECKS)


@pytest.mark.parametrize(
    ("spec", "problem"),
    [
        ("qa:Check dashboard loads", "is not SCOPE:CHECK"),
        ("staging", "is not SCOPE:CHECK"),
        ("go_no_go:Go", "needs a reason"),
        ("go_no_go:Maybe:later", "is not one of: Go, No-go"),
    ],
)
def test_bad_attest_flags_are_usage_errors(spec, problem):
    with pytest.raises(UsageError, match=problem):
        parse_attest_flags([spec], operator="bob")


def test_attest_flags_naming_an_unknown_check_fail_before_the_release():
    flags = parse_attest_flags(["production:Check the dashboard"], operator="bob")
    with pytest.raises(UsageError, match=r"--attest \(production_smoke\).*is not one of"):
        check_release_attestations(flags, CHECKS)


# -- ledger, measures, decision ------------------------------------------------------------------------


def test_every_required_check_must_be_attested_and_a_withdrawal_counts():
    ledger = Ledger(CHECKS)
    for check in CHECKS:
        ledger.add(Attestation(check, "alice", AT, source="widget"))
    assert measures_for("staging_smoke", "staging", ledger) == {"staging_manual_checks_attested": True}
    ledger.withdraw("Test navigation")
    assert measures_for("staging_smoke", "staging", ledger) == {"staging_manual_checks_attested": False}
    assert ledger.missing() == ["Test navigation"]


def test_a_newer_decision_replaces_the_earlier_one():
    ledger = Ledger()
    assert measures_for("go_no_go", None, ledger) == {"go_no_go_decision_attested": False}
    ledger.add(Attestation(GO, "alice", AT, "looks good", "widget"))
    ledger.add(Attestation(NO_GO, "alice", AT, "dashboard 500s", "widget"))
    assert ledger.decision.check == NO_GO and len(ledger.rows()) == 1
    assert measures_for("go_no_go", None, ledger) == {"go_no_go_decision_attested": True}


def _decision(met: bool):
    criterion = Criterion("Staging smoke test passed", "staging_smoke_passed", "expect", True, "blocking")
    return decide([criterion], {"staging_smoke_passed": Measurement(met, "staging_smoke")})


def test_a_persons_no_go_stops_the_release_whatever_the_criteria_say():
    decision = with_person_decision(_decision(True), Attestation(NO_GO, "alice", AT, "dashboard 500s"))
    assert not decision.go
    assert decision.explanation == f"NO-GO: No-go by alice at {AT}: dashboard 500s"


def test_a_persons_go_cannot_lift_a_blocking_criterion():
    go = Attestation(GO, "alice", AT, "ship it")
    assert with_person_decision(_decision(True), go).go
    blocked = with_person_decision(_decision(False), go)
    assert not blocked.go and "but blocking criteria are not met" in blocked.explanation


def test_the_go_counts_the_blocking_criteria_of_the_configuration():
    """Observed: the notebook said "all 8 blocking criteria met", the report "all 9", the
    configuration had 7: acceptable criteria that happened to be met were counted as blocking."""
    criteria = [
        Criterion("Smoke passed", "smoke", "expect", True, "blocking"),
        Criterion("Docs done", "docs", "expect", True, "acceptable"),
        Criterion("Decision attested", "go_no_go_decision_attested", "expect", True, "acceptable"),
    ]
    measures = {
        "smoke": Measurement(True, "staging_smoke"),
        "docs": Measurement(True, "preflight"),
        "go_no_go_decision_attested": Measurement(False, "go_no_go"),
    }
    decision = decide(criteria, measures)
    assert decision.go and decision.explanation.startswith("GO: all 1 blocking criteria met;")
    # In a lab session a person is present: their call is required, and counted once made.
    required = person_required(criteria)
    assert [c.when_not_met for c in required] == ["blocking", "acceptable", "blocking"]
    assert not decide(required, measures).go
    measures["go_no_go_decision_attested"] = Measurement(True, "go_no_go")
    assert decide(required, measures).explanation == "GO: all 2 blocking criteria met"


# -- widgets --------------------------------------------------------------------------------------------


def drawn_from(ledger: Ledger, evidence: dict[str, str]):
    """What SectionRun hands a panel: the view drawn from the results as recorded."""
    return lambda: manual_checks_html(
        {
            "records": {"manual_checks": {"title": "Manual checks", "evidence": list(evidence.items())}},
            "attestations": ledger.rows(),
        }
    )


def panel_of(ledger: Ledger, evidence: dict[str, str], *, on_attest, on_withdraw, title="Manual checks", url=""):
    """The manual checks panel as SectionRun makes it for the staging smoke test."""
    return ManualChecksPanel(
        title,
        evidence,
        ledger,
        url=url,
        render=drawn_from(ledger, evidence),
        section="staging_smoke",
        on_attest=on_attest,
        on_withdraw=on_withdraw,
    )


def test_ticking_a_check_records_it_and_the_table_follows():
    ledger, calls = Ledger(CHECKS), []

    def on_attest(check, note):
        calls.append(("attest", check, note))
        ledger.add(Attestation(check, "alice", AT, note, "widget"))

    def on_withdraw(check):
        calls.append(("withdraw", check))
        ledger.withdraw(check)

    evidence = dict.fromkeys(CHECKS, "Landing page (passed)")
    panel = panel_of(
        ledger,
        evidence,
        on_attest=on_attest,
        on_withdraw=on_withdraw,
        title="Manual checks on http://127.0.0.1:8080",
        url="http://127.0.0.1:8080",
    )
    assert "none attested yet" in panel.summary_html() and "none attested yet" in panel.recorded.value
    assert '<a href="http://127.0.0.1:8080"' in panel.widget.children[0].value, "the app's URL is a link"
    panel.note("Check dashboard loads").value = "charts render"  # a note alone attests nothing
    panel.checkbox("Check dashboard loads").value = True
    panel.note("Check dashboard loads").value = "charts and orders render"
    panel.checkbox("Check dashboard loads").value = False
    assert calls == [
        ("attest", "Check dashboard loads", "charts render"),
        ("attest", "Check dashboard loads", "charts and orders render"),
        ("withdraw", "Check dashboard loads"),
    ]
    panel.checkbox("Test navigation").value = True
    html = panel.summary_html()
    assert "4 of 5 not attested yet" in html and "widget" in html and "&lt;" not in html
    assert "4 of 5 not attested yet" in panel.recorded.value, "the live view in the panel follows"


def test_a_refused_tick_is_said_undone_and_the_panel_locked():
    """A sealed session refuses every write: the panel says so and shows what stays recorded."""
    ledger = Ledger(CHECKS)

    def refuse(*_):
        raise UsageError("session lab-x was sealed as release 20261125T000000Z-abcdef: it is read-only")

    evidence = dict.fromkeys(CHECKS, "")
    panel = panel_of(ledger, evidence, on_attest=refuse, on_withdraw=refuse)
    panel.checkbox("Test navigation").value = True
    assert "Not recorded" in panel.notice.value and "read-only" in panel.notice.value
    assert panel.checkbox("Test navigation").value is False, "the tick is undone: nothing was recorded"
    assert all(panel.checkbox(c).disabled and panel.note(c).disabled for c in CHECKS)
    assert "none attested yet" in panel.recorded.value


def test_parameter_attestations_show_ticked_and_locked():
    ledger = Ledger(CHECKS)
    ledger.add(Attestation("Test navigation", "ci", AT, "<b>ok</b>", "parameter"))
    evidence = dict.fromkeys(CHECKS, "")
    panel = panel_of(ledger, evidence, on_attest=None, on_withdraw=None)
    box = panel.checkbox("Test navigation")
    assert box.value and box.disabled
    assert "&lt;b&gt;ok&lt;/b&gt;" in panel.summary_html(), "notes are shown as text"


def test_the_decision_needs_a_choice_and_a_reason_before_it_can_be_recorded():
    ledger, recorded = Ledger(), []
    panel = DecisionPanel(
        ledger,
        on_decide=lambda choice, reason: recorded.append((choice, reason)),
        render=lambda: decision_panel_html({"attestations": ledger.rows()}),
        section="go_no_go",
    )
    assert panel.button.disabled
    panel.choice.value = GO
    assert panel.button.disabled, "a reason is required"
    panel.reason.value = "staging verified by hand"
    assert not panel.button.disabled
    panel.button.click()
    assert recorded == [(GO, "staging verified by hand")]


# -- configuration ----------------------------------------------------------------------------------------


def test_manual_checks_come_from_the_configuration(tmp_path):
    from conftest import write_config

    config = load_config(write_config(tmp_path / "a", state_dir=tmp_path / "state"))
    assert config.manual_checks == CHECKS
    bad = write_config(
        tmp_path / "b", state_dir=tmp_path / "state", edits={'"Test navigation",': '"Test: navigation",'}
    )
    with pytest.raises(ConfigError, match=r"smoke.manual_checks\[3\]: .* must not contain ':'"):
        load_config(bad)


# -- sessions ---------------------------------------------------------------------------------------------


def test_a_runbook_in_a_session_folder_records_there(tmp_path, monkeypatch):
    monkeypatch.setenv("HOTDASH_OUTPUTS", str(tmp_path / "archive"))
    assert default_release_dir(tmp_path).parent == tmp_path / "archive" / "interactive"
    (tmp_path / SESSION_MARKER).write_text("{}")
    assert default_release_dir(tmp_path) == tmp_path


def _ran(*outcomes: tuple[str, str]) -> list[SectionRecord]:
    return [
        SectionRecord(
            i,
            ALL_SECTIONS[key],
            outcome,
            AT,
            1.0,
            f"{key}.ipynb",
            failures=[f"{key} failed"] if outcome != "passed" else [],
        )
        for i, (key, outcome) in enumerate(outcomes, start=1)
    ]


PASSED_TO_GO = [
    ("preflight", "passed"),
    ("verify_secrets", "passed"),
    ("deploy_staging", "passed"),
    ("staging_smoke", "passed"),
    ("go_no_go", "passed"),
]


@pytest.mark.parametrize(
    ("sections", "outcome", "reason"),
    [
        (PASSED_TO_GO, "aborted", "ended before Step 4"),
        (PASSED_TO_GO[:4] + [("go_no_go", "failed")], "blocked", "stopped before production changed"),
        (PASSED_TO_GO + [("deploy_production", "failed"), ("rollback", "passed")], "rolled back", "rolled back"),
        (PASSED_TO_GO + [("deploy_production", "failed")], "rollback failed", "rollback runbook was not run"),
        (PASSED_TO_GO[:3] + [("go_no_go", "passed")], "error", "Step 3: Quick staging smoke test was not run"),
        (
            PASSED_TO_GO
            + [
                ("deploy_production", "passed"),
                ("production_smoke", "passed"),
                ("notify", "passed"),
                ("watch", "passed"),
            ],
            "released",
            "all sections passed",
        ),
    ],
    ids=["stopped early", "no-go", "rolled back", "not rolled back", "out of order", "released"],
)
def test_a_sessions_sections_add_up_to_an_outcome_by_the_runners_rules(sections, outcome, reason):
    got, why = session_outcome(_ran(*sections))
    assert got == outcome and reason in why


def _deployed(*versions: int, earlier: tuple[int, ...] = ()) -> dict[str, dict]:
    """Results of a deploy_production section that made these production releases."""
    return {
        "deploy_production": {
            "records": {
                "deployment": {"version": versions[-1], "status": "complete"} if versions else {"version": None},
                "earlier_deployments": [{"version": v, "status": "complete"} for v in earlier],
            }
        }
    }


@pytest.mark.parametrize(
    ("sections", "results", "outcome", "reason"),
    [
        (
            PASSED_TO_GO[:4] + [("go_no_go", "failed"), ("deploy_production", "passed")],
            _deployed(3),
            "rollback failed",
            "yet production was deployed (v3 (complete)) and not rolled back: production needs a person",
        ),
        (
            PASSED_TO_GO[:4] + [("go_no_go", "failed"), ("deploy_production", "refused")],
            _deployed(earlier=(2,)),
            "rollback failed",
            "yet production was deployed (v2 (complete))",
        ),
        (
            PASSED_TO_GO[:4] + [("go_no_go", "failed"), ("deploy_production", "refused")],
            _deployed(),
            "blocked",
            "stopped before production changed",
        ),
        (PASSED_TO_GO + [("deploy_production", "refused")], _deployed(), "blocked", "production not changed"),
        (
            PASSED_TO_GO + [("deploy_production", "passed")],
            _deployed(4),
            "aborted",
            "ended before Step 5: Production smoke test; production was deployed (v4 (complete)) and not verified",
        ),
        (
            PASSED_TO_GO[:4] + [("go_no_go", "failed"), ("deploy_production", "passed"), ("rollback", "passed")],
            _deployed(3),
            "rolled back",
            "yet production was deployed (v3 (complete)); rolled back",
        ),
    ],
    ids=["deployed after no-go", "deployed, then refused", "refused only", "refused after go", "unverified", "undone"],
)
def test_a_sessions_outcome_comes_from_what_was_deployed_not_the_last_gate(sections, results, outcome, reason):
    """Observed: a sealed session said "stopped before production changed" above its own
    "Step 4: Deploy to production, version 3, PASSED"."""
    got, why = session_outcome(_ran(*sections), results)
    assert got == outcome and reason in why
    assert got == "blocked" or "before production changed" not in why


def test_a_session_sealed_later_than_it_began_keeps_the_hash_chain_in_order(tmp_path):
    """The session began before the release sealed ahead of it; its place is when it was sealed."""
    app = tmp_path / "hotdash-production"

    def seal(release_id: str, **manifest) -> None:
        (app / release_id).mkdir(parents=True)
        data = {"release_id": release_id, **manifest, **chain_link(app, release_id), "files": {}}
        (app / release_id / MANIFEST).write_text(json.dumps(data))

    seal("20261125T103000Z-aaaaaa", started_at="2026-11-25T10:30:00Z")
    seal(
        "20261125T110000Z-bbbbbb",
        started_at="2026-11-25T10:00:00Z",
        interactive=True,
        session={"sealed_at": "2026-11-25T11:00:00Z"},
    )
    assert verify_chain(app) == []
