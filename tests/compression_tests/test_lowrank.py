"""Low-rank factorization: full-rank SVD is exact, k×k decomposition, rank by ratio or energy."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from jointnas.compression import (
    factorize_conv,
    factorize_linear,
    factorize_low_rank,
    layer_rank,
    rank_for_energy,
)
from jointnas.spaces import Candidate, Stage, UserInputError, build_model


@pytest.mark.parametrize(("kernel", "stride"), [(1, 1), (3, 1), (3, 2), (5, 1)])
def test_full_rank_kxk_conv_decomposition_reproduces_outputs(kernel, stride):
    torch.manual_seed(0)
    conv = nn.Conv2d(6, 10, kernel, stride, padding=kernel // 2, bias=True)
    full = min(10, 6 * kernel * kernel)
    fact = factorize_conv(conv, full)
    first, second = fact
    assert first.kernel_size == (kernel, kernel) and first.stride == (stride, stride) and first.out_channels == full
    assert second.kernel_size == (1, 1) and second.out_channels == 10
    x = torch.randn(2, 6, 9, 9)
    torch.testing.assert_close(fact(x), conv(x), atol=1e-5, rtol=1e-5)


def test_full_rank_linear_svd_reproduces_outputs():
    torch.manual_seed(0)
    lin = nn.Linear(20, 12)
    x = torch.randn(4, 20)
    torch.testing.assert_close(factorize_linear(lin, 12)(x), lin(x), atol=1e-5, rtol=1e-5)


def test_truncated_rank_is_the_best_rank_r_approximation():
    torch.manual_seed(0)
    conv = nn.Conv2d(4, 8, 3, padding=1, bias=False)
    w = conv.weight.detach().flatten(1)
    s = torch.linalg.svdvals(w)
    a, b = factorize_conv(conv, 3)
    approx = (b.weight.flatten(1) @ a.weight.flatten(1)).detach()
    # Eckart–Young: the Frobenius error of the rank-3 truncation is the norm of the dropped values.
    assert torch.linalg.norm(w - approx) == pytest.approx(float(s[3:].norm()), rel=1e-4)


def test_rank_by_energy():
    s = torch.tensor([3.0, 2.0, 1.0, 0.0])  # energies 9, 4, 1 of 14
    assert rank_for_energy(s, 9 / 14) == 1
    assert rank_for_energy(s, 0.9) == 2  # 13/14 = 0.93
    assert rank_for_energy(s, 1.0) == 3
    w = torch.diag(s)
    assert layer_rank(w, 0.9, "energy") == 2 and layer_rank(w, 0.5, "ratio") == 2
    with pytest.raises(UserInputError, match="retained energy 0"):
        rank_for_energy(s, 0.0)
    with pytest.raises(UserInputError, match="rank mode 'svd'"):
        layer_rank(w, 0.5, "svd")
    with pytest.raises(UserInputError, match="rank 0"):
        factorize_conv(nn.Conv2d(2, 2, 3), 0)


def test_low_rank_energy_mode_on_a_model():
    c = Candidate("mlp", (64,), 10, (Stage(64, rank_ratio=0.5),))
    torch.manual_seed(0)
    model = build_model(c)
    with torch.no_grad():  # make the hidden layer exactly rank 4
        model.blocks[0].linear.weight.copy_(torch.randn(64, 4) @ torch.randn(4, 64))
    x = torch.randn(3, 64)
    before = model(x)
    factorize_low_rank(model, dataclasses.replace(c, stages=(Stage(64, rank_ratio=0.999),)), mode="energy")
    first, _ = model.blocks[0].linear
    assert first.out_features == 4
    torch.testing.assert_close(model(x), before, atol=1e-4, rtol=1e-4)
