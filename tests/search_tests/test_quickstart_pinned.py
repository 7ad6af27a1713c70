"""The quickstart study's first five trials, pinned: refactors must not change what a study does.

Computed on main before the `[structure]` refactors (issue 14) with ``studies/quickstart.toml``,
seed 0, shortened to 2 training epochs and 1 fine-tuning epoch for CI time. NSGA-II samples its first
population (10) independently, so the parameters do not depend on the measured latencies; latency is
timing and is not pinned, every other value is.

The float values depend on the CPU kernels torch dispatches to (``ATEN_CPU_CAPABILITY``): the same commit
gives other accuracies under AVX2 than under AVX-512, and the first pin (computed on another machine)
matched neither here. The values below were recomputed on CI's machine (AVX-512, one torch thread as
``tests/conftest.py`` sets) at the pin commit 4e28300 and are identical at the end of the refactors; on
another capability the parameters are still checked and the values are skipped with the reason.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import torch

from jointnas.search.config import apply_overrides, load_config
from jointnas.search.study import create_or_resume, run_study

QUICKSTART = Path(__file__).resolve().parents[2] / "studies" / "quickstart.toml"

PINNED_CAPABILITY = "AVX512"  # torch.backends.cpu.get_cpu_capability() where the values were computed

# (params, validation accuracy, flash_bytes, test accuracy) of trials 0..4.
EXPECTED = [
    (
        {
            "stem_channels": 16,
            "n_stages": 2,
            "s0_width": 1.0,
            "s0_depth": 1,
            "s0_kernel": 5,
            "s0_expansion": 4,
            "s0_prune": 0.25,
            "s0_rank": 1.0,
            "s0_wbits": 32,
            "s0_abits": 32,
            "s1_width": 0.5,
            "s1_depth": 2,
            "s1_kernel": 5,
            "s1_expansion": 4,
            "s1_prune": 0.25,
            "s1_rank": 0.5,
            "s1_wbits": 2,
            "s1_abits": 8,
        },
        0.6016713091922006,
        14295.0,
        0.6044568245125348,
    ),
    (
        {
            "stem_channels": 16,
            "n_stages": 3,
            "s0_width": 1.0,
            "s0_depth": 1,
            "s0_kernel": 5,
            "s0_expansion": 6,
            "s0_prune": 0.125,
            "s0_rank": 0.75,
            "s0_wbits": 4,
            "s0_abits": 32,
            "s1_width": 0.75,
            "s1_depth": 1,
            "s1_kernel": 5,
            "s1_expansion": 6,
            "s1_prune": 0.5,
            "s1_rank": 0.5,
            "s1_wbits": 8,
            "s1_abits": 8,
            "s2_width": 0.5,
            "s2_depth": 1,
            "s2_kernel": 3,
            "s2_expansion": 4,
            "s2_prune": 0.375,
            "s2_rank": 0.75,
            "s2_wbits": 32,
            "s2_abits": 8,
        },
        0.9498607242339833,
        14458.0,
        0.924791086350975,
    ),
    (
        {
            "stem_channels": 8,
            "n_stages": 3,
            "s0_width": 1.0,
            "s0_depth": 1,
            "s0_kernel": 3,
            "s0_expansion": 6,
            "s0_prune": 0.5,
            "s0_rank": 0.5,
            "s0_wbits": 4,
            "s0_abits": 8,
            "s1_width": 0.5,
            "s1_depth": 2,
            "s1_kernel": 5,
            "s1_expansion": 4,
            "s1_prune": 0.375,
            "s1_rank": 0.75,
            "s1_wbits": 2,
            "s1_abits": 32,
            "s2_width": 0.5,
            "s2_depth": 1,
            "s2_kernel": 5,
            "s2_expansion": 4,
            "s2_prune": 0.375,
            "s2_rank": 0.75,
            "s2_wbits": 4,
            "s2_abits": 8,
        },
        0.8161559888579387,
        4818.0,
        0.8105849582172702,
    ),
    (
        {
            "stem_channels": 8,
            "n_stages": 3,
            "s0_width": 0.75,
            "s0_depth": 2,
            "s0_kernel": 5,
            "s0_expansion": 4,
            "s0_prune": 0.25,
            "s0_rank": 0.75,
            "s0_wbits": 32,
            "s0_abits": 32,
            "s1_width": 0.5,
            "s1_depth": 2,
            "s1_kernel": 5,
            "s1_expansion": 4,
            "s1_prune": 0.375,
            "s1_rank": 0.5,
            "s1_wbits": 4,
            "s1_abits": 32,
            "s2_width": 1.0,
            "s2_depth": 2,
            "s2_kernel": 5,
            "s2_expansion": 2,
            "s2_prune": 0.125,
            "s2_rank": 0.5,
            "s2_wbits": 2,
            "s2_abits": 8,
        },
        0.8495821727019499,
        18076.0,
        0.8272980501392758,
    ),
    (
        {
            "stem_channels": 8,
            "n_stages": 3,
            "s0_width": 0.5,
            "s0_depth": 1,
            "s0_kernel": 3,
            "s0_expansion": 6,
            "s0_prune": 0.125,
            "s0_rank": 0.75,
            "s0_wbits": 8,
            "s0_abits": 32,
            "s1_width": 1.0,
            "s1_depth": 1,
            "s1_kernel": 3,
            "s1_expansion": 2,
            "s1_prune": 0.5,
            "s1_rank": 1.0,
            "s1_wbits": 8,
            "s1_abits": 32,
            "s2_width": 0.75,
            "s2_depth": 2,
            "s2_kernel": 3,
            "s2_expansion": 6,
            "s2_prune": 0.125,
            "s2_rank": 0.75,
            "s2_wbits": 8,
            "s2_abits": 8,
        },
        0.9526462395543176,
        20638.0,
        0.9275766016713092,
    ),
]


def test_quickstart_first_five_trials_are_pinned(tmp_path: Path) -> None:
    config_path = tmp_path / "quickstart.toml"
    shutil.copy(QUICKSTART, config_path)
    config = apply_overrides(
        load_config(config_path),
        **{
            "study.storage": f"sqlite:///{tmp_path / 'pin.db'}",
            "budget.n_trials": 5,
            "pipeline.train_epochs": 2,
            "pipeline.finetune_epochs": 1,
        },
    )
    assert config.study.seed == 0
    study = create_or_resume(config, config.study.storage)
    run_study(config, study, config_path=config_path)
    trials = study.trials[:5]
    assert [t.state.name for t in trials] == ["COMPLETE"] * 5
    assert study.metric_names == ["accuracy", "latency_ms", "flash_bytes"]
    assert [t.params for t in trials] == [params for params, *_ in EXPECTED]
    assert all(t.values[1] > 0 for t in trials)
    capability = torch.backends.cpu.get_cpu_capability()
    if capability != PINNED_CAPABILITY:
        pytest.skip(f"values pinned under {PINNED_CAPABILITY} kernels, this machine runs {capability}")
    for trial, (_, accuracy, flash, test_accuracy) in zip(trials, EXPECTED, strict=True):
        assert trial.values[0] == accuracy, trial.number
        assert trial.values[2] == flash, trial.number
        assert trial.user_attrs["flash_bytes"] == flash
        assert trial.user_attrs["test_accuracy"] == test_accuracy, trial.number
