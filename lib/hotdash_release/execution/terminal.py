"""What the `runbook` command writes to a terminal: text from records shown, never obeyed, and a
terminal or pipe that goes away mid-command is not an error.

Records can be edited by anyone with disk access, and hold what remote services answered. A
string from one (a manifest's reason, an operator, a file name found in a release folder, a
holder file's details) may carry control characters: ESC sequences move the cursor, erase and
rewrite lines, a carriage return overwrites, BEL rings, C1 controls (U+0080-U+009F) act as ESC
on some terminals, bidi overrides (U+202E) reorder what is shown. `shown` spells every character
that is not printable as its Python escape (`\\x1b`, `\\r`, `\\u202e`), so the reader sees that
it is there and the terminal never acts on it.

`guarded_output` puts the command's stdout and stderr behind that sanitiser (newlines and tabs
pass: the command's own layout), so nothing the command prints can reach the terminal raw,
whichever code path printed it. The same guard makes a reader that went away harmless: `runbook
verify | head -1` (a closed pipe, EPIPE) or a closed terminal or SSH connection (EIO, after its
SIGHUP). What cannot be written is dropped (the stream's descriptor is pointed at /dev/null, for
the processes the command starts later); the command finishes what it was doing (a
release is never cut short because nobody reads its progress) and exits with its own code.

Light on purpose (no third-party import): launch.py uses it before its heavy imports.
"""

from __future__ import annotations

import errno
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager

#: errno of a write to a reader that went away: a closed pipe; a hung-up terminal.
GONE = frozenset({errno.EPIPE, errno.EIO, errno.ENXIO})


def shown(text: object, *, keep_layout: bool = False) -> str:
    """text as a terminal may receive it: every character that is not printable (control
    characters C0 and C1, DEL, bidi and other format characters, line and paragraph separators)
    as its escape. keep_layout: newline and tab pass (the command's own multi-line output)."""
    text = str(text)
    if text.isprintable():
        return text
    kept = "\n\t" if keep_layout else ""
    return "".join(c if c.isprintable() or c in kept else repr(c)[1:-1] for c in text)


class GuardedStream:
    """A text stream whose writes are sanitised (`shown`, layout kept) and survive a reader
    that went away. Everything else is the wrapped stream's."""

    def __init__(self, stream) -> None:
        self.wrapped = stream
        self.gone = False

    def write(self, text: str) -> int:
        if not self.gone:
            try:
                self.wrapped.write(shown(text, keep_layout=True))
            except OSError as exc:
                self._lost(exc)
        return len(text)

    def flush(self) -> None:
        if not self.gone:
            try:
                self.wrapped.flush()
            except OSError as exc:
                self._lost(exc)

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def _lost(self, exc: OSError) -> None:
        if exc.errno not in GONE:
            raise exc
        self.gone = True
        # The descriptor itself to /dev/null: processes started from now on inherit it, not a
        # closed pipe that would kill them with SIGPIPE at their first line.
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self.wrapped.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass  # not a file (a test's capture): dropping the writes is enough

    def __getattr__(self, name: str):
        return getattr(self.wrapped, name)


@contextmanager
def guarded_output() -> Iterator[None]:
    """sys.stdout and sys.stderr behind GuardedStream for the block (once: nested blocks reuse it)."""
    if isinstance(sys.stdout, GuardedStream):
        yield
        return
    saved = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = GuardedStream(sys.stdout), GuardedStream(sys.stderr)
    try:
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        sys.stdout, sys.stderr = saved
