"""Tasks: a data set split into train / validation / test, plus its input shape and class count.

No data is downloaded at run time. Built in: ``digits`` (scikit-learn's embedded 8×8 images),
``mnist1d`` (generated from its published templates), ``cifar10`` (read from a folder the user gives),
``tinychat`` (next-character prediction from a ``query|response`` file), and custom tasks named
``"module:function"``.
"""

from __future__ import annotations

import importlib
import os
import re
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import Tensor

from jointnas.spaces import InputNormalization, UserInputError

from . import cifar10, mnist1d, tinychat

_CUSTOM = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


class TaskConfig(BaseModel):
    """The ``[task]`` section.

    ``dataset`` names a registered task or a custom one as ``"module:function"``; ``path`` is the data
    file or folder of tasks read from disk (``cifar10``, ``tinychat``; relative to the working
    directory). ``val_fraction`` / ``test_fraction`` split the data (stratified, seeded by
    ``split_seed``); tasks with a published test split (``mnist1d``, ``cifar10``) keep it and take the
    validation split from their training data. ``augment`` turns on the task's training augmentation
    (``cifar10``: random crop and flip). Accuracy for the search is measured on the validation split;
    test accuracy is only recorded.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    dataset: str = "digits"
    path: str | None = None
    val_fraction: float = Field(0.2, gt=0, lt=1)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    split_seed: int = Field(0, ge=0)
    augment: bool = True

    @model_validator(mode="after")
    def _splits(self) -> TaskConfig:
        if self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError(
                f"val_fraction + test_fraction = {self.val_fraction + self.test_fraction:g} leaves too "
                "little training data; keep the sum below 0.9"
            )
        if ":" in self.dataset:
            if not _CUSTOM.match(self.dataset):
                raise ValueError(f"custom dataset {self.dataset!r} must read 'module:function' (e.g. 'mytasks:load')")
        elif self.dataset not in _TASKS and self.dataset not in _LOADERS:
            raise ValueError(
                f"unknown dataset {self.dataset!r}; choose one of {dataset_names()} or give 'module:function'"
            )
        if self.dataset in _NEEDS_PATH and not self.path:
            raise ValueError(f'dataset {self.dataset!r} reads its data from disk; set [task] path = "..."')
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
    augment: Callable[[Tensor, torch.Generator | None], Tensor] | None = None
    """Per-batch training transform (``transform`` of `jointnas.compression.train`), or ``None``."""
    normalization: InputNormalization = InputNormalization()
    """How the splits were standardized from the raw samples (raw units): deployments apply it themselves."""
    encoder: dict[str, Any] | None = None
    """How raw text becomes the input features (tinychat), as plain data for deployments; ``None`` otherwise."""

    @property
    def input_signed(self) -> bool:
        """Whether the normalized training inputs take negative values (else the C library stores the
        input as unsigned codes, and the cost models price those kernels: `trace_layers(input_signed=)`)."""
        return bool((self.x_train < 0).any())

    @property
    def class_labels(self) -> list[str]:
        """One label per class: the encoder's symbols (spaces as ``_``, then ``<end>``), else the indices."""
        if self.encoder is not None:
            return [*self.encoder["alphabet"].replace(" ", "_"), "<end>"]
        return [str(i) for i in range(self.num_classes)]


_TASKS: dict[str, Callable[[], tuple[np.ndarray, np.ndarray, tuple[int, ...]]]] = {}
_LOADERS: dict[str, Callable[[TaskConfig], TaskData]] = {}
_NEEDS_PATH: set[str] = set()


def register_task(name: str):
    """Register ``fn() -> (x, y, input_shape)`` as a dataset of the whole data (split here)."""

    def wrap(fn):
        _TASKS[name] = fn
        return fn

    return wrap


def register_loader(name: str, *, needs_path: bool = False):
    """Register ``fn(config: TaskConfig) -> TaskData`` for a task that makes its own splits.

    ``needs_path``: the config must give ``[task] path`` (checked when the study file is validated).
    """

    def wrap(fn):
        _LOADERS[name] = fn
        if needs_path:
            _NEEDS_PATH.add(name)
        return fn

    return wrap


def dataset_names() -> list[str]:
    return sorted({*_TASKS, *_LOADERS})


@register_task("digits")
def _digits() -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    from sklearn.datasets import load_digits

    data = load_digits()
    x = data.data.astype(np.float32).reshape(-1, 1, 8, 8)  # raw pixel values 0-16
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


def _t(a: np.ndarray) -> Tensor:
    return torch.from_numpy(np.ascontiguousarray(a))


def _split_train(
    x: np.ndarray, y: np.ndarray, config: TaskConfig
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Stratified train/validation split of a published training set (its test split stays apart)."""
    tr, va, _ = _stratified_split(y, config.val_fraction, 0.0, config.split_seed)
    if len(va) == 0 or len(tr) == 0:
        raise UserInputError(
            f"{config.dataset}: val_fraction={config.val_fraction:g} of {len(y)} training samples leaves an empty "
            "split; raise val_fraction or give more data"
        )
    return x[tr], y[tr], x[va], y[va]


@register_loader("mnist1d")
def _load_mnist1d(config: TaskConfig) -> TaskData:
    data = mnist1d.make_mnist1d()
    x_tr, y_tr, x_va, y_va = _split_train(data.x_train[:, None, :], data.y_train, config)
    return TaskData(
        "mnist1d",
        (1, mnist1d.SERIES_LENGTH),
        10,
        _t(x_tr),
        _t(y_tr),
        _t(x_va),
        _t(y_va),
        _t(data.x_test[:, None, :]),
        _t(data.y_test),
    )


@register_loader("cifar10", needs_path=True)
def _load_cifar10(config: TaskConfig) -> TaskData:
    x, y, x_test, y_test = cifar10.read_cifar10(config.path)
    x_tr, y_tr, x_va, y_va = _split_train(x, y, config)
    return TaskData(
        "cifar10",
        (3, 32, 32),
        10,
        _t(cifar10.normalize(x_tr)),
        _t(y_tr),
        _t(cifar10.normalize(x_va)),
        _t(y_va),
        _t(cifar10.normalize(x_test)),
        _t(y_test),
        cifar10.random_crop_flip if config.augment else None,
        cifar10.NORMALIZATION,
    )


@register_loader("tinychat", needs_path=True)
def _load_tinychat(config: TaskConfig) -> TaskData:
    pairs = tinychat.read_pairs(config.path)
    # Split by pair, not by sample, so no reply is seen in training and scored in validation.
    order = np.random.default_rng(config.split_seed).permutation(len(pairs))
    n_test = max(1, int(round(config.test_fraction * len(pairs))))
    n_val = max(1, int(round(config.val_fraction * len(pairs))))
    parts = [order[n_test + n_val :], order[n_test : n_test + n_val], order[:n_test]]
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = (tinychat.encode_pairs([pairs[i] for i in p]) for p in parts)
    return TaskData(
        "tinychat",
        (tinychat.NUM_FEATURES,),
        tinychat.NUM_CLASSES,
        _t(x_tr),
        _t(y_tr),
        _t(x_va),
        _t(y_va),
        _t(x_te),
        _t(y_te),
        encoder=tinychat.ENCODER,
    )


CUSTOM_CONTRACT = (
    "(train, val, test, input_shape) or (train, val, test, input_shape, num_classes), each split a torch "
    "Dataset of (x, y) samples or an (x, y) pair of arrays/tensors"
)


def _raised(exc: BaseException) -> str:
    """``TypeName: first line`` of an exception a user's task code raised."""
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _import_task_module(spec: str, module_name: str) -> Any:
    """Import a custom task's module from ``sys.path`` or the working directory (docs/tasks.md)."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        # The `jointnas` console script puts its own folder on sys.path, not the working directory; last,
        # so installed packages win, and kept, so the module's own later imports of its neighbours work.
        sys.path.append(cwd)
    try:
        return importlib.import_module(module_name)
    except ImportError as exc:
        raise UserInputError(
            f"custom task {spec!r}: cannot import module {module_name!r} ({exc}); put it on PYTHONPATH "
            "or in the working directory"
        ) from None
    except Exception as exc:  # the user's module failed while importing: name it, no traceback
        raise UserInputError(
            f"custom task {spec!r}: importing module {module_name!r} raised {_raised(exc)}; fix the module"
        ) from None


def _custom_function(spec: str) -> Callable[..., Any]:
    module_name, func_name = spec.split(":")
    module = _import_task_module(spec, module_name)
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise UserInputError(f"custom task {spec!r}: module {module_name!r} has no function {func_name!r}")
    return fn


def _split_tensors(split: Any, which: str, spec: str) -> tuple[Tensor, Tensor]:
    """``(x, y)`` tensors of one custom split: an ``(x, y)`` pair or a map-style Dataset of samples."""
    try:
        if isinstance(split, torch.utils.data.TensorDataset) and len(split.tensors) == 2:
            x, y = split.tensors
        elif isinstance(split, tuple | list) and len(split) == 2:
            x, y = (torch.as_tensor(np.asarray(a)) if not isinstance(a, Tensor) else a for a in split)
        elif isinstance(split, torch.utils.data.Dataset) and hasattr(split, "__len__"):
            samples = [split[i] for i in range(len(split))]
            x = torch.stack([torch.as_tensor(s[0]) for s in samples])
            y = torch.as_tensor([int(s[1]) for s in samples])
        else:
            raise TypeError(f"got {type(split).__name__}")
        if x.ndim < 2 or y.ndim != 1 or len(x) != len(y) or len(x) == 0:
            raise TypeError(f"got x of shape {tuple(x.shape)} and y of shape {tuple(y.shape)}")
        return x.float().contiguous(), y.long().contiguous()
    except (TypeError, ValueError, IndexError, RuntimeError) as exc:
        raise UserInputError(
            f"custom task {spec!r}: the {which} split is not a data set ({exc}); expected a torch Dataset of "
            "(x, y) samples or an (x, y) pair with x of shape (n, *input_shape) and integer labels y of shape (n,)"
        ) from None


def _load_custom(config: TaskConfig) -> TaskData:
    spec = config.dataset
    fn = _custom_function(spec)
    try:
        result = fn(config)
    except UserInputError:
        raise
    except Exception as exc:  # anything the user's function raises: one line naming it, exit 2
        raise UserInputError(f"custom task {spec!r}: the function raised {_raised(exc)}; fix the function") from None
    if not isinstance(result, tuple | list) or len(result) not in (4, 5):
        raise UserInputError(f"custom task {spec!r} returned {type(result).__name__}; expected {CUSTOM_CONTRACT}")
    train, val, test, shape = result[:4]
    if not isinstance(shape, Sequence) or not shape or not all(isinstance(d, int) and d > 0 for d in shape):
        raise UserInputError(
            f"custom task {spec!r}: input_shape {shape!r} is not a tuple of positive ints; expected {CUSTOM_CONTRACT}"
        )
    shape = tuple(shape)
    splits = {name: _split_tensors(s, name, spec) for name, s in zip(("train", "val", "test"), result[:3], strict=True)}
    for name, (x, _) in splits.items():
        if tuple(x.shape[1:]) != shape:
            raise UserInputError(
                f"custom task {spec!r}: {name} inputs have shape {tuple(x.shape[1:])}, not input_shape {shape}"
            )
    top = max(int(y.max()) for _, y in splits.values()) + 1
    num_classes = int(result[4]) if len(result) == 5 else top
    if num_classes < top or min(int(y.min()) for _, y in splits.values()) < 0:
        raise UserInputError(f"custom task {spec!r}: labels must lie in [0, num_classes={num_classes})")
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = splits.values()
    return TaskData(spec, shape, num_classes, x_tr, y_tr, x_va, y_va, x_te, y_te)


def load_task(config: TaskConfig) -> TaskData:
    """Load and split the task's data.

    Whole-data tasks (``register_task``) are split here and standardized with training-split statistics;
    loaders (``register_loader``) and custom tasks bring their own splits and normalization. Raises
    `UserInputError` naming what was expected when data is missing or malformed.
    """
    if ":" in config.dataset:
        return _load_custom(config)
    if config.dataset in _LOADERS:
        return _LOADERS[config.dataset](config)
    try:
        loader = _TASKS[config.dataset]
    except KeyError:
        raise UserInputError(f"unknown dataset {config.dataset!r}; choose one of {dataset_names()}") from None
    x, y, shape = loader()
    tr, va, te = _stratified_split(y, config.val_fraction, config.test_fraction, config.split_seed)
    # NaN-aware statistics: a poisoned sample must fail its trial in training, not the whole task load
    mean, std = float(np.nanmean(x[tr])), float(np.nanstd(x[tr])) or 1.0
    x = (x - mean) / std
    return TaskData(
        config.dataset,
        shape,
        int(y.max()) + 1,
        _t(x[tr]),
        _t(y[tr]),
        _t(x[va]),
        _t(y[va]),
        _t(x[te]),
        _t(y[te]),
        normalization=InputNormalization((mean,), (std,)),
    )
