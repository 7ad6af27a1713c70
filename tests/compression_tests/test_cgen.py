"""The generated C library on the host: it agrees with the torch deployable model on the held-out samples and
stores exactly the bytes the Flash rule counts."""

from __future__ import annotations

import dataclasses
import functools

import numpy as np
import pytest
import torch
from torch import nn

from jointnas.compression import (
    PipelineConfig,
    deployable_model,
    generate_c_library,
    prune_magnitude,
    quantize_model,
    run_pipeline,
)
from jointnas.compression.cgen.arena import Buffer, Step, plan_arena
from jointnas.compression.cgen.packing import pack_bits, pack_layer, unpack_bits
from jointnas.devices import estimate_flash_bytes
from jointnas.objectives import TaskConfig, load_task
from jointnas.spaces import (
    Candidate,
    InputNormalization,
    Stage,
    UserInputError,
    build_model,
    trace_layers,
    weight_storage_bytes,
)

from .cgen_build import c_scores, cross_compile, needs_gcc, weight_symbol_bytes


@functools.cache
def _task(name: str):
    return load_task(TaskConfig(dataset=name))


def _candidate(family: str, shape: tuple[int, ...], bits: int, head: int, **knobs) -> Candidate:
    act = 8 if bits < 32 else 32
    act = 16 if bits == 16 else act
    if family == "mlp":
        stages = (Stage(32, **knobs), Stage(24, **knobs))
        c = Candidate("mlp", shape, 10, stages, head_bits=head)
    else:
        stages = (Stage(8, 1, 3, 2, 1, **knobs), Stage(16, 2, 3, 2, 2, **knobs))
        c = Candidate(family, shape, 10, stages, stem_channels=8, head_bits=head)
    return dataclasses.replace(
        c, stages=tuple(dataclasses.replace(s, weight_bits=bits, act_bits=act) for s in c.stages)
    )


# name: family, weight bits, head bits, stage knobs, pipeline steps and options
CASES = {
    "cnn-int8": ("cnn", 8, 8, {}, ["quantize", "finetune"], {}),
    "cnn-int4-lowrank": ("cnn", 4, 8, {"rank_ratio": 0.5}, ["lowrank", "finetune", "quantize", "finetune"], {}),
    "cnn-int2-sparse": ("cnn", 2, 8, {}, ["sparsify", "quantize", "finetune"], {"sparsity": 0.6}),
    "cnn-binary": ("cnn", 1, 8, {}, ["quantize", "finetune"], {"finetune_epochs": 6}),  # 1-bit needs longer QAT
    "cnn-fp32-pruned": ("cnn", 32, 32, {"prune_ratio": 0.5}, ["prune", "finetune"], {}),
    "cnn-int8-float-head": ("cnn", 8, 32, {}, ["quantize", "finetune"], {}),
    "cnn1d-int8-pruned": ("cnn1d", 8, 8, {"prune_ratio": 0.25}, ["prune", "quantize", "finetune"], {}),
    "cnn1d-int4": ("cnn1d", 4, 8, {}, ["quantize", "finetune"], {}),
    "mlp-int8": ("mlp", 8, 8, {}, ["quantize", "finetune"], {}),
    "mlp-int4-lowrank-sparse": (
        "mlp", 4, 8, {"rank_ratio": 0.5}, ["lowrank", "sparsify", "quantize", "finetune"], {"sparsity": 0.7},
    ),
    "mlp-int2-pruned": ("mlp", 2, 8, {"prune_ratio": 0.5}, ["prune", "quantize", "finetune"], {}),
    "mlp-binary": ("mlp", 1, 8, {}, ["quantize", "finetune"], {}),
    "mlp-int4-dorefa": ("mlp", 4, 8, {}, ["quantize", "finetune"], {"weight_quantizer": "dorefa"}),
    "mlp-int2-lsq": ("mlp", 2, 8, {}, ["quantize", "finetune"], {"weight_quantizer": "lsq"}),
    "mlp-int16": ("mlp", 16, 16, {}, ["quantize", "finetune"], {}),
    "mlp-fp32-sparse": ("mlp", 32, 32, {}, ["sparsify"], {"sparsity": 0.8}),
}  # fmt: skip


def _expected_modes(deploy: nn.Module, head: int) -> set[str]:
    """Integer kernels for every layer with ≤ 8-bit activations (float for float weights and float stems;
    16-bit activations × 16-bit weights overflow an int32 accumulator and run as float kernels)."""
    if head == 16:
        return {"int", "float"}
    if head == 32:
        return (
            {"float"} if all(int(getattr(m, "weight_bits", 32)) == 32 for m in deploy.modules()) else {"int", "float"}
        )
    return {"int"}


@needs_gcc
@pytest.mark.parametrize("case", list(CASES))
def test_c_library_agrees_with_the_torch_model(case, tmp_path):
    family, bits, head, knobs, steps, options = CASES[case]
    task = _task("mnist1d" if family == "cnn1d" else "digits")
    n = 1500 if family == "cnn1d" else None  # MNIST-1D convolutions are slow to train on one core
    candidate = _candidate(family, task.input_shape, bits, head, **knobs)
    config = PipelineConfig(steps=steps, **{"train_epochs": 10, "finetune_epochs": 3, "lr": 1e-2, **options})
    torch.manual_seed(0)
    result = run_pipeline(candidate, task.x_train[:n], task.y_train[:n], task.x_val, task.y_val, config, seed=0)
    lib = generate_c_library(
        result.model, task.input_shape, tmp_path / "c", normalization=task.normalization, calibration=task.x_train[:512]
    )
    # every sample the pipeline did not train on (validation and test: for digits 718, so 0.5 pt is 3.6
    # samples, not the single near-tie that a 359-image test split turns into 0.56 pt)
    x, y = torch.cat([task.x_val, task.x_test]), torch.cat([task.y_val, task.y_test]).numpy()
    raw = task.normalization.invert(x.numpy(), task.input_shape)  # what the task's data holds
    got = c_scores(lib, raw, tmp_path).argmax(1)
    with torch.no_grad():
        want = result.model(x).argmax(1).numpy()
    assert (got == want).mean() >= 0.99
    assert abs((got == y).mean() - (want == y).mean()) <= 0.005
    assert (want == y).mean() > 0.5  # a model worth comparing
    flash = estimate_flash_bytes(trace_layers(result.model, task.input_shape))
    assert lib.weight_bytes == flash == weight_symbol_bytes(lib, tmp_path)
    assert {layer.mode for layer in lib.layers if layer.weight_bits is not None} == _expected_modes(result.model, head)
    cross_compile(lib, tmp_path)  # avr-gcc and arm-none-eabi-gcc, warning-free, where installed


def test_pack_unpack_round_trip():
    rng = np.random.default_rng(0)
    for bits in (1, 2, 4, 8, 16):
        for signed in (True, False) if bits > 1 else (False,):
            lo, hi = (1 - 2 ** (bits - 1), 2 ** (bits - 1)) if signed else (0, 2**bits)
            codes = rng.integers(lo, hi, size=37)
            data = pack_bits(codes, bits)
            assert len(data) == -(-37 * bits // 8)  # ceil: padded to a whole byte
            np.testing.assert_array_equal(unpack_bits(data, bits, 37, signed), codes)


def test_storage_rule_picks_the_smaller_format():
    assert weight_storage_bytes(1000, 1000, 8) == (1000, False)
    assert weight_storage_bytes(1000, 500, 8) == (125 + 500, True)  # bitmap + nonzeros
    assert weight_storage_bytes(1000, 900, 8) == (1000, False)  # 125 + 900 > 1000: stays dense
    assert weight_storage_bytes(1000, 0, 1) == (125, False)  # binary is never cheaper sparse
    assert weight_storage_bytes(10, 3, 32) == (2 + 12, True)


FORMATS = [
    ("int4-lsq", 4, 8, "lsq", 0.0),
    ("int2-dorefa", 2, 8, "dorefa", 0.0),
    ("int16", 16, 16, "maxabs", 0.0),
    ("binary-sparse", 1, 8, "maxabs", 0.5),
    ("sparse-fp32", 32, 32, "maxabs", 0.8),
    ("sparse-int8", 8, 8, "maxabs", 0.6),
    ("sparse-int2", 2, 8, "maxabs", 0.3),
]


@pytest.mark.parametrize(("case", "bits", "head", "method", "sparsity"), FORMATS, ids=[f[0] for f in FORMATS])
def test_stored_weights_are_the_flash_rule_and_decode_to_the_model(case, bits, head, method, sparsity, tmp_path):
    torch.manual_seed(0)
    c = _candidate("cnn", (1, 8, 8), bits, head, prune_ratio=0.25, rank_ratio=0.5)
    model = build_model(c).eval()
    if sparsity:
        prune_magnitude(model, sparsity, scope="global")
    if bits < 32:
        quantize_model(model, c, calibration=torch.randn(16, 1, 8, 8), weight_quantizer=method)
    lib = generate_c_library(model, c.input_shape, tmp_path / "c", calibration=torch.randn(64, 1, 8, 8))
    deploy = deployable_model(model)
    assert lib.weight_bytes == estimate_flash_bytes(trace_layers(deploy, c.input_shape))
    assert (sparsity > 0 and bits > 1) == any(layer.sparse for layer in lib.layers)  # binary zeros are ±α
    for name, layer in deploy.named_modules():
        if isinstance(layer, nn.Conv2d | nn.Linear):
            packed = pack_layer(name, layer)
            values = layer.weight.detach().double().numpy()
            if packed.scales is not None:  # integer codes × per-channel scale are the baked weights
                decoded = packed.levels * packed.scales.reshape(-1, *([1] * (values.ndim - 1)))
                np.testing.assert_allclose(decoded, values, rtol=1e-5, atol=1e-7)
    header = (tmp_path / "c" / "jointnas_model.h").read_text()
    assert f"#define JOINTNAS_WEIGHT_BYTES {lib.weight_bytes}" in header


@needs_gcc
@pytest.mark.parametrize("per", ["channel", "feature"])
def test_normalization_inside_the_library(per, tmp_path):
    torch.manual_seed(0)
    c = Candidate("cnn", (3, 6, 6), 4, (Stage(8, 1, 3, 2, 1),), stem_channels=8)
    model = build_model(c).eval()
    values = 3 if per == "channel" else 3 * 36
    norm = InputNormalization(tuple(np.linspace(10, 200, values)), tuple(np.linspace(20, 60, values)))
    raw = np.random.default_rng(0).uniform(0, 255, size=(20, 3, 6, 6)).astype(np.float32)
    lib = generate_c_library(model, c.input_shape, tmp_path / "c", normalization=norm)
    got = c_scores(lib, raw, tmp_path)
    with torch.no_grad():
        want = deployable_model(model)(torch.from_numpy(norm.apply(raw, c.input_shape))).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)  # float kernels: float rounding only


def test_arena_reuses_dead_tensors_and_keeps_residual_inputs():
    # input 0 → a (1) → b (2) → add(a, b) = c (3): a stays alive over b, c may reuse b in place.
    buffers = [Buffer(0, 64, 1), Buffer(1, 32, 1), Buffer(2, 32, 1), Buffer(3, 32, 1)]
    steps = [Step((0,), 1), Step((1,), 2), Step((1, 2), 3, inplace=(1, 2))]
    plan = plan_arena(buffers, steps, 0)
    assert plan.offsets[3] in (plan.offsets[1], plan.offsets[2])  # in place
    assert plan.offsets[1] != plan.offsets[2]  # a is live while b is written
    assert plan.total_bytes == 64 + 32  # b reuses the dead input's bytes
    depthwise = plan_arena([Buffer(0, 64, 1), Buffer(1, 64, 1)], [Step((0,), 1, (0,), stage_bytes=8)], 0)
    assert depthwise.offsets[1] == depthwise.offsets[0] and depthwise.total_bytes == 64 + 8


def test_unsupported_layers_and_missing_calibration_are_refused(tmp_path):
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4), nn.Sigmoid())
    with pytest.raises(UserInputError, match="Sigmoid"):
        generate_c_library(model, (16,), tmp_path / "c")
    c = _candidate("mlp", (16,), 8, 8)
    quantized = quantize_model(build_model(c).eval(), c, calibration=torch.randn(8, 16))
    with pytest.raises(UserInputError, match="calibration"):
        generate_c_library(quantized, (16,), tmp_path / "c")
