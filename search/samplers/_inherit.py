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
