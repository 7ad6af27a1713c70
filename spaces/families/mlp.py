"""The ``mlp`` family: hidden dense layers on the flattened input.

Reads ``[space]`` ``depth`` (the hidden-layer count range) and ``widths`` (each layer's choices).
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING, Any

from torch import Tensor, nn

from jointnas.spaces.candidate import Candidate, Stage
from jointnas.spaces.layers import DenseAct
from jointnas.spaces.params import Suggester, choice, int_range, stage_param
from jointnas.spaces.space import Family, knob_grid, register_family, stage_knobs, stage_layers

if TYPE_CHECKING:
    from jointnas.spaces.space import SpaceConfig


class MLP(nn.Module):
    """Flatten → hidden ``DenseAct`` layers (one per stage) → linear classifier."""

    def __init__(self, candidate: Candidate) -> None:
        super().__init__()
        width = math.prod(candidate.input_shape)
        self.flatten = nn.Flatten()
        layers = []
        for stage in candidate.stages:
            layers.append(DenseAct(width, stage.channels))
            width = stage.channels
        self.blocks = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, candidate.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.blocks(self.flatten(x)))


class MLPFamily(Family):
    """Dense layers, parameters ``n_layers`` and per layer ``l{i}_width`` plus the knobs ``l{i}_*``."""

    name = "mlp"
    layout = "dense"

    def sample(
        self, suggester: Suggester, space: SpaceConfig, input_shape: tuple[int, ...], num_classes: int
    ) -> Candidate:
        knobs = space.compression
        head_bits = choice(suggester, "head_bits", knobs.head_bits)
        stages = []
        for i in range(int_range(suggester, "n_layers", space.depth)):
            width = choice(suggester, stage_param(i, "width", "l"), space.widths)
            layers = stage_layers(1, self.block_roles)
            stages.append(Stage(channels=int(width), **stage_knobs(suggester, i, knobs, "l", layers)))
        return Candidate(self.name, tuple(input_shape), num_classes, tuple(stages), head_bits=head_bits)

    def grid(self, space: SpaceConfig) -> dict[str, list[Any]]:
        grid: dict[str, list[Any]] = {
            "head_bits": list(space.compression.head_bits),
            "n_layers": list(range(space.depth[0], space.depth[1] + 1)),
        }
        for i in range(space.depth[1]):
            grid[stage_param(i, "width", "l")] = list(space.widths)
            grid.update(knob_grid(i, space.compression, "l", stage_layers(1, self.block_roles)))
        return grid

    def stage_widths(self, space: SpaceConfig) -> list[list[int]]:
        return [list(space.widths)] * space.depth[1]

    def build(self, candidate: Candidate) -> nn.Module:
        return MLP(candidate)


MLP_FAMILY = register_family(MLPFamily())
