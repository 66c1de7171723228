"""The kernel pool and its kernel template: real kernels, forked from a real template.

What the audit record relies on: each section's kernel is a process of its own in which no
other section ran code; it starts in the runbooks' folder with the runner's environment of
the moment; a kernel that dies is seen as dead; and when the runner ends, however it ends,
no template or kernel is left behind.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import queue
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from contextlib import contextmanager
from pathlib import Path

import psutil
import pytest
from conftest import wait_for

from hotdash_release.execution.forking import forkable, launcher_arguments
from hotdash_release.execution.pool import SOCKET_DIR_PREFIX, KernelPool, start_kernel_pool

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="kernels are forked on Linux")


def run_cell(manager, code: str, timeout: float = 30) -> dict:
    """Execute one cell; its execute_reply content plus the text it printed as "stdout"."""

    async def go():
        client = manager.client()
        client.start_channels()
        try:
            await client.wait_for_ready(timeout=timeout)
            msg_id = client.execute(code)
            printed = []
            while True:
                message = await client.get_iopub_msg(timeout=timeout)
                if message["parent_header"].get("msg_id") != msg_id:
                    continue
                if message["msg_type"] == "stream":
                    printed.append(message["content"]["text"])
                if message["msg_type"] == "status" and message["content"]["execution_state"] == "idle":
                    break
            while True:
                reply = await client.get_shell_msg(timeout=timeout)
                if reply["parent_header"].get("msg_id") == msg_id:
                    return {**reply["content"], "stdout": "".join(printed)}
        finally:
            client.stop_channels()

    return asyncio.run(go())


@pytest.fixture
def pool(tmp_path):
    pool = KernelPool("python3", cwd=tmp_path, ahead=1)
    yield pool
    pool.close()


def test_the_default_kernel_is_forked_from_a_template(pool):
    assert forkable("python3")
    assert pool.template is not None and pool.mode == "forked from a kernel template"
    with pool.kernel() as manager:
        pid = manager.provisioner.pid
        assert psutil.Process(pid).ppid() == pool.template.pid
        reply = run_cell(manager, "import os, sys; print(os.getpid(), 'hotdash_release.runbook' in sys.modules)")
    assert reply["status"] == "ok"
    assert reply["stdout"].split() == [str(pid), "True"]  # the library came imported


def test_each_section_gets_a_process_no_other_section_touched(pool):
    with pool.kernel() as first:
        run_cell(first, "import hotdash_release.plan as plan; plan.LEFT_BEHIND = 1; leftover = 1")
        first_pid = first.provisioner.pid
    with pool.kernel() as second:
        reply = run_cell(
            second, "import hotdash_release.plan as plan\nprint(hasattr(plan, 'LEFT_BEHIND'), 'leftover' in globals())"
        )
        assert second.provisioner.pid != first_pid
    assert reply["stdout"].split() == ["False", "False"]


def test_a_kernel_is_warmed_up_before_its_section_without_a_trace(pool):
    """The warm-up (warmup.py) builds the display machinery while the kernel waits; the section
    still finds a fresh kernel: no name of ours in its namespace, its first cell counted 1."""
    with pool.kernel() as manager:
        reply = run_cell(
            manager,
            "ip = get_ipython()\n"
            "print('formatters' in ip.display_formatter._trait_values)\n"
            "print([k for k in ip.user_ns if k not in ip.user_ns_hidden and not k.startswith('_')])",
        )
    warmed, names = reply["stdout"].splitlines()
    assert warmed == "True" and names == "['ip']" and reply["execution_count"] == 1


def test_a_second_client_is_answered_while_the_sections_client_is_open(pool):
    """The client connected ahead has a zmq identity of its own. Clients of one manager share
    the manager's, and a kernel's shell socket ignores a peer whose identity another already
    has: a client made while the one connected ahead is open went unanswered now and then
    (the race: which connection the kernel sees first, the early one retrying while the kernel
    was still starting)."""
    for _ in range(6):  # each kernel taken while the spares may still be starting
        with pool.kernel() as manager:
            ahead = manager.client()
            assert ahead.session.session != manager.session.session
            reply = run_cell(manager, "print('answered')", timeout=10)
            assert reply["stdout"] == "answered\n"


def test_a_forked_kernel_handles_shell_messages_on_its_main_thread(pool):
    """No shell channel thread (kernel_template._kernel_app): one hand-over less per message."""
    from ipykernel.shellchannel import SHELL_CHANNEL_THREAD_NAME

    with pool.kernel() as manager:
        reply = run_cell(manager, "import threading; print(sorted(t.name for t in threading.enumerate()))")
        info = run_cell(
            manager,
            "k = get_ipython().kernel; print(k._supports_kernel_subshells, k.shell_stream.io_loop is k.io_loop)",
        )
    assert SHELL_CHANNEL_THREAD_NAME not in reply["stdout"], reply["stdout"]
    assert info["stdout"].split() == ["False", "True"]


def test_the_client_connected_ahead_is_the_sections_and_every_client_is_closed_after(pool):
    """Each section's client is connected while its kernel waits in the pool; nbclient leaves
    the client of a kernel it did not start open, so the pool closes it (with its zmq context,
    two threads and their sockets) when the section ends. Sections leave no descriptors behind."""

    def descriptors() -> int:  # once the spare has started and the last kernel is stopped
        pool._spares[0].result()
        pool._stopper.submit(lambda: None).result()
        gc.collect()  # what earlier tests left for the collector goes first
        return len(os.listdir("/proc/self/fd"))

    with pool.kernel() as manager:
        ahead = manager.connected_client
        assert ahead is not None and ahead.channels_running  # connected before the section asked
        assert manager.client() is ahead
        run_cell(manager, "x = 1")
    assert not ahead.channels_running and ahead.context.closed
    counts = []
    for _ in range(5):
        with pool.kernel() as manager:
            run_cell(manager, "x = 1")
            extra = manager.client()  # a second client, as a person in a debugger might ask for
        assert extra.context.closed
        counts.append(descriptors())
    # Before the pool closed its clients, each section left a zmq context behind (its threads'
    # descriptors stay even once the collector took the client). What may vary is the spare's
    # client, whose sockets appear as its kernel starts listening.
    assert counts[-1] - counts[0] < 5, counts
    spare = pool._spares[0].result().manager.connected_client
    pool.close()
    assert spare.context.closed  # a spare's client made ahead goes with the pool


def test_a_kernel_runs_in_the_runbooks_folder_with_the_runners_environment_of_the_moment(pool, tmp_path, monkeypatch):
    monkeypatch.setenv("HOTDASH_SET_AFTER_THE_TEMPLATE_STARTED", "yes")
    with pool.kernel() as manager:
        reply = run_cell(
            manager, "import os; print(os.getcwd()); print(os.environ.get('HOTDASH_SET_AFTER_THE_TEMPLATE_STARTED'))"
        )
    cwd, value = reply["stdout"].split()
    assert Path(cwd) == tmp_path and value == "yes"


def test_a_spare_started_before_the_environment_changed_is_not_handed_out(pool, monkeypatch):
    with pool.kernel() as manager:
        run_cell(manager, "x = 1")
    stale = pool._spares[0].result().manager.provisioner.pid  # started with the environment of then
    monkeypatch.setenv("HOTDASH_SET_WHILE_A_SPARE_WAITED", "yes")
    with pool.kernel() as manager:
        reply = run_cell(manager, "import os; print(os.getpid(), os.environ.get('HOTDASH_SET_WHILE_A_SPARE_WAITED'))")
    pid, value = reply["stdout"].split()
    assert value == "yes" and int(pid) != stale
    assert wait_for(lambda: not _running(stale))  # stopped, not left behind


def test_a_pool_kept_for_several_releases_gives_every_section_a_new_kernel(tmp_path):
    from conftest import make_rehearsal

    from hotdash_release.paths import RUNBOOKS_DIR
    from hotdash_release.runner import ReleaseOptions, run_release

    world = make_rehearsal(tmp_path / "world")
    pool = start_kernel_pool()
    handed_out, hand_out = [], pool.kernel

    @contextmanager
    def recording_kernel():
        with hand_out() as manager:
            handed_out.append(manager.provisioner.pid)
            yield manager

    pool.kernel = recording_kernel
    try:
        template = pool.template.pid
        records = [
            run_release(
                ReleaseOptions(config_path=world.config, outputs=world.outputs),
                progress=lambda line: None,
                kernel_pool=pool,
            )
            for _ in range(2)
        ]
        assert pool.template.pid == template and pool.template.alive(), "kept for the next release"
        assert not pool.serves("python3", RUNBOOKS_DIR, fork=False)  # such a release starts its own
    finally:
        pool.close()
        world.platform().stop()
    assert [r.outcome for r in records] == ["released", "released"]
    assert all(r.kernels is pool for r in records)
    assert len(handed_out) == 2 * len(records[0].sections) == len(set(handed_out))
    assert wait_for(lambda: not any(_running(pid) for pid in [template, *handed_out]))


def test_every_output_of_a_cell_arrives_in_order(pool):
    """Forked kernels skip flushes with nothing written (kernel_template._skip_empty_flushes):
    what a cell writes, displays and returns still reaches the notebook, in order."""
    import nbformat
    from nbclient import NotebookClient

    notebook = nbformat.v4.new_notebook()
    notebook.cells = [
        nbformat.v4.new_code_cell(
            "import sys\nfrom IPython.display import HTML, display\n"
            "print('one')\nprint('two', file=sys.stderr)\ndisplay(HTML('<b>three</b>'))\n"
            "sys.stdout.write('four')\n'five'"
        ),
        nbformat.v4.new_code_cell("import time\nfor n in range(3):\n    print(n, end=' ')\n    time.sleep(0.05)"),
    ]
    with pool.kernel() as manager:
        NotebookClient(notebook, km=manager, timeout=30).execute()
    first, second = (
        [
            (
                o.output_type,
                o.get("name"),
                o.get("text") or o.get("data", {}).get("text/html") or o.get("data", {}).get("text/plain"),
            )
            for o in cell.outputs
        ]
        for cell in notebook.cells
    )
    assert first == [
        ("stream", "stdout", "one\n"),
        ("stream", "stderr", "two\n"),
        ("display_data", None, "<b>three</b>"),
        ("stream", "stdout", "four"),
        ("execute_result", None, "'five'"),
    ]
    assert "".join(text for _, _, text in second) == "0 1 2 "


def test_socket_folders_of_runners_that_are_gone_are_removed(tmp_path, monkeypatch):
    """A runner killed outright leaves its kernels' socket folders; the next pool removes them,
    and only them."""
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    orphaned = tmp_path / f"{SOCKET_DIR_PREFIX}{gone.pid}-x1y2"
    ours = tmp_path / f"{SOCKET_DIR_PREFIX}{os.getpid()}-a1b2"
    unrelated = tmp_path / f"{SOCKET_DIR_PREFIX}notapid"
    for folder in (orphaned, ours, unrelated):
        folder.mkdir()
        (folder / "kernel-1").write_text("")
    pool = KernelPool("python3", cwd=tmp_path, ahead=0, fork=False)
    pool.close()
    assert not orphaned.exists() and ours.exists() and unrelated.exists()


def test_a_kernel_that_dies_is_seen_dead_with_its_exit_code(pool):
    with pool.kernel() as manager:
        process = manager.provisioner.process
        with pytest.raises(queue.Empty):  # no reply ever comes from a kernel that is gone
            run_cell(manager, "import os; os._exit(7)", timeout=3)
        deadline = time.monotonic() + 10
        while process.poll() is None and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process.poll() == 7
        assert not asyncio.run(manager.is_alive())


def test_an_interrupt_reaches_the_running_cell(pool):
    with pool.kernel() as manager:

        async def go():
            client = manager.client()
            client.start_channels()
            try:
                await client.wait_for_ready(timeout=30)
                msg_id = client.execute("import time; print('sleeping', flush=True); time.sleep(30)")
                while True:  # interrupt once the cell is surely running
                    message = await client.get_iopub_msg(timeout=20)
                    if (
                        message["parent_header"].get("msg_id") == msg_id
                        and message["msg_type"] == "stream"
                        and "sleeping" in message["content"]["text"]
                    ):
                        break
                await manager.interrupt_kernel()
                while True:  # well before the 30 s sleep would end
                    reply = await client.get_shell_msg(timeout=20)
                    if reply["parent_header"].get("msg_id") == msg_id:
                        return reply["content"]
            finally:
                client.stop_channels()

        content = asyncio.run(go())
    assert content["status"] == "error" and content["ename"] == "KeyboardInterrupt"


def test_closing_the_pool_leaves_no_template_and_no_kernel(tmp_path):
    pool = KernelPool("python3", cwd=tmp_path, ahead=1)
    with pool.kernel() as manager:
        run_cell(manager, "x = 1")
        used = manager.provisioner.pid
    template = pool.template.pid
    spare = pool._spares[0].result().manager.provisioner.pid  # booting for a next section
    pool.close()
    _gone, alive = psutil.wait_procs(
        [psutil.Process(pid) for pid in (used, spare, template) if psutil.pid_exists(pid)], timeout=10
    )
    assert not [p for p in alive if p.status() != psutil.STATUS_ZOMBIE]


def test_a_runner_killed_outright_takes_its_template_and_kernels_along(tmp_path):
    """SIGKILL leaves the runner no chance to clean up: the kernel processes must still go."""
    script = tmp_path / "runner.py"
    script.write_text(
        textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        from hotdash_release.execution.pool import KernelPool
        pool = KernelPool("python3", cwd=Path({str(tmp_path)!r}), ahead=1)
        with pool.kernel() as manager:
            spare = pool._spares[0].result().manager.provisioner.pid
            print(pool.template.pid, manager.provisioner.pid, spare, flush=True)
            time.sleep(120)
    """)
    )
    runner = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
    try:
        pids = [int(pid) for pid in runner.stdout.readline().split()]
        assert len(pids) == 3 and all(psutil.pid_exists(pid) for pid in pids)
        os.kill(runner.pid, signal.SIGKILL)
        runner.wait(timeout=10)
        deadline = time.monotonic() + 10
        while any(_running(pid) for pid in pids) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not [pid for pid in pids if _running(pid)]
    finally:
        runner.kill()
        runner.wait()


def test_without_fork_kernels_are_spawned_and_still_fresh(tmp_path):
    pool = KernelPool("python3", cwd=tmp_path, ahead=0, fork=False)
    try:
        assert pool.template is None and pool.mode == "spawned"
        with pool.kernel() as manager:
            reply = run_cell(manager, "import os, sys; print(os.getppid(), 'hotdash_release.runbook' in sys.modules)")
        assert reply["stdout"].split() == [str(os.getpid()), "True"]  # preloaded by exec_lines
    finally:
        pool.close()


@pytest.mark.parametrize(
    ("cmd", "forks"),
    [
        ([sys.executable, "-m", "ipykernel_launcher", "-f", "k.json"], ["-f", "k.json"]),
        (
            [sys.executable, "-m", "ipykernel_launcher", "-f", "k.json", "--IPKernelApp.exec_lines=x=1"],
            ["-f", "k.json", "--IPKernelApp.exec_lines=x=1"],
        ),
        (["/usr/bin/false", "-m", "ipykernel_launcher", "-f", "k.json"], None),  # another interpreter
        ([sys.executable, "-m", "some_other_kernel", "-f", "k.json"], None),
        (["R", "--slave", "-e", "IRkernel::main()"], None),
    ],
)
def test_only_this_pythons_ipykernel_is_forked(cmd, forks):
    assert launcher_arguments(cmd) == forks


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def test_the_template_imported_everything_a_release_imports(tmp_path, monkeypatch):
    """Whatever a section imports on its own, each forked kernel imports again: the template
    preloads it all (kernel_template.PRELOAD). Each runbook is instrumented with a first cell
    noting sys.modules and a last one printing what was imported in between."""
    import nbformat
    from conftest import make_rehearsal

    from hotdash_release import runner
    from hotdash_release.paths import RUNBOOKS_DIR

    books = tmp_path / "runbooks"
    shutil.copytree(RUNBOOKS_DIR, books)
    for path in books.glob("*.ipynb"):
        notebook = nbformat.read(path, as_version=4)
        notebook.cells.insert(0, nbformat.v4.new_code_cell("import sys as _sys; _before = set(_sys.modules)"))
        notebook.cells.append(nbformat.v4.new_code_cell("print('IMPORTED', sorted(set(_sys.modules) - _before))"))
        nbformat.write(notebook, path)
    monkeypatch.setattr(runner, "RUNBOOKS_DIR", books)
    world = make_rehearsal(tmp_path / "world")
    try:
        record = runner.run_release(
            runner.ReleaseOptions(config_path=world.config, outputs=world.outputs), progress=lambda line: None
        )
    finally:
        world.platform().stop()
    assert record.outcome == "released" and record.kernels.mode == "forked from a kernel template"
    imported = {}
    for section in record.sections:
        last = nbformat.read(record.release_dir / section.notebook, as_version=4).cells[-1]
        text = "".join(output.get("text", "") for output in last.outputs)
        imported[section.section.key] = text.split("IMPORTED", 1)[1].strip()
    assert imported == {key: "[]" for key in imported}


def test_when_the_template_dies_the_pool_carries_on_with_spawned_kernels(tmp_path):
    """The rollback after a failure needs a kernel even if the template is what failed."""
    pool = KernelPool("python3", cwd=tmp_path, ahead=1)
    try:
        with pool.kernel() as manager:
            run_cell(manager, "x = 1")
        spare = pool._spares[0].result().manager.provisioner.pid
        os.kill(pool.template.pid, signal.SIGKILL)  # its forks, the spare among them, die with it
        assert wait_for(lambda: not _running(spare))
        with pool.kernel() as manager:
            reply = run_cell(manager, "import os; print(os.getppid())")
        assert reply["status"] == "ok" and reply["stdout"].split() == [str(os.getpid())]  # spawned by us
        assert pool.template is None
        assert pool.mode.startswith("forked from a kernel template; spawned after the kernel template failed")
    finally:
        pool.close()


def test_a_template_that_dies_under_a_running_section_is_on_record(tmp_path):
    """The last section's kernel dies with its template: no later kernel is asked for, and the
    pool must still not describe its kernels as simply forked."""
    pool = KernelPool("python3", cwd=tmp_path, ahead=0)
    try:
        with pool.kernel() as manager:
            run_cell(manager, "x = 1")
            assert pool.mode == "forked from a kernel template"
            os.kill(pool.template.pid, signal.SIGKILL)
            assert wait_for(lambda: not _running(manager.provisioner.pid))
        assert "the kernel template died during the release" in pool.mode
    finally:
        pool.close()
    assert "the kernel template died during the release" in pool.mode  # closing does not forget it


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "spawned"])
def test_a_kernel_ends_as_a_stock_one_atexit_runs_and_open_files_are_flushed(tmp_path, fork):
    """As under plain papermill: a section's atexit handlers run when its kernel ends, and a
    file it wrote without closing keeps what was written."""
    pool = KernelPool("python3", cwd=tmp_path, ahead=0, fork=fork)
    try:
        with pool.kernel() as manager:
            reply = run_cell(
                manager,
                "import atexit, pathlib\n"
                f"atexit.register(pathlib.Path({str(tmp_path / 'atexit.txt')!r}).write_text, 'ran')\n"
                f"unclosed = open({str(tmp_path / 'unclosed.txt')!r}, 'w')\n"
                "unclosed.write('kept')",
            )
            assert reply["status"] == "ok"
            pid = manager.provisioner.pid
        assert wait_for(lambda: not _running(pid), timeout_s=10)
    finally:
        pool.close()
    assert (tmp_path / "atexit.txt").read_text() == "ran"
    assert (tmp_path / "unclosed.txt").read_text() == "kept"


def _long_folder(tmp_path: Path) -> Path:
    folder = tmp_path / ("a-temp-folder-whose-name-is-long-enough-" * 3)
    folder.mkdir()
    assert len(str(folder)) > 110  # no Unix socket path fits under it
    return folder


@pytest.mark.parametrize("fork", [True, False], ids=["forked", "spawned"])
def test_a_long_tmpdir_does_not_stop_kernels(tmp_path, monkeypatch, fork):
    """Socket paths must not depend on the length of TMPDIR (they are at most 107 bytes)."""
    monkeypatch.setattr(tempfile, "tempdir", str(_long_folder(tmp_path)))
    pool = KernelPool("python3", cwd=tmp_path, ahead=0, fork=fork)
    try:
        with pool.kernel() as manager:
            assert run_cell(manager, "print(6 * 7)")["stdout"].strip() == "42"
            assert manager.transport == "ipc" and manager.ip.startswith("/tmp/")
    finally:
        pool.close()


def test_with_no_short_folder_kernels_talk_tcp_on_loopback(tmp_path, monkeypatch):
    from hotdash_release.execution import pool as pool_module

    long_folder = _long_folder(tmp_path)
    monkeypatch.setattr(tempfile, "tempdir", str(long_folder))
    monkeypatch.setattr(pool_module, "_SHORT_BASE", str(long_folder))
    pool = KernelPool("python3", cwd=tmp_path, ahead=0)
    try:
        with pool.kernel() as manager:
            assert run_cell(manager, "print(6 * 7)")["stdout"].strip() == "42"
            assert (manager.transport, manager.ip) == ("tcp", "127.0.0.1")
    finally:
        pool.close()


def test_connection_files_live_in_the_kernel_folder_and_leave_with_it(tmp_path):
    """A connection file holds the kernel's HMAC key: it is removed with the kernel's folder,
    also by the next pool when a runner was killed outright."""
    pool = KernelPool("python3", cwd=tmp_path, ahead=0)
    try:
        with pool.kernel() as manager:
            connection_file = Path(manager.connection_file)
            folder = Path(manager.ip).parent
            assert connection_file.parent == folder and connection_file.is_file()
            assert json.loads(connection_file.read_text())["key"]
    finally:
        pool.close()
    assert not connection_file.exists() and not folder.exists()


def test_a_kept_pool_forks_no_kernel_from_a_template_older_than_the_environment(tmp_path, monkeypatch):
    """A runner that keeps its pool for many releases may change its environment between them;
    a fork inherits the template's process state (time zone, the TLS key log), so kernels then
    come from a template started with the new environment."""
    keylog = tmp_path / "keys.log"
    monkeypatch.setenv("TZ", "UTC")
    monkeypatch.setenv("SSLKEYLOGFILE", str(keylog))
    probe = (
        "import time; from hotdash_release.checks.tls import tls_context\n"
        "print(time.tzname[0], tls_context().keylog_filename)"
    )
    pool = KernelPool("python3", cwd=tmp_path, ahead=1)
    try:
        with pool.kernel() as manager:
            assert run_cell(manager, probe)["stdout"].split() == ["UTC", str(keylog)]
        first = pool.template
        monkeypatch.setenv("TZ", "Asia/Tokyo")
        monkeypatch.delenv("SSLKEYLOGFILE")
        with pool.kernel() as manager:
            assert run_cell(manager, probe)["stdout"].split() == ["JST", "None"]
            assert manager.provisioner.template is pool.template  # still forked, not spawned
        assert pool.template is not first
    finally:
        pool.close()


PARITY_PROBE = """import os, stat, sys
mode = os.fstat(0).st_mode
print(stat.S_ISCHR(mode) or stat.S_ISREG(mode), os.read(0, 1) == b"", os.path.basename(sys.argv[0]),
      os.environ["JPY_PARENT_PID"] == "{runner}", os.getpgid(0) == os.getpid(), os.getcwd())
print(sorted(os.environ))"""


def test_forked_and_spawned_kernels_see_the_same_stdin_arguments_and_environment(tmp_path, monkeypatch):
    """A section cannot tell how its kernel was started: stdin is at its end (a read returns at
    once, never waits for a person), the same variables (the runner's, jupyter_client's and
    what the kernel's imports set), its own process group, the runbooks' folder."""
    monkeypatch.setenv("HOTDASH_PROBE", "here")
    seen = {}
    for fork in (True, False):
        pool = KernelPool("python3", cwd=tmp_path, ahead=0, fork=fork)
        try:
            with pool.kernel() as manager:
                seen[fork] = run_cell(manager, PARITY_PROBE.format(runner=os.getpid()))["stdout"].splitlines()
        finally:
            pool.close()
    assert seen[True] == seen[False]
    assert "HOTDASH_PROBE" in seen[True][1] and "JPY_PARENT_PID" in seen[True][1]
    assert seen[True][0].split()[:5] == ["True", "True", "ipykernel_launcher.py", "True", "True"]


def test_a_context_left_to_the_garbage_collector_never_waits_on_a_gone_kernel():
    """A signal can stop a section mid-request: its manager's and clients' sockets may hold a
    message for a kernel that is gone, and with zmq's default linger (forever) ending their context
    would wait for it for good. Every context of ours lingers 0: terminating one with an
    undeliverable message returns. (The other way a context's end can wait for good, the garbage
    collector taking it with its sockets open, is closed by ending contexts by hand: see below.)"""
    import threading

    import zmq

    from hotdash_release.execution.provisioner import PooledKernelManager

    manager = PooledKernelManager(kernel_name="python3")
    manager.load_connection_info({"ip": "127.0.0.1", "transport": "tcp", "shell_port": free_tcp_port()})
    contexts = [manager.context, manager.client().context]
    for context in contexts:
        socket = context.socket(zmq.DEALER, socket_class=zmq.Socket)  # a blocking socket, the context's defaults
        socket.connect(f"tcp://127.0.0.1:{free_tcp_port()}")  # nobody listens: the message stays queued
        socket.send(b"shutdown_request", zmq.NOBLOCK)
        socket.close()  # closed with its message still queued, as a dropped client's would be
        ended = threading.Event()
        threading.Thread(target=lambda c=context, e=ended: (c.term(), e.set()), daemon=True).start()
        assert ended.wait(10), "terminating the context waited for a message no kernel will take"


def free_tcp_port() -> int:
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_contexts_are_destroyed_even_when_a_client_cannot_stop_its_channels(pool):
    """A client whose channels fail to stop (its event loop gone after a signal) still has its
    sockets closed and its context ended, by hand: none is left to the garbage collector."""
    with pool.kernel() as manager:
        run_cell(manager, "x = 1")
        client = manager.client()  # a second one, whose channels fail to stop below
        client.start_channels()

        def cannot_stop() -> None:
            raise RuntimeError("Event loop is closed")

        client.stop_channels = cannot_stop
    pool.wait_stopped()
    assert client.context.closed, "its sockets and context end anyway"
    assert manager.context.closed, "the manager's own too, once its kernel is gone"


def test_a_kernel_whose_shutdown_fails_still_has_its_contexts_ended(pool):
    """jupyter_client ends a manager's context in its shutdown; when that fails (or never comes),
    the pool ends it by hand, so that none is left to the garbage collector."""
    with pool.kernel() as manager:
        run_cell(manager, "x = 1")

        async def fails(now: bool = False, restart: bool = False) -> None:
            raise RuntimeError("shutdown failed")

        manager.shutdown_kernel = fails
    with pytest.raises(RuntimeError, match="shutdown failed"):
        pool.wait_stopped()
    assert manager.context.closed


def test_a_stopped_section_leaves_no_task_behind_to_end_later(pool):
    """A signal stops a section inside its event loop, where nbclient waits for a cell's reply.
    Left pending, that task went on when stopping the kernel ran the loop again, found the kernel
    killed and ended with an error nobody took: asyncio printed it on the command's stderr. The
    section's tasks are cancelled as it ends, before its kernel is stopped."""
    from jupyter_core.utils import ensure_event_loop

    from hotdash_release.execution.interrupts import ReleaseAborted

    loop = ensure_event_loop()
    unhandled: list[dict] = []
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    try:
        with pytest.raises(ReleaseAborted), pool.kernel() as manager:
            client = manager.client()

            async def cell() -> dict:  # as nbclient runs one: execute, then wait for the reply
                await client.wait_for_ready(timeout=30)
                msg_id = client.execute("import time; time.sleep(60)")
                try:
                    while True:
                        reply = await client.get_shell_msg(timeout=60)
                        if reply["parent_header"].get("msg_id") == msg_id:
                            return reply
                except asyncio.CancelledError:
                    # nbclient turns its reply wait being cancelled (its sockets closed under
                    # it, or its kernel seen dead) into DeadKernelError("Kernel died")
                    raise RuntimeError("Kernel died") from None

            task = loop.create_task(cell())
            loop.run_until_complete(asyncio.sleep(0.5))  # the cell runs
            raise ReleaseAborted("SIGTERM received")  # as the signal handler raises it
        assert task.done(), "ended with its section, not left for the loop's next run"
        del task
        gc.collect()
        loop.run_until_complete(asyncio.sleep(0))
        assert unhandled == [], [context.get("message") for context in unhandled]
    finally:
        loop.set_exception_handler(None)


def test_what_a_kernel_prints_outside_its_cells_never_reaches_the_runners_terminal(tmp_path):
    """Observed: after SIGINT a kernel's 30-line ZMQError traceback (tornado's "Uncaught exception
    in ZMQStream callback") reached the runner's stderr, where README promises one line. A kernel
    writes to its own stdout and stderr descriptors here, as such a traceback does."""
    import subprocess
    import sys
    import textwrap

    script = textwrap.dedent(
        f"""
        import sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from test_kernels import run_cell
        from hotdash_release.execution.pool import KernelPool
        pool = KernelPool("python3", cwd={str(tmp_path)!r}, ahead=0)
        try:
            with pool.kernel() as manager:
                reply = run_cell(manager, "import os; os.write(2, b'KERNEL-NOISE-2\\\\n'); os.write(1, b'KERNEL-NOISE-1\\\\n'); print('in the cell')")
                assert reply["stdout"] == "in the cell\\n", reply
            pool.wait_stopped()
            print("logs:", [p.read_text() for p in pool.kernel_messages()])
        finally:
            pool.close()
        """
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "KERNEL-NOISE" not in done.stderr
    logs_line = next(line for line in done.stdout.splitlines() if line.startswith("logs:"))
    assert "KERNEL-NOISE-2" in logs_line and "KERNEL-NOISE-1" in logs_line
    assert done.stdout.count("KERNEL-NOISE-2") == 1 and done.stdout.count("KERNEL-NOISE-1") == 1, (
        "only in the kept log, never on the terminal"
    )
