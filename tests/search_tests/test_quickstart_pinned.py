"""The quickstart study's first five trials, pinned: refactors must not change what a study does.

Computed with ``studies/quickstart.toml``, seed 0, shortened to 2 training epochs and 1 fine-tuning epoch
for CI time, on main before the `[structure]` refactors (issue 14, pin commit 4e28300) and again after them.
NSGA-II samples its first population (10) independently, so the parameters do not depend on the measured
latencies and are checked on every machine; latency is timing and is not pinned.

Accuracy and even Flash (pruning keeps the channels the trained weights rank highest) depend on the float
kernels torch runs: the same commit gives other values under AVX2 than under AVX-512, and two AVX-512
machines (the pin's and a later CI machine's: 0.602 vs 0.554 for trial 0) disagreed too, so the CPU
capability is not key enough. The values are keyed by `kernel_fingerprint`, the bits a few training steps
through the layer kinds the quickstart uses leave in the weights; a machine whose fingerprint has no entry
checks the parameters and skips the values with the fingerprint to add (run this commit and 4e28300 there
and pin the values if they agree).
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.nn import functional as F

from jointnas.search.config import apply_overrides, load_config
from jointnas.search.study import create_or_resume, run_study

QUICKSTART = Path(__file__).resolve().parents[2] / "studies" / "quickstart.toml"


def kernel_fingerprint() -> str:
    """Hash of the weights after 5 AdamW steps of a conv/depthwise/BN/linear net on fixed data.

    Plain torch only, so it is the same function at every commit; it changes with the kernels torch
    dispatches to, the torch version and the thread count (8b8a… on one thread here, 12eb… on two;
    tests run on one).
    """
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(64, 1, 8, 8, generator=gen)
    y = torch.randint(0, 10, (64,), generator=gen)
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 8, 3, padding=1),
        nn.BatchNorm2d(8),
        nn.ReLU6(),
        nn.Conv2d(8, 8, 5, padding=2, groups=8),
        nn.Conv2d(8, 16, 1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    )
    opt = torch.optim.AdamW(net.parameters(), lr=1e-2)
    for _ in range(5):
        opt.zero_grad()
        F.cross_entropy(net(x), y).backward()
        opt.step()
    return hashlib.sha256(b"".join(p.detach().numpy().tobytes() for p in net.parameters())).hexdigest()[:16]


def test_kernel_fingerprint_is_deterministic() -> None:
    """The key must not change between runs on one machine, or the pinned values would never be checked."""
    assert kernel_fingerprint() == kernel_fingerprint()


# The parameters of trials 0..4 (any machine).
PARAMS = [
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
]

# kernel_fingerprint() → (validation accuracy, flash_bytes, test accuracy) of trials 0..4 under those kernels.
VALUES = {
    "8b8a5d5cd599e91a": [  # AVX2 (AMD EPYC), torch 2.13.0+cpu, one thread; identical at 4e28300 and after issue 14
        (0.6824512534818942, 14295.0, 0.637883008356546),
        (0.9498607242339833, 14458.0, 0.9415041782729805),
        (0.8022284122562674, 4816.0, 0.83008356545961),
        (0.7855153203342619, 18075.0, 0.7437325905292479),
        (0.947075208913649, 20638.0, 0.9108635097493036),
    ],
    "18b9b2187732ccf9": [  # AVX-512 + VNNI, torch 2.13.0+cpu, one thread; identical at 4e28300 and after issue 14
        (0.5543175487465181, 14292.0, 0.5348189415041783),
        (0.9415041782729805, 14458.0, 0.9303621169916435),
        (0.8579387186629527, 4820.0, 0.8022284122562674),
        (0.8495821727019499, 18073.0, 0.7994428969359332),
        (0.958217270194986, 20638.0, 0.9220055710306406),
    ],
}


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
    assert [t.params for t in trials] == PARAMS
    assert all(t.values[1] > 0 for t in trials)
    fingerprint = kernel_fingerprint()
    if fingerprint not in VALUES:
        pytest.skip(f"values pinned under kernel fingerprints {sorted(VALUES)}, this machine gives {fingerprint}")
    for trial, (accuracy, flash, test_accuracy) in zip(trials, VALUES[fingerprint], strict=True):
        assert trial.values[0] == accuracy, trial.number
        assert trial.values[2] == flash, trial.number
        assert trial.user_attrs["flash_bytes"] == flash
        assert trial.user_attrs["test_accuracy"] == test_accuracy, trial.number
