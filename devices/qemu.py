"""Run Cortex-M builds in QEMU with a repeatable instruction count (``simulator = "qemu"`` profiles).

QEMU's ``mps2-an500`` machine has a Cortex-M7 with an FPU and RAM at 0x0 and 0x20000000. Under
``-icount shift=7`` its virtual clock advances 2^7 ns per executed instruction, whatever the host's
speed, and the machine's CMSDK timer (25 MHz) reads that clock: the firmware side
(``devices/qemu/jointnas_sim_arm.h``, included through ``jointnas_sim.h``) reads the timer at the
markers and writes the ticks through semihosting to a host file, and `simulate_qemu` turns ticks back
into instructions (3.2 ticks per instruction, so rounding gives the exact count). The numbers are
**instructions executed**, not Cortex-M7 cycles (QEMU models no pipeline, dual issue, caches or Flash
wait states); the profile's ``cycles_per_instruction`` (default 1.0) converts them to the cycles
`Simulation` reports.

Example:
    >>> instructions_of_ticks(19274)
    6023
    >>> instructions_of_ticks(19274, coarse=2**24 + 75)  # the 32-bit count wrapped once
    1342183303
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import tempfile
from pathlib import Path

from jointnas.spaces import UserInputError

from .profile import DeviceProfile
from .toolchain import Simulation, toolchain_of

QEMU = "qemu-system-arm"
ICOUNT_SHIFT = 7
"""-icount shift: 2^7 ns of virtual time per instruction, 3.2 timer ticks (the slowest clock that
still resolves single instructions; the 32-bit count wraps every 1.3e9 of them, see COARSE_PRESCALE)."""
TIMER_HZ = 25_000_000
"""The mps2 machines' APB timer clock (QEMU's SYSCLK_FRQ)."""
REGIONS_FILE, OUTPUT_FILE = "jointnas-regions.bin", "jointnas-output.bin"
_REGION, _EXIT, _FAULT = 1, 2, 3

LAYER_MARKERS = {
    "JN_TRACE(layer,data,type,count)": "((*(void (*const *)(void))(*(volatile unsigned *)0xE000ED08U + 0x1CU))())"
}
"""``-D`` macros for `jointnas.devices.build` on Cortex-M, the counterpart of the AVR
`jointnas.devices.toolchain.SIM_LAYER_MARKERS`: the generated library's per-call hook ``JN_TRACE``
ends the measured region and starts the next (``JOINTNAS_SIM_SPLIT()`` of ``jointnas_sim_arm.h``: a
call through vector slot 7, found from VTOR, so the library's files need no declaration)."""


COARSE_PRESCALE = 256
"""The dual timer's prescaler: its count says how often the 32-bit fine count wrapped."""


def instructions_of_ticks(ticks: int, coarse: int | None = None) -> int:
    """Instructions executed in ``ticks`` of the machine's timer under ``-icount shift=ICOUNT_SHIFT``.

    ``ticks`` is read modulo 2^32; ``coarse`` (ticks / `COARSE_PRESCALE`, from the second timer)
    restores the wraps (``None``: none).
    """
    if coarse is not None:
        ticks += round((coarse * COARSE_PRESCALE - ticks) / 2**32) * 2**32
    return round(ticks * 1e9 / TIMER_HZ / 2**ICOUNT_SHIFT)


def qemu_command(elf: Path, machine: str) -> list[str]:
    """The QEMU command line: no display, no serial, semihosting on the host's files, icount on."""
    return [
        QEMU,
        "-M",
        machine,
        "-nographic",
        "-monitor",
        "none",
        "-serial",
        "none",
        "-semihosting-config",
        "enable=on,target=native",
        "-icount",
        f"shift={ICOUNT_SHIFT},align=off,sleep=off",
        "-kernel",
        str(elf),
    ]


def _records(data: bytes) -> list[tuple[int, int, int, int]]:
    usable = len(data) - len(data) % 16
    return [struct.unpack_from("<4I", data, i) for i in range(0, usable, 16)]


def _run_qemu(elf: Path, machine: str, work: Path, max_seconds: float) -> tuple[bool, bytes, bytes]:
    """Run to the firmware's exit or ``max_seconds``; (timed out, region records, output bytes)."""
    try:
        subprocess.run(qemu_command(elf.resolve(), machine), cwd=work, capture_output=True, timeout=max_seconds)
        timed_out = False
    except subprocess.TimeoutExpired:
        timed_out = True
    read = [(work / name).read_bytes() if (work / name).is_file() else b"" for name in (REGIONS_FILE, OUTPUT_FILE)]
    return timed_out, read[0], read[1]


def simulate_qemu(elf: Path, profile: DeviceProfile, *, max_seconds: float = 300.0) -> Simulation:
    """Run ``elf`` (built with ``jointnas_sim.h``) in QEMU to its exit; instruction-derived counts.

    ``region_cycles`` are the instructions of each marked region times the profile's
    ``cycles_per_instruction``; ``total_cycles`` those from just before ``main`` to the exit (sum of the regions
    when the run did not exit); ``stack_peak_bytes`` how much of the painted stack was written.
    ``end`` is ``"done"``, ``"crashed"`` (a fault, or QEMU stopped without the exit record) or
    ``"max_seconds"`` (wall-clock limit reached; the regions so far are kept).

    Raises:
        UserInputError: the profile has no QEMU simulator, or qemu-system-arm is missing.
    """
    spec = toolchain_of(profile)
    if spec.simulator != "qemu" or not spec.qemu_machine or profile.clock_mhz is None:
        raise UserInputError(f"device {profile.name!r} has no QEMU simulator in its [toolchain] table")
    if shutil.which(QEMU) is None:
        raise UserInputError(f"{QEMU} not found for device {profile.name!r}; install it: apt-get install -y {QEMU}")
    with tempfile.TemporaryDirectory(prefix="jointnas-qemu-") as tmp:
        timed_out, raw, output = _run_qemu(Path(elf), spec.qemu_machine, Path(tmp), max_seconds)
    records = _records(raw)
    regions = [instructions_of_ticks(a, b) for kind, a, b, _ in records if kind == _REGION]
    exits = [(instructions_of_ticks(a, b), c) for kind, a, b, c in records if kind == _EXIT]
    faulted = any(kind == _FAULT for kind, *_ in records)
    end = "max_seconds" if timed_out else "crashed" if faulted or not exits else "done"
    total, stack = exits[0] if exits else (sum(regions), 0)
    cpi = spec.cycles_per_instruction
    return Simulation(
        end=end,
        total_cycles=round(total * cpi),
        region_cycles=tuple(round(n * cpi) for n in regions),
        stack_peak_bytes=stack,
        output=output,
        clock_hz=profile.clock_mhz * 1e6,
    )


__all__ = [
    "COARSE_PRESCALE",
    "ICOUNT_SHIFT",
    "LAYER_MARKERS",
    "QEMU",
    "TIMER_HZ",
    "instructions_of_ticks",
    "qemu_command",
    "simulate_qemu",
]
