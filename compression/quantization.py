"""Mixed-precision fake quantization with straight-through estimators, and BatchNorm folding.

Weights, per output channel, to ``weight_bits`` in {1, 2, 4, 8, 16} (32 = float; ``"fp16"``: rounded
through IEEE half, stored as float16, `spaces.precision`), by one of the
``WEIGHT_QUANTIZERS``: ``maxabs`` (symmetric, scale = max|w| / (2^(b-1) − 1)), ``dorefa`` (Zhou et al.
2016: tanh-normalized, 2^b uniform levels in [−1, 1], rescaled by max|w|) or ``lsq`` (Esser et al.
2020: symmetric with a learned step per channel, gradient-scaled). 1 bit is binary ``sign(w)·mean|w|``
for every method. Activations: PACT (learned clipping level, Choi et al. 2018) to ``act_bits``, unsigned
after ReLU and symmetric elsewhere; ``"fp16"`` activations round through IEEE half (`Float16Act`).
Rounding passes gradients straight through (Bengio et al. 2013). BatchNorm is folded into the
preceding conv before quantization, so what is quantized is what runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from jointnas.spaces import Candidate, UserInputError, stage_of_block
from jointnas.spaces.layers import ConvBNAct, DenseAct
from jointnas.spaces.params import layer_key
from jointnas.spaces.precision import Precision, is_float, is_fp16
from jointnas.spaces.quant import (
    check_bits,
    check_method,
    lsq_init_step,
    per_channel,
    quantize_activation,
    quantize_weight,
    ste,
    to_float16,
    weight_scale,
)

from ._modules import set_submodule


@dataclass(frozen=True)
class WeightCodes:
    """Integer weight codes of one layer, as the packed C array stores them.

    ``signed`` codes ``q`` (two's complement, |q| ≤ 2^(bits-1) − 1) de-quantize to ``scale · q``;
    offset codes ``u`` in [0, 2^bits − 1] (binary and DoReFa) to ``scale · (2u − (2^bits − 1))``.
    ``scales`` holds one float per output channel.
    """

    codes: Tensor
    scales: Tensor
    bits: int
    signed: bool

    def dequantize(self) -> Tensor:
        shape = (-1, *([1] * (self.codes.dim() - 1)))
        scale = self.scales.reshape(shape)
        if self.signed:
            return self.codes.to(scale.dtype) * scale
        return (2 * self.codes.to(scale.dtype) - (2**self.bits - 1)) * scale


@torch.no_grad()
def integer_weights(weight: Tensor, bits: int, method: str = "maxabs", step: Tensor | None = None) -> WeightCodes:
    """Integer codes and per-channel scales of ``weight`` at ``bits`` (for export and the C library).

    ``integer_weights(w, b, m).dequantize()`` equals ``quantize_weight(w, b, m)`` up to float rounding.
    """
    check_bits(bits)
    check_method(method)
    if is_float(bits):
        raise ValueError(f"{bits!r} weights are floats, not integer codes")
    weight = weight.detach()
    reduce = per_channel(weight)
    if bits == 1:
        return WeightCodes((weight >= 0).to(torch.int32), weight.abs().mean(dim=reduce), 1, signed=False)
    qmax = 2 ** (bits - 1) - 1
    if method == "dorefa":
        levels = 2**bits - 1
        t = torch.tanh(weight)
        t = t / (2 * t.abs().amax(dim=reduce, keepdim=True).clamp_min(1e-8)) + 0.5
        codes = torch.round(t * levels).to(torch.int32)
        return WeightCodes(codes, weight.abs().amax(dim=reduce) / levels, bits, signed=False)
    if method == "lsq":
        if step is None:
            raise UserInputError("the 'lsq' weight quantizer needs its learned step; quantize with quantize_model")
        scale = step.abs() + 1e-12
    else:
        scale = weight_scale(weight, bits)
    codes = torch.clamp(torch.round(weight / scale), -qmax, qmax).to(torch.int32)
    return WeightCodes(codes, scale.flatten(), bits, signed=True)


class _QuantMixin:
    """Shared fake-quant state of `QuantConv2d` and `QuantLinear`."""

    weight: nn.Parameter
    weight_bits: Precision
    act_bits: Precision
    weight_quantizer: str = "maxabs"
    step: nn.Parameter | None

    def _setup_quant(self, weight_bits: Precision, act_bits: Precision, method: str) -> None:
        check_method(method)
        self.weight_bits = weight_bits
        self.act_bits = act_bits
        self.weight_quantizer = method
        self.step = None
        if method == "lsq" and not is_float(weight_bits) and weight_bits >= 2:
            self.step = nn.Parameter(lsq_init_step(self.weight, weight_bits))

    def quantized_weight(self) -> Tensor:
        """The de-quantized weight the forward pass uses."""
        return quantize_weight(self.weight, self.weight_bits, self.weight_quantizer, getattr(self, "step", None))

    def weight_codes(self) -> WeightCodes:
        """Integer codes and scales of the current weight (what the C array stores)."""
        return integer_weights(self.weight, self.weight_bits, self.weight_quantizer, getattr(self, "step", None))


class QuantConv2d(_QuantMixin, nn.Conv2d):
    """``Conv2d`` whose weight is fake-quantized to ``weight_bits``; ``act_bits`` tags its output."""

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.bias)


class QuantConv1d(_QuantMixin, nn.Conv1d):
    """``Conv1d`` whose weight is fake-quantized to ``weight_bits``; ``act_bits`` tags its output."""

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(x, self.quantized_weight(), self.bias)


class QuantLinear(_QuantMixin, nn.Linear):
    """``Linear`` whose weight is fake-quantized to ``weight_bits``; ``act_bits`` tags its output."""

    def forward(self, x: Tensor) -> Tensor:
        return nn.functional.linear(x, self.quantized_weight(), self.bias)


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
        levels = 2 ** (self.bits - 1) - 1 if self.signed else 2**self.bits - 1
        if not self.training:
            # Deployment form: the clip as constants, no STE bookkeeping, so the ONNX graph is
            # Clip → Div → Round → Mul (float32 arithmetic, as in training up to the last bit).
            lo, hi = self.clip_range()
            scale = hi / levels
            return torch.round(torch.clamp(x, lo, hi) / scale) * scale
        return quantize_activation(x, self.bits, self.alpha, self.signed)

    def clip_range(self) -> tuple[float, float]:
        """The learned clipping interval as constants: ``(-α, α)`` signed, ``(0, α)`` unsigned."""
        hi = float(self.alpha.detach().abs()) + 1e-6
        return (-hi if self.signed else 0.0), hi

    def extra_repr(self) -> str:
        return f"bits={self.bits}, signed={self.signed}"


class Float16Act(nn.Module):
    """Activation rounding through IEEE half (``act_bits = "fp16"``), straight-through in training.

    The deployment form is ``Clip → Cast(float16) → Cast(float)`` in ONNX: float16 storage between
    layers, float arithmetic in them.
    """

    bits = "fp16"

    def forward(self, x: Tensor) -> Tensor:
        return ste(x, to_float16(x)) if self.training else to_float16(x)


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every ``ConvBNAct``'s BatchNorm into its (last) conv, in place; BN becomes identity."""
    for module in model.modules():
        if not isinstance(module, ConvBNAct) or not isinstance(module.bn, nn.BatchNorm1d | nn.BatchNorm2d):
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


def same_geometry(layer: nn.Module, conv1d: type, conv2d: type, linear: type) -> nn.Module | None:
    """A fresh layer of class ``conv1d``/``conv2d``/``linear`` (whichever ``layer`` is) with its geometry.

    Shapes, stride, padding, groups and bias presence are ``layer``'s; weights are new (copy them).
    ``None`` when ``layer`` is neither a convolution nor a linear layer. Quantizing (`QuantConv2d` …)
    and baking for export (back to ``nn.Conv2d`` …) both rebuild layers this way.
    """
    if isinstance(layer, nn.Conv1d | nn.Conv2d):
        return (conv1d if isinstance(layer, nn.Conv1d) else conv2d)(
            layer.in_channels,
            layer.out_channels,
            layer.kernel_size,
            layer.stride,
            layer.padding,
            groups=layer.groups,
            bias=layer.bias is not None,
        )
    if isinstance(layer, nn.Linear):
        return linear(layer.in_features, layer.out_features, bias=layer.bias is not None)
    return None


def _to_quant(layer: nn.Module, weight_bits: Precision, act_bits: Precision, method: str = "maxabs") -> nn.Module:
    q = same_geometry(layer, QuantConv1d, QuantConv2d, QuantLinear)
    if q is None:
        return layer
    q.load_state_dict(layer.state_dict())
    q._setup_quant(weight_bits, act_bits, method)
    return q


def _quantize_part(
    model: nn.Module, name: str, part: nn.Module, weight_bits: Precision, act_bits: Precision, method: str
) -> None:
    """Quantize the conv/linear leaves of ``part`` and put a PACT quantizer on its output."""
    for leaf_name, leaf in list(part.named_modules()):
        quantized = QuantConv1d | QuantConv2d | QuantLinear
        if isinstance(leaf, nn.Conv1d | nn.Conv2d | nn.Linear) and not isinstance(leaf, quantized):
            full = f"{name}.{leaf_name}" if leaf_name else name
            set_submodule(model, full, _to_quant(leaf, weight_bits, act_bits, method))
    if is_fp16(act_bits) and hasattr(part, "out_quant"):
        part.out_quant = Float16Act()
    elif not is_float(act_bits) and hasattr(part, "out_quant"):
        part.out_quant = PACT(act_bits, signed=not isinstance(part.act, nn.ReLU))


def quantize_model(
    model: nn.Module,
    candidate: Candidate,
    calibration: torch.Tensor | None = None,
    weight_quantizer: str = "maxabs",
) -> nn.Module:
    """Fold BatchNorm, then fake-quantize every stage at its ``weight_bits``/``act_bits`` (in place).

    A stage's ``layer_bits`` (per-layer precision) set single layers' bit-widths instead
    (`Stage.layer_precision`, keys ``b<block>_<role>``).

    The stem and classifier use ``candidate.head_bits`` for weights and activations.
    ``weight_quantizer`` is one of `WEIGHT_QUANTIZERS`. ``calibration`` (a batch of training inputs)
    initialises the activation clipping levels; without it they are set by the first batch the model
    sees.
    """
    check_method(weight_quantizer)
    fold_batchnorm(model)
    stage_idx = stage_of_block(candidate)
    for i, block in enumerate(model.blocks):
        stage = candidate.stages[stage_idx[i]]
        j = i - stage_idx.index(stage_idx[i])  # the block's index within its stage
        if isinstance(block, DenseAct):
            parts = [(f"blocks.{i}", "linear", block)]
        else:
            parts = [(f"blocks.{i}.{n}", n, p) for n, p in block.named_children() if isinstance(p, ConvBNAct)]
        for name, role, part in parts:
            weight_bits, act_bits = stage.layer_precision(layer_key(j, role))
            _quantize_part(model, name, part, weight_bits, act_bits, weight_quantizer)
    hb = candidate.head_bits
    if hasattr(model, "stem"):
        _quantize_part(model, "stem", model.stem, hb, hb, weight_quantizer)
    model.classifier = _to_quant(model.classifier, hb, 32, weight_quantizer)
    if calibration is not None:
        with torch.no_grad():
            model(calibration)
    return model.train(model.training)  # new submodules take the model's mode
