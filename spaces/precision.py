"""Precisions of weights and activations: integer bit-widths, IEEE half precision (``"fp16"``) and float.

A precision is an ``int`` bit-width (1 … 16: integer codes with a per-channel scale; 32: float32) or the
string ``"fp16"``: IEEE 754 half precision, stored in 2 bytes like INT16 but a float format (no scale,
no integer kernel; arithmetic in float32 after widening). Every module that needs to tell them apart
asks these functions, never compares against ``"fp16"`` itself.

Example:
    >>> storage_bits("fp16"), storage_bits(4), is_float("fp16"), is_float(16)
    (16, 4, True, False)
    >>> sorted([32, "fp16", 2, 16], key=precision_order)
    [2, 16, 'fp16', 32]
"""

from __future__ import annotations

from typing import Union

FP16 = "fp16"
"""IEEE half precision: 2 bytes a value, float arithmetic."""

Precision = Union[int, str]  # noqa: UP007 (a runtime alias used in dataclass annotations)
"""An integer bit-width or `FP16`."""


def is_fp16(precision: Precision) -> bool:
    """Whether ``precision`` is IEEE half precision."""
    return precision == FP16


def is_float(precision: Precision) -> bool:
    """Whether values at ``precision`` are floats (``"fp16"`` or 32): no integer codes, no scales."""
    return is_fp16(precision) or int(precision) >= 32


def storage_bits(precision: Precision) -> int:
    """Bits one value occupies in memory: 16 for ``"fp16"``, the bit-width otherwise."""
    return 16 if is_fp16(precision) else int(precision)


def precision_order(precision: Precision) -> tuple[int, int]:
    """Sort key from narrowest to widest; ``"fp16"`` sorts after INT16 and before float32."""
    return (storage_bits(precision), int(is_fp16(precision)))


def precision_label(precision: Precision) -> str:
    """``"fp16"``, ``"fp32"`` or ``"int<b>"`` (``"bin"`` for 1 bit): how reports name a precision.

    Example:
        >>> [precision_label(p) for p in (1, 4, "fp16", 32)]
        ['bin', 'int4', 'fp16', 'fp32']
    """
    if is_fp16(precision):
        return FP16
    bits = int(precision)
    return "fp32" if bits >= 32 else "bin" if bits == 1 else f"int{bits}"


def as_precision(value: object) -> Precision:
    """A stored precision back as data: ``"fp16"`` stays, any other value becomes its ``int``."""
    return FP16 if value == FP16 else int(value)  # type: ignore[call-overload]


__all__ = [
    "FP16",
    "Precision",
    "as_precision",
    "is_float",
    "is_fp16",
    "precision_label",
    "precision_order",
    "storage_bits",
]
