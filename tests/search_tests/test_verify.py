"""``[device] verify = true``: every trial built and run on its board, the measured figures as its values."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from jointnas.search.cli import main
from jointnas.search.config import apply_overrides, load_config
from jointnas.search.study import create_or_resume, run_study

ROOT = Path(__file__).resolve().parents[2]
needs_avr = pytest.mark.skipif(
    not (shutil.which("avr-gcc") and Path("/usr/include/simavr/sim_avr.h").is_file()),
    reason="avr-gcc or libsimavr not installed (apt-get install gcc-avr avr-libc simavr libsimavr-dev libelf-dev)",
)


@needs_avr
def test_a_verified_tinychat_trial_takes_the_boards_measured_figures(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)  # the study's pairs file is relative to the repository root
    overrides = {"budget.n_trials": 1, "pipeline.train_epochs": 1, "pipeline.finetune_epochs": 0}
    config = apply_overrides(
        load_config(ROOT / "studies/tinychat_arduino.toml"), **overrides, **{"device.verify": True}
    )
    config = config.model_copy(update={"objectives": config.objectives.model_copy(update={"metrics": [
        "accuracy", "latency_ms", "flash_bytes", "sram_bytes"]})})  # fmt: skip
    study = run_study(config, create_or_resume(config, f"sqlite:///{tmp_path / 'v.db'}"), config_path=None)
    trial = study.trials[0]
    verified, estimated = trial.user_attrs["verified"], trial.user_attrs["estimated"]
    assert verified["device"] == "arduino-uno" and verified["matches_host"] is True and verified["fits"] is True
    values = dict(zip(config.objectives.metrics, trial.values, strict=True))
    for key in ("flash_bytes", "sram_bytes", "latency_ms"):
        assert values[key] == pytest.approx(verified[key])  # measured, not estimated
        # and the calibrated estimates agree with the build (Flash and SRAM exactly on this space)
        assert estimated[key] == pytest.approx(verified[key], rel=0.10)
    assert verified["sram_bytes"] > verified["stack_peak_bytes"] > 0
    assert trial.user_attrs["fits"]["fits:arduino-uno"] is (verified["violation"] <= 0)


def test_verify_on_a_device_without_simulator_is_refused_before_any_write(tmp_path, capsys):
    text = (ROOT / "studies/quickstart.toml").read_text().replace("threads = 1", "threads = 1\nverify = true")
    text = text.replace("[study]\n", f'[study]\nstorage = "sqlite:///{tmp_path / "q.db"}"\n')
    cfg = tmp_path / "q.toml"
    cfg.write_text(text)
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert "verify needs a microcontroller with a simulator" in err and "Traceback" not in err
    assert not (tmp_path / "q.db").exists()
