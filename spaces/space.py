"""The joint search space: architecture ranges plus per-stage compression knobs.

`SpaceConfig` is the validated ``[space]`` section of a study file. `sample_candidate` asks any object
with Optuna's ``suggest_*`` methods (an ``optuna.Trial``, a fixed-params stand-in, a supernet sampler's
proposal) for a `Candidate`; parameters of absent stages and layers are never suggested.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from jointnas.spaces._errors import UserInputError
from jointnas.spaces.candidate import Candidate, Stage
from jointnas.spaces.params import Suggester, choice, float_grid, float_range, layer_key, stage_param
from jointnas.spaces.precision import precision_order

if TYPE_CHECKING:
    from torch import nn

WeightBits = Literal[1, 2, 4, 8, 16, 32, "fp16"]
ActBits = Literal[2, 4, 8, 16, 32, "fp16"]
HeadBits = Literal[8, 16, 32]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class CompressionKnobs(_Strict):
    """Per-stage compression ranges. A range ``[a, a]`` fixes the knob; ``step`` discretizes it.

    ``granularity`` is where bit-widths are chosen: ``"stage"`` (one ``s{i}_wbits`` / ``s{i}_abits`` a
    stage) or ``"layer"`` (one weight and one activation parameter for every conv/linear layer of the
    stages, ``s{i}_b{j}_{role}_wbits`` / ``_abits``, e.g. ``s1_b0_expand_wbits``; the stem and the
    classifier keep ``head_bits``).
    """

    prune_ratio: tuple[float, float] = Field((0.0, 0.5), description="structured pruning share, in [0, 1)")
    prune_step: float = Field(0.125, gt=0, le=1)
    rank_ratio: tuple[float, float] = Field((1.0, 1.0), description="retained rank share, in (0, 1]")
    rank_step: float = Field(0.25, gt=0, le=1)
    weight_bits: list[WeightBits] = Field(default_factory=lambda: [4, 8, 32], min_length=1)
    act_bits: list[ActBits] = Field(default_factory=lambda: [8, 32], min_length=1)
    head_bits: list[HeadBits] = Field(default_factory=lambda: [8], min_length=1)
    granularity: Literal["stage", "layer"] = "stage"
    memory_threshold: int | None = Field(
        None, gt=0, description="SRAM bytes the memory filter allows a layer's live tensors (default: the device's)"
    )

    @model_validator(mode="after")
    def _ranges(self) -> CompressionKnobs:
        lo, hi = self.prune_ratio
        if not (0.0 <= lo <= hi < 1.0):
            raise ValueError(f"prune_ratio range {[lo, hi]} must satisfy 0 <= low <= high < 1")
        lo, hi = self.rank_ratio
        if not (0.0 < lo <= hi <= 1.0):
            raise ValueError(f"rank_ratio range {[lo, hi]} must satisfy 0 < low <= high <= 1")
        return self


def stage_layers(blocks: int, roles: tuple[str, ...]) -> list[str]:
    """The layer keys of a stage of ``blocks`` blocks whose blocks hold layers ``roles`` (`Family.block_roles`)."""
    return [layer_key(j, role) for j in range(blocks) for role in roles]


def stage_knobs(
    suggester: Suggester, i: int, knobs: CompressionKnobs, prefix: str = "s", layers: list[str] | None = None
) -> dict[str, Any]:
    """The compression knobs of stage ``i`` as `Stage` fields.

    With ``granularity = "layer"`` every key of ``layers`` (`stage_layers`) gets its own weight and
    activation parameter, in ``layer_bits``; the stage's ``weight_bits`` / ``act_bits`` are then its
    widest layer precisions (a summary; every layer has its entry).
    """
    out = {
        "prune_ratio": float_range(suggester, stage_param(i, "prune", prefix), knobs.prune_ratio, knobs.prune_step),
        "rank_ratio": float_range(suggester, stage_param(i, "rank", prefix), knobs.rank_ratio, knobs.rank_step),
    }
    if knobs.granularity == "stage" or not layers:
        out["weight_bits"] = choice(suggester, stage_param(i, "wbits", prefix), knobs.weight_bits)
        out["act_bits"] = choice(suggester, stage_param(i, "abits", prefix), knobs.act_bits)
        return out
    entries = tuple(
        (
            key,
            choice(suggester, stage_param(i, "wbits", prefix, key), knobs.weight_bits),
            choice(suggester, stage_param(i, "abits", prefix, key), knobs.act_bits),
        )
        for key in layers
    )
    out["weight_bits"] = max((w for _, w, _ in entries), key=precision_order)
    out["act_bits"] = max((a for _, _, a in entries), key=precision_order)
    return {**out, "layer_bits": entries}


def knob_grid(
    i: int, knobs: CompressionKnobs, prefix: str = "s", layers: list[str] | None = None
) -> dict[str, list[Any]]:
    """Every value of stage ``i``'s compression knobs (`stage_knobs`' parameters; ``layers``: the keys of
    the stage's layers at its largest depth)."""
    grid = {
        stage_param(i, "prune", prefix): float_grid(knobs.prune_ratio, knobs.prune_step),
        stage_param(i, "rank", prefix): float_grid(knobs.rank_ratio, knobs.rank_step),
    }
    if knobs.granularity == "stage" or not layers:
        grid[stage_param(i, "wbits", prefix)] = list(knobs.weight_bits)
        grid[stage_param(i, "abits", prefix)] = list(knobs.act_bits)
        return grid
    for key in layers:
        grid[stage_param(i, "wbits", prefix, key)] = list(knobs.weight_bits)
        grid[stage_param(i, "abits", prefix, key)] = list(knobs.act_bits)
    return grid


class SpaceConfig(_Strict):
    """Architecture family and ranges.

    ``family`` names a registered `jointnas.spaces.families.Family`; each family reads some of the
    range keys (its module says which). The built-ins: ``cnn`` / ``cnn1d`` (MobileNetV2-style, images /
    1-D series): ``stages`` gives the base output channels of each possible stage (its length is the
    maximum stage count), ``strides`` their first-block strides, ``min_stages`` how many are always
    present; per stage: ``depth`` range, ``width_mult``, ``kernel`` and ``expansion`` choices.
    ``mlp``: ``depth`` is the hidden-layer count range and ``widths`` the per-layer choices.
    """

    family: str = "cnn"
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

    @field_validator("family")
    @classmethod
    def _registered(cls, name: str) -> str:
        if name not in family_names():
            raise ValueError(f"unknown family {name!r}; choose one of {', '.join(family_names())}")
        return name

    @model_validator(mode="after")
    def _consistent(self) -> SpaceConfig:
        lo, hi = self.depth
        if not (1 <= lo <= hi <= 8):
            raise ValueError(f"depth range {[lo, hi]} must satisfy 1 <= low <= high <= 8")
        get_family(self.family).check_space(self)
        for name in ("stages", "expansion", "stem_channels", "widths"):
            if any(v < 1 or v > 4096 for v in getattr(self, name)):
                raise ValueError(f"{name} values must lie in [1, 4096]")
        if any(not 0 < m <= 4 for m in self.width_mult):
            raise ValueError("width_mult values must lie in (0, 4]")
        return self


# -- families ---------------------------------------------------------------------------------------

Layout = Literal["inverted_residual", "dense"]


class Family:
    """One architecture family. Subclass it, implement `sample`, `grid` and `build`, register an instance.

    Attributes:
        name: the ``[space] family`` value.
        layout: the block contract of the built model, what pruning and the latency-table enumeration
            (``jointnas lut build``) rely on: ``"inverted_residual"`` (``model.stem``, then
            ``model.blocks`` of `InvertedResidual`, ``stage.depth`` blocks a stage, then
            ``model.classifier``) or ``"dense"`` (``model.blocks`` of `DenseAct`, one a stage, on the
            flattened input, then ``model.classifier``; a one-stage candidate on a flat input is one
            block).
        input_dims: dimensions of an input without batch (``None``: any shape).
        supernet: whether `jointnas.spaces.supernet.Supernet` covers the family (weight-sharing samplers).
    """

    name: str = ""
    layout: Layout = "dense"
    input_dims: int | None = None
    supernet: bool = False

    def check_space(self, space: SpaceConfig) -> None:
        """Raise ``ValueError`` (a config message) when the ``[space]`` keys the family reads disagree."""

    def sample(
        self, suggester: Suggester, space: SpaceConfig, input_shape: tuple[int, ...], num_classes: int
    ) -> Candidate:
        """Ask ``suggester`` for one candidate of ``space`` (parameters of absent stages are not asked)."""
        raise NotImplementedError

    def grid(self, space: SpaceConfig) -> dict[str, list[Any]]:
        """Every parameter `sample` can suggest with all its values (one value: left out)."""
        raise NotImplementedError

    def build(self, candidate: Candidate) -> nn.Module:
        """The candidate's uncompressed float torch module."""
        raise NotImplementedError

    def stage_widths(self, space: SpaceConfig) -> list[list[int]]:
        """The channel counts stage ``i`` can have, for every stage position (the latency table's blocks)."""
        raise NotImplementedError

    def blocks_of(self, stage: Stage) -> int:
        """How many entries of ``model.blocks`` a stage builds."""
        return stage.depth if self.layout == "inverted_residual" else 1

    @property
    def block_roles(self) -> tuple[str, ...]:
        """The conv/linear layers of one block by attribute, in execution order (per-layer precision keys)."""
        return ("expand", "dw", "project") if self.layout == "inverted_residual" else ("linear",)

    def describe(self, candidate: dict[str, Any]) -> str:
        """A one-line architecture summary of a stored candidate (the CLI's trial tables)."""
        return f"{self.name} " + "-".join(str(s["channels"]) for s in candidate.get("stages") or [])

    def check_input(self, input_shape: tuple[int, ...]) -> None:
        """Raise `UserInputError` when the family cannot take inputs of ``input_shape``."""
        if self.input_dims is None or len(input_shape) == self.input_dims:
            return
        layout = {2: "(channels, length)", 3: "(channels, height, width)"}.get(self.input_dims, f"{self.input_dims}-D")
        fits = [f.name for f in _FAMILIES.values() if f.input_dims in (None, len(input_shape))]
        raise UserInputError(
            f"family {self.name!r} needs inputs shaped {layout}, but the task gives {tuple(input_shape)}; "
            f"set [space] family to one of {fits}"
        )


_FAMILIES: dict[str, Family] = {}


def register_family(family: Family) -> Family:
    """Register ``family`` under ``family.name`` (a later registration of the name replaces it)."""
    if not family.name:
        raise ValueError("a family needs a name")
    _FAMILIES[family.name] = family
    return family


def family_names() -> list[str]:
    return sorted(_FAMILIES)


def get_family(name: str) -> Family:
    """The registered family ``name``."""
    try:
        return _FAMILIES[name]
    except KeyError:
        raise UserInputError(f"unknown architecture family {name!r}; choose one of {family_names()}") from None


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
    return get_family(space.family).sample(suggester, space, tuple(input_shape), num_classes)


def grid_search_space(space: SpaceConfig) -> dict[str, list[Any]]:
    """Every parameter `sample_candidate` can suggest, with all its values (for ``GridSampler``)."""
    return {name: values for name, values in get_family(space.family).grid(space).items() if len(values) > 1}
