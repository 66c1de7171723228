"""A `runbook lab` session's kernels are forks of a kernel template, started by the real
JupyterLab server (the lab venv's, as `make lab` builds it) through its REST API.

The server is `runbook lab` itself; the tests reach each kernel with jupyter_client through
the connection file the server wrote, and ask the kernel who it is: its parent must be the
template (`python -m hotdash_release.execution.template_process`), whose parent is the server.
Interrupt, restart (a new fork) and shutdown go through the server, as the UI's buttons do.
A server whose template cannot start (the library it preloads does not import) still starts
kernels, the usual way, and says so in its log. Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from conftest import make_rehearsal, wait_for
from jupyter_client import BlockingKernelClient

from hotdash_release.execution.labkernels import KERNEL_NAME, PORT_NAMES, until_listening
from hotdash_release.execution.procs import running

ROOT = Path(__file__).resolve().parents[1]
#: The venv `make lab` builds (`make test` builds it too): JupyterLab lives apart from .venv.
LAB_VENV = ROOT / os.environ.get("HOTDASH_LAB_VENV", ".venv-lab")  # relative: to the repository
SERVER_START_S = 180  # a loaded two-core machine imports JupyterLab slowly
KERNEL_S = 60

pytestmark = [
    pytest.mark.skipif(
        not (LAB_VENV / "bin" / "runbook").is_file(),
        reason=f"no lab venv at {LAB_VENV}: make lab (make test builds it)",
    ),
    pytest.mark.skipif(not sys.platform.startswith("linux"), reason="forked kernels and /proc: Linux only"),
]


@dataclass
class LabServer:
    process: subprocess.Popen
    folder: Path  # the session folder
    base: str
    token: str
    runtime: Path  # JUPYTER_RUNTIME_DIR: the kernels' connection files
    log: Path

    def api(self, method: str, path: str, **kwargs) -> httpx.Response:
        response = httpx.request(
            method, self.base + path, headers={"Authorization": f"token {self.token}"}, timeout=KERNEL_S, **kwargs
        )
        response.raise_for_status()
        return response

    def open_notebook(self, name: str) -> str:
        """What JupyterLab does when a notebook opens: a session with the kernel its metadata names."""
        kernel = json.loads((self.folder / name).read_text())["metadata"]["kernelspec"]["name"]
        made = self.api("POST", "/api/sessions", json={"path": name, "type": "notebook", "kernel": {"name": kernel}})
        return made.json()["kernel"]["id"]

    def client(self, kernel_id: str) -> BlockingKernelClient:
        client = BlockingKernelClient(connection_file=str(self.runtime / f"kernel-{kernel_id}.json"))
        client.load_connection_file()
        # No heartbeat: a kernel that boots slowly on a loaded machine misses its first beats and
        # would be taken for dead; whether it lives is the server's to know (and each wait is bounded).
        client.start_channels(hb=False)
        client.wait_for_ready(timeout=KERNEL_S)
        return client

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    world = make_rehearsal(tmp_path_factory.mktemp("labkernels"))
    yield world
    world.platform().stop()


def start_lab(world, root: Path, *, pythonpath: Path | None = None) -> Iterator[LabServer]:
    root.mkdir(parents=True, exist_ok=True)
    with socket.socket() as probe:  # a port of the system's choosing: no two servers of parallel tests pick the same
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "JUPYTER_RUNTIME_DIR": str(root / "runtime"),
        "JUPYTER_CONFIG_DIR": str(root / "jupyter-config"),
        "PYTHONUNBUFFERED": "1",
    }
    env.pop("PYTHONPATH", None)  # the lab venv has the project installed (editable)
    if pythonpath:
        env["PYTHONPATH"] = str(pythonpath)
    log = root / "server.log"
    with log.open("w") as err:
        process = subprocess.Popen(
            [
                str(LAB_VENV / "bin" / "runbook"),
                "lab",
                "--no-browser",
                "--port",
                str(port),
                "--config",
                str(world.config),
                "--outputs",
                str(world.outputs),
                "--operator",
                "alice",
            ],
            stdout=subprocess.PIPE,
            stderr=err,
            text=True,
            env=env,
            start_new_session=True,
        )
    try:
        printed = {}
        for line in process.stdout:
            key, _, value = line.partition(": ")
            printed[key] = value.strip()
            if key == "URL":
                break
        server = LabServer(
            process,
            Path(printed["session"]),
            f"http://127.0.0.1:{port}",
            printed["URL"].split("token=", 1)[1],
            root / "runtime",
            log,
        )
        assert wait_for(lambda: _answers(server), SERVER_START_S), f"no server on {port}:\n{server.log_text()}"
        yield server
    finally:
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)  # JupyterLab shuts its kernels down, then exits
            try:
                process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def _answers(server: LabServer) -> bool:
    if server.process.poll() is not None:
        raise AssertionError(f"JupyterLab exited with {server.process.returncode}:\n{server.log_text()}")
    try:
        return httpx.get(f"{server.base}/api/status?token={server.token}", timeout=5).status_code == 200
    except httpx.TransportError:
        return False


def ask(client: BlockingKernelClient, code: str) -> dict:
    """Run code in the kernel; the JSON it prints."""
    printed: list[str] = []

    def output(message: dict) -> None:
        if message["msg_type"] == "stream":
            printed.append(message["content"]["text"])

    reply = client.execute_interactive(code, output_hook=output, timeout=KERNEL_S)
    assert reply["content"]["status"] == "ok", reply["content"]
    return json.loads("".join(printed))


WHO = textwrap.dedent(
    """
    import json, os
    from hotdash_release.interactive.session import default_release_dir
    print(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "cwd": os.getcwd(),
                      "records_in": str(default_release_dir()), "operator": os.environ.get("HOTDASH_OPERATOR")}))
    """
)


def cmdline(pid: int) -> str:
    return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()


def parent(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2 :].split()[1])


def is_server(lab: LabServer, pid: int) -> bool:
    """JupyterLab started by `runbook lab`: the command itself (an exec) or its child."""
    return "-m hotdash_release.interactive.labserver" in cmdline(pid) and lab.process.pid in (pid, parent(pid))


# -- forked kernels -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lab(world, tmp_path_factory):
    yield from start_lab(world, tmp_path_factory.mktemp("forked"))


@pytest.fixture(scope="module")
def walk(lab):
    """One notebook opened, its kernel asked who it is, interrupted, restarted, shut down."""
    kernel_id = lab.open_notebook("01-preflight.ipynb")
    client = lab.client(kernel_id)
    first = ask(client, WHO)
    # Interrupt: a cell that would sleep for a minute ends with KeyboardInterrupt at once.
    message_id = client.execute("import time; time.sleep(60)")
    assert wait_for(lambda: _busy(client, message_id), KERNEL_S)
    lab.api("POST", f"/api/kernels/{kernel_id}/interrupt")
    interrupted = client.get_shell_msg(timeout=KERNEL_S)
    client.stop_channels()
    lab.api("POST", f"/api/kernels/{kernel_id}/restart")
    client = lab.client(kernel_id)
    restarted = ask(client, WHO)
    client.stop_channels()
    lab.api("DELETE", f"/api/kernels/{kernel_id}")
    return {"first": first, "interrupted": interrupted, "restarted": restarted}


def _busy(client: BlockingKernelClient, message_id: str) -> bool:
    message = client.get_iopub_msg(timeout=KERNEL_S)
    return (
        message["msg_type"] == "status"
        and message["content"]["execution_state"] == "busy"
        and message["parent_header"].get("msg_id") == message_id
    )


def test_session_notebooks_name_the_session_kernel_spec(lab):
    for notebook in sorted(lab.folder.glob("*.ipynb")):
        assert json.loads(notebook.read_text())["metadata"]["kernelspec"]["name"] == KERNEL_NAME, notebook.name
    specs = lab.api("GET", "/api/kernelspecs").json()["kernelspecs"]
    assert specs[KERNEL_NAME]["spec"]["metadata"]["kernel_provisioner"]["provisioner_name"] == "hotdash-forked"


def test_a_notebook_kernel_is_a_fork_of_the_template_which_the_server_started(lab, walk):
    template = walk["first"]["ppid"]
    assert "hotdash_release.execution.template_process" in cmdline(template)
    assert is_server(lab, parent(template)), "the template is the server's child"
    assert "kernel template: ready" in lab.log_text()


def test_a_forked_kernel_runs_in_the_session_folder_as_a_started_one_would(lab, walk):
    assert Path(walk["first"]["cwd"]) == lab.folder
    assert Path(walk["first"]["records_in"]) == lab.folder, "its runbooks record in the session"
    assert walk["first"]["operator"] == "alice"


def test_interrupt_stops_the_running_cell(walk):
    content = walk["interrupted"]["content"]
    assert (content["status"], content.get("ename")) == ("error", "KeyboardInterrupt")


def test_restart_is_a_new_fork_and_the_old_kernel_is_gone(walk):
    first, restarted = walk["first"], walk["restarted"]
    assert restarted["pid"] != first["pid"]
    assert restarted["ppid"] == first["ppid"], "forked from the same template"
    assert not running(first["pid"])


def test_the_server_sees_a_new_kernel_answer_at_once(lab):
    """The server watches each kernel's status on a socket it connects as the kernel is launched.
    A kernel not yet listening refused it, zmq tried again only 100 ms later, and the kernel's first
    answer went unseen: the server kept the kernel "starting", and the browser waited for the
    server's next nudge, half a second on. A kernel is launched once it listens, so the first
    answer of a client connecting as soon as the session is made is seen by the server."""
    kernel_id = lab.open_notebook("03-deploy_staging.ipynb")
    lab.client(kernel_id).stop_channels()  # connected, asked kernel_info, answered
    try:
        assert wait_for(lambda: _execution_state(lab, kernel_id) == "idle", 10), _execution_state(lab, kernel_id)
    finally:
        lab.api("DELETE", f"/api/kernels/{kernel_id}")


def test_launched_means_listening_on_every_port_and_a_kernel_that_died_is_not_waited_for():
    ports = [_free_port() for _ in PORT_NAMES]
    info = {"transport": "tcp", "ip": "127.0.0.1", **dict(zip(PORT_NAMES, ports, strict=True))}
    listening: list[socket.socket] = []

    def bind_one_by_one() -> None:  # as a kernel binds, the last port a while after the first
        for port in ports:
            time.sleep(0.05)
            listening.append(socket.create_server(("127.0.0.1", port)))

    binder = threading.Thread(target=bind_one_by_one)
    binder.start()
    try:
        assert asyncio.run(until_listening(info, alive=lambda: True, timeout=KERNEL_S))
        assert len(listening) == len(ports), "it returned before the last port listened"
    finally:
        binder.join()
        for server in listening:
            server.close()
    assert not asyncio.run(until_listening(info, alive=lambda: False, timeout=KERNEL_S)), "nobody listens now"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _execution_state(lab: LabServer, kernel_id: str) -> str:
    return lab.api("GET", f"/api/kernels/{kernel_id}").json()["execution_state"]


def test_shutdown_leaves_no_kernel_and_a_killed_server_takes_the_template_along(lab, walk):
    assert wait_for(lambda: not running(walk["restarted"]["pid"]), KERNEL_S)
    template = walk["first"]["ppid"]
    # A second kernel, left running: even a server killed outright (no shutdown of its own) ends it
    # and the template.
    client = lab.client(lab.open_notebook("02-verify_secrets.ipynb"))
    try:
        kernel = ask(client, WHO)
    finally:
        client.stop_channels()  # its thread would keep the test process alive
    assert kernel["ppid"] == template
    os.kill(parent(template), signal.SIGKILL)
    assert wait_for(lambda: not running(template) and not running(kernel["pid"]), KERNEL_S)


# -- the fallback ------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def broken_template(world, tmp_path_factory):
    """A server whose kernel template cannot start: the library it preloads (hotdash_release.runbook)
    fails to import, as a broken install would; everything the server imports is intact."""
    root = tmp_path_factory.mktemp("broken-template")
    library = shutil.copytree(ROOT / "lib" / "hotdash_release", root / "lib" / "hotdash_release")
    shutil.copytree(ROOT / "runbooks", root / "runbooks")  # the library finds them beside lib/
    (library / "runbook.py").write_text('raise ImportError("hotdash_release.runbook is broken (test)")\n')
    yield from start_lab(world, root / "server", pythonpath=root / "lib")


def test_without_a_template_kernels_start_the_usual_way_and_the_log_says_so(broken_template):
    server = broken_template
    client = server.client(server.open_notebook("01-preflight.ipynb"))
    try:
        who = ask(client, "import json, os; print(json.dumps({'pid': os.getpid(), 'ppid': os.getppid()}))")
    finally:
        client.stop_channels()
    assert is_server(server, who["ppid"]), "a new interpreter, started by the server"
    assert "hotdash_release.execution.template_process" not in cmdline(who["pid"])
    log = server.log_text()
    assert "kernel template" in log and "kernels start the usual way" in log, log
