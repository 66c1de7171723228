"""SIGINT, SIGTERM and SIGHUP for the `runbook` command: recorded always, raised only where stopping is safe.

SIGHUP is what a closed terminal or a dropped SSH connection sends: it is handled like SIGTERM
(a release is not killed half way through changing production because its operator's
connection dropped). The terminal is then gone: terminal.py keeps the command's output from
failing the release. A command started with SIGHUP ignored (`nohup`) keeps ignoring it.

launch.py installs the handler before any heavy import, so a signal at any moment ends the
command with exit 130 and one line. A signal is only recorded until code says it may be
interrupted: raised from inside an import, an exception becomes whatever the importing library
makes of it (zmq turns it into an ImportError), so the command acts on a signal recorded while
it imported at its first safe point (`check`). The runner says where a signal may interrupt
(`during(..., interruptible=True)`: preparing, a section before production changes) and where
it is only recorded, to be acted on at the next safe point: from the production deploy until
production is verified or rolled back, and while sealing. Only the first signal raises; later
ones are recorded, so the cleanup after an abort is not cut short.

Light on purpose (no third-party import): it is imported first thing by the command.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from ..results import utc_now

HANDLED = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)  # no SIGHUP on Windows


class ReleaseAborted(Exception):
    """SIGINT, SIGTERM or SIGHUP arrived where the command may stop."""


class Signals:
    """The process's record of SIGINT/SIGTERM/SIGHUP, and whether one may interrupt what runs now."""

    def __init__(self) -> None:
        self.received: list[dict] = []  # {"signal", "at", "during", "deferred"}
        self._during = "start"
        self._interruptible = False
        self._raised = False
        self._previous: dict | None = None
        self._on_deferred: Callable[[], None] | None = None

    # -- installing --------------------------------------------------------------------

    def install(self) -> bool:
        """Handle the signals in this process; False if already installed or not the main thread."""
        if self._previous is not None or threading.current_thread() is not threading.main_thread():
            return False
        self._previous = {
            sig: signal.signal(sig, self._handle)
            for sig in HANDLED
            # Started under nohup (SIGHUP ignored): the operator asked to outlive the terminal.
            if not (sig == getattr(signal, "SIGHUP", None) and signal.getsignal(sig) == signal.SIG_IGN)
        }
        return True

    def restore(self) -> None:
        for sig, handler in (self._previous or {}).items():
            signal.signal(sig, handler)
        self._previous = None

    def _handle(self, signum: int, _frame) -> None:
        name = signal.Signals(signum).name
        interrupt = self._interruptible and not self._raised
        self.received.append({"signal": name, "at": utc_now(), "during": self._during, "deferred": not interrupt})
        if interrupt:
            self._raised = True
            raise ReleaseAborted(f"{name} received")
        if self._on_deferred is not None:
            self._on_deferred()

    # -- where a signal may interrupt -----------------------------------------------------

    @contextmanager
    def during(self, what: str, *, interruptible: bool, on_signal: Callable[[], None] | None = None) -> Iterator[None]:
        """Run a block as `what`: interruptible (a signal raises there, and one recorded
        before raises on entry) or not (a signal is recorded, and acted on after). on_signal:
        what a recorded signal also does at once (the watch: interrupt its kernel, which ends
        the window early and keeps what it measured)."""
        saved = self._during, self._interruptible, self._on_deferred
        self._during, self._interruptible, self._on_deferred = what, interruptible, on_signal
        try:
            if interruptible:
                self.check()
            yield
        finally:
            self._during, self._interruptible, self._on_deferred = saved

    def check(self) -> None:
        """Raise ReleaseAborted for a signal recorded earlier and not acted on yet."""
        if self.received and not self._raised:
            self._raised = True
            raise ReleaseAborted(f"{self.received[0]['signal']} received")

    @property
    def unhandled(self) -> dict | None:
        """The first signal recorded and not acted on (the command must still stop for it)."""
        return self.received[0] if self.received and not self._raised else None

    def settle(self) -> None:
        """What was recorded has been acted on: a later signal is only recorded (the command is ending)."""
        if self.received:
            self._raised = True

    def reset(self) -> None:
        """Start over: a runner that runs several releases (the record keeps the old list)."""
        self.received, self._raised = [], False


#: The one record of the process: signal handlers are per process.
SIGNALS = Signals()
