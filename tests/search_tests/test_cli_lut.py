"""`jointnas lut build` / `lut validate` on the tiny space, and their refusals."""

from __future__ import annotations

import json

from jointnas.devices import LatencyTable, load_profile
from jointnas.search.cli import main
from jointnas.search.config import load_config
from jointnas.search.tools.lut import random_candidates, space_blocks, timing_model


def test_space_blocks_cover_every_random_candidate(tiny_config):
    config = load_config(tiny_config)
    blocks = {spec.key for spec in space_blocks(config, load_profile("ort-cpu"))}
    assert 40 < len(blocks) < 200
    table = LatencyTable(None)
    from jointnas.spaces import trace_layers

    for c in random_candidates(config, 30, seed=3):
        pipe = config.pipeline
        layers = trace_layers(timing_model(c, list(pipe.steps), pipe.prune_scope, pipe.rank_mode), c.input_shape)
        missing = {s.key for s in table.blocks(layers)} - blocks
        assert not missing, (c, missing)
        assert {s.key for s in table.blocks(layers)} <= blocks


def test_build_then_validate(tiny_config, tmp_path, capsys):
    out = tmp_path / "lut.json"
    common = ["--device", "ort-cpu", "--config", str(tiny_config), "--repeats", "5", "--rounds", "1"]
    code = main(["lut", "build", *common, "--out", str(out), "--n-calibration", "6", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    summary = json.loads(captured.out)
    data = json.loads(out.read_text())
    assert data["format"] == 2 and data["device"] == "ort-cpu" and data["threads"] == 1
    assert len(data["entries"]) == summary["blocks"] and data["calibration"]["n_samples"] >= 3
    assert data["fingerprint"]["ort_disabled_optimizers"] == "NchwcTransformer"
    assert all(e["cv"] >= 0 and e["ms"] > 0 for e in data["entries"].values())

    code = main(["lut", "validate", *common, "--table", str(out), "--n-archs", "5", "--json"])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    report = json.loads(captured.out)
    for kind in ("raw", "calibrated"):
        assert set(report[kind]) >= {"spearman", "kendall", "rmse_ms", "within_10pct", "within_20pct"}
        assert report[kind]["n"] == 5
    assert len(report["samples"]) == 5 and all(s["measured_ms"] > 0 for s in report["samples"])

    code = main(["lut", "validate", *common, "--table", str(out), "--n-archs", "3"])
    captured = capsys.readouterr()
    assert code == 0 and "calibrated  spearman" in captured.out


def test_lut_commands_refuse_bad_input(tiny_config, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    args = ["--config", str(tiny_config), "--out", str(tmp_path / "x.json")]
    assert main(["lut", "build", "--device", "esp32", *args]) == 2  # a cycles device without a simulator
    assert "no cycle model with a simulator" in capsys.readouterr().err
    assert main(["lut", "build", "--device", "rpi4", *args]) == 2
    assert "run `jointnas lut build` on the board" in capsys.readouterr().err
    assert main(["lut", "build", "--device", "nano", *args]) == 2
    assert "unknown device 'nano'" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    bad.write_text('{"format": 2, "entr')
    argv = ["lut", "validate", "--device", "ort-cpu", "--config", str(tiny_config), "--table", str(bad)]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: latency table") and "truncated or corrupt" in err and "Traceback" not in err


def test_study_on_a_microcontroller_uses_the_cycle_model_and_fit_constraint(tmp_path, capsys):
    import optuna

    from ..conftest import TINY_CONFIG, write_config

    text = TINY_CONFIG.replace("[device]\n", '[device]\nname = "arduino-uno"\n')
    text = text.replace("[sampler]", '[constraints]\nfits = ["arduino-uno"]\n\n[sampler]')
    text = text.replace("n_trials = 2", "n_trials = 1")
    path = write_config(tmp_path, text)
    assert main(["run", str(path), "--json"]) == 0, capsys.readouterr().err
    trial = optuna.load_study(study_name="tiny", storage=f"sqlite:///{tmp_path / 'tiny.db'}").trials[0]
    uno = trial.user_attrs["device_fit"]["arduino-uno"]
    assert trial.values[1] == uno["latency_ms"]  # latency objective from the cycle model
    assert trial.user_attrs["fits_device"]["arduino-uno"] == uno["fits"]
    expected = max(uno["flash_bytes"] / 32768, uno["sram_bytes"] / 2048) - 1
    assert trial.system_attrs["constraints:fits:arduino-uno"] == expected
    assert not list(tmp_path.glob("lut-*.json"))  # no latency table for a microcontroller


def test_space_blocks_cover_an_mlp_space(tmp_path):
    from jointnas.search.config import parse_config
    from jointnas.spaces import trace_layers

    config = parse_config(
        {
            "space": {"family": "mlp", "depth": [1, 2], "widths": [16, 32]},
            "pipeline": {"train_epochs": 1, "finetune_epochs": 0},
        }
    )
    blocks = {spec.key for spec in space_blocks(config, load_profile("ort-cpu"))}
    table = LatencyTable(None)
    for c in random_candidates(config, 20, seed=4):
        pipe = config.pipeline
        model = timing_model(c, list(pipe.steps), pipe.prune_scope, pipe.rank_mode)
        assert {s.key for s in table.blocks(trace_layers(model, c.input_shape))} <= blocks
    assert "overhead|in=64||res=0|pool=0|b=w32a32" in blocks
