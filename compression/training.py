"""The one training loop: train, fine-tune, QAT and distillation all go through `train`."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jointnas.spaces import UserInputError

DEVICES = ("auto", "cpu", "cuda")
"""``[pipeline] device`` values: ``auto`` (CUDA when available, else the CPU), ``cpu``, ``cuda``."""


class TrainingDivergedError(RuntimeError):
    """The loss became NaN or infinite; the trial fails with this reason and the study goes on."""


@dataclass(frozen=True)
class TrainConfig:
    """Knobs of `train`.

    Args:
        epochs: passes over the training split (0 = no training).
        lr: peak learning rate of AdamW (cosine decay to 0).
        batch_size: samples per step.
        weight_decay: AdamW weight decay.
        kd_alpha: weight of the distillation term (0 = plain cross-entropy); needs a teacher.
        kd_temperature: softmax temperature of the distillation term.
        grad_clip: max gradient norm.
    """

    epochs: int = 10
    lr: float = 1e-2
    batch_size: int = 64
    weight_decay: float = 1e-4
    kd_alpha: float = 0.0
    kd_temperature: float = 4.0
    grad_clip: float = 5.0


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device of a ``[pipeline] device`` value (one of `DEVICES`).

    ``auto`` is CUDA when torch sees a CUDA device, else the CPU; ``cuda`` on a machine without one is
    refused (a one-line `UserInputError`, before anything is written).

    Example:
        >>> resolve_device("cpu")
        device(type='cpu')
    """
    if name not in DEVICES:
        raise UserInputError(f"[pipeline] device {name!r} is unknown; use one of {', '.join(DEVICES)}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise UserInputError(
            f'[pipeline] device = "cuda" but torch {torch.__version__} sees no CUDA device on this machine; '
            'set device = "auto" or "cpu"'
        )
    return torch.device(name)


def distillation_loss(student_logits: Tensor, teacher_logits: Tensor, temperature: float) -> Tensor:
    """Hinton et al. KD term: T² · KL(softmax(teacher/T) ‖ softmax(student/T))."""
    t = temperature
    return F.kl_div(
        F.log_softmax(student_logits / t, dim=1), F.softmax(teacher_logits / t, dim=1), reduction="batchmean"
    ) * (t * t)


def train(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    config: TrainConfig,
    *,
    teacher: nn.Module | None = None,
    generator: torch.Generator | None = None,
    on_step: Callable[[int, int], None] | None = None,
    transform: Callable[[Tensor, torch.Generator | None], Tensor] | None = None,
    on_epoch: Callable[[int, float], None] | None = None,
) -> float:
    """Train ``model`` in place on tensors ``x``/``y``; return the last epoch's mean loss.

    Runs where ``model`` and ``x``/``y`` are: the caller moves them to the device once (batches are
    index slices of the tensors there, never copied per batch).

    ``on_step(step, total_steps)`` runs after every optimizer step (``step`` counts from 1); gradual
    pruning uses it to update and re-apply its masks. ``transform(batch, generator)`` augments each
    input batch (e.g. random crop and flip); the teacher sees the same augmented batch. Raises
    `TrainingDivergedError` as soon as a loss is not finite. ``on_epoch(epoch, mean_loss)`` runs after
    every epoch (``epoch`` counts from 1) with the model in eval mode; training resumes in train mode.
    """
    if config.epochs <= 0 or len(x) == 0:
        return float("nan")
    opt = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    steps_per_epoch = math.ceil(len(x) / config.batch_size)
    total = config.epochs * steps_per_epoch
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * s / total)))
    use_kd = teacher is not None and config.kd_alpha > 0
    if use_kd:
        teacher.eval()
    model.train()
    epoch_loss = float("nan")
    step = 0
    for epoch in range(config.epochs):
        order = torch.randperm(len(x), generator=generator).to(x.device)
        running = 0.0
        for start in range(0, len(x), config.batch_size):
            idx = order[start : start + config.batch_size]
            xb, yb = x[idx], y[idx]
            if transform is not None:
                xb = transform(xb, generator)
            logits = model(xb)
            loss = F.cross_entropy(logits, yb)
            if use_kd:
                with torch.no_grad():
                    t_logits = teacher(xb)
                kd = distillation_loss(logits, t_logits, config.kd_temperature)
                loss = (1 - config.kd_alpha) * loss + config.kd_alpha * kd
            if not torch.isfinite(loss):
                raise TrainingDivergedError(f"loss became {loss.item()} (diverged); lower the learning rate")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            opt.step()
            sched.step()
            step += 1
            if on_step is not None:
                on_step(step, total)
            running += loss.item() * len(idx)
        epoch_loss = running / len(x)
        if on_epoch is not None:
            model.eval()
            on_epoch(epoch + 1, epoch_loss)
            model.train()
    model.eval()
    return epoch_loss


@torch.no_grad()
@torch.no_grad()
def mean_loss(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1024) -> float:
    """Mean cross-entropy of ``model`` on ``x``/``y`` in nats per sample (``exp`` of it: the perplexity).

    Example:
        >>> m = nn.Linear(2, 4)
        >>> _ = nn.init.zeros_(m.weight), nn.init.zeros_(m.bias)
        >>> round(math.exp(mean_loss(m, torch.ones(3, 2), torch.tensor([0, 1, 2]))), 6)  # uniform over 4
        4.0
    """
    if len(x) == 0:
        return float("nan")
    model.eval()
    total = 0.0
    for start in range(0, len(x), batch_size):
        logits = model(x[start : start + batch_size])
        total += float(F.cross_entropy(logits, y[start : start + batch_size], reduction="sum"))
    return total / len(x)


def accuracy(model: nn.Module, x: Tensor, y: Tensor, batch_size: int = 1024) -> float:
    """Top-1 accuracy of ``model`` on ``x``/``y`` in [0, 1]."""
    if len(x) == 0:
        return float("nan")
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        pred = model(x[start : start + batch_size]).argmax(dim=1)
        correct += int((pred == y[start : start + batch_size]).sum())
    return correct / len(x)
