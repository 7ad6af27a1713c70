"""Straight-through fake quantization, the one implementation (compression's quantized layers and the
supernets use it).

Weights, per output channel, to ``bits`` in {1, 2, 4, 8, 16} (32 = float; ``"fp16"`` = a round trip
through IEEE half, `to_float16`, the same for weights and activations), by one of the
``WEIGHT_QUANTIZERS``: ``maxabs`` (symmetric, scale = max|w| / (2^(b-1) − 1)), ``dorefa`` (Zhou et al.
2016: tanh-normalized, 2^b uniform levels in [−1, 1], rescaled by max|w|) or ``lsq`` (Esser et al.
2020: symmetric with a learned step per channel, gradient-scaled). 1 bit is binary ``sign(w)·mean|w|``
for every method. Activations: clip to a level ``clip`` (PACT, Choi et al. 2018), unsigned after ReLU
and symmetric elsewhere. Rounding passes gradients straight through (Bengio et al. 2013).
"""

from __future__ import annotations

import torch
from torch import Tensor

from jointnas.spaces._errors import UserInputError
from jointnas.spaces.candidate import WEIGHT_PRECISIONS
from jointnas.spaces.precision import Precision, is_fp16

FLOAT16_MAX = 65504.0
"""The largest finite IEEE half value; `to_float16` saturates there instead of overflowing to inf."""

WEIGHT_QUANTIZERS = ("maxabs", "dorefa", "lsq")


def to_float16(x: Tensor) -> Tensor:
    """``x`` rounded to the nearest IEEE half value (saturating at ±`FLOAT16_MAX`), in ``x``'s dtype.

    Example:
        >>> to_float16(torch.tensor([1.0 + 2**-12, 1e6])).tolist()
        [1.0, 65504.0]
    """
    return x.clamp(-FLOAT16_MAX, FLOAT16_MAX).to(torch.float16).to(x.dtype)


def ste(x: Tensor, q: Tensor) -> Tensor:
    """Forward exactly ``q``, backward identity to ``x`` (``x - x.detach()`` is an exact zero)."""
    return q.detach() + (x - x.detach())


def round_ste(x: Tensor) -> Tensor:
    """``round(x)`` forward, identity backward."""
    return torch.round(x).detach() + (x - x.detach())


def grad_scale(x: Tensor, factor: float) -> Tensor:
    """``x`` forward, gradient multiplied by ``factor`` (LSQ's step-size gradient scaling)."""
    return (x - x * factor).detach() + x * factor


def per_channel(weight: Tensor) -> tuple[int, ...]:
    return tuple(range(1, weight.dim()))


def weight_scale(weight: Tensor, bits: int) -> Tensor:
    """Per-output-channel scale of symmetric ``bits`` quantization (max-abs), shaped to broadcast."""
    qmax = 2 ** (bits - 1) - 1
    amax = weight.detach().abs().amax(dim=per_channel(weight), keepdim=True).clamp_min(1e-8)
    return amax / qmax


def lsq_init_step(weight: Tensor, bits: int) -> Tensor:
    """Initial per-channel LSQ step, shaped to broadcast.

    LSQ's ``2·mean|w| / sqrt(qmax)`` (Esser et al. 2020), capped at the max-abs scale ``max|w| / qmax``:
    the paper's rule suits 2-4 bits but is needlessly coarse at 8-16 bits, where nothing need clip.
    """
    qmax = 2 ** (bits - 1) - 1
    lsq = 2 * weight.detach().abs().mean(dim=per_channel(weight), keepdim=True) / qmax**0.5
    return torch.minimum(lsq, weight_scale(weight, bits)).clamp_min(1e-8)


def check_bits(bits: Precision) -> None:
    if bits not in WEIGHT_PRECISIONS:
        raise UserInputError(f"weight bit-width {bits} is unsupported; choose one of {list(WEIGHT_PRECISIONS)}")


def check_method(method: str) -> None:
    if method not in WEIGHT_QUANTIZERS:
        raise UserInputError(f"unknown weight quantizer {method!r}; choose one of {list(WEIGHT_QUANTIZERS)}")


def quantize_weight(weight: Tensor, bits: Precision, method: str = "maxabs", step: Tensor | None = None) -> Tensor:
    """Fake-quantize ``weight`` to ``bits`` per output channel with straight-through gradients.

    Args:
        weight: conv/linear weight, output channels first.
        bits: 1 (binary), 2, 4, 8, 16, 32 (unchanged) or ``"fp16"`` (IEEE half, any ``method``).
        method: ``maxabs`` (symmetric, scale = max|w|/qmax), ``dorefa`` or ``lsq`` (needs ``step``).
        step: LSQ's learned per-channel step, shaped to broadcast against ``weight``.
    """
    if is_fp16(bits):
        return ste(weight, to_float16(weight))
    if bits >= 32:
        return weight
    check_bits(bits)
    check_method(method)
    if bits == 1:  # binary for every method: sign(w)·mean|w| per channel (XNOR-Net / DoReFa k=1)
        alpha = weight.detach().abs().mean(dim=per_channel(weight), keepdim=True)
        return ste(weight, torch.where(weight >= 0, alpha, -alpha))
    qmax = 2 ** (bits - 1) - 1
    if method == "lsq":
        if step is None:
            raise UserInputError("the 'lsq' weight quantizer needs its learned step; quantize with quantize_model")
        fan_in = weight[0].numel()
        s = grad_scale(step.abs() + 1e-12, 1.0 / (fan_in * qmax) ** 0.5)
        return round_ste(torch.clamp(weight / s, -qmax, qmax)) * s
    if method == "dorefa":
        # DoReFa-Net: squash with tanh, normalize to [0, 1], quantize to 2^k - 1 steps, map to [-1, 1];
        # rescaled per channel by max|w| so the layer keeps its magnitude once BatchNorm is folded.
        levels = 2**bits - 1
        t = torch.tanh(weight)
        t = t / (2 * t.detach().abs().amax(dim=per_channel(weight), keepdim=True).clamp_min(1e-8)) + 0.5
        q = 2 * round_ste(t * levels) / levels - 1
        return q * weight.detach().abs().amax(dim=per_channel(weight), keepdim=True)
    scale = weight_scale(weight, bits)
    return ste(weight, torch.clamp(torch.round(weight / scale), -qmax, qmax) * scale)


def quantize_activation(x: Tensor, bits: Precision, clip: Tensor, signed: bool) -> Tensor:
    """PACT fake-quantization of ``x`` to ``bits`` with learned clipping level ``clip`` (> 0).

    Gradients reach ``x`` inside the clip range and ``clip`` through the clamp (straight-through).
    ``"fp16"`` rounds through IEEE half instead (no clip).
    """
    if is_fp16(bits):
        return ste(x, to_float16(x))
    if bits >= 32:
        return x
    alpha = clip.abs() + 1e-6
    lo = -alpha if signed else torch.zeros_like(alpha)
    y = torch.minimum(torch.maximum(x, lo), alpha)
    levels = 2 ** (bits - 1) - 1 if signed else 2**bits - 1
    scale = alpha / levels
    return ste(y, torch.round(y / scale) * scale)
