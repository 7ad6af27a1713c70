"""Compress-and-finetune pipeline: train, then the candidate's steps in the configured order."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator
from torch import Tensor, nn

from jointnas.spaces import Candidate, build_model

from .lowrank import factorize_low_rank
from .pruning import CRITERIA, prune_channels
from .quantization import fold_batchnorm, quantize_model
from .training import TrainConfig, accuracy, train

Step = Literal["prune", "lowrank", "quantize", "finetune"]
_COMPRESSION_ORDER = ("prune", "lowrank", "quantize")


class PipelineConfig(BaseModel):
    """The ``[pipeline]`` section: epochs, optimizer knobs and step order.

    ``steps`` run after the initial training; ``finetune`` trains the current (compressed) model for
    ``finetune_epochs`` (a QAT fine-tune once ``quantize`` has run). Compression steps appear at most
    once each and in the order prune → lowrank → quantize.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    train_epochs: int = Field(15, ge=0, le=10_000)
    finetune_epochs: int = Field(5, ge=0, le=10_000)
    steps: list[Step] = Field(
        default_factory=lambda: ["prune", "finetune", "lowrank", "finetune", "quantize", "finetune"]
    )
    lr: float = Field(1e-2, gt=0, le=10)
    finetune_lr: float = Field(3e-3, gt=0, le=10)
    batch_size: int = Field(64, ge=1, le=1_000_000)
    weight_decay: float = Field(1e-4, ge=0, le=1)
    prune_criterion: Literal[CRITERIA] = "l1"  # type: ignore[valid-type]
    kd_alpha: float = Field(0.0, ge=0, le=1)
    kd_temperature: float = Field(4.0, gt=0, le=100)

    @field_validator("steps")
    @classmethod
    def _order(cls, steps: list[str]) -> list[str]:
        seen = [s for s in steps if s in _COMPRESSION_ORDER]
        for name in _COMPRESSION_ORDER:
            if seen.count(name) > 1:
                raise ValueError(f"step {name!r} appears {seen.count(name)} times; list it once")
        if seen != sorted(seen, key=_COMPRESSION_ORDER.index):
            raise ValueError(f"compression steps {seen} must follow the order prune → lowrank → quantize")
        return steps


@dataclass
class StepReport:
    """What one pipeline step left behind (accuracy on the validation split)."""

    step: str
    val_accuracy: float
    params: int
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)


@dataclass
class PipelineResult:
    model: nn.Module
    teacher: nn.Module
    reports: list[StepReport]
    timings_s: dict[str, float]


def run_pipeline(
    candidate: Candidate,
    x_train: Tensor,
    y_train: Tensor,
    x_val: Tensor,
    y_val: Tensor,
    config: PipelineConfig,
    *,
    seed: int = 0,
    on_step: Callable[[str, nn.Module], dict[str, float]] | None = None,
    initial_model: nn.Module | None = None,
) -> PipelineResult:
    """Build → train → run ``config.steps`` → fold BatchNorm; report after every step.

    ``on_step(step, model)`` may add figures (e.g. Flash bytes) to each step's report.
    ``initial_model`` (e.g. a sub-network with weights inherited from a supernet) replaces the freshly
    built model; it must be ``build_model(candidate)``'s architecture.
    The validation split only measures; it never drives training.
    """
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    timings: dict[str, float] = {}
    reports: list[StepReport] = []
    base = TrainConfig(
        epochs=config.train_epochs,
        lr=config.lr,
        batch_size=config.batch_size,
        weight_decay=config.weight_decay,
    )
    finetune = TrainConfig(
        epochs=config.finetune_epochs,
        lr=config.finetune_lr,
        batch_size=config.batch_size,
        weight_decay=config.weight_decay,
        kd_alpha=config.kd_alpha,
        kd_temperature=config.kd_temperature,
    )

    def record(step: str, model: nn.Module, seconds: float) -> None:
        timings[f"{step}_s"] = timings.get(f"{step}_s", 0.0) + seconds
        extra = on_step(step, model) if on_step else {}
        reports.append(
            StepReport(step, accuracy(model, x_val, y_val), sum(p.numel() for p in model.parameters()), seconds, extra)
        )

    t0 = time.perf_counter()
    model = build_model(candidate) if initial_model is None else initial_model
    train(model, x_train, y_train, base, generator=gen)
    record("train", model, time.perf_counter() - t0)
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    for step in config.steps:
        t0 = time.perf_counter()
        if step == "prune":
            prune_channels(model, candidate, config.prune_criterion, gen)
        elif step == "lowrank":
            factorize_low_rank(model, candidate)
        elif step == "quantize":
            quantize_model(model, candidate, calibration=x_train[:512])
        elif step == "finetune":
            train(model, x_train, y_train, finetune, teacher=teacher, generator=gen)
        record(step, model, time.perf_counter() - t0)
    fold_batchnorm(model)  # deployment form: what is measured and exported
    return PipelineResult(model.eval(), teacher, reports, timings)
