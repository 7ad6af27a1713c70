"""`Candidate`: one point of the joint space, as plain JSON-serializable data.

A candidate is an architecture (a list of stages) plus a compression plan (per-stage knobs). It carries
no torch or Optuna objects, so the same data serves Optuna trials, supernet samplers, export and tests.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from typing import Any

from jointnas.spaces.precision import FP16, Precision, as_precision

WEIGHT_BITS = (1, 2, 4, 8, 16, 32)
"""Bit-widths a weight quantizer supports (1 = binary, 32 = no quantization)."""

ACTIVATION_BITS = (2, 4, 8, 16, 32)

WEIGHT_PRECISIONS = (*WEIGHT_BITS, FP16)
"""Every weight precision a plan may name: the integer bit-widths, float32 (32) and IEEE half (``"fp16"``)."""

ACTIVATION_PRECISIONS = (*ACTIVATION_BITS, FP16)


@dataclass(frozen=True)
class Stage:
    """One stage of a family.

    CNN: ``depth`` inverted-residual blocks of ``channels`` output channels, depthwise ``kernel``,
    ``expansion`` ratio; the first block of the stage uses ``stride``.
    MLP: one hidden ``Linear`` layer of ``channels`` units (depth, kernel, expansion, stride are 1).

    Compression knobs apply to every block of the stage:
    ``prune_ratio`` is the share of hidden channels (CNN: expanded channels; MLP: units) removed by
    structured pruning, in [0, 1); ``rank_ratio`` is the retained rank of 1x1 convs / linears as a share
    of full rank, in (0, 1] (1 = no factorization); ``weight_bits`` / ``act_bits`` are the fake-quant
    precisions (an integer bit-width, 32 = float, ``"fp16"`` = IEEE half; `jointnas.spaces.precision`).

    ``layer_bits`` (per-layer precision, ``[space.compression] granularity = "layer"``) overrides them for
    single layers: ``(layer, weight_bits, act_bits)`` entries keyed ``"b<block>_<role>"`` (the block's
    index within the stage and its layer's attribute: ``expand``, ``dw``, ``project``, ``linear``); a
    layer without an entry takes the stage's values (`layer_precision`).
    """

    channels: int
    depth: int = 1
    kernel: int = 1
    expansion: int = 1
    stride: int = 1
    prune_ratio: float = 0.0
    rank_ratio: float = 1.0
    weight_bits: Precision = 32
    act_bits: Precision = 32
    layer_bits: tuple[tuple[str, Precision, Precision], ...] = ()

    def layer_precision(self, layer: str) -> tuple[Precision, Precision]:
        """``(weight_bits, act_bits)`` of the stage's layer ``layer`` (e.g. ``"b0_expand"``).

        Example:
            >>> s = Stage(8, weight_bits=8, act_bits=8, layer_bits=(("b0_dw", "fp16", 32),))
            >>> s.layer_precision("b0_dw"), s.layer_precision("b0_project")
            (('fp16', 32), (8, 8))
        """
        for key, w, a in self.layer_bits:
            if key == layer:
                return w, a
        return self.weight_bits, self.act_bits

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Stage:
        """A stage from its `dataclasses.asdict` form (JSON lists back to tuples)."""
        fields = dict(data)
        for key in ("weight_bits", "act_bits"):
            if key in fields:
                fields[key] = as_precision(fields[key])
        fields["layer_bits"] = tuple(
            (str(k), as_precision(w), as_precision(a)) for k, w, a in fields.get("layer_bits", ())
        )
        return cls(**fields)


@dataclass(frozen=True)
class Candidate:
    """Architecture + compression plan.

    Args:
        family: a registered family name (`jointnas.spaces.families`).
        input_shape: input shape without batch, e.g. ``(1, 8, 8)``.
        num_classes: classifier outputs.
        stages: the stages in order.
        stem_channels: CNN stem width (unused by the MLP).
        head_bits: weight bits of the stem and classifier layers (kept at 8 by default, as in most
            mixed-precision deployments, because first and last layers are the most sensitive).

    Example:
        >>> c = Candidate("mlp", (64,), 10, (Stage(32), Stage(16)))
        >>> Candidate.from_json(c.to_json()) == c
        True
    """

    family: str
    input_shape: tuple[int, ...]
    num_classes: int
    stages: tuple[Stage, ...]
    stem_channels: int = 16
    head_bits: int = 32
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        for stage in data["stages"]:  # per-stage candidates keep their JSON of before per-layer precision
            if not stage["layer_bits"]:
                del stage["layer_bits"]
        return data

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Candidate:
        return cls(
            family=data["family"],
            input_shape=tuple(data["input_shape"]),
            num_classes=int(data["num_classes"]),
            stages=tuple(Stage.from_dict(s) for s in data["stages"]),
            stem_channels=int(data.get("stem_channels", 16)),
            head_bits=int(data.get("head_bits", 32)),
            extra=dict(data.get("extra", {})),
        )

    @classmethod
    def from_json(cls, text: str) -> Candidate:
        return cls.from_dict(json.loads(text))

    def uncompressed(self) -> Candidate:
        """The same architecture with every compression knob off (the FP32 baseline)."""
        stages = tuple(
            dataclasses.replace(s, prune_ratio=0.0, rank_ratio=1.0, weight_bits=32, act_bits=32, layer_bits=())
            for s in self.stages
        )
        return dataclasses.replace(self, stages=stages, head_bits=32)
