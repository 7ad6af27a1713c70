"""Progress displays of the CLI: trials of a run (`TrialProgress`) and steps of long commands (`StepProgress`).

A rich bar on a terminal, plain lines otherwise (logs, CI, tests).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import optuna
from optuna.trial import FrozenTrial, TrialState

from ..study import n_complete

if TYPE_CHECKING:
    from rich.progress import Progress


def terminal_progress(label: str) -> Progress | None:
    """A rich bar (label, bar, k/N, elapsed time, current description) on stderr when it is a terminal,
    else ``None`` so callers print plain lines (logs, CI, tests). Enter it to show it."""
    if not sys.stderr.isatty():
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(
        TextColumn(f"[bold]{label}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.description}"),
        console=Console(file=sys.stderr),
    )


class LiveDisplay:
    """Shows ``self.progress`` (a `terminal_progress` bar, or ``None`` off a terminal) while entered."""

    progress: Progress | None = None

    def __enter__(self):
        if self.progress is not None:
            self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.progress is not None:
            self.progress.__exit__(*exc)


class StepProgress(LiveDisplay):
    """Progress over a known number of named steps.

    On a terminal a rich bar (step k/N, elapsed time, current step); elsewhere (logs, CI, tests) one
    line per finished step with its duration in seconds, on stderr.

    Example:
        >>> with StepProgress("demo", total=1, enabled=False) as p:
        ...     with p.step("load"):
        ...         pass
    """

    def __init__(self, label: str, total: int, *, enabled: bool = True) -> None:
        self.label = label
        self.total = total
        self.enabled = enabled
        self.done = 0
        self.progress = None
        if enabled:
            self.progress = terminal_progress(label)
            if self.progress is not None:
                self.task = self.progress.add_task("", total=total)

    def add(self, n: int) -> None:
        """Grow the total by ``n`` steps (when the step count is known only later)."""
        self.total += n
        if self.progress is not None:
            self.progress.update(self.task, total=self.total)

    def mark(self, name: str, seconds: float) -> None:
        """Count a step that ran elsewhere (e.g. inside a callback) and took ``seconds``."""
        self.done += 1
        if self.done > self.total:  # steps found on the way (e.g. a front's size)
            self.add(self.done - self.total)
        if self.progress is not None:
            self.progress.update(self.task, completed=self.done, description=name)
        elif self.enabled:
            print(f"{self.label} {self.done}/{self.total} {name} [{seconds:.1f} s]", file=sys.stderr, flush=True)

    @contextmanager
    def step(self, name: str) -> Iterator[None]:
        """Run one step named ``name``; advance the bar when it ends."""
        if self.progress is not None:
            self.progress.update(self.task, description=name)
        started = time.perf_counter()
        try:
            yield
        finally:
            self.done += 1
            if self.progress is not None:
                self.progress.update(self.task, completed=self.done)
            elif self.enabled:
                seconds = time.perf_counter() - started
                print(f"{self.label} {self.done}/{self.total} {name} [{seconds:.1f} s]", file=sys.stderr, flush=True)


_UNITS = {"accuracy": "{:.4f}", "latency_ms": "{:.4f}", "flash_bytes": "{:.0f}", "sram_bytes": "{:.0f}"}


def format_metric(metric: str, value: float) -> str:
    """``value`` of ``metric`` as the CLI prints it (bytes as integers, accuracy and ms with 4 decimals).

    Example:
        >>> format_metric("flash_bytes", 1234.4), format_metric("accuracy", 0.97)
        ('1234', '0.9700')
    """
    return _UNITS.get(metric, "{:.4g}").format(value)


class TrialProgress(LiveDisplay):
    """Live progress: trial k/N, elapsed time and the current best trade-offs.

    A rich progress bar on a terminal; one plain line per finished trial otherwise (logs, CI).
    """

    def __init__(self, study: optuna.Study, total: int) -> None:
        self.names = study.metric_names or []
        self.total = total
        self.started = time.perf_counter()
        self.progress = terminal_progress("trials")
        if self.progress is not None:
            self.task = self.progress.add_task("", total=total, completed=n_complete(study))

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        best = study.best_trials
        desc = f"front {len(best)}"
        if best and self.names:
            top = max(best, key=lambda t: t.values[0]) if self.names[0] == "accuracy" else best[0]
            desc += " | best " + ", ".join(
                f"{n}={format_metric(n, v)}" for n, v in zip(self.names, top.values, strict=True)
            )
        if trial.state != TrialState.COMPLETE:
            reason = trial.user_attrs.get("fail_reason", "")
            desc += f" | #{trial.number} {trial.state.name.lower()} {reason}".rstrip()
        done = n_complete(study)
        if self.progress is not None:
            self.progress.update(self.task, completed=done, description=desc)
        else:
            elapsed = time.perf_counter() - self.started
            print(f"trial {done}/{self.total} [{elapsed:.0f} s] {desc}", file=sys.stderr, flush=True)
