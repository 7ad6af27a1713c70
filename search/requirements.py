"""``[requirements]``: what a team requires of a deployed model against its uncompressed baseline.

All three are optional; an absent one is not checked. ``jointnas export`` checks them on what the
device runs (`judged_figures`): for a microcontroller the C library (accuracy of the deployable model it
computes, Flash bytes, the cycle model's latency); for an ONNX Runtime device the deployed ONNX file
(its accuracy and file bytes; its latency measured here when the device is this machine, else the
device's latency table). Each check names the figure it used (`RequirementCheck.basis`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jointnas.devices import DeviceProfile


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
    basis: str = ""
    """The figures compared (which artifact, which measurement), for reports."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "required": self.required,
            "measured": self.measured,
            "passed": self.passed,
            "basis": self.basis,
        }


_FIGURE = {"max_accuracy_drop": "accuracy", "min_speedup": "latency_ms", "min_size_reduction": "size_bytes"}


@dataclass(frozen=True)
class Judged:
    """What the requirements compare: the deployed artifact, its baseline, and per figure how it was measured."""

    artifact: str
    baseline_artifact: str
    model: dict[str, float]
    baseline: dict[str, float]
    basis: dict[str, str]
    """``accuracy``/``latency_ms``/``size_bytes`` → the measurement, in words."""


def judged_figures(profile: DeviceProfile, deployed_onnx: str, figures: dict[str, float]) -> Judged:
    """Pick the figures of what ``profile``'s device runs from every figure an export measured.

    ``figures`` holds ``accuracy_torch``, ``accuracy_onnx`` (of ``deployed_onnx``),
    ``baseline_accuracy_torch``, ``baseline_accuracy_onnx``, ``latency_predicted`` and
    ``baseline_latency_predicted`` (the device's latency model), ``latency_measured`` and
    ``baseline_latency_measured`` (ONNX Runtime on this machine), ``flash_bytes`` and
    ``baseline_flash_bytes``, ``onnx_bytes`` (of ``deployed_onnx``) and ``baseline_onnx_bytes``.

    Example:
        >>> from jointnas.devices import load_profile
        >>> figs = dict.fromkeys(["accuracy_torch", "accuracy_onnx", "baseline_accuracy_torch",
        ...     "baseline_accuracy_onnx", "latency_predicted", "baseline_latency_predicted", "latency_measured",
        ...     "baseline_latency_measured", "onnx_bytes", "baseline_onnx_bytes"], 1.0)
        >>> judged = judged_figures(load_profile("arduino-uno"), "model.int8.onnx",
        ...                         {**figs, "flash_bytes": 100, "baseline_flash_bytes": 400})
        >>> judged.artifact, judged.model["size_bytes"], judged.baseline["size_bytes"]
        ('c/ (C library)', 100, 400)
    """
    f = figures
    if profile.is_mcu:
        return Judged(
            "c/ (C library)",
            "uncompressed baseline (torch)",
            {"accuracy": f["accuracy_torch"], "latency_ms": f["latency_predicted"], "size_bytes": f["flash_bytes"]},
            {
                "accuracy": f["baseline_accuracy_torch"],
                "latency_ms": f["baseline_latency_predicted"],
                "size_bytes": f["baseline_flash_bytes"],
            },
            {
                "accuracy": "test accuracy of the deployable model the C library computes vs the baseline's",
                "latency_ms": f"cycle-model latency on {profile.name} vs the baseline's",
                "size_bytes": "Flash bytes (packed weights, scales, biases) vs the baseline's",
            },
        )
    here = profile.latency == "ort"  # an "ort" device is this machine: measure; an imported one: its table
    lat = "latency_measured" if here else "latency_predicted"
    lat_basis = (
        "ONNX Runtime latency measured on this machine"
        if here
        else f"latency table of {profile.name} (measured on the board)"
    )
    return Judged(
        deployed_onnx,
        "baseline.onnx",
        {"accuracy": f["accuracy_onnx"], "latency_ms": f[lat], "size_bytes": f["onnx_bytes"]},
        {
            "accuracy": f["baseline_accuracy_onnx"],
            "latency_ms": f[f"baseline_{lat}"],
            "size_bytes": f["baseline_onnx_bytes"],
        },
        {
            "accuracy": f"test accuracy of {deployed_onnx} vs baseline.onnx (raw inputs)",
            "latency_ms": f"{lat_basis}: {deployed_onnx} vs baseline.onnx",
            "size_bytes": f"file bytes of {deployed_onnx} vs baseline.onnx",
        },
    )


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
    requirements: RequirementsConfig | None,
    baseline: dict[str, float],
    model: dict[str, float],
    basis: dict[str, str] | None = None,
) -> list[RequirementCheck]:
    """Check every requirement that is set; an unset one is skipped.

    ``basis`` (``accuracy``/``latency_ms``/``size_bytes`` → words, `Judged.basis`) names each check's figures.
    """
    if requirements is None:
        return []
    figures = measured_figures(baseline, model)
    checks = []
    for name, bound in requirements.model_dump().items():
        if bound is None:
            continue
        value = figures[name]
        passed = value <= bound + 1e-12 if name.startswith("max_") else value >= bound - 1e-12
        how = (basis or {}).get(_FIGURE[name], "")
        checks.append(RequirementCheck(name, float(bound), float(value), bool(passed), how))
    return checks


__all__ = [
    "Judged",
    "RequirementCheck",
    "RequirementsConfig",
    "check_requirements",
    "judged_figures",
    "measured_figures",
]
