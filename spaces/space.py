"""The joint search space: architecture ranges plus per-stage compression knobs.

`SpaceConfig` is the validated ``[space]`` section of a study file. `sample_candidate` asks any object
with Optuna's ``suggest_*`` methods (an ``optuna.Trial``, a fixed-params stand-in, a supernet sampler's
proposal) for a `Candidate`; parameters of absent stages and layers are never suggested.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field, model_validator

from jointnas.spaces.candidate import Candidate, Stage

WeightBits = Literal[1, 2, 4, 8, 16, 32]
ActBits = Literal[2, 4, 8, 16, 32]
HeadBits = Literal[8, 16, 32]


class Suggester(Protocol):
    """The subset of ``optuna.Trial`` the space needs."""

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1) -> int: ...

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None) -> float: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CompressionKnobs(_Strict):
    """Per-stage compression ranges. A range ``[a, a]`` fixes the knob; ``step`` discretizes it."""

    prune_ratio: tuple[float, float] = Field((0.0, 0.5), description="structured pruning share, in [0, 1)")
    prune_step: float = Field(0.125, gt=0, le=1)
    rank_ratio: tuple[float, float] = Field((1.0, 1.0), description="retained rank share, in (0, 1]")
    rank_step: float = Field(0.25, gt=0, le=1)
    weight_bits: list[WeightBits] = Field(default_factory=lambda: [4, 8, 32], min_length=1)
    act_bits: list[ActBits] = Field(default_factory=lambda: [8, 32], min_length=1)
    head_bits: list[HeadBits] = Field(default_factory=lambda: [8], min_length=1)

    @model_validator(mode="after")
    def _ranges(self) -> CompressionKnobs:
        lo, hi = self.prune_ratio
        if not (0.0 <= lo <= hi < 1.0):
            raise ValueError(f"prune_ratio range {[lo, hi]} must satisfy 0 <= low <= high < 1")
        lo, hi = self.rank_ratio
        if not (0.0 < lo <= hi <= 1.0):
            raise ValueError(f"rank_ratio range {[lo, hi]} must satisfy 0 < low <= high <= 1")
        return self


class SpaceConfig(_Strict):
    """Architecture family and ranges.

    CNN (MobileNetV2-style; ``cnn`` for images, ``cnn1d`` for 1-D series): ``stages`` gives the base
    output channels of each possible stage (its length is the maximum stage count), ``strides`` their
    first-block strides, ``min_stages`` how many are always present; per stage: ``depth`` range,
    ``width_mult``, ``kernel`` and ``expansion`` choices.
    MLP: ``depth`` is the hidden-layer count range and ``widths`` the per-layer choices.
    """

    family: Literal["cnn", "cnn1d", "mlp"] = "cnn"
    stages: list[int] = Field(default_factory=lambda: [16, 24, 32], min_length=1, max_length=8)
    strides: list[Literal[1, 2]] = Field(default_factory=lambda: [1, 2, 2])
    min_stages: int = Field(1, ge=1, le=8)
    depth: tuple[int, int] = (1, 2)
    width_mult: list[float] = Field(default_factory=lambda: [0.5, 0.75, 1.0], min_length=1)
    kernel: list[Literal[3, 5, 7]] = Field(default_factory=lambda: [3, 5], min_length=1)
    expansion: list[int] = Field(default_factory=lambda: [2, 4, 6], min_length=1)
    stem_channels: list[int] = Field(default_factory=lambda: [8, 16], min_length=1)
    widths: list[int] = Field(default_factory=lambda: [32, 64, 128], min_length=1)
    compression: CompressionKnobs = Field(default_factory=CompressionKnobs)

    @model_validator(mode="after")
    def _consistent(self) -> SpaceConfig:
        lo, hi = self.depth
        if not (1 <= lo <= hi <= 8):
            raise ValueError(f"depth range {[lo, hi]} must satisfy 1 <= low <= high <= 8")
        if self.family in ("cnn", "cnn1d"):
            if len(self.strides) != len(self.stages):
                raise ValueError(
                    f"strides has {len(self.strides)} entries but stages has {len(self.stages)}; give one each"
                )
            if self.min_stages > len(self.stages):
                raise ValueError(f"min_stages={self.min_stages} exceeds the {len(self.stages)} stages given")
        for name in ("stages", "expansion", "stem_channels", "widths"):
            if any(v < 1 or v > 4096 for v in getattr(self, name)):
                raise ValueError(f"{name} values must lie in [1, 4096]")
        if any(not 0 < m <= 4 for m in self.width_mult):
            raise ValueError("width_mult values must lie in (0, 4]")
        return self


def _float_range(suggester: Suggester, name: str, bounds: tuple[float, float], step: float) -> float:
    lo, hi = bounds
    if lo == hi:
        return lo
    n = math.floor((hi - lo) / step + 1e-9)
    return suggester.suggest_float(name, lo, lo + n * step, step=step)


def _int_range(suggester: Suggester, name: str, bounds: tuple[int, int]) -> int:
    lo, hi = bounds
    return lo if lo == hi else suggester.suggest_int(name, lo, hi)


def _choice(suggester: Suggester, name: str, choices: list[Any]) -> Any:
    return choices[0] if len(choices) == 1 else suggester.suggest_categorical(name, list(choices))


def _stage_knobs(suggester: Suggester, prefix: str, knobs: CompressionKnobs) -> dict[str, Any]:
    return {
        "prune_ratio": round(_float_range(suggester, f"{prefix}_prune", knobs.prune_ratio, knobs.prune_step), 6),
        "rank_ratio": round(_float_range(suggester, f"{prefix}_rank", knobs.rank_ratio, knobs.rank_step), 6),
        "weight_bits": _choice(suggester, f"{prefix}_wbits", knobs.weight_bits),
        "act_bits": _choice(suggester, f"{prefix}_abits", knobs.act_bits),
    }


def _round_channels(value: float) -> int:
    return max(4, int(round(value / 4.0)) * 4)


def sample_candidate(
    suggester: Suggester, space: SpaceConfig, input_shape: tuple[int, ...], num_classes: int
) -> Candidate:
    """Ask ``suggester`` for one candidate of ``space``.

    Example:
        >>> import optuna
        >>> trial = optuna.create_study().ask()
        >>> c = sample_candidate(trial, SpaceConfig(family="mlp"), (64,), 10)
        >>> c.family, len(c.stages) == trial.params["n_layers"]
        ('mlp', True)
    """
    knobs = space.compression
    head_bits = _choice(suggester, "head_bits", knobs.head_bits)
    stages: list[Stage] = []
    if space.family == "mlp":
        n = _int_range(suggester, "n_layers", space.depth)
        for i in range(n):
            width = _choice(suggester, f"l{i}_width", space.widths)
            stages.append(Stage(channels=int(width), **_stage_knobs(suggester, f"l{i}", knobs)))
        return Candidate("mlp", tuple(input_shape), num_classes, tuple(stages), head_bits=head_bits)

    stem = _choice(suggester, "stem_channels", space.stem_channels)
    n_stages = _int_range(suggester, "n_stages", (space.min_stages, len(space.stages)))
    for i in range(n_stages):
        mult = _choice(suggester, f"s{i}_width", space.width_mult)
        stages.append(
            Stage(
                channels=_round_channels(space.stages[i] * mult),
                depth=_int_range(suggester, f"s{i}_depth", space.depth),
                kernel=_choice(suggester, f"s{i}_kernel", space.kernel),
                expansion=_choice(suggester, f"s{i}_expansion", space.expansion),
                stride=space.strides[i],
                **_stage_knobs(suggester, f"s{i}", knobs),
            )
        )
    return Candidate(space.family, tuple(input_shape), num_classes, tuple(stages), int(stem), head_bits)


def grid_search_space(space: SpaceConfig) -> dict[str, list[Any]]:
    """Every parameter `sample_candidate` can suggest, with all its values (for ``GridSampler``)."""
    knobs = space.compression
    grid: dict[str, list[Any]] = {}

    def add(name: str, values: list[Any]) -> None:
        if len(values) > 1:
            grid[name] = list(values)

    def frange(bounds: tuple[float, float], step: float) -> list[float]:
        lo, hi = bounds
        n = math.floor((hi - lo) / step + 1e-9)
        return [round(lo + k * step, 10) for k in range(n + 1)]

    def knob_grid(prefix: str) -> None:
        add(f"{prefix}_prune", frange(knobs.prune_ratio, knobs.prune_step))
        add(f"{prefix}_rank", frange(knobs.rank_ratio, knobs.rank_step))
        add(f"{prefix}_wbits", list(knobs.weight_bits))
        add(f"{prefix}_abits", list(knobs.act_bits))

    add("head_bits", list(knobs.head_bits))
    if space.family == "mlp":
        add("n_layers", list(range(space.depth[0], space.depth[1] + 1)))
        for i in range(space.depth[1]):
            add(f"l{i}_width", list(space.widths))
            knob_grid(f"l{i}")
        return grid
    add("stem_channels", list(space.stem_channels))
    add("n_stages", list(range(space.min_stages, len(space.stages) + 1)))
    for i in range(len(space.stages)):
        add(f"s{i}_width", list(space.width_mult))
        add(f"s{i}_depth", list(range(space.depth[0], space.depth[1] + 1)))
        add(f"s{i}_kernel", list(space.kernel))
        add(f"s{i}_expansion", list(space.expansion))
        knob_grid(f"s{i}")
    return grid
