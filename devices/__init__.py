"""Devices: latency lookup tables measured with ONNX Runtime, Flash and SRAM estimators."""

from pydantic import BaseModel, ConfigDict, Field

from .latency import LatencyTable, device_fingerprint, layer_key, measure_layer_ms, ort_session, time_session
from .memory import estimate_flash_bytes, estimate_sram_bytes, layer_flash_bytes


class DeviceConfig(BaseModel):
    """The ``[device]`` section.

    ``name`` picks the device (``ort-cpu``: this machine through ONNX Runtime); ``threads`` fixes ONNX
    Runtime's intra-op threads; ``lut`` is the latency table file (default: next to the study config);
    ``warmup`` / ``repeats`` control each measurement.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("ort-cpu", pattern=r"^ort-cpu$")
    threads: int = Field(1, ge=1, le=256)
    lut: str | None = None
    warmup: int = Field(10, ge=0, le=10_000)
    repeats: int = Field(15, ge=3, le=100_000)


__all__ = [
    "DeviceConfig",
    "LatencyTable",
    "device_fingerprint",
    "estimate_flash_bytes",
    "estimate_sram_bytes",
    "layer_flash_bytes",
    "layer_key",
    "measure_layer_ms",
    "ort_session",
    "time_session",
]
