"""Shared pieces of the sampler contract tests: a tiny task, a cheap objective, sampler factories.

Supernet samplers register a factory in `SAMPLER_FACTORIES` (name → ``fn(ctx, seed) -> sampler``);
every contract test in ``test_contract.py`` then runs for them too.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
import pytest

from jointnas.devices import LatencyTable
from jointnas.objectives import TaskConfig, TaskData, load_task
from jointnas.search.samplers import DNASSampler, HardCoReNASSampler, NSGAIISampler
from jointnas.spaces import SpaceConfig, sample_candidate

SPACE = SpaceConfig(
    stages=[8, 16],
    strides=[1, 2],
    depth=(1, 2),
    width_mult=[0.5, 1.0],
    kernel=[3, 5],
    expansion=[2, 4],
    stem_channels=[8],
    compression={"weight_bits": [4, 8, 32], "act_bits": [8, 32], "prune_ratio": (0.0, 0.5), "prune_step": 0.25},
)


@dataclasses.dataclass
class Context:
    """What a sampler factory may use: the space, a small task, a latency table and a scratch folder."""

    space: SpaceConfig
    task: TaskData
    table: LatencyTable
    tmp: Path


def small_task(n_train: int = 256, n_val: int = 128) -> TaskData:
    task = load_task(TaskConfig())
    return dataclasses.replace(
        task,
        x_train=task.x_train[:n_train],
        y_train=task.y_train[:n_train],
        x_val=task.x_val[:n_val],
        y_val=task.y_val[:n_val],
    )


def _dnas(ctx: Context, seed: int) -> optuna.samplers.BaseSampler:
    return DNASSampler(
        ctx.space,
        task=ctx.task,
        table=ctx.table,
        lambdas=[0.0, 1.0, 5.0],
        epochs=2,
        warmup_epochs=1,
        artifact_store=str(ctx.tmp / "artifacts"),
        seed=seed,
    )


def _hardcore(ctx: Context, seed: int) -> optuna.samplers.BaseSampler:
    return HardCoReNASSampler(
        ctx.space,
        task=ctx.task,
        table=ctx.table,
        supernet_epochs=1,
        score_samples=8,
        fw_iterations=10,
        artifact_store=str(ctx.tmp / "artifacts"),
        seed=seed,
    )


SAMPLER_FACTORIES: dict[str, Callable[[Context, int], optuna.samplers.BaseSampler]] = {
    "random": lambda ctx, seed: optuna.samplers.RandomSampler(seed=seed),
    "tpe": lambda ctx, seed: optuna.samplers.TPESampler(seed=seed, n_startup_trials=3),
    "nsga2": lambda ctx, seed: NSGAIISampler(seed=seed, population_size=4),  # what `make_sampler` builds
    "dnas": _dnas,
    "hardcore": _hardcore,
}
"""Sampler factories the contract tests run over."""


@pytest.fixture(scope="session")
def task() -> TaskData:
    return small_task()


@pytest.fixture(scope="session")
def table() -> LatencyTable:
    return LatencyTable(None, warmup=1, repeats=3)


@pytest.fixture
def ctx(task, table, tmp_path) -> Context:
    return Context(SPACE, task, table, tmp_path)


def cheap_objective(space: SpaceConfig, task: TaskData) -> Callable[[optuna.Trial], Any]:
    """Three objectives without training: -MAC proxy 'accuracy', depth·kernel, mean weight bits."""

    def objective(trial: optuna.Trial) -> tuple[float, float, float]:
        c = sample_candidate(trial, space, task.input_shape, task.num_classes)
        record = getattr(trial.study.sampler, "record", None)
        if record is not None:  # supernet samplers: their per-trial record into the user attrs
            record(trial)
        size = sum(s.channels * s.expansion * s.depth * s.kernel for s in c.stages)
        bits = sum(s.weight_bits for s in c.stages) / len(c.stages)
        return float(size), float(sum(s.depth * s.kernel for s in c.stages)), bits

    return objective
