"""The two places where we change how jupyter_client starts and greets a kernel.

- ForkedKernelProvisioner: jupyter_client's local provisioner, except that the kernel process
  is a fork of the kernel template (see kernel_template.py) instead of a new interpreter.
- PromptReadyClient: jupyter_client's client, except that waiting for a kernel to be ready
  ends as soon as the kernel is seen to answer on both channels. The stock wait ends with
  0.2 s of listening for stray IOPub messages, on every kernel, every section.

Imported on first use: the runner does not import jupyter_client until a kernel is needed.
"""

from __future__ import annotations

import asyncio
import os
import time
from queue import Empty

from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.provisioning import LocalProvisioner

from .errors import KernelStartError
from .kernels import KernelTemplate, ForkedProcess, launcher_arguments

#: How long the kernel's idle status may trail its kernel_info reply before we ask again;
#: the same allowance jupyter_client gives IOPub to show it is connected.
IOPUB_GRACE_S = 0.2


class ForkedKernelProvisioner(LocalProvisioner):
    """Launches the kernel as a fork of the release's kernel template."""

    template: KernelTemplate | None = None

    async def launch_kernel(self, cmd: list[str], **kwargs):
        argv = launcher_arguments(cmd)
        if argv is None or self.template is None:
            raise KernelStartError(f"cannot fork a kernel for {cmd[:3]}: not this Python's ipykernel")
        cwd = str(kwargs.get("cwd") or os.getcwd())
        pid = self.template.fork_kernel(argv, cwd=cwd, env=dict(kwargs.get("env") or os.environ))
        self.process = ForkedProcess(pid, self.template)
        self.pid = self.pgid = pid  # the fork made itself a process group leader
        self.cwd = cwd
        return self.connection_info

    async def wait(self) -> int | None:
        # A killed kernel is reaped by the template within milliseconds; jupyter_client looks
        # every 100 ms, and the release's end waits for its last two kernels to be gone.
        while self.process is not None and await self.poll() is None:
            await asyncio.sleep(0.005)
        return await super().wait()


class PromptReadyClient(AsyncKernelClient):
    """Ready means: a kernel_info reply on the shell channel and, on IOPub, the kernel's idle
    status for that same request (proof that IOPub is connected and drained of it)."""

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        while True:
            self.kernel_info()
            try:
                reply = await self.shell_channel.get_msg(timeout=1)
            except Empty:
                reply = None
            if reply and reply["msg_type"] == "kernel_info_reply":
                if await self._idle_after(reply["parent_header"].get("msg_id")):
                    self._handle_kernel_info_reply(reply)
                    return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")

    async def _idle_after(self, request_id: str | None) -> bool:
        until = time.monotonic() + IOPUB_GRACE_S
        while (left := until - time.monotonic()) > 0:
            try:
                message = await self.iopub_channel.get_msg(timeout=left)
            except Empty:
                return False
            if (message["msg_type"] == "status" and message["content"].get("execution_state") == "idle"
                    and message["parent_header"].get("msg_id") == request_id):
                return True
        return False
