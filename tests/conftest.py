"""Shared fixtures: tiny study configs that run a trial in about a second."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import torch

torch.set_num_threads(1)

TINY_CONFIG = """
[study]
name = "tiny"
seed = 0

[task]
dataset = "digits"

[space]
family = "cnn"
stages = [8, 16]
strides = [1, 2]
depth = [1, 1]
width_mult = [0.5, 1.0]
kernel = [3]
expansion = [2, 4]
stem_channels = [8]

[space.compression]
prune_ratio = [0.0, 0.5]
prune_step = 0.25
rank_ratio = [0.5, 1.0]
rank_step = 0.5
weight_bits = [4, 8, 32]
act_bits = [8, 32]

[pipeline]
train_epochs = 2
finetune_epochs = 1

[device]
repeats = 3
warmup = 1

[sampler]
name = "random"

[budget]
n_trials = 2
"""


@pytest.fixture
def tiny_config(tmp_path: Path) -> Path:
    """A study file in a fresh folder; its default SQLite storage lands next to it."""
    path = tmp_path / "tiny.toml"
    path.write_text(textwrap.dedent(TINY_CONFIG))
    return path


def write_config(tmp_path: Path, text: str, name: str = "study.toml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path
