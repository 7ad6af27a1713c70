"""Output paths of the commands, checked before anything is opened or written.

A folder option (``export --out``, ``compare --out``, ``run --artifact-dir``) must not name a file nor
a path under one; a file option (``report --out``, ``lut build --out``) must not name a folder; the
nearest existing folder must be writable. Each refusal is one line (`UserInputError`, exit 2).
"""

from __future__ import annotations

import os
from pathlib import Path

from jointnas.spaces import UserInputError


def _existing_parent(path: Path, flag: str) -> Path:
    """The nearest existing ancestor of ``path``: a writable folder, else `UserInputError`."""
    parent = path.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UserInputError(f"{flag} {path}: {parent} is a file, not a folder; give a path outside it")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserInputError(f"{flag} {path}: folder {parent} is not writable; give another path")
    return parent


def output_dir(path: str | Path, flag: str) -> Path:
    """``path`` as a folder to write into (created later if missing).

    Example:
        >>> import tempfile
        >>> f = Path(tempfile.mkdtemp()) / "f.txt"
        >>> _ = f.write_text("")
        >>> output_dir(f, "--out")
        Traceback (most recent call last):
        jointnas.spaces._errors.UserInputError: --out ... is a file; give a folder (it is created if missing)
    """
    p = Path(path).expanduser()
    if p.exists():
        if not p.is_dir():
            raise UserInputError(f"{flag} {p} is a file; give a folder (it is created if missing)")
        if not os.access(p, os.W_OK | os.X_OK):
            raise UserInputError(f"{flag} {p}: folder is not writable; give another folder")
        return p
    _existing_parent(p, flag)
    return p


def output_file(path: str | Path, flag: str, example: str = "out.html") -> Path:
    """``path`` as a file to write (its folders created later if missing)."""
    p = Path(path).expanduser()
    if p.is_dir():
        raise UserInputError(f"{flag} {p} is a folder; give a file path such as {p / example}")
    if p.exists():
        if not os.access(p, os.W_OK):
            raise UserInputError(f"{flag} {p}: file is not writable; give another path")
        return p
    _existing_parent(p, flag)
    return p


__all__ = ["output_dir", "output_file"]
