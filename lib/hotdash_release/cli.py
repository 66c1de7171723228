"""`runbook`: parse arguments and delegate. The release flow itself is runner.run_release."""

from __future__ import annotations

import argparse
import re
import shlex
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from .archive.catalog import OUTCOMES
from .errors import ReleaseError, StoreError, UsageError
from .execution.interrupts import ReleaseAborted
from .execution.pool import KernelPool, start_kernel_pool
from .locks import ReleaseLocked
from .paths import outputs_root
from .runner import (
    EXIT_ABORTED,
    EXIT_ERROR,
    EXIT_LOCKED,
    EXIT_NOT_STORED,
    EXIT_USAGE,
    REHEARSAL_DEFECTS,
    ReleaseOptions,
    parse_defects,
    run_release,
)

if TYPE_CHECKING:
    from .archive.seal import ExportWorker

RELEASE_HELP = f"""\
The release flow, in plan order; each section is a notebook in runbooks/ run by papermill
in a fresh kernel, and a failed gate stops the release:

  1 preflight          pre-deployment checklist, workstream readiness   (preflight.ipynb)
  2 verify_secrets     Step 1: the 7 required secrets on both apps       (verify_secrets.ipynb)
  3 deploy_staging     Step 2: deploy staging, check /health             (deploy.ipynb)
  4 staging_smoke      Step 3: staging smoke test                        (smoke_test.ipynb)
  5 go_no_go           Go/No-Go criteria from the sections above         (go_no_go.ipynb)
  6 deploy_production  Step 4: deploy production, check /health          (deploy.ipynb)
  7 production_smoke   Step 5: production smoke test                     (smoke_test.ipynb)
  8 notify             Step 6: notify the CEO                            (notify.ipynb)
  9 watch              watch production while the CEO tests              (watch.ipynb)
    rollback           only if 6, 7 or 9 fail: restore what was serving  (rollback.ipynb)

The archive goes to OUTPUTS/<production app>/<release id>/: executed notebooks, their
HTML, report.html (go/no-go, timing planned vs actual, smoke evidence) and manifest.json.

exit codes:
  0  released (also when only the notification failed: the report says so)
  2  usage error: bad flag or configuration; nothing was deployed
  3  blocked: a gate stopped the release before production changed, or the production
     deploy refused: this release's records lack secrets, staging, smoke test or a GO
  4  production failed its checks (or the watch found it degraded) and was restored to what
     it served before, verified
  5  rollback failed (or a secret changed since the last good release): production needs a person
  6  another release of this app is running (the message names who and since when), or,
     with an archive store, another runner appended to the app's chain first, or this
     runner's store lease was lost before the production deploy (nothing deployed)
  7  the archive store failed (unreachable, refused) before the release or while uploading it:
     the sealed release stays in OUTPUTS; `runbook archive push <release id>` completes it
  1  internal error (a secret found in the archive, an unexpected failure)
  130 stopped by SIGINT/SIGTERM/SIGHUP, production verified good: before production changes the
      release stops at once; from the production deploy on it finishes the deploy, the smoke
      test and any rollback first (5 if that rollback fails); sealing is never cut short.
      The archive says which signal came when, and what was finished because of it.

--resume runs as the release it continues: its --break defects, --skip-staging-check, reason
and --attest come from that release's manifest.

rehearsal defects for --break (local target): {", ".join(REHEARSAL_DEFECTS)}
"""


OUTPUTS_HELP = "archive root (default: $HOTDASH_OUTPUTS, else outputs/); with an archive store, its local copy"
ARCHIVE_HELP = (
    "the archive's object store, s3://BUCKET[/PREFIX] (default: $HOTDASH_ARCHIVE, else [archive] url of the "
    "configuration; none: the --outputs folder); credentials from AWS_* variables"
)

LAB_HELP = """\
A session folder OUTPUTS/interactive/<session id>/ gets one copy of the runbook per plan section
(01-preflight.ipynb ... 09-watch.ipynb, 10-rollback.ipynb, each with its section's parameters injected), and
JupyterLab starts there: runbooks/ stays clean in git. Step through each notebook; results are
recorded in the session folder; tick the manual checks and record the go/no-go call in their
widgets (recorded with --operator and the time). Then archive what you ran like a release:

  runbook seal OUTPUTS/interactive/<session id>

Needs the interactive extra: make lab (or pip install -e '.[interactive]').
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other usage error
        self.exit(EXIT_USAGE, f"runbook: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="runbook",
        description="Run the HotDash production release as executable, "
        "auditable papermill runbooks. Start with: runbook release --help",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    commands.required = True

    release = commands.add_parser(
        "release",
        help="run the whole deployment plan section by section and archive it",
        description="Run the HotDash deployment plan end to end and archive every section.",
        epilog=RELEASE_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    release.add_argument("--config", type=Path, help="release configuration (default: runbooks/hotdash.toml)")
    release.add_argument(
        "--target",
        choices=("local", "fly"),
        help="deployment target (default: release.default_target of the configuration)",
    )
    release.add_argument(
        "--break",
        dest="defects",
        action="append",
        default=[],
        metavar="ENV:DEFECT",
        help="rehearsal only: ship a deliberately broken build to ENV (staging|production), "
        "e.g. production:wrong_api_key; repeatable",
    )
    release.add_argument(
        "--operator", default="", help="who runs the release (default: $HOTDASH_OPERATOR or the OS user)"
    )
    release.add_argument("--outputs", type=Path, default=outputs_root(), help=OUTPUTS_HELP)
    release.add_argument("--archive", metavar="URL", help=ARCHIVE_HELP)
    release.add_argument("--kernel", default="python3", help="Jupyter kernel for the runbooks (default: python3)")
    release.add_argument(
        "--reason", default="", help="why this release happens (recorded; required with --skip-staging-check)"
    )
    release.add_argument(
        "--skip-staging-check",
        action="store_true",
        help="do not run the staging smoke test; needs --reason; the go/no-go shows it as overridden",
    )
    release.add_argument(
        "--attest",
        action="append",
        default=[],
        metavar="SCOPE:CHECK[:NOTE]",
        help="a person's attestation, recorded with --operator and the time; SCOPE staging or "
        'production: a manual check of [smoke] manual_checks, e.g. "staging:Check dashboard '
        'loads"; SCOPE go_no_go: the call with its reason, e.g. "go_no_go:Go:verified by '
        'hand"; repeatable',
    )
    release.add_argument(
        "--resume",
        metavar="RELEASE_ID",
        help="continue a stopped release from the section that failed, reusing the results of "
        "the sections that passed; refused if the configuration or runbooks changed",
    )

    watch = commands.add_parser(
        "watch",
        help="watch production again for a sealed release (e.g. a second round of CEO testing)",
        description="Run the watch runbook against production for a release sealed earlier, as a record of "
        "its own (sealed, signed and chained in the app's archive) that names the release it watched. "
        "Production must still serve that release's image. On a breach (on_breach = rollback) the rollback "
        "runbook restores what production served before that release.",
        epilog="exit codes: 0 conditions met; 2 usage error (unknown or unsealed release, production serves "
        "another image, bad --minutes); 4 rolled back; 5 rollback failed; 6 another release holds the lock; "
        "130 stopped by a signal (the record keeps what was measured); 1 the watch could not run",
    )
    watch.add_argument("release_id", metavar="RELEASE_ID", help="the sealed release to watch (outputs/<app>/<id>)")
    watch.add_argument(
        "--minutes", type=float, default=0.0, help="the window (default: [watch] minutes of the configuration)"
    )
    watch.add_argument("--config", type=Path, help="release configuration (default: runbooks/hotdash.toml)")
    watch.add_argument("--target", choices=("local", "fly"), help="deployment target (default: the configuration's)")
    watch.add_argument("--operator", default="", help="who watches (default: $HOTDASH_OPERATOR or the OS user)")
    watch.add_argument("--outputs", type=Path, default=outputs_root(), help=OUTPUTS_HELP)
    watch.add_argument("--archive", metavar="URL", help=ARCHIVE_HELP)
    watch.add_argument("--kernel", default="python3", help="Jupyter kernel for the runbooks (default: python3)")

    verify = commands.add_parser(
        "verify",
        help="check archived releases against their manifests and hash chain",
        description="Check that archived releases are unaltered: every file against its "
        "manifest's sha256, and each manifest linked to the previous one.",
    )
    verify.add_argument("release_id", nargs="?", help="one release to check (default: every release)")
    verify.add_argument("--outputs", type=Path, default=outputs_root(), help=OUTPUTS_HELP)
    verify.add_argument("--archive", metavar="URL", help=ARCHIVE_HELP)
    verify.add_argument(
        "--expect-head",
        action="append",
        default=[],
        metavar="APP:SHA256",
        help="a chain head kept outside the archive (printed after each release, in the job summary): "
        "that manifest must still be in APP's chain; repeatable",
    )
    verify.add_argument(
        "--expect-app",
        action="append",
        default=[],
        metavar="APP",
        help="an app whose releases must be there (a deleted or renamed app folder is otherwise unseen); repeatable",
    )
    verify.add_argument(
        "--trust-key",
        action="append",
        default=[],
        type=Path,
        metavar="PUBLIC_KEY",
        help="also accept signatures by this Ed25519 public key (PEM or base64), besides keys/trusted.toml "
        "and this machine's rehearsal key; repeatable",
    )

    commands.add_parser("sections", help="list the plan's sections and the notebook of each")

    lab = commands.add_parser(
        "lab",
        help="step through the runbooks in JupyterLab, in a session folder of their own",
        description="Make an interactive session folder and start JupyterLab on it.",
        epilog=LAB_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lab.add_argument("--no-browser", action="store_true", help="do not open a browser (print the URL only)")
    lab.add_argument("--port", type=int, help="JupyterLab's port (default: the first free one from 8888)")
    lab.add_argument(
        "--operator", default="", help="who attests in this session (default: $HOTDASH_OPERATOR or the OS user)"
    )
    lab.add_argument(
        "--config", type=Path, help="release configuration (default: $HOTDASH_CONFIG, else runbooks/hotdash.toml)"
    )
    lab.add_argument("--outputs", type=Path, default=outputs_root(), help=OUTPUTS_HELP)
    lab.add_argument(
        "--no-start", action="store_true", help="make the session folder and print the command; do not start JupyterLab"
    )

    seal = commands.add_parser(
        "seal",
        help="archive an interactive session like a release (report, manifest)",
        description="Archive what was run in a `runbook lab` session into "
        "OUTPUTS/<production app>/<release id>/, marked interactive: the notebooks "
        "as JupyterLab saved them, their HTML, the report and the manifest.",
        epilog="exit codes: as `runbook release` for the outcome the session reached "
        "(0 released, 3 blocked, 4 rolled back, 5 rollback failed, 130 the session "
        "ended before the plan did, 1 sections run out of plan order or a secret in "
        "the archive); 2 not a session, already sealed, or a notebook not saved; "
        "6 a release of the app is running",
    )
    seal.add_argument("session", type=Path, nargs="?", help="the session folder (OUTPUTS/interactive/<session id>)")
    seal.add_argument(
        "--abandoned",
        metavar="RELEASE_ID",
        help="instead of a session: seal a release whose runner died (SIGKILL, a lost machine) as "
        "aborted, saying where it died and what production serves now; refused (exit 6) while its "
        "runner still holds the app's release lock",
    )
    seal.add_argument("--operator", default="", help="who seals (default: the operator the session was made for)")
    seal.add_argument("--outputs", type=Path, default=outputs_root(), help=OUTPUTS_HELP)

    approve = commands.add_parser(
        "approve",
        help="approve what a waiting release will ship, signed with your SSH key",
        description="Sign, with your SSH key (ssh-keygen -Y sign), the digest of what release RELEASE_ID will "
        "deploy to production: the image staging serves, the configuration, the runbooks, the go/no-go decision "
        "and its measurements, as its go/no-go section recorded them. The approval is left in "
        "OUTPUTS/_approvals/RELEASE_ID/, where the production deploy reads it; it counts only if your key is in "
        "keys/allowed_signers under your name, you are not the release's operator, and nothing of what ships "
        "changed since.",
        epilog="exit codes: 0 approval written; 2 nothing to approve, a bad name, reason or key",
    )
    approve.add_argument("release_id", help="the release waiting for approval (its go/no-go shows the command)")
    approve.add_argument("--reason", required=True, help="why you approve; signed and kept with the release")
    approve.add_argument(
        "--key",
        type=Path,
        default=Path.home() / ".ssh" / "id_ed25519",
        help="your SSH private key, or its .pub with the key in ssh-agent (default: ~/.ssh/id_ed25519)",
    )
    approve.add_argument(
        "--as", dest="approver", default="", help="your name as keys/allowed_signers lists it (default: the operator)"
    )
    approve.add_argument("--outputs", type=Path, default=outputs_root(), help=OUTPUTS_HELP)

    audit = commands.add_parser(
        "audit",
        help="the auditor's evidence: every production change, its requester, approvers, checks, outcome",
        description="Write OUT/audit.html (offline) and OUT/audit.csv: one row per production change in the "
        "archive (a sealed release whose production deploy ran), with who requested it, who approved it, the "
        "evidence (smoke outcomes, criteria, links to the section pages), the outcome, the time to restore when "
        "it was rolled back, and every exception: approved by its own author, no approval, staging check "
        "skipped, rolled back, rollback failed, decision changed after deploy, sealed as abandoned, a record "
        "that does not verify.",
        epilog="exit codes: 0 written (exceptions are listed, not failures); 2 bad dates or folders",
    )
    audit.add_argument("--since", help="only changes started at or after this date (2026-11-01 or an ISO time)")
    audit.add_argument("--until", help="only changes started at or before this date")
    audit.add_argument("--app", help="only this app's changes (default: every app in the archive)")
    audit.add_argument("--out", type=Path, default=None, help="where to write (default: OUTPUTS/_audit)")
    audit.add_argument("--outputs", type=Path, default=outputs_root(), help=OUTPUTS_HELP)
    audit.add_argument(
        "--archive",
        metavar="URL",
        default=None,
        help="read the archive's object store (s3://BUCKET[/PREFIX]) instead of --outputs; its releases are "
        "copied into OUT/archive so the page's links work offline",
    )

    index = commands.add_parser(
        "index",
        help="rebuild outputs/index.html, metrics.json and metrics.csv",
        description="Rebuild the archive index (every release, DORA metrics, step "
        "durations) from the manifests; only new or changed ones are read.",
    )
    index.add_argument("--outputs", type=Path, default=outputs_root(), help=OUTPUTS_HELP)
    index.add_argument("--archive", metavar="URL", help=ARCHIVE_HELP)
    index.add_argument("--no-cache", action="store_true", help="read every manifest again (ignore .index-cache.json)")

    history = commands.add_parser("history", help="list archived releases, newest first")
    history.add_argument("--app", help="only this app")
    history.add_argument(
        "--outcome", choices=OUTCOMES, metavar="OUTCOME", help=f"only this outcome: {', '.join(OUTCOMES)}"
    )
    history.add_argument("--limit", type=int, default=20, help="at most this many (default: 20; 0: all)")
    history.add_argument("--outputs", type=Path, default=outputs_root(), help=OUTPUTS_HELP)
    history.add_argument("--archive", metavar="URL", help=ARCHIVE_HELP)

    plan = commands.add_parser(
        "plan",
        help="dry run: render what a release would do as an HTML page to approve",
        description="Render the release plan (targets, apps, commands, checks, budgets, "
        "gates) as one HTML page, without deploying anything.",
    )
    plan.add_argument("--config", type=Path, help="release configuration (default: runbooks/hotdash.toml)")
    plan.add_argument(
        "--target",
        choices=("local", "fly"),
        help="deployment target (default: release.default_target of the configuration)",
    )
    plan.add_argument(
        "--break",
        dest="defects",
        action="append",
        default=[],
        metavar="ENV:DEFECT",
        help="show the rehearsal defects a release would ship (see release --help)",
    )
    plan.add_argument("--out", type=Path, help="where to write the page (default: OUTPUTS/plan-<timestamp>.html)")
    plan.add_argument("--outputs", type=Path, default=outputs_root(), help=OUTPUTS_HELP)
    plan.add_argument("--archive", metavar="URL", help=ARCHIVE_HELP)

    archive = commands.add_parser("archive", help="the archive's object store: complete an upload")
    archive_actions = archive.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    archive_actions.required = True
    push = archive_actions.add_parser(
        "push",
        help="upload a sealed release the store did not take (exit 7), then advance its app's chain head",
    )
    push.add_argument("release_id")
    push.add_argument("--outputs", type=Path, default=outputs_root(), help=OUTPUTS_HELP)
    push.add_argument("--archive", metavar="URL", help=ARCHIVE_HELP)
    push.add_argument("--config", type=Path, help="release configuration ([archive]; default: runbooks/hotdash.toml)")

    lock = commands.add_parser(
        "lock",
        help="the app's release lock: show it, or break a stale store lock (with a recorded reason)",
        description="The app's release lock: with an archive store, a lease in the store (its holder renews it "
        "every third of [archive] lock_minutes and gives it back at the end); else an flock the kernel holds "
        "for the runner's life (lib/hotdash_release/locks.py).",
        epilog="exit codes: 0 shown or broken; 2 usage error (no --reason; a folder lock cannot be broken: "
        "it ends with its process); 6 the lock changed while it was being broken (nothing removed); "
        "7 the store failed",
    )
    lock_actions = lock.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    lock_actions.required = True
    lock_show = lock_actions.add_parser("show", help="who holds the lock, since when, until when, and past breaks")
    lock_break = lock_actions.add_parser(
        "break",
        help="remove the store lock (if it is still the version read), recording who, when and why "
        "in the store (_locks/<app>/)",
    )
    lock_break.add_argument("--reason", required=True, help="why the lock is broken (recorded in the store)")
    lock_break.add_argument("--operator", default="", help="who breaks it (default: $HOTDASH_OPERATOR or the OS user)")
    for sub in (lock_show, lock_break):
        sub.add_argument("--config", type=Path, help="release configuration (default: runbooks/hotdash.toml)")
        sub.add_argument("--target", choices=("local", "fly"), help="deployment target (default: the configuration's)")
        sub.add_argument("--outputs", type=Path, default=outputs_root(), help=OUTPUTS_HELP)
        sub.add_argument("--archive", metavar="URL", help=ARCHIVE_HELP)

    dispatch = commands.add_parser(
        "dispatch",
        help="start the production release on GitHub Actions (deploy-production.yml)",
        description="Run the deploy workflow on GitHub Actions, as `gh workflow run deploy-production.yml` "
        "would. The token comes from $GH_TOKEN or $GITHUB_TOKEN (repo scope, or Actions: write).",
        epilog="exit codes: 0 dispatched; 1 GitHub refused or was unreachable; 2 usage error (no token, no repository)",
    )
    dispatch.add_argument("--reason", required=True, help="why this release is wanted (shown on the run)")
    dispatch.add_argument(
        "--skip-staging-check",
        action="store_true",
        help="ask the workflow to skip the staging check (the release requires a reason)",
    )
    dispatch.add_argument("--ref", help="branch or tag to run the workflow from (default: [github] ref)")
    dispatch.add_argument("--repo", metavar="OWNER/NAME", help="repository (default: [github] repo, then $GH_REPO)")
    dispatch.add_argument("--config", type=Path, help="release configuration (default: runbooks/hotdash.toml)")

    platform = commands.add_parser("platform", help="the local rehearsal platform: status, stop, secrets, releases")
    platform.add_argument("--config", type=Path, help="release configuration (default: runbooks/hotdash.toml)")
    actions = platform.add_subparsers(dest="action", metavar="ACTION", parser_class=_Parser)
    actions.required = True
    actions.add_parser("status", help="what runs for each app of the plan")
    actions.add_parser("stop", help="stop every process the platform started")
    for name, text in (
        ("releases", "an app's releases, newest first"),
        ("logs", "an app's current log"),
        ("secrets", "an app's secret names and digests"),
    ):
        actions.add_parser(name, help=text).add_argument("app")
    set_secret = actions.add_parser("set-secret", help="store a secret; the value is read from standard input")
    set_secret.add_argument("app")
    set_secret.add_argument("name")
    unset = actions.add_parser("unset-secret", help="remove a secret from an app")
    unset.add_argument("app")
    unset.add_argument("name")
    return parser


def main(
    argv: list[str] | None = None, *, kernel_pool: KernelPool | None = None, export_worker: ExportWorker | None = None
) -> int:
    """kernel_pool, export_worker: already started by the `runbook` command (launch.py) for a release."""
    args = build_parser().parse_args(argv)
    try:
        if args.command in ("release", "watch"):
            options = (
                _watch_options(args)
                if args.command == "watch"
                else ReleaseOptions(
                    config_path=args.config,
                    target=args.target,
                    defects=parse_defects(args.defects),
                    operator=args.operator,
                    outputs=args.outputs.resolve(),
                    kernel_name=args.kernel,
                    reason=args.reason,
                    skip_staging_check=args.skip_staging_check,
                    resume=args.resume,
                    archive=args.archive,
                    **_attest_options(args),
                )
            )
            # Importing IPython and the library takes the kernel template about a second: let
            # it happen, and the first kernel start, while the release is prepared and checked.
            pool = kernel_pool or start_kernel_pool()
            try:
                record = run_release(options, progress=_progress, kernel_pool=pool, export_worker=export_worker)
                if record.signals:
                    print(f"runbook: {record.signal_line()}", file=sys.stderr)
                return record.exit_code
            finally:
                if kernel_pool is None:  # one handed in is its caller's to close (launch.py)
                    pool.close()  # unused if the release stopped before its first kernel
        if args.command in ("lab", "seal"):
            return {"lab": _lab, "seal": _seal}[args.command](args)
        if args.command == "verify":
            return _verify(args)
        if args.command in ("index", "history", "plan"):
            return {"index": _index, "history": _history, "plan": _plan}[args.command](args)
        if args.command == "sections":
            from .runbook import describe_plan

            print(describe_plan().to_string(index=False))
            return 0
        if args.command == "dispatch":
            return _dispatch(args)
        if args.command == "approve":
            return _approve(args)
        if args.command == "audit":
            return _audit(args)
        if args.command == "archive":
            return _archive_push(args)
        if args.command == "lock":
            return _lock(args)
        return _platform(args)
    except UsageError as exc:
        print(f"runbook: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ReleaseLocked as exc:
        print(f"runbook: locked: {exc}", file=sys.stderr)
        return EXIT_LOCKED
    except StoreError as exc:
        print(f"runbook: archive store: {exc}", file=sys.stderr)
        return EXIT_NOT_STORED
    except ReleaseAborted as exc:  # before a release folder existed: nothing to seal, nothing changed
        where = " before the release started; nothing was deployed" if args.command == "release" else ""
        print(f"runbook: aborted: {exc}{where}", file=sys.stderr)
        return EXIT_ABORTED
    except ReleaseError as exc:
        print(f"runbook: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_ERROR


def _watch_options(args) -> ReleaseOptions:
    return ReleaseOptions(
        config_path=args.config,
        target=args.target,
        operator=args.operator,
        outputs=args.outputs.resolve(),
        kernel_name=args.kernel,
        watch_of=args.release_id,
        watch_minutes=args.minutes,
        reason=f"watch of release {args.release_id}",
        archive=args.archive,
    )


def _attest_options(args) -> dict:
    """--attest flags as ReleaseOptions(attestations={section: [parameter dicts]}), by the operator, now."""
    if not args.attest:
        return {}
    from .decisions.attest import parse_attest_flags
    from .results import default_operator

    return {"attestations": parse_attest_flags(args.attest, operator=args.operator or default_operator())}


def _lab(args) -> int:
    from .config import load_config
    from .interactive.session import (
        create_session,
        lab_environment,
        lab_stopped_message,
        plan_lab,
        require_jupyterlab,
        runbook_command,
        start_lab,
    )
    from .results import default_operator

    if not args.no_start:
        require_jupyterlab()  # before making a session folder nobody can open
    operator = args.operator or default_operator()
    folder = create_session(args.outputs.resolve(), operator=operator, config_path=args.config, progress=_progress)
    launch = plan_lab(folder, port=args.port, open_browser=not args.no_browser)
    print(f"session: {folder}")
    print(f"operator: {operator} (attestations are recorded in this name)")
    # As JupyterLab is started: the session's kernel spec is found through JUPYTER_PATH.
    jupyter_path = lab_environment(launch, operator)["JUPYTER_PATH"]
    print("command: " + " ".join([f"JUPYTER_PATH={shlex.quote(jupyter_path)}", *map(shlex.quote, launch.command())]))
    print(f"URL: {launch.url}")
    print(f"when done: {runbook_command()} seal {folder}")
    if args.no_start:
        return 0
    code = start_lab(launch, operator=operator)
    print(lab_stopped_message(folder, load_config(args.config).default_target))
    return code


def _seal(args) -> int:
    from .interactive.session import seal_session
    from .results import default_operator

    if args.abandoned:
        from .runner import seal_abandoned, validate_release_id

        if args.session:
            raise UsageError("seal: give a session folder or --abandoned RELEASE_ID, not both")
        validate_release_id(args.abandoned)
        folders = [p for p in args.outputs.resolve().glob(f"*/{args.abandoned}") if p.is_dir()]
        if not folders:
            raise UsageError(f"--abandoned: no release {args.abandoned} under {args.outputs}")
        record = seal_abandoned(folders[0], sealed_by=args.operator or default_operator(), progress=_progress)
        from .archive.index import rebuild_after_release

        rebuild_after_release(args.outputs.resolve(), _progress)
        return EXIT_ERROR if record.archive_problems else (record.exit_code if record.production_needs_person else 0)
    if not args.session:
        raise UsageError("seal: give a session folder (or --abandoned RELEASE_ID)")

    return seal_session(
        args.session, outputs=args.outputs.resolve(), operator=args.operator, progress=_progress
    ).exit_code


def _approve(args) -> int:
    from .decisions.approval import give_approval
    from .results import default_operator, utc_now

    path, request = give_approval(
        args.outputs.resolve(),
        args.release_id,
        approver=args.approver or default_operator(),
        reason=args.reason,
        key=args.key,
        at=utc_now(),
    )
    payload = request.get("payload") or {}
    print(f"approved release {args.release_id}: digest {request['digest']}")
    print(f"  ships image {payload.get('image')} to {payload.get('app')} under {payload.get('decision')}")
    print(f"  approval: {path}")
    return 0


def _audit(args) -> int:
    from .archive.audit import production_changes, write_audit
    from .archive.catalog import parse_time

    for name in ("since", "until"):
        value = getattr(args, name)
        if value and parse_time(value if "T" in value else value + "T00:00:00Z") is None:
            raise UsageError(f"--{name}: {value!r} is not a date (2026-11-01) or an ISO time (2026-11-01T09:00:00Z)")
    since = args.since if not args.since or "T" in args.since else args.since + "T00:00:00Z"
    until = args.until if not args.until or "T" in args.until else args.until + "T23:59:59.999Z"
    outputs = args.outputs.resolve()
    out = (args.out or outputs / "_audit").resolve()
    store = _store_of(args) if args.archive else None
    if store is not None:
        from .archive.storesync import pull_all

        outputs = out / "archive"
        outputs.mkdir(parents=True, exist_ok=True)
        print(f"audit: {store.url}: {pull_all(store, outputs)} object(s) read into {outputs}")
    if not outputs.is_dir():
        raise UsageError(f"--outputs: {outputs} is not a folder")
    changes = production_changes(outputs, since=since, until=until, app=args.app)
    span = f"{args.since or 'the first release'} to {args.until or 'now'}"
    html_path, csv_path = write_audit(changes, out, title=f"HotDash production changes, {span}", archive_root=outputs)
    flagged = [c for c in changes if c.exceptions]
    print(f"audit: {len(changes)} production change(s), {len(flagged)} with exceptions")
    for c in flagged:
        print(f"  {c.release_id} ({c.outcome}): {'; '.join(c.exceptions)}")
    print(f"  page: {html_path}\n  csv:  {csv_path}")
    return 0


def _verify(args) -> int:
    from .runner import validate_release_id

    if args.release_id:
        validate_release_id(args.release_id)
    store = _store_of(args)
    if store is not None:
        import tempfile

        from .archive.retention import check_retention
        from .archive.storesync import pull_all, set_aside_unchained

        # Exactly what the store holds, in a folder of its own: nothing of this machine's copy counts.
        with tempfile.TemporaryDirectory(prefix="hotdash-verify-") as mirror:
            retentions: dict = {}
            objects = pull_all(store, Path(mirror), retentions=retentions)
            print(f"verify: {store.url}: {objects} object(s) read")
            retained = check_retention(store.url, store.lock_configuration(), retentions, store.retention)
            for line in retained.lines:
                print(f"  {line}")
            for name in set_aside_unchained(Path(mirror)):
                print(f"  not in the chain (its runner lost the head to another, or it was added): {name}")
            args.outputs = Path(mirror)
            return _verify_folder(args, where=store.url, more=retained.problems)
    if not args.outputs.is_dir():
        raise UsageError(f"--outputs: {args.outputs} is not a folder")
    return _verify_folder(args, where=str(args.outputs))


def _verify_folder(args, *, where: str, more: list = ()) -> int:
    from .archive.integrity import verify_archive
    from .archive.summary import summary_problems

    heads = {}
    for pin in args.expect_head:
        app, _, digest = pin.rpartition(":")
        if not app or not re.fullmatch(r"[0-9a-f]{64}", digest):
            raise UsageError(f"--expect-head: {pin!r} is not APP:SHA256 (64 lowercase hex digits)")
        heads[app] = digest
    result = verify_archive(
        args.outputs,
        args.release_id,
        expect_apps=args.expect_app,
        expect_heads=heads,
        trust_keys=args.trust_key,
        app_checks=(summary_problems,),
    )
    result.problems += [p for p in more if not args.release_id or p.release.endswith("/" + args.release_id)]
    if args.release_id and not result.checked:
        raise UsageError(f"release id: {args.release_id} is not in {where}")
    if result.problems:
        print(f"verify: FAILED: {result.problems[0]}")
        for problem in result.problems[1:]:
            print(f"  also: {problem}")
        return EXIT_ERROR
    print(f"verify: ok: {result.checked} release(s) match their signed manifests and hash chains")
    for key, holder in sorted(result.signers.items()):
        print(f"  signed by {key}: {holder}")
    for pinned in result.pinned:
        print(f"  pinned head found: {pinned}")
    if not heads:
        print("  no --expect-head: releases removed from the end together with their checkpoint would not show")
    return 0


def _progress(line: str) -> None:
    print(line, flush=True)


def _index(args) -> int:
    from .archive.index import rebuild_index

    store = _store_of(args)
    if store is not None:
        from .archive.storesync import publish_index

        build = publish_index(
            store,
            args.outputs.resolve(),
            lambda root: rebuild_index(root, use_cache=not args.no_cache),
            force=args.no_cache,
        )
        if build is None:
            print(f"index: {store.key_url('index.html')} is current: nothing new in the store")
            return 0
        print(f"index: {store.key_url('index.html')} (from the local copy {args.outputs})")
    else:
        build = rebuild_index(args.outputs, use_cache=not args.no_cache)
    print(
        f"index: {build.index}: {build.releases} releases ({build.parsed} manifests read, {build.cached} "
        f"from the cache) in {build.seconds:.2f} s"
    )
    print(f"metrics: {build.metrics_json}, {build.metrics_csv}")
    return 0


def _history(args) -> int:
    from .archive.catalog import load_catalog
    from .archive.index import history_lines

    if args.limit < 0:
        raise UsageError(f"--limit: must be 0 (all) or more, got {args.limit}")
    store = _store_of(args)
    if store is not None:
        from .archive.storesync import pull_catalog

        pull_catalog(store, args.outputs.resolve())  # only what is new since the last pull
    catalog = load_catalog(args.outputs)
    print("\n".join(history_lines(catalog, app=args.app, outcome=args.outcome, limit=args.limit or None)))
    return 0


def _plan(args) -> int:
    from .archive.planview import default_plan_path, write_plan
    from .config import load_config

    config = load_config(args.config)
    target = args.target or config.default_target
    config.target_settings(target)
    defects = parse_defects(args.defects)
    if defects and target != "local":
        raise UsageError(f"--break: rehearsal defects need --target local, not {target!r}")
    archive = ""
    store = _store_of(args)
    if store is not None:  # what the release would append to: the app's chain head in the store, read now
        from .archive.storesync import read_head

        app = config.environment("production").app
        head = read_head(store, app)
        archive = f"{store.url}; head of {app}: " + (
            f"{head[1].get('head_release_id')} ({head[1].get('releases')} release(s))" if head else "no release yet"
        )
    path = write_plan(config, target, args.out or default_plan_path(args.outputs), defects=defects, archive=archive)
    print(f"plan: {path} (nothing was deployed)")
    return 0


def _store_of(args):
    """The archive store the command reads (--archive, $HOTDASH_ARCHIVE, [archive] url), or None."""
    from .archive.storesync import archive_store
    from .config import ArchiveSettings, load_config

    try:  # [archive] of the configuration, if one loads: its retention, and its url unless one is named
        settings = load_config(getattr(args, "config", None)).archive
    except UsageError:
        settings = ArchiveSettings()
    return archive_store(settings, args.outputs.resolve(), args.archive)


def _archive_push(args) -> int:
    from .archive.storesync import HeadMoved, push_release
    from .runner import validate_release_id

    validate_release_id(args.release_id)
    store = _store_of(args)
    if store is None:
        raise UsageError("archive push: no archive store: give --archive, $HOTDASH_ARCHIVE or [archive] url")
    outputs = args.outputs.resolve()
    folders = [p for p in outputs.glob(f"*/{args.release_id}") if p.is_dir()]
    if not folders:
        raise UsageError(f"archive push: no release {args.release_id} under {outputs}")
    app = folders[0].parent.name
    try:
        checkpoint = push_release(store, outputs, app, args.release_id)
    except HeadMoved as exc:  # its chain position is taken: it can never be appended
        print(f"runbook: archive push: {exc}", file=sys.stderr)
        _give_back_lock(store, app, args.release_id)
        return EXIT_LOCKED
    _give_back_lock(store, app, args.release_id)
    print(
        f"archive push: {store.key_url(app + '/' + args.release_id)}/ complete; head of {app}: "
        f"{checkpoint.get('head_release_id')} ({checkpoint.get('releases')} release(s))"
    )
    from .archive.index import rebuild_after_release

    rebuild_after_release(outputs, _progress, store=store)
    return 0


def _give_back_lock(store, app: str, release_id: str) -> None:
    """The release's store lock, if its runner could not give it back (the store was down at its end)."""
    from .archive.storesync import lock_key
    from .locks import give_back

    done = give_back(store, lock_key(app), release_id)
    if done:
        print(f"archive push: {done}")


def _lock(args) -> int:
    from .config import load_config
    from .locks import (
        break_store_lock,
        describe_holder,
        describe_store_lock,
        flock_holder_pid,
        lock_paths,
        process_text,
        read_breaks,
        read_holder,
    )

    config = load_config(args.config)
    app = config.environment("production").app
    store = _store_of(args)
    if store is not None:
        from .archive.storesync import lock_key

        if args.action == "break":
            from .results import check_operator, default_operator

            operator = args.operator or default_operator()
            check_operator(operator)
            print(break_store_lock(store, lock_key(app), app, reason=args.reason, operator=operator))
            return 0
        print(describe_store_lock(store, lock_key(app))[0])
        for done in read_breaks(store, app)[-5:]:
            print(f"  broken at {done.get('broken_at')} by {done.get('broken_by')}: {done.get('reason')}")
        return 0
    from .runner import release_lock_dir
    from .targets import make_target

    target = make_target(config, args.target or config.default_target)
    lock_path, holder_path = lock_paths(release_lock_dir(target, args.outputs.resolve() / app), app)
    pid = flock_holder_pid(lock_path) if lock_path.exists() else None
    holder = read_holder(holder_path)
    if args.action == "break":
        raise UsageError(
            f"lock break: {lock_path} is an flock: the kernel releases it when its process ends "
            + (
                f"(held by pid {pid}: stop it, e.g. kill -TERM {pid}; the release is sealed)"
                if pid
                else "(not held now)"
            )
        )
    if pid:
        print(f"{lock_path}: held by pid {pid}; {describe_holder(holder)}")
    elif holder:
        print(f"{lock_path}: free; {holder_path} left by {describe_holder(holder)} ({process_text(holder)})")
    else:
        print(f"{lock_path}: free")
    return 0


def _dispatch(args) -> int:
    from .config import load_config
    from .integrations.github import dispatch_release

    dispatched = dispatch_release(
        load_config(args.config),
        reason=args.reason,
        skip_staging_check=args.skip_staging_check,
        ref=args.ref,
        repo=args.repo,
    )
    print(dispatched.describe())
    return 0


def _platform(args) -> int:
    from .config import load_config
    from .targets import make_target

    config = load_config(args.config)
    platform = make_target(config, "local")
    apps = [env.app for env in config.environments.values()]
    if args.action == "status":
        for app in apps:
            status = platform.status(app)
            print(f"{app:24} {status.state:13} v{status.version or '-':<4} {status.url or ''} {status.image_ref or ''}")
        database = platform.database
        print(f"{'postgres':24} {'started' if database.running() else 'stopped':13} {database.address() or ''}")
    elif args.action == "stop":
        stopped = platform.stop()
        print("stopped: " + (", ".join(stopped) or "nothing was running"))
    elif args.action == "releases":
        for r in platform.releases(args.app):
            print(f"v{r.version:<4} {r.status:9} {r.created_at} {r.user:12} {r.image_ref} {r.description}")
    elif args.action == "logs":
        print("\n".join(platform.logs(args.app)))
    elif args.action == "secrets":
        for s in platform.secrets(args.app):
            print(f"{s.name:24} {s.digest} {s.status}")
    elif args.action == "set-secret":
        value = sys.stdin.read().rstrip("\n")
        if not value:
            raise UsageError("set-secret: the value comes from standard input, and it was empty")
        platform.set_secrets(args.app, {args.name: value})
        print(f"{args.app}: {args.name} set")
    elif args.action == "unset-secret":
        platform.unset_secrets(args.app, [args.name])
        print(f"{args.app}: {args.name} removed")
    return 0


if __name__ == "__main__":
    from .execution.terminal import guarded_output

    with guarded_output():
        sys.exit(main())
