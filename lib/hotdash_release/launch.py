"""The `runbook` command. SIGINT, SIGTERM and SIGHUP are handled before anything else is imported
(execution/interrupts.py), so a signal at any moment ends the command with exit 130 and one
line, never a traceback or a death by signal. For `runbook release` the kernel pool starts
next, before the rest of the CLI is imported (about 0.2 s): the kernel template's own imports
(about a second) and the first kernel's start are what the first section waits for, so they
start as early as they can; the HTML export worker starts too. A release for another kernel
(--kernel) makes its own pool; this one is closed."""

from __future__ import annotations

import sys

from .execution.interrupts import SIGNALS, ReleaseAborted
from .execution.terminal import guarded_output

EXIT_ABORTED = 130  # as runner.EXIT_ABORTED, which this module must not wait to import


def main() -> int:
    SIGNALS.install()
    with guarded_output():  # control characters escaped; a closed pipe or terminal is no error
        return _main()


def _main() -> int:
    pool = worker = None
    try:
        argv = sys.argv[1:]
        if argv[:1] in (["release"], ["watch"]) and not {"-h", "--help"} & set(argv):
            from .archive.signing import take_key_from_environment

            take_key_from_environment()  # before the kernel template starts: no kernel inherits the key
            from .archive.store import prepare_client, take_credentials_from_environment

            take_credentials_from_environment()  # the archive store's AWS_* credentials, likewise
            prepare_client()  # boto3's second of imports, while the kernel template imports
            from .execution.pool import start_kernel_pool

            pool = start_kernel_pool()
            from .archive.seal import ExportWorker

            # Its imports (nbconvert) at a low priority, while this process imports and the
            # template has not forked a kernel yet: a core would mostly wait here otherwise.
            worker = ExportWorker()
            worker.start()
        from .cli import main as cli_main

        return cli_main(argv, kernel_pool=pool, export_worker=worker)
    except ReleaseAborted as exc:
        print(f"runbook: aborted: {exc}; nothing was started", file=sys.stderr)
        return EXIT_ABORTED
    finally:
        if pool:
            pool.close()  # unused if the release stopped before its first kernel
        if worker:
            worker.close()
