from __future__ import annotations

import pytest
import torch

from jointnas.compression.dnas import DNASConfig, Penalty, expected_penalty, init_logits, train_dnas
from jointnas.spaces import SpaceConfig
from jointnas.spaces.supernet import CostModel, Supernet

SPACE = SpaceConfig(
    stages=[8], strides=[1], depth=(1, 2), kernel=[3, 5], expansion=[2, 4], stem_channels=[8],
    compression={"weight_bits": [4, 8], "act_bits": [8, 32]},
)  # fmt: skip


def _setup():
    torch.manual_seed(0)
    net = Supernet(SPACE, (1, 8, 8), 10)
    layers = net.choice_layers()
    cm = CostModel(layers, net.decisions)
    macs = torch.tensor([float(cl.layer.macs) for cl in layers])
    sram = torch.tensor([float(cl.layer.in_numel + cl.layer.out_numel) for cl in layers])
    return net, cm, macs, sram


def test_penalties_are_scaled_expected_costs_and_a_soft_max_for_sram():
    net, cm, macs, sram = _setup()
    probs = cm.one_hot(net.largest_choice())
    pens = [Penalty("latency_ms", macs, 1000.0), Penalty("sram_bytes", sram, 100.0, reduce="max")]
    lat_only = expected_penalty(cm, pens, {"latency_ms": 2.0}, probs)
    assert float(lat_only) == pytest.approx(2.0 * cm.of_choice(macs, net.largest_choice()) / 1000.0)
    peak = float(cm.per_slot(sram, probs).max()) / 100.0
    soft = float(expected_penalty(cm, pens, {"sram_bytes": 1.0}, probs, sram_temperature=0.01))
    assert peak <= soft <= peak + 0.01 * torch.log(torch.tensor(float(len(cm.slots)))).item() + 1e-6


def test_training_is_seeded_and_alpha_learns_only_from_the_validation_split():
    x, y = torch.randn(96, 1, 8, 8), torch.randint(0, 10, (96,))
    cfg = DNASConfig(epochs=2, warmup_epochs=0, batch_size=32)
    anchors = [{"latency_ms": 0.0}, {"latency_ms": 5.0}]
    runs = []
    for _ in range(2):
        net, cm, macs, _ = _setup()
        pens = [Penalty("latency_ms", macs, cm.of_choice(macs, net.largest_choice()))]
        runs.append(train_dnas(net, x[:64], y[:64], x[64:], y[64:], cm, pens, anchors, cfg, seed=4))
    for a, b in zip(runs[0].logits, runs[1].logits, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert len(runs[0].alpha_entropy) == 2 and runs[0].train_s > 0
    # the latency-penalised anchor moves toward the cheaper kernel more than the unpenalised one
    assert runs[0].logits[1]["s0_kernel"][0] - runs[0].logits[1]["s0_kernel"][1] > (
        runs[0].logits[0]["s0_kernel"][0] - runs[0].logits[0]["s0_kernel"][1]
    )
    # without validation data α never moves from its (biased) initialisation
    net, cm, macs, _ = _setup()
    pens = [Penalty("latency_ms", macs, 1.0)]
    empty = train_dnas(net, x, y, x[:0], y[:0], cm, pens, anchors, cfg, seed=4)
    init = init_logits(net, cfg.init_bias)
    assert all(torch.equal(empty.logits[0][k], init[k]) for k in init)
    assert init["s0_wbits"].tolist() == [0.0, 1.0]  # default bias toward INT8
    with pytest.raises(ValueError, match="weight_sampling"):
        train_dnas(net, x, y, x, y, cm, pens, anchors, DNASConfig(weight_sampling="both"))


def test_temperature_schedules_start_and_end_at_the_knobs_and_differ_in_shape():
    from jointnas.compression.dnas import TAU_SCHEDULES, temperature

    mids = {}
    for schedule in TAU_SCHEDULES:
        cfg = DNASConfig(epochs=5, tau_start=4.0, tau_end=0.25, schedule=schedule)
        taus = [temperature(e, cfg) for e in range(5)]
        assert taus[0] == pytest.approx(4.0) and taus[-1] == pytest.approx(0.25)
        assert all(b < a for a, b in zip(taus, taus[1:], strict=False))  # cools every epoch
        mids[schedule] = taus[2]
    assert mids["linear"] == pytest.approx(2.125)
    assert mids["cosine"] == pytest.approx(2.125)  # symmetric about the middle, like linear
    assert temperature(1, DNASConfig(epochs=5, tau_start=4.0, tau_end=0.25, schedule="cosine")) == pytest.approx(
        0.25 + 3.75 * 0.5 * (1 + 2**-0.5)
    )
    assert mids["exponential"] == pytest.approx(1.0)  # geometric mean of 4 and 0.25
    assert mids["cubic"] == pytest.approx(4.0 - 3.75 * (1 - 0.125))
    with pytest.raises(ValueError, match="schedule must be one of"):
        temperature(0, DNASConfig(schedule="step"))


def test_dnas_sampler_option_reaches_the_training_config():
    from jointnas.search.samplers import make_sampler
    from jointnas.spaces import UserInputError

    sampler = make_sampler("dnas", {"schedule": "cosine"}, seed=0, space=SpaceConfig())
    assert sampler.train_config.schedule == "cosine"
    assert make_sampler("dnas", {}, seed=0, space=SpaceConfig()).train_config.schedule == "exponential"
    with pytest.raises(UserInputError, match="schedule"):
        make_sampler("dnas", {"schedule": "step"}, seed=0, space=SpaceConfig())


def test_dnas_sampler_refuses_fp16_spaces():
    from jointnas.search.samplers import make_sampler
    from jointnas.spaces import UserInputError

    space = SpaceConfig(compression={"weight_bits": [8, "fp16"]})
    with pytest.raises(UserInputError, match='no "fp16" option'):
        make_sampler("dnas", {}, seed=0, space=space)


def test_dnas_sampler_refuses_per_layer_precision():
    from jointnas.search.samplers import make_sampler
    from jointnas.spaces import UserInputError

    with pytest.raises(UserInputError, match="one bit-width α per stage"):
        make_sampler("dnas", {}, seed=0, space=SpaceConfig(compression={"granularity": "layer"}))
