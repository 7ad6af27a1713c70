"""Each compression step changes params and Flash exactly as the plan says."""

from __future__ import annotations

import copy
import math

import pytest
import torch

from jointnas.compression import (
    PipelineConfig,
    channels_to_keep,
    factorize_low_rank,
    fold_batchnorm,
    prune_channels,
    quantize_model,
    quantize_weight,
    rank_for,
    run_pipeline,
)
from jointnas.devices import estimate_flash_bytes
from jointnas.spaces import Candidate, Stage, UserInputError, build_model, trace_layers

CNN = Candidate("cnn", (1, 8, 8), 10, (Stage(8, 1, 3, 4, 1), Stage(16, 2, 3, 4, 2)), stem_channels=8)


def _with(c: Candidate, **knobs) -> Candidate:
    import dataclasses

    return dataclasses.replace(c, stages=tuple(dataclasses.replace(s, **knobs) for s in c.stages))


def _trained_bn(model: torch.nn.Module) -> torch.nn.Module:
    """Give BatchNorm non-trivial statistics so folding is actually exercised."""
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 1, 8, 8))
    return model.eval()


def test_prune_removes_exactly_the_requested_hidden_channels():
    c = _with(CNN, prune_ratio=0.25)
    model = prune_channels(build_model(c), c, scope="hidden")
    for block in model.blocks:
        full = block.expand.conv.in_channels * 4
        assert block.hidden_channels == full - round(0.25 * full)
        assert block.expand.conv.out_channels == block.dw.conv.out_channels == block.project.conv.in_channels
        assert block.dw.conv.groups == block.hidden_channels
    assert model(torch.randn(2, 1, 8, 8)).shape == (2, 10)


def test_pruned_model_equals_masked_model():
    c = _with(CNN, prune_ratio=0.5)
    dense = _trained_bn(build_model(c))
    pruned = prune_channels(copy.deepcopy(dense), c, scope="hidden")
    masked = copy.deepcopy(dense)
    # Mask: zero the removed hidden channels after the depthwise BN+ReLU in the dense model.
    for d_block, p_block in zip(masked.blocks, pruned.blocks, strict=True):
        kept = {tuple(w.flatten().tolist()) for w in p_block.expand.conv.weight}
        mask = torch.tensor([tuple(w.flatten().tolist()) in kept for w in d_block.expand.conv.weight])
        d_block.dw.register_forward_hook(lambda m, a, out, mask=mask: out * mask[None, :, None, None])
    x = torch.randn(4, 1, 8, 8)
    torch.testing.assert_close(pruned(x), masked(x), atol=1e-5, rtol=1e-5)


def test_mlp_pruning_and_lowrank_params_exact():
    c = Candidate("mlp", (64,), 10, (Stage(64, prune_ratio=0.5, rank_ratio=0.25), Stage(32)))
    model = prune_channels(build_model(c), c)
    assert model.blocks[0].linear.out_features == 32 and model.blocks[1].linear.in_features == 32
    factorize_low_rank(model, c)
    r = rank_for(32, 64, 0.25)
    assert r == 8
    first, second = model.blocks[0].linear
    assert first.weight.shape == (8, 64) and second.weight.shape == (32, 8)
    assert sum(p.numel() for p in model.blocks[0].parameters()) == 8 * 64 + 32 * 8 + 32


def test_full_rank_svd_reproduces_outputs():
    c = _with(CNN, rank_ratio=1.0)
    model = _trained_bn(build_model(c))
    from jointnas.compression import factorize_conv1x1

    conv = model.blocks[0].expand.conv
    fact = factorize_conv1x1(conv, min(conv.in_channels, conv.out_channels))
    x = torch.randn(2, conv.in_channels, 8, 8)
    torch.testing.assert_close(fact(x), conv(x), atol=1e-5, rtol=1e-5)


def test_lowrank_skips_layers_where_it_would_add_weights():
    c = _with(CNN, rank_ratio=0.75)
    model = factorize_low_rank(build_model(c), c)
    # expand of block 0 is 8→32: r = round(0.75*8) = 6, 6*(8+32)=240 < 256 → factorized
    assert isinstance(model.blocks[0].expand.conv, torch.nn.Sequential)
    # project of block 1 is 32→16... r = 12, 12*48=576 > 512 → unchanged
    assert isinstance(model.blocks[1].project.conv, torch.nn.Conv2d)


def test_bn_folding_preserves_outputs():
    model = _trained_bn(build_model(CNN))
    x = torch.randn(4, 1, 8, 8)
    before = model(x)
    fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-4)


def test_sixteen_bit_fake_quant_is_near_identity_and_two_bit_is_ternary():
    w = torch.randn(8, 16, 3, 3)
    assert (quantize_weight(w, 16) - w).abs().max() < 1e-3 * w.abs().max()
    q2 = quantize_weight(w, 2)
    for row in q2:  # symmetric 2-bit: {-s, 0, +s} per channel (up to float rounding of the STE)
        assert len(torch.unique(row.round(decimals=5))) <= 3
    q1 = quantize_weight(w, 1)
    for row in q1:  # binary: ±mean|w| per channel
        assert torch.allclose(row.abs(), row.abs().mean().expand_as(row), atol=1e-6)


def test_quantization_sets_flash_by_bits():
    for bits in (2, 4, 8):
        c = _with(CNN, weight_bits=bits)
        c = Candidate(c.family, c.input_shape, c.num_classes, c.stages, c.stem_channels, head_bits=8)
        model = quantize_model(_trained_bn(build_model(c)), c)
        layers = trace_layers(model, c.input_shape)
        expected = 0
        for layer in layers:
            b = 8 if layer.name.startswith(("stem", "classifier")) else bits
            expected += math.ceil(layer.weight_numel * b / 8) + layer.out_channels * 4 + layer.bias_numel * 4
        assert estimate_flash_bytes(layers) == expected


def test_bad_plans_are_user_errors():
    with pytest.raises(UserInputError, match="prune ratio 1.0"):
        channels_to_keep(10, 1.0)
    with pytest.raises(UserInputError, match="rank ratio 0"):
        rank_for(10, 10, 0)
    with pytest.raises(UserInputError, match="weight bit-width 3"):
        quantize_weight(torch.randn(4, 4), 3)


def test_pipeline_reports_each_step_and_folds_bn():
    from jointnas.objectives import TaskConfig, load_task

    task = load_task(TaskConfig())
    c = _with(CNN, prune_ratio=0.5, rank_ratio=0.5, weight_bits=8, act_bits=8)
    cfg = PipelineConfig(train_epochs=1, finetune_epochs=1)
    res = run_pipeline(c, task.x_train, task.y_train, task.x_val, task.y_val, cfg, seed=0)
    assert [r.step for r in res.reports] == ["train", *cfg.steps]
    params = {r.step: r.params for r in res.reports}
    assert params["prune"] < params["train"]
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in res.model.modules())
    assert res.reports[-1].val_accuracy > 0.3
