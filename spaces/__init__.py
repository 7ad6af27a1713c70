"""The joint search space: architecture families, compression knobs, `Candidate` data, model builders."""

from jointnas.spaces._errors import UserInputError
from jointnas.spaces.candidate import ACTIVATION_BITS, WEIGHT_BITS, Candidate, Stage
from jointnas.spaces.families import build_model, check_family_input, family_names, register_family, stage_of_block
from jointnas.spaces.profile import LayerInfo, count_params, trace_layers
from jointnas.spaces.space import (
    CompressionKnobs,
    SpaceConfig,
    Suggester,
    grid_search_space,
    sample_candidate,
)

__all__ = [
    "ACTIVATION_BITS",
    "WEIGHT_BITS",
    "Candidate",
    "CompressionKnobs",
    "LayerInfo",
    "SpaceConfig",
    "Stage",
    "Suggester",
    "UserInputError",
    "build_model",
    "check_family_input",
    "count_params",
    "family_names",
    "grid_search_space",
    "register_family",
    "sample_candidate",
    "stage_of_block",
    "trace_layers",
]
