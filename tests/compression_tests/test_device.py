"""``[pipeline] device``: auto resolves to CUDA only where torch sees one; the CPU path is complete."""

from __future__ import annotations

import pytest
import torch
from pydantic import ValidationError

from jointnas.compression import PipelineConfig, resolve_device, run_pipeline
from jointnas.objectives import TaskConfig, load_task
from jointnas.spaces import Candidate, Stage, UserInputError

NO_CUDA = pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")


def test_auto_is_cuda_only_where_torch_sees_it():
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(UserInputError, match="device 'tpu' is unknown; use one of auto, cpu, cuda"):
        resolve_device("tpu")
    with pytest.raises(ValidationError):
        PipelineConfig(device="tpu")
    assert PipelineConfig().device == "auto"


@NO_CUDA
def test_cuda_without_a_cuda_device_is_one_line_naming_the_fix():
    with pytest.raises(UserInputError) as err:
        resolve_device("cuda")
    message = str(err.value)
    assert "\n" not in message and "sees no CUDA device" in message and 'set device = "auto" or "cpu"' in message


@NO_CUDA
def test_auto_runs_the_whole_pipeline_on_the_cpu_with_the_cpu_results():
    """auto = cpu here: the same numbers as device = "cpu" (prune, lowrank, quantize, fine-tunes)."""
    task = load_task(TaskConfig())
    cand = Candidate(
        "cnn", task.input_shape, 10, (Stage(8, 1, 3, 2, 1, 0.25, 0.5, 8, 8),), stem_channels=8, head_bits=8
    )
    split = (task.x_train[:128], task.y_train[:128], task.x_val[:64], task.y_val[:64])
    results = []
    for device in ("auto", "cpu"):
        config = PipelineConfig(train_epochs=1, finetune_epochs=1, batch_size=32, device=device)
        results.append(run_pipeline(cand, *split, config, seed=0))
    auto, cpu = results
    assert [r.val_accuracy for r in auto.reports] == [r.val_accuracy for r in cpu.reports]
    assert [r.step for r in auto.reports] == [
        "train",
        "prune",
        "finetune",
        "lowrank",
        "finetune",
        "quantize",
        "finetune",
    ]
    assert all(p.device.type == "cpu" for p in auto.model.parameters())
    assert all(p.device.type == "cpu" for p in auto.teacher.parameters())
