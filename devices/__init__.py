"""Devices: latency lookup tables measured with ONNX Runtime, Flash and SRAM estimators."""

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jointnas.spaces import layer_flash_bytes

from .blocks import BlockSpec, OpSpec, block_graph, group_blocks, overhead_spec
from .latency import (
    REPEATS,
    ROUNDS,
    Calibration,
    LatencyTable,
    device_fingerprint,
    fit_calibration,
    measure_block_ms,
    measure_onnx_ms,
    open_latency_model,
    ort_session,
    time_session,
)
from .mcu import (
    CycleModel,
    FitReport,
    fit_profiles,
    fit_report,
    mcu_cycles,
    mcu_latency_ms,
    peak_sram_bytes,
)
from .memory import estimate_flash_bytes, estimate_sram_bytes
from .metrics import prediction_metrics
from .profile import DeviceProfile, ToolchainSpec, is_profile_path, load_profile, mcu_profiles, profile_names
from .toolchain import Build, BuildError, Simulation, Sizes, build, sim_include_dir, simulate_avr, toolchain_of


class DeviceConfig(BaseModel):
    """The ``[device]`` section.

    ``name`` picks the device profile: a packaged one by name (``ort-cpu``: this machine through ONNX
    Runtime; ``rpi4``; ``arduino-uno``, ``stm32f746``, ``esp32``) or a profile file by path; ``threads`` fixes ONNX
    Runtime's intra-op threads; ``lut`` is the latency table file (default: next to the study config);
    ``warmup`` / ``repeats`` control each measurement. ``verify`` (microcontrollers with a simulator):
    build and run every trial's C library during the search and take the measured Flash, SRAM and
    latency as its values (`jointnas.objectives.board.verify_on_board`; seconds per trial).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("ort-cpu", min_length=1, max_length=1000)
    threads: int = Field(1, ge=1, le=256)
    lut: str | None = None
    warmup: int = Field(10, ge=0, le=10_000)
    repeats: int = Field(15, ge=3, le=100_000)
    verify: bool = False

    @field_validator("name")
    @classmethod
    def _known(cls, name: str) -> str:
        # Profile files are read when the study runs (their path may be relative to it).
        if not is_profile_path(name) and name not in profile_names():
            raise ValueError(f"unknown device {name!r}; choose one of {profile_names()} or a profile file path")
        return name


__all__ = [
    "BlockSpec",
    "Build",
    "BuildError",
    "Calibration",
    "CycleModel",
    "DeviceConfig",
    "DeviceProfile",
    "FitReport",
    "LatencyTable",
    "OpSpec",
    "REPEATS",
    "ROUNDS",
    "Simulation",
    "Sizes",
    "ToolchainSpec",
    "block_graph",
    "build",
    "device_fingerprint",
    "estimate_flash_bytes",
    "estimate_sram_bytes",
    "fit_calibration",
    "fit_profiles",
    "fit_report",
    "group_blocks",
    "is_profile_path",
    "layer_flash_bytes",
    "load_profile",
    "mcu_cycles",
    "mcu_latency_ms",
    "mcu_profiles",
    "measure_block_ms",
    "measure_onnx_ms",
    "open_latency_model",
    "ort_session",
    "overhead_spec",
    "peak_sram_bytes",
    "prediction_metrics",
    "profile_names",
    "sim_include_dir",
    "simulate_avr",
    "time_session",
    "toolchain_of",
]
