"""Architecture families, registered by name and built from a `Candidate` (timm-style registry)."""

from __future__ import annotations

from collections.abc import Callable

from torch import Tensor, nn

from jointnas.spaces._errors import UserInputError
from jointnas.spaces.candidate import Candidate
from jointnas.spaces.layers import ConvBNAct, DenseAct, InvertedResidual

_FAMILIES: dict[str, Callable[[Candidate], nn.Module]] = {}


def register_family(name: str) -> Callable[[Callable[[Candidate], nn.Module]], Callable[[Candidate], nn.Module]]:
    """Register a model builder ``fn(candidate) -> nn.Module`` under ``name``."""

    def wrap(fn: Callable[[Candidate], nn.Module]) -> Callable[[Candidate], nn.Module]:
        _FAMILIES[name] = fn
        return fn

    return wrap


def family_names() -> list[str]:
    return sorted(_FAMILIES)


def build_model(candidate: Candidate) -> nn.Module:
    """Build the (uncompressed, float) torch module of ``candidate``.

    Example:
        >>> from jointnas.spaces import Candidate, Stage
        >>> model = build_model(Candidate("mlp", (64,), 10, (Stage(32),)))
        >>> sum(p.numel() for p in model.parameters())
        2410
    """
    try:
        builder = _FAMILIES[candidate.family]
    except KeyError:
        raise UserInputError(
            f"unknown architecture family {candidate.family!r}; choose one of {family_names()}"
        ) from None
    return builder(candidate)


INPUT_DIMS = {"cnn": 3, "cnn1d": 2}
"""Input dimensions (without batch) a family needs: ``cnn`` images ``(C, H, W)``, ``cnn1d`` ``(C, L)``."""


def check_family_input(family: str, input_shape: tuple[int, ...]) -> None:
    """Raise `UserInputError` when ``family`` cannot take inputs of ``input_shape`` (the MLP takes any)."""
    dims = INPUT_DIMS.get(family)
    if dims is not None and len(input_shape) != dims:
        layout = "(channels, length)" if dims == 2 else "(channels, height, width)"
        fits = [name for name, d in INPUT_DIMS.items() if d == len(input_shape)] + ["mlp"]
        raise UserInputError(
            f"family {family!r} needs inputs shaped {layout}, but the task gives {tuple(input_shape)}; "
            f"set [space] family to one of {fits}"
        )


class MobileNetV2Like(nn.Module):
    """Stem conv → stages of inverted residual blocks → global average pool → linear classifier.

    ``dims=2`` for images ``(C, H, W)``; ``dims=1`` for series ``(C, L)`` (the ``cnn1d`` family).
    """

    def __init__(self, candidate: Candidate, dims: int = 2) -> None:
        super().__init__()
        check_family_input("cnn1d" if dims == 1 else "cnn", candidate.input_shape)
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


class MLP(nn.Module):
    """Flatten → hidden ``DenseAct`` layers (one per stage) → linear classifier."""

    def __init__(self, candidate: Candidate) -> None:
        super().__init__()
        width = 1
        for d in candidate.input_shape:
            width *= d
        self.flatten = nn.Flatten()
        layers = []
        for stage in candidate.stages:
            layers.append(DenseAct(width, stage.channels))
            width = stage.channels
        self.blocks = nn.Sequential(*layers)
        self.classifier = nn.Linear(width, candidate.num_classes)

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.blocks(self.flatten(x)))


@register_family("cnn")
def _build_cnn(candidate: Candidate) -> nn.Module:
    return MobileNetV2Like(candidate)


@register_family("cnn1d")
def _build_cnn1d(candidate: Candidate) -> nn.Module:
    return MobileNetV2Like(candidate, dims=1)


@register_family("mlp")
def _build_mlp(candidate: Candidate) -> nn.Module:
    return MLP(candidate)


CONV_FAMILIES = ("cnn", "cnn1d")
"""Families built of inverted-residual stages (a stage holds ``depth`` blocks)."""


def stage_of_block(candidate: Candidate) -> list[int]:
    """Stage index of each block in ``model.blocks`` order (a CNN stage holds ``depth`` blocks)."""
    out: list[int] = []
    for i, stage in enumerate(candidate.stages):
        out.extend([i] * (stage.depth if candidate.family in CONV_FAMILIES else 1))
    return out
