"""IEEE half precision ("fp16"), distinct from INT16: fake quantization, Flash, ONNX float16 initializers."""

from __future__ import annotations

import dataclasses

import numpy as np
import onnx
import pytest
import torch

from jointnas.compression import PipelineConfig, deployable_model, export_onnx, onnx_logits, run_pipeline
from jointnas.compression.plan import validate_plan
from jointnas.devices import DeviceProfile, load_profile
from jointnas.spaces import Candidate, SpaceConfig, Stage, UserInputError, layer_flash_bytes, trace_layers
from jointnas.spaces.quant import quantize_activation, quantize_weight

from .cgen_build import c_scores, cross_compile, needs_gcc, weight_symbol_bytes

CNN = Candidate(
    "cnn", (1, 8, 8), 10, (Stage(8, 1, 3, 2, 1, weight_bits="fp16", act_bits="fp16"),), stem_channels=8, head_bits=8
)


def test_fp16_fake_quant_is_a_round_trip_through_half_with_straight_through_gradients():
    torch.manual_seed(0)
    w = torch.randn(4, 3, requires_grad=True)
    q = quantize_weight(w, "fp16")
    assert torch.equal(q, w.detach().half().float())
    assert not torch.equal(q, w.detach())  # the rounding is real
    assert not torch.equal(q, quantize_weight(w, 16))  # not INT16 (a per-channel integer grid)
    q.sum().backward()
    assert torch.equal(w.grad, torch.ones_like(w))
    x = torch.tensor([1e5, -1e5, 0.1])
    assert quantize_activation(x, "fp16", torch.tensor(1.0), signed=True).tolist() == [
        65504.0,
        -65504.0,
        float(torch.tensor(0.1).half()),
    ]  # saturates, ignores the PACT clip


def test_config_candidate_and_plan_accept_fp16():
    space = SpaceConfig(compression={"weight_bits": [2, 4, 8, "fp16"], "act_bits": [8, "fp16"]})
    assert space.compression.weight_bits == [2, 4, 8, "fp16"]
    assert Candidate.from_json(CNN.to_json()) == CNN
    assert Candidate.from_json(CNN.to_json()).stages[0].weight_bits == "fp16"
    validate_plan(CNN, load_profile("ort-cpu").supported_weight_bits)
    with pytest.raises(UserInputError, match="weight_bits fp16 is not supported by the target device"):
        validate_plan(CNN, load_profile("arduino-uno").supported_weight_bits)
    with pytest.raises(UserInputError, match="weight_bits fp32 is unsupported"):
        validate_plan(dataclasses.replace(CNN, stages=(Stage(8, weight_bits="fp32"),)))


def test_profiles_say_whether_fp16_is_supported():
    assert "fp16" in load_profile("ort-cpu").supported_weight_bits
    assert "fp16" not in load_profile("arduino-uno").supported_weight_bits  # MCU default: no
    board = DeviceProfile(name="b", clock_mhz=64, native_bits=(8,), cycles_per_mac={8: 2, 32: 40}, float16=True)
    assert board.supported_weight_bits == (1, 2, 4, 8, 32, "fp16")
    cpu = DeviceProfile(name="c", latency="ort", float16=False)
    assert "fp16" not in cpu.supported_weight_bits


@pytest.fixture(scope="module")
def fp16_trial():
    from jointnas.objectives import TaskConfig, load_task

    task = load_task(TaskConfig())
    cfg = PipelineConfig(train_epochs=1, finetune_epochs=1, steps=["quantize", "finetune"])
    res = run_pipeline(CNN, task.x_train[:256], task.y_train[:256], task.x_val[:64], task.y_val[:64], cfg)
    return task, res.model


def test_fp16_flash_counts_two_bytes_per_weight_and_no_scales(fp16_trial):
    task, model = fp16_trial
    layers = {layer.name: layer for layer in trace_layers(model, CNN.input_shape)}
    block = [layer for name, layer in layers.items() if name.startswith("blocks.")]
    assert len(block) == 3
    for layer in block:
        assert layer.weight_fp16 and layer.weight_bits == 16 and layer.weight_precision == "fp16"
        assert layer.act_fp16 and layer.act_precision == "fp16"
        assert not layer.integer_weights
        assert layer_flash_bytes(layer) == 2 * layer.weight_numel + 4 * layer.bias_numel
    stem = layers["stem.conv"]  # head_bits 8: int8 codes with per-channel scales
    assert layer_flash_bytes(stem) == stem.weight_numel + 4 * stem.out_channels + 4 * stem.bias_numel
    int16 = dataclasses.replace(block[0], weight_fp16=False)
    assert layer_flash_bytes(int16) == layer_flash_bytes(block[0]) + 4 * int16.out_channels  # INT16 has scales


def test_fp16_export_stores_float16_initializers_and_runs_in_onnx_runtime(fp16_trial, tmp_path):
    task, model = fp16_trial
    path = export_onnx(model, task.x_train[:1], tmp_path / "m.onnx")
    proto = onnx.load(str(path))
    dtypes = {i.name: i.data_type for i in proto.graph.initializer}
    half = {n for n, t in dtypes.items() if t == onnx.TensorProto.FLOAT16}
    assert half == {f"blocks.0.{p}.conv.weight_fp16" for p in ("expand", "dw", "project")}
    assert dtypes["stem.conv.weight"] == onnx.TensorProto.FLOAT  # int8 codes are baked as float, as before
    casts = [n for n in proto.graph.node if n.op_type == "Cast"]
    to = [a.i for n in casts for a in n.attribute if a.name == "to"]
    assert to.count(onnx.TensorProto.FLOAT16) == 3  # the activation Cast pairs
    assert to.count(onnx.TensorProto.FLOAT) == 3 + 3  # widened weights + the pairs' second halves
    x = task.x_test[:64]
    with torch.no_grad():
        ref = deployable_model(model)(x).numpy()
    np.testing.assert_allclose(onnx_logits(path, x), ref, atol=1e-4, rtol=0)


def test_fp16_model_is_stored_and_rebuilt_bit_for_bit(fp16_trial, tmp_path):
    from jointnas.compression import model_from_record, model_record

    task, model = fp16_trial
    torch.save(model_record(model, CNN), tmp_path / "m.pt")
    again = model_from_record(torch.load(tmp_path / "m.pt", weights_only=True))
    x = task.x_test[:32]
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
    assert again.blocks[0].dw.conv.weight_bits == "fp16"


MIXED = Candidate(
    "cnn",
    (1, 8, 8),
    10,
    (
        Stage(8, 1, 3, 2, 1, weight_bits=8, act_bits=8,
              layer_bits=(("b0_expand", "fp16", 8), ("b0_dw", 4, 8), ("b0_project", "fp16", "fp16"))),
        Stage(16, 1, 3, 2, 2, weight_bits="fp16", act_bits=32),
    ),
    stem_channels=8,
    head_bits=8,
)  # fmt: skip


@needs_gcc
@pytest.mark.parametrize("candidate", [CNN, MIXED], ids=["fp16", "per-layer-mixed"])
def test_c_library_stores_float16_weights_and_agrees_with_torch(candidate, tmp_path):
    from jointnas.compression import generate_c_library
    from jointnas.devices import estimate_flash_bytes
    from jointnas.objectives import TaskConfig, load_task

    task = load_task(TaskConfig())
    cfg = PipelineConfig(train_epochs=6, finetune_epochs=2, steps=["quantize", "finetune"])
    torch.manual_seed(0)
    res = run_pipeline(candidate, task.x_train, task.y_train, task.x_val, task.y_val, cfg, seed=0)
    lib = generate_c_library(
        res.model, task.input_shape, tmp_path / "c", normalization=task.normalization, calibration=task.x_train[:512]
    )
    half = [layer for layer in lib.layers if layer.kernel and "_f16" in layer.kernel]
    assert len(half) == (3 if candidate is CNN else 2 + 3)
    assert all(layer.mode == "float" for layer in half)  # float arithmetic on float16 storage
    raw = task.normalization.invert(task.x_test.numpy(), task.input_shape)
    got = c_scores(lib, raw, tmp_path).argmax(1)
    with torch.no_grad():
        want = res.model(task.x_test).argmax(1).numpy()
    assert (got == want).mean() >= 0.99
    assert (want == task.y_test.numpy()).mean() > 0.5
    flash = estimate_flash_bytes(trace_layers(res.model, task.input_shape))
    assert lib.weight_bytes == flash == weight_symbol_bytes(lib, tmp_path)
    cross_compile(lib, tmp_path)


def test_per_layer_onnx_stores_float16_only_for_the_fp16_layers(tmp_path):
    torch.manual_seed(0)
    from jointnas.compression import quantize_model
    from jointnas.spaces import build_model

    model = quantize_model(build_model(MIXED), MIXED, calibration=torch.randn(16, 1, 8, 8)).eval()
    path = export_onnx(model, torch.zeros(1, 1, 8, 8), tmp_path / "m.onnx")
    half = {i.name for i in onnx.load(str(path)).graph.initializer if i.data_type == onnx.TensorProto.FLOAT16}
    assert half == {
        "blocks.0.expand.conv.weight_fp16",
        "blocks.0.project.conv.weight_fp16",
        *(f"blocks.1.{p}.conv.weight_fp16" for p in ("expand", "dw", "project")),
    }
    x = torch.randn(8, 1, 8, 8)
    with torch.no_grad():
        np.testing.assert_allclose(onnx_logits(path, x), deployable_model(model)(x).numpy(), atol=1e-4, rtol=0)
