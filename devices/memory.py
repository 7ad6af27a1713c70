"""Flash and SRAM estimators over traced layers (`jointnas.spaces.LayerInfo`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from jointnas.spaces import LayerInfo

SCALE_BYTES = 4
"""Bytes of one per-output-channel quantization scale (float32)."""
BIAS_BYTES = 4
"""Bytes of one bias (int32 in integer kernels, float32 otherwise)."""


def layer_flash_bytes(layer: LayerInfo) -> int:
    """Packed weights (nonzero × bits, rounded up to bytes) + per-channel scales + biases."""
    weights = math.ceil(layer.weight_nonzero * layer.weight_bits / 8)
    scales = layer.out_channels * SCALE_BYTES if layer.weight_bits < 32 else 0
    return weights + scales + layer.bias_numel * BIAS_BYTES


def estimate_flash_bytes(layers: Sequence[LayerInfo]) -> int:
    """Flash bytes of the model's parameters (no runtime overhead; device models add their own)."""
    return sum(layer_flash_bytes(layer) for layer in layers)


def estimate_sram_bytes(layers: Sequence[LayerInfo], input_bits: int | None = None) -> int:
    """Peak live activation bytes: max over layers of input + output + live residual tensors.

    A layer's input is stored at the bit-width of the layer before it (the model input at
    ``input_bits``: 8 when the model is quantized, else 32, unless given).
    """
    if not layers:
        return 0
    if input_bits is None:
        input_bits = 8 if any(layer.act_bits < 32 for layer in layers) else 32
    peak = 0
    prev_bits = input_bits
    for layer in layers:
        live_bits = layer.in_numel * prev_bits + layer.out_numel * layer.act_bits
        live_bits += layer.residual_numel * prev_bits
        peak = max(peak, math.ceil(live_bits / 8))
        prev_bits = layer.act_bits
    return peak
