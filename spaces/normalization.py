"""`InputNormalization`: how a task standardizes its raw samples, as plain numbers in the data's raw units.

The model is trained on ``x = (raw − mean) / std``; deployments (the generated C library, later the ONNX
graph) take the raw sample and apply the same arithmetic themselves.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class InputNormalization:
    """``x = (raw − mean) / std`` element-wise, with ``mean``/``std`` in raw units (float32 arithmetic).

    ``mean`` and ``std`` hold one value each (every feature), one per channel (``input_shape[0]``,
    channel-first layouts) or one per feature (``prod(input_shape)``, C order). The default is the
    identity (the task feeds its data unchanged).

    Example:
        >>> norm = InputNormalization((128.0,), (64.0,))
        >>> norm.apply(np.array([[0.0, 128.0, 256.0]]), (3,)).tolist()
        [[-2.0, 0.0, 2.0]]
    """

    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)

    def __post_init__(self) -> None:
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"mean {self.mean} and std {self.std} need the same, nonzero length")
        if any(not math.isfinite(s) or s == 0 for s in self.std) or not all(map(math.isfinite, self.mean)):
            raise ValueError(f"std {self.std} must be finite and nonzero, mean {self.mean} finite")

    @property
    def is_identity(self) -> bool:
        return all(m == 0.0 for m in self.mean) and all(s == 1.0 for s in self.std)

    def per_feature(self, input_shape: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
        """``mean`` and ``std`` broadcast to one float32 value per feature of ``input_shape`` (C order)."""
        numel = math.prod(input_shape)
        size = len(self.mean)
        if size == 1:
            repeat = numel
        elif size == input_shape[0] and len(input_shape) > 1:
            repeat = numel // size
        elif size == numel:
            repeat = 1
        else:
            raise ValueError(f"{size} normalization values fit neither one channel nor every feature of {input_shape}")
        mean = np.repeat(np.asarray(self.mean, dtype=np.float32), repeat)
        std = np.repeat(np.asarray(self.std, dtype=np.float32), repeat)
        return mean, std

    def apply(self, raw: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
        """Normalized float32 copy of a batch ``raw`` shaped ``(N, *input_shape)``."""
        mean, std = self.per_feature(input_shape)
        flat = np.asarray(raw, dtype=np.float32).reshape(len(raw), -1)
        return ((flat - mean) / std).reshape(np.shape(raw))

    def invert(self, x: np.ndarray, input_shape: tuple[int, ...]) -> np.ndarray:
        """Raw float32 values of a normalized batch (``raw = x · std + mean``)."""
        mean, std = self.per_feature(input_shape)
        flat = np.asarray(x, dtype=np.float32).reshape(len(x), -1)
        return (flat * std + mean).reshape(np.shape(x))

    def to_dict(self) -> dict[str, Any]:
        return {"mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> InputNormalization:
        return cls(tuple(float(v) for v in data["mean"]), tuple(float(v) for v in data["std"]))
