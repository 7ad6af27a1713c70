"""Trace a model's weight layers: shapes, MACs, weights, bits — the input of every cost estimator.

Also the one Flash byte rule (`weight_storage_bytes`, `layer_flash_bytes`): what the generated C library
(`jointnas.compression.cgen`) stores for a traced layer, byte for byte; the devices' estimators sum it.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import torch
from torch import nn

from jointnas.spaces.precision import Precision, as_precision, is_fp16, storage_bits


@dataclass(frozen=True)
class LayerInfo:
    """One weight layer as executed on a batch of one.

    ``kind`` is ``"conv"``, ``"dwconv"`` or ``"linear"``. ``in_shape`` / ``out_shape`` exclude the batch.
    ``weight_bits`` / ``act_bits`` come from the layer's fake-quant attributes (32 when float) as storage
    bits: ``"fp16"`` is 16 with ``weight_fp16`` / ``act_fp16`` set (IEEE half: no integer codes, no
    scales; `weight_precision` / `act_precision` give the plan's value back). ``residual_numel``
    counts activations that must stay alive while this layer runs (the input of an enclosing residual
    block). ``out_quantized``: an activation quantizer (the block's ``out_quant``) follows the layer, so its
    output is stored as ``act_bits`` codes; without one, the C library stores an integer layer's output at
    `C_GRID_BITS` (see `jointnas.devices.mcu.stored_bits`). ``in_signed`` (first layer only): the model
    input may be negative (the C library stores unsigned input codes for a task whose inputs never are).
    """

    name: str
    kind: str
    in_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    in_channels: int
    out_channels: int
    kernel: int
    stride: int
    groups: int
    weight_numel: int
    weight_nonzero: int
    bias_numel: int
    macs: int
    weight_bits: int
    act_bits: int
    residual_numel: int
    relu: bool
    out_quantized: bool = False
    in_signed: bool = True
    weight_fp16: bool = False
    act_fp16: bool = False

    @property
    def weight_precision(self) -> Precision:
        """The plan's weight precision: ``"fp16"`` or the bit-width."""
        return "fp16" if self.weight_fp16 else self.weight_bits

    @property
    def act_precision(self) -> Precision:
        """The plan's activation precision: ``"fp16"`` or the bit-width."""
        return "fp16" if self.act_fp16 else self.act_bits

    @property
    def integer_weights(self) -> bool:
        """Whether the weights are integer codes with per-channel scales (not float32 or float16)."""
        return self.weight_bits < 32 and not self.weight_fp16

    @property
    def in_numel(self) -> int:
        return _numel(self.in_shape)

    @property
    def out_numel(self) -> int:
        return _numel(self.out_shape)


C_INPUT_BITS = 16
"""Bits of the generated C library's quantized model input (its first integer layer reads them)."""
C_GRID_BITS = 16
"""Bits the C library stores an integer tensor at that no activation quantizer fixes (the first factor
of a low-rank pair, residual and pooled sums), unless an accumulator bound forces fewer."""

SCALE_BYTES = 4
"""Bytes per output channel of a layer with integer weight codes: the int32 requantization multiplier
(integer kernels) or the float32 de-quantization scale (kernels with a float output or float input)."""
BIAS_BYTES = 4
"""Bytes per bias: int32 in the accumulator's units (integer kernels) or float32 (float outputs)."""


def weight_storage_bytes(numel: int, nonzero: int, bits: Precision) -> tuple[int, bool]:
    """Bytes of one layer's packed weights in the smaller of two formats, and whether it is the sparse one.

    * dense: every weight at ``bits`` (float32 when 32, float16 at 16 for ``"fp16"``: 2 bytes a weight),
      packed LSB-first, padded to a whole byte;
    * sparse (bitmap): one bit per weight marking the nonzero ones (padded to a byte), then the nonzero
      weights packed at ``bits`` (padded to a byte).

    Sparse is used only when strictly smaller (sparsity above ``1 − 1/bits`` before padding).

    Example:
        >>> weight_storage_bytes(1000, 500, 8)  # bitmap 125 + 500 nonzero bytes
        (625, True)
        >>> weight_storage_bytes(1000, 900, 8)
        (1000, False)
        >>> weight_storage_bytes(1000, 1000, "fp16")
        (2000, False)
    """
    bits = storage_bits(bits)
    dense = math.ceil(numel * bits / 8)
    sparse = math.ceil(numel / 8) + math.ceil(nonzero * bits / 8)
    return (sparse, True) if sparse < dense else (dense, False)


def layer_flash_bytes(layer: LayerInfo) -> int:
    """Flash bytes the C library stores for ``layer``: packed weights + per-channel scales + biases.

    Scales (`SCALE_BYTES` per output channel) exist when the weights are integer codes
    (``weight_bits`` < 32, not ``"fp16"``: `LayerInfo.integer_weights`); biases take `BIAS_BYTES`
    each. Layer geometry (the kernels' descriptors) is code, not counted here.
    """
    weights, _ = weight_storage_bytes(layer.weight_numel, layer.weight_nonzero, layer.weight_bits)
    scales = layer.out_channels * SCALE_BYTES if layer.integer_weights else 0
    return weights + scales + layer.bias_numel * BIAS_BYTES


def _numel(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n


def _last_layers_of(model: nn.Module, wanted) -> set[str]:
    """Names of the conv/linear layers whose parent block has a ``wanted(parent)`` epilogue right after them."""
    names = set()
    for parent_name, parent in model.named_modules():
        if not wanted(parent):
            continue
        for attr in ("conv", "linear"):
            layer = getattr(parent, attr, None)
            if not isinstance(layer, nn.Module):
                continue
            name = f"{parent_name}.{attr}" if parent_name else attr
            # A factorized layer is a Sequential: the epilogue follows its last factor.
            names.add(f"{name}.{len(layer) - 1}" if isinstance(layer, nn.Sequential) else name)
    return names


def _has_relu(parent: nn.Module) -> bool:
    return isinstance(getattr(parent, "act", None), nn.ReLU)


def _has_out_quant(parent: nn.Module) -> bool:
    quant = getattr(parent, "out_quant", None)
    return isinstance(quant, nn.Module) and not isinstance(quant, nn.Identity)


@torch.no_grad()
def _layer_info(
    name: str, module: nn.Module, x: torch.Tensor, y: torch.Tensor, residual: int, epilogue: tuple[bool, bool]
) -> LayerInfo:
    """One Conv/Linear layer as it ran on sample ``x`` (output ``y``; ``residual``: live residual elements;
    ``epilogue``: a ReLU follows, an activation quantizer follows)."""
    w = module.weight
    weight = as_precision(getattr(module, "weight_bits", 32))
    act = as_precision(getattr(module, "act_bits", 32))
    if isinstance(module, nn.Linear):
        kind, kernel, stride, groups = "linear", 1, 1, 1
        in_ch, out_ch = module.in_features, module.out_features
        macs = module.in_features * module.out_features * (x.numel() // module.in_features)
    else:
        groups = module.groups
        in_ch, out_ch = module.in_channels, module.out_channels
        kind = "dwconv" if groups == in_ch and groups > 1 else "conv"
        kernel, stride = module.kernel_size[0], module.stride[0]
        macs = w.numel() * (y.numel() // out_ch)
    return LayerInfo(
        name=name,
        kind=kind,
        in_shape=tuple(x.shape),
        out_shape=tuple(y.shape),
        in_channels=in_ch,
        out_channels=out_ch,
        kernel=kernel,
        stride=stride,
        groups=groups,
        weight_numel=w.numel(),
        weight_nonzero=int(torch.count_nonzero(w)),
        bias_numel=0 if module.bias is None else module.bias.numel(),
        macs=int(macs),
        weight_bits=storage_bits(weight),
        act_bits=storage_bits(act),
        residual_numel=residual,
        relu=epilogue[0],
        out_quantized=epilogue[1],
        weight_fp16=is_fp16(weight),
        act_fp16=is_fp16(act),
    )


def trace_layers(model: nn.Module, input_shape: tuple[int, ...], *, input_signed: bool = True) -> list[LayerInfo]:
    """Run one sample through ``model`` and describe every Conv/Linear layer in execution order.

    ``input_signed``: whether the model's (normalized) input takes negative values (the task's
    `input_signed`), recorded on the first layer."""
    layers: list[LayerInfo] = []
    live_residual: list[int] = []
    relu_after, quant_after = _last_layers_of(model, _has_relu), _last_layers_of(model, _has_out_quant)
    hooks = []

    def pre_block(module: nn.Module, args: tuple[torch.Tensor, ...]) -> None:
        live_residual.append(args[0][0].numel())

    def post_block(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
        live_residual.pop()

    def make_hook(name: str):
        def hook(module: nn.Module, args: tuple[torch.Tensor, ...], out: torch.Tensor) -> None:
            epilogue = (name in relu_after, name in quant_after)
            layers.append(_layer_info(name, module, args[0][0], out[0], sum(live_residual), epilogue))

        return hook

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv1d, nn.Conv2d, nn.Linear)):
            hooks.append(module.register_forward_hook(make_hook(name)))
        elif getattr(module, "use_residual", False):
            hooks.append(module.register_forward_pre_hook(pre_block))
            hooks.append(module.register_forward_hook(post_block))
    was_training = model.training
    model.eval()
    try:
        param = next(model.parameters())
        model(torch.zeros((1, *input_shape), dtype=param.dtype, device=param.device))
    finally:
        for h in hooks:
            h.remove()
        model.train(was_training)
    if layers and not input_signed:
        layers[0] = dataclasses.replace(layers[0], in_signed=False)
    return layers


def count_params(model: nn.Module) -> int:
    """Parameters of the deployable model (weights and biases; BatchNorm counts until folded)."""
    return sum(p.numel() for p in model.parameters())
