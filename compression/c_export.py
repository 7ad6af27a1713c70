"""Packed C arrays of a model's weights for microcontrollers: header, source and raw blob.

Every conv/linear layer of the deployable model (`deployable_model`: BatchNorm folded, fake-quant
weights baked) is written as up to four ``const`` arrays, in module order:

* ``<layer>_mask`` (sparse layers only): one bit per weight, LSB first, 1 = stored;
* ``<layer>_w``: the weights (all of them, or the nonzero ones after a mask) in row-major order
  (out, in, kh, kw), packed LSB-first at the layer's bit-width, padded to a whole byte. Codes of
  1-32 bits: signed two's complement ``q`` (max-abs, LSQ; value ``scale · q``) or unsigned ``u``
  (binary, DoReFa; value ``scale · (2u − (2^bits − 1))``); 32-bit layers store float32;
* ``<layer>_scale``: float32 per output channel (quantized layers only);
* ``<layer>_bias``: float32 per output channel.

The sparse format is chosen exactly when `jointnas.devices.memory.weight_storage_bytes` says it is
smaller, so the arrays' total size equals `estimate_flash_bytes` of the same model, byte for byte.
The same bytes go, concatenated in order, into ``<name>.bin``. Scalars are little-endian.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from jointnas.spaces import LayerInfo

from .export import deployable_model
from .quantization import WeightCodes

SCALE_BYTES = 4
"""float32 per-output-channel scale of a quantized layer."""
BIAS_BYTES = 4
"""float32 bias."""


def packed_weight_bytes(numel: int, nonzero: int, bits: int) -> tuple[int, bool]:
    """Bytes of a layer's packed weights and whether the sparse (bitmap + nonzeros) format is used.

    The smaller of dense ``ceil(numel·bits/8)`` and sparse ``ceil(numel/8) + ceil(nonzero·bits/8)``;
    sparse only when strictly smaller. `jointnas.devices.memory.weight_storage_bytes` is the same rule.
    """
    dense = math.ceil(numel * bits / 8)
    sparse = math.ceil(numel / 8) + math.ceil(nonzero * bits / 8)
    return (sparse, True) if sparse < dense else (dense, False)


def packed_layer_bytes(layer: LayerInfo) -> int:
    """Bytes `export_c_array` writes for a traced layer of a deployable model: weights, scales, biases."""
    weights, _ = packed_weight_bytes(layer.weight_numel, layer.weight_nonzero, layer.weight_bits)
    scales = layer.out_channels * SCALE_BYTES if layer.weight_bits < 32 else 0
    return weights + scales + layer.bias_numel * BIAS_BYTES


@dataclass(frozen=True)
class CArrayLayer:
    """One layer of a packed export: its arrays' sizes in bytes and how its weights are stored."""

    name: str
    symbol: str
    shape: tuple[int, ...]
    bits: int
    signed: bool
    sparse: bool
    nonzero: int
    mask_bytes: int
    weight_bytes: int
    scale_bytes: int
    bias_bytes: int

    @property
    def total_bytes(self) -> int:
        return self.mask_bytes + self.weight_bytes + self.scale_bytes + self.bias_bytes


@dataclass(frozen=True)
class CArrayExport:
    """Files written by `export_c_array` and the byte count of the arrays (= the Flash estimate)."""

    header: Path
    source: Path
    blob: Path
    layers: tuple[CArrayLayer, ...]

    @property
    def total_bytes(self) -> int:
        return sum(layer.total_bytes for layer in self.layers)


def pack_bits(codes: np.ndarray, bits: int) -> bytes:
    """Pack integer ``codes`` (two's complement when negative) at ``bits`` each, LSB-first, byte-padded."""
    codes = np.asarray(codes, dtype=np.int64).ravel()
    if bits == 32:
        raise ValueError("32-bit weights are stored as float32, not packed codes")
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


def _symbol(name: str) -> str:
    return re.sub(r"\W", "_", name) or "layer"


def _layer_arrays(name: str, layer: nn.Module) -> tuple[CArrayLayer, dict[str, tuple[str, bytes]]]:
    bits = int(getattr(layer, "weight_bits", 32))
    weight = layer.weight.detach().cpu()
    codes: WeightCodes | None = getattr(layer, "packed_codes", None) if bits < 32 else None
    if bits < 32 and codes is None:
        raise ValueError(f"layer {name} has {bits}-bit weights but no integer codes; export the fake-quant model")
    nonzero_mask = (weight != 0).numpy().ravel()
    numel, nonzero = weight.numel(), int(nonzero_mask.sum())
    _, sparse = packed_weight_bytes(numel, nonzero, bits)
    keep = nonzero_mask if sparse else np.ones(numel, dtype=bool)
    if codes is None:
        w_bytes = weight.numpy().ravel()[keep].astype("<f4").tobytes()
        scale_bytes = b""
    else:
        w_bytes = pack_bits(codes.codes.cpu().numpy().ravel()[keep], bits)
        scale_bytes = codes.scales.detach().cpu().numpy().astype("<f4").tobytes()
    arrays: dict[str, tuple[str, bytes]] = {}
    sym = _symbol(name)
    if sparse:
        arrays[f"{sym}_mask"] = ("uint8_t", np.packbits(nonzero_mask, bitorder="little").tobytes())
    arrays[f"{sym}_w"] = ("uint8_t" if codes is not None else "float", w_bytes)
    if scale_bytes:
        arrays[f"{sym}_scale"] = ("float", scale_bytes)
    if layer.bias is not None:
        arrays[f"{sym}_bias"] = ("float", layer.bias.detach().cpu().numpy().astype("<f4").tobytes())
    info = CArrayLayer(
        name=name,
        symbol=sym,
        shape=tuple(weight.shape),
        bits=bits,
        signed=True if codes is None else codes.signed,
        sparse=sparse,
        nonzero=nonzero,
        mask_bytes=len(arrays.get(f"{sym}_mask", ("", b""))[1]),
        weight_bytes=len(w_bytes),
        scale_bytes=len(scale_bytes),
        bias_bytes=len(arrays.get(f"{sym}_bias", ("", b""))[1]),
    )
    return info, arrays


def _c_initializer(ctype: str, data: bytes) -> str:
    if ctype == "float":
        values = [repr(float(v)) + "f" for v in np.frombuffer(data, dtype="<f4")]
    else:
        values = [f"0x{b:02x}" for b in data]
    lines = [", ".join(values[i : i + 12]) for i in range(0, len(values), 12)]
    return "{\n    " + ",\n    ".join(lines) + "\n}"


def export_c_array(model: nn.Module, path: str | Path) -> CArrayExport:
    """Write ``<path>.h``, ``<path>.c`` and ``<path>.bin`` with the packed weights of ``model``.

    ``path`` is the file stem (a ``.c``/``.h`` suffix is dropped). The model is exported in deployment
    form (BatchNorm folded, quantized weights as integer codes + per-channel scales). Returns the
    layer table; ``total_bytes`` is the size of ``<path>.bin`` and of the arrays in ``<path>.c``.

    Example:
        >>> import tempfile
        >>> from jointnas.spaces import Candidate, Stage, build_model
        >>> out = export_c_array(build_model(Candidate("mlp", (64,), 10, (Stage(32),))), tempfile.mkdtemp() + "/m")
        >>> out.total_bytes == out.blob.stat().st_size == 4 * 2410
        True
    """
    stem = Path(path)
    if stem.suffix in (".c", ".h", ".bin"):
        stem = stem.with_suffix("")
    stem.parent.mkdir(parents=True, exist_ok=True)
    prefix = _symbol(stem.name)
    deploy = deployable_model(model)
    layers: list[CArrayLayer] = []
    blob = bytearray()
    decls, defs = [], []
    for name, module in deploy.named_modules():
        if not isinstance(module, nn.Conv1d | nn.Conv2d | nn.Linear):
            continue
        info, arrays = _layer_arrays(name, module)
        layers.append(info)
        shape = "x".join(str(d) for d in info.shape)
        codes = "float32" if info.bits == 32 else ("signed" if info.signed else "offset") + f" {info.bits}-bit"
        decls.append(f"/* {name}: {shape}, {codes}, {'sparse bitmap' if info.sparse else 'dense'} */")
        for sym, (ctype, data) in arrays.items():
            count = len(data) // (4 if ctype == "float" else 1)
            decls.append(f"extern const {ctype} {prefix}_{sym}[{count}];")
            defs.append(f"const {ctype} {prefix}_{sym}[{count}] = {_c_initializer(ctype, data)};")
            blob += data
    guard = f"{prefix.upper()}_WEIGHTS_H"
    header = stem.with_suffix(".h")
    header.write_text(
        f"/* Packed weights generated by jointnas.compression.export_c_array: {len(blob)} bytes. */\n"
        f"#ifndef {guard}\n#define {guard}\n#include <stdint.h>\n\n"
        f"#define {prefix.upper()}_WEIGHT_BYTES {len(blob)}\n\n" + "\n".join(decls) + f"\n\n#endif /* {guard} */\n"
    )
    source = stem.with_suffix(".c")
    source.write_text(f'#include "{header.name}"\n\n' + "\n\n".join(defs) + "\n")
    blob_path = stem.with_suffix(".bin")
    blob_path.write_bytes(bytes(blob))
    return CArrayExport(header, source, blob_path, tuple(layers))


@torch.no_grad()
def read_c_array_weights(export: CArrayExport) -> dict[str, torch.Tensor]:
    """De-quantize the weights back from ``export``'s blob (to check the packed format round-trips)."""
    data = export.blob.read_bytes()
    out, offset = {}, 0
    for layer in export.layers:
        numel = math.prod(layer.shape)
        mask = np.ones(numel, dtype=bool)
        if layer.sparse:
            mask = np.unpackbits(np.frombuffer(data[offset : offset + layer.mask_bytes], np.uint8), bitorder="little")
            mask = mask[:numel].astype(bool)
            offset += layer.mask_bytes
        stored = int(mask.sum())
        w_raw = data[offset : offset + layer.weight_bytes]
        offset += layer.weight_bytes
        if layer.bits == 32:
            values = np.frombuffer(w_raw, dtype="<f4").astype(np.float64)
        else:
            codes = unpack_bits(w_raw, layer.bits, stored, layer.signed).astype(np.float64)
            scales = np.frombuffer(data[offset : offset + layer.scale_bytes], dtype="<f4").astype(np.float64)
            offset += layer.scale_bytes
            per_channel = numel // layer.shape[0]
            channel = np.repeat(np.arange(layer.shape[0]), per_channel)[mask]
            levels = codes if layer.signed else 2 * codes - (2**layer.bits - 1)
            values = levels * scales[channel]
        full = np.zeros(numel)
        full[mask] = values
        out[layer.name] = torch.from_numpy(full.reshape(layer.shape)).float()
        offset += layer.bias_bytes
    return out


__all__ = [
    "CArrayExport",
    "CArrayLayer",
    "export_c_array",
    "pack_bits",
    "packed_layer_bytes",
    "packed_weight_bytes",
    "read_c_array_weights",
    "unpack_bits",
]
