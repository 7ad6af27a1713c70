"""Block keys, table file checks (corrupt, truncated, other device or machine, threads), calibration."""

from __future__ import annotations

import json

import pytest

from jointnas.compression import fold_batchnorm
from jointnas.devices import (
    Calibration,
    CycleModel,
    LatencyTable,
    fit_calibration,
    group_blocks,
    open_latency_model,
    prediction_metrics,
)
from jointnas.spaces import Candidate, Stage, UserInputError, build_model, trace_layers

CNN = Candidate("cnn", (1, 8, 8), 10, (Stage(8, 2, 3, 2, 1), Stage(12, 1, 5, 4, 2)), stem_channels=8)
MLP = Candidate("mlp", (64,), 10, (Stage(32),))


def _layers(c: Candidate = MLP):
    return trace_layers(fold_batchnorm(build_model(c)), c.input_shape)  # deployable: BN folded into biases


def _saved_table(tmp_path, device="ort-cpu"):
    path = tmp_path / "lut.json"
    table = LatencyTable(path, repeats=3, warmup=1, device=device)
    table.predict_ms(_layers())
    table.save()
    return path, json.loads(path.read_text())


def test_blocks_keep_op_kind_shape_channels_kernel_stride_expansion_bits():
    specs = [spec for spec, _ in group_blocks(_layers(CNN))]
    assert [s.kind for s in specs] == ["stem", "ir", "ir", "ir", "head"]
    assert specs[0].key == "stem|in=1x8x8|c1>8k3s1r|res=0|pool=0|b=w32a32"
    # expansion 2 on 8 channels: 16 hidden; the second block of the stage adds its input back.
    assert specs[1].key == "ir|in=8x8x8|c8>16k1s1r-d16>16k3s1r-c16>8k1s1|res=1|pool=0|b=w32a32"
    assert specs[2].residual and not specs[3].residual
    assert specs[3].key == "ir|in=8x8x8|c8>32k1s1r-d32>32k5s2r-c32>12k1s1|res=0|pool=0|b=w32a32"
    assert specs[4].key == "head|in=12x4x4|l12>10|res=0|pool=1|b=w32a32"
    # Bit-widths the device runs natively stay in the key; others run (and are keyed) as float.
    model = fold_batchnorm(build_model(CNN))
    for m in model.modules():
        if hasattr(m, "weight") and m.weight is not None and m.weight.dim() > 1:
            m.weight_bits, m.act_bits = 8, 8
    layers = trace_layers(model, (1, 8, 8))
    assert group_blocks(layers, native_bits=(8, 32))[1][0].key.endswith("b=w8a8")
    assert group_blocks(layers, native_bits=(32,))[1][0].key.endswith("b=w32a32")


def test_truncated_corrupt_and_old_tables_are_refused(tmp_path):
    path, data = _saved_table(tmp_path)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(UserInputError, match="unreadable, truncated or corrupt"):
        LatencyTable(path)
    path.write_text(json.dumps({k: v for k, v in data.items() if k != "entries"}))
    with pytest.raises(UserInputError, match="corrupt .*entries"):
        LatencyTable(path)
    path.write_text(json.dumps({**data, "entries": {"k": {"ms": "fast"}}}))
    with pytest.raises(UserInputError, match="corrupt"):
        LatencyTable(path)
    path.write_text(json.dumps({**data, "format": 1}))
    with pytest.raises(UserInputError, match="format 1, this jointnas reads format 2"):
        LatencyTable(path)


def test_tables_of_another_device_machine_or_thread_count_are_refused(tmp_path):
    path, data = _saved_table(tmp_path)
    with pytest.raises(UserInputError, match="built for device 'ort-cpu', not 'ort-cpu-nchwc'"):
        LatencyTable(path, device="ort-cpu-nchwc")
    path.write_text(json.dumps({**data, "fingerprint": {**data["fingerprint"], "cpu": "Other CPU 9000"}}))
    with pytest.raises(UserInputError, match="measured on another machine: cpu 'Other CPU 9000'"):
        LatencyTable(path)
    path.write_text(json.dumps({**data, "threads": 2}))
    with pytest.raises(UserInputError, match="measured with 2 threads, not 1"):
        LatencyTable(path)
    assert LatencyTable(path, threads=2).threads == 2  # the matching thread count loads


def test_imported_table_names_missing_keys_and_checks_the_board(tmp_path):
    spec_keys = [s.key for s in LatencyTable(None).blocks(_layers())]
    fingerprint = {"cpu": "Cortex-A72", "machine": "aarch64", "onnxruntime": "1.20.0"}
    path = tmp_path / "lut-rpi4.json"
    entries = {k: {"ms": 0.5, "cv": 0.01} for k in spec_keys[:1]}
    payload = {"format": 2, "device": "rpi4", "threads": 1, "fingerprint": fingerprint, "entries": entries}
    path.write_text(json.dumps(payload))
    table = open_latency_model("rpi4", path)
    assert isinstance(table, LatencyTable) and not table.measure_missing
    with pytest.raises(UserInputError, match=r"device 'rpi4' has no entry 'head\|in=32\|l32>10.*--device rpi4"):
        table.predict_ms(_layers())
    entries.update({k: {"ms": 0.25, "cv": 0.01} for k in [*spec_keys[1:], "overhead|in=64||res=0|pool=0|b=w32a32"]})
    path.write_text(json.dumps(payload))
    # dense 0.5 + head 0.25, less one session overhead (0.25) for the second block
    assert open_latency_model("rpi4", path).predict_ms(_layers()) == pytest.approx(0.5)
    path.write_text(json.dumps({**payload, "fingerprint": {**fingerprint, "machine": "x86_64"}}))
    with pytest.raises(UserInputError, match="measured on a 'x86_64' machine, but device 'rpi4' is 'aarch64'"):
        LatencyTable(path, device="rpi4")
    with pytest.raises(UserInputError, match="built on the board"):
        open_latency_model("rpi4", tmp_path / "none.json")
    assert isinstance(open_latency_model("arduino-uno", None), CycleModel)


def test_calibration_is_fitted_stored_and_applied(tmp_path):
    path, _ = _saved_table(tmp_path)
    table = LatencyTable(path)
    raw = table.predict_raw_ms(_layers())
    assert table.predict_ms(_layers()) == raw  # uncalibrated
    table.calibration = Calibration(a=0.8, b=-0.001, c=0.002, n_samples=10)
    table.save(force=True)
    again = LatencyTable(path, measure_missing=False)
    assert again.calibration == table.calibration
    assert again.predict_ms(_layers()) == pytest.approx(0.8 * raw - 0.002 + 0.002)


def test_fit_calibration_recovers_the_line_and_ignores_an_outlier():
    sums = [0.01, 0.02, 0.03, 0.04, 0.05, 0.06, 0.07, 0.08]
    blocks = [3, 4, 4, 5, 6, 6, 7, 8]
    measured = [0.9 * s - 0.001 * n + 0.005 for s, n in zip(sums, blocks, strict=True)]
    measured[3] *= 3  # a measurement hit by load
    cal = fit_calibration(sums, blocks, measured)
    assert (cal.a, cal.b, cal.c) == pytest.approx((0.9, -0.001, 0.005), rel=1e-6)
    assert cal.n_samples == 7


def test_prediction_metrics_figures():
    m = prediction_metrics([1.0, 2.3, 2.9, 5.0], [1.0, 2.0, 3.0, 4.0])
    assert m["spearman"] == 1.0 and m["kendall"] == 1.0
    assert m["within_10pct"] == 0.5 and m["within_20pct"] == 0.75
    assert m["rmse_ms"] == pytest.approx(((0.09 + 0.01 + 1.0) / 4) ** 0.5)
