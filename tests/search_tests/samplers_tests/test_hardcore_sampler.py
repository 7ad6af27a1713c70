"""HardCoReNASSampler: Optuna sampler contract, hard budgets, infeasible budgets, supernet reuse."""

from __future__ import annotations

import multiprocessing
import sys

import optuna
import pytest
import torch

from jointnas.compression import PipelineConfig, fold_batchnorm
from jointnas.devices import LatencyTable
from jointnas.objectives import TaskConfig, load_task
from jointnas.search.cli import main
from jointnas.search.samplers import HardCoReNASSampler, make_sampler
from jointnas.search.samplers._hardcore import ATTR_BUDGET, ATTR_SUPERNET, arch_distributions
from jointnas.spaces import SpaceConfig, UserInputError, build_model, sample_candidate, trace_layers
from jointnas.spaces.profile import layer_flash_bytes

from ...conftest import TINY_CONFIG, write_config
from .conftest import SPACE as SHARED_SPACE

SPACE = SHARED_SPACE.model_copy(update={"compression": SpaceConfig().compression})  # architecture only
FAST = {"supernet_epochs": 1, "score_samples": 8, "fw_iterations": 10}


@pytest.fixture(scope="module")
def task():
    return load_task(TaskConfig())


@pytest.fixture(scope="module")
def table():
    return LatencyTable(None, warmup=1, repeats=3)


def _study(task, table, seed=0, **options):
    sampler = HardCoReNASSampler(SPACE, task=task, table=table, seed=seed, **{**FAST, **options})
    return optuna.create_study(sampler=sampler), sampler


def _objective(task, table):
    def objective(trial: optuna.Trial) -> float:
        candidate = sample_candidate(trial, SPACE, task.input_shape, task.num_classes)
        trial.study.sampler.record(trial)
        deployable = fold_batchnorm(build_model(candidate).eval())  # the form the objective prices
        trial.set_user_attr("fp32_ms", table.predict_ms(trace_layers(deployable, task.input_shape)))
        return float(sum(s.depth for s in candidate.stages))

    return objective


def test_proposals_are_valid_fit_their_budget_and_record_it(task, table):
    study, sampler = _study(task, table)
    study.optimize(_objective(task, table), n_trials=6)
    space = arch_distributions(SPACE)
    for t in study.trials:
        assert t.state == optuna.trial.TrialState.COMPLETE
        for name, dist in space.items():
            assert dist._contains(dist.to_internal_repr(t.params[name])), (name, t.params[name])
        # The hard guarantee: the built architecture's LUT latency is within the trial's budget.
        assert t.user_attrs["fp32_ms"] <= t.user_attrs[ATTR_BUDGET] + 1e-12
        assert t.user_attrs["hardcore:lut_latency_ms"] == pytest.approx(t.user_attrs["fp32_ms"], rel=1e-9)
    budgets = [t.user_attrs[ATTR_BUDGET] for t in study.trials]
    low, high = sampler.latency_range_ms()
    assert all(low <= b <= high for b in budgets) and len(set(budgets)) == 6
    # Compression knobs come from the inner sampler.
    assert {"s0_prune", "s0_wbits"} <= set(study.trials[0].params)


def test_a_flash_weight_spreads_over_trials_and_keeps_the_hard_budget(task, table):
    study, sampler = _study(task, table, flash_weight=2.0)
    study.optimize(_objective(task, table), n_trials=5)
    weights = [t.user_attrs["hardcore:flash_weight"] for t in study.trials]
    assert weights[0] == 0.0 and all(0 <= w < 2.0 for w in weights) and len(set(weights)) == 5
    assert all(t.user_attrs["fp32_ms"] <= t.user_attrs[ATTR_BUDGET] + 1e-12 for t in study.trials)
    assert len(sampler.flash) == len(sampler.models)
    plain, _ = _study(task, table)
    plain.optimize(_objective(task, table), n_trials=1)
    assert "hardcore:flash_weight" not in plain.trials[0].user_attrs  # default: latency only, as before


@pytest.mark.parametrize("budget", ["compute", "epochs"])
def test_inherited_finetune_epochs_match_compute_or_stay_fixed(task, table, budget):
    study, sampler = _study(task, table, finetune_epochs=2, finetune_budget=budget)
    pipeline = PipelineConfig(train_epochs=12)
    seen = []

    def objective(trial: optuna.Trial) -> float:
        candidate = sample_candidate(trial, SPACE, task.input_shape, task.num_classes)
        reason, model, trained = sampler.prepare_evaluation(trial, candidate, pipeline)
        assert reason is None and model is not None
        seen.append((trial.user_attrs["hardcore:lut_latency_ms"], trained.train_epochs))
        assert trial.user_attrs["hardcore:finetune_epochs"] == trained.train_epochs
        return 0.0

    study.optimize(objective, n_trials=6)
    slowest = sampler.latency_range_ms()[1]
    for ms, epochs in seen:
        # "compute": 2 epochs of the slowest sub-network's compute, so k times faster trains 2k, capped at 12.
        want = min(12, max(2, round(2 * slowest / ms))) if budget == "compute" else 2
        assert epochs == want, (ms, slowest, epochs)
    if budget == "compute":  # the schedule reaches fast sub-networks: some trials train longer
        assert max(e for _, e in seen) > 2


def test_flash_budgets_spread_over_trials_and_hold_beside_the_latency_budgets(task, table):
    study, sampler = _study(task, table, flash_budget="range", spacing="log")
    study.optimize(_objective(task, table), n_trials=6)
    low, high = min(f.min_ms for f in sampler.flash), max(f.max_ms for f in sampler.flash)
    caps = [t.user_attrs["hardcore:flash_budget_bytes"] for t in study.trials]
    assert all(low <= c <= high for c in caps) and len(set(caps)) == 6
    assert caps[0] == pytest.approx((low * high) ** 0.5)  # trial 0: the middle of the log range
    for t in study.trials:
        built = fold_batchnorm(
            build_model(
                sample_candidate(optuna.trial.FixedTrial(t.params), SPACE, task.input_shape, task.num_classes)
            ).eval()
        )
        flash = sum(layer_flash_bytes(layer) for layer in trace_layers(built, task.input_shape))
        assert t.user_attrs["hardcore:flash_bytes"] == flash
        # within its Flash budget, or (a scheduled budget below every sub-network within the latency
        # budget) raised to the smallest Flash found there, and recorded as raised
        cap = t.user_attrs.get("hardcore:flash_budget_raised_to", t.user_attrs["hardcore:flash_budget_bytes"])
        assert flash <= cap
        assert t.user_attrs["fp32_ms"] <= t.user_attrs[ATTR_BUDGET] + 1e-12
    slowest = sampler.latency_range_ms()[1]
    fixed, _ = _study(task, table, flash_budget=low, budget_ms=slowest)  # every sub-network fits the latency
    fixed.optimize(_objective(task, table), n_trials=2)
    assert [t.user_attrs["hardcore:flash_bytes"] for t in fixed.trials] == [low, low]  # the smallest Flash
    hard, _ = _study(task, table, flash_budget=low - 1, budget_ms=slowest)  # a fixed budget stays hard
    hard.optimize(_objective(task, table), n_trials=1)
    assert "Flash budget" in hard.trials[0].user_attrs["hardcore:infeasible"]


@pytest.mark.parametrize(
    ("objectives", "flash_aware"),
    [(None, False), (["accuracy", "latency_ms"], False), (["accuracy", "latency_ms", "flash_bytes"], True)],
)
def test_the_auto_flash_budget_follows_the_study_objectives(task, table, objectives, flash_aware):
    study, sampler = _study(task, table)  # flash_budget = "auto", the default
    if objectives is not None:
        sampler.set_context(task=task, objectives=objectives)
    study.optimize(_objective(task, table), n_trials=2)
    assert sampler.flash_budget() == ("range" if flash_aware else None)
    assert all(("hardcore:flash_budget_bytes" in t.user_attrs) == flash_aware for t in study.trials)
    assert bool(sampler.flash) == flash_aware


def test_same_seed_reproduces_the_proposals(task, table):
    runs = []
    for _ in range(2):
        study, _ = _study(task, table, seed=3)
        study.optimize(_objective(task, table), n_trials=3)
        runs.append([t.params for t in study.trials])
    assert runs[0] == runs[1]


def test_after_trial_bookkeeping_and_threads(task, table):
    study, sampler = _study(task, table)
    study.optimize(_objective(task, table), n_trials=4, n_jobs=2)
    assert sorted(sampler.completed) == [0, 1, 2, 3]
    assert sorted(sampler.results) == [0, 1, 2, 3]
    assert sampler.supernet_record["trained_here"] is True
    assert ATTR_SUPERNET in study.user_attrs  # the artifact record every worker reuses


def test_fixed_budget_below_the_smallest_subnetwork_is_marked_infeasible(task, table):
    study, sampler = _study(task, table, budget_ms=1e-6)
    study.optimize(_objective(task, table), n_trials=2)
    for t in study.trials:
        reason = t.user_attrs["hardcore:infeasible"]
        assert "below the smallest sub-network's LUT latency" in reason and "raise the budget" in reason


def test_options_are_validated():
    with pytest.raises(
        UserInputError,
        match=r"sampler 'hardcore': options.scoring: input should be 'inherited' or 'full' \(got 'fast'\)",
    ):
        HardCoReNASSampler(SPACE, scoring="fast")
    with pytest.raises(
        UserInputError, match=r"options.budget_ms: budget_ms must be a positive number or \[low, high\]"
    ):
        HardCoReNASSampler(SPACE, budget_ms=[1, 2, 3])
    with pytest.raises(UserInputError, match="options.flash_weight: input should be greater than or equal to 0"):
        HardCoReNASSampler(SPACE, flash_weight=-1.0)
    with pytest.raises(UserInputError, match="options.finetune_budget: input should be 'compute' or 'epochs'"):
        HardCoReNASSampler(SPACE, finetune_budget="time")
    with pytest.raises(UserInputError, match=r"options.flash_budget: flash_budget must be a positive number of bytes"):
        HardCoReNASSampler(SPACE, flash_budget=[100, -1])
    with pytest.raises(UserInputError, match="options.inner_sampler: input should be 'random' or 'tpe'"):
        HardCoReNASSampler(SPACE, inner_sampler="grid")
    with pytest.raises(UserInputError, match="sampler 'hardcore' has no option 'population_size'"):
        make_sampler("hardcore", {"population_size": 3}, seed=0, space=SPACE)
    with pytest.raises(UserInputError, match="family is 'mlp', use family = one of 'cnn', 'cnn1d' or another sampler"):
        make_sampler("hardcore", {}, seed=0, space=SpaceConfig(family="mlp"))
    with pytest.raises(UserInputError, match=r"options.supernet_epochs: input should be a valid integer \(got 1.5\)"):
        make_sampler("hardcore", {"supernet_epochs": 1.5}, seed=0, space=SPACE)
    sampler = make_sampler("hardcore", {"scoring": "full", "inner_sampler": "random"}, seed=0, space=SPACE)
    assert isinstance(sampler, HardCoReNASSampler) and sampler.scoring == "full"
    assert isinstance(sampler._inner, optuna.samplers.RandomSampler)
    # the default draws the compression knobs with multivariate TPE (the sampler benchmark's finding)
    inner = make_sampler("hardcore", {}, seed=0, space=SPACE)._inner
    assert isinstance(inner, optuna.samplers.TPESampler) and inner._multivariate


HARDCORE = TINY_CONFIG.replace(
    'name = "random"', 'name = "hardcore"\noptions = { supernet_epochs = 1, score_samples = 8, fw_iterations = 10 }'
)


@pytest.mark.parametrize("scoring", ["inherited", pytest.param("full", marks=pytest.mark.slow)])
def test_cli_study_with_hardcore_sampler(tmp_path, capsys, scoring):
    text = HARDCORE.replace("fw_iterations = 10", f'fw_iterations = 10, scoring = "{scoring}"')
    cfg = write_config(tmp_path, text.replace("train_epochs = 2", "train_epochs = 1"))
    assert main(["run", str(cfg), "--n-trials", "2"]) == 0, capsys.readouterr().err
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'tiny.db'}")
    assert len(study.trials) == 2 and all(t.state.name == "COMPLETE" for t in study.trials)
    for t in study.trials:
        assert t.user_attrs["fp32_latency_ms"] <= t.user_attrs[ATTR_BUDGET] + 1e-12
        assert (t.user_attrs.get("hardcore:scoring") == "inherited") == (scoring == "inherited")
        assert "hardcore:flash_budget_bytes" in t.user_attrs  # auto: the default objectives hold flash_bytes
    # The supernet lies in the study's artifact store, beside the trials' models.
    supernet = study.user_attrs["hardcore:supernet"]["artifact_id"]
    assert (tmp_path / "tiny-artifacts" / supernet).is_file()


def test_cli_infeasible_budgets_fail_with_a_reason_and_the_study_continues(tmp_path, capsys):
    # Trial 0's budget (1e-6 ms) lies below every sub-network: it fails with the reason, trial 1 runs.
    text = HARDCORE.replace(
        "fw_iterations = 10", 'fw_iterations = 10, budget_ms = [1e-6, 1.0], schedule = "sweep", n_budgets = 2'
    )
    cfg = write_config(tmp_path, text.replace("train_epochs = 2", "train_epochs = 1"))
    assert main(["run", str(cfg), "--n-trials", "2"]) == 0, capsys.readouterr().err
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'tiny.db'}")
    assert [t.state.name for t in study.trials] == ["FAIL", "COMPLETE"]
    failed = study.trials[0]
    assert failed.user_attrs[ATTR_BUDGET] == 1e-6
    assert "below the smallest sub-network's LUT latency" in failed.user_attrs["fail_reason"]
    assert "#0 fail latency budget 1e-06 ms is below" in capsys.readouterr().err


def _worker(url: str, out) -> None:
    import torch

    torch.set_num_threads(1)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    task = load_task(TaskConfig())
    sampler = HardCoReNASSampler(SPACE, task=task, table=LatencyTable(None, warmup=1, repeats=3), **FAST)
    study = optuna.load_study(study_name="shared", storage=url, sampler=sampler)
    study.optimize(_objective(task, sampler.table), n_trials=2)
    out.put((sampler.supernet_record["trained_here"], sampler.supernet_record["artifact_id"]))


@pytest.mark.skipif(sys.platform == "win32", reason="fork start method")
def test_two_worker_processes_train_the_supernet_once(tmp_path):
    url = f"sqlite:///{tmp_path / 'shared.db'}"
    optuna.create_study(study_name="shared", storage=url)
    ctx = multiprocessing.get_context("fork")
    out = ctx.Queue()
    procs = [ctx.Process(target=_worker, args=(url, out)) for _ in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    results = [out.get(timeout=5) for _ in procs]
    assert sorted(trained for trained, _ in results) == [False, True]
    assert len({artifact for _, artifact in results}) == 1
    study = optuna.load_study(study_name="shared", storage=url)
    assert len(study.trials) == 4 and all(t.state.name == "COMPLETE" for t in study.trials)


def test_budget_schedules_cover_the_range_and_respect_the_latency_constraint():
    import numpy as np

    from jointnas.search.samplers._hardcore_latency import LatencyModel, Macro

    model = LatencyModel(Macro(8, (1.0,)), 0.5, [np.array([[1.0, 2.0], [1.0, 2.0]])], (1, 2))  # 1.5 … 4.5 ms
    sampler = HardCoReNASSampler(SPACE)
    sampler.models = [model]
    golden = [sampler.budget_for(k) for k in range(20)]
    assert all(1.5 <= b <= 4.5 for b in golden)
    assert min(golden) < 1.8 and max(golden) > 4.2  # any 20-trial prefix covers the range
    sampler.latency_cap_ms = 2.0  # [constraints] latency_ms caps the schedule
    assert all(1.5 <= sampler.budget_for(k) <= 2.0 for k in range(20))
    sweep = HardCoReNASSampler(SPACE, schedule="sweep", n_budgets=4, budget_ms=[1.0, 4.0])
    sweep.models = [model]
    assert [sweep.budget_for(k) for k in range(5)] == [1.0, 2.0, 3.0, 4.0, 1.0]
    log = HardCoReNASSampler(SPACE, schedule="sweep", n_budgets=3, budget_ms=[1.0, 4.0], spacing="log")
    log.models = [model]
    assert [log.budget_for(k) for k in range(3)] == pytest.approx([1.0, 2.0, 4.0])  # equal ratios
    golden_log = HardCoReNASSampler(SPACE, budget_ms=[0.02, 0.5], spacing="log")
    golden_log.models = [model]
    budgets = np.array([golden_log.budget_for(k) for k in range(30)])
    assert 13 <= np.sum(budgets < 0.1) <= 17  # half below the geometric mean 0.1 ms (linear: 1 in 6)


def test_hardcore_searches_a_cnn1d_space_on_mnist1d_within_every_budget(table):
    """MNIST-1D through a ``cnn1d`` space: the elastic supernet's macros (widths searched) are 1-D
    models, and every proposal's LUT latency is within its budget, by the built model's trace."""
    import dataclasses

    full = load_task(TaskConfig(dataset="mnist1d", val_fraction=0.2))
    task = dataclasses.replace(
        full, x_train=full.x_train[:256], y_train=full.y_train[:256], x_val=full.x_val[:128], y_val=full.y_val[:128]
    )
    space = SPACE.model_copy(update={"family": "cnn1d"})
    sampler = HardCoReNASSampler(space, task=task, table=table, seed=0, **FAST)
    study = optuna.create_study(sampler=sampler)

    def objective(trial):
        c = sample_candidate(trial, space, task.input_shape, task.num_classes)
        sampler.record(trial)
        model = fold_batchnorm(build_model(c).eval())
        assert isinstance(model.stem.conv, torch.nn.Conv1d)
        lat = table.predict_ms(trace_layers(model, task.input_shape))
        assert lat == pytest.approx(trial.user_attrs["hardcore:lut_latency_ms"], rel=1e-9)
        assert lat <= trial.user_attrs[ATTR_BUDGET] + 1e-12
        return lat

    study.optimize(objective, n_trials=6)
    assert all(t.state.name == "COMPLETE" for t in study.trials)
    assert len(sampler.macros) == 2 + 4  # 1 or 2 stages, widths 0.5 / 1.0 each, one stem
    assert all("s0_width" in t.params for t in study.trials)  # widths come from the sampler's macros


def test_a_second_study_on_the_same_store_starts_without_supernet_training(task, tmp_path, monkeypatch):
    """Train once, search many: another study (name, latency budget and device table) on the same
    artifact directory finds the supernet by its fingerprint; it records 0 s of supernet training."""
    from jointnas.search.samplers import _hardcore_supernet as sn

    store = str(tmp_path / "shared-artifacts")
    first = HardCoReNASSampler(SPACE, task=task, table=LatencyTable(None, warmup=1, repeats=3), seed=0,
                               artifact_store=store, **FAST)  # fmt: skip
    a = optuna.create_study(sampler=first, storage=f"sqlite:///{tmp_path / 'a.db'}", study_name="a")
    a.optimize(_objective(task, first.table), n_trials=2)
    assert a.user_attrs["hardcore:supernet_train_s"] > 0
    assert all(t.user_attrs["hardcore:supernet_train_s"] > 0 for t in a.trials)

    def no_training(*args, **kwargs):
        raise AssertionError("the second study must not train a supernet")

    monkeypatch.setattr(sn, "train_supernet", no_training)
    other_table = LatencyTable(None, warmup=1, repeats=2)
    high = first.latency_range_ms()[1]
    second = HardCoReNASSampler(
        SPACE, task=task, table=other_table, seed=0, artifact_store=store, budget_ms=[0.5 * high, high], **FAST
    )
    b = optuna.create_study(sampler=second, storage=f"sqlite:///{tmp_path / 'b.db'}", study_name="b")
    b.optimize(_objective(task, other_table), n_trials=2)
    assert [t.state.name for t in b.trials] == ["COMPLETE", "COMPLETE"]
    assert b.user_attrs["hardcore:supernet_train_s"] == 0.0 and b.user_attrs[ATTR_SUPERNET]["reused"] is True
    assert all(t.user_attrs["hardcore:supernet_train_s"] == 0.0 for t in b.trials)
    state_a, state_b = first.supernet.state_dict(), second.supernet.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
