"""The audit archive: what a release leaves for auditors, and what reads it back.

- seal.py: seals a release folder (HTML of every notebook, the report, the secret scan, the manifest)
- integrity.py: the manifest's sha256 of every file and the hash chain; `runbook verify`
- provenance.py: which runbooks (git commit) and tools (versions) ran a release
- htmlexport.py: executed notebook -> inert HTML page (also the export worker process)
- htmlpage.py, charts.py: the archive's own pages, every value escaped; inline SVG charts
- report.py: a release's report.html (timing planned vs actual, smoke outcomes, go/no-go)
- catalog.py, metrics.py, index.py: every release of every app, baselines, DORA metrics, index.html
- store.py: where the archive lives: a local folder or an S3-compatible store (one interface)
- storesync.py: a release against a store: pull what it reads, upload it sealed, advance the chain head
- planview.py: `runbook plan`, what a release would do, without deploying
"""
