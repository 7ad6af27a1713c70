"""HardCoReNAS latency model, Frank-Wolfe and repair: the hard budget holds for every budget."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from jointnas.compression import fold_batchnorm
from jointnas.devices import LatencyTable
from jointnas.search.samplers._hardcore_fw import (
    ScoreModel,
    frank_wolfe,
    greedy_budget,
    search_budget,
    search_flash_capped,
    search_macros,
)
from jointnas.search.samplers._hardcore_latency import Arch, LatencyModel, Macro, SpaceChoices
from jointnas.search.samplers._hardcore_supernet import build_supernet, flash_models, latency_model
from jointnas.spaces import SpaceConfig, UserInputError, build_model, trace_layers
from jointnas.spaces.profile import layer_flash_bytes

SPACE = SpaceConfig(
    stages=[8, 16],
    strides=[1, 2],
    depth=(1, 3),
    width_mult=[0.5, 1.0],
    kernel=[3, 5],
    expansion=[2, 4],
    stem_channels=[8],
)
SHAPE = (1, 8, 8)


class LatencyPricer:
    """`LatencyModel` per macro of one elastic supernet (built only to list its block options)."""

    def __init__(
        self, choices: SpaceChoices, input_shape: tuple[int, ...], num_classes: int, table: LatencyTable
    ) -> None:
        self.choices, self.input_shape, self.num_classes, self.table = choices, input_shape, num_classes, table
        self._models: dict[Macro, LatencyModel] = {}

        self.net = build_supernet(choices, input_shape, num_classes)

    def model(self, macro: Macro) -> LatencyModel:
        if macro not in self._models:
            self._models[macro] = latency_model(self.net, self.choices, macro, self.table)
        return self._models[macro]

    def arch_ms(self, arch: Arch) -> float:
        return self.model(arch.macro).arch_ms(arch.choices, arch.depths)


@pytest.fixture(scope="module")
def pricer() -> LatencyPricer:
    return LatencyPricer(SpaceChoices.from_space(SPACE), SHAPE, 10, LatencyTable(None, warmup=1, repeats=3))


def _random_arch(choices: SpaceChoices, macro, rng) -> Arch:
    n = macro.n_stages
    return Arch(
        macro,
        tuple(int(c) for c in rng.integers(0, len(choices.block_choices), n)),
        tuple(int(d) for d in rng.integers(0, len(choices.depths), n)),
    )


def _scores(pricer: LatencyPricer, seed: int = 0) -> ScoreModel:
    """A proxy where slower sub-networks are better on average (the trade-off the search must make)."""
    rng = np.random.default_rng(seed)
    archs = [_random_arch(pricer.choices, m, rng) for m in pricer.choices.macros() for _ in range(40)]
    losses = [0.01 / pricer.arch_ms(a) + rng.normal(0, 0.02) for a in archs]
    return ScoreModel.fit(pricer.choices, archs, losses)


def test_priced_latency_equals_the_lut_latency_of_the_built_model(pricer):
    rng = np.random.default_rng(0)
    for macro in pricer.choices.macros():
        arch = _random_arch(pricer.choices, macro, rng)
        candidate = pricer.choices.candidate(arch, SHAPE, 10)
        layers = trace_layers(fold_batchnorm(build_model(candidate).eval()), SHAPE)
        assert pricer.arch_ms(arch) == pytest.approx(pricer.table.predict_ms(layers), rel=1e-9)
        assert pricer.choices.arch_from_params(pricer.choices.arch_params(arch)) == arch


def test_expected_latency_is_differentiable_and_exact_at_vertices(pricer):
    model = pricer.model(pricer.choices.max_macro())
    n_c, n_d = len(pricer.choices.block_choices), len(pricer.choices.depths)
    alpha = [torch.full((n_c,), 1 / n_c, requires_grad=True) for _ in range(2)]
    beta = [torch.full((n_d,), 1 / n_d, requires_grad=True) for _ in range(2)]
    expected = model.expected_ms(alpha, beta)
    expected.backward()
    # ∂E/∂α_{s,c} = Σ_j β_{s,j} M_s[c, j]; at uniform β: the row means of M_s.
    assert np.allclose(alpha[0].grad.numpy(), model.stage_ms[0].mean(axis=1), rtol=1e-5)
    assert model.min_ms < float(expected.detach()) < model.max_ms
    one_hot = [torch.eye(n_c)[1], torch.eye(n_c)[2]], [torch.eye(n_d)[2], torch.eye(n_d)[0]]
    assert float(model.expected_ms(*one_hot)) == pytest.approx(model.arch_ms((1, 2), (2, 0)), rel=1e-5)


def test_frank_wolfe_iterates_stay_feasible_and_lower_the_proxy(pricer):
    model = pricer.model(pricer.choices.max_macro())
    scores = _scores(pricer)
    theta = scores.stage_terms
    budget = 0.5 * (model.min_ms + model.max_ms)
    alpha, beta = frank_wolfe(model, theta, budget, iterations=0)
    start = sum(a @ t @ b for a, t, b in zip(alpha, theta, beta, strict=True))
    alpha, beta = frank_wolfe(model, theta, budget, iterations=40)
    end = sum(a @ t @ b for a, t, b in zip(alpha, theta, beta, strict=True))
    assert model.expected_ms(alpha, beta) <= budget + 1e-9
    assert end < start
    for a in alpha + beta:
        assert a.min() >= 0 and a.sum() == pytest.approx(1.0)


def test_fifty_budgets_all_extracted_architectures_fit_by_the_lut(pricer):
    scores = _scores(pricer)
    macros = pricer.choices.macros()  # the narrowest and the widest macro: budgets span both ranges
    models = [pricer.model(macros[0]), pricer.model(pricer.choices.max_macro())]
    lo, hi = min(m.min_ms for m in models), max(m.max_ms for m in models)
    budgets = np.linspace(lo, hi, 50)
    results = [search_macros(models, scores, float(t), iterations=8, seed=i) for i, t in enumerate(budgets)]
    assert all(r.arch is not None for r in results)
    for r in results:
        # The guarantee is on the built model's LUT latency, not only on the priced sum.
        assert r.latency_ms <= r.budget_ms
        assert pricer.arch_ms(r.arch) == r.latency_ms
        built = fold_batchnorm(build_model(pricer.choices.candidate(r.arch, SHAPE, 10)).eval())
        assert pricer.table.predict_ms(trace_layers(built, SHAPE)) <= r.budget_ms + 1e-12
    # A looser budget never yields a worse proxy (monotone trade-off, up to the greedy search).
    losses = [r.proxy_loss for r in results]
    assert losses[-1] < losses[0]
    assert sum(b > a + 1e-9 for a, b in zip(losses, losses[1:], strict=False)) <= 5


def test_budget_below_the_smallest_subnetwork_is_infeasible_with_a_reason(pricer):
    scores = _scores(pricer)
    models = [pricer.model(m) for m in pricer.choices.macros()]
    floor = min(m.min_ms for m in models)
    result = search_macros(models, scores, 0.9 * floor)
    assert result.arch is None
    assert "below the smallest sub-network's LUT latency" in result.infeasible_reason
    assert f"{floor:.4g} ms" in result.infeasible_reason
    one = search_budget(models[0], scores, 0.5 * models[0].min_ms)
    assert one.arch is None and "raise the budget" in one.infeasible_reason


def test_repair_reaches_the_budget_from_the_slowest_subnetwork(pricer):
    from jointnas.search.samplers._hardcore_fw import repair

    model = pricer.model(pricer.choices.max_macro())
    scores = _scores(pricer)
    choices, depths = [int(np.unravel_index(np.argmax(m), m.shape)[0]) for m in model.stage_ms], [2, 2]
    budget = model.min_ms + 1e-12
    moves = repair(model, scores.stage_terms, choices, depths, budget)
    assert moves >= 1
    assert model.arch_ms(choices, depths) <= budget


def test_mlp_space_is_refused():
    with pytest.raises(UserInputError, match="use family = one of 'cnn', 'cnn1d' or another sampler"):
        SpaceChoices.from_space(SpaceConfig(family="mlp"))


def test_inherited_model_of_a_path_is_the_candidate_architecture(pricer):
    from jointnas.search.samplers import _hardcore_supernet as sn

    choices, macro = pricer.choices, pricer.choices.max_macro()
    net = sn.build_supernet(choices, SHAPE, 10)
    arch = Arch(macro, (3, 1), (2, 0))
    candidate = choices.candidate(arch, SHAPE, 10)
    model = sn.inherit(net, choices, candidate)
    assert [layer.in_shape for layer in trace_layers(model, SHAPE)] == [
        layer.in_shape for layer in trace_layers(build_model(candidate), SHAPE)
    ]


def test_every_macro_is_searched_and_small_budgets_pick_narrow_macros(pricer):
    """Elastic width: all stem × stage-count × per-stage-width macros of one supernet; with the greedy
    screen (top_k) every budget still fits by the LUT, and the tightest budget takes another macro
    than the widest one (whose fastest sub-network is slower than the space's)."""
    scores = _scores(pricer)
    macros = pricer.choices.macros()
    assert len(macros) == 2 + 4  # one stem; 1 stage × 2 widths + 2 stages × 2² widths
    models = [pricer.model(m) for m in macros]
    lo, hi = min(m.min_ms for m in models), max(m.max_ms for m in models)
    widest = pricer.model(pricer.choices.max_macro())
    assert lo < widest.min_ms  # narrow macros reach below the widest macro's fastest sub-network
    results = [search_macros(models, scores, float(t), iterations=6, seed=0, top_k=2) for t in np.linspace(lo, hi, 12)]
    assert all(r.arch is not None and r.latency_ms <= r.budget_ms for r in results)
    assert results[0].arch.macro != pricer.choices.max_macro()
    for r in results:  # never worse than the best macro's greedy screen (the search starts from it)
        screens = [greedy_budget(m, scores, r.budget_ms) for m in models if m.min_ms <= r.budget_ms]
        assert all(g.latency_ms <= r.budget_ms for g in screens)
        assert r.proxy_loss <= min(g.proxy_loss for g in screens) + 1e-12


def test_priced_flash_equals_the_flash_of_the_built_model(pricer):
    macros = pricer.choices.macros()
    flash = flash_models(pricer.net, pricer.choices, macros)
    rng = np.random.default_rng(1)
    for macro, model in zip(macros, flash, strict=True):
        for _ in range(3):
            arch = _random_arch(pricer.choices, macro, rng)
            built = fold_batchnorm(build_model(pricer.choices.candidate(arch, SHAPE, 10)).eval())
            expected = sum(layer_flash_bytes(layer) for layer in trace_layers(built, SHAPE))
            assert model.arch_ms(arch.choices, arch.depths) == expected


def test_a_flash_weight_trades_proxy_for_flash_within_the_same_budget(pricer):
    scores = _scores(pricer)
    macros = pricer.choices.macros()
    models = [pricer.model(m) for m in macros]
    flash = flash_models(pricer.net, pricer.choices, macros)
    scale = 1.0 / max(f.max_ms for f in flash)

    def arch_flash(arch: Arch) -> float:
        return flash[macros.index(arch.macro)].arch_ms(arch.choices, arch.depths)

    lo, hi = min(m.min_ms for m in models), max(m.max_ms for m in models)
    lower = 0
    for t in np.linspace(lo, hi, 8)[1:]:
        plain = search_macros(models, scores, float(t), iterations=8, seed=0, top_k=2)
        heavy = [scores.penalized(f, 10 * scale) for f in flash]
        flashy = search_macros(models, scores, float(t), iterations=8, seed=0, top_k=2, macro_scores=heavy)
        assert flashy.latency_ms <= t and pricer.arch_ms(flashy.arch) == flashy.latency_ms  # the budget still holds
        assert arch_flash(flashy.arch) <= arch_flash(plain.arch)
        assert scores.arch_loss(flashy.arch) >= scores.arch_loss(plain.arch) - 1e-9  # paid in proxy loss
        lower += arch_flash(flashy.arch) < arch_flash(plain.arch)
    assert lower >= 3
    # weight 0 is the plain proxy
    zero = [scores.penalized(f, 0.0) for f in flash]
    same = search_macros(models, scores, float(hi), iterations=8, seed=0, top_k=2, macro_scores=zero)
    assert same.arch == search_macros(models, scores, float(hi), iterations=8, seed=0, top_k=2).arch


def test_a_flash_budget_holds_beside_the_latency_budget_and_costs_proxy_loss(pricer):
    scores = _scores(pricer)
    macros = pricer.choices.macros()
    models = [pricer.model(m) for m in macros]
    flash = flash_models(pricer.net, pricer.choices, macros)
    search = {"iterations": 8, "seed": 0, "top_k": 2}

    def arch_flash(arch: Arch) -> float:
        return flash[macros.index(arch.macro)].arch_ms(arch.choices, arch.depths)

    t_lo, t_hi = min(m.min_ms for m in models), max(m.max_ms for m in models)
    f_lo, f_hi = min(f.min_ms for f in flash), max(f.max_ms for f in flash)
    tighter = 0
    for t in np.linspace(t_lo, t_hi, 5)[1:]:
        plain = search_macros(models, scores, float(t), **search)
        for cap in np.geomspace(f_lo, f_hi, 5):
            capped, weight = search_flash_capped(models, flash, scores, float(t), float(cap), **search)
            assert capped.arch is not None and capped.latency_ms <= t  # the latency budget still holds
            assert pricer.arch_ms(capped.arch) == capped.latency_ms
            assert arch_flash(capped.arch) <= cap  # and so does the Flash budget, exactly
            if arch_flash(plain.arch) <= cap:  # a budget that does not bind leaves the plain search
                assert weight == 0 and capped.arch == plain.arch
            else:
                assert weight > 0 and capped.proxy_loss == scores.arch_loss(capped.arch)  # the plain proxy, recorded
                assert capped.proxy_loss >= scores.arch_loss(plain.arch) - 1e-9  # paid in proxy loss
                tighter += 1
    assert tighter >= 4
    below, _ = search_flash_capped(models, flash, scores, float(t_hi), f_lo - 1, **search)
    assert below.arch is None and "Flash budget" in below.infeasible_reason
    assert f"smallest sub-network's Flash {f_lo:.0f} B" in below.infeasible_reason
    raised, _ = search_flash_capped(models, flash, scores, float(t_hi), f_lo - 1, raise_cap=True, **search)
    assert arch_flash(raised.arch) == f_lo and raised.latency_ms <= t_hi  # the smallest Flash instead
