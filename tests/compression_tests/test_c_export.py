"""Packed C arrays: exact size = Flash estimate, codes round-trip, the source compiles."""

from __future__ import annotations

import dataclasses
import shutil
import subprocess

import numpy as np
import pytest
import torch

from jointnas.compression import (
    deployable_model,
    export_c_array,
    factorize_low_rank,
    prune_channels,
    prune_magnitude,
    quantize_model,
    read_c_array_weights,
)
from jointnas.compression.c_export import pack_bits, packed_weight_bytes, unpack_bits
from jointnas.devices import estimate_flash_bytes
from jointnas.devices.memory import weight_storage_bytes
from jointnas.spaces import Candidate, Stage, build_model, trace_layers

CNN = Candidate("cnn", (1, 8, 8), 10, (Stage(8, 1, 3, 4, 1), Stage(16, 2, 3, 4, 2)), stem_channels=8)
MLP = Candidate("mlp", (1, 8, 8), 10, (Stage(64), Stage(32)))


@pytest.mark.parametrize("bits", [1, 2, 4, 8, 16])
@pytest.mark.parametrize("signed", [True, False])
def test_pack_unpack_round_trip(bits, signed):
    if bits == 1 and signed:
        pytest.skip("1-bit codes are unsigned (binary)")
    rng = np.random.default_rng(0)
    lo, hi = (1 - 2 ** (bits - 1), 2 ** (bits - 1)) if signed else (0, 2**bits)
    codes = rng.integers(lo, hi, size=37)
    data = pack_bits(codes, bits)
    assert len(data) == -(-37 * bits // 8)  # ceil: padded to a whole byte
    np.testing.assert_array_equal(unpack_bits(data, bits, 37, signed), codes)


def test_storage_rule_picks_the_smaller_format():
    assert weight_storage_bytes(1000, 1000, 8) == 1000  # dense
    assert weight_storage_bytes(1000, 500, 8) == 125 + 500  # bitmap + nonzeros
    assert weight_storage_bytes(1000, 900, 8) == 1000  # 125 + 900 > 1000: stays dense
    assert weight_storage_bytes(1000, 0, 1) == 125  # binary is never sparse-coded cheaper than dense
    assert weight_storage_bytes(10, 3, 32) == 2 + 12
    for numel in (1, 7, 64, 1000):  # the exporter's own rule is the devices estimator's, everywhere
        for nonzero in {0, 1, numel // 3, numel // 2, numel}:
            for bits in (1, 2, 4, 8, 16, 32):
                assert packed_weight_bytes(numel, nonzero, bits)[0] == weight_storage_bytes(numel, nonzero, bits)


def _plan(c: Candidate, bits: int, head: int, **knobs) -> Candidate:
    stages = tuple(dataclasses.replace(s, weight_bits=bits, act_bits=8 if bits < 32 else 32, **knobs) for s in c.stages)
    return dataclasses.replace(c, stages=stages, head_bits=head)


CASES = [
    ("cnn-fp32", CNN, 32, 32, "maxabs", 0.0),
    ("cnn-int8", CNN, 8, 8, "maxabs", 0.0),
    ("cnn-int4-lsq", CNN, 4, 8, "lsq", 0.0),
    ("cnn-int2-dorefa", CNN, 2, 8, "dorefa", 0.0),
    ("cnn-binary", CNN, 1, 8, "maxabs", 0.0),
    ("cnn-int16", CNN, 16, 16, "maxabs", 0.0),
    ("cnn-sparse-fp32", CNN, 32, 32, "maxabs", 0.8),
    ("cnn-sparse-int8", CNN, 8, 8, "maxabs", 0.6),
    ("cnn-sparse-int2", CNN, 2, 8, "maxabs", 0.3),
    ("mlp-int4-sparse", MLP, 4, 8, "maxabs", 0.9),
]


@pytest.mark.parametrize(("case", "cand", "bits", "head", "method", "sparsity"), CASES, ids=[c[0] for c in CASES])
def test_packed_size_equals_flash_estimate_and_weights_round_trip(case, cand, bits, head, method, sparsity, tmp_path):
    torch.manual_seed(0)
    c = _plan(cand, bits, head, prune_ratio=0.25, rank_ratio=0.5)
    model = build_model(c).eval()
    prune_channels(model, c, scope="all")
    factorize_low_rank(model, c)
    if sparsity:
        prune_magnitude(model, sparsity, scope="global")
    if bits < 32 or head < 32:
        quantize_model(model, c, calibration=torch.randn(16, 1, 8, 8), weight_quantizer=method)
    out = export_c_array(model, tmp_path / "net.c")
    deploy = deployable_model(model)
    flash = estimate_flash_bytes(trace_layers(deploy, c.input_shape))
    assert out.total_bytes == out.blob.stat().st_size == flash  # exact, not only within 1 %
    assert (sparsity > 0) == any(layer.sparse for layer in out.layers)
    weights = read_c_array_weights(out)
    for name, w in weights.items():
        torch.testing.assert_close(w, deploy.get_submodule(name).weight.detach(), atol=1e-6, rtol=1e-5)
    header = out.header.read_text()
    assert f"#define NET_WEIGHT_BYTES {flash}" in header


@pytest.mark.skipif(shutil.which("gcc") is None and shutil.which("cc") is None, reason="no C compiler")
def test_generated_source_compiles_and_arrays_have_the_bytes(tmp_path):
    c = _plan(CNN, 4, 8)
    model = quantize_model(build_model(c).eval(), c, calibration=torch.randn(8, 1, 8, 8))
    out = export_c_array(model, tmp_path / "net")
    obj = tmp_path / "net.o"
    compiler = shutil.which("gcc") or shutil.which("cc")
    subprocess.run([compiler, "-std=c99", "-Wall", "-Werror", "-c", str(out.source), "-o", str(obj)], check=True)
    # The object's read-only data holds exactly the packed arrays (plus alignment padding).
    size = subprocess.run(["size", "-A", str(obj)], capture_output=True, text=True, check=True).stdout
    rodata = sum(int(line.split()[1]) for line in size.splitlines() if line.startswith(".rodata"))
    assert out.total_bytes <= rodata <= out.total_bytes * 1.01 + 64
