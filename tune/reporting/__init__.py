"""The report's parts (`tune/report.py` puts them together; docs/DESIGN.md lists them)."""
