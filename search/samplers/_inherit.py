"""Inherited-weight scoring, shared by the supernet samplers: a trial starts from the supernet's weights."""

from __future__ import annotations

from typing import Any

from torch import nn

from jointnas.spaces import Candidate
from jointnas.spaces.supernet import Supernet


def inherited_start(net: Supernet, candidate: Candidate, pipeline: Any, epochs: int) -> tuple[nn.Module, Any]:
    """``candidate``'s float model with ``net``'s weights (`Supernet.extract`), and ``pipeline`` with
    ``train_epochs = epochs``: a short fine-tune from the inherited weights replaces training from
    scratch; compression and its fine-tunes then run as usual."""
    model = net.extract(net.choice_of(candidate))
    return model, pipeline.model_copy(update={"train_epochs": epochs})


def compute_matched_epochs(epochs: int, cap: int, cost: float, max_cost: float) -> int:
    """Epochs that spend about the compute of ``epochs`` epochs of the costliest sub-network (``max_cost``)
    on one of cost ``cost`` (any unit proportional to a forward pass, e.g. LUT latency): a sub-network
    ``k`` times cheaper trains ``k`` times as many epochs, never fewer than ``epochs`` nor more than
    ``cap`` (the from-scratch budget, ``[pipeline] train_epochs``).

    >>> compute_matched_epochs(3, 20, cost=0.01, max_cost=0.08), compute_matched_epochs(3, 20, 0.001, 0.08)
    (20, 20)
    >>> compute_matched_epochs(3, 20, cost=0.04, max_cost=0.08), compute_matched_epochs(3, 20, 0.08, 0.08)
    (6, 3)
    >>> compute_matched_epochs(3, 2, cost=0.01, max_cost=0.08)  # a cap below epochs leaves epochs
    3
    """
    if cost <= 0:
        return max(epochs, cap)
    return max(epochs, min(cap, round(epochs * max_cost / cost)))
