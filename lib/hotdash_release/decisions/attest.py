"""Attestations: what a person confirms that no headless check can, with who and when.

The plan asks people for two kinds of call: its manual smoke test steps ("Check dashboard
loads", ...) and the go/no-go decision itself. They reach a runbook two ways and are
recorded alike, under "attestations" in the section's results:

- in JupyterLab, ticked in a widget (widgets.py): source "widget", by the section's
  operator, at the moment of the tick;
- headless, as the runbook's `attestations` parameter, a list of {"check", "by", "at",
  "note"} dicts: source "parameter". `runbook release --attest ENV:CHECK[:NOTE]` builds
  them (by = the operator, at = now) and the runner passes each section its own.

Go/no-go criteria measure them (`staging_manual_checks_attested`,
`go_no_go_decision_attested`), so a gate that requires an attestation is not met without
one, whichever way the run was made. A person's No-go stops the release (gonogo.py).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime

from ..errors import UsageError
from ..results import utc_now
from ..tables import ShowsAsRecord

GO, NO_GO = "Go", "No-go"
#: The go/no-go section attests a decision, one of these; its note is the required reason.
DECISIONS = (GO, NO_GO)
#: `--attest SCOPE:...` -> the section that receives the attestation.
SCOPES = {"staging": "staging_smoke", "production": "production_smoke", "go_no_go": "go_no_go"}
SMOKE_SECTIONS = ("staging_smoke", "production_smoke")
#: Sections whose runbook takes an `attestations` parameter.
ATTESTABLE = tuple(SCOPES.values())
SOURCES = ("widget", "parameter")

_PARAMETER_KEYS = ("check", "by", "at", "note")
_PERSON = re.compile(r"[\w.@+ \[\]-]{1,64}\Z")
NOTE_MAX_CHARS = 500


@dataclass(frozen=True)
class Attestation(ShowsAsRecord):
    """One thing a person confirmed: the check, who, when, what they saw, and how it was given."""

    check: str
    by: str
    at: str
    note: str = ""
    source: str = "parameter"  # widget | parameter

    @property
    def is_decision(self) -> bool:
        return self.check in DECISIONS

    def as_row(self) -> dict:
        return asdict(self)

    def describe(self) -> str:
        return f"{self.check} by {self.by} at {self.at}" + (f": {self.note}" if self.note else "")


class Ledger:
    """One section's attestations as they stand: one per check, a newer one replacing the
    older; one decision, a newer Go or No-go replacing the earlier one."""

    def __init__(self, required: Sequence[str] = ()) -> None:
        self.required = tuple(required)
        self._by_check: dict[str, Attestation] = {}

    def add(self, attestation: Attestation) -> None:
        key = "decision" if attestation.is_decision else attestation.check
        self._by_check[key] = attestation

    def withdraw(self, check: str) -> None:
        self._by_check.pop(check, None)

    def get(self, check: str) -> Attestation | None:
        return self._by_check.get(check)

    @property
    def decision(self) -> Attestation | None:
        return self._by_check.get("decision")

    def missing(self) -> list[str]:
        """Required checks nobody attested yet."""
        return [check for check in self.required if check not in self._by_check]

    def rows(self) -> list[dict]:
        return [a.as_row() for a in self._by_check.values()]


def checks_for(section_key: str, manual_checks: Sequence[str]) -> tuple[str, ...]:
    """What can be attested in a section: the manual checks in a smoke test, a decision at go/no-go."""
    if section_key == "go_no_go":
        return DECISIONS
    if section_key in SMOKE_SECTIONS:
        return tuple(manual_checks)
    return ()


def required_for(section_key: str, manual_checks: Sequence[str]) -> tuple[str, ...]:
    """What a section's measure needs attested: every manual check of a smoke test."""
    return tuple(manual_checks) if section_key in SMOKE_SECTIONS else ()


def measures_for(section_key: str, environment: str | None, ledger: Ledger) -> dict:
    """The go/no-go measures a section's attestations give."""
    if section_key in SMOKE_SECTIONS:
        return {f"{environment}_manual_checks_attested": not ledger.missing()}
    if section_key == "go_no_go":
        return {"go_no_go_decision_attested": ledger.decision is not None}
    return {}


def from_parameters(items: Iterable, *, section_key: str, manual_checks: Sequence[str]) -> list[Attestation]:
    """The runbook's `attestations` parameter, validated: a typo must not pass as an attestation."""
    items = list(items or [])
    allowed = checks_for(section_key, manual_checks)
    if items and not allowed:
        raise UsageError(f"attestations: section {section_key!r} takes none")
    return [_from_parameter(item, f"attestations[{i}]", allowed) for i, item in enumerate(items)]


def _from_parameter(item, key: str, allowed: Sequence[str]) -> Attestation:
    if not isinstance(item, Mapping):
        raise UsageError(f"{key}: expected a dict with {', '.join(_PARAMETER_KEYS)}, got {type(item).__name__}")
    unknown = sorted(set(item) - set(_PARAMETER_KEYS))
    if unknown:
        raise UsageError(f"{key}: unknown key {unknown[0]!r}; allowed: {', '.join(_PARAMETER_KEYS)}")
    check = canonical_check(_text(item, "check", key), allowed, key=f"{key}.check")
    by = check_person(_text(item, "by", key), key=f"{key}.by")
    at = _text(item, "at", key)
    _require_time(at, f"{key}.at")
    note = item.get("note", "")
    if not isinstance(note, str) or len(note) > NOTE_MAX_CHARS:
        raise UsageError(f"{key}.note: expected text of at most {NOTE_MAX_CHARS} characters")
    attestation = Attestation(check, by, at, note.strip(), "parameter")
    require_reason(attestation, key=key)
    return attestation


def check_person(name: str, *, key: str) -> str:
    """Who attests: a name as an operator is given (letters, digits, space and . @ + - _ [ ])."""
    if not _PERSON.match(name):
        raise UsageError(f"{key}: {name!r} is not a name (letters, digits, space and . @ + - _ [ ], at most 64)")
    return name


def _text(item: Mapping, name: str, key: str) -> str:
    value = item.get(name)
    if not isinstance(value, str) or not value.strip():
        raise UsageError(f"{key}.{name}: missing; expected non-empty text")
    return value.strip()


def _require_time(value: str, key: str) -> None:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise UsageError(f"{key}: {value!r} is not an ISO 8601 time like 2026-11-25T19:05:12Z") from None
    if parsed.tzinfo is None:
        raise UsageError(f"{key}: {value!r} has no time zone (end it with Z for UTC)")


def canonical_check(check: str, allowed: Sequence[str], *, key: str) -> str:
    """The allowed spelling of a check, matched without regard to case."""
    for name in allowed:
        if name.casefold() == check.strip().casefold():
            return name
    raise UsageError(f"{key}: {check!r} is not one of: {', '.join(allowed)}")


def require_reason(attestation: Attestation, *, key: str = "decision") -> None:
    """A Go or No-go says why."""
    if attestation.is_decision and not attestation.note:
        raise UsageError(f"{key}: a {attestation.check} decision needs a reason (the note)")


# -- headless: `runbook release --attest` ------------------------------------------------------------


def parse_attest_flags(specs: Sequence[str], *, operator: str, at: str | None = None) -> dict[str, list[dict]]:
    """`--attest "staging:Check dashboard loads"` -> {"staging_smoke": [{"check", "by", "at", "note"}]}.

    SCOPE is staging, production or go_no_go; NOTE (after a second colon) is free text and
    required for a go_no_go decision: `--attest "go_no_go:Go:staging verified by hand"`.
    Manual check names are checked against the configuration by `check_release_attestations`.
    """
    at = at or utc_now()
    by_section: dict[str, list[dict]] = {}
    for spec in specs:
        scope, _, rest = spec.partition(":")
        check, _, note = rest.partition(":")
        if scope not in SCOPES or not check.strip():
            raise UsageError(f"--attest: {spec!r} is not SCOPE:CHECK[:NOTE]; scopes: {', '.join(SCOPES)}")
        section_key = SCOPES[scope]
        if section_key == "go_no_go":
            check = canonical_check(check, DECISIONS, key="--attest go_no_go")
            if not note.strip():
                raise UsageError(f"--attest: {spec!r}: a {check} decision needs a reason: go_no_go:{check}:REASON")
        by_section.setdefault(section_key, []).append(
            {"check": check.strip(), "by": operator, "at": at, "note": note.strip()}
        )
    return by_section


def check_release_attestations(by_section: Mapping[str, list[dict]], manual_checks: Sequence[str]) -> None:
    """Every attestation given for a release, validated before the first section runs."""
    for section_key, items in by_section.items():
        if section_key not in ATTESTABLE:
            raise UsageError(f"--attest: section {section_key!r} takes no attestations")
        try:
            from_parameters(items, section_key=section_key, manual_checks=manual_checks)
        except UsageError as exc:
            raise UsageError(f"--attest ({section_key}): {exc}") from None


def section_parameters(section_key: str, by_section: Mapping[str, list[dict]] | None) -> dict:
    """The papermill parameters that carry a section's attestations ({} for sections without any)."""
    if section_key not in ATTESTABLE:
        return {}
    return {"attestations": list((by_section or {}).get(section_key, []))}


__all__ = [
    "ATTESTABLE",
    "DECISIONS",
    "GO",
    "NO_GO",
    "SCOPES",
    "Attestation",
    "Ledger",
    "check_person",
    "check_release_attestations",
    "checks_for",
    "from_parameters",
    "measures_for",
    "parse_attest_flags",
    "require_reason",
    "required_for",
    "section_parameters",
]
