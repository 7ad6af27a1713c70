"""Host builds of generated C libraries for the cgen tests (gcc, -std=c99 -Wall -Wextra -Werror)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from jointnas.compression import CLibrary

GCC = shutil.which("gcc")
needs_gcc = pytest.mark.skipif(GCC is None, reason="no host gcc")
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror"]
DRIVER = Path(__file__).with_name("cgen_driver.c")


def build(lib: CLibrary, exe: Path, sources: list[Path] | None = None, flags: tuple[str, ...] = ("-O2",)) -> Path:
    """Compile the library (and ``sources``, default the scores driver) into ``exe``; warnings fail."""
    extra = [DRIVER] if sources is None else sources
    cmd = [GCC, *STRICT, *flags, "-I", str(lib.directory), *map(str, lib.sources), *map(str, extra), "-o", str(exe)]
    compile_c(cmd)
    return exe


def compile_c(cmd: list[str]) -> None:
    """Run a compiler command; a warning or error fails the test with the compiler's message."""
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0 or done.stderr.strip():
        pytest.fail(f"{Path(cmd[0]).name} failed:\n{done.stderr}")


def c_scores(lib: CLibrary, raw: np.ndarray, workdir: Path) -> np.ndarray:
    """Scores of ``jointnas_predict`` on raw samples ``raw`` (N × …), one row per sample."""
    exe = build(lib, workdir / "driver")
    samples, scores = workdir / "samples.bin", workdir / "scores.bin"
    samples.write_bytes(np.ascontiguousarray(raw, dtype="<f4").tobytes())
    subprocess.run([str(exe), str(samples), str(scores)], check=True)
    return np.frombuffer(scores.read_bytes(), dtype="<f4").reshape(len(raw), lib.num_classes)


CROSS = {
    "avr-gcc": ["-mmcu=atmega328p", "-Os"],
    "arm-none-eabi-gcc": ["-mcpu=cortex-m7", "-mthumb", "-Os"],
}
"""Microcontroller compilers the library must build with, warning-free, when they are installed."""


def cross_compile(lib: CLibrary, workdir: Path) -> list[str]:
    """Compile every library source with each installed microcontroller compiler; the compilers used."""
    used = []
    for compiler, flags in CROSS.items():
        if shutil.which(compiler) is None:
            continue
        for source in lib.sources:
            obj = workdir / f"{compiler}-{source.stem}.o"
            compile_c([compiler, *flags, *STRICT, "-I", str(lib.directory), "-c", str(source), "-o", str(obj)])
        used.append(compiler)
    return used


def weight_symbol_bytes(lib: CLibrary, workdir: Path) -> int:
    """Bytes of the symbols in the compiled ``jointnas_weights.c`` (what the library stores)."""
    obj = workdir / "weights.o"
    compile_c([GCC, *STRICT, "-c", str(lib.directory / "jointnas_weights.c"), "-o", str(obj)])
    table = subprocess.run(["nm", "-S", str(obj)], capture_output=True, text=True, check=True).stdout
    return sum(int(line.split()[1], 16) for line in table.splitlines() if len(line.split()) == 4)
