"""Stored models: a compressed model as plain data loads with weights_only=True and computes the same outputs."""

from __future__ import annotations

import io
import json

import numpy as np
import onnx
import pytest
import torch

from jointnas.compression import (
    PipelineConfig,
    export_onnx,
    model_from_record,
    model_record,
    onnx_logits,
    onnx_metadata,
    quantize_onnx_int8,
    run_pipeline,
)
from jointnas.devices import estimate_flash_bytes
from jointnas.objectives import TaskConfig, load_task
from jointnas.spaces import Candidate, Stage, UserInputError, trace_layers

STEPS = ["prune", "lowrank", "sparsify", "quantize", "finetune"]
CANDIDATES = {
    # pruned, low-rank (factor pairs), 4-bit weights and 8-bit activations, sparse
    "cnn": Candidate(
        "cnn", (1, 8, 8), 10, (Stage(16, 2, 3, 4, 1, 0.5, 0.5, 4, 8), Stage(24, 1, 5, 2, 2, 0.25, 1.0, 2, 32)), 8, 8
    ),
    "mlp": Candidate("mlp", (1, 8, 8), 10, (Stage(32, prune_ratio=0.5, rank_ratio=0.5, weight_bits=8, act_bits=8),)),
}


@pytest.fixture(scope="module")
def task():
    return load_task(TaskConfig())


def _roundtrip(record):
    buffer = io.BytesIO()
    torch.save(record, buffer)
    buffer.seek(0)
    return torch.load(buffer, weights_only=True)


@pytest.mark.parametrize("family", sorted(CANDIDATES))
def test_a_compressed_model_comes_back_bit_for_bit(family, task):
    candidate = CANDIDATES[family]
    config = PipelineConfig(train_epochs=1, finetune_epochs=1, steps=STEPS, sparsity=0.5)
    result = run_pipeline(candidate, task.x_train, task.y_train, task.x_val, task.y_val, config, seed=0)
    model = result.model
    record = _roundtrip(model_record(model, candidate, class_labels=["a"] * 10))
    again = model_from_record(record)
    with torch.no_grad():
        assert torch.equal(again(task.x_test), model(task.x_test))
    layers, layers_again = trace_layers(model, (1, 8, 8)), trace_layers(again, (1, 8, 8))
    assert estimate_flash_bytes(layers_again) == estimate_flash_bytes(layers)  # bit-widths and codes kept
    assert [(la.weight_bits, la.act_bits) for la in layers_again] == [(la.weight_bits, la.act_bits) for la in layers]
    assert record["class_labels"] == ["a"] * 10 and any("." in name for name in record["layers"])


def test_a_record_of_another_format_is_refused():
    with pytest.raises(UserInputError, match="format 'x'"):
        model_from_record({"format": "x"})


def test_onnx_takes_raw_input_and_carries_metadata(task, tmp_path):
    """Normalization inside the graph; INT8 pre-processed, with the same metadata; raw inputs give the same classes."""
    candidate = CANDIDATES["cnn"]
    config = PipelineConfig(train_epochs=2, finetune_epochs=0, steps=["quantize"])
    model = run_pipeline(candidate, task.x_train, task.y_train, task.x_val, task.y_val, config, seed=0).model
    norm = task.normalization
    meta = {"jointnas.study": "s", "jointnas.normalization": json.dumps(norm.to_dict())}
    fp32 = export_onnx(model, task.x_train[:1], tmp_path / "m.onnx", normalization=norm, metadata=meta)
    raw = norm.invert(task.x_test.numpy(), task.input_shape)
    assert raw.min() >= -1e-4 and raw.max() <= 16 + 1e-4  # digits pixels, 0..16
    with torch.no_grad():
        torch_classes = model(task.x_test).argmax(1).numpy()
    assert np.mean(onnx_logits(fp32, np.round(raw)).argmax(1) == torch_classes) >= 0.99
    int8 = quantize_onnx_int8(
        fp32, tmp_path / "m8.onnx", calibration=norm.invert(task.x_train[:256].numpy(), (1, 8, 8))
    )
    assert onnx_metadata(fp32) == meta
    ort_keys = {"onnx.infer": "onnxruntime.quant", "onnx.quant.pre_process": "onnxruntime.quant"}  # pre-processed
    assert onnx_metadata(int8) == {**meta, **ort_keys}
    assert np.mean(onnx_logits(int8, raw).argmax(1) == torch_classes) >= 0.95
    graph = onnx.load(str(int8)).graph
    used = {name for node in graph.node for name in node.input}
    assert all(init.name in used for init in graph.initializer)  # ONNX Runtime would warn about each other one


def test_a_compressed_cnn1d_comes_back_bit_for_bit():
    candidate = Candidate(
        "cnn1d", (1, 40), 10, (Stage(8, 1, 5, 4, 1, 0.5, 0.5, 4, 8), Stage(16, 2, 3, 4, 2, 0.25, 1.0, 8, 8)), 8, 8
    )
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(128, 1, 40, generator=gen), torch.randint(0, 10, (128,), generator=gen)
    config = PipelineConfig(train_epochs=1, finetune_epochs=1)
    model = run_pipeline(candidate, x, y, x, y, config, seed=0).model
    again = model_from_record(_roundtrip(model_record(model, candidate)))
    with torch.no_grad():
        assert torch.equal(again(x), model(x))
