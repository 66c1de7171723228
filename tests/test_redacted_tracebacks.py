"""An error a runbook cell raises is archived with the notebook: its message and traceback
must not carry a secret value, even when the failing code put one there."""

from __future__ import annotations

import json

import nbclient
from conftest import with_database
from nbformat.v4 import new_code_cell, new_notebook

from hotdash_release.secrets.required import rehearsal_secret_values


def test_a_cell_error_holding_a_secret_is_shown_redacted(rehearsal, tmp_path):
    platform = rehearsal.platform()
    for app in ("hotdash-staging", "hotdash-production"):
        platform.set_secrets(app, with_database(platform, app, rehearsal_secret_values(app)))
    secret = platform.secret_values("hotdash-production")["SHOPIFY_API_SECRET"]
    notebook = new_notebook(
        cells=[
            new_code_cell(
                "from hotdash_release import open_section\n"
                f"run = open_section('preflight', config_path={str(rehearsal.config)!r}, "
                f"release_dir={str(tmp_path / 'release')!r})"
            ),
            new_code_cell(
                "value = run.target.secret_values('hotdash-production')['SHOPIFY_API_SECRET']\n"
                "raise RuntimeError(f'could not reach https://x.test/?key={value}')"
            ),
        ]
    )
    nbclient.NotebookClient(notebook, kernel_name="python3", allow_errors=True, timeout=120).execute()
    error = notebook.cells[1].outputs[0]
    assert error["output_type"] == "error" and error["ename"] == "RuntimeError"
    assert "[redacted SHOPIFY_API_SECRET@production]" in error["evalue"]
    assert secret not in json.dumps(notebook)
