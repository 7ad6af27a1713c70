"""Structured pruning across dependencies: exact channel counts and masked-model equality."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from jointnas.compression import (
    channel_groups,
    channels_to_keep,
    plan_channel_pruning,
    prune_channels,
    quantize_model,
)
from jointnas.spaces import Candidate, Stage, UserInputError, build_model
from jointnas.spaces.layers import ConvBNAct, DenseAct

# block 0: 8→8 stride 1 (residual, tied to the stem); block 1: 8→16 stride 2; block 2: 16→16 residual.
CNN = Candidate("cnn", (1, 8, 8), 10, (Stage(8, 1, 3, 4, 1), Stage(16, 2, 3, 4, 2)), stem_channels=8)
MLP = Candidate("mlp", (1, 8, 8), 10, (Stage(64), Stage(32)))


def _with(c: Candidate, **knobs) -> Candidate:
    return dataclasses.replace(c, stages=tuple(dataclasses.replace(s, **knobs) for s in c.stages))


def _trained_bn(model: torch.nn.Module, shape=(1, 8, 8)) -> torch.nn.Module:
    torch.manual_seed(1)
    for m in model.modules():  # non-trivial BN scales/shifts so 'bn' scores and masking are exercised
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.2, 2.0)
            m.bias.data.uniform_(-0.5, 0.5)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, *shape))
    return model.eval()


def test_cnn_groups_follow_residual_adds_to_stem_and_classifier():
    groups = {g.name: g for g in channel_groups(build_model(CNN), CNN, scope="all")}
    assert set(groups) == {"blocks.0.hidden", "blocks.1.hidden", "blocks.2.hidden", "stem+0.out", "blocks.1+2.out"}
    stem = groups["stem+0.out"]
    assert stem.size == 8 and stem.producers == ["stem", "blocks.0.project"]
    assert stem.consumers == ["blocks.0.expand.conv", "blocks.1.expand.conv"]
    last = groups["blocks.1+2.out"]
    assert last.producers == ["blocks.1.project", "blocks.2.project"]
    assert last.consumers == ["blocks.2.expand.conv", "classifier"]
    assert groups["blocks.1.hidden"].depthwise == ["blocks.1.dw"]
    assert {g.name for g in channel_groups(build_model(CNN), CNN)} == {  # default scope: hidden
        "blocks.0.hidden",
        "blocks.1.hidden",
        "blocks.2.hidden",
    }


@pytest.mark.parametrize("criterion", ["l1", "l2", "bn", "random"])
def test_prune_removes_exactly_the_requested_channels(criterion):
    c = _with(CNN, prune_ratio=0.25)
    dense = _trained_bn(build_model(c))
    plan = plan_channel_pruning(dense, c, criterion, torch.Generator().manual_seed(0), scope="all")
    pruned = prune_channels(copy.deepcopy(dense), c, criterion, torch.Generator().manual_seed(0), scope="all")
    keep = {g.name: idx for g, idx in plan}
    for g, idx in plan:
        assert len(idx) == channels_to_keep(g.size, 0.25) == g.size - round(0.25 * g.size)
    # Every member layer lost exactly its group's removed channels: the surviving weights are the
    # original weights at the kept indices.
    s, h0, h1, o1 = (keep[k] for k in ("stem+0.out", "blocks.0.hidden", "blocks.1.hidden", "blocks.1+2.out"))
    torch.testing.assert_close(pruned.stem.conv.weight, dense.stem.conv.weight[s])
    torch.testing.assert_close(pruned.blocks[0].project.conv.weight, dense.blocks[0].project.conv.weight[s][:, h0])
    torch.testing.assert_close(pruned.blocks[1].expand.conv.weight, dense.blocks[1].expand.conv.weight[h1][:, s])
    torch.testing.assert_close(pruned.blocks[1].dw.conv.weight, dense.blocks[1].dw.conv.weight[h1])
    torch.testing.assert_close(pruned.blocks[1].dw.bn.running_var, dense.blocks[1].dw.bn.running_var[h1])
    torch.testing.assert_close(pruned.blocks[1].project.conv.weight, dense.blocks[1].project.conv.weight[o1][:, h1])
    torch.testing.assert_close(pruned.classifier.weight, dense.classifier.weight[:, o1])
    assert pruned.blocks[1].dw.conv.groups == len(h1)
    if criterion == "l1":  # the removed channels are the lowest-scoring ones
        score = dense.stem.conv.weight.flatten(1).abs().sum(1) + dense.blocks[0].project.conv.weight.flatten(
            1
        ).abs().sum(1)
        removed = sorted(set(range(8)) - set(s.tolist()))
        assert score[removed].max() <= score[s].min()
    if criterion == "bn":
        gamma = dense.blocks[1].expand.bn.weight.abs()
        removed = sorted(set(range(32)) - set(h1.tolist()))
        assert gamma[removed].max() <= gamma[h1].min()


def _mask_model(dense: torch.nn.Module, plan) -> torch.nn.Module:
    """Zero the removed channels at every producer's and depthwise layer's output."""
    masked = copy.deepcopy(dense)
    for group, keep in plan:
        mask = torch.zeros(group.size)
        mask[keep] = 1.0
        for name in group.producers + group.depthwise:
            part = masked.get_submodule(name)
            shape = (1, -1, 1, 1) if isinstance(part, ConvBNAct) else (1, -1)
            view = mask.view(shape)
            part.register_forward_hook(lambda m, a, out, view=view: out * view)
    return masked


@pytest.mark.parametrize("candidate", [CNN, MLP], ids=["cnn", "mlp"])
@pytest.mark.parametrize("criterion", ["l1", "bn", "random"])
def test_pruned_model_equals_masked_model(candidate, criterion):
    if candidate.family == "mlp" and criterion == "bn":
        pytest.skip("the MLP has no BatchNorm")
    c = _with(candidate, prune_ratio=0.5)
    dense = _trained_bn(build_model(c))
    plan = plan_channel_pruning(dense, c, criterion, torch.Generator().manual_seed(0), scope="all")
    pruned = prune_channels(copy.deepcopy(dense), c, criterion, torch.Generator().manual_seed(0), scope="all")
    x = torch.randn(8, 1, 8, 8)
    torch.testing.assert_close(pruned(x), _mask_model(dense, plan)(x), atol=1e-5, rtol=1e-5)
    full = sum(p.numel() for p in dense.parameters())
    assert sum(p.numel() for p in pruned.parameters()) < 0.5 * full


def test_mlp_group_sizes_and_classifier_inputs():
    c = Candidate("mlp", (1, 8, 8), 10, (Stage(64, prune_ratio=0.5), Stage(32, prune_ratio=0.25)))
    model = prune_channels(build_model(c), c)
    assert [b.linear.out_features for b in model.blocks if isinstance(b, DenseAct)] == [32, 24]
    assert model.blocks[1].linear.in_features == 32 and model.classifier.in_features == 24


def test_prune_after_quantize_is_a_user_error():
    c = _with(CNN, prune_ratio=0.5, weight_bits=8)
    model = quantize_model(_trained_bn(build_model(c)), c)
    with pytest.raises(UserInputError, match="before low-rank"):
        prune_channels(model, c)
    with pytest.raises(UserInputError, match="prune scope"):
        prune_channels(build_model(c), c, scope="outputs")
