"""Flash and SRAM estimators over traced layers (`jointnas.spaces.LayerInfo`)."""

from __future__ import annotations

import math
from collections.abc import Sequence

from jointnas.spaces import LayerInfo

SCALE_BYTES = 4
"""Bytes of one per-output-channel quantization scale (float32)."""
BIAS_BYTES = 4
"""Bytes of one bias (float32 in the packed C array; int32 in integer kernels: the same size)."""


def weight_storage_bytes(numel: int, nonzero: int, bits: int) -> int:
    """Bytes of one layer's packed weights in the smaller of two formats.

    * dense: every weight at ``bits`` (float32 when 32), packed LSB-first, padded to a whole byte;
    * sparse (bitmap): one bit per weight marking the nonzero ones (padded to a byte), then the nonzero
      weights packed at ``bits`` (padded to a byte).

    Sparse is used only when strictly smaller (sparsity above ``1 − 1/bits`` before padding). This is
    exactly what `jointnas.compression.export_c_array` writes; a test holds the two together.
    """
    dense = math.ceil(numel * bits / 8)
    sparse = math.ceil(numel / 8) + math.ceil(nonzero * bits / 8)
    return sparse if sparse < dense else dense


def layer_flash_bytes(layer: LayerInfo) -> int:
    """Packed weights (`weight_storage_bytes`) + float32 per-channel scales (quantized) + float32 biases."""
    weights = weight_storage_bytes(layer.weight_numel, layer.weight_nonzero, layer.weight_bits)
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
