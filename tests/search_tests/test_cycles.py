"""Cycle models fitted in the simulator: `jointnas lut build` / `lut validate` on a microcontroller."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch

from jointnas.compression import PipelineConfig, generate_c_library, run_pipeline
from jointnas.devices import load_profile
from jointnas.devices.mcu import cycle_coefficient, cycle_terms, kernel_classes, mcu_cycles, stored_bits
from jointnas.objectives import load_task
from jointnas.search.cli import main
from jointnas.search.config import apply_overrides, load_config
from jointnas.search.tools.cycles import fit_coefficients
from jointnas.search.tools.lut import random_candidates
from jointnas.spaces import Candidate, Stage, trace_layers

ROOT = Path(__file__).resolve().parents[2]
needs_avr = pytest.mark.skipif(
    not (shutil.which("avr-gcc") and Path("/usr/include/simavr/sim_avr.h").is_file()),
    reason="avr-gcc or libsimavr not installed (apt-get install gcc-avr avr-libc simavr libsimavr-dev libelf-dev)",
)


SHORT = {"int8_t": "i8", "uint8_t": "u8", "int16_t": "i16", "uint16_t": "u16", "float": "f32"}


def _compressed(candidate: Candidate, steps: list[str]) -> torch.nn.Module:
    torch.manual_seed(0)
    x, y = torch.randn(64, *candidate.input_shape), torch.randint(0, candidate.num_classes, (64,))
    config = PipelineConfig(train_epochs=0, finetune_epochs=0, steps=steps)
    return run_pipeline(candidate, x, y, x[:16], y[:16], config, seed=0).model


@pytest.mark.parametrize("seed", [0, 1])
def test_the_cost_model_sees_the_kernels_the_c_generator_writes(seed, tmp_path):
    """stored_bits / kernel_classes (traced layers only) name the kernels and types cgen generates."""
    config = load_config(ROOT / "studies/tinychat_arduino.toml")
    config = apply_overrides(config, **{"task.path": str(ROOT / "studies/data/tinychat_sample.txt")})
    task = load_task(config.task)  # trigram counts: never negative, so the library's input codes are unsigned
    assert not task.input_signed
    for i, candidate in enumerate(random_candidates(config, 4, seed)):
        model = _compressed(candidate, list(config.pipeline.steps))
        lib = generate_c_library(model, candidate.input_shape, tmp_path / f"c{i}", calibration=task.x_train[:256])
        layers = trace_layers(model, candidate.input_shape, input_signed=False)
        assert kernel_classes(layers)[0].split(".")[1] == "u16"
        for layer, cls, (_, out_bits), c in zip(
            layers, kernel_classes(layers), stored_bits(layers), lib.layers, strict=True
        ):
            arithmetic, storage, weights, shape = cls.split(".")
            assert (arithmetic, storage) == (c.mode, SHORT[c.in_type]), (cls, c)
            assert weights == f"w{c.weight_bits}{'s' if c.sparse else ''}" and shape == "pw"
            assert out_bits == {"f32": 32, "i16": 16, "u16": 16}.get(SHORT[c.out_type], layer.act_bits)
        assert len(lib.layers) == len(layers)


def test_the_cycle_model_is_its_terms_weighted_by_the_profiles_coefficients():
    uno = load_profile("arduino-uno")
    layers = trace_layers(
        _compressed(Candidate("mlp", (16,), 4, (Stage(8, weight_bits=4, act_bits=8),), head_bits=8), ["quantize"]),
        (16,),
    )
    terms = cycle_terms(layers)
    assert terms["layer"] == 2 and terms["inference"] == 1 and terms["input"] == 16 and terms["class"] == 4
    # int16 input codes into the 4-bit layer; its uint8 ReLU codes into the 8-bit classifier (float logits)
    assert terms["mac:int.i16.w4.pw"] == 16 * 8 and terms["mac:int.u8.w8.pw"] == 8 * 4
    assert terms["out:8"] == 8 and terms["out:32"] == 4
    coef = {k: cycle_coefficient(uno, k) for k in terms}
    assert mcu_cycles(layers, uno) == pytest.approx(sum(coef[k] * v for k, v in terms.items()))
    hand_set = uno.model_copy(update={"cycle_table": {}})
    # hand-set: MAC + the weight's bytes read + the input's bytes read, per MAC
    assert cycle_coefficient(hand_set, "mac:int.i16.w4.pw") == pytest.approx(
        hand_set.mac_cycles(4, 16) + 0.5 * hand_set.cycles_per_weight_byte + 2 * hand_set.cycles_per_act_byte
    )


def test_the_fit_recovers_known_coefficients():
    truth = {"mac:int.u8.w8.pw": 60.0, "layer": 500.0, "input": 250.0}
    rows = []
    for i in range(1, 9):
        terms = {
            "mac:int.u8.w8.pw": 1000.0 * i,
            "layer": float(i % 3 + 1),
            "input": 64.0 * (i % 2 + 1),
            "inference": 1.0,
        }
        rows.append({"terms": terms, "cycles": sum(truth.get(k, 0.0) * v for k, v in terms.items())})
    fitted = fit_coefficients(rows)
    for key, value in truth.items():
        assert fitted[key] == pytest.approx(value, rel=1e-6)
    assert fitted["inference"] == pytest.approx(0.0, abs=1e-6)


@needs_avr
def test_lut_build_fits_the_uno_in_simavr_and_validate_checks_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # the study's pairs file is relative to the repository root
    hand = json.loads(load_profile("arduino-uno").model_dump_json())  # the packaged Uno less its fit
    hand.update(cycle_table={}, code_bytes={}, stack_bytes=0, calibration=None)
    (tmp_path / "hand.json").write_text(json.dumps(hand))
    out = tmp_path / "uno-calibrated.json"
    argv = ["lut", "build", "--device", str(tmp_path / "hand.json"), "--config", "studies/tinychat_arduino.toml"]
    assert main([*argv, "--out", str(out), "--n-calibration", "10", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    before, fit = summary["before"], summary["fit"]
    assert summary["n_linked"] == 10 and before["mean_abs_rel_error"] > 0.5 > 0.05 > fit["mean_abs_rel_error"]
    # the library's code and the stack are fitted: Flash and arena + stack exact on the models measured
    assert before["flash"]["within_2pct"] == 0 and fit["flash"]["max_abs_rel_error"] < 0.005
    assert before["sram"]["within_5pct"] == 0 and fit["sram"]["max_abs_rel_error"] < 0.005
    profile = load_profile(out)  # a profile file a study names in [device] name
    assert profile.name == "arduino-uno-calibrated" and profile.calibration["simulator"] == "simavr"
    assert profile.cycle_table["mac:int.i16.w8.pw"] > profile.cycle_table["mac:int.u8.w8.pw"] > 20
    assert 0 < profile.stack_bytes < 512 and 2000 < profile.runtime_flash_bytes < 8000
    val = ["lut", "validate", "--device", str(out), "--config", "studies/tinychat_arduino.toml", "--n-archs", "4"]
    assert main([*val, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["calibrated"] is True and report["n_linked"] == 4
    # a kernel class the 10 models never built is priced at their median kernel: Flash within 10%, not 2%
    assert report["metrics"]["mean_abs_rel_error"] < 0.1 and report["metrics"]["flash"]["max_abs_rel_error"] < 0.1


def test_lut_build_on_a_cycles_device_without_simulator_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    argv = ["lut", "build", "--device", "esp32", "--config", "studies/mnist1d_mcu.toml"]
    assert main([*argv, "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "no cycle model with a simulator" in err and "Traceback" not in err
    assert not (tmp_path / "x.json").exists()
