"""Bad plans fail with a UserInputError before any training."""

from __future__ import annotations

import dataclasses

import pytest
import torch

from jointnas.compression import PipelineConfig, run_pipeline, validate_plan
from jointnas.compression import pipeline as pipeline_module
from jointnas.spaces import Candidate, Stage, UserInputError

GOOD = Candidate("mlp", (1, 8, 8), 10, (Stage(32, prune_ratio=0.5, rank_ratio=0.5, weight_bits=4, act_bits=8),))


def _stage(**knobs) -> Candidate:
    return dataclasses.replace(GOOD, stages=(dataclasses.replace(GOOD.stages[0], **knobs),))


@pytest.mark.parametrize(
    ("plan", "supported", "message"),
    [
        (_stage(prune_ratio=1.0), None, "stage 0: prune_ratio 1.0 is out of range"),
        (_stage(prune_ratio=1.5), None, "prune_ratio 1.5"),
        (_stage(prune_ratio=-0.1), None, "prune_ratio -0.1"),
        (_stage(rank_ratio=0.0), None, "stage 0: rank_ratio 0.0 is out of range"),
        (_stage(rank_ratio=1.2), None, "rank_ratio 1.2"),
        (_stage(weight_bits=3), None, "stage 0: weight_bits 3 is unsupported"),
        (_stage(act_bits=1), None, "act_bits 1 is unsupported"),
        (_stage(weight_bits=4), [8, 32], "weight_bits 4 is not supported by the target device; choose one of [8, 32]"),
        (dataclasses.replace(GOOD, head_bits=8), [4], "head_bits 8 is not supported by the target device"),
        (GOOD, [5], "supported_weight_bits [5] must be a non-empty subset"),
    ],
)
def test_bad_plans_are_user_errors(plan, supported, message):
    with pytest.raises(UserInputError, match=message.replace("[", r"\[").replace("]", r"\]")):
        validate_plan(plan, supported)


def test_good_plan_passes():
    validate_plan(GOOD)
    validate_plan(GOOD, [4, 8, 32])


def test_run_pipeline_rejects_before_training(monkeypatch):
    calls = []
    monkeypatch.setattr(pipeline_module, "train", lambda *a, **k: calls.append(1))
    x, y = torch.randn(8, 1, 8, 8), torch.randint(0, 10, (8,))
    with pytest.raises(UserInputError, match="weight_bits 4 is not supported"):
        run_pipeline(GOOD, x, y, x, y, PipelineConfig(), supported_weight_bits=[8, 32])
    with pytest.raises(UserInputError, match="no 'quantize' step"):
        run_pipeline(GOOD, x, y, x, y, PipelineConfig(steps=["prune", "finetune"]), supported_weight_bits=[8])
    with pytest.raises(UserInputError, match="rank_ratio 0"):
        run_pipeline(_stage(rank_ratio=0.0), x, y, x, y, PipelineConfig())
    assert calls == []  # nothing was trained
