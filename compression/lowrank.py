"""Low-rank factorization by truncated SVD: Linear layers, 1x1 convolutions and k×k convolutions.

A weight ``W`` (``out × in``; a k×k conv's weight reshaped to ``out × in·k·k``) is replaced by the
product of two factors from its truncated SVD, ``W ≈ (U_r √S_r)(√S_r V_rᵀ)``: a Linear becomes two
Linears, a k×k conv becomes a k×k conv to ``r`` channels followed by a 1x1 conv (Jaderberg-style
channel decomposition; a 1x1 conv is the ``k = 1`` case). The rank is a share of full rank
(``mode="ratio"``) or the smallest rank that keeps a share of the spectral energy ``Σ s_i²``
(``mode="energy"``).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import Tensor, nn

from jointnas.spaces import Candidate, UserInputError, stage_of_block
from jointnas.spaces.layers import DenseAct, InvertedResidual

RANK_MODES = ("ratio", "energy")
RankMode = Literal["ratio", "energy"]


def rank_for(out_features: int, in_features: int, ratio: float) -> int:
    """Rank kept for an ``out × in`` matrix at ``ratio`` of full rank (at least 1)."""
    if not 0.0 < ratio <= 1.0:
        raise UserInputError(f"rank ratio {ratio} is out of range; use a value in (0, 1]")
    return max(1, int(round(ratio * min(out_features, in_features))))


def rank_for_energy(singular_values: Tensor, energy: float) -> int:
    """Smallest rank whose singular values keep at least ``energy`` of ``Σ s²`` (in (0, 1])."""
    if not 0.0 < energy <= 1.0:
        raise UserInputError(f"retained energy {energy} is out of range; use a value in (0, 1]")
    power = singular_values.double().pow(2)
    cumulative = power.cumsum(0) / power.sum().clamp_min(1e-30)
    return min(len(power), int((cumulative < energy - 1e-12).sum()) + 1)


def layer_rank(weight: Tensor, value: float, mode: RankMode = "ratio") -> int:
    """Rank for ``weight`` (flattened to ``out × rest``) at ``value``: a rank share or an energy share."""
    if mode not in RANK_MODES:
        raise UserInputError(f"unknown rank mode {mode!r}; choose one of {list(RANK_MODES)}")
    matrix = weight.detach().flatten(1)
    if mode == "ratio":
        return rank_for(matrix.shape[0], matrix.shape[1], value)
    return rank_for_energy(torch.linalg.svdvals(matrix.double()), value)


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


def factorize_conv(conv: nn.Conv1d | nn.Conv2d, rank: int) -> nn.Sequential:
    """k×k ``Conv2d(in, out)`` → k×k conv to ``rank`` channels (same stride, padding) → 1x1 conv to ``out``.

    A ``Conv1d`` (the ``cnn1d`` family) factorizes the same way into two ``Conv1d``.
    """
    if conv.groups != 1:
        raise UserInputError("SVD factorization applies to convolutions without groups (not depthwise)")
    if rank < 1:
        raise UserInputError(f"rank {rank} is invalid; keep at least rank 1")
    first, second = _svd_factors(conv.weight.detach().flatten(1), rank)
    cls = nn.Conv1d if isinstance(conv, nn.Conv1d) else nn.Conv2d
    a = cls(conv.in_channels, rank, conv.kernel_size, conv.stride, conv.padding, conv.dilation, bias=False)
    b = cls(rank, conv.out_channels, 1, bias=conv.bias is not None)
    a.weight.data.copy_(first.reshape(rank, *conv.weight.shape[1:]))
    b.weight.data.copy_(second.reshape(*second.shape, *([1] * (conv.weight.dim() - 2))))
    if conv.bias is not None:
        b.bias.data.copy_(conv.bias.detach())
    return nn.Sequential(a, b)


def factorize_conv1x1(conv: nn.Conv1d | nn.Conv2d, rank: int) -> nn.Sequential:
    """1x1 ``Conv2d(in, out)`` (or size-1 ``Conv1d``) → 1x1 conv to ``rank`` channels → 1x1 conv to ``out``."""
    if any(k != 1 for k in conv.kernel_size):
        raise UserInputError("factorize_conv1x1 applies to 1x1 convolutions; use factorize_conv for k×k")
    return factorize_conv(conv, rank)


def factorize_layer(layer: nn.Module, rank: int) -> nn.Sequential:
    """Factorize a Linear or a (non-grouped) Conv2d at ``rank``."""
    if isinstance(layer, nn.Linear):
        return factorize_linear(layer, rank)
    return factorize_conv(layer, rank)


def factorize_low_rank(model: nn.Module, candidate: Candidate, mode: RankMode = "ratio") -> nn.Module:
    """Factorize each block's non-grouped convs (CNN) or hidden linear (MLP) at ``stage.rank_ratio``, in place.

    ``mode="ratio"`` keeps ``rank_ratio`` of full rank; ``mode="energy"`` reads ``rank_ratio`` as the
    share of spectral energy to keep. A layer is factorized only when ``rank_ratio`` is below 1 and the
    factorization has fewer weights than the dense layer; otherwise it stays as it is.
    """
    stage_idx = stage_of_block(candidate)
    for i, block in enumerate(model.blocks):
        ratio = candidate.stages[stage_idx[i]].rank_ratio
        if ratio >= 1.0:
            continue
        if isinstance(block, InvertedResidual):
            for part in (block.expand, block.project):
                part.conv = _maybe_factorize(part.conv, ratio, mode)
        elif isinstance(block, DenseAct):
            block.linear = _maybe_factorize(block.linear, ratio, mode)
    return model.train(model.training)  # new submodules take the model's mode


def _maybe_factorize(layer: nn.Module, value: float, mode: RankMode) -> nn.Module:
    if type(layer) not in (nn.Conv1d, nn.Conv2d, nn.Linear) or getattr(layer, "groups", 1) != 1:
        return layer  # already factorized, quantized, or depthwise
    matrix = layer.weight.detach().flatten(1)
    r = layer_rank(matrix, value, mode)
    return factorize_layer(layer, r) if saves_parameters(matrix.shape[0], matrix.shape[1], r) else layer
