"""The papermill engine a release runs its sections with.

It is papermill's nbclient engine with one change: how the notebook is saved while cells run.
papermill saves the output notebook as each cell starts and again as it completes (markdown
cells included), so that a run stopped anywhere leaves the notebook up to that cell; when the
engine is done it saves once more, and papermill's `execute_notebook` then writes the same
notebook again. Each of those saves goes through `nbformat.writes` (indented JSON from the
pure-Python encoder, then schema validation, about 6 ms for a section's notebook) and
truncates the file. Here:
- saves while cells run write compact JSON (the C encoder; still a valid notebook) over the
  file in place, and only when a code cell starts or completes;
- the engine's own last save is compact too when execution ended normally, because
  papermill's final write follows it; it is papermill's canonical, validated one when
  execution raised (a dead kernel, an abort), since papermill then writes nothing more.
So the archived notebook is canonical and validated either way, written once.

What this copies from papermill, and why: papermill's public hooks are the engine registry and
the engine class; the notebook manager is not one of them (`Engine.execute_notebook` builds a
`NotebookExecutionManager` itself). So `ReleaseEngine.execute_notebook` is that method's eight
lines with our manager class, plus marking the last save canonical when execution raises.
Everything else (nbclient, parameters, papermill's own final write) is papermill's.
"""

from __future__ import annotations

import json
import os
from contextlib import contextmanager

from nbformat.v4 import new_output
from papermill.engines import NBClientEngine, NotebookExecutionManager, catch_nb_assignment, papermill_engines
from papermill.exceptions import PapermillExecutionError
from papermill.iorw import write_ipynb

ENGINE_NAME = "hotdash"
#: sha256 of papermill's `Engine.execute_notebook` source (dedented) in the papermill versions
#: this engine was read against (2.6.0, 2.7.0); tests/test_supported_versions.py fails on another.
PAPERMILL_EXECUTE_NOTEBOOK_SHA256 = frozenset({"9bbe1c605a7b30a175424fac52bca4ad09e91fd209c52574fb4b84f7685202f7"})


class _LightSavesManager(NotebookExecutionManager):
    _canonical = False  # the next save is the last one anybody makes: write it canonically
    _quiet = False  # a markdown cell's bookkeeping: saved with the next code cell
    _running: int | None = None  # the index of the code cell executing now

    @catch_nb_assignment
    def save(self, **kwargs):
        if self.output_path and not self._quiet:
            if self._canonical:
                write_ipynb(self.nb, self.output_path)
            else:
                _write_over(self.output_path, json.dumps(self.nb, ensure_ascii=False).encode())
        self.last_save_time = self.now()

    def cell_start(self, cell, cell_index=None, **kwargs):
        self._running = cell_index if cell.get("cell_type") == "code" else None
        with self._saving_only_code(cell):
            super().cell_start(cell, cell_index, **kwargs)

    def cell_complete(self, cell, cell_index=None, **kwargs):
        with self._saving_only_code(cell):
            super().cell_complete(cell, cell_index, **kwargs)

    def execution_stopped(self, exc: BaseException) -> None:
        """Execution ended by something other than a cell's error: the kernel died, or the
        release was aborted. papermill would mark the cell that was running, and every cell
        after it, "completed", with no exception on the notebook; an auditor must read
        instead that this cell failed, why, and that nothing after it ran."""
        index = self._running
        if index is None:
            return
        cell = self.nb.cells[index]
        reason = f"{type(exc).__name__}: {exc}".splitlines()[0] if str(exc) else type(exc).__name__
        cell.outputs.append(
            new_output(
                "error",
                ename=type(exc).__name__,
                evalue=reason,
                traceback=[f"Execution stopped while this cell ran ({reason}); the cells below did not run."],
            )
        )
        self.cell_exception(cell, cell_index=index, exception=exc)

    @contextmanager
    def _saving_only_code(self, cell):
        self._quiet = cell.get("cell_type") != "code"
        try:
            yield
        finally:
            self._quiet = False


def _write_over(path: str, data: bytes) -> None:
    """Write over a file in place, then cut it to length. Truncating first (open "w") frees the
    file's blocks: 0.7 ms a save on our ext4 disks, against 0.02 ms for writing over them."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.ftruncate(fd, len(data))
    finally:
        os.close(fd)


class ReleaseEngine(NBClientEngine):
    """papermill's nbclient engine, with the notebook manager above."""

    @classmethod
    def execute_notebook(
        cls, nb, kernel_name, output_path=None, progress_bar=True, log_output=False, autosave_cell_every=30, **kwargs
    ):
        # papermill's Engine.execute_notebook, which does not let a subclass choose its manager.
        nb_man = _LightSavesManager(
            nb,
            output_path=output_path,
            progress_bar=progress_bar,
            log_output=log_output,
            autosave_cell_every=autosave_cell_every,
        )
        nb_man.notebook_start()
        try:
            cls.execute_managed_notebook(nb_man, kernel_name, log_output=log_output, **kwargs)
        except BaseException as exc:
            nb_man._canonical = True  # papermill writes nothing after an exception from here
            if not isinstance(exc, PapermillExecutionError):  # a cell's own error is marked already
                nb_man.execution_stopped(exc)
            raise
        finally:
            nb_man.cleanup_pbar()
            nb_man.notebook_complete()
        return nb_man.nb


papermill_engines.register(ENGINE_NAME, ReleaseEngine)
