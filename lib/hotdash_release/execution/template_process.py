"""The kernel template: a process that imports the kernel and the library once, then forks a
fresh kernel process for each section.

Booting a kernel is mostly importing (IPython, zmq, the library): about a second of
CPU per kernel on our machines. A fork copies a process that has done the imports, so each
section still gets a process of its own that no other section ran code in, for a few
milliseconds. The template itself never runs runbook code and never starts a kernel: it
imports, waits for requests and reaps its children. What a forked kernel inherits is what
a freshly started one would have after the same imports.

Protocol, one JSON line each way over the socket the runner passes as argv[1]:
    {"argv": [...], "cwd": "...", "env": {...}}  ->  {"pid": 1234} | {"error": "..."}
    {"exited": 1234}                             ->  {"status": <exit code or null>}
When the runner closes its end (or dies), the template kills the kernels it forked and exits.
"""

from __future__ import annotations

import ctypes
import gc
import importlib.util
import json
import os
import signal
import socket
import sys
import traceback
from pathlib import Path

#: Imported once here instead of in every kernel: the kernel itself (its debugger too, which
#: it imports while starting), the runbooks' library, and what the library imports on first
#: use in a section (httpx's transport stack on the first request, the targets, importlib.resources
#: readers when a build reads the app source, psycopg). Not pandas: no section needs it (tables.py).
#: tests/test_kernels.py lists what a section still imports.
PRELOAD = (
    "ipykernel.kernelapp",
    "ipykernel.ipkernel",
    "ipykernel.debugger",
    "hotdash_release.runbook",
    "httpcore",
    "httpcore._backends.sync",
    "httpcore._backends.anyio",
    "certifi",
    "hotdash_release.targets.local",
    "hotdash_release.targets.fly",
    "hotdash_release.archive.store",  # the redactor asks it for the archive store's credentials
    "importlib.readers",
    # The database checks' client (checks/database.py): about 175 ms to import. No connection is
    # made here, so a fork inherits no socket.
    "psycopg",
)

_PR_SET_PDEATHSIG = 1
_SET_BY_IMPORTS: dict[str, str] = {}
#: Where each forked kernel writes what it prints outside its cells (its stdout and stderr:
#: tornado's and zmq's tracebacks at a signal, warnings): `<dir>/<pid>.log`. Set by the runner's
#: pool (KERNEL_LOGS_ENV), so that none of it reaches the operator's terminal; unset (JupyterLab):
#: the kernel's output goes where the server's goes, as a started kernel's would.
KERNEL_LOGS_ENV = "HOTDASH_KERNEL_LOGS"
_KERNEL_LOGS = ""
_LAUNCHER = getattr(importlib.util.find_spec("ipykernel_launcher"), "origin", None) or "ipykernel_launcher"


def main(argv: list[str]) -> None:
    channel = socket.socket(fileno=int(argv[1]))
    # The template is not a kernel; what a kernel started by ipykernel_launcher would not
    # have on its path, the template must not hand down either.
    if sys.path and (sys.path[0] == "" or Path(sys.path[0]) == Path.cwd()):
        del sys.path[0]
    _die_with_parent()
    global _KERNEL_LOGS
    _KERNEL_LOGS = os.environ.pop(KERNEL_LOGS_ENV, "")
    before_imports = dict(os.environ)
    for module in PRELOAD:
        __import__(module)
    # What the imports put in the environment (debugpy sets PYDEVD_USE_FRAME_EVAL): a spawned
    # kernel's own imports would set it in its environment, so each fork's gets it too.
    global _SET_BY_IMPORTS
    _SET_BY_IMPORTS = {k: v for k, v in os.environ.items() if before_imports.get(k) != v}
    # Library state every kernel would otherwise make for itself: the HTTP clients' TLS context
    # (its CA bundle loaded; about 55 ms) is made here once (tls.py).
    from hotdash_release.checks.tls import tls_context

    tls_context()
    # What the imports made stays put: the kernels' garbage collector never walks it, so it
    # does not write to (and copy) every page a fork shares with the template.
    gc.collect()
    gc.freeze()
    children: dict[int, int | None] = {}  # pid -> exit status once reaped

    def reap(_signum=None, _frame=None) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            children[pid] = os.waitstatus_to_exitcode(status)

    signal.signal(signal.SIGCHLD, reap)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides when kernels stop
    stream = channel.makefile("rwb", buffering=0)
    template = os.getpid()
    try:
        _send(stream, {"ready": template})
    except OSError:  # the runner stopped (a signal) while this imported: nothing to serve, nothing to say
        os._exit(0)
    try:
        for line in stream:
            request = json.loads(line)
            if "exited" in request:
                reap()
                status = children.get(int(request["exited"]))
                if status is not None:
                    del children[int(request["exited"])]  # a template that serves many releases forgets its dead
                _send(stream, {"status": status})
                continue
            # SIGCHLD waits until the child is on record, so a kernel that dies at once is reaped too.
            signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
            try:
                pid = _fork_kernel(request, channel)
                children[pid] = None
            except OSError as exc:
                _send(stream, {"error": f"fork failed: {exc}"})
                continue
            finally:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
            _send(stream, {"pid": pid})
    except _KernelEnded as ended:  # only ever in a forked kernel, never in the template
        sys.exit(ended.code)
    finally:
        if os.getpid() == template:
            for pid, status in children.items():
                if status is None:
                    _kill_group(pid)
            # Nothing to flush or finalize: leave without tearing down the imported modules.
            os._exit(0)


class _KernelEnded(Exception):
    """A forked kernel's app returned: it leaves the template's loop and ends as a stock kernel
    does, through the interpreter's own exit (atexit handlers run, open files are flushed)."""

    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


def _fork_kernel(request: dict, channel: socket.socket) -> int:
    template = os.getpid()
    pid = os.fork()
    if pid:
        return pid
    # The child: from here on a kernel, never back into the template's loop.
    code = 1
    try:
        # The runner talks to the template, never to a kernel. Detached first, so that the socket
        # object's finalization at the kernel's exit cannot close a descriptor reused since.
        os.close(channel.detach())
        os.setsid()  # its own process group, so the runner can signal the kernel and its children
        _die_with_parent()
        if os.getppid() != template:  # the template died before the line above: no signal will come
            os._exit(1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})
        if _KERNEL_LOGS:
            log = os.open(
                os.path.join(_KERNEL_LOGS, f"{os.getpid()}.log"), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600
            )
            os.dup2(log, 1)
            os.dup2(log, 2)
            os.close(log)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ.update({k: v for k, v in _SET_BY_IMPORTS.items() if k not in request["env"]})
        # ipykernel read JPY_PARENT_PID when the template imported it; the kernel's parent is the
        # template, and the kernel ends if the template goes.
        argv = [*request["argv"], f"--IPKernelApp.parent_handle={os.getppid()}"]
        sys.argv = [_LAUNCHER, *argv]  # as `python -m ipykernel_launcher` would have it
        _skip_empty_flushes()
        _kernel_app().launch_instance(argv=argv)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    except BaseException:
        traceback.print_exc()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)  # a kernel that could not even start: nothing of a section to finish
    _quiet_teardown()
    raise _KernelEnded(code)


def _quiet_teardown() -> None:
    """ipykernel 7 stops its event loop with a task still pending (poll_stopped_queue): at the
    interpreter's exit asyncio reports it destroyed, and its coroutine never awaited, on the
    stderr the kernel shares with the runner's terminal. Only that teardown is silenced, after
    the kernel's app returned: nothing a section printed or registered is."""
    import logging
    import warnings

    logging.getLogger("asyncio").disabled = True
    warnings.filterwarnings("ignore", message="coroutine .* was never awaited", category=RuntimeWarning)


def _kernel_app():
    """ipykernel's kernel application, handling shell messages on the kernel's main thread.

    ipykernel 7 receives them on a thread of their own and hands each to the main thread and
    its reply back, for subshells (concurrent execution in one kernel), which a release never
    asks for. Without that thread (ipykernel's own way when there is none, as before 7) a short
    cell takes about 4.4 ms instead of 5.6 here. Subshells are then not offered (kernel_info
    says so); interrupts, outputs and replies are as before. On an ipykernel without that
    thread nothing changes."""
    from ipykernel.kernelapp import IPKernelApp

    class ReleaseKernelApp(IPKernelApp):
        def init_sockets(self) -> None:
            super().init_sockets()
            unused = getattr(self, "shell_channel_thread", None)
            if unused is not None and not unused.is_alive():
                self.shell_channel_thread = None
                unused.io_loop.close()

    return ReleaseKernelApp


def _skip_empty_flushes() -> None:
    """ipykernel flushes stdout and stderr at least four times per cell (and twice per display);
    each flush hands a callback to the IOPub thread and waits for it, even when nothing was
    written: about a third of the kernel's time on a short cell here. A flush with nothing
    written, nothing scheduled and no subprocess output pending returns at once instead. What
    is written is still flushed, and IOPub keeps its order (the idle status follows the
    outputs on the same thread), which is what nbclient waits for. Only the release's forked
    kernels do this; on an ipykernel without these attributes nothing changes."""
    from ipykernel.iostream import OutStream

    probe = OutStream.__init__.__code__.co_names
    if not all(name in probe for name in ("_flush_pending", "_subprocess_flush_pending", "_buffers")):
        return
    flush = OutStream.flush

    def flush_if_anything(self) -> None:
        if self._flush_pending or self._subprocess_flush_pending or self._buffers:
            flush(self)

    OutStream.flush = flush_if_anything


def _die_with_parent() -> None:
    """Linux: be killed when the parent goes, so a killed runner leaves no template or kernel."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)
    except (OSError, AttributeError):
        pass  # not Linux: the runner's closed channel still ends the template and its kernels


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def _send(stream, message: dict) -> None:
    stream.write(json.dumps(message).encode() + b"\n")


if __name__ == "__main__":
    main(sys.argv)
