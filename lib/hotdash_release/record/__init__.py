"""The release's own record: its event log (events.py), which every action appends to and reads from."""
