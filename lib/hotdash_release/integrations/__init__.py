"""The people-facing services outside the deployment target.

- notify.py: the CEO's notification (Slack incoming webhook, or a file in a rehearsal)
- github.py: dispatching the release workflow on GitHub Actions; the job summary
"""
