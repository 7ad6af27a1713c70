"""Unstructured pruning: by magnitude or at random, layer-wise or global, one-shot or gradual during fine-tuning.

Gradual pruning follows Zhu & Gupta (2017): the target sparsity rises from 0 to the final value over
the first ``end_fraction`` of the fine-tune's optimizer steps along a schedule, masks are recomputed
from weight magnitudes every few steps and re-applied after every step (so pruned weights stay zero),
and the remaining steps fine-tune with a fixed mask. `MagnitudePruner.fold` makes the zeros permanent.

Schedules of the sparsity ``s(t)`` at progress ``t`` in [0, 1] towards the final ``s_f``:

* ``linear``: ``s_f · t``
* ``exponential``: the density decays geometrically, ``1 − (1 − s_f)^t``
* ``cubic``: ``s_f · (1 − (1 − t)³)`` (prunes fast while the network is redundant, slowly at the end)

Scores (``criterion``): ``magnitude`` keeps the largest ``|w|``; ``random`` keeps the largest of fixed
uniform scores drawn once per pruner (a data-free baseline: masks only grow, pruned weights stay pruned).
``layers``: ``all`` prunes every conv and linear layer except the stem and the classifier; ``conv`` only
the convolutions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import Tensor, nn

from jointnas.spaces import UserInputError

from .training import TrainConfig, train

SCHEDULES = ("linear", "exponential", "cubic")
SPARSITY_SCOPES = ("layer", "global")
SPARSITY_CRITERIA = ("magnitude", "random")
SPARSITY_LAYERS = ("all", "conv")
Schedule = Literal["linear", "exponential", "cubic"]
SparsityScope = Literal["layer", "global"]
SparsityCriterion = Literal["magnitude", "random"]
SparsityLayers = Literal["all", "conv"]


def scheduled_sparsity(schedule: str, progress: float, final: float) -> float:
    """Target sparsity at ``progress`` in [0, 1] (clipped) of a ``schedule`` ending at ``final``."""
    t = min(1.0, max(0.0, progress))
    if schedule == "linear":
        return final * t
    if schedule == "exponential":
        return 1.0 - (1.0 - final) ** t
    if schedule == "cubic":
        return final * (1.0 - (1.0 - t) ** 3)
    raise UserInputError(f"unknown sparsity schedule {schedule!r}; choose one of {list(SCHEDULES)}")


def prunable_weights(
    model: nn.Module, exclude_head: bool = True, layers: SparsityLayers = "all"
) -> dict[str, nn.Module]:
    """Conv/linear layers whose weights unstructured pruning may zero, by module name.

    ``exclude_head`` leaves the stem and the classifier dense: they hold few weights and are the most
    sensitive layers (the same reason they keep ``head_bits``). ``layers="conv"`` keeps convolutions only.
    """
    _check_choice("sparsity layers", layers, SPARSITY_LAYERS)
    kinds = (nn.Conv1d, nn.Conv2d) if layers == "conv" else (nn.Conv1d, nn.Conv2d, nn.Linear)
    found = {}
    for name, module in model.named_modules():
        if not isinstance(module, kinds):
            continue
        if exclude_head and (name == "classifier" or name.startswith("stem.")):
            continue
        found[name] = module
    return found


def _check_choice(what: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise UserInputError(f"unknown {what} {value!r}; choose one of {list(choices)}")


def _masks(weights: dict[str, Tensor], sparsity: float, scope: str) -> dict[str, Tensor]:
    """Masks zeroing the ``sparsity`` share of lowest-score weights (per layer or globally); ``weights``
    holds non-negative scores (magnitudes, or random scores) of the weights' shape."""
    _check_choice("sparsity scope", scope, SPARSITY_SCOPES)
    if sparsity <= 0 or not weights:
        return {n: torch.ones_like(w, dtype=torch.bool) for n, w in weights.items()}
    if scope == "layer":
        masks = {}
        for name, w in weights.items():
            k = int(round(sparsity * w.numel()))
            masks[name] = _keep_largest(w.flatten(), w.numel() - k).view_as(w)
        return masks
    flat = torch.cat([w.flatten() for w in weights.values()])
    keep = _keep_largest(flat, flat.numel() - int(round(sparsity * flat.numel())))
    masks, start = {}, 0
    for name, w in weights.items():
        masks[name] = keep[start : start + w.numel()].view_as(w)
        start += w.numel()
    return masks


def _keep_largest(values: Tensor, keep: int) -> Tensor:
    """Boolean mask of the ``keep`` largest entries (ties broken by position, so counts are exact)."""
    mask = torch.zeros(values.numel(), dtype=torch.bool)
    if keep > 0:
        mask[values.topk(keep, sorted=False).indices] = True
    return mask


class MagnitudePruner:
    """Masks for unstructured pruning (magnitude or random scores), kept by layer name so they survive
    module swaps.

    Example:
        >>> from jointnas.spaces import Candidate, Stage, build_model
        >>> model = build_model(Candidate("mlp", (64,), 10, (Stage(32), Stage(32))))
        >>> pruner = MagnitudePruner(model, scope="layer")
        >>> pruner.update(model, 0.5)
        >>> round(pruner.layer_sparsity(model)["blocks.1.linear"], 2)
        0.5
    """

    def __init__(
        self,
        model: nn.Module,
        scope: SparsityScope = "global",
        exclude_head: bool = True,
        *,
        criterion: SparsityCriterion = "magnitude",
        layers: SparsityLayers = "all",
        generator: torch.Generator | None = None,
    ) -> None:
        _check_choice("sparsity scope", scope, SPARSITY_SCOPES)
        _check_choice("sparsity criterion", criterion, SPARSITY_CRITERIA)
        self.scope, self.criterion = scope, criterion
        self.names = list(prunable_weights(model, exclude_head, layers))
        self.masks: dict[str, Tensor] = {}
        self.sparsity = 0.0
        # Random scores are drawn once (in (0, 1]), so a higher sparsity prunes a superset.
        self.random_scores = {}
        if criterion == "random":
            for n in self.names:
                w = model.get_submodule(n).weight
                self.random_scores[n] = 1.0 - torch.rand(w.shape, generator=generator)

    @torch.no_grad()
    def update(self, model: nn.Module, sparsity: float) -> None:
        """Recompute masks at ``sparsity`` from the current scores, then apply them."""
        if self.criterion == "random":
            weights = dict(self.random_scores)
        else:
            weights = {n: model.get_submodule(n).weight.detach().abs() for n in self.names}
        if self.masks:  # pruned weights stay pruned: their score is zero, so they rank last
            weights = {n: w * self.masks[n] for n, w in weights.items()}
        self.masks = _masks(weights, sparsity, self.scope)
        self.sparsity = sparsity
        self.apply(model)

    @torch.no_grad()
    def apply(self, model: nn.Module) -> None:
        """Zero the masked weights of ``model`` (call after every optimizer step)."""
        for name, mask in self.masks.items():
            model.get_submodule(name).weight.mul_(mask)

    def layer_sparsity(self, model: nn.Module) -> dict[str, float]:
        """Share of zero weights per pruned layer."""
        return layer_sparsity(model, self.names)

    def fold(self, model: nn.Module) -> dict[str, float]:
        """Make the zeros permanent (masks applied one last time, then dropped); return per-layer sparsity."""
        self.apply(model)
        self.masks = {}
        return self.layer_sparsity(model)


def layer_sparsity(model: nn.Module, names: list[str] | None = None) -> dict[str, float]:
    """Share of exactly-zero weights of each conv/linear layer (all of them when ``names`` is None)."""
    names = list(prunable_weights(model, exclude_head=False)) if names is None else names
    out = {}
    for name in names:
        w = model.get_submodule(name).weight
        out[name] = 1.0 - int(torch.count_nonzero(w)) / w.numel()
    return out


def prune_magnitude(
    model: nn.Module,
    sparsity: float,
    scope: SparsityScope = "global",
    *,
    criterion: SparsityCriterion = "magnitude",
    layers: SparsityLayers = "all",
    generator: torch.Generator | None = None,
) -> dict[str, float]:
    """One-shot unstructured pruning to ``sparsity`` (in place); return the per-layer sparsity.

    ``criterion``, ``layers``: see the module doc (``generator`` draws the ``random`` scores).
    """
    check_sparsity(sparsity)
    pruner = MagnitudePruner(model, scope, criterion=criterion, layers=layers, generator=generator)
    pruner.update(model, sparsity)
    return pruner.fold(model)


def check_sparsity(sparsity: float) -> None:
    if not 0.0 <= sparsity < 1.0:
        raise UserInputError(f"sparsity {sparsity} is out of range; use a share of zero weights in [0, 1)")


@dataclass(frozen=True)
class SparsityConfig:
    """Gradual magnitude pruning knobs.

    Args:
        sparsity: final share of zero weights in the pruned layers, in [0, 1).
        schedule: ``linear``, ``exponential`` or ``cubic`` rise of the target sparsity.
        scope: ``layer`` (every layer at the same sparsity) or ``global`` (one score threshold).
        end_fraction: share of the fine-tune's steps after which the final sparsity is reached.
        updates: how many times the masks are recomputed on the way.
        criterion: ``magnitude`` or ``random`` scores (see the module doc).
        layers: ``all`` conv/linear layers (stem and classifier excepted) or ``conv`` only.
    """

    sparsity: float
    schedule: Schedule = "cubic"
    scope: SparsityScope = "global"
    end_fraction: float = 0.75
    updates: int = 20
    criterion: SparsityCriterion = "magnitude"
    layers: SparsityLayers = "all"

    def __post_init__(self) -> None:
        check_sparsity(self.sparsity)
        _check_choice("sparsity schedule", self.schedule, SCHEDULES)
        _check_choice("sparsity scope", self.scope, SPARSITY_SCOPES)
        _check_choice("sparsity criterion", self.criterion, SPARSITY_CRITERIA)
        _check_choice("sparsity layers", self.layers, SPARSITY_LAYERS)
        if not 0.0 < self.end_fraction <= 1.0 or self.updates < 1:
            raise UserInputError("end_fraction must be in (0, 1] and updates at least 1")


def gradual_prune(
    model: nn.Module,
    x: Tensor,
    y: Tensor,
    train_config: TrainConfig,
    config: SparsityConfig,
    *,
    teacher: nn.Module | None = None,
    generator: torch.Generator | None = None,
) -> MagnitudePruner:
    """Fine-tune ``model`` with `train` while its sparsity follows ``config``'s schedule.

    Returns the pruner with its final masks still set, so later fine-tunes can keep them
    (``on_step=lambda s, n: pruner.apply(model)``); call ``pruner.fold(model)`` at the end. With zero
    epochs the model is pruned one-shot to the final sparsity.
    """
    pruner = MagnitudePruner(model, config.scope, criterion=config.criterion, layers=config.layers, generator=generator)
    total = train_config.epochs * math.ceil(len(x) / train_config.batch_size)
    if total <= 0:
        pruner.update(model, config.sparsity)
        return pruner
    end = max(1, int(config.end_fraction * total))
    every = max(1, end // config.updates)

    def on_step(step: int, _total: int) -> None:
        if step <= end and (step % every == 0 or step == end):
            pruner.update(model, scheduled_sparsity(config.schedule, step / end, config.sparsity))
        else:
            pruner.apply(model)

    pruner.update(model, 0.0)
    train(model, x, y, train_config, teacher=teacher, generator=generator, on_step=on_step)
    if pruner.sparsity != config.sparsity:  # rounding of ``end``: land exactly on the target
        pruner.update(model, config.sparsity)
    return pruner


__all__ = [
    "SCHEDULES",
    "SPARSITY_CRITERIA",
    "SPARSITY_LAYERS",
    "SPARSITY_SCOPES",
    "MagnitudePruner",
    "SparsityConfig",
    "check_sparsity",
    "gradual_prune",
    "layer_sparsity",
    "prunable_weights",
    "prune_magnitude",
    "scheduled_sparsity",
]
