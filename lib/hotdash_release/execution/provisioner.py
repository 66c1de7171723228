"""The places where we change how jupyter_client starts, connects to and greets a kernel.

- ForkedKernelProvisioner: jupyter_client's local provisioner, except that the kernel process
  is a fork of the kernel template (see template_process.py) instead of a new interpreter.
- PooledKernelManager: jupyter_client's async manager, except that its first client is made
  and connected while the kernel waits in the pool, off the section's clock.
- PromptReadyClient: jupyter_client's client, except that waiting for a kernel to be ready
  ends as soon as the kernel is seen to answer on both channels (the stock wait ends with
  0.2 s of listening for stray IOPub messages, on every kernel, every section), and that it
  has no heartbeat channel unless asked: its manager tells whether the kernel lives.

Imported on first use: the runner does not import jupyter_client until a kernel is needed.
"""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from datetime import UTC, datetime
from queue import Empty

import zmq
from jupyter_client import AsyncKernelManager
from jupyter_client.asynchronous import AsyncKernelClient
from jupyter_client.provisioning import LocalProvisioner

from ..errors import KernelStartError
from .forking import ForkedProcess, KernelTemplate, launcher_arguments

#: How long the kernel's idle status may trail its kernel_info reply before we ask again;
#: the same allowance jupyter_client gives IOPub to show it is connected.
IOPUB_GRACE_S = 0.2
#: How soon a client connected ahead tries again to reach a kernel that was not listening yet.
RECONNECT_INTERVAL_MS = 5


class ForkedKernelProvisioner(LocalProvisioner):
    """Launches the kernel as a fork of the release's kernel template."""

    template: KernelTemplate | None = None

    async def launch_kernel(self, cmd: list[str], **kwargs):
        argv = launcher_arguments(cmd)
        if argv is None or self.template is None:
            raise KernelStartError(f"cannot fork a kernel for {cmd[:3]}: not this Python's ipykernel")
        cwd = str(kwargs.get("cwd") or os.getcwd())
        # jupyter_client's launch_kernel, which a fork skips, tells a spawned kernel its parent.
        env = {**(kwargs.get("env") or os.environ), "JPY_PARENT_PID": str(os.getpid())}
        pid = self.template.fork_kernel(argv, cwd=cwd, env=env)
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


def _lingerless(context: zmq.Context) -> zmq.Context:
    # No socket of ours waits to deliver to a kernel that is gone (zmq's default linger is forever).
    context.setsockopt(zmq.LINGER, 0)
    return context


def destroy_context(context: zmq.Context) -> None:
    """Close the context's sockets and end it, by hand. Never left to the garbage collector: it
    clears the weak references by which pyzmq finds a context's sockets before it runs
    finalizers, so a context collected together with its open sockets terminates without closing
    them and waits for them for good (a release hung in its seal so, after a signal, in CI)."""
    if not context.closed:
        context.destroy(linger=0)


class PooledKernelManager(AsyncKernelManager):
    """Hands out, as its first client, one that was connected while the kernel waited, and
    closes every client it handed out when the section is over.

    nbclient asks the manager for a client when the section starts; making one means five
    zmq sockets and their connections (about 4 ms). The pool makes it in its starter thread
    instead. Its asyncio sockets are bound to no event loop until first used, so the section's
    loop (in the runner's main thread) is the only one that ever uses them.

    nbclient leaves the client of a kernel it did not start (ours) open: its sockets and zmq
    context (two threads) would stay until the runner exits, still trying to reach a kernel
    that is gone. close_clients() ends them; close_contexts() ends the manager's own too, on
    every path that ends a kernel (see destroy_context)."""

    connected_client: PromptReadyClient | None = None
    _handed_out: tuple = ()

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        _lingerless(self.context)

    def connect_ahead(self) -> None:
        # A session (zmq identity) of its own: clients of one manager share the manager's, and a
        # kernel's shell ROUTER ignores a second peer with an identity it already has, so a
        # client made later while this one is open would never be answered.
        session = self.session.clone()
        session.session = str(uuid.uuid4())
        client = super().client(session=session)
        # The kernel may not listen yet (it binds its sockets as it starts); zmq tries again
        # after its reconnect interval, 100 ms by default: too long to wait for a section.
        client.context.setsockopt(zmq.RECONNECT_IVL, RECONNECT_INTERVAL_MS)
        _lingerless(client.context)
        client.start_channels()
        self.connected_client = client

    def client(self, **kwargs):
        client, self.connected_client = self.connected_client, None
        if client is None or kwargs:
            if client is not None:
                client.stop_channels()
                destroy_context(client.context)
            client = super().client(**kwargs)
            _lingerless(client.context)
        self._handed_out = (*self._handed_out, client)
        return client

    def close_clients(self) -> None:
        """Close the clients handed out, and the one made ahead if no section took it. In the
        thread whose event loop used them: closing a socket unregisters it from that loop."""
        clients, self._handed_out = [*self._handed_out], ()
        if self.connected_client is not None:
            clients.append(self.connected_client)
            self.connected_client = None
        for client in clients:
            try:
                client.stop_channels()
            except Exception:  # e.g. the event loop its sockets were registered with is gone
                pass
            finally:
                # Each client made its own zmq context (two threads, descriptors): jupyter_client
                # 8.10 destroys it in stop_channels, 8.6 (supported too) leaves it open.
                destroy_context(client.context)

    def close_contexts(self) -> None:
        """When the kernel is gone: the clients' contexts and the manager's own."""
        self.close_clients()
        destroy_context(self.context)


class PromptReadyClient(AsyncKernelClient):
    """Ready means: a kernel_info reply on the shell channel and, on IOPub, the kernel's idle
    status for one of our kernel_info requests (proof that IOPub is connected and drained of it).

    A client that connects while the kernel answers may miss that idle status: IOPub drops
    what the kernel publishes before the subscription reaches it. A kernel that says when a
    subscription reached it (ipykernel 7's `iopub_welcome`) is asked again at once if that was
    after our first request (the idle status of either request will do); one that does not,
    after the same 0.2 s that jupyter_client gives IOPub."""

    def start_channels(
        self, shell: bool = True, iopub: bool = True, stdin: bool = True, hb: bool = False, control: bool = True
    ) -> None:
        # No heartbeat: a thread and a socket per section, pinging every 3 s, to tell whether a
        # kernel on this machine lives, which its manager (our parent) knows from the process.
        super().start_channels(shell=shell, iopub=iopub, stdin=stdin, hb=hb, control=control)

    async def wait_for_ready(self, timeout: float | None = None) -> None:
        deadline = time.monotonic() + (float("inf") if timeout is None else timeout)
        asked: set[str] = set()
        self._first_asked_at = datetime.now(UTC)
        while True:
            asked.add(self.kernel_info())
            reply = await self._reply_to(asked, timeout=1)
            if reply is not None and await self._idle_after(asked):
                self._handle_kernel_info_reply(reply)
                return
            if not await self._async_is_alive():
                raise RuntimeError("Kernel died before replying to kernel_info")
            if time.monotonic() > deadline:
                raise RuntimeError(f"Kernel didn't respond in {timeout:g} seconds")

    async def _reply_to(self, asked: set[str], timeout: float) -> dict | None:
        until = time.monotonic() + timeout
        while (reply := await _next_message(self.shell_channel, until)) is not None:
            if reply["msg_type"] == "kernel_info_reply" and reply["parent_header"].get("msg_id") in asked:
                return reply
        return None

    async def _idle_after(self, asked: set[str]) -> bool:
        """True once the idle status of one of our requests comes, False if none came in time."""
        until = time.monotonic() + IOPUB_GRACE_S
        while (message := await _next_message(self.iopub_channel, until)) is not None:
            if (
                message["msg_type"] == "status"
                and message["content"].get("execution_state") == "idle"
                and message["parent_header"].get("msg_id") in asked
            ):
                return True
            if message["msg_type"] == "iopub_welcome" and not self._welcomed_before_asking(message):
                # Our subscription reached the kernel after we asked: an idle status published
                # before it is lost, but whatever the kernel says from now on comes through.
                asked.add(self.kernel_info())
                until = time.monotonic() + IOPUB_GRACE_S
        return False

    def _welcomed_before_asking(self, welcome: dict) -> bool:
        """A client connected ahead was welcomed long before it asks (same machine, same clock)."""
        sent = welcome["header"].get("date")
        return isinstance(sent, datetime) and sent.tzinfo is not None and sent < self._first_asked_at


async def _next_message(channel, until: float) -> dict | None:
    """The channel's next message, or None once the monotonic clock reaches `until`."""
    left = until - time.monotonic()
    if left <= 0:
        return None
    try:
        return await channel.get_msg(timeout=left)
    except Empty:
        return None
