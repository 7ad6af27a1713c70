"""Structured channel pruning that physically removes channels.

For the CNN family the pruned dimension is each inverted-residual block's hidden (expanded) width:
the expand conv's outputs, the depthwise conv's channels and the project conv's inputs go together, and
the block's input/output widths, which residual additions tie across blocks, stay. For the MLP family a
stage's hidden units go, with the matching inputs of the next layer.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from jointnas.spaces import Candidate, UserInputError, stage_of_block
from jointnas.spaces.layers import ConvBNAct, DenseAct, InvertedResidual

CRITERIA = ("l1", "l2", "bn", "random")


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


def _keep_index(importance: Tensor, keep: int) -> Tensor:
    return importance.topk(keep).indices.sort().values


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


def prune_block_hidden(block: InvertedResidual, idx: Tensor) -> None:
    """Keep only hidden channels ``idx`` of an inverted-residual block (in place)."""
    for part in (block.expand, block.dw):
        if not isinstance(part.conv, nn.Conv1d | nn.Conv2d) or not isinstance(part.bn, nn.BatchNorm1d | nn.BatchNorm2d):
            raise UserInputError("structured pruning must run before low-rank factorization and quantization")
    block.expand.conv = _slice_conv(block.expand.conv, idx, None)
    block.expand.bn = _slice_bn(block.expand.bn, idx)
    block.dw.conv = _slice_conv(block.dw.conv, idx, idx)
    block.dw.bn = _slice_bn(block.dw.bn, idx)
    block.project.conv = _slice_conv(block.project.conv, None, idx)


def prune_channels(
    model: nn.Module, candidate: Candidate, criterion: str = "l1", generator: torch.Generator | None = None
) -> nn.Module:
    """Remove ``stage.prune_ratio`` of the hidden channels of every block (in place); return ``model``.

    Example:
        >>> from jointnas.spaces import Candidate, Stage, build_model
        >>> c = Candidate("mlp", (64,), 10, (Stage(32, prune_ratio=0.5),))
        >>> prune_channels(build_model(c), c).blocks[0].linear.out_features
        16
    """
    if criterion not in CRITERIA:
        raise UserInputError(f"unknown prune criterion {criterion!r}; choose one of {list(CRITERIA)}")
    stage_idx = stage_of_block(candidate)
    blocks = list(model.blocks)
    for i, block in enumerate(blocks):
        ratio = candidate.stages[stage_idx[i]].prune_ratio
        if ratio <= 0:
            continue
        if isinstance(block, InvertedResidual):
            hidden = block.hidden_channels
            keep = channels_to_keep(hidden, ratio)
            bn = block.expand.bn
            imp = channel_importance(block.expand.conv.weight, bn, criterion, generator)
            prune_block_hidden(block, _keep_index(imp, keep))
        elif isinstance(block, DenseAct):
            n = block.linear.out_features
            idx = _keep_index(
                channel_importance(block.linear.weight, None, criterion, generator), channels_to_keep(n, ratio)
            )
            block.linear = _slice_linear(block.linear, idx, None)
            nxt = blocks[i + 1] if i + 1 < len(blocks) else None
            if isinstance(nxt, DenseAct):
                nxt.linear = _slice_linear(nxt.linear, None, idx)
            else:
                model.classifier = _slice_linear(model.classifier, None, idx)
        else:  # pragma: no cover - families register only the blocks above
            raise UserInputError(f"structured pruning does not support block type {type(block).__name__}")
    return model.train(model.training)  # new submodules take the model's mode


__all__ = ["CRITERIA", "ConvBNAct", "channel_importance", "channels_to_keep", "prune_block_hidden", "prune_channels"]
