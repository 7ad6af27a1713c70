"""HardCoReNAS on the shared weight-sharing supernet (`jointnas.spaces.supernet.Supernet`).

One-shot training, the validation-loss proxy of sub-networks with inherited weights, LUT pricing
from the supernet's per-choice layer descriptions, and inherited-weight models for trials.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jointnas.compression import TrainConfig, train
from jointnas.spaces import Candidate
from jointnas.spaces.params import stage_param
from jointnas.spaces.profile import layer_flash_bytes
from jointnas.spaces.supernet import ChoiceBlock, Supernet

from ._hardcore_latency import Arch, LatencyModel, Macro, SpaceChoices
from ._supernet_costs import latency_costs


def build_supernet(
    choices: SpaceChoices,
    input_shape: tuple[int, ...],
    num_classes: int,
    seed: int = 0,
    *,
    width_mult: float | None = None,
    stem_channels: int | None = None,
) -> Supernet:
    """The shared supernet, initialised from ``seed``: elastic stem and stage widths (every macro of
    `SpaceChoices.macros`) unless ``width_mult`` / ``stem_channels`` fix them."""
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        return Supernet(choices.space, input_shape, num_classes, width_mult=width_mult, stem_channels=stem_channels)


def macro_choice(net: Supernet, macro: Macro) -> dict[str, Any]:
    """The supernet decisions a macro fixes: stage count, stem and per-stage widths."""
    out: dict[str, Any] = {"n_stages": macro.n_stages, "stem_channels": macro.stem_channels}
    out.update({stage_param(i, "width"): m for i, m in enumerate(macro.width_mults)})
    return out


def path_choice(choices: SpaceChoices, arch: Arch) -> dict[str, Any]:
    """The supernet path of ``arch`` (bit-widths: the supernet's largest, i.e. float when allowed)."""
    out: dict[str, Any] = {"n_stages": arch.macro.n_stages, "stem_channels": arch.macro.stem_channels}
    for i, (c, j) in enumerate(zip(arch.choices, arch.depths, strict=True)):
        k, e = choices.block_choices[c]
        out.update(
            {
                stage_param(i, "kernel"): k,
                stage_param(i, "expansion"): e,
                stage_param(i, "depth"): choices.depths[j],
                stage_param(i, "width"): arch.macro.width_mults[i],
            }
        )
    return out


def random_arch(choices: SpaceChoices, macro: Macro | list[Macro], rng: np.random.Generator) -> Arch:
    """A uniformly random sub-network of ``macro`` (of a uniformly drawn one of a list of macros)."""
    if isinstance(macro, list):
        macro = macro[int(rng.integers(0, len(macro)))]
    n = macro.n_stages
    return Arch(
        macro,
        tuple(int(c) for c in rng.integers(0, len(choices.block_choices), n)),
        tuple(int(j) for j in rng.integers(0, len(choices.depths), n)),
    )


def latency_model(net: Supernet, choices: SpaceChoices, macro: Macro, table: Any) -> LatencyModel:
    """`LatencyModel` of ``macro`` priced from ``net.choice_blocks()`` with the device's table."""
    return latency_models(net, choices, [macro], table)[0]


def _float_blocks(net: Supernet) -> list[ChoiceBlock]:
    """``net.choice_blocks()`` at the largest bit-width options (the float architecture)."""
    float_index = {d.name: len(d.options) - 1 for d in net.decisions if d.kind in ("wbits", "abits")}
    return [
        cb for cb in net.choice_blocks() if all(float_index[n] in idx for n, idx in cb.requires if n in float_index)
    ]


def _block_models(
    net: Supernet,
    choices: SpaceChoices,
    macros: list[Macro],
    blocks: list[ChoiceBlock],
    terms: list[float],
    constant: float,
) -> list[LatencyModel]:
    """Per macro, ``terms`` (one per block option of ``blocks``) laid out as `LatencyModel` cells:
    stem and head terms into its fixed part, stage blocks by (block index, choice)."""
    decisions = {d.name: d for d in net.decisions}
    first_block = np.cumsum([0] + [max(choices.depths)] * len(net.stages))
    out = []
    for macro in macros:
        fixed = {n: decisions[n].options.index(v) for n, v in macro_choice(net, macro).items() if n in decisions}
        block_ms = [np.zeros((max(choices.depths), len(choices.block_choices))) for _ in range(macro.n_stages)]
        fixed_ms = float(constant)
        for cb, term in zip(blocks, terms, strict=True):
            req = dict(cb.requires)
            if not all(fixed[n] in idx for n, idx in req.items() if n in fixed):
                continue
            stage = next((int(n[1 : n.index("_")]) for n in req if n.endswith("_expansion")), None)
            if stage is None:  # stem, head
                fixed_ms += term
                continue
            k = decisions[stage_param(stage, "kernel")].options[req[stage_param(stage, "kernel")][0]]
            e = decisions[stage_param(stage, "expansion")].options[req[stage_param(stage, "expansion")][0]]
            b = int(cb.slot.split(".")[1]) - int(first_block[stage])
            block_ms[stage][b, choices.block_choices.index((k, e))] = term
        out.append(LatencyModel(macro, fixed_ms, block_ms, choices.depths))
    return out


def latency_models(net: Supernet, choices: SpaceChoices, macros: list[Macro], table: Any) -> list[LatencyModel]:
    """`LatencyModel` of every macro, priced once from ``net.choice_blocks()`` with the device's table.

    Each block option is one table entry (`latency_costs`: exact for a `LatencyTable`, calibration
    included); bit-widths at their largest option (the float architecture); a macro keeps the block
    options of its stage count, stem and widths.
    """
    blocks = _float_blocks(net)
    terms, constant = latency_costs(table, blocks)
    return _block_models(net, choices, macros, blocks, terms.tolist(), float(constant))


def flash_models(net: Supernet, choices: SpaceChoices, macros: list[Macro]) -> list[LatencyModel]:
    """The Flash bytes of every macro's sub-networks in `LatencyModel`'s layout (its ``*_ms`` read as bytes):
    each block option's `layer_flash_bytes` at the float architecture, additive over blocks as latency is."""
    blocks = _float_blocks(net)
    terms = [float(sum(layer_flash_bytes(layer) for layer in cb.layers)) for cb in blocks]
    return _block_models(net, choices, macros, blocks, terms, 0.0)


class _PathSampler(nn.Module):
    """Runs one supernet path per forward call, so `compression.train` (the one loop) trains it.

    ``sandwich``: calls cycle largest → smallest → uniform → uniform (sandwich rule spread over steps);
    otherwise every call draws a uniform path (decisions independent and uniform, bit-widths included).
    """

    def __init__(self, net: Supernet, generator: torch.Generator, sandwich: bool) -> None:
        super().__init__()
        self.net, self.generator, self.sandwich, self.calls = net, generator, sandwich, 0

    def forward(self, x: Tensor) -> Tensor:
        phase = self.calls % 4 if self.sandwich else 2
        self.calls += 1
        if phase == 0:
            choice = self.net.largest_choice()
        elif phase == 1:
            choice = self.net.smallest_choice()
        else:
            choice = self.net.random_choice(self.generator)
        return self.net(x, choice)


def train_supernet(
    net: Supernet,
    x: Tensor,
    y: Tensor,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    sandwich: bool,
    seed: int,
    device: torch.device | str = "cpu",
) -> dict[str, Any]:
    """One-shot training of ``net`` in place on the train split; returns ``{"train_s", "final_loss", ...}``.

    ``device``: where it trains (net and split move there once); ``net`` is back on the CPU on return."""
    torch.manual_seed(seed)
    net.to(device)
    x, y = x.to(device), y.to(device)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.perf_counter()
    wrapper = _PathSampler(net, gen, sandwich)
    loss = train(wrapper, x, y, TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size), generator=gen)
    net.eval().cpu()
    return {
        "train_s": time.perf_counter() - t0,
        "final_loss": loss,
        "epochs": epochs,
        "paths": wrapper.calls,
        "sampling": "sandwich" if sandwich else "uniform",
    }


@contextmanager
def batch_statistics(net: Supernet) -> Iterator[Supernet]:
    """``net`` in training mode with BatchNorm momentum 0 for the block: each forward normalizes with
    the batch's statistics and the shared running statistics (mixed over every trained path) stay
    untouched — the usual BN recalibration of one-shot evaluation."""
    bns = [m for m in net.modules() if isinstance(m, nn.BatchNorm1d | nn.BatchNorm2d)]
    momenta = [bn.momentum for bn in bns]
    was_training = net.training
    try:
        for bn in bns:
            bn.momentum = 0.0
        net.train()
        yield net
    finally:
        for bn, m in zip(bns, momenta, strict=True):
            bn.momentum = m
        net.train(was_training)


@torch.no_grad()
def path_losses(net: Supernet, choices: SpaceChoices, archs: list[Arch], x: Tensor, y: Tensor) -> list[float]:
    """Validation cross-entropy of each sub-network with inherited weights (BN: `batch_statistics`)."""
    with batch_statistics(net):
        return [float(F.cross_entropy(net(x, path_choice(choices, a)), y)) for a in archs]


def inherit(net: Supernet, choices: SpaceChoices, candidate: Candidate) -> nn.Module:
    """``candidate``'s float model initialised from the supernet (its architecture must be a path of it)."""
    return net.extract(net.choice_of(candidate))
