"""Where the project keeps things. The package is installed editable from the repository,
so the runbooks and the archive root are found next to it.

Two environment variables move WHERE things go, never what a release does or any secret:
HOTDASH_CONFIG names the default release configuration and HOTDASH_OUTPUTS the archive root.
Tests set them so that runbooks executed in a fresh kernel (which only sees the environment)
write to a temporary folder and drive a platform of their own, not the repository's
outputs/ and .rehearsal/.
"""

import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS_DIR = PROJECT_ROOT / "runbooks"
OUTPUTS_DIR = PROJECT_ROOT / "outputs"
DEFAULT_CONFIG = RUNBOOKS_DIR / "hotdash.toml"

CONFIG_ENV = "HOTDASH_CONFIG"
OUTPUTS_ENV = "HOTDASH_OUTPUTS"


def default_config() -> Path:
    """The release configuration used when none is named: $HOTDASH_CONFIG, else runbooks/hotdash.toml."""
    return Path(os.environ[CONFIG_ENV]) if os.environ.get(CONFIG_ENV) else DEFAULT_CONFIG


def outputs_root() -> Path:
    """The archive root used when none is named: $HOTDASH_OUTPUTS, else outputs/."""
    return Path(os.environ[OUTPUTS_ENV]) if os.environ.get(OUTPUTS_ENV) else OUTPUTS_DIR
