"""HotDash release runbooks: the production deployment plan as papermill notebooks.

The notebooks in runbooks/ import only what this module exports; a test pins it. The names
are imported on first use, so a process that needs one module of the package (the runner,
the HTML export worker) does not pay for the notebooks' imports (pandas, widgets).
"""

from importlib import import_module

_EXPORTS = {
    "ReleaseConfig": "config",
    "load_config": "config",
    "ConfigError": "errors",
    "DeployError": "errors",
    "GateFailed": "errors",
    "ReleaseError": "errors",
    "RollbackError": "errors",
    "SecretError": "errors",
    "TargetError": "errors",
    "UsageError": "errors",
    "SectionRun": "runbook",
    "describe_plan": "runbook",
    "open_section": "runbook",
    "ReleaseOptions": "runner",
    "run_release": "runner",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f".{_EXPORTS[name]}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
