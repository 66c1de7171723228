"""The release runner: the plan's sections in order, each a papermill run in a fresh kernel.

It validates everything before the first section, stops at the first failed gate,
runs the rollback runbook when production was changed and failed, and always leaves
an archive (executed notebooks, their HTML, the report, the manifest) saying where
and why it stopped. Hooks for archiving and progress live here, in one place.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import secrets as _random
import shutil
import signal
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from .config import ENVIRONMENTS, ReleaseConfig, load_config
from .decisions.attest import check_release_attestations, section_parameters
from .errors import UsageError
from .execution.interrupts import SIGNALS, ReleaseAborted
from .execution.pool import KERNELS_AHEAD, KernelPool
from .locks import (
    LeaseLost,
    ReleaseLocked,
    live_release,
    pid_alive,
    process_identity,
    release_lock,
    store_release_lock,
)
from .paths import OUTPUTS_DIR, RUNBOOKS_DIR
from .plan import ALL_SECTIONS, PLAN, PRODUCTION_CHANGING, ROLLBACK, WATCH, Section
from .record import events
from .results import (
    RESULTS_DIR,
    check_operator,
    read_all_results,
    read_section_result,
    results_path,
    utc_now,
    write_json_atomic,
)
from .secrets.required import (
    attestation_texts,
    fixed_texts,
    redactor_for,
    refuse_secrets_in,
    refuse_secrets_in_fixed_text,
    seed_rehearsal_secrets,
)
from .targets import make_target, secret_source_for
from .targets.standin_app import DEFECTS as STANDIN_DEFECTS

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
EXIT_NOT_STORED = 7  # the archive store failed during the upload: the local copy stays (archive push)
EXIT_ABORTED = 130

OUTCOME_EXIT = {
    "released": EXIT_RELEASED,
    "blocked": EXIT_BLOCKED,
    "rolled back": EXIT_ROLLED_BACK,
    "rollback failed": EXIT_ROLLBACK_FAILED,
    "aborted": EXIT_ABORTED,
    "error": EXIT_ERROR,
    "watched": EXIT_RELEASED,  # a later watch (`runbook watch`) that met its conditions
}

#: Defects the local rehearsal platform can build in (see targets/standin_app.py).
REHEARSAL_DEFECTS = tuple(defect for defect in STANDIN_DEFECTS if defect)

DEFAULT_OUTPUTS = OUTPUTS_DIR
_RELEASE_ID = re.compile(r"\d{8}T\d{6}Z-[0-9a-f]{6}")
#: Written into the release folder before the first section, and updated as each section starts:
#: what the release was started with and where its runner is, so that a release whose runner
#: died can be sealed saying where (seal_abandoned).
STARTED = "runner.json"

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
    watch_of: str | None = None  # `runbook watch`: the id of the sealed release to watch again
    watch_minutes: float = 0.0  # its window; 0: [watch] minutes of the configuration
    archive: str | None = None  # --archive: the archive's store (else $HOTDASH_ARCHIVE, [archive] url)


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
    internal: bool = False  # stopped by the machinery (a kernel that died or never started), not a gate

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
    lock_note: dict | None = None  # a lock left by a runner that died, taken over
    lock_dir: Path | None = None  # where the app's release lock is (locks.py)
    signals: list[dict] = field(default_factory=list)  # SIGINT/SIGTERM received: when, during what
    abandoned: dict | None = None  # sealed by another process after its runner died
    production_needs_person: bool = False  # it died after production's deploy began, before it was verified
    resumed_from: str | None = None
    running_kernel: object = None  # the kernel manager of the section running now (the watch interrupts it)
    resume_folder: Path | None = None
    resume_manifest: dict | None = None
    kernels: KernelPool | None = None
    html_exports: object = None  # archive.HtmlExports: section pages written while the next section runs
    provenance: Future | None = None  # archive.release_provenance(), asked while the sections run
    signer: object = None  # archive.signing.Signer: the key that signs the sealed release
    checkpoint: dict | None = None  # the app's signed chain head after this release was sealed
    head_pin: str = ""  # APP:SHA256 of that head, for `runbook verify --expect-head`
    watched_dir: Path | None = None  # a later watch: the sealed release folder it follows
    store: object = None  # archive.store.Store when the archive is an object store (storesync.py)
    store_head: tuple | None = None  # (etag, checkpoint) of the app's head in the store before the release
    store_failure: tuple[str, str] | None = None  # ("head" | "upload", message): not (all) in the store
    lease: object = None  # locks.StoreLease: the store lock this runner holds while it runs
    lease_lost: str = ""  # why a production-changing action was refused: the lease was not ours
    notify_failed: str = ""  # the CEO's channel failed: reported, and the watch ran all the same

    @property
    def plan(self) -> tuple[Section, ...]:
        """The sections this record runs: the whole plan, or the watch alone for `runbook watch`."""
        return (WATCH,) if self.watched_dir else PLAN

    @property
    def exit_code(self) -> int:
        if self.production_needs_person:  # as a failed rollback: production may serve a failed build
            return EXIT_ROLLBACK_FAILED
        if self.signals and self.outcome in ("released", "watched", "blocked", "rolled back"):
            # Stopped by a signal, with production verified good (it finished what it was doing).
            return EXIT_ABORTED
        code = OUTCOME_EXIT[self.outcome]
        if self.lease_lost and self.outcome == "blocked":  # production untouched: a lock problem
            return EXIT_LOCKED
        if self.store_failure and code not in (EXIT_ERROR, EXIT_ROLLBACK_FAILED):  # those need a person first
            return EXIT_LOCKED if self.store_failure[0] == "head" else EXIT_NOT_STORED
        return code

    def signal_line(self) -> str:
        """One line about the signal that stopped the release and the state it left."""
        first = self.signals[0]
        if self.outcome == "rollback failed":
            production = "production needs a person now (the rollback failed)"
        elif any(s.section.key == "deploy_production" and not s.reused_from for s in self.sections):
            production = "production verified first"
        else:
            production = "production untouched"
        return (
            f"aborted: {first['signal']} received during {first['during']}; {production}; "
            f"release sealed as {self.outcome}: {self.release_dir}"
        )


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
    if not _RELEASE_ID.fullmatch(release_id):  # fullmatch: "$" would let a trailing newline in
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
    if options.watch_of and (options.resume or options.defects or options.skip_staging_check or options.attestations):
        raise UsageError(
            "watch: watches a sealed release as it is: no --resume, --break, --skip-staging-check or --attest"
        )
    resumed = _resume_source(options) if options.resume else None
    if resumed:
        _carry_resumed_options(options, resumed[1])
    config_path = Path(resumed[1]["parameters"]["config_path"]) if resumed else options.config_path
    config = load_config(config_path)
    target_name = resumed[1]["target"] if resumed else options.target or config.default_target
    config.target_settings(target_name)
    check_release_attestations(options.attestations, config.manual_checks)
    if options.defects and target_name != "local":
        raise UsageError(f"--break: rehearsal defects need --target local, not {target_name!r}")
    if options.operator:
        check_operator(options.operator)
    config.check_outputs(options.outputs)
    inputs = release_inputs(config)
    if resumed and resumed[1].get("inputs") != inputs:
        raise UsageError(
            f"--resume: the configuration or runbooks changed since release {options.resume}; "
            "start a new release instead"
        )
    _check_kernel(options.kernel_name)
    _check_writable(options.outputs)
    target = make_target(config, target_name)
    if resumed:
        _check_resumed_world(*resumed, options.resume, target, config.environment("production").app)
    from .archive.signing import signer_for
    from .results import default_operator

    signer = signer_for(target_name)  # a missing or bad key stops here, before anything runs

    operator = options.operator or default_operator()
    # Free text is recorded (manifest, report, terminal): it must hold no secret value, and
    # every sensitive secret must be long enough to redact, and must not be part of the
    # release's own text. All known before the lock is taken.
    redactor = redactor_for(config, secret_source_for(config, target_name, target))
    refuse_secrets_in_fixed_text(redactor, fixed_texts(config))
    refuse_secrets_in(
        redactor,
        {
            "--reason": options.reason,
            "--operator" if options.operator else "HOTDASH_OPERATOR": operator,
            "--attest": attestation_texts(options.attestations),
        },
    )
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
        signer=signer,
    )
    if resumed:
        record.resumed_from = options.resume
        record.resume_folder, record.resume_manifest = resumed
    from .archive.storesync import archive_store, pull_release

    record.store = archive_store(config.archive, options.outputs, options.archive)
    if options.watch_of:
        if record.store:  # the store's copy is the record: this runner's folder may not hold it
            validate_release_id(options.watch_of)
            pull_release(record.store, options.outputs, config.environment("production").app, options.watch_of)
        record.watched_dir = _watched_release_dir(options, config, target)
    record.lock_dir = release_lock_dir(target, options.outputs / config.environment("production").app)
    return record


def _watched_release_dir(options: ReleaseOptions, config: ReleaseConfig, target) -> Path:
    """`runbook watch`: the sealed, released release, still what production serves; and the window."""
    from .archive.seal import deployed_image, watched_release
    from .checks.watch import check_watch_minutes

    validate_release_id(options.watch_of)
    app = config.environment("production").app
    folder = watched_release(options.outputs / app / options.watch_of)
    from .archive.integrity import verify_release

    damaged = verify_release(folder)
    if damaged:  # a record that does not verify is no ground to watch, or to roll back from
        raise UsageError(f"watch: release {options.watch_of} does not verify ({damaged[0].what}); see `runbook verify`")
    check_watch_minutes(options.watch_minutes)
    image = deployed_image(folder)
    serving = target.status(app).image_ref
    if not image or image != serving:
        raise UsageError(
            f"watch: production no longer serves release {options.watch_of} ({image or 'no image recorded'}); "
            f"it serves {serving or 'nothing'}"
        )
    return folder


def release_lock_dir(target, app_dir: Path) -> Path:
    """Where the app's release lock is: with what is released (the local platform's state, so
    that releases archived in different folders exclude each other), else the archive's app
    folder (Fly: the workflow's concurrency group serialises CI runs; this covers the rest)."""
    return getattr(target, "release_lock_dir", None) or app_dir


def _carry_resumed_options(options: ReleaseOptions, manifest: dict) -> None:
    """A resume runs as the release it continues: its defects, staging-check override, reason and
    attestations come from that release's manifest, never from flags given now."""
    given = [
        flag
        for flag, value in (
            ("--break", options.defects),
            ("--skip-staging-check", options.skip_staging_check),
            ("--attest", options.attestations),
        )
        if value
    ]
    if given:
        raise UsageError(f"--resume: takes {', '.join(given)} from the release it resumes; drop {', '.join(given)}")
    options.defects = dict(manifest.get("rehearsal_defects") or {})
    skipped = any(s["key"] == "staging_smoke" and s["outcome"] == "skipped" for s in manifest["sections"])
    options.skip_staging_check = bool(manifest.get("skip_staging_check", skipped))
    options.reason = options.reason or manifest.get("release_reason") or ""
    options.attestations = dict(manifest.get("attestations") or {})


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
    from .archive.integrity import verify_release

    damaged = verify_release(folders[0])
    if damaged:  # a record that does not verify is no ground to reuse anything from
        raise UsageError(
            f"--resume: release {options.resume} does not verify ({damaged[0].what}); see `runbook verify`"
        )
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
    and ends them.

    Signals (interrupts.py): one that comes before the lock is held stops the command once the
    release is prepared, with nothing changed; from then on the release stops at the next safe
    point, and is sealed."""
    installed = SIGNALS.install()  # the `runbook` command installed them first thing
    try:
        SIGNALS.check()
        SIGNALS.reset()  # a runner that runs several releases: the last one's signals are its own
        record = prepare_release(options)
        SIGNALS.check()  # a signal while preparing (imports, checks): stop before anything is locked
        app = record.config.environment("production").app
        with _release_locks(record, app, progress) as left:
            # From here the release folder exists and is always sealed: a signal is recorded and
            # acted on where it is safe (a section before production changes, or the end).
            with SIGNALS.during("preparation", interruptible=False):
                record.signals = SIGNALS.received
                record.release_dir.mkdir(parents=True)
                _write_started(record)
                if left:
                    record.lock_note = {"taken_over_from": left, "at": utc_now()}
                    progress(f"took over the release lock of {app} left by {_holder_text(left)}")
                sealed = seal_abandoned_releases(record, left, progress)
                if record.lock_note and sealed:
                    record.lock_note["sealed_abandoned"] = sealed
                with live_release(record.release_dir):  # what lets its kernels change production
                    _run_and_seal(record, progress, kernel_pool, export_worker)
                if record.store and record.lease is not None and record.lease.lost:
                    # The app's lock (and its chain) may be another runner's now: nothing of ours goes in.
                    lease, kept = record.lease, f"; the release is kept in {record.release_dir}"
                    record.store_failure = (
                        ("head", f"NOT APPENDED: the release lock was {lease.lost}{kept}")
                        if lease.taken
                        else (
                            "upload",
                            f"NOT STORED: the release lock {lease.lost}{kept}: `runbook archive push "
                            f"{record.release_id}` appends it if the chain head has not moved",
                        )
                    )
                    progress(f"  archive store: {record.store_failure[1]}")
                elif record.store:
                    from .archive.storesync import after_release

                    after_release(record, progress)
                progress(_summary(record))
                from .archive.index import rebuild_after_release

                # The store's index only from a copy that holds nothing the store does not.
                store = None if record.store_failure else record.store
                rebuild_after_release(record.options.outputs, progress, store=store)
        SIGNALS.settle()  # acted on: one more signal while the command ends is only recorded
        return record
    finally:
        if installed:
            SIGNALS.restore()


@contextmanager
def _release_locks(record: ReleaseRecord, app: str, progress: Progress):
    """The app's release lock: in the store when the archive is one (runners share no folder),
    with the target's own lock if it has one (the local platform); else the folder lock. With a
    store, the app's head and catalog are read from it once the lock is held."""
    details = {"release_id": record.release_id, "operator": record.operator, "release_dir": str(record.release_dir)}
    if not record.store:
        with release_lock(record.lock_dir, app, **details) as left:
            yield left
        return
    from .archive.storesync import before_release, lock_key

    minutes = record.config.archive.lock_minutes
    with ExitStack() as locks:
        record.lease = locks.enter_context(
            store_release_lock(record.store, lock_key(app), app, minutes=minutes, progress=progress, **details)
        )
        left = record.lease.left
        if getattr(record.target, "release_lock_dir", None):
            locks.enter_context(release_lock(record.lock_dir, app, **details))
        before_release(record, progress)
        yield left


def _holder_text(holder: dict) -> str:
    if "unreadable" in holder:
        return f"a runner that died (its holder file was {holder['unreadable']})"
    return f"release {holder.get('release_id')} ({holder.get('gone') or 'its runner is gone'})"


def _check_lease(record: ReleaseRecord, action: str, progress: Progress, *, strict: bool = True) -> bool:
    """Right before production changes (its deploy, a rollback): with a store lock, the lease must
    be this runner's now (locks.StoreLease.check). False, with one line said and recorded, if not."""
    if record.lease is None:
        return True  # a folder lock: the kernel holds it for this process's whole life
    try:
        record.lease.check(action, strict=strict)
    except LeaseLost as exc:
        record.lease_lost = str(exc)
        progress(f"lease lost: {exc}")
        return False
    return True


def _write_started(record: ReleaseRecord) -> None:
    """What the release was started with, before any section: enough to seal it if its runner dies."""
    options = record.options
    write_json_atomic(
        record.release_dir / STARTED,
        {
            "release_id": record.release_id,
            "app": record.config.environment("production").app,
            "target": record.target_name,
            "config_path": str(record.config.path),
            "operator": record.operator,
            "started_at": record.started_at,
            "parameters": record.parameters,
            "rehearsal_defects": options.defects,
            "release_reason": options.reason,
            "skip_staging_check": options.skip_staging_check,
            "attestations": options.attestations,
            "kernel_name": options.kernel_name,
            "inputs": record.inputs,
            "resumed_from": record.resumed_from,
            "lock_dir": str(record.lock_dir),
            **process_identity(),
        },
    )


def _note_section(record: ReleaseRecord, section: Section, index: int) -> None:
    """Where the runner is, for whoever seals the release if it dies here."""
    path = record.release_dir / STARTED
    noted = _read_started(record.release_dir) or {}
    write_json_atomic(path, {**noted, "section": {"key": section.key, "index": index, "started_at": utc_now()}})


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

    redactor = None
    try:
        target = record.target
        if record.target_name == "local":
            seeded = seed_rehearsal_secrets(target, [e.app for e in record.config.environments.values()])
            for app in seeded:
                progress(f"rehearsal: generated secrets for {app} (kept in the platform store, not in outputs/)")
        redactor = redactor_for(record.config, secret_source_for(record.config, record.target_name, target))
        progress(
            f"HotDash release {record.release_id}: {record.config.environment('production').app} "
            f"via {record.target_name}, operator {record.operator}"
        )
        progress(f"archive: {record.release_dir}")
        start = _reuse_resumed_sections(record, progress) if record.resumed_from else 0
        _run_sections(record, start, progress, redactor)
    except ReleaseAborted:
        record.outcome, record.reason = "aborted", _aborted_reason(record)
    finally:
        with SIGNALS.during("sealing", interruptible=False):  # sealing is never cut short
            if own_pool:
                record.kernels.close()
            else:
                record.kernels.wait_stopped()  # a kept pool: its last kernels may still be ending
            record.finished_at = utc_now()
            if record.signals and record.outcome != "aborted":
                record.reason += "; " + _signal_note(record)
            if redactor is None:  # no secrets to scan for: the folder stays unsealed, visibly
                record.html_exports.finish()
            else:
                seal_release(record, redactor, record.html_exports)
            if record.archive_problems:
                record.outcome = "error"
                record.reason = "; ".join(record.archive_problems)
            _keep_kernel_messages(record, redactor, progress)


def _keep_kernel_messages(record: ReleaseRecord, redactor, progress: Progress) -> None:
    """What the kernels printed outside their cells (a traceback of tornado or zmq at a signal, a
    warning) went to the pool's log folder, not to the operator's terminal: kept, redacted, beside
    the archive (OUTPUTS/_logs/, not part of the signed record), and named in one line."""
    logs = getattr(record.kernels, "kernel_messages", lambda: [])()
    if not logs:
        return
    kept = record.options.outputs / "_logs" / f"{record.release_id}.kernels.log"
    kept.parent.mkdir(parents=True, exist_ok=True)
    with open(kept, "a", encoding="utf-8") as out:
        for log in logs:
            text = log.read_text(encoding="utf-8", errors="replace")
            out.write(f"== kernel {log.stem}\n{redactor.redact(text) if redactor else '(not kept: no redactor)'}\n")
            log.unlink()
    progress(f"kernel messages (not part of the record): {kept}")


def _signal_note(record: ReleaseRecord) -> str:
    first = record.signals[0]
    finished = _finished_after(record, first)
    return (
        f"{first['signal']} received at {first['at']} during {first['during']}"
        + (f"; finished first: {', '.join(finished)}" if finished else "")
        + "; then stopped"
    )


def _finished_after(record: ReleaseRecord, signal: dict) -> list[str]:
    """Sections that ran to their end although a signal had come: production was changing."""
    return [
        s.section.title
        for s in record.sections
        if s.outcome != "aborted"
        and not s.reused_from
        and (s.section.title == signal["during"] or s.started_at > signal["at"])
    ]


def _aborted_reason(record: ReleaseRecord) -> str:
    first = record.signals[0] if record.signals else {"signal": "a signal", "during": _last_section(record)}
    finished = _finished_after(record, first) if record.signals else []
    text = f"{first['signal']} received during {first['during']}"
    if finished:
        text += f"; finished first: {', '.join(finished)} (production verified)"
    return text + (f"; stopped before {_next_section(record)}" if _next_section(record) else "")


def _next_section(record: ReleaseRecord) -> str:
    done = {s.section.key for s in record.sections}
    return next((s.title for s in PLAN if s.key not in done), "")


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


def _check_resumed_world(folder: Path, manifest: dict, resume_id: str, target, app: str) -> None:
    """A resume reuses recorded results only while they are still true of the target: when it
    would reuse production's deploy and checks, production must still serve what they verified."""
    if resume_point(manifest) <= PLAN.index(ALL_SECTIONS["deploy_production"]):
        return  # production is deployed again (from what served before the resumed release: carried)
    verified = (
        ((read_section_result(folder, "deploy_production") or {}).get("records") or {}).get("deployment") or {}
    ).get("image_ref") or ""
    serving = target.status(app).image_ref or ""
    if serving != verified:
        raise UsageError(
            f"--resume: production no longer serves what release {resume_id} verified ({verified or 'nothing'}); "
            f"it serves {serving or 'nothing'} now: start a new release"
        )


def _reuse_resumed_sections(record: ReleaseRecord, progress: Progress) -> int:
    """Copy the recorded results of the sections that passed before; return where to go on."""
    old_folder, manifest = record.resume_folder, record.resume_manifest
    start = resume_point(manifest)
    old_sections = {s["key"]: s for s in manifest["sections"]}
    for index, section in enumerate(PLAN[:start], start=1):
        old = old_sections[section.key]
        pages = (old["notebook"], Path(old["notebook"]).with_suffix(".html").name) if old["notebook"] else ()
        for name in (*pages, f"{RESULTS_DIR}/{section.key}.json"):
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
        if (record.release_dir / RESULTS_DIR / f"{section.key}.json").is_file():
            events.note_result(
                record.release_dir,
                section.key,
                by=record.operator,
                outcome=old["outcome"],
                reused_from=record.resumed_from,
            )
        progress(f"[{index}/{len(PLAN)}] {section.title}: {old['outcome']} (reused from {record.resumed_from})")
    _carry_serving_before(record, old_folder, start)
    return start


def _carry_serving_before(record: ReleaseRecord, old_folder: Path, start: int) -> None:
    """A resume that deploys production again restores, on failure, what production served
    before the release it resumes began (that release recorded it), not what serves now."""
    if start > PLAN.index(ALL_SECTIONS["deploy_production"]):
        return
    old = (read_section_result(old_folder, "deploy_production") or {}).get("records") or {}
    if not old.get("serving_before"):
        return
    made = [*(old.get("earlier_deployments") or []), old.get("deployment") or {}]
    write_json_atomic(
        results_path(record.release_dir, "deploy_production"),
        {
            "section": "deploy_production",
            "outcome": "carried",
            "release_id": record.release_id,
            "carried_from": record.resumed_from,
            "records": {
                "serving_before": old["serving_before"],
                "earlier_deployments": [d for d in made if d.get("version") is not None],
            },
            "failures": [],
            "measures": {},
        },
    )
    events.note_result(
        record.release_dir, "deploy_production", by=record.operator, outcome="carried", carried_from=record.resumed_from
    )


def _run_sections(record: ReleaseRecord, start: int, progress: Progress, redactor) -> None:
    # Imported here, not inside a section's interruptible window: a signal raised inside an
    # import may reach the caller as another error (see interrupts.py).
    import papermill  # noqa: F401

    from .execution import engine  # noqa: F401

    for index, section in enumerate(record.plan[start:], start=start + 1):
        # From the production deploy until production is verified or rolled back, a signal is
        # recorded and the phase finishes; before it, a signal stops the release where it is.
        critical = section.key in PRODUCTION_CHANGING
        if section.key == PRODUCTION_CHANGING[0]:
            SIGNALS.check()  # the last moment to stop with production untouched
            if not _check_lease(record, "the production deploy", progress):
                record.outcome, record.reason = "blocked", f"production not changed: {record.lease_lost}"
                return
        # The watch is not cut off by a signal: its kernel is interrupted, the window ends early
        # and what it measured is recorded and judged; then the release stops.
        watching = section.key == "watch"
        on_signal = (lambda: _interrupt_running_kernel(record)) if watching else None
        with SIGNALS.during(section.title, interruptible=not (critical or watching), on_signal=on_signal):
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
        if section.key == "watch":
            if result.outcome != "failed" and record.watched_dir:
                record.outcome, record.reason = (
                    "error",
                    f"the watch of release {record.options.watch_of} did not complete ({_first(result)})",
                )
                return
            if result.outcome != "failed":  # the watch could not run: production was verified by its smoke test
                record.outcome, record.reason = (
                    "released",
                    f"released, but the watch did not complete ({_first(result)})"
                    + (f"; {record.notify_failed}" if record.notify_failed else ""),
                )
                return
            # A breach while the CEO tests: "if blocking, roll back immediately" (on_breach = rollback).
            _roll_back(record, where, "the watch found production degraded", progress, redactor)
            return
        if section.key == "notify":
            # A failed notification is reported; it neither undoes a good release nor stops the
            # watch: production changed, so it is watched whatever the CEO's channel did.
            record.notify_failed = f"the notification failed ({_first(result)})"
            progress(f"  {record.notify_failed}: the watch runs all the same")
            continue
        if section.key in PRODUCTION_CHANGING:
            _roll_back(record, where, "production failed its checks", progress, redactor)
            return
        if result.internal:  # not a gate's decision: the machinery failed (exit 1), production untouched
            record.outcome, record.reason = "error", f"internal error before production changed: {where}"
            return
        record.outcome, record.reason = "blocked", f"stopped before production changed: {where}"
        return
    if record.watched_dir:
        record.outcome, record.reason = "watched", f"watch of release {record.options.watch_of}: conditions met"
        return
    record.outcome, record.reason = "released", "all sections passed"
    if record.notify_failed:
        record.reason = f"released, but {record.notify_failed}"
    if record.options.skip_staging_check:
        record.reason += f" (staging check skipped by {record.operator}: {record.options.reason})"


def _roll_back(record: ReleaseRecord, where: str, why: str, progress: Progress, redactor) -> None:
    """Run the rollback runbook to the end whatever signal comes, and say how it ended."""
    progress(f"{why}: running the rollback runbook")
    if not _check_lease(record, "the rollback", progress, strict=False):
        # Another runner holds the app now: redeploying what served before this release could undo its.
        record.outcome = "rollback failed"
        record.reason = f"{where}; rollback not run: {record.lease_lost}; production needs a person"
        return
    with SIGNALS.during(ROLLBACK.title, interruptible=False):
        rollback = run_section(record, ROLLBACK, len(record.plan) + 1, progress, redactor)
    if rollback.outcome == "passed":
        record.outcome, record.reason = "rolled back", f"{where}; rolled back to what was serving"
    else:
        record.outcome, record.reason = "rollback failed", f"{where}; rollback failed: {_first(rollback)}"


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
    events.note_result(
        record.release_dir, section.key, by=record.operator, outcome="skipped", reason=override["reason"]
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
    if record.watched_dir and section in (WATCH, ROLLBACK):
        parameters["watching"] = str(record.watched_dir)
        if section is WATCH:
            parameters["watch_minutes"] = float(record.options.watch_minutes)
    output = record.release_dir / f"{index:02d}-{section.key}.ipynb"
    _note_section(record, section, index)
    budget = config.timeline_minutes.get(section.budget_key or section.key)
    label = (
        f"[{index}/{len(record.plan)}] {section.title}"
        if section in record.plan
        else f"[{section.key}] {section.title}"
    )
    progress(f"{label} ...")
    if section.key == "deploy_production":
        _say_who_must_approve(record, progress)
    events.append(record.release_dir, "section_started", by=record.operator, section=section.key, notebook=output.name)
    started_at, started = utc_now(), time.perf_counter()
    error, internal = "", False
    try:
        with record.kernels.kernel() as kernel:
            record.running_kernel = kernel
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
        record.running_kernel = None
        # Keep what the section got to: papermill saved the notebook up to its last cell.
        record.sections.append(
            SectionRecord(index, section, "aborted", started_at, time.perf_counter() - started, output.name, str(exc))
        )
        raise
    except Exception as exc:  # the kernel died, or papermill could not run the notebook at all
        error = f"{type(exc).__name__}: {exc}".splitlines()[0]
        internal = True
    record.running_kernel = None
    duration = time.perf_counter() - started
    if record.html_exports:
        record.html_exports.submit(output)
    result = read_section_result(record.release_dir, section.key) or {}
    outcome = result.get("outcome", "error")
    if outcome == "running" or (error and outcome == "passed"):
        outcome = "error"  # the notebook stopped before its gate decided
    section_record = SectionRecord(
        index,
        section,
        outcome,
        started_at,
        duration,
        output.name,
        redactor.redact(error),
        result.get("failures", []),
        internal=internal,
    )
    record.sections.append(section_record)
    events.append(
        record.release_dir,
        "section_ended",
        by=record.operator,
        section=section.key,
        outcome=outcome,
        duration_s=round(duration, 3),
    )
    over = budget is not None and duration > budget * 60
    budget_text = f" (budget {budget:g} min{', OVER' if over else ''})" if budget is not None else ""
    progress(
        f"{label}: {outcome} in {duration:.1f} s{budget_text}"
        + (f" - {_first(section_record)}" if outcome != "passed" else "")
    )
    return section_record


def _say_who_must_approve(record: ReleaseRecord, progress: Progress) -> None:
    """The deploy waits for approvals in its kernel; the operator's terminal says for whom."""
    request = ((read_section_result(record.release_dir, "go_no_go") or {}).get("records") or {}).get("approval_request")
    if not request:
        return
    who = ", ".join(request.get("who_may_approve") or []) or "nobody (keys/allowed_signers)"
    progress(
        f"  waiting up to {record.config.approval.wait_minutes:g} min for {request.get('required')} approval(s) "
        f"from {who}: each runs `{request.get('command')}` (digest {str(request.get('digest'))[:12]})"
    )


def _interrupt_running_kernel(record: ReleaseRecord) -> None:
    """SIGINT to the running section's kernel (called from the signal handler: only a kill)."""
    kernel = record.running_kernel
    if kernel is not None and kernel.provisioner is not None and kernel.provisioner.pid:
        try:
            os.kill(kernel.provisioner.pid, signal.SIGINT)
        except OSError:
            pass


#: papermill's logger, which nbclient logs to as it runs a section: what it would print on the
#: command's stderr (e.g. "Error occurred while starting new kernel client" when a signal stops a
#: kernel's start) is in the section's record already; the command's stderr keeps its one line.
_PAPERMILL_LOG = logging.getLogger("papermill")
_PAPERMILL_LOG.addHandler(logging.NullHandler())
_PAPERMILL_LOG.propagate = False


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
    if record.store_failure:
        lines.append(f"  archive store: {record.store_failure[1]}")
    if record.checkpoint:
        lines.append(
            f"  chain head: {record.head_pin} ({record.checkpoint['releases']} release(s), "
            f"signed by {record.checkpoint['key_id']}); keep it outside the archive and check with "
            f"`runbook verify --expect-head {record.head_pin}`"
        )
    return "\n".join(lines)


# -- releases whose runner died ---------------------------------------------------------------


def seal_abandoned_releases(record: ReleaseRecord, left: dict | None, progress: Progress) -> list[str]:
    """Seal, as aborted, the releases of this app whose runner died: the one named by the holder
    file left beside the lock, and any unsealed folder of this archive that was locked here (the
    lock is ours now, so their runners are gone). Returns their ids."""
    folders = set()
    if left and left.get("release_dir"):
        folders.add(Path(left["release_dir"]))
    for folder in record.release_dir.parent.iterdir():
        start = _read_started(folder)
        if folder != record.release_dir and start and Path(start.get("lock_dir", "")) == record.lock_dir:
            folders.add(folder)
    sealed = []
    for folder in sorted(folders, key=lambda f: f.name):
        if folder == record.release_dir or not (folder / STARTED).is_file() or (folder / "manifest.json").exists():
            continue
        if pid_alive(_read_started(folder) or {}):  # a lease taken over from a live (paused) runner
            progress(f"release {folder.name} is left unsealed: its runner still runs and seals it itself")
            continue
        try:
            done = seal_abandoned(folder, sealed_by=record.operator, held_lock=record.lock_dir, progress=progress)
        except (UsageError, ReleaseLocked, OSError, ValueError) as exc:  # locked: its platform's lock is held
            progress(f"release {folder.name} was left unsealed by a runner that died, and stays so: {exc}")
            continue
        sealed.append(done.release_id)
    return sealed


def _read_started(folder: Path) -> dict | None:
    try:
        start = json.loads((folder / STARTED).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return start if isinstance(start, dict) else None


def seal_abandoned(
    folder: Path, *, sealed_by: str, held_lock: Path | None = None, progress: Progress = print
) -> ReleaseRecord:
    """Seal a release whose runner died (SIGKILL, a lost machine) as aborted: "runner died during
    <section>", with what the target shows production serving now. Needs the app's release lock
    (held_lock: the caller holds it already), so a release whose runner still runs is refused."""
    from .archive.integrity import MANIFEST, sealed_releases
    from .archive.seal import seal_release

    folder = Path(folder).resolve()
    if (folder / MANIFEST).exists():
        raise UsageError(f"--abandoned: release {folder.name} is sealed already")
    start = _read_started(folder)
    if start is None:
        raise UsageError(
            f"--abandoned: {folder} has no readable {STARTED}; it is not a release folder this tool started"
        )
    newer = [p.name for p in sealed_releases(folder.parent) if p.name > folder.name]
    if newer:
        raise UsageError(
            f"--abandoned: release {newer[0]} was sealed after {folder.name} started; sealing it now would "
            "break the hash chain"
        )
    config = load_config(Path(start["config_path"]))
    target = make_target(config, start["target"])
    app = config.environment("production").app
    lock_dir = Path(start["lock_dir"])
    if held_lock is not None and lock_dir == held_lock:
        return _seal_abandoned(folder, start, config, target, sealed_by, progress, seal_release)
    with release_lock(lock_dir, app, release_id=f"sealing {folder.name}", operator=sealed_by):
        return _seal_abandoned(folder, start, config, target, sealed_by, progress, seal_release)


def _seal_abandoned(folder, start, config, target, sealed_by, progress, seal_release) -> ReleaseRecord:
    options = ReleaseOptions(
        config_path=config.path,
        target=start["target"],
        defects=start.get("rehearsal_defects") or {},
        operator=start.get("operator", ""),
        reason=start.get("release_reason", ""),
        outputs=folder.parent.parent,
        kernel_name=start.get("kernel_name", "python3"),
        skip_staging_check=bool(start.get("skip_staging_check")),
        attestations=start.get("attestations") or {},
    )
    record = ReleaseRecord(
        folder.name,
        folder,
        config,
        options,
        start["target"],
        start.get("operator", ""),
        start.get("started_at", ""),
        start.get("parameters") or {},
        target=target,
        inputs=start.get("inputs") or {},
        resumed_from=start.get("resumed_from"),
    )
    cut_off = _set_aside_cut_off_notebooks(folder)
    results = read_all_results(folder)
    record.sections = _sections_left(folder, results, record.resumed_from, start.get("section"))
    running = [s for s in record.sections if s.outcome == "aborted"]
    during = (
        f"during {running[-1].section.title}"
        if running
        else (f"after {record.sections[-1].section.title}" if record.sections else "during preparation")
    )
    serving = _production_serving(target, config.environment("production").app)
    record.outcome = "aborted"
    record.reason = f"runner died {during}; {serving['text']}"
    if cut_off:
        record.reason += f"; kept as written when it died, not a notebook: {', '.join(cut_off)}"
    before = ((results.get("deploy_production") or {}).get("records") or {}).get("serving_before")
    verified = (results.get("production_smoke") or {}).get("outcome") == "passed"
    rolled_back = (results.get("rollback") or {}).get("outcome") == "passed"
    if before and not verified and not rolled_back:
        # Its production deploy began and nothing verified production since: say it, loudly.
        record.production_needs_person = True
        record.reason += (
            f"; production's deploy began and was never verified: it may serve the failed build; it served "
            f"v{before.get('version')} ({before.get('image_ref') or 'nothing'}) before: a person must act "
            f"(roll back to it, or verify production)"
        )
    record.finished_at = max([r.get("finished_at") or "" for r in results.values()] + [record.started_at])
    record.abandoned = {"sealed_by": sealed_by, "sealed_at": utc_now(), "runner_died": during, "production": serving}
    redactor = redactor_for(config, secret_source_for(config, record.target_name, target))
    seal_release(record, redactor)
    if record.archive_problems:
        record.outcome, record.reason = "error", "; ".join(record.archive_problems)
    progress(f"sealed release {folder.name}, abandoned by its runner, as {record.outcome.upper()}: {record.reason}")
    return record


def _set_aside_cut_off_notebooks(folder: Path) -> list[str]:
    """A notebook the dead runner was writing (papermill saves it as cells run) may be cut off
    mid-write: kept byte for byte as <name>.partial, so the seal neither exports nor drops it."""
    cut_off = []
    for notebook in sorted(folder.glob("[0-9][0-9]-*.ipynb")):
        try:
            json.loads(notebook.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            partial = notebook.with_name(notebook.name + ".partial")
            notebook.rename(partial)
            cut_off.append(partial.name)
    return cut_off


def _sections_left(
    folder: Path, results: dict[str, dict], resumed_from: str | None, current: dict | None
) -> list[SectionRecord]:
    """The sections a dead runner got to: each executed notebook, with its recorded result; a
    section without a finished result is the one it died in (also when it died before the
    section's notebook was written: `current`, the section the runner noted last)."""
    sections = []
    for notebook in sorted(folder.glob("[0-9][0-9]-*.ipynb")):
        index, _, key = notebook.stem.partition("-")
        if key not in ALL_SECTIONS:
            continue
        result = results.get(key) or {}
        outcome = result.get("outcome", "running")
        started, finished = result.get("started_at") or "", result.get("finished_at") or ""
        duration = 0.0
        if started and finished:
            duration = max((datetime.fromisoformat(finished) - datetime.fromisoformat(started)).total_seconds(), 0.0)
        reused = resumed_from if resumed_from and result.get("release_id") not in (None, folder.name) else None
        sections.append(
            SectionRecord(
                int(index),
                ALL_SECTIONS[key],
                "aborted" if outcome == "running" else outcome,
                started,
                duration,
                notebook.name,
                "runner died" if outcome == "running" else "",
                result.get("failures", []),
                reused_from=reused,
            )
        )
    if current and current.get("key") in ALL_SECTIONS and current["key"] not in {s.section.key for s in sections}:
        section = ALL_SECTIONS[current["key"]]
        started = current.get("started_at", "")
        sections.append(
            SectionRecord(int(current.get("index", 0)), section, "aborted", started, 0.0, "", "runner died")
        )
    return sections


def _production_serving(target, app: str) -> dict:
    """What the target shows production serving at this moment (a rollback target for a person)."""
    try:
        status = target.status(app)
    except Exception as exc:  # the platform cannot be asked: say so, seal anyway
        return {"text": f"what production serves is unknown ({type(exc).__name__})"}
    row = status.as_row()
    if not status.deployed:
        text = "production is not deployed"
    elif status.version is None:  # e.g. the dead runner's deploy stopped the old process
        text = f"production serves nothing ({status.state})"
    else:
        text = f"production serves v{status.version} ({status.image_ref}), {status.state}"
    return {"text": f"{text} as the release is sealed", **row}
