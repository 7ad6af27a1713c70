from __future__ import annotations

import optuna
import pytest
import torch

from jointnas.spaces import (
    Candidate,
    SpaceConfig,
    Stage,
    UserInputError,
    build_model,
    count_params,
    grid_search_space,
    sample_candidate,
    trace_layers,
)


class FixedSuggester:
    """Answers every suggestion with the first or last value and records what was asked."""

    def __init__(self, pick_last: bool) -> None:
        self.pick_last = pick_last
        self.asked: dict[str, object] = {}

    def suggest_int(self, name, low, high, *, step=1):
        self.asked[name] = v = high if self.pick_last else low
        return v

    def suggest_float(self, name, low, high, *, step=None):
        self.asked[name] = v = high if self.pick_last else low
        return v

    def suggest_categorical(self, name, choices):
        self.asked[name] = v = choices[-1] if self.pick_last else choices[0]
        return v


def test_candidate_json_round_trip():
    c = Candidate("cnn", (1, 8, 8), 10, (Stage(16, 2, 5, 4, 2, 0.25, 0.5, 4, 8),), 8, 8)
    assert Candidate.from_json(c.to_json()) == c
    assert c.uncompressed().stages[0].weight_bits == 32
    assert c.uncompressed().stages[0].prune_ratio == 0.0


def test_conditional_space_suggests_only_present_stages():
    space = SpaceConfig(stages=[8, 16, 24], strides=[1, 2, 2], min_stages=1)
    small = FixedSuggester(pick_last=False)
    c = sample_candidate(small, space, (1, 8, 8), 10)
    assert len(c.stages) == 1
    assert not any(k.startswith(("s1_", "s2_")) for k in small.asked)
    big = FixedSuggester(pick_last=True)
    c = sample_candidate(big, space, (1, 8, 8), 10)
    assert len(c.stages) == 3
    assert {"s2_depth", "s2_prune", "s2_wbits"} <= set(big.asked)


def test_every_suggested_param_is_in_the_grid():
    space = SpaceConfig()
    grid = grid_search_space(space)
    for pick_last in (False, True):
        s = FixedSuggester(pick_last)
        sample_candidate(s, space, (1, 8, 8), 10)
        assert set(s.asked) <= set(grid)
        for name, value in s.asked.items():
            assert value in grid[name], name


@pytest.mark.parametrize("family", ["cnn", "mlp"])
def test_sampled_models_run_forward(family):
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    for _ in range(5):
        c = sample_candidate(study.ask(), SpaceConfig(family=family), (1, 8, 8), 10)
        model = build_model(c)
        assert model(torch.randn(3, 1, 8, 8)).shape == (3, 10)
        layers = trace_layers(model, (1, 8, 8))
        assert layers[-1].name == "classifier"
        assert sum(layer.weight_numel for layer in layers) <= count_params(model)


def test_mlp_params_exact():
    model = build_model(Candidate("mlp", (64,), 10, (Stage(32), Stage(16))))
    assert count_params(model) == 64 * 32 + 32 + 32 * 16 + 16 + 16 * 10 + 10


def test_unknown_family_is_a_user_error():
    with pytest.raises(UserInputError, match="unknown architecture family 'rnn'"):
        build_model(Candidate("rnn", (64,), 10, (Stage(4),)))


def test_trace_marks_residual_and_relu():
    c = Candidate("cnn", (1, 8, 8), 10, (Stage(8, 1, 3, 2, 1),), stem_channels=8)
    layers = {layer.name: layer for layer in trace_layers(build_model(c), (1, 8, 8))}
    assert layers["blocks.0.expand.conv"].residual_numel == 8 * 8 * 8
    assert layers["blocks.0.expand.conv"].relu and not layers["blocks.0.project.conv"].relu
    assert layers["blocks.0.dw.conv"].kind == "dwconv"
    assert layers["blocks.0.dw.conv"].macs == 16 * 9 * 64
