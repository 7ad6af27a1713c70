from __future__ import annotations

import optuna
import pytest

from jointnas.search.cli import main
from jointnas.search.samplers import NSGAIISampler, make_sampler
from jointnas.spaces import SpaceConfig, UserInputError

from ..conftest import TINY_CONFIG, write_config


@pytest.mark.parametrize("name", ["tpe", "nsga2", "random", "grid", "gp"])
def test_each_builtin_sampler_runs_a_study(tmp_path, capsys, name):
    cfg = write_config(tmp_path, TINY_CONFIG.replace('name = "random"', f'name = "{name}"'))
    assert main(["run", str(cfg), "--n-trials", "2"]) == 0, capsys.readouterr().err
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'tiny.db'}")
    assert len(study.best_trials) >= 1
    assert all(len(t.values) == 3 for t in study.trials)


def test_sampler_options_are_checked():
    sampler = make_sampler("nsga2", {"population_size": 4}, seed=1, space=SpaceConfig())
    assert isinstance(sampler, optuna.samplers.NSGAIISampler)
    with pytest.raises(UserInputError, match="sampler 'tpe' has no option 'population_size'; options: "):
        make_sampler("tpe", {"population_size": 4}, seed=1, space=SpaceConfig())
    with pytest.raises(UserInputError, match="has no option 'seed'"):
        make_sampler("random", {"seed": 4}, seed=1, space=SpaceConfig())


def test_constraints_make_feasible_trials_dominate(tmp_path, capsys):
    text = TINY_CONFIG.replace("[sampler]", "[constraints]\nflash_bytes = 1\n\n[sampler]")
    cfg = write_config(tmp_path, text)
    assert main(["run", str(cfg), "--n-trials", "2"]) == 0, capsys.readouterr().err
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'tiny.db'}")
    for t in study.trials:
        assert t.constraints == {"flash_bytes": t.values[2] - 1}
        assert t.user_attrs["fits"] == {"flash_bytes": False}
    assert study.best_trials == []  # nothing is feasible under a 1-byte budget


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ("{ multivariate = 7 }", "sampler 'tpe': options.multivariate: input should be a valid boolean (got 7)"),
        (
            '{ n_startup_trials = "x" }',
            "sampler 'tpe': options.n_startup_trials: input should be a valid integer (got 'x')",
        ),
    ],
)
def test_a_wrong_option_type_of_an_optuna_sampler_is_one_line_and_writes_nothing(tmp_path, capsys, options, message):
    text = TINY_CONFIG.replace('[sampler]\nname = "random"', f'[sampler]\nname = "tpe"\noptions = {options}')
    cfg = write_config(tmp_path, text)
    assert main(["run", str(cfg)]) == 2
    err = capsys.readouterr().err
    assert err.strip() == f"error: {message}" and "Traceback" not in err
    assert not (tmp_path / "tiny.db").exists()


def _conditional(trial: optuna.Trial) -> tuple[float, float]:
    """``b`` exists in every trial but number 1 (as ``s1_*`` exists only with two stages)."""
    a = trial.suggest_categorical("a", [0, 1, 2])
    b = trial.suggest_categorical("b", [0, 1]) if trial.number != 1 else 0
    return float(a + b), float(a * b)


@pytest.mark.parametrize("cls", [optuna.samplers.NSGAIISampler, NSGAIISampler])
def test_nsga2_children_take_only_what_every_parent_holds(cls):
    """The race of two workers, in one process: the relative space ``{a, b}`` was taken before trial 1
    (without ``b``) completed and joined the parents. Optuna's crossover fails on it; ours leaves ``b``
    to independent sampling."""
    study = optuna.create_study(directions=["minimize"] * 2, sampler=cls(seed=0, population_size=2, crossover_prob=1.0))
    study.optimize(_conditional, n_trials=2)
    trial = study._storage.get_trial(study.ask()._trial_id)
    stale = {name: optuna.distributions.CategoricalDistribution(c) for name, c in (("a", [0, 1, 2]), ("b", [0, 1]))}
    if cls is optuna.samplers.NSGAIISampler:
        with pytest.raises(KeyError, match="'b'"):
            study.sampler.sample_relative(study, trial, stale)
        return
    child = study.sampler.sample_relative(study, trial, stale)
    assert set(child) <= {"a"} and child.get("a", 0) in (0, 1, 2)


def test_nsga2_proposes_what_optunas_does_in_one_process():
    def run(cls):
        study = optuna.create_study(directions=["minimize"] * 2, sampler=cls(seed=3, population_size=4))
        study.optimize(_conditional, n_trials=16)
        return [t.params for t in study.trials]

    assert run(NSGAIISampler) == run(optuna.samplers.NSGAIISampler)
