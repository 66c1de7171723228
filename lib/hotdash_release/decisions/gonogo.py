"""The go/no-go decision: measures taken from the sections already run, judged by the
configured criteria. A blocking miss is a no-go; an acceptable miss is recorded as
"not met (but acceptable)", in the plan's words. A measure whose section was skipped on
purpose (skip_staging_check) is an override: recorded with its reason and who gave it.

The criteria decide; a person may only make the answer stricter: their attested No-go
stops the release whatever the criteria say, and their Go cannot lift a blocking miss."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from typing import Any

from ..config import Criterion
from ..tables import ShowsAsRecord
from .attest import NO_GO, Attestation


@dataclass(frozen=True)
class CriterionResult:
    criterion: str
    measured: Any
    threshold: str
    verdict: str  # met | not met (acceptable) | blocking | overridden
    source: str
    override: str = ""

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


@dataclass(frozen=True)
class Measurement:
    value: Any
    source: str  # the section that measured it
    override: str = ""  # why it was not measured, and who decided so


def collect_measures(results: Mapping[str, dict]) -> dict[str, Measurement]:
    """Every measure the sections recorded, with the section it came from."""
    measures: dict[str, Measurement] = {}
    for key, result in results.items():
        override = result.get("override") or {}
        note = f"skipped by {override.get('by')}: {override.get('reason')}" if override else ""
        for name, value in (result.get("measures") or {}).items():
            measures[name] = Measurement(value, key, note)
    return measures


def decide(criteria: Sequence[Criterion], measures: Mapping[str, Measurement]) -> Decision:
    rows = []
    for criterion in criteria:
        measured = measures.get(criterion.measure, Measurement(None, "not measured"))
        if measured.override:
            verdict = "overridden"
        elif criterion.is_met(measured.value):
            verdict = "met"
        elif criterion.when_not_met == "acceptable":
            verdict = "not met (acceptable)"
        else:
            verdict = "blocking"
        rows.append(
            CriterionResult(
                criterion.name, measured.value, criterion.threshold_text(), verdict, measured.source, measured.override
            )
        )
    blocking = [r.criterion for r in rows if r.verdict == "blocking"]
    accepted = [r.criterion for r in rows if r.verdict in ("not met (acceptable)", "overridden")]
    if blocking:
        explanation = "NO-GO: blocking criteria not met: " + "; ".join(blocking)
    else:
        # Counted from the criteria as configured (one source): the met ones that would have blocked.
        met = sum(1 for c, r in zip(criteria, rows, strict=True) if c.when_not_met == "blocking" and r.verdict == "met")
        explanation = f"GO: all {met} blocking criteria met"
        if accepted:
            explanation += "; not met but acceptable: " + "; ".join(accepted)
    return Decision(not blocking, tuple(rows), explanation)


#: The measure of a person's go/no-go call (attest.measures_for).
DECISION_MEASURE = "go_no_go_decision_attested"


def person_required(criteria: Sequence[Criterion]) -> tuple[Criterion, ...]:
    """The criteria where a person is present to decide (a `runbook lab` session): the call is
    blocking there whatever the configuration says for headless runs."""
    return tuple(replace(c, when_not_met="blocking") if c.measure == DECISION_MEASURE else c for c in criteria)


def with_person_decision(decision: Decision, attestation: Attestation | None) -> Decision:
    """The decision once a person's attested Go or No-go is taken into account."""
    if attestation is None:
        return decision
    if attestation.check == NO_GO:
        return Decision(False, decision.criteria, f"NO-GO: {attestation.describe()}")
    if decision.go:
        return Decision(True, decision.criteria, f"{decision.explanation}; {attestation.describe()}")
    return Decision(
        False,
        decision.criteria,
        f"{decision.explanation} ({attestation.describe()}, but blocking criteria are not met)",
    )
