"""DNAS training of a `jointnas.spaces.supernet.Supernet`: weights and architecture logits α, alternating.

Weights step on a training batch (cross-entropy of a Gumbel-softmax sample of the mixed network);
α step on a validation batch (never the test split) with the hardware-aware loss

    CE + Σ_penalty λ_penalty · E_α[cost] / scale

where E_α[cost] is the `CostModel` expectation under softmax(α) (differentiable in α). Several
λ settings ("anchors") are trained at once on one set of shared weights: anchor ``k`` owns its own α
and the steps cycle through the anchors, so one supernet training yields a whole trade-off front.
The Gumbel temperature anneals per epoch from ``tau_start`` to ``tau_end`` along ``schedule``
(`TAU_SCHEDULES`; see `temperature`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jointnas.spaces.supernet import CostModel, Supernet, gumbel_softmax

from .training import TrainingDivergedError

TAU_SCHEDULES = ("exponential", "cosine", "linear", "cubic")


@dataclass(frozen=True)
class DNASConfig:
    """Knobs of `train_dnas`.

    Args:
        epochs: passes over the training split.
        warmup_epochs: first epochs that train weights only (α stays at its initialisation).
        batch_size: samples per step (weights and α).
        lr: AdamW learning rate of the weights (cosine decay).
        weight_decay: AdamW weight decay of the weights.
        arch_lr: Adam learning rate of α.
        tau_start: Gumbel-softmax temperature of the first epoch.
        tau_end: temperature of the last epoch.
        schedule: the annealing from ``tau_start`` to ``tau_end`` (`TAU_SCHEDULES`, see `temperature`).
        grad_clip: max gradient norm (weights and α).
        init_bias: added to the initial logit of options, keyed ``"kind=value"`` (e.g. ``"wbits=8"``)
            or ``"name=value"`` (e.g. ``"s0_wbits=8"``); biases the search toward those options.
        weight_sampling: ``"path"`` trains the weights on one sub-network per step, drawn from softmax(α)
            (ProxylessNAS-style, about 3x cheaper); ``"mixed"`` on a Gumbel-softmax mixed network (FBNet).
        sram_softmax_temperature: smoothness of the soft max over layers of the SRAM penalty (bytes
            normalised by the scale).
    """

    epochs: int = 8
    warmup_epochs: int = 2
    batch_size: int = 64
    lr: float = 1e-2
    weight_decay: float = 1e-4
    arch_lr: float = 1e-1
    tau_start: float = 5.0
    tau_end: float = 0.5
    schedule: str = "exponential"
    grad_clip: float = 5.0
    init_bias: Mapping[str, float] = field(default_factory=lambda: {"wbits=8": 1.0, "abits=8": 1.0})
    weight_sampling: str = "path"
    sram_softmax_temperature: float = 0.05


@dataclass(frozen=True)
class Penalty:
    """A hardware cost: per-item ``costs`` of ``cost_model``'s items (default: the training's cost model),
    divided by ``scale``; ``reduce="max"`` takes a soft max over positions (peak SRAM) instead of the sum."""

    name: str
    costs: Tensor
    scale: float
    reduce: str = "sum"
    cost_model: CostModel | None = None


@dataclass
class DNASResult:
    """Per-anchor α, the history and the training time (the supernet is trained in place)."""

    logits: list[dict[str, Tensor]]
    alpha_entropy: list[float]
    anchor_entropy: list[list[float]]
    val_loss: list[float]
    train_s: float


def temperature(epoch: int, config: DNASConfig) -> float:
    """Gumbel-softmax temperature of ``epoch``: ``tau_start`` at the first epoch, ``tau_end`` at the last.

    With progress ``t = epoch / (epochs - 1)`` and ``a, b = tau_start, tau_end``, ``config.schedule`` is

    * ``exponential``: ``a · (b / a)^t`` (a constant ratio per epoch)
    * ``cosine``: ``b + (a − b) · (1 + cos πt) / 2`` (slow at both ends)
    * ``linear``: ``a + (b − a) · t``
    * ``cubic``: ``a + (b − a) · (1 − (1 − t)³)`` (cools fast first, slowly at the end)

    Example:
        >>> cfg = DNASConfig(epochs=3, tau_start=4.0, tau_end=1.0, schedule="linear")
        >>> [temperature(e, cfg) for e in range(3)]
        [4.0, 2.5, 1.0]
    """
    a, b = config.tau_start, config.tau_end
    t = min(1.0, epoch / max(1, config.epochs - 1))
    if config.schedule == "exponential":
        return a * (b / a) ** t
    if config.schedule == "cosine":
        return b + (a - b) * 0.5 * (1.0 + math.cos(math.pi * t))
    if config.schedule == "linear":
        return a + (b - a) * t
    if config.schedule == "cubic":
        return a + (b - a) * (1.0 - (1.0 - t) ** 3)
    raise ValueError(f"schedule must be one of {list(TAU_SCHEDULES)}, got {config.schedule!r}")


def init_logits(net: Supernet, bias: Mapping[str, float]) -> dict[str, Tensor]:
    """α of every searchable decision: zeros plus ``bias`` (see `DNASConfig.init_bias`)."""
    out = {}
    for d in net.decisions:
        if not d.searchable:
            continue
        logit = torch.zeros(len(d.options))
        for i, value in enumerate(d.options):
            logit[i] += bias.get(f"{d.kind}={value}", 0.0) + bias.get(f"{d.name}={value}", 0.0)
        out[d.name] = logit
    return out


def entropy(logits: Mapping[str, Tensor]) -> float:
    """Mean entropy (nats) of softmax(α) over decisions."""
    values = [float(-(F.softmax(v, 0) * F.log_softmax(v, 0)).sum().detach()) for v in logits.values()]
    return sum(values) / max(1, len(values))


def expected_penalty(
    cost_model: CostModel,
    penalties: Sequence[Penalty],
    lambdas: Mapping[str, float],
    probs: Mapping[str, Tensor],
    sram_temperature: float = 0.05,
) -> Tensor:
    """Σ λ · E[cost] / scale over ``penalties`` (a soft max over layer positions for ``reduce="max"``)."""
    total = torch.zeros(())
    for pen in penalties:
        lam = float(lambdas.get(pen.name, 0.0))
        if lam == 0.0:
            continue
        model = pen.cost_model or cost_model
        if pen.reduce == "max":
            slots = model.per_slot(pen.costs, probs) / pen.scale
            value = sram_temperature * torch.logsumexp(slots / sram_temperature, 0)
        else:
            value = model.expected(pen.costs, probs) / pen.scale
        total = total + lam * value
    return total


class _ValStream:
    """Validation batches for the α steps: a fresh permutation (from ``gen``) each time one is used up."""

    def __init__(self, n: int, batch_size: int, gen: torch.Generator) -> None:
        self.n, self.batch_size, self.gen = n, batch_size, gen
        self.order = torch.randperm(n, generator=gen)
        self.pos = 0

    def next(self) -> Tensor:
        if self.pos >= self.n:
            self.order, self.pos = torch.randperm(self.n, generator=self.gen), 0
        idx = self.order[self.pos : self.pos + self.batch_size]
        self.pos += self.batch_size
        return idx


def _weight_loss(
    net: Supernet,
    logits: Mapping[str, Tensor],
    x: Tensor,
    y: Tensor,
    config: DNASConfig,
    tau: float,
    gen: torch.Generator,
) -> Tensor:
    """The weight step's loss on one batch: one sampled path (``path``) or Gumbel-mixed paths (``mixed``)."""
    if config.weight_sampling == "path":
        choice = {
            n: net.decision(n).options[int(torch.multinomial(F.softmax(v.detach(), 0), 1, generator=gen))]
            for n, v in logits.items()
        }
        out = net(x, choice)
    else:
        probs = {n: gumbel_softmax(v.detach(), tau, gen) for n, v in logits.items()}
        out = net(x, weights=probs)
    loss = F.cross_entropy(out, y)
    if not torch.isfinite(loss):
        raise TrainingDivergedError(f"supernet loss became {loss.item()}; lower the learning rate")
    return loss


def train_dnas(
    net: Supernet,
    x_train: Tensor,
    y_train: Tensor,
    x_val: Tensor,
    y_val: Tensor,
    cost_model: CostModel,
    penalties: Sequence[Penalty],
    anchors: Sequence[Mapping[str, float]],
    config: DNASConfig,
    *,
    seed: int = 0,
    device: torch.device | str = "cpu",
) -> DNASResult:
    """Train ``net``'s weights and one α per anchor (λ per penalty name), alternating; see the module doc.

    Deterministic for a given ``seed`` (its own generator; the global RNG is untouched). ``device``:
    where the weights train (net and splits move there once; α and the cost model stay on the CPU, their
    scalars combine with device tensors); ``net`` is back on the CPU on return.
    """
    if config.weight_sampling not in ("path", "mixed"):
        raise ValueError(f"weight_sampling must be 'path' or 'mixed', got {config.weight_sampling!r}")
    temperature(0, config)  # an unknown schedule fails before any training
    started = time.perf_counter()
    net.to(device)
    x_train, y_train, x_val, y_val = (t.to(device) for t in (x_train, y_train, x_val, y_val))
    gen = torch.Generator().manual_seed(seed)
    logits = [{k: nn.Parameter(v.clone()) for k, v in init_logits(net, config.init_bias).items()} for _ in anchors]
    weights = [p for p in net.parameters()]
    opt_w = torch.optim.AdamW(weights, lr=config.lr, weight_decay=config.weight_decay)
    opt_a = [torch.optim.Adam(list(lg.values()), lr=config.arch_lr, betas=(0.5, 0.999)) for lg in logits]
    steps_per_epoch = math.ceil(len(x_train) / config.batch_size)
    total = max(1, config.epochs * steps_per_epoch)
    sched = torch.optim.lr_scheduler.LambdaLR(opt_w, lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))
    history: list[float] = []
    per_anchor: list[list[float]] = []
    val_losses: list[float] = []
    step = 0
    val = _ValStream(len(x_val), config.batch_size, gen)
    net.train()
    for epoch in range(config.epochs):
        tau = temperature(epoch, config)
        order = torch.randperm(len(x_train), generator=gen)
        running, n_val = 0.0, 0
        for start in range(0, len(x_train), config.batch_size):
            k = step % len(anchors)
            idx = order[start : start + config.batch_size]
            loss = _weight_loss(net, logits[k], x_train[idx], y_train[idx], config, tau, gen)
            opt_w.zero_grad(set_to_none=True)
            loss.backward()
            nn.utils.clip_grad_norm_(weights, config.grad_clip)
            opt_w.step()
            sched.step()
            if epoch >= config.warmup_epochs and len(x_val):
                vidx = val.next()
                probs = {n: gumbel_softmax(v, tau, gen) for n, v in logits[k].items()}
                ce = F.cross_entropy(net(x_val[vidx], weights=probs), y_val[vidx])
                soft = {n: F.softmax(v, 0) for n, v in logits[k].items()}
                loss_a = ce + expected_penalty(cost_model, penalties, anchors[k], soft, config.sram_softmax_temperature)
                opt_a[k].zero_grad(set_to_none=True)
                opt_w.zero_grad(set_to_none=True)  # α's loss must not move the weights
                loss_a.backward()
                nn.utils.clip_grad_norm_(list(logits[k].values()), config.grad_clip)
                opt_a[k].step()
                running += float(ce.detach()) * len(vidx)
                n_val += len(vidx)
            step += 1
        ent = [entropy(lg) for lg in logits]
        per_anchor.append(ent)
        history.append(sum(ent) / len(ent))
        val_losses.append(running / n_val if n_val else float("nan"))
    net.eval().cpu()
    return DNASResult(
        logits=[{n: v.detach().clone() for n, v in lg.items()} for lg in logits],
        alpha_entropy=history,
        anchor_entropy=per_anchor,
        val_loss=val_losses,
        train_s=time.perf_counter() - started,
    )
