"""The joint search space: architecture families, compression knobs, `Candidate` data, model builders."""

from __future__ import annotations

from typing import TYPE_CHECKING

from jointnas.spaces._errors import UserInputError
from jointnas.spaces._lazy import lazy_exports

if TYPE_CHECKING:
    from jointnas.spaces.candidate import ACTIVATION_BITS, WEIGHT_BITS, Candidate, Stage
    from jointnas.spaces.families import (
        CompressionKnobs,
        Family,
        SpaceConfig,
        build_model,
        check_family_input,
        family_names,
        get_family,
        grid_search_space,
        register_family,
        sample_candidate,
        stage_of_block,
    )
    from jointnas.spaces.normalization import InputNormalization
    from jointnas.spaces.params import FixedParams, Suggester, stage_param
    from jointnas.spaces.profile import (
        C_GRID_BITS,
        C_INPUT_BITS,
        LayerInfo,
        count_params,
        layer_flash_bytes,
        trace_layers,
        weight_storage_bytes,
    )

_EXPORTS = {
    **dict.fromkeys(("ACTIVATION_BITS", "WEIGHT_BITS", "Candidate", "Stage"), "candidate"),
    **dict.fromkeys(
        (
            "Family",
            "build_model",
            "check_family_input",
            "family_names",
            "get_family",
            "register_family",
            "stage_of_block",
        ),
        "families",
    ),
    **dict.fromkeys(
        (
            "C_GRID_BITS",
            "C_INPUT_BITS",
            "LayerInfo",
            "count_params",
            "layer_flash_bytes",
            "trace_layers",
            "weight_storage_bytes",
        ),
        "profile",
    ),
    "InputNormalization": "normalization",
    **dict.fromkeys(("FixedParams", "Suggester", "stage_param"), "params"),
    # The space's names come through the families package, which registers the built-in families.
    **dict.fromkeys(("CompressionKnobs", "SpaceConfig", "grid_search_space", "sample_candidate"), "families"),
}
# UserInputError is light (no torch): storage and the CLI's error path import it without the space code.
__getattr__ = lazy_exports(__name__, _EXPORTS)

__all__ = [
    "ACTIVATION_BITS",
    "C_GRID_BITS",
    "C_INPUT_BITS",
    "Candidate",
    "CompressionKnobs",
    "Family",
    "FixedParams",
    "InputNormalization",
    "LayerInfo",
    "SpaceConfig",
    "Stage",
    "Suggester",
    "UserInputError",
    "WEIGHT_BITS",
    "build_model",
    "check_family_input",
    "count_params",
    "family_names",
    "get_family",
    "grid_search_space",
    "layer_flash_bytes",
    "register_family",
    "sample_candidate",
    "stage_of_block",
    "stage_param",
    "trace_layers",
    "weight_storage_bytes",
]
