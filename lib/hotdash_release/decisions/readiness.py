"""Workstream readiness: the plan's "15/17 agents complete" table, read from a CSV file."""

from __future__ import annotations

import csv
from dataclasses import asdict, dataclass
from pathlib import Path

from ..errors import ConfigError

STATUSES = ("complete", "in progress", "not started")
_COLUMNS = ("workstream", "last_task", "status", "progress", "blocking")


@dataclass(frozen=True)
class Workstream:
    workstream: str
    last_task: str
    status: str
    progress: int
    blocking: bool

    def as_row(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Readiness:
    workstreams: tuple[Workstream, ...]

    @property
    def complete(self) -> int:
        return sum(w.status == "complete" for w in self.workstreams)

    @property
    def in_progress(self) -> int:
        return len(self.workstreams) - self.complete

    @property
    def blocking_in_progress(self) -> int:
        return sum(w.status != "complete" and w.blocking for w in self.workstreams)

    @property
    def complete_ratio(self) -> float:
        return self.complete / len(self.workstreams)

    def summary(self) -> str:
        return (
            f"{self.complete}/{len(self.workstreams)} workstreams complete "
            f"({self.complete_ratio:.0%}); {self.blocking_in_progress} blocking still in progress"
        )

    def measures(self) -> dict:
        return {
            "workstreams_complete_ratio": round(self.complete_ratio, 4),
            "workstreams_in_progress": self.in_progress,
            "blocking_workstreams_in_progress": self.blocking_in_progress,
        }


def read_readiness(path: str | Path) -> Readiness:
    """Parse the readiness CSV; a bad row is a ConfigError naming file, row and column."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError("release.readiness_file", f"file {path} does not exist")
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        missing = [c for c in _COLUMNS if c not in (reader.fieldnames or [])]
        if missing:
            raise ConfigError("release.readiness_file", f"{path.name} lacks columns: {', '.join(missing)}")
        rows = [_workstream(row, line, path) for line, row in enumerate(reader, start=2)]
    if not rows:
        raise ConfigError("release.readiness_file", f"{path.name} lists no workstream")
    return Readiness(tuple(rows))


def _workstream(row: dict, line: int, path: Path) -> Workstream:
    def bad(column: str, allowed: str) -> ConfigError:
        return ConfigError(f"{path.name}:{line}:{column}", f"{row.get(column)!r} is not allowed; allowed: {allowed}")

    status = (row["status"] or "").strip().lower()
    if status not in STATUSES:
        raise bad("status", ", ".join(STATUSES))
    try:
        progress = int(row["progress"])
    except (TypeError, ValueError):
        raise bad("progress", "an integer 0-100") from None
    if not 0 <= progress <= 100:
        raise bad("progress", "an integer 0-100")
    blocking = (row["blocking"] or "").strip().lower()
    if blocking not in ("yes", "no"):
        raise bad("blocking", "yes, no")
    return Workstream(row["workstream"].strip(), row["last_task"].strip(), status, progress, blocking == "yes")
