"""Microcontroller cost models fitted in the simulator: `jointnas lut build` / `lut validate` on a board.

A microcontroller's objectives come from the profile's models over traced layers
(`jointnas.devices.mcu`): cycles (`cycle_terms` priced by the ``cycle_table``), Flash
(`library_flash_bytes`: weights + ``code_bytes``) and SRAM (`library_sram_bytes`: arena + ``stack_bytes``).
Their coefficients are hand-set guesses until `calibrate_cycles` fits them: it draws random candidates
of a study's space, builds each one's model as the pipeline compresses it (pruned, factorized,
quantized; untrained weights suffice), generates its C library as export does (the task's
normalization; a text task's chat encoder), builds it with the board's compiler and runs it in the
simulator (simavr for AVR; QEMU instruction counts for Cortex-M, `jointnas.devices.qemu`) twice: once
with a region per kernel call (`jointnas.devices.board.layer_markers`:
the cycles of every layer and of what surrounds them: input normalization, a text model's encoder,
scores) and once as deployed (`jointnas.devices.board.check_library`: library and sketch sizes, stack peak,
cycles of one inference, one generated character for text models). Cycles per term are the
non-negative least-squares fit of the per-call cycles (relative error), code bytes per term the exact
fit of the library's text + data less its weight bytes; the stack peak and the program around the
library (the Arduino core and the sketch: ``runtime_*``) are the largest measured. The result is written
as a profile file (the packaged profile with these fields and a ``calibration`` record) that a study
names in ``[device] name``. `validate_cycles` builds and runs other random models as deployed and
reports, for cycles, Spearman ρ, Kendall τ and the shares within ±5% / ±10% / ±20%, and the errors
of the Flash and SRAM estimates.
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
from jointnas.devices.board import CHAT_QUERIES, check_library, is_simulated, layer_markers, run_library
from jointnas.devices.mcu import (
    code_terms,
    cycle_terms,
    layer_cycle_terms,
    library_flash_bytes,
    library_sram_bytes,
    mcu_cycles,
    model_cycle_terms,
)
from jointnas.devices.toolchain import BuildError
from jointnas.spaces import Candidate, UserInputError, trace_layers

from .lut import random_candidates

if TYPE_CHECKING:
    from jointnas.objectives import TaskData

    from ..config import StudyConfig

CALIBRATION_SEED = 0
"""Seed of the random candidates a calibration measures (validation uses another)."""


def _simulated_profile(device: str | Path) -> DeviceProfile:
    profile = load_profile(device)
    if not is_simulated(profile):
        raise UserInputError(
            f"device {profile.name!r} has no cycle model with a simulator ([toolchain] simulator = "
            '"simavr" or "qemu"); calibrate a cycles device such as arduino-uno or stm32f746'
        )
    return profile


def _library(candidate: Candidate, config: StudyConfig, task: TaskData, work: Path) -> tuple[Any, Any]:
    """``candidate``'s model compressed as the pipeline does (untrained) and its C library as export writes it."""
    import torch

    from jointnas.compression import run_pipeline
    from jointnas.objectives.board import task_library

    torch.manual_seed(0)
    x, y = task.x_train[:256], task.y_train[:256]  # the task's inputs: their range sets the input codes
    untrained = config.pipeline.model_copy(update={"train_epochs": 0, "finetune_epochs": 0})
    model = run_pipeline(candidate, x, y, x[:16], y[:16], untrained, seed=0).model
    return model, task_library(model, task, work / "c")


def _split(regions: tuple[int, ...], n_layers: int) -> tuple[list[int], float] | None:
    """Per-call regions → (the first inference's layer cycles, the cycles around the layers per inference);
    ``None`` when the calls are not one per traced layer (extra add/pool calls: the model is fitted whole)."""
    if len(regions) < n_layers + 2 or (len(regions) - 1) % (n_layers + 1):
        return None
    inferences = (len(regions) - 1) // (n_layers + 1)
    layer_total = sum(sum(regions[1 + i * (n_layers + 1) : (i + 1) * (n_layers + 1)]) for i in range(inferences))
    return list(regions[1 : 1 + n_layers]), (sum(regions) - layer_total) / inferences


def measure_cycles(
    candidate: Candidate, config: StudyConfig, profile: DeviceProfile, task: TaskData, work: Path, *, per_layer: bool
) -> dict[str, Any]:
    """What ``candidate``'s library measures on ``profile``: cycles of one inference (per generated
    character for a text task), library Flash, arena + stack, the program around it; with ``per_layer``
    also the cycles of each kernel call. Each figure beside the terms that predict it."""
    model, lib = _library(candidate, config, task, work)
    layers = trace_layers(model, candidate.input_shape, input_signed=task.input_signed)
    samples = None if lib.has_reply else np.zeros((1, *candidate.input_shape), dtype=np.float32)
    queries = list(CHAT_QUERIES[:1]) if lib.has_reply else None
    kw = {"samples": samples, "queries": queries, "num_classes": candidate.num_classes}
    check = check_library(work / "c", profile, work / "build", **kw)
    row = {
        "layers": layers,
        "cycles": check.cycles,
        "flash_bytes": check.library_flash_bytes,
        "weight_bytes": lib.weight_bytes,
        "sram_bytes": check.library_sram_bytes + check.stack_peak_bytes,
        "stack_peak_bytes": check.stack_peak_bytes,
        "runtime_flash_bytes": (check.sketch_flash_bytes or check.program_flash_bytes) - check.library_flash_bytes,
        "runtime_sram_bytes": (check.sketch_sram_bytes or check.program_sram_bytes) - check.library_sram_bytes,
    }
    if per_layer:
        traced = run_library(work / "c", profile, work / "traced", defines=layer_markers(profile), **kw)
        row["split"] = _split(traced.simulation.region_cycles, len(layers))
    return row


def _measure_all(
    config: StudyConfig,
    profile: DeviceProfile,
    n: int,
    seed: int,
    progress: Callable[[int, int], None] | None,
    per_layer: bool = False,
) -> list[dict[str, Any]]:
    from jointnas.objectives import load_task

    task = load_task(config.task)
    rows = []
    with tempfile.TemporaryDirectory(prefix="jointnas-cycles-") as tmp:
        for i, candidate in enumerate(random_candidates(config, n, seed)):
            # a model that does not fit the board fails to link: nothing to time
            with contextlib.suppress(BuildError):
                rows.append(measure_cycles(candidate, config, profile, task, Path(tmp) / f"m{i}", per_layer=per_layer))
            if progress is not None:
                progress(i + 1, n)
    if len(rows) < 2:
        raise UserInputError(
            f"only {len(rows)} of {n} random models of the space link for {profile.name}; "
            "calibrate with a space whose models fit the board"
        )
    return rows


def fit_coefficients(rows: list[dict[str, Any]], *, relative: bool = True) -> dict[str, float]:
    """Non-negative coefficients per term (``rows``: ``{"terms": {...}, "cycles": c}``) that minimise the
    relative (or, with ``relative=False``, absolute) error of the predicted totals."""
    from scipy.optimize import nnls

    keys = sorted({k for r in rows for k, v in r["terms"].items() if v})
    scale = [r["cycles"] if relative else 1.0 for r in rows]
    a = np.array([[r["terms"].get(k, 0.0) / w for k in keys] for r, w in zip(rows, scale, strict=True)])
    b = np.array([r["cycles"] / w for r, w in zip(rows, scale, strict=True)])
    coef, _ = nnls(a, b)
    return dict(zip(keys, (float(c) for c in coef), strict=True))


def _cycle_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The fit's rows: each kernel call and what surrounds the calls (or, unsplit, each whole model)."""
    out = []
    for r in rows:
        if r.get("split") is None:
            out.append({"terms": cycle_terms(r["layers"]), "cycles": r["cycles"]})
            continue
        per_layer, around = r["split"]
        out += [{"terms": t, "cycles": c} for t, c in zip(layer_cycle_terms(r["layers"]), per_layer, strict=True)]
        out.append({"terms": model_cycle_terms(r["layers"]), "cycles": around})
    return out


def fitted_profile(profile: DeviceProfile, rows: list[dict[str, Any]]) -> DeviceProfile:
    """``profile`` with cycles, code bytes, stack and the program around the library fitted on ``rows``."""
    code_rows = [{"terms": code_terms(r["layers"]), "cycles": r["flash_bytes"] - r["weight_bytes"]} for r in rows]
    code = fit_coefficients(code_rows, relative=False)
    kernels = [v for k, v in code.items() if k.startswith("kernel:") and v > 0]
    code["kernel"] = float(np.median(kernels)) if kernels else 0.0  # a kernel class the calibration never built
    update = {
        "cycle_table": fit_coefficients(_cycle_rows(rows)),
        "code_bytes": code,
        "stack_bytes": max(r["stack_peak_bytes"] for r in rows),
        "runtime_flash_bytes": max(r["runtime_flash_bytes"] for r in rows),
        "runtime_sram_bytes": max(r["runtime_sram_bytes"] for r in rows),
    }
    return profile.model_copy(update=update)


def _shares(rel: np.ndarray) -> dict[str, float]:
    return {f"within_{p}pct": float((np.abs(rel) <= p / 100).mean()) for p in (2, 3, 5, 10, 20)}


def _metrics(rows: list[dict[str, Any]], profile: DeviceProfile) -> dict[str, Any]:
    """How well ``profile``'s models predict ``rows``: cycles (ρ, τ, shares), Flash and SRAM (shares, max error)."""
    predicted = np.array([mcu_cycles(r["layers"], profile) for r in rows])
    measured = np.array([r["cycles"] for r in rows])
    within_5 = float((np.abs(predicted / measured - 1) <= 0.05).mean())
    memory = {}
    for name, estimate in (("flash", library_flash_bytes), ("sram", library_sram_bytes)):
        est = np.array([estimate(r["layers"], profile) for r in rows], dtype=float)
        real = np.array([r[f"{name}_bytes"] for r in rows], dtype=float)
        rel = est / real - 1
        memory[name] = {**_shares(rel), "max_abs_rel_error": float(np.abs(rel).max()), "median_bytes": np.median(real)}
    return {**prediction_metrics(predicted, measured), "within_5pct": within_5, **memory}


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
    rows = _measure_all(config, profile, n_models, seed, progress, per_layer=True)
    before = _metrics(rows, profile)
    fitted = fitted_profile(profile, rows)
    fit = _metrics(rows, fitted)
    calibration = {
        "simulator": profile.toolchain.simulator,
        "compiler": profile.toolchain.cc,
        "cflags": list(profile.toolchain.cflags),
        "n_models": n_models,
        "n_linked": len(rows),
        "n_split": sum(r.get("split") is not None for r in rows),
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
