"""Per-layer precision (``[space.compression] granularity = "layer"``) with FP16, on a quickstart variant."""

from __future__ import annotations

from pathlib import Path

import optuna
import pytest

from jointnas.compression import deployable_model, quantize_model
from jointnas.devices import LatencyTable, load_profile
from jointnas.search.config import apply_overrides, load_config
from jointnas.search.study import create_or_resume, run_study
from jointnas.search.tools.lut import random_candidates, space_blocks, timing_model
from jointnas.spaces import Candidate, SpaceConfig, build_model, grid_search_space, sample_candidate, trace_layers

QUICKSTART = Path(__file__).resolve().parents[2] / "studies" / "quickstart.toml"
LAYER_KNOBS = {"granularity": "layer", "weight_bits": [2, 4, 8, "fp16"]}


def _bit_params(params: dict) -> list[str]:
    return [n for n in params if n.endswith(("_wbits", "_abits"))]


def test_layer_granularity_asks_one_weight_and_one_activation_parameter_per_layer():
    stage_space = SpaceConfig(compression={"weight_bits": [2, 4, 8, "fp16"]})
    layer_space = SpaceConfig(compression=LAYER_KNOBS)
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    c = sample_candidate(trial, layer_space, (1, 8, 8), 10)
    n_layers = sum(3 * s.depth for s in c.stages)  # expand, dw, project per block
    assert len(_bit_params(trial.params)) == 2 * n_layers
    assert "s0_b0_expand_wbits" in trial.params and "s0_b0_dw_abits" in trial.params
    assert "s0_wbits" not in trial.params
    model = deployable_model(quantize_model(build_model(c), c))
    traced = {layer.name: layer for layer in trace_layers(model, c.input_shape)}
    for i, stage in enumerate(c.stages):
        for key, w, a in stage.layer_bits:
            assert (trial.params[f"s{i}_{key}_wbits"], trial.params[f"s{i}_{key}_abits"]) == (w, a)
    first = c.stages[0].layer_bits[1]  # b0_dw of stage 0 = blocks.0.dw.conv
    assert first[0] == "b0_dw"
    assert (traced["blocks.0.dw.conv"].weight_precision, traced["blocks.0.dw.conv"].act_precision) == first[1:]
    assert Candidate.from_json(c.to_json()) == c
    # The grid spans every layer of the deepest stages: 3 stages x 2 blocks x 3 layers x 2 knobs.
    stage_grid, layer_grid = grid_search_space(stage_space), grid_search_space(layer_space)
    assert len(_bit_params(layer_grid)) == 36 and len(_bit_params(stage_grid)) == 6
    assert layer_grid["s2_b1_project_wbits"] == [2, 4, 8, "fp16"]


def test_mlp_layers_and_old_candidates():
    trial = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0)).ask()
    c = sample_candidate(trial, SpaceConfig(family="mlp", compression=LAYER_KNOBS), (64,), 10)
    assert sorted(_bit_params(trial.params)) == sorted(
        p for i in range(len(c.stages)) for p in (f"l{i}_b0_linear_wbits", f"l{i}_b0_linear_abits")
    )
    old = '{"family": "mlp", "input_shape": [64], "num_classes": 10, "stages": [{"channels": 32, "weight_bits": 4}]}'
    stage = Candidate.from_json(old).stages[0]
    assert stage.layer_bits == () and stage.layer_precision("b0_linear") == (4, 32)
    assert "layer_bits" not in Candidate.from_json(old).to_json()  # per-stage JSON unchanged


def test_latency_table_blocks_cover_per_layer_candidates(tiny_config):
    config = load_config(tiny_config)
    config = config.model_copy(
        update={"space": config.space.model_copy(update={"compression": config.space.compression.model_copy(
            update={"granularity": "layer", "weight_bits": [4, "fp16", 32]})})}
    )  # fmt: skip
    blocks = {spec.key for spec in space_blocks(config, load_profile("ort-cpu"))}
    table = LatencyTable(None)
    pipe = config.pipeline
    for c in random_candidates(config, 10, seed=3):
        model = quantize_model(timing_model(c, list(pipe.steps), pipe.prune_scope, pipe.rank_mode), c)
        layers = trace_layers(deployable_model(model), c.input_shape)
        assert {s.key for s in table.blocks(layers)} <= blocks  # float devices key every precision as w32a32


@pytest.mark.slow
def test_quickstart_variant_with_layer_granularity_and_fp16_runs(tmp_path: Path) -> None:
    config_path = tmp_path / "quickstart.toml"
    text = QUICKSTART.read_text()
    assert "weight_bits = [2, 4, 8, 32]\n" in text
    text = text.replace("weight_bits = [2, 4, 8, 32]\n", 'weight_bits = [2, 4, 8, "fp16"]\ngranularity = "layer"\n')
    config_path.write_text(text)
    config = apply_overrides(
        load_config(config_path),
        **{
            "study.storage": f"sqlite:///{tmp_path / 'layer.db'}",
            "budget.n_trials": 3,
            "pipeline.train_epochs": 1,
            "pipeline.finetune_epochs": 1,
        },
    )
    study = create_or_resume(config, config.study.storage)
    run_study(config, study, config_path=config_path)
    trials = study.trials
    assert [t.state.name for t in trials] == ["COMPLETE"] * 3
    for t in trials:
        c = Candidate.from_dict(t.user_attrs["candidate"])
        n_layers = sum(3 * s.depth for s in c.stages)
        n_stages = len(c.stages)
        assert len(_bit_params(t.params)) == 2 * n_layers > 2 * n_stages  # more than the per-stage space
        recorded = t.user_attrs["layer_bits"]  # traced layer name -> [weight, activation] precision
        for i, stage in enumerate(c.stages):
            first_block = sum(s.depth for s in c.stages[:i])
            for key, w, a in stage.layer_bits:
                block, role = key.split("_")
                name = f"blocks.{first_block + int(block[1:])}.{role}.conv"
                # low-rank 1x1 convs are two factors (".conv.0", ".conv.1"), both at the layer's bits
                hits = [v for n, v in recorded.items() if n == name or n.startswith(name + ".")]
                assert hits and all(v == [w, a] for v in hits), (t.number, key, recorded)
    assert any("fp16" in (w for _, w, _ in s.layer_bits) for t in trials
               for s in Candidate.from_dict(t.user_attrs["candidate"]).stages)  # fmt: skip


def test_new_keys_at_their_defaults_leave_stored_study_hashes_unchanged():
    config = load_config(QUICKSTART)
    # The hash of studies/quickstart.toml before granularity, memory_threshold and the sparsity options.
    assert config.config_hash() == "0894e2bc78af54d1cc95db7cc80477d652c5d2cf35e5108471297175976cc072"
    assert "granularity" not in config.canonical()["space"]["compression"]
    layer = apply_overrides(config, **{"pipeline.sparsity_criterion": "random"})
    assert layer.canonical()["pipeline"]["sparsity_criterion"] == "random"
    assert layer.config_hash() != config.config_hash()
