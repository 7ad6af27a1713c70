"""Microcontroller models: cycles → latency, MCUNet-style peak SRAM, Flash with runtime, fit verdicts.

* Cycles of a layer = MACs × cycles-per-MAC at its bit-width + weight bytes × cycles per weight byte
  + activation bytes read and written × cycles per activation byte + a fixed per-layer cost, plus per
  inference a cost per input element and a fixed cost; latency is cycles / clock. Coefficients come
  from the `DeviceProfile` (hand-set, or fitted in the simulator by `jointnas lut build`).
* Peak SRAM follows MCUNet (Lin et al., 2020): the maximum over layers of the activation bytes live
  while the layer runs (its input, its output and a residual input the block still needs). A depthwise
  conv runs in place (MCUNetV2/TinyEngine): it needs its larger tensor plus one channel's buffer.
  Activations are stored in byte containers (int8 for ≤ 8 bits, int16, float32).
* Flash = packed weights (`estimate_flash_bytes`) + the profile's runtime overhead.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from jointnas.spaces import LayerInfo, layer_flash_bytes

from .memory import estimate_flash_bytes
from .profile import DeviceProfile, load_profile, mcu_profiles


def act_container_bytes(bits: int) -> int:
    """Bytes one activation occupies in SRAM at ``bits`` (sub-byte values live in int8 containers)."""
    return 1 if bits <= 8 else 2 if bits <= 16 else 4


def _input_bits(layers: Sequence[LayerInfo], input_bits: int | None) -> int:
    if input_bits is not None:
        return input_bits
    return 8 if any(layer.act_bits < 32 for layer in layers) else 32


def layer_sram_bytes(layers: Sequence[LayerInfo], input_bits: int | None = None, in_place: bool = True) -> list[int]:
    """Live activation bytes while each layer runs (input + output + live residual input)."""
    prev = _input_bits(layers, input_bits)
    out: list[int] = []
    for layer in layers:
        in_b = layer.in_numel * act_container_bytes(prev)
        out_b = layer.out_numel * act_container_bytes(layer.act_bits)
        res_b = layer.residual_numel * act_container_bytes(prev)
        if in_place and layer.kind == "dwconv":
            live = max(in_b, out_b) + out_b // max(1, layer.out_channels)
        else:
            live = in_b + out_b
        out.append(live + res_b)
        prev = layer.act_bits
    return out


def peak_sram_bytes(layers: Sequence[LayerInfo], input_bits: int | None = None, in_place: bool = True) -> int:
    """Peak live activation bytes (MCUNet-style); the model input is int8 when any layer is quantized.

    Example:
        >>> from jointnas.spaces import Candidate, Stage, build_model, trace_layers
        >>> layers = trace_layers(build_model(Candidate("mlp", (256,), 40, (Stage(256),))), (256,))
        >>> peak_sram_bytes(layers)  # float32: 256 inputs + 256 outputs
        2048
    """
    return max(layer_sram_bytes(layers, input_bits, in_place), default=0)


def cycle_terms(
    layers: Sequence[LayerInfo], input_bits: int | None = None, *, profile: DeviceProfile
) -> dict[str, float]:
    """What one inference does, in the units of the profile's cycle coefficients (`cycle_coefficients`).

    ``mac:<bits>``: MACs run by the ``cycles_per_mac`` kernel of that key; ``weight_byte``: packed weight
    bytes read; ``act_byte``: activation bytes read and written; ``layer``: layer calls; ``input``:
    input elements normalized and quantized; ``inference``: 1. `mcu_cycles` is their dot product with
    the coefficients, so a fit of the coefficients (`jointnas lut build` on a cycles device) is linear.
    """
    prev = _input_bits(layers, input_bits)
    terms: dict[str, float] = {"weight_byte": 0.0, "act_byte": 0.0, "layer": float(len(layers))}
    for layer in layers:
        key = f"mac:{profile.mac_key(layer.weight_bits, prev)}"  # input precision sets the kernel
        terms[key] = terms.get(key, 0.0) + layer.macs
        terms["weight_byte"] += layer_flash_bytes(layer)
        act = layer.in_numel * act_container_bytes(prev) + layer.out_numel * act_container_bytes(layer.act_bits)
        terms["act_byte"] += act
        prev = layer.act_bits
    terms["input"] = float(layers[0].in_numel) if layers else 0.0
    terms["inference"] = 1.0
    return terms


def cycle_coefficients(profile: DeviceProfile) -> dict[str, float]:
    """The profile's cycles per unit of each `cycle_terms` key."""
    coef = {f"mac:{bits}": c for bits, c in profile.cycles_per_mac.items()}
    coef.update(
        weight_byte=profile.cycles_per_weight_byte,
        act_byte=profile.cycles_per_act_byte,
        layer=profile.cycles_per_layer,
        input=profile.cycles_per_input,
        inference=profile.cycles_per_inference,
    )
    return coef


def cycles_of_terms(terms: dict[str, float], profile: DeviceProfile) -> float:
    """`cycle_terms` weighted by ``profile``'s `cycle_coefficients`: cycles of one inference."""
    coef = cycle_coefficients(profile)
    return sum(coef[k] * v for k, v in terms.items())


def mcu_cycles(layers: Sequence[LayerInfo], profile: DeviceProfile, input_bits: int | None = None) -> float:
    """Cycles of one inference on ``profile``: `cycles_of_terms` of its `cycle_terms`."""
    return cycles_of_terms(cycle_terms(layers, input_bits, profile=profile), profile)


def mcu_latency_ms(layers: Sequence[LayerInfo], profile: DeviceProfile) -> float:
    """Latency in milliseconds: `mcu_cycles` / clock."""
    if profile.clock_mhz is None:
        raise ValueError(f"device {profile.name!r} has no clock_mhz")
    return mcu_cycles(layers, profile) / (profile.clock_mhz * 1e3)


@dataclass(frozen=True)
class FitReport:
    """Whether a model fits a device, with the figures behind the verdict (bytes, milliseconds)."""

    device: str
    weights_flash_bytes: int
    flash_bytes: int
    flash_limit: int | None
    activation_sram_bytes: int
    sram_bytes: int
    sram_limit: int | None
    latency_ms: float | None
    fits_flash: bool
    fits_sram: bool

    @property
    def fits(self) -> bool:
        return self.fits_flash and self.fits_sram

    @property
    def violation(self) -> float:
        """Constraint value for Optuna (≤ 0 feasible): the larger of used/limit − 1 over Flash and SRAM."""
        ratios = [0.0]
        if self.flash_limit:
            ratios.append(self.flash_bytes / self.flash_limit)
        if self.sram_limit:
            ratios.append(self.sram_bytes / self.sram_limit)
        return max(ratios) - 1.0

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "fits": self.fits}


def fit_report(layers: Sequence[LayerInfo], profile: DeviceProfile) -> FitReport:
    """Flash (packed weights + runtime), SRAM (peak activations + runtime) and latency on ``profile``.

    Example:
        >>> from jointnas.devices import load_profile
        >>> from jointnas.spaces import Candidate, Stage, build_model, trace_layers
        >>> layers = trace_layers(build_model(Candidate("mlp", (16,), 4, (Stage(8),))), (16,))
        >>> fit_report(layers, load_profile("arduino-uno")).fits
        True
    """
    weights = estimate_flash_bytes(layers)
    acts = peak_sram_bytes(layers)
    flash = weights + profile.runtime_flash_bytes
    sram = acts + profile.runtime_sram_bytes
    return FitReport(
        device=profile.name,
        weights_flash_bytes=weights,
        flash_bytes=flash,
        flash_limit=profile.flash_bytes,
        activation_sram_bytes=acts,
        sram_bytes=sram,
        sram_limit=profile.sram_bytes,
        latency_ms=mcu_latency_ms(layers, profile) if profile.is_mcu else None,
        fits_flash=profile.flash_bytes is None or flash <= profile.flash_bytes,
        fits_sram=profile.sram_bytes is None or sram <= profile.sram_bytes,
    )


class CycleModel:
    """The latency predictor of a microcontroller profile (same interface as `LatencyTable`)."""

    def __init__(self, profile: DeviceProfile) -> None:
        if not profile.is_mcu:
            raise ValueError(f"device {profile.name!r} is not a cycles profile")
        self.profile = profile

    def predict_ms(self, layers: Sequence[LayerInfo]) -> float:
        return mcu_latency_ms(layers, self.profile)

    def save(self) -> None:
        """Nothing to save: the model is analytic."""


def fit_profiles(extra: Sequence[str] = ()) -> list[DeviceProfile]:
    """The devices whose fit each trial records: every packaged microcontroller plus ``extra``."""
    profiles = {p.name: p for p in mcu_profiles()}
    for name in extra:
        p = load_profile(name)
        profiles[p.name] = p
    return list(profiles.values())
