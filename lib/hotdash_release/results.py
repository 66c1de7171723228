"""Section results on disk: the values each runbook records and the runner, the gates
and the report read back. One JSON file per section under <release dir>/results/."""

from __future__ import annotations

import getpass
import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path

RESULTS_DIR = "results"


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


OPERATOR_ENV = "HOTDASH_OPERATOR"
_OPERATOR = re.compile(r"[\w.@+ \[\]-]{1,64}")


def check_operator(name: str, field: str = "--operator") -> str:
    """A person's name as records show it: one line of letters, digits, space and . @ + - _ [ ]."""
    from .errors import UsageError

    if not _OPERATOR.fullmatch(name):
        raise UsageError(f"{field}: use letters, digits, space and . @ + - _ [ ] (at most 64)")
    return name


def default_operator() -> str:
    """Who runs a release or a section when nobody said: $HOTDASH_OPERATOR (checked like
    --operator), else the login name."""
    if os.environ.get(OPERATOR_ENV):
        return check_operator(os.environ[OPERATOR_ENV], OPERATOR_ENV)
    return getpass.getuser()


def results_path(release_dir: Path, section_key: str) -> Path:
    return Path(release_dir) / RESULTS_DIR / f"{section_key}.json"


def write_json_atomic(path: Path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, sort_keys=True, default=str) + "\n", encoding="utf-8")
    os.replace(tmp, path)


def read_section_result(release_dir: Path, section_key: str) -> dict | None:
    path = results_path(release_dir, section_key)
    if not path.is_file():
        return None
    return json.loads(path.read_text(encoding="utf-8"))


def read_all_results(release_dir: Path) -> dict[str, dict]:
    folder = Path(release_dir) / RESULTS_DIR
    if not folder.is_dir():
        return {}
    return {p.stem: json.loads(p.read_text(encoding="utf-8")) for p in sorted(folder.glob("*.json"))}
