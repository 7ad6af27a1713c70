"""Weight packing of the C library: integer codes at their bit-width, LSB-first, and the sparse bitmap.

Per conv/linear layer the library stores, in program memory:

* ``mask`` (sparse layers only): one bit per weight in row-major order (out, in/groups, kh, kw),
  LSB-first, 1 = stored. Sparse exactly when `jointnas.spaces.weight_storage_bytes` says so;
* ``w``: the stored weights (all, or the nonzero ones after a mask), packed LSB-first at the layer's
  bit-width and padded to a whole byte: signed two's complement codes ``q`` (value ``scale · q``),
  offset codes ``u`` (binary, DoReFa: value ``scale · (2u − (2^bits − 1))``), or float32 when 32 bits;
* ``scale``: 4 bytes per output channel for integer codes (an int32 requantization multiplier or a
  float32 scale, by kernel); ``bias``: 4 bytes per output channel (int32 or float32).

So the bytes equal `jointnas.spaces.layer_flash_bytes` of the traced layer. Scalars are little-endian.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from torch import nn

from jointnas.spaces import weight_storage_bytes
from jointnas.spaces.precision import as_precision, is_float, is_fp16

from ..quantization import WeightCodes


def pack_bits(codes: np.ndarray, bits: int) -> bytes:
    """Pack integer ``codes`` (two's complement when negative) at ``bits`` each, LSB-first, byte-padded.

    Example:
        >>> pack_bits(np.array([1, -1, 0, 2]), 2).hex()  # 01 11 00 10, first code in the low bits
        '8d'
    """
    codes = np.asarray(codes, dtype=np.int64).ravel()
    if bits not in (1, 2, 4, 8, 16):
        raise ValueError(f"codes of {bits} bits cannot be packed; use 1, 2, 4, 8 or 16")
    unsigned = (codes & ((1 << bits) - 1)).astype(np.uint64)
    if bits in (8, 16):
        return unsigned.astype(np.uint8 if bits == 8 else "<u2").tobytes()
    per_byte = 8 // bits
    padded = np.zeros(math.ceil(len(unsigned) / per_byte) * per_byte, dtype=np.uint64)
    padded[: len(unsigned)] = unsigned
    lanes = padded.reshape(-1, per_byte) << (np.arange(per_byte, dtype=np.uint64) * bits)
    return lanes.sum(axis=1).astype(np.uint8).tobytes()


def unpack_bits(data: bytes, bits: int, count: int, signed: bool) -> np.ndarray:
    """Inverse of `pack_bits` for ``count`` codes."""
    if bits in (8, 16):
        dtype = {(8, True): np.int8, (8, False): np.uint8, (16, True): "<i2", (16, False): "<u2"}[(bits, signed)]
        return np.frombuffer(data, dtype=dtype)[:count].astype(np.int64)
    raw = np.frombuffer(data, dtype=np.uint8).astype(np.int64)
    per_byte = 8 // bits
    values = ((raw[:, None] >> (np.arange(per_byte) * bits)) & ((1 << bits) - 1)).ravel()[:count]
    if signed:
        values = np.where(values >= 1 << (bits - 1), values - (1 << bits), values)
    return values


@dataclass(frozen=True)
class PackedWeights:
    """One layer's weights as stored: bitmap (or ``None``), packed bytes, and the integer values.

    ``levels`` holds the integer weight values the kernels multiply (``q``, or ``2u − (2^bits − 1)``
    for offset codes), dense, shaped like the weight; ``scales`` the per-output-channel scales
    (``None`` for float weights, whose values are ``values``). ``half``: IEEE float16 weights (``"fp16"``,
    ``bits`` 16, no codes), read as floats.
    """

    bits: int
    signed: bool
    mask: bytes | None
    data: bytes
    levels: np.ndarray | None
    scales: np.ndarray | None
    values: np.ndarray
    half: bool = False

    @property
    def sparse(self) -> bool:
        return self.mask is not None

    @property
    def max_level(self) -> int:
        """Largest |integer weight| (0 for float weights)."""
        return 0 if self.levels is None else int(np.abs(self.levels).max(initial=0))

    def row_l1(self) -> np.ndarray:
        """Σ|integer weight| per output channel (int64)."""
        return np.abs(self.levels.reshape(len(self.levels), -1)).sum(axis=1)


def pack_layer(name: str, layer: nn.Conv1d | nn.Conv2d | nn.Linear) -> PackedWeights:
    """Pack the weights of a deployable layer (``weight_bits`` and ``packed_codes`` from `deployable_model`)."""
    bits = as_precision(getattr(layer, "weight_bits", 32))
    weight = layer.weight.detach().cpu().double().numpy()
    codes: WeightCodes | None = None if is_float(bits) else getattr(layer, "packed_codes", None)
    if not is_float(bits) and codes is None:
        raise ValueError(f"layer {name} has {bits}-bit weights but no integer codes; pass the deployable model")
    nonzero = (weight != 0).ravel()
    _, sparse = weight_storage_bytes(weight.size, int(nonzero.sum()), bits)
    keep = nonzero if sparse else np.ones(weight.size, dtype=bool)
    mask = np.packbits(nonzero, bitorder="little").tobytes() if sparse else None
    if is_fp16(bits):  # the fake-quantized weights are float16 values already: the cast is exact
        data = weight.ravel()[keep].astype("<f2").tobytes()
        return PackedWeights(16, True, mask, data, None, None, weight.astype(np.float32), half=True)
    if codes is None:
        data = weight.ravel()[keep].astype("<f4").tobytes()
        return PackedWeights(32, True, mask, data, None, None, weight.astype(np.float32))
    raw = codes.codes.cpu().numpy().astype(np.int64)
    levels = raw if codes.signed else 2 * raw - (2**bits - 1)
    if sparse:  # what the kernels see: a weight the bitmap leaves out is 0
        levels = np.where(nonzero.reshape(levels.shape), levels, 0)
    data = pack_bits(raw.ravel()[keep], bits)
    scales = codes.scales.detach().cpu().double().numpy().ravel()
    return PackedWeights(bits, codes.signed, mask, data, levels, scales, weight.astype(np.float32))
