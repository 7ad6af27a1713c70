"""A trained model as plain data: ``torch.save`` it, ``torch.load(..., weights_only=True)`` it, rebuild it.

`model_record` describes a compressed model (pruned, low-rank, quantized: any mix of the module
replacements the pipeline makes) as its candidate, the layers that differ from ``build_model(candidate)``
(type and geometry), its state dict and the integer weight codes of its quantized layers.
`model_from_record` builds the candidate's model, puts those layers in place and loads the weights:
the result computes what the recorded model computed, bit for bit, without any training.

Only tensors, numbers, strings, lists and dicts go in, so the file loads with ``weights_only=True``.

Example:
    >>> import io, torch
    >>> from jointnas.spaces import Candidate, Stage, build_model
    >>> c = Candidate("mlp", (64,), 10, (Stage(32),))
    >>> model = build_model(c).eval()
    >>> buf = io.BytesIO(); torch.save(model_record(model, c), buf); _ = buf.seek(0)
    >>> again = model_from_record(torch.load(buf, weights_only=True))
    >>> x = torch.randn(3, 64)
    >>> bool(torch.equal(again(x), model(x)))
    True
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from jointnas.spaces import Candidate, UserInputError, build_model
from jointnas.spaces.precision import as_precision

from ._modules import set_submodule
from .quantization import PACT, Float16Act, WeightCodes

FORMAT = "jointnas-model/1"
"""The ``format`` of a record; `model_from_record` refuses others."""


def _conv_args(m: nn.Conv1d | nn.Conv2d) -> dict[str, Any]:
    return {
        "in_channels": m.in_channels,
        "out_channels": m.out_channels,
        "kernel_size": list(m.kernel_size),
        "stride": list(m.stride),
        "padding": list(m.padding) if not isinstance(m.padding, str) else m.padding,
        "dilation": list(m.dilation),
        "groups": m.groups,
        "bias": m.bias is not None,
    }


def _bn_args(m: nn.BatchNorm1d | nn.BatchNorm2d) -> dict[str, Any]:
    return {"num_features": m.num_features, "eps": m.eps, "momentum": m.momentum, "affine": m.affine}


def _tuple_args(args: dict[str, Any]) -> dict[str, Any]:
    return {k: tuple(v) if isinstance(v, list) else v for k, v in args.items()}


# type name → (class, its constructor arguments as plain data)
_KINDS: dict[str, tuple[type[nn.Module], Callable[[Any], dict[str, Any]]]] = {
    "Conv1d": (nn.Conv1d, _conv_args),
    "Conv2d": (nn.Conv2d, _conv_args),
    "Linear": (
        nn.Linear,
        lambda m: {"in_features": m.in_features, "out_features": m.out_features, "bias": m.bias is not None},
    ),
    "BatchNorm1d": (nn.BatchNorm1d, _bn_args),
    "BatchNorm2d": (nn.BatchNorm2d, _bn_args),
    "Sequential": (nn.Sequential, lambda m: {}),
    "Identity": (nn.Identity, lambda m: {}),
    "ReLU": (nn.ReLU, lambda m: {}),
    "ReLU6": (nn.ReLU6, lambda m: {}),
    "Hardtanh": (nn.Hardtanh, lambda m: {"min_val": m.min_val, "max_val": m.max_val}),
    "PACT": (PACT, lambda m: {"bits": m.bits, "signed": m.signed}),
    "Float16Act": (Float16Act, lambda m: {}),
}


def _layer_spec(module: nn.Module) -> dict[str, Any]:
    kind = type(module).__name__
    if kind not in _KINDS or _KINDS[kind][0] is not type(module):
        raise UserInputError(f"cannot store a model holding a {type(module).__qualname__} the pipeline did not make")
    spec: dict[str, Any] = {"kind": kind, "args": _KINDS[kind][1](module)}
    for attr in ("weight_bits", "act_bits"):
        if hasattr(module, attr):
            spec[attr] = as_precision(getattr(module, attr))
    return spec


def _same(a: nn.Module, b: nn.Module) -> bool:
    if type(a) is not type(b):
        return False
    kind = type(a).__name__
    return kind not in _KINDS or _KINDS[kind][1](a) == _KINDS[kind][1](b)


def model_record(model: nn.Module, candidate: Candidate, **extra: Any) -> dict[str, Any]:
    """``model`` (built from ``candidate``, then compressed) as plain data; ``extra`` items are kept as given."""
    skeleton = dict(build_model(candidate).named_modules())
    layers: dict[str, dict[str, Any]] = {}
    codes: dict[str, dict[str, Any]] = {}
    for name, module in model.named_modules():
        if name and (name not in skeleton or not _same(module, skeleton[name]) or hasattr(module, "weight_bits")):
            layers[name] = _layer_spec(module)
        packed = getattr(module, "packed_codes", None)
        if isinstance(packed, WeightCodes):
            codes[name] = {"codes": packed.codes, "scales": packed.scales, "bits": packed.bits, "signed": packed.signed}
    state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    return {
        "format": FORMAT,
        "candidate": candidate.to_dict(),
        "layers": layers,
        "state_dict": state,
        "codes": codes,
        **extra,
    }


def model_from_record(record: dict[str, Any]) -> nn.Module:
    """The model `model_record` described, in eval mode, with its weights (no training)."""
    if record.get("format") != FORMAT:
        raise UserInputError(f"stored model has format {record.get('format')!r}, not {FORMAT!r}; export with --retrain")
    model = build_model(Candidate.from_dict(record["candidate"]))
    for name in sorted(record["layers"], key=lambda n: n.count(".")):  # containers before their children
        spec = record["layers"][name]
        cls = _KINDS[spec["kind"]][0]
        layer = cls(**_tuple_args(spec["args"]))
        for attr in ("weight_bits", "act_bits"):
            if attr in spec:
                setattr(layer, attr, spec[attr])
        set_submodule(model, name, layer)
    model.load_state_dict(record["state_dict"], strict=True)
    for name, c in record["codes"].items():
        model.get_submodule(name).packed_codes = WeightCodes(c["codes"], c["scales"], int(c["bits"]), bool(c["signed"]))
    return model.eval()


__all__ = ["FORMAT", "model_from_record", "model_record"]
