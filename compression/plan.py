"""Validation of a candidate's compression plan, run before any training.

A bad plan (a prune ratio of 1 or more, a rank of 0, a bit-width no quantizer or no target device
supports) fails here with a `UserInputError` naming the stage, the bad value and what is allowed,
instead of minutes later inside a training loop.
"""

from __future__ import annotations

from collections.abc import Sequence

from jointnas.spaces import Candidate, UserInputError
from jointnas.spaces.candidate import ACTIVATION_PRECISIONS, WEIGHT_PRECISIONS
from jointnas.spaces.precision import Precision, precision_order


def validate_plan(
    candidate: Candidate, supported_weight_bits: Sequence[Precision] | None = None, *, quantized: bool = True
) -> None:
    """Raise `UserInputError` if ``candidate``'s compression plan cannot be carried out.

    Args:
        candidate: the architecture and its per-stage knobs.
        supported_weight_bits: weight bit-widths the target device can store and run (e.g. a device
            profile's ``native_bits``); ``None`` accepts every bit-width the quantizers support.
            32 means float weights, ``"fp16"`` IEEE half weights.
        quantized: whether the pipeline runs a ``quantize`` step; without one every weight stays
            float (32 bits), which the device must then support.

    Example:
        >>> from jointnas.spaces import Candidate, Stage
        >>> plan = Candidate("mlp", (64,), 10, (Stage(32, weight_bits=4),), head_bits=8)
        >>> validate_plan(plan, supported_weight_bits=[4, 8])  # fine
        >>> validate_plan(plan, supported_weight_bits=[8])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        jointnas.spaces._errors.UserInputError: stage 0: weight_bits 4 is not supported by the target device; ...
    """
    if not candidate.stages:
        raise UserInputError("the candidate has no stages; give at least one stage")
    allowed = None
    if supported_weight_bits is not None:
        if not supported_weight_bits or any(b not in WEIGHT_PRECISIONS for b in supported_weight_bits):
            raise UserInputError(
                f"supported_weight_bits {list(supported_weight_bits or [])} must be a non-empty subset of "
                f"{list(WEIGHT_PRECISIONS)}"
            )
        allowed = sorted(set(supported_weight_bits), key=precision_order)
    if not quantized and allowed is not None and 32 not in allowed:
        raise UserInputError(
            f"the pipeline has no 'quantize' step, so weights stay float, but the target device supports only "
            f"{allowed}-bit weights; add 'quantize' to [pipeline] steps"
        )
    for i, stage in enumerate(candidate.stages):
        where = f"stage {i}"
        if stage.channels < 1 or stage.depth < 1:
            raise UserInputError(
                f"{where}: channels and depth must be at least 1 (got {stage.channels}, {stage.depth})"
            )
        if not 0.0 <= stage.prune_ratio < 1.0:
            raise UserInputError(
                f"{where}: prune_ratio {stage.prune_ratio} is out of range; use a share in [0, 1) "
                "(1 would remove every channel)"
            )
        if not 0.0 < stage.rank_ratio <= 1.0:
            raise UserInputError(
                f"{where}: rank_ratio {stage.rank_ratio} is out of range; use a share in (0, 1] "
                "(0 would leave rank 0; 1 means no factorization)"
            )
        _check_weight_bits(where, "weight_bits", stage.weight_bits, allowed if quantized else None)
        _check_act_bits(where, stage.act_bits)
        for layer, w, a in stage.layer_bits:
            _check_weight_bits(f"{where} layer {layer}", "weight_bits", w, allowed if quantized else None)
            _check_act_bits(f"{where} layer {layer}", a)
    _check_weight_bits("stem/classifier", "head_bits", candidate.head_bits, allowed if quantized else None)


def _check_act_bits(where: str, bits: Precision) -> None:
    if bits not in ACTIVATION_PRECISIONS:
        raise UserInputError(f"{where}: act_bits {bits} is unsupported; choose one of {list(ACTIVATION_PRECISIONS)}")


def _check_weight_bits(where: str, knob: str, bits: Precision, allowed: list[Precision] | None) -> None:
    if bits not in WEIGHT_PRECISIONS:
        raise UserInputError(f"{where}: {knob} {bits} is unsupported; choose one of {list(WEIGHT_PRECISIONS)}")
    if allowed is not None and bits not in allowed:
        raise UserInputError(f"{where}: {knob} {bits} is not supported by the target device; choose one of {allowed}")


__all__ = ["validate_plan"]
