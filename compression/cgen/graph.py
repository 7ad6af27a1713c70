"""Lower a deployable model to the generator's operator list, by module type (torch.fx).

The walk knows module and function types, never families: convolutions and linear layers (a low-rank
factor pair is simply two of them in a row), ReLU / ReLU6 / Hardtanh clamps and PACT quantizers fused
into the op that produces their input, residual adds, global average pooling, and views (flatten,
identity, dropout). Anything else is refused with the module's name.

Tensors are ``(C, H, W)``: a 1-D series is ``(C, 1, L)``, a vector ``(N, 1, 1)``, all C order, as torch
lays them out, so flattening is free.
"""

from __future__ import annotations

import math
import operator
from dataclasses import dataclass, field, replace

import torch
from torch import fx, nn
from torch.fx.passes.shape_prop import ShapeProp

from jointnas.spaces import UserInputError

from ..quantization import PACT, Float16Act

_CONV = (nn.Conv1d, nn.Conv2d, nn.Linear)
_VIEWS = (nn.Identity, nn.Dropout, nn.Flatten)
_POOLS = (nn.AdaptiveAvgPool1d, nn.AdaptiveAvgPool2d)


@dataclass(frozen=True)
class Pact:
    """A PACT activation quantizer: ``bits``, signedness and the clip ``hi`` (real units; lo = −hi or 0)."""

    bits: int
    signed: bool
    hi: float

    @property
    def levels(self) -> int:
        return 2 ** (self.bits - 1) - 1 if self.signed else 2**self.bits - 1

    @property
    def scale(self) -> float:
        return self.hi / self.levels


@dataclass(frozen=True)
class Epilogue:
    """What an op does to its result before storing it: a clamp (real units), then a PACT quantizer."""

    lo: float = -math.inf
    hi: float = math.inf
    pact: Pact | None = None

    def clamp(self, lo: float, hi: float) -> Epilogue:
        return replace(self, lo=max(self.lo, lo), hi=min(self.hi, hi))


@dataclass
class Value:
    """A tensor: its canonical shape, the storage it lives in (views share one) and its fx node."""

    id: int
    shape: tuple[int, int, int]
    storage: int
    fx_name: str

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass
class Op:
    """One operator: ``input``, ``conv``, ``add``, ``pool`` or ``act`` (a standalone clamp / quantizer)."""

    kind: str
    name: str
    inputs: tuple[int, ...]
    output: int
    module: nn.Module | None = None
    epilogue: Epilogue = field(default_factory=Epilogue)


@dataclass
class Graph:
    ops: list[Op]
    values: list[Value]
    output: int
    module: fx.GraphModule

    def consumers(self, value: int) -> list[Op]:
        """Ops reading ``value``'s storage through ``value`` or a view of it."""
        storage = self.values[value].storage
        return [op for op in self.ops if any(self.values[i].storage == storage for i in op.inputs)]


class _Tracer(fx.Tracer):
    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return isinstance(m, PACT | Float16Act) or super().is_leaf_module(m, qualname)


def _canonical(shape: torch.Size) -> tuple[int, int, int]:
    dims = tuple(int(d) for d in shape[1:])
    if len(dims) == 1:
        return (dims[0], 1, 1)
    if len(dims) == 2:
        return (dims[0], 1, dims[1])
    if len(dims) == 3:
        return dims  # type: ignore[return-value]
    raise UserInputError(f"tensors of shape {tuple(shape)} are not supported by the C generator (1-3 dims)")


def _clamp_of(module: object) -> tuple[float, float] | None:
    """The real-domain clamp of an activation module or function, or None when it is not one."""
    if isinstance(module, nn.ReLU) or module in (torch.relu, nn.functional.relu):
        return 0.0, math.inf
    if isinstance(module, nn.ReLU6):
        return 0.0, 6.0
    if isinstance(module, nn.Hardtanh):
        return float(module.min_val), float(module.max_val)
    return None


class _Lowering:
    """One pass over the fx graph, building `Graph` values and ops."""

    def __init__(self, module: fx.GraphModule) -> None:
        self.gm = module
        self.modules = dict(module.named_modules())
        self.values: list[Value] = []
        self.ops: list[Op] = []
        self.env: dict[str, tuple[int, bool]] = {}  # fx node → (value id, exclusive: one user all along)
        self.producer: dict[int, Op] = {}

    def new_value(self, node: fx.Node, storage: int | None = None) -> int:
        vid = len(self.values)
        shape = _canonical(node.meta["tensor_meta"].shape)
        self.values.append(Value(vid, shape, vid if storage is None else storage, node.name))
        return vid

    def emit(self, node: fx.Node, kind: str, inputs: tuple[int, ...], module: nn.Module | None = None) -> None:
        vid = self.new_value(node)
        op = Op(kind, node.name if module is None else str(node.target), inputs, vid, module)
        self.ops.append(op)
        self.producer[vid] = op
        self.env[node.name] = (vid, len(node.users) == 1)

    def view(self, node: fx.Node, arg: fx.Node) -> None:
        vid, exclusive = self.env[arg.name]
        src = self.values[vid]
        if _canonical(node.meta["tensor_meta"].shape) != src.shape:
            vid = self.new_value(node, storage=src.storage)
        self.env[node.name] = (vid, exclusive and len(node.users) == 1)

    def activation(self, node: fx.Node, arg: fx.Node, clamp: tuple[float, float] | None, pact: Pact | None) -> None:
        vid, exclusive = self.env[arg.name]
        op = self.producer.get(vid)
        fusable = op is not None and op.kind != "input" and exclusive and op.epilogue.pact is None
        if not fusable:
            self.emit(node, "act", (vid,))
            op = self.ops[-1]
            vid = op.output
        if clamp is not None:
            op.epilogue = op.epilogue.clamp(*clamp)
        if pact is not None:
            op.epilogue = replace(op.epilogue, pact=pact)
        self.values[vid].fx_name = node.name  # the calibrated value is the one after the epilogue
        self.env[node.name] = (vid, len(node.users) == 1)

    def call_module(self, node: fx.Node) -> None:
        m = self.modules[str(node.target)]
        arg = node.args[0]
        if isinstance(m, _CONV):
            plain = isinstance(m, nn.Linear) or (set(m.dilation) == {1} and m.padding_mode == "zeros")
            if not plain:
                raise UserInputError(f"{node.target}: dilated or non-zero-padded convolutions have no C kernel")
            self.emit(node, "conv", (self.env[arg.name][0],), m)
        elif isinstance(m, PACT):
            lo, hi = m.clip_range()
            self.activation(node, arg, None, Pact(int(m.bits), bool(m.signed), hi))
        elif isinstance(m, Float16Act):
            # fp16 activations: the library keeps them as float (4 bytes), unrounded; see docs/cgen.md.
            vid, exclusive = self.env[arg.name]
            self.env[node.name] = (vid, exclusive and len(node.users) == 1)
        elif _clamp_of(m) is not None:
            self.activation(node, arg, _clamp_of(m), None)
        elif isinstance(m, _VIEWS):
            self.view(node, arg)
        elif isinstance(m, _POOLS) and m.output_size in (1, (1,), (1, 1)):
            self.emit(node, "pool", (self.env[arg.name][0],), m)
        else:
            raise UserInputError(
                f"module {node.target} ({type(m).__name__}) has no C kernel; the C library supports "
                "Conv1d/Conv2d/Linear, ReLU/ReLU6/Hardtanh, PACT, residual adds and global average pooling"
            )

    def call_function(self, node: fx.Node) -> None:
        fn = node.target
        if node.op == "call_method" and fn in ("flatten", "view", "reshape", "relu"):
            fn = {"relu": torch.relu}.get(fn, torch.flatten)
        if fn in (operator.add, torch.add) and len(node.args) == 2 and all(isinstance(a, fx.Node) for a in node.args):
            self.emit(node, "add", tuple(self.env[a.name][0] for a in node.args))
        elif fn is torch.flatten:
            self.view(node, node.args[0])
        elif _clamp_of(fn) is not None:
            self.activation(node, node.args[0], _clamp_of(fn), None)
        else:
            raise UserInputError(f"operation {node.format_node()} has no C kernel in the C library")


def lower(model: nn.Module, input_shape: tuple[int, ...]) -> Graph:
    """The operator list of ``model`` (a deployable model in eval mode) for inputs of ``input_shape``."""
    gm = fx.GraphModule(model, _Tracer().trace(model))
    param = next(model.parameters())
    ShapeProp(gm).propagate(torch.zeros((1, *input_shape), dtype=param.dtype, device=param.device))
    low = _Lowering(gm)
    output = None
    for node in gm.graph.nodes:
        if node.op == "placeholder":
            low.emit(node, "input", ())
        elif node.op == "call_module":
            low.call_module(node)
        elif node.op in ("call_function", "call_method"):
            low.call_function(node)
        elif node.op == "output":
            output = low.env[node.args[0].name][0]
        else:
            raise UserInputError(f"graph node {node.format_node()} is not supported by the C generator")
    if output is None or low.values[output].shape[1:] != (1, 1):
        raise UserInputError("the model must return one vector of class scores per sample")
    return Graph(low.ops, low.values, output, gm)


@torch.no_grad()
def calibrate(graph: Graph, samples: torch.Tensor, batch: int = 256) -> dict[str, tuple[float, float]]:
    """``(min, max)`` of every fx node's values over ``samples`` (normalized inputs), by node name."""
    ranges: dict[str, tuple[float, float]] = {}

    class Recorder(fx.Interpreter):
        def run_node(self, n: fx.Node):
            out = super().run_node(n)
            if isinstance(out, torch.Tensor):
                lo, hi = ranges.get(n.name, (math.inf, -math.inf))
                ranges[n.name] = (min(lo, float(out.min())), max(hi, float(out.max())))
            return out

    param = next(graph.module.parameters())
    for i in range(0, len(samples), batch):
        Recorder(graph.module).run(samples[i : i + batch].to(dtype=param.dtype, device=param.device))
    return ranges
