"""Run an exported C library on a board's build: compile it with a measuring ``main``, simulate, read back.

The C generator (`jointnas.compression.cgen`) writes a ``c/`` folder; this module builds that folder for
a device profile (`jointnas.devices.toolchain.build`) with a small firmware ``main`` (`firmware_source`)
and runs it (`run_library`): in simavr for AVR boards (cycles of each inference, stack peak), as a host
program for the ``ort-cpu`` profile. The firmware streams its results through one output macro, so the
host build and the simulated board are compared byte for byte (`check_library`, which also builds the
export's Arduino sketch and gives the fits verdict). It knows files, not models: nothing here imports
the generator.

Output protocol per sample: one class byte, then the scores as little-endian float32; per query: the
reply's characters and a newline.
"""

from __future__ import annotations

import dataclasses
import shutil
import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .arduino import build_sketch
from .profile import DeviceProfile, load_profile
from .qemu import LAYER_MARKERS, simulate_qemu
from .toolchain import SIM_LAYER_MARKERS, Build, Simulation, Sizes, build, sim_include_dir, simulate_avr

SIMULATED = ("simavr", "qemu")
"""The simulators `run_library` runs a board's build in (``native``: this machine, not a board)."""


def is_simulated(profile: DeviceProfile) -> bool:
    """Whether ``profile`` is a microcontroller whose builds run in one of the `SIMULATED` simulators."""
    return profile.is_mcu and profile.toolchain is not None and profile.toolchain.simulator in SIMULATED


def layer_markers(profile: DeviceProfile) -> dict[str, str]:
    """The ``-D`` macros that make ``profile``'s simulator count every kernel call as its own region."""
    simulator = None if profile.toolchain is None else profile.toolchain.simulator
    return {"simavr": SIM_LAYER_MARKERS, "qemu": LAYER_MARKERS}.get(simulator, {})


CHAT_QUERIES = ("hello", "how are you?")
"""Queries a text model's simulated board answers (an export's check, a calibration, a verified trial)."""

_FIRMWARE = r"""/* Measuring main of jointnas (devices/board.py): runs the library on fixed inputs. */
#include <stdint.h>
#include <string.h>
#include "jointnas_model.h"
#if defined(__AVR__) || (defined(__ARM_ARCH_PROFILE) && __ARM_ARCH_PROFILE == 'M')
#ifdef __AVR__
#include <avr/pgmspace.h>
#else
#define PROGMEM
#define memcpy_P memcpy
#endif
#include "jointnas_sim.h"
#define OUT(b) JOINTNAS_SIM_PUT(b)
#else
#include <stdio.h>
#define PROGMEM
#define memcpy_P memcpy
#define JOINTNAS_SIM_BEGIN()
#define JOINTNAS_SIM_END()
#define JOINTNAS_SIM_EXIT()
#define OUT(b) putchar((uint8_t)(b))
#endif

#define N_SAMPLES %(n_samples)d
#define N_QUERIES %(n_queries)d
#define MAX_REPLY %(max_reply)d
%(samples)s
%(queries)s

#if N_SAMPLES > 0
static void put_float(float v) {
    uint8_t b[4];
    memcpy(b, &v, 4);
    for (uint8_t i = 0; i < 4; i++) OUT(b[i]);
}
#endif

int main(void) {
#if N_SAMPLES > 0
    static float input[JOINTNAS_INPUT_SIZE];
    static float scores[JOINTNAS_NUM_CLASSES];
    for (uint16_t s = 0; s < N_SAMPLES; s++) {
        memcpy_P(input, samples[s], sizeof input);
        JOINTNAS_SIM_BEGIN();
        int k = jointnas_predict(input, scores);
        JOINTNAS_SIM_END();
        OUT(k);
        for (uint8_t c = 0; c < JOINTNAS_NUM_CLASSES; c++) put_float(scores[c]);
    }
#endif
#if N_QUERIES > 0
    static char query[64], reply[MAX_REPLY + 1];
    for (uint8_t q = 0; q < N_QUERIES; q++) {
        memcpy_P(query, queries[q], sizeof query);
        JOINTNAS_SIM_BEGIN();
        int n = jointnas_reply(query, reply, MAX_REPLY + 1);
        JOINTNAS_SIM_END();
        for (int i = 0; i < n; i++) OUT(reply[i]);
        OUT('\n');
    }
#endif
    JOINTNAS_SIM_EXIT();
    return 0;
}
"""


def _c_string(text: str) -> str:
    return '"' + text.encode("ascii", "replace").decode().replace("\\", "\\\\").replace('"', '\\"') + '"'


def firmware_source(samples: np.ndarray | None, queries: list[str] | None, max_reply: int = 64) -> str:
    """The measuring ``main``: ``samples`` (raw inputs, one per row) and ``queries`` compiled in (PROGMEM).

    Without either, it classifies one all-zero sample, so a size-only build still links the library.
    """
    rows = [] if samples is None else np.asarray(samples, dtype=np.float32).reshape(len(samples), -1)
    texts = [q[:63] for q in queries or ()]
    body = ",\n".join("    {" + ", ".join(f"{v!r}f" for v in row.tolist()) + "}" for row in rows)
    if not len(rows) and not texts:
        rows, body = [None], "    {0}"  # one all-zero sample: the library is linked (and sized) as it is used
    sample_decl = (
        f"static const float samples[N_SAMPLES][JOINTNAS_INPUT_SIZE] PROGMEM = {{\n{body}\n}};" if len(rows) else ""
    )
    query_decl = (
        "static const char queries[N_QUERIES][64] PROGMEM = {" + ", ".join(map(_c_string, texts)) + "};"
        if texts
        else ""
    )
    return _FIRMWARE % {
        "n_samples": len(rows),
        "n_queries": len(texts),
        "max_reply": max_reply,
        "samples": sample_decl,
        "queries": query_decl,
    }


@dataclass(frozen=True)
class LibraryRun:
    """What one build and run of a library gave: sizes, and per input the results (and cycles on AVR)."""

    build: Build
    simulation: Simulation | None
    classes: tuple[int, ...]
    scores: np.ndarray
    replies: tuple[str, ...]


def _parse(
    output: bytes, n_samples: int, n_classes: int, n_queries: int
) -> tuple[tuple[int, ...], np.ndarray, tuple[str, ...]]:
    step = 1 + 4 * n_classes
    classes = tuple(output[i * step] for i in range(n_samples))
    scores = np.array(
        [struct.unpack(f"<{n_classes}f", output[i * step + 1 : (i + 1) * step]) for i in range(n_samples)],
        dtype=np.float32,
    ).reshape(n_samples, n_classes)
    replies = tuple(output[n_samples * step :].decode("ascii").split("\n")[:n_queries])
    return classes, scores, replies


def run_library(
    c_dir: Path,
    profile: DeviceProfile,
    work_dir: Path,
    *,
    samples: np.ndarray | None = None,
    queries: list[str] | None = None,
    num_classes: int = 0,
    defines: dict[str, str] | None = None,
) -> LibraryRun:
    """Build ``c_dir`` with the measuring main for ``profile`` and run it (simavr, or natively on the host).

    ``num_classes`` is the library's ``JOINTNAS_NUM_CLASSES`` (needed to read the scores back). A
    profile whose toolchain has no simulator is built and sized only (no results). ``defines`` are
    extra ``-D`` macros (`jointnas.devices.toolchain.SIM_LAYER_MARKERS`: one region per kernel call).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    main = work_dir / "jointnas_measure.c"
    main.write_text(firmware_source(samples, queries))
    library = sorted(c_dir.glob("*.c"))
    include = [c_dir, sim_include_dir()]
    b = build([main, *library], profile, work_dir, library=library, include_dirs=include, defines=defines)
    runner = None if profile.toolchain is None else profile.toolchain.simulator
    sim, output = None, b""
    if runner == "simavr":
        sim = simulate_avr(b.elf, profile)
        output = sim.output
    elif runner == "qemu":
        sim = simulate_qemu(b.elf, profile)
        output = sim.output
    elif runner == "native":
        output = subprocess.run([str(b.elf)], capture_output=True, check=True).stdout
    ran = runner is not None
    n_samples = 0 if samples is None or not ran else len(samples)
    classes, scores, replies = _parse(output, n_samples, num_classes, len(queries or ()) if ran else 0)
    return LibraryRun(b, sim, classes, scores, replies)


_HOST_DRIVER = r"""/* Host driver of jointnas (devices/board.py): raw float32 samples on stdin, results on stdout. */
#include <stdio.h>
#include "jointnas_model.h"
int main(void) {
    static float input[JOINTNAS_INPUT_SIZE], scores[JOINTNAS_NUM_CLASSES];
    while (fread(input, sizeof input, 1, stdin) == 1) {
        unsigned char k = (unsigned char)jointnas_predict(input, scores);
        fwrite(&k, 1, 1, stdout);
        fwrite(scores, sizeof scores, 1, stdout);
    }
    return 0;
}
"""


def host_predictions(c_dir: Path, raw: np.ndarray, num_classes: int, work_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """Classes and scores of the library built for this machine (``ort-cpu``'s toolchain) on ``raw`` samples.

    The samples stream through stdin as float32, so a whole test split costs one build and one process.
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    driver = work_dir / "jointnas_host_driver.c"
    driver.write_text(_HOST_DRIVER)
    exe = build([driver, *sorted(c_dir.glob("*.c"))], load_profile("ort-cpu"), work_dir, include_dirs=[c_dir]).elf
    data = np.ascontiguousarray(np.asarray(raw, dtype=np.float32).reshape(len(raw), -1)).tobytes()
    out = subprocess.run([str(exe)], input=data, capture_output=True, check=True).stdout
    classes, scores, _ = _parse(out, len(raw), num_classes, 0)
    return np.asarray(classes), scores


@dataclass(frozen=True)
class LibraryCheck:
    """What building (and, where the board has a simulator, running) a model's C library measured.

    Sizes are bytes from the target's size tool; ``library_*`` count the library's own objects (weights,
    scales, kernels, descriptors, the arena), ``program_*`` the whole measuring program. ``stack_peak_bytes``
    and ``cycles`` come from the simulator (``None`` without one); ``cycles`` is the mean of one
    ``jointnas_predict`` (one generated character for text models), ``latency_ms`` the same at the
    board's clock. ``sketch_*`` are the Arduino sketch's sizes where the profile names an Arduino core.
    ``fits``: the sketch (or else the program) within Flash less the bootloader, and its static SRAM
    plus the measured stack peak within SRAM.
    """

    device: str
    compiler: str
    library_flash_bytes: int
    library_sram_bytes: int
    program_flash_bytes: int
    program_sram_bytes: int
    stack_peak_bytes: int | None = None
    cycles: float | None = None
    latency_ms: float | None = None
    matches_host: bool | None = None
    sketch_flash_bytes: int | None = None
    sketch_sram_bytes: int | None = None
    fits: bool | None = None
    warnings: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _sketch_sizes(c_dir: Path, profile: DeviceProfile, work_dir: Path) -> Sizes | None:
    """The export's Arduino sketch built as a user would (library files copied beside it), or ``None``."""
    sketches = sorted((c_dir / "arduino").glob("*/*.ino"))
    if profile.toolchain is None or profile.toolchain.arduino_core is None or not sketches:
        return None
    folder = work_dir / "sketch" / sketches[0].parent.name
    folder.mkdir(parents=True, exist_ok=True)
    for f in [sketches[0], *c_dir.glob("*.[ch]")]:
        shutil.copy(f, folder / f.name)
    sketch = folder / sketches[0].name
    return build_sketch(sketch, work_dir / "sketch-build", profile, extra_sources=sorted(folder.glob("*.c")))


def fit_violation(profile: DeviceProfile, flash: int, sram: int, stack: int | None) -> float | None:
    """A deployed program's fit as a constraint value (≤ 0 fits): the larger of its Flash over Flash less
    the bootloader and its static SRAM + stack peak over SRAM, less 1; ``None`` without both limits."""
    if profile.flash_bytes is None or profile.sram_bytes is None:
        return None
    return max(flash / (profile.flash_bytes - profile.bootloader_bytes), (sram + (stack or 0)) / profile.sram_bytes) - 1


def _fits(profile: DeviceProfile, flash: int, sram: int, stack: int | None) -> bool | None:
    violation = fit_violation(profile, flash, sram, stack)
    return None if violation is None else violation <= 0


def check_library(
    c_dir: Path,
    profile: DeviceProfile,
    work_dir: Path,
    *,
    samples: np.ndarray | None = None,
    queries: list[str] | None = None,
    num_classes: int = 0,
) -> LibraryCheck:
    """Build ``c_dir`` for ``profile``, run it where a simulator is, and compare with the host build.

    ``samples`` (raw inputs) and ``queries`` (text models) are what the firmware runs; keep them few on
    a simulated board (each inference is simulated cycle by cycle).
    """
    board = run_library(
        c_dir, profile, work_dir / profile.name, samples=samples, queries=queries, num_classes=num_classes
    )
    sim = board.simulation
    matches = None
    if sim is not None:
        host = run_library(
            c_dir, load_profile("ort-cpu"), work_dir / "host", samples=samples, queries=queries, num_classes=num_classes
        )
        matches = board.classes == host.classes and board.replies == host.replies
        matches = matches and bool(np.array_equal(board.scores, host.scores))
    cycles = _cycles_per_inference(board, queries)
    sketch = _sketch_sizes(c_dir, profile, work_dir)
    program = sketch or board.build.program
    stack = None if sim is None else sim.stack_peak_bytes
    warnings = board.build.warnings
    used = board.build.program.static_sram_bytes + (stack or 0)
    if profile.sram_bytes is not None and used > profile.sram_bytes:
        warnings += (f"the measuring program needs {used} B of SRAM (> {profile.sram_bytes} B): its results are void",)
    return LibraryCheck(
        device=profile.name,
        compiler=board.build.compiler,
        library_flash_bytes=board.build.library.flash_bytes,
        library_sram_bytes=board.build.library.static_sram_bytes,
        program_flash_bytes=board.build.program.flash_bytes,
        program_sram_bytes=board.build.program.static_sram_bytes,
        stack_peak_bytes=stack,
        cycles=cycles,
        latency_ms=None if cycles is None or profile.clock_mhz is None else cycles / (profile.clock_mhz * 1e3),
        matches_host=matches,
        sketch_flash_bytes=None if sketch is None else sketch.flash_bytes,
        sketch_sram_bytes=None if sketch is None else sketch.static_sram_bytes,
        fits=_fits(profile, program.flash_bytes, program.static_sram_bytes, stack),
        warnings=warnings,
    )


def _cycles_per_inference(run: LibraryRun, queries: list[str] | None) -> float | None:
    """Mean cycles of one inference: per sample, or per generated character (its end symbol included)."""
    if run.simulation is None or not run.simulation.region_cycles:
        return None
    regions = run.simulation.region_cycles
    if queries:
        forwards = sum(len(r) + 1 for r in run.replies)
        return float(sum(regions[-len(queries) :])) / forwards
    return float(np.mean(regions))


__all__ = [
    "CHAT_QUERIES",
    "SIMULATED",
    "fit_violation",
    "is_simulated",
    "layer_markers",
    "LibraryCheck",
    "LibraryRun",
    "check_library",
    "firmware_source",
    "host_predictions",
    "run_library",
]
