"""`[requirements]`: optional, validated, hash-neutral when absent, and checked with the right sense."""

from __future__ import annotations

import pytest

from jointnas.search.config import parse_config
from jointnas.search.requirements import RequirementsConfig, check_requirements, measured_figures
from jointnas.spaces import UserInputError

BASE = {"accuracy": 0.97, "latency_ms": 2.0, "size_bytes": 10_000}


def test_absent_section_keeps_the_config_hash():
    plain = parse_config({})
    assert plain.requirements is None
    assert "requirements" not in plain.canonical()
    with_req = parse_config({"requirements": {"max_accuracy_drop": 0.05}})
    assert with_req.canonical()["requirements"]["max_accuracy_drop"] == 0.05
    assert with_req.config_hash() != plain.config_hash()
    # Only the section itself is added: the rest of the canonical form is untouched.
    rest = with_req.canonical()
    rest.pop("requirements")
    assert rest == plain.canonical()


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"max_accuracy_drp": 0.1}, "unknown key 'max_accuracy_drp' in [requirements]; did you mean"),
        ({"max_accuracy_drop": 5}, "5 is not a fraction"),
        ({"min_size_reduction": 1.0}, "requirements.min_size_reduction"),
        ({"min_speedup": 0}, "requirements.min_speedup"),
    ],
)
def test_bad_requirements_are_one_line_errors(section, message):
    with pytest.raises(UserInputError) as exc:
        parse_config({"requirements": section}, "study.toml")
    assert message in str(exc.value) and "\n" not in str(exc.value)


def test_checks_pass_and_fail_with_the_right_sense():
    req = RequirementsConfig(max_accuracy_drop=0.05, min_speedup=1.4, min_size_reduction=0.3)
    good = {"accuracy": 0.93, "latency_ms": 1.0, "size_bytes": 7_000}
    checks = {c.name: c for c in check_requirements(req, BASE, good)}
    assert checks["max_accuracy_drop"].measured == pytest.approx(0.04)
    assert checks["min_speedup"].measured == pytest.approx(2.0)
    assert checks["min_size_reduction"].measured == pytest.approx(0.3)
    assert all(c.passed for c in checks.values())
    bad = {"accuracy": 0.90, "latency_ms": 1.5, "size_bytes": 8_000}
    checks = {c.name: c for c in check_requirements(req, BASE, bad)}
    assert not any(c.passed for c in checks.values())
    assert check_requirements(None, BASE, bad) == []
    only = check_requirements(RequirementsConfig(min_speedup=1.2), BASE, bad)
    assert [(c.name, c.passed) for c in only] == [("min_speedup", True)]
    assert measured_figures(BASE, BASE) == {"max_accuracy_drop": 0.0, "min_speedup": 1.0, "min_size_reduction": 0.0}


FIGURES = {
    "accuracy_torch": 0.95,
    "accuracy_onnx": 0.94,
    "baseline_accuracy_torch": 0.97,
    "baseline_accuracy_onnx": 0.96,
    "latency_predicted": 1.0,
    "baseline_latency_predicted": 4.0,
    "latency_measured": 0.5,
    "baseline_latency_measured": 0.6,
    "flash_bytes": 14_458,
    "baseline_flash_bytes": 57_832,
    "onnx_bytes": 49_028,
    "baseline_onnx_bytes": 45_549,
}


@pytest.mark.parametrize(
    ("device", "model", "baseline", "size_basis"),
    [
        # A microcontroller runs the C library: Flash bytes, the cycle model, the deployable model's accuracy.
        ("arduino-uno", (0.95, 1.0, 14_458), (0.97, 4.0, 57_832), "Flash bytes"),
        # An ONNX Runtime device on this machine runs the deployed file: its bytes, latency measured here.
        ("ort-cpu", (0.94, 0.5, 49_028), (0.96, 0.6, 45_549), "file bytes of model.int8.onnx"),
        # An imported board runs the file too, but its speed is its own table's, not this machine's.
        ("rpi4", (0.94, 1.0, 49_028), (0.96, 4.0, 45_549), "file bytes of model.int8.onnx"),
    ],
)
def test_requirements_are_judged_on_what_the_device_runs(device, model, baseline, size_basis):
    from jointnas.devices import load_profile
    from jointnas.search.requirements import judged_figures

    judged = judged_figures(load_profile(device), "model.int8.onnx", FIGURES)
    keys = ("accuracy", "latency_ms", "size_bytes")
    assert tuple(judged.model[k] for k in keys) == model and tuple(judged.baseline[k] for k in keys) == baseline
    checks = check_requirements(RequirementsConfig(min_size_reduction=0.5), judged.baseline, judged.model, judged.basis)
    assert checks[0].basis.startswith(size_basis)
    # The case: Flash 57,832 -> 14,458 B passes a 50% reduction on a board; the INT8 file does not shrink.
    assert checks[0].passed is (device == "arduino-uno")
