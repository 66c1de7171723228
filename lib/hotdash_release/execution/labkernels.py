"""Forked kernels in JupyterLab: a `runbook lab` session's kernels start as forks of a kernel
template, as a release's sections do, instead of new interpreters that import IPython and the
library (about a second of CPU each: 3-5 s from opening a notebook to a ready kernel).

Three pieces, wired by `runbook lab` (interactive/session.py):
- the session's kernel spec, "hotdash-runbook" (write_kernelspec): this Python's ipykernel,
  as forked release kernels run it, with the provisioner below named in its metadata; the
  session's notebooks name this kernel spec;
- LabKernelProvisioner (entry point "hotdash-forked" of jupyter_client.kernel_provisioners,
  pyproject.toml): each launch is a fork of the template, a restart a new fork; interrupts and
  shutdowns are jupyter_client's own, by the kernel's process group;
- a Jupyter server extension (this module, named on JupyterLab's command line) that starts the
  template as the server starts, so that its imports are done before the first notebook opens.
  It is started from the server's main thread: it dies with the server (killed too, see
  KernelTemplate), and the kernels it forked die with it.

Where fork is unavailable (not Linux), or the template cannot start or dies, kernels start
the usual way (a new interpreter) and the server log says why, once.
"""

from __future__ import annotations

import asyncio
import atexit
import json
import os
import sys
import threading
import time
from pathlib import Path

from jupyter_client.provisioning import LocalProvisioner

from ..errors import KernelStartError
from .forking import KernelTemplate, launcher_arguments, start_kernel_template
from .pool import KERNEL_ARGUMENTS
from .provisioner import ForkedKernelProvisioner
from .warmup import EXEC_LINE as WARM_UP

KERNEL_NAME = "hotdash-runbook"
DISPLAY_NAME = "HotDash runbook (Python 3)"
PROVISIONER_NAME = "hotdash-forked"
#: A kernel's ports, in the order ipykernel binds them.
PORT_NAMES = ("shell_port", "stdin_port", "control_port", "iopub_port", "hb_port")
#: How long a kernel may take to listen (a new interpreter on a loaded machine: seconds).
LISTEN_TIMEOUT_S = 60.0
LISTEN_POLL_S = 0.002
#: What a session's notebooks say in their metadata: JupyterLab starts this kernel spec for them.
NOTEBOOK_KERNELSPEC = {"name": KERNEL_NAME, "display_name": DISPLAY_NAME, "language": "python"}


def kernelspec() -> dict:
    """This very Python's ipykernel (the only kernel a fork can stand in for), with the
    arguments and warm-up of a release's kernels, and our provisioner."""
    return {
        "argv": [
            sys.executable,
            "-m",
            "ipykernel_launcher",
            "-f",
            "{connection_file}",
            *KERNEL_ARGUMENTS,
            f"--IPKernelApp.exec_lines={WARM_UP}",
        ],
        "display_name": DISPLAY_NAME,
        "language": "python",
        "interrupt_mode": "signal",
        "metadata": {"debugger": True, "kernel_provisioner": {"provisioner_name": PROVISIONER_NAME}},
    }


def write_kernelspec(data_dir: Path) -> Path:
    """The kernel spec in <data_dir>/kernels/, for a server whose JUPYTER_PATH names data_dir."""
    folder = Path(data_dir) / "kernels" / KERNEL_NAME
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "kernel.json").write_text(json.dumps(kernelspec(), indent=1) + "\n", encoding="utf-8")
    return Path(data_dir)


class LabTemplate:
    """The server's one kernel template, or why it has none (then kernels start the usual way)."""

    def __init__(self) -> None:
        self.template: KernelTemplate | None = None
        self.unavailable: str | None = None
        self._lock = threading.Lock()

    def start(self, cwd: Path, log) -> None:
        """Start the template, once. In the server's main thread, which lives as long as the
        server: the template is killed when the thread that started it ends."""
        with self._lock:
            if self.template is not None or self.unavailable is not None:
                return
            template = start_kernel_template(cwd)
            if template is None:
                self.unavailable = "fork is not available on this platform"
                log.warning("kernel template: %s; kernels start the usual way (a new interpreter)", self.unavailable)
                return
            self.template = template
            atexit.register(template.close)  # kills what it forked: the server shut its kernels down first
        log.info("kernel template: started (pid %d); the session's kernels will be forks of it", template.pid)

    def report_ready(self, log) -> None:
        """Log when the template is ready, or that it could not start (a thread of its own)."""
        started = time.monotonic()
        if self._ready_template(log) is not None:
            log.info("kernel template: ready in %.1f s", time.monotonic() - started)

    async def ready(self, cwd: Path, log) -> KernelTemplate | None:
        """The template once its imports are done; None if kernels must start the usual way."""
        self.start(cwd, log)
        return await asyncio.to_thread(self._ready_template, log)

    def _ready_template(self, log) -> KernelTemplate | None:
        template = self.template
        if template is None:
            return None
        try:
            template.wait_ready()
        except KernelStartError as exc:
            if not template.closed:  # closed: the server is ending, nothing went wrong
                self.give_up(template, str(exc), log)
            return None
        return template

    def give_up(self, template: KernelTemplate, reason: str, log) -> None:
        """No more forks on this server: the template failed (it could not start, or died)."""
        with self._lock:
            if self.template is not template:
                return  # said already
            self.template, self.unavailable = None, reason
        log.warning("no more forked kernels (%s): kernels start the usual way, as new interpreters", reason)
        template.close()


#: One per server process: the provisioner (one per kernel) and the extension share it.
LAB_TEMPLATE = LabTemplate()


class LabKernelProvisioner(ForkedKernelProvisioner):
    """Forks each kernel (and each restart) from the server's template; if there is none, or it
    fails, starts the kernel as jupyter_client's local provisioner does. Either way, the server
    is told the kernel started once it listens on its ports (see until_listening)."""

    async def launch_kernel(self, cmd: list[str], **kwargs):
        info = await self._launch(cmd, **kwargs)
        await until_listening(info, alive=lambda: self.process is not None and self.process.poll() is None)
        return info

    async def _launch(self, cmd: list[str], **kwargs):
        self.template = None
        if launcher_arguments(cmd) is not None:
            self.template = await LAB_TEMPLATE.ready(Path(kwargs.get("cwd") or os.getcwd()), self.log)
        if self.template is not None:
            try:
                return await super().launch_kernel(cmd, **kwargs)
            except KernelStartError as exc:
                LAB_TEMPLATE.give_up(self.template, str(exc), self.log)
                self.template = None
        elif launcher_arguments(cmd) is None:
            self.log.warning(
                "kernel %s: %s is not this Python's ipykernel; started the usual way", self.kernel_id, cmd[0]
            )
        return await LocalProvisioner.launch_kernel(self, cmd, **kwargs)


async def until_listening(info: dict, alive, timeout: float = LISTEN_TIMEOUT_S) -> bool:
    """Wait until the kernel accepts connections on each of its TCP ports (True), or has died or
    taken `timeout` (False: the server goes on as it would have).

    Why: as soon as a kernel is launched, the server connects a socket to its IOPub to watch its
    status. A socket that connects before the kernel binds is refused, and zmq tries again only
    after its reconnect interval (100 ms): the kernel's first idle status is missed, the server
    keeps the kernel "starting", and the browser's connection waits for the server's next nudge,
    half a second later. A forked kernel binds within milliseconds of the fork."""
    if info.get("transport", "tcp") != "tcp":
        return True  # ipc: the server's sockets find the kernel's files once they exist
    host = info.get("ip") or "127.0.0.1"
    ports = [info[name] for name in PORT_NAMES if info.get(name)]
    deadline = time.monotonic() + timeout
    while ports:
        try:
            _, writer = await asyncio.open_connection(host, ports[0])
        except OSError:
            if not alive() or time.monotonic() > deadline:
                return False
            await asyncio.sleep(LISTEN_POLL_S)
            continue
        writer.close()
        ports.pop(0)
        try:
            await writer.wait_closed()
        except OSError:
            pass
    return True


# -- the Jupyter server extension ----------------------------------------------------------------


def _jupyter_server_extension_points() -> list[dict]:
    return [{"module": __name__}]


def _load_jupyter_server_extension(serverapp) -> None:
    LAB_TEMPLATE.start(Path(serverapp.root_dir), serverapp.log)
    threading.Thread(
        target=LAB_TEMPLATE.report_ready, args=(serverapp.log,), name="kernel-template", daemon=True
    ).start()
