"""Exit codes of every ``jointnas`` command: 0 success, 2 bad input (one line, no traceback), 130 interrupted."""

from __future__ import annotations

EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130

__all__ = ["EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE"]
