"""A trial's model built and run on its board during the search (``[device] verify = true``).

`verify_on_board` generates the model's C library as export does (the task's normalization, a text
task's chat encoder, calibration from the training split), builds it with the board's compiler and runs
it in the board's simulator (`jointnas.devices.board.check_library`): the library's Flash (text + data of
its objects), its SRAM (static data + bss, the arena, plus the simulated stack peak), the cycles of one
inference (one generated character for a text model) and the fits verdict of the deployed sketch. The
measure step (`jointnas.objectives.measure_candidate`) then takes these as the trial's values in place
of the estimates, which it keeps beside them.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from torch import nn

from jointnas.compression import CLibrary, generate_c_library
from jointnas.devices import DeviceProfile
from jointnas.devices.board import CHAT_QUERIES, check_library, fit_violation, is_simulated
from jointnas.devices.toolchain import BuildError
from jointnas.spaces import UserInputError

from .tasks import TaskData

CALIBRATION_SAMPLES = 512
"""Training inputs that calibrate a deployment's activation ranges (the C library's integer grids,
the INT8 ONNX file's ranges)."""


def task_library(model: nn.Module, task: TaskData, out_dir: Path) -> CLibrary:
    """``model``'s C library in ``out_dir`` as it is deployed for ``task`` (export, verified trials,
    calibrations): the task's normalization, class labels and text encoder, integer grids from the first
    `CALIBRATION_SAMPLES` training inputs."""
    return generate_c_library(
        model,
        task.input_shape,
        out_dir,
        normalization=task.normalization,
        class_labels=task.class_labels,
        name="model",
        calibration=task.x_train[:CALIBRATION_SAMPLES],
        encoder=task.encoder,
    )


def check_verifiable(profile: DeviceProfile) -> None:
    """`UserInputError` (one line) unless ``profile`` is a board whose builds can be run here."""
    from jointnas.devices import toolchain_of

    toolchain_of(profile)  # names the packages of a missing compiler
    if not is_simulated(profile):
        raise UserInputError(
            f"[device] verify needs a microcontroller with a simulator; {profile.name!r} has none: "
            "set verify = false or use a device such as arduino-uno"
        )


def verify_on_board(model: nn.Module, task: TaskData, profile: DeviceProfile) -> dict[str, Any]:
    """What ``model``'s C library measures on ``profile`` (sizes in bytes, latency in ms); a library that
    does not link for the board gives ``{"fits": False, "failed": reason}``."""
    text = task.encoder is not None
    samples = None if text else np.zeros((1, *task.input_shape), dtype=np.float32)
    with tempfile.TemporaryDirectory(prefix="jointnas-verify-") as tmp:
        work = Path(tmp)
        task_library(model, task, work / "c")
        try:
            check = check_library(
                work / "c",
                profile,
                work / "build",
                samples=samples,
                queries=list(CHAT_QUERIES[:1]) if text else None,
                num_classes=task.num_classes,
            )
        except BuildError as exc:  # a library too large for the board does not link
            return {"device": profile.name, "fits": False, "violation": 1.0, "failed": str(exc)}
    return {
        "device": profile.name,
        "flash_bytes": check.library_flash_bytes,
        "sram_bytes": check.library_sram_bytes + (check.stack_peak_bytes or 0),
        "latency_ms": check.latency_ms,
        "stack_peak_bytes": check.stack_peak_bytes,
        "sketch_flash_bytes": check.sketch_flash_bytes,
        "sketch_sram_bytes": check.sketch_sram_bytes,
        "matches_host": check.matches_host,
        "fits": check.fits,
        "violation": _violation(profile, check),
    }


def _violation(profile: DeviceProfile, check: Any) -> float:
    """The deployed program's `fit_violation` (the sketch, else the measuring program)."""
    flash = check.sketch_flash_bytes or check.program_flash_bytes
    sram = check.sketch_sram_bytes or check.program_sram_bytes
    violation = fit_violation(profile, flash, sram, check.stack_peak_bytes)
    return 0.0 if violation is None else violation


__all__ = ["CALIBRATION_SAMPLES", "check_verifiable", "task_library", "verify_on_board"]
