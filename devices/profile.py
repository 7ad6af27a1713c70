"""Device profiles: what a target runs natively and the coefficients of its cost models.

Profiles are TOML (or JSON) data files. The packaged ones live in ``devices/profiles/`` and are picked
by name (``ort-cpu``, ``rpi4``, ``arduino-uno``, ``stm32f746``, ``esp32``); a user profile is picked by
its path (``[device] name = "boards/my-board.toml"``).
"""

from __future__ import annotations

import json
import tomllib
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from jointnas.spaces import WEIGHT_BITS, UserInputError

LatencyKind = Literal["ort", "imported", "cycles"]


class ToolchainSpec(BaseModel):
    """How a microcontroller's C code is built and run (the profile's ``[toolchain]`` table).

    Args:
        cc: the cross compiler (``avr-gcc``, ``arm-none-eabi-gcc``).
        size: its size tool (``avr-size``, ``arm-none-eabi-size``): text, data and bss in bytes.
        cflags: flags of every compile (target, ``-Os``, warnings).
        ldflags: extra link flags (C library specs, section garbage collection).
        packages: the Debian packages that provide the tools (named in the missing-toolchain message).
        simulator: ``"simavr"`` (cycle-accurate AVR, cycles counted by the harness), ``"qemu"``
            (Cortex-M in QEMU with ``-icount``: instructions executed, `jointnas.devices.qemu`),
            ``"native"`` (the build runs on this machine: the host toolchain) or ``None`` (built and
            sized, not run).
        sim_mcu: the simulator's name of the chip (``atmega328p``).
        arduino_core: folder of an Arduino core (Debian's ``arduino-core-avr``) to build sketches with.
        arduino_variant: the board's pin variant in that core (``standard`` for the Uno).
        qemu_machine: QEMU's machine for ``simulator = "qemu"`` (``mps2-an500``: a Cortex-M7).
        cycles_per_instruction: the factor from QEMU's instruction counts to reported cycles (a
            model, 1.0 by default: QEMU counts instructions, it does not time them).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    cc: str = Field(min_length=1)
    size: str = Field(min_length=1)
    cflags: tuple[str, ...] = ()
    ldflags: tuple[str, ...] = ()
    packages: tuple[str, ...] = ()
    simulator: Literal["simavr", "qemu", "native"] | None = None
    sim_mcu: str | None = None
    arduino_core: str | None = None
    arduino_variant: str | None = None
    qemu_machine: str | None = None
    cycles_per_instruction: float = Field(1.0, gt=0)


class DeviceProfile(BaseModel):
    """One target device.

    Args:
        name: profile name (tables record it; an imported table must name the same device).
        description: one line for people.
        latency: how latency is predicted: ``"ort"`` (a table measured with ONNX Runtime on this
            machine, missing entries measured on demand), ``"imported"`` (a table built on the board
            with ``jointnas lut build`` and imported; a missing entry is an error) or ``"cycles"``
            (the microcontroller cycle model of `jointnas.devices.mcu`).
        cpu, machine: what the board's CPU is; ``machine`` (``platform.machine()``) guards
            ``lut build`` against measuring the wrong machine for an imported device.
        clock_mhz: core clock in MHz (cycle model).
        flash_bytes, sram_bytes: capacities in bytes (``None``: no limit modelled).
        fpu: hardware floating point.
        native_bits: weight bit-widths the device's kernels run natively.
        runtime_flash_bytes, runtime_sram_bytes: what the program around the model library takes (bytes):
            the board's core and the deployed sketch's own code and buffers (`jointnas.devices.mcu.fit_report`).
        bootloader_bytes: Flash the board's bootloader reserves (bytes; a program must fit beside it).
        cycles_per_mac: cycles per multiply-accumulate by weight bit-width (``"32"``: float).
        cycles_per_weight_byte, cycles_per_act_byte: memory-traffic cycles per byte moved.
        cycles_per_layer: fixed cycles per layer call (dispatch, loop set-up).
        cycles_per_input: cycles per input element (normalization and input quantization).
        cycles_per_inference: fixed cycles of one inference (entry, arena set-up, the classifier's scores).
        cycle_table: fitted cycles per unit of each `jointnas.devices.mcu.cycle_terms` key; when set, it
            replaces the hand-set ``cycles_per_*`` coefficients.
        code_bytes: Flash bytes of the library's code per `jointnas.devices.mcu.code_terms` key
            (``kernel:<class>``, ``kernel`` for a class not measured, ``layer``, ``fixed``), fitted from builds.
        stack_bytes: stack peak of one inference of the library (bytes, measured in the simulator).
        calibration: how the cycle coefficients were fitted (`jointnas lut build` on a cycles device:
            toolchain, simulator, models, fit figures); ``None`` for hand-set coefficients.
        ort_disabled_optimizers: ONNX Runtime graph optimizers turned off for every measurement (and
            for the deployment the numbers describe), e.g. ``NchwcTransformer``.
        toolchain: how the generated C library is compiled, sized and simulated (`ToolchainSpec`).
        float16: whether plans may store weights as IEEE half (``"fp16"``: float16 storage, float
            arithmetic). ``None`` (the default): yes where latency is measured (``ort``/``imported``:
            ONNX Runtime widens float16 initializers with a Cast), no on microcontrollers (``cycles``),
            whose cycle model has no half-to-float conversion term and would price the weights as the
            INT16 kernel; a profile that accepts that sets ``float16 = true``.

    Example:
        >>> p = load_profile("arduino-uno")
        >>> p.flash_bytes, p.sram_bytes, p.clock_mhz, p.fpu
        (32768, 2048, 16.0, False)
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1, max_length=100, pattern=r"^[A-Za-z0-9_.\-]+$")
    description: str = ""
    latency: LatencyKind = "cycles"
    cpu: str = ""
    machine: str | None = None
    clock_mhz: float | None = Field(None, gt=0, le=100_000)
    flash_bytes: int | None = Field(None, gt=0)
    sram_bytes: int | None = Field(None, gt=0)
    fpu: bool = True
    native_bits: tuple[int, ...] = (32,)
    runtime_flash_bytes: int = Field(0, ge=0)
    runtime_sram_bytes: int = Field(0, ge=0)
    bootloader_bytes: int = Field(0, ge=0)
    cycles_per_mac: dict[int, float] = Field(default_factory=dict)
    cycles_per_weight_byte: float = Field(0.0, ge=0)
    cycles_per_act_byte: float = Field(0.0, ge=0)
    cycles_per_layer: float = Field(0.0, ge=0)
    cycles_per_input: float = Field(0.0, ge=0)
    cycles_per_inference: float = Field(0.0, ge=0)
    cycle_table: dict[str, float] = Field(default_factory=dict)
    code_bytes: dict[str, float] = Field(default_factory=dict)
    stack_bytes: int = Field(0, ge=0)
    calibration: dict[str, Any] | None = None
    ort_disabled_optimizers: tuple[str, ...] = ()
    toolchain: ToolchainSpec | None = None
    float16: bool | None = None

    @model_validator(mode="after")
    def _consistent(self) -> DeviceProfile:
        if self.latency == "cycles":
            if self.clock_mhz is None:
                raise ValueError("a cycles profile needs clock_mhz")
            if 32 not in self.cycles_per_mac:
                raise ValueError('a cycles profile needs cycles_per_mac."32" (float MACs)')
        if any(v < 0 for v in self.cycles_per_mac.values()):  # 0: a fitted model carries it in another term
            raise ValueError("cycles_per_mac values must be >= 0")
        return self

    @property
    def supported_weight_bits(self) -> tuple[int | str, ...]:
        """Weight bit-widths a plan may use on this device; `jointnas.compression.validate_plan` refuses others.

        Those it has a kernel for (``native_bits``, and the integer kernels ``cycles_per_mac`` prices), every
        narrower width (stored packed, widened to a kernel's width at run time: the C library unpacks
        1/2/4-bit codes, ONNX Runtime runs baked float weights) and float (32 bits), which every device
        runs. A wider integer width without a kernel is refused (16-bit weights on a board with 8-bit
        kernels only). ``"fp16"`` is last when `supports_float16`.

        Example:
            >>> load_profile("arduino-uno").supported_weight_bits  # 8-bit native, 16-bit kernel priced
            (1, 2, 4, 8, 16, 32)
            >>> board = DeviceProfile(name="b", clock_mhz=64, native_bits=(8,), cycles_per_mac={8: 2, 32: 40})
            >>> board.supported_weight_bits
            (1, 2, 4, 8, 32)
            >>> load_profile("ort-cpu").supported_weight_bits
            (1, 2, 4, 8, 16, 32, 'fp16')
        """
        kernels = {*self.native_bits, *(b for b in self.cycles_per_mac if b < 32)}
        widest = max(kernels, default=32)
        ints = tuple(b for b in WEIGHT_BITS if b <= widest or b == 32)
        return (*ints, "fp16") if self.supports_float16 else ints

    @property
    def supports_float16(self) -> bool:
        """Whether plans may use ``"fp16"`` weights here (``float16``; by default: not on microcontrollers)."""
        return (not self.is_mcu) if self.float16 is None else self.float16

    @property
    def is_mcu(self) -> bool:
        """Whether latency comes from the cycle model (a microcontroller)."""
        return self.latency == "cycles"

    def mac_key(self, weight_bits: int, input_bits: int) -> int:
        """The ``cycles_per_mac`` entry a layer runs with: float (32) when its weights or its input are
        float, else the integer kernel of ``weight_bits`` (the next wider width listed when it lacks one)."""
        bits = 32 if weight_bits >= 32 or input_bits >= 32 else weight_bits
        wider = sorted(b for b in self.cycles_per_mac if b >= bits)
        return wider[0] if wider else 32

    def mac_cycles(self, weight_bits: int, input_bits: int) -> float:
        """Cycles per MAC of a layer (`mac_key`'s entry of ``cycles_per_mac``)."""
        return self.cycles_per_mac[self.mac_key(weight_bits, input_bits)]


def _profile_dir():
    return resources.files("jointnas.devices") / "profiles"


def profile_names() -> list[str]:
    """Names of the packaged profiles."""
    return sorted(p.name.removesuffix(".toml") for p in _profile_dir().iterdir() if p.name.endswith(".toml"))


def _parse(text: str, source: str, is_json: bool) -> DeviceProfile:
    try:
        data = json.loads(text) if is_json else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise UserInputError(f"device profile {source} is not valid {'JSON' if is_json else 'TOML'}: {exc}") from None
    try:
        return DeviceProfile.model_validate(data)
    except ValidationError as exc:
        err = exc.errors(include_url=False)[0]
        key = ".".join(str(p) for p in err["loc"]) or "profile"
        raise UserInputError(f"device profile {source}: {key}: {err['msg']}; fix the profile file") from None


def is_profile_path(name: str) -> bool:
    """Whether ``name`` names a profile file rather than a packaged profile."""
    return "/" in name or "\\" in name or name.endswith((".toml", ".json"))


@lru_cache(maxsize=64)
def _load_cached(name: str) -> DeviceProfile:
    if is_profile_path(name):
        path = Path(name)
        try:
            text = path.read_text()
        except OSError:
            raise UserInputError(f"device profile file {path} cannot be read; check the path") from None
        return _parse(text, str(path), path.suffix == ".json")
    file = _profile_dir() / f"{name}.toml"
    if not file.is_file():
        raise UserInputError(
            f"unknown device {name!r}; choose one of {profile_names()} or give a profile file path (.toml/.json)"
        )
    return _parse(file.read_text(), name, False)


def load_profile(name: str | Path) -> DeviceProfile:
    """A packaged profile by name, or a user profile from a ``.toml`` / ``.json`` path."""
    return _load_cached(str(name))


def mcu_profiles() -> list[DeviceProfile]:
    """Every packaged microcontroller profile (their fit verdicts go into each trial's user attrs)."""
    return [p for p in (load_profile(n) for n in profile_names()) if p.is_mcu]
