"""Run an exported C library on a board's build: compile it with a measuring ``main``, simulate, read back.

The C generator (`jointnas.compression.cgen`) and the toolchains (`jointnas.devices.toolchain`) do not
know each other; this module hands one to the other. `run_library` builds ``c/`` with a small firmware
``main`` (`firmware_source`) for a device profile and runs it: in simavr for AVR boards (cycles of each
inference, stack peak), as a host program for the ``ort-cpu`` profile. The firmware streams its results
through one output macro, so the host build and the simulated board are compared byte for byte.

Output protocol per sample: one class byte, then the scores as little-endian float32; per query: the
reply's characters and a newline.
"""

from __future__ import annotations

import struct
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from jointnas.devices import Build, DeviceProfile, Simulation, build, sim_include_dir, simulate_avr

_FIRMWARE = r"""/* Measuring main of jointnas (search/tools/mcu.py): runs the library on fixed inputs. */
#include <stdint.h>
#include <string.h>
#include "jointnas_model.h"
#ifdef __AVR__
#include <avr/pgmspace.h>
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

static void put_float(float v) {
    uint8_t b[4];
    memcpy(b, &v, 4);
    for (uint8_t i = 0; i < 4; i++) OUT(b[i]);
}

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
    """The measuring ``main``: ``samples`` (raw inputs, one per row) and ``queries`` compiled in (PROGMEM)."""
    rows = [] if samples is None else np.asarray(samples, dtype=np.float32).reshape(len(samples), -1)
    texts = [q[:63] for q in queries or ()]
    body = ",\n".join("    {" + ", ".join(f"{v!r}f" for v in row.tolist()) + "}" for row in rows)
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
) -> LibraryRun:
    """Build ``c_dir`` with the measuring main for ``profile`` and run it (simavr, or natively on the host).

    ``num_classes`` is the library's ``JOINTNAS_NUM_CLASSES`` (needed to read the scores back).
    """
    work_dir.mkdir(parents=True, exist_ok=True)
    main = work_dir / "jointnas_measure.c"
    main.write_text(firmware_source(samples, queries))
    library = sorted(c_dir.glob("*.c"))
    b = build([main, *library], profile, work_dir, library=library, include_dirs=[c_dir, sim_include_dir()])
    if profile.toolchain is not None and profile.toolchain.simulator == "simavr":
        sim = simulate_avr(b.elf, profile)
        output = sim.output
    else:
        sim, output = None, subprocess.run([str(b.elf)], capture_output=True, check=True).stdout
    n_samples = 0 if samples is None else len(samples)
    classes, scores, replies = _parse(output, n_samples, num_classes, len(queries or ()))
    return LibraryRun(b, sim, classes, scores, replies)


__all__ = ["LibraryRun", "firmware_source", "run_library"]
