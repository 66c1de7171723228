"""What /proc says about a local process: the lock, the local platform and the kernel pool
each need to know whether a pid still runs and whether it is still the process they started."""

from __future__ import annotations

from pathlib import Path


def proc_stat(pid: int) -> tuple[str, int] | None:
    """(state letter, start time in clock ticks) from /proc/<pid>/stat, None if gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name (field 2) may hold spaces and ')'; fields after the last ')' are fixed.
    fields = text[text.rindex(")") + 2 :].split()
    return fields[0], int(fields[19])


def running(pid: int) -> bool:
    """Alive and not a zombie (exited, its parent has not reaped it yet)."""
    stat = proc_stat(pid)
    return stat is not None and stat[0] not in "ZX"
