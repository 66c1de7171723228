"""The `runbook` command. For `runbook release` the kernel pool starts first, before the rest
of the CLI is imported (about 0.2 s): the kernel template's own imports (about a second) and
the first kernel's start are what the first section waits for, so they start as early as
they can; the HTML export worker starts too. A release for another kernel (--kernel) makes its
own pool; this one is closed."""

from __future__ import annotations

import sys


def main() -> int:
    argv = sys.argv[1:]
    pool = worker = None
    if argv[:1] == ["release"] and not {"-h", "--help"} & set(argv):
        from .execution.pool import start_kernel_pool

        pool = start_kernel_pool()
        from .archive.seal import ExportWorker

        # Its imports (nbconvert) at a low priority, while this process imports and the
        # template has not forked a kernel yet: a core would mostly wait here otherwise.
        worker = ExportWorker()
        worker.start()
    try:
        from .cli import main as cli_main

        return cli_main(argv, kernel_pool=pool, export_worker=worker)
    finally:
        if pool:
            pool.close()  # unused if the release stopped before its first kernel
        if worker:
            worker.close()
