"""Building C with the boards' own compilers and running AVR builds cycle-accurately in simavr."""

from __future__ import annotations

import shutil
import textwrap

import pytest

from jointnas.devices import BuildError, build, load_profile, sim_include_dir, simulate_avr
from jointnas.spaces import UserInputError

UNO = load_profile("arduino-uno")
M7 = load_profile("stm32f746")
needs_avr = pytest.mark.skipif(
    not (shutil.which("avr-gcc") and shutil.which("avr-size")),
    reason="avr-gcc not installed (apt-get install gcc-avr avr-libc binutils-avr)",
)
needs_simavr = pytest.mark.skipif(
    not __import__("pathlib").Path("/usr/include/simavr/sim_avr.h").is_file(),
    reason="libsimavr not installed (apt-get install simavr libsimavr-dev libelf-dev)",
)
needs_arm = pytest.mark.skipif(
    not shutil.which("arm-none-eabi-gcc"),
    reason="arm-none-eabi-gcc not installed (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)",
)

LIBRARY = """
#include <stdint.h>
#include "lib.h"
static const uint8_t table[300] = {1, 2, 3};
uint16_t lib_sum(uint16_t n) { uint16_t s = 0; for (uint16_t i = 0; i < n; i++) s += table[i % 300]; return s; }
"""
HEADER = "#include <stdint.h>\nuint16_t lib_sum(uint16_t n);\n"
AVR_MAIN = """
#include <stdint.h>
#include "jointnas_sim.h"
#include "lib.h"
volatile uint8_t sink;
static void deep(void) {
    volatile uint8_t buf[300];
    for (uint16_t i = 0; i < 300; i++) buf[i] = (uint8_t)i;
    sink = buf[7];
}
int main(void) {
    for (uint8_t r = 1; r <= 2; r++) {
        JOINTNAS_SIM_BEGIN();
        uint16_t s = lib_sum(100 * r);
        JOINTNAS_SIM_END();
        JOINTNAS_SIM_PUT(s & 0xff);
    }
    deep();
    JOINTNAS_SIM_EXIT();
    return 0;
}
"""


def _write(tmp_path, main: str):
    (tmp_path / "lib.h").write_text(HEADER)
    (tmp_path / "lib.c").write_text(textwrap.dedent(LIBRARY))
    (tmp_path / "main.c").write_text(textwrap.dedent(main))
    return [tmp_path / "main.c", tmp_path / "lib.c"]


@needs_avr
def test_avr_build_reports_program_and_library_sizes(tmp_path):
    sources = _write(tmp_path, AVR_MAIN)
    b = build(sources, UNO, tmp_path / "out", library=[sources[1]], include_dirs=[tmp_path, sim_include_dir()])
    assert b.elf.is_file() and b.warnings == () and "avr-gcc" in b.compiler
    # The library's objects hold the 300-byte table; a plain const on AVR is linked into .data (SRAM):
    # only the whole program's figure shows that (PROGMEM keeps it in Flash).
    assert b.library.flash_bytes >= 300 and b.program.data == 300
    assert b.program.flash_bytes > b.library.flash_bytes and b.program.static_sram_bytes >= 300


@needs_avr
@needs_simavr
def test_simavr_counts_regions_output_and_stack_deterministically(tmp_path):
    sources = _write(tmp_path, AVR_MAIN)
    b = build(sources, UNO, tmp_path / "out", library=[sources[1]], include_dirs=[tmp_path, sim_include_dir()])
    first, second = simulate_avr(b.elf, UNO), simulate_avr(b.elf, UNO)
    assert first == second  # cycle-accurate and deterministic
    assert first.end == "done" and len(first.region_cycles) == 2
    # Twice the loop iterations: about twice the cycles (the call overhead is small).
    assert 1.8 < first.region_cycles[1] / first.region_cycles[0] < 2.1
    assert first.region_ms(0) == pytest.approx(first.region_cycles[0] / 16e3)
    assert first.output == bytes([sum([1, 2, 3]) & 0xFF] * 2)
    assert 300 <= first.stack_peak_bytes < 330  # the 300-byte local buffer plus a few frames


@needs_avr
def test_compile_errors_and_missing_tools_are_one_line(tmp_path, monkeypatch):
    sources = _write(tmp_path, "int main(void) { return undefined_symbol; }\n")
    with pytest.raises(BuildError, match="compiling main.c failed: .*undefined_symbol"):
        build(sources, UNO, tmp_path / "out", include_dirs=[tmp_path])
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(UserInputError, match=r"^avr-gcc and avr-size not found .*apt-get install -y gcc-avr") as exc:
        build(sources, UNO, tmp_path / "out")
    assert "\n" not in str(exc.value)


@needs_arm
def test_cortex_m7_build_links_with_newlib_nano(tmp_path):
    sources = _write(tmp_path, '#include "lib.h"\nint main(void) { return (int)lib_sum(10); }\n')
    b = build(sources, M7, tmp_path / "out", library=[sources[1]], include_dirs=[tmp_path])
    assert b.warnings == () and "arm-none-eabi-gcc" in b.compiler
    # On Cortex-M a const table stays in Flash (.rodata, counted in text): nothing of it in SRAM.
    assert b.library.data == 0 and b.library.text >= 300


def test_a_device_without_toolchain_is_refused_with_the_fix():
    with pytest.raises(UserInputError, match="no \\[toolchain\\] table"):
        build([], load_profile("rpi4"), __import__("pathlib").Path("/nonexistent"))


needs_core = pytest.mark.skipif(
    not __import__("pathlib").Path(str(UNO.toolchain.arduino_core), "cores", "arduino", "Arduino.h").is_file(),
    reason="the Arduino AVR core is not installed (apt-get install arduino-core-avr)",
)


@needs_avr
@needs_core
def test_the_arduino_core_fits_in_what_the_uno_profile_reserves_for_it(tmp_path):
    from jointnas.devices.arduino import arduino_core_sizes

    core = arduino_core_sizes(UNO, tmp_path)
    # Measured 2,544 B Flash and 207 B SRAM with Debian's core 1.8.7: a Serial sketch, not an empty one.
    assert 1500 < core.flash_bytes < UNO.runtime_flash_bytes - 512  # the rest of the reserve: bootloader
    assert 150 < core.static_sram_bytes < UNO.runtime_sram_bytes
