"""Flash and SRAM estimators over traced layers (`jointnas.spaces.LayerInfo`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from jointnas.spaces import LayerInfo, layer_flash_bytes


def estimate_flash_bytes(layers: Sequence[LayerInfo]) -> int:
    """Flash bytes of the model's parameters: `jointnas.spaces.layer_flash_bytes` summed (no runtime overhead;
    device models add their own). Equal to the weight bytes of the generated C library."""
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
