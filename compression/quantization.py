"""Mixed-precision fake quantization with straight-through estimators, and BatchNorm folding.

Weights: symmetric per-output-channel quantization to ``weight_bits`` (2-16; 1 = binary ``sign·mean|w|``;
32 = float). Activations: PACT (learned clipping level, Choi et al. 2018) to ``act_bits``, unsigned
after ReLU and symmetric elsewhere. Rounding passes gradients straight through (Bengio et al. 2013).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from jointnas.spaces import Candidate, stage_of_block
from jointnas.spaces.layers import ConvBNAct, DenseAct
from jointnas.spaces.quant import quantize_activation, quantize_weight, weight_scale

from ._modules import set_submodule


def integer_weights(weight: Tensor, bits: int) -> tuple[Tensor, Tensor]:
    """Integer codes and per-channel scales of ``weight`` at ``bits`` (for export and C arrays)."""
    reduce = tuple(range(1, weight.dim()))
    if bits == 1:
        alpha = weight.abs().mean(dim=reduce)
        return (weight >= 0).to(torch.int8), alpha
    scale = weight_scale(weight, bits)
    qmax = 2 ** (bits - 1) - 1
    return torch.clamp(torch.round(weight / scale), -qmax, qmax).to(torch.int32), scale.flatten()


class QuantConv2d(nn.Conv2d):
    """``Conv2d`` whose weight is fake-quantized to ``weight_bits``; ``act_bits`` tags its output."""

    weight_bits: int
    act_bits: int

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, quantize_weight(self.weight, self.weight_bits), self.bias)


class QuantLinear(nn.Linear):
    """``Linear`` whose weight is fake-quantized to ``weight_bits``; ``act_bits`` tags its output."""

    weight_bits: int
    act_bits: int

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, quantize_weight(self.weight, self.weight_bits), self.bias)


class PACT(nn.Module):
    """Activation fake-quantizer with a learned clipping level ``alpha``.

    The clip is initialised from the first batch it sees (max |x|): `quantize_model` runs its
    calibration batch through the model for that.
    """

    def __init__(self, bits: int, signed: bool) -> None:
        super().__init__()
        self.bits = bits
        self.signed = signed
        self.alpha = nn.Parameter(torch.tensor(1.0))
        self.register_buffer("initialized", torch.tensor(False))

    def forward(self, x: Tensor) -> Tensor:
        if not bool(self.initialized):
            with torch.no_grad():
                self.alpha.fill_(float(x.detach().abs().max().clamp_min(1e-3)))
                self.initialized.fill_(True)
        return quantize_activation(x, self.bits, self.alpha, self.signed)

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={self.signed}"


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every ``ConvBNAct``'s BatchNorm into its (last) conv, in place; BN becomes identity."""
    for module in model.modules():
        if not isinstance(module, ConvBNAct) or not isinstance(module.bn, nn.BatchNorm2d):
            continue
        conv = module.conv[-1] if isinstance(module.conv, nn.Sequential) else module.conv
        bn = module.bn
        std = torch.sqrt(bn.running_var + bn.eps)
        gamma = bn.weight.detach() / std
        with torch.no_grad():
            conv.weight.mul_(gamma.reshape(-1, *([1] * (conv.weight.dim() - 1))))
            bias = conv.bias.detach() if conv.bias is not None else torch.zeros_like(bn.running_mean)
            new_bias = (bias - bn.running_mean) * gamma + bn.bias.detach()
        if conv.bias is None:
            conv.bias = nn.Parameter(new_bias)
        else:
            conv.bias.data.copy_(new_bias)
        module.bn = nn.Identity()
    return model


def _to_quant(layer: nn.Module, weight_bits: int, act_bits: int) -> nn.Module:
    if isinstance(layer, nn.Conv2d):
        q = QuantConv2d(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            layer.stride,
            layer.padding,
            groups=layer.groups,
            bias=layer.bias is not None,
        )
    elif isinstance(layer, nn.Linear):
        q = QuantLinear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    else:
        return layer
    q.load_state_dict(layer.state_dict())
    q.weight_bits = weight_bits
    q.act_bits = act_bits
    return q


def _quantize_part(model: nn.Module, name: str, part: nn.Module, weight_bits: int, act_bits: int) -> None:
    """Quantize the conv/linear leaves of ``part`` and put a PACT quantizer on its output."""
    for leaf_name, leaf in list(part.named_modules()):
        if isinstance(leaf, nn.Conv2d | nn.Linear) and not isinstance(leaf, QuantConv2d | QuantLinear):
            full = f"{name}.{leaf_name}" if leaf_name else name
            set_submodule(model, full, _to_quant(leaf, weight_bits, act_bits))
    if act_bits < 32 and hasattr(part, "out_quant"):
        part.out_quant = PACT(act_bits, signed=not isinstance(part.act, nn.ReLU))


def quantize_model(model: nn.Module, candidate: Candidate, calibration: torch.Tensor | None = None) -> nn.Module:
    """Fold BatchNorm, then fake-quantize every stage at its ``weight_bits``/``act_bits`` (in place).

    The stem and classifier use ``candidate.head_bits`` for weights and activations. ``calibration``
    (a batch of training inputs) initialises the activation clipping levels; without it they are set
    by the first batch the model sees.
    """
    fold_batchnorm(model)
    stage_idx = stage_of_block(candidate)
    for i, block in enumerate(model.blocks):
        stage = candidate.stages[stage_idx[i]]
        if isinstance(block, DenseAct):
            parts = [(f"blocks.{i}", block)]
        else:
            parts = [(f"blocks.{i}.{n}", p) for n, p in block.named_children() if isinstance(p, ConvBNAct)]
        for name, part in parts:
            _quantize_part(model, name, part, stage.weight_bits, stage.act_bits)
    hb = candidate.head_bits
    if hasattr(model, "stem"):
        _quantize_part(model, "stem", model.stem, hb, hb)
    model.classifier = _to_quant(model.classifier, hb, 32)
    if calibration is not None:
        with torch.no_grad():
            model(calibration)
    return model.train(model.training)  # new submodules take the model's mode
