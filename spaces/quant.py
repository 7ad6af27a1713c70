"""Straight-through fake quantization, the one implementation shared by compression and supernets.

Weights: symmetric per-output-channel quantization to ``bits`` (2-16; 1 = binary ``sign·mean|w|``;
32 = float). Activations: clip to a level ``clip`` (PACT, Choi et al. 2018), unsigned after ReLU and
symmetric elsewhere. Rounding passes gradients straight through (Bengio et al. 2013).
"""

from __future__ import annotations

import torch
from torch import Tensor

from jointnas.spaces._errors import UserInputError
from jointnas.spaces.candidate import WEIGHT_BITS


def ste(x: Tensor, q: Tensor) -> Tensor:
    """Forward ``q``, backward identity to ``x``."""
    return x + (q - x).detach()


def weight_scale(weight: Tensor, bits: int) -> Tensor:
    """Per-output-channel scale of symmetric ``bits`` quantization (max-abs), shaped to broadcast."""
    qmax = 2 ** (bits - 1) - 1
    reduce = tuple(range(1, weight.dim()))
    amax = weight.detach().abs().amax(dim=reduce, keepdim=True).clamp_min(1e-8)
    return amax / qmax


def quantize_weight(weight: Tensor, bits: int) -> Tensor:
    """Fake-quantize ``weight`` to ``bits`` per output channel with a straight-through estimator."""
    if bits >= 32:
        return weight
    if bits not in WEIGHT_BITS:
        raise UserInputError(f"weight bit-width {bits} is unsupported; choose one of {list(WEIGHT_BITS)}")
    reduce = tuple(range(1, weight.dim()))
    if bits == 1:
        alpha = weight.detach().abs().mean(dim=reduce, keepdim=True)
        return ste(weight, torch.where(weight >= 0, alpha, -alpha))
    scale = weight_scale(weight, bits)
    qmax = 2 ** (bits - 1) - 1
    return ste(weight, torch.clamp(torch.round(weight / scale), -qmax, qmax) * scale)


def quantize_activation(x: Tensor, bits: int, clip: Tensor, signed: bool) -> Tensor:
    """PACT fake-quantization of ``x`` to ``bits`` with learned clipping level ``clip`` (> 0).

    Gradients reach ``x`` inside the clip range and ``clip`` through the clamp (straight-through).
    """
    if bits >= 32:
        return x
    alpha = clip.abs() + 1e-6
    lo = -alpha if signed else torch.zeros_like(alpha)
    y = torch.minimum(torch.maximum(x, lo), alpha)
    levels = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    scale = alpha / levels
    return ste(y, torch.round(y / scale) * scale)
