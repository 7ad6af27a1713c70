"""``python -m jointnas.search.cli``: the same as the ``jointnas`` script."""

from __future__ import annotations

from . import _entry

if __name__ == "__main__":  # pragma: no cover
    _entry()
