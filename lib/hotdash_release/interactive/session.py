"""Interactive sessions: the release engineer walks the plan in JupyterLab, and what they
did is archived like a headless release.

`runbook lab` makes a session folder, <outputs>/interactive/<session id>/, and starts
JupyterLab there. The folder holds one copy of a runbook per plan section, named and
parameterized the way a headless release runs it: 03-deploy_staging.ipynb is deploy.ipynb
with `environment = "staging"` injected below its parameters cell, as papermill would.
So runbooks/ stays clean in git, staging and production keep separate executed
notebooks, and the folder already has the archive's layout. A marker file makes it a
session: a runbook whose `release_dir` is "" and whose kernel runs in a session folder
(JupyterLab starts kernels in the notebook's folder) records its results there.

`runbook seal <session folder>` archives what was run into <outputs>/<app>/<release id>/
with the same functions as a headless release (archive.seal_release: HTML of each
notebook as JupyterLab saved it, the report, the secret scan, the hash-chained
manifest), marked "interactive": true. The release id is drawn when sealing, under the
app's release lock, so the hash chain stays in order.
"""

from __future__ import annotations

import json
import os
import re
import secrets as _random
import shutil
import socket
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

from ..config import ReleaseConfig, load_config
from ..decisions.attest import check_person
from ..errors import UsageError
from ..paths import DEFAULT_CONFIG, RUNBOOKS_DIR, outputs_root
from ..plan import PLAN, PRODUCTION_CHANGING, ROLLBACK, Section
from ..record.events import EVENTS, SESSION_MARKER, recorded_results
from ..results import RESULTS_DIR, results_path, utc_now, write_json_atomic

if TYPE_CHECKING:
    import nbformat
from ..runner import ReleaseOptions, ReleaseRecord, SectionRecord, new_release_id, release_inputs, release_lock_dir

#: The session's Jupyter data folder (its kernel spec), first on JupyterLab's JUPYTER_PATH; hidden in the file browser.
LAB_DATA_DIR = ".hotdash-lab"
CHECKPOINTS = ".ipynb_checkpoints"  # JupyterLab's (FileCheckpoints): <name>-checkpoint.ipynb
#: JupyterLab's workspace (open tabs, layout) of this session only: a new session never reopens
#: the tabs of the last one (8 kernels starting at once).
WORKSPACES_DIR = ".jupyterlab-workspaces"
INTERACTIVE_DIR = "interactive"
#: Unlike a release id (20261125T190512Z-a1b2c3), so the archive index never takes a session for a release.
SESSION_ID = re.compile(r"^lab-\d{8}T\d{6}Z-[0-9a-f]{6}$")
#: Where a section's notebook sits, in a session and in the archive: 01-preflight ... 09-watch, 10-rollback.
SECTION_ORDER: tuple[Section, ...] = PLAN + (ROLLBACK,)

Progress = Callable[[str], None]


# -- where a runbook records ---------------------------------------------------------------------


def default_release_dir(cwd: Path | None = None) -> Path:
    """Where a runbook run with release_dir "" records: the session folder it runs in, if any;
    else <outputs>/interactive/<UTC date>, shared by the sections run by hand that day."""
    cwd = Path.cwd() if cwd is None else cwd
    if is_session(cwd):
        return cwd
    return outputs_root() / INTERACTIVE_DIR / datetime.now(UTC).strftime("%Y-%m-%d")


def is_session(folder: Path) -> bool:
    return (folder / SESSION_MARKER).is_file()


def section_file(section: Section) -> str:
    return f"{SECTION_ORDER.index(section) + 1:02d}-{section.key}.ipynb"


# -- making a session -----------------------------------------------------------------------------


def new_session_id() -> str:
    return f"lab-{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{_random.token_hex(3)}"


def create_session(
    outputs: Path, *, operator: str, config_path: Path | None = None, progress: Progress = print
) -> Path:
    """A new session folder with one parameterized runbook per section and the marker; on the
    local target, rehearsal secrets for apps that have none, as `runbook release` gives them."""
    check_person(operator, key="--operator")
    config = load_config(config_path)  # a bad configuration stops here, before any folder exists
    config.check_outputs(outputs)
    if config.default_target == "local":
        _seed_rehearsal_secrets(config, progress)
    session_id = new_session_id()
    folder = Path(outputs) / INTERACTIVE_DIR / session_id
    folder.mkdir(parents=True)
    # Another configuration than the repository's is written into each notebook: the session keeps it.
    parameters = {"config_path": str(config.path)} if config.path != DEFAULT_CONFIG.resolve() else {}
    from .labserver import skip_iri_checker

    skip_iri_checker()  # 1.4 s of CPU that nbformat's import would spend on a checker nothing uses
    import nbformat  # here: every runbook kernel imports this module, and sections never need it

    from ..execution.labkernels import NOTEBOOK_KERNELSPEC, write_kernelspec

    write_kernelspec(folder / LAB_DATA_DIR)  # its kernels are forks of a kernel template (labkernels.py)
    for section in SECTION_ORDER:
        notebook = section_notebook(section, {**parameters, **section.notebook_parameters()})
        notebook.metadata["kernelspec"] = dict(NOTEBOOK_KERNELSPEC)
        nbformat.write(notebook, folder / section_file(section))
    # JupyterLab makes a notebook's first checkpoint when it first opens it, and only then asks for
    # its kernel: made here (the same file), opening a notebook starts its kernel at once.
    (folder / CHECKPOINTS).mkdir()
    for section in SECTION_ORDER:
        name = section_file(section)
        shutil.copy2(folder / name, folder / CHECKPOINTS / name.replace(".ipynb", "-checkpoint.ipynb"))
    write_json_atomic(
        folder / SESSION_MARKER,
        {
            "session_id": session_id,
            "created_at": utc_now(),
            "operator": operator,
            "config_path": str(config.path),
            "runbooks_sha256": release_inputs(config)["runbooks_sha256"],
            "sealed_as": None,
        },
    )
    return folder


def _seed_rehearsal_secrets(config: ReleaseConfig, progress: Progress) -> None:
    from ..secrets.required import seed_rehearsal_secrets
    from ..targets import make_target

    platform = make_target(config, "local")
    for app in seed_rehearsal_secrets(platform, [env.app for env in config.environments.values()]):
        progress(f"rehearsal: generated secrets for {app} (kept in the platform store, not in outputs/)")


def section_notebook(section: Section, parameters: dict) -> nbformat.NotebookNode:
    """The section's runbook with its parameters in a cell below the parameters cell, tagged
    injected-parameters as papermill tags it; the defaults stay visible above."""
    import nbformat
    import papermill
    from papermill.translators import translate_parameters

    notebook = nbformat.read(RUNBOOKS_DIR / section.notebook, as_version=4)
    notebook.metadata["hotdash"] = {
        "section": section.key,
        "runbook": section.notebook,
        "parameters": parameters,
        "papermill": papermill.__version__,  # whose translator wrote the parameters cell
    }
    if not parameters:
        return notebook
    source = translate_parameters(
        "python3", "python", parameters, f"Parameters of section {section.key}, set by `runbook lab`"
    )
    cell = nbformat.v4.new_code_cell(source.strip())
    cell.metadata["tags"] = ["injected-parameters"]
    at = next(i for i, c in enumerate(notebook.cells) if "parameters" in c.metadata.get("tags", []))
    notebook.cells.insert(at + 1, cell)
    return notebook


def read_marker(folder: Path) -> dict:
    path = Path(folder) / SESSION_MARKER
    if not path.is_file():
        raise UsageError(f"session: {folder} is not a session folder (no {SESSION_MARKER}; `runbook lab` makes one)")
    return json.loads(path.read_text(encoding="utf-8"))


# -- starting JupyterLab ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LabLaunch:
    """How JupyterLab is started on a session folder, and where the browser finds it."""

    folder: Path
    port: int
    token: str
    open_browser: bool = True

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/lab?token={self.token}"

    def command(self) -> list[str]:
        return [
            sys.executable,
            "-m",
            "hotdash_release.interactive.labserver",  # JupyterLab, started quicker (see the module)
            f"--ServerApp.root_dir={self.folder}",
            "--ServerApp.ip=127.0.0.1",
            f"--ServerApp.port={self.port}",
            "--ServerApp.port_retries=0",
            f"--IdentityProvider.token={self.token}",
            f"--LabApp.workspaces_dir={self.folder / WORKSPACES_DIR}",
            "--ServerApp.open_browser=" + ("True" if self.open_browser else "False"),
            # Starts the kernel template with the server, for the session's forked kernels.
            "--ServerApp.jpserver_extensions=hotdash_release.execution.labkernels=True",
        ] + (
            # Containers and CI machines run as root; JupyterLab refuses that unless told.
            ["--ServerApp.allow_root=True"] if os.geteuid() == 0 else []
        )


def plan_lab(folder: Path, *, port: int | None = None, open_browser: bool = True) -> LabLaunch:
    return LabLaunch(folder, port or free_port(), _random.token_hex(24), open_browser)


def free_port(first: int = 8888, tries: int = 20) -> int:
    """The first port from `first` on that nothing listens on (JupyterLab then takes it)."""
    for port in range(first, first + tries):
        with socket.socket() as probe:
            try:
                probe.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise UsageError(f"--port: ports {first}-{first + tries - 1} are all in use; name a free one")


def require_jupyterlab() -> None:
    if find_spec("jupyterlab") is None:
        raise UsageError(
            "lab: JupyterLab is not installed; install the interactive extra: "
            "make lab (or: .venv/bin/pip install -e '.[interactive]')"
        )


def start_lab(launch: LabLaunch, *, operator: str) -> int:
    """Run JupyterLab until it stops; its kernels inherit HOTDASH_OPERATOR (who attests).

    A child, not an exec: when it stops, this command says what is left running. Ctrl+C reaches
    JupyterLab from the terminal (it asks, then shuts down); a SIGTERM to this command is passed on.
    """
    import signal
    import subprocess

    from ..locks import live_release

    require_jupyterlab()
    # The session is a live release while this command runs: its kernels may change production.
    with live_release(launch.folder):
        lab = subprocess.Popen(launch.command(), env=lab_environment(launch, operator))
        previous = signal.signal(signal.SIGTERM, lambda *_: lab.terminate())
        try:
            return lab.wait()
        finally:
            signal.signal(signal.SIGTERM, previous)


def lab_environment(launch: LabLaunch, operator: str) -> dict[str, str]:
    """JupyterLab's environment: who attests, and the session's kernel spec first on JUPYTER_PATH."""
    data = [str(launch.folder / LAB_DATA_DIR), *filter(None, [os.environ.get("JUPYTER_PATH")])]
    return {**os.environ, "HOTDASH_OPERATOR": operator, "JUPYTER_PATH": os.pathsep.join(data)}


def runbook_command() -> str:
    """`runbook` as the person's shell can run it: the command beside this interpreter
    (.venv-lab/bin/runbook after `make lab`), relative to the working folder when under it;
    plain `runbook` only when that is the one on PATH."""
    script = Path(sys.executable).parent / "runbook"
    if not script.is_file() or shutil.which("runbook") == str(script):
        return "runbook"
    relative = os.path.relpath(script)
    return relative if not relative.startswith("..") else str(script)


def lab_stopped_message(folder: Path, target: str) -> str:
    """What JupyterLab leaves behind when it stops: the session to seal, and the rehearsal apps."""
    runbook = runbook_command()
    lines = [f"JupyterLab stopped. Seal the session: {runbook} seal {folder}"]
    if target == "local":
        lines.append(
            "The rehearsal apps it deployed keep running on 127.0.0.1 (staging and production); "
            f"stop them with: {runbook} platform stop"
        )
    return "\n".join(lines)


# -- sealing a session ------------------------------------------------------------------------------


@dataclass
class SessionFindings:
    """What a session recorded, read back from its folder for sealing."""

    folder: Path
    marker: dict
    results: dict[str, dict]
    config: ReleaseConfig
    target_name: str
    sections: list[SectionRecord] = field(default_factory=list)  # in section order


def read_session(folder: Path) -> SessionFindings:
    """The session's results and notebooks, refused if they cannot make a truthful archive."""
    marker = read_marker(folder)
    if marker.get("sealed_as"):
        raise UsageError(f"seal: session {folder.name} was sealed already as release {marker['sealed_as']}")
    results, unrecorded = recorded_results(folder)
    if unrecorded:  # the archive holds the session's own record, or nothing
        raise UsageError(f"seal: session {folder.name}: {unrecorded[0]}; restore it or start a new session")
    ran = [s for s in SECTION_ORDER if s.key in results]
    if not ran:
        raise UsageError(f"seal: nothing was run in session {folder.name}: no results/ to archive")
    config_path = _one_value(results, "config_path", folder)
    target_name = _one_value(results, "target", folder)
    findings = SessionFindings(folder, marker, results, load_config(config_path), target_name)
    findings.sections = [_section_record(folder, section, results[section.key]) for section in ran]
    return findings


def _one_value(results: dict[str, dict], name: str, folder: Path) -> str:
    """A release has one configuration and one target: every section must have used the same."""
    values = {r.get(name) for r in results.values()}
    if len(values) != 1 or None in values:
        raise UsageError(
            f"seal: the sections of session {folder.name} used different {name}s: "
            f"{', '.join(sorted(map(str, values)))}; a release uses one"
        )
    return values.pop()


def _section_record(folder: Path, section: Section, result: dict) -> SectionRecord:
    from ..archive.catalog import seconds_between

    notebook = folder / section_file(section)
    if not _has_outputs(notebook):
        raise UsageError(
            f"seal: {notebook.name} has results but its saved notebook shows no outputs; "
            "save it in JupyterLab (Ctrl+S), then seal again"
        )
    if results_path(folder, section.key).stat().st_mtime_ns > notebook.stat().st_mtime_ns:
        # The archive would show one run and record another (a re-run that was never saved).
        raise UsageError(
            f"seal: {notebook.name} was saved before its section last recorded results "
            f"({RESULTS_DIR}/{section.key}.json is newer); save it in JupyterLab (Ctrl+S), then seal again"
        )
    outcome = result.get("outcome", "error")
    error = ""
    if outcome == "running":
        outcome, error = "error", "the gate cell was not run after the last step (or after an attestation changed)"
    duration = seconds_between(result.get("started_at"), result.get("finished_at")) or 0.0
    return SectionRecord(
        SECTION_ORDER.index(section) + 1,
        section,
        outcome,
        result.get("started_at", ""),
        duration,
        notebook.name,
        error,
        list(result.get("failures") or []),
    )


def _has_outputs(path: Path) -> bool:
    if not path.is_file():
        return False
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    return any(cell.get("outputs") for cell in notebook.cells if cell.cell_type == "code")


STOPPED_BEFORE_PRODUCTION = "stopped before production changed: "


def session_outcome(sections: list[SectionRecord], results: dict[str, dict] | None = None) -> tuple[str, str]:
    """The release outcome the sections a person ran add up to, by the runner's rules, and
    never "stopped before production changed" when the records show production deployed."""
    outcome, reason = _outcome_by_gates(sections)
    deployed = production_deployments(results or {})
    if not deployed or outcome not in ("blocked", "aborted", "error"):
        return outcome, reason
    what = ", ".join(deployed)
    reason = reason.removeprefix(STOPPED_BEFORE_PRODUCTION)
    if outcome == "aborted":
        return outcome, f"{reason}; production was deployed ({what}) and not verified"
    rollback = next((s for s in sections if s.section.key == ROLLBACK.key), None)
    if rollback is not None and rollback.outcome == "passed":
        return "rolled back", f"{reason}, yet production was deployed ({what}); rolled back to what was serving"
    return (
        "rollback failed",
        f"{reason}, yet production was deployed ({what}) and not rolled back: production needs a person",
    )


def production_deployments(results: dict[str, dict]) -> list[str]:
    """Every production release the session's records say was made, e.g. "v3 (complete)"."""
    records = (results.get("deploy_production") or {}).get("records") or {}
    made = [*(records.get("earlier_deployments") or []), records.get("deployment") or {}]
    return [f"v{d['version']} ({d.get('status')})" for d in made if d.get("version") is not None]


def _outcome_by_gates(sections: list[SectionRecord]) -> tuple[str, str]:
    ran = {s.section.key: s for s in sections}
    for index, section in enumerate(PLAN):
        record = ran.get(section.key)
        if record is None:
            later = next((s.section.title for s in sections if s.section in PLAN[index + 1 :]), None)
            if later:
                return "error", f"{section.title} was not run before {later}: the plan was not followed in order"
            return "aborted", f"the interactive session ended before {section.title}"
        if record.outcome == "passed":
            continue
        where = f"{section.title}: {_first(record)}"
        if record.outcome == "refused":
            return "blocked", f"production not changed: {_first(record)}"
        if section.key == "notify":
            return "released", f"released, but the notification failed ({_first(record)})"
        if section.key in PRODUCTION_CHANGING:
            rollback = ran.get(ROLLBACK.key)
            if rollback is None:
                return "rollback failed", f"{where}; the rollback runbook was not run in the session"
            if rollback.outcome == "passed":
                return "rolled back", f"{where}; rolled back to what was serving"
            return "rollback failed", f"{where}; rollback failed: {_first(rollback)}"
        return "blocked", f"{STOPPED_BEFORE_PRODUCTION}{where}"
    return "released", "all sections passed"


def _first(record: SectionRecord) -> str:
    return (record.failures[0] if record.failures else record.error) or record.outcome


@dataclass
class SessionRecord(ReleaseRecord):
    """A release record whose sections a person ran in JupyterLab; the manifest says so."""

    interactive: bool = True
    session: dict = field(default_factory=dict)  # id, folder, created_at, sealed_at, sealed_by


def seal_session(
    folder: Path, *, outputs: Path | None = None, operator: str = "", progress: Progress = print
) -> SessionRecord:
    """Archive a session into <outputs>/<app>/<release id>/; return the sealed record."""
    from ..archive.index import rebuild_after_release
    from ..archive.seal import seal_release
    from ..archive.signing import signer_for
    from ..locks import release_lock
    from ..secrets.required import redactor_for, refuse_secrets_in
    from ..targets import make_target, secret_source_for

    folder = Path(folder).resolve()
    findings = read_session(folder)
    outputs = Path(outputs or outputs_root()).resolve()
    config, target_name = findings.config, findings.target_name
    target = make_target(config, target_name)
    redactor = redactor_for(config, secret_source_for(config, target_name, target))
    signer = signer_for(target_name)  # a missing or bad key stops here, before anything is copied
    operator = operator or findings.marker.get("operator") or ""
    if operator:
        check_person(operator, key="--operator")
    config.check_outputs(outputs)
    refuse_secrets_in(redactor, {"--operator": operator})
    app_dir = outputs / config.environment("production").app
    release_id = new_release_id()
    with release_lock(release_lock_dir(target, app_dir), app_dir.name, release_id=release_id, operator=operator):
        record = _session_record(findings, release_id, app_dir / release_id, operator, target)
        record.inputs = {**release_inputs(config), "runbooks_sha256": findings.marker.get("runbooks_sha256")}
        _copy_session_files(findings, record.release_dir)
        seal_release(record, redactor, signer=signer)
        if record.archive_problems:
            record.outcome, record.reason = "error", "; ".join(record.archive_problems)
        else:
            write_json_atomic(
                folder / SESSION_MARKER,
                {**findings.marker, "sealed_as": release_id, "sealed_at": record.session["sealed_at"]},
            )
    progress(
        f"sealed session {folder.name} as release {release_id}: {record.outcome.upper()} "
        f"(exit {record.exit_code})\n  {record.reason}\n  report: {record.release_dir / 'report.html'}"
    )
    if record.checkpoint:
        progress(
            f"  chain head: {record.head_pin} (keep it; check with `runbook verify --expect-head {record.head_pin}`)"
        )
    rebuild_after_release(outputs, progress)
    return record


def _session_record(
    findings: SessionFindings, release_id: str, release_dir: Path, operator: str, target
) -> SessionRecord:
    outcome, reason = session_outcome(findings.sections, findings.results)
    sections = findings.sections
    marker = findings.marker
    options = ReleaseOptions(
        config_path=findings.config.path,
        target=findings.target_name,
        operator=operator,
        outputs=release_dir.parent.parent,
    )
    session = {
        "id": findings.folder.name,
        "folder": str(findings.folder),
        "created_at": marker.get("created_at"),
        "sealed_at": utc_now(),
        "sealed_by": operator,
    }
    finished = max((r.get("finished_at") or "" for r in findings.results.values()), default="")
    return SessionRecord(
        release_id,
        release_dir,
        findings.config,
        options,
        findings.target_name,
        operator,
        started_at=sections[0].started_at,
        finished_at=finished,
        parameters={
            "target": findings.target_name,
            "config_path": str(findings.config.path),
            "operator": operator,
            "release_dir": str(findings.folder),
        },
        sections=sections,
        outcome=outcome,
        reason=f"interactive session {findings.folder.name}: {reason}",
        target=target,
        session=session,
    )


def _copy_session_files(findings: SessionFindings, release_dir: Path) -> None:
    """The saved notebooks and the results of the sections that ran; never the marker or checkpoints."""
    (release_dir / RESULTS_DIR).mkdir(parents=True)
    for record in findings.sections:
        archive_notebook(
            findings.folder / record.notebook, release_dir / record.notebook, findings.results, record.section.key
        )
        name = f"{RESULTS_DIR}/{record.section.key}.json"
        shutil.copy2(findings.folder / name, release_dir / name)
    shutil.copy2(findings.folder / EVENTS, release_dir / EVENTS)  # the record the results are views of


def archive_notebook(saved: Path, archived: Path, results: dict[str, dict], section: str | None = None) -> None:
    """A session's notebook as the archive keeps it: as JupyterLab saved it, but with every view of
    a record drawn from the results being archived (a page saved before the last change, or after a
    reload, shows what was recorded then), and without empty cells (Shift+Enter on the last cell)."""
    import nbformat

    from .recorded import redraw_outputs

    notebook = nbformat.read(saved, as_version=4)
    notebook.cells = [cell for cell in notebook.cells if cell.source.strip() or cell.get("outputs")]
    redraw_outputs(notebook, results, section)
    nbformat.write(notebook, archived)
    shutil.copystat(saved, archived)
