"""The engineer in JupyterLab, as far as a test can follow: each runbook executed cell by
cell by nbclient in a fresh kernel (as JupyterLab's kernel runs it, widget state stored),
clicks made in the kernel the way a widget delivers them, attestations given headless as
papermill parameters, a configuration that makes them blocking refusing production
without them, and a `runbook lab` session sealed like a release.

The kernels find their configuration and archive root through HOTDASH_CONFIG and
HOTDASH_OUTPUTS, so nothing here writes into the repository's outputs/ or .rehearsal/.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, fields
from pathlib import Path

import nbformat
import papermill
import pytest
from conftest import SESSION, Rehearsal, make_rehearsal, write_config
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError
from papermill.exceptions import PapermillExecutionError

from hotdash_release.archive.seal import read_manifest
from hotdash_release.config import DEFAULT_MANUAL_CHECKS
from hotdash_release.errors import UsageError
from hotdash_release.interactive.session import SESSION_MARKER, create_session, read_session
from hotdash_release.locks import live_release
from hotdash_release.paths import RUNBOOKS_DIR
from hotdash_release.record import events
from hotdash_release.results import read_section_result, results_path, write_json_atomic
from hotdash_release.runner import ReleaseOptions
from hotdash_release.secrets.required import seed_rehearsal_secrets

WIDGET_STATE = "application/vnd.jupyter.widget-state+json"
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
#: runbooks/ in plan order; with its default parameters deploy and smoke_test are the staging steps.
BY_HAND = ["preflight", "verify_secrets", "deploy", "smoke_test", "go_no_go", "notify", "rollback"]
ATTESTATION_CRITERIA = (
    "Staging manual checks attested by a person",
    "Go/No-Go decision attested by a person, with a reason",
)
#: runbooks/hotdash.toml with both attestation criteria blocking.
BLOCKING = {
    f'name = "{name}"\nmeasure = "{measure}"\nexpect = true\nwhen_not_met = "acceptable"': f'name = "{name}"\nmeasure = "{measure}"\nexpect = true\nwhen_not_met = "blocking"'
    for name, measure in zip(
        ATTESTATION_CRITERIA, ("staging_manual_checks_attested", "go_no_go_decision_attested"), strict=False
    )
}
#: Cells a test adds before a gate: what clicking the widgets in JupyterLab does in the kernel.
TICK_EVERY_CHECK = """panel = _  # the manual checks panel displayed by the cell above
for check in panel.evidence:
    panel.note(check).value = "seen in Chromium"
    panel.checkbox(check).value = True"""
DECIDE_GO = """panel = _  # the decision panel displayed by the cell above
panel.choice.value = "Go"
panel.reason.value = "staging verified by hand"
panel.button.click()"""
DECIDE_NO_GO = """panel = _
panel.choice.value = "No-go"
panel.reason.value = "not before the weekend"
panel.button.click()"""


def execute(source: Path, saved_as: Path, *, cwd: Path, clicks: str = "") -> str | None:
    """Run a notebook top to bottom in a fresh kernel and save it with its outputs and widget
    state, as JupyterLab saves it; `clicks` runs just before the gate. Returns the error the
    notebook stopped with, if any."""
    notebook = nbformat.read(source, as_version=4)
    if clicks:
        notebook.cells.insert(len(notebook.cells) - 1, nbformat.v4.new_code_cell(clicks))
    client = NotebookClient(
        notebook,
        kernel_name="python3",
        timeout=120,
        store_widget_state=True,
        resources={"metadata": {"path": str(cwd)}},
    )
    error = None
    try:
        client.execute()
    except CellExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue}"
    nbformat.write(notebook, saved_as)
    return error


def run_papermill(name: str, folder: Path, **parameters) -> str | None:
    """A runbook as CI runs it: papermill, parameters injected, from runbooks/."""
    try:
        papermill.execute_notebook(
            str(RUNBOOKS_DIR / f"{name}.ipynb"),
            str(folder / f"{name}.ipynb"),
            parameters={"release_dir": str(folder), **parameters},
            kernel_name="python3",
            progress_bar=False,
            cwd=str(RUNBOOKS_DIR),
        )
    except PapermillExecutionError as exc:
        return f"{exc.ename}: {exc.evalue}"
    return None


def widget_states(notebook_path: Path, model_name: str) -> list[dict]:
    notebook = nbformat.read(notebook_path, as_version=4)
    state = notebook.metadata["widgets"][WIDGET_STATE]["state"]
    return [model["state"] for model in state.values() if model["model_name"] == model_name]


def verdicts(folder: Path) -> dict[str, str]:
    rows = read_section_result(folder, "go_no_go")["records"]["criteria"]["rows"]
    return {row["criterion"]: row["verdict"] for row in rows}


@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    world = make_rehearsal(tmp_path_factory.mktemp("lab"), wait_timeout_s=4)
    with pytest.MonkeyPatch.context() as env:
        env.setenv("HOTDASH_CONFIG", str(world.config))
        env.setenv("HOTDASH_OUTPUTS", str(world.outputs))
        env.setenv("HOTDASH_OPERATOR", "alice")
        yield world
    world.platform().stop()


@pytest.fixture(scope="module")
def blocking_config(lab: Rehearsal) -> Path:
    return write_config(lab.root / "blocking", state_dir=lab.state_dir, wait_timeout_s=4, edits=BLOCKING)


@dataclass
class ByHand:
    workdir: Path  # where the kernels ran and the executed notebooks were saved
    errors: dict[str, str | None]
    results: Path  # where the runbooks recorded: release_dir "" outside a session


@pytest.fixture(scope="module")
def by_hand(lab: Rehearsal) -> ByHand:
    """Every runbook of runbooks/ with its default parameters, in plan order, each in a fresh kernel,
    on a rehearsal platform with secrets (what `runbook release` and `runbook lab` give it)."""
    seed_rehearsal_secrets(lab.platform(), ["hotdash-staging", "hotdash-production"])
    # Outside a session the sections record in a folder per UTC day: a walk-through that crosses
    # midnight splits in two, as it would for a person. It takes under a minute, so a second
    # walk-through stays within one day.
    for _ in range(2):
        workdir = lab.root / "by-hand"
        shutil.rmtree(workdir, ignore_errors=True)
        shutil.rmtree(lab.outputs / "interactive", ignore_errors=True)
        workdir.mkdir()
        errors = {
            name: execute(RUNBOOKS_DIR / f"{name}.ipynb", workdir / f"{name}.ipynb", cwd=workdir) for name in BY_HAND
        }
        days = sorted((lab.outputs / "interactive").iterdir())
        if len(days) == 1:
            return ByHand(workdir, errors, days[0])
    pytest.fail(f"the by-hand sections recorded in {len(days)} folders: {[d.name for d in days]}")


# -- each runbook, top to bottom, in a fresh kernel -------------------------------------------------------


@pytest.mark.parametrize("name", BY_HAND)
def test_every_runbook_runs_top_to_bottom_in_a_fresh_kernel_with_its_defaults(by_hand, name):
    error = by_hand.errors[name]
    code = [c for c in nbformat.read(by_hand.workdir / f"{name}.ipynb", as_version=4).cells if c.cell_type == "code"]
    if name in ("notify", "rollback"):
        # Production was never deployed here (issue 24): nobody is told it was, and there is nothing
        # known to restore or to check; the refusal is recorded and stops the notebook where it is.
        assert error and error.startswith(("Refused", "GateFailed")), error
        assert (
            "production was not deployed" in error
            or "recorded no production deploy" in error
            or ("not running on the local target" in error)
        ), error
        key = "notify" if name == "notify" else "rollback"
        assert read_section_result(by_hand.results, key)["outcome"] in ("refused", "failed")
        return
    assert error is None
    assert all(c.execution_count for c in code), "every cell ran, the gate included"


def test_runbooks_run_by_hand_record_under_the_archive_root_of_the_environment(lab, by_hand):
    assert by_hand.results.parent == lab.outputs / "interactive"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", by_hand.results.name), "a folder per UTC day"
    assert sorted(p.stem for p in (by_hand.results / "results").glob("*.json")) == sorted(
        ["preflight", "verify_secrets", "deploy_staging", "staging_smoke", "go_no_go", "notify", "rollback"]
    )


@pytest.mark.parametrize(("name", "model"), [("smoke_test", "CheckboxModel"), ("go_no_go", "ToggleButtonsModel")])
def test_widget_state_is_recorded_in_the_output_notebook(by_hand, name, model):
    states = widget_states(by_hand.workdir / f"{name}.ipynb", model)
    if name == "smoke_test":
        assert sorted(s["description"] for s in states) == sorted(DEFAULT_MANUAL_CHECKS)
        assert not any(s.get("value") for s in states), "nobody ticked anything"
    else:
        assert [s["_options_labels"] for s in states] == [["Go", "No-go"]]
        assert states[0].get("index") is None, "no decision taken"
    notebook = nbformat.read(by_hand.workdir / f"{name}.ipynb", as_version=4)
    [panel] = [
        o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if WIDGET_VIEW in o.get("data", {})
    ][-1:]
    # One output: JupyterLab shows the widget (with its live table), other viewers the record's table.
    assert "not attested" in panel["data"]["text/html"] or "none recorded" in panel["data"]["text/html"], (
        "viewers without widgets (the archive's HTML) see the record as a table"
    )
    assert panel["metadata"]["hotdash_recorded"]["view"] in ("manual_checks", "decision_panel")


def test_without_attestations_the_criteria_are_shown_not_met_but_acceptable(by_hand):
    decision = read_section_result(by_hand.results, "go_no_go")["records"]["decision"]
    assert decision["decision"] == "GO"
    assert {verdicts(by_hand.results)[name] for name in ATTESTATION_CRITERIA} == {"not met (acceptable)"}


# -- headless: attestations as parameters, against a blocking configuration ------------------------------


def test_blocking_config_without_attestations_fails_the_production_gate(lab, by_hand, blocking_config):
    folder = shutil.copytree(by_hand.results, lab.root / "no-attestations")
    error = run_papermill("go_no_go", folder, config_path=str(blocking_config))
    assert error and error.startswith("GateFailed") and "NO-GO" in error
    assert all(name in error for name in ATTESTATION_CRITERIA)
    assert {verdicts(folder)[name] for name in ATTESTATION_CRITERIA} == {"blocking"}


def test_attestations_given_as_parameters_meet_the_blocking_gate(lab, by_hand, blocking_config):
    folder = shutil.copytree(by_hand.results, lab.root / "with-attestations")
    at = "2026-11-25T19:05:12Z"
    checks = [{"check": c, "by": "carol", "at": at, "note": "checked on staging"} for c in DEFAULT_MANUAL_CHECKS]
    go = [{"check": "Go", "by": "carol", "at": at, "note": "staging verified by hand"}]
    assert run_papermill("smoke_test", folder, config_path=str(blocking_config), attestations=checks) is None
    assert run_papermill("go_no_go", folder, config_path=str(blocking_config), attestations=go) is None
    recorded = read_section_result(folder, "staging_smoke")["attestations"]
    assert {(a["check"], a["by"], a["at"], a["source"]) for a in recorded} == {
        (c, "carol", at, "parameter") for c in DEFAULT_MANUAL_CHECKS
    }
    assert {verdicts(folder)[name] for name in ATTESTATION_CRITERIA} == {"met"}
    decision = read_section_result(folder, "go_no_go")["records"]["decision"]
    assert decision["decision"] == "GO" and f"Go by carol at {at}: staging verified by hand" in decision["explanation"]


def test_a_release_of_a_blocking_config_without_attestations_is_a_no_go(lab, blocking_config):
    production_before = lab.platform().releases("hotdash-production")
    done = lab.runbook(
        "release", "--config", str(blocking_config), "--outputs", str(lab.outputs), "--operator", "test-operator"
    )
    assert done.returncode == 3, done.stdout + done.stderr
    folder = sorted((lab.outputs / "hotdash-production").glob("2*"))[-1]
    manifest = read_manifest(folder)
    assert manifest["sections"][-1]["key"] == "go_no_go" and manifest["sections"][-1]["outcome"] == "failed"
    assert lab.platform().releases("hotdash-production") == production_before, "production was not touched"
    report = (folder / "report.html").read_text()
    assert "NO-GO" in report and ATTESTATION_CRITERIA[0] in report


@pytest.mark.skipif(
    "attestations" not in {f.name for f in fields(ReleaseOptions)},
    reason="runner: ReleaseOptions.attestations and attest.section_parameters not wired yet",
)
def test_attest_flags_reach_the_sections_of_a_headless_release(lab, blocking_config):
    flags = [f"--attest=staging:{check}" for check in DEFAULT_MANUAL_CHECKS] + ["--attest=go_no_go:Go:rehearsal"]
    done = lab.runbook(
        "release",
        "--config",
        str(blocking_config),
        "--outputs",
        str(lab.outputs),
        "--operator",
        "test-operator",
        *flags,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    folder = sorted((lab.outputs / "hotdash-production").glob("2*"))[-1]
    recorded = read_section_result(folder, "staging_smoke")["attestations"]
    assert {(a["by"], a["source"]) for a in recorded} == {("test-operator", "parameter")}
    assert "Check dashboard loads" in (folder / "report.html").read_text()


# -- a session: runbook lab, step through, seal ------------------------------------------------------------


@dataclass
class Session:
    folder: Path
    lab_output: str
    errors: dict[str, str | None]


@pytest.fixture(scope="module")
def session(lab: Rehearsal, blocking_config: Path) -> Session:
    """`runbook lab`, then the whole plan stepped through in the session folder, with the manual
    checks ticked and a Go recorded in the widgets; against the blocking configuration."""
    made = lab.runbook(
        "lab",
        "--no-start",
        "--no-browser",
        "--port",
        "8899",
        "--config",
        str(blocking_config),
        "--outputs",
        str(lab.outputs),
        "--operator",
        "alice",
    )
    assert made.returncode == 0, made.stdout + made.stderr
    folder = Path(made.stdout.split("session: ", 1)[1].splitlines()[0])
    clicks = {"04-staging_smoke": TICK_EVERY_CHECK, "05-go_no_go": DECIDE_GO}
    with live_release(folder):  # what `runbook lab` holds while JupyterLab runs
        errors = {
            name: execute(folder / f"{name}.ipynb", folder / f"{name}.ipynb", cwd=folder, clicks=clicks.get(name, ""))
            for name in SESSION
        }
    return Session(folder, made.stdout, errors)


def test_lab_makes_a_session_folder_and_says_how_to_open_it(lab, session):
    assert session.folder.parent == lab.outputs / "interactive"
    marker = json.loads((session.folder / SESSION_MARKER).read_text())
    assert marker["operator"] == "alice" and marker["sealed_as"] is None
    assert sorted(p.stem for p in session.folder.glob("*.ipynb")) == SESSION + ["10-rollback"]
    assert (
        "-m hotdash_release.interactive.labserver" in session.lab_output
        and "--ServerApp.open_browser=False" in session.lab_output
    )
    assert "URL: http://127.0.0.1:8899/lab?token=" in session.lab_output
    assert f"runbook seal {session.folder}" in session.lab_output


def test_session_notebooks_carry_their_sections_parameters(session):
    notebook = nbformat.read(session.folder / "10-rollback.ipynb", as_version=4)
    [injected] = [c for c in notebook.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert 'environment = "production"' in injected.source and "blocking/hotdash.toml" in injected.source


def test_every_section_passes_in_the_session_with_widget_attestations(session):
    assert session.errors == dict.fromkeys(SESSION)
    recorded = read_section_result(session.folder, "staging_smoke")["attestations"]
    assert {(a["check"], a["by"], a["note"], a["source"]) for a in recorded} == {
        (c, "alice", "seen in Chromium", "widget") for c in DEFAULT_MANUAL_CHECKS
    }
    assert {verdicts(session.folder)[name] for name in ATTESTATION_CRITERIA} == {"met"}
    assert [s["value"] for s in widget_states(session.folder / "04-staging_smoke.ipynb", "CheckboxModel")] == [True] * 5


@pytest.fixture(scope="module")
def sealed(lab, session):
    done = lab.runbook("seal", str(session.folder), "--outputs", str(lab.outputs))
    assert done.returncode == 0, done.stdout + done.stderr
    release_id = json.loads((session.folder / SESSION_MARKER).read_text())["sealed_as"]
    return done, lab.outputs / "hotdash-production" / release_id


def test_a_sealed_session_is_archived_like_a_release_and_marked_interactive(lab, session, sealed):
    done, folder = sealed
    assert "RELEASED (exit 0)" in done.stdout
    manifest = read_manifest(folder)
    assert manifest["interactive"] is True and manifest["session"]["id"] == session.folder.name
    assert manifest["operator"] == "alice" and manifest["outcome"] == "released"
    assert [s["notebook"] for s in manifest["sections"]] == [f"{name}.ipynb" for name in SESSION]
    assert {f"{name}.html" for name in SESSION} <= set(manifest["files"])
    assert "results/go_no_go.json" in manifest["files"] and SESSION_MARKER not in manifest["files"]
    verified = lab.runbook("verify", "--outputs", str(lab.outputs))
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_the_report_and_the_archived_pages_show_what_people_attested(session, sealed):
    _, folder = sealed
    report = (folder / "report.html").read_text()
    assert "interactive session" in report and "Check dashboard loads" in report and "seen in Chromium" in report
    # The widget is gone from the archived page; the table kept current by the display handle is there.
    assert "all attested" in (folder / "04-staging_smoke.html").read_text()
    assert "Go by alice" in (folder / "05-go_no_go.html").read_text()


def test_a_session_is_sealed_once(lab, session, sealed):
    again = lab.runbook("seal", str(session.folder), "--outputs", str(lab.outputs))
    assert again.returncode == 2 and "sealed already" in again.stderr


def test_a_session_whose_notebook_was_not_saved_is_not_sealed(lab):
    folder = create_session(lab.outputs, operator="alice")
    with pytest.raises(UsageError, match="nothing was run"):
        read_session(folder)
    write_json_atomic(
        results_path(folder, "preflight"),
        {"section": "preflight", "outcome": "passed", "target": "local", "config_path": str(lab.config)},
    )
    events.note_result(folder, "preflight", by="alice", outcome="passed")  # as the section's run records it
    with pytest.raises(UsageError, match=r"01-preflight.ipynb has results but .* save it in JupyterLab"):
        read_session(folder)
    with pytest.raises(UsageError, match="is not a session folder"):
        read_session(lab.root)


# -- production only after GO, in a session too; seals that tell the truth ------------------------------


def test_in_a_session_production_is_refused_before_the_go_no_go_and_after_a_no_go(lab):
    """Observed: running 06-deploy_production before 05-go_no_go deployed production, and after a
    recorded No-go running 06 again deployed another version."""
    folder = create_session(lab.outputs, operator="alice", config_path=lab.config)
    production_before = lab.platform().releases("hotdash-production")

    def run(name: str, clicks: str = "") -> str | None:
        return execute(folder / f"{name}.ipynb", folder / f"{name}.ipynb", cwd=folder, clicks=clicks)

    for name in SESSION[:4]:
        assert run(name) is None, name
    early = run("06-deploy_production")
    assert early and early.startswith("DeployRefused") and "a go/no-go decision of GO (go_no_go has no result" in early
    assert read_section_result(folder, "deploy_production")["outcome"] == "refused"

    no_go = run("05-go_no_go", clicks=DECIDE_NO_GO)
    assert no_go and "NO-GO" in no_go
    again = run("06-deploy_production")
    assert again and again.startswith("DeployRefused") and "go_no_go failed" in again
    assert lab.platform().releases("hotdash-production") == production_before, "production never changed"

    results = folder / "results" / "deploy_production.json"
    saved = (folder / "06-deploy_production.ipynb").stat().st_mtime_ns
    os.utime(results, ns=(saved + 10**9, saved + 10**9))  # recorded after the notebook was saved
    stale = lab.runbook("seal", str(folder), "--outputs", str(lab.outputs))
    assert stale.returncode == 2, stale.stdout + stale.stderr
    assert "06-deploy_production.ipynb was saved before its section last recorded results" in stale.stderr

    os.utime(results, ns=(saved, saved))
    sealed = lab.runbook("seal", str(folder), "--outputs", str(lab.outputs))
    assert sealed.returncode == 3, sealed.stdout + sealed.stderr
    assert "BLOCKED (exit 3)" in sealed.stdout and "stopped before production changed" in sealed.stdout


# -- truthful after re-runs and seals ------------------------------------------------------------------------


def test_a_re_run_shows_the_attestations_a_person_gave(lab):
    """Observed: Run All on a smoke notebook erased its 5 attestations; only an untick withdraws one."""
    folder = create_session(lab.outputs, operator="alice", config_path=lab.config)
    for name in SESSION[:3]:
        assert execute(folder / f"{name}.ipynb", folder / f"{name}.ipynb", cwd=folder) is None, name
    smoke = folder / "04-staging_smoke.ipynb"
    assert execute(smoke, smoke, cwd=folder, clicks=TICK_EVERY_CHECK) is None
    given = read_section_result(folder, "staging_smoke")["attestations"]
    assert len(given) == 5
    assert execute(smoke, smoke, cwd=folder) is None, "Run All again, nobody clicks"
    assert read_section_result(folder, "staging_smoke")["attestations"] == given
    assert [s["value"] for s in widget_states(smoke, "CheckboxModel")] == [True] * 5, "shown ticked"


def test_a_sealed_session_is_read_only(lab, session, sealed):
    before = (session.folder / "results" / "staging_smoke.json").read_bytes()
    error = execute(session.folder / "04-staging_smoke.ipynb", lab.root / "after-seal.ipynb", cwd=session.folder)
    assert error and error.startswith("UsageError") and "read-only" in error and sealed[1].name in error
    assert (session.folder / "results" / "staging_smoke.json").read_bytes() == before


def test_the_archive_draws_every_recorded_view_from_the_results_and_drops_empty_cells(tmp_path):
    """Observed: after a page reload the panel's table stopped following, and the stale table was what
    got archived ("none recorded" on the page, MET in the report); an empty cell was archived."""
    from hotdash_release.interactive.recorded import output_metadata
    from hotdash_release.interactive.session import archive_notebook

    notebook = nbformat.v4.new_notebook()
    panel = nbformat.v4.new_code_cell("run.manual_checks()")
    panel.outputs = [
        nbformat.v4.new_output(
            "display_data",
            data={"text/html": "<p>none attested yet</p>", "text/plain": "panel"},
            metadata=output_metadata("manual_checks", "staging_smoke"),
        )
    ]
    notebook.cells = [panel, nbformat.v4.new_code_cell(""), nbformat.v4.new_markdown_cell("  ")]
    saved = tmp_path / "04-staging_smoke.ipynb"
    nbformat.write(notebook, saved)
    checks = [("Test navigation", "Navigation (passed)"), ("Check dashboard loads", "Dashboard (passed)")]
    results = {
        "staging_smoke": {
            "records": {"manual_checks": {"title": "Manual checks", "evidence": checks}},
            "attestations": [
                {"check": c, "by": "alice", "at": "2026-11-25T19:05:12Z", "note": "ok", "source": "widget"}
                for c, _ in checks
            ],
        }
    }
    archived = tmp_path / "archived.ipynb"
    archive_notebook(saved, archived, results)
    [cell] = nbformat.read(archived, as_version=4).cells
    shown = cell.outputs[0]["data"]["text/html"]
    assert "all attested" in shown and "2026-11-25T19:05:12Z" in shown and "none attested" not in shown
    assert shown.index("Test navigation") < shown.index("Check dashboard loads"), "in the plan's order"


# -- a decision given after the gate ran: the gate decides again, the page shows the record -------------------


def test_a_decision_after_the_gate_decides_again_and_the_archive_shows_the_record_not_the_stale_error(lab):
    """Observed: after a decision the gate cell had to be re-run by hand (06 then refused with
    "go_no_go running"), and the sealed 05 page showed the recorded GO above the stale output of an
    earlier gate run (GateFailed ... NO-GO)."""
    folder = create_session(lab.outputs, operator="alice", config_path=lab.config)
    with live_release(folder):  # what `runbook lab` holds while JupyterLab runs
        for name in SESSION[:3]:
            assert execute(folder / f"{name}.ipynb", folder / f"{name}.ipynb", cwd=folder) is None, name
        smoke = folder / "04-staging_smoke.ipynb"
        assert execute(smoke, smoke, cwd=folder, clicks=TICK_EVERY_CHECK) is None

        # 05 run top to bottom with nobody deciding: the gate stops it (a person must decide) ...
        decide = folder / "05-go_no_go.ipynb"
        notebook = nbformat.read(decide, as_version=4)
        panel_at = next(i for i, c in enumerate(notebook.cells) if c.source.strip() == "run.attest_decision()")
        notebook.cells.insert(panel_at + 1, nbformat.v4.new_code_cell("panel = _"))
        # ... then the person decides in the panel, and nobody runs the gate cell again.
        notebook.cells.append(nbformat.v4.new_code_cell(DECIDE_GO.replace("panel = _  #", "#")))
        NotebookClient(
            notebook,
            kernel_name="python3",
            timeout=120,
            allow_errors=True,
            store_widget_state=True,
            resources={"metadata": {"path": str(folder)}},
        ).execute()
        nbformat.write(notebook, decide)
        [gate_cell] = [c for c in notebook.cells if c.source.strip() == "run.gate()"]
        assert gate_cell.outputs[-1]["output_type"] == "error", "the gate ran before the decision and failed"

        decided = read_section_result(folder, "go_no_go")
        assert decided["outcome"] == "passed", "the decision re-ran the gate: no cell to re-run by hand"
        assert decided["records"]["decision"]["decision"] == "GO"
        assert execute(folder / "06-deploy_production.ipynb", folder / "06-deploy_production.ipynb", cwd=folder) is None
    assert read_section_result(folder, "deploy_production")["outcome"] == "passed"

    from hotdash_release.interactive.session import archive_notebook

    archived = lab.root / "archived-05.ipynb"
    archive_notebook(decide, archived, {"go_no_go": decided}, "go_no_go")
    [shown] = [c for c in nbformat.read(archived, as_version=4).cells if c.source.strip() == "run.gate()"]
    assert [o["output_type"] for o in shown.outputs] == ["display_data"], "the stale error is not archived"
    page = shown.outputs[0]["data"]["text/html"]
    assert "earlier run of the gate" in page and "passed: the release may go on" in page
    assert "GateFailed" not in json.dumps(shown.outputs)
