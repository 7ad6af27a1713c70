"""What a tool needs of a progress display: named steps (the CLI's `StepProgress` is one)."""

from __future__ import annotations

from contextlib import AbstractContextManager
from typing import Protocol


class Steps(Protocol):
    """Progress over named steps: ``add`` more to the total, run one with ``step``, or ``mark`` one done."""

    def add(self, n: int) -> None: ...

    def step(self, name: str) -> AbstractContextManager[None]: ...

    def mark(self, name: str, seconds: float) -> None: ...


__all__ = ["Steps"]
