from __future__ import annotations

import pytest
import torch

from jointnas.compression import quantize_model
from jointnas.devices import LatencyTable, estimate_flash_bytes
from jointnas.search.samplers._supernet_costs import flash_costs, latency_costs
from jointnas.spaces import Candidate, SpaceConfig, UserInputError, build_model, count_params, trace_layers
from jointnas.spaces.supernet import CostModel, Supernet, gumbel_softmax

from ._layer_key import layer_key

SPACE = SpaceConfig(
    stages=[8, 16],
    strides=[1, 2],
    depth=(1, 2),
    kernel=[3, 5],
    expansion=[2, 4],
    stem_channels=[8],
    compression={"weight_bits": [2, 4, 8, 32], "act_bits": [8, 32], "rank_ratio": (0.5, 1.0)},
)
SHAPE = (1, 8, 8)
SHAPES = {"cnn": SHAPE, "cnn1d": (2, 16)}  # images (C, H, W); series (C, L)


@pytest.fixture(params=["cnn", "cnn1d"])
def net(request) -> Supernet:
    torch.manual_seed(0)
    space = SPACE.model_copy(update={"family": request.param})
    return Supernet(space, SHAPES[request.param], 10).eval()


def _choices(net: Supernet, n: int) -> list[dict]:
    g = torch.Generator().manual_seed(1)
    return [net.smallest_choice(), net.largest_choice()] + [net.random_choice(g) for _ in range(n)]


def test_decisions_are_the_optuna_parameter_names(net):
    names = [d.name for d in net.decisions[:6]]
    assert names == ["n_stages", "s0_kernel", "s0_expansion", "s0_depth", "s0_wbits", "s0_abits"]
    assert net.decision("n_stages").options == (1, 2)
    assert net.decision("s1_wbits").options == (2, 4, 8, 32)
    assert net.decision("s1_depth").options == (1, 2)


def test_path_forward_equals_extracted_model_and_one_hot_mixed_forward(net):
    x = torch.randn(3, *net.input_shape)
    costs = CostModel(net.choice_layers(), net.decisions)
    for choice in _choices(net, 4):
        float_choice = {**choice, **{d.name: 32 for d in net.decisions if d.kind in ("wbits", "abits")}}
        y = net(x, float_choice)
        assert y.shape == (3, 10)
        model = net.extract(float_choice).eval()
        assert isinstance(model.stem.conv, torch.nn.Conv1d if net.space.family == "cnn1d" else torch.nn.Conv2d)
        torch.testing.assert_close(model(x), y)
        # the candidate's own model (fresh weights) has exactly the sub-network's parameters
        cand = net.to_candidate(float_choice)
        assert count_params(build_model(cand)) == count_params(model)
        # mixed-op forward with one-hot weights is the path forward, quantized choices included
        torch.testing.assert_close(net(x, weights=costs.one_hot(choice)), net(x, choice))


def test_candidate_is_valid_in_the_space(net):
    choice = {**net.smallest_choice(), "n_stages": 2, "s1_kernel": 5, "s1_depth": 2, "s1_wbits": 8}
    cand = net.to_candidate(choice, {"s0_prune": 0.25, "s1_rank": 0.5})
    assert [s.depth for s in cand.stages] == [1, 2]
    assert [s.kernel for s in cand.stages] == [3, 5]
    assert [s.weight_bits for s in cand.stages] == [2, 8]
    assert [s.channels for s in cand.stages] == [4, 8]  # the smallest width multiplier, 0.5
    assert cand.stages[0].prune_ratio == 0.25 and cand.stages[1].rank_ratio == 0.5
    assert cand.stages[1].prune_ratio == 0.0 and cand.stages[0].rank_ratio == 1.0
    params = net.params_of(choice)
    assert params["n_stages"] == 2 and params["s1_width"] == 0.5 and "stem_channels" not in params
    one = net.to_candidate({**choice, "n_stages": 1})
    assert len(one.stages) == 1 and "s1_kernel" not in net.params_of({**choice, "n_stages": 1})
    with pytest.raises(UserInputError, match="s0_kernel=7 is not one of"):
        net.to_candidate({"s0_kernel": 7})
    with pytest.raises(UserInputError, match="covers the 'cnn' and 'cnn1d' families, not 'mlp'"):
        Supernet(SpaceConfig(family="mlp"), (64,), 10)
    with pytest.raises(UserInputError, match=r"family 'cnn1d' needs inputs shaped \(channels, length\)"):
        Supernet(SpaceConfig(family="cnn1d"), (1, 8, 8), 10)


def test_choice_costs_match_the_latency_table_on_the_built_model(net):
    table = LatencyTable(None, warmup=1, repeats=3)
    blocks = net.choice_blocks(head_bits=8)
    block_model = CostModel(blocks, net.decisions)
    lat, constant = latency_costs(table, blocks)
    layers = net.choice_layers(head_bits=8)
    layer_model = CostModel(layers, net.decisions)
    flash = flash_costs(net, 8)
    macs = torch.tensor([float(cl.layer.macs) for cl in layers])
    for choice in _choices(net, 3):
        cand = net.to_candidate(choice, {"head_bits": 8})
        deployed = quantize_model(build_model(cand), cand)
        traced = trace_layers(deployed, net.input_shape)
        present = layer_model.presence(layer_model.one_hot(choice))
        assert sorted(layer_key(cl.layer) for cl, p in zip(layers, present, strict=True) if p > 0.5) == sorted(
            layer_key(t) for t in traced
        )
        present = block_model.presence(block_model.one_hot(choice))
        assert sorted(spec.key for cb, p in zip(blocks, present, strict=True) if p > 0.5 for spec in
                      table.blocks(_with_context(cb))[-1:]) == sorted(s.key for s in table.blocks(traced))  # fmt: skip
        expected = block_model.of_choice(lat, choice) + constant
        assert expected == pytest.approx(table.predict_ms(traced), rel=1e-6)
        assert layer_model.of_choice(flash, choice) == estimate_flash_bytes(traced)
        assert layer_model.of_choice(macs, choice) == sum(t.macs for t in traced)


def _with_context(cb):
    from jointnas.search.samplers._supernet_costs import _block_layers

    return _block_layers(cb)


def test_expected_cost_is_the_probability_weighted_sum_and_differentiable(net):
    layers = net.choice_layers()
    cm = CostModel(layers, net.decisions)
    macs = torch.tensor([float(cl.layer.macs) for cl in layers])
    logits = {d.name: torch.zeros(len(d.options), requires_grad=True) for d in net.decisions}
    probs = {k: torch.softmax(v, 0) for k, v in logits.items()}
    expected = cm.expected(macs, probs)
    # brute force over stage 1's kernel with everything else fixed at one-hot
    base = dict(net.largest_choice())
    half = {k: cm.one_hot(base)[k] for k in logits}
    half["s1_kernel"] = torch.tensor([0.5, 0.5])
    mixed = cm.expected(macs, half)
    pure = [cm.of_choice(macs, {**base, "s1_kernel": k}) for k in (3, 5)]
    assert float(mixed) == pytest.approx(sum(pure) / 2)
    expected.backward()
    assert logits["s1_kernel"].grad[1] > 0 > logits["s1_kernel"].grad[0]  # bigger kernel costs more
    assert cm.per_slot(macs, probs).shape == (len(cm.slots),)


def test_mixed_forward_is_differentiable_in_the_weights(net):
    net.train()
    g = torch.Generator().manual_seed(0)
    logits = {d.name: torch.zeros(len(d.options), requires_grad=True) for d in net.decisions if d.searchable}
    probs = {k: gumbel_softmax(v, 1.0, g) for k, v in logits.items()}
    loss = net(torch.randn(8, *net.input_shape), weights=probs).logsumexp(1).mean()
    loss.backward()
    assert all(v.grad is not None and torch.isfinite(v.grad).all() for v in logits.values())
    assert any(float(v.grad.abs().sum()) > 0 for v in logits.values())


@pytest.mark.parametrize("family", ["cnn", "cnn1d"])
def test_elastic_width_and_stem_reach_every_macro_exactly(family):
    """Every stem × per-stage width combination: path = extracted model = one-hot mixed forward, the
    candidate's own widths and parameter count, and the table latency / Flash of its traced model."""
    torch.manual_seed(0)
    space = SPACE.model_copy(update={"family": family, "stem_channels": [4, 8], "width_mult": [0.5, 1.0]})
    net = Supernet(space, SHAPES[family], 10).eval()
    assert net.decision("stem_channels").options == (4, 8)
    assert net.decision("s1_width").options == (0.5, 1.0) and net.channel_options(1) == (8, 16)
    x = torch.randn(2, *net.input_shape)
    table = LatencyTable(None, warmup=1, repeats=2)
    blocks, layers = net.choice_blocks(head_bits=8), net.choice_layers(head_bits=8)
    block_model, layer_model = CostModel(blocks, net.decisions), CostModel(layers, net.decisions)
    lat, constant = latency_costs(table, blocks)
    flash = flash_costs(net, 8)
    seen = set()
    for stem in (4, 8):
        for w0 in (0.5, 1.0):
            for w1 in (0.5, 1.0):
                choice = {**net.largest_choice(), "stem_channels": stem, "s0_width": w0, "s1_width": w1,
                          "s0_wbits": 32, "s1_wbits": 32, "s0_abits": 32, "s1_abits": 32}  # fmt: skip
                cand = net.to_candidate(choice)
                assert cand.stem_channels == stem
                assert [s.channels for s in cand.stages] == [int(8 * w0), int(16 * w1)]
                assert net.choice_of(cand) == net._full(choice)
                model = net.extract(choice).eval()
                torch.testing.assert_close(model(x), net(x, choice))
                torch.testing.assert_close(net(x, weights=block_model.one_hot(choice)), net(x, choice))
                assert count_params(model) == count_params(build_model(cand))
                cand8 = net.to_candidate(choice, {"head_bits": 8})
                traced = trace_layers(quantize_model(build_model(cand8), cand8), net.input_shape)
                assert block_model.of_choice(lat, choice) + constant == pytest.approx(
                    table.predict_ms(traced), rel=1e-6
                )
                assert layer_model.of_choice(flash, choice) == estimate_flash_bytes(traced)
                seen.add(estimate_flash_bytes(traced))
    assert len(seen) == 8  # every macro is a different model
    data = net.to_candidate().to_dict()
    data["stages"][0]["channels"] = 12
    with pytest.raises(UserInputError, match="stage 0 width 12 is not one of"):
        net.choice_of(Candidate.from_dict(data))
