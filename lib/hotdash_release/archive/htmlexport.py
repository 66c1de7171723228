"""Executed notebooks as archive pages that stand alone and cannot run anything.

nbconvert's default (lab) page inlines about 280 KB of JupyterLab CSS into every file,
loads require.js and MathJax from a CDN, and keeps HTML and JavaScript outputs live.
An audit archive needs the opposite: pages that open offline, years later, make no
network request, and show whatever the app under test answered (HTML, script, image
tags in bodies, headers and log lines) as inert text. So the archive page is:

- nbconvert's lab cell markup under a head of our own (templates/archive_notebook.html.j2):
  the small archive stylesheet inlined, no script of any kind;
- code inputs folded into <details> (the injected parameters open), outputs in view;
- every HTML fragment (markdown cells, text/html outputs, raw cells) cleaned by one
  policy, `clean_html`: table markup survives so pandas tables stay intact; anything
  else, <script> and <img onerror> included, is escaped to visible text; <style>
  elements and style attributes go, since CSS can fetch URLs;
- output types that exist to run code (JavaScript, widget views) dropped before rendering.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

#: The worker's nice value above the runner's: pages can wait, a running section should not.
NICENESS = 10

if __name__ == "__main__":
    # The export worker (archive.ExportWorker), before its imports (nbconvert, bleach: about
    # 0.4 s of CPU) rather than after: `runbook release` starts it beside the kernel template,
    # whose imports the first section waits for.
    os.nice(NICENESS)

import bleach
from nbconvert.preprocessors import Preprocessor

from ..plan import ALL_SECTIONS
from .htmlpage import archive_css

TEMPLATES_DIR = Path(__file__).parent / "templates"
TEMPLATE_FILE = "archive_notebook.html.j2"

#: Output types rendered as themselves; anything else (application/javascript,
#: widget views and state, vendor types that need a renderer) is dropped.
INERT_MIMETYPES = frozenset(
    {
        "text/plain",
        "text/html",
        "text/markdown",
        "text/latex",
        "image/png",
        "image/jpeg",
        "image/svg+xml",
        "application/json",
    }
)

#: Markup an archived fragment may keep: text structure and tables. No img, iframe,
#: form, style or script: those are escaped and show as text.
SAFE_TAGS = frozenset(
    {
        "a",
        "abbr",
        "b",
        "blockquote",
        "br",
        "caption",
        "code",
        "col",
        "colgroup",
        "dd",
        "del",
        "details",
        "div",
        "dl",
        "dt",
        "em",
        "h1",
        "h2",
        "h3",
        "h4",
        "h5",
        "h6",
        "hr",
        "i",
        "ins",
        "kbd",
        "li",
        "ol",
        "p",
        "pre",
        "q",
        "s",
        "samp",
        "small",
        "span",
        "strong",
        "sub",
        "summary",
        "sup",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "u",
        "ul",
    }
)
SAFE_ATTRIBUTES = {
    "*": ["class", "id", "title"],
    "a": ["class", "id", "title", "href"],
    "td": ["class", "id", "title", "colspan", "rowspan"],
    "th": ["class", "id", "title", "colspan", "rowspan"],
    "ol": ["class", "id", "title", "start"],
}
#: Links may point to pages and mail, never javascript: or data: URLs.
SAFE_PROTOCOLS = frozenset({"http", "https", "mailto"})
_STYLE_ELEMENT = re.compile(r"<style\b[^>]*>.*?</style\s*>", re.IGNORECASE | re.DOTALL)


def clean_html(markup: str | bytes) -> str:
    """The archive's one HTML policy: keep text and table markup, escape everything else.

    pandas puts a <style scoped> block before each table; it is dropped together with
    any other style element before bleach sees the fragment.
    """
    fragment = markup.decode("utf-8", "replace") if isinstance(markup, bytes) else str(markup)
    return bleach.clean(
        _STYLE_ELEMENT.sub("", fragment),
        tags=SAFE_TAGS,
        attributes=SAFE_ATTRIBUTES,
        protocols=SAFE_PROTOCOLS,
        strip=False,
        strip_comments=True,
    )


class DropActiveOutputs(Preprocessor):
    """Remove output data that exists to run code, and output file references.

    What remains is rendered by the template, HTML through `clean_html`.
    """

    def preprocess(self, nb, resources):
        nb.metadata.pop("widgets", None)
        return super().preprocess(nb, resources)

    def preprocess_cell(self, cell, resources, index):
        for output in cell.get("outputs", []):
            data = output.get("data")
            if data is not None:
                for mimetype in [m for m in data if m not in INERT_MIMETYPES]:
                    del data[mimetype]
            if "metadata" in output:
                output.metadata.pop("filenames", None)  # would make <img src> a file or URL
        return cell, resources


def source_summary(cell) -> str:
    """What a folded code cell shows: its first line of code, and how long it ran."""
    tags = cell.metadata.get("tags", [])
    if "injected-parameters" in tags:
        label = "Parameters of this run (injected by papermill)"
    elif "parameters" in tags:
        label = "Default parameters"
    else:
        lines = [ln.strip() for ln in cell.source.splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
        label = lines[0] if lines else "code"
        label = label if len(label) <= 90 else label[:89] + "…"
        if len(lines) > 1:
            label += f"  (+{len(lines) - 1} lines)"
    duration = cell.metadata.get("papermill", {}).get("duration")
    return f"{label}  ·  {duration:.2f} s" if isinstance(duration, (int, float)) else label


#: What nbconvert's BeautifulSoup pass adds to our pages: alt text on images. (Its other
#: change, tabindex on cells, needs a .jp-Notebook ancestor, which our template has not.)
_IMG_WITHOUT_ALT = re.compile(r"<img (?![^>]*\balt=)")
NO_ALT_TEXT = "No description has been provided for this image"

_exporter = None


def archive_exporter():
    """One exporter for the whole process: building it costs far more than using it."""
    global _exporter
    if _exporter is None:
        from nbconvert import HTMLExporter
        from nbconvert.exporters import TemplateExporter
        from nbconvert.filters.highlight import Highlight2HTML
        from nbconvert.filters.widgetsdatatypefilter import WidgetsDataTypeFilter

        class ArchiveExporter(HTMLExporter):
            """HTMLExporter.from_notebook_node without its closing BeautifulSoup pass, a quarter of
            the export's time: one pattern does what it did to pages made by our template."""

            def from_notebook_node(self, nb, resources=None, **kw):
                info = nb.metadata.get("language_info", {})
                lexer = info.get("pygments_lexer", info.get("name"))
                self.register_filter("highlight_code", Highlight2HTML(pygments_lexer=lexer, parent=self))
                resources = self._init_resources(resources)
                self.register_filter(
                    "filter_data_type",
                    WidgetsDataTypeFilter(notebook_metadata=self._nb_metadata, parent=self, resources=resources),
                )
                page, resources = TemplateExporter.from_notebook_node(self, nb, resources, **kw)
                return _IMG_WITHOUT_ALT.sub(f'<img alt="{NO_ALT_TEXT}" ', page), resources

        exporter = ArchiveExporter(
            template_name="lab",
            template_file=TEMPLATE_FILE,
            extra_template_paths=[str(TEMPLATES_DIR)],
            sanitize_html=True,
            exclude_input_prompt=True,
            exclude_output_prompt=True,
            # The notebook is validated once, after the preprocessors, not after each of them.
            optimistic_validation=True,
            filters={"clean_html": clean_html, "source_summary": source_summary},
        )
        exporter.register_preprocessor(DropActiveOutputs(), enabled=True)
        _exporter = exporter
    return _exporter


def page_facts(notebook, notebook_path: Path) -> dict:
    """Title and subtitle of an archived section page, from its name and papermill's record."""
    release_id = notebook_path.parent.name
    key = notebook_path.stem.split("-", 1)[-1]
    section = ALL_SECTIONS.get(key)
    title = f"{section.title if section else key} · release {release_id}"
    record = notebook.metadata.get("papermill", {})
    parts = []
    if record.get("start_time"):
        parts.append(f"ran {record['start_time'][:19].replace('T', ' ')} UTC")
    if isinstance(record.get("duration"), (int, float)):
        parts.append(f"for {record['duration']:.1f} s")
    if record.get("exception"):
        parts.append("stopped by an exception (see the failing cell)")
    if record:
        parts.append(f"papermill {record.get('version', '?')}, notebook {Path(record.get('input_path', '?')).name}")
    else:  # a `runbook lab` session: a person ran it in JupyterLab, papermill only wrote its parameters
        made = notebook.metadata.get("hotdash", {})
        parts.append(
            f"run in JupyterLab, parameters by papermill {made.get('papermill', '?')}, "
            f"notebook {made.get('runbook', '?')}"
        )
    return {"title": title, "subtitle": ", ".join(parts), "notebook_href": notebook_path.name, "css": archive_css()}


def export_notebook_html(notebook_path: Path) -> Path:
    """Write NN-section.html next to the executed NN-section.ipynb and return its path."""
    import nbformat

    notebook_path = Path(notebook_path)
    notebook = nbformat.read(notebook_path, as_version=4)
    resources = {"archive_page": page_facts(notebook, notebook_path)}
    body, _ = archive_exporter().from_notebook_node(notebook, resources=resources)
    target = notebook_path.with_suffix(".html")
    target.write_text(body, encoding="utf-8")
    return target


def serve_exports(requests, replies) -> None:
    """The export worker (see archive.HtmlExports): a notebook path per line in, a JSON line
    per page out, until the input ends."""
    import json

    archive_exporter()  # built while the release's first sections run
    for line in requests:
        notebook = Path(line.rstrip("\n"))
        try:
            export_notebook_html(notebook)
            reply = {"notebook": str(notebook), "ok": True}
        except Exception as exc:  # the seal exports it again in the runner and records why it fails
            reply = {"notebook": str(notebook), "ok": False, "error": type(exc).__name__}
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the runner decides when the worker stops
    serve_exports(sys.stdin, sys.stdout)
