"""The `runbook` command. For `runbook release` the kernel template starts first, before the
rest of the CLI is imported (about 0.2 s): the template's own imports (about a second) are
what the first section waits for, so they start as early as they can."""

from __future__ import annotations

import sys


def main() -> int:
    argv = sys.argv[1:]
    template = None
    if argv[:1] == ["release"] and not {"-h", "--help"} & set(argv):
        from .kernels import start_kernel_template

        template = start_kernel_template()
    try:
        from .cli import main as cli_main

        return cli_main(argv, kernel_template=template)
    finally:
        if template:
            template.close()  # unused if the release stopped before its first kernel
