"""A fresh kernel per section, ready before the section asks, and papermill running it.

- pool.py: the kernel pool (kernels started ahead, stopped in the background)
- forking.py: the runner's side of the kernel template; which kernel specs a fork can stand in for
- template_process.py: the template process itself (imports once, forks a kernel per request)
- provisioner.py: jupyter_client's side: a provisioner for forked kernels, a prompt client
- warmup.py: what every kernel runs as it starts (IPython's display machinery)
- engine.py: the papermill engine (how the notebook is saved while cells run)
- procs.py: whether a process runs, read from /proc
- interrupts.py, terminal.py: the `runbook` command's process: its signals; what it writes to a terminal
"""
