"""An exported C library runs on the Uno's build in simavr and computes exactly what the host build computes."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from jointnas.compression import PipelineConfig, generate_c_library, run_pipeline
from jointnas.devices import load_profile
from jointnas.devices.board import check_library, host_predictions, run_library

from ..compression_tests.test_cgen import _candidate, _task
from ..compression_tests.test_cgen_tinychat import _library

UNO, HOST = load_profile("arduino-uno"), load_profile("ort-cpu")
UNO_FLASH, UNO_RAM = 32_256, 2_048  # 32 KB less the bootloader; all of the SRAM
needs_avr = pytest.mark.skipif(
    not (shutil.which("avr-gcc") and Path("/usr/include/simavr/sim_avr.h").is_file()),
    reason="avr-gcc or libsimavr not installed (apt-get install gcc-avr avr-libc simavr libsimavr-dev libelf-dev)",
)


@needs_avr
@pytest.mark.parametrize("bits", [8, 2])
def test_classifier_on_the_uno_equals_the_host_build(bits, tmp_path):
    task = _task("digits")
    candidate = _candidate("mlp", task.input_shape, bits, 8)
    config = PipelineConfig(train_epochs=5, finetune_epochs=2, steps=["quantize", "finetune"], lr=1e-2)
    torch.manual_seed(0)
    model = run_pipeline(candidate, task.x_train, task.y_train, task.x_val, task.y_val, config, seed=0).model
    lib = generate_c_library(
        model, task.input_shape, tmp_path / "c", normalization=task.normalization, calibration=task.x_train[:512]
    )
    raw = task.normalization.invert(task.x_test[:6].numpy(), task.input_shape)
    avr = run_library(tmp_path / "c", UNO, tmp_path / "avr", samples=raw, num_classes=10)
    host = run_library(tmp_path / "c", HOST, tmp_path / "host", samples=raw, num_classes=10)
    assert avr.simulation.end == "done" and len(avr.simulation.region_cycles) == 6
    assert avr.classes == host.classes
    np.testing.assert_array_equal(avr.scores, host.scores)  # integer kernels; the float logit step is IEEE too
    with torch.no_grad():
        assert list(avr.classes) == model(task.x_test[:6]).argmax(1).tolist()
    assert avr.build.program.flash_bytes <= UNO_FLASH
    assert avr.build.program.static_sram_bytes + avr.simulation.stack_peak_bytes <= UNO_RAM
    assert avr.build.library.flash_bytes > lib.weight_bytes  # kernels and descriptors on top of the weights


@needs_avr
def test_tinychat_replies_on_the_uno_as_on_the_host(tmp_path):
    _library(4, tmp_path / "c")
    queries = ["hello", "how are you?", "what is your name"]
    avr = run_library(tmp_path / "c", UNO, tmp_path / "avr", queries=queries)
    host = run_library(tmp_path / "c", HOST, tmp_path / "host", queries=queries)
    assert avr.replies == host.replies and any(avr.replies)
    assert avr.build.program.flash_bytes <= UNO_FLASH and avr.build.program.static_sram_bytes <= 1_536
    assert avr.build.program.static_sram_bytes + avr.simulation.stack_peak_bytes <= UNO_RAM
    assert len(avr.simulation.region_cycles) == 3 and min(avr.simulation.region_cycles) > 10_000


def _digits_library(directory: Path, bits: int = 4) -> tuple[torch.nn.Module, object]:
    task = _task("digits")
    candidate = _candidate("mlp", task.input_shape, bits, 8)
    config = PipelineConfig(train_epochs=5, finetune_epochs=2, steps=["quantize", "finetune"], lr=1e-2)
    torch.manual_seed(0)
    model = run_pipeline(candidate, task.x_train, task.y_train, task.x_val, task.y_val, config, seed=0).model
    generate_c_library(
        model, task.input_shape, directory, normalization=task.normalization, calibration=task.x_train[:512]
    )
    return model, task


@needs_avr
def test_check_library_measures_the_uno_build_and_its_sketch(tmp_path):
    model, task = _digits_library(tmp_path / "c")
    raw = task.normalization.invert(task.x_test[:3].numpy(), task.input_shape)
    check = check_library(tmp_path / "c", UNO, tmp_path / "work", samples=raw, num_classes=10)
    assert check.matches_host is True and check.fits is True
    assert check.cycles > 10_000 and check.latency_ms == pytest.approx(check.cycles / 16_000)
    # the sketch adds the Arduino core (2,544 B Flash measured for a Serial sketch) to the library
    assert check.sketch_flash_bytes > check.library_flash_bytes + 2_000
    assert 0 < check.stack_peak_bytes < 2_048 and check.library_sram_bytes > 0
    assert check.sketch_flash_bytes <= UNO_FLASH


def test_check_library_on_the_stm32_counts_instructions_in_qemu(tmp_path):
    if not (shutil.which("arm-none-eabi-gcc") and shutil.which("qemu-system-arm")):
        pytest.skip("arm-none-eabi-gcc or qemu-system-arm not installed (apt-get install gcc-arm-none-eabi "
                    "libnewlib-arm-none-eabi qemu-system-arm)")  # fmt: skip
    _, task = _digits_library(tmp_path / "c")
    raw = task.normalization.invert(task.x_test[:2].numpy(), task.input_shape)
    stm = load_profile("stm32f746")
    check = check_library(tmp_path / "c", stm, tmp_path / "work", samples=raw, num_classes=10)
    # QEMU's instruction count (cycles_per_instruction 1.0: not M7 cycles) at the board's 216 MHz
    assert check.matches_host is True and check.cycles > 10_000
    assert check.latency_ms == pytest.approx(check.cycles / 216_000)
    assert 0 < check.stack_peak_bytes < 4096
    assert check.library_flash_bytes > 0 and check.program_flash_bytes > check.library_flash_bytes
    assert check.fits is True and check.sketch_flash_bytes is None


def test_check_library_on_a_board_without_simulator_sizes_the_build_only(tmp_path):
    if not shutil.which("arm-none-eabi-gcc"):
        pytest.skip("arm-none-eabi-gcc not installed (apt-get install gcc-arm-none-eabi libnewlib-arm-none-eabi)")
    _, task = _digits_library(tmp_path / "c")
    raw = task.normalization.invert(task.x_test[:2].numpy(), task.input_shape)
    stm = load_profile("stm32f746")
    sized_only = stm.model_copy(update={"toolchain": stm.toolchain.model_copy(update={"simulator": None})})
    check = check_library(tmp_path / "c", sized_only, tmp_path / "work", samples=raw, num_classes=10)
    assert check.cycles is None and check.stack_peak_bytes is None and check.matches_host is None
    assert check.library_flash_bytes > 0 and check.program_flash_bytes > check.library_flash_bytes
    assert check.fits is True and check.sketch_flash_bytes is None


def test_host_predictions_agree_with_torch_on_the_test_split(tmp_path):
    if not shutil.which("gcc"):
        pytest.skip("gcc not installed")
    model, task = _digits_library(tmp_path / "c")
    raw = task.normalization.invert(task.x_test.numpy(), task.input_shape)
    classes, scores = host_predictions(tmp_path / "c", raw, 10, tmp_path / "host")
    with torch.no_grad():
        torch_classes = model(task.x_test).argmax(1).numpy()
    assert scores.shape == (len(raw), 10) and (classes == scores.argmax(1)).all()
    assert (classes == torch_classes).mean() >= 0.99
