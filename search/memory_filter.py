"""The memory filter of a study's precision options (AdaptQNet's tensor memory filter, TinyNAS's space
optimization): before the search, per layer, the bit-widths whose tensors cannot fit the device.

A layer position (stage ``i``, layer ``b<j>_<role>``) is measured on the space's *smallest* candidate:
every stage and block present, the narrowest width, expansion, kernel and stem, the largest prune ratio
and the smallest rank the pipeline applies (its prune and lowrank steps). What does not fit there fits in
no candidate, so removing it loses nothing:

* an activation precision ``a`` is dropped when the layer's live tensors (input, output at ``a``, and a
  residual kept alive) exceed the SRAM limit; bytes per activation are the microcontroller's containers
  (`jointnas.devices.mcu.act_container_bytes`), the input at the narrowest precision the space offers;
* a weight precision ``w`` is dropped when the layer's weights at ``w`` (the one Flash rule,
  `jointnas.spaces.layer_flash_bytes`) exceed the Flash limit.

Limits: SRAM is ``[space.compression] memory_threshold``, else ``[constraints] sram_bytes``, else the
device profile's ``sram_bytes`` less its runtime's; Flash is ``[constraints] flash_bytes``, else the
profile's. Without either limit nothing is filtered. With ``granularity = "stage"`` an option of a stage
is kept only when every layer of the stage keeps it. A layer that keeps no option keeps all of them (the
space must still ask something) and is reported in `SpaceFilter.failed_stages`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from jointnas.compression import deployable_model, factorize_low_rank, prune_channels
from jointnas.devices import DeviceProfile
from jointnas.devices.mcu import act_container_bytes
from jointnas.spaces import (
    Candidate,
    LayerInfo,
    build_model,
    layer_flash_bytes,
    sample_candidate,
    stage_of_block,
    trace_layers,
)
from jointnas.spaces.params import Suggester, layer_key, stage_param
from jointnas.spaces.precision import Precision, precision_label, storage_bits

from .config import StudyConfig


class _Smallest:
    """A `Suggester` answering the space's smallest candidate (see the module doc); ``asked`` records the
    parameter names."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1) -> int:
        self.asked.append(name)
        return high  # stage and block counts: every position present

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None) -> float:
        self.asked.append(name)
        return high if name.endswith("_prune") else low

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        self.asked.append(name)
        if name.endswith(("_wbits", "_abits")) or name == "head_bits":
            return choices[0]  # shapes do not depend on bits
        return min(choices)


@dataclass
class LayerOptions:
    """What the filter kept of one layer position's (or, per stage, one stage's) precision options."""

    stage: int
    layer: str | None
    """``"b<j>_<role>"``; ``None`` for a stage's options (``granularity = "stage"``)."""
    weight_param: str
    act_param: str
    weight_kept: list[Precision]
    act_kept: list[Precision]
    weight_bytes: dict[str, int] = field(default_factory=dict)
    """Weight precision (`precision_label`) → the Flash bytes of the slot's weights at it, at least."""
    act_bytes: dict[str, int] = field(default_factory=dict)
    """Activation precision (label) → the live SRAM bytes of the slot's largest layer at it, at least."""

    @property
    def failed(self) -> bool:
        """Whether no weight or no activation option fits (then every option is kept, see the module doc)."""
        return not self.weight_kept or not self.act_kept


@dataclass
class SpaceFilter:
    """The filtered precision options of a study's space and the limits they were filtered against."""

    sram_limit: int | None
    flash_limit: int | None
    layers: list[LayerOptions]

    @property
    def active(self) -> bool:
        return self.sram_limit is not None or self.flash_limit is not None

    @property
    def failed_stages(self) -> list[int]:
        """Stages with a layer whose every weight or every activation option fails."""
        return sorted({opt.stage for opt in self.layers if opt.failed})

    def allowed(self, knobs: Any) -> dict[str, list[Precision]]:
        """Parameter name → the choices it keeps (only parameters that lost a choice)."""
        out: dict[str, list[Precision]] = {}
        for opt in self.layers:
            if opt.failed:
                continue
            if len(opt.weight_kept) < len(knobs.weight_bits):
                out[opt.weight_param] = list(opt.weight_kept)
            if len(opt.act_kept) < len(knobs.act_bits):
                out[opt.act_param] = list(opt.act_kept)
        return out

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready record (study user attr ``jointnas:space_filter``)."""
        return {
            "sram_limit": self.sram_limit,
            "flash_limit": self.flash_limit,
            "failed_stages": self.failed_stages,
            "layers": [dataclasses.asdict(opt) for opt in self.layers],
        }


class RestrictedChoices:
    """A `Suggester` that asks ``suggester`` with the filtered choices of ``allowed`` (by parameter name)."""

    def __init__(self, suggester: Suggester, allowed: Mapping[str, list[Any]]) -> None:
        self.suggester, self.allowed = suggester, allowed

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1) -> int:
        return self.suggester.suggest_int(name, low, high, step=step)

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None) -> float:
        return self.suggester.suggest_float(name, low, high, step=step)

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        kept = self.allowed.get(name)
        if kept is None:
            return self.suggester.suggest_categorical(name, choices)
        return kept[0] if len(kept) == 1 else self.suggester.suggest_categorical(name, list(kept))


def memory_limits(config: StudyConfig, profile: DeviceProfile | None) -> tuple[int | None, int | None]:
    """``(sram_limit, flash_limit)`` in bytes the filter uses (see the module doc); ``None``: no limit."""
    sram = config.space.compression.memory_threshold
    if sram is None and config.constraints.sram_bytes is not None:
        sram = int(config.constraints.sram_bytes)
    if sram is None and profile is not None and profile.sram_bytes is not None:
        sram = profile.sram_bytes - profile.runtime_sram_bytes
    flash = None if config.constraints.flash_bytes is None else int(config.constraints.flash_bytes)
    if flash is None and profile is not None and profile.flash_bytes is not None:
        flash = profile.flash_bytes
    return sram, flash


def smallest_layers(
    config: StudyConfig, input_shape: tuple[int, ...], num_classes: int
) -> tuple[list[LayerInfo], Candidate, list[str]]:
    """The traced layers of the space's smallest candidate compressed as the pipeline would, the
    candidate, and the parameter names it asked."""
    asker = _Smallest()
    candidate = sample_candidate(asker, config.space, input_shape, num_classes)
    model = build_model(candidate)
    steps = config.pipeline.steps
    if "prune" in steps:
        prune_channels(model, candidate, "l1", torch.Generator().manual_seed(0), scope=config.pipeline.prune_scope)
    if "lowrank" in steps:
        factorize_low_rank(model, candidate, config.pipeline.rank_mode)
    return trace_layers(deployable_model(model), input_shape), candidate, asker.asked


def _positions(layers: list[LayerInfo], candidate: Candidate) -> dict[tuple[int, str], list[LayerInfo]]:
    """Traced layers by (stage, layer key): ``blocks.<b>.<role>[...]``; stem and classifier (``head_bits``)
    are left out. Low-rank factor pairs share their layer's key."""
    stage_idx = stage_of_block(candidate)
    out: dict[tuple[int, str], list[LayerInfo]] = {}
    for layer in layers:
        parts = layer.name.split(".")
        if parts[0] != "blocks" or len(parts) < 3:
            continue
        b = int(parts[1])
        stage = stage_idx[b]
        out.setdefault((stage, layer_key(b - stage_idx.index(stage), parts[2])), []).append(layer)
    return out


def _sram(members: list[LayerInfo], in_bytes: int, act: Precision) -> int:
    out_bytes = act_container_bytes(storage_bits(act))
    return max(m.in_numel * in_bytes + m.out_numel * out_bytes + m.residual_numel * in_bytes for m in members)


def _flash(members: list[LayerInfo], weight: Precision) -> int:
    fp16 = weight == "fp16"
    return sum(
        layer_flash_bytes(dataclasses.replace(m, weight_bits=storage_bits(weight), weight_fp16=fp16)) for m in members
    )


def _prefix(asked: list[str]) -> str:
    """The family's stage prefix (``s``, ``l`` …): the letters before the stage index of its parameters."""
    for name in asked:
        match = re.match(r"^([a-z]+)\d+_", name)
        if match:
            return match.group(1)
    return "s"


def _needs(
    config: StudyConfig, positions: dict[tuple[int, str], list[LayerInfo]]
) -> dict[tuple[int, str | None], tuple[dict[Any, int], dict[Any, int]]]:
    """Per filtered slot (a layer, or a stage with ``granularity = "stage"``): the bytes each weight and
    each activation option needs at least (the largest over the slot's layers)."""
    knobs = config.space.compression
    narrowest = min(act_container_bytes(storage_bits(a)) for a in knobs.act_bits)
    slots: dict[tuple[int, str | None], tuple[dict[Any, int], dict[Any, int]]] = {}
    for (stage, key), members in positions.items():
        w_all, a_all = slots.setdefault((stage, key if knobs.granularity == "layer" else None), ({}, {}))
        for w in knobs.weight_bits:
            w_all[w] = max(w_all.get(w, 0), _flash(members, w))
        for a in knobs.act_bits:
            a_all[a] = max(a_all.get(a, 0), _sram(members, narrowest, a))
    return slots


def filter_space(
    config: StudyConfig, input_shape: tuple[int, ...], num_classes: int, profile: DeviceProfile | None
) -> SpaceFilter:
    """The study's precision options filtered by memory (see the module doc)."""
    sram_limit, flash_limit = memory_limits(config, profile)
    knobs = config.space.compression
    layers, candidate, asked = smallest_layers(config, input_shape, num_classes)
    prefix = _prefix(asked)
    out = []
    for (stage, key), (w_need, a_need) in _needs(config, _positions(layers, candidate)).items():
        w_keep = [w for w in knobs.weight_bits if flash_limit is None or w_need[w] <= flash_limit]
        a_keep = [a for a in knobs.act_bits if sram_limit is None or a_need[a] <= sram_limit]
        out.append(
            LayerOptions(
                stage,
                key,
                stage_param(stage, "wbits", prefix, key),
                stage_param(stage, "abits", prefix, key),
                w_keep,
                a_keep,
                {precision_label(w): n for w, n in w_need.items()},
                {precision_label(a): n for a, n in a_need.items()},
            )
        )
    return SpaceFilter(sram_limit, flash_limit, out)


__all__ = ["LayerOptions", "RestrictedChoices", "SpaceFilter", "filter_space", "memory_limits", "smallest_layers"]
