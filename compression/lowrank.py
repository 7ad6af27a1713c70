"""Low-rank factorization by truncated SVD of Linear layers and 1x1 convolutions."""

from __future__ import annotations

import torch
from torch import nn

from jointnas.spaces import Candidate, UserInputError, stage_of_block
from jointnas.spaces.layers import DenseAct, InvertedResidual


def rank_for(out_features: int, in_features: int, ratio: float) -> int:
    """Rank kept for an ``out × in`` matrix at ``ratio`` of full rank (at least 1)."""
    if not 0.0 < ratio <= 1.0:
        raise UserInputError(f"rank ratio {ratio} is out of range; use a value in (0, 1]")
    return max(1, int(round(ratio * min(out_features, in_features))))


def saves_parameters(out_features: int, in_features: int, rank: int) -> bool:
    """Whether ``rank·(in + out)`` weights are fewer than the dense ``in·out``."""
    return rank * (in_features + out_features) < in_features * out_features


def _svd_factors(weight: torch.Tensor, rank: int) -> tuple[torch.Tensor, torch.Tensor]:
    u, s, vh = torch.linalg.svd(weight.double(), full_matrices=False)
    root = s[:rank].sqrt()
    first = (root[:, None] * vh[:rank]).to(weight.dtype)  # rank × in
    second = (u[:, :rank] * root[None, :]).to(weight.dtype)  # out × rank
    return first, second


def factorize_linear(linear: nn.Linear, rank: int) -> nn.Sequential:
    """``Linear(in, out)`` → ``Linear(in, rank, bias=False)`` → ``Linear(rank, out)``."""
    first, second = _svd_factors(linear.weight.detach(), rank)
    a = nn.Linear(linear.in_features, rank, bias=False)
    b = nn.Linear(rank, linear.out_features, bias=linear.bias is not None)
    a.weight.data.copy_(first)
    b.weight.data.copy_(second)
    if linear.bias is not None:
        b.bias.data.copy_(linear.bias.detach())
    return nn.Sequential(a, b)


def factorize_conv1x1(conv: nn.Conv1d | nn.Conv2d, rank: int) -> nn.Sequential:
    """1x1 ``Conv2d(in, out)`` (or size-1 ``Conv1d``) → 1x1 conv to ``rank`` channels → 1x1 conv to ``out``."""
    if any(k != 1 for k in conv.kernel_size) or conv.groups != 1:
        raise UserInputError("SVD factorization applies to 1x1 convolutions without groups")
    first, second = _svd_factors(conv.weight.detach().flatten(1), rank)
    cls = type(conv) if type(conv) in (nn.Conv1d, nn.Conv2d) else nn.Conv2d
    a = cls(conv.in_channels, rank, 1, conv.stride, bias=False)
    b = cls(rank, conv.out_channels, 1, bias=conv.bias is not None)
    spatial = (1,) * (conv.weight.dim() - 2)
    a.weight.data.copy_(first.reshape(*first.shape, *spatial))
    b.weight.data.copy_(second.reshape(*second.shape, *spatial))
    if conv.bias is not None:
        b.bias.data.copy_(conv.bias.detach())
    return nn.Sequential(a, b)


def factorize_low_rank(model: nn.Module, candidate: Candidate) -> nn.Module:
    """Factorize each block's 1x1 convs (CNN) or hidden linear (MLP) at ``stage.rank_ratio``, in place.

    A layer is factorized only when the ratio is below 1 and the factorization has fewer weights than
    the dense layer; otherwise it stays as it is.
    """
    stage_idx = stage_of_block(candidate)
    for i, block in enumerate(model.blocks):
        ratio = candidate.stages[stage_idx[i]].rank_ratio
        if ratio >= 1.0:
            continue
        if isinstance(block, InvertedResidual):
            for part in (block.expand, block.project):
                conv = part.conv
                if not isinstance(conv, nn.Conv1d | nn.Conv2d):
                    continue  # already factorized
                r = rank_for(conv.out_channels, conv.in_channels, ratio)
                if saves_parameters(conv.out_channels, conv.in_channels, r):
                    part.conv = factorize_conv1x1(conv, r)
        elif isinstance(block, DenseAct) and isinstance(block.linear, nn.Linear):
            lin = block.linear
            r = rank_for(lin.out_features, lin.in_features, ratio)
            if saves_parameters(lin.out_features, lin.in_features, r):
                block.linear = factorize_linear(lin, r)
    return model.train(model.training)  # new submodules take the model's mode
