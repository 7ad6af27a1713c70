"""Compression: structured pruning, low-rank SVD, mixed-precision fake quantization, training loop."""

from collections.abc import Callable

from torch import nn

from jointnas.spaces import Candidate

from .export import deployable_model, export_onnx, onnx_logits, onnx_parity, quantize_onnx_int8
from .lowrank import factorize_conv1x1, factorize_linear, factorize_low_rank, rank_for, saves_parameters
from .pipeline import PipelineConfig, PipelineResult, StepReport, run_pipeline
from .pruning import CRITERIA, channels_to_keep, prune_channels
from .quantization import (
    PACT,
    QuantConv2d,
    QuantLinear,
    fold_batchnorm,
    integer_weights,
    quantize_model,
    quantize_weight,
)
from .training import TrainConfig, TrainingDivergedError, accuracy, distillation_loss, train

METHODS: dict[str, Callable[[nn.Module, Candidate], nn.Module]] = {
    "prune": prune_channels,
    "lowrank": factorize_low_rank,
    "quantize": quantize_model,
}
"""Compression methods by name: each takes ``(model, candidate)`` and returns the compressed model."""

__all__ = [
    "CRITERIA",
    "METHODS",
    "PACT",
    "PipelineConfig",
    "PipelineResult",
    "QuantConv2d",
    "QuantLinear",
    "StepReport",
    "TrainConfig",
    "TrainingDivergedError",
    "accuracy",
    "channels_to_keep",
    "deployable_model",
    "distillation_loss",
    "export_onnx",
    "factorize_conv1x1",
    "factorize_linear",
    "factorize_low_rank",
    "fold_batchnorm",
    "integer_weights",
    "onnx_logits",
    "onnx_parity",
    "prune_channels",
    "quantize_model",
    "quantize_onnx_int8",
    "quantize_weight",
    "rank_for",
    "run_pipeline",
    "saves_parameters",
    "train",
]
