"""JupyterLab for a `runbook lab` session: `python -m hotdash_release.interactive.labserver
<JupyterLab's arguments>` is `python -m jupyterlab` with one difference, which makes a second
`make lab` serve its page in about a third of the time.

jsonschema imports rfc3987_syntax, when installed, for its "iri" format checker; that module
builds about 35 Earley parsers as it is imported: 1.4 s of CPU on our machines, in every process
that imports nbformat or jupyter_server (jupyter-events installs it). No notebook or Jupyter
schema uses that format. Here it is treated as not installed, which jsonschema allows for.
"""

from __future__ import annotations

import sys

IRI_CHECKER = "rfc3987_syntax"


def skip_iri_checker() -> None:
    """Before nbformat or jupyter_server is imported: a None in sys.modules makes the import
    fail with ImportError, which jsonschema takes as the checker not being installed."""
    sys.modules.setdefault(IRI_CHECKER, None)


def main() -> int:
    skip_iri_checker()
    from jupyterlab.labapp import main as lab_main

    return lab_main()


if __name__ == "__main__":
    sys.exit(main())
