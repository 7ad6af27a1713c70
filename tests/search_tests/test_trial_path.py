"""The trial path once: the search's train and measure steps, the device's weight bit-widths in plan validation."""

from __future__ import annotations

from optuna.trial import TrialState

from jointnas.search.config import load_config
from jointnas.search.study import create_or_resume, run_study

from ..conftest import TINY_CONFIG, write_config

BOARD = """
name = "board8"
latency = "cycles"
clock_mhz = 64
native_bits = [8]
[cycles_per_mac]
"8" = 2.0
"32" = 40.0
"""


def test_a_plan_the_device_cannot_run_fails_its_trial_before_training(tmp_path, monkeypatch):
    import jointnas.compression.pipeline as pipeline

    def no_training(*args, **kwargs):
        raise AssertionError("trained a plan the device cannot run")

    monkeypatch.setattr(pipeline, "train", no_training)
    (tmp_path / "board8.toml").write_text(BOARD)
    text = TINY_CONFIG.replace("weight_bits = [4, 8, 32]", "weight_bits = [16]").replace("n_trials = 2", "n_trials = 1")
    text = text.replace("[device]\n", '[device]\nname = "board8.toml"\n')
    path = write_config(tmp_path, text)
    config = load_config(path)
    study = create_or_resume(config, f"sqlite:///{tmp_path / 's.db'}")
    config = config.model_copy(update={"budget": config.budget.model_copy(update={"timeout": 20})})
    run_study(config, study, config_path=path)
    trial = study.trials[0]
    assert trial.state == TrialState.FAIL
    assert trial.user_attrs["fail_reason"].startswith(
        "plan refused: stage 0: weight_bits 16 is not supported by the target device"
    ), trial.user_attrs["fail_reason"]
