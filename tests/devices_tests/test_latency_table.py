from __future__ import annotations

import json

import pytest

from jointnas.devices import LatencyTable, device_fingerprint, estimate_sram_bytes
from jointnas.spaces import Candidate, Stage, UserInputError, build_model, trace_layers

MLP = Candidate("mlp", (64,), 10, (Stage(32),))


def _layers():
    return trace_layers(build_model(MLP), (64,))


def test_table_measures_caches_and_reloads(tmp_path):
    path = tmp_path / "lut.json"
    table = LatencyTable(path, repeats=3, warmup=1)
    ms = table.predict_ms(_layers())
    assert ms > 0
    table.save()
    data = json.loads(path.read_text())
    assert set(data["entries"]) == {
        "dense|in=64|l64>32r|res=0|pool=0|b=w32a32",
        "head|in=32|l32>10|res=0|pool=0|b=w32a32",
        "overhead|in=64||res=0|pool=0|b=w32a32",  # one session run's fixed cost, counted once per model
    }
    assert data["threads"] == 1 and data["device"] == "ort-cpu" and "cpu" in data["fingerprint"]
    assert all(v["cv"] >= 0 for v in data["entries"].values())
    again = LatencyTable(path, repeats=3, warmup=1, measure_missing=False)
    assert again.predict_ms(_layers()) == pytest.approx(ms)


def test_missing_key_without_measuring_names_the_key(tmp_path):
    table = LatencyTable(None, measure_missing=False)
    with pytest.raises(UserInputError, match="no entry 'dense\\|in=64"):
        table.predict_ms(_layers())


def test_corrupt_or_foreign_thread_tables_are_refused(tmp_path):
    path = tmp_path / "lut.json"
    path.write_text('{"format": 1, "entries": {')
    with pytest.raises(UserInputError, match="corrupt"):
        LatencyTable(path)
    path.write_text(
        json.dumps({"format": 2, "device": "ort-cpu", "threads": 4, "fingerprint": device_fingerprint(), "entries": {}})
    )
    with pytest.raises(UserInputError, match="4 threads, not 1"):
        LatencyTable(path, threads=1)


def test_sram_counts_live_residual_input():
    c = Candidate("cnn", (1, 8, 8), 10, (Stage(8, 1, 3, 2, 1),), stem_channels=8)
    layers = trace_layers(build_model(c), (1, 8, 8))
    # The peak is at the depthwise conv: 16x8x8 in + 16x8x8 out + the 8x8x8 residual input, float32.
    expand = next(layer for layer in layers if layer.name == "blocks.0.expand.conv")
    assert expand.residual_numel == 512
    dw = next(layer for layer in layers if layer.name == "blocks.0.dw.conv")
    assert estimate_sram_bytes(layers) == 4 * (dw.in_numel + dw.out_numel + 512)


def test_a_block_timed_below_the_session_overhead_adds_nothing_instead_of_subtracting():
    from jointnas.devices.latency import Entry

    table = LatencyTable(None, measure_missing=False)
    table.entries["dense|in=64|l64>32r|res=0|pool=0|b=w32a32"] = Entry(0.010, 0.0)
    table.entries["head|in=32|l32>10|res=0|pool=0|b=w32a32"] = Entry(0.003, 0.0)  # noise: below the overhead
    table.entries["overhead|in=64||res=0|pool=0|b=w32a32"] = Entry(0.004, 0.0)
    # overhead + (dense - overhead) + max(0, head - overhead) = dense; plain sum less overhead gave 0.009
    assert table.predict_raw_ms(_layers()) == pytest.approx(0.010)
