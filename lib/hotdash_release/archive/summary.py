"""Each app's summary in the store (`<app>/summary.json`): what the catalog (index, history,
metrics) needs of every release of the app, so that a runner with an empty folder reads one object
per app instead of one manifest per release.

Format (JSON, one object):

    {"format": "hotdash-summary/1", "app": APP,
     "head_release_id": ID, "head_manifest_sha256": SHA, "releases": N,
     "rows": [[release_id, manifest_sha256, previous_release_id, previous_manifest_sha256,
               catalog row (catalog.ReleaseSummary.to_json of that manifest)], ...]}   oldest first

A reader uses it only when, with the few manifests after it (a summary of an earlier head: the
writer died after the head, or has not written it yet), it describes the app's chain head exactly:
the head's release id, manifest sha256 and release count of the signed checkpoint, its last row
that release, each row linked to the row before it by id and manifest sha256 (the first to none):
`summary_for_head`, `usable_summary`. Anything else (missing, unreadable, rows that do not link,
too far behind) and the reader reads each manifest as before. The rows' catalog facts are what the
summary claims: it is not signed, so `runbook verify` checks every row against the manifest it
summarises (`summary_problems`): a summary that leaves a release out, adds one or misstates one
is a finding.

Written by the runner whose release is the head, right after the head's conditional write
(storesync.write_summary says why that order stays consistent).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from .catalog import RELEASE_ID, SUMMARY, summarize_manifest
from .integrity import GENESIS, MANIFEST, Problem, sealed_releases, sha256_bytes

FORMAT = "hotdash-summary/1"


def summary_key(app: str) -> str:
    return f"{app}/{SUMMARY}"


def summary_row(data: bytes, app: str, release_id: str) -> list | None:
    """One release's row from its manifest's bytes; None for a manifest that does not parse."""
    try:
        manifest = json.loads(data)
        catalog = summarize_manifest(manifest, app, release_id).to_json()
    except (ValueError, TypeError, AttributeError):
        return None
    return [
        release_id,
        sha256_bytes(data),
        manifest.get("previous_release_id"),
        manifest.get("previous_manifest_sha256"),
        catalog,
    ]


def summary_body(app: str, checkpoint: dict, rows: list[list]) -> dict:
    return {
        "format": FORMAT,
        "app": app,
        "head_release_id": checkpoint.get("head_release_id"),
        "head_manifest_sha256": checkpoint.get("head_manifest_sha256"),
        "releases": checkpoint.get("releases"),
        "rows": rows,
    }


def linked(rows: list) -> bool:
    """Each row links to the row before it (the first to none), by release id and manifest sha256."""
    previous_id, previous_sha = None, GENESIS
    for row in rows:
        if not (isinstance(row, list) and len(row) == 5 and isinstance(row[0], str) and RELEASE_ID.match(row[0])):
            return False
        if row[2] != previous_id or row[3] != previous_sha or not isinstance(row[1], str):
            return False
        previous_id, previous_sha = row[0], row[1]
    return True


def usable_summary(data: bytes | dict | None, app: str, checkpoint: dict) -> tuple[dict | None, str]:
    """(the summary, "") when it (its bytes, or parsed) describes exactly the chain the checkpoint
    anchors; else (None, why not)."""
    if data is None:
        return None, "no summary"
    try:
        summary = data if isinstance(data, dict) else json.loads(data)
    except ValueError:
        return None, "not JSON"
    if not isinstance(summary, dict) or summary.get("format") != FORMAT or summary.get("app") != app:
        return None, f"not a {FORMAT} summary of {app}"
    rows = summary.get("rows")
    head, sha = checkpoint.get("head_release_id"), checkpoint.get("head_manifest_sha256")
    if not isinstance(head, str) or not isinstance(sha, str) or not isinstance(rows, list) or not rows:
        return None, "no head to match"
    if (summary.get("head_release_id"), summary.get("head_manifest_sha256")) != (head, sha):
        return None, f"written for head {summary.get('head_release_id')}, the head is {head}"
    if summary.get("releases") != checkpoint.get("releases") or len(rows) != checkpoint.get("releases"):
        return None, f"{len(rows)} rows, the checkpoint counts {checkpoint.get('releases')} releases"
    if not isinstance(rows[-1], list) or rows[-1][:2] != [head, sha]:
        return None, "its last row is not the head"
    if not linked(rows):
        return None, "its rows do not link into one chain"
    return summary, ""


def summary_for_head(
    app: str, checkpoint: dict, base: bytes | None, read: Callable[[str], bytes | None], *, limit: int | None = None
) -> bytes | None:
    """The summary of the chain ending at the checkpoint's head: the rows of `base` (a summary
    holding a linked prefix of this chain: the store's, perhaps of an earlier head) and one row per
    manifest after it, got with read(release id) (the writer's local copy, or a reader's GET).
    None when that cannot show the whole chain (a manifest missing or not linking, more than
    `limit` to read): then the caller reads each manifest, as without a summary. The result is
    checked as any reader checks a summary (usable_summary), against the signed head and count."""
    known: dict[str, int] = {}
    base_rows: list = []
    try:
        parsed = json.loads(base) if base else None
        if isinstance(parsed, dict) and parsed.get("app") == app and linked(parsed.get("rows") or []):
            base_rows = parsed["rows"]
            known = {row[0]: i for i, row in enumerate(base_rows)}
    except ValueError:
        pass
    newer, current = [], checkpoint.get("head_release_id")
    while current and current not in known:
        if limit is not None and len(newer) >= limit:
            return None
        data = read(current)
        row = summary_row(data, app, current) if data is not None else None
        if row is None or (newer and newer[-1][3] != row[1]):
            return None
        newer.append(row)
        current = row[2]
    prefix = base_rows[: known[current] + 1] if current else []
    if prefix and newer and newer[-1][3] != prefix[-1][1]:
        return None
    body = summary_body(app, checkpoint, prefix + newer[::-1])
    return json.dumps(body, separators=(",", ":")).encode() if usable_summary(body, app, checkpoint)[0] else None


def local_manifest(app_dir: Path) -> Callable[[str], bytes | None]:
    """read() for summary_for_head from a local copy of the app's releases."""

    def read(release_id: str) -> bytes | None:
        try:
            return (app_dir / release_id / MANIFEST).read_bytes()
        except OSError:
            return None

    return read


def summary_problems(app_dir: Path) -> list[Problem]:
    """verify: every row a reader may take (a summary whose rows link; a reader takes them up to
    the head, or up to an earlier head it then brings up to date) must be the chain's release at
    that place, with what its manifest gives. A summary of an earlier head is no finding (its rows
    are the start of the chain); one that does not parse or link is none either: readers ignore it."""
    try:
        summary = json.loads((app_dir / SUMMARY).read_bytes())
        rows = summary["rows"]
    except (OSError, ValueError, KeyError, TypeError):
        return []
    if not isinstance(rows, list) or not linked(rows):
        return []
    name = f"{app_dir.name}/{SUMMARY}"
    chain = [p.name for p in sealed_releases(app_dir)]
    claimed = {row[0]: row for row in rows}
    place = {rid: i for i, rid in enumerate(chain)}
    reached = max((place[rid] for rid in claimed if rid in place), default=-1)
    problems = [
        Problem(name, f"leaves out release {rid}: an index read from the store would not show it")
        for rid in chain[: reached + 1]
        if rid not in claimed
    ]
    problems += [
        Problem(name, f"lists release {rid}, which is not in the chain") for rid in claimed if rid not in place
    ]
    for rid in chain[: reached + 1]:
        if rid not in claimed:
            continue
        actual = summary_row((app_dir / rid / MANIFEST).read_bytes(), app_dir.name, rid)
        if actual is None or actual[:4] != claimed[rid][:4]:
            problems.append(Problem(name, f"release {rid}: its manifest's sha256 or link differs from the summary"))
        elif json.loads(json.dumps(actual[4])) != claimed[rid][4]:
            problems.append(Problem(name, f"release {rid}: the summary's facts differ from its manifest"))
    return problems
