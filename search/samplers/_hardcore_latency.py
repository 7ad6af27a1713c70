"""HardCoReNAS latency model: the LUT latency of a sub-network and of a distribution over sub-networks.

A CNN sub-network of a `SpaceConfig` is a *macro* (stem width, stage count, per-stage width) plus,
per stage ``s``, a block choice ``c`` (kernel × expansion; every block of a stage shares it, as in
`Candidate`) and a depth ``d``. With the macro fixed, the latency is separable over stages
(Nayman et al. 2021, eq. 3)::

    lat = fixed_ms + Σ_s Σ_{b < d_s} block_ms[s][b, c_s]

and the expected latency of independent per-stage distributions α_s (over choices) and β_s (over
depths) is bilinear in (α, β)::

    E[lat] = fixed_ms + Σ_s Σ_j β_{s,j} Σ_{b < depths[j]} Σ_c α_{s,c} block_ms[s][b, c]
           = fixed_ms + Σ_s α_sᵀ M_s β_s,       M_s[c, j] = Σ_{b < depths[j]} block_ms[s][b, c]

``block_ms`` and ``fixed_ms`` come from the device's block table through the supernet's per-choice
block descriptions (`jointnas.search.samplers._supernet_costs.latency_costs`: the calibrated block
sum is affine in the block entries and the block count), so the latency of an extracted sub-network
equals ``LatencyTable.predict_ms`` of its built model exactly. Bit-widths are priced at the largest
option (the float architecture); precision stays a compression knob.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from jointnas.spaces import Candidate, SpaceConfig, UserInputError, sample_candidate
from jointnas.spaces.families import family_names, get_family
from jointnas.spaces.params import FixedParams, stage_param


def covers(family: str) -> bool:
    """Whether HardCoReNAS covers ``family``: one the shared supernet covers (``Family.supernet``:
    the built-in ``cnn`` for images and ``cnn1d`` for series)."""
    return get_family(family).supernet


@dataclass(frozen=True)
class Macro:
    """The part of a sub-network the per-stage search keeps fixed: stem width, stage widths.

    ``width_mults`` has one entry per present stage (its length is the stage count).
    """

    stem_channels: int
    width_mults: tuple[float, ...]

    @property
    def n_stages(self) -> int:
        return len(self.width_mults)


@dataclass(frozen=True)
class Arch:
    """A sub-network: a macro plus, per stage, a block-choice index and a depth index."""

    macro: Macro
    choices: tuple[int, ...]
    depths: tuple[int, ...]


@dataclass(frozen=True)
class SpaceChoices:
    """The discrete choices HardCoReNAS searches in a `SpaceConfig` (CNN family)."""

    space: SpaceConfig
    block_choices: tuple[tuple[int, int], ...]
    depths: tuple[int, ...]

    @classmethod
    def from_space(cls, space: SpaceConfig) -> SpaceChoices:
        if not covers(space.family):
            covered = ", ".join(repr(n) for n in family_names() if covers(n))
            raise UserInputError(
                f"sampler 'hardcore' searches the block choices and depths of a supernet family; [space] family "
                f"is {space.family!r}, use family = one of {covered} or another sampler"
            )
        choices = tuple((int(k), int(e)) for k in space.kernel for e in space.expansion)
        depths = tuple(range(space.depth[0], space.depth[1] + 1))
        return cls(space, choices, depths)

    def macros(self, width_mult: float | None = None, stem_channels: int | None = None) -> list[Macro]:
        """Every macro the supernet builds: stem width × stage count × a width multiplier per stage
        (``width_mult`` / ``stem_channels`` fix those, as the sampler's options do), narrowest first."""
        sp = self.space
        stems = [int(stem_channels)] if stem_channels is not None else sorted({int(c) for c in sp.stem_channels})
        mults = [float(width_mult)] if width_mult is not None else sorted({float(m) for m in sp.width_mult})
        return [
            Macro(stem, widths)
            for stem in stems
            for n in range(sp.min_stages, len(sp.stages) + 1)
            for widths in itertools.product(mults, repeat=n)
        ]

    def max_macro(self) -> Macro:
        """The widest, deepest macro: the supernet's full macro-architecture."""
        n = len(self.space.stages)
        return Macro(int(max(self.space.stem_channels)), (float(max(self.space.width_mult)),) * n)

    def arch_params(self, arch: Arch) -> dict[str, Any]:
        """The Optuna parameters of ``arch`` (names as `sample_candidate` suggests them)."""
        m = arch.macro
        params: dict[str, Any] = {"stem_channels": m.stem_channels, "n_stages": m.n_stages}
        for i in range(m.n_stages):
            k, e = self.block_choices[arch.choices[i]]
            params[stage_param(i, "width")] = m.width_mults[i]
            params[stage_param(i, "kernel")] = k
            params[stage_param(i, "expansion")] = e
            params[stage_param(i, "depth")] = self.depths[arch.depths[i]]
        return params

    def arch_from_params(self, params: dict[str, Any]) -> Arch:
        """Inverse of `arch_params` (parameters the space fixes take their only value)."""
        sp = self.space
        n = int(params.get("n_stages", len(sp.stages) if sp.min_stages == len(sp.stages) else sp.min_stages))
        macro = Macro(
            int(params.get("stem_channels", sp.stem_channels[0])),
            tuple(float(params.get(stage_param(i, "width"), sp.width_mult[0])) for i in range(n)),
        )
        choices = tuple(
            self.block_choices.index(
                (
                    int(params.get(stage_param(i, "kernel"), sp.kernel[0])),
                    int(params.get(stage_param(i, "expansion"), sp.expansion[0])),
                )
            )
            for i in range(n)
        )
        depths = tuple(self.depths.index(int(params.get(stage_param(i, "depth"), sp.depth[0]))) for i in range(n))
        return Arch(macro, choices, depths)

    def candidate(
        self, arch: Arch, input_shape: tuple[int, ...], num_classes: int, extra: dict[str, Any] | None = None
    ) -> Candidate:
        """The `Candidate` of ``arch`` (compression knobs from ``extra`` params, else uncompressed: `FixedParams`)."""
        return sample_candidate(
            FixedParams({**(extra or {}), **self.arch_params(arch)}), self.space, input_shape, num_classes
        )


@dataclass
class LatencyModel:
    """LUT latency of the sub-networks of one macro, and of distributions over them.

    Args:
        macro: the fixed macro.
        fixed_ms: stem + classifier latency (ms), the same for every sub-network of the macro.
        block_ms: per stage, an array ``[max_depth, n_choices]`` of block latencies (ms).
        depths: the allowed depths (block counts), ascending.
    """

    macro: Macro
    fixed_ms: float
    block_ms: list[np.ndarray]
    depths: tuple[int, ...]
    stage_ms: list[np.ndarray] = field(init=False)

    def __post_init__(self) -> None:
        # M_s[c, j]: latency of stage s with choice c and depth depths[j] (cumulative over blocks).
        self.stage_ms = []
        for blocks in self.block_ms:
            cum = np.cumsum(blocks, axis=0)
            self.stage_ms.append(np.stack([cum[d - 1] for d in self.depths], axis=1))

    @property
    def n_stages(self) -> int:
        return len(self.block_ms)

    def arch_ms(self, choices: Iterable[int], depths: Iterable[int]) -> float:
        """LUT latency (ms) of the sub-network with per-stage choice and depth indices."""
        return self.fixed_ms + float(sum(m[c, j] for m, c, j in zip(self.stage_ms, choices, depths, strict=True)))

    def min_arch(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """Choice and depth indices of the fastest sub-network (stages are independent)."""
        picks = [np.unravel_index(int(np.argmin(m)), m.shape) for m in self.stage_ms]
        return tuple(int(c) for c, _ in picks), tuple(int(j) for _, j in picks)

    @property
    def min_ms(self) -> float:
        return self.fixed_ms + float(sum(m.min() for m in self.stage_ms))

    @property
    def max_ms(self) -> float:
        return self.fixed_ms + float(sum(m.max() for m in self.stage_ms))

    def expected_ms(self, alpha: list[Any], beta: list[Any]) -> Any:
        """E[latency] (ms) of per-stage distributions ``alpha[s]`` (choices) and ``beta[s]`` (depths).

        Accepts numpy arrays or torch tensors; with tensors the result is differentiable in α and β.
        """
        if isinstance(alpha[0], torch.Tensor):
            total = torch.as_tensor(self.fixed_ms, dtype=alpha[0].dtype)
            for m, a, b in zip(self.stage_ms, alpha, beta, strict=True):
                total = total + a @ torch.as_tensor(m, dtype=a.dtype) @ b
            return total
        return self.fixed_ms + float(
            sum(np.asarray(a) @ m @ np.asarray(b) for m, a, b in zip(self.stage_ms, alpha, beta, strict=True))
        )
