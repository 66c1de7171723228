"""Secrets by name and digest, never by value in a record.

- required.py: the required secrets' presence and digests on each app, where values come from
  (the platform's store, or the environment in CI), the rehearsal's generated set
- redact.py: replaces every secret value in anything that reaches the archive; the seal's scan
"""
