"""Fresh kernels for the runbook sections, started one section ahead.

An audit record needs every section to run in a kernel no other section touched. Starting
a kernel and importing the library in it costs about a second on our machines, so the
pool boots the next section's kernel (and imports the library there) while the current
section runs, and stops used kernels in the background. Each kernel still serves exactly
one section.

Kernels talk over private IPC sockets rather than TCP ports, and the managers are async:
nbclient's event loop also watches whether the kernel is alive, which a blocking client
would starve (a kernel that died would then hang the release).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

#: Imported while the kernel boots, before its section asks for it.
PRELOAD = "import hotdash_release.runbook"


@dataclass
class _Kernel:
    manager: object  # jupyter_client.AsyncKernelManager, started
    socket_dir: str


class KernelPool:
    """Hands out started kernels, one per section, and keeps the next one warming up."""

    def __init__(self, kernel_name: str, *, cwd: Path, ahead: int = 1) -> None:
        self.kernel_name = kernel_name
        self.cwd = cwd
        self.ahead = ahead  # kernels kept booting for the sections to come; 0: start on demand
        self._starter = ThreadPoolExecutor(max_workers=max(ahead, 1), thread_name_prefix="kernel-start")
        self._stopper = ThreadPoolExecutor(max_workers=1, thread_name_prefix="kernel-stop")
        self._spares: deque[Future] = deque()

    @contextmanager
    def kernel(self) -> Iterator[object]:
        """A started kernel manager for one section; it is stopped when the section ends."""
        kernel = self._spares.popleft().result() if self._spares else self._start()
        while len(self._spares) < self.ahead:
            self._spares.append(self._starter.submit(self._start))
        try:
            yield kernel.manager
        finally:
            self._stopper.submit(_stop, kernel)

    def close(self) -> None:
        """Stop the spares and wait for every kernel to be gone."""
        while self._spares:
            try:
                self._stopper.submit(_stop, self._spares.popleft().result())
            except Exception:  # a spare that failed to start has nothing to stop
                pass
        self._starter.shutdown(wait=True)
        self._stopper.shutdown(wait=True)

    def _start(self) -> _Kernel:
        from jupyter_client import AsyncKernelManager
        from jupyter_core.utils import run_sync

        socket_dir = tempfile.mkdtemp(prefix="hotdash-kernel-")
        manager = AsyncKernelManager(kernel_name=self.kernel_name, transport="ipc",
                                     ip=os.path.join(socket_dir, "kernel"))
        run_sync(manager.start_kernel)(cwd=str(self.cwd), extra_arguments=[f"--IPKernelApp.exec_lines={PRELOAD}"])
        return _Kernel(manager, socket_dir)


def _stop(kernel: _Kernel) -> None:
    from jupyter_core.utils import run_sync

    try:
        if kernel.manager.has_kernel:  # shutting down also removes its connection file and sockets
            run_sync(kernel.manager.shutdown_kernel)(now=True)
    finally:
        shutil.rmtree(kernel.socket_dir, ignore_errors=True)
