"""The runner's side of forked kernels: the kernel template process (template_process.py runs
in it) that imports IPython and the library once, and asks for a fork per section; and which
kernel specs a fork can stand in for (this very Python's `ipykernel_launcher`, on Linux).
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

from ..errors import KernelStartError
from .procs import running

#: How long the template may take to import everything and answer.
TEMPLATE_TIMEOUT_S = 120.0


def forkable(kernel_name: str) -> bool:
    """Fork only stands in for `python -m ipykernel_launcher` of this very interpreter on Linux."""
    if not sys.platform.startswith("linux"):
        return False
    from jupyter_client.kernelspec import KernelSpecManager

    try:
        argv = KernelSpecManager().get_kernel_spec(kernel_name).argv
    except Exception:
        return False
    return launcher_arguments([_interpreter(argv[0]), *argv[1:]]) is not None


def _interpreter(program: str) -> str:
    # What jupyter_client does too: a bare "python" in a kernel spec means the running one.
    major, minor = sys.version_info[:2]
    return sys.executable if program in ("python", f"python{major}", f"python{major}.{minor}") else program


def launcher_arguments(cmd: list[str]) -> list[str] | None:
    if len(cmd) < 3 or cmd[1:3] != ["-m", "ipykernel_launcher"]:
        return None
    try:
        same = os.path.samefile(cmd[0], sys.executable)
    except OSError:
        return None
    return cmd[3:] if same else None


def start_kernel_template(cwd: Path | None = None, *, kernel_logs: Path | None = None) -> KernelTemplate | None:
    """A template for the runbooks' kernels, started ahead of the release that will use it."""
    if not sys.platform.startswith("linux"):
        return None
    from ..paths import RUNBOOKS_DIR

    return KernelTemplate(cwd or RUNBOOKS_DIR, kernel_logs=kernel_logs)


class KernelTemplate:
    """The runner's end of the kernel template process: asks it for forks, and ends it.

    Start it from the thread that runs the release: on Linux the template is killed when
    the thread that started it ends, so a runner killed outright leaves no template behind.
    """

    def __init__(self, cwd: Path, *, kernel_logs: Path | None = None) -> None:
        """kernel_logs: a folder for what each forked kernel prints outside its cells (see
        template_process.KERNEL_LOGS_ENV); None: the kernels share the runner's stdout and stderr."""
        self.cwd = Path(cwd)
        self.kernel_logs = kernel_logs
        self._closed = False
        self._died = False  # exited before anyone closed it
        # What the template's process state was made from (time zone, TLS key log, hash seed ...):
        # a fork inherits that state, whatever environment it is handed later.
        self.environment = dict(os.environ)
        ours, theirs = socket.socketpair()
        env = {
            **os.environ,
            "OPENBLAS_NUM_THREADS": "1",  # no BLAS worker threads in a process that forks
            "PYDEVD_DISABLE_FILE_VALIDATION": "1",
            **({"HOTDASH_KERNEL_LOGS": str(kernel_logs)} if kernel_logs else {}),
        }  # what jupyter_client gives every kernel; read at import
        self._process = subprocess.Popen(
            [sys.executable, "-m", "hotdash_release.execution.template_process", str(theirs.fileno())],
            pass_fds=(theirs.fileno(),),
            stdin=subprocess.DEVNULL,
            cwd=cwd,
            env=env,
            start_new_session=True,
        )  # a Ctrl-C at the terminal is for the runner, which stops kernels itself
        theirs.close()
        ours.settimeout(TEMPLATE_TIMEOUT_S)
        self._socket = ours
        self._stream = ours.makefile("rwb", buffering=0)
        self._lock = threading.Lock()
        self._ready = False

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def ready(self) -> bool:
        return self._ready

    @property
    def closed(self) -> bool:
        return self._closed

    def alive(self) -> bool:
        return not self._closed and self._process.poll() is None

    def current(self) -> bool:
        """Whether a fork of it would have the process state a kernel started now would have."""
        return self.environment == dict(os.environ)

    def died(self) -> bool:
        """Whether the template exited without being closed (killed, crashed): the kernels it
        had forked died with it, and the record must say so."""
        return self._died or (not self._closed and self._process.poll() is not None)

    def fork_kernel(self, argv: list[str], *, cwd: str, env: dict[str, str]) -> int:
        reply = self._ask({"argv": argv, "cwd": cwd, "env": env})
        if "pid" not in reply:
            raise KernelStartError(f"kernel template: {reply.get('error', reply)}")
        return int(reply["pid"])

    def exit_status(self, pid: int) -> int | None:
        """A forked kernel's exit code once it is gone; None while it runs or if nobody knows."""
        try:
            return self._ask({"exited": pid}).get("status")
        except KernelStartError:
            return None

    def close(self) -> None:
        """Closing our end makes the template kill what it forked and exit."""
        if self._closed:
            return
        self._died = self._process.poll() is not None
        self._closed = True
        try:
            self._socket.shutdown(socket.SHUT_RDWR)  # wakes a thread waiting in _ask for a reply
        except OSError:
            pass
        self._stream.close()  # the socket's descriptor stays open while its file object is
        self._socket.close()
        if not self._ready:
            self._process.kill()  # nothing forked yet; it may still be importing: no need to wait for that
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()

    def wait_ready(self) -> None:
        """Return once the template has done its imports; KernelStartError if it exited first."""
        with self._lock:
            try:
                self._await_ready()
            except (OSError, ValueError) as exc:
                raise KernelStartError(f"kernel template: {exc}") from None

    def _await_ready(self) -> None:
        if not self._ready:
            self._read()  # {"ready": pid} once the imports are done
            self._ready = True

    def _ask(self, message: dict) -> dict:
        with self._lock:
            try:
                self._await_ready()
                self._stream.write(json.dumps(message).encode() + b"\n")
                return self._read()
            except (OSError, ValueError) as exc:
                raise KernelStartError(f"kernel template: {exc}") from None

    def _read(self) -> dict:
        line = self._stream.readline()
        if not line:
            code = self._process.poll()
            raise KernelStartError("kernel template exited" + (f" with code {code}" if code is not None else ""))
        return json.loads(line)


class ForkedProcess:
    """What jupyter_client's local provisioner expects of a Popen, for a kernel the template forked."""

    stdin = stdout = stderr = None

    def __init__(self, pid: int, template: KernelTemplate) -> None:
        self.pid = pid
        self.returncode: int | None = None
        self._template = template

    def poll(self) -> int | None:
        # running() also says no to a zombie: the template reaps its children, but not instantly.
        if self.returncode is None and not running(self.pid):
            status = self._template.exit_status(self.pid)
            self.returncode = status if status is not None else -signal.SIGKILL
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"kernel {self.pid}", timeout)
            time.sleep(0.002)  # a killed kernel is gone within milliseconds
        return self.returncode

    def send_signal(self, signum: int) -> None:
        if self.poll() is None:  # as Popen: a process known to be gone is not signalled
            try:
                os.kill(self.pid, signum)
            except ProcessLookupError:
                pass  # it went between the two

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)
