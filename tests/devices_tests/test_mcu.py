from __future__ import annotations

import dataclasses

import pytest
import torch

from jointnas.compression import fold_batchnorm, prune_channels, quantize_model
from jointnas.devices import fit_report, load_profile, mcu_latency_ms, peak_sram_bytes
from jointnas.devices.mcu import kernel_classes
from jointnas.spaces import Candidate, Stage, build_model, trace_layers

# The tinychat-style MLP of the Arduino text scenario: 256 → 256 → 192 → 128 → 40.
TINYCHAT = Candidate("mlp", (256,), 40, (Stage(256), Stage(192), Stage(128)))


def compressed_layers(candidate: Candidate):
    """The deployable layers after structured pruning and fake quantization (no training needed)."""
    torch.manual_seed(0)
    model = build_model(candidate)
    prune_channels(model, candidate)
    quantize_model(model, candidate)
    return trace_layers(fold_batchnorm(model).eval(), candidate.input_shape)


def with_knobs(candidate: Candidate, **knobs) -> Candidate:
    head = knobs.pop("head_bits", candidate.head_bits)
    stages = tuple(dataclasses.replace(s, **knobs) for s in candidate.stages)
    return dataclasses.replace(candidate, stages=stages, head_bits=head)


def test_tinychat_mlp_fits_arduino_only_pruned_at_two_bits():
    uno = load_profile("arduino-uno")
    fp32 = fit_report(compressed_layers(TINYCHAT), uno)
    int8 = fit_report(compressed_layers(with_knobs(TINYCHAT, weight_bits=8, act_bits=8, head_bits=8)), uno)
    small = fit_report(
        compressed_layers(with_knobs(TINYCHAT, prune_ratio=0.5, weight_bits=2, act_bits=8, head_bits=8)), uno
    )
    # FP32: 144,384 weights + 616 biases, 4 bytes each; the runtime adds 6 KB.
    assert fp32.weights_flash_bytes == 4 * (144_384 + 616) and not fp32.fits_flash and not fp32.fits_sram
    assert fp32.activation_sram_bytes == 4 * (256 + 256)
    assert not int8.fits and not int8.fits_flash and int8.fits_sram
    assert int8.weights_flash_bytes == 144_384 + 8 * 616
    # 50% of hidden units pruned (256→128, 192→96, 128→64), 2-bit hidden weights, 8-bit classifier.
    assert small.fits and small.flash_bytes <= 32 * 1024 and small.sram_bytes <= 2 * 1024
    hidden = (256 * 128 + 128 * 96 + 96 * 64) // 4
    assert small.weights_flash_bytes == hidden + 64 * 40 + 8 * (128 + 96 + 64) + 8 * 40
    # + the library's code (fitted from avr-gcc builds): a kernel per distinct class, a descriptor per layer
    layers = compressed_layers(with_knobs(TINYCHAT, prune_ratio=0.5, weight_bits=2, act_bits=8, head_bits=8))
    classes = set(kernel_classes(layers))
    assert classes == {"int.i16.w2.pw", "int.u8.w2.pw", "int.u8.w8.pw"}
    code = sum(uno.code_bytes[f"kernel:{c}"] for c in classes) + 4 * uno.code_bytes["layer"] + uno.code_bytes["fixed"]
    assert small.flash_bytes == small.weights_flash_bytes + round(code) + uno.runtime_flash_bytes
    assert small.activation_sram_bytes == 2 * 256 + 128  # int16 input codes (C_INPUT_BITS) + first hidden layer
    assert small.sram_bytes == small.activation_sram_bytes + uno.stack_bytes + uno.runtime_sram_bytes
    assert small.latency_ms < int8.latency_ms < fp32.latency_ms


def test_cycle_model_scales_with_clock_and_precision():
    layers = compressed_layers(with_knobs(TINYCHAT, weight_bits=8, act_bits=8, head_bits=8))
    uno, stm = load_profile("arduino-uno"), load_profile("stm32f746")
    macs = sum(layer.macs for layer in layers)
    assert macs == 144_384
    # On the Uno the MACs dominate (simavr-fitted): 73 cycles per MAC with int16 input codes (first layer,
    # int32 products), 41 with uint8 codes (int16 products), at 16 MHz; requantizing the 616 outputs adds
    # about 1,500 cycles each, the 256 inputs (the chat encoder, per generated character) about 900.
    first = layers[0].macs
    assert first == 256 * 256
    macs_ms = (73.2 * first + 41.0 * (macs - first)) / 16e3
    assert macs_ms < mcu_latency_ms(layers, uno) < macs_ms + (616 * 1600 + 256 * 1000) / 16e3
    assert mcu_latency_ms(layers, stm) < mcu_latency_ms(layers, uno) / 50
    faster = uno.model_copy(update={"clock_mhz": 32.0})
    assert mcu_latency_ms(layers, faster) == pytest.approx(mcu_latency_ms(layers, uno) / 2)


def test_peak_sram_runs_depthwise_in_place():
    c = Candidate("cnn", (8, 8, 8), 10, (Stage(8, 1, 3, 2, 1),), stem_channels=8)
    layers = trace_layers(build_model(c), (8, 8, 8))
    dw = next(layer for layer in layers if layer.kind == "dwconv")
    # Float32: the depthwise layer needs 16x8x8 (in place) + one 8x8 channel + the 8x8x8 residual input.
    assert dw.in_numel == dw.out_numel == 1024
    in_place = peak_sram_bytes(layers)
    assert in_place == 4 * max(1024 + 64 + 512, 512 + 1024 + 512, 1024 + 512 + 512)
    assert peak_sram_bytes(layers, in_place=False) == 4 * (1024 + 1024 + 512) > in_place
