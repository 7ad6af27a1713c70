"""Compress-and-finetune pipeline: train, then the candidate's steps in the configured order."""

from __future__ import annotations

import copy
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from torch import Tensor, nn

from jointnas.spaces import Candidate, build_model, layer_flash_bytes, trace_layers
from jointnas.spaces.quant import WEIGHT_QUANTIZERS

from .export import deployable_model
from .lowrank import RANK_MODES, factorize_low_rank
from .plan import validate_plan
from .pruning import CRITERIA, SCOPES, prune_channels
from .quantization import quantize_model
from .sparsity import (
    SCHEDULES,
    SPARSITY_CRITERIA,
    SPARSITY_LAYERS,
    SPARSITY_SCOPES,
    MagnitudePruner,
    SparsityConfig,
    gradual_prune,
)
from .training import DEVICES, TrainConfig, accuracy, resolve_device, train

Step = Literal["prune", "lowrank", "sparsify", "quantize", "finetune"]
_COMPRESSION_ORDER = ("prune", "lowrank", "sparsify", "quantize")


class PipelineConfig(BaseModel):
    """The ``[pipeline]`` section: epochs, optimizer knobs and step order.

    ``steps`` run after the initial training; ``finetune`` trains the current (compressed) model for
    ``finetune_epochs`` (a QAT fine-tune once ``quantize`` has run); ``sparsify`` is a fine-tune of
    ``finetune_epochs`` during which unstructured pruning (``sparsity_criterion``: by magnitude or at
    random; ``sparsity_layers``: all conv/linear layers or convolutions only) rises to ``sparsity`` along
    ``sparsity_schedule`` (its masks then hold through every later fine-tune). Compression steps appear
    at most once each and in the order prune → lowrank → sparsify → quantize. Every fine-tune
    distils from the trained uncompressed model when ``kd_alpha`` > 0.
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
    # "hidden": only the inverted-residual hidden widths (block widths stay; what Stage.prune_ratio
    # documents and what latency tables enumerate); "all": also the residual-tied block outputs, with
    # the stem and the classifier inputs following.
    prune_scope: Literal[SCOPES] = "hidden"  # type: ignore[valid-type]
    kd_alpha: float = Field(0.0, ge=0, le=1)
    kd_temperature: float = Field(4.0, gt=0, le=100)
    # "ratio": a stage's rank_ratio is the share of full rank kept; "energy": the share of Σ s² kept.
    rank_mode: Literal[RANK_MODES] = "ratio"  # type: ignore[valid-type]
    # Weight fake-quantizer of the quantize step: "maxabs", "dorefa" or "lsq" (learned step).
    weight_quantizer: Literal[WEIGHT_QUANTIZERS] = "maxabs"  # type: ignore[valid-type]
    sparsity: float = Field(0.0, ge=0, lt=1)
    sparsity_schedule: Literal[SCHEDULES] = "cubic"  # type: ignore[valid-type]
    sparsity_scope: Literal[SPARSITY_SCOPES] = "global"  # type: ignore[valid-type]
    sparsity_criterion: Literal[SPARSITY_CRITERIA] = "magnitude"  # type: ignore[valid-type]
    sparsity_layers: Literal[SPARSITY_LAYERS] = "all"  # type: ignore[valid-type]
    # Where trials train: "auto" (CUDA when available, else the CPU), "cpu" or "cuda" (refused where
    # there is none). Not part of the study's definition (config hash): workers on CPU and GPU machines
    # may share a study.
    device: Literal[DEVICES] = "auto"  # type: ignore[valid-type]

    def sparsity_config(self) -> SparsityConfig:
        """The ``sparsify`` step's schedule (`gradual_prune`) from the ``sparsity*`` keys."""
        return SparsityConfig(
            self.sparsity,
            self.sparsity_schedule,
            self.sparsity_scope,
            criterion=self.sparsity_criterion,
            layers=self.sparsity_layers,
        )

    @field_validator("steps")
    @classmethod
    def _order(cls, steps: list[str]) -> list[str]:
        seen = [s for s in steps if s in _COMPRESSION_ORDER]
        for name in _COMPRESSION_ORDER:
            if seen.count(name) > 1:
                raise ValueError(f"step {name!r} appears {seen.count(name)} times; list it once")
        if seen != sorted(seen, key=_COMPRESSION_ORDER.index):
            raise ValueError(
                f"compression steps {seen} must follow the order prune → lowrank → quantize "
                "(sparsify, if used, between lowrank and quantize)"
            )
        return steps

    @model_validator(mode="after")
    def _sparsity_step(self) -> PipelineConfig:
        if ("sparsify" in self.steps) != (self.sparsity > 0):
            raise ValueError(
                "the 'sparsify' step and sparsity > 0 go together; set both (e.g. sparsity = 0.5 and "
                "'sparsify' in steps) or neither"
            )
        return self


@dataclass
class StepReport:
    """What one pipeline step left behind, measured on the model's deployment form.

    ``val_accuracy`` on the validation split; ``params`` = conv/linear weights + biases (BatchNorm
    folded); ``macs`` per sample; ``flash_bytes`` = the weight bytes of the generated C library
    (`generate_c_library`, equal to `jointnas.devices.estimate_flash_bytes`); ``seconds`` the step's wall time.
    """

    step: str
    val_accuracy: float
    params: int
    seconds: float
    extra: dict[str, float] = field(default_factory=dict)
    macs: int = 0
    flash_bytes: int = 0

    def as_dict(self) -> dict[str, float | int | str]:
        """Flat JSON-ready record (trial user attr ``steps``); ``extra`` figures are merged in."""
        base = {
            "step": self.step,
            "val_accuracy": self.val_accuracy,
            "params": self.params,
            "macs": self.macs,
            "flash_bytes": self.flash_bytes,
            "seconds": self.seconds,
        }
        return {**self.extra, **base}


@dataclass
class PipelineResult:
    """The deployable model, its teacher, one report per step, timings and per-layer sparsity."""

    model: nn.Module
    teacher: nn.Module
    reports: list[StepReport]
    timings_s: dict[str, float]
    layer_sparsity: dict[str, float] = field(default_factory=dict)
    curves: list[dict[str, Any]] = field(default_factory=list)
    """Per training run (``train`` and every ``finetune``/``sparsify``): its step name and per-epoch
    mean training ``loss`` and ``val_accuracy``."""


def deployed_costs(model: nn.Module, input_shape: tuple[int, ...], *, input_signed: bool = True) -> dict[str, Any]:
    """The size of ``model``'s deployment form (`deployable_model`): params (weights + biases), nonzero
    params, MACs per sample, Flash bytes (`layer_flash_bytes`) and the traced ``layers``."""
    layers = trace_layers(deployable_model(model), input_shape, input_signed=input_signed)
    return {
        "params": sum(layer.weight_numel + layer.bias_numel for layer in layers),
        "nonzero_params": sum(layer.weight_nonzero + layer.bias_numel for layer in layers),
        "macs": sum(layer.macs for layer in layers),
        "flash_bytes": sum(layer_flash_bytes(layer) for layer in layers),
        "layers": layers,
    }


class _Curves:
    """Per-epoch mean training loss and validation accuracy of each training run of one pipeline."""

    def __init__(self, model: nn.Module, x_val: Tensor, y_val: Tensor) -> None:
        self.model, self.x_val, self.y_val = model, x_val, y_val
        self.runs: list[dict[str, Any]] = []

    def __call__(self, step: str) -> Callable[[int, float], None]:
        """The ``on_epoch`` hook of one training run named ``step``."""
        run: dict[str, Any] = {"step": step, "loss": [], "val_accuracy": []}
        self.runs.append(run)

        def on_epoch(_epoch: int, loss: float) -> None:
            run["loss"].append(loss)
            run["val_accuracy"].append(accuracy(self.model, self.x_val, self.y_val))

        return on_epoch


def _train_configs(config: PipelineConfig) -> tuple[TrainConfig, TrainConfig]:
    """The initial training's and every fine-tune's `TrainConfig`."""
    base = TrainConfig(
        epochs=config.train_epochs, lr=config.lr, batch_size=config.batch_size, weight_decay=config.weight_decay
    )
    finetune = TrainConfig(
        epochs=config.finetune_epochs,
        lr=config.finetune_lr,
        batch_size=config.batch_size,
        weight_decay=config.weight_decay,
        kd_alpha=config.kd_alpha,
        kd_temperature=config.kd_temperature,
    )
    return base, finetune


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
    supported_weight_bits: Sequence[int] | None = None,
    initial_model: nn.Module | None = None,
    augment: Callable[[Tensor, torch.Generator | None], Tensor] | None = None,
) -> PipelineResult:
    """Validate the plan → build → train → run ``config.steps`` → deployment form; report every step.

    The plan is checked first (`validate_plan`, with the device's ``supported_weight_bits`` when
    given), so a bad plan fails before any training. ``on_step(step, model)`` may add figures to each
    step's report (``extra``). The validation split only measures; it never drives training.
    ``initial_model`` (e.g. a sub-network with weights inherited from a supernet) replaces the freshly
    built model; it must be ``build_model(candidate)``'s architecture. ``augment`` is the task's
    per-batch training transform (`train`'s ``transform``).

    Training and evaluation run on ``config.device`` (`resolve_device`): the model and the four splits
    move there once; module surgery (pruning, factorisation, quantization) runs on the CPU, and the
    returned model and teacher are on the CPU (export, latency tables and the C library read them).
    """
    validate_plan(candidate, supported_weight_bits, quantized="quantize" in config.steps)  # before any training
    device = resolve_device(config.device)
    x_train, y_train, x_val, y_val = (t.to(device) for t in (x_train, y_train, x_val, y_val))
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    timings: dict[str, float] = {}
    reports: list[StepReport] = []
    base, finetune = _train_configs(config)

    def record(step: str, model: nn.Module, seconds: float) -> None:
        timings[f"{step}_s"] = timings.get(f"{step}_s", 0.0) + seconds
        extra = on_step(step, model) if on_step else {}
        costs = deployed_costs(model, candidate.input_shape)
        acc = accuracy(model, x_val, y_val)
        reports.append(StepReport(step, acc, costs["params"], seconds, extra, costs["macs"], costs["flash_bytes"]))

    t0 = time.perf_counter()
    model = (build_model(candidate) if initial_model is None else initial_model).to(device)
    curve = _Curves(model, x_val, y_val)
    train(model, x_train, y_train, base, generator=gen, transform=augment, on_epoch=curve("train"))
    record("train", model, time.perf_counter() - t0)
    teacher = copy.deepcopy(model).eval()
    for p in teacher.parameters():
        p.requires_grad_(False)

    pruner: MagnitudePruner | None = None
    for step in config.steps:
        t0 = time.perf_counter()
        if step == "prune":
            prune_channels(model.cpu(), candidate, config.prune_criterion, gen, scope=config.prune_scope)
        elif step == "lowrank":
            factorize_low_rank(model.cpu(), candidate, config.rank_mode)
        elif step == "sparsify":
            sparsity = config.sparsity_config()
            pruner = gradual_prune(model, x_train, y_train, finetune, sparsity, teacher=teacher, generator=gen)
        elif step == "quantize":
            calibration = x_train[:512].cpu()
            quantize_model(model.cpu(), candidate, calibration=calibration, weight_quantizer=config.weight_quantizer)
        elif step == "finetune":
            keep_masks = None if pruner is None else (lambda _s, _n, p=pruner: p.apply(model))
            train(
                model,
                x_train,
                y_train,
                finetune,
                teacher=teacher,
                generator=gen,
                on_step=keep_masks,
                transform=augment,
                on_epoch=curve("finetune"),
            )
        model.to(device)  # surgery on the CPU made new modules there
        record(step, model, time.perf_counter() - t0)
    layer_sparsity = pruner.fold(model) if pruner is not None else {}  # its masks are on the device
    model.cpu()
    # Deployment form (BN folded, quantized weights baked with their integer codes): what is measured,
    # exported to ONNX and generated as the C library.
    return PipelineResult(deployable_model(model), teacher.cpu(), reports, timings, layer_sparsity, curve.runs)
