"""Build an Arduino sketch against the board's Arduino core, as the Arduino IDE does, and read its sizes.

The core is Debian's ``arduino-core-avr`` (the profile's ``toolchain.arduino_core``); the flags are the
IDE's (``platform.txt`` of that core: ``-Os``, LTO, section garbage collection). Used to check that the
sketches `jointnas export` writes compile, and to measure what the Arduino core itself takes (a minimal
sketch with Serial), which the Flash and SRAM objectives add to the model library.

Example:
    >>> from jointnas.devices import load_profile
    >>> load_profile("arduino-uno").toolchain.arduino_variant
    'standard'
"""

from __future__ import annotations

import shutil
from pathlib import Path

from jointnas.spaces import UserInputError

from .profile import DeviceProfile
from .toolchain import Sizes, _run, read_sizes, toolchain_of

MINIMAL_SERIAL_SKETCH = """\
void setup() { Serial.begin(9600); }
void loop() { if (Serial.available()) Serial.println(Serial.read()); }
"""
"""The smallest sketch a model sketch builds on: Serial in and out (the Arduino core's own cost)."""


# The IDE's C++ flags; Debian's avr-gcc 5.4 <float.h> defines DECIMAL_DIG for C99 only, which the
# core's WString.cpp uses: give it the compiler's own value.
CXX_FLAGS = ["-std=gnu++11", "-fno-exceptions", "-fno-threadsafe-statics", "-fpermissive"]
CXX_FLAGS += ["-DDECIMAL_DIG=__DECIMAL_DIG__"]


def _flags(profile: DeviceProfile) -> tuple[list[str], Path]:
    spec = toolchain_of(profile)
    core = Path(spec.arduino_core or "")
    if not spec.arduino_core or not (core / "cores" / "arduino" / "Arduino.h").is_file():
        raise UserInputError(
            f"the Arduino core for {profile.name!r} is not installed at {core}; apt-get install -y arduino-core-avr"
        )
    if shutil.which("avr-g++") is None:
        raise UserInputError("avr-g++ not found; install it: apt-get install -y gcc-avr avr-libc")
    mcu = spec.sim_mcu or ""
    flags = [f"-mmcu={mcu}", f"-DF_CPU={int((profile.clock_mhz or 16) * 1e6)}L", "-DARDUINO=10819"]
    flags += ["-DARDUINO_ARCH_AVR", "-Os", "-w", "-ffunction-sections", "-fdata-sections", "-flto"]
    flags += [f"-I{core / 'cores' / 'arduino'}", f"-I{core / 'variants' / (spec.arduino_variant or 'standard')}"]
    return flags, core / "cores" / "arduino"


def build_sketch(sketch: Path, out_dir: Path, profile: DeviceProfile, *, extra_sources: list[Path] = ()) -> Sizes:
    """Compile ``sketch`` (an ``.ino``) with the Arduino core and ``extra_sources``; sizes of the linked ELF.

    Raises:
        UserInputError: the core or avr-g++ is missing (one line naming the package); `BuildError` when
        a compile or the link fails.
    """
    flags, core = _flags(profile)
    out_dir.mkdir(parents=True, exist_ok=True)
    main = out_dir / f"{sketch.stem}.ino.cpp"
    main.write_text(f'#include <Arduino.h>\n#line 1 "{sketch.name}"\n{sketch.read_text()}')
    sources = [main, *extra_sources, *sorted(core.glob("*.c")), *sorted(core.glob("*.cpp"))]
    objects = []
    for i, src in enumerate(sources):
        cc = "avr-g++" if src.suffix == ".cpp" else "avr-gcc"
        lang = CXX_FLAGS if cc == "avr-g++" else ["-std=gnu11"]
        obj = out_dir / f"{i:02d}-{src.stem}.o"
        _run([cc, *flags, *lang, f"-I{sketch.parent}", "-c", str(src), "-o", str(obj)], f"compiling {src.name}")
        objects.append(obj)
    elf = out_dir / f"{sketch.stem}.elf"
    mcu = next(f for f in flags if f.startswith("-mmcu="))
    link = ["avr-gcc", mcu, "-Os", "-flto", "-fuse-linker-plugin", "-Wl,--gc-sections", *map(str, objects)]
    _run([*link, "-o", str(elf), "-lm"], "linking")
    return read_sizes(toolchain_of(profile).size, [elf])


def arduino_core_sizes(profile: DeviceProfile, work_dir: Path) -> Sizes:
    """Flash and static SRAM of `MINIMAL_SERIAL_SKETCH` built for ``profile`` (bytes)."""
    sketch = work_dir / "minimal" / "minimal.ino"
    sketch.parent.mkdir(parents=True, exist_ok=True)
    sketch.write_text(MINIMAL_SERIAL_SKETCH)
    return build_sketch(sketch, work_dir / "minimal-build", profile)


__all__ = ["MINIMAL_SERIAL_SKETCH", "arduino_core_sizes", "build_sketch"]
