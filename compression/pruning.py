"""Structured channel pruning that physically removes channels, consistently across dependencies.

Channels that must go together form a `ChannelGroup`, derived from the family's module contract
(``stem``, ``blocks``, ``classifier``, ``use_residual``; see `jointnas.spaces.layers`):

* CNN hidden group (one per inverted-residual block): the expand conv's outputs and BatchNorm, the
  depthwise conv's channels and BatchNorm, the project conv's inputs.
* CNN residual group: channels joined by residual additions, i.e. the stem's output (or the output of
  a block without a residual) and the outputs of every following residual block, with the BatchNorms
  of all these producers, the inputs of every expand conv that reads them, and the classifier's inputs
  after global pooling when the group reaches the head.
* MLP: a hidden layer's units and the matching inputs of the next layer (or the classifier).

Each group's channels are scored once, before anything is cut (L1 / L2 norm of the producers' weight
rows summed over producers, the sum of |BatchNorm scale|, or random as a baseline), and the lowest
``round(ratio · size)`` are removed. A group takes the ``prune_ratio`` of the stage that produces it
(the stem's group: the first stage's). ``scope="hidden"`` (the default, what ``Stage.prune_ratio``
documents) prunes only hidden groups, so block widths stay; ``scope="all"`` prunes every group.

We considered a dependency-graph library (Torch-Pruning's DepGraph): it handles these cases, but our
families are a fixed, small set of modules whose contract already names every dependency, so a
40-line group builder keeps the package dependency-free and exact.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch
from torch import Tensor, nn

from jointnas.spaces import Candidate, UserInputError, get_family, stage_of_block
from jointnas.spaces.layers import ConvBNAct, InvertedResidual

from ._modules import set_submodule

CRITERIA = ("l1", "l2", "bn", "random")
SCOPES = ("all", "hidden")
Scope = Literal["all", "hidden"]


def channels_to_keep(n: int, ratio: float) -> int:
    """Channels left after removing ``round(ratio * n)`` of ``n`` (at least one stays)."""
    if not 0.0 <= ratio < 1.0:
        raise UserInputError(f"prune ratio {ratio} is out of range; use a value in [0, 1)")
    return max(1, n - int(round(ratio * n)))


def channel_importance(weight: Tensor, bn: nn.Module | None, criterion: str, generator=None) -> Tensor:
    """Per-output-channel importance of a conv/linear ``weight`` under ``criterion``."""
    flat = weight.detach().flatten(1)
    if criterion == "l1":
        return flat.abs().sum(1)
    if criterion == "l2":
        return flat.pow(2).sum(1).sqrt()
    if criterion == "bn":
        if not isinstance(bn, nn.BatchNorm2d | nn.BatchNorm1d):
            raise UserInputError("prune criterion 'bn' needs BatchNorm after the pruned layer; use 'l1'")
        return bn.weight.detach().abs()
    if criterion == "random":
        return torch.rand(flat.shape[0], generator=generator)
    raise UserInputError(f"unknown prune criterion {criterion!r}; choose one of {list(CRITERIA)}")


@dataclass
class ChannelGroup:
    """Channels removed together.

    Args:
        name: readable name (``"blocks.2.hidden"``, ``"stem+blocks.0-1.out"``).
        size: channels in the group before pruning.
        ratio: share of the channels to remove, in [0, 1).
        producers: ``ConvBNAct`` / ``DenseAct`` module names whose outputs (conv/linear rows and BN)
            are the group's channels.
        depthwise: depthwise ``ConvBNAct`` names that map the group's channels one to one.
        consumers: ``Conv2d`` / ``Linear`` names whose inputs are the group's channels.
    """

    name: str
    size: int
    ratio: float
    producers: list[str] = field(default_factory=list)
    depthwise: list[str] = field(default_factory=list)
    consumers: list[str] = field(default_factory=list)


def _check_prunable(model: nn.Module, names: list[str]) -> None:
    for name in names:
        part = model.get_submodule(name)
        layer = part.conv if isinstance(part, ConvBNAct) else getattr(part, "linear", part)
        if type(layer) not in (nn.Conv1d, nn.Conv2d, nn.Linear) or (
            isinstance(part, ConvBNAct) and not isinstance(part.bn, nn.BatchNorm1d | nn.BatchNorm2d)
        ):
            raise UserInputError(
                "structured pruning must run before low-rank factorization, quantization and BN folding; "
                "put 'prune' first in [pipeline] steps"
            )


def channel_groups(model: nn.Module, candidate: Candidate, scope: Scope = "hidden") -> list[ChannelGroup]:
    """The channel groups of ``model`` (built from ``candidate``) with their plan ratios."""
    if scope not in SCOPES:
        raise UserInputError(f"unknown prune scope {scope!r}; choose one of {list(SCOPES)}")
    stage_idx = stage_of_block(candidate)
    blocks = list(model.blocks)
    groups: list[ChannelGroup] = []
    if get_family(candidate.family).layout == "dense":
        for i, block in enumerate(blocks):
            nxt = f"blocks.{i + 1}.linear" if i + 1 < len(blocks) else "classifier"
            groups.append(
                ChannelGroup(
                    f"blocks.{i}.out",
                    block.linear.out_features,
                    candidate.stages[stage_idx[i]].prune_ratio,
                    producers=[f"blocks.{i}"],
                    consumers=[nxt],
                )
            )
        return groups
    outer = ChannelGroup("stem", model.stem.conv.out_channels, candidate.stages[0].prune_ratio, producers=["stem"])
    for i, block in enumerate(blocks):
        if not isinstance(block, InvertedResidual):  # pragma: no cover - families register only these blocks
            raise UserInputError(f"structured pruning does not support block type {type(block).__name__}")
        ratio = candidate.stages[stage_idx[i]].prune_ratio
        groups.append(
            ChannelGroup(
                f"blocks.{i}.hidden",
                block.hidden_channels,
                ratio,
                producers=[f"blocks.{i}.expand"],
                depthwise=[f"blocks.{i}.dw"],
                consumers=[f"blocks.{i}.project.conv"],
            )
        )
        outer.consumers.append(f"blocks.{i}.expand.conv")
        if block.use_residual:
            outer.producers.append(f"blocks.{i}.project")
            outer.name = f"{outer.name}+{i}"
        else:
            groups.append(outer)
            outer = ChannelGroup(
                f"blocks.{i}", block.project.conv.out_channels, ratio, producers=[f"blocks.{i}.project"]
            )
    outer.consumers.append("classifier")
    groups.append(outer)
    for g in groups:
        if not g.name.endswith(".hidden"):
            g.name = f"{g.name}.out"
    return [g for g in groups if scope == "all" or g.name.endswith(".hidden")]


def group_importance(model: nn.Module, group: ChannelGroup, criterion: str, generator=None) -> Tensor:
    """Importance of each channel of ``group``: the producers' per-channel scores, summed."""
    if criterion == "random":
        return torch.rand(group.size, generator=generator)
    total = torch.zeros(group.size)
    for name in group.producers:
        part = model.get_submodule(name)
        layer = part.conv if isinstance(part, ConvBNAct) else part.linear
        total += channel_importance(layer.weight, getattr(part, "bn", None), criterion, generator)
    return total


def _slice_conv(conv: nn.Conv1d | nn.Conv2d, out_idx: Tensor | None, in_idx: Tensor | None) -> nn.Module:
    w = conv.weight.detach()
    depthwise = conv.groups == conv.in_channels and conv.groups > 1
    if out_idx is not None:
        w = w[out_idx]
    if in_idx is not None and not depthwise:
        w = w[:, in_idx]
    out_ch = w.shape[0]
    in_ch = out_ch if depthwise else w.shape[1] * conv.groups
    new = (nn.Conv1d if isinstance(conv, nn.Conv1d) else nn.Conv2d)(
        in_ch,
        out_ch,
        conv.kernel_size,
        conv.stride,
        conv.padding,
        groups=out_ch if depthwise else conv.groups,
        bias=conv.bias is not None,
    )
    new.weight.data.copy_(w)
    if conv.bias is not None:
        b = conv.bias.detach()
        new.bias.data.copy_(b[out_idx] if out_idx is not None else b)
    return new


def _slice_bn(bn: nn.BatchNorm1d | nn.BatchNorm2d, idx: Tensor) -> nn.Module:
    new = type(bn)(len(idx), eps=bn.eps, momentum=bn.momentum)
    new.weight.data.copy_(bn.weight.detach()[idx])
    new.bias.data.copy_(bn.bias.detach()[idx])
    new.running_mean.copy_(bn.running_mean[idx])
    new.running_var.copy_(bn.running_var[idx])
    return new


def _slice_linear(linear: nn.Linear, out_idx: Tensor | None, in_idx: Tensor | None) -> nn.Linear:
    w = linear.weight.detach()
    if out_idx is not None:
        w = w[out_idx]
    if in_idx is not None:
        w = w[:, in_idx]
    new = nn.Linear(w.shape[1], w.shape[0], bias=linear.bias is not None)
    new.weight.data.copy_(w)
    if linear.bias is not None:
        b = linear.bias.detach()
        new.bias.data.copy_(b[out_idx] if out_idx is not None else b)
    return new


def _slice_layer(layer: nn.Module, out_idx: Tensor | None, in_idx: Tensor | None) -> nn.Module:
    if isinstance(layer, nn.Conv1d | nn.Conv2d):
        return _slice_conv(layer, out_idx, in_idx)
    return _slice_linear(layer, out_idx, in_idx)


def prune_group(model: nn.Module, group: ChannelGroup, keep: Tensor) -> None:
    """Keep only channels ``keep`` (sorted indices) of ``group`` in every member layer (in place)."""
    for name in group.producers + group.depthwise:
        part = model.get_submodule(name)
        if isinstance(part, ConvBNAct):
            part.conv = _slice_conv(part.conv, keep, keep if name in group.depthwise else None)
            part.bn = _slice_bn(part.bn, keep)
        else:
            part.linear = _slice_linear(part.linear, keep, None)
    for name in group.consumers:
        set_submodule(model, name, _slice_layer(model.get_submodule(name), None, keep))


def plan_channel_pruning(
    model: nn.Module,
    candidate: Candidate,
    criterion: str = "l1",
    generator: torch.Generator | None = None,
    scope: Scope = "hidden",
) -> list[tuple[ChannelGroup, Tensor]]:
    """Groups to prune and the sorted channel indices each keeps, scored on the unpruned model."""
    if criterion not in CRITERIA:
        raise UserInputError(f"unknown prune criterion {criterion!r}; choose one of {list(CRITERIA)}")
    plan = []
    for group in channel_groups(model, candidate, scope):
        if group.ratio <= 0:
            continue
        keep = channels_to_keep(group.size, group.ratio)
        _check_prunable(model, group.producers + group.depthwise + group.consumers)
        scores = group_importance(model, group, criterion, generator)
        plan.append((group, scores.topk(keep).indices.sort().values))
    return plan


def prune_channels(
    model: nn.Module,
    candidate: Candidate,
    criterion: str = "l1",
    generator: torch.Generator | None = None,
    scope: Scope = "hidden",
) -> nn.Module:
    """Remove each group's ``prune_ratio`` share of channels (in place); return ``model``.

    Example:
        >>> from jointnas.spaces import Candidate, Stage, build_model
        >>> c = Candidate("mlp", (64,), 10, (Stage(32, prune_ratio=0.5),))
        >>> prune_channels(build_model(c), c).blocks[0].linear.out_features
        16
    """
    for group, keep in plan_channel_pruning(model, candidate, criterion, generator, scope):
        prune_group(model, group, keep)
    return model.train(model.training)  # new submodules take the model's mode


__all__ = [
    "CRITERIA",
    "SCOPES",
    "ChannelGroup",
    "channel_groups",
    "channel_importance",
    "channels_to_keep",
    "group_importance",
    "plan_channel_pruning",
    "prune_channels",
    "prune_group",
]
