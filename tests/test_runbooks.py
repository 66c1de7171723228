"""The runbooks are an interface: committed clean, parameters pinned, cells calling only
the exported library surface."""

from __future__ import annotations

import json

import papermill
import pytest

import hotdash_release
from hotdash_release.paths import RUNBOOKS_DIR
from hotdash_release.plan import ALL_SECTIONS

NOTEBOOKS = sorted(RUNBOOKS_DIR.glob("*.ipynb"))
COMMON = {"target": "str", "config_path": "str", "release_dir": "str", "operator": "str"}
PINNED_PARAMETERS = {
    "preflight": COMMON,
    "verify_secrets": COMMON,
    "deploy": {"environment": "str", "rehearsal_defect": "str", **COMMON},
    # A person's attestations, headless: [{"check", "by", "at", "note"}] (attest.py).
    "smoke_test": {"environment": "str", **COMMON, "attestations": "list"},
    "go_no_go": {**COMMON, "attestations": "list"},
    "notify": COMMON,
    "watch": {"environment": "str", "watching": "str", "watch_minutes": "float", **COMMON},
    "rollback": {"environment": "str", "watching": "str", **COMMON},
}


def test_every_plan_section_has_its_notebook():
    assert {s.notebook for s in ALL_SECTIONS.values()} == {p.name for p in NOTEBOOKS}
    assert {p.stem for p in NOTEBOOKS} == set(PINNED_PARAMETERS)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_runbook_is_committed_without_outputs(path):
    notebook = json.loads(path.read_text())
    for cell in notebook["cells"]:
        assert not cell.get("outputs"), f"{path.name} has outputs"
        assert cell.get("execution_count") is None, f"{path.name} has execution counts"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_are_pinned_typed_and_documented(path):
    found = papermill.inspect_notebook(str(path))
    assert {name: p["inferred_type_name"] for name, p in found.items()} == PINNED_PARAMETERS[path.stem]
    for name, parameter in found.items():
        assert parameter["help"], f"{path.stem}.{name} has no comment saying what it means"
        assert "secret" not in name.lower() and "token" not in name.lower()


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_cells_read_like_plan_lines(path):
    """Logic lives in the library: code cells are the open line, `run.<step>()` calls and the gate."""
    cells = json.loads(path.read_text())["cells"]
    code = ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    assert "parameters" in cells[1]["metadata"]["tags"]
    assert code[1].startswith("from hotdash_release import open_section")
    assert code[-1] == "run.gate()"
    for source in code[2:]:
        for line in source.splitlines():
            assert line.startswith(("run.", "decision = run.", "decision")), f"{path.stem}: {line!r}"
    assert sum(c["cell_type"] == "markdown" for c in cells) >= len(code) - 1, "each step says what and why"


def test_public_api_is_pinned():
    assert sorted(hotdash_release.__all__) == [
        "ConfigError",
        "DeployError",
        "GateFailed",
        "ReleaseConfig",
        "ReleaseError",
        "ReleaseOptions",
        "RollbackError",
        "SecretError",
        "SectionRun",
        "TargetError",
        "UsageError",
        "describe_plan",
        "load_config",
        "open_section",
        "run_release",
    ]
    for name in hotdash_release.__all__:
        assert hasattr(hotdash_release, name)


def test_the_deploy_notebook_documents_every_rehearsal_defect():
    """Observed: the deploy notebook documented 4 rehearsal_defect values; the app knows 11."""
    import json

    from hotdash_release.targets.standin_app import DEFECTS

    text = json.dumps(json.loads((RUNBOOKS_DIR / "deploy.ipynb").read_text())["cells"])
    assert [d for d in DEFECTS if d and d not in text] == []
