"""A Ctrl-C that Python drops (raised inside a finalizer) is delivered again."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

# A KeyboardInterrupt raised in a weakref callback, as when SIGINT lands while garbage collection runs
# one: Python cannot propagate it, prints "Exception ignored in ..." and goes on.
SCRIPT = textwrap.dedent(
    """
    import sys, time, weakref
    from jointnas.search.cli.interrupts import redeliver_dropped_interrupts
    if sys.argv[1] == "on":
        redeliver_dropped_interrupts()
        redeliver_dropped_interrupts()  # idempotent
    class Model: pass
    def callback(ref):
        raise KeyboardInterrupt
    model = Model()
    ref = weakref.ref(model, callback)
    started = time.monotonic()
    try:
        del model  # the callback runs here; its KeyboardInterrupt is dropped
        while time.monotonic() - started < 3:
            time.sleep(0.01)
        print("ran on")
    except KeyboardInterrupt:
        print(f"interrupted after {time.monotonic() - started:.2f} s")
    """
)


@pytest.mark.parametrize("hook", ["on", "off"])
def test_a_dropped_keyboard_interrupt_is_delivered_again(hook):
    proc = subprocess.run([sys.executable, "-c", SCRIPT, hook], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    if hook == "off":  # what Python does alone: the interrupt is lost
        assert proc.stdout.strip() == "ran on" and "KeyboardInterrupt" in proc.stderr
    else:
        assert proc.stdout.startswith("interrupted after"), proc.stdout + proc.stderr
        assert float(proc.stdout.split()[2]) < 2
        assert "Exception ignored" not in proc.stderr  # handled, not reported as an error
