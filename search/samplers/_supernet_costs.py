"""Price a supernet's choices with the study's device: per-block latency, per-layer Flash and SRAM.

Shared by the supernet samplers (DNAS, HardCoReNAS): ``expected latency = CostModel(blocks).expected(
costs, probs) + constant`` equals ``latency_model.predict_ms`` of the traced deployable model for every
discrete choice (a `LatencyTable`'s calibrated block sum is affine in the block entries and the block
count, so it splits into a per-block term and a constant).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import torch
from torch import Tensor

from jointnas.devices import LatencyTable, layer_flash_bytes, overhead_spec
from jointnas.spaces.supernet import ChoiceBlock, Supernet


def _block_layers(cb: ChoiceBlock) -> list[Any]:
    layers = list(cb.layers)
    if cb.previous_out is not None:  # the head pools the previous block's output: give it that context
        prev = dataclasses.replace(cb.layers[0], name="blocks.previous", out_shape=cb.previous_out)
        layers.insert(0, prev)
    return layers


def latency_costs(model: Any, blocks: list[ChoiceBlock]) -> tuple[Tensor, float]:
    """Per-block latency terms (ms) and the constant: Σ present terms + constant = ``predict_ms``.

    ``model`` is a `LatencyTable` (exact) or any predictor whose ``predict_ms`` adds up over layers
    (the microcontroller cycle model: exact up to the input bit-width of each block's first layer).
    """
    if isinstance(model, LatencyTable):
        cal = model.calibration
        a, b, c = (cal.a, cal.b, cal.c) if cal is not None else (1.0, 0.0, 0.0)
        first = _block_layers(blocks[0])
        overhead = model.lookup_block(overhead_spec(model.blocks(first)[0].in_shape))
        # As `LatencyTable.predict_raw_ms`: a block adds its time beyond a session's fixed cost, at least 0.
        terms = [a * max(0.0, model.lookup_block(model.blocks(_block_layers(cb))[-1]) - overhead) + b for cb in blocks]
        model.save()
        return torch.tensor(terms, dtype=torch.float64), a * overhead + c
    return torch.tensor([model.predict_ms(list(cb.layers)) for cb in blocks], dtype=torch.float64), 0.0


def flash_costs(net: Supernet, head_bits: int) -> Tensor:
    """Per-layer Flash bytes of `Supernet.choice_layers`."""
    return torch.tensor([float(layer_flash_bytes(cl.layer)) for cl in net.choice_layers(head_bits)])


def sram_costs(net: Supernet, head_bits: int) -> Tensor:
    """Per-layer live bytes (input, output and residual at the layer's activation bit-width)."""
    return torch.tensor(
        [
            (cl.layer.in_numel + cl.layer.out_numel + cl.layer.residual_numel) * cl.layer.act_bits / 8
            for cl in net.choice_layers(head_bits)
        ]
    )
