"""The plan's human calls as JupyterLab widgets: a checkbox and a note for each manual
check, and Go / No-go with a required reason for the decision.

A panel only collects. Recording is the section's job: SectionRun hands each panel the
callbacks that write an attestation, with who and when, to results/ (attest.py), so a
tick in JupyterLab and a headless `attestations` parameter end up in the same record.

Each panel is displayed as two outputs: the widgets, and below them an HTML table of what
is recorded (who, when, the note), updated in place through a display handle after every
change. In JupyterLab the table confirms each tick; a headless run, the archived notebook
page (which drops widget views, see htmlexport.py) and any viewer without a widget manager
show the table. So a saved notebook never shows less than the record says. Only the
table is redrawn: the widgets keep their place and focus.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence

import ipywidgets as w

from ..decisions.attest import DECISIONS, Attestation, Ledger
from ..tables import html_table

Summary = Callable[[], str]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"


class Panel:
    """Widgets, and below them a live HTML table of what is recorded."""

    title = ""

    def __init__(self, widget: w.Widget) -> None:
        self.widget = widget
        self._handles: list = []

    def summary_html(self) -> str:
        raise NotImplementedError

    def _ipython_display_(self) -> None:
        from IPython.display import HTML, display

        view = self.widget._repr_mimebundle_()[WIDGET_VIEW]
        display({WIDGET_VIEW: view, "text/plain": f"{self.title} (widgets: open the notebook in JupyterLab)"}, raw=True)
        self._handles.append(display(HTML(self.summary_html()), display_id=True))

    def refresh(self) -> None:
        """Show the current record under every display of this panel."""
        from IPython.display import HTML

        for handle in self._handles:
            handle.update(HTML(self.summary_html()))

    def _repr_html_(self) -> str:
        return self.summary_html()


class ManualChecksPanel(Panel):
    """One row per manual check: a checkbox that attests it, a note, the headless evidence.

    Ticking records an attestation; unticking withdraws it; editing the note of a ticked
    check records it again with the new note. Attestations given as parameters are shown
    ticked and cannot be withdrawn here.
    """

    def __init__(
        self,
        title: str,
        evidence: dict[str, str],
        ledger: Ledger,
        *,
        on_attest: Callable[[str, str], None],
        on_withdraw: Callable[[str], None],
    ) -> None:
        self.title, self.evidence, self.ledger = title, evidence, ledger
        self._on_attest, self._on_withdraw = on_attest, on_withdraw
        self._checkboxes: dict[str, w.Checkbox] = {}
        self._notes: dict[str, w.Text] = {}
        self._models = _SharedModels()
        cells = [cell for check in evidence for cell in self._row(check)]
        grid = w.GridBox(cells, layout=w.Layout(grid_template_columns="260px 320px auto"))
        super().__init__(w.VBox([w.HTML(f"<b>{html.escape(title)}</b>"), grid]))

    def checkbox(self, check: str) -> w.Checkbox:
        return self._checkboxes[check]

    def note(self, check: str) -> w.Text:
        return self._notes[check]

    def _row(self, check: str) -> tuple[w.Widget, ...]:
        """Checkbox, note and evidence: one row of the panel's grid."""
        given = self.ledger.get(check)
        locked = given is not None and given.source == "parameter"
        make = self._models.widget
        box = make(w.Checkbox, value=given is not None, description=check, indent=False, disabled=locked)
        note = make(
            w.Text,
            value=given.note if given else "",
            placeholder="note: what you saw",
            continuous_update=False,
            disabled=locked,
        )
        box.observe(lambda change: self._ticked(check, change["new"]), "value")
        note.observe(lambda change: self._noted(check), "value")
        self._checkboxes[check], self._notes[check] = box, note
        return box, note, make(w.Label, f"headless evidence: {self.evidence[check]}")

    def _ticked(self, check: str, ticked: bool) -> None:
        if ticked:
            self._on_attest(check, self._notes[check].value)
        else:
            self._on_withdraw(check)
        self.refresh()

    def _noted(self, check: str) -> None:
        if self._checkboxes[check].value:
            self._on_attest(check, self._notes[check].value)
            self.refresh()

    def summary_html(self) -> str:
        rows = [
            {"manual check": check, "headless evidence": evidence, **_attested_columns(self.ledger.get(check))}
            for check, evidence in self.evidence.items()
        ]
        missing = self.ledger.missing()
        verdict = (
            "all attested"
            if not missing
            else "none attested yet"
            if len(missing) == len(self.evidence)
            else f"{len(missing)} of {len(self.evidence)} not attested yet"
        )
        return f"<p><b>Recorded</b> ({html.escape(self.title)}): {verdict}</p>" + html_table(rows)


class _SharedModels:
    """One layout for all the widgets of a panel, and one style per kind of widget. Each is a
    model of its own otherwise: a message to the front end and an entry in the notebook's
    widget state, three per widget. These are never changed, so sharing them shows the same."""

    def __init__(self) -> None:
        self.layout = w.Layout()
        self._styles: dict[type, w.Widget] = {}

    def widget(self, kind: type, *args, **kwargs) -> w.Widget:
        if kind in self._styles:
            kwargs["style"] = self._styles[kind]
        made = kind(*args, layout=self.layout, **kwargs)
        self._styles.setdefault(kind, made.style)
        return made


class DecisionPanel(Panel):
    """Go / No-go and a reason; "Record decision" stays disabled until both are given."""

    title = "Go/No-Go decision attested by a person"

    def __init__(self, ledger: Ledger, *, on_decide: Callable[[str, str], None], outcome: Summary) -> None:
        self.ledger, self._on_decide, self._outcome = ledger, on_decide, outcome
        given = ledger.decision
        locked = given is not None and given.source == "parameter"
        self.choice = w.ToggleButtons(
            options=DECISIONS, value=given.check if given else None, description="Decision", disabled=locked
        )
        self.reason = w.Textarea(
            value=given.note if given else "",
            placeholder="reason (required)",
            description="Reason",
            disabled=locked,
            layout=w.Layout(width="560px"),
        )
        self.button = w.Button(description="Record decision", button_style="primary", disabled=True)
        self.choice.observe(self._enable, "value")
        self.reason.observe(self._enable, "value")
        self.button.on_click(self._record)
        super().__init__(w.VBox([w.HTML(f"<b>{self.title}</b>"), self.choice, self.reason, self.button]))

    def _enable(self, _change=None) -> None:
        self.button.disabled = self.choice.disabled or not (self.choice.value and self.reason.value.strip())

    def _record(self, _button=None) -> None:
        self._on_decide(self.choice.value, self.reason.value)
        self.refresh()

    def summary_html(self) -> str:
        given = self.ledger.decision
        rows = [{"decision": given.check if given else "none recorded", **_attested_columns(given)}]
        return (
            f"<p><b>Recorded</b> ({html.escape(self.title)})</p>"
            + html_table(rows)
            + f"<p>{html.escape(self._outcome())}</p>"
        )


def _attested_columns(attestation: Attestation | None) -> dict:
    if attestation is None:
        return {"attested by": "", "at": "", "note": "", "source": "not attested"}
    return {"attested by": attestation.by, "at": attestation.at, "note": attestation.note, "source": attestation.source}


def evidence_by_check(
    manual_checks: Sequence[str], smoke_rows: Sequence[dict], descriptions: dict[str, str]
) -> dict[str, str]:
    """For each manual check, the headless smoke checks that stand for it and how they did.

    A smoke check stands for a manual check when its description starts with the manual
    check's name and a colon ("Check dashboard loads: /app serves App Bridge ...").
    """
    outcome = {row.get("name"): ("passed" if row.get("ok") else "failed") for row in smoke_rows}
    evidence = {}
    for check in manual_checks:
        names = [name for name, text in descriptions.items() if text.startswith(f"{check}:")]
        evidence[check] = "; ".join(f"{name} ({outcome.get(name, 'not run')})" for name in names) or "none headless"
    return evidence
