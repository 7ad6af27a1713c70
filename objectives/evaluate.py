"""The compression-aware objective: accuracy after compress-and-finetune, LUT latency, Flash, SRAM."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_serializer
from torch import nn

from jointnas.compression import (
    PipelineConfig,
    PipelineResult,
    accuracy,
    deployed_costs,
    fold_batchnorm,
    mean_loss,
    run_pipeline,
)
from jointnas.devices import (
    DeviceProfile,
    LatencyTable,
    fit_profiles,
    fit_report,
    is_profile_path,
    load_profile,
    profile_names,
)
from jointnas.spaces import Candidate, build_model

from .board import verify_on_board
from .tasks import TaskData

Metric = Literal["accuracy", "latency_ms", "flash_bytes", "sram_bytes"]
DIRECTIONS: dict[str, str] = {
    "accuracy": "maximize",
    "latency_ms": "minimize",
    "flash_bytes": "minimize",
    "sram_bytes": "minimize",
}


class ObjectivesConfig(BaseModel):
    """The ``[objectives]`` section: which metrics the study optimizes, in order."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    metrics: list[Metric] = Field(default_factory=lambda: ["accuracy", "latency_ms", "flash_bytes"], min_length=1)

    @field_validator("metrics")
    @classmethod
    def _unique(cls, metrics: list[str]) -> list[str]:
        if len(set(metrics)) != len(metrics):
            raise ValueError(f"metrics {metrics} list a metric twice; list each once")
        return metrics

    @property
    def directions(self) -> list[str]:
        return [DIRECTIONS[m] for m in self.metrics]


class ConstraintsConfig(BaseModel):
    """The ``[constraints]`` section: upper bounds a feasible model must meet (absent = no bound).

    ``fits`` lists devices (profile names or files) whose Flash and SRAM the model must fit; each is a
    constraint named ``fits:<device>`` with value max(used / capacity) − 1.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    flash_bytes: float | None = Field(None, gt=0)
    sram_bytes: float | None = Field(None, gt=0)
    latency_ms: float | None = Field(None, gt=0)
    fits: list[str] = Field(default_factory=list)

    @field_validator("fits")
    @classmethod
    def _devices(cls, names: list[str]) -> list[str]:
        for name in names:
            if not is_profile_path(name) and name not in profile_names():
                raise ValueError(f"unknown device {name!r}; choose from {profile_names()} or a profile file path")
        return names

    @model_serializer(mode="wrap")
    def _omit_empty_fits(self, handler: Any) -> dict[str, Any]:
        # Studies made before `fits` existed keep their config hash.
        data = handler(self)
        if not data.get("fits"):
            data.pop("fits", None)
        return data

    def bounds(self) -> dict[str, float]:
        return {k: v for k, v in self.model_dump().items() if k != "fits" and v is not None}


@dataclass
class Evaluation:
    """Objective values, constraint violations (≤ 0 is feasible) and every measured figure."""

    values: dict[str, float]
    violations: dict[str, float]
    attrs: dict[str, Any] = field(default_factory=dict)
    model: nn.Module | None = None
    """The compressed model in deployment form (what the trial stores and exports)."""
    teacher: nn.Module | None = None
    """The trained, uncompressed model the pipeline compressed (the export's FP32 baseline)."""


def model_costs(
    model: nn.Module, input_shape: tuple[int, ...], table: LatencyTable, *, input_signed: bool = True
) -> dict[str, Any]:
    """`compression.deployed_costs` of a deployable model with the device model's figures: latency, and the
    Flash and SRAM the device needs (`memory_bytes`: the parameters and peak activations for ONNX
    Runtime; the whole C library, code and stack included, for a microcontroller). ``weight_bytes`` keeps
    the parameters' Flash alone. ``input_signed``: the task's (`TaskData.input_signed`)."""
    costs = deployed_costs(model, input_shape, input_signed=input_signed)
    costs["weight_bytes"] = costs["flash_bytes"]
    costs["flash_bytes"], costs["sram_bytes"] = table.memory_bytes(costs["layers"])
    costs["latency_ms"] = table.predict_ms(costs["layers"])
    return costs


def train_candidate(
    candidate: Candidate,
    task: TaskData,
    pipeline: PipelineConfig,
    *,
    seed: int = 0,
    supported_weight_bits: Sequence[int] | None = None,
    initial_model: nn.Module | None = None,
    on_step: Callable[[str, nn.Module], dict[str, float]] | None = None,
) -> PipelineResult:
    """The train step of a trial: ``candidate`` through ``pipeline`` on ``task``'s splits.

    The one place a trial's model is trained (the search, ``jointnas export --retrain``): the task's
    training ``augment`` is applied, ``supported_weight_bits`` (the device's, see
    `jointnas.devices.DeviceProfile.supported_weight_bits`) makes a plan with other bit-widths fail
    before training, ``initial_model`` starts from given weights (see `compression.run_pipeline`).
    """
    return run_pipeline(
        candidate,
        task.x_train,
        task.y_train,
        task.x_val,
        task.y_val,
        pipeline,
        seed=seed,
        on_step=on_step,
        supported_weight_bits=supported_weight_bits,
        initial_model=initial_model,
        augment=task.augment,
    )


def measure_candidate(
    candidate: Candidate,
    result: PipelineResult,
    task: TaskData,
    table: LatencyTable,
    objectives: ObjectivesConfig,
    constraints: ConstraintsConfig,
    *,
    started: float | None = None,
    verify: DeviceProfile | None = None,
) -> Evaluation:
    """The measure step of a trial: objective values, constraint violations and attrs of a trained ``result``.

    Accuracy is the validation split's; the test split's accuracy is only recorded in ``attrs``.
    ``started`` (a `time.perf_counter` value) is when training began, for the ``total_s`` timing.
    ``verify``: the board to build and run the model's C library on (`verify_on_board`); its measured
    Flash, SRAM and latency become the values (the estimates stay in ``attrs["estimated"]``) and its
    build's verdict the ``fits:<board>`` constraint.
    """
    t_start = time.perf_counter() if started is None else started
    model = result.model
    t0 = time.perf_counter()
    val_acc = accuracy(model, task.x_val, task.y_val)
    test_acc = accuracy(model, task.x_test, task.y_test)
    test_loss = mean_loss(model, task.x_test, task.y_test)
    eval_s = time.perf_counter() - t0

    t0 = time.perf_counter()
    costs = model_costs(model, task.input_shape, table, input_signed=task.input_signed)
    baseline = fold_batchnorm(build_model(candidate.uncompressed()).eval())
    base_costs = model_costs(baseline, task.input_shape, table, input_signed=task.input_signed)
    table.save()
    cost_s = time.perf_counter() - t0

    measured = {
        "accuracy": val_acc,
        "latency_ms": costs["latency_ms"],
        "flash_bytes": float(costs["flash_bytes"]),
        "sram_bytes": float(costs["sram_bytes"]),
    }
    estimated = dict(measured)
    verified = None if verify is None else verify_on_board(model, task, verify)
    if verified is not None and "failed" not in verified:
        measured.update({k: float(verified[k]) for k in ("flash_bytes", "sram_bytes", "latency_ms")})
    values = {m: measured[m] for m in objectives.metrics}
    violations = {k: measured[k] - bound for k, bound in constraints.bounds().items()}
    device_fit = {p.name: fit_report(costs["layers"], p) for p in fit_profiles(constraints.fits)}
    for name in constraints.fits:
        board = load_profile(name).name
        built = verified is not None and verified["device"] == board
        violations[f"fits:{name}"] = verified["violation"] if built else device_fit[board].violation
    timings = dict(result.timings_s, eval_s=eval_s, cost_s=cost_s, total_s=time.perf_counter() - t_start)
    attrs: dict[str, Any] = {
        "candidate": candidate.to_dict(),
        "val_accuracy": val_acc,
        "test_accuracy": test_acc,
        "test_loss": test_loss,  # cross-entropy, nats per sample (text tasks: per character)
        "test_perplexity": math.exp(test_loss) if math.isfinite(test_loss) else None,
        "teacher_val_accuracy": result.reports[0].val_accuracy,
        **_cost_attrs(costs, base_costs),
        "steps": [r.as_dict() for r in result.reports],  # accuracy, params, MACs, Flash after each step
        "layer_sparsity": result.layer_sparsity,
        "curves": result.curves,  # per training run: per-epoch loss and validation accuracy
        "timings_s": timings,
        "fits": {k: v <= 0 for k, v in violations.items()},
        "fits_device": {n: r.fits for n, r in device_fit.items()},
        "device_fit": {n: r.to_dict() for n, r in device_fit.items()},
        "feasible": all(v <= 0 for v in violations.values()),
    }
    if verified is not None:
        attrs.update(verified=verified, estimated=estimated)
    return Evaluation(values, violations, attrs, model, result.teacher)


def _cost_attrs(costs: dict[str, Any], base_costs: dict[str, Any]) -> dict[str, Any]:
    return {
        "params": costs["params"],
        "nonzero_params": costs["nonzero_params"],
        "macs": costs["macs"],
        "flash_bytes": costs["flash_bytes"],
        "weight_bytes": costs["weight_bytes"],
        "sram_bytes": costs["sram_bytes"],
        "latency_ms": costs["latency_ms"],
        "fp32_params": base_costs["params"],
        "fp32_flash_bytes": base_costs["flash_bytes"],
        "fp32_latency_ms": base_costs["latency_ms"],
        "fp32_macs": base_costs["macs"],
        "flash_ratio_vs_fp32": costs["flash_bytes"] / max(1, base_costs["flash_bytes"]),
        "layer_bits": {layer.name: [layer.weight_precision, layer.act_precision] for layer in costs["layers"]},
    }


def evaluate_candidate(
    candidate: Candidate,
    task: TaskData,
    pipeline: PipelineConfig,
    table: LatencyTable,
    objectives: ObjectivesConfig,
    constraints: ConstraintsConfig,
    *,
    seed: int = 0,
    supported_weight_bits: Sequence[int] | None = None,
    initial_model: nn.Module | None = None,
    verify: DeviceProfile | None = None,
) -> Evaluation:
    """Train, compress and fine-tune ``candidate`` (`train_candidate`), then measure it (`measure_candidate`,
    built and run on the ``verify`` board when given)."""
    started = time.perf_counter()
    result = train_candidate(
        candidate,
        task,
        pipeline,
        seed=seed,
        supported_weight_bits=supported_weight_bits,
        initial_model=initial_model,
    )
    return measure_candidate(candidate, result, task, table, objectives, constraints, started=started, verify=verify)
