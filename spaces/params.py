"""How a space asks for its parameters: the names, the ranges and the value rules every family shares.

Families (`jointnas.spaces.families`) suggest through these helpers, the samplers that build parameters
themselves (supernets, HardCoReNAS) name them with `stage_param`, and the latency-table tools enumerate
the same values with `float_grid` and `round_channels`: one copy of each rule.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, Protocol

from jointnas.spaces._errors import UserInputError
from jointnas.spaces.precision import precision_order

ROUND_DIGITS = 6
"""Digits a stepped float knob keeps (``0.1 + 0.2`` is ``0.3``): in candidates, grids and tables alike."""


class Suggester(Protocol):
    """The subset of ``optuna.Trial`` the space needs."""

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1) -> int: ...

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None) -> float: ...

    def suggest_categorical(self, name: str, choices: Any) -> Any: ...


def stage_param(i: int, knob: str, prefix: str = "s", layer: str | None = None) -> str:
    """The Optuna parameter of ``knob`` in stage ``i`` (``prefix`` ``"l"`` for layers).

    ``layer`` names one layer of the stage (``"b<block>_<role>"``, see `jointnas.spaces.Stage.layer_bits`)
    for per-layer knobs.

    Example:
        >>> stage_param(2, "wbits"), stage_param(0, "width", "l"), stage_param(1, "wbits", layer="b0_expand")
        ('s2_wbits', 'l0_width', 's1_b0_expand_wbits')
    """
    return f"{prefix}{i}_{knob}" if layer is None else f"{prefix}{i}_{layer}_{knob}"


def layer_key(block: int, role: str) -> str:
    """The key of a stage's layer: block index within the stage and the layer's attribute.

    Example:
        >>> layer_key(1, "dw")
        'b1_dw'
    """
    return f"b{block}_{role}"


def round_channels(value: float) -> int:
    """A stage's channel count from base × width multiplier: the nearest multiple of 4, at least 4.

    Example:
        >>> round_channels(32 * 0.75), round_channels(2.0)
        (24, 4)
    """
    return max(4, int(round(value / 4.0)) * 4)


def float_steps(bounds: tuple[float, float], step: float) -> int:
    """How many ``step``s fit in ``bounds`` (a range ``[lo, hi]`` holds ``lo + k·step`` for k ≤ this)."""
    lo, hi = bounds
    return math.floor((hi - lo) / step + 1e-9)


def float_grid(bounds: tuple[float, float], step: float) -> list[float]:
    """Every value of a stepped float knob, rounded to `ROUND_DIGITS`.

    Example:
        >>> float_grid((0.0, 0.5), 0.125)
        [0.0, 0.125, 0.25, 0.375, 0.5]
    """
    lo = bounds[0]
    return [round(lo + k * step, ROUND_DIGITS) for k in range(float_steps(bounds, step) + 1)]


def float_range(suggester: Suggester, name: str, bounds: tuple[float, float], step: float) -> float:
    """A stepped float knob (not suggested when fixed), rounded to `ROUND_DIGITS`."""
    lo, hi = bounds
    value = lo if lo == hi else suggester.suggest_float(name, lo, lo + float_steps(bounds, step) * step, step=step)
    return round(value, ROUND_DIGITS)


def int_range(suggester: Suggester, name: str, bounds: tuple[int, int]) -> int:
    lo, hi = bounds
    return lo if lo == hi else suggester.suggest_int(name, lo, hi)


def choice(suggester: Suggester, name: str, choices: list[Any]) -> Any:
    return choices[0] if len(choices) == 1 else suggester.suggest_categorical(name, list(choices))


class FixedParams:
    """A `Suggester` answering from ``params`` (like ``optuna.trial.FixedTrial``, which refuses absent ones).

    An absent parameter takes its uncompressed, largest value: the top of an int range, the largest
    choice, the top of a ``*_rank`` range (no factorization), the bottom of any other float range (no
    pruning). A given choice outside its options is refused. ``asked`` records every question as
    ``("int" | "float", low, high, step)`` or ``("categorical", choices)`` (Optuna's distributions
    without importing Optuna).

    Example:
        >>> p = FixedParams({"s0_kernel": 5})
        >>> p.suggest_categorical("s0_kernel", [3, 5]), p.suggest_categorical("s0_wbits", [4, 8, 32])
        (5, 32)
        >>> p.suggest_float("s0_rank", 0.5, 1.0, step=0.25), p.suggest_float("s0_prune", 0.0, 0.5, step=0.25)
        (1.0, 0.0)
        >>> p.asked["s0_rank"]
        ('float', 0.5, 1.0, 0.25)
        >>> p.suggest_categorical("s1_wbits", [4, "fp16", 32]), p.suggest_categorical("s2_abits", [8, "fp16"])
        (32, 'fp16')
    """

    def __init__(self, params: Mapping[str, Any]) -> None:
        self.params = params
        self.asked: dict[str, tuple[Any, ...]] = {}

    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1) -> int:
        self.asked[name] = ("int", low, high, step)
        return int(self.params.get(name, high))

    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None) -> float:
        self.asked[name] = ("float", low, high, step)
        return float(self.params.get(name, high if name.endswith("_rank") else low))

    def suggest_categorical(self, name: str, choices: Any) -> Any:
        self.asked[name] = ("categorical", list(choices))
        # Bit-width choices may mix ints and "fp16": the widest is 32 (`precision_order`).
        widest = max(choices, key=precision_order) if any(isinstance(c, str) for c in choices) else max(choices)
        value = self.params.get(name, widest)
        if value not in choices:
            raise UserInputError(f"parameter {name}={value!r} is not one of {list(choices)}")
        return value


__all__ = [
    "ROUND_DIGITS",
    "FixedParams",
    "Suggester",
    "choice",
    "float_grid",
    "float_range",
    "float_steps",
    "int_range",
    "layer_key",
    "round_channels",
    "stage_param",
]
