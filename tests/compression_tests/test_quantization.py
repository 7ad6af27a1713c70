"""Weight quantizers (max-abs, DoReFa, LSQ, binary), PACT, integer codes and BN folding."""

from __future__ import annotations

import copy
import dataclasses

import pytest
import torch

from jointnas.compression import (
    PACT,
    QuantConv2d,
    fold_batchnorm,
    integer_weights,
    prune_channels,
    quantize_model,
    quantize_weight,
)
from jointnas.compression.quantization import lsq_init_step
from jointnas.spaces import Candidate, Stage, UserInputError, build_model

CNN = Candidate("cnn", (1, 8, 8), 10, (Stage(8, 1, 3, 4, 1), Stage(16, 2, 3, 4, 2)), stem_channels=8)
METHODS = ["maxabs", "dorefa", "lsq"]


def _with(c: Candidate, head_bits: int | None = None, **knobs) -> Candidate:
    c = dataclasses.replace(c, stages=tuple(dataclasses.replace(s, **knobs) for s in c.stages))
    return c if head_bits is None else dataclasses.replace(c, head_bits=head_bits)


def _trained_bn(model: torch.nn.Module) -> torch.nn.Module:
    torch.manual_seed(1)
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.weight.data.uniform_(0.2, 2.0)
            m.bias.data.uniform_(-0.5, 0.5)
    model.train()
    with torch.no_grad():
        for _ in range(3):
            model(torch.randn(16, 1, 8, 8))
    return model.eval()


def _step(w: torch.Tensor, bits: int, method: str) -> torch.Tensor | None:
    return lsq_init_step(w, bits) if method == "lsq" else None


@pytest.mark.parametrize("method", ["maxabs", "lsq"])
def test_sixteen_bit_weights_are_near_identity(method):
    torch.manual_seed(0)
    w = torch.randn(8, 16, 3, 3)
    q = quantize_weight(w, 16, method, _step(w, 16, method))
    assert (q - w).abs().max() < 1e-4 * w.abs().max()


def test_sixteen_bit_dorefa_is_the_tanh_normalized_weight():
    torch.manual_seed(0)
    w = torch.randn(8, 16)
    t = torch.tanh(w)
    expected = t / t.abs().amax(1, keepdim=True) * w.abs().amax(1, keepdim=True)
    torch.testing.assert_close(quantize_weight(w, 16, "dorefa"), expected, atol=1e-4, rtol=0)


@pytest.mark.parametrize("method", METHODS)
@pytest.mark.parametrize("bits", [1, 2, 4, 8])
def test_levels_per_channel_and_integer_codes_match_fake_quant(method, bits):
    torch.manual_seed(0)
    w = torch.randn(6, 4, 3, 3)
    step = _step(w, bits, method) if bits > 1 else None
    q = quantize_weight(w, bits, method, step).detach()
    max_levels = 2 if bits == 1 else (2**bits if method == "dorefa" else 2**bits - 1)
    for row in q:
        assert len(torch.unique(row)) <= max_levels
    codes = integer_weights(w, bits, method, step)
    torch.testing.assert_close(codes.dequantize(), q, atol=1e-6, rtol=1e-5)
    lo, hi = (0, 2**bits - 1) if not codes.signed else (-(2 ** (bits - 1) - 1), 2 ** (bits - 1) - 1)
    assert codes.codes.min() >= lo and codes.codes.max() <= hi
    if bits == 1:  # binary: ±mean|w| per channel whatever the method
        torch.testing.assert_close(q.abs(), w.abs().mean((1, 2, 3), keepdim=True).expand_as(q))


def test_lsq_step_and_pact_clip_learn():
    torch.manual_seed(0)
    c = _with(CNN, weight_bits=4, act_bits=4, head_bits=8)
    model = quantize_model(build_model(c), c, calibration=torch.randn(8, 1, 8, 8), weight_quantizer="lsq")
    layer = model.blocks[0].expand.conv
    assert isinstance(layer, QuantConv2d) and layer.step is not None and layer.step.shape == (32, 1, 1, 1)
    pact = model.blocks[0].expand.out_quant
    assert isinstance(pact, PACT) and pact.bits == 4
    model.train()
    # PACT's clip gets gradient from activations above it (dy/dα = 1 there): feed larger inputs.
    model(3 * torch.randn(8, 1, 8, 8)).logsumexp(1).sum().backward()
    assert layer.step.grad is not None and layer.step.grad.abs().sum() > 0
    assert pact.alpha.grad is not None and pact.alpha.grad != 0


@pytest.mark.parametrize("method", ["maxabs", "lsq"])
def test_sixteen_bit_quantized_model_matches_float_model(method):
    c = _with(CNN, weight_bits=16, act_bits=16, head_bits=16)
    model = _trained_bn(build_model(c))
    x = torch.randn(16, 1, 8, 8)
    with torch.no_grad():
        before = model(x)
        q = quantize_model(copy.deepcopy(model), c, calibration=x, weight_quantizer=method).eval()
        after = q(x)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in q.modules())  # folded before quantizing
    assert (after - before).abs().max() < 1e-2 * before.abs().max()


def test_bn_folding_preserves_outputs_after_pruning():
    c = _with(CNN, prune_ratio=0.5)
    model = prune_channels(_trained_bn(build_model(c)), c, scope="all").eval()
    x = torch.randn(4, 1, 8, 8)
    before = model(x)
    fold_batchnorm(model)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    torch.testing.assert_close(model(x), before, atol=1e-5, rtol=1e-4)


def test_bad_quantizer_settings_are_user_errors():
    with pytest.raises(UserInputError, match="weight quantizer 'xnor'"):
        quantize_weight(torch.randn(4, 4), 4, "xnor")
    with pytest.raises(UserInputError, match="needs its learned step"):
        quantize_weight(torch.randn(4, 4), 4, "lsq")
    with pytest.raises(UserInputError, match="bit-width 3"):
        integer_weights(torch.randn(4, 4), 3)
