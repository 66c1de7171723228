"""HotDash release runbooks: the production deployment plan as papermill notebooks.

The notebooks in runbooks/ import only what this module exports; a test pins it.
"""

from .config import ReleaseConfig, load_config
from .errors import (ConfigError, DeployError, GateFailed, ReleaseError, RollbackError, SecretError,
                     TargetError, UsageError)
from .runbook import SectionRun, describe_plan, open_section
from .runner import ReleaseOptions, run_release

__all__ = [
    "ConfigError", "DeployError", "GateFailed", "ReleaseConfig", "ReleaseError", "ReleaseOptions",
    "RollbackError", "SectionRun", "SecretError", "TargetError", "UsageError", "describe_plan",
    "load_config", "open_section", "run_release",
]
