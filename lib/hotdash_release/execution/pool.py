"""Fresh kernels for the runbook sections, one per section, ready before the section asks.

An audit record needs every section to run in a kernel no other section touched. Starting
a kernel means starting Python and importing IPython, zmq and the library: about a second
of CPU each on our machines. Two things keep that off the release's clock:

- fork (the default on Linux): a kernel template process (template_process.py) does those
  imports once per release; each section's kernel is a fork of it, a new process in which
  no code of any section has run.
- the pool: the next section's kernel is started while the current section runs, and used
  kernels are stopped in the background.

With fork off (`fork=False`, or a kernel spec that is not this Python's ipykernel) each
kernel is started the usual way and imports the library while it boots.

Kernels talk over private IPC sockets rather than TCP ports, and the managers are async:
nbclient's event loop also watches whether the kernel is alive, which a blocking client
would starve (a kernel that died would then hang the release).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import threading
import uuid
from collections import deque
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from ..errors import KernelStartError
from .forking import KernelTemplate, forkable, start_kernel_template
from .procs import running
from .warmup import EXEC_LINE as WARM_UP

#: Run while a spawned kernel boots, before its section asks for it: the library's imports,
#: then the warm-up every kernel runs (warmup.py). A forked kernel has the imports already.
PRELOAD = "import hotdash_release.runbook"
#: Every kernel: no IPython history database (cell sources would otherwise go to a file outside
#: the archive that every release shares, and each cell would wait on a write to it); no 0.5 ms
#: sleep before each execute reply (ipykernel's guard for clients that stop reading outputs at
#: the reply; nbclient reads them until the kernel's idle status).
KERNEL_ARGUMENTS = ("--HistoryManager.enabled=False", "--IPythonKernel._execute_sleep=0")
#: Kernels kept starting for the sections to come. A forked kernel takes about 0.1 s of CPU to
#: become ready (IPython's shell, its sockets, the warm-up) and the short sections (checklist,
#: secrets, go/no-go, notify) take about as long, so with one ahead a section often waited for
#: its kernel; with two (bench/: 2.12 s a release against 2.38 s with one, 2.40 s with three).
KERNELS_AHEAD = 2
#: How long a kernel asked to shut down may take (its atexit handlers, its files) before it is killed.
SHUTDOWN_GRACE_S = 3.0
#: How long the tasks of a stopped section may take to end once cancelled.
CANCEL_WAIT_S = 5.0
#: A kernel's private folder for its IPC sockets and its connection file (which holds the
#: HMAC key): <tmp>/hotdash-kernel-<runner pid>-<random>.
SOCKET_DIR_PREFIX = "hotdash-kernel-"
#: A Unix socket path is at most 107 bytes; a kernel's longest is <folder>/kernel-5.
_SOCKET_PATH_MAX = 107
#: Where the folder may go when $TMPDIR is too long for a socket path under it.
_SHORT_BASE = "/tmp"


@dataclass
class _Kernel:
    manager: object  # jupyter_client.AsyncKernelManager, started
    socket_dir: str
    environment: dict[str, str]  # the runner's environment when the kernel started: it has a copy


class KernelPool:
    """Hands out started kernels, one per section, and keeps the next one warming up.

    A pool serves one release, or all the releases of a runner that keeps it (the `runbook`
    command starts one before it parses its arguments; bench/ keeps one for many releases):
    a spare kernel is handed out only if the runner's environment is still the one the
    kernel was started with, and kernels are forked only from a template started with it."""

    def __init__(
        self,
        kernel_name: str,
        *,
        cwd: Path,
        ahead: int = KERNELS_AHEAD,
        fork: bool = True,
        template: KernelTemplate | None = None,
        own_template: bool = False,
        kernel_logs: Path | None = None,
    ) -> None:
        self.kernel_name = kernel_name
        self.cwd = Path(cwd)
        # What the kernels print outside their cells goes here, never to the operator's terminal.
        self.kernel_logs = kernel_logs or Path(tempfile.mkdtemp(prefix="hotdash-kernel-logs-"))
        self.ahead = ahead  # kernels kept booting for the sections to come; 0: start on demand
        self.fork = fork
        # A template handed in belongs to the caller, who closes it, unless own_template says
        # the pool takes it over; one started here is the pool's. close() ends the pool's.
        self._own_templates: list[KernelTemplate] = [template] if own_template and template else []
        if not (fork and forkable(kernel_name)):
            template = None
        elif template is None or template.cwd != self.cwd or not template.alive() or not template.current():
            template = KernelTemplate(cwd, kernel_logs=self.kernel_logs)  # in the release's thread: see KernelTemplate
            self._own_templates.append(template)
        self.template = template
        self._mode = "forked from a kernel template" if self.template else "spawned"
        self._used_templates = [self.template] if self.template else []
        remove_orphaned_socket_dirs()
        self._lock = threading.Lock()
        self._closing = False
        self._starter = ThreadPoolExecutor(max_workers=max(ahead, 1), thread_name_prefix="kernel-start")
        self._stopper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kernel-stop")
        self._stopping: list[Future] = []  # used kernels being stopped in the background
        self._spares: deque[Future] = deque()

    @property
    def mode(self) -> str:
        """How this pool's kernels were started, for the manifest and the report: what happened,
        including a template that died while its kernels ran."""
        if any(template.died() for template in self._used_templates) and "failed" not in self._mode:
            return self._mode + "; the kernel template died during the release (its kernels with it)"
        return self._mode

    def serves(self, kernel_name: str, cwd: Path, fork: bool) -> bool:
        """Whether this pool's kernels are the ones a release with these settings needs."""
        return not self._closing and (self.kernel_name, self.cwd, self.fork) == (kernel_name, Path(cwd), fork)

    def prestart(self) -> None:
        """Start the spares now, for a first section that has not asked yet."""
        self._start_spares(max(self.ahead, 1))

    @contextmanager
    def kernel(self) -> Iterator[object]:
        """A started kernel manager for one section; it is stopped when the section ends."""
        kernel = self._running_spare() or self._start()
        self._start_spares(self.ahead)
        try:
            yield kernel.manager
        except BaseException:
            # Stopped or failed (an abort, a dead kernel): killed before the runner goes on, so
            # that nothing of the section writes into the release once it is being sealed.
            cancel_section_tasks()
            _stop(kernel, graceful=False)  # its clients first: in this thread, whose loop used them
            raise
        kernel.manager.close_clients()
        self._stopping.append(self._stopper.submit(_stop, kernel))

    def kernel_messages(self) -> list[Path]:
        """The kernels' logs with something in them (what they printed outside their cells)."""
        return sorted(p for p in self.kernel_logs.glob("*.log") if p.stat().st_size)

    def wait_stopped(self) -> None:
        """Wait until every kernel handed out has ended (its atexit handlers and files done):
        before a release is sealed, nothing of its sections may still write."""
        while self._stopping:
            self._stopping.pop().result()

    def close(self) -> None:
        """Stop the spares and wait for every kernel to be gone."""
        self._closing = True  # a spare still starting must not fall back to spawning a kernel
        for template in self._own_templates:
            if not template.ready:
                template.close()  # still importing: nothing was forked, nothing to wait for
        spares = []
        while self._spares:
            try:
                spares.append(self._spares.popleft().result())
            except Exception:  # a spare that failed to start has nothing to stop
                pass
        # The spares are stopped beside the last section's kernel, not after it.
        with ThreadPoolExecutor(max_workers=max(len(spares), 1), thread_name_prefix="kernel-stop") as stoppers:
            list(stoppers.map(_stop, spares))
        self._starter.shutdown(wait=True)
        self._stopper.shutdown(wait=True)
        for template in self._own_templates:
            template.close()
        for log in self.kernel_logs.glob("*.log"):  # the runner keeps what kernels printed; nothing: gone
            if not log.stat().st_size:
                log.unlink()
        try:
            self.kernel_logs.rmdir()
        except OSError:  # a log nobody kept yet stays for the runner (or a person) to read
            pass

    def _start_spares(self, count: int) -> None:
        while len(self._spares) < count:
            self._spares.append(self._starter.submit(self._start))

    def _running_spare(self) -> _Kernel | None:
        """The oldest spare that started, still runs (a template that died took its forks along)
        and has the environment the runner has now."""
        while self._spares:
            try:
                kernel = self._spares.popleft().result()
            except KernelStartError:
                continue
            if kernel.manager.provisioner.process.poll() is None and kernel.environment == dict(os.environ):
                return kernel
            self._stopper.submit(_stop, kernel)
        return None

    def _start(self) -> _Kernel:
        """Fork from the template; if the template is gone, carry on with spawned kernels: the
        sections after a failure (the rollback above all) still need kernels."""
        if self._closing:
            raise KernelStartError("the kernel pool is closing")
        template = self.template
        if template is not None and not template.current():
            template = self._refresh_template(template)
        if template is not None:
            try:
                return self._start_kernel(template)
            except KernelStartError as exc:
                if self._closing:
                    raise
                with self._lock:
                    if self.template is template:
                        self.template = None
                        self._mode += f"; spawned after the kernel template failed ({exc})"
        return self._start_kernel(None)

    def _refresh_template(self, stale: KernelTemplate) -> KernelTemplate:
        """The runner's environment changed since the template started (a runner that keeps its
        pool for many releases): a new template, so that no kernel inherits what its section's
        environment no longer says. The old one ends with the pool: its kernels may still run."""
        with self._lock:
            if self.template is stale:
                self.template = KernelTemplate(self.cwd, kernel_logs=self.kernel_logs)
                self._own_templates.append(self.template)
                self._used_templates.append(self.template)
            return self.template

    def _start_kernel(self, template: KernelTemplate | None) -> _Kernel:
        from jupyter_core.utils import run_sync

        from .provisioner import ForkedKernelProvisioner, PooledKernelManager

        socket_dir, transport = _kernel_folder()
        manager = PooledKernelManager(
            kernel_name=self.kernel_name,
            transport=transport,
            ip=os.path.join(socket_dir, "kernel") if transport == "ipc" else "127.0.0.1",
            client_class="hotdash_release.execution.provisioner.PromptReadyClient",
        )
        # Beside the sockets, so that a runner killed outright leaves no key where the next one
        # would not clean (jupyter's runtime folder is never cleaned of it).
        manager.connection_file = os.path.join(socket_dir, "connection.json")
        environment = dict(os.environ)  # what jupyter_client gives the kernel, with its own additions
        extra_arguments = list(KERNEL_ARGUMENTS)
        if template:
            manager.kernel_id = str(uuid.uuid4())
            manager.provisioner = ForkedKernelProvisioner(
                kernel_id=manager.kernel_id, kernel_spec=manager.kernel_spec, parent=manager
            )
            manager.provisioner.template = template
        else:
            extra_arguments.append(f"--IPKernelApp.exec_lines={PRELOAD}")
        extra_arguments.append(f"--IPKernelApp.exec_lines={WARM_UP}")
        try:
            # stdin: end of file at once, as a forked kernel's (the template's is /dev/null); a pipe
            # nobody writes to would hang a section that reads it, with nobody there to answer.
            run_sync(manager.start_kernel)(
                cwd=str(self.cwd), extra_arguments=extra_arguments, env=environment, stdin=subprocess.DEVNULL
            )
            manager.connect_ahead()
        except BaseException:
            if manager.has_kernel:
                _stop(_Kernel(manager, socket_dir, environment))
            manager.cleanup_connection_file()
            shutil.rmtree(socket_dir, ignore_errors=True)
            raise
        return _Kernel(manager, socket_dir, environment)


def cancel_section_tasks() -> None:
    """Cancel what a stopped section left in this thread's event loop (the one papermill and
    nbclient run in: jupyter_core's). A signal stops a section inside that loop, and nbclient's
    cell task stays pending; left so, it would go on the next time the loop runs (stopping the
    kernel runs it), find the kernel killed and end with an error nobody takes, which asyncio
    prints on stderr (seen under load: a signal's one line became seven). What stopped the
    section is in its record already."""
    import asyncio

    from jupyter_core.utils import ensure_event_loop

    loop = ensure_event_loop()
    if loop.is_running():
        return  # not stopped here: the loop's owner is still in it
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.wait(tasks, timeout=CANCEL_WAIT_S))
    for task in tasks:
        if task.done() and not task.cancelled():
            task.exception()  # taken: asyncio says nothing of it


def _stop(kernel: _Kernel, *, graceful: bool = True) -> None:
    """End a kernel as a stock one ends: a shutdown request, a short grace period, then kill.
    A section's atexit handlers run and its open files are flushed, as under plain papermill.
    Not graceful: killed at once (a section that was stopped, or failed, gets no more time)."""
    from jupyter_core.utils import run_sync

    try:
        kernel.manager.close_clients()  # a spare's client made ahead: never used by any loop
        if kernel.manager.has_kernel:
            provisioner = kernel.manager.provisioner
            try:
                if graceful:
                    run_sync(kernel.manager.request_shutdown)()
                    provisioner.process.wait(timeout=SHUTDOWN_GRACE_S)
            except Exception:  # no answer in time, or a kernel already gone: kill is what is left
                pass
            # jupyter_client looks every 100 ms whether a kernel is gone: kill and wait here, so
            # that its shutdown finds it gone (and removes its connection file and sockets).
            if provisioner.process.poll() is None:
                run_sync(provisioner.kill)()
                try:
                    provisioner.process.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    pass
            run_sync(kernel.manager.shutdown_kernel)(now=True)
    finally:
        kernel.manager.close_contexts()  # ended by hand, never left to the collector (see provisioner)
        shutil.rmtree(kernel.socket_dir, ignore_errors=True)


def _kernel_folder() -> tuple[str, str]:
    """A private folder for a kernel, and the transport its sockets use: IPC in the temp folder,
    or under /tmp when $TMPDIR is too long for a socket path, else TCP on 127.0.0.1."""
    prefix = f"{SOCKET_DIR_PREFIX}{os.getpid()}-"
    for base in _socket_bases():
        longest = len(os.path.join(base, prefix + "x" * 8, "kernel-5").encode())
        if longest <= _SOCKET_PATH_MAX and os.access(base, os.W_OK | os.X_OK):
            return tempfile.mkdtemp(prefix=prefix, dir=base), "ipc"
    return tempfile.mkdtemp(prefix=prefix), "tcp"


def _socket_bases() -> list[str]:
    return list(dict.fromkeys([tempfile.gettempdir(), _SHORT_BASE]))


def remove_orphaned_socket_dirs() -> list[Path]:
    """Remove the kernel folders (sockets, connection files) of runners that are gone: a runner
    killed outright (SIGKILL) cannot remove those of its kernels. Only where /proc tells which runners still run."""
    if not Path("/proc/self/stat").exists():
        return []
    removed = []
    folders = [folder for base in _socket_bases() for folder in Path(base).glob(f"{SOCKET_DIR_PREFIX}*-*")]
    for folder in folders:
        owner = folder.name[len(SOCKET_DIR_PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and not running(int(owner)) and folder.is_dir():
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def start_kernel_pool(kernel_name: str = "python3") -> KernelPool:
    """The runbooks' kernel pool, its template importing and its first kernel starting at once:
    before a release has even been prepared (the `runbook` command), or once for all the
    releases of a runner that keeps it. The caller closes it."""
    from ..paths import RUNBOOKS_DIR

    logs = Path(tempfile.mkdtemp(prefix="hotdash-kernel-logs-"))
    template = start_kernel_template(RUNBOOKS_DIR, kernel_logs=logs)  # first: its imports are the long part
    pool = KernelPool(kernel_name, cwd=RUNBOOKS_DIR, template=template, own_template=True, kernel_logs=logs)
    pool.prestart()
    return pool
