"""The release runner: the plan's sections in order, each a papermill run in a fresh kernel.

It validates everything before the first section, stops at the first failed gate,
runs the rollback runbook when production was changed and failed, and always leaves
an archive (executed notebooks, their HTML, the report, the manifest) saying where
and why it stopped. Hooks for archiving and progress live here, in one place.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets as _random
import shutil
import signal
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .config import ENVIRONMENTS, ReleaseConfig, load_config
from .decisions.attest import check_release_attestations, section_parameters
from .errors import UsageError
from .execution.pool import KERNELS_AHEAD, KernelPool
from .locks import release_lock
from .paths import OUTPUTS_DIR, RUNBOOKS_DIR
from .plan import ALL_SECTIONS, PLAN, PRODUCTION_CHANGING, ROLLBACK, Section
from .results import RESULTS_DIR, read_section_result, results_path, utc_now, write_json_atomic
from .secrets.required import redactor_for, seed_rehearsal_secrets
from .targets import make_target, secret_source_for

if TYPE_CHECKING:
    from .archive.seal import ExportWorker

#: Exit codes: documented in README, asserted by the end-to-end tests.
EXIT_RELEASED = 0
EXIT_ERROR = 1
EXIT_USAGE = 2
EXIT_BLOCKED = 3
EXIT_ROLLED_BACK = 4
EXIT_ROLLBACK_FAILED = 5
EXIT_LOCKED = 6
EXIT_ABORTED = 130

OUTCOME_EXIT = {
    "released": EXIT_RELEASED,
    "blocked": EXIT_BLOCKED,
    "rolled back": EXIT_ROLLED_BACK,
    "rollback failed": EXIT_ROLLBACK_FAILED,
    "aborted": EXIT_ABORTED,
    "error": EXIT_ERROR,
}

#: Defects the local rehearsal platform can build in (see standin_app.py).
REHEARSAL_DEFECTS = (
    "health_failing",
    "slow",
    "crash_at_start",
    "wrong_api_key",
    "health_malformed",
    "health_stale",
    "health_flapping",
    "hostile_content",
)

DEFAULT_OUTPUTS = OUTPUTS_DIR
_RELEASE_ID = re.compile(r"^\d{8}T\d{6}Z-[0-9a-f]{6}$")

Progress = Callable[[str], None]


@dataclass
class ReleaseOptions:
    config_path: Path | None = None
    target: str | None = None
    defects: dict[str, str] = field(default_factory=dict)  # environment -> rehearsal defect
    operator: str = ""
    reason: str = ""
    outputs: Path = DEFAULT_OUTPUTS
    kernel_name: str = "python3"
    resume: str | None = None  # id of a stopped release to continue
    skip_staging_check: bool = False  # the workflow's input: needs a reason, and the report says so
    kernels_ahead: int = KERNELS_AHEAD  # kernels booting for the sections to come (bench/ compares)
    fork_kernels: bool = True  # kernels forked from a template that imported the library (bench/ compares)
    # --attest: section key -> the `attestations` parameter dicts of that section (attest.py)
    attestations: dict[str, list[dict]] = field(default_factory=dict)


@dataclass
class SectionRecord:
    index: int
    section: Section
    outcome: str  # passed | failed | refused (nothing changed) | error | skipped
    started_at: str
    duration_s: float
    notebook: str
    error: str = ""
    failures: list[str] = field(default_factory=list)
    reused_from: str | None = None  # the release whose recorded result this resume reused

    def budget_minutes(self, config: ReleaseConfig) -> float | None:
        key = self.section.budget_key or self.section.key
        return config.timeline_minutes.get(key)


@dataclass
class ReleaseRecord:
    release_id: str
    release_dir: Path
    config: ReleaseConfig
    options: ReleaseOptions
    target_name: str
    operator: str
    started_at: str
    parameters: dict
    sections: list[SectionRecord] = field(default_factory=list)
    outcome: str = "error"
    reason: str = ""  # why it ended the way it did
    finished_at: str = ""
    archive_problems: list[str] = field(default_factory=list)
    target: object = None
    inputs: dict = field(default_factory=dict)  # fingerprints of configuration and runbooks
    lock_note: dict | None = None  # a stale lock taken over
    resumed_from: str | None = None
    resume_folder: Path | None = None
    resume_manifest: dict | None = None
    kernels: KernelPool | None = None
    html_exports: object = None  # archive.HtmlExports: section pages written while the next section runs
    provenance: Future | None = None  # archive.release_provenance(), asked while the sections run

    @property
    def exit_code(self) -> int:
        return OUTCOME_EXIT[self.outcome]


class ReleaseAborted(Exception):
    """SIGINT or SIGTERM arrived while a release was running."""


def parse_defects(specs: list[str]) -> dict[str, str]:
    """`--break production:wrong_api_key` -> {"production": "wrong_api_key"}."""
    defects = {}
    for spec in specs:
        env, _, defect = spec.partition(":")
        if env not in ENVIRONMENTS or defect not in REHEARSAL_DEFECTS:
            raise UsageError(
                f"--break: {spec!r} is not ENVIRONMENT:DEFECT; environments: "
                f"{', '.join(ENVIRONMENTS)}; defects: {', '.join(REHEARSAL_DEFECTS)}"
            )
        defects[env] = defect
    return defects


def new_release_id() -> str:
    return f"{datetime.now(UTC):%Y%m%dT%H%M%SZ}-{_random.token_hex(3)}"


def validate_release_id(release_id: str) -> str:
    if not _RELEASE_ID.match(release_id):
        raise UsageError(f"release id: {release_id!r} is not like 20261125T190512Z-a1b2c3")
    return release_id


def release_inputs(config: ReleaseConfig) -> dict:
    """What a resume must find unchanged: the configuration and every runbook."""
    runbooks = hashlib.sha256()
    for notebook in sorted(RUNBOOKS_DIR.glob("*.ipynb")):
        runbooks.update(notebook.name.encode() + b"\0" + notebook.read_bytes())
    return {
        "config_sha256": hashlib.sha256(config.path.read_bytes()).hexdigest(),
        "runbooks_sha256": runbooks.hexdigest(),
    }


def _check_kernel(kernel_name: str) -> None:
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    specs = KernelSpecManager()
    try:
        specs.get_kernel_spec(kernel_name)
    except NoSuchKernel:
        allowed = ", ".join(sorted(specs.find_kernel_specs())) or "none installed"
        raise UsageError(f"--kernel: no Jupyter kernel named {kernel_name!r}; allowed: {allowed}") from None


def _check_writable(outputs: Path) -> None:
    try:
        outputs.mkdir(parents=True, exist_ok=True)
        probe = outputs / f".probe-{os.getpid()}"
        probe.write_text("")
        probe.unlink()
    except OSError as exc:
        raise UsageError(f"--outputs: {outputs} is not a writable folder ({exc.strerror})") from None


def prepare_release(options: ReleaseOptions) -> ReleaseRecord:
    """Everything that can be wrong with the input is found here, before any deploy."""
    if options.skip_staging_check and not options.reason.strip():
        raise UsageError("--skip-staging-check: needs --reason saying why staging is not checked")
    resumed = _resume_source(options) if options.resume else None
    config_path = Path(resumed[1]["parameters"]["config_path"]) if resumed else options.config_path
    config = load_config(config_path)
    target_name = resumed[1]["target"] if resumed else options.target or config.default_target
    config.target_settings(target_name)
    check_release_attestations(options.attestations, config.manual_checks)
    if options.defects and target_name != "local":
        raise UsageError(f"--break: rehearsal defects need --target local, not {target_name!r}")
    if options.operator and not re.fullmatch(r"[\w.@+ \[\]-]{1,64}", options.operator):
        raise UsageError("--operator: use letters, digits, space and . @ + - _ [ ] (at most 64)")
    inputs = release_inputs(config)
    if resumed and resumed[1].get("inputs") != inputs:
        raise UsageError(
            f"--resume: the configuration or runbooks changed since release {options.resume}; "
            "start a new release instead"
        )
    _check_kernel(options.kernel_name)
    _check_writable(options.outputs)
    target = make_target(config, target_name)
    from .results import default_operator

    operator = options.operator or default_operator()
    release_id = new_release_id()
    release_dir = options.outputs / config.environment("production").app / release_id
    parameters = {
        "target": target_name,
        "config_path": str(config.path),
        "operator": operator,
        "release_dir": str(release_dir),
    }
    record = ReleaseRecord(
        release_id,
        release_dir,
        config,
        options,
        target_name,
        operator,
        utc_now(),
        parameters,
        target=target,
        inputs=inputs,
    )
    if resumed:
        record.resumed_from = options.resume
        record.resume_folder, record.resume_manifest = resumed
    return record


def _resume_source(options: ReleaseOptions) -> tuple[Path, dict]:
    """The stopped release to continue: sealed, not released, found under --outputs."""
    validate_release_id(options.resume)
    if options.config_path or options.target:
        raise UsageError(
            "--resume: takes configuration and target from the release it resumes; drop --config and --target"
        )
    folders = [p for p in options.outputs.glob(f"*/{options.resume}") if p.is_dir()]
    if not folders:
        raise UsageError(f"--resume: no release {options.resume} under {options.outputs}")
    manifest_path = folders[0] / "manifest.json"
    if not manifest_path.is_file():
        raise UsageError(f"--resume: release {options.resume} was never sealed; it cannot be resumed")
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    if manifest["outcome"] == "released":
        raise UsageError(f"--resume: release {options.resume} was released; there is nothing to resume")
    return folders[0], manifest


def run_release(
    options: ReleaseOptions,
    *,
    progress: Progress = print,
    kernel_pool: KernelPool | None = None,
    export_worker: ExportWorker | None = None,
) -> ReleaseRecord:
    """Run the plan under the app's release lock; always seal an archive once it exists.

    kernel_pool, export_worker: helpers the caller started and closes. The `runbook` command
    starts its kernel pool first, so that the kernel template's imports and the first kernel
    overlap with preparing the release; a runner that runs several releases keeps both for
    all of them. Without them (or with a pool for other kernels) the release starts its own
    and ends them."""
    record = prepare_release(options)
    with release_lock(
        record.release_dir.parent, release_id=record.release_id, operator=record.operator
    ) as stale_holder:
        record.release_dir.mkdir(parents=True)
        if stale_holder:
            record.lock_note = {"taken_over_from": stale_holder, "at": utc_now()}
            progress(
                f"took over a stale lock of release {stale_holder.get('release_id')} "
                f"(pid {stale_holder.get('pid')} is gone)"
            )
        _run_and_seal(record, progress, kernel_pool, export_worker)
    progress(_summary(record))
    from .archive.index import rebuild_after_release

    rebuild_after_release(record.options.outputs, progress)
    return record


def _run_and_seal(
    record: ReleaseRecord, progress: Progress, kernel_pool: KernelPool | None, export_worker: ExportWorker | None
) -> None:
    from .archive.provenance import release_provenance
    from .archive.seal import HtmlExports

    options = record.options
    if kernel_pool is not None and kernel_pool.serves(options.kernel_name, RUNBOOKS_DIR, options.fork_kernels):
        record.kernels, own_pool = kernel_pool, False
    else:
        # First, so that the kernel template imports while the secrets are made ready.
        record.kernels, own_pool = (
            KernelPool(options.kernel_name, cwd=RUNBOOKS_DIR, ahead=options.kernels_ahead, fork=options.fork_kernels),
            True,
        )
    record.html_exports = HtmlExports(export_worker)
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="provenance") as asker:
        record.provenance = asker.submit(release_provenance)
        _run_sections_and_seal(record, progress, own_pool)


def _run_sections_and_seal(record: ReleaseRecord, progress: Progress, own_pool: bool) -> None:
    from .archive.seal import seal_release

    try:
        target = record.target
        if record.target_name == "local":
            seeded = seed_rehearsal_secrets(target, [e.app for e in record.config.environments.values()])
            for app in seeded:
                progress(f"rehearsal: generated secrets for {app} (kept in the platform store, not in outputs/)")
        redactor = redactor_for(record.config, secret_source_for(record.config, record.target_name, target))
    except BaseException:
        if own_pool:
            record.kernels.close()
        record.html_exports.finish()
        raise
    progress(
        f"HotDash release {record.release_id}: {record.config.environment('production').app} "
        f"via {record.target_name}, operator {record.operator}"
    )
    progress(f"archive: {record.release_dir}")
    previous_handlers = _raise_on_signals()
    try:
        start = _reuse_resumed_sections(record, progress) if record.resumed_from else 0
        _run_sections(record, start, progress, redactor)
    except ReleaseAborted as exc:
        record.outcome, record.reason = "aborted", f"{exc} during {_last_section(record)}"
    finally:
        if own_pool:
            record.kernels.close()
        _restore_signals(previous_handlers)
        record.finished_at = utc_now()
        seal_release(record, redactor, record.html_exports)
        if record.archive_problems:
            record.outcome = "error"
            record.reason = "; ".join(record.archive_problems)


def resume_point(manifest: dict) -> int:
    """Index in PLAN to continue from: the first section that did not pass. A failure in
    production was rolled back, so production is deployed again from its deploy step."""
    passed = {s["key"] for s in manifest["sections"] if s["outcome"] in ("passed", "skipped")}
    for index, section in enumerate(PLAN):
        if section.key not in passed:
            if section.key in PRODUCTION_CHANGING:
                return PLAN.index(ALL_SECTIONS["deploy_production"])
            return index
    return len(PLAN)


def _reuse_resumed_sections(record: ReleaseRecord, progress: Progress) -> int:
    """Copy the recorded results of the sections that passed before; return where to go on."""
    old_folder, manifest = record.resume_folder, record.resume_manifest
    start = resume_point(manifest)
    old_sections = {s["key"]: s for s in manifest["sections"]}
    for index, section in enumerate(PLAN[:start], start=1):
        old = old_sections[section.key]
        for name in (
            old["notebook"],
            Path(old["notebook"]).with_suffix(".html").name,
            f"{RESULTS_DIR}/{section.key}.json",
        ):
            if (old_folder / name).is_file():
                (record.release_dir / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(old_folder / name, record.release_dir / name)
        record.sections.append(
            SectionRecord(
                index,
                section,
                old["outcome"],
                old["started_at"],
                old["duration_s"],
                old["notebook"],
                old.get("error", ""),
                old.get("failures", []),
                reused_from=record.resumed_from,
            )
        )
        progress(f"[{index}/{len(PLAN)}] {section.title}: {old['outcome']} (reused from {record.resumed_from})")
    return start


def _run_sections(record: ReleaseRecord, start: int, progress: Progress, redactor) -> None:
    for index, section in enumerate(PLAN[start:], start=start + 1):
        if section.key == "staging_smoke" and record.options.skip_staging_check:
            _skip_section(record, section, index, progress)
            continue
        result = run_section(record, section, index, progress, redactor)
        if result.outcome == "passed":
            continue
        where = f"{section.title}: {_first(result)}"
        if result.outcome == "refused":
            # The deploy's own guard refused before changing anything: nothing to roll back.
            record.outcome, record.reason = "blocked", f"production not changed: {_first(result)}"
            return
        if section.key == "notify":
            # A failed notification is reported; it does not undo a good release.
            record.outcome, record.reason = "released", f"released, but the notification failed ({_first(result)})"
            return
        if section.key in PRODUCTION_CHANGING:
            progress("production failed its checks: running the rollback runbook")
            rollback = run_section(record, ROLLBACK, len(PLAN) + 1, progress, redactor)
            if rollback.outcome == "passed":
                record.outcome, record.reason = "rolled back", f"{where}; rolled back to what was serving"
            else:
                record.outcome, record.reason = "rollback failed", f"{where}; rollback failed: {_first(rollback)}"
            return
        record.outcome, record.reason = "blocked", f"stopped before production changed: {where}"
        return
    record.outcome, record.reason = "released", "all sections passed"
    if record.options.skip_staging_check:
        record.reason += f" (staging check skipped by {record.operator}: {record.options.reason})"


def _skip_section(record: ReleaseRecord, section: Section, index: int, progress: Progress) -> None:
    """skip_staging_check: the section does not run; its result says who skipped it and why,
    so the go/no-go shows the criterion as overridden rather than met."""
    override = {"by": record.operator, "reason": record.options.reason, "at": utc_now()}
    write_json_atomic(
        results_path(record.release_dir, section.key),
        {
            "section": section.key,
            "title": section.title,
            "environment": section.environment,
            "outcome": "skipped",
            "override": override,
            "failures": [],
            "records": {},
            "measures": {f"{section.environment}_smoke_passed": None},
            "started_at": override["at"],
            "finished_at": override["at"],
            "release_id": record.release_id,
        },
    )
    record.sections.append(
        SectionRecord(
            index,
            section,
            "skipped",
            override["at"],
            0.0,
            "",
            failures=[f"skipped by {record.operator}: {record.options.reason}"],
        )
    )
    progress(f"[{index}/{len(PLAN)}] {section.title}: SKIPPED by {record.operator} ({record.options.reason})")


def run_section(record: ReleaseRecord, section: Section, index: int, progress: Progress, redactor) -> SectionRecord:
    import papermill
    from papermill.exceptions import PapermillExecutionError

    from .execution.engine import ENGINE_NAME

    config = record.config
    parameters = {
        **record.parameters,
        **section.notebook_parameters(),
        **section_parameters(section.key, record.options.attestations),
    }
    if section.notebook == "deploy.ipynb" and section.environment in record.options.defects:
        parameters["rehearsal_defect"] = record.options.defects[section.environment]
    output = record.release_dir / f"{index:02d}-{section.key}.ipynb"
    budget = config.timeline_minutes.get(section.budget_key or section.key)
    label = f"[{index}/{len(PLAN)}] {section.title}" if section in PLAN else f"[{section.key}] {section.title}"
    progress(f"{label} ...")
    started_at, started = utc_now(), time.perf_counter()
    error = ""
    try:
        with record.kernels.kernel() as kernel:
            papermill.execute_notebook(
                str(RUNBOOKS_DIR / section.notebook),
                str(output),
                parameters=parameters,
                kernel_name=record.options.kernel_name,
                progress_bar=False,
                cwd=str(RUNBOOKS_DIR),
                km=kernel,
                engine_name=ENGINE_NAME,
            )
    except PapermillExecutionError as exc:
        error = f"{exc.ename}: {exc.evalue}".splitlines()[0]
    except ReleaseAborted as exc:
        # Keep what the section got to: papermill saved the notebook up to its last cell.
        record.sections.append(
            SectionRecord(index, section, "aborted", started_at, time.perf_counter() - started, output.name, str(exc))
        )
        raise
    except Exception as exc:  # the kernel died, or papermill could not run the notebook at all
        error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    duration = time.perf_counter() - started
    if record.html_exports:
        record.html_exports.submit(output)
    result = read_section_result(record.release_dir, section.key) or {}
    outcome = result.get("outcome", "error")
    if outcome == "running" or (error and outcome == "passed"):
        outcome = "error"  # the notebook stopped before its gate decided
    section_record = SectionRecord(
        index, section, outcome, started_at, duration, output.name, redactor.redact(error), result.get("failures", [])
    )
    record.sections.append(section_record)
    over = budget is not None and duration > budget * 60
    budget_text = f" (budget {budget:g} min{', OVER' if over else ''})" if budget is not None else ""
    progress(
        f"{label}: {outcome} in {duration:.1f} s{budget_text}"
        + (f" - {_first(section_record)}" if outcome != "passed" else "")
    )
    return section_record


def _first(section: SectionRecord) -> str:
    return (section.failures[0] if section.failures else section.error) or section.outcome


def _last_section(record: ReleaseRecord) -> str:
    return record.sections[-1].section.title if record.sections else "preparation"


def _summary(record: ReleaseRecord) -> str:
    lines = [f"\nRelease {record.release_id}: {record.outcome.upper()} (exit {record.exit_code})", f"  {record.reason}"]
    for s in record.sections:
        budget = s.budget_minutes(record.config)
        lines.append(
            f"  {s.outcome:>7}  {s.duration_s:6.1f} s  "
            f"{'' if budget is None else f'/ {budget:g} min':9}  {s.section.title}"
        )
    lines.append(f"  report: {record.release_dir / 'report.html'}")
    return "\n".join(lines)


def _raise_on_signals():
    def handler(signum, _frame):
        raise ReleaseAborted(f"{signal.Signals(signum).name} received")

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            previous[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread: leave signals alone
            pass
    return previous


def _restore_signals(previous) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)
