"""Build C sources with a board's own compiler, read their sizes, and run AVR builds in simavr.

The profile's ``[toolchain]`` table (`ToolchainSpec`) says which compiler, flags and size tool a board
uses; nothing here names a board. `build` compiles each source to an object, links them, and reads
text/data/bss in bytes with the size tool: for the whole ELF and for the objects the caller calls the
library (the model's own Flash, whatever ``main`` the caller links with it). `simulate_avr` runs an AVR
ELF in simavr through a small harness on libsimavr (``devices/simavr/harness.c``, compiled once with the
host ``gcc`` and cached) that counts the cycles between the markers of ``devices/simavr/jointnas_sim.h``
and the lowest stack pointer of the run.

Example:
    >>> from jointnas.devices import load_profile
    >>> load_profile("arduino-uno").toolchain.sim_mcu
    'atmega328p'
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from jointnas.spaces import UserInputError

from .profile import DeviceProfile, ToolchainSpec

HARNESS_PACKAGES = ("simavr", "libsimavr-dev", "libelf-dev", "gcc")
"""Debian packages the simavr harness needs on the host."""


class BuildError(UserInputError):
    """The compiler or linker refused the sources; the message carries its first lines."""


@dataclass(frozen=True)
class Sizes:
    """Section sizes in bytes as the size tool reports them (Berkeley format)."""

    text: int
    data: int
    bss: int

    @property
    def flash_bytes(self) -> int:
        """What the program takes in Flash: code and constants plus the initial values of ``.data``."""
        return self.text + self.data

    @property
    def static_sram_bytes(self) -> int:
        """What the program takes in SRAM before any stack: ``.data`` + ``.bss``."""
        return self.data + self.bss


@dataclass(frozen=True)
class Build:
    """A linked program: its ELF, whole-program sizes, the library objects' sizes and the compiler."""

    elf: Path
    program: Sizes
    library: Sizes
    compiler: str
    warnings: tuple[str, ...] = field(default=())


@dataclass(frozen=True)
class Simulation:
    """One simavr run of a firmware.

    ``region_cycles`` are the cycles of each marked region in order; ``stack_peak_bytes`` is how far
    below RAMEND the stack pointer went (the deepest call chain, its locals included).
    """

    end: str
    total_cycles: int
    region_cycles: tuple[int, ...]
    stack_peak_bytes: int
    output: bytes
    clock_hz: float

    def region_ms(self, index: int = 0) -> float:
        """Milliseconds of one marked region at the simulated clock."""
        return self.region_cycles[index] / self.clock_hz * 1e3


def toolchain_of(profile: DeviceProfile) -> ToolchainSpec:
    """The profile's toolchain, with its tools present; `UserInputError` naming the packages otherwise."""
    spec = profile.toolchain
    if spec is None:
        raise UserInputError(f"device {profile.name!r} has no [toolchain] table; add one to its profile to build C")
    missing = [tool for tool in (spec.cc, spec.size) if shutil.which(tool) is None]
    if missing:
        raise UserInputError(
            f"{' and '.join(missing)} not found for device {profile.name!r}; "
            f"install it: apt-get install -y {' '.join(spec.packages)}"
        )
    return spec


def _run(cmd: list[str], what: str) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        lines = [line for line in (res.stderr or res.stdout).splitlines() if line.strip()][:3]
        raise BuildError(f"{what} failed: {' | '.join(lines)}")
    return res


def read_sizes(size_tool: str, files: list[Path]) -> Sizes:
    """Summed text/data/bss of ``files`` (objects or an ELF), read with ``size_tool`` (Berkeley format)."""
    if not files:
        return Sizes(0, 0, 0)
    out = _run([size_tool, "-B", *map(str, files)], "size").stdout.splitlines()[1:]
    rows = [line.split() for line in out if line.strip()]
    return Sizes(*(sum(int(row[i]) for row in rows) for i in range(3)))


def build(
    sources: list[Path],
    profile: DeviceProfile,
    out_dir: Path,
    *,
    library: list[Path] | None = None,
    include_dirs: list[Path] | None = None,
    defines: dict[str, str] | None = None,
) -> Build:
    """Compile ``sources`` for ``profile`` (one object each), link ``out_dir/firmware.elf``, read sizes.

    Args:
        sources: C files of the program (the caller's ``main`` among them).
        library: the subset of ``sources`` whose objects are "the library" (`Build.library`).
        include_dirs, defines: extra ``-I`` folders and ``-D`` macros.
    Raises:
        UserInputError: the toolchain is missing (one line naming the packages); `BuildError` when a
        compile or the link fails.
    """
    spec = toolchain_of(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    flags = [*spec.cflags, *(f"-I{d}" for d in include_dirs or ()), *(f"-D{k}={v}" for k, v in (defines or {}).items())]
    objects, warnings = {}, []
    for src in sources:
        obj = out_dir / f"{Path(src).stem}.o"
        res = _run([spec.cc, *flags, "-c", str(src), "-o", str(obj)], f"compiling {Path(src).name}")
        warnings += [line for line in res.stderr.splitlines() if "warning:" in line]
        objects[Path(src)] = obj
    elf = out_dir / "firmware.elf"
    _run([spec.cc, *spec.cflags, *objects.values(), *spec.ldflags, "-o", str(elf)], "linking")
    lib_objects = [objects[Path(s)] for s in library or ()]
    version = _run([spec.cc, "--version"], "version").stdout.splitlines()[0]
    return Build(elf, read_sizes(spec.size, [elf]), read_sizes(spec.size, lib_objects), version, tuple(warnings))


def _harness() -> Path:
    """The simavr harness binary, compiled on first use into the user cache (keyed by its source hash)."""
    source = resources.files("jointnas.devices") / "simavr" / "harness.c"
    text = source.read_bytes()
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "jointnas"
    exe = cache / f"simavr-harness-{hashlib.sha256(text).hexdigest()[:12]}"
    if exe.is_file():
        return exe
    if shutil.which("gcc") is None or not Path("/usr/include/simavr/sim_avr.h").is_file():
        raise UserInputError(
            f"the simavr harness needs libsimavr; install it: apt-get install -y {' '.join(HARNESS_PACKAGES)}"
        )
    cache.mkdir(parents=True, exist_ok=True)
    src = cache / f"{exe.name}.c"
    src.write_bytes(text)
    tmp = exe.with_suffix(f".{os.getpid()}")
    _run(
        ["gcc", "-O2", "-std=c99", "-Wall", "-Wextra", str(src), "-o", str(tmp), "-lsimavr", "-lelf"],
        "building the harness",
    )
    tmp.replace(exe)  # atomic: parallel test workers never run a half-written binary
    return exe


SIM_LAYER_MARKERS = {
    "JN_TRACE(layer,data,type,count)": "(*(volatile unsigned char *)0x3E = 2, *(volatile unsigned char *)0x3E = 1)"
}
"""``-D`` macros for `build`: the generated library's per-call hook ``JN_TRACE`` ends the measured region
and starts the next (GPIOR0 at data address 0x3E: 2 then 1, the harness protocol), so the simulator
counts the cycles of each kernel call, and of the input before the first, separately."""


def sim_include_dir() -> Path:
    """The folder of ``jointnas_sim.h`` (firmware markers), for ``build(include_dirs=...)``."""
    return Path(str(resources.files("jointnas.devices") / "simavr"))


def simulate_avr(elf: Path, profile: DeviceProfile, *, max_cycles: int = 2_000_000_000) -> Simulation:
    """Run ``elf`` in simavr to its end (``cli; sleep``) or ``max_cycles``; cycles, stack peak, output.

    Raises:
        UserInputError: the profile has no simavr simulator, or simavr is missing.
    """
    spec = toolchain_of(profile)
    if spec.simulator != "simavr" or not spec.sim_mcu or profile.clock_mhz is None:
        raise UserInputError(f"device {profile.name!r} has no simavr simulator in its [toolchain] table")
    clock_hz = profile.clock_mhz * 1e6
    res = _run([str(_harness()), str(elf), spec.sim_mcu, str(int(clock_hz)), str(max_cycles)], "simavr")
    report = json.loads(res.stdout.strip().splitlines()[-1])
    return Simulation(
        end=report["end"],
        total_cycles=int(report["total_cycles"]),
        region_cycles=tuple(int(c) for c in report["regions"]),
        stack_peak_bytes=int(report["ramend"]) - int(report["lowest_sp"]),
        output=bytes.fromhex(report["output_hex"]),
        clock_hz=clock_hz,
    )


__all__ = [
    "Build",
    "BuildError",
    "Simulation",
    "Sizes",
    "build",
    "read_sizes",
    "sim_include_dir",
    "simulate_avr",
    "toolchain_of",
]
