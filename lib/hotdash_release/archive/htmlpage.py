"""Building blocks of the archive's own pages (release report, index, plan).

Every page is one self-contained file: the archive stylesheet inlined, no external
script, font or image, so it opens offline, years later, copied anywhere. Text from
outside (responses of the app under test, log lines, operator input) is always
escaped: only markup built here, marked as `Html`, goes out as is.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from functools import lru_cache
from html import escape
from importlib import resources
from typing import Any


class Html(str):
    """Markup built by this package (badges, links, tables): not escaped again."""


@lru_cache(maxsize=1)
def archive_css() -> str:
    """The archive's one stylesheet, without its leading comment."""
    css = resources.files(__package__).joinpath("archive.css").read_text(encoding="utf-8")
    return css.split("*/", 1)[1].strip() if css.startswith("/*") else css


def page(title: str, body: Iterable[str], *, script: str = "") -> str:
    """A whole HTML document. `script` is inline code of ours (the index filters), never a URL."""
    tail = f"<script>{script}</script>" if script else ""
    return (
        "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
        "<meta name=viewport content='width=device-width, initial-scale=1'>"
        f"<title>{escape(title)}</title><style>{archive_css()}</style></head>\n<body>\n"
        + "\n".join(body)
        + f"\n{tail}</body></html>\n"
    )


def text(value: Any) -> str:
    """A cell value as safe HTML: markup of ours as is, everything else escaped."""
    if isinstance(value, Html):
        return value
    return escape("" if value is None else str(value))


def css_class(label: str) -> str:
    """'rolled back' -> 'rolled-back', 'not met (acceptable)' -> 'acceptable': the badge colours."""
    name = label.lower().replace(" ", "-").replace("(", "").replace(")", "")
    return "acceptable" if name.startswith("not-met") else name


def badge(label: str) -> Html:
    return Html(f'<span class="badge {escape(css_class(label))}">{escape(label.upper())}</span>')


def link(href: str, label: str) -> Html:
    return Html(f'<a href="{escape(href)}">{escape(label)}</a>')


def table(
    headers: Sequence[str],
    rows: Iterable[Sequence[Any]],
    *,
    numeric: Sequence[int] = (),
    css: str = "",
    row_attrs: Iterable[str] | None = None,
    html_id: str = "",
) -> Html:
    """A table; `numeric` columns align right; `row_attrs` adds attributes (already escaped) per row."""
    head = "".join(
        f'<th class="num">{escape(h)}</th>' if i in numeric else f"<th>{escape(h)}</th>" for i, h in enumerate(headers)
    )
    attrs = iter(row_attrs) if row_attrs is not None else None
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="num">{text(c)}</td>' if i in numeric else f"<td>{text(c)}</td>" for i, c in enumerate(row)
        )
        body.append(f"<tr{' ' + next(attrs) if attrs else ''}>{cells}</tr>")
    attributes = (f' id="{escape(html_id)}"' if html_id else "") + (f' class="{escape(css)}"' if css else "")
    return Html(f"<table{attributes}><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>")


def facts(rows: Iterable[tuple[str, Any]]) -> Html:
    """A two-column table of labelled facts."""
    cells = "".join(f"<tr><th>{escape(k)}</th><td>{text(v)}</td></tr>" for k, v in rows)
    return Html(f"<table>{cells}</table>")


def seconds(value: float | None) -> str:
    """12.3 s, 4 min 05 s, 2 h 03 min: durations as an auditor reads them."""
    if value is None:
        return ""
    if value < 60:
        return f"{value:.1f} s"
    minutes, secs = divmod(round(value), 60)
    if minutes < 60:
        return f"{minutes} min {secs:02d} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours / 24:.1f} days"
