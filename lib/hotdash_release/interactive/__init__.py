"""The release engineer in JupyterLab: `runbook lab` session folders and `runbook seal`
(session.py), and the manual-checks and go/no-go panels (widgets.py)."""
