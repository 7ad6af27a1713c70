"""MNIST-1D, generated locally: ten 1-D digit templates, randomly padded, scaled, shifted, noised, sheared.

A re-implementation of the published generator of

    Sam Greydanus and Dmitry Kobak, "Scaling down Deep Learning with MNIST-1D", ICML 2024
    (arXiv:2011.14439), reference code https://github.com/greydanus/mnist1d (``mnist1d/data.py``,
    ``mnist1d/transform.py``, MIT licence),

with its default arguments: 5000 samples (500 per class), seed 42, 80 % / 20 % train/test split
(the standard 4000 / 1000), 12-point templates padded with 36-60 zeros and resampled to 72 points,
scaled by up to ±20 %, circularly shifted by up to 48 points, correlated noise (σ 0.25, Gaussian
filter σ 2) where the signal is zero plus i.i.d. noise (σ 0.02), sheared by up to ±0.375 and
resampled to 40 points; the whole set is standardized. Random draws go through one
``numpy.random.RandomState(seed)`` in the reference's order, so the result does not depend on (or
disturb) NumPy's global generator. Nothing is downloaded.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np

NUM_SAMPLES = 5000
TRAIN_SPLIT = 0.8
TEMPLATE_LEN = 12
PADDING = (36, 60)
SCALE_COEFF = 0.4
MAX_TRANSLATION = 48
CORR_NOISE_SCALE = 0.25
IID_NOISE_SCALE = 2e-2
SHEAR_SCALE = 0.75
SERIES_LENGTH = 40
"""Points per generated series (the reference's ``final_seq_length``)."""
SEED = 42


@dataclass(frozen=True)
class MNIST1D:
    """The generated data set: ``x`` float32 ``(n, 40)``, ``y`` int64 labels 0-9."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def templates() -> np.ndarray:
    """The ten 12-point digit templates, shape ``(10, 12)``: standardized, starting at 0, scaled by 1/6."""
    digits = np.asarray(
        [
            [5, 6, 6.5, 6.75, 7, 7, 7, 7, 6.75, 6.5, 6, 5],
            [5, 3, 3, 3.4, 3.8, 4.2, 4.6, 5, 5.4, 5.8, 5, 5],
            [5, 6, 6.5, 6.5, 6, 5.25, 4.75, 4, 3.5, 3.5, 4, 5],
            [5, 6, 6.5, 6.5, 6, 5, 5, 6, 6.5, 6.5, 6, 5],
            [5, 4.4, 3.8, 3.2, 2.6, 2.6, 5, 5, 5, 5, 5, 5],
            [5, 3, 3, 3, 3, 5, 6, 6.5, 6.5, 6, 4.5, 5],
            [5, 4, 3.5, 3.25, 3, 3, 3, 3, 3.25, 3.5, 4, 5],
            [5, 7, 7, 6.6, 6.2, 5.8, 5.4, 5, 4.6, 4.2, 5, 5],
            [5, 4, 3.5, 3.5, 4, 5, 5, 4, 3.5, 3.5, 4, 5],
            [5, 4, 3.5, 3.5, 4, 5, 5, 5, 5, 4.7, 4.3, 5],
        ],
        dtype=np.float64,
    )
    digits -= digits.mean(1, keepdims=True)
    digits /= digits.std(1, keepdims=True)
    digits -= digits[:, :1]  # every signal starts and ends at 0
    return digits / 6.0


def _resample(x: np.ndarray, n: int) -> np.ndarray:
    """Linear interpolation of ``x`` onto ``n`` evenly spaced points of the same [0, 1] interval."""
    return np.interp(np.linspace(0, 1, n), np.linspace(0, 1, len(x)), x)


def transform(template: np.ndarray, rng: np.random.RandomState, eps: float = 1e-8) -> np.ndarray:
    """One random series from ``template`` (the reference ``transform``, draws in the same order)."""
    from scipy.ndimage import gaussian_filter1d

    low, high = PADDING
    pad = low + int(rng.rand() * (high - low + 1))
    x = np.concatenate([template + eps, np.zeros(pad)])  # eps keeps the signal apart from the padding
    x = _resample(x, TEMPLATE_LEN + high)  # dilate to 72 points
    x *= 1 + SCALE_COEFF * (rng.rand() - 0.5)  # scale
    k = rng.choice(MAX_TRANSLATION)  # circular shift by k points
    x = np.concatenate([x[-k:], x[:-k]])
    mask = x != 0
    corr_noise = gaussian_filter1d(CORR_NOISE_SCALE * rng.randn(*x.shape), 2)
    x = mask * x + (1 - mask) * corr_noise  # correlated noise where the signal is padding
    x = x + IID_NOISE_SCALE * rng.randn(*x.shape)
    x = x - SHEAR_SCALE * (rng.rand() - 0.5) * np.linspace(-0.5, 0.5, len(x))  # shear
    return _resample(x, SERIES_LENGTH)


@functools.lru_cache(maxsize=2)
def make_mnist1d(seed: int = SEED, num_samples: int = NUM_SAMPLES) -> MNIST1D:
    """Generate MNIST-1D (deterministic for a ``seed``; the defaults give the standard 4000/1000 set).

    Example:
        >>> data = make_mnist1d()
        >>> data.x_train.shape, data.x_test.shape
        ((4000, 40), (1000, 40))
    """
    rng = np.random.RandomState(seed)
    temps = templates()
    per_class = num_samples // len(temps)
    xs, ys = [], []
    for label, template in enumerate(temps):
        for _ in range(per_class):
            xs.append(transform(template, rng))
            ys.append(label)
    order = rng.permutation(len(ys))
    x = np.stack(xs)[order]
    y = np.asarray(ys, dtype=np.int64)[order]
    x = (x - x.mean()) / x.std()
    split = int(len(y) * TRAIN_SPLIT)
    x = x.astype(np.float32)
    return MNIST1D(x[:split], y[:split], x[split:], y[split:])
