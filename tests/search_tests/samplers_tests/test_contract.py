"""Contract tests every sampler passes: Optuna's built-ins and the supernet samplers alike."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import optuna
import pytest
from optuna.trial import TrialState

from jointnas.spaces import grid_search_space, sample_candidate

from .conftest import SAMPLER_FACTORIES, cheap_objective

DIRECTIONS = ["maximize", "minimize", "minimize"]
NAMES = sorted(SAMPLER_FACTORIES)


def _run(sampler, ctx, n_trials: int, storage=None, n_jobs: int = 1, name: str = "s") -> optuna.Study:
    study = optuna.create_study(
        directions=DIRECTIONS, sampler=sampler, storage=storage, study_name=name, load_if_exists=True
    )
    study.optimize(cheap_objective(ctx.space, ctx.task), n_trials=n_trials, n_jobs=n_jobs)
    return study


def _assert_valid(trials, ctx) -> None:
    grid = grid_search_space(ctx.space)
    for t in trials:
        assert t.state == TrialState.COMPLETE
        for name, value in t.params.items():
            assert value in grid[name], (name, value)
        # the params rebuild a candidate of the space (nothing missing, nothing extra)
        fixed = optuna.trial.FixedTrial(t.params)
        sample_candidate(fixed, ctx.space, ctx.task.input_shape, ctx.task.num_classes)
        assert set(fixed.params) == set(t.params)


@pytest.mark.parametrize("name", NAMES)
def test_every_proposal_is_valid_in_the_space(name, ctx):
    study = _run(SAMPLER_FACTORIES[name](ctx, 0), ctx, 7)
    assert len(study.trials) == 7
    _assert_valid(study.trials, ctx)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_reproduces(name, ctx):
    first = _run(SAMPLER_FACTORIES[name](ctx, 3), ctx, 5)
    ctx.tmp = ctx.tmp / "again"  # a fresh artifact store: the supernet is trained again
    second = _run(SAMPLER_FACTORIES[name](ctx, 3), ctx, 5)
    assert [t.params for t in first.trials] == [t.params for t in second.trials]


@pytest.mark.parametrize("name", NAMES)
def test_after_trial_bookkeeping(name, ctx):
    sampler = SAMPLER_FACTORIES[name](ctx, 0)
    seen = []
    original = sampler.after_trial

    def spy(study, trial, state, values):
        seen.append((trial.number, state, None if values is None else len(values)))
        original(study, trial, state, values)

    sampler.after_trial = spy
    objective = cheap_objective(ctx.space, ctx.task)

    def sometimes_fails(trial):
        values = objective(trial)
        if trial.number == 1:
            raise RuntimeError("boom")
        return values

    study = optuna.create_study(directions=DIRECTIONS, sampler=sampler)
    study.optimize(sometimes_fails, n_trials=4, catch=(RuntimeError,))
    assert seen == [(0, TrialState.COMPLETE, 3), (1, TrialState.FAIL, None)] + [
        (n, TrialState.COMPLETE, 3) for n in (2, 3)
    ]
    _assert_valid([t for t in study.trials if t.number != 1], ctx)


@pytest.mark.parametrize("name", NAMES)
def test_two_threads_on_one_storage(name, ctx):
    storage = f"sqlite:///{ctx.tmp / 'threads.db'}"
    study = _run(SAMPLER_FACTORIES[name](ctx, 0), ctx, 6, storage=storage, n_jobs=2)
    assert len(study.trials) == 6
    _assert_valid(study.trials, ctx)


WORKER = """
import optuna, sys
from pathlib import Path
from tests.search_tests.samplers_tests.conftest import SAMPLER_FACTORIES, SPACE, Context, small_task, cheap_objective
from jointnas.devices import LatencyTable
optuna.logging.set_verbosity(optuna.logging.WARNING)
name, storage, tmp = sys.argv[1], sys.argv[2], Path(sys.argv[3])
task = small_task()
ctx = Context(SPACE, task, LatencyTable(None, warmup=1, repeats=3), tmp)
study = optuna.create_study(directions={directions!r}, sampler=SAMPLER_FACTORIES[name](ctx, 0), storage=storage,
                            study_name="mp", load_if_exists=True)
study.optimize(cheap_objective(SPACE, task), n_trials=3)
"""


@pytest.mark.parametrize("name", NAMES)
def test_two_processes_on_one_storage(name, ctx, tmp_path):
    storage = f"sqlite:///{tmp_path / 'mp.db'}"
    optuna.create_study(directions=DIRECTIONS, storage=storage, study_name="mp")  # no creation race
    code = textwrap.dedent(WORKER.format(directions=DIRECTIONS))
    procs = [
        subprocess.Popen([sys.executable, "-c", code, name, storage, str(tmp_path)], stderr=subprocess.PIPE)
        for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=300)
        assert p.returncode == 0, err.decode()[-2000:]
    study = optuna.load_study(study_name="mp", storage=storage)
    assert len(study.trials) == 6
    _assert_valid(study.trials, ctx)
    if name in ("dnas", "hardcore"):  # the supernet trained once, reused by the other worker
        assert len(optuna.artifacts.get_all_artifact_meta(study)) == 1
        assert study.user_attrs[f"{name}:supernet"]["artifact_id"]
