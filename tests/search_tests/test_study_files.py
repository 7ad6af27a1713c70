"""Every study file in studies/ runs 3 trials through the real code, on tiny files in the real formats."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from jointnas.search.config import apply_overrides, load_config
from jointnas.search.study import create_or_resume, run_study

from ..datafiles import write_cifar_batches, write_pairs

STUDIES = Path(__file__).resolve().parents[2] / "studies"
FAST = {
    "pipeline.train_epochs": 1,
    "pipeline.finetune_epochs": 1,
    "device.warmup": 1,
    "device.repeats": 3,
    "device.threads": 1,
    "budget.n_trials": 3,
}


def run_study_file(name: str, tmp_path: Path, **overrides) -> optuna.Study:
    config = load_config(STUDIES / name)
    config = apply_overrides(config, **{**FAST, "study.storage": f"sqlite:///{tmp_path / 'study.db'}", **overrides})
    study = create_or_resume(config, config.study.storage)
    run_study(config, study, config_path=tmp_path / name)  # the latency table lands in tmp_path
    return study


def _check(study: optuna.Study, input_shape: list[int], family: str) -> list[optuna.trial.FrozenTrial]:
    trials = study.get_trials(states=(TrialState.COMPLETE,))
    assert len(trials) == 3 == len(study.trials)
    for t in trials:
        assert t.user_attrs["candidate"]["family"] == family
        assert t.user_attrs["candidate"]["input_shape"] == input_shape
        assert 0.0 <= t.user_attrs["test_accuracy"] <= 1.0
        assert t.values[2] == t.user_attrs["flash_bytes"] > 0
    return trials


@pytest.mark.slow  # 15-80 s on the shared 2-core machine; benchmarks/tasks.py runs it too
def test_cifar10_rpi_on_a_two_batch_pickle_folder(tmp_path):
    data = write_cifar_batches(tmp_path / "cifar-10-batches-py", per_batch=20, batches=2, test=20)
    overrides = {"task.path": str(data), "task.val_fraction": 0.25, "pipeline.batch_size": 16}
    # Narrowest corner of the space: 32x32 training dominates the time on a shared CPU.
    # (benchmarks/tasks.py runs the file's own space on the same data.)
    overrides |= {"space.depth": [1, 1], "space.expansion": [2], "space.stem_channels": [8], "space.width_mult": [0.5]}
    overrides |= {"space.kernel": [3], "space.stages": [8, 8, 8, 8], "pipeline.steps": ["prune", "quantize"]}
    study = run_study_file("cifar10_rpi.toml", tmp_path, **overrides)
    trials = _check(study, [3, 32, 32], "cnn")
    assert all("latency_ms" in t.user_attrs["fits"] for t in trials)


def test_tinychat_arduino_on_a_gzipped_pairs_file(tmp_path):
    data = write_pairs(tmp_path / "tinychat.txt.gz", repeat=3)
    study = run_study_file("tinychat_arduino.toml", tmp_path, **{"task.path": str(data)})
    trials = _check(study, [256], "mlp")
    for t in trials:
        assert set(t.user_attrs["fits"]) == {"flash_bytes", "sram_bytes", "fits:arduino-uno"}
        assert t.user_attrs["fits"]["flash_bytes"] == (t.user_attrs["flash_bytes"] <= 32768)
        assert t.user_attrs["fits"]["sram_bytes"] == (t.user_attrs["sram_bytes"] <= 2048)


@pytest.mark.slow
def test_mnist1d_mcu(tmp_path):
    study = run_study_file("mnist1d_mcu.toml", tmp_path)
    trials = _check(study, [1, 40], "cnn1d")
    assert all(set(t.user_attrs["fits"]) == {"flash_bytes", "sram_bytes", "fits:stm32f746"} for t in trials)
    assert all(t.user_attrs["fits"]["flash_bytes"] for t in trials)
