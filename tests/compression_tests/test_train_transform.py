"""The training loop's per-batch ``transform`` hook (data augmentation)."""

from __future__ import annotations

import torch
from torch import nn

from jointnas.compression import TrainConfig, train


def test_transform_sees_every_batch_with_the_generator_and_feeds_the_model():
    x, y = torch.randn(50, 4), torch.randint(0, 3, (50,))
    gen = torch.Generator().manual_seed(0)
    calls = []

    def zero_out(batch, generator):
        calls.append((len(batch), generator))
        return torch.zeros_like(batch)

    model = nn.Linear(4, 3)
    train(model, x, y, TrainConfig(epochs=2, batch_size=16), generator=gen, transform=zero_out)
    assert [n for n, _ in calls] == [16, 16, 16, 2] * 2 and all(g is gen for _, g in calls)
    # A model that only ever sees zeros gets no weight gradient (without weight decay, weights stay put).
    trained_on_zeros = nn.Linear(4, 3)
    before = trained_on_zeros.weight.detach().clone()
    train(trained_on_zeros, x, y, TrainConfig(epochs=1, batch_size=16, weight_decay=0.0), transform=zero_out)
    assert torch.equal(trained_on_zeros.weight, before)
