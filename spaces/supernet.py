"""Weight-sharing supernet over the CNN families' per-stage choices, for DNAS and one-shot search.

Interface note (for sampler authors: DNAS, HardCoReNAS)
--------------------------------------------------------
``net = Supernet(space, input_shape, num_classes)`` covers a ``cnn`` (images, ``(C, H, W)``) or ``cnn1d``
(series, ``(C, L)``) `SpaceConfig`. Every stage of the
space is present, at width ``width_mult`` (default: the largest) and stem ``stem_channels`` (default:
the largest); per stage ``i`` the searchable **decisions** are the Optuna parameter names
``s{i}_kernel``, ``s{i}_expansion``, ``s{i}_depth``, ``s{i}_wbits``, ``s{i}_abits`` (a `Candidate`
shares them across the stage's blocks), plus the global ``n_stages`` (early exits: ``heads[n - 1]`` is the
classifier after ``n`` stages). ``net.decisions`` lists them with their ``options`` (values).

* Path API: ``net(x, choice)`` with ``choice = {name: option value}`` (missing names take the largest
  option) runs that sub-network: expanded channels are a slice of shared weights, smaller kernels a
  centre crop of the shared ``k_max`` (×``k_max``) depthwise kernel, depth skips optional blocks, bit-widths
  fake-quantize the same weights (`jointnas.spaces.quant`). For uniform/sandwich one-shot training use
  ``net.random_choice(generator)``, ``net.largest_choice()``, ``net.smallest_choice()``.
* Mixed-op API: ``net(x, weights=probs)`` with ``probs = {name: Tensor[len(options)]}`` (e.g.
  `gumbel_softmax` samples of architecture logits) mixes every choice; it is differentiable in the
  probabilities and, for one-hot ``probs``, equals the path forward.
* ``net.to_candidate(choice, params)`` → a plain `Candidate` valid in ``space`` (``params`` give the
  knobs outside the supernet: ``s{i}_prune``, ``s{i}_rank``, ``head_bits``; absent ones mean "no
  compression"). ``net.params_of(choice)`` gives the Optuna parameters `sample_candidate` would ask
  for (fixed width/stem/stage-count included); ``net.extract(choice)`` builds the candidate's float
  model with the inherited weights (``build_model`` layout, same parameter count).
* Costs: ``net.choice_layers(head_bits)`` lists every layer any choice can produce as a `ChoiceLayer`
  (a `LayerInfo` as `trace_layers` reports it on the BN-folded deployable model, plus the decision
  options it requires). Price each ``layer`` once with the device code (e.g.
  ``layer_flash_bytes``) into a tensor ``costs``; then ``CostModel(layers, net.decisions)`` gives
  ``expected(costs, probs)`` = Σ_layers cost·P(layer present) (differentiable; with independent
  per-decision probabilities this is Σ p(choice)·cost(choice)) and ``of_choice(costs, choice)``.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from jointnas.spaces._errors import UserInputError
from jointnas.spaces.candidate import Candidate
from jointnas.spaces.families import (
    SpaceConfig,
    build_model,
    family_names,
    get_family,
    grid_search_space,
    sample_candidate,
)
from jointnas.spaces.layers import ConvBNAct
from jointnas.spaces.params import FixedParams, round_channels, stage_param
from jointnas.spaces.profile import LayerInfo
from jointnas.spaces.quant import quantize_activation, quantize_weight

KINDS = ("kernel", "expansion", "depth", "wbits", "abits")
"""Decision kinds of every stage, in order; the decision of stage ``i`` is named ``s{i}_{kind}``."""

Choice = Mapping[str, Any]
"""A discrete sub-network: decision name → option value."""


@dataclass(frozen=True)
class Decision:
    """One architectural decision: its Optuna parameter ``name`` and its ``options`` (values)."""

    name: str
    stage: int
    kind: str
    options: tuple[Any, ...]

    @property
    def searchable(self) -> bool:
        return len(self.options) > 1


@dataclass(frozen=True)
class ChoiceLayer:
    """A layer some choices produce: present iff, for every ``(name, indices)`` of ``requires``, the
    decision ``name`` takes one of the option ``indices``. Layers of one ``slot`` are alternatives."""

    slot: str
    layer: LayerInfo
    requires: tuple[tuple[str, tuple[int, ...]], ...]


@dataclass(frozen=True)
class ChoiceBlock:
    """A block option some choices produce (see `ChoiceLayer` for ``requires``): its ``layers`` as
    `trace_layers` reports them; ``previous_out`` is the output shape the head pools (else ``None``)."""

    slot: str
    layers: tuple[LayerInfo, ...]
    requires: tuple[tuple[str, tuple[int, ...]], ...]
    previous_out: tuple[int, ...] | None


def gumbel_softmax(logits: Tensor, tau: float, generator: torch.Generator | None = None) -> Tensor:
    """A relaxed one-hot sample ``softmax((logits + Gumbel noise) / tau)`` (reproducible with ``generator``)."""
    u = torch.rand(logits.shape, generator=generator, dtype=logits.dtype).clamp(1e-9, 1 - 1e-9)
    return F.softmax((logits - torch.log(-torch.log(u))) / tau, dim=-1)


def _out_size(size: int, kernel: int, stride: int) -> int:
    return (size + 2 * (kernel // 2) - kernel) // stride + 1


def _out_shape(spatial: tuple[int, ...], kernel: int, stride: int) -> tuple[int, ...]:
    return tuple(_out_size(d, kernel, stride) for d in spatial)


def _crop(weight: Tensor, kernel: int) -> Tensor:
    """Centre crop of a (cout, cin, k_max[, k_max]) kernel to ``kernel`` in every spatial dimension."""
    off = (weight.shape[-1] - kernel) // 2
    return weight[(..., *[slice(off, off + kernel)] * (weight.dim() - 2))]


_CONV_FN = {1: F.conv1d, 2: F.conv2d}


def _pad_to(weight: Tensor, shape: Sequence[int]) -> Tensor:
    """Zero-pad ``weight`` to ``shape``: channels at the end, spatial dims symmetrically."""
    pads: list[int] = []
    for dim in reversed(range(weight.dim())):
        extra = shape[dim] - weight.shape[dim]
        pads.extend([extra // 2, extra // 2] if dim >= 2 else [0, extra])
    return F.pad(weight, pads)


def _conv_init(shape: tuple[int, ...]) -> nn.Parameter:
    w = torch.empty(shape)
    nn.init.kaiming_uniform_(w, a=math.sqrt(5))  # nn.Conv2d's default initialisation
    return nn.Parameter(w)


def _bn(x: Tensor, bn: nn.modules.batchnorm._BatchNorm, channels: int, training: bool) -> Tensor:
    # Slices of the running statistics are views: training updates the shared buffers in place.
    return F.batch_norm(
        x,
        bn.running_mean[:channels],
        bn.running_var[:channels],
        bn.weight[:channels],
        bn.bias[:channels],
        training,
        bn.momentum,
        bn.eps,
    )


class _SuperBlock(nn.Module):
    """An inverted residual block at its largest input/output width, expansion and kernel; choices
    slice (channels), crop (kernel) and quantize it. ``cin``/``cout`` are the largest widths."""

    def __init__(
        self,
        cin: int,
        cout: int,
        stride: int,
        kernels: tuple[int, ...],
        expansions: tuple[int, ...],
        dims: int = 2,
    ):
        super().__init__()
        self.cin, self.cout, self.stride = cin, cout, stride
        self.kernels, self.expansions = kernels, expansions
        self.conv = _CONV_FN[dims]
        k_max, hidden = max(kernels), cin * max(expansions)
        batchnorm = nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d
        self.expand_w = _conv_init((hidden, cin) + (1,) * dims)
        self.expand_bn = batchnorm(hidden)
        self.dw_w = _conv_init((hidden, 1) + (k_max,) * dims)
        self.dw_bn = batchnorm(hidden)
        self.project_w = _conv_init((cout, hidden) + (1,) * dims)
        self.project_bn = batchnorm(cout)
        # PACT clipping levels of the expand/dw/project outputs, set from the first batch seen.
        self.clip = nn.ParameterList([nn.Parameter(torch.tensor(1.0)) for _ in range(3)])
        self.register_buffer("clip_ready", torch.tensor(False))

    def _init_clip(self, index: int, y: Tensor) -> None:
        if not bool(self.clip_ready):
            with torch.no_grad():
                self.clip[index].fill_(float(y.detach().abs().max().clamp_min(1e-3)))
                if index == 2:
                    self.clip_ready.fill_(True)

    def forward_path(self, x: Tensor, cout: int, expansion: int, kernel: int, wbits: int, abits: int) -> Tensor:
        """One sub-network's block: input width ``x.shape[1]``, output width ``cout``."""
        cin = x.shape[1]
        hidden = cin * expansion
        y = self.conv(x, quantize_weight(self.expand_w[:hidden, :cin], wbits))
        y = F.relu(_bn(y, self.expand_bn, hidden, self.training))
        self._init_clip(0, y)
        y = quantize_activation(y, abits, self.clip[0], signed=False)
        w = quantize_weight(_crop(self.dw_w[:hidden], kernel), wbits)
        y = self.conv(y, w, stride=self.stride, padding=kernel // 2, groups=hidden)
        y = F.relu(_bn(y, self.dw_bn, hidden, self.training))
        self._init_clip(1, y)
        y = quantize_activation(y, abits, self.clip[1], signed=False)
        y = self.conv(y, quantize_weight(self.project_w[:cout, :hidden], wbits))
        y = _bn(y, self.project_bn, cout, self.training)
        self._init_clip(2, y)
        y = quantize_activation(y, abits, self.clip[2], signed=True)
        return x + y if self.stride == 1 and cin == cout else y

    def forward_mixed(
        self, x: Tensor, p: Mapping[str, Tensor], bits: tuple[tuple[int, ...], tuple[int, ...]], widths: _Widths
    ) -> Tensor:
        """Mix every choice: weights are probability-weighted sums of the quantized, cropped/sliced
        weights (exact by linearity of convolution), activations a weighted sum of their quantizations;
        output channels beyond a width are masked (FBNetV2), so one-hot probabilities give the path."""
        wbits, abits = bits
        pe, pk, pw, pa = p["expansion"], p["kernel"], p["wbits"], p["abits"]
        hidden = self.expand_w.shape[0]

        def mix_act(y: Tensor, index: int, signed: bool) -> Tensor:
            self._init_clip(index, y)
            return sum(pa[i] * quantize_activation(y, b, self.clip[index], signed) for i, b in enumerate(abits))

        shape = self.expand_w.shape
        w = sum(
            q * pw[j] * _pad_to(quantize_weight(self.expand_w[:, :c], b), shape)
            for c, q in widths.inputs()
            for j, b in enumerate(wbits)
        )
        y = mix_act(F.relu(_bn(self.conv(x, w), self.expand_bn, hidden, self.training)), 0, False)
        # Rows (output channels) beyond a smaller hidden width meet zero columns in the project weight
        # below, so the depthwise and expand convs can run at full width.
        shape = self.dw_w.shape
        w = sum(
            pk[i] * pw[j] * _pad_to(quantize_weight(_crop(self.dw_w, k), b), shape)
            for i, k in enumerate(self.kernels)
            for j, b in enumerate(wbits)
        )
        y = self.conv(y, w, stride=self.stride, padding=shape[-1] // 2, groups=hidden)
        y = mix_act(F.relu(_bn(y, self.dw_bn, hidden, self.training)), 1, False)
        shape = self.project_w.shape
        w = sum(
            q * pe[i] * pw[j] * _pad_to(quantize_weight(self.project_w[:, : c * e], b), shape)
            for c, q in widths.inputs()
            for i, e in enumerate(self.expansions)
            for j, b in enumerate(wbits)
        )
        y = mix_act(_bn(self.conv(y, w), self.project_bn, self.cout, self.training), 2, True)
        y = y * widths.out_mask(y)
        if self.stride != 1:
            return y
        keep = widths.residual()  # P(input width == output width)
        if isinstance(keep, float) and keep == 0.0:
            return y
        return y + keep * _resize_channels(x, self.cout)


@dataclass(frozen=True)
class _Widths:
    """Width probabilities of one block in the mixed forward: input and output channel options."""

    in_channels: tuple[int, ...]
    p_in: Tensor
    out_channels: tuple[int, ...]
    p_out: Tensor
    same: bool  # input and output width are one decision (blocks after a stage's first)

    def inputs(self) -> list[tuple[int, Tensor]]:
        return list(zip(self.in_channels, self.p_in, strict=True))

    def out_mask(self, y: Tensor) -> Tensor:
        return _channel_mask(self.out_channels, self.p_out, y)

    def residual(self) -> Tensor | float:
        if self.same:
            return 1.0
        pairs = [
            self.p_in[a] * self.p_out[b]
            for a, ci in enumerate(self.in_channels)
            for b, co in enumerate(self.out_channels)
            if ci == co
        ]
        return sum(pairs) if pairs else 0.0


def _channel_mask(channels: Sequence[int], probs: Tensor, like: Tensor) -> Tensor:
    """Σ_k probs[k]·[channel < channels[k]], shaped to broadcast over ``like`` (N, C, ...)."""
    idx = torch.arange(like.shape[1], device=like.device)
    mask = sum(p * (idx < c).to(like.dtype) for c, p in zip(channels, probs, strict=True))
    return mask.view(1, -1, *([1] * (like.dim() - 2)))


def _resize_channels(x: Tensor, channels: int) -> Tensor:
    """``x`` cut or zero-padded to ``channels`` channels."""
    if x.shape[1] >= channels:
        return x[:, :channels]
    return F.pad(x, [0, 0] * (x.dim() - 2) + [0, channels - x.shape[1]])


class Supernet(nn.Module):
    """Weight-sharing supernet of a ``cnn`` or ``cnn1d`` space (see the module docstring for the interface).

    Args:
        space: the study's space (a family with ``supernet``: the built-in ``cnn`` and ``cnn1d``).
        input_shape: input shape without batch, ``(C, H, W)`` (``cnn``) or ``(C, L)`` (``cnn1d``).
        num_classes: classifier outputs.
        width_mult: fix every stage's width multiplier (one of ``space.width_mult``); default ``None``:
            ``s{i}_width`` is a decision over all of them (elastic width).
        stem_channels: fix the stem width (one of ``space.stem_channels``); default ``None``: the
            ``stem_channels`` decision covers all of them.

    Example:
        >>> import torch
        >>> from jointnas.spaces import SpaceConfig
        >>> net = Supernet(SpaceConfig(), (1, 8, 8), 10)
        >>> choice = net.smallest_choice()
        >>> net(torch.zeros(2, 1, 8, 8), choice).shape
        torch.Size([2, 10])
        >>> cand = net.to_candidate(choice)
        >>> cand.stem_channels, [s.channels for s in cand.stages], cand.stages[0].kernel
        (8, [8], 3)
    """

    def __init__(
        self,
        space: SpaceConfig,
        input_shape: tuple[int, ...],
        num_classes: int,
        *,
        width_mult: float | None = None,
        stem_channels: int | None = None,
    ) -> None:
        super().__init__()
        family = get_family(space.family)
        if not family.supernet:
            covered = [name for name in family_names() if get_family(name).supernet]
            raise UserInputError(
                f"the supernet covers the {' and '.join(map(repr, covered))} families, not "
                f"{space.family!r}; set [space] family"
            )
        family.check_input(tuple(input_shape))
        if width_mult is not None and width_mult not in space.width_mult:
            raise UserInputError(f"supernet width_mult {width_mult} is not one of {space.width_mult}")
        if stem_channels is not None and stem_channels not in space.stem_channels:
            raise UserInputError(f"supernet stem_channels {stem_channels} is not one of {space.stem_channels}")
        self.dims = len(input_shape) - 1  # spatial dimensions
        self.space = space
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        #: The fixed width multiplier / stem, or ``None`` where the supernet searches them.
        self.width_mult, self.stem_channels = width_mult, stem_channels
        self.decisions: tuple[Decision, ...] = _decisions(space, width_mult, stem_channels)
        self._by_name = {d.name: d for d in self.decisions}
        #: The largest channel count of every stage (the shared weights' width).
        self.widths = [max(self.channel_options(i)) for i in range(len(space.stages))]
        kernels, expansions = self.decision("s0_kernel").options, self.decision("s0_expansion").options
        self.stem = ConvBNAct(input_shape[0], max(self.decision("stem_channels").options), 3, dims=self.dims)
        stages: list[nn.ModuleList] = []
        cin = self.stem.conv.out_channels
        for i, cout in enumerate(self.widths):
            first = space.strides[i]
            blocks = [
                _SuperBlock(cin if j == 0 else cout, cout, first if j == 0 else 1, kernels, expansions, self.dims)
                for j in range(space.depth[1])
            ]
            stages.append(nn.ModuleList(blocks))
            cin = cout
        self.stages = nn.ModuleList(stages)
        # One classifier per possible stage count (early exits): heads[n - 1] serves n stages.
        self.heads = nn.ModuleList([nn.Linear(c, num_classes) for c in self.widths])

    # ---- choices ---------------------------------------------------------------------------------
    def decision(self, name: str) -> Decision:
        return self._by_name[name]

    def channel_options(self, stage: int) -> tuple[int, ...]:
        """The channel count of each ``s{stage}_width`` option (``round_channels(base × multiplier)``)."""
        return tuple(self.stage_channels(stage, m) for m in self.decision(stage_param(stage, "width")).options)

    def stage_channels(self, stage: int, width_mult: float) -> int:
        """The channel count of stage ``stage`` at width multiplier ``width_mult`` (an option of ``s{stage}_width``)."""
        return round_channels(self.space.stages[stage] * width_mult)

    def _input_width(self, stage: int, block: int) -> tuple[str, tuple[int, ...]]:
        """The decision that sets a block's input width and the channels of its options."""
        if block > 0:
            return stage_param(stage, "width"), self.channel_options(stage)
        if stage == 0:
            return "stem_channels", tuple(self.decision("stem_channels").options)
        return stage_param(stage - 1, "width"), self.channel_options(stage - 1)

    def _full(self, choice: Choice | None) -> dict[str, Any]:
        choice = dict(choice or {})
        unknown = sorted(set(choice) - set(self._by_name))
        if unknown:
            raise UserInputError(f"unknown supernet decisions {unknown}; known: {sorted(self._by_name)}")
        out = {}
        for d in self.decisions:
            value = choice.get(d.name, d.options[-1])
            if value not in d.options:
                raise UserInputError(f"decision {d.name}={value!r} is not one of {list(d.options)}")
            out[d.name] = value
        return out

    def largest_choice(self) -> dict[str, Any]:
        return {d.name: d.options[-1] for d in self.decisions}

    def smallest_choice(self) -> dict[str, Any]:
        return {d.name: d.options[0] for d in self.decisions}

    def random_choice(self, generator: torch.Generator | None = None) -> dict[str, Any]:
        """A uniformly random sub-network (for uniform / sandwich one-shot training)."""
        return {
            d.name: d.options[int(torch.randint(len(d.options), (1,), generator=generator))] for d in self.decisions
        }

    def choice_from_probs(self, probs: Mapping[str, Tensor]) -> dict[str, Any]:
        """The most probable option of every decision (absent decisions: the largest option)."""
        return self._full({n: self._by_name[n].options[int(torch.argmax(p))] for n, p in probs.items()})

    def choice_of(self, candidate: Candidate) -> dict[str, Any]:
        """The sub-network of ``candidate``'s architecture (inverse of `to_candidate`; bit-widths from
        the candidate where they are options, else the largest).

        Raises `UserInputError` when the candidate is not a sub-network of this supernet."""
        n = len(candidate.stages)
        choice: dict[str, Any] = {"n_stages": n, "stem_channels": candidate.stem_channels}
        for i, stage in enumerate(candidate.stages):
            channels = self.channel_options(i)
            if stage.channels not in channels:
                raise UserInputError(f"stage {i} width {stage.channels} is not one of the supernet's {channels}")
            choice[stage_param(i, "width")] = self.decision(stage_param(i, "width")).options[
                channels.index(stage.channels)
            ]
            values = {"kernel": stage.kernel, "expansion": stage.expansion, "depth": stage.depth}
            values.update(wbits=stage.weight_bits, abits=stage.act_bits)
            for kind, value in values.items():
                name = stage_param(i, kind)
                if kind in ("wbits", "abits") and value not in self.decision(name).options:
                    continue
                choice[name] = value
        return self._full(choice)

    # ---- forward ---------------------------------------------------------------------------------
    def forward(self, x: Tensor, choice: Choice | None = None, *, weights: Mapping[str, Tensor] | None = None):
        """Path forward for ``choice`` (default: the largest sub-network), or mixed forward for ``weights``."""
        if weights is not None:
            return self._forward_mixed(x, weights)
        full = self._full(choice)
        n = full["n_stages"]
        c = full["stem_channels"]
        stem = self.stem.conv  # kernel 3, stride 1, padding 1 (`ConvBNAct`)
        x = _CONV_FN[self.dims](x, stem.weight[:c], stride=stem.stride, padding=stem.padding)
        x = F.relu(_bn(x, self.stem.bn, c, self.training))
        for i, blocks in enumerate(self.stages[:n]):
            cout = self.stage_channels(i, full[stage_param(i, "width")])
            c = {kind: full[stage_param(i, kind)] for kind in KINDS}
            for block in blocks[: c["depth"]]:
                x = block.forward_path(x, cout, c["expansion"], c["kernel"], c["wbits"], c["abits"])
        head = self.heads[n - 1]
        return F.linear(_pool(x), head.weight[:, : x.shape[1]], head.bias)

    def _forward_mixed(self, x: Tensor, weights: Mapping[str, Tensor]) -> Tensor:
        stem_options = self.decision("stem_channels").options
        x = self.stem(x)
        x = x * _channel_mask(stem_options, self._probs(weights, "stem_channels", x), x)
        counts = self._by_name["n_stages"].options
        p_n = self._probs(weights, "n_stages", x)
        out = None
        for i, blocks in enumerate(self.stages[: counts[-1]]):
            p = {kind: self._probs(weights, stage_param(i, kind), x) for kind in KINDS}
            bits = (self._by_name[stage_param(i, "wbits")].options, self._by_name[stage_param(i, "abits")].options)
            depths = self._by_name[stage_param(i, "depth")].options
            p_out = self._probs(weights, stage_param(i, "width"), x)
            for j, block in enumerate(blocks):
                in_name, in_channels = self._input_width(i, j)
                widths = _Widths(
                    in_channels,
                    self._probs(weights, in_name, x),
                    self.channel_options(i),
                    p_out,
                    in_name == stage_param(i, "width"),
                )
                if j < depths[0]:
                    x = block.forward_mixed(x, p, bits, widths)
                else:  # optional block: kept with probability P(depth > j), else skipped
                    keep = sum(p["depth"][k] for k, d in enumerate(depths) if d > j)
                    x = keep * block.forward_mixed(x, p, bits, widths) + (1 - keep) * x
            if i + 1 in counts:  # exit after stage i with probability P(n_stages = i + 1)
                y = p_n[counts.index(i + 1)] * self.heads[i](_pool(x))
                out = y if out is None else out + y
        return out

    def _probs(self, weights: Mapping[str, Tensor], name: str, like: Tensor) -> Tensor:
        n = len(self._by_name[name].options)
        p = weights.get(name)
        if p is None:
            if n > 1:
                raise UserInputError(f"mixed forward needs weights for searchable decision {name!r}")
            return torch.ones(1, dtype=like.dtype, device=like.device)
        if p.shape != (n,):
            raise UserInputError(f"weights for {name!r} must have shape ({n},), got {tuple(p.shape)}")
        return p

    # ---- candidates ------------------------------------------------------------------------------
    def params_of(self, choice: Choice | None = None) -> dict[str, Any]:
        """Optuna parameters of ``choice`` that `sample_candidate` suggests (fixed parts included)."""
        full = self._full(choice)
        n = full["n_stages"]
        values = {k: v for k, v in full.items() if self._by_name[k].stage < n}
        grid = grid_search_space(self.space)
        return {k: v for k, v in values.items() if k in grid}

    def to_candidate(self, choice: Choice | None = None, params: Mapping[str, Any] | None = None) -> Candidate:
        """The plain `Candidate` of ``choice``; ``params`` set the knobs outside the supernet."""
        merged = dict(params or {})
        merged.update(self.params_of(choice))
        return sample_candidate(FixedParams(merged), self.space, self.input_shape, self.num_classes)

    @torch.no_grad()
    def extract(self, choice: Choice | None = None) -> nn.Module:
        """``build_model`` of ``choice``'s candidate (float), initialised with the inherited weights."""
        full = self._full(choice)
        cand = self.to_candidate(full)
        model = build_model(cand)
        c = cand.stem_channels
        model.stem.conv.weight.copy_(self.stem.conv.weight[:c])
        _copy_bn(model.stem.bn, self.stem.bn, c)
        head, width = self.heads[full["n_stages"] - 1], cand.stages[-1].channels
        model.classifier.weight.copy_(head.weight[:, :width])
        model.classifier.bias.copy_(head.bias)
        it = iter(model.blocks)
        cin = c
        for i, blocks in enumerate(self.stages[: full["n_stages"]]):
            e, k, cout = cand.stages[i].expansion, cand.stages[i].kernel, cand.stages[i].channels
            for sb in blocks[: full[stage_param(i, "depth")]]:
                b = next(it)
                h = cin * e
                b.expand.conv.weight.copy_(sb.expand_w[:h, :cin])
                b.dw.conv.weight.copy_(_crop(sb.dw_w[:h], k))
                b.project.conv.weight.copy_(sb.project_w[:cout, :h])
                for dst, src, n in (
                    (b.expand.bn, sb.expand_bn, h),
                    (b.dw.bn, sb.dw_bn, h),
                    (b.project.bn, sb.project_bn, cout),
                ):
                    _copy_bn(dst, src, n)
                cin = cout
        return model.train(self.training)

    # ---- costs -----------------------------------------------------------------------------------
    def choice_layers(self, head_bits: int = 32) -> list[ChoiceLayer]:
        """Every layer any choice produces, as `trace_layers` reports it on the BN-folded model.

        ``head_bits`` is the stem's weight/activation and classifier's weight bit-width
        (``Candidate.head_bits`` once quantized; 32 when the pipeline does not quantize). Layers of
        one position (``slot``) are alternatives; a layer shared by several block options (the expand
        conv under every kernel) appears once per option, each with its option's requirements.
        """
        out = []
        for cb in self.choice_blocks(head_bits):
            for layer in cb.layers:
                part = layer.name.split(".")[-2] if cb.slot.startswith("blocks.") else ""
                out.append(ChoiceLayer(f"{cb.slot}.{part}" if part else cb.slot, layer, cb.requires))
        return out

    def choice_blocks(self, head_bits: int = 32) -> list[ChoiceBlock]:
        """Every block option (stem, inverted residual, head) any choice produces; latency tables
        price whole blocks. Layer names follow `build_model` (``blocks.<j>`` numbers the blocks of the
        largest network), so the devices code groups them as it groups a traced model."""
        c0, *rest = self.input_shape
        size = tuple(rest)  # spatial dims: (H, W) or (L,)
        out: list[ChoiceBlock] = []
        for ic, c in enumerate(self.decision("stem_channels").options):
            info = _conv_info("stem.conv", (c0, *size), c, 3, 1, 1, head_bits, head_bits, 0, True)
            out.append(ChoiceBlock("stem", (info,), (("stem_channels", (ic,)),), None))
        counts = self._by_name["n_stages"].options
        flat = 0
        for i, blocks in enumerate(self.stages):
            present_n = tuple(x for x, n in enumerate(counts) if n > i)
            stage_req = (("n_stages", present_n),) if len(present_n) < len(counts) else ()
            for j, sb in enumerate(blocks):
                out.extend(self._block_options(i, j, sb, f"blocks.{flat}", size, stage_req))
                size, flat = _out_shape(size, 1, sb.stride), flat + 1
            if i + 1 in counts:
                out.extend(self._head_options(i, size, counts, head_bits))
        return out

    def _block_options(
        self, i: int, j: int, sb: _SuperBlock, tag: str, size: tuple[int, ...], stage_req: tuple
    ) -> list[ChoiceBlock]:
        """Every option of block ``j`` of stage ``i``: widths × expansion × kernel × bit-widths."""
        ks, es, ds, wbs, abs_ = (self._by_name[stage_param(i, kind)].options for kind in KINDS)
        present = tuple(x for x, d in enumerate(ds) if d > j)
        depth_req = stage_req + (((stage_param(i, "depth"), present),) if len(present) < len(ds) else ())
        in_name, in_channels = self._input_width(i, j)
        out_name, out_channels = stage_param(i, "width"), self.channel_options(i)
        out_size = _out_shape(size, 1, sb.stride)
        out: list[ChoiceBlock] = []
        for a, cin in enumerate(in_channels):
            for b, cout in enumerate(out_channels):
                if in_name == out_name and a != b:
                    continue
                width_req = ((out_name, (b,)),) if in_name == out_name else ((in_name, (a,)), (out_name, (b,)))
                res = cin * math.prod(size) if sb.stride == 1 and cin == cout else 0
                for (ie, e), (ik, k), (iw, wb), (ia, ab) in itertools.product(
                    enumerate(es), enumerate(ks), enumerate(wbs), enumerate(abs_)
                ):
                    req = (
                        *depth_req,
                        *width_req,
                        (stage_param(i, "expansion"), (ie,)),
                        (stage_param(i, "kernel"), (ik,)),
                        (stage_param(i, "wbits"), (iw,)),
                        (stage_param(i, "abits"), (ia,)),
                    )
                    hid = cin * e
                    layers = (
                        _conv_info(f"{tag}.expand.conv", (cin, *size), hid, 1, 1, 1, wb, ab, res, True),
                        _conv_info(f"{tag}.dw.conv", (hid, *size), hid, k, sb.stride, hid, wb, ab, res, True),
                        _conv_info(f"{tag}.project.conv", (hid, *out_size), cout, 1, 1, 1, wb, ab, res, False),
                    )
                    out.append(ChoiceBlock(tag, layers, req, None))
        return out

    def _head_options(
        self, i: int, size: tuple[int, ...], counts: tuple[int, ...], head_bits: int
    ) -> list[ChoiceBlock]:
        """The classifier after stage ``i`` under each of the stage's widths."""
        out = []
        ncls = self.num_classes
        for b, cin in enumerate(self.channel_options(i)):
            info = LayerInfo(
                "classifier", "linear", (cin,), (ncls,), cin, ncls, 1, 1, 1, cin * ncls, cin * ncls, ncls,
                cin * ncls, head_bits, 32, 0, False,
            )  # fmt: skip
            req = (("n_stages", (counts.index(i + 1),)),) if len(counts) > 1 else ()
            req += ((stage_param(i, "width"), (b,)),)
            out.append(ChoiceBlock("head", (info,), req, (cin, *size)))
        return out


def _decisions(space: SpaceConfig, width_mult: float | None, stem_channels: int | None) -> tuple[Decision, ...]:
    """The supernet's decisions: ``n_stages``, every stage's `KINDS`, ``stem_channels``, ``s{i}_width``."""
    knobs = space.compression
    options = {
        "kernel": tuple(sorted(space.kernel)),
        "expansion": tuple(sorted(space.expansion)),
        "depth": tuple(range(space.depth[0], space.depth[1] + 1)),
        "wbits": tuple(sorted(knobs.weight_bits)),
        "abits": tuple(sorted(knobs.act_bits)),
    }
    n = len(space.stages)
    widths = (width_mult,) if width_mult is not None else tuple(sorted(set(space.width_mult)))
    stems = (stem_channels,) if stem_channels is not None else tuple(sorted(set(space.stem_channels)))
    return (
        Decision("n_stages", -1, "n_stages", tuple(range(space.min_stages, n + 1))),
        *(Decision(stage_param(i, kind), i, kind, options[kind]) for i in range(n) for kind in KINDS),
        Decision("stem_channels", -1, "stem", stems),
        *(Decision(stage_param(i, "width"), i, "width", widths) for i in range(n)),
    )


def _copy_bn(dst: nn.Module, src: nn.Module, channels: int) -> None:
    for name in ("weight", "bias", "running_mean", "running_var"):
        getattr(dst, name).copy_(getattr(src, name)[:channels])
    dst.num_batches_tracked.copy_(src.num_batches_tracked)


def _pool(x: Tensor) -> Tensor:
    """Global average pool over the spatial dimensions (1-D or 2-D), flattened to (N, C)."""
    return x.mean(dim=tuple(range(2, x.dim())))


def _conv_info(
    name: str,
    in_shape: tuple[int, ...],
    cout: int,
    kernel: int,
    stride: int,
    groups: int,
    wbits: int,
    abits: int,
    residual: int,
    relu: bool,
) -> LayerInfo:
    cin, *spatial = in_shape
    out_spatial = _out_shape(tuple(spatial), kernel, stride)
    numel = cout * (cin // groups) * kernel ** len(spatial)
    kind = "dwconv" if groups == cin and groups > 1 else "conv"
    return LayerInfo(
        name, kind, tuple(in_shape), (cout, *out_spatial), cin, cout, kernel, stride, groups, numel, numel, cout,
        numel * math.prod(out_spatial), wbits, abits, residual, relu,
    )  # fmt: skip


class CostModel:
    """Expected cost of an architecture distribution, from per-item costs of `ChoiceLayer` s or `ChoiceBlock` s.

    ``expected(costs, probs)`` = Σ_l costs[l] · Π_(name, idx) Σ_(i ∈ idx) probs[name][i]: the expected
    total when decisions are independent with the given per-decision probabilities; differentiable in
    ``probs``. Decisions with one option may be left out of ``probs``.

    Args:
        layers: ``Supernet.choice_layers()`` (per-layer costs: Flash, SRAM) or ``Supernet.choice_blocks()``
            (per-block costs: table latency).
        decisions: ``Supernet.decisions``.
    """

    def __init__(self, layers: Sequence[ChoiceLayer | ChoiceBlock], decisions: Sequence[Decision]) -> None:
        self.layers = list(layers)
        self.decisions = {d.name: d for d in decisions}
        self.masks: dict[str, Tensor] = {}
        for name, d in self.decisions.items():
            mask = torch.ones(len(self.layers), len(d.options))
            used = False
            for row, cl in enumerate(self.layers):
                for req_name, idx in cl.requires:
                    if req_name == name:
                        mask[row] = 0.0
                        mask[row, list(idx)] = 1.0
                        used = True
            if used:
                self.masks[name] = mask
        slots = sorted({cl.slot for cl in self.layers}, key=[cl.slot for cl in self.layers].index)
        self.slots = slots
        self.slot_index = torch.tensor([slots.index(cl.slot) for cl in self.layers])

    def presence(self, probs: Mapping[str, Tensor]) -> Tensor:
        """P(layer present) for every layer, shape ``(len(layers),)``."""
        out = torch.ones(len(self.layers), dtype=torch.float32)
        for name, mask in self.masks.items():
            p = probs.get(name)
            if p is None:
                if mask.shape[1] > 1:
                    raise UserInputError(f"probabilities for searchable decision {name!r} are missing")
                continue
            out = out * (mask.to(p.dtype) @ p)
        return out

    def expected(self, costs: Tensor, probs: Mapping[str, Tensor]) -> Tensor:
        """Expected total cost (a 0-d tensor)."""
        return (costs * self.presence(probs)).sum()

    def per_slot(self, costs: Tensor, probs: Mapping[str, Tensor]) -> Tensor:
        """Expected cost at each layer position (``slots``), e.g. to take a smooth max for SRAM."""
        weighted = costs * self.presence(probs)
        return torch.zeros(len(self.slots), dtype=weighted.dtype).index_add(0, self.slot_index, weighted)

    def one_hot(self, choice: Choice) -> dict[str, Tensor]:
        """``choice`` as one-hot probabilities."""
        out = {}
        for name, d in self.decisions.items():
            p = torch.zeros(len(d.options))
            p[d.options.index(choice.get(name, d.options[-1]))] = 1.0
            out[name] = p
        return out

    def of_choice(self, costs: Tensor, choice: Choice) -> float:
        """Total cost of the discrete sub-network ``choice``."""
        return float(self.expected(costs, self.one_hot(choice)))
