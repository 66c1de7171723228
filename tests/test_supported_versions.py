"""The kernel stack's versions: installed within the ranges pyproject.toml declares, and the
few internals of papermill, jupyter_client and ipykernel the fresh-kernel machinery relies on
still there, so that a new release of any of them is caught here before a user meets it.
`make test-bounds` runs this file, the kernel tests and a release on the lowest versions too."""

from __future__ import annotations

import hashlib
import inspect
import textwrap
import tomllib
from importlib import metadata

import pytest
from packaging.requirements import Requirement

from hotdash_release.execution import engine
from hotdash_release.paths import PROJECT_ROOT

KERNEL_STACK = ("papermill", "nbclient", "ipykernel", "jupyter_client")


def declared() -> dict[str, Requirement]:
    project = tomllib.loads((PROJECT_ROOT / "pyproject.toml").read_text())["project"]
    requirements = [Requirement(text) for text in project["dependencies"]]
    return {r.name.replace("-", "_"): r for r in requirements}


@pytest.mark.parametrize("package", KERNEL_STACK)
def test_the_kernel_stack_is_installed_within_its_declared_range(package):
    requirement = declared()[package]
    assert requirement.specifier, f"{package}: declare the range of versions supported"
    assert requirement.specifier.contains(metadata.version(package)), (package, metadata.version(package))


def test_papermills_execute_notebook_is_the_one_engine_py_was_written_against():
    """engine.py repeats papermill's Engine.execute_notebook with its own notebook manager:
    when papermill changes that method, engine.py must be read against the new one."""
    from papermill.engines import Engine

    source = textwrap.dedent(inspect.getsource(Engine.execute_notebook))
    assert hashlib.sha256(source.encode()).hexdigest() in engine.PAPERMILL_EXECUTE_NOTEBOOK_SHA256


def test_the_notebook_manager_members_the_engine_uses_exist():
    from papermill.engines import NotebookExecutionManager, catch_nb_assignment

    assert callable(catch_nb_assignment)
    for name in (
        "cell_start",
        "cell_complete",
        "cell_exception",
        "notebook_start",
        "notebook_complete",
        "cleanup_pbar",
        "save",
        "now",
    ):
        assert callable(getattr(NotebookExecutionManager, name, None)), name


def test_the_jupyter_client_internals_the_pool_uses_exist():
    from jupyter_client import AsyncKernelManager
    from jupyter_client.asynchronous import AsyncKernelClient
    from jupyter_client.provisioning import LocalProvisioner

    for name in ("_handle_kernel_info_reply", "_async_is_alive", "kernel_info", "start_channels"):
        assert callable(getattr(AsyncKernelClient, name, None)), name
    for name in ("request_shutdown", "shutdown_kernel", "start_kernel", "cleanup_connection_file"):
        assert callable(getattr(AsyncKernelManager, name, None)), name
    assert "provisioner" in AsyncKernelManager.class_traits() or hasattr(AsyncKernelManager, "provisioner")
    for name in ("launch_kernel", "wait", "poll", "kill", "shutdown_requested"):
        assert callable(getattr(LocalProvisioner, name, None)), name


def test_the_ipykernel_internals_the_forked_kernels_use_exist():
    from ipykernel.iostream import OutStream
    from ipykernel.ipkernel import IPythonKernel
    from ipykernel.kernelapp import IPKernelApp

    assert "_execute_sleep" in IPythonKernel.class_traits()  # KERNEL_ARGUMENTS sets it
    assert callable(IPKernelApp.init_sockets)
    assert "shell_channel_thread" in inspect.getsource(IPKernelApp)  # dropped by template_process
    probe = OutStream.__init__.__code__.co_names  # what _skip_empty_flushes looks for
    assert all(name in probe for name in ("_flush_pending", "_subprocess_flush_pending", "_buffers"))
