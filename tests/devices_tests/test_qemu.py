"""Cortex-M builds run in QEMU (mps2-an500, -icount): exact, repeatable instruction counts per region."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from jointnas.devices import board, build, load_profile, sim_include_dir
from jointnas.devices.qemu import LAYER_MARKERS, simulate_qemu
from jointnas.spaces import UserInputError

from ..search_tests.test_mcu_run import _digits_library

M7, HOST = load_profile("stm32f746"), load_profile("ort-cpu")
QEMU_M7, SIZED_M7 = (
    M7.model_copy(update={"toolchain": M7.toolchain.model_copy(update={"simulator": s})}) for s in ("qemu", None)
)
needs_qemu = pytest.mark.skipif(
    not (shutil.which("qemu-system-arm") and shutil.which("arm-none-eabi-gcc")),
    reason="qemu-system-arm or arm-none-eabi-gcc not installed "
    "(apt-get install -y qemu-system-arm gcc-arm-none-eabi libnewlib-arm-none-eabi)",
)

_FIRMWARE = r"""
#include <stdint.h>
#include "jointnas_sim.h"
static volatile uint32_t sink;
static volatile float fsink = 1.5f;
__attribute__((noinline)) static void work(uint32_t n) { for (uint32_t i = 0; i < n; i++) sink += i; }
int main(void) {
    JOINTNAS_SIM_BEGIN(); work(N); JOINTNAS_SIM_END();
    JOINTNAS_SIM_BEGIN(); work(2 * N); JOINTNAS_SIM_END();
    JOINTNAS_SIM_BEGIN(); work(N); JOINTNAS_SIM_SPLIT(); work(3 * N); JOINTNAS_SIM_END();
    fsink = fsink * 2.0f; /* the hard-float ABI: the FPU must be on */
    JOINTNAS_SIM_PUT('o'); JOINTNAS_SIM_PUT(0); JOINTNAS_SIM_PUT(255); JOINTNAS_SIM_PUT((int)fsink);
    if (CRASH == 1) (*(void (*)(void))0x30000001U)(); /* no memory there: a fault */
    while (CRASH == 2) sink++; /* never exits */
    JOINTNAS_SIM_EXIT();
    return 0;
}
"""


def _firmware(tmp_path: Path, n: int, crash: int = 0) -> Path:
    tmp_path.mkdir(parents=True, exist_ok=True)
    src = tmp_path / "main.c"
    src.write_text(_FIRMWARE)
    defines = {"N": str(n), "CRASH": str(crash)}
    b = build([src], QEMU_M7, tmp_path / "out", include_dirs=[sim_include_dir()], defines=defines)
    assert not b.warnings
    return b.elf


@needs_qemu
def test_regions_count_instructions_exactly_and_repeatably(tmp_path):
    elf = _firmware(tmp_path, 1000)
    first, second = simulate_qemu(elf, QEMU_M7), simulate_qemu(elf, QEMU_M7)
    assert first == second
    assert first.end == "done" and first.output == b"o\x00\xff\x03"
    assert len(first.region_cycles) == 4  # the split made two regions of the third pair
    r1, r2, r3a, r3b = first.region_cycles
    per_1000 = r2 - r1  # the loop body's instructions times 1000; the call overhead cancels
    assert per_1000 % 1000 == 0 and 3 <= per_1000 // 1000 <= 10
    assert 0 < r1 - per_1000 < 40 and r2 / r1 == pytest.approx(2, rel=0.01)
    assert r3a - r1 == pytest.approx(3, abs=3) and r3b - r3a == pytest.approx(2 * per_1000, abs=6)
    assert first.total_cycles > sum(first.region_cycles)
    assert 0 < first.stack_peak_bytes < 512 and first.clock_hz == 216e6


@needs_qemu
def test_counts_scale_linearly_with_the_work(tmp_path):
    small = simulate_qemu(_firmware(tmp_path / "a", 1000), QEMU_M7).region_cycles
    large = simulate_qemu(_firmware(tmp_path / "b", 10_000), QEMU_M7).region_cycles
    assert large[1] - large[0] == 10 * (small[1] - small[0])
    assert large[0] - (large[1] - large[0]) == small[0] - (small[1] - small[0])  # same fixed overhead


@needs_qemu
def test_cycles_per_instruction_scales_the_counts(tmp_path):
    elf = _firmware(tmp_path, 1000)
    spec = QEMU_M7.toolchain.model_copy(update={"cycles_per_instruction": 0.5})
    half = simulate_qemu(elf, QEMU_M7.model_copy(update={"toolchain": spec}))
    full = simulate_qemu(elf, QEMU_M7)
    assert half.region_cycles == tuple(round(c * 0.5) for c in full.region_cycles)


@needs_qemu
def test_a_fault_ends_the_run_as_crashed(tmp_path):
    sim = simulate_qemu(_firmware(tmp_path, 100, crash=1), QEMU_M7)
    assert sim.end == "crashed" and len(sim.region_cycles) == 4 and sim.output == b"o\x00\xff\x03"


@needs_qemu
def test_a_run_that_never_exits_stops_at_max_seconds(tmp_path):
    sim = simulate_qemu(_firmware(tmp_path, 100, crash=2), QEMU_M7, max_seconds=1.0)
    assert sim.end == "max_seconds" and len(sim.region_cycles) == 4 and sim.total_cycles == sum(sim.region_cycles)


def test_a_profile_without_qemu_is_refused(tmp_path):
    with pytest.raises(UserInputError, match="has no QEMU simulator"):
        simulate_qemu(tmp_path / "x.elf", SIZED_M7)


def test_missing_qemu_names_the_package(tmp_path, monkeypatch):
    real = shutil.which
    monkeypatch.setattr(shutil, "which", lambda tool: None if tool == "qemu-system-arm" else real(tool))
    if real("arm-none-eabi-gcc") is None:
        pytest.skip("arm-none-eabi-gcc not installed (apt-get install -y gcc-arm-none-eabi)")
    with pytest.raises(UserInputError, match="apt-get install -y qemu-system-arm"):
        simulate_qemu(tmp_path / "x.elf", QEMU_M7)


runs_qemu = pytest.mark.skipif(
    not hasattr(board, "simulate_qemu"), reason='devices.board.run_library has no "qemu" runner yet (integration)'
)


@needs_qemu
@runs_qemu
def test_an_exported_mlp_on_qemu_equals_the_host_build(tmp_path):
    model, task = _digits_library(tmp_path / "c")
    raw = task.normalization.invert(task.x_test[:4].numpy(), task.input_shape)
    m7 = board.run_library(tmp_path / "c", QEMU_M7, tmp_path / "m7", samples=raw, num_classes=10)
    host = board.run_library(tmp_path / "c", HOST, tmp_path / "host", samples=raw, num_classes=10)
    assert m7.simulation.end == "done" and len(m7.simulation.region_cycles) == 4
    assert simulate_qemu(m7.build.elf, QEMU_M7) == m7.simulation  # the same counts again
    assert m7.classes == host.classes
    np.testing.assert_array_equal(m7.scores, host.scores)
    with torch.no_grad():
        assert list(m7.classes) == model(task.x_test[:4]).argmax(1).tolist()
    cycles = m7.simulation.region_cycles
    assert max(cycles) - min(cycles) < 0.01 * min(cycles)  # only the clamps and the argmax depend on the data
    assert min(m7.simulation.region_cycles) > 5_000 and 0 < m7.simulation.stack_peak_bytes < 4_096
    traced = board.run_library(
        tmp_path / "c", QEMU_M7, tmp_path / "traced", samples=raw[:1], num_classes=10, defines=LAYER_MARKERS
    )
    layers = traced.simulation.region_cycles
    assert len(layers) > 2 and traced.classes == m7.classes[:1]
    assert sum(layers) == pytest.approx(m7.simulation.region_cycles[0], rel=0.02)  # splits cost a few calls


def test_the_layer_markers_are_the_headers_split():
    header = (sim_include_dir().parent / "qemu" / "jointnas_sim_arm.h").read_text()
    (expansion,) = LAYER_MARKERS.values()
    assert f"#define JOINTNAS_SIM_SPLIT() {expansion}\n" in header
