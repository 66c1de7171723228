"""Where the project keeps things. The package is installed editable from the repository,
so the runbooks and the archive root are found next to it."""

from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]
RUNBOOKS_DIR = PROJECT_ROOT / "runbooks"
OUTPUTS_DIR = PROJECT_ROOT / "outputs"
DEFAULT_CONFIG = RUNBOOKS_DIR / "hotdash.toml"
