from __future__ import annotations

import optuna
import pytest
import torch

import jointnas.search.samplers._dnas as dnas_module
from jointnas.compression import fold_batchnorm
from jointnas.compression.dnas import DNASConfig, init_logits, temperature
from jointnas.search.cli import main
from jointnas.search.samplers import DNASSampler, make_sampler
from jointnas.spaces import SpaceConfig, UserInputError, build_model, sample_candidate, trace_layers
from jointnas.spaces.supernet import Supernet

from ...conftest import TINY_CONFIG, write_config
from .conftest import SPACE, cheap_objective


def _derived_choice(sampler: DNASSampler, anchor: int) -> dict:
    """The most probable architecture of anchor ``anchor`` (after training or loading)."""
    assert sampler._logits is not None, "train or load the supernet first"
    return sampler._supernet().choice_from_probs({n: torch.softmax(v, 0) for n, v in sampler._logits[anchor].items()})


def _lut_latency(sampler: DNASSampler, choice) -> float:
    """LUT latency of the deployable model of ``choice``, as the objective measures it."""
    net = sampler._supernet()
    cand = net.to_candidate(choice)
    return sampler.table.predict_ms(trace_layers(fold_batchnorm(build_model(cand).eval()), net.input_shape))


def test_raising_lambda_latency_lowers_the_derived_architectures_latency(ctx):
    lambdas = [0.0, 1.0, 3.0, 10.0, 30.0]
    sampler = DNASSampler(
        ctx.space,
        task=ctx.task,
        table=ctx.table,
        lambdas=[[lam, 0.0] for lam in lambdas],
        epochs=5,
        warmup_epochs=1,
        artifact_store=str(ctx.tmp),
        seed=0,
    )
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"], sampler=sampler)
    study.optimize(cheap_objective(ctx.space, ctx.task), n_trials=len(lambdas))
    latency = [_lut_latency(sampler, _derived_choice(sampler, k)) for k in range(len(lambdas))]
    inversions = sum(b > a * (1 + 1e-9) for a, b in zip(latency, latency[1:], strict=False))
    print("derived LUT latency per lambda:", latency)
    assert inversions <= 1, latency
    assert latency[-1] < latency[0], latency
    # trial k proposed anchor k's derived architecture and recorded its λ
    for k, t in enumerate(study.trials):
        assert t.user_attrs["dnas:lambda"]["latency_ms"] == lambdas[k]
        assert t.user_attrs["dnas:anchor"] == k and t.user_attrs["dnas:pass"] == 0
        net = sampler._supernet()
        expected = net.params_of(_derived_choice(sampler, k))
        assert {n: t.params[n] for n in expected} == expected
    entropy = study.user_attrs["dnas:alpha_entropy"]
    assert len(entropy) == 5 and entropy[-1] < entropy[0]  # α sharpen once trained
    assert study.user_attrs["dnas:train_s"] > 0


def test_a_second_worker_loads_the_stored_supernet_instead_of_training(ctx, monkeypatch, tmp_path):
    storage = f"sqlite:///{tmp_path / 's.db'}"
    kwargs = dict(task=ctx.task, table=ctx.table, lambdas=[0.0, 3.0], epochs=2, warmup_epochs=1, seed=1)
    first = DNASSampler(ctx.space, **kwargs)  # default artifact store: next to the SQLite file
    study = optuna.create_study(directions=["maximize"] * 3, sampler=first, storage=storage, study_name="w")
    study.optimize(cheap_objective(ctx.space, ctx.task), n_trials=2)
    assert (tmp_path / "w-artifacts").is_dir()

    def no_training(*args, **kwargs):
        raise AssertionError("the second worker must not train")

    monkeypatch.setattr(dnas_module, "train_dnas", no_training)
    second = DNASSampler(ctx.space, **kwargs)
    again = optuna.load_study(study_name="w", storage=storage, sampler=second)
    again.optimize(cheap_objective(ctx.space, ctx.task), n_trials=2)
    for k in range(2):
        assert _derived_choice(second, k) == _derived_choice(first, k)
    state_a, state_b = first._supernet().state_dict(), second._supernet().state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)


def test_temperature_anneals_exponentially_and_alpha_starts_biased():
    cfg = DNASConfig(epochs=5, tau_start=4.0, tau_end=0.25)
    taus = [temperature(e, cfg) for e in range(5)]
    assert taus[0] == pytest.approx(4.0) and taus[-1] == pytest.approx(0.25)
    ratios = [b / a for a, b in zip(taus, taus[1:], strict=False)]
    assert ratios == pytest.approx([0.5] * 4)
    net = Supernet(SPACE, (1, 8, 8), 10)
    logits = init_logits(net, {"wbits=8": 2.0, "s1_kernel=5": 1.0})
    assert logits["s0_wbits"].tolist() == [0.0, 2.0, 0.0]  # options (4, 8, 32)
    assert logits["s1_kernel"].tolist() == [0.0, 1.0] and logits["s0_kernel"].tolist() == [0.0, 0.0]


def test_make_sampler_builds_dnas_with_checked_options():
    sampler = make_sampler("dnas", {"lambdas": [0.0, [1.0, 0.5]], "epochs": 3}, seed=2, space=SpaceConfig())
    assert isinstance(sampler, DNASSampler) and sampler.seed == 2
    assert sampler.anchors[1] == {"latency_ms": 1.0, "flash_bytes": 0.5, "sram_bytes": 0.0}
    with pytest.raises(UserInputError, match="sampler 'dnas' has no option 'lambda'"):
        make_sampler("dnas", {"lambda": 1.0}, seed=0, space=SpaceConfig())
    with pytest.raises(UserInputError, match="sampler 'dnas': options.lambdas: lambdas entry 'x' must be a number"):
        make_sampler("dnas", {"lambdas": ["x"]}, seed=0, space=SpaceConfig())
    with pytest.raises(UserInputError, match="sampler 'dnas': options: warmup_epochs 3 must be below epochs 3"):
        make_sampler("dnas", {"epochs": 3, "warmup_epochs": 3}, seed=0, space=SpaceConfig())
    with pytest.raises(UserInputError, match=r"options.fallback: input should be 'random' or 'tpe' \(got 'grid'\)"):
        make_sampler("dnas", {"fallback": "grid"}, seed=0, space=SpaceConfig())
    with pytest.raises(UserInputError, match=r"a supernet covers \('cnn', 'cnn1d'\), not 'mlp'"):
        make_sampler("dnas", {}, seed=0, space=SpaceConfig(family="mlp"))


def test_dnas_runs_a_jointnas_study_from_the_study_file(tmp_path, capsys):
    text = TINY_CONFIG.replace(
        '[sampler]\nname = "random"',
        '[sampler]\nname = "dnas"\noptions = { lambdas = [0.0, 2.0], epochs = 2, warmup_epochs = 1 }',
    )
    cfg = write_config(tmp_path, text)
    assert main(["run", str(cfg), "--n-trials", "2"]) == 0, capsys.readouterr().err
    study = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'tiny.db'}")
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    assert [t.user_attrs["dnas:lambda"]["latency_ms"] for t in study.trials] == [0.0, 2.0]
    assert len(study.user_attrs["dnas:alpha_entropy"]) == 2
    # One supernet, in the study's artifact store beside the trials' models.
    assert len(optuna.artifacts.get_all_artifact_meta(study)) == 1
    supernet = study.user_attrs["dnas:supernet"]["artifact_id"]
    assert (tmp_path / "tiny-artifacts" / supernet).is_file()


def test_dnas_searches_a_cnn1d_space_on_mnist1d(ctx):
    """The supernet covers 1-D series: MNIST-1D (40 points) through a ``cnn1d`` space, Conv1d all the way."""
    import dataclasses

    from jointnas.objectives import TaskConfig, load_task

    full = load_task(TaskConfig(dataset="mnist1d", val_fraction=0.2))
    task = dataclasses.replace(
        full, x_train=full.x_train[:256], y_train=full.y_train[:256], x_val=full.x_val[:128], y_val=full.y_val[:128]
    )
    space = ctx.space.model_copy(update={"family": "cnn1d"})
    lambdas = [0.0, 30.0]
    sampler = DNASSampler(
        space, task=task, table=ctx.table, lambdas=[[lam, 0.0] for lam in lambdas], epochs=3, warmup_epochs=1, seed=0
    )
    study = optuna.create_study(directions=["maximize", "minimize", "minimize"], sampler=sampler)
    study.optimize(cheap_objective(space, task), n_trials=len(lambdas))
    assert sampler._supernet().input_shape == (1, 40)
    latency = [_lut_latency(sampler, _derived_choice(sampler, k)) for k in range(len(lambdas))]
    assert latency[1] < latency[0], latency  # the latency penalty picks a faster series model
    for k, t in enumerate(study.trials):
        expected = sampler._supernet().params_of(_derived_choice(sampler, k))
        assert {n: t.params[n] for n in expected} == expected
    model = build_model(sampler._supernet().to_candidate(_derived_choice(sampler, 0)))
    assert isinstance(model.stem.conv, torch.nn.Conv1d)
    keys = [spec.key for spec in ctx.table.blocks(trace_layers(fold_batchnorm(model.eval()), (1, 40)))]
    assert keys[0].split("|")[1] == "in=1x40", keys  # priced as 1-D blocks: (C, L) input shapes


def test_inherited_scoring_starts_proposals_from_the_supernet_weights(ctx):
    """``scoring = "inherited"``: the objective gets the proposal's model with the supernet's weights
    (same outputs as the supernet's path) and a pipeline that trains ``finetune_epochs``."""
    from jointnas.compression import PipelineConfig

    sampler = DNASSampler(
        ctx.space, task=ctx.task, table=ctx.table, lambdas=[0.0, 3.0], epochs=2, warmup_epochs=1, seed=0,
        scoring="inherited", finetune_epochs=1,
    )  # fmt: skip
    study = optuna.create_study(directions=["maximize"] * 3, sampler=sampler)
    study.optimize(cheap_objective(ctx.space, ctx.task), n_trials=2)
    net = sampler._supernet()
    pipeline = PipelineConfig(train_epochs=9)
    trial = study.ask()
    candidate = sample_candidate(trial, ctx.space, ctx.task.input_shape, ctx.task.num_classes)
    reason, model, tuned = sampler.prepare_evaluation(trial, candidate, pipeline)
    assert reason is None and tuned.train_epochs == 1 and tuned.finetune_epochs == pipeline.finetune_epochs
    assert trial.user_attrs["dnas:scoring"] == "inherited"
    x = ctx.task.x_val[:16]
    float_choice = {**net.choice_of(candidate), **{d.name: 32 for d in net.decisions if d.kind in ("wbits", "abits")}}
    torch.testing.assert_close(model.eval()(x), net.eval()(x, float_choice))
    full = DNASSampler(ctx.space, task=ctx.task, table=ctx.table, seed=0)
    assert full.prepare_evaluation(trial, candidate, pipeline) == (None, None, pipeline)  # default: from scratch


class _ScaledMacs:
    """A stand-in device model whose latency is MACs × ``factor`` (what `latency_costs` prices by)."""

    def __init__(self, factor: float) -> None:
        self.factor = factor

    def predict_ms(self, layers) -> float:
        return self.factor * sum(layer.macs for layer in layers) * 1e-6


def test_a_later_study_on_the_same_store_and_device_reuses_the_supernet(ctx, monkeypatch, tmp_path):
    """Train once, search many: another study (another name and storage) with the same space, task,
    options, seed and device costs loads the stored supernet and records 0 s of training; another
    device table (other costs, so another α) is another fingerprint."""
    store = str(tmp_path / "shared")
    kwargs = dict(task=ctx.task, lambdas=[0.0, 3.0], epochs=2, warmup_epochs=1, seed=1, artifact_store=store)
    first = DNASSampler(ctx.space, table=_ScaledMacs(1.0), **kwargs)
    a = optuna.create_study(directions=["maximize"] * 3, sampler=first, storage=f"sqlite:///{tmp_path / 'a.db'}")
    a.optimize(cheap_objective(ctx.space, ctx.task), n_trials=2)
    assert a.user_attrs["dnas:supernet_train_s"] > 0
    assert all(t.user_attrs["dnas:supernet_train_s"] > 0 for t in a.trials)
    assert DNASSampler(ctx.space, table=_ScaledMacs(2.0), **kwargs).fingerprint() != first.fingerprint()

    def no_training(*args, **kwargs):
        raise AssertionError("the second study must not train")

    monkeypatch.setattr(dnas_module, "train_dnas", no_training)
    second = DNASSampler(ctx.space, table=_ScaledMacs(1.0), **kwargs)
    b = optuna.create_study(directions=["maximize"] * 3, sampler=second, storage=f"sqlite:///{tmp_path / 'b.db'}")
    b.optimize(cheap_objective(ctx.space, ctx.task), n_trials=2)
    assert b.user_attrs["dnas:supernet_train_s"] == 0.0 and b.user_attrs["dnas:supernet"]["reused"] is True
    assert all(t.user_attrs["dnas:supernet_train_s"] == 0.0 for t in b.trials)
    assert [t.params for t in b.trials] == [t.params for t in a.trials]  # same α, same proposals
