"""Microcontroller models: what the generated C library takes and how long it runs, from traced layers.

* **Stored precision** (`stored_bits`): what the C library (`jointnas.compression.cgen`) stores each
  layer's input and output at: the model input as `C_INPUT_BITS` codes, an output behind an activation
  quantizer as its ``act_bits`` codes, an integer layer's output without one as `C_GRID_BITS`, logits and
  float kernels as float. Activations live in byte containers (int8 for ≤ 8 bits, int16, float32).
* **Cycles** (`cycle_terms` · `cycle_coefficients` = `mcu_cycles`): per layer, the MACs of its kernel
  class (`kernel_class`: input storage, weight format, pointwise or not), the nonzero MACs of sparse
  kernels, the output elements by output storage (requantization), the kernel rows of non-pointwise
  convolutions, the output channels and the call; per inference, the input elements (normalized and
  quantized), the classes (scores, arg max) and a fixed cost. Latency is cycles / clock. A profile's
  fitted ``cycle_table`` (`jointnas lut build` in the simulator) gives the coefficients; a hand-set
  profile's ``cycles_per_*`` fields are mapped onto the same terms.
* **Flash** (`library_flash_bytes`): packed weights (`estimate_flash_bytes`) + the code of each distinct
  kernel class, a cost per layer (descriptor, call) and a fixed part, from the profile's ``code_bytes``
  (fitted from the built library objects).
* **SRAM** (`library_sram_bytes`): the activation arena (MCUNet-style peak of the live tensors at their
  stored precision; a depthwise conv runs in place as in MCUNetV2/TinyEngine) + the profile's
  ``stack_bytes`` (the stack peak of one inference, measured in the simulator).
* **Fits** (`fit_report`): the library plus the profile's ``runtime_flash_bytes`` / ``runtime_sram_bytes``
  (the board's core and the program around the library) within Flash less the bootloader and SRAM.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from jointnas.spaces import C_GRID_BITS, C_INPUT_BITS, LayerInfo, weight_storage_bytes

from .memory import estimate_flash_bytes
from .profile import DeviceProfile, load_profile, mcu_profiles


def act_container_bytes(bits: int) -> int:
    """Bytes one activation occupies in SRAM at ``bits`` (sub-byte values live in int8 containers)."""
    return 1 if bits <= 8 else 2 if bits <= 16 else 4


def stored_bits(layers: Sequence[LayerInfo]) -> list[tuple[int, int]]:
    """(input bits, output bits) of each layer as the generated C library stores them (32: float).

    Example:
        >>> from jointnas.spaces import Candidate, Stage, build_model, trace_layers
        >>> model = build_model(Candidate("mlp", (16,), 4, (Stage(8, weight_bits=4, act_bits=8),)))
        >>> stored_bits(trace_layers(model, (16,)))  # float model
        [(32, 32), (32, 32)]
    """
    prev = C_INPUT_BITS if layers and layers[0].integer_weights else 32
    out = []
    for i, layer in enumerate(layers):
        coded = _coded_output(layer)
        integer = _runs_integer(layer, prev)
        # behind a quantizer: its codes; an integer layer's other outputs: the grid (logits stay float)
        bits = layer.act_bits if coded else C_GRID_BITS if integer and i < len(layers) - 1 else 32
        out.append((prev, bits))
        prev = bits
    return out


def _coded_output(layer: LayerInfo) -> bool:
    """Whether the layer's output is stored as activation codes (IEEE half activations are stored as float)."""
    return layer.out_quantized and not layer.act_fp16


def _runs_integer(layer: LayerInfo, in_bits: int) -> bool:
    """The generator's rule: an integer kernel when the weights are integer codes and either the output
    is coded or the input (stored at ``in_bits``) already is."""
    return layer.integer_weights and (_coded_output(layer) or in_bits < 32)


def _storage(bits: int, signed: bool = True) -> str:
    return "f32" if bits >= 32 else f"{'i' if signed else 'u'}{8 * act_container_bytes(bits)}"


def kernel_class(layer: LayerInfo, in_bits: int, in_signed: bool = True) -> str:
    """The generated kernel a layer runs: ``<arithmetic>.<input storage>.<weights>.<shape>``.

    Arithmetic ``int`` or ``float``; input ``i8``/``u8``/``i16``/``f32``; weights ``w<bits>`` with ``s``
    when stored sparse (`weight_storage_bytes`); shape ``pw`` (one dot product per output: linear layers,
    1x1 stride-1 convs), ``dw`` (depthwise) or ``k`` (other convolutions).
    """
    integer = _runs_integer(layer, in_bits)
    _, sparse = weight_storage_bytes(layer.weight_numel, layer.weight_nonzero, layer.weight_precision)
    pointwise = layer.kernel == 1 and layer.stride == 1 and layer.groups == 1
    shape = "pw" if pointwise else "dw" if layer.kind == "dwconv" else "k"
    weights = f"w{'f16' if layer.weight_fp16 else layer.weight_bits}{'s' if sparse else ''}"
    return f"{'int' if integer else 'float'}.{_storage(in_bits, in_signed)}.{weights}.{shape}"


def _layer_terms(layer: LayerInfo, cls: str, out_bits: int) -> dict[str, float]:
    terms = {
        f"mac:{cls}": float(layer.macs),
        f"out:{min(32, 8 * act_container_bytes(out_bits))}": float(layer.out_numel),
    }
    if cls.split(".")[2].endswith("s"):
        terms[f"nz:{cls}"] = layer.macs * layer.weight_nonzero / max(1, layer.weight_numel)
    if not cls.endswith(".pw"):
        rows = layer.in_channels // max(1, layer.groups) * (layer.kernel if len(layer.in_shape) == 3 else 1)
        terms[f"row:{cls}"] = float(layer.out_numel * rows)
    return {**terms, "chan": float(layer.out_channels), "layer": 1.0}


def kernel_classes(layers: Sequence[LayerInfo]) -> list[str]:
    """`kernel_class` of each layer (its input's signedness: the model input's as traced, then unsigned
    after a quantized ReLU)."""
    classes, signed = [], not layers or layers[0].in_signed
    for layer, (in_bits, _) in zip(layers, stored_bits(layers), strict=True):
        classes.append(kernel_class(layer, in_bits, signed))
        signed = not (layer.relu and layer.out_quantized)
    return classes


def layer_cycle_terms(layers: Sequence[LayerInfo]) -> list[dict[str, float]]:
    """Each layer's part of `cycle_terms` (keys carry its `kernel_class`)."""
    classes, bits = kernel_classes(layers), stored_bits(layers)
    return [_layer_terms(layer, cls, out) for layer, cls, (_, out) in zip(layers, classes, bits, strict=True)]


def model_cycle_terms(layers: Sequence[LayerInfo]) -> dict[str, float]:
    """The part of `cycle_terms` around the layers: ``input`` elements, ``class`` scores, ``inference`` 1."""
    if not layers:
        return {"inference": 1.0}
    return {"input": float(layers[0].in_numel), "class": float(layers[-1].out_numel), "inference": 1.0}


def cycle_terms(layers: Sequence[LayerInfo]) -> dict[str, float]:
    """What one inference does, in the units of the cycle coefficients (`cycle_coefficient`).

    Per layer (keys carry its `kernel_class`): ``mac:`` MACs, ``nz:`` nonzero MACs of sparse kernels,
    ``row:`` kernel rows of non-pointwise convs, ``out:<8|16|32>`` output elements by stored width,
    ``chan`` output channels, ``layer`` calls; per inference: ``input`` elements (normalized and
    quantized, or a text model's encoder), ``class`` scores, ``inference`` 1. `mcu_cycles` is their dot
    product with the coefficients, so a fit is linear.
    """
    terms = dict(model_cycle_terms(layers))
    for part in layer_cycle_terms(layers):
        for key, value in part.items():
            terms[key] = terms.get(key, 0.0) + value
    return terms


def _hand_set(profile: DeviceProfile, key: str) -> float:
    """A hand-set profile's ``cycles_per_*`` fields as the coefficient of term ``key``."""
    kind, _, cls = key.partition(":")
    if kind == "mac":
        _, storage, weights, _ = cls.split(".")
        wbits, xbits = int(weights.rstrip("s")[1:].replace("f16", "16")), int(storage[1:])  # i8 u8 i16 u16 f32
        weight_traffic = wbits / 8 * profile.cycles_per_weight_byte  # the kernels read each weight per MAC
        return profile.mac_cycles(wbits, xbits) + weight_traffic + xbits / 8 * profile.cycles_per_act_byte
    if kind == "out":
        return act_container_bytes(int(cls)) * profile.cycles_per_act_byte
    fixed = {"layer": profile.cycles_per_layer, "input": profile.cycles_per_input}
    return {**fixed, "inference": profile.cycles_per_inference}.get(kind, 0.0)


def cycle_coefficient(profile: DeviceProfile, key: str) -> float:
    """Cycles per unit of `cycle_terms` key ``key`` on ``profile``: its fitted ``cycle_table`` entry, or for a
    term the calibration never met (a kernel class its space lacks) the hand-set fields mapped onto it."""
    fitted = profile.cycle_table.get(key)
    return _hand_set(profile, key) if fitted is None else fitted


def cycles_of_terms(terms: dict[str, float], profile: DeviceProfile) -> float:
    """`cycle_terms` weighted by ``profile``'s coefficients (`cycle_coefficient`): cycles of one inference."""
    return sum(cycle_coefficient(profile, k) * v for k, v in terms.items())


def mcu_cycles(layers: Sequence[LayerInfo], profile: DeviceProfile) -> float:
    """Cycles of one inference on ``profile``: `cycles_of_terms` of its `cycle_terms`."""
    return cycles_of_terms(cycle_terms(layers), profile)


def mcu_latency_ms(layers: Sequence[LayerInfo], profile: DeviceProfile) -> float:
    """Latency in milliseconds: `mcu_cycles` / clock."""
    if profile.clock_mhz is None:
        raise ValueError(f"device {profile.name!r} has no clock_mhz")
    return mcu_cycles(layers, profile) / (profile.clock_mhz * 1e3)


def code_terms(layers: Sequence[LayerInfo]) -> dict[str, float]:
    """What the library's code holds besides the weights: one ``kernel:<class>`` per distinct
    `kernel_class`, ``layer`` descriptors and calls, ``fixed`` 1 (runtime helpers, the forward pass)."""
    return {
        **{f"kernel:{c}": 1.0 for c in sorted(set(kernel_classes(layers)))},
        "layer": float(len(layers)),
        "fixed": 1.0,
    }


def library_flash_bytes(layers: Sequence[LayerInfo], profile: DeviceProfile) -> int:
    """Flash of the model's C library on ``profile``: packed weights + `code_terms` priced by the profile's
    ``code_bytes`` (a kernel class it lacks costs its ``kernel`` entry). Without ``code_bytes``: weights only."""
    code = profile.code_bytes
    priced = sum(code.get(k, code.get(k.split(":")[0], 0.0)) * v for k, v in code_terms(layers).items())
    return estimate_flash_bytes(layers) + round(priced)


def layer_sram_bytes(layers: Sequence[LayerInfo], in_place: bool = True) -> list[int]:
    """Live activation bytes while each layer runs (input + output + live residual input), at the
    precision the C library stores them (`stored_bits`)."""
    out: list[int] = []
    for layer, (in_bits, out_bits) in zip(layers, stored_bits(layers), strict=True):
        in_b = layer.in_numel * act_container_bytes(in_bits)
        out_b = layer.out_numel * act_container_bytes(out_bits)
        res_b = layer.residual_numel * act_container_bytes(in_bits)
        if in_place and layer.kind == "dwconv":
            live = max(in_b, out_b) + out_b // max(1, layer.out_channels)
        else:
            live = in_b + out_b
        out.append(live + res_b)
    return out


def peak_sram_bytes(layers: Sequence[LayerInfo], in_place: bool = True) -> int:
    """Peak live activation bytes (MCUNet-style): the arena the C library needs.

    Example:
        >>> from jointnas.spaces import Candidate, Stage, build_model, trace_layers
        >>> layers = trace_layers(build_model(Candidate("mlp", (256,), 40, (Stage(256),))), (256,))
        >>> peak_sram_bytes(layers)  # float32: 256 inputs + 256 outputs
        2048
    """
    return max(layer_sram_bytes(layers, in_place), default=0)


def library_sram_bytes(layers: Sequence[LayerInfo], profile: DeviceProfile) -> int:
    """SRAM one inference of the model's C library needs on ``profile``: `peak_sram_bytes` (the arena)
    + the profile's ``stack_bytes`` (the stack peak of one inference)."""
    return peak_sram_bytes(layers) + profile.stack_bytes


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
    """Flash (`library_flash_bytes` + runtime), SRAM (`library_sram_bytes` + runtime) and latency on ``profile``.

    Example:
        >>> from jointnas.devices import load_profile
        >>> from jointnas.spaces import Candidate, Stage, build_model, trace_layers
        >>> layers = trace_layers(build_model(Candidate("mlp", (16,), 4, (Stage(8),))), (16,))
        >>> fit_report(layers, load_profile("arduino-uno")).fits
        True
    """
    weights = estimate_flash_bytes(layers)
    acts = peak_sram_bytes(layers)
    flash = library_flash_bytes(layers, profile) + profile.runtime_flash_bytes
    sram = library_sram_bytes(layers, profile) + profile.runtime_sram_bytes
    return FitReport(
        device=profile.name,
        weights_flash_bytes=weights,
        flash_bytes=flash,
        flash_limit=None if profile.flash_bytes is None else profile.flash_bytes - profile.bootloader_bytes,
        activation_sram_bytes=acts,
        sram_bytes=sram,
        sram_limit=profile.sram_bytes,
        latency_ms=mcu_latency_ms(layers, profile) if profile.is_mcu else None,
        fits_flash=profile.flash_bytes is None or flash <= profile.flash_bytes - profile.bootloader_bytes,
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

    def memory_bytes(self, layers: Sequence[LayerInfo]) -> tuple[int, int]:
        """(Flash, SRAM) of the model's C library: `library_flash_bytes`, `library_sram_bytes`."""
        return library_flash_bytes(layers, self.profile), library_sram_bytes(layers, self.profile)

    def save(self) -> None:
        """Nothing to save: the model is analytic."""


def fit_profiles(extra: Sequence[str] = ()) -> list[DeviceProfile]:
    """The devices whose fit each trial records: every packaged microcontroller plus ``extra``."""
    profiles = {p.name: p for p in mcu_profiles()}
    for name in extra:
        p = load_profile(name)
        profiles[p.name] = p
    return list(profiles.values())
