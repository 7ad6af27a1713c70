"""Tasks: a data set split into train / validation / test, plus its input shape and class count.

Embedded data only by default (no download at run time): scikit-learn's ``digits`` (8x8 images).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor

from jointnas.spaces import UserInputError


class TaskConfig(BaseModel):
    """The ``[task]`` section.

    ``dataset`` names a registered task; ``val_fraction`` / ``test_fraction`` split it (stratified,
    seeded by ``split_seed``). Accuracy for the search is measured on the validation split; test
    accuracy is only recorded.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = "digits"
    val_fraction: float = Field(0.2, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int = Field(0, ge=0)

    @model_validator(mode="after")
    def _splits(self) -> TaskConfig:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                f"val_fraction + test_fraction = {self.val_fraction + self.test_fraction:g} leaves too "
                "little training data; keep the sum below 0.9"
            )
        if self.dataset not in _TASKS:
            raise ValueError(f"unknown dataset {self.dataset!r}; choose one of {sorted(_TASKS)}")
        return self


@dataclass(frozen=True)
class TaskData:
    """Tensors of the three splits (``x_*`` float32, ``y_*`` int64) and the model's input shape."""

    name: str
    input_shape: tuple[int, ...]
    num_classes: int
    x_train: Tensor
    y_train: Tensor
    x_val: Tensor
    y_val: Tensor
    x_test: Tensor
    y_test: Tensor


_TASKS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray, tuple[int, ...]]]] = {}


def register_task(name: str):
    """Register ``fn() -> (x, y, input_shape)`` as a dataset of the whole data (split here)."""

    def wrap(fn):
        _TASKS[name] = fn
        return fn

    return wrap


@register_task("digits")
def _digits() -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = (data.data.astype(np.float32) / 16.0).reshape(-1, 1, 8, 8)
    return x, data.target.astype(np.int64), (1, 8, 8)


def _stratified_split(y: np.ndarray, val: float, test: float, seed: int) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    train_idx, val_idx, test_idx = [], [], []
    for cls in np.unique(y):
        idx = rng.permutation(np.flatnonzero(y == cls))
        n_test = int(round(test * len(idx)))
        n_val = int(round(val * len(idx)))
        test_idx.append(idx[:n_test])
        val_idx.append(idx[n_test : n_test + n_val])
        train_idx.append(idx[n_test + n_val :])
    return tuple(np.sort(np.concatenate(parts)) for parts in (train_idx, val_idx, test_idx))


def load_task(config: TaskConfig) -> TaskData:
    """Load and split the task's data; inputs are standardized with training-split statistics."""
    try:
        loader = _TASKS[config.dataset]
    except KeyError:
        raise UserInputError(f"unknown dataset {config.dataset!r}; choose one of {sorted(_TASKS)}") from None
    x, y, shape = loader()
    tr, va, te = _stratified_split(y, config.val_fraction, config.test_fraction, config.split_seed)
    mean, std = float(x[tr].mean()), float(x[tr].std()) or 1.0
    x = (x - mean) / std

    def t(a: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(a))

    return TaskData(
        config.dataset,
        shape,
        int(y.max()) + 1,
        t(x[tr]),
        t(y[tr]),
        t(x[va]),
        t(y[va]),
        t(x[te]),
        t(y[te]),
    )
