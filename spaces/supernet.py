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
    """An inverted residual block at its largest expansion and kernel; choices slice/crop/quantize it."""

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
        self.use_residual = stride == 1 and cin == cout

    def _init_clip(self, index: int, y: Tensor) -> None:
        if not bool(self.clip_ready):
            with torch.no_grad():
                self.clip[index].fill_(float(y.detach().abs().max().clamp_min(1e-3)))
                if index == 2:
                    self.clip_ready.fill_(True)

    def forward_path(self, x: Tensor, expansion: int, kernel: int, wbits: int, abits: int) -> Tensor:
        hidden = self.cin * expansion
        y = self.conv(x, quantize_weight(self.expand_w[:hidden], wbits))
        y = F.relu(_bn(y, self.expand_bn, hidden, self.training))
        self._init_clip(0, y)
        y = quantize_activation(y, abits, self.clip[0], signed=False)
        w = quantize_weight(_crop(self.dw_w[:hidden], kernel), wbits)
        y = self.conv(y, w, stride=self.stride, padding=kernel // 2, groups=hidden)
        y = F.relu(_bn(y, self.dw_bn, hidden, self.training))
        self._init_clip(1, y)
        y = quantize_activation(y, abits, self.clip[1], signed=False)
        y = self.conv(y, quantize_weight(self.project_w[:, :hidden], wbits))
        y = _bn(y, self.project_bn, self.cout, self.training)
        self._init_clip(2, y)
        y = quantize_activation(y, abits, self.clip[2], signed=True)
        return x + y if self.use_residual else y

    def forward_mixed(
        self, x: Tensor, p: Mapping[str, Tensor], bits: tuple[tuple[int, ...], tuple[int, ...]]
    ) -> Tensor:
        """Mix every choice: weights are probability-weighted sums of the quantized, cropped/sliced
        weights (exact by linearity of convolution), activations a weighted sum of their quantizations."""
        wbits, abits = bits
        pe, pk, pw, pa = p["expansion"], p["kernel"], p["wbits"], p["abits"]
        hidden = self.expand_w.shape[0]

        def mix_act(y: Tensor, index: int, signed: bool) -> Tensor:
            self._init_clip(index, y)
            return sum(pa[i] * quantize_activation(y, b, self.clip[index], signed) for i, b in enumerate(abits))

        w = sum(pw[i] * quantize_weight(self.expand_w, b) for i, b in enumerate(wbits))
        y = mix_act(F.relu(_bn(self.conv(x, w), self.expand_bn, hidden, self.training)), 0, False)
        # Rows (output channels) beyond a smaller expansion meet zero columns in the project weight
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
            pe[i] * pw[j] * _pad_to(quantize_weight(self.project_w[:, : self.cin * e], b), shape)
            for i, e in enumerate(self.expansions)
            for j, b in enumerate(wbits)
        )
        y = mix_act(_bn(self.conv(y, w), self.project_bn, self.cout, self.training), 2, True)
        return x + y if self.use_residual else y


class Supernet(nn.Module):
    """Weight-sharing supernet of a ``cnn`` or ``cnn1d`` space (see the module docstring for the interface).

    Args:
        space: the study's space (a family with ``supernet``: the built-in ``cnn`` and ``cnn1d``).
        input_shape: input shape without batch, ``(C, H, W)`` (``cnn``) or ``(C, L)`` (``cnn1d``).
        num_classes: classifier outputs.
        width_mult: stage width multiplier (one of ``space.width_mult``; default the largest).
        stem_channels: stem width (one of ``space.stem_channels``; default the largest).

    Example:
        >>> import torch
        >>> from jointnas.spaces import SpaceConfig
        >>> net = Supernet(SpaceConfig(), (1, 8, 8), 10)
        >>> choice = net.smallest_choice()
        >>> net(torch.zeros(2, 1, 8, 8), choice).shape
        torch.Size([2, 10])
        >>> net.to_candidate(choice).stages[0].kernel
        3
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
        self.dims = len(input_shape) - 1  # spatial dimensions
        width_mult = max(space.width_mult) if width_mult is None else width_mult
        stem_channels = max(space.stem_channels) if stem_channels is None else stem_channels
        if width_mult not in space.width_mult:
            raise UserInputError(f"supernet width_mult {width_mult} is not one of {space.width_mult}")
        if stem_channels not in space.stem_channels:
            raise UserInputError(f"supernet stem_channels {stem_channels} is not one of {space.stem_channels}")
        self.space = space
        self.input_shape = tuple(input_shape)
        self.num_classes = num_classes
        self.width_mult = width_mult
        self.stem_channels = stem_channels
        knobs = space.compression
        options = {
            "kernel": tuple(sorted(space.kernel)),
            "expansion": tuple(sorted(space.expansion)),
            "depth": tuple(range(space.depth[0], space.depth[1] + 1)),
            "wbits": tuple(sorted(knobs.weight_bits)),
            "abits": tuple(sorted(knobs.act_bits)),
        }
        self.widths = [round_channels(c * width_mult) for c in space.stages]
        n_stages = Decision("n_stages", -1, "n_stages", tuple(range(space.min_stages, len(space.stages) + 1)))
        self.decisions: tuple[Decision, ...] = (n_stages,) + tuple(
            Decision(stage_param(i, kind), i, kind, options[kind]) for i in range(len(space.stages)) for kind in KINDS
        )
        self._by_name = {d.name: d for d in self.decisions}
        self.stem = ConvBNAct(input_shape[0], stem_channels, 3, dims=self.dims)
        stages: list[nn.ModuleList] = []
        cin = stem_channels
        for i, cout in enumerate(self.widths):
            blocks = [
                _SuperBlock(
                    cin if j == 0 else cout,
                    cout,
                    space.strides[i] if j == 0 else 1,
                    options["kernel"],
                    options["expansion"],
                    self.dims,
                )
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

    # ---- forward ---------------------------------------------------------------------------------
    def forward(self, x: Tensor, choice: Choice | None = None, *, weights: Mapping[str, Tensor] | None = None):
        """Path forward for ``choice`` (default: the largest sub-network), or mixed forward for ``weights``."""
        x = self.stem(x)
        if weights is None:
            full = self._full(choice)
            n = full["n_stages"]
            for i, blocks in enumerate(self.stages[:n]):
                c = {kind: full[stage_param(i, kind)] for kind in KINDS}
                for block in blocks[: c["depth"]]:
                    x = block.forward_path(x, c["expansion"], c["kernel"], c["wbits"], c["abits"])
            return self.heads[n - 1](_pool(x))
        counts = self._by_name["n_stages"].options
        p_n = self._probs(weights, "n_stages", x)
        out = None
        for i, blocks in enumerate(self.stages[: counts[-1]]):
            p = {kind: self._probs(weights, stage_param(i, kind), x) for kind in KINDS}
            bits = (self._by_name[stage_param(i, "wbits")].options, self._by_name[stage_param(i, "abits")].options)
            depths = self._by_name[stage_param(i, "depth")].options
            for j, block in enumerate(blocks):
                if j < depths[0]:
                    x = block.forward_mixed(x, p, bits)
                else:  # optional block: kept with probability P(depth > j), else skipped
                    keep = sum(p["depth"][k] for k, d in enumerate(depths) if d > j)
                    x = keep * block.forward_mixed(x, p, bits) + (1 - keep) * x
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
        values: dict[str, Any] = {"stem_channels": self.stem_channels}
        for i in range(n):
            values[stage_param(i, "width")] = self.width_mult
        values.update({k: v for k, v in full.items() if self._by_name[k].stage < n})
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
        model = build_model(self.to_candidate(full))
        model.stem.load_state_dict(self.stem.state_dict())
        model.classifier.load_state_dict(self.heads[full["n_stages"] - 1].state_dict())
        it = iter(model.blocks)
        for i, blocks in enumerate(self.stages[: full["n_stages"]]):
            e, k = full[stage_param(i, "expansion")], full[stage_param(i, "kernel")]
            for sb in blocks[: full[stage_param(i, "depth")]]:
                b = next(it)
                h = sb.cin * e
                b.expand.conv.weight.copy_(sb.expand_w[:h])
                b.dw.conv.weight.copy_(_crop(sb.dw_w[:h], k))
                b.project.conv.weight.copy_(sb.project_w[:, :h])
                for dst, src, c in ((b.expand.bn, sb.expand_bn, h), (b.dw.bn, sb.dw_bn, h)):
                    for name in ("weight", "bias", "running_mean", "running_var"):
                        getattr(dst, name).copy_(getattr(src, name)[:c])
                b.project.bn.load_state_dict(sb.project_bn.state_dict())
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
        stem = self.stem_channels
        info = _conv_info("stem.conv", (c0, *size), stem, 3, 1, 1, head_bits, head_bits, 0, True)
        out: list[ChoiceBlock] = [ChoiceBlock("stem", (info,), (), None)]
        counts = self._by_name["n_stages"].options
        prev: LayerInfo = info
        flat = 0
        for i, blocks in enumerate(self.stages):
            present_n = tuple(x for x, n in enumerate(counts) if n > i)
            stage_req = (("n_stages", present_n),) if len(present_n) < len(counts) else ()
            ks, es, ds = (self._by_name[stage_param(i, kind)].options for kind in ("kernel", "expansion", "depth"))
            wbs, abs_ = self._by_name[stage_param(i, "wbits")].options, self._by_name[stage_param(i, "abits")].options
            for j, sb in enumerate(blocks):
                present = tuple(x for x, d in enumerate(ds) if d > j)
                depth_req = stage_req + (((stage_param(i, "depth"), present),) if len(present) < len(ds) else ())
                out_size = _out_shape(size, 1, sb.stride)
                res = sb.cin * math.prod(size) if sb.use_residual else 0
                tag = f"blocks.{flat}"
                for ie, e in enumerate(es):
                    hid = sb.cin * e
                    for ik, k in enumerate(ks):
                        for iw, wb in enumerate(wbs):
                            for ia, ab in enumerate(abs_):
                                req = (
                                    *depth_req,
                                    (stage_param(i, "expansion"), (ie,)),
                                    (stage_param(i, "kernel"), (ik,)),
                                    (stage_param(i, "wbits"), (iw,)),
                                    (stage_param(i, "abits"), (ia,)),
                                )
                                layers = (
                                    _conv_info(f"{tag}.expand.conv", (sb.cin, *size), hid, 1, 1, 1, wb, ab, res, True),
                                    _conv_info(
                                        f"{tag}.dw.conv", (hid, *size), hid, k, sb.stride, hid, wb, ab, res, True
                                    ),
                                    _conv_info(
                                        f"{tag}.project.conv", (hid, *out_size), sb.cout, 1, 1, 1, wb, ab, res, False
                                    ),
                                )
                                out.append(ChoiceBlock(tag, layers, req, None))
                                prev = layers[-1]
                size, flat = out_size, flat + 1
            if i + 1 in counts:
                cin, ncls = self.widths[i], self.num_classes
                info = LayerInfo(
                    "classifier", "linear", (cin,), (ncls,), cin, ncls, 1, 1, 1, cin * ncls, cin * ncls, ncls,
                    cin * ncls, head_bits, 32, 0, False,
                )  # fmt: skip
                req = (("n_stages", (counts.index(i + 1),)),) if len(counts) > 1 else ()
                out.append(ChoiceBlock("head", (info,), req, prev.out_shape))
        return out


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
