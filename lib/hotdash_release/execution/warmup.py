"""What a runbook kernel does once it has started, before any section has it.

A kernel starts ahead of its section (kernels.KernelPool), so the first-use costs paid
here are off the release's clock: IPython builds its display formatters on the first
display of a kernel (and looks up how to show a type on its first display), about 4 ms.
No section code runs and nothing stays behind: no name in the user's namespace, no
execution count, no output. The kernel runs this as its `exec_lines` (pool.py).
"""

from __future__ import annotations


def warm_up(shell) -> None:
    from ..tables import ResultTable

    shell.display_formatter.format(ResultTable.of("warm-up", [{"check": "display", "ok": True}]))


#: The kernel's startup line: an expression with no value and no assignment, so it leaves
#: the namespace as a fresh kernel has it.
EXEC_LINE = "__import__('hotdash_release.execution.warmup').execution.warmup.warm_up(get_ipython())"
