"""Deployment targets behind one interface (see base.py), chosen by name."""

from __future__ import annotations

from ..config import ReleaseConfig
from ..errors import UsageError
from ..paths import PROJECT_ROOT
from .base import AppStatus, Release, SecretInfo, Target, machines_on_image, serving


def make_target(config: ReleaseConfig, name: str) -> Target:
    settings = config.target_settings(name)
    if name == "local":
        from .local import LocalPlatform

        return LocalPlatform(settings.state_dir or PROJECT_ROOT / ".rehearsal", health_path=config.health.path)
    if name == "fly":
        from .fly import FlyTarget

        # Each app's fly.toml, so that a rollback deploys with the same config as a deploy.
        config_files = {env.app: config.base_dir / env.fly_config for env in config.environments.values()}
        return FlyTarget(flyctl=settings.flyctl, config_files=config_files, deploy_timeout_s=settings.deploy_timeout_s)
    raise UsageError(f"target: {name!r} is not available; allowed: local, fly")


def secret_source_for(config: ReleaseConfig, name: str, target: Target):
    """Where checks get secret values: the rehearsal store locally, the environment elsewhere.

    On Fly the values stay on Fly (flyctl lists digests only), so a smoke test that needs
    SHOPIFY_API_KEY reads STAGING_SHOPIFY_API_KEY / PRODUCTION_SHOPIFY_API_KEY (or the bare
    name) from the environment of the release, as CI provides them.
    """
    from ..secrets.required import EnvironmentSecrets, PlatformStoreSecrets

    if name == "local":
        return PlatformStoreSecrets(target)
    prefixes = {env.app: f"{env.name.upper()}_" for env in config.environments.values()}
    return EnvironmentSecrets(prefixes)


__all__ = [
    "AppStatus",
    "Release",
    "SecretInfo",
    "Target",
    "machines_on_image",
    "make_target",
    "secret_source_for",
    "serving",
]
