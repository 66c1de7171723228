"""Results shown as tables, in JupyterLab and in the archived HTML alike.

Tables are written here rather than through pandas: a result is displayed in every cell
of every section, and pandas takes 2-4 ms for each (more on the first in a fresh kernel)
where this takes a tenth of one. The markup is what pandas writes (`class="dataframe"`,
so JupyterLab and the archive style both alike), every cell escaped, so whatever an app
under test answers (HTML, script) is shown as inert text. `frame()` still gives pandas
tables for working with the data; pandas is imported only then (a section never needs it,
nor does the kernel template import it: 0.4 s).
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pandas as pd


_URL = re.compile(r"https?://[^\s<>\"']+")


def pandas():
    """pandas, imported on first use, showing cell text whole (log lines, image refs) instead of
    cutting it at 50 characters."""
    import pandas as pd

    pd.set_option("display.max_colwidth", None)
    return pd


def as_rows(values: Iterable[Any]) -> list[dict]:
    return [v.as_row() if hasattr(v, "as_row") else dict(v) for v in values]


def columns_of(rows: Sequence[Mapping]) -> list[str]:
    """Every key of every row, in the order first seen (as pandas orders a list of dicts)."""
    return list(dict.fromkeys(key for row in rows for key in row))


def cell_text(value: Any) -> str:
    """A value as a table shows it: lists one item per line, nothing for None, short floats."""
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    if isinstance(value, (list, tuple)):
        return "\n".join(map(str, value))
    return str(value)


#: JupyterLab right-aligns table cells and lays tables out fixed and centred, so that long values
#: (image refs, digests, URLs) are cut at the output's edge: text reads left-aligned, keeps its
#: line breaks (a message) and wraps within the output, a word of a narrow column kept whole.
#: A style element, as pandas puts before its tables; the archive drops it and styles its
#: tables itself (archive.css).
TABLE_STYLE = (
    "<style>.jp-RenderedHTMLCommon table.dataframe {table-layout: auto; margin-left: 0; max-width: 100%}"
    " .jp-RenderedHTMLCommon table.dataframe td, .jp-RenderedHTMLCommon table.dataframe th"
    " {text-align: left; vertical-align: top; white-space: pre-wrap; overflow-wrap: anywhere; min-width: 5em}"
    " .jp-RenderedHTMLCommon table.dataframe th {overflow-wrap: normal; white-space: nowrap}</style>"
)


def html_table(rows: Sequence[Mapping]) -> str:
    """Rows as an HTML table, every header and cell escaped; a cell that is a web address is a link."""
    columns = columns_of(rows)
    head = "".join(f"<th>{html.escape(str(column))}</th>" for column in columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{link_html(cell_text(row.get(column)))}</td>" for column in columns) + "</tr>"
        for row in rows
    )
    return (
        f'{TABLE_STYLE}<table border="1" class="dataframe"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'
    )


def link_html(text: str) -> str:
    """Escaped text, a link when the whole of it is an http(s) address (the app under test's URL)."""
    escaped = html.escape(text)
    if _URL.fullmatch(text):
        return f'<a href="{escaped}" target="_blank" rel="noopener noreferrer">{escaped}</a>'
    return escaped


def text_table(rows: Sequence[Mapping]) -> str:
    """Rows as aligned plain text (what a terminal or a text-only reader shows)."""
    columns = columns_of(rows)
    cells = [[cell_text(row.get(column)).replace("\n", "; ") for column in columns] for row in rows]
    widths = [max([len(str(column))] + [len(line[i]) for line in cells]) for i, column in enumerate(columns)]
    lines = [[str(column) for column in columns], *cells]
    return "\n".join(
        "  ".join(text.ljust(width) for text, width in zip(line, widths, strict=False)).rstrip() for line in lines
    )


def record_rows(record: Any) -> list[dict]:
    """One record as two columns (field, value): easier to read than one wide row."""
    row = record.as_row() if hasattr(record, "as_row") else dict(record)
    return [{"field": field, "value": cell_text(value)} for field, value in row.items()]


@dataclass(frozen=True)
class Table:
    """Rows to show as a table under a title; `frame()` for working with them in pandas."""

    title: str
    rows: tuple[dict, ...]

    @classmethod
    def of(cls, title: str, values: Iterable[Any]) -> Table:
        return cls(title, tuple(as_rows(values)))

    def frame(self) -> pd.DataFrame:
        return pandas().DataFrame(list(self.rows))

    def __len__(self) -> int:
        return len(self.rows)

    def _repr_html_(self) -> str:
        return f"<p><b>{html.escape(self.title)}</b></p>" + html_table(self.rows)

    def __repr__(self) -> str:
        return f"{self.title}\n{text_table(self.rows)}"


@dataclass(frozen=True)
class ResultTable:
    """A list of result records that renders as one table and knows whether all passed."""

    title: str
    rows: tuple[dict, ...]
    ok: bool

    @classmethod
    def of(cls, title: str, values: Iterable[Any], ok: bool | None = None) -> ResultTable:
        values = list(values)
        if ok is None:
            ok = all(getattr(v, "ok", True) for v in values)
        return cls(title, tuple(as_rows(values)), ok)

    @property
    def verdict(self) -> str:
        return "all passed" if self.ok else "FAILED"

    def frame(self) -> pd.DataFrame:
        return pandas().DataFrame(list(self.rows))

    def _repr_html_(self) -> str:
        return f"<p><b>{html.escape(self.title)}</b>: {self.verdict}</p>" + html_table(self.rows)

    def __repr__(self) -> str:
        return f"{self.title} ({self.verdict})\n{text_table(self.rows)}"


def record_frame(record: Any) -> pd.DataFrame:
    """One record as a two-column pandas table (field, value)."""
    return pandas().DataFrame(record_rows(record))


class Message(str):
    """A sentence a cell shows as itself, not as a quoted Python string."""

    def __repr__(self) -> str:
        return str(self)

    def _repr_html_(self) -> str:
        return f"<p><b>{html.escape(self)}</b></p>"


class ShowsAsRecord:
    """Mixin for result dataclasses: render as a field/value table in notebooks."""

    def _repr_html_(self) -> str:
        return html_table(record_rows(self))
