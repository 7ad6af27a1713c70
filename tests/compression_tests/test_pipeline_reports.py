"""Pipeline reports accuracy, params, MACs and Flash after every step; KD reaches every fine-tune."""

from __future__ import annotations

import pytest

from jointnas.compression import PipelineConfig, run_pipeline
from jointnas.compression import pipeline as pipeline_module
from jointnas.compression import sparsity as sparsity_module
from jointnas.devices import estimate_flash_bytes
from jointnas.spaces import Candidate, Stage, trace_layers

CNN = Candidate(
    "cnn",
    (1, 8, 8),
    10,
    (Stage(8, 1, 3, 4, 1, prune_ratio=0.5, rank_ratio=0.5, weight_bits=4, act_bits=8),),
    stem_channels=8,
    head_bits=8,
)


@pytest.fixture(scope="module")
def task():
    from jointnas.objectives import TaskConfig, load_task

    return load_task(TaskConfig())


def test_every_step_reports_params_macs_and_flash(task):
    cfg = PipelineConfig(train_epochs=1, finetune_epochs=1)
    res = run_pipeline(CNN, task.x_train, task.y_train, task.x_val, task.y_val, cfg)
    by_step = {r.step: r for r in res.reports}
    train, prune, quant = by_step["train"], by_step["prune"], by_step["quantize"]
    assert prune.params < train.params and prune.macs < train.macs and prune.flash_bytes < train.flash_bytes
    assert by_step["lowrank"].params < prune.params
    assert quant.params == by_step["lowrank"].params  # quantization keeps the weight count
    assert quant.flash_bytes < 0.25 * train.flash_bytes  # 4-bit blocks, 8-bit head, vs float32
    final = res.reports[-1]
    assert final.flash_bytes == estimate_flash_bytes(trace_layers(res.model, CNN.input_shape))
    record = final.as_dict()
    assert set(record) >= {"step", "val_accuracy", "params", "macs", "flash_bytes", "seconds"}


def test_kd_teacher_in_every_finetune(task, monkeypatch):
    seen = []

    def spy(real):
        def wrapped(model, x, y, config, *, teacher=None, **kw):
            seen.append((config.epochs, config.kd_alpha, teacher is not None))
            return real(model, x, y, config, teacher=teacher, **kw)

        return wrapped

    monkeypatch.setattr(pipeline_module, "train", spy(pipeline_module.train))
    monkeypatch.setattr(sparsity_module, "train", spy(sparsity_module.train))
    cfg = PipelineConfig(
        train_epochs=1,
        finetune_epochs=1,
        kd_alpha=0.7,
        sparsity=0.5,
        steps=["prune", "finetune", "lowrank", "finetune", "sparsify", "quantize", "finetune"],
    )
    run_pipeline(CNN, task.x_train[:128], task.y_train[:128], task.x_val, task.y_val, cfg)
    assert seen[0] == (1, 0.0, False)  # the teacher itself trains without KD
    assert seen[1:] == [(1, 0.7, True)] * 4  # 3 fine-tunes + the gradual-pruning fine-tune
