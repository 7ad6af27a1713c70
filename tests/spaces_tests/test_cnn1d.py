"""The 1-D CNN family goes through every compression step, the tracer, the latency table and Flash/SRAM."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from jointnas.compression import (
    QuantConv1d,
    factorize_low_rank,
    fold_batchnorm,
    prune_channels,
    quantize_model,
)
from jointnas.devices import LatencyTable, estimate_flash_bytes, estimate_sram_bytes
from jointnas.devices.blocks import group_blocks
from jointnas.spaces import Candidate, SpaceConfig, Stage, UserInputError, build_model, sample_candidate, trace_layers

from ._layer_key import layer_key

C1D = Candidate("cnn1d", (1, 40), 10, (Stage(8, 1, 5, 4, 1), Stage(16, 2, 3, 4, 2)), stem_channels=8, head_bits=8)


def _with(c: Candidate, **knobs) -> Candidate:
    return dataclasses.replace(c, stages=tuple(dataclasses.replace(s, **knobs) for s in c.stages))


def test_builds_a_1d_mobilenet():
    model = build_model(C1D).eval()
    assert isinstance(model.stem.conv, torch.nn.Conv1d) and isinstance(model.stem.bn, torch.nn.BatchNorm1d)
    assert len(model.blocks) == 3
    assert model(torch.randn(4, 1, 40)).shape == (4, 10)
    layers = trace_layers(model, (1, 40))
    assert [layer.kind for layer in layers[:4]] == ["conv", "conv", "dwconv", "conv"]
    assert layers[2].kernel == 5 and layers[2].in_shape == (32, 40)
    assert layers[-1].kind == "linear" and layers[-1].in_shape == (16,)
    # Stride 2 in the second stage halves the length: 40 → 20.
    assert layers[-2].out_shape == (16, 20)
    assert layer_key(layers[2]) == "dwconv|in=32x40|out=32|k=5|s=1|g=32|relu=1"


def test_wrong_input_rank_names_the_expected_shape():
    with pytest.raises(UserInputError, match=r"needs inputs shaped \(channels, length\)"):
        build_model(dataclasses.replace(C1D, input_shape=(1, 8, 8)))


def test_prune_lowrank_quantize_fold_keep_the_function_and_shrink_flash():
    c = _with(C1D, prune_ratio=0.5, rank_ratio=0.25, weight_bits=4, act_bits=8)
    model = build_model(c)
    model.train()
    with torch.no_grad():
        model(torch.randn(32, 1, 40))  # non-trivial BatchNorm statistics
    model.eval()
    dense_flash = estimate_flash_bytes(trace_layers(fold_batchnorm(build_model(c.uncompressed()).eval()), (1, 40)))

    hidden = [block.hidden_channels for block in model.blocks]
    prune_channels(model, c)
    for block, full in zip(model.blocks, hidden, strict=True):
        assert block.hidden_channels == full // 2
        assert isinstance(block.dw.conv, torch.nn.Conv1d) and isinstance(block.dw.bn, torch.nn.BatchNorm1d)
    assert model(torch.randn(2, 1, 40)).shape == (2, 10)
    factorize_low_rank(model, c)
    factorized = [b.expand.conv for b in model.blocks if isinstance(b.expand.conv, torch.nn.Sequential)]
    assert factorized and all(isinstance(f[0], torch.nn.Conv1d) for f in factorized)

    x = torch.randn(8, 1, 40)
    before = model(x)
    folded = fold_batchnorm(model)
    assert torch.allclose(folded(x), before, atol=1e-4)

    quantize_model(model, c, calibration=torch.randn(64, 1, 40))
    assert isinstance(model.stem.conv, QuantConv1d) and model.stem.conv.weight_bits == 8
    assert model(x).shape == (8, 10)
    layers = trace_layers(model, (1, 40))
    assert {layer.weight_bits for layer in layers} == {4, 8}
    assert estimate_flash_bytes(layers) < dense_flash / 4
    assert 0 < estimate_sram_bytes(layers) < estimate_sram_bytes(trace_layers(build_model(C1D).eval(), (1, 40)))


def test_latency_table_measures_1d_layers():
    layers = trace_layers(fold_batchnorm(build_model(C1D).eval()), (1, 40))
    table = LatencyTable(None, warmup=1, repeats=3)
    assert table.predict_ms(layers) > 0
    blocks = [spec for spec, _ in group_blocks(layers)]
    assert [b.kind for b in blocks] == ["stem", "ir", "ir", "ir", "head"]
    assert set(table.entries) >= {b.key for b in blocks}  # (plus the per-inference overhead entry)
    assert "ir|in=8x40|" in blocks[1].key  # 1-D blocks keep their (channels, length) input shape


def test_space_samples_cnn1d_candidates():
    import optuna

    space = SpaceConfig(family="cnn1d", stages=[8, 16], strides=[1, 2])
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    c = sample_candidate(trial, space, (1, 40), 10)
    assert c.family == "cnn1d" and build_model(c)(torch.randn(2, 1, 40)).shape == (2, 10)


def test_quantized_cnn1d_exports_to_onnx_with_matching_outputs(tmp_path):
    from jointnas.compression.export import export_onnx, onnx_logits

    c = _with(C1D, weight_bits=4, act_bits=32)
    x = torch.randn(16, 1, 40)
    model = quantize_model(build_model(c).eval(), c, calibration=x)
    path = export_onnx(model, x, tmp_path / "m.onnx")
    with torch.no_grad():
        ref = model(x).numpy()
    assert abs(onnx_logits(path, x) - ref).max() < 1e-4
