"""Compression: structured and unstructured pruning, low-rank SVD, mixed-precision QAT, INT8 PTQ,
distillation, the one training loop, the one ONNX export path and the generated C inference library
(docs/compression.md, docs/cgen.md)."""

from collections.abc import Callable

from torch import nn

from jointnas.spaces import Candidate
from jointnas.spaces.quant import WEIGHT_QUANTIZERS, quantize_weight

from .cgen import CLibrary, generate_c_library
from .export import (
    RawInput,
    deployable_model,
    export_onnx,
    onnx_logits,
    onnx_metadata,
    onnx_parity,
    quantize_onnx_int8,
    tidy_onnx,
)
from .lowrank import (
    factorize_conv,
    factorize_conv1x1,
    factorize_layer,
    factorize_linear,
    factorize_low_rank,
    layer_rank,
    rank_for,
    rank_for_energy,
    saves_parameters,
)
from .pipeline import PipelineConfig, PipelineResult, StepReport, deployed_costs, run_pipeline
from .plan import validate_plan
from .pruning import (
    CRITERIA,
    ChannelGroup,
    channel_groups,
    channels_to_keep,
    plan_channel_pruning,
    prune_channels,
    prune_group,
)
from .quantization import (
    PACT,
    QuantConv1d,
    QuantConv2d,
    QuantLinear,
    WeightCodes,
    fold_batchnorm,
    integer_weights,
    quantize_model,
)
from .sparsity import (
    MagnitudePruner,
    SparsityConfig,
    gradual_prune,
    layer_sparsity,
    prune_magnitude,
    scheduled_sparsity,
)
from .stored import model_from_record, model_record
from .training import (
    DEVICES,
    TrainConfig,
    TrainingDivergedError,
    accuracy,
    distillation_loss,
    mean_loss,
    resolve_device,
    train,
)

METHODS: dict[str, Callable[[nn.Module, Candidate], nn.Module]] = {
    "prune": prune_channels,
    "lowrank": factorize_low_rank,
    "quantize": quantize_model,
}
"""Plan-driven compression methods by name: each takes ``(model, candidate)`` and returns the compressed
model. Unstructured pruning (`gradual_prune`) is configured by ``[pipeline]`` rather than the plan and
runs as the pipeline's ``sparsify`` step."""

__all__ = [
    "DEVICES",
    "resolve_device",
    "CLibrary",
    "CRITERIA",
    "ChannelGroup",
    "METHODS",
    "MagnitudePruner",
    "PACT",
    "PipelineConfig",
    "PipelineResult",
    "QuantConv1d",
    "QuantConv2d",
    "QuantLinear",
    "SparsityConfig",
    "StepReport",
    "RawInput",
    "TrainConfig",
    "TrainingDivergedError",
    "WEIGHT_QUANTIZERS",
    "WeightCodes",
    "accuracy",
    "mean_loss",
    "channel_groups",
    "channels_to_keep",
    "deployable_model",
    "deployed_costs",
    "distillation_loss",
    "export_onnx",
    "factorize_conv",
    "factorize_conv1x1",
    "factorize_layer",
    "factorize_linear",
    "factorize_low_rank",
    "fold_batchnorm",
    "generate_c_library",
    "gradual_prune",
    "integer_weights",
    "layer_rank",
    "layer_sparsity",
    "model_from_record",
    "model_record",
    "onnx_logits",
    "onnx_metadata",
    "onnx_parity",
    "plan_channel_pruning",
    "prune_channels",
    "prune_group",
    "prune_magnitude",
    "quantize_model",
    "quantize_onnx_int8",
    "quantize_weight",
    "rank_for",
    "rank_for_energy",
    "run_pipeline",
    "scheduled_sparsity",
    "tidy_onnx",
    "saves_parameters",
    "train",
    "validate_plan",
]
