"""Ctrl-C that always arrives: re-deliver a KeyboardInterrupt that Python had to drop.

Python raises KeyboardInterrupt wherever the main thread is when SIGINT comes. If that is inside a
finalizer, a weakref callback or a garbage-collection callback (torch and Optuna run plenty), the
exception cannot propagate: Python prints "Exception ignored in ..." through `sys.unraisablehook`
and carries on, so a ``jointnas run`` went on training to the end of its budget as if Ctrl-C had
never been pressed (seen in CI). `redeliver_dropped_interrupts` installs a hook that, for such a
dropped KeyboardInterrupt, sends SIGINT to the process again a moment later, when the main thread
is back in ordinary code; every other unraisable exception goes to the previous hook.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from typing import Any

#: Seconds between a dropped KeyboardInterrupt and its re-delivery (the finalizer has returned by then).
REDELIVER_AFTER_S = 0.05


def redeliver_dropped_interrupts() -> None:
    """Install the re-delivering `sys.unraisablehook` (once per process; idempotent)."""
    previous = sys.unraisablehook
    if getattr(previous, "_jointnas_redeliver", False):
        return

    def hook(unraisable: Any) -> None:
        dropped_interrupt = unraisable.exc_type is not None and issubclass(unraisable.exc_type, KeyboardInterrupt)
        # Only where SIGINT raises KeyboardInterrupt again (a Python handler): SIG_DFL would kill the process.
        if dropped_interrupt and callable(signal.getsignal(signal.SIGINT)):
            timer = threading.Timer(REDELIVER_AFTER_S, os.kill, (os.getpid(), signal.SIGINT))
            timer.daemon = True
            timer.start()
            return
        previous(unraisable)

    hook._jointnas_redeliver = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook


__all__ = ["REDELIVER_AFTER_S", "redeliver_dropped_interrupts"]
