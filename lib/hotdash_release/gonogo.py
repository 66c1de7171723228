"""The go/no-go decision: measures taken from the sections already run, judged by the
configured criteria. A blocking miss is a no-go; an acceptable miss is recorded as
"not met (but acceptable)", in the plan's words."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

from .config import Criterion
from .tables import ShowsAsRecord


@dataclass(frozen=True)
class CriterionResult:
    criterion: str
    measured: Any
    threshold: str
    verdict: str  # met | not met (acceptable) | blocking
    source: str

    @property
    def ok(self) -> bool:
        return self.verdict != "blocking"

    def as_row(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Decision(ShowsAsRecord):
    go: bool
    criteria: tuple[CriterionResult, ...]
    explanation: str

    @property
    def ok(self) -> bool:
        return self.go

    def as_row(self) -> dict:
        return {"decision": "GO" if self.go else "NO-GO", "explanation": self.explanation}


def collect_measures(results: Mapping[str, dict]) -> dict[str, tuple[Any, str]]:
    """Every measure the sections recorded, with the section it came from."""
    measures: dict[str, tuple[Any, str]] = {}
    for key, result in results.items():
        for name, value in (result.get("measures") or {}).items():
            measures[name] = (value, key)
    return measures


def decide(criteria: Sequence[Criterion], measures: Mapping[str, tuple[Any, str]]) -> Decision:
    rows = []
    for criterion in criteria:
        value, source = measures.get(criterion.measure, (None, "not measured"))
        if criterion.is_met(value):
            verdict = "met"
        elif criterion.when_not_met == "acceptable":
            verdict = "not met (acceptable)"
        else:
            verdict = "blocking"
        rows.append(CriterionResult(criterion.name, value, criterion.threshold_text(), verdict, source))
    blocking = [r.criterion for r in rows if r.verdict == "blocking"]
    accepted = [r.criterion for r in rows if r.verdict == "not met (acceptable)"]
    if blocking:
        explanation = "NO-GO: blocking criteria not met: " + "; ".join(blocking)
    else:
        explanation = f"GO: all {len(rows) - len(accepted)} blocking criteria met"
        if accepted:
            explanation += "; not met but acceptable: " + "; ".join(accepted)
    return Decision(not blocking, tuple(rows), explanation)
