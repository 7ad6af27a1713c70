"""The memory filter of the precision options and ``jointnas space check``."""

from __future__ import annotations

import json
from pathlib import Path

from jointnas.devices import load_profile
from jointnas.objectives import load_task
from jointnas.search.attrs import STUDY_SPACE_FILTER
from jointnas.search.cli import main
from jointnas.search.config import apply_overrides, load_config
from jointnas.search.memory_filter import filter_space
from jointnas.search.study import create_or_resume, run_study

ROOT = Path(__file__).resolve().parents[2]
TINYCHAT = ROOT / "studies" / "tinychat_arduino.toml"


def _variant(tmp_path: Path, compression: str, name: str = "study.toml") -> Path:
    """The tinychat Uno study with ``compression`` lines added to its [space.compression]."""
    text = TINYCHAT.read_text().replace("act_bits = [8]\n", compression)
    text = text.replace('path = "studies/data/', f'path = "{ROOT}/studies/data/')
    path = tmp_path / name
    path.write_text(text)
    return path


def test_space_check_lists_per_layer_what_the_uno_sram_leaves(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # the study's data path is relative to the repository root
    assert main(["space", "check", str(TINYCHAT)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "memory filter for arduino-uno: SRAM limit 2048 B (activations), Flash limit 32768 B (weights)"
    # smallest layer 0: 256 trigram features in (1 byte each), a rank-4 factor out at int8
    assert "  activations l0_abits: int8 kept (260 B ≤ 2048 B)" in out
    assert any(line.startswith("  weights l1_wbits: int2 kept") for line in out)
    assert main(["space", "check", str(TINYCHAT), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["device"] == "arduino-uno" and data["sram_limit"] == 2048 and data["failed_stages"] == []
    assert [o["act_kept"] for o in data["layers"]] == [[8], [8]]


def test_filter_drops_activation_precisions_over_the_threshold_per_layer(tmp_path):
    path = _variant(tmp_path, 'act_bits = [8, 16, 32, "fp16"]\ngranularity = "layer"\nmemory_threshold = 262\n')
    config = load_config(path)
    task = load_task(config.task)
    result = filter_space(config, task.input_shape, task.num_classes, load_profile("arduino-uno"))
    assert result.sram_limit == 262
    first, second = result.layers
    assert (first.layer, first.act_param) == ("b0_linear", "l0_b0_linear_abits")
    assert first.act_bytes == {"int8": 260, "int16": 264, "fp32": 272, "fp16": 264}
    assert first.act_kept == [8]
    assert second.act_kept == [8, 16, 32, "fp16"]  # layer 1 is small: everything fits
    assert result.allowed(config.space.compression) == {"l0_b0_linear_abits": [8]}


def test_stages_whose_every_option_fails_are_reported_and_keep_their_options(tmp_path, capsys):
    path = _variant(tmp_path, "act_bits = [8, 32]\nmemory_threshold = 100\n")
    assert main(["space", "check", str(path)]) == 1
    out = capsys.readouterr().out
    assert "stage 0 (every layer): NO OPTION FITS, every option kept" in out
    assert "stages whose every option fails: [0]" in out
    config = load_config(path)
    task = load_task(config.task)
    result = filter_space(config, task.input_shape, task.num_classes, load_profile("arduino-uno"))
    assert result.failed_stages == [0] and "l0_abits" not in result.allowed(config.space.compression)
    assert result.allowed(config.space.compression) == {}  # stage 1 (16 B) keeps both


def test_a_study_asks_only_the_kept_options_and_records_the_filter(tmp_path):
    path = _variant(tmp_path, 'act_bits = [8, 16]\ngranularity = "layer"\nmemory_threshold = 262\n')
    config = apply_overrides(
        load_config(path),
        **{
            "study.storage": f"sqlite:///{tmp_path / 's.db'}",
            "budget.n_trials": 2,
            "pipeline.train_epochs": 1,
            "pipeline.finetune_epochs": 1,
        },
    )
    study = create_or_resume(config, config.study.storage)
    run_study(config, study, config_path=path)
    recorded = study.user_attrs[STUDY_SPACE_FILTER]
    assert recorded["sram_limit"] == 262 and recorded["layers"][0]["act_kept"] == [8]
    for trial in study.trials:
        assert "l0_b0_linear_abits" not in trial.distributions  # one option left: not asked
        first = [v for n, v in trial.user_attrs["layer_bits"].items() if n.startswith("blocks.0.")]
        assert first and all(v[1] == 8 for v in first)
        if "l1_b0_linear_abits" in trial.distributions:
            assert list(trial.distributions["l1_b0_linear_abits"].choices) == [8, 16]


def test_samplers_that_propose_their_own_parameters_keep_the_full_choices(tmp_path):
    import optuna

    from jointnas.search.objective import Objective
    from jointnas.search.study import device_model

    path = _variant(tmp_path, 'act_bits = [8, 16]\ngranularity = "layer"\nmemory_threshold = 262\n')
    config = apply_overrides(load_config(path), **{"pipeline.train_epochs": 1, "pipeline.finetune_epochs": 1})
    objective = Objective(config, load_task(config.task), device_model(config, path))
    assert objective.allowed == {"l0_b0_linear_abits": [8]}

    class OwnParams(optuna.samplers.RandomSampler):
        def set_context(self, **context):  # what the supernet samplers have
            pass

    for sampler, asked in ((optuna.samplers.RandomSampler(seed=0), False), (OwnParams(seed=0), True)):
        study = optuna.create_study(directions=config.objectives.directions, sampler=sampler)
        study.optimize(objective, n_trials=1)
        assert ("l0_b0_linear_abits" in study.trials[0].distributions) is asked
