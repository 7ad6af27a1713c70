"""Validation of a candidate's compression plan, run before any training.

A bad plan (a prune ratio of 1 or more, a rank of 0, a bit-width no quantizer or no target device
supports) fails here with a `UserInputError` naming the stage, the bad value and what is allowed,
instead of minutes later inside a training loop.
"""

from __future__ import annotations

from collections.abc import Sequence

from jointnas.spaces import ACTIVATION_BITS, WEIGHT_BITS, Candidate, UserInputError


def validate_plan(
    candidate: Candidate, supported_weight_bits: Sequence[int] | None = None, *, quantized: bool = True
) -> None:
    """Raise `UserInputError` if ``candidate``'s compression plan cannot be carried out.

    Args:
        candidate: the architecture and its per-stage knobs.
        supported_weight_bits: weight bit-widths the target device can store and run (e.g. a device
            profile's ``native_bits``); ``None`` accepts every bit-width the quantizers support.
            32 means float weights.
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
    allowed = sorted(set(supported_weight_bits)) if supported_weight_bits is not None else None
    if allowed is not None:
        bad = [b for b in allowed if b not in WEIGHT_BITS]
        if bad or not allowed:
            raise UserInputError(
                f"supported_weight_bits {list(supported_weight_bits or [])} must be a non-empty subset of "
                f"{list(WEIGHT_BITS)}"
            )
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
        if stage.act_bits not in ACTIVATION_BITS:
            raise UserInputError(
                f"{where}: act_bits {stage.act_bits} is unsupported; choose one of {list(ACTIVATION_BITS)}"
            )
    _check_weight_bits("stem/classifier", "head_bits", candidate.head_bits, allowed if quantized else None)


def _check_weight_bits(where: str, knob: str, bits: int, allowed: list[int] | None) -> None:
    if bits not in WEIGHT_BITS:
        raise UserInputError(f"{where}: {knob} {bits} is unsupported; choose one of {list(WEIGHT_BITS)}")
    if allowed is not None and bits not in allowed:
        raise UserInputError(f"{where}: {knob} {bits} is not supported by the target device; choose one of {allowed}")


__all__ = ["validate_plan"]
