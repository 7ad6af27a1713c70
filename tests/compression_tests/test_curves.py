"""Training curves: per-epoch loss and validation accuracy of every training run of the pipeline."""

from __future__ import annotations

import math

from jointnas.compression import PipelineConfig, run_pipeline
from jointnas.objectives import TaskConfig, load_task
from jointnas.spaces import Candidate, Stage


def test_every_training_run_records_its_epochs():
    task = load_task(TaskConfig())
    c = Candidate("cnn", (1, 8, 8), 10, (Stage(16, 2, 3, 4, 1, 0.5, 0.5, 4, 8),), 8, 8)
    config = PipelineConfig(train_epochs=3, finetune_epochs=2)
    result = run_pipeline(c, task.x_train, task.y_train, task.x_val, task.y_val, config, seed=3)
    assert [run["step"] for run in result.curves] == ["train", "finetune", "finetune", "finetune"]
    assert [len(run["loss"]) for run in result.curves] == [3, 2, 2, 2]
    assert all(math.isfinite(v) and v > 0 for run in result.curves for v in run["loss"])
    # The last epoch's validation accuracy is the one the step report after that run measured.
    trained = [r for r in result.reports if r.step in ("train", "finetune")]
    assert [run["val_accuracy"][-1] for run in result.curves] == [r.val_accuracy for r in trained]
    assert result.curves[0]["loss"][-1] < result.curves[0]["loss"][0]  # training lowers its loss
