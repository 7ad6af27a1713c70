"""Application tools over studies: export, latency-table build/validate, report, compare, workflows, dashboard.

Each module is one tool; the CLI (`jointnas.search.cli`) parses arguments and calls them.
"""
