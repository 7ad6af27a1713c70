"""Architecture families: an open registry of `Family` objects (timm-style), one module per family.

A family owns everything that depends on its architecture: which ``[space]`` keys it reads and how
they must agree (`Family.check_space`), the Optuna parameters it suggests (`Family.sample`) and their
grid (`Family.grid`), the torch module it builds (`Family.build`) and what inputs that takes. The rest
of the system asks the family of a space or candidate (`get_family`) and never compares family names;
what a family can offer other code is a capability (``layout``, ``supernet``), and code that needs a
capability a family lacks refuses the family with its own message.

Registering a fourth family is one call, before the study file is read::

    register_family(MyFamily("mine"))

Example:
    >>> family_names()
    ['cnn', 'cnn1d', 'mlp']
    >>> get_family("mlp").layout, get_family("cnn1d").input_dims
    ('dense', 2)
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from jointnas.spaces.candidate import Candidate
from jointnas.spaces.space import (
    CompressionKnobs,
    Family,
    Layout,
    SpaceConfig,
    family_names,
    get_family,
    grid_search_space,
    register_family,
    sample_candidate,
)

if TYPE_CHECKING:
    from torch import nn


def build_model(candidate: Candidate) -> nn.Module:
    """Build the (uncompressed, float) torch module of ``candidate``.

    Example:
        >>> from jointnas.spaces import Candidate, Stage
        >>> model = build_model(Candidate("mlp", (64,), 10, (Stage(32),)))
        >>> sum(p.numel() for p in model.parameters())
        2410
    """
    return get_family(candidate.family).build(candidate)


def check_family_input(family: str, input_shape: tuple[int, ...]) -> None:
    """Raise `UserInputError` when ``family`` cannot take inputs of ``input_shape``."""
    get_family(family).check_input(tuple(input_shape))


def stage_of_block(candidate: Candidate) -> list[int]:
    """Stage index of each block in ``model.blocks`` order."""
    family = get_family(candidate.family)
    out: list[int] = []
    for i, stage in enumerate(candidate.stages):
        out.extend([i] * family.blocks_of(stage))
    return out


# The built-in families register on import.
from jointnas.spaces.families import cnn, mlp  # noqa: E402, F401

__all__ = [
    "CompressionKnobs",
    "Family",
    "SpaceConfig",
    "grid_search_space",
    "sample_candidate",
    "Layout",
    "build_model",
    "check_family_input",
    "family_names",
    "get_family",
    "register_family",
    "stage_of_block",
]
