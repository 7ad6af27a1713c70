"""``[requirements]``: what a team requires of a deployed model against its uncompressed baseline.

All three are optional; an absent one is not checked. They are checked by ``jointnas export``
(which trains and measures the FP32 baseline of the chosen architecture) and by ``jointnas compare``
(on each trial's recorded figures).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class RequirementsConfig(BaseModel):
    """The ``[requirements]`` section.

    Args:
        max_accuracy_drop: largest allowed drop of test accuracy below the FP32 baseline, as a fraction
            (0.05 = 5 accuracy points).
        min_speedup: smallest allowed ratio baseline latency / model latency (1.4 = 40% faster).
        min_size_reduction: smallest allowed share by which the model file is smaller than the
            baseline's, 1 - size / baseline size (0.3 = 30% smaller).

    Example:
        >>> r = RequirementsConfig(max_accuracy_drop=0.05, min_speedup=1.4)
        >>> [c.name for c in check_requirements(r, {"accuracy": 0.97, "latency_ms": 1.0, "size_bytes": 100},
        ...                                      {"accuracy": 0.95, "latency_ms": 0.5, "size_bytes": 30})]
        ['max_accuracy_drop', 'min_speedup']
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    max_accuracy_drop: float | None = Field(None, ge=0)
    min_speedup: float | None = Field(None, gt=0, le=10_000)
    min_size_reduction: float | None = Field(None, ge=0, lt=1)

    @field_validator("max_accuracy_drop")
    @classmethod
    def _fraction(cls, value: float | None) -> float | None:
        if value is not None and value > 1:
            raise ValueError(f"{value:g} is not a fraction; write accuracy drops as fractions (0.05 = 5 points)")
        return value


@dataclass(frozen=True)
class RequirementCheck:
    """One requirement: its bound, the measured figure and whether it passed."""

    name: str
    required: float
    measured: float
    passed: bool

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "required": self.required, "measured": self.measured, "passed": self.passed}


def measured_figures(baseline: dict[str, float], model: dict[str, float]) -> dict[str, float]:
    """Accuracy drop (fraction), speedup (×) and size reduction (fraction) of ``model`` vs ``baseline``.

    Both dicts hold ``accuracy`` (in [0, 1]), ``latency_ms`` and ``size_bytes``.
    """
    return {
        "max_accuracy_drop": baseline["accuracy"] - model["accuracy"],
        "min_speedup": baseline["latency_ms"] / max(model["latency_ms"], 1e-12),
        "min_size_reduction": 1.0 - model["size_bytes"] / max(baseline["size_bytes"], 1e-12),
    }


def check_requirements(
    requirements: RequirementsConfig | None, baseline: dict[str, float], model: dict[str, float]
) -> list[RequirementCheck]:
    """Check every requirement that is set; an unset one is skipped."""
    if requirements is None:
        return []
    figures = measured_figures(baseline, model)
    checks = []
    for name, bound in requirements.model_dump().items():
        if bound is None:
            continue
        value = figures[name]
        passed = value <= bound + 1e-12 if name.startswith("max_") else value >= bound - 1e-12
        checks.append(RequirementCheck(name, float(bound), float(value), bool(passed)))
    return checks


__all__ = ["RequirementCheck", "RequirementsConfig", "check_requirements", "measured_figures"]
