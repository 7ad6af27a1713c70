"""Cycle models fitted in the simulator: `jointnas lut build` / `lut validate` on a microcontroller."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from jointnas.devices import load_profile
from jointnas.devices.mcu import cycle_coefficients, cycle_terms, mcu_cycles
from jointnas.search.cli import main
from jointnas.search.tools.cycles import fit_coefficients
from jointnas.spaces import Candidate, Stage, build_model, trace_layers

ROOT = Path(__file__).resolve().parents[2]
needs_avr = pytest.mark.skipif(
    not (shutil.which("avr-gcc") and Path("/usr/include/simavr/sim_avr.h").is_file()),
    reason="avr-gcc or libsimavr not installed (apt-get install gcc-avr avr-libc simavr libsimavr-dev libelf-dev)",
)


def test_the_cycle_model_is_its_terms_weighted_by_the_profiles_coefficients():
    uno = load_profile("arduino-uno")
    layers = trace_layers(build_model(Candidate("mlp", (16,), 4, (Stage(8, weight_bits=4, act_bits=8),))), (16,))
    terms = cycle_terms(layers, profile=uno)
    assert terms["layer"] == 2 and terms["inference"] == 1 and terms["input"] == 16
    # the hand-set model as it always was: MACs x cycles/MAC + weight bytes x 3 + activation bytes x 2 + 2000/layer
    expected = sum(uno.mac_cycles(la.weight_bits, 8) * la.macs for la in layers)
    expected += 3.0 * terms["weight_byte"] + 2.0 * terms["act_byte"] + 2000 * len(layers)
    assert mcu_cycles(layers, uno) == pytest.approx(expected)
    coef = cycle_coefficients(uno)
    assert mcu_cycles(layers, uno) == pytest.approx(sum(coef[k] * v for k, v in terms.items()))


def test_the_fit_recovers_known_coefficients():
    truth = {"mac:8": 60.0, "layer": 500.0, "input": 250.0}
    rows = []
    for i in range(1, 9):
        terms = {"mac:8": 1000.0 * i, "layer": float(i % 3 + 1), "input": 64.0 * (i % 2 + 1), "inference": 1.0}
        rows.append({"terms": terms, "cycles": sum(truth.get(k, 0.0) * v for k, v in terms.items())})
    fitted = fit_coefficients(rows)
    for key, value in truth.items():
        assert fitted[key] == pytest.approx(value, rel=1e-6)
    assert fitted["inference"] == pytest.approx(0.0, abs=1e-6)


@needs_avr
def test_lut_build_fits_the_uno_in_simavr_and_validate_checks_it(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)  # the study's pairs file is relative to the repository root
    out = tmp_path / "uno-calibrated.json"
    argv = ["lut", "build", "--device", "arduino-uno", "--config", "studies/tinychat_arduino.toml"]
    assert main([*argv, "--out", str(out), "--n-calibration", "6", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["n_linked"] == 6 and summary["fit"]["mean_abs_rel_error"] < summary["before"]["mean_abs_rel_error"]
    profile = load_profile(out)  # a profile file a study names in [device] name
    assert profile.name == "arduino-uno-calibrated" and profile.calibration["simulator"] == "simavr"
    assert profile.cycles_per_mac != load_profile("arduino-uno").cycles_per_mac
    val = ["lut", "validate", "--device", str(out), "--config", "studies/tinychat_arduino.toml", "--n-archs", "4"]
    assert main([*val, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["calibrated"] is True and report["n_linked"] == 4
    assert report["metrics"]["mean_abs_rel_error"] < 0.25  # the hand-set coefficients miss by ~90%


def test_lut_build_on_a_cycles_device_without_simulator_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    argv = ["lut", "build", "--device", "stm32f746", "--config", "studies/mnist1d_mcu.toml"]
    assert main([*argv, "--out", str(tmp_path / "x.json")]) == 2
    err = capsys.readouterr().err
    assert "no cycle model with a simulator" in err and "Traceback" not in err
    assert not (tmp_path / "x.json").exists()
