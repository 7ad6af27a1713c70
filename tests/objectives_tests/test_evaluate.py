from __future__ import annotations

import pytest

from jointnas.compression import PipelineConfig
from jointnas.devices import LatencyTable
from jointnas.objectives import ConstraintsConfig, ObjectivesConfig, TaskConfig, evaluate_candidate, load_task
from jointnas.spaces import Candidate, Stage


@pytest.fixture(scope="module")
def task():
    return load_task(TaskConfig())


def test_splits_are_disjoint_stratified_and_seeded(task):
    assert len(task.x_train) + len(task.x_val) + len(task.x_test) == 1797
    assert task.input_shape == (1, 8, 8) and task.num_classes == 10
    assert abs(len(task.x_val) - 0.2 * 1797) < 10
    again = load_task(TaskConfig())
    assert (again.y_test == task.y_test).all()
    other = load_task(TaskConfig(split_seed=1))
    assert not (other.y_test == task.y_test).all()


def test_evaluation_on_a_tiny_budget(task):
    c = Candidate("cnn", (1, 8, 8), 10, (Stage(8, 1, 3, 2, 1, 0.5, 1.0, 4, 8),), stem_channels=8, head_bits=8)
    ev = evaluate_candidate(
        c,
        task,
        PipelineConfig(train_epochs=3, finetune_epochs=1),
        LatencyTable(None, repeats=3, warmup=1),
        ObjectivesConfig(metrics=["accuracy", "flash_bytes", "sram_bytes"]),
        ConstraintsConfig(flash_bytes=10.0, sram_bytes=1e9),
        seed=0,
    )
    assert list(ev.values) == ["accuracy", "flash_bytes", "sram_bytes"]
    assert 0.3 < ev.values["accuracy"] <= 1.0
    assert ev.values["flash_bytes"] == ev.attrs["flash_bytes"] < ev.attrs["fp32_flash_bytes"] / 4
    assert ev.violations["flash_bytes"] == ev.values["flash_bytes"] - 10.0 > 0
    assert ev.attrs["fits"] == {"flash_bytes": False, "sram_bytes": True} and not ev.attrs["feasible"]
    assert ev.attrs["layer_bits"]["blocks.0.dw.conv"] == [4, 8]
    assert ev.attrs["layer_bits"]["stem.conv"] == [8, 8]
    assert [s["step"] for s in ev.attrs["steps"]][0] == "train"
    assert ev.attrs["timings_s"]["train_s"] > 0


def test_uncompressed_candidate_flash_is_fp32_baseline(task):
    c = Candidate("mlp", (1, 8, 8), 10, (Stage(16),))
    ev = evaluate_candidate(
        c,
        task,
        PipelineConfig(train_epochs=1, finetune_epochs=0),
        LatencyTable(None, repeats=3, warmup=1),
        ObjectivesConfig(),
        ConstraintsConfig(),
        seed=0,
    )
    assert ev.attrs["flash_bytes"] == ev.attrs["fp32_flash_bytes"] == 4 * (64 * 16 + 16 + 16 * 10 + 10)
    assert c.to_dict() == {**ev.attrs["candidate"], "input_shape": (1, 8, 8)}
    assert Candidate.from_dict(ev.attrs["candidate"]) == c


def test_device_fit_verdicts_and_fits_constraints(task):
    c = Candidate("mlp", (1, 8, 8), 10, (Stage(16, weight_bits=8, act_bits=8),), head_bits=8)
    ev = evaluate_candidate(
        c,
        task,
        PipelineConfig(train_epochs=1, finetune_epochs=0),
        LatencyTable(None, repeats=3, warmup=1),
        ObjectivesConfig(),
        ConstraintsConfig(fits=["arduino-uno"]),
        seed=0,
    )
    assert ev.attrs["fits_device"] == {"arduino-uno": True, "esp32": True, "stm32f746": True}
    uno = ev.attrs["device_fit"]["arduino-uno"]
    assert uno["flash_bytes"] == ev.attrs["flash_bytes"] + 6144 and uno["flash_limit"] == 32768
    assert uno["sram_bytes"] == 64 + 16 + 512  # int8 input and hidden layer, plus the runtime's 512 B
    # The tighter resource sets the constraint: SRAM here (592 / 2048 − 1).
    assert ev.violations["fits:arduino-uno"] == pytest.approx(max(uno["flash_bytes"] / 32768, 592 / 2048) - 1)
    assert ev.attrs["fits"] == {"fits:arduino-uno": True} and ev.attrs["feasible"]
