"""Deployment targets behind one interface (see base.py), chosen by name."""

from __future__ import annotations

from ..config import ReleaseConfig
from ..errors import UsageError
from ..paths import PROJECT_ROOT
from .base import AppStatus, Release, SecretInfo, Target, choose_rollback_release


def make_target(config: ReleaseConfig, name: str) -> Target:
    settings = config.target_settings(name)
    if name == "local":
        from .local import LocalPlatform

        return LocalPlatform(settings.state_dir or PROJECT_ROOT / ".rehearsal",
                             health_path=config.health.path)
    raise UsageError(f"target: {name!r} is not available yet; allowed: local")


def secret_source_for(config: ReleaseConfig, name: str, target: Target):
    """Where checks get secret values: the rehearsal store locally, the environment elsewhere."""
    from ..secrets import EnvironmentSecrets, PlatformStoreSecrets

    if name == "local":
        return PlatformStoreSecrets(target)
    prefixes = {env.app: f"{env.name.upper()}_" for env in config.environments.values()}
    return EnvironmentSecrets(prefixes)


__all__ = ["AppStatus", "Release", "SecretInfo", "Target", "choose_rollback_release",
           "make_target", "secret_source_for"]
