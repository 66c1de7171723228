"""Results shown as pandas tables, in JupyterLab and in the archived HTML alike.

pandas escapes cell text, so whatever an app under test answers (HTML, script) is
shown as inert text. pandas is imported when a table is drawn: the runner and the CLI
import this module without needing it.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable

if TYPE_CHECKING:
    import pandas as pd


def as_rows(values: Iterable[Any]) -> list[dict]:
    return [v.as_row() if hasattr(v, "as_row") else dict(v) for v in values]


@dataclass(frozen=True)
class ResultTable:
    """A list of result records that renders as one table and knows whether all passed."""

    title: str
    rows: tuple[dict, ...]
    ok: bool

    @classmethod
    def of(cls, title: str, values: Iterable[Any], ok: bool | None = None) -> "ResultTable":
        values = list(values)
        if ok is None:
            ok = all(getattr(v, "ok", True) for v in values)
        return cls(title, tuple(as_rows(values)), ok)

    def frame(self) -> pd.DataFrame:
        import pandas as pd

        return pd.DataFrame(list(self.rows))

    def _repr_html_(self) -> str:
        verdict = "all passed" if self.ok else "FAILED"
        return f"<p><b>{html.escape(self.title)}</b>: {verdict}</p>" + self.frame().to_html(index=False, escape=True)

    def __repr__(self) -> str:
        return f"{self.title} ({'all passed' if self.ok else 'FAILED'})\n{self.frame().to_string(index=False)}"


def record_frame(record: Any) -> pd.DataFrame:
    """One record as a two-column table (field, value): easier to read than one wide row."""
    import pandas as pd

    row = record.as_row() if hasattr(record, "as_row") else dict(record)
    return pd.DataFrame({"field": list(row), "value": [_cell(v) for v in row.values()]})


class ShowsAsRecord:
    """Mixin for result dataclasses: render as a field/value table in notebooks."""

    def _repr_html_(self) -> str:
        return record_frame(self).to_html(index=False, escape=True)


def _cell(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "\n".join(map(str, value))
    return "" if value is None else str(value)
