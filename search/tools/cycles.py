"""Cycle models fitted in the simulator: `jointnas lut build` / `lut validate` for microcontroller devices.

A microcontroller's latency objective is the profile's cycle model (`jointnas.devices.mcu.mcu_cycles`:
`cycle_terms` weighted by `cycle_coefficients`). Its coefficients are hand-set guesses until they are
fitted here: `calibrate_cycles` draws random candidates of a study's space, builds each one's model
as the pipeline compresses it (pruned, factorized, quantized; untrained weights suffice for timing),
generates its C library, builds that with the board's compiler and counts the cycles of one
``jointnas_predict`` in the simulator (`search.tools.mcu.check_library`). The coefficients are the
non-negative least-squares fit of those cycles on the models' terms, weighted by relative error, and
are written as a profile file (the packaged profile with the fitted coefficients and a ``calibration``
record: toolchain, simulator, models, fit figures) that a study names in ``[device] name``.
`validate_cycles` measures other random models the same way and reports Spearman ρ, Kendall τ and the
shares within ±5% / ±10% / ±20% of the simulator.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from jointnas.devices import DeviceProfile, load_profile, prediction_metrics
from jointnas.devices.mcu import cycle_terms, cycles_of_terms
from jointnas.devices.toolchain import BuildError
from jointnas.spaces import Candidate, UserInputError, trace_layers

from .lut import random_candidates
from .mcu import check_library

if TYPE_CHECKING:
    from ..config import StudyConfig

CALIBRATION_SEED = 0
"""Seed of the random candidates a calibration measures (validation uses another)."""


def _simulated_profile(device: str | Path) -> DeviceProfile:
    profile = load_profile(device)
    if not profile.is_mcu or profile.toolchain is None or profile.toolchain.simulator != "simavr":
        raise UserInputError(
            f'device {profile.name!r} has no cycle model with a simulator ([toolchain] simulator = "simavr"); '
            "calibrate a cycles device such as arduino-uno"
        )
    return profile


def measure_cycles(candidate: Candidate, config: StudyConfig, profile: DeviceProfile, work: Path) -> dict[str, Any]:
    """Simulated cycles of one ``jointnas_predict`` of ``candidate``'s compressed model, with its terms."""
    import torch

    from jointnas.compression import generate_c_library, run_pipeline

    torch.manual_seed(0)
    shape = candidate.input_shape
    x = torch.randn(64, *shape)
    y = torch.randint(0, candidate.num_classes, (64,))
    untrained = config.pipeline.model_copy(update={"train_epochs": 0, "finetune_epochs": 0})
    model = run_pipeline(candidate, x, y, x[:16], y[:16], untrained, seed=0).model
    generate_c_library(model, shape, work / "c", calibration=x)
    zero = np.zeros((1, *shape), dtype=np.float32)
    check = check_library(work / "c", profile, work / "build", samples=zero, num_classes=candidate.num_classes)
    terms = cycle_terms(trace_layers(model, shape), profile=profile)
    return {"cycles": check.cycles, "terms": terms, "library_flash_bytes": check.library_flash_bytes}


def _measure_all(
    config: StudyConfig, profile: DeviceProfile, n: int, seed: int, progress: Callable[[int, int], None] | None
) -> list[dict[str, Any]]:
    rows = []
    with tempfile.TemporaryDirectory(prefix="jointnas-cycles-") as tmp:
        for i, candidate in enumerate(random_candidates(config, n, seed)):
            # a model that does not fit the board fails to link: nothing to time
            with contextlib.suppress(BuildError):
                rows.append(measure_cycles(candidate, config, profile, Path(tmp) / f"m{i}"))
            if progress is not None:
                progress(i + 1, n)
    if len(rows) < 2:
        raise UserInputError(
            f"only {len(rows)} of {n} random models of the space link for {profile.name}; "
            "calibrate with a space whose models fit the board"
        )
    return rows


def fit_coefficients(rows: list[dict[str, Any]]) -> dict[str, float]:
    """Non-negative coefficients per term that minimise the relative error of the predicted cycles."""
    from scipy.optimize import nnls

    keys = sorted({k for r in rows for k, v in r["terms"].items() if v})
    a = np.array([[r["terms"].get(k, 0.0) / r["cycles"] for k in keys] for r in rows])
    coef, _ = nnls(a, np.ones(len(rows)))
    return dict(zip(keys, (float(c) for c in coef), strict=True))


def _with_coefficients(profile: DeviceProfile, coef: dict[str, float], calibration: dict[str, Any]) -> DeviceProfile:
    macs = dict(profile.cycles_per_mac)
    macs.update({int(k.split(":")[1]): v for k, v in coef.items() if k.startswith("mac:")})
    fields = {"weight_byte": "cycles_per_weight_byte", "act_byte": "cycles_per_act_byte", "layer": "cycles_per_layer"}
    fields.update(input="cycles_per_input", inference="cycles_per_inference")
    update = {field: coef.get(term, 0.0) for term, field in fields.items()}
    return profile.model_copy(update={**update, "cycles_per_mac": macs, "calibration": calibration})


def _metrics(rows: list[dict[str, Any]], profile: DeviceProfile) -> dict[str, Any]:
    predicted = np.array([cycles_of_terms(r["terms"], profile) for r in rows])
    measured = np.array([r["cycles"] for r in rows])
    rel = np.abs(predicted - measured) / measured
    return {**prediction_metrics(predicted, measured), "within_5pct": float((rel <= 0.05).mean())}


def calibrate_cycles(
    config: StudyConfig,
    device: str | Path,
    out: Path,
    *,
    n_models: int = 40,
    seed: int = CALIBRATION_SEED,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Fit ``device``'s cycle coefficients on ``n_models`` simulated models of ``config``'s space; write
    the calibrated profile to ``out`` (JSON, loadable by `load_profile`). Returns the summary."""
    profile = _simulated_profile(device)
    if n_models < 4:
        raise UserInputError(f"--n-calibration {n_models} is too few; measure at least 4 models")
    rows = _measure_all(config, profile, n_models, seed, progress)
    before = _metrics(rows, profile)
    fitted = _with_coefficients(profile, fit_coefficients(rows), {})
    fit = _metrics(rows, fitted)
    calibration = {
        "simulator": profile.toolchain.simulator,
        "compiler": profile.toolchain.cc,
        "cflags": list(profile.toolchain.cflags),
        "n_models": n_models,
        "n_linked": len(rows),
        "seed": seed,
        "space_of": config.study.name,
        "fit": fit,
    }
    fitted = fitted.model_copy(update={"calibration": calibration, "name": f"{profile.name}-calibrated"})
    out.write_text(json.dumps(json.loads(fitted.model_dump_json()), indent=2) + "\n")
    return {
        "device": profile.name,
        "profile": str(out),
        "before": before,
        "fit": fit,
        "n_models": n_models,
        "n_linked": len(rows),
    }


def validate_cycles(
    config: StudyConfig,
    device: str | Path,
    *,
    n_models: int = 100,
    seed: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> dict[str, Any]:
    """Predicted vs simulated cycles of ``n_models`` random models of ``config``'s space on ``device``."""
    profile = _simulated_profile(device)
    rows = _measure_all(config, profile, n_models, seed, progress)
    cycles = [r["cycles"] for r in rows]
    return {
        "device": profile.name,
        "calibrated": profile.calibration is not None,
        "n_models": n_models,
        "n_linked": len(rows),
        "simulated_cycles": {"min": min(cycles), "median": float(np.median(cycles)), "max": max(cycles)},
        "metrics": _metrics(rows, profile),
    }


__all__ = ["calibrate_cycles", "fit_coefficients", "measure_cycles", "validate_cycles"]
