"""The plan's human calls as JupyterLab widgets: a checkbox and a note for each manual
check, and Go / No-go with a required reason for the decision; and live views of what the
section recorded (the decision, its criteria).

A panel only collects. Recording is the section's job: SectionRun hands each panel the
callbacks that write an attestation, with who and when, to results/ (attest.py), so a
tick in JupyterLab and a headless `attestations` parameter end up in the same record; a
callback that refuses (a sealed session is read-only) is said in the panel and undone.

What a panel shows as recorded is drawn from the results on disk (recorded.py) after every
change, in two places of one output: a widget inside the panel, which JupyterLab shows, and
which stays live after a page reload (the widget's state comes from the kernel again); and
the output's text/html, which viewers without widgets and the archived page show (the
archive drops widget views, see htmlexport.py), updated through a display handle while the
page that displayed it is open, and drawn again from results/ when a session is sealed.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Sequence

import ipywidgets as w

from ..decisions.attest import DECISIONS, Ledger
from ..errors import UsageError
from .recorded import output_metadata

Render = Callable[[], str]
WIDGET_VIEW = "application/vnd.jupyter.widget-view+json"
#: JupyterLab styles tables inside this class only; a widget's HTML is outside its outputs'.
_LAB_HTML = '<div class="jp-RenderedHTMLCommon">{}</div>'
_LINK_STYLE = "color: var(--jp-content-link-color); text-decoration: underline"


class Panel:
    """Controls, and below them a live view of what the results record."""

    title = ""

    def __init__(self, controls: Sequence[w.Widget], *, render: Render, view: str, section: str) -> None:
        self._render = render
        self._metadata = output_metadata(view, section)
        self.notice = w.HTML("")  # why a change was not recorded
        self.recorded = w.HTML(_LAB_HTML.format(render()))
        self.widget = w.VBox([*controls, self.notice, self.recorded])
        self._handles: list = []
        self._quiet = False  # set while a refused change is undone, so that undoing records nothing

    def summary_html(self) -> str:
        return self._render()

    def _bundle(self, summary: str) -> dict:
        view = self.widget._repr_mimebundle_()[WIDGET_VIEW]
        return {WIDGET_VIEW: view, "text/html": summary, "text/plain": f"{self.title} (open in JupyterLab)"}

    def _ipython_display_(self) -> None:
        from IPython.display import display

        handle = display(self._bundle(self.summary_html()), raw=True, metadata=self._metadata, display_id=True)
        self._handles.append(handle)

    def refresh(self) -> None:
        """Show what the results record now, in the widget and under every display of this panel."""
        summary = self.summary_html()
        self.recorded.value = _LAB_HTML.format(summary)
        for handle in self._handles:
            handle.update(self._bundle(summary), raw=True, metadata=self._metadata)

    def _repr_html_(self) -> str:
        return self.summary_html()

    def _write(self, record: Callable[[], None], undo: Callable[[], None]) -> None:
        """Record a change; when the section refuses it, say why, undo it in the widgets and lock them."""
        if self._quiet:
            return
        try:
            record()
        except UsageError as exc:
            self.notice.value = f"<p><b>Not recorded</b>: {html.escape(str(exc))}</p>"
            self._quiet = True
            try:
                undo()
                self._lock()
            finally:
                self._quiet = False
        self.refresh()

    def _lock(self) -> None:
        pending = list(self.widget.children)
        while pending:
            control = pending.pop()
            pending += getattr(control, "children", ())
            if hasattr(control, "disabled"):
                control.disabled = True


class RecordView(Panel):
    """A record of the section (the decision, its criteria) that follows every change."""

    def __init__(self, title: str, *, render: Render, view: str, section: str) -> None:
        self.title = title
        super().__init__([], render=render, view=view, section=section)


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
        url: str = "",
        render: Render,
        section: str,
        on_attest: Callable[[str, str], None],
        on_withdraw: Callable[[str], None],
    ) -> None:
        self.title, self.evidence, self.ledger = title, evidence, ledger
        self._on_attest, self._on_withdraw = on_attest, on_withdraw
        self._checkboxes: dict[str, w.Checkbox] = {}
        self._notes: dict[str, w.Text] = {}
        self._models = _SharedModels()
        cells = [cell for check in evidence for cell in self._row(check)]
        grid = w.GridBox(cells, layout=w.Layout(grid_template_columns="minmax(220px, 260px) 320px minmax(0, 1fr)"))
        heading = html.escape(title)
        if url:  # the app under test, to open in a new tab
            escaped = html.escape(url)
            link = f'<a href="{escaped}" target="_blank" rel="noopener" style="{_LINK_STYLE}">{escaped}</a>'
            heading = heading.replace(escaped, link)
        controls = [w.HTML(f"<b>{heading}</b>"), grid]
        super().__init__(controls, render=render, view="manual_checks", section=section)

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
        box.observe(lambda change: self._ticked(check, change), "value")
        note.observe(lambda change: self._noted(check, change), "value")
        self._checkboxes[check], self._notes[check] = box, note
        # HTML, not a Label: a label cuts long evidence off at the panel's edge; this wraps.
        return box, note, make(w.HTML, f"headless evidence: {html.escape(self.evidence[check])}")

    def _ticked(self, check: str, change: dict) -> None:
        box = self._checkboxes[check]
        if change["new"]:
            record = lambda: self._on_attest(check, self._notes[check].value)  # noqa: E731
        else:
            record = lambda: self._on_withdraw(check)  # noqa: E731
        self._write(record, lambda: setattr(box, "value", change["old"]))

    def _noted(self, check: str, change: dict) -> None:
        if self._checkboxes[check].value:
            note = self._notes[check]
            self._write(lambda: self._on_attest(check, note.value), lambda: setattr(note, "value", change["old"]))


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

    def __init__(self, ledger: Ledger, *, on_decide: Callable[[str, str], None], render: Render, section: str) -> None:
        self.ledger, self._on_decide = ledger, on_decide
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
        controls = [w.HTML(f"<b>{self.title}</b>"), self.choice, self.reason, self.button]
        super().__init__(controls, render=render, view="decision_panel", section=section)

    def _enable(self, _change=None) -> None:
        self.button.disabled = self.choice.disabled or not (self.choice.value and self.reason.value.strip())

    def _record(self, _button=None) -> None:
        self._write(lambda: self._on_decide(self.choice.value, self.reason.value), lambda: None)


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
