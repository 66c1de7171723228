"""The report's "Databases" section: what the preflight reached, and the schema across the release.

A rollback redeploys an image; it does not undo the migrations the failed build ran. So the
report shows, for each deploy and the rollback, the schema version before and after, next to
what each app's database is (server version, database name, schema version at preflight).
"""

from __future__ import annotations

from ..plan import ALL_SECTIONS
from .htmlpage import badge, table

#: The sections that change what runs, in plan order (the rollback last).
_CHANGING = ("deploy_staging", "deploy_production", "rollback")


def database_section(results: dict[str, dict]) -> str:
    reached = ((results.get("preflight") or {}).get("records") or {}).get("databases") or {}
    rows = [
        (
            row.get("app"),
            row.get("secret"),
            badge("passed" if row.get("ok") else "failed"),
            row.get("server_version") or "",
            row.get("database") or "",
            _version(row.get("schema_version")) if row.get("ok") else "",
            row.get("latency_ms"),
            "" if row.get("ok") else row.get("detail"),
        )
        for row in reached.get("rows") or []
    ]
    titles = {key: section.title for key, section in ALL_SECTIONS.items()}
    schema_rows = []
    for key in _CHANGING:
        schema = ((results.get(key) or {}).get("records") or {}).get("schema")
        if schema:
            before, after = schema.get("before"), schema.get("after")
            changed = "migrated" if before is not None and after is not None and after != before else ""
            schema_rows.append((titles.get(key, key), schema.get("app"), _version(before), _version(after), changed))
    if not rows and not schema_rows:
        return "<h2>Databases</h2><p class=muted>Database connected: not checked.</p>"
    parts = ["<h2>Databases</h2>"]
    if rows:
        parts.append(
            table(
                ("App", "Secret", "Connected", "Server version", "Database", "Schema", "select 1 (ms)", "Detail"),
                rows,
                numeric=(6,),
            )
        )
    if schema_rows:
        parts.append("<p>Schema version before and after each change (a rollback does not undo migrations):</p>")
        parts.append(table(("Step", "App", "Schema before", "Schema after", ""), schema_rows))
    return "".join(parts)


def _version(value) -> str:
    return "unknown" if value is None else f"v{value}"
