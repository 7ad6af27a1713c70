"""The MobileNetV2-style families: ``cnn`` for images ``(C, H, W)``, ``cnn1d`` for series ``(C, L)``.

Reads ``[space]`` ``stem_channels``, ``stages`` (base widths; the length is the maximum stage count),
``strides``, ``min_stages`` and per stage ``width_mult``, ``depth``, ``kernel``, ``expansion``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from jointnas.spaces.candidate import Candidate, Stage
from jointnas.spaces.layers import ConvBNAct, InvertedResidual
from jointnas.spaces.params import (
    Suggester,
    choice,
    int_range,
    round_channels,
    stage_param,
)
from jointnas.spaces.space import Family, knob_grid, register_family, stage_knobs, stage_layers

if TYPE_CHECKING:
    from jointnas.spaces.space import SpaceConfig


class MobileNetV2Like(nn.Module):
    """Stem conv → stages of inverted residual blocks → global average pool → linear classifier.

    ``dims=2`` for images ``(C, H, W)``; ``dims=1`` for series ``(C, L)`` (the ``cnn1d`` family).
    """

    def __init__(self, candidate: Candidate, dims: int = 2) -> None:
        super().__init__()
        in_channels = candidate.input_shape[0]
        self.stem = ConvBNAct(in_channels, candidate.stem_channels, 3, dims=dims)
        blocks: list[nn.Module] = []
        width = candidate.stem_channels
        for stage in candidate.stages:
            for i in range(stage.depth):
                stride = stage.stride if i == 0 else 1
                blocks.append(InvertedResidual(width, stage.channels, stage.kernel, stage.expansion, stride, dims))
                width = stage.channels
        self.blocks = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool1d(1) if dims == 1 else nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(width, candidate.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.flatten(self.pool(self.blocks(self.stem(x)))))


class ConvFamily(Family):
    """Inverted-residual stages over ``dims`` spatial dimensions (a `Supernet` covers them)."""

    layout = "inverted_residual"
    supernet = True

    def __init__(self, name: str, dims: int) -> None:
        self.name, self.dims, self.input_dims = name, dims, dims + 1

    def check_space(self, space: SpaceConfig) -> None:
        if len(space.strides) != len(space.stages):
            raise ValueError(
                f"strides has {len(space.strides)} entries but stages has {len(space.stages)}; give one each"
            )
        if space.min_stages > len(space.stages):
            raise ValueError(f"min_stages={space.min_stages} exceeds the {len(space.stages)} stages given")

    def sample(
        self, suggester: Suggester, space: SpaceConfig, input_shape: tuple[int, ...], num_classes: int
    ) -> Candidate:
        knobs = space.compression
        head_bits = choice(suggester, "head_bits", knobs.head_bits)
        stem = choice(suggester, "stem_channels", space.stem_channels)
        stages: list[Stage] = []
        for i in range(int_range(suggester, "n_stages", (space.min_stages, len(space.stages)))):
            mult = choice(suggester, stage_param(i, "width"), space.width_mult)
            depth = int_range(suggester, stage_param(i, "depth"), space.depth)
            stages.append(
                Stage(
                    channels=round_channels(space.stages[i] * mult),
                    depth=depth,
                    kernel=choice(suggester, stage_param(i, "kernel"), space.kernel),
                    expansion=choice(suggester, stage_param(i, "expansion"), space.expansion),
                    stride=space.strides[i],
                    **stage_knobs(suggester, i, knobs, layers=stage_layers(depth, self.block_roles)),
                )
            )
        return Candidate(self.name, tuple(input_shape), num_classes, tuple(stages), int(stem), head_bits)

    def grid(self, space: SpaceConfig) -> dict[str, list[Any]]:
        grid: dict[str, list[Any]] = {
            "head_bits": list(space.compression.head_bits),
            "stem_channels": list(space.stem_channels),
            "n_stages": list(range(space.min_stages, len(space.stages) + 1)),
        }
        for i in range(len(space.stages)):
            grid[stage_param(i, "width")] = list(space.width_mult)
            grid[stage_param(i, "depth")] = list(range(space.depth[0], space.depth[1] + 1))
            grid[stage_param(i, "kernel")] = list(space.kernel)
            grid[stage_param(i, "expansion")] = list(space.expansion)
            grid.update(knob_grid(i, space.compression, layers=stage_layers(space.depth[1], self.block_roles)))
        return grid

    def stage_widths(self, space: SpaceConfig) -> list[list[int]]:
        return [sorted({round_channels(base * m) for m in space.width_mult}) for base in space.stages]

    def build(self, candidate: Candidate) -> nn.Module:
        self.check_input(candidate.input_shape)
        return MobileNetV2Like(candidate, dims=self.dims)

    def describe(self, candidate: dict[str, Any]) -> str:
        stages = candidate.get("stages") or []
        return f"{self.name} " + " ".join(
            f"{s['channels']}x{s['depth']}k{s['kernel']}e{s['expansion']}" for s in stages
        )


CNN = register_family(ConvFamily("cnn", 2))
CNN1D = register_family(ConvFamily("cnn1d", 1))
